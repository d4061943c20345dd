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
async fn patches_change_only_what_was_asked_and_dry_runs_never_write() {
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

    // `kubectl diff` is a server-side dry run: it shows the change and stores nothing.
    let before = deployment(&c).await;
    let r = kubectl(&c, worker, &["diff", "-f", "-"], Some(&manifest(5, &[("app", "app:3")]))).unwrap();
    assert_eq!(r.code, 1, "diff reports a difference: {r:?}");
    for want in ["-  replicas: 1", "+  replicas: 5", "-      - image: app:2", "+      - image: app:3"] {
        assert!(r.stdout.contains(want), "diff lacks {want:?}: {r:?}");
    }
    // (Its status moves on with the controllers; what the user owns must not.)
    let after = deployment(&c).await;
    assert_eq!((&before["spec"], &before["metadata"]["generation"]), (&after["spec"], &after["metadata"]["generation"]), "diff wrote");
    assert_eq!(after["spec"]["replicas"], 1);
    let r = kubectl(&c, 0, &["diff", "-f", "-"], Some(&manifest(1, &[("app", "app:2")]))).unwrap();
    assert_eq!(r.code, 0, "the manifest as last applied: no difference: {r:?}");

    // A dry-run create through either node answers the object and stores nothing; so do a
    // dry-run delete and scale; an unknown dryRun value is refused.
    for node in [0, worker] {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("preview-{node}")}});
        let url = c.url(node, "/api/v1/namespaces/default/configmaps");
        let answered = c.client.json(Method::POST, &format!("{url}?dryRun=All"), Some(&cm)).await.unwrap();
        assert!(answered["metadata"]["uid"].is_string() && answered["metadata"].get("resourceVersion").is_none(), "{answered}");
        let get = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/configmaps/preview-{node}")), None).await;
        assert_eq!(get.unwrap_err().downcast_ref::<HttpError>().map(|e| e.code), Some(404));
        let err = c.client.json(Method::POST, &format!("{url}?dryRun=Some"), Some(&cm)).await.unwrap_err();
        assert_eq!(err.downcast_ref::<HttpError>().map(|e| e.code), Some(400), "{err}");
    }
    let r = kubectl(&c, worker, &["delete", "deployment", "web", "--dry-run=server"], None).unwrap();
    assert!(r.ok() && r.stdout.contains("(server dry run)"), "{r:?}");
    let r = kubectl(&c, worker, &["scale", "deployment", "web", "--replicas=4", "--dry-run=server"], None).unwrap();
    assert!(r.ok(), "{r:?}");
    let kept = deployment(&c).await;
    assert!(kept["metadata"]["deletionTimestamp"].is_null() && kept["spec"]["replicas"] == 1, "a dry run changed it: {kept}");
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

/// The words of a printed table, line by line.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

