//! The scheduler: places pending pods on nodes. Pure: `schedule` takes a snapshot of the
//! nodes (what they offer and what their pods already request) and the pending pods, and
//! returns a decision per pod; the leader's loop (`control/scheduler.rs`) reads the store
//! and commits the bindings. Filters (one file each under `filter/`) say whether a node
//! can take a pod and why not; scores (`score/`) rank the nodes that can. Pods are placed
//! one after another against a snapshot updated with each placement, so a batch never
//! overcommits a node.

pub mod filter;
pub mod score;
pub mod snapshot;
pub mod topology;

use std::collections::BTreeMap;

pub use snapshot::{NodeInfo, PodInfo, Resources, Snapshot};

/// The outcome for one pending pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bind { pod: String, node: String },
    /// No node fits; per node, why (as kube-scheduler reports it).
    Unschedulable { pod: String, reasons: BTreeMap<String, String> },
}

impl Decision {
    pub fn pod(&self) -> &str {
        match self {
            Decision::Bind { pod, .. } | Decision::Unschedulable { pod, .. } => pod,
        }
    }
}

/// kube-scheduler's summary: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) had
/// untolerated taint(s)."
pub fn unschedulable_message(total_nodes: usize, reasons: &BTreeMap<String, String>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in reasons.values() {
        *counts.entry(r.as_str()).or_default() += 1;
    }
    let parts: Vec<String> = counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
    if parts.is_empty() {
        return format!("0/{total_nodes} nodes are available.");
    }
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

/// Place `pending` in order; each placement is visible to the next.
pub fn schedule(snap: &mut Snapshot, pending: &[PodInfo]) -> Vec<Decision> {
    pending.iter().map(|pod| schedule_one(snap, pod)).collect()
}

fn schedule_one(snap: &mut Snapshot, pod: &PodInfo) -> Decision {
    let mut reasons = BTreeMap::new();
    let mut best: Option<(i64, u64, usize)> = None;
    let ctx = topology::prepare(snap, pod);
    for (i, node) in snap.nodes.iter().enumerate() {
        if let Err(why) = filter::check(node, pod, &ctx) {
            reasons.insert(node.name.clone(), why);
            continue;
        }
        let s = score::total(node, pod, snap, &ctx);
        // Ties go to a node picked by a hash of pod and node: deterministic, yet spread.
        let tie = tie_break(&pod.key, &node.name);
        if best.is_none_or(|(bs, bt, _)| (s, tie) > (bs, bt)) {
            best = Some((s, tie, i));
        }
    }
    match best {
        Some((_, _, i)) => {
            snap.assign(i, pod);
            Decision::Bind { pod: pod.key.clone(), node: snap.nodes[i].name.clone() }
        }
        None => Decision::Unschedulable { pod: pod.key.clone(), reasons },
    }
}

/// FNV-1a over pod and node names: stable across runs and platforms.
fn tie_break(pod: &str, node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in pod.bytes().chain([0]).chain(node.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;
