//! Score: the weights of the pod's preferred node-affinity terms this node matches.

use super::{NodeInfo, PodInfo};
use crate::sched::filter::node_affinity::matches;

pub fn score(node: &NodeInfo, pod: &PodInfo) -> i64 {
    pod.preferred_affinity
        .iter()
        .filter(|t| t.preference.match_expressions.iter().flatten().all(|r| matches(r, &node.labels)))
        .map(|t| i64::from(t.weight))
        .sum()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, PreferredSchedulingTerm};

    use super::*;

    #[test]
    fn matching_preferences_add_their_weight() {
        let term = |zone: &str, weight| PreferredSchedulingTerm {
            weight,
            preference: NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement { key: "zone".into(), operator: "In".into(), values: Some(vec![zone.into()]) }]),
                match_fields: None,
            },
        };
        let pod = PodInfo { preferred_affinity: vec![term("a", 30), term("b", 70)], ..Default::default() };
        let node = NodeInfo { labels: [("zone".to_string(), "b".to_string())].into(), ..Default::default() };
        assert_eq!(score(&node, &pod), 70);
    }
}
