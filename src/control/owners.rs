//! The loop shape shared by controllers of an owner kind with a child kind (Deployment →
//! ReplicaSet, ReplicaSet → Pod): informers on both, a pass on any change (and every
//! resync), each owner seen with its namespace's children, and — after the pass — a wait
//! until both informers show the pass's own writes. Also what the pod-owning controllers
//! (ReplicaSet, Job, DaemonSet) decide and how it is written.

use std::time::Duration;

use serde_json::Value;

use super::events::on_success;
use super::informer::{revision, Informer};
use crate::api::resources::Resource;
use crate::api::status::ApiError;
use crate::api::store::ObjectStore;

pub struct OwnerLoop {
    pub owners: Informer,
    pub children: Informer,
    resync: Duration,
}

/// The newest revision a pass wrote, per kind.
#[derive(Default)]
pub struct Written {
    owners: u64,
    children: u64,
}

impl Written {
    /// Note one write's outcome (`on_children`: it wrote the child kind).
    pub fn record(&mut self, result: Result<Value, ApiError>, on_children: bool, owner: &str) {
        match result {
            Ok(obj) => {
                let last = if on_children { &mut self.children } else { &mut self.owners };
                *last = (*last).max(revision(&obj));
            }
            Err(e) => tracing::debug!(%owner, error = %e, "controller action not applied; next pass"),
        }
    }
}

/// What a controller that owns pods decides for one owner.
#[derive(Debug, Clone, PartialEq)]
pub enum PodAction {
    Create(Value),
    Delete { namespace: String, name: String },
    Status(Value),
}

/// Write `actions` decided for `owner` (of `owner_res`): pods created and deleted
/// (gracefully), the owner's status compare-and-set; outcomes noted in `written`.
pub async fn apply_pod_actions(store: &ObjectStore, owner_res: &'static Resource, owner: &Value, actions: Vec<PodAction>, written: &mut Written) {
    let pods_res = crate::api::resources::by_plural("", "pods").expect("pods are registered");
    let ns = owner["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
    let name = owner["metadata"]["name"].as_str().unwrap_or_default().to_string();
    for action in actions {
        let on_pods = !matches!(action, PodAction::Status(_));
        let result = match action {
            PodAction::Create(pod) => {
                let message = format!("Created pod: {}", pod["metadata"]["name"].as_str().unwrap_or_default());
                on_success(store.create(pods_res, Some(&ns), pod).await, store, owner, owner_res, "SuccessfulCreate", &message).await
            }
            PodAction::Delete { namespace, name: pod } => {
                let r = store.delete_gracefully(pods_res, Some(&namespace), &pod, None, None).await;
                on_success(r, store, owner, owner_res, "SuccessfulDelete", &format!("Deleted pod: {pod}")).await
            }
            PodAction::Status(status) => {
                let finished = newly_finished(owner, &status);
                let r = write_status(store, owner_res, owner, status).await;
                if let (Ok(_), Some((normal, reason, message))) = (&r, finished) {
                    super::events::record(store, owner, owner_res, normal, &reason, &message).await;
                }
                r
            }
        };
        written.record(result, on_pods, &name);
    }
}

/// A Complete or Failed condition that `status` sets and the owner's current status does
/// not have (a Job finishing): whether it is normal, its reason and message, for an Event.
pub fn newly_finished(owner: &Value, status: &Value) -> Option<(bool, String, String)> {
    let is_true = |s: &Value, kind: &str| s["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == kind && c["status"] == "True").cloned();
    ["Complete", "Failed"].into_iter().find_map(|kind| {
        let c = is_true(status, kind).filter(|_| is_true(&owner["status"], kind).is_none())?;
        let reason = c["reason"].as_str().unwrap_or(kind).to_string();
        let message = c["message"].as_str().unwrap_or(kind).to_string();
        Some((kind == "Complete", reason, message))
    })
}

/// A pod from `template`, named `name` in `ns`, controlled by `owner` (an object of
/// `kind` = (apiVersion, kind)), with `labels` added to the template's.
pub fn pod_from_template(template: &Value, name: &str, ns: &str, owner: &Value, kind: (&str, &str), labels: &[(&str, &str)]) -> Value {
    let mut all = template["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    for (k, v) in labels {
        all.insert(k.to_string(), Value::String(v.to_string()));
    }
    let m = &owner["metadata"];
    let mut pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": all,
            "ownerReferences": [{"apiVersion": kind.0, "kind": kind.1, "name": m["name"], "uid": m["uid"], "controller": true, "blockOwnerDeletion": true}]},
        "spec": template["spec"].clone(),
    });
    if let Some(a) = template["metadata"]["annotations"].as_object() {
        pod["metadata"]["annotations"] = Value::Object(a.clone());
    }
    pod
}

