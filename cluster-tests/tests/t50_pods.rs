//! The kubelet role on a real cluster: one head and one worker, each with its own
//! containerd, pods as real runc containers in their own network namespaces, reachable
//! across nodes over the host-gateway routes; deletion leaves nothing behind.

use std::time::Duration;

use cluster_tests::cluster::{poll, Cluster, Options};
use cluster_tests::pods::{self, container, container_status, get, load_busybox, pod};
use serde_json::{json, Value};

async fn cluster() -> Cluster {
    let extra = ["--restart-backoff-ms", "500", "--container-log-max-bytes", "65536"];
    let opts = Options { containerd: true, extra: extra.iter().map(|s| s.to_string()).collect() };
    let c = Cluster::start_opts(1, 1, opts).await.expect("cluster starts");
    load_busybox(&c, 1).expect("the image loads into both nodes");
    c
}

async fn create(c: &Cluster, via: usize, obj: &Value) {
    pods::create(c, via, obj).await.expect("pod created");
}

async fn wait_pod(c: &Cluster, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    pods::wait_pod(c, name, what, Duration::from_secs(60), check, || format!("container logs:\n{}", container_logs(c))).await
}

/// Poll until neither node holds anything of a pod (see `leftovers`).
async fn wait_clean(c: &Cluster) {
    let mut left = Vec::new();
    poll(Duration::from_secs(30), "nodes clean", || {
        left = (0..2).flat_map(|i| leftovers(c, i)).collect();
        let clean = left.is_empty();
        async move { Ok(clean) }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {left:?}"));
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
    wait_clean(&c).await;
}

async fn restart_count(c: &Cluster, pod: &str) -> u64 {
    get(c, 0, pod).await.map_or(0, |p| container_status(&p, "app")["restartCount"].as_u64().unwrap_or(0))
}

/// The Events about pod `name`, once `done` holds for them.
async fn pod_events(c: &Cluster, name: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let url = c.url(0, &format!("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name={name}"));
    cluster_tests::cluster::until(Duration::from_secs(30), "the kubelet's events", || async {
        let items = c.client.json(hyper::Method::GET, &url, None).await.map(|l| l["items"].as_array().cloned().unwrap_or_default()).unwrap_or_default();
        let summary: Vec<String> = items.iter().map(|e| format!("{} x{}: {}", e["reason"], e["count"], e["message"])).collect();
        (done(&items).then_some(items), summary.join("; "))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn crashing_containers_back_off_and_oom_kills_are_reported() {
    let c = cluster().await;
    let head = c.nodes[0].name.clone();
    create(&c, 0, &pod("crash", &head, "Always", json!([container("app", "echo started; exit 3")]))).await;
    let mut hog = pod("hog", &head, "Never", json!([container("app", "tail /dev/zero")]));
    hog["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "16Mi"}});
    create(&c, 0, &hog).await;

    // The restart count rises with growing gaps (back-off 0.5 s, doubling), and the
    // container is reported waiting in CrashLoopBackOff between attempts.
    let mut changes = Vec::new();
    let mut saw_backoff = false;
    let mut last = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while changes.len() < 4 {
        assert!(std::time::Instant::now() < deadline, "restarts seen at {changes:?}");
        let p = get(&c, 0, "crash").await.unwrap_or(Value::Null);
        saw_backoff |= container_status(&p, "app")["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        let n = container_status(&p, "app")["restartCount"].as_u64().unwrap_or(0);
        if n > last {
            changes.push(std::time::Instant::now());
            last = n;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let gaps: Vec<f64> = changes.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
    assert!(gaps[1] > gaps[0] * 1.4 && gaps[2] > gaps[1] * 1.4, "restart gaps do not grow: {gaps:?}");
    assert!(saw_backoff, "never reported CrashLoopBackOff");
    assert!(restart_count(&c, "crash").await >= 4);

    // The kubelet told of it in Events, repeats counted on one; kubectl describe shows them.
    let reasons = pod_events(&c, "crash", |evs| {
        let backoff = evs.iter().find(|e| e["reason"] == "BackOff");
        backoff.is_some_and(|b| b["count"].as_u64() >= Some(2)) && evs.iter().any(|e| e["reason"] == "Started")
    })
    .await;
    let backoff = reasons.iter().find(|e| e["reason"] == "BackOff").unwrap();
    assert_eq!((backoff["type"].as_str(), backoff["involvedObject"]["fieldPath"].as_str()), (Some("Warning"), Some("spec.containers{app}")));
    assert!(backoff["message"].as_str().unwrap().starts_with("Back-off restarting failed container app in pod crash_default("), "{backoff}");
    assert_eq!(reasons.iter().filter(|e| e["reason"] == "BackOff").count(), 1, "repeats are counted, not written again");
    let r = cluster_tests::kubectl::kubectl(&c, 1, &["describe", "pod", "crash"], None).unwrap();
    for want in ["Created container: app", "Started container app", "Back-off restarting failed container app"] {
        assert!(r.stdout.contains(want), "describe lacks {want:?}: {r:?}");
    }

    let oom = wait_pod(&c, "hog", "the memory hog to be killed", |p| p["status"]["phase"] == "Failed").await;
    assert_eq!(container_status(&oom, "app")["state"]["terminated"]["reason"], "OOMKilled", "{}", oom["status"]);
    assert_eq!(container_status(&oom, "app")["state"]["terminated"]["exitCode"], 137);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_maps_secrets_and_host_path_volumes_reach_the_container() {
    let c = cluster().await;
    let head = c.nodes[0].name.clone();
    let data = c.work_dir().join("pv-data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("on-the-volume"), "persistent-bytes").unwrap();
    let objects = json!([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": {"greeting.txt": "hello-config"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, "data": {"password": "czNjcjN0"}},
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": data.to_str().unwrap()}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "volumeName": "pv1", "resources": {"requests": {"storage": "1Gi"}}}},
    ]);
    let paths = ["/api/v1/namespaces/default/configmaps", "/api/v1/namespaces/default/secrets", "/api/v1/persistentvolumes", "/api/v1/namespaces/default/persistentvolumeclaims"];
    for (obj, path) in objects.as_array().unwrap().iter().zip(paths) {
        c.client.json(hyper::Method::POST, &c.url(0, path), Some(obj)).await.unwrap();
    }
    let script = "test \"$(cat /config/greeting.txt)\" = hello-config && test \"$PASSWORD\" = s3cr3t \
                  && test \"$(cat /data/on-the-volume)\" = persistent-bytes && echo written-by-pod > /data/from-pod";
    let mut p = pod("reader", &head, "Never", json!([container("app", script)]));
    p["spec"]["containers"][0]["env"] = json!([{"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "cfg", "mountPath": "/config"}, {"name": "data", "mountPath": "/data"}]);
    p["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "data", "persistentVolumeClaim": {"claimName": "claim"}}]);
    create(&c, 0, &p).await;
    let done = wait_pod(&c, "reader", "reader finished", |p| matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).await;
    assert_eq!(done["status"]["phase"], "Succeeded", "{}\n{}", done["status"], container_logs(&c));
    assert_eq!(std::fs::read_to_string(data.join("from-pod")).unwrap().trim(), "written-by-pod");
}

#[tokio::test(flavor = "multi_thread")]
async fn thirty_pods_come_and_go_and_a_restarted_orchd_keeps_its_pods_running() {
    let mut c = cluster().await;
    let names: Vec<String> = (0..30).map(|i| format!("p{i:02}")).collect();
    for (i, name) in names.iter().enumerate() {
        let node = c.nodes[i % 2].name.clone();
        create(&c, i % 2, &pod(name, &node, "Always", json!([container("app", "exec sleep 3600")]))).await;
    }
    let running = |p: &Value| container_status(p, "app")["state"]["running"].is_object();
    for name in &names {
        wait_pod(&c, name, &format!("{name} running"), running).await;
    }
    let before = get(&c, 0, "p00").await.unwrap();

    // Kill orchd on the head (SIGKILL): with no head reachable, the worker's kubelet loses
    // the API but leaves its pods running (static stability).
    let log = c.nodes[1].data_dir.with_extension("log");
    let failures = || std::fs::read_to_string(&log).unwrap_or_default().matches("the API is unreachable").count();
    let before_outage = failures();
    c.kill(0);
    poll(Duration::from_secs(30), "the worker's kubelet to notice the outage", || async { Ok(failures() > before_outage) }).await.unwrap();
    assert_eq!(c.containerds[1].running_tasks().len(), 15, "the worker's pods run on without a head");
    assert_eq!(c.containerds[0].running_tasks().len(), 15, "the head's pods run on without their orchd");
    // Restart it: its pods keep running, nothing restarts.
    c.restart(0).await.unwrap();
    // A pod created now runs only once the restarted kubelet made a pass, which also
    // looked at every old pod.
    let head = c.nodes[0].name.clone();
    create(&c, 1, &pod("late", &head, "Always", json!([container("app", "exec sleep 3600")]))).await;
    wait_pod(&c, "late", "a pod started by the restarted kubelet", running).await;
    let after = wait_pod(&c, "p00", "p00 still running after the restart", running).await;
    assert_eq!(container_status(&after, "app")["restartCount"], 0);
    assert_eq!(container_status(&after, "app")["containerID"], container_status(&before, "app")["containerID"]);
    assert_eq!(after["status"]["podIP"], before["status"]["podIP"]);

    for name in names.iter().chain([&"late".to_string()]) {
        let (ok, out, err) = c.orchctl(1, &["delete", "pod", name]).unwrap();
        assert!(ok, "{out}{err}");
    }
    poll(Duration::from_secs(90), "all pods gone", || async {
        let list = c.client.json(hyper::Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await?;
        Ok(list["items"].as_array().is_some_and(|i| i.is_empty()))
    })
    .await
    .unwrap();
    wait_clean(&c).await;
}

fn ready(p: &Value) -> Option<bool> {
    let cs = p["status"]["conditions"].as_array()?;
    cs.iter().find(|c| c["type"] == "Ready").map(|c| c["status"] == "True")
}

#[tokio::test(flavor = "multi_thread")]
async fn probes_gate_readiness_and_restart_unhealthy_containers() {
    let c = cluster().await;
    let head = c.nodes[0].name.clone();
    // The server is ready while it serves index.html; after ~4 s it stops serving it for
    // ~4 s, then serves it again; then it marks itself unhealthy.
    let script = "mkdir -p /www; echo ok > /www/index.html; httpd -p 8080 -h /www; sleep 4; rm /www/index.html; sleep 4; \
                  echo ok > /www/index.html; sleep 4; touch /tmp/die; exec sleep 3600";
    let mut p = pod("probed", &head, "Always", json!([container("app", script)]));
    p["spec"]["containers"][0]["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    p["spec"]["containers"][0]["startupProbe"] = json!({"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 10});
    p["spec"]["containers"][0]["readinessProbe"] = json!({"httpGet": {"path": "/index.html", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1});
    p["spec"]["containers"][0]["livenessProbe"] = json!({"exec": {"command": ["sh", "-c", "test ! -f /tmp/die"]}, "periodSeconds": 1, "failureThreshold": 2});

    // Every status the pod goes through, from a watch (polling could miss a short state).
    let url = c.url(0, "/api/v1/namespaces/default/pods?watch=true&fieldSelector=metadata.name=probed");
    let mut events = cluster_tests::watch::open(&c.client, &url).await.unwrap();
    create(&c, 0, &p).await;
    let mut seen: Vec<bool> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv()).await;
        let p = match event {
            Ok(Some(Ok(e))) => e.object,
            other => panic!("no liveness restart; readiness seen: {seen:?}; last: {other:?}"),
        };
        if container_status(&p, "app")["restartCount"].as_u64() >= Some(1) {
            assert_eq!(container_status(&p, "app")["lastState"]["terminated"]["exitCode"], 137, "{}", p["status"]);
            break;
        }
        if let Some(r) = ready(&p) {
            if seen.last() != Some(&r) {
                seen.push(r);
            }
        }
    }
    // Not ready before the startup and readiness probes passed, then ready, not ready while
    // index.html is gone, ready again.
    let from_first_ready: Vec<bool> = seen.iter().copied().skip_while(|r| !r).collect();
    assert_eq!(&from_first_ready[..3], &[true, false, true], "readiness transitions: {seen:?}");
    assert_eq!(seen.first(), Some(&false), "ready before any probe passed: {seen:?}");
    // Each failure is an Unhealthy event; the restart is told as a Killing.
    let said = |evs: &[Value], reason: &str, start: &str| evs.iter().any(|e| e["reason"] == reason && e["message"].as_str().unwrap_or("").starts_with(start));
    pod_events(&c, "probed", |evs| {
        said(evs, "Unhealthy", "Readiness probe failed: ") && said(evs, "Unhealthy", "Liveness probe failed: ") && said(evs, "Killing", "Stopping container app")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_and_exec_reach_a_pod_on_another_node_through_any_node() {
    let c = cluster().await;
    let head = c.nodes[0].name.clone();
    let talk = "for i in $(seq 1 15); do echo line $i; sleep 0.2; done";
    create(&c, 0, &pod("talker", &head, "Never", json!([container("app", talk)]))).await;
    create(&c, 0, &pod("shell", &head, "Always", json!([container("app", "exec sleep 3600")]))).await;
    wait_pod(&c, "talker", "talker running", |p| container_status(p, "app")["state"]["running"].is_object()).await;

    // Through the worker (the pod runs on the head): follow until the container ends.
    let (ok, out, err) = c.orchctl(1, &["logs", "-f", "talker"]).unwrap();
    assert!(ok, "{err}");
    let want: String = (1..=15).map(|i| format!("line {i}\n")).collect();
    assert_eq!(out, want);
    let (ok, out, _) = c.orchctl(1, &["logs", "talker", "--tail", "2"]).unwrap();
    assert!(ok);
    assert_eq!(out, "line 14\nline 15\n");
    let (ok, _, err) = c.orchctl(1, &["logs", "talker", "--previous"]).unwrap();
    assert!(!ok && err.contains("previous terminated container"), "{err}");

    wait_pod(&c, "shell", "shell running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    let out = c.orchctl_command(1).unwrap()
        .args(["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!((String::from_utf8_lossy(&out.stdout).as_ref(), String::from_utf8_lossy(&out.stderr).as_ref()), ("out\n", "err\n"));

    // stdin streams in; the command sees its end.
    use std::io::Write;
    let mut child = c.orchctl_command(1).unwrap()
        .args(["exec", "-i", "shell", "--", "sh", "-c", "cat; echo done"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello through stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello through stdin\ndone\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn container_logs_are_rotated_past_their_size_limit() {
    let c = cluster().await;
    let head = c.nodes[0].name.clone();
    // 20 bursts of 500 lines of ~70 bytes, half a second apart: the 64 KiB limit is passed
    // again and again while the kubelet's passes (every 2 s at most) rotate the file.
    let chatty = "for b in $(seq 1 20); do i=0; while [ $i -lt 500 ]; do echo line-$b-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; \
                  i=$((i+1)); done; sleep 0.5; done; exec sleep 3600";
    create(&c, 0, &pod("chatty", &head, "Always", json!([container("app", chatty)]))).await;
    let p = wait_pod(&c, "chatty", "chatty running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let logs = c.nodes[0].data_dir.join("kubelet/pods").join(&uid).join("logs/app");
    // Rotated copies appear and shift (.1 → .2); never more than the 4 kept.
    poll(Duration::from_secs(60), "two rotated log files", || {
        let rotated = logs.join("0.log.2").exists();
        assert!(!logs.join("0.log.5").exists(), "more old copies than kept");
        async move { Ok(rotated) }
    })
    .await
    .unwrap();
    let (ok, _, err) = c.orchctl(1, &["logs", "chatty", "--tail", "1"]).unwrap();
    assert!(ok, "{err}");
}

/// A running `orchctl port-forward`, stopped on drop.
struct Forwarder(std::process::Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Send `request` to local `port` and read until the other side closes.
async fn round_trip(port: u16, request: &[u8]) -> Vec<u8> {
    try_round_trip(port, request).await.unwrap()
}

async fn try_round_trip(port: u16, request: &[u8]) -> std::io::Result<Vec<u8>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("the forwarder accepts");
    conn.write_all(request).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), conn.read_to_end(&mut out)).await.expect("the forwarded connection ends")?;
    Ok(out)
}

#[tokio::test]
async fn port_forward_reaches_a_pod_localhost_through_another_node() {
    use std::io::BufRead;
    let c = cluster().await;
    let worker = c.nodes[1].name.clone();
    // Served on the pod's loopback only: reachable through port-forward, not the pod IP.
    let serve = "mkdir -p /www && echo hello-from-pod > /www/index.html && head -c 1048576 /dev/urandom > /www/big && exec httpd -f -p 127.0.0.1:8080 -h /www";
    create(&c, 0, &pod("web", &worker, "Always", json!([container("app", serve)]))).await;
    wait_pod(&c, "web", "web running", |p| container_status(p, "app")["state"]["running"].is_object()).await;

    // Through the head (the pod runs on the worker); ":8080" picks a free local port.
    let mut child = c.orchctl_command(0).unwrap()
        .args(["port-forward", "web", ":8080", ":9"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut local = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("orchctl announces each port").unwrap();
        let port = line.strip_prefix("Forwarding from 127.0.0.1:").and_then(|r| r.split(' ').next()).and_then(|p| p.parse::<u16>().ok());
        local.push(port.unwrap_or_else(|| panic!("unexpected: {line}")));
    }
    let mut forwarder = Forwarder(child);
    // Running is not listening: the container writes its files before httpd binds.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let index = loop {
        let got = String::from_utf8(round_trip(local[0], b"GET /index.html HTTP/1.0\r\n\r\n").await).unwrap();
        if !got.is_empty() || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(index.starts_with("HTTP/1.") && index.ends_with("hello-from-pod\n"), "{index}");

    // A megabyte arrives intact: its digest here equals the one computed in the pod.
    let big = round_trip(local[0], b"GET /big HTTP/1.0\r\n\r\n").await;
    let split = big.windows(4).position(|w| w == b"\r\n\r\n").expect("HTTP headers end") + 4;
    let body = &big[split..];
    assert_eq!(body.len(), 1 << 20);
    let here = orch::kubelet::image::sha256_digest(body).trim_start_matches("sha256:").to_string();
    let (code, there, _) = pods::exec(&c, 1, "web", "sha256sum /www/big");
    assert_eq!(code, 0);
    assert_eq!(there.split_whitespace().next(), Some(here.as_str()));

    // Nothing listens on port 9 in the pod: the connection is closed and orchctl says why.
    // (Closed with a reset when the forwarder had not read the byte sent: TCP's way.)
    match try_round_trip(local[1], b"x").await {
        Ok(body) => assert!(body.is_empty(), "{body:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    // orchctl reports it once the connection is closed: read its stderr until it does.
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = forwarder.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut said = Vec::new();
    while !said.iter().any(|l: &String| l.contains("error forwarding port 9 to pod default/web")) {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => said.push(line),
            Err(e) => panic!("orchctl did not report the refused port ({e}): {said:?}"),
        }
    }
}

/// Run `script` in pod `name` over exec's WebSocket (through node `via`), first sending
/// `before` (resize or stdin frames); returns (stdout, stderr, status).
async fn exec_ws(c: &Cluster, via: usize, name: &str, script: &str, tty: bool, before: Vec<Vec<u8>>) -> (String, String, Value) {
    use futures::{SinkExt, StreamExt};
    use orch::remotecommand as rc;
    use tokio_tungstenite::tungstenite::Message;
    let params = rc::ExecParams { command: vec!["sh".into(), "-c".into(), script.into()], container: None, stdin: true, tty };
    let url = format!("wss://{}/api/v1/namespaces/default/pods/{name}/exec?{}", c.api(via), rc::to_query(&params));
    let socket = c.client.websocket(&url, &rc::PROTOCOLS).await.expect("exec WebSocket");
    let (mut tx, mut rx) = socket.split();
    for m in before {
        tx.send(Message::Binary(m.into())).await.unwrap();
    }
    let (mut out, mut err, mut status) = (String::new(), String::new(), Value::Null);
    while let Some(Ok(msg)) = tokio::time::timeout(Duration::from_secs(30), rx.next()).await.expect("exec answers") {
        let Message::Binary(b) = msg else { break };
        match rc::parse(&b) {
            Some((rc::STDOUT, d)) => out.push_str(&String::from_utf8_lossy(d)),
            Some((rc::STDERR, d)) => err.push_str(&String::from_utf8_lossy(d)),
            Some((rc::ERROR, d)) => status = serde_json::from_slice(d).unwrap_or_default(),
            _ => {}
        }
    }
    (out, err, status)
}

#[tokio::test]
async fn exec_with_a_terminal_gets_a_pty_of_the_size_asked() {
    use orch::remotecommand as rc;
    let c = cluster().await;
    let worker = c.nodes[1].name.clone();
    create(&c, 0, &pod("term", &worker, "Always", json!([container("app", "exec sleep 3600")]))).await;
    wait_pod(&c, "term", "term running", |p| container_status(p, "app")["state"]["running"].is_object()).await;
    // The size is sent before the line the command waits for, so it applies first.
    let script = "read x; stty size; tty; echo TERM=$TERM; echo to-stderr >&2";
    let before = vec![rc::size_message(100, 40), rc::frame(rc::STDIN, b"go\n")];
    let (out, err, status) = exec_ws(&c, 0, "term", script, true, before).await;
    assert_eq!(status["status"], "Success", "{status}");
    assert!(out.contains("40 100"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("TERM=xterm"), "{out:?}");
    // A terminal carries both streams on stdout.
    assert!(out.contains("to-stderr") && err.is_empty(), "{out:?} / {err:?}");

    let (out, err, _) = exec_ws(&c, 0, "term", "tty; echo to-stderr >&2", false, vec![rc::frame(rc::CLOSE, &[rc::STDIN])]).await;
    assert_eq!((out.as_str(), err.as_str()), ("not a tty\n", "to-stderr\n"));
}
