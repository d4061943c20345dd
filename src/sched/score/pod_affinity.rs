//! Score: preferred inter-pod affinity and anti-affinity. Each preferred term adds its
//! weight for every matching pod in the node's domain (anti-affinity subtracts), scaled to
//! 0–100 around 50; a pod without preferred terms scores 0 everywhere.

use super::super::topology::Context;
use super::NodeInfo;

pub fn score(node: &NodeInfo, ctx: &Context) -> i64 {
    if ctx.preferred_weight == 0 {
        return 0;
    }
    let raw: i64 = ctx.preferred.iter().filter(|((key, d), _)| node.labels.get(key) == Some(d)).map(|(_, w)| *w).sum();
    // Up to ten matching pods per unit of weight count fully.
    let bound = ctx.preferred_weight * 10;
    50 + 50 * raw.clamp(-bound, bound) / bound
}
