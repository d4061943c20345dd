//! Pod helpers the kubelet tests and the pod benchmark share: the busybox test image
//! (built from the host's static busybox, loaded with `orchctl image load`), pod objects
//! bound to a node, and reading a container's status.

use anyhow::{bail, Context};
use hyper::Method;
use serde_json::{json, Value};

use crate::Cluster;

/// The image every pod of the tests runs (nothing is downloaded).
pub const IMAGE: &str = "orch.local/busybox:test";

/// Pack /bin/busybox into an image archive and load it into every node through node `via`.
pub fn load_busybox(c: &Cluster, via: usize) -> anyhow::Result<()> {
    let archive = orch::kubelet::image::busybox_archive(IMAGE, std::path::Path::new("/bin/busybox")).context("busybox-static provides /bin/busybox")?;
    let file = c.work_dir().join("busybox.tar");
    std::fs::write(&file, archive)?;
    let (ok, out, err) = c.orchctl(via, &["image", "load", file.to_str().context("path")?])?;
    if !ok || out.matches(&format!("loaded {IMAGE}")).count() != c.nodes.len() {
        bail!("image load: {out}{err}");
    }
    Ok(())
}

/// A pod in `default` bound to `node` (no scheduler needed), stopped within 2 s.
pub fn pod(name: &str, node: &str, policy: &str, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "restartPolicy": policy, "terminationGracePeriodSeconds": 2, "containers": containers}})
}

/// A busybox container running `script` with `sh -c`.
pub fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": IMAGE, "command": ["sh", "-c", script]})
}

pub async fn create(c: &Cluster, via: usize, obj: &Value) -> anyhow::Result<Value> {
    c.client.json(Method::POST, &c.url(via, "/api/v1/namespaces/default/pods"), Some(obj)).await
}

/// The pods in `default` whose first owner reference has `uid`.
pub async fn owned_by(c: &Cluster, uid: &str) -> Vec<Value> {
    let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await.expect("listing pods");
    list["items"].as_array().into_iter().flatten().filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid).cloned().collect()
}

pub async fn get(c: &Cluster, via: usize, name: &str) -> Option<Value> {
    c.client.json(Method::GET, &c.url(via, &format!("/api/v1/namespaces/default/pods/{name}")), None).await.ok()
}

/// The status of container `name` in `pod` (Null when not reported yet).
pub fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

/// True once every container of `pod` is running.
pub fn all_running(pod: &Value) -> bool {
    pod["status"]["containerStatuses"].as_array().is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object()))
}

/// Poll pod `name` (through node 0) until `check` holds, for up to `limit`; panics with the
/// last state seen and `context()` (e.g. container logs) otherwise.
pub async fn wait_pod(c: &Cluster, name: &str, what: &str, limit: std::time::Duration, check: impl Fn(&Value) -> bool, context: impl Fn() -> String) -> Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let last = get(c, 0, name).await.unwrap_or(Value::Null);
        if check(&last) {
            return last;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {}\n{}", serde_json::to_string_pretty(&last).unwrap_or_default(), context());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Run `script` with `sh -c` in pod `name` through `orchctl exec` on node `via`; returns
/// (exit code, stdout, stderr).
pub fn exec(c: &Cluster, via: usize, name: &str, script: &str) -> (i32, String, String) {
    let out = c.orchctl_command(via)
        .expect("orchctl is built")
        .args(["exec", name, "--", "sh", "-c", script])
        .output()
        .expect("running orchctl exec");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}
