//! Node lifecycle: a node whose heartbeats stop for `node_monitor_grace` is marked NotReady
//! (Ready=Unknown, taints `node.kubernetes.io/unreachable` NoSchedule and NoExecute), and
//! after `pod_eviction_timeout` more its pods are evicted (deleted; their controllers
//! replace them elsewhere). Heartbeats are judged from the later of their own time and this
//! leader's takeover, so a failover never finds every node late (Nomad's lesson). Pods of
//! StatefulSets and DaemonSets, and pods tolerating the unreachable taint, are not evicted:
//! a StatefulSet pod moves only once its Node object is deleted, when the pods of nodes that
//! no longer exist are removed (Kubernetes' pod GC). `judge` and `evictable` are pure.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::informer::{revision, Informer};
use super::ControlConfig;
use crate::api::resources;
use crate::api::store::{Consistency, ObjectStore};

pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

/// What the leader makes of a node's heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Fresh,
    /// Silent past the grace: NotReady.
    Unreachable,
    /// Silent past the grace and the eviction timeout: its pods go.
    Evict,
}

fn time(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map(|t| t.with_timezone(&Utc))
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")
}

/// Judge `node` at `now`; heartbeats count from `leading_since` at the earliest.
pub fn judge(node: &Value, now: DateTime<Utc>, leading_since: DateTime<Utc>, grace: Duration, eviction: Duration) -> Health {
    let heard = ready_condition(node).and_then(|c| time(&c["lastHeartbeatTime"])).unwrap_or(leading_since).max(leading_since);
    let silent = (now - heard).to_std().unwrap_or_default();
    if silent <= grace {
        Health::Fresh
    } else if silent <= grace + eviction {
        Health::Unreachable
    } else {
        Health::Evict
    }
}

fn has_unreachable_taint(node: &Value) -> bool {
    node["spec"]["taints"].as_array().is_some_and(|ts| ts.iter().any(|t| t["key"] == UNREACHABLE))
}

