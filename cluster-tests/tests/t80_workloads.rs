//! Workload controllers on a real cluster (one head, two workers, a containerd each): a
//! Job runs its pods to completion, at most `parallelism` at a time; a DaemonSet keeps one
//! pod on every node that qualifies, following nodes as they start or stop qualifying.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cluster_tests::cluster::{Cluster, Options};
use cluster_tests::pods::{all_running, container, load_busybox};
use hyper::Method;
use serde_json::{json, Value};

async fn owned_pods(c: &Cluster, uid: &str) -> Vec<Value> {
    let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await.unwrap();
    list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["ownerReferences"][0]["uid"] == uid).cloned().collect()
}

/// Poll `check` every 50 ms for up to `limit`; panic with `what` and the last state.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Option<T>, String)>,
{
    let deadline = Instant::now() + limit;
    loop {
        let (done, state) = check().await;
        if let Some(v) = done {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not after {limit:?}; last: {state}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_its_completions_at_most_parallelism_at_a_time() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let job = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "count", "namespace": "default"},
        "spec": {"completions": 5, "parallelism": 2, "template": {"spec": {"restartPolicy": "Never",
            "containers": [container("work", "sleep 1; echo done")]}}}});
    let created = c.client.json(Method::POST, &c.url(1, "/apis/batch/v1/namespaces/default/jobs"), Some(&job)).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let url = c.url(2, "/apis/batch/v1/namespaces/default/jobs/count");
    let most_active = std::cell::Cell::new(0);
    let (cr, uid_r, url_r, most) = (&c, &uid, &url, &most_active);
    let status = until(Duration::from_secs(120), "the job completes", || async move {
        let (c, uid, url) = (cr, uid_r, url_r);
        let pods = owned_pods(c, uid).await;
        let active = pods.iter().filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).count();
        most.set(most.get().max(active));
        let status = c.client.json(Method::GET, url, None).await.unwrap()["status"].clone();
        let complete = status["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete" && c["status"] == "True"));
        (complete.then(|| status.clone()), format!("{} pods, status {status}", pods.len()))
    })
    .await;
    assert_eq!((status["succeeded"].as_u64(), status["failed"].as_u64(), status["active"].as_u64()), (Some(5), Some(0), Some(0)), "{status}");
    assert!(status["completionTime"].is_string() && status["startTime"].is_string());
    let pods = owned_pods(&c, &uid).await;
    assert_eq!(pods.len(), 5, "one pod per completion, none failed");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded" && p["metadata"]["labels"]["job-name"] == "count"));
    assert!(most_active.get() <= 2, "parallelism 2, saw {} at once", most_active.get());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonset_runs_one_pod_per_qualifying_node_and_follows_the_nodes() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let node_names: BTreeSet<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    let ds = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container("agent", "exec sleep 3600")]}}}});
    let created = c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/daemonsets"), Some(&ds)).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let running_on = |pods: &[Value]| -> BTreeSet<String> {
        pods.iter().filter(|p| all_running(p) && p["metadata"]["deletionTimestamp"].is_null()).filter_map(|p| p["spec"]["nodeName"].as_str().map(String::from)).collect()
    };
    until(Duration::from_secs(90), "a running agent on every node", || async {
        let pods = owned_pods(&c, &uid).await;
        let on = running_on(&pods);
        (((on == node_names) && pods.len() == 3).then_some(()), format!("{on:?} of {} pods", pods.len()))
    })
    .await;
    let ds_url = c.url(1, "/apis/apps/v1/namespaces/default/daemonsets/agent");
    until(Duration::from_secs(30), "status: 3 desired, 3 ready", || async {
        let s = c.client.json(Method::GET, &ds_url, None).await.unwrap()["status"].clone();
        ((s["desiredNumberScheduled"] == 3 && s["numberReady"] == 3).then_some(()), s.to_string())
    })
    .await;

    // Restrict it to labelled nodes: the others' pods go; labelling a node brings one back.
    let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {"agent": "yes"}}}}});
    c.client.json_as(Method::PATCH, &ds_url, Some(&patch), "application/merge-patch+json").await.unwrap();
    until(Duration::from_secs(60), "no agents without the label", || async {
        let pods = owned_pods(&c, &uid).await;
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        (live.is_empty().then_some(()), format!("{} live pods", live.len()))
    })
    .await;
    let worker = c.nodes[2].name.clone();
    let label = json!({"metadata": {"labels": {"agent": "yes"}}});
    c.client.json_as(Method::PATCH, &c.url(0, &format!("/api/v1/nodes/{worker}")), Some(&label), "application/merge-patch+json").await.unwrap();
    until(Duration::from_secs(60), "an agent on the newly labelled node", || async {
        let pods = owned_pods(&c, &uid).await;
        let on = running_on(&pods);
        ((on == BTreeSet::from([worker.clone()])).then_some(()), format!("{on:?}"))
    })
    .await;
}
