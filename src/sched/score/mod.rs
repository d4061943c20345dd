//! Score plugins: among the nodes that can take a pod, which is best. Each gives 0–100
//! (higher is better); the total is their sum, weighted as kube-scheduler's defaults do
//! (all 1, preferred node affinity by its own weights). Pure.

pub mod balanced;
pub mod image_locality;
pub mod least_allocated;
pub mod node_affinity;
pub mod pod_affinity;
pub mod spread;
pub mod taints;
pub mod topology_spread;

use super::topology::Context;
use super::{NodeInfo, PodInfo, Snapshot};

pub fn total(node: &NodeInfo, pod: &PodInfo, snap: &Snapshot, ctx: &Context) -> i64 {
    least_allocated::score(node, pod)
        + balanced::score(node, pod)
        + spread::score(node, pod)
        + node_affinity::score(node, pod)
        + taints::score(node, pod)
        + image_locality::score(node, pod, snap)
        + pod_affinity::score(node, ctx)
        + topology_spread::score(node, ctx)
}

/// `used / total` after placing the pod, 0..=1 (a resource the node lacks counts as full).
pub(crate) fn fraction(requested: i64, pod: i64, allocatable: i64) -> f64 {
    if allocatable <= 0 {
        return 1.0;
    }
    ((requested + pod) as f64 / allocatable as f64).clamp(0.0, 1.0)
}
