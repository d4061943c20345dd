//! Filter: topology spread constraints with `whenUnsatisfiable: DoNotSchedule`. Placing
//! the pod in the node's domain must leave that domain at most `maxSkew` matching pods above
//! the emptiest domain; a node without the constraint's topologyKey label is not a choice.

use super::super::topology::Context;
use super::NodeInfo;

pub fn check(node: &NodeInfo, ctx: &Context) -> Result<(), String> {
    for s in ctx.spread.iter().filter(|s| s.hard) {
        let Some(domain) = node.labels.get(&s.key) else {
            return Err("node(s) didn't match pod topology spread constraints (missing required label)".into());
        };
        let here = s.counts.get(domain).copied().unwrap_or(0) + i64::from(s.self_match);
        if here - s.min() > s.max_skew {
            return Err("node(s) didn't match pod topology spread constraints".into());
        }
    }
    Ok(())
}
