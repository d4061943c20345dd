//! Node lifecycle on a real cluster (one head, two workers, a containerd each): when a
//! worker's orchd dies, the leader marks the node NotReady and taints it, then evicts its
//! ReplicaSet pods, which are replaced on the other nodes; its StatefulSet pod is not
//! replaced while the node might still run it, only once the Node object is deleted. A
//! worker cut off by a network partition keeps running its pods, its StatefulSet pod is not
//! duplicated, and when it returns it stops the pods that were replaced meanwhile.

use std::time::Duration;

use cluster_tests::cluster::{until, Cluster, Options};
use cluster_tests::pods::{all_running, container, load_busybox};
use hyper::Method;
use serde_json::{json, Value};

async fn pods(c: &Cluster, label: &str) -> Vec<Value> {
    let list = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{label}")), None).await.unwrap();
    list["items"].as_array().unwrap().clone()
}

fn on(p: &Value) -> &str {
    p["spec"]["nodeName"].as_str().unwrap_or("")
}

fn live(p: &Value) -> bool {
    p["metadata"]["deletionTimestamp"].is_null()
}

async fn label_node(c: &Cluster, node: &str, labels: Value) {
    let patch = json!({"metadata": {"labels": labels}});
    c.client.json_as(Method::PATCH, &c.url(0, &format!("/api/v1/nodes/{node}")), Some(&patch), "application/merge-patch+json").await.unwrap();
}

