//! Filter plugins: can this node take this pod? Each returns the reason it cannot, worded
//! as kube-scheduler words it (the reasons are counted into the Unschedulable message).
//! Pure.

pub mod host_ports;
pub mod node_affinity;
pub mod node_status;
pub mod pod_affinity;
pub mod resources;
pub mod taints;
pub mod topology_spread;

use super::topology::Context;
use super::{NodeInfo, PodInfo};

/// Run every filter; the first that fails gives the reason. `ctx` is what the pod's
/// inter-pod constraints need from the rest of the cluster (`topology::prepare`).
pub fn check(node: &NodeInfo, pod: &PodInfo, ctx: &Context) -> Result<(), String> {
    node_status::check(node)?;
    node_affinity::check(node, pod)?;
    taints::check(node, pod)?;
    host_ports::check(node, pod)?;
    resources::check(node, pod)?;
    pod_affinity::check(node, ctx)?;
    topology_spread::check(node, ctx)?;
    Ok(())
}
