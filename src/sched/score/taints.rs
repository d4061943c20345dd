//! Score: avoid nodes with PreferNoSchedule taints the pod does not tolerate.

use super::{NodeInfo, PodInfo};
use crate::sched::filter::taints::tolerates;

pub fn score(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let untolerated = node
        .taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|taint| !pod.tolerations.iter().any(|t| tolerates(t, taint)))
        .count() as i64;
    (100 - untolerated * 50).max(0)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Taint;

    use super::*;

    #[test]
    fn soft_taints_lower_the_score() {
        let node = NodeInfo { taints: vec![Taint { key: "k".into(), value: None, effect: "PreferNoSchedule".into(), time_added: None }], ..Default::default() };
        assert_eq!(score(&node, &PodInfo::default()), 50);
        assert_eq!(score(&NodeInfo::default(), &PodInfo::default()), 100);
    }
}