/// A random 5-character name suffix, from Kubernetes' alphabet (no vowels, no look-alikes).
pub fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// Write `status` to `owner` (a compare-and-set at the revision the pass saw).
pub async fn write_status(store: &ObjectStore, res: &'static Resource, owner: &Value, status: Value) -> Result<Value, ApiError> {
    let m = &owner["metadata"];
    let patch = serde_json::json!({"metadata": {"resourceVersion": m["resourceVersion"]}, "status": status});
    store.patch(res, m["namespace"].as_str(), m["name"].as_str().unwrap_or_default(), patch, true).await
}

/// Each owner with the children whose controller reference names its uid (the only
/// children the reconcile functions act on), in one pass over the children: with 100
/// ReplicaSets of 100 pods, handing each owner every pod of its namespace copied 1,000,000
/// pods a pass (benches/reconcile.rs).
pub fn group_by_controller(owners: Vec<Value>, children: Vec<Value>) -> Vec<(Value, Vec<Value>)> {
    let mut by_uid: std::collections::HashMap<String, Vec<Value>> = std::collections::HashMap::new();
    for child in children {
        if let Some(uid) = controller_uid(&child).map(String::from) {
            by_uid.entry(uid).or_default().push(child);
        }
    }
    owners
        .into_iter()
        .map(|o| {
            let mine = o["metadata"]["uid"].as_str().and_then(|uid| by_uid.remove(uid)).unwrap_or_default();
            (o, mine)
        })
        .collect()
}

/// The uid in an object's controller reference.
fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)?["uid"].as_str()
}

impl OwnerLoop {
    pub async fn start(store: &ObjectStore, owners: &'static Resource, children: &'static Resource, resync: Duration) -> OwnerLoop {
        let (owners, children) = tokio::join!(Informer::start(store.clone(), owners), Informer::start(store.clone(), children));
        OwnerLoop { owners, children, resync }
    }

    /// Wait for a change of either kind, or the resync interval.
    pub async fn next_pass(&self) {
        tokio::select! {
            _ = self.owners.changed.notified() => {}
            _ = self.children.changed.notified() => {}
            _ = tokio::time::sleep(self.resync) => {}
        }
    }

    /// Every owner with its children. Only children controlled by one of the owners are
    /// copied out of the informer: a pod change woke every pod-owning controller, and
    /// copying every pod of the cluster for each was 13% of a head's CPU while 30 bare pods
    /// started (docs/benchmarks/pod-startup.md).
    pub fn owners_with_children(&self) -> Vec<(Value, Vec<Value>)> {
        let owners = self.owners.objects();
        if owners.is_empty() {
            return Vec::new();
        }
        let uids: std::collections::HashSet<&str> = owners.iter().filter_map(|o| o["metadata"]["uid"].as_str()).collect();
        let children = self.children.objects_where(|c| controller_uid(c).is_some_and(|uid| uids.contains(uid)));
        group_by_controller(owners, children)
    }

    /// Wait until the informers reflect this pass's writes (bounded).
    pub async fn settle(&self, w: &Written) {
        self.children.wait_for(w.children, Duration::from_secs(2)).await;
        self.owners.wait_for(w.owners, Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn children_go_to_their_controller_only() {
        let owner = |uid: &str| json!({"metadata": {"name": uid, "uid": uid}});
        let child = |name: &str, refs: Value| json!({"metadata": {"name": name, "ownerReferences": refs}});
        let grouped = group_by_controller(
            vec![owner("a"), owner("b"), owner("c")],
            vec![
                child("a-1", json!([{"uid": "a", "controller": true}])),
                child("b-1", json!([{"uid": "x", "controller": false}, {"uid": "b", "controller": true}])),
                child("a-2", json!([{"uid": "a", "controller": true}])),
                child("loose", json!([{"uid": "c", "controller": false}])),
                child("orphan", Value::Null),
            ],
        );
        let names = |i: usize| grouped[i].1.iter().map(|c| c["metadata"]["name"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!((names(0), names(1), names(2)), (vec!["a-1".to_string(), "a-2".to_string()], vec!["b-1".to_string()], vec![]));
    }

    #[test]
    fn a_job_finishing_is_told_once() {
        let cond = |kind: &str, reason: &str| json!({"conditions": [{"type": kind, "status": "True", "reason": reason, "message": "m"}]});
        let running = json!({"status": {"active": 1}});
        assert_eq!(newly_finished(&running, &cond("Complete", "CompletionsReached")), Some((true, "CompletionsReached".into(), "m".into())));
        assert_eq!(newly_finished(&running, &cond("Failed", "BackoffLimitExceeded")), Some((false, "BackoffLimitExceeded".into(), "m".into())));
        let done = json!({"status": cond("Complete", "CompletionsReached")});
        assert_eq!(newly_finished(&done, &cond("Complete", "CompletionsReached")), None, "already complete");
        assert_eq!(newly_finished(&running, &json!({"active": 2})), None);
    }
}
