//! Filter: the pod's requests fit in what the node has left (cpu, memory, pod count).

use super::{NodeInfo, PodInfo};

pub fn check(node: &NodeInfo, pod: &PodInfo) -> Result<(), String> {
    let (a, r, p) = (&node.allocatable, &node.requested, &pod.requests);
    if r.pods + p.pods > a.pods {
        return Err("Too many pods".into());
    }
    if p.cpu_millis > 0 && r.cpu_millis + p.cpu_millis > a.cpu_millis {
        return Err("Insufficient cpu".into());
    }
    if p.memory > 0 && r.memory + p.memory > a.memory {
        return Err("Insufficient memory".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::Resources;
    use super::*;

    #[test]
    fn requests_must_fit_what_is_left() {
        let node = NodeInfo {
            allocatable: Resources { cpu_millis: 1000, memory: 1 << 30, pods: 2 },
            requested: Resources { cpu_millis: 600, memory: 0, pods: 1 },
            ..Default::default()
        };
        let pod = |cpu, mem| PodInfo { requests: Resources { cpu_millis: cpu, memory: mem, pods: 1 }, ..Default::default() };
        assert!(check(&node, &pod(400, 1 << 30)).is_ok());
        assert_eq!(check(&node, &pod(500, 0)).unwrap_err(), "Insufficient cpu");
        assert_eq!(check(&node, &pod(0, (1 << 30) + 1)).unwrap_err(), "Insufficient memory");
        let full = NodeInfo { requested: Resources { pods: 2, ..node.requested }, ..node };
        assert_eq!(check(&full, &pod(0, 0)).unwrap_err(), "Too many pods");
    }
}
