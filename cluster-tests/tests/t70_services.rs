//! Services on a real cluster (one head, two workers, a containerd each, nftables in every
//! node's namespace): requests to a Service's name reach every endpoint from every node,
//! NodePorts answer on every node, a pod reaches itself through its own service, cluster
//! DNS answers A/SRV/PTR/headless/NXDOMAIN, and endpoints leave the rotation before their
//! pods stop.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::{Cluster, Options};
use cluster_tests::nsd::Nsd;
use cluster_tests::pods::{self, all_running, container, exec, load_busybox, pod};
use hyper::Method;
use serde_json::{json, Value};

/// An HTTP server answering with its pod's name, ready once it serves. On SIGTERM it keeps
/// serving for 3 s before it stops (as a preStop sleep would), like a well-behaved server.
fn web_container() -> Value {
    let mut c = container(
        "web",
        "hostname > /www/index.html; httpd -p 8080 -h /www; trap 'sleep 3; kill $(pidof httpd); exit 0' TERM; \
         while true; do sleep 1; done",
    );
    c["ports"] = json!([{"name": "http", "containerPort": 8080}]);
    c["readinessProbe"] = json!({"exec": {"command": ["sh", "-c", "test ! -f /tmp/unready && wget -q -O /dev/null http://127.0.0.1:8080/"]},
        "periodSeconds": 1, "failureThreshold": 1});
    c
}

fn deployment(name: &str, replicas: u32) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"terminationGracePeriodSeconds": 10, "containers": [web_container()]}}}})
}

/// Poll `check` until it yields a value (at most `limit`).
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post(c: &Cluster, path: &str, obj: &Value) -> Value {
    c.client.json(Method::POST, &c.url(0, path), Some(obj)).await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
}

/// Ready endpoint IPs of service `name`.
async fn ready_endpoints(c: &Cluster, name: &str) -> BTreeSet<String> {
    let Ok(e) = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/endpoints/{name}")), None).await else { return BTreeSet::new() };
    e["subsets"].as_array().into_iter().flatten().flat_map(|s| s["addresses"].as_array().into_iter().flatten()).filter_map(|a| a["ip"].as_str().map(String::from)).collect()
}

async fn app_pods(c: &Cluster, app: &str) -> Vec<Value> {
    let list = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{app}")), None).await.unwrap();
    list["items"].as_array().unwrap().clone()
}

