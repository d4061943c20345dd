//! The real kubectl 1.32 against a cluster (one head, one worker), through either node:
//! commands that must change exactly what the user asked for and nothing else.

use cluster_tests::cluster::Cluster;
use cluster_tests::kubectl::kubectl;
use hyper::Method;
use orch::client::HttpError;
use serde_json::{json, Value};

fn manifest(replicas: u32, containers: &[(&str, &str)]) -> String {
    let containers: Vec<Value> = containers.iter().map(|(n, i)| json!({"name": n, "image": i})).collect();
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": containers}}}})
    .to_string()
}

async fn deployment(c: &Cluster) -> Value {
    c.client.json(Method::GET, &c.url(0, "/apis/apps/v1/namespaces/default/deployments/web"), None).await.unwrap()
}

fn containers(d: &Value) -> Vec<(String, String)> {
    d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c["image"].as_str().unwrap().to_string()))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn patches_change_only_what_was_asked_and_previews_never_write() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let worker = 1;

    // apply, then apply a manifest with one image changed and one container removed: the
    // strategic patch kubectl computes removes exactly that container.
    let r = kubectl(&c, worker, &["apply", "--validate=false", "-f", "-"], Some(&manifest(1, &[("app", "app:1"), ("log", "log:1")]))).unwrap();
    assert!(r.ok(), "{r:?}");
    let r = kubectl(&c, worker, &["apply", "--validate=false", "-f", "-"], Some(&manifest(1, &[("app", "app:2")]))).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(containers(&deployment(&c).await), pairs(&[("app", "app:2")]));

    // A strategic patch that adds a sidecar keeps the other containers.
    let sidecar = r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"side:1"}]}}}}"#;
    let r = kubectl(&c, 0, &["patch", "deployment", "web", "-p", sidecar], None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(containers(&deployment(&c).await), pairs(&[("sidecar", "side:1"), ("app", "app:2")]));

    // `set image` changes one container's image.
    let r = kubectl(&c, worker, &["set", "image", "deployment/web", "sidecar=side:2"], None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(containers(&deployment(&c).await), pairs(&[("sidecar", "side:2"), ("app", "app:2")]));

    // `kubectl diff` is a server-side dry run: refused, and nothing stored.
    let before = deployment(&c).await;
    let r = kubectl(&c, worker, &["diff", "-f", "-"], Some(&manifest(5, &[("app", "app:3")]))).unwrap();
    assert!(r.code > 1, "diff must fail, not report or make a change: {r:?}");
    assert!(r.stderr.contains("dryRun"), "{r:?}");
    // (Its status moves on with the controllers; what the user owns must not.)
    let after = deployment(&c).await;
    assert_eq!((&before["spec"], &before["metadata"]["generation"]), (&after["spec"], &after["metadata"]["generation"]), "diff wrote");
    assert_eq!(after["spec"]["replicas"], 1);

    // A dry-run create through either node stores nothing.
    for node in [0, worker] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("preview-{node}")}});
        let err = c.client.json(Method::POST, &c.url(node, "/api/v1/namespaces/default/configmaps?dryRun=All"), Some(&cm)).await.unwrap_err();
        assert_eq!(err.downcast_ref::<HttpError>().map(|e| e.code), Some(400), "{err}");
        let get = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/configmaps/preview-{node}")), None).await;
        assert_eq!(get.unwrap_err().downcast_ref::<HttpError>().map(|e| e.code), Some(404));
    }
}

/// The official Python client with the admin kubeconfig, through a worker and the head:
/// /version, create, strategic merge and JSON patches, read, and a delete answered with a
/// Status as Kubernetes answers it for a ConfigMap.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_client_creates_patches_and_deletes() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let python = cluster_tests::python::kubernetes_client().expect("the Python client installs");
    let script = r#"
import sys
from kubernetes import client, config
config.load_kube_config(config_file=sys.argv[1])
conf = client.Configuration.get_default_copy()
conf.host = sys.argv[2]
client.Configuration.set_default(conf)
name = sys.argv[3]
print(client.VersionApi().get_code().git_version)
v1 = client.CoreV1Api()
v1.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data={"a": "1"}))
v1.patch_namespaced_config_map(name, "default", {"data": {"b": "2"}})
v1.patch_namespaced_config_map(name, "default", [{"op": "replace", "path": "/data/a", "value": "3"}])
got = v1.read_namespaced_config_map(name, "default")
assert got.data == {"a": "3", "b": "2"}, got.data
st = v1.delete_namespaced_config_map(name, "default")
assert st.status == "Success" and st.details.name == name, st
print("done")
"#;
    for node in [1, 0] {
        let name = format!("py-{node}");
        let out = std::process::Command::new(&python)
            .args(["-c", script])
            .arg(c.kubeconfig())
            .arg(format!("https://{}", c.api(node)))
            .arg(&name)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("done"), "through node {node}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let gone = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/configmaps/{name}")), None).await;
        assert_eq!(gone.unwrap_err().downcast_ref::<HttpError>().map(|e| e.code), Some(404));
    }
}
