//! Images from a registry: a real `docker-registry` (htpasswd auth, plain HTTP) on the test
//! network holds the tests' busybox image; pods on a real node pull it with the pod's
//! imagePullSecrets, by the pull policy, and the Node reports what it holds.

use std::time::Duration;

use cluster_tests::cluster::{until, Cluster, Options, GATEWAY};
use cluster_tests::pods::{self, container_status, get};
use cluster_tests::registry::Registry;
use hyper::Method;
use orch::kubelet::image::{busybox_archive, parse_archive, Archive};
use serde_json::{json, Value};

const USER: (&str, &str) = ("alice", "s3cret");

/// The busybox image; `salt` appended to the binary (ignored by the kernel) makes a build
/// with other digests, as a new push of the same tag would have.
fn image(c: &Cluster, salt: &[u8]) -> Archive {
    let mut bin = std::fs::read("/bin/busybox").expect("busybox-static provides /bin/busybox");
    bin.extend_from_slice(salt);
    let path = c.work_dir().join(format!("busybox-{}", salt.len()));
    std::fs::write(&path, bin).unwrap();
    parse_archive(&busybox_archive("orch.test/busybox", &path).unwrap()).unwrap()
}

fn pod(name: &str, image: &str, policy: Option<&str>, secret: bool) -> Value {
    let mut c = json!({"name": "app", "image": image, "command": ["sh", "-c", "echo started; sleep 3600"]});
    if let Some(p) = policy {
        c["imagePullPolicy"] = p.into();
    }
    let mut p = pods::pod(name, "worker-0", "Always", json!([c]));
    if secret {
        p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    }
    p
}

/// The pod's container once `check` holds for it.
async fn wait_container(c: &Cluster, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    until(Duration::from_secs(60), what, || async {
        let p = get(c, 0, name).await.unwrap_or(Value::Null);
        let s = container_status(&p, "app").clone();
        (check(&s).then_some(s.clone()), format!("{s}\nworker log:\n{}", c.log_tail(1)))
    })
    .await
}