/// `dig` inside node `i`'s namespace against its cluster DNS (the node's pod gateway).
fn dig(c: &Cluster, i: usize, gateway: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", &c.netns(i), "dig", &format!("@{gateway}"), "+tries=1", "+time=2"])
        .args(args)
        .output()
        .expect("dig (bind9-dnsutils)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn answers(dig_output: &str) -> Vec<String> {
    let mut v: Vec<String> = dig_output.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    v.sort();
    v
}

/// Wait until `count` requests from `client` to `url` all succeed and reach every one of
/// `expect`; returns the answers per backend. Fails on any failed request after the rules
/// converged (the first successful full round).
async fn requests_reach_all(c: &Cluster, client: &str, url: &str, count: usize, expect: &BTreeSet<String>) -> BTreeMap<String, usize> {
    let script = format!("for i in $(seq {count}); do wget -q -O- {url} || echo FAILED; done");
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let (_, out, err) = exec(c, 0, client, &script);
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for l in out.lines() {
            *seen.entry(l.trim().to_string()).or_default() += 1;
        }
        if seen.values().sum::<usize>() == count && !seen.contains_key("FAILED") && seen.keys().cloned().collect::<BTreeSet<_>>() == *expect {
            return seen;
        }
        last = format!("{seen:?} {err}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("{client} → {url}: never {count} good answers from {expect:?}; last: {last}");
}

#[tokio::test(flavor = "multi_thread")]
async fn services_reach_every_endpoint_from_every_node_by_name_vip_and_node_port() {
    // Names outside the cluster go to the upstream resolver: NSD on node 0's loopback.
    let upstream = vec!["--dns-upstream".to_string(), "127.0.0.1:5353".to_string()];
    let c = Cluster::start_opts(1, 2, Options { containerd: true, extra: upstream }).await.expect("cluster starts");
    let nsd_dir = tempfile::tempdir().unwrap();
    let _nsd = Nsd::start(&c.netns(0), nsd_dir.path(), "127.0.0.1", 5353, "example.test", "www IN A 192.0.2.80\n").expect("nsd starts");
    load_busybox(&c, 0).unwrap();
    post(&c, "/apis/apps/v1/namespaces/default/deployments", &deployment("web", 3)).await;
    let svc = post(&c, "/api/v1/namespaces/default/services", &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})).await;
    let vip = svc["spec"]["clusterIP"].as_str().expect("a ClusterIP was allocated").to_string();
    let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64().expect("a NodePort was allocated");
    assert!(vip.starts_with("10.96."), "{vip}");
    assert!((30000..=32767).contains(&node_port));
    // A second service may not take the same IP.
    let clash = c.client.json(Method::POST, &c.url(1, "/api/v1/namespaces/default/services"), Some(&json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "clash"}, "spec": {"clusterIP": vip, "ports": [{"port": 80}]}}))).await.unwrap_err();
    assert!(clash.to_string().contains("already allocated"), "{clash}");
    post(&c, "/api/v1/namespaces/default/services", &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web-headless"}, "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080}]}})).await;

    for (i, node) in c.nodes.iter().enumerate() {
        pods::create(&c, 0, &pod(&format!("client-{i}"), &node.name, "Always", json!([container("c", "exec sleep 3600")]))).await.unwrap();
    }
    let web_pods = until(Duration::from_secs(90), "three ready web pods, one per node, in the endpoints", || async {
        let pods = app_pods(&c, "web").await;
        let nodes: BTreeSet<&str> = pods.iter().filter_map(|p| p["spec"]["nodeName"].as_str()).collect();
        let ips: BTreeSet<String> = pods.iter().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
        (nodes.len() == 3 && ips.len() == 3 && ready_endpoints(&c, "web").await == ips).then_some(pods)
    })
    .await;
    let names: BTreeSet<String> = web_pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    for i in 0..3 {
        pods::wait_pod(&c, &format!("client-{i}"), "client running", Duration::from_secs(60), all_running, String::new).await;
    }

    // From a pod on every node: by full name (300 requests), by short name, by VIP.
    for i in 0..3 {
        let client = format!("client-{i}");
        let seen = requests_reach_all(&c, &client, "http://web.default.svc.cluster.local/", 300, &names).await;
        assert!(seen.values().all(|&n| n >= 50), "{client}: uneven spread {seen:?}");
        requests_reach_all(&c, &client, "http://web/", 30, &names).await;
        requests_reach_all(&c, &client, &format!("http://{vip}/"), 30, &names).await;
    }

    // Hairpin: a web pod reaches itself (and the others) through its own service.
    let me = web_pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let (code, out, err) = exec(&c, 1, &me, "for i in $(seq 40); do wget -q -O- http://web/ || echo FAILED; done");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 40, "{out}{err}");
    assert!(!out.contains("FAILED") && out.lines().any(|l| l == me), "{me} never answered itself: {out}");

    // NodePort on every node's address, from outside the cluster's pods.
        for node in &c.nodes {
        let mut seen = BTreeSet::new();
        for _ in 0..30 {
            seen.insert(http_get(&format!("{}:{node_port}", node.ip)).await.unwrap_or_else(|e| panic!("NodePort on {}: {e}", node.name)));
        }
        assert_eq!(seen, names, "NodePort on {}", node.name);
    }

    // DNS, asked with dig in each node's namespace.
    let node0 = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/nodes/{}", c.nodes[0].name)), None).await.unwrap();
    let cidr: ipnet::Ipv4Net = node0["spec"]["podCIDR"].as_str().unwrap().parse().unwrap();
    let gw = std::net::Ipv4Addr::from(u32::from(cidr.network()) + 1).to_string();
    assert_eq!(answers(&dig(&c, 0, &gw, &["+short", "web.default.svc.cluster.local", "A"])), vec![vip.clone()]);
    assert_eq!(answers(&dig(&c, 0, &gw, &["+short", "_http._tcp.web.default.svc.cluster.local", "SRV"])), vec!["0 100 80 web.default.svc.cluster.local."]);
    assert_eq!(answers(&dig(&c, 0, &gw, &["+short", "-x", &vip])), vec!["web.default.svc.cluster.local."]);
    let pod_ips: Vec<String> = {
        let mut v: Vec<String> = web_pods.iter().map(|p| p["status"]["podIP"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(answers(&dig(&c, 0, &gw, &["+short", "web-headless.default.svc.cluster.local", "A"])), pod_ips);
    let srv = answers(&dig(&c, 0, &gw, &["+short", "_http._tcp.web-headless.default.svc.cluster.local", "SRV"]));
    assert_eq!(srv.len(), 3, "{srv:?}");
    assert!(srv.iter().all(|s| s.starts_with("0 100 8080 ") && s.ends_with(".web-headless.default.svc.cluster.local.")), "{srv:?}");
    let nx = dig(&c, 0, &gw, &["nope.default.svc.cluster.local", "A"]);
    assert!(nx.contains("status: NXDOMAIN") && nx.contains("flags: qr aa"), "{nx}");
    assert!(dig(&c, 0, &gw, &["default.svc.cluster.local", "A"]).contains("status: NOERROR"));
    // Other names are forwarded, answers and NXDOMAIN alike.
    assert_eq!(answers(&dig(&c, 0, &gw, &["+short", "www.example.test", "A"])), vec!["192.0.2.80"]);
    let nx = dig(&c, 0, &gw, &["nope.example.test", "A"]);
    assert!(nx.contains("status: NXDOMAIN") && !nx.contains("flags: qr aa"), "forwarded, not ours: {nx}");

    // Every node reports its proxy mode.
    for node in &c.nodes {
        let n = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/nodes/{}", node.name)), None).await.unwrap();
        let cond = n["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ServiceProxy").cloned().unwrap_or_default();
        assert_eq!((cond["status"].as_str(), cond["reason"].as_str()), (Some("True"), Some("nftables")), "{}: {cond}", node.name);
    }

    // Deleting the service releases its IP: a new service may take it.
    c.client.json(Method::DELETE, &c.url(2, "/api/v1/namespaces/default/services/web"), None).await.unwrap();
    let again = post(&c, "/api/v1/namespaces/default/services", &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "again"}, "spec": {"clusterIP": vip, "type": "NodePort", "ports": [{"port": 80, "nodePort": node_port}]}})).await;
    assert_eq!(again["spec"]["clusterIP"], vip.as_str());
}

