//! Filter: the hostPorts the pod wants are free on the node.

use super::{NodeInfo, PodInfo};

pub fn check(node: &NodeInfo, pod: &PodInfo) -> Result<(), String> {
    if pod.host_ports.iter().any(|p| node.host_ports.contains(p)) {
        return Err("node(s) didn't have free ports for the requested pod ports".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_port_and_protocol_conflicts() {
        let node = NodeInfo { host_ports: [("TCP".to_string(), 80)].into(), ..Default::default() };
        let pod = |proto: &str| PodInfo { host_ports: [(proto.to_string(), 80)].into(), ..Default::default() };
        assert!(check(&node, &pod("TCP")).is_err());
        assert!(check(&node, &pod("UDP")).is_ok());
    }
}
