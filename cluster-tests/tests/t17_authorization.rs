//! Authorization on a real cluster (one head, one worker, a containerd each): a matrix of
//! identities (the admin, a `view` user and an `edit` user bound in one namespace, a node,
//! anonymous) and verbs, asked through the head and through the worker, each answer and
//! what it left in the store checked; `kubectl auth can-i [--list]` and a pod's logs and
//! exec, which the worker authorizes by asking a head.

use std::time::Duration;

use cluster_tests::cluster::{until, Cluster, Options};
use cluster_tests::kubectl::kubectl_as;
use cluster_tests::pods::{load_busybox, IMAGE};
use hyper::Method;
use orch::client::{ApiClient, HttpError, Tls};
use orch_raft::tls::NodeTls;
use serde_json::{json, Value};

fn code(r: &anyhow::Result<Value>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.downcast_ref::<HttpError>().map_or(0, |e| e.code),
    }
}

fn message(r: &anyhow::Result<Value>) -> String {
    r.as_ref().err().map(|e| e.to_string()).unwrap_or_default()
}

fn binding(ns: &str, user: &str, role: &str) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": format!("{user}-{role}"), "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}]})
}

#[tokio::test(flavor = "multi_thread")]
async fn identities_by_verbs_through_a_head_and_a_worker() {
    let c = Cluster::start_opts(1, 1, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let admin = &c.client;
    let post = |path: &str, body: Value| {
        let url = c.url(0, path);
        async move { admin.json(Method::POST, &url, Some(&body)).await }
    };
    post("/api/v1/namespaces", json!({"metadata": {"name": "team"}})).await.unwrap();
    post("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", binding("team", "viewer", "view")).await.unwrap();
    post("/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", binding("team", "editor", "edit")).await.unwrap();
    post("/api/v1/namespaces/team/secrets", json!({"metadata": {"name": "db"}, "stringData": {"password": "p"}})).await.unwrap();
    post("/api/v1/namespaces/team/secrets", json!({"metadata": {"name": "unused"}, "stringData": {"x": "y"}})).await.unwrap();
    let worker_name = c.nodes[1].name.clone();
    // A pod on the worker that uses the secret, one on the head.
    let pod = |name: &str, node: &str, env: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "team"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": IMAGE,
            "command": ["sh", "-c", "echo hello-log; exec sleep 3600"], "env": env}]}});
    let secret_env = json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}]);
    post("/api/v1/namespaces/team/pods", pod("on-worker", &worker_name, secret_env)).await.unwrap();
    post("/api/v1/namespaces/team/pods", pod("on-head", &c.nodes[0].name, json!([]))).await.unwrap();

    let (viewer_kc, viewer) = c.add_user("viewer", None).unwrap();
    let (editor_kc, editor) = c.add_user("editor", Some("developers")).unwrap();
    // Only an administrator gets the cluster to sign a certificate.
    let out = std::process::Command::new(cluster_tests::cluster::bin_dir().join("orchctl"))
        .arg("--kubeconfig").arg(&editor_kc)
        .args(["kubeconfig", "user", "mallory", "--group", "system:masters"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("forbidden"), "{out:?}");
    let worker_tls: NodeTls = serde_json::from_slice(&std::fs::read(c.nodes[1].data_dir.join("tls.json")).unwrap()).unwrap();
    let node = ApiClient::new(Duration::from_secs(10), &Tls::for_node(&worker_tls).unwrap());
    let anonymous = c.client_as(None, None).unwrap();

    for via in [0, 1] {
        let call = |who: &ApiClient, method: Method, path: &str, body: Option<Value>| {
            let (who, url) = (who.clone(), c.url(via, path));
            async move { who.json(method, &url, body.as_ref()).await }
        };
        let cm = |name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("{name}-{via}")}});

        // view in team: reads there, nothing else.
        assert_eq!(code(&call(&viewer, Method::GET, "/api/v1/namespaces/team/pods", None).await), 200);
        let r = call(&viewer, Method::GET, "/api/v1/namespaces/default/pods", None).await;
        assert_eq!(code(&r), 403);
        assert!(message(&r).contains(r#"User "viewer" cannot list resource "pods" in API group "" in the namespace "default""#), "{}", message(&r));
        assert_eq!(code(&call(&viewer, Method::GET, "/api/v1/namespaces/team/secrets/db", None).await), 403, "view reads no secrets");
        let r = call(&viewer, Method::POST, "/api/v1/namespaces/team/configmaps", Some(cm("by-viewer"))).await;
        assert_eq!(code(&r), 403);
        assert_eq!(code(&call(admin, Method::GET, &format!("/api/v1/namespaces/team/configmaps/by-viewer-{via}"), None).await), 404, "a refused write was stored");
        assert_eq!(code(&call(&viewer, Method::GET, "/api/v1/nodes", None).await), 403);

        // edit in team: writes workloads and reads secrets there; cannot grant, nor go elsewhere.
        assert_eq!(code(&call(&editor, Method::POST, "/api/v1/namespaces/team/configmaps", Some(cm("by-editor"))).await), 200);
        assert_eq!(code(&call(&editor, Method::GET, "/api/v1/namespaces/team/secrets/db", None).await), 200);
        let grant = binding("team", &format!("someone-{via}"), "admin");
        let r = call(&editor, Method::POST, "/apis/rbac.authorization.k8s.io/v1/namespaces/team/rolebindings", Some(grant)).await;
        assert_eq!(code(&r), 403, "edit cannot grant roles");
        assert_eq!(code(&call(&editor, Method::POST, "/api/v1/namespaces/default/configmaps", Some(cm("elsewhere"))).await), 403);

        // The node: reads what its roles need, changes only its own, reads only its pods' secrets.
        assert_eq!(code(&call(&node, Method::GET, "/api/v1/pods", None).await), 200);
        assert_eq!(code(&call(&node, Method::GET, "/api/v1/namespaces/team/secrets/db", None).await), 200, "its pod uses it");
        assert_eq!(code(&call(&node, Method::GET, "/api/v1/namespaces/team/secrets/unused", None).await), 403);
        assert_eq!(code(&call(&node, Method::GET, "/api/v1/namespaces/team/configmaps", None).await), 403);
        let beat = json!({"metadata": {"labels": {"touched": "yes"}}});
        let other = format!("/api/v1/nodes/{}", c.nodes[0].name);
        let r = node.json_as(Method::PATCH, &c.url(via, &other), Some(&beat), "application/merge-patch+json").await;
        assert_eq!(code(&r), 403, "a node may not change another node");
        let r = node.json_as(Method::PATCH, &c.url(via, &format!("/api/v1/nodes/{worker_name}")), Some(&beat), "application/merge-patch+json").await;
        assert_eq!(code(&r), 200, "{}", message(&r));
        let head_pod = call(admin, Method::GET, "/api/v1/namespaces/team/pods/on-head", None).await.unwrap();
        let r = call(&node, Method::PUT, "/api/v1/namespaces/team/pods/on-head/status", Some(head_pod)).await;
        assert_eq!(code(&r), 403, "a node may not write another node's pod status");
        assert_eq!(code(&call(&node, Method::DELETE, "/api/v1/namespaces/team/pods/on-head", None).await), 403);

        // Anonymous: 401 here.
        assert_eq!(code(&call(&anonymous, Method::GET, "/api/v1/namespaces/team/pods", None).await), 401);
    }
    // Nothing the refused calls tried is there.
    assert_eq!(code(&admin.json(Method::GET, &c.url(0, "/api/v1/namespaces/team/pods/on-head"), None).await), 200);

    // The head's audit log has the refusals and the Secret reads, with who asked.
    // (The log is written by a thread of its own: poll for the lines.)
    let read_events = || -> Vec<Value> {
        std::fs::read_to_string(c.nodes[0].data_dir.join("audit.log")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let has = |events: &[Value], user: &str, verb: &str, resource: &str, code: u64| {
        events.iter().any(|e| e["user"]["username"] == user && e["verb"] == verb && e["objectRef"]["resource"] == resource && e["responseStatus"]["code"] == code)
    };
    let events = until(Duration::from_secs(10), "the head's audit log has the refusals and the Secret reads", || async {
        let events = read_events();
        let all = has(&events, "viewer", "create", "configmaps", 403)
            && has(&events, "editor", "get", "secrets", 200)
            && has(&events, "system:node:worker-0", "get", "secrets", 403);
        let n = events.len();
        (all.then_some(events), format!("{n} events"))
    })
    .await;
    assert!(!events.iter().any(|e| e["verb"] == "list" && e["objectRef"]["resource"] == "pods" && e["responseStatus"]["code"] == 200),
        "plain reads are not audited");

    // kubectl auth can-i, as the viewer, through either node.
    for via in [0, 1] {
        let yes = kubectl_as(&c, &viewer_kc, via, &["auth", "can-i", "list", "pods", "-n", "team"], None).unwrap();
        assert_eq!((yes.code, yes.stdout.trim()), (0, "yes"), "{yes:?}");
        let no = kubectl_as(&c, &viewer_kc, via, &["auth", "can-i", "create", "pods", "-n", "team"], None).unwrap();
        assert_eq!((no.code, no.stdout.trim()), (1, "no"), "{no:?}");
        let list = kubectl_as(&c, &viewer_kc, via, &["auth", "can-i", "--list", "-n", "team"], None).unwrap();
        assert!(list.ok() && list.stdout.lines().any(|l| l.starts_with("pods ") && l.contains("[get list watch]")), "{list:?}");
        assert!(!list.stdout.lines().any(|l| l.starts_with("secrets")), "{}", list.stdout);
    }

    // A pod's logs and exec, served by the worker itself, which asks a head.
    until(Duration::from_secs(60), "the worker's pod runs", || async {
        let p = admin.json(Method::GET, &c.url(0, "/api/v1/namespaces/team/pods/on-worker"), None).await.unwrap();
        ((p["status"]["phase"] == "Running").then_some(()), p["status"].to_string())
    })
    .await;
    for via in [1, 0] {
        let logs = kubectl_as(&c, &viewer_kc, via, &["logs", "-n", "team", "on-worker"], None).unwrap();
        assert!(logs.ok() && logs.stdout.contains("hello-log"), "view reads logs: {logs:?}");
        let denied = kubectl_as(&c, &viewer_kc, via, &["exec", "-n", "team", "on-worker", "--", "echo", "in"], None).unwrap();
        assert!(!denied.ok() && denied.stderr.contains("forbidden"), "view may not exec: {denied:?}");
        let allowed = kubectl_as(&c, &editor_kc, via, &["exec", "-n", "team", "on-worker", "--", "sh", "-c", "echo $P"], None).unwrap();
        assert_eq!((allowed.code, allowed.stdout.trim()), (0, "p"), "edit may exec: {allowed:?}");
    }

    // A namespace's LimitRange: defaults filled in, bounds refused (and nothing stored).
    let limits = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "per-container"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"}, "max": {"cpu": "1"}}]}});
    post("/api/v1/namespaces/team/limitranges", limits).await.unwrap();
    let plain = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "limited", "namespace": "team"},
        "spec": {"containers": [{"name": "app", "image": IMAGE, "command": ["sleep", "3600"]}]}});
    let created = editor.json(Method::POST, &c.url(1, "/api/v1/namespaces/team/pods"), Some(&plain)).await.unwrap();
    assert_eq!(created["spec"]["containers"][0]["resources"], json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "500m"}}));
    let mut greedy = plain.clone();
    greedy["metadata"]["name"] = "greedy".into();
    greedy["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}});
    let r = editor.json(Method::POST, &c.url(0, "/api/v1/namespaces/team/pods"), Some(&greedy)).await;
    assert_eq!(code(&r), 403);
    assert!(message(&r).contains("maximum cpu usage per Container is 1, but limit is 2"), "{}", message(&r));
    assert_eq!(code(&admin.json(Method::GET, &c.url(0, "/api/v1/namespaces/team/pods/greedy"), None).await), 404);

    // A ResourceQuota: creates past it are refused through either node; its status counts.
    post("/api/v1/namespaces", json!({"metadata": {"name": "capped"}})).await.unwrap();
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "small"},
        "spec": {"hard": {"configmaps": "1", "requests.cpu": "1"}}});
    post("/api/v1/namespaces/capped/resourcequotas", quota).await.unwrap();
    let cm = |n: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}});
    admin.json(Method::POST, &c.url(1, "/api/v1/namespaces/capped/configmaps"), Some(&cm("one"))).await.unwrap();
    let r = admin.json(Method::POST, &c.url(0, "/api/v1/namespaces/capped/configmaps"), Some(&cm("two"))).await;
    assert_eq!(code(&r), 403);
    assert!(message(&r).contains("exceeded quota: small, requested: configmaps=1, used: configmaps=1, limited: configmaps=1"), "{}", message(&r));
    let mut big = plain.clone();
    big["metadata"] = json!({"name": "big", "namespace": "capped"});
    big["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "2"}});
    let r = admin.json(Method::POST, &c.url(1, "/api/v1/namespaces/capped/pods"), Some(&big)).await;
    assert!(code(&r) == 403 && message(&r).contains("requested: requests.cpu=2, used: requests.cpu=0, limited: requests.cpu=1"), "{}", message(&r));
    let url = c.url(0, "/api/v1/namespaces/capped/resourcequotas/small");
    until(Duration::from_secs(20), "the quota's status counts what the namespace holds", || async {
        let q = admin.json(Method::GET, &url, None).await.unwrap();
        ((q["status"]["used"] == json!({"configmaps": "1", "requests.cpu": "0"})).then_some(()), q["status"].to_string())
    })
    .await;

    // Creates racing for the last places of a quota, through both nodes at once: exactly
    // the quota's worth is stored, and every other create is refused.
    post("/api/v1/namespaces", json!({"metadata": {"name": "race"}})).await.unwrap();
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "five"}, "spec": {"hard": {"configmaps": "5"}}});
    post("/api/v1/namespaces/race/resourcequotas", quota).await.unwrap();
    let racers = (0..24).map(|i| {
        let (admin, url) = (admin.clone(), c.url(i % 2, "/api/v1/namespaces/race/configmaps"));
        async move { code(&admin.json(Method::POST, &url, Some(&cm(&format!("cm-{i}")))).await) }
    });
    let answers = futures::future::join_all(racers).await;
    let stored = admin.json(Method::GET, &c.url(0, "/api/v1/namespaces/race/configmaps"), None).await.unwrap();
    let stored = stored["items"].as_array().unwrap().len();
    let created = answers.iter().filter(|a| **a == 200).count();
    assert_eq!((stored, created), (5, 5), "answers {answers:?}");
    assert!(answers.iter().all(|a| matches!(a, 200 | 403 | 409)), "{answers:?}");

    // Controllers are held to quotas too: a ReplicaSet asking for more pods than the quota
    // allows gets what the quota allows.
    let quota = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "two-pods"}, "spec": {"hard": {"pods": "2"}}});
    post("/api/v1/namespaces/race/resourcequotas", quota).await.unwrap();
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "many"}, "spec": {"replicas": 4,
        "selector": {"matchLabels": {"app": "many"}},
        "template": {"metadata": {"labels": {"app": "many"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    post("/apis/apps/v1/namespaces/race/replicasets", rs).await.unwrap();
    let pods_url = c.url(0, "/api/v1/namespaces/race/pods");
    until(Duration::from_secs(20), "the ReplicaSet's pods, as many as the quota allows", || async {
        let n = admin.json(Method::GET, &pods_url, None).await.unwrap()["items"].as_array().map_or(0, Vec::len);
        ((n == 2).then_some(n), format!("{n} pods"))
    })
    .await;
    // The refusal's event is written after the refused create: looked for until it is in.
    let events_url = c.url(0, "/api/v1/namespaces/race/events");
    until(Duration::from_secs(20), "the ReplicaSet reports the refusal", || async {
        let events = admin.json(Method::GET, &events_url, None).await.unwrap();
        let refused = events["items"].as_array().into_iter().flatten().any(|e| e["reason"] == "FailedCreate" && e["message"].as_str().unwrap_or("").contains("exceeded quota: two-pods"));
        (refused.then_some(()), events.to_string())
    })
    .await;
    let n = admin.json(Method::GET, &pods_url, None).await.unwrap()["items"].as_array().map_or(0, Vec::len);
    assert_eq!(n, 2, "never more than the quota");
}
