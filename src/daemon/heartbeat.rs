//! Node registration and heartbeats: each node keeps its Node object's Ready condition
//! fresh through the API (its own, which forwards writes to the leader). The object
//! builders are pure; the loop does the I/O.

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::config::Role;
use crate::api::{API_ADDR_ANNOTATION, ROLE_LABEL};
use crate::client::{ApiClient, HttpError};
use crate::clock::Clock;

pub struct Identity {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub api_addr: String,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Head => "head",
        Role::Worker => "worker",
    }
}

fn ready_condition(now: &str) -> Value {
    json!({"type": "Ready", "status": "True", "reason": "OrchdReady", "message": "orchd is posting heartbeats",
        "lastHeartbeatTime": now, "lastTransitionTime": now})
}

/// The Node object a node registers itself with.
pub fn node_object(id: &Identity, now: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": id.name,
            "labels": {ROLE_LABEL: role_name(id.role), "kubernetes.io/hostname": id.name},
            "annotations": {API_ADDR_ANNOTATION: id.api_addr},
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": id.address}, {"type": "Hostname", "address": id.name}],
            "conditions": [ready_condition(now)],
        },
    })
}

/// The merge patch one heartbeat sends to `nodes/NAME/status`.
pub fn heartbeat_patch(now: &str) -> Value {
    json!({"status": {"conditions": [ready_condition(now)]}})
}

/// Register, then heartbeat every `interval`, forever. Failures are logged and retried.
pub async fn run(api_base: String, id: Identity, interval: Duration, clock: std::sync::Arc<dyn Clock>) {
    let client = ApiClient::new(Duration::from_secs(10));
    let nodes = format!("{api_base}/api/v1/nodes");
    let mut registered = false;
    loop {
        let now = clock.now_rfc3339();
        let result = if registered {
            let url = format!("{nodes}/{}/status", id.name);
            client.json_as(Method::PATCH, &url, Some(&heartbeat_patch(&now)), "application/merge-patch+json").await.map(|_| ())
        } else {
            match client.json(Method::POST, &nodes, Some(&node_object(&id, &now))).await {
                Err(e) if e.downcast_ref::<HttpError>().is_some_and(|h| h.code == 409) => Ok(()),
                other => other.map(|_| ()),
            }
            .map(|_| registered = true)
        };
        match result {
            Ok(()) => tracing::debug!(node = %id.name, "heartbeat"),
            Err(e) => {
                // A 404 means the Node object was deleted: register again.
                if e.downcast_ref::<HttpError>().is_some_and(|h| h.code == 404) {
                    registered = false;
                }
                tracing::warn!(error = %e, "node heartbeat failed");
            }
        }
        tokio::time::sleep(if registered { interval } else { Duration::from_millis(500) }).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_object_carries_role_and_address() {
        let id = Identity { name: "w1".into(), role: Role::Worker, address: "10.0.0.9".into(), api_addr: "10.0.0.9:6443".into() };
        let n = node_object(&id, "2026-01-01T00:00:00Z");
        assert_eq!(n["metadata"]["labels"][ROLE_LABEL], "worker");
        assert_eq!(n["status"]["addresses"][0]["address"], "10.0.0.9");
        assert_eq!(heartbeat_patch("t")["status"]["conditions"][0]["lastHeartbeatTime"], "t");
        // The object is a valid Node for the API's own validation.
        crate::api::resources::lookup("nodes").unwrap().validate(n).unwrap();
    }
}
