//! The scheduler loop on the leader: pods without a node are placed with `sched::schedule`
//! over informer copies of nodes and pods; placements are committed in batches, one
//! proposal of compare-and-sets of the pods' `spec.nodeName` through the fenced store (one
//! at a time if a pod of the batch changed meanwhile), and a pod no node fits gets
//! `PodScheduled=False` with kube-scheduler's message. After binding, the loop waits for
//! its own writes to reach the informer, so the next pass counts them.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::informer::Informer;
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::ObjectStore;
use crate::sched::{self, Decision, Snapshot};

/// Pods waiting for a node, oldest first (then by name), as the scheduler takes them.
pub fn pending(pods: &[Pod]) -> Vec<&Pod> {
    let mut out: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| p.spec.as_ref().is_some_and(|s| s.node_name.as_deref().is_none_or(str::is_empty)))
        .filter(|p| p.spec.as_ref().and_then(|s| s.scheduler_name.as_deref()).is_none_or(|n| n == "default-scheduler" || n == "orch"))
        .collect();
    out.sort_by(|a, b| (&a.metadata.creation_timestamp, &a.metadata.name).cmp(&(&b.metadata.creation_timestamp, &b.metadata.name)));
    out
}

/// `pending`'s test on a pod as stored, read in place: the loop copies and parses the
/// cluster's pods and nodes only when some pod waits (most pod changes are of bound pods:
/// parsing every pod on each of them cost the head more than serving them).
pub fn waits_for_node(pod: &Value) -> bool {
    let spec = &pod["spec"];
    spec.is_object()
        && pod["metadata"]["deletionTimestamp"].is_null()
        && spec["nodeName"].as_str().is_none_or(str::is_empty)
        && spec["schedulerName"].as_str().is_none_or(|n| n == "default-scheduler" || n == "orch")
}

/// The PodScheduled=False condition for an unschedulable pod (None when it already says so).
pub fn unschedulable_patch(pod: &Value, message: &str, now: &str) -> Option<Value> {
    let current = pod["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled").cloned());
    if current.as_ref().is_some_and(|c| c["status"] == "False" && c["message"] == message) {
        return None;
    }
    let mut conditions: Vec<Value> = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
    conditions.retain(|c| c["type"] != "PodScheduled");
    conditions.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message, "lastTransitionTime": now}));
    Some(json!({"status": {"phase": "Pending", "conditions": conditions}}))
}

/// Bindings committed in one proposal at most.
const BIND_BATCH: usize = 64;

/// Commit `binds` (pod as read, node) in one proposal; if any pod changed since it was
/// read, bind them one at a time instead (those that changed are looked at next pass).
/// Returns the pods bound.
async fn bind(store: &ObjectStore, pods_res: &'static resources::Resource, binds: &[(Value, String)]) -> Vec<Value> {
    let items: Vec<(Value, Value)> = binds
        .iter()
        .map(|(pod, node)| {
            let mut next = pod.clone();
            next["spec"]["nodeName"] = node.clone().into();
            (pod.clone(), next)
        })
        .collect();
    match store.update_all(pods_res, &items).await {
        Ok(Some(bound)) => return bound,
        Ok(None) => tracing::debug!(pods = items.len(), "a pod of the batch changed; binding one at a time"),
        Err(e) => {
            tracing::debug!(error = %e, "bindings not committed; next pass");
            return vec![];
        }
    }
    let mut bound = Vec::new();
    for (pod, node) in binds {
        let (ns, name) = (pod["metadata"]["namespace"].as_str(), pod["metadata"]["name"].as_str().unwrap_or_default());
        let patch = json!({"metadata": {"resourceVersion": pod["metadata"]["resourceVersion"].clone()}, "spec": {"nodeName": node}});
        match store.patch(pods_res, ns, name, patch, false).await {
            Ok(obj) => bound.push(obj),
            Err(e) => tracing::debug!(pod = name, error = %e, "binding not committed; next pass"),
        }
    }
    bound
}

