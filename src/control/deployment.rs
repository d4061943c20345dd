//! The Deployment controller: one ReplicaSet per pod template (named and labelled by the
//! template's hash), rolled from old to new with RollingUpdate (maxSurge, maxUnavailable,
//! counting ready pods) or Recreate, a revision number per ReplicaSet (bumped when a
//! rollback makes an old one current; empty old ones beyond `revisionHistoryLimit` go),
//! and the Deployment's status. `reconcile` is pure;
//! `run` applies its actions through the fenced store.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::events::on_success;
use super::owners::{write_status, OwnerLoop, Written};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;

pub const HASH_LABEL: &str = "pod-template-hash";
/// Each ReplicaSet's place in the Deployment's history (1, 2, …): `rollout history` lists
/// them, `rollout undo` goes back to one.
pub const REVISION: &str = "deployment.kubernetes.io/revision";

/// A ReplicaSet's revision (0 when it has none).
pub fn revision_of(rs: &Value) -> u64 {
    rs["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateReplicaSet(Value),
    Scale { name: String, replicas: i64 },
    /// Make a ReplicaSet the newest revision (a rollback to its template).
    SetRevision { name: String, revision: u64 },
    /// An old, empty ReplicaSet beyond `revisionHistoryLimit`.
    DeleteReplicaSet(String),
    Status(Value),
}

/// The template's hash: 10 hex digits of SHA-256 over its JSON (serde_json orders keys).
pub fn template_hash(template: &Value) -> String {
    let digest = Sha256::digest(template.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// maxSurge/maxUnavailable: an absolute number or a percentage of `replicas` (surge rounds
/// up, unavailable down, as Kubernetes does).
pub fn int_or_percent(v: &Value, replicas: i64, round_up: bool, default: i64) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(default),
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<f64>().ok()) {
            Some(p) => {
                let x = p * replicas as f64 / 100.0;
                (if round_up { x.ceil() } else { x.floor() }) as i64
            }
            None => s.parse().unwrap_or(default),
        },
        _ => default,
    }
}

fn owned_by(obj: &Value, uid: &str) -> bool {
    obj["metadata"]["ownerReferences"].as_array().is_some_and(|r| r.iter().any(|o| o["controller"] == true && o["uid"] == uid))
}

fn count(rs: &Value, field: &str) -> i64 {
    rs["status"][field].as_i64().unwrap_or(0)
}

