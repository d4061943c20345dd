//! The DaemonSet controller: one pod from the template on every eligible node (matching
//! the template's nodeSelector and tolerating the node's NoSchedule/NoExecute taints;
//! cordoned and not-ready nodes keep their daemons), created already bound to its node, following nodes as they join and leave. A changed template rolls out
//! with the RollingUpdate strategy: at most `maxUnavailable` (default 1) nodes' pods are
//! replaced at a time, each only once the others are ready again. `reconcile` is pure.

use std::collections::{BTreeMap, BTreeSet};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::informer::Informer;
use super::owners::{apply_pod_actions, pod_from_template, suffix, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub use super::owners::PodAction as Action;

/// The label carrying the template's hash, so a changed template is seen on the pods.
pub const HASH_LABEL: &str = "controller-revision-hash";

fn is_owned_by(pod: &Value, uid: &str) -> bool {
    pod["metadata"]["ownerReferences"].as_array().is_some_and(|refs| refs.iter().any(|r| r["controller"] == true && r["uid"] == uid))
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// A short hash of the pod template.
pub fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(template).unwrap_or_default());
    digest[..5].iter().map(|b| format!("{b:02x}")).collect()
}

fn tolerates(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| {
        let key_ok = t["key"].is_null() && t["operator"] == "Exists" || t["key"] == taint["key"];
        let value_ok = t["operator"] == "Exists" || t["value"].as_str().unwrap_or("") == taint["value"].as_str().unwrap_or("");
        let effect_ok = t["effect"].is_null() || t["effect"] == taint["effect"];
        key_ok && value_ok && effect_ok
    })
}

/// Whether a pod of `template` belongs on `node`.
pub fn eligible(template: &Value, node: &Value) -> bool {
    let spec = &template["spec"];
    let labels = &node["metadata"]["labels"];
    let selector_ok = spec["nodeSelector"].as_object().is_none_or(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)));
    let tolerations: Vec<Value> = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let taints_ok = node["spec"]["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["effect"] == "NoSchedule" || t["effect"] == "NoExecute")
        .all(|t| tolerates(&tolerations, t));
    // An unschedulable (cordoned) node keeps its daemons, as in Kubernetes: the
    // controller tolerates node.kubernetes.io/unschedulable.
    selector_ok && taints_ok && node["metadata"]["deletionTimestamp"].is_null()
}

/// What to do for `ds` given the nodes and every pod of its namespace; `names` supplies
/// pod name suffixes.
pub fn reconcile(ds: &Value, nodes: &[Value], pods: &[Value], names: &mut dyn FnMut() -> String) -> Vec<Action> {
    let meta = &ds["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return vec![] };
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let template = &ds["spec"]["template"];
    let hash = template_hash(template);
    let wanted: BTreeSet<&str> = nodes.iter().filter(|n| eligible(template, n)).filter_map(|n| n["metadata"]["name"].as_str()).collect();

    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in pods.iter().filter(|p| is_owned_by(p, uid) && p["metadata"]["deletionTimestamp"].is_null()) {
        if let Some(node) = p["spec"]["nodeName"].as_str() {
            by_node.entry(node).or_default().push(p);
        }
    }
    let pod_name = |p: &Value| p["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let delete = |p: &Value| Action::Delete { namespace: ns.into(), name: pod_name(p) };
    let mut actions = vec![];
    if !meta["deletionTimestamp"].is_null() {
        // Being deleted: its pods are the garbage collector's (or orphaned), not ours.
        return actions;
    }
    let create = |node: &str, names: &mut dyn FnMut() -> String| {
        let mut pod = pod_from_template(template, &format!("{name}-{}", names()), ns, ds, ("apps/v1", "DaemonSet"), &[(HASH_LABEL, &hash)]);
        pod["spec"]["nodeName"] = json!(node);
        Action::Create(pod)
    };

    // Pods on nodes that left or no longer qualify go; extra pods on one node go.
    for (node, ps) in &by_node {
        if !wanted.contains(node) {
            actions.extend(ps.iter().map(|p| delete(p)));
        } else {
            actions.extend(ps.iter().skip(1).map(|p| delete(p)));
        }
    }
    // Nodes without a pod get one.
    for node in wanted.iter().filter(|n| !by_node.contains_key(*n)) {
        actions.push(create(node, names));
    }
    // Rolling update: replace old-template pods while at most maxUnavailable nodes are
    // without a ready pod.
    let current = |p: &Value| p["metadata"]["labels"][HASH_LABEL] == hash.as_str();
    let on_wanted: Vec<&Value> = wanted.iter().filter_map(|n| by_node.get(n).and_then(|ps| ps.first().copied())).collect();
    let max_unavailable = match &ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] {
        Value::Number(n) => n.as_u64().unwrap_or(1) as usize,
        Value::String(s) if s.ends_with('%') => {
            let pct: usize = s.trim_end_matches('%').parse().unwrap_or(0);
            (wanted.len() * pct / 100).max(1)
        }
        _ => 1,
    }
    .max(1);
    if ds["spec"]["updateStrategy"]["type"] != "OnDelete" {
        let unavailable = wanted.len() - on_wanted.iter().filter(|p| ready(p)).count();
        let budget = max_unavailable.saturating_sub(unavailable);
        // Not-ready old pods first: replacing them costs no availability.
        let mut old: Vec<&Value> = on_wanted.iter().copied().filter(|p| !current(p)).collect();
        old.sort_by_key(|p| ready(p));
        let free = old.iter().take_while(|p| !ready(p)).count();
        for p in old.iter().take(free + budget) {
            actions.push(delete(p));
        }
    }

    let status = json!({
        "desiredNumberScheduled": wanted.len(),
        "currentNumberScheduled": on_wanted.len(),
        "numberMisscheduled": by_node.iter().filter(|(n, _)| !wanted.contains(*n)).count(),
        "numberReady": on_wanted.iter().filter(|p| ready(p)).count(),
        "updatedNumberScheduled": on_wanted.iter().filter(|p| current(p)).count(),
        "numberAvailable": on_wanted.iter().filter(|p| ready(p)).count(),
        "numberUnavailable": wanted.len() - on_wanted.iter().filter(|p| ready(p)).count(),
        "observedGeneration": meta["generation"].as_i64().unwrap_or(1),
    });
    if status.as_object().is_some_and(|m| m.iter().any(|(k, v)| ds["status"][k] != *v)) {
        actions.push(Action::Status(status));
    }
    actions
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let ds_res = resources::by_plural("apps", "daemonsets").expect("daemonsets are registered");
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    let nodes_res = resources::by_plural("", "nodes").expect("nodes are registered");
    let lp = OwnerLoop::start(&store, ds_res, pods_res, cfg.resync).await;
    let nodes = Informer::start(store.clone(), nodes_res).await;
    loop {
        tokio::select! {
            _ = lp.next_pass() => {}
            _ = nodes.changed.notified() => {}
        }
        let node_list = nodes.objects();
        let mut written = Written::default();
        for (ds, pods) in lp.owners_with_children() {
            let actions = reconcile(&ds, &node_list, &pods, &mut suffix);
            apply_pod_actions(&store, ds_res, &ds, actions, &mut written).await;
        }
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests;
