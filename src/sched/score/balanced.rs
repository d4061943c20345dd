//! Score: prefer nodes whose cpu and memory use stay balanced after placing the pod.

use super::{fraction, NodeInfo, PodInfo};

pub fn score(node: &NodeInfo, pod: &PodInfo) -> i64 {
    let (a, r, p) = (&node.allocatable, &node.requested, &pod.requests);
    let cpu = fraction(r.cpu_millis, p.cpu_millis, a.cpu_millis);
    let mem = fraction(r.memory, p.memory, a.memory);
    ((1.0 - (cpu - mem).abs()) * 100.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::super::super::Resources;
    use super::*;

    #[test]
    fn lopsided_use_scores_lower() {
        let node = NodeInfo { allocatable: Resources { cpu_millis: 1000, memory: 1000, pods: 10 }, ..Default::default() };
        let even = PodInfo { requests: Resources { cpu_millis: 500, memory: 500, pods: 1 }, ..Default::default() };
        let cpu_heavy = PodInfo { requests: Resources { cpu_millis: 800, memory: 0, pods: 1 }, ..Default::default() };
        assert_eq!(score(&node, &even), 100);
        assert_eq!(score(&node, &cpu_heavy), 20);
    }
}