/// GET http://ADDR/ from the test process; the body trimmed.
async fn http_get(addr: &str) -> anyhow::Result<String> {
    let client = orch::client::ApiClient::plain(Duration::from_secs(5));
    Ok(client.text(&format!("http://{addr}/")).await?.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoints_leave_the_rotation_before_their_pods_stop_and_when_unready() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    post(&c, "/apis/apps/v1/namespaces/default/deployments", &deployment("api", 3)).await;
    post(&c, "/api/v1/namespaces/default/services", &json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api"}, "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]}})).await;
    pods::create(&c, 0, &pod("client", &c.nodes[0].name, "Always", json!([container("c", "exec sleep 3600")]))).await.unwrap();
    let api = until(Duration::from_secs(90), "three ready api pods in the endpoints", || async {
        let pods = app_pods(&c, "api").await;
        let ips: BTreeSet<String> = pods.iter().filter_map(|p| p["status"]["podIP"].as_str().map(String::from)).collect();
        (ips.len() == 3 && ready_endpoints(&c, "api").await == ips).then_some(pods)
    })
    .await;
    pods::wait_pod(&c, "client", "client running", Duration::from_secs(60), all_running, String::new).await;
    let names: BTreeSet<String> = api.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    requests_reach_all(&c, "client", "http://api/", 30, &names).await;

    // A loop of requests runs while one endpoint pod is deleted: none fails. The victim runs
    // beside the client: its veth leaving the node's bridge must not disturb the client's
    // path to the node (DNS on the gateway address).
    let beside = api.iter().find(|p| p["spec"]["nodeName"] == c.nodes[0].name.as_str()).unwrap_or(&api[0]);
    let victim = beside["metadata"]["name"].as_str().unwrap().to_string();
    let mut api_node = c.orchctl_command(0).unwrap();
    let looper = std::thread::spawn(move || {
        api_node
            .args(["exec", "client", "--", "sh", "-c", "for i in $(seq 300); do wget -q -O- http://api/ || echo FAILED; sleep 0.03; done"])
            .output()
            .expect("orchctl exec")
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    c.client.json(Method::DELETE, &c.url(1, &format!("/api/v1/namespaces/default/pods/{victim}")), None).await.unwrap();
    let out = looper.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed = stdout.lines().filter(|l| *l == "FAILED").count();
    assert_eq!(failed, 0, "requests failed during the deletion: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().count(), 300);
    assert!(stdout.lines().rev().take(50).all(|l| l != victim), "the deleted pod still answered at the end");

    // A pod failing readiness leaves the rotation, and comes back when ready again.
    let other = api.iter().find(|p| p["metadata"]["name"] != victim.as_str()).unwrap();
    let sick = other["metadata"]["name"].as_str().unwrap().to_string();
    let sick_ip = other["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(exec(&c, 0, &sick, "touch /tmp/unready").0, 0);
    until(Duration::from_secs(30), "the unready pod out of the endpoints", || async { (!ready_endpoints(&c, "api").await.contains(&sick_ip)).then_some(()) }).await;
    let (_, out, _) = exec(&c, 0, "client", "for i in $(seq 60); do wget -q -O- http://api/ || echo FAILED; done");
    assert!(!out.lines().any(|l| l == sick || l == "FAILED"), "{out}");
    assert_eq!(exec(&c, 0, &sick, "rm /tmp/unready").0, 0);
    until(Duration::from_secs(30), "the pod back in the endpoints", || async { ready_endpoints(&c, "api").await.contains(&sick_ip).then_some(()) }).await;
    let (_, out, _) = exec(&c, 0, "client", "for i in $(seq 60); do wget -q -O- http://api/ || echo FAILED; done");
    assert!(!out.contains("FAILED"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pods_reach_the_api_through_the_kubernetes_service() {
    let c = Cluster::start_opts(1, 1, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    // The Service and its Endpoints (the head's API) are kept by the leader.
    let svc = until(Duration::from_secs(30), "the kubernetes Service and its endpoints", || async {
        let svc = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/services/kubernetes"), None).await.ok()?;
        let ep = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/endpoints/kubernetes"), None).await.ok()?;
        (ep["subsets"][0]["addresses"][0]["ip"] == c.nodes[0].ip.to_string().as_str()).then_some(svc)
    })
    .await;
    let vip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert_eq!(vip, "10.96.0.1", "the first address of the service range");
    let worker = c.nodes[1].name.clone();
    let created = pods::create(&c, 0, &pod("client", &worker, "Always", json!([container("c", "exec sleep 3600")]))).await.unwrap();
    pods::wait_pod(&c, "client", "client running", Duration::from_secs(60), all_running, String::new).await;
    let (code, env, err) = exec(&c, 1, "client", "echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT");
    assert_eq!((code, env.trim()), (0, format!("{vip}:443").as_str()), "{err}");
    // From inside the pod's network namespace, the API answers at the VIP, and its
    // certificate is valid for that address (kubectl verifies it against the cluster CA).
    let uid = created["metadata"]["uid"].as_str().unwrap();
    let netns = c.work_dir().join(format!("{worker}-run")).join("netns").join(uid);
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg("kubectl")
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["--server", &format!("https://{vip}:443"), "--request-timeout", "10s", "get", "namespaces", "-o", "name"])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("namespace/default"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));

    // The pod's own token, as an in-cluster client uses it: the files in the container,
    // the Service from the environment, the CA from ca.crt.
    let (code, files, err) = exec(&c, 0, "client", "cd /var/run/secrets/kubernetes.io/serviceaccount && ls && cat namespace && head -c 3 token");
    assert_eq!(code, 0, "{err}");
    assert!(files.contains("ca.crt") && files.contains("token") && files.contains("default") && files.contains("eyJ"), "{files}");
    let sa_dir = c.nodes[1].data_dir.join("kubelet").join("pods").join(uid).join("serviceaccount");
    let token = std::fs::read_to_string(sa_dir.join("token")).unwrap();
    let in_pod = |args: &[&str]| {
        let out = Command::new("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("kubectl")
            .args(["--server", &format!("https://{vip}:443"), "--token", &token, "--certificate-authority"])
            .arg(sa_dir.join("ca.crt"))
            .args(["--request-timeout", "10s"])
            .args(args)
            .env("KUBECONFIG", "/dev/null")
            .output()
            .unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
    };
    let (ok, who) = in_pod(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"]);
    assert!(ok && who.trim() == "system:serviceaccount:default:default", "{who}");
    let (ok, out) = in_pod(&["get", "pods", "-n", "default"]);
    assert!(!ok && out.contains("forbidden"), "no role yet: {out}");
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "pods-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]});
    post(&c, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", &binding).await;
    let listed = until(Duration::from_secs(20), "the pod's account lists pods", || async {
        let (ok, out) = in_pod(&["get", "pods", "-n", "default", "-o", "name"]);
        (ok && out.contains("pod/client")).then_some(out)
    })
    .await;
    assert!(listed.contains("pod/client"));
    // The official Python client's in-cluster configuration, from the pod's network
    // namespace with the pod's environment, token and CA.
    let python = cluster_tests::python::kubernetes_client().expect("the Python client installs");
    let script = "import sys\nfrom kubernetes import client\nfrom kubernetes.config.incluster_config import InClusterConfigLoader\n\
        InClusterConfigLoader(token_filename=sys.argv[1], cert_filename=sys.argv[2]).load_and_set()\n\
        print(' '.join(p.metadata.name for p in client.CoreV1Api().list_namespaced_pod('default').items))\n";
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg(&python)
        .args(["-c", script])
        .arg(sa_dir.join("token"))
        .arg(sa_dir.join("ca.crt"))
        .env("KUBERNETES_SERVICE_HOST", &vip)
        .env("KUBERNETES_SERVICE_PORT", "443")
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && names.split_whitespace().any(|n| n == "client"), "{names}{}", String::from_utf8_lossy(&out.stderr));
    c.client.json(Method::DELETE, &c.url(0, "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/pods-view"), None).await.unwrap();
    until(Duration::from_secs(20), "the pod's account is refused again", || async {
        let (ok, out) = in_pod(&["get", "pods", "-n", "default"]);
        (!ok && out.contains("forbidden")).then_some(())
    })
    .await;
}
