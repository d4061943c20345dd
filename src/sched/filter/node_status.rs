//! Filter: the node is ready and not cordoned (`spec.unschedulable`).

use super::NodeInfo;

pub fn check(node: &NodeInfo) -> Result<(), String> {
    if node.unschedulable {
        return Err("node(s) were unschedulable".into());
    }
    if !node.ready {
        return Err("node(s) were not ready".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cordoned_and_unready_nodes_are_refused() {
        let ready = NodeInfo { ready: true, ..Default::default() };
        assert!(check(&ready).is_ok());
        assert!(check(&NodeInfo { unschedulable: true, ..ready.clone() }).unwrap_err().contains("unschedulable"));
        assert!(check(&NodeInfo { ready: false, ..ready }).unwrap_err().contains("not ready"));
    }
}
