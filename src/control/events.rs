//! Events: what the leader's controllers did, as core/v1 `Event` objects about the object
//! they acted on (`orchctl describe` and `get events` show them). Written best-effort (a
//! lost event is logged, never retried); the garbage collector removes those older than
//! `TTL`, as the Kubernetes API server does. `event` is pure.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::api::resources::{self, Resource};
use crate::api::store::ObjectStore;

/// How long events are kept.
pub const TTL: chrono::Duration = chrono::Duration::hours(1);

/// An event about `involved` (an object of `res`), with a unique `id` for its name.
pub fn event(involved: &Value, res: &Resource, normal: bool, reason: &str, message: &str, now: DateTime<Utc>, id: &str) -> Value {
    let m = &involved["metadata"];
    let ns = m["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or("default");
    let name = m["name"].as_str().unwrap_or("unknown");
    let at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": format!("{name}.{id}"), "namespace": ns},
        "involvedObject": {"apiVersion": res.api_version(), "kind": res.kind, "name": name, "namespace": m["namespace"], "uid": m["uid"]},
        "type": if normal { "Normal" } else { "Warning" },
        "reason": reason, "message": message,
        "source": {"component": "orch-controller-manager"}, "reportingComponent": "orch-controller-manager",
        "firstTimestamp": at, "lastTimestamp": at, "count": 1,
    })
}

/// Record an event; a failure is only logged.
pub async fn record(store: &ObjectStore, involved: &Value, res: &Resource, normal: bool, reason: &str, message: &str) {
    let events = resources::by_plural("", "events").expect("events are registered");
    let id = format!("{:016x}", rand::random::<u64>());
    let e = event(involved, res, normal, reason, message, Utc::now(), &id);
    let ns = e["metadata"]["namespace"].as_str().map(str::to_string);
    if let Err(err) = store.create(events, ns.as_deref(), e).await {
        tracing::debug!(reason, error = %err, "event not recorded");
    }
}

/// Pass `result` through, recording the event when the write it reports succeeded, and a
/// Warning when a create or delete failed (`SuccessfulCreate` → `FailedCreate` "Error
/// creating: ...", as Kubernetes' controllers report a pod refused by a quota).
pub async fn on_success<T, E: std::fmt::Display>(result: Result<T, E>, store: &ObjectStore, involved: &Value, res: &Resource, reason: &str, message: &str) -> Result<T, E> {
    match &result {
        Ok(_) => record(store, involved, res, true, reason, message).await,
        Err(e) => {
            if let Some((failed, doing)) = failure(reason) {
                record(store, involved, res, false, failed, &format!("Error {doing}: {}", refusal(&e.to_string()))).await;
            }
        }
    }
    result
}

/// The Warning reason and the verb for the failure of what `reason` reports.
fn failure(reason: &str) -> Option<(&'static str, &'static str)> {
    match reason {
        "SuccessfulCreate" => Some(("FailedCreate", "creating")),
        "SuccessfulDelete" => Some(("FailedDelete", "deleting")),
        _ => None,
    }
}

/// An API error's message without its code and reason (`403 (Forbidden): pods "x" is ...`).
fn refusal(error: &str) -> &str {
    error.split_once("): ").map_or(error, |(_, m)| m)
}

/// Whether event `e` is older than `TTL` at `now`.
pub fn expired(e: &Value, now: DateTime<Utc>) -> bool {
    let last = e["lastTimestamp"].as_str().or(e["metadata"]["creationTimestamp"].as_str());
    last.and_then(|t| DateTime::parse_from_rfc3339(t).ok()).is_some_and(|t| now - t.with_timezone(&Utc) > TTL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_reported_as_kubernetes_reports_them() {
        assert_eq!(failure("SuccessfulCreate"), Some(("FailedCreate", "creating")));
        assert_eq!(failure("ScalingReplicaSet"), None);
        let e = crate::api::status::ApiError::forbidden("pods \"p\" is forbidden: exceeded quota: q").to_string();
        assert_eq!(refusal(&e), "pods \"p\" is forbidden: exceeded quota: q");
    }

    #[test]
    fn an_event_names_its_object_and_ages_out_after_an_hour() {
        let rs = resources::by_plural("apps", "replicasets").unwrap();
        let owner = json!({"metadata": {"name": "web-abc", "namespace": "shop", "uid": "u-1"}});
        let now: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
        let e = event(&owner, rs, true, "SuccessfulCreate", "Created pod: web-abc-x", now, "00ff");
        assert_eq!(e["metadata"], json!({"name": "web-abc.00ff", "namespace": "shop"}));
        assert_eq!(e["involvedObject"], json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-abc", "namespace": "shop", "uid": "u-1"}));
        assert_eq!((e["type"].as_str(), e["lastTimestamp"].as_str()), (Some("Normal"), Some("2026-01-01T00:00:00Z")));
        assert!(!expired(&e, now + chrono::Duration::minutes(59)));
        assert!(expired(&e, now + chrono::Duration::minutes(61)));
        let node = json!({"metadata": {"name": "n1", "uid": "u-2"}});
        let nodes = resources::by_plural("", "nodes").unwrap();
        assert_eq!(event(&node, nodes, false, "NodeNotReady", "m", now, "1")["metadata"]["namespace"], "default", "cluster objects' events go to default");
    }
}