/// The merge patch that marks `node` NotReady (its other conditions kept), or None if it is.
pub fn mark_unreachable(node: &Value, now: &str) -> Option<Value> {
    let marked = ready_condition(node).is_some_and(|c| c["status"] == "Unknown");
    if marked && has_unreachable_taint(node) {
        return None;
    }
    let mut conditions: Vec<Value> = node["status"]["conditions"].as_array().cloned().unwrap_or_default();
    let last_heartbeat = ready_condition(node).map(|c| c["lastHeartbeatTime"].clone()).unwrap_or(Value::Null);
    conditions.retain(|c| c["type"] != "Ready");
    conditions.insert(0, json!({"type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "orchd stopped posting node status", "lastHeartbeatTime": last_heartbeat, "lastTransitionTime": now}));
    let mut taints: Vec<Value> = node["spec"]["taints"].as_array().cloned().unwrap_or_default();
    taints.retain(|t| t["key"] != UNREACHABLE);
    taints.push(json!({"key": UNREACHABLE, "effect": "NoSchedule", "timeAdded": now}));
    taints.push(json!({"key": UNREACHABLE, "effect": "NoExecute", "timeAdded": now}));
    Some(json!({"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": taints}, "status": {"conditions": conditions}}))
}

/// The merge patch that lifts the unreachable taints from a node heard from again.
pub fn clear_unreachable(node: &Value) -> Option<Value> {
    if !has_unreachable_taint(node) {
        return None;
    }
    let taints: Vec<Value> = node["spec"]["taints"].as_array().into_iter().flatten().filter(|t| t["key"] != UNREACHABLE).cloned().collect();
    Some(json!({"metadata": {"resourceVersion": node["metadata"]["resourceVersion"]}, "spec": {"taints": taints}}))
}

/// Whether `pod` goes when its node is evicted.
pub fn evictable(pod: &Value) -> bool {
    let owner_kind = pod["metadata"]["ownerReferences"].as_array().and_then(|rs| rs.iter().find(|r| r["controller"] == true)).map(|r| r["kind"].clone());
    let kept_by_owner = matches!(owner_kind.as_ref().and_then(Value::as_str), Some("StatefulSet" | "DaemonSet"));
    let tolerates = pod["spec"]["tolerations"].as_array().is_some_and(|ts| {
        ts.iter().any(|t| (t["key"] == UNREACHABLE || (t["key"].is_null() && t["operator"] == "Exists")) && (t["effect"].is_null() || t["effect"] == "NoExecute") && t["tolerationSeconds"].is_null())
    });
    let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
    !kept_by_owner && !tolerates && !finished && pod["metadata"]["deletionTimestamp"].is_null()
}

pub async fn run(store: ObjectStore, cfg: ControlConfig) {
    let nodes_res = resources::by_plural("", "nodes").expect("nodes are registered");
    let pods_res = resources::by_plural("", "pods").expect("pods are registered");
    let nodes = Informer::start(store.clone(), nodes_res).await;
    let pods = Informer::start(store.clone(), pods_res).await;
    let leading_since = Utc::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let now_s = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        let node_list = nodes.objects();
        let mut evicting = BTreeSet::new();
        for node in &node_list {
            let name = node["metadata"]["name"].as_str().unwrap_or_default();
            let health = judge(node, now, leading_since, cfg.node_monitor_grace, cfg.pod_eviction_timeout);
            let patch = match health {
                Health::Fresh => clear_unreachable(node),
                Health::Unreachable | Health::Evict => mark_unreachable(node, &now_s),
            };
            if let Some(patch) = patch {
                match store.patch(nodes_res, None, name, patch, false).await {
                    Ok(_) => {
                        tracing::info!(node = name, ?health, "node health changed");
                        let (reason, message) = match health {
                            Health::Fresh => ("NodeReady", format!("Node {name} status is now: NodeReady")),
                            _ => ("NodeNotReady", format!("Node {name} status is now: NodeNotReady (no heartbeat)")),
                        };
                        super::events::record(&store, node, nodes_res, health == Health::Fresh, reason, &message).await;
                    }
                    Err(e) => tracing::debug!(node = name, error = %e, "node not updated; next tick"),
                }
            }
            if health == Health::Evict {
                evicting.insert(name.to_string());
            }
        }
        let known: BTreeSet<&str> = node_list.iter().filter_map(|n| n["metadata"]["name"].as_str()).collect();
        // Only pods of evicted or vanished nodes are copied out (looked at in place every tick).
        let affected = pods.objects_where(|p| p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty() && (evicting.contains(n) || !known.contains(n))));
        for pod in affected {
            let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else { continue };
            let (ns, name) = (pod["metadata"]["namespace"].as_str(), pod["metadata"]["name"].as_str().unwrap_or_default());
            if evicting.contains(node) && evictable(&pod) {
                match store.delete_gracefully(pods_res, ns, name, Some(revision(&pod)), None).await {
                    Ok(_) => {
                        tracing::info!(pod = name, node, "evicted: node unreachable");
                        super::events::record(&store, &pod, pods_res, true, "TaintManagerEviction", &format!("Marking for deletion Pod {}/{name}", ns.unwrap_or_default())).await;
                    }
                    Err(e) => tracing::debug!(pod = name, error = %e, "not evicted; next tick"),
                }
            } else if !known.contains(node) {
                // Its node is gone: confirm, then remove the pod object at once (no kubelet
                // is left to finish a graceful deletion).
                if let Err(e) = store.get(nodes_res, None, node, Consistency::Linearizable).await {
                    if e.code == 404 {
                        match store.delete(pods_res, ns, name, Some(revision(&pod))).await {
                            Ok(_) => tracing::info!(pod = name, node, "removed: its node no longer exists"),
                            Err(e) => tracing::debug!(pod = name, error = %e, "not removed; next tick"),
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn node(heartbeat: &str) -> Value {
        json!({"metadata": {"name": "n1", "resourceVersion": "7"}, "spec": {"taints": [{"key": "gpu", "effect": "NoSchedule"}]},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}, {"type": "ServiceProxy", "status": "True"}]}})
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn silence_past_the_grace_is_unreachable_and_past_the_timeout_evicts() {
        let since = at("2026-01-01T00:00:00Z");
        let n = node("2026-01-01T00:01:00Z");
        assert_eq!(judge(&n, at("2026-01-01T00:01:40Z"), since, 40 * S, 60 * S), Health::Fresh);
        assert_eq!(judge(&n, at("2026-01-01T00:01:41Z"), since, 40 * S, 60 * S), Health::Unreachable);
        assert_eq!(judge(&n, at("2026-01-01T00:02:41Z"), since, 40 * S, 60 * S), Health::Evict);
    }

    #[test]
    fn a_new_leader_gives_every_node_the_full_grace() {
        let n = node("2026-01-01T00:00:00Z");
        let took_over = at("2026-01-01T00:10:00Z");
        assert_eq!(judge(&n, at("2026-01-01T00:10:30Z"), took_over, 40 * S, 60 * S), Health::Fresh, "old heartbeat, fresh leader");
        assert_eq!(judge(&n, at("2026-01-01T00:10:41Z"), took_over, 40 * S, 60 * S), Health::Unreachable);
        assert_eq!(judge(&json!({"metadata": {"name": "new"}}), at("2026-01-01T00:10:41Z"), took_over, 40 * S, 60 * S), Health::Unreachable, "never heard");
    }

    #[test]
    fn marking_keeps_other_conditions_and_taints_and_clearing_undoes_it() {
        let n = node("2026-01-01T00:00:00Z");
        let patch = mark_unreachable(&n, "2026-01-01T00:01:00Z").unwrap();
        let mut marked = n.clone();
        crate::api::object::merge_patch(&mut marked, &patch);
        let ready = ready_condition(&marked).unwrap();
        assert_eq!((ready["status"].as_str(), ready["lastHeartbeatTime"].as_str()), (Some("Unknown"), Some("2026-01-01T00:00:00Z")));
        assert_eq!(marked["status"]["conditions"].as_array().unwrap().len(), 2);
        let taints: Vec<(String, String)> = marked["spec"]["taints"].as_array().unwrap().iter().map(|t| (t["key"].as_str().unwrap().into(), t["effect"].as_str().unwrap().into())).collect();
        assert_eq!(taints, vec![("gpu".into(), "NoSchedule".into()), (UNREACHABLE.into(), "NoSchedule".into()), (UNREACHABLE.into(), "NoExecute".into())]);
        assert_eq!(mark_unreachable(&marked, "2026-01-01T00:02:00Z"), None, "marked once");
        let cleared = clear_unreachable(&marked).unwrap();
        assert_eq!(cleared["spec"]["taints"], json!([{"key": "gpu", "effect": "NoSchedule"}]));
        assert_eq!(clear_unreachable(&n), None);
    }

    #[test]
    fn statefulset_and_daemonset_pods_and_tolerating_pods_stay() {
        let pod = |kind: &str| json!({"metadata": {"name": "p", "ownerReferences": [{"kind": kind, "controller": true}]}, "status": {"phase": "Running"}});
        assert!(evictable(&pod("ReplicaSet")));
        assert!(!evictable(&pod("StatefulSet")));
        assert!(!evictable(&pod("DaemonSet")));
        let mut tolerant = pod("ReplicaSet");
        tolerant["spec"] = json!({"tolerations": [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]});
        assert!(!evictable(&tolerant));
        tolerant["spec"]["tolerations"][0]["tolerationSeconds"] = json!(30);
        assert!(evictable(&tolerant), "a bounded toleration is treated as none (not timed here)");
        let mut done = pod("ReplicaSet");
        done["status"]["phase"] = json!("Succeeded");
        assert!(!evictable(&done));
    }
}
