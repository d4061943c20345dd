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
use crate::kubelet::runtime::ImageInfo;

pub struct Identity {
    pub name: String,
    pub role: Role,
    pub address: String,
    pub api_addr: String,
    /// What the node offers pods (None on a node without the kubelet role).
    pub resources: Option<Resources>,
    /// The proxy role's state, reported as the `ServiceProxy` condition.
    pub proxy: Option<crate::services::proxy::SharedStatus>,
    /// The images the kubelet found in the runtime (None without the kubelet role).
    pub images: Option<crate::kubelet::runtime::SharedImages>,
}

/// A node's capacity as Kubernetes counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpus: u64,
    pub memory_kib: u64,
    pub max_pods: u64,
}

impl Resources {
    /// This host's CPUs and memory (from /proc/meminfo).
    pub fn of_host(max_pods: u64) -> Resources {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().find_map(|l| l.strip_prefix("MemTotal:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())))
            .unwrap_or(0);
        Resources { cpus, memory_kib, max_pods }
    }

    fn quantities(&self) -> Value {
        json!({"cpu": self.cpus.to_string(), "memory": format!("{}Ki", self.memory_kib), "pods": self.max_pods.to_string()})
    }
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

/// The proxy's mode and last sync as a node condition (`kubectl describe node` shows it).
fn proxy_condition(p: &crate::services::proxy::ProxyStatus, now: &str) -> Value {
    let synced = p.last_sync.is_some() && p.last_error.is_none();
    let message = match (&p.last_sync, &p.last_error) {
        (_, Some(e)) => format!("{} mode; last sync failed: {e}", p.mode),
        (Some(t), None) => format!("{} mode; last sync {t}; {} virtual services", p.mode, p.virtual_services),
        (None, None) => format!("{} mode; not synced yet", p.mode),
    };
    json!({"type": "ServiceProxy", "status": if synced { "True" } else { "False" }, "reason": p.mode,
        "message": message, "lastHeartbeatTime": now, "lastTransitionTime": p.last_sync.as_deref().unwrap_or(now)})
}

fn conditions(id: &Identity, now: &str) -> Value {
    let mut c = vec![ready_condition(now)];
    if let Some(p) = &id.proxy {
        c.push(proxy_condition(&p.lock().expect("proxy status lock"), now));
    }
    Value::Array(c)
}

/// Most images a Node's status lists (as the kubelet's `nodeStatusMaxImages`).
const MAX_IMAGES: usize = 50;

/// `status.images`: the largest images first, each by its name and by `repository@digest`.
pub fn images_status(images: &[ImageInfo]) -> Value {
    let mut sorted: Vec<&ImageInfo> = images.iter().collect();
    sorted.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.name.cmp(&b.name)));
    let entries = sorted.into_iter().take(MAX_IMAGES).map(|i| json!({"names": [crate::kubelet::pull::digest_name(&i.name, &i.digest), i.name], "sizeBytes": i.size}));
    Value::Array(entries.collect())
}

/// The status fields every heartbeat refreshes.
fn status_fields(id: &Identity, now: &str, status: &mut Value) {
    status["conditions"] = conditions(id, now);
    if let Some(r) = &id.resources {
        status["capacity"] = r.quantities();
        status["allocatable"] = r.quantities();
    }
    if let Some(images) = &id.images {
        status["images"] = images_status(&images.lock().expect("images lock"));
    }
}

/// The Node object a node registers itself with.
pub fn node_object(id: &Identity, now: &str) -> Value {
    let mut labels = json!({ROLE_LABEL: role_name(id.role), "kubernetes.io/hostname": id.name,
        "kubernetes.io/os": "linux", "kubernetes.io/arch": arch()});
    if id.role != Role::Worker {
        // As k3s marks its servers (kubectl get nodes shows the role).
        labels["node-role.kubernetes.io/control-plane"] = "true".into();
    }
    let mut node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": id.name,
            "labels": labels,
            "annotations": {API_ADDR_ANNOTATION: id.api_addr},
        },
        "status": {
            "addresses": [{"type": "InternalIP", "address": id.address}, {"type": "Hostname", "address": id.name}],
            "nodeInfo": node_info(),
        },
    });
    status_fields(id, now, &mut node["status"]);
    node
}

/// The architecture as Kubernetes names it (Go's GOARCH).
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn node_info() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_default();
    let os = read("/etc/os-release").lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_string())).unwrap_or_default();
    json!({
        "kubeletVersion": format!("orch-{}", env!("CARGO_PKG_VERSION")),
        "kernelVersion": read("/proc/sys/kernel/osrelease"),
        "osImage": os,
        "operatingSystem": "linux",
        "architecture": arch(),
        "containerRuntimeVersion": "containerd",
        "machineID": read("/etc/machine-id"),
        "bootID": read("/proc/sys/kernel/random/boot_id"),
        "systemUUID": "",
        "kubeProxyVersion": "",
    })
}

