//! The kubelet role on a real cluster: one head and one worker, each with its own
//! containerd, pods as real runc containers in their own network namespaces, reachable
//! across nodes over the host-gateway routes; deletion leaves nothing behind.

use std::time::Duration;

use cluster_tests::cluster::{poll, Cluster, Options};
use serde_json::{json, Value};

const IMAGE: &str = "orch.local/busybox:test";

async fn cluster() -> Cluster {
    let opts = Options { containerd: true, extra: vec!["--restart-backoff-ms".into(), "500".into()] };
    let c = Cluster::start_opts(1, 1, opts).await.expect("cluster starts");
    let archive = orch::kubelet::image::busybox_archive(IMAGE, std::path::Path::new("/bin/busybox")).expect("busybox-static provides /bin/busybox");
    let file = c.work_dir().join("busybox.tar");
    std::fs::write(&file, archive).unwrap();
    let (ok, out, err) = c.orchctl(1, &["image", "load", file.to_str().unwrap()]).unwrap();
    assert!(ok, "image load: {out}{err}");
    assert_eq!(out.matches("loaded orch.local/busybox:test").count(), 2, "{out}");
    c
}

fn pod(name: &str, node: &str, policy: &str, containers: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "restartPolicy": policy, "terminationGracePeriodSeconds": 2, "containers": containers}})
}

fn container(name: &str, script: &str) -> Value {
    json!({"name": name, "image": IMAGE, "command": ["sh", "-c", script]})
}

async fn create(c: &Cluster, via: usize, obj: &Value) {
    let url = c.url(via, "/api/v1/namespaces/default/pods");
    c.client.json(hyper::Method::POST, &url, Some(obj)).await.expect("pod created");
}

async fn get(c: &Cluster, via: usize, name: &str) -> Option<Value> {
    c.client.json(hyper::Method::GET, &c.url(via, &format!("/api/v1/namespaces/default/pods/{name}")), None).await.ok()
}

async fn wait_pod(c: &Cluster, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let last = get(c, 0, name).await.unwrap_or(Value::Null);
        if check(&last) {
            return last;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {}\ncontainer logs:\n{}", serde_json::to_string_pretty(&last).unwrap(), container_logs(c));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every container log on every node, for failure messages.
fn container_logs(c: &Cluster) -> String {
    let mut out = String::new();
    for n in &c.nodes {
        let pods = n.data_dir.join("kubelet/pods");
        for pod in std::fs::read_dir(pods).into_iter().flatten().flatten() {
            for ctr in std::fs::read_dir(pod.path().join("logs")).into_iter().flatten().flatten() {
                for log in std::fs::read_dir(ctr.path()).into_iter().flatten().flatten() {
                    let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                    out.push_str(&format!("--- {}:\n{text}\n", log.path().display()));
                }
            }
        }
    }
    out
}

fn container_status<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"].as_array().and_then(|cs| cs.iter().find(|c| c["name"] == name)).unwrap_or(&Value::Null)
}

/// Everything a pod could leave behind on node `i`, described (empty when clean).
fn leftovers(c: &Cluster, i: usize) -> Vec<String> {
    let mut out = Vec::new();
    let ctrd = &c.containerds[i];
    out.extend(ctrd.containers().into_iter().map(|id| format!("container {id}")));
    out.extend(ctrd.snapshots().into_iter().map(|s| format!("snapshot {s}")));
    let run = c.work_dir().join(format!("{}-run", c.nodes[i].name));
    for kind in ["netns", "ipcns"] {
        if let Ok(dir) = std::fs::read_dir(run.join(kind)) {
            out.extend(dir.flatten().map(|e| format!("{kind} {}", e.file_name().to_string_lossy())));
        }
    }
    let links = std::process::Command::new("ip").args(["-n", &c.netns(i), "-o", "link", "show"]).output().unwrap();
    out.extend(String::from_utf8_lossy(&links.stdout).lines().filter(|l| l.contains("orchv")).map(|l| format!("link {l}")));
    let parent = c.cgroup_parent(i);
    out.extend(
        cluster_tests::containerd::cgroups_under(&parent)
            .into_iter()
            .filter(|d| !d.ends_with(&parent))
            .map(|d| format!("cgroup {}", d.display())),
    );
    let kubelet = c.nodes[i].data_dir.join("kubelet");
    for sub in ["ipam", "pods"] {
        if let Ok(dir) = std::fs::read_dir(kubelet.join(sub)) {
            out.extend(dir.flatten().map(|e| format!("{sub} {}", e.file_name().to_string_lossy())));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_two_container_pod_serves_its_neighbour_and_a_pod_on_another_node() {
    let c = cluster().await;
    let (head, worker) = (c.nodes[0].name.clone(), c.nodes[1].name.clone());

    let web = pod(
        "web",
        &head,
        "OnFailure",
        json!([
            container("server", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"),
            container("client", "until wget -q -O /tmp/got http://127.0.0.1:8080/; do sleep 0.2; done; cat /tmp/got; grep -q hello-from-web /tmp/got"),
        ]),
    );
    create(&c, 1, &web).await;
    let running = wait_pod(&c, "web", "web: server running, client done", |p| {
        container_status(p, "server")["state"]["running"].is_object()
            && container_status(p, "client")["state"]["terminated"]["exitCode"] == 0
    })
    .await;
    let ip = running["status"]["podIP"].as_str().expect("a pod IP").to_string();
    assert!(ip.starts_with("10.244."), "{ip}");
    assert_eq!(running["status"]["hostIP"], c.nodes[0].ip.to_string());
    assert_eq!(container_status(&running, "client")["state"]["terminated"]["reason"], "Completed");

    // From a pod on the other node, over the inter-node route.
    let probe = pod(
        "probe",
        &worker,
        "Never",
        json!([container("fetch", &format!("for i in $(seq 50); do wget -q -O - http://{ip}:8080/ | grep -q hello-from-web && exit 0; sleep 0.2; done; exit 1"))]),
    );
    create(&c, 0, &probe).await;
    let done = wait_pod(&c, "probe", "probe finished", |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{}", serde_json::to_string_pretty(&done["status"]).unwrap());
    let probe_ip = done["status"]["podIP"].as_str().unwrap();
    assert_ne!(probe_ip.rsplit_once('.').unwrap().0, ip.rsplit_once('.').unwrap().0, "the nodes have different pod CIDRs");

    // Deleting is graceful (the kubelet stops the containers, then removes the object) and
    // leaves nothing behind on either node.
    for name in ["web", "probe"] {
        let (ok, out, err) = c.orchctl(0, &["delete", "pod", name]).unwrap();
        assert!(ok, "{out}{err}");
    }
    poll(Duration::from_secs(60), "pods gone from the API", || async { Ok(get(&c, 0, "web").await.is_none() && get(&c, 0, "probe").await.is_none()) })
        .await
        .unwrap();
    let mut left = Vec::new();
    poll(Duration::from_secs(30), "nodes clean", || {
        left = (0..2).flat_map(|i| leftovers(&c, i)).collect();
        let clean = left.is_empty();
        async move { Ok(clean) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {left:?}"));
}
