//! The scheduler on a real cluster (one head, two workers, a containerd each): pods
//! without a node are placed by the leader and run; replicas of one owner spread evenly; a
//! pod no node fits is reported Unschedulable with the reasons, and is placed as soon as a
//! node qualifies; required pod anti-affinity keeps one pod per node; a Deployment of nine
//! replicas spreads three per node and rolls out within its budget.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::cluster::{Cluster, Options};
use cluster_tests::pods::{self, all_running, container, load_busybox, pod};
use serde_json::{json, Value};

async fn wait_pod(c: &Cluster, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    pods::wait_pod(c, name, what, Duration::from_secs(60), check, String::new).await
}

fn unbound(name: &str) -> Value {
    let mut p = pod(name, "", "Always", json!([container("app", "exec sleep 3600")]));
    p["spec"].as_object_mut().unwrap().remove("nodeName");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_pods_are_placed_spread_and_explained() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();

    // An owner of a kind the garbage collector leaves alone (it collects the dependents of
    // missing workload objects): the scheduler spreads by controller uid, whatever the kind.
    let owner = json!([{"apiVersion": "example.com/v1", "kind": "Spreader", "name": "web", "uid": "5c1f0000-0000-4000-8000-000000000001", "controller": true}]);
    for i in 0..9 {
        let mut p = unbound(&format!("web-{i}"));
        p["metadata"]["ownerReferences"] = owner.clone();
        pods::create(&c, i % 3, &p).await.unwrap();
    }
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..9 {
        let p = wait_pod(&c, &format!("web-{i}"), "a replica running", all_running).await;
        *per_node.entry(p["spec"]["nodeName"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "{per_node:?}");

    // No node has the label: Unschedulable, with kube-scheduler's message.
    let mut picky = unbound("picky");
    picky["spec"]["nodeSelector"] = json!({"disktype": "ssd"});
    pods::create(&c, 1, &picky).await.unwrap();
    let waiting = wait_pod(&c, "picky", "PodScheduled=False", |p| {
        p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "PodScheduled" && c["status"] == "False"))
    })
    .await;
    let cond = waiting["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap().clone();
    assert_eq!(cond["reason"], "Unschedulable");
    assert_eq!(cond["message"], "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector.");
    assert!(waiting["spec"]["nodeName"].is_null());

    // Label a worker: the pod goes there and runs.
    let worker = c.nodes[2].name.clone();
    let patch = json!({"metadata": {"labels": {"disktype": "ssd"}}});
    c.client.json_as(hyper::Method::PATCH, &c.url(0, &format!("/api/v1/nodes/{worker}")), Some(&patch), "application/merge-patch+json").await.unwrap();
    let placed = wait_pod(&c, "picky", "picky running", all_running).await;
    assert_eq!(placed["spec"]["nodeName"], worker.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replicaset_keeps_its_replicas_running_and_scales() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [container("app", "exec sleep 3600")]}}}});
    let url = c.url(1, "/apis/apps/v1/namespaces/default/replicasets");
    let created = c.client.json(hyper::Method::POST, &url, Some(&rs)).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let rs_url = c.url(0, "/apis/apps/v1/namespaces/default/replicasets/web");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = pods::owned_by(&c, &uid).await;
        let status = c.client.json(hyper::Method::GET, &rs_url, None).await.unwrap()["status"].clone();
        if pods.len() == 4 && pods.iter().all(all_running) && status["readyReplicas"] == 4 {
            assert!(pods.iter().all(|p| p["metadata"]["labels"]["app"] == "web"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} pods, status {status}", pods.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Scale down: two pods go (gracefully), the status follows; nothing is created meanwhile.
    let patch = json!({"spec": {"replicas": 2}});
    c.client.json_as(hyper::Method::PATCH, &rs_url, Some(&patch), "application/merge-patch+json").await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pods = pods::owned_by(&c, &uid).await;
        let status = c.client.json(hyper::Method::GET, &rs_url, None).await.unwrap()["status"].clone();
        assert!(pods.len() <= 4, "never more pods than before: {}", pods.len());
        if pods.len() == 2 && status["replicas"] == 2 && status["readyReplicas"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{} pods, status {status}", pods.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Ready live pods, live pods (not terminating) labelled app=roll, and how many of the
/// ready ones run version `env`.
async fn roll_counts(c: &Cluster, env: &str) -> (usize, usize, usize) {
    let list = c.client.json(hyper::Method::GET, &c.url(0, "/api/v1/namespaces/default/pods?labelSelector=app%3Droll"), None).await.unwrap();
    let items = list["items"].as_array().unwrap();
    let ready = |p: &&Value| p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    let live: Vec<&Value> = items.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
    let updated = live.iter().filter(|p| ready(p) && p["spec"]["containers"][0]["env"][0]["value"] == env).count();
    // Terminating pods do not count as ready, whatever their last status said.
    (live.iter().filter(|p| ready(p)).count(), live.len(), updated)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_rolls_out_a_new_template_within_its_budget() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let d = |v: &str| {
        let mut ctr = container("app", "exec sleep 3600");
        ctr["env"] = json!([{"name": "VERSION", "value": v}]);
        ctr["readinessProbe"] = json!({"exec": {"command": ["true"]}, "periodSeconds": 1});
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll", "namespace": "default"},
            "spec": {"replicas": 9, "selector": {"matchLabels": {"app": "roll"}},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}},
                "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [ctr]}}}})
    };
    let url = c.url(0, "/apis/apps/v1/namespaces/default/deployments");
    c.client.json(hyper::Method::POST, &url, Some(&d("1"))).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while roll_counts(&c, "1").await.2 < 9 {
        assert!(std::time::Instant::now() < deadline, "first version not ready: {:?}", roll_counts(&c, "1").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nine replicas over three equal nodes: three each.
    let list = c.client.json(hyper::Method::GET, &c.url(0, "/api/v1/namespaces/default/pods?labelSelector=app%3Droll"), None).await.unwrap();
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in list["items"].as_array().unwrap() {
        *per_node.entry(p["spec"]["nodeName"].as_str().unwrap_or_default().to_string()).or_default() += 1;
    }
    assert_eq!(per_node.values().copied().collect::<Vec<_>>(), vec![3, 3, 3], "{per_node:?}");

    // Change the template: a new ReplicaSet takes over, never with fewer than 9 - 1 ready pods.
    let one = c.url(1, "/apis/apps/v1/namespaces/default/deployments/roll");
    let patch = json!({"spec": {"template": {"spec": {"containers": [d("2")["spec"]["template"]["spec"]["containers"][0].clone()]}}}});
    c.client.json_as(hyper::Method::PATCH, &one, Some(&patch), "application/merge-patch+json").await.unwrap();
    let mut lowest = usize::MAX;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (ready, live, updated) = roll_counts(&c, "2").await;
        if seen.last() != Some(&(ready, live, updated)) {
            seen.push((ready, live, updated));
        }
        lowest = lowest.min(ready);
        assert!(live <= 9 + 1 + 1, "live pods {live} beyond replicas + maxSurge (+1 being replaced)");
        if updated == 9 && live == 9 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rollout stuck: ready {ready}, live {live}, updated {updated}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(lowest >= 8, "ready pods fell to {lowest} during the rollout (budget: 8); (ready, live, updated): {seen:?}");
    // The Deployment's status catches up with its pods.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = c.client.json(hyper::Method::GET, &one, None).await.unwrap()["status"].clone();
        if (status["updatedReplicas"].as_i64(), status["readyReplicas"].as_i64(), status["replicas"].as_i64()) == (Some(9), Some(9), Some(9)) {
            assert_eq!(status["conditions"][1]["reason"], "NewReplicaSetAvailable");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "status did not settle: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_anti_affinity_keeps_one_per_node_and_explains_the_rest() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "solo"}}, "topologyKey": "kubernetes.io/hostname"}]}});
    for i in 0..4 {
        let mut p = unbound(&format!("solo-{i}"));
        p["metadata"]["labels"] = json!({"app": "solo"});
        p["spec"]["affinity"] = anti.clone();
        pods::create(&c, 0, &p).await.unwrap();
    }
    let placed = |p: &Value| p["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
    let unschedulable = |p: &Value| {
        p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
    };
    let mut nodes = Vec::new();
    let mut pending = Vec::new();
    for i in 0..4 {
        let p = wait_pod(&c, &format!("solo-{i}"), "placed or explained", |p| (placed(p) && all_running(p)) || unschedulable(p)).await;
        if placed(&p) {
            nodes.push(p["spec"]["nodeName"].as_str().unwrap().to_string());
        } else {
            pending.push(p);
        }
    }
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "one per node: {nodes:?}");
    assert_eq!(pending.len(), 1);
    let message = pending[0]["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "PodScheduled").unwrap()["message"].clone();
    assert!(message.as_str().is_some_and(|m| m.starts_with("0/3 nodes are available: 3 node(s) didn't") && m.contains("anti-affinity")), "{message}");
}
