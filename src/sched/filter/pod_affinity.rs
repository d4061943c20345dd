//! Filter: inter-pod affinity. The node's domain (its value of each term's topologyKey)
//! must hold a pod matching each required affinity term and none matching a required
//! anti-affinity term, and no existing pod's required anti-affinity may refuse the pod
//! there. The matching is done once per pod in `topology::prepare`.

use super::super::topology::Context;
use super::NodeInfo;

pub fn check(node: &NodeInfo, ctx: &Context) -> Result<(), String> {
    let domain = |key: &str| node.labels.get(key);
    if ctx.refused.iter().any(|(key, domains)| domain(key).is_some_and(|d| domains.contains(d))) {
        return Err("node(s) didn't satisfy existing pods anti-affinity rules".into());
    }
    for (key, found) in &ctx.affinity {
        let ok = match (domain(key), found) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(d), Some(found)) => found.contains(d),
        };
        if !ok {
            return Err("node(s) didn't match pod affinity rules".into());
        }
    }
    if ctx.anti_affinity.iter().any(|(key, found)| domain(key).is_some_and(|d| found.contains(d))) {
        return Err("node(s) didn't match pod anti-affinity rules".into());
    }
    Ok(())
}
