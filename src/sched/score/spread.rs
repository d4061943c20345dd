//! Score: spread the replicas of one owner (ReplicaSet, StatefulSet...) over the nodes:
//! the fewer of its pods a node already has, the better.

use super::{NodeInfo, PodInfo};

pub fn score(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let Some(owner) = &pod.owner else { return 100 };
    let here = i64::from(node.owners.get(owner).copied().unwrap_or(0));
    (100 - here * 10).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_on_a_node_lower_its_score() {
        let pod = PodInfo { owner: Some("rs".into()), ..Default::default() };
        let node = NodeInfo { owners: [("rs".to_string(), 3)].into(), ..Default::default() };
        assert_eq!(score(&node, &pod), 70);
        assert_eq!(score(&NodeInfo::default(), &pod), 100);
        assert_eq!(score(&node, &PodInfo::default()), 100);
    }
}