pub async fn run(store: ObjectStore, _cfg: ControlConfig) {
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    let nodes_res = resources::by_plural("", "nodes").expect("nodes are registered");
    let pods = Informer::start(store.clone(), pods_res).await;
    let nodes = Informer::start(store.clone(), nodes_res).await;
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    loop {
        // Wake on any change of either kind, and look again periodically regardless.
        tokio::select! {
            _ = pods.changed.notified() => {}
            _ = nodes.changed.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
        if pods.objects_where(waits_for_node).is_empty() {
            continue;
        }
        let pod_objs: Vec<Pod> = pods.objects().into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
        let node_objs: Vec<Node> = nodes.objects().into_iter().filter_map(|v| serde_json::from_value(v).ok()).collect();
        let waiting = pending(&pod_objs);
        if waiting.is_empty() {
            continue;
        }
        let mut snap = Snapshot::from_objects(&node_objs, &pod_objs);
        let infos: Vec<sched::PodInfo> = waiting.iter().map(|p| sched::snapshot::pod_info(p)).collect();
        let decisions = sched::schedule(&mut snap, &infos);
        let mut last_write = 0;
        let mut binds = Vec::new();
        for (decision, pod) in decisions.iter().zip(&waiting) {
            let (ns, name) = (pod.metadata.namespace.as_deref(), pod.metadata.name.as_deref().unwrap_or_default());
            let rv = pod.metadata.resource_version.clone().unwrap_or_default();
            match decision {
                Decision::Bind { node, .. } => binds.push((serde_json::to_value(pod).unwrap_or(Value::Null), node.clone())),
                Decision::Unschedulable { reasons, .. } => {
                    let message = sched::unschedulable_message(node_objs.len(), reasons);
                    let obj = serde_json::to_value(pod).unwrap_or(Value::Null);
                    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                    if let Some(mut patch) = unschedulable_patch(&obj, &message, &now) {
                        patch["metadata"] = json!({"resourceVersion": rv});
                        if store.patch(pods_res, ns, name, patch, true).await.is_ok() && failing.get(decision.pod()) != Some(&message) {
                            tracing::info!(pod = %decision.pod(), %message, "unschedulable");
                            super::events::record(&store, &obj, pods_res, false, "FailedScheduling", &message).await;
                        }
                    }
                    failing.insert(decision.pod().to_string(), message);
                }
            }
        }
        for batch in binds.chunks(BIND_BATCH) {
            let bound = bind(&store, pods_res, batch).await;
            for obj in &bound {
                let key = format!("{}/{}", obj["metadata"]["namespace"].as_str().unwrap_or_default(), obj["metadata"]["name"].as_str().unwrap_or_default());
                let node = obj["spec"]["nodeName"].as_str().unwrap_or_default();
                last_write = last_write.max(super::informer::revision(obj));
                tracing::info!(pod = %key, %node, "scheduled");
                failing.remove(&key);
            }
            // The Scheduled events go together (concurrent proposals share log appends).
            let events = bound.iter().map(|obj| {
                let message = format!(
                    "Successfully assigned {}/{} to {}",
                    obj["metadata"]["namespace"].as_str().unwrap_or_default(),
                    obj["metadata"]["name"].as_str().unwrap_or_default(),
                    obj["spec"]["nodeName"].as_str().unwrap_or_default()
                );
                let store = &store;
                async move { super::events::record(store, obj, pods_res, true, "Scheduled", &message).await }
            });
            futures::future::join_all(events).await;
        }
        pods.wait_for(last_write, Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_pods_are_unbound_alive_ours_and_oldest_first() {
        let pod = |name: &str, created: &str, node: Option<&str>| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": name, "creationTimestamp": created}, "spec": {"containers": [], "nodeName": node}})).unwrap()
        };
        let mut deleting = pod("d", "2026-01-01T00:00:00Z", None);
        deleting.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(chrono::Utc::now()));
        let mut other = pod("o", "2026-01-01T00:00:00Z", None);
        other.spec.as_mut().unwrap().scheduler_name = Some("someone-else".into());
        let pods = vec![pod("b", "2026-01-02T00:00:00Z", None), pod("a", "2026-01-03T00:00:00Z", None), pod("z", "2026-01-01T00:00:00Z", Some("n1")), deleting, other];
        let names: Vec<&str> = pending(&pods).iter().map(|p| p.metadata.name.as_deref().unwrap()).collect();
        assert_eq!(names, vec!["b", "a"]);
        // The quick test on stored objects agrees with `pending` on each of them.
        for p in &pods {
            let waits = waits_for_node(&serde_json::to_value(p).unwrap());
            assert_eq!(waits, !pending(std::slice::from_ref(p)).is_empty(), "{:?}", p.metadata.name);
        }
        assert!(!waits_for_node(&json!({"metadata": {"name": "no-spec"}})));
    }

    #[test]
    fn the_condition_is_written_once_per_message() {
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}});
        let patch = unschedulable_patch(&pod, "0/1 nodes are available: 1 Insufficient cpu.", "t").unwrap();
        let conditions = patch["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[1]["reason"], "Unschedulable");
        let after = json!({"status": patch["status"].clone()});
        assert_eq!(unschedulable_patch(&after, "0/1 nodes are available: 1 Insufficient cpu.", "t2"), None);
        assert!(unschedulable_patch(&after, "0/2 nodes are available: 2 Too many pods.", "t2").is_some());
    }
}
