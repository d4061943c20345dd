//! The control plane moves with the leader (three heads, two workers, a containerd each):
//! SIGKILL the leader in the middle of a rolling update and the new leader finishes it.
//! The store's history of pods, replayed from before the update, shows the budget held at
//! every revision (never more than replicas + maxSurge pods, never fewer than replicas −
//! maxUnavailable ready), and that the old leader created nothing once the new one had:
//! every pod carries the term it was created in (`orch.dev/created-in-term`), and all of the
//! old term's come before the new term's.

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::cluster::{until, Cluster, Options};
use cluster_tests::pods::{container, load_busybox};
use hyper::Method;
use serde_json::{json, Value};

const REPLICAS: usize = 6;
const MAX_SURGE: usize = 1;

fn ready(p: &Value) -> bool {
    p["status"]["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn term_of(p: &Value) -> u64 {
    p["metadata"]["annotations"][orch::api::store::CREATED_IN_TERM].as_str().and_then(|t| t.parse().ok()).unwrap_or(0)
}

async fn deployment(c: &Cluster, via: usize) -> Value {
    c.client.json(Method::GET, &c.url(via, "/apis/apps/v1/namespaces/default/deployments/roll"), None).await.unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_survives_a_leader_kill_within_its_budget() {
    let mut c = Cluster::start_opts(3, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    // Pods only on the workers: killing a head takes no replica with it.
    let script = |v: &str| format!("sleep 1; touch /tmp/ready; echo {v}; exec sleep 3600");
    let mut app = container("app", &script("v1"));
    app["readinessProbe"] = json!({"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1});
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll", "namespace": "default"},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "roll"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": MAX_SURGE, "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {"app": "roll"}}, "spec": {
                "nodeSelector": {orch::api::ROLE_LABEL: "worker"}, "terminationGracePeriodSeconds": 1, "containers": [app]}}}});
    c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/deployments"), Some(&deploy)).await.unwrap();
    let complete = |d: &Value| {
        let s = &d["status"];
        let n = Some(REPLICAS as u64);
        s["observedGeneration"] == d["metadata"]["generation"] && s["updatedReplicas"].as_u64() == n && s["readyReplicas"].as_u64() == n && s["replicas"].as_u64() == n
    };
    until(Duration::from_secs(120), "the first version rolled out", || async {
        let d = deployment(&c, 0).await;
        (complete(&d).then_some(()), d["status"].to_string())
    })
    .await;
    // The pods as of one revision: the replay starts from them.
    let start = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await.unwrap();
    let before: u64 = start["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();

    // A new template; once the rollout is under way, SIGKILL the leader.
    let mut v2 = deploy.clone();
    v2["spec"]["template"]["spec"]["containers"][0]["command"] = container("app", &script("v2"))["command"].clone();
    c.client.json(Method::PUT, &c.url(0, "/apis/apps/v1/namespaces/default/deployments/roll"), Some(&v2)).await.unwrap();
    let old_leader = c.leader().await.expect("a leader");
    until(Duration::from_secs(60), "the rollout under way", || async {
        let d = deployment(&c, 0).await;
        let updated = d["status"]["updatedReplicas"].as_u64().unwrap_or(0);
        ((1..REPLICAS as u64 - 1).contains(&updated).then_some(()), d["status"].to_string())
    })
    .await;
    let status = c.status(old_leader).await.unwrap();
    let old_term = status["members"].as_array().into_iter().flatten().find(|m| m["leader"] == true).and_then(|m| m["term"].as_u64()).expect("the leader's term");
    c.kill(old_leader);
    let survivor = (0..3).find(|i| *i != old_leader).unwrap();

    // The new leader finishes it.
    until(Duration::from_secs(120), "the rollout finished by the new leader", || async {
        let d = deployment(&c, survivor).await;
        (complete(&d).then_some(()), d["status"].to_string())
    })
    .await;
    let new_leader = c.leader().await.expect("a new leader");
    assert_ne!(new_leader, old_leader);

    // Replay the pods' history from before the update, revision by revision.
    let list = c.client.json(Method::GET, &c.url(survivor, "/api/v1/namespaces/default/pods"), None).await.unwrap();
    let now: u64 = list["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap();
    let watch = c.url(survivor, &format!("/api/v1/namespaces/default/pods?watch=true&resourceVersion={before}"));
    let mut events = cluster_tests::watch::open(&c.client, &watch).await.unwrap();
    let mut pods: BTreeMap<String, Value> =
        start["items"].as_array().unwrap().iter().map(|p| (p["metadata"]["name"].as_str().unwrap().to_string(), p.clone())).collect();
    let (mut most, mut fewest_ready) = (0, usize::MAX);
    let mut created: Vec<(u64, u64, String)> = Vec::new(); // (revision, term, name)
    loop {
        let seen = tokio::time::timeout(Duration::from_secs(10), events.recv()).await.expect("history arrives").expect("stream open").unwrap();
        if seen.kind == "ADDED" {
            created.push((seen.revision, term_of(&seen.object), seen.name.clone()));
        }
        if seen.kind == "DELETED" {
            pods.remove(&seen.name);
        } else {
            pods.insert(seen.name.clone(), seen.object.clone());
        }
        let live: Vec<&Value> = pods.values().filter(|p| p["metadata"]["deletionTimestamp"].is_null() && p["metadata"]["labels"]["app"] == "roll").collect();
        most = most.max(live.len());
        fewest_ready = fewest_ready.min(live.iter().filter(|p| ready(p)).count());
        if seen.revision >= now {
            break;
        }
    }
    assert!(most <= REPLICAS + MAX_SURGE, "{most} pods at once, budget {}", REPLICAS + MAX_SURGE);
    assert!(fewest_ready >= REPLICAS, "{fewest_ready} ready at one point (maxUnavailable 0)");
    assert!(created.len() >= REPLICAS, "the new version's pods were created: {created:?}");
    let new_terms: Vec<&(u64, u64, String)> = created.iter().filter(|(_, t, _)| *t > old_term).collect();
    assert!(!new_terms.is_empty(), "the new leader created pods: {created:?}");
    let first_new = new_terms.iter().map(|(r, _, _)| *r).min().unwrap();
    for (rev, term, name) in &created {
        assert!(*term > 0, "{name} carries no term");
        assert!(*term > old_term || *rev < first_new, "{name} was created in term {term} at {rev}, after the new leader's first pod at {first_new}");
    }
}
