//! The garbage collector (background cascading deletion): a ReplicaSet, Pod or Job whose
//! every owner (by `ownerReferences` uid) is gone is deleted; pods gracefully. Owners are
//! the workload kinds; a reference to any other kind keeps its object. Before deleting, each
//! owner is looked up again with a linearizable read, so a stale informer (or one still
//! listing) can never make it delete a live object's children. Events older than
//! `events::TTL` are removed here too. `dangling` is pure.

use std::collections::BTreeSet;

use serde_json::Value;

use super::informer::Informer;
use super::ControlConfig;
use crate::api::resources::{self, Resource};
use crate::api::store::{Consistency, ObjectStore};

/// Kinds that own others, by (apiVersion, kind).
const OWNERS: [(&str, &str); 6] = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "DaemonSet"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("batch/v1", "CronJob"),
];

/// Kinds collected when their owners go.
const DEPENDENTS: [(&str, &str); 3] = [("apps", "replicasets"), ("", "pods"), ("batch", "jobs")];

fn owner_resource(reference: &Value) -> Option<&'static Resource> {
    let (api, kind) = (reference["apiVersion"].as_str()?, reference["kind"].as_str()?);
    OWNERS.iter().any(|(a, k)| *a == api && *k == kind).then(|| resources::by_kind(api, kind)).flatten()
}

/// Whether `dependent` has owners of workload kinds and none of them is in `live` (uids).
/// A reference to another kind counts as alive: this collector does not know its owners.
pub fn dangling(dependent: &Value, live: &BTreeSet<String>) -> bool {
    let refs = dependent["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    !refs.is_empty()
        && refs.iter().all(|r| owner_resource(r).is_some() && r["uid"].as_str().is_some_and(|uid| !live.contains(uid)))
        && dependent["metadata"]["deletionTimestamp"].is_null()
}

/// Confirm with a linearizable read that no owner of `dependent` exists with its uid.
async fn owners_gone(store: &ObjectStore, dependent: &Value) -> bool {
    let ns = dependent["metadata"]["namespace"].as_str();
    for r in dependent["metadata"]["ownerReferences"].as_array().into_iter().flatten() {
        let (Some(res), Some(name)) = (owner_resource(r), r["name"].as_str()) else { return false };
        match store.get(res, ns, name, Consistency::Linearizable).await {
            Ok(owner) if owner["metadata"]["uid"] == r["uid"] => return false,
            Ok(_) => {}
            Err(e) if e.code == 404 => {}
            Err(_) => return false,
        }
    }
    true
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let owners: Vec<Informer> =
        futures::future::join_all(OWNERS.iter().filter_map(|(api, kind)| resources::by_kind(api, kind)).map(|res| Informer::start(store.clone(), res))).await;
    let dependent_kinds: Vec<&'static Resource> = DEPENDENTS.iter().filter_map(|(group, plural)| resources::by_plural(group, plural)).collect();
    let informers = futures::future::join_all(dependent_kinds.iter().map(|res| Informer::start(store.clone(), res))).await;
    let dependents: Vec<(&'static Resource, Informer)> = dependent_kinds.into_iter().zip(informers).collect();
    let events_res = resources::by_plural("", "events").expect("events are registered");
    let events = Informer::start(store.clone(), events_res).await;
    loop {
        let started = tokio::time::Instant::now();
        let now = chrono::Utc::now();
        for e in events.objects().into_iter().filter(|e| super::events::expired(e, now)) {
            let (ns, name) = (e["metadata"]["namespace"].as_str(), e["metadata"]["name"].as_str().unwrap_or_default());
            if let Err(err) = store.delete(events_res, ns, name, Some(super::informer::revision(&e))).await {
                tracing::debug!(name, error = %err, "expired event not removed; next pass");
            }
        }
        let live: BTreeSet<String> =
            owners.iter().flat_map(|i| i.objects()).filter_map(|o| o["metadata"]["uid"].as_str().map(String::from)).collect();
        for (res, informer) in &dependents {
            for dep in informer.objects_where(|d| dangling(d, &live)) {
                if !owners_gone(&store, &dep).await {
                    continue;
                }
                let (ns, name) = (dep["metadata"]["namespace"].as_str(), dep["metadata"]["name"].as_str().unwrap_or_default());
                let expected = super::informer::revision(&dep);
                match store.delete_gracefully(res, ns, name, Some(expected), None).await {
                    Ok(_) => tracing::info!(kind = res.kind, ?ns, name, "garbage collected: its owners are gone"),
                    Err(e) => tracing::debug!(kind = res.kind, ?ns, name, error = %e, "not collected; next pass"),
                }
            }
        }
        let changed = dependents.iter().map(|(_, i)| i.changed.notified()).chain(owners.iter().map(|i| i.changed.notified()));
        tokio::select! {
            _ = futures::future::select_all(changed.map(Box::pin)) => {}
            _ = tokio::time::sleep(cfg.resync) => {}
        }
        // A pass looks at every dependent: at most one a second, however busy the pods are.
        tokio::time::sleep_until(started + std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn dep(refs: Value) -> Value {
        json!({"metadata": {"name": "web-1", "namespace": "default", "ownerReferences": refs}})
    }

    #[test]
    fn only_objects_whose_every_workload_owner_is_gone_dangle() {
        let live: BTreeSet<String> = ["rs-live".to_string()].into();
        let rs = |uid: &str| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": uid});
        assert!(dangling(&dep(json!([rs("rs-gone")])), &live));
        assert!(!dangling(&dep(json!([rs("rs-live")])), &live));
        assert!(!dangling(&dep(json!([rs("rs-gone"), rs("rs-live")])), &live), "one live owner keeps it");
        assert!(!dangling(&dep(json!([])), &live), "no owners: not ours to collect");
        assert!(!dangling(&json!({"metadata": {"name": "bare"}}), &live));
        let foreign = json!({"apiVersion": "example.com/v1", "kind": "Thing", "name": "t", "uid": "x"});
        assert!(!dangling(&dep(json!([rs("rs-gone"), foreign])), &live), "an owner of an unknown kind counts as alive");
        let mut going = dep(json!([rs("rs-gone")]));
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert!(!dangling(&going, &live), "already being deleted");
    }
}
