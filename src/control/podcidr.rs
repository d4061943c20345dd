//! Pod CIDR allocation: every node gets its own slice of the cluster CIDR in
//! `spec.podCIDR`, never one another node holds. `assign` is pure; `run` applies its
//! answers with compare-and-set patches (a node changed meanwhile is simply retried).

use std::collections::BTreeSet;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use super::ControlConfig;
use crate::api::resources;
use crate::api::store::{Consistency, Filter, ObjectStore};

/// For every node (name, current podCIDR) without a valid slice, the lowest free one.
/// Nodes beyond the cluster CIDR's capacity get nothing (and stay without pods).
pub fn assign(cluster: Ipv4Net, prefix: u8, nodes: &[(String, Option<String>)]) -> Vec<(String, Ipv4Net)> {
    let valid = |c: &Option<String>| c.as_deref().and_then(|c| c.parse::<Ipv4Net>().ok()).filter(|n| n.prefix_len() == prefix && cluster.contains(n));
    let mut taken: BTreeSet<Ipv4Net> = nodes.iter().filter_map(|(_, c)| valid(c)).collect();
    let Ok(mut free) = cluster.subnets(prefix) else { return vec![] };
    let mut out = Vec::new();
    for (name, current) in nodes {
        if valid(current).is_some() {
            continue;
        }
        let Some(next) = free.by_ref().find(|n| !taken.contains(n)) else { break };
        taken.insert(next);
        out.push((name.clone(), next));
    }
    out
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let nodes = resources::by_plural("", "nodes").expect("nodes are registered");
    loop {
        match store.list(nodes, None, &Filter::default(), Consistency::Local).await {
            Ok((items, _)) => {
                let current: Vec<(String, Option<String>)> = items
                    .iter()
                    .map(|n| (n["metadata"]["name"].as_str().unwrap_or_default().to_string(), n["spec"]["podCIDR"].as_str().map(String::from)))
                    .collect();
                for (name, cidr) in assign(cfg.cluster_cidr, cfg.node_cidr_prefix, &current) {
                    let rv = items.iter().find(|n| n["metadata"]["name"] == name.as_str()).map(|n| n["metadata"]["resourceVersion"].clone());
                    let patch = json!({"metadata": {"resourceVersion": rv.unwrap_or(Value::Null)}, "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
                    match store.patch(nodes, None, &name, patch, false).await {
                        Ok(_) => tracing::info!(node = %name, %cidr, "pod CIDR assigned"),
                        Err(e) => tracing::debug!(node = %name, error = %e, "pod CIDR not assigned yet"),
                    }
                }
                if current.len() > cfg.cluster_cidr.subnets(cfg.node_cidr_prefix).map_or(0, |s| s.count()) {
                    tracing::warn!(cluster = %cfg.cluster_cidr, "more nodes than pod CIDR slices: some nodes get no pod CIDR");
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing nodes for pod CIDRs"),
        }
        tokio::time::sleep(cfg.resync.min(std::time::Duration::from_millis(500))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cidr: Option<&str>) -> (String, Option<String>) {
        (name.into(), cidr.map(String::from))
    }

    #[test]
    fn slices_are_unique_lowest_first_and_kept() {
        let cluster: Ipv4Net = "10.244.0.0/22".parse().unwrap();
        let nodes = vec![n("a", None), n("b", Some("10.244.0.0/24")), n("c", Some("garbage")), n("d", Some("10.9.0.0/24"))];
        let got = assign(cluster, 24, &nodes);
        let want: Vec<(String, Ipv4Net)> =
            vec![("a".into(), "10.244.1.0/24".parse().unwrap()), ("c".into(), "10.244.2.0/24".parse().unwrap()), ("d".into(), "10.244.3.0/24".parse().unwrap())];
        assert_eq!(got, want);
        // Same input, same answer; and a full cluster CIDR assigns nothing more.
        assert_eq!(assign(cluster, 24, &nodes), want);
        let full: Vec<_> = (0..4).map(|i| n(&format!("x{i}"), Some(&format!("10.244.{i}.0/24")))).chain([n("late", None)]).collect();
        assert!(assign(cluster, 24, &full).is_empty());
    }
}