/// What to do for deployment `d` given the ReplicaSets of its namespace.
pub fn reconcile(d: &Value, sets: &[Value]) -> Vec<Action> {
    let meta = &d["metadata"];
    let (Some(uid), Some(name)) = (meta["uid"].as_str(), meta["name"].as_str()) else { return vec![] };
    let ns = meta["namespace"].as_str().unwrap_or("default");
    let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1).max(0);
    let template = &d["spec"]["template"];
    let hash = template_hash(template);
    let mut owned: Vec<&Value> = sets.iter().filter(|s| owned_by(s, uid)).collect();
    owned.sort_by_key(|s| s["metadata"]["creationTimestamp"].as_str().unwrap_or("").to_string());
    let new = owned.iter().find(|s| s["metadata"]["labels"][HASH_LABEL] == hash.as_str()).copied();
    let olds: Vec<&Value> = owned.iter().copied().filter(|s| s["metadata"]["labels"][HASH_LABEL] != hash.as_str()).collect();
    let paused = d["spec"]["paused"] == true;
    let mut actions = Vec::new();
    let newest_old = olds.iter().map(|s| revision_of(s)).max().unwrap_or(0);
    let set_name = |s: &Value| s["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if let Some(new) = new.filter(|n| revision_of(n) <= newest_old) {
        // The template went back to an older set's: that set is the newest revision again.
        actions.push(Action::SetRevision { name: set_name(new), revision: newest_old + 1 });
    }
    // History: empty old sets beyond the limit go, oldest revision first.
    let limit = d["spec"]["revisionHistoryLimit"].as_u64().unwrap_or(10) as usize;
    let mut empty: Vec<&Value> = olds.iter().copied().filter(|s| s["spec"]["replicas"].as_i64().unwrap_or(0) == 0 && count(s, "replicas") == 0).collect();
    empty.sort_by_key(|s| revision_of(s));
    let excess = empty.len().saturating_sub(limit);
    actions.extend(empty[..excess].iter().map(|s| Action::DeleteReplicaSet(set_name(s))));

    let desired = |s: &Value| s["spec"]["replicas"].as_i64().unwrap_or(0);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    // Kubernetes' defaults: 25% each (surge rounded up, unavailable down).
    let quarter = json!("25%");
    let field = |f: &str| match &d["spec"]["strategy"]["rollingUpdate"][f] {
        Value::Null => quarter.clone(),
        v => v.clone(),
    };
    let surge = int_or_percent(&field("maxSurge"), replicas, true, 1).max(0);
    let mut unavailable = int_or_percent(&field("maxUnavailable"), replicas, false, 0).max(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1; // Kubernetes refuses both 0; progress needs one of them.
    }

    // Act only on ReplicaSets whose status describes their current spec: a stale status
    // (a scale not yet carried out) would count pods twice.
    let settled = owned.iter().all(|s| s["status"]["observedGeneration"].as_i64().unwrap_or(0) >= s["metadata"]["generation"].as_i64().unwrap_or(1));
    if !paused && (settled || new.is_none()) {
        match new {
            None => {
                let mut labels = template["metadata"]["labels"].clone();
                labels[HASH_LABEL] = hash.clone().into();
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"][HASH_LABEL] = hash.clone().into();
                let mut tmpl = template.clone();
                tmpl["metadata"]["labels"] = labels.clone();
                // The first ReplicaSet starts full; later ones start empty and are rolled up.
                let start = if olds.is_empty() { replicas } else { 0 };
                let mut annotations = template["metadata"]["annotations"].as_object().cloned().unwrap_or_default();
                annotations.insert(REVISION.into(), json!((newest_old + 1).to_string()));
                if let Some(cause) = meta["annotations"]["kubernetes.io/change-cause"].as_str() {
                    annotations.insert("kubernetes.io/change-cause".into(), json!(cause));
                }
                actions.push(Action::CreateReplicaSet(json!({
                    "apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "metadata": {"name": format!("{name}-{hash}"), "namespace": ns, "labels": labels, "annotations": annotations,
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}]},
                    "spec": {"replicas": start, "selector": selector, "template": tmpl},
                })));
            }
            Some(new) => {
                let old_total: i64 = olds.iter().map(|s| desired(s)).sum();
                let old_pods: i64 = olds.iter().map(|s| count(s, "replicas")).sum();
                if recreate {
                    for s in olds.iter().filter(|s| desired(s) > 0) {
                        actions.push(Action::Scale { name: s["metadata"]["name"].as_str().unwrap_or_default().into(), replicas: 0 });
                    }
                    if old_total == 0 && old_pods == 0 && desired(new) != replicas {
                        actions.push(Action::Scale { name: new["metadata"]["name"].as_str().unwrap_or_default().into(), replicas });
                    }
                } else {
                    // Up: the new set grows while the total stays within replicas + maxSurge.
                    let total = old_total + desired(new);
                    let room = (replicas + surge - total).max(0);
                    let new_want = if olds.is_empty() { replicas } else { (desired(new) + room).min(replicas) };
                    if new_want != desired(new) {
                        actions.push(Action::Scale { name: new["metadata"]["name"].as_str().unwrap_or_default().into(), replicas: new_want });
                    }
                    // Down: old sets shrink while ready pods stay at replicas - maxUnavailable.
                    let ready: i64 = owned.iter().map(|s| count(s, "readyReplicas")).sum();
                    // Counted from the sets' reported ready pods: a status that lags only slows
                    // the rollout down. (Kubernetes also removes unhealthy old pods early;
                    // not yet done here, so old pods that never become ready hold a rollout
                    // with maxUnavailable 0.)
                    let mut removable = (ready - (replicas - unavailable)).max(0);
                    for s in &olds {
                        let cut = desired(s).min(removable);
                        if cut > 0 {
                            actions.push(Action::Scale { name: s["metadata"]["name"].as_str().unwrap_or_default().into(), replicas: desired(s) - cut });
                            removable -= cut;
                        }
                    }
                }
            }
        }
    }

    let updated = new.map_or(0, |s| count(s, "replicas"));
    let ready: i64 = owned.iter().map(|s| count(s, "readyReplicas")).sum();
    let total: i64 = owned.iter().map(|s| count(s, "replicas")).sum();
    let available_ok = ready >= replicas - unavailable;
    let done = updated == replicas && total == replicas && ready == replicas;
    let status = json!({
        "observedGeneration": meta["generation"].as_i64().unwrap_or(1),
        "replicas": total,
        "updatedReplicas": updated,
        "readyReplicas": ready,
        "availableReplicas": ready,
        "unavailableReplicas": (replicas - ready).max(0),
        "conditions": [
            {"type": "Available", "status": if available_ok { "True" } else { "False" },
             "reason": if available_ok { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" }},
            {"type": "Progressing", "status": "True",
             "reason": if paused { "DeploymentPaused" } else if done { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
             "message": format!("ReplicaSet \"{name}-{hash}\" {}", if done { "has successfully progressed." } else { "is progressing." })},
        ],
    });
    if d["status"] != status {
        actions.push(Action::Status(status));
    }
    actions
}

pub async fn run(store: ObjectStore, _cfg: ControlConfig) {
    let d_res = resources::by_plural("apps", "deployments").expect("deployments are registered");
    let rs_res = resources::by_plural("apps", "replicasets").expect("replicasets are registered");
    let lp = OwnerLoop::start(&store, d_res, rs_res, Duration::from_secs(10)).await;
    loop {
        lp.next_pass().await;
        let mut written = Written::default();
        for (d, sets) in lp.owners_with_children() {
            let ns = d["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            let name = d["metadata"]["name"].as_str().unwrap_or_default().to_string();
            for action in reconcile(&d, &sets) {
                let on_sets = !matches!(action, Action::Status(_));
                let result = match action {
                    Action::CreateReplicaSet(rs) => {
                        let message = format!("Scaled up replica set {} to {}", rs["metadata"]["name"].as_str().unwrap_or_default(), rs["spec"]["replicas"]);
                        on_success(store.create(rs_res, Some(&ns), rs).await, &store, &d, d_res, "ScalingReplicaSet", &message).await
                    }
                    Action::Scale { name, replicas } => {
                        let r = store.patch(rs_res, Some(&ns), &name, json!({"spec": {"replicas": replicas}}), false).await;
                        on_success(r, &store, &d, d_res, "ScalingReplicaSet", &format!("Scaled replica set {name} to {replicas}")).await
                    }
                    Action::SetRevision { name, revision } => {
                        let patch = json!({"metadata": {"annotations": {REVISION: revision.to_string()}}});
                        store.patch(rs_res, Some(&ns), &name, patch, false).await
                    }
                    Action::DeleteReplicaSet(name) => store.delete(rs_res, Some(&ns), &name, None).await,
                    Action::Status(status) => write_status(&store, d_res, &d, status).await,
                };
                written.record(result, on_sets, &name);
            }
        }
        lp.settle(&written).await;
    }
}

#[cfg(test)]
mod tests;