fn waiting_reason(s: &Value) -> &str {
    s["state"]["waiting"]["reason"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn pods_pull_from_a_registry_with_their_secrets_and_policies() {
    let extra = ["--insecure-registries", &format!("{GATEWAY}:5000"), "--restart-backoff-ms", "500"];
    let opts = Options { containerd: true, extra: extra.iter().map(|s| s.to_string()).collect() };
    let c = Cluster::start_opts(1, 1, opts).await.expect("cluster starts");
    let registry = Registry::start(c.gateway(), 5000, &c.work_dir().join("registry"), Some(USER)).await.expect("registry starts");
    let v1 = registry.push("orch/busybox:v1", &image(&c, b"")).await.expect("push v1");
    let image_name = format!("{}/orch/busybox:v1", registry.host);
    let digest_name = |d: &str| format!("{}/orch/busybox@{d}", registry.host);

    // Without credentials the registry refuses: the pull fails, then backs off.
    pods::create(&c, 0, &pod("nocreds", &image_name, None, false)).await.unwrap();
    let s = wait_container(&c, "nocreds", "a refused pull", |s| matches!(waiting_reason(s), "ErrImagePull" | "ImagePullBackOff")).await;
    assert!(s["state"]["waiting"]["message"].as_str().is_some_and(|m| m.contains(&registry.host)), "{s}");
    wait_container(&c, "nocreds", "pull back-off", |s| waiting_reason(s) == "ImagePullBackOff").await;
    c.client.json(Method::DELETE, &c.url(0, "/api/v1/namespaces/default/pods/nocreds"), None).await.unwrap();

    // With the pod's docker-config secret it pulls and runs; imageID names the digest.
    let config = json!({"auths": {registry.host.clone(): {"username": USER.0, "password": USER.1}}});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": config.to_string()}});
    c.client.json(Method::POST, &c.url(0, "/api/v1/namespaces/default/secrets"), Some(&secret)).await.expect("secret created");
    pods::create(&c, 0, &pod("pulled", &image_name, None, true)).await.unwrap();
    let s = wait_container(&c, "pulled", "the pulled image running", |s| s["state"]["running"].is_object() && s["imageID"] != "").await;
    assert_eq!(s["imageID"], digest_name(&v1));

    // The node lists it, by name and by digest.
    until(Duration::from_secs(30), "the image in the node's status", || async {
        let node = c.client.json(Method::GET, &c.url(0, "/api/v1/nodes/worker-0"), None).await.unwrap_or(Value::Null);
        let images = node["status"]["images"].clone();
        let listed = images.as_array().into_iter().flatten().any(|i| i["names"] == json!([digest_name(&v1), image_name]) && i["sizeBytes"].as_i64() > Some(0));
        (listed.then_some(()), images.to_string())
    })
    .await;

    // The tag moves to a new build. IfNotPresent (the default for a tag other than
    // latest) keeps running what the node has; Always fetches the new digest.
    let v2 = registry.push("orch/busybox:v1", &image(&c, b"\n# v2\n")).await.expect("push v2");
    assert_ne!(v1, v2);
    pods::create(&c, 0, &pod("cached", &image_name, None, true)).await.unwrap();
    let s = wait_container(&c, "cached", "IfNotPresent running", |s| s["state"]["running"].is_object() && s["imageID"] != "").await;
    assert_eq!(s["imageID"], digest_name(&v1));
    pods::create(&c, 0, &pod("always", &image_name, Some("Always"), true)).await.unwrap();
    let s = wait_container(&c, "always", "Always running", |s| s["state"]["running"].is_object() && s["imageID"] != "").await;
    assert_eq!(s["imageID"], digest_name(&v2));

    // Never: an image the node does not have is not pulled.
    let absent = format!("{}/orch/busybox:absent", registry.host);
    pods::create(&c, 0, &pod("never", &absent, Some("Never"), true)).await.unwrap();
    wait_container(&c, "never", "ErrImageNeverPull", |s| waiting_reason(s) == "ErrImageNeverPull").await;
    let log = std::fs::read_to_string(c.work_dir().join("registry/registry.log")).unwrap_or_default();
    assert!(!log.contains("orch/busybox/manifests/absent"), "a Never pod asked the registry:\n{log}");
}

/// A pull that hangs holds up only its own pod: a pod created after it on the same node
/// starts meanwhile (every pod has a kubelet worker of its own).
#[tokio::test]
async fn a_stalled_pull_holds_up_only_its_own_pod() {
    let opts = Options { containerd: true, extra: vec!["--insecure-registries".into(), format!("{GATEWAY}:5001")] };
    let c = Cluster::start_opts(1, 1, opts).await.expect("cluster starts");
    pods::load_busybox(&c, 0).expect("image load");
    // A "registry" that accepts connections and never answers them.
    let listener = tokio::net::TcpListener::bind((c.gateway(), 5001)).await.expect("bind the stalling registry");
    let (connected, mut connections) = tokio::sync::mpsc::unbounded_channel();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = listener.accept().await {
            held.push(conn);
            let _ = connected.send(());
        }
    });
    let image = format!("{}:5001/orch/busybox:v1", c.gateway());
    pods::create(&c, 0, &pod("stalled", &image, Some("Always"), false)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), connections.recv()).await.expect("the kubelet asks the registry").expect("the holder runs");

    let prompt = pods::pod("prompt", "worker-0", "Always", json!([pods::container("app", "exec sleep 3600")]));
    pods::create(&c, 0, &prompt).await.unwrap();
    // Well before the registry client's 60 s read timeout could end the hung pull.
    until(Duration::from_secs(20), "a pod running while another pod's pull hangs", || async {
        let s = container_status(&get(&c, 0, "prompt").await.unwrap_or(Value::Null), "app").clone();
        (s["state"]["running"].is_object().then_some(()), format!("{s}\nworker log:\n{}", c.log_tail(1)))
    })
    .await;
    let stalled = container_status(&get(&c, 0, "stalled").await.expect("the stalled pod"), "app").clone();
    assert!(!stalled["state"]["running"].is_object(), "its pull never finished: {stalled}");
    holder.abort();
}
