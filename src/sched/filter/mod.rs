//! Filter plugins: can this node take this pod? Each returns the reason it cannot, worded
//! as kube-scheduler words it (the reasons are counted into the Unschedulable message).
//! Pure.

pub mod host_ports;
pub mod node_affinity;
pub mod node_status;
pub mod resources;
pub mod taints;

use super::{NodeInfo, PodInfo, Snapshot};

/// Run every filter; the first that fails gives the reason.
pub fn check(node: &NodeInfo, pod: &PodInfo, _snap: &Snapshot) -> Result<(), String> {
    node_status::check(node)?;
    node_affinity::check(node, pod)?;
    taints::check(node, pod)?;
    host_ports::check(node, pod)?;
    resources::check(node, pod)?;
    Ok(())
}