/// One head and two workers (node grace 4 s, eviction after 3 s) running ReplicaSet `web`
/// (3 pods, one on worker-0 at least) and StatefulSet `db` (db-0 on worker-0, the only node
/// labelled for it).
async fn web_and_db() -> Cluster {
    let flags = ["--node-monitor-grace-s", "4", "--pod-eviction-timeout-s", "3"].map(String::from).to_vec();
    let c = Cluster::start_opts(1, 2, Options { containerd: true, extra: flags }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let dead = c.nodes[1].name.clone();
    label_node(&c, &dead, json!({"db": "yes"})).await;
    let template = |app: &str, extra: Value| {
        let mut t = json!({"metadata": {"labels": {"app": app}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container("app", "exec sleep 3600")]}});
        orch::api::object::merge_patch(&mut t["spec"], &extra);
        t
    };
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template("web", json!({}))}});
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 1, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": template("db", json!({"nodeSelector": {"db": "yes"}}))}});
    c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/replicasets"), Some(&rs)).await.unwrap();
    c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/statefulsets"), Some(&sts)).await.unwrap();
    until(Duration::from_secs(90), "web spread over the nodes and db-0 on the labelled worker", || async {
        let (web, db) = (pods(&c, "web").await, pods(&c, "db").await);
        let ok = web.len() == 3 && web.iter().all(all_running) && web.iter().any(|p| on(p) == dead)
            && db.len() == 1 && all_running(&db[0]) && on(&db[0]) == dead;
        (ok.then_some(()), format!("web on {:?}, db on {:?}", web.iter().map(on).collect::<Vec<_>>(), db.iter().map(on).collect::<Vec<_>>()))
    })
    .await;
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_workers_pods_are_replaced_but_its_statefulset_pod_waits_for_the_node_to_be_deleted() {
    let mut c = web_and_db().await;
    let (dead, spare) = (c.nodes[1].name.clone(), c.nodes[2].name.clone());

    // The worker's orchd dies (its containers keep running: as far as the cluster can tell,
    // it may only be cut off).
    c.kill(1);
    let node_url = c.url(0, &format!("/api/v1/nodes/{dead}"));
    until(Duration::from_secs(30), "the dead node NotReady and tainted", || async {
        let n = c.client.json(Method::GET, &node_url, None).await.unwrap();
        let ready = n["status"]["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == "Ready")).cloned().unwrap_or_default();
        let taints: Vec<String> = n["spec"]["taints"].as_array().into_iter().flatten().map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or(""))).collect();
        let ok = ready["status"] == "Unknown" && taints.contains(&"node.kubernetes.io/unreachable:NoExecute".to_string());
        (ok.then_some(()), format!("Ready {ready}, taints {taints:?}"))
    })
    .await;
    until(Duration::from_secs(60), "web's pods on the dead node evicted and replaced elsewhere", || async {
        let web = pods(&c, "web").await;
        let running_elsewhere = web.iter().filter(|p| live(p) && on(p) != dead && all_running(p)).count();
        let live_on_dead = web.iter().filter(|p| live(p) && on(p) == dead).count();
        // Meanwhile db-0 stays where it is, the only one of its name.
        let db = pods(&c, "db").await;
        assert!(db.len() == 1 && live(&db[0]) && on(&db[0]) == dead, "db-0 moved or was deleted while its node may still run it: {db:?}");
        ((running_elsewhere == 3 && live_on_dead == 0).then_some(()), format!("{running_elsewhere} running elsewhere, {live_on_dead} live on the dead node"))
    })
    .await;

    // The operator declares the node gone: db-0 is removed and made again on the spare.
    label_node(&c, &spare, json!({"db": "yes"})).await;
    c.client.json(Method::DELETE, &node_url, None).await.unwrap();
    until(Duration::from_secs(60), "db-0 running on the spare worker", || async {
        let db = pods(&c, "db").await;
        let ok = db.len() == 1 && on(&db[0]) == spare && all_running(&db[0]);
        (ok.then_some(()), format!("{:?}", db.iter().map(|p| (on(p).to_string(), p["status"]["phase"].clone())).collect::<Vec<_>>()))
    })
    .await;
    let web = pods(&c, "web").await;
    assert!(web.iter().all(|p| on(p) != dead), "the deleted node's pods are gone: {:?}", web.iter().map(on).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_worker_keeps_its_statefulset_pod_and_drops_what_was_replaced_when_it_returns() {
    use cluster_tests::chaos::nemesis;
    let c = web_and_db().await;
    let cut = c.nodes[1].name.clone();
    let db_uid = pods(&c, "db").await[0]["metadata"]["uid"].clone();

    // Cut the worker off from the other nodes; its orchd and containers go on running.
    nemesis::block(&c, 1, &[0, 2]).unwrap();
    until(Duration::from_secs(60), "web replaced on the reachable nodes", || async {
        let web = pods(&c, "web").await;
        let running_elsewhere = web.iter().filter(|p| live(p) && on(p) != cut && all_running(p)).count();
        let live_on_cut = web.iter().filter(|p| live(p) && on(p) == cut).count();
        let db = pods(&c, "db").await;
        assert!(db.len() == 1 && live(&db[0]) && on(&db[0]) == cut && db[0]["metadata"]["uid"] == db_uid, "db-0 was replaced while its node is only cut off: {db:?}");
        ((running_elsewhere == 3 && live_on_cut == 0).then_some(()), format!("{running_elsewhere} running elsewhere, {live_on_cut} live on the cut node"))
    })
    .await;
    // Static stability: the cut-off node still runs what it had, db-0 included.
    let ctrd = &c.containerds[1];
    assert!(ctrd.running_tasks().len() >= 2, "the cut node stopped its containers: {:?}", ctrd.running_tasks());

    // Back on the network: the node is Ready again, db-0 is the same pod, and the node stops
    // the web pod that was replaced meanwhile, leaving one running container: db-0's.
    nemesis::heal(&c, 1).unwrap();
    let node_url = c.url(0, &format!("/api/v1/nodes/{cut}"));
    until(Duration::from_secs(60), "the node Ready and only db-0 running on it", || async {
        let n = c.client.json(Method::GET, &node_url, None).await.unwrap_or_default();
        let ready = n["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True");
        let tasks = ctrd.running_tasks();
        ((ready && tasks.len() == 1).then_some(()), format!("ready {ready}, running {tasks:?}"))
    })
    .await;
    let db = pods(&c, "db").await;
    assert!(db.len() == 1 && db[0]["metadata"]["uid"] == db_uid && on(&db[0]) == cut && all_running(&db[0]), "{db:?}");
    let web = pods(&c, "web").await;
    assert_eq!(web.iter().filter(|p| live(p) && all_running(p)).count(), 3);
}
