//! Score: topology spread constraints with `whenUnsatisfiable: ScheduleAnyway`: the fewer
//! matching pods the node's domain holds compared with the others, the better (100 for an
//! emptiest domain, 0 for a fullest); a node without the key scores 0 for that constraint.

use super::super::topology::Context;
use super::NodeInfo;

pub fn score(node: &NodeInfo, ctx: &Context) -> i64 {
    let soft: Vec<_> = ctx.spread.iter().filter(|s| !s.hard).collect();
    if soft.is_empty() {
        return 0;
    }
    let total: i64 = soft
        .iter()
        .map(|s| {
            let Some(here) = node.labels.get(&s.key).map(|d| s.counts.get(d).copied().unwrap_or(0)) else { return 0 };
            let (min, max) = (s.min(), s.counts.values().copied().max().unwrap_or(0));
            if max == min { 100 } else { 100 * (max - here) / (max - min) }
        })
        .sum();
    total / soft.len() as i64
}