/// The merge patch one heartbeat sends to `nodes/NAME/status`.
pub fn heartbeat_patch(id: &Identity, now: &str) -> Value {
    let mut patch = json!({"status": {}});
    status_fields(id, now, &mut patch["status"]);
    patch
}

/// Register, then heartbeat every `interval`, forever. Failures are logged and retried.
pub async fn run(client: ApiClient, api_base: String, id: Identity, interval: Duration, clock: std::sync::Arc<dyn Clock>) {
    let client = client.with_timeout(Duration::from_secs(10));
    let nodes = format!("{api_base}/api/v1/nodes");
    let mut registered = false;
    loop {
        let now = clock.now_rfc3339();
        let result = if registered {
            let url = format!("{nodes}/{}/status", id.name);
            client.json_as(Method::PATCH, &url, Some(&heartbeat_patch(&id, &now)), "application/merge-patch+json").await.map(|_| ())
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
        let resources = Some(Resources { cpus: 2, memory_kib: 2048, max_pods: 110 });
        let id = Identity { name: "w1".into(), role: Role::Worker, address: "10.0.0.9".into(), api_addr: "10.0.0.9:6443".into(), resources, proxy: None, images: None };
        let n = node_object(&id, "2026-01-01T00:00:00Z");
        assert_eq!(n["metadata"]["labels"][ROLE_LABEL], "worker");
        assert!(n["metadata"]["labels"].get("node-role.kubernetes.io/control-plane").is_none());
        let head = Identity { name: "h1".into(), role: Role::Head, address: "10.0.0.8".into(), api_addr: "10.0.0.8:6443".into(), resources: None, proxy: None, images: None };
        let head = node_object(&head, "2026-01-01T00:00:00Z");
        assert_eq!(head["metadata"]["labels"]["node-role.kubernetes.io/control-plane"], "true");
        assert_eq!(n["status"]["addresses"][0]["address"], "10.0.0.9");
        assert_eq!(n["status"]["allocatable"], json!({"cpu": "2", "memory": "2048Ki", "pods": "110"}));
        assert_eq!(heartbeat_patch(&id, "t")["status"]["conditions"][0]["lastHeartbeatTime"], "t");
        assert_eq!(heartbeat_patch(&id, "t")["status"]["capacity"]["pods"], "110");
        // The object is a valid Node for the API's own validation.
        crate::api::resources::lookup("nodes").unwrap().validate(n).unwrap();
    }

    #[test]
    fn the_proxy_reports_its_mode_and_last_sync_as_a_condition() {
        let status = crate::services::proxy::ProxyStatus { mode: "nftables".into(), last_sync: Some("t0".into()), virtual_services: 3, last_error: None, ..Default::default() };
        let id = Identity { name: "w1".into(), role: Role::Worker, address: "a".into(), api_addr: "a".into(), resources: None,
            proxy: Some(std::sync::Arc::new(std::sync::Mutex::new(status))), images: None };
        let c = &heartbeat_patch(&id, "t1")["status"]["conditions"][1];
        assert_eq!((c["type"].as_str(), c["status"].as_str(), c["reason"].as_str()), (Some("ServiceProxy"), Some("True"), Some("nftables")));
        assert_eq!(c["message"], "nftables mode; last sync t0; 3 virtual services");
        id.proxy.as_ref().unwrap().lock().unwrap().last_error = Some("nft -f failed".into());
        assert_eq!(heartbeat_patch(&id, "t2")["status"]["conditions"][1]["status"], "False");
    }

    #[test]
    fn images_are_reported_largest_first_by_name_and_digest() {
        let image = |name: &str, size| ImageInfo { name: name.into(), digest: format!("sha256:{size}"), size };
        let shared = std::sync::Arc::new(std::sync::Mutex::new(vec![image("orch.local/busybox:1.35", 10), image("reg.test:5000/app:2", 30)]));
        let id = Identity { name: "w1".into(), role: Role::Worker, address: "a".into(), api_addr: "a".into(), resources: None, proxy: None,
            images: Some(shared.clone()) };
        let patch = heartbeat_patch(&id, "t");
        assert_eq!(patch["status"]["images"], json!([
            {"names": ["reg.test:5000/app@sha256:30", "reg.test:5000/app:2"], "sizeBytes": 30},
            {"names": ["orch.local/busybox@sha256:10", "orch.local/busybox:1.35"], "sizeBytes": 10},
        ]));
        shared.lock().unwrap().extend((0..60).map(|i| image(&format!("r.test/i:{i}"), 100 + i)));
        let listed = heartbeat_patch(&id, "t")["status"]["images"].as_array().unwrap().len();
        assert_eq!(listed, MAX_IMAGES);
        crate::api::resources::lookup("nodes").unwrap().validate(node_object(&id, "2026-01-01T00:00:00Z")).unwrap();
    }
}