/// `kubectl get` prints the server's Table (the columns Kubernetes prints, `-o wide`
/// adding its own), `kubectl scale` goes through `/scale`, `get all` finds the kinds of
/// the `all` category; and a watch asked for Tables streams one-row Tables. Through the
/// worker and the head.
#[tokio::test(flavor = "multi_thread")]
async fn get_prints_the_servers_tables_and_scale_uses_the_scale_subresource() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let worker = 1;
    let r = kubectl(&c, worker, &["apply", "--validate=false", "-f", "-"], Some(&manifest(1, &[("app", "app:1")]))).unwrap();
    assert!(r.ok(), "{r:?}");

    for node in [worker, 0] {
        let r = kubectl(&c, node, &["get", "deployments"], None).unwrap();
        let rows = table(&r.stdout);
        assert_eq!(rows[0], ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"], "{r:?}");
        assert_eq!(rows[1][..2], ["web".to_string(), "0/1".to_string()], "{r:?}");
        let r = kubectl(&c, node, &["get", "deployments", "-o", "wide"], None).unwrap();
        let rows = table(&r.stdout);
        assert_eq!(rows[0][5..], ["CONTAINERS", "IMAGES", "SELECTOR"], "{r:?}");
        assert_eq!(rows[1][5..], ["app", "app:1", "app=web"], "{r:?}");
        let r = kubectl(&c, node, &["get", "nodes"], None).unwrap();
        let rows = table(&r.stdout);
        assert_eq!(rows[0], ["NAME", "STATUS", "ROLES", "AGE", "VERSION"], "{r:?}");
        assert_eq!(rows.len(), 3, "two nodes: {r:?}");
        assert!(rows[1..].iter().all(|row| row[1] == "Ready"), "{r:?}");
        let mut roles: Vec<&str> = rows[1..].iter().map(|row| row[2].as_str()).collect();
        roles.sort();
        assert_eq!(roles, ["<none>", "control-plane"], "the head shows its role: {r:?}");
    }

    // `kubectl scale` sets spec.replicas through /scale; the ReplicaSet follows.
    let r = kubectl(&c, worker, &["scale", "deployment", "web", "--replicas=3"], None).unwrap();
    assert!(r.ok() && r.stdout.contains("scaled"), "{r:?}");
    assert_eq!(deployment(&c).await["spec"]["replicas"], 3);
    let scale = c.client.json(Method::GET, &c.url(worker, "/apis/apps/v1/namespaces/default/deployments/web/scale"), None).await.unwrap();
    assert_eq!((scale["kind"].as_str(), &scale["spec"]["replicas"], scale["status"]["selector"].as_str()), (Some("Scale"), &json!(3), Some("app=web")));
    let r = kubectl(&c, 0, &["scale", "deployment", "web", "--replicas=-1"], None).unwrap();
    assert!(!r.ok(), "{r:?}");
    assert_eq!(deployment(&c).await["spec"]["replicas"], 3, "a refused scale changes nothing");
    let stale = json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": {"name": "web", "resourceVersion": "1"}, "spec": {"replicas": 9}});
    let err = c.client.json(Method::PUT, &c.url(0, "/apis/apps/v1/namespaces/default/deployments/web/scale"), Some(&stale)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<HttpError>().map(|e| e.code), Some(409), "a stale Scale is a conflict: {err}");

    let pods = cluster_tests::cluster::until(std::time::Duration::from_secs(30), "three pods listed", || async {
        let r = kubectl(&c, worker, &["get", "pods"], None).unwrap();
        let rows = table(&r.stdout);
        if rows.len() == 4 { (Some(rows), String::new()) } else { (None, r.stdout) }
    })
    .await;
    assert_eq!(pods[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assert!(pods[1..].iter().all(|p| p[0].starts_with("web-") && p[1] == "0/1"), "{pods:?}");

    let r = kubectl(&c, worker, &["get", "all"], None).unwrap();
    for want in ["deployment.apps/web", "replicaset.apps/web-", "pod/web-", "service/kubernetes"] {
        assert!(r.stdout.contains(want), "get all lacks {want}: {r:?}");
    }

    // A watch asked for Tables: each event's object is a Table of one row.
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let client = c.client.with_headers(vec![(hyper::header::ACCEPT, accept.parse().unwrap())]);
    let url = c.url(worker, "/apis/apps/v1/namespaces/default/deployments?watch=true&timeoutSeconds=1");
    let (status, body) = client.call(Method::GET, &url, None, Default::default()).await.unwrap();
    assert!(status.is_success());
    let first: Value = serde_json::from_slice(body.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!((first["type"].as_str(), first["object"]["kind"].as_str()), (Some("ADDED"), Some("Table")), "{first}");
    assert_eq!(first["object"]["rows"][0]["cells"][0], "web");
    assert_eq!(first["object"]["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    let err = client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/configmaps?includeObject=All"), None).await.unwrap_err();
    assert_eq!(err.downcast_ref::<HttpError>().map(|e| e.code), Some(400), "an includeObject it does not know is refused: {err}");
}

/// Writes are checked and defaulted as a Kubernetes API server checks and defaults them:
/// field rules refused with a 422 naming the field (and nothing stored), immutable fields
/// kept, unknown fields refused under `fieldValidation=Strict` and warned about otherwise,
/// Kubernetes' defaults stored. Through the worker.
#[tokio::test(flavor = "multi_thread")]
async fn writes_are_validated_and_defaulted_as_kubernetes_does() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let worker = 1;
    let code = |e: anyhow::Error| e.downcast_ref::<HttpError>().map(|h| (h.code, h.message.clone()));

    // The defects of the issue: each a 422 with its field, nothing stored.
    let negative: Value = serde_json::from_str(&manifest(1, &[("app", "app:1")])).unwrap();
    let mut negative = negative;
    negative["spec"]["replicas"] = json!(-3);
    let r = kubectl(&c, worker, &["apply", "--validate=false", "-f", "-"], Some(&negative.to_string())).unwrap();
    assert!(!r.ok() && r.stderr.contains("spec.replicas: Invalid value: -3: must be greater than or equal to 0"), "{r:?}");
    let url = c.url(worker, "/apis/apps/v1/namespaces/default/deployments");
    let mut mismatch = negative.clone();
    mismatch["spec"]["replicas"] = json!(1);
    mismatch["spec"]["selector"]["matchLabels"]["app"] = json!("other");
    let (status, msg) = code(c.client.json(Method::POST, &url, Some(&mismatch)).await.unwrap_err()).unwrap();
    assert!(status == 422 && msg.contains("`selector` does not match template `labels`"), "{msg}");
    let pods = c.url(worker, "/api/v1/namespaces/default/pods");
    let twins = json!({"metadata": {"name": "twins"}, "spec": {"containers": [{"name": "a", "image": "i:1"}, {"name": "a", "image": "i:2"}]}});
    let (status, msg) = code(c.client.json(Method::POST, &pods, Some(&twins)).await.unwrap_err()).unwrap();
    assert_eq!((status, msg.as_str()), (422, r#"Pod "twins" is invalid: spec.containers[1].name: Duplicate value: "a""#));
    for path in ["/apis/apps/v1/namespaces/default/deployments/web", "/api/v1/namespaces/default/pods/twins"] {
        let gone = c.client.json(Method::GET, &c.url(0, path), None).await.unwrap_err();
        assert_eq!(code(gone).map(|c| c.0), Some(404), "{path} was stored");
    }

    // A good Deployment is stored with Kubernetes' defaults, and its selector stays.
    let r = kubectl(&c, worker, &["apply", "--validate=false", "-f", "-"], Some(&manifest(1, &[("app", "app:1")]))).unwrap();
    assert!(r.ok(), "{r:?}");
    let d = deployment(&c).await;
    assert_eq!(d["spec"]["strategy"], json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}));
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!((&pod["restartPolicy"], &pod["dnsPolicy"], &pod["containers"][0]["imagePullPolicy"]), (&json!("Always"), &json!("ClusterFirst"), &json!("IfNotPresent")));
    let r = kubectl(&c, worker, &["patch", "deployment", "web", "--type=merge", "-p",
        r#"{"spec":{"selector":{"matchLabels":{"v":"2"}},"template":{"metadata":{"labels":{"v":"2"}}}}}"#], None).unwrap();
    assert!(!r.ok() && r.stderr.contains("spec.selector: Invalid value") && r.stderr.contains("field is immutable"), "{r:?}");
    assert_eq!(deployment(&c).await["spec"]["selector"], json!({"matchLabels": {"app": "web"}}));

    // Unknown fields: refused under Strict (nothing stored), warned about by default.
    let cms = c.url(worker, "/api/v1/namespaces/default/configmaps");
    let bogus = json!({"metadata": {"name": "strict", "colour": "red"}, "data": {"a": "b"}, "extra": 1});
    let (status, msg) = code(c.client.json(Method::POST, &format!("{cms}?fieldValidation=Strict"), Some(&bogus)).await.unwrap_err()).unwrap();
    assert_eq!(status, 400);
    assert!(msg.contains(r#"strict decoding error: unknown field "extra", unknown field "metadata.colour""#) || msg.contains(r#"unknown field "metadata.colour", unknown field "extra""#), "{msg}");
    let gone = c.client.json(Method::GET, &format!("{cms}/strict"), None).await.unwrap_err();
    assert_eq!(code(gone).map(|c| c.0), Some(404));
    let body = bytes::Bytes::from(bogus.to_string());
    let resp = c.client.send(Method::POST, &cms, Some("application/json"), body).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<&str> = resp.headers().get_all("warning").iter().filter_map(|v| v.to_str().ok()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.starts_with("299 - \"unknown field")), "{warnings:?}");
    // A patch under Strict is judged by what it makes; kubectl patch (Warn) prints the warning.
    let patch = bytes::Bytes::from(r#"{"bogus":1,"data":{"x":"y"}}"#);
    let strict = c.client.send(Method::PATCH, &format!("{cms}/strict?fieldValidation=Strict"), Some("application/merge-patch+json"), patch).await.unwrap();
    assert_eq!(strict.status(), 400);
    let r = kubectl(&c, 0, &["patch", "configmap", "strict", "--type=merge", "-p", r#"{"bogus":1,"data":{"c":"d"}}"#], None).unwrap();
    assert!(r.ok() && r.stderr.contains(r#"Warning: unknown field "bogus""#), "kubectl prints the warning: {r:?}");
    let cm = c.client.json(Method::GET, &format!("{cms}/strict"), None).await.unwrap();
    assert_eq!(cm["data"], json!({"a": "b", "c": "d"}));
}
