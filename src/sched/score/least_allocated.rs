//! Score: prefer the node with the most cpu and memory left after placing the pod.

use super::{fraction, NodeInfo, PodInfo};

pub fn score(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let (a, r, p) = (&node.allocatable, &node.requested, &pod.requests);
    let cpu = 1.0 - fraction(r.cpu_millis, p.cpu_millis, a.cpu_millis);
    let mem = 1.0 - fraction(r.memory, p.memory, a.memory);
    ((cpu + mem) / 2.0 * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::super::super::Resources;
    use super::*;

    #[test]
    fn emptier_nodes_score_higher() {
        let alloc = Resources { cpu_millis: 1000, memory: 1000, pods: 10 };
        let empty = NodeInfo { allocatable: alloc, ..Default::default() };
        let half = NodeInfo { allocatable: alloc, requested: Resources { cpu_millis: 500, memory: 500, pods: 1 }, ..Default::default() };
        let pod = PodInfo { requests: Resources { cpu_millis: 100, memory: 100, pods: 1 }, ..Default::default() };
        assert_eq!(score(&empty, &pod), 90);
        assert_eq!(score(&half, &pod), 40);
    }
}
