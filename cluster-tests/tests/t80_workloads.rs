//! Workload controllers on a real cluster (one head, two workers, a containerd each): a
//! Job runs its pods to completion, at most `parallelism` at a time; a DaemonSet keeps one
//! pod on every node that qualifies, following nodes as they join or start or stop
//! qualifying.

use std::collections::BTreeSet;
use std::time::Duration;

use cluster_tests::cluster::{until, Cluster, Options};
use cluster_tests::pods::{self, all_running, container, load_busybox};
use hyper::Method;
use serde_json::{json, Value};

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
        let pods = pods::owned_by(c, uid).await;
        let active = pods.iter().filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))).count();
        most.set(most.get().max(active));
        let status = c.client.json(Method::GET, url, None).await.unwrap()["status"].clone();
        let complete = status["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete" && c["status"] == "True"));
        (complete.then(|| status.clone()), format!("{} pods, status {status}", pods.len()))
    })
    .await;
    assert_eq!((status["succeeded"].as_u64(), status["failed"].as_u64(), status["active"].as_u64()), (Some(5), Some(0), Some(0)), "{status}");
    assert!(status["completionTime"].is_string() && status["startTime"].is_string());
    let pods = pods::owned_by(&c, &uid).await;
    assert_eq!(pods.len(), 5, "one pod per completion, none failed");
    assert!(pods.iter().all(|p| p["status"]["phase"] == "Succeeded" && p["metadata"]["labels"]["job-name"] == "count"));
    assert!(most_active.get() <= 2, "parallelism 2, saw {} at once", most_active.get());
    let reasons = event_reasons(&c, "count").await;
    assert_eq!(reasons.iter().filter(|r| *r == "SuccessfulCreate").count(), 5, "{reasons:?}");
    assert_eq!(reasons.iter().filter(|r| *r == "CompletionsReached").count(), 1, "told once: {reasons:?}");
}

/// The reasons of the Events about object `name` in `default`.
async fn event_reasons(c: &Cluster, name: &str) -> Vec<String> {
    let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/events"), None).await.unwrap();
    list["items"].as_array().into_iter().flatten().filter(|e| e["involvedObject"]["name"] == name).filter_map(|e| e["reason"].as_str().map(String::from)).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_daemonset_runs_one_pod_per_qualifying_node_and_follows_the_nodes() {
    let mut c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
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
        let pods = pods::owned_by(&c, &uid).await;
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

    // A node joins the cluster: it gets its agent.
    let joined = c.add_worker().await.expect("a new worker joins");
    load_busybox(&c, 0).unwrap();
    let all: BTreeSet<String> = c.nodes.iter().map(|n| n.name.clone()).collect();
    until(Duration::from_secs(90), "an agent on the newly joined node too", || async {
        let pods = pods::owned_by(&c, &uid).await;
        let on = running_on(&pods);
        ((on == all).then_some(()), format!("{on:?}, joined {}", c.nodes[joined].name))
    })
    .await;

    // Restrict it to labelled nodes: the others' pods go; labelling a node brings one back.
    let patch = json!({"spec": {"template": {"spec": {"nodeSelector": {"agent": "yes"}}}}});
    c.client.json_as(Method::PATCH, &ds_url, Some(&patch), "application/merge-patch+json").await.unwrap();
    until(Duration::from_secs(60), "no agents without the label", || async {
        let pods = pods::owned_by(&c, &uid).await;
        let live: Vec<&Value> = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).collect();
        (live.is_empty().then_some(()), format!("{} live pods", live.len()))
    })
    .await;
    let worker = c.nodes[2].name.clone();
    let label = json!({"metadata": {"labels": {"agent": "yes"}}});
    c.client.json_as(Method::PATCH, &c.url(0, &format!("/api/v1/nodes/{worker}")), Some(&label), "application/merge-patch+json").await.unwrap();
    until(Duration::from_secs(60), "an agent on the newly labelled node", || async {
        let pods = pods::owned_by(&c, &uid).await;
        let on = running_on(&pods);
        ((on == BTreeSet::from([worker.clone()])).then_some(()), format!("{on:?}"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_owner_takes_its_pods_unless_they_are_orphaned() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let rs = |name: &str| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {"metadata": {"labels": {"app": name}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container("app", "exec sleep 3600")]}}}});
    let rs_url = |name: &str| c.url(0, &format!("/apis/apps/v1/namespaces/default/replicasets/{name}"));
    let mut uids = vec![];
    for name in ["kept", "gone"] {
        let created = c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/replicasets"), Some(&rs(name))).await.unwrap();
        uids.push(created["metadata"]["uid"].as_str().unwrap().to_string());
    }
    for uid in &uids {
        until(Duration::from_secs(60), "two running pods", || async {
            let pods = pods::owned_by(&c, uid).await;
            ((pods.len() == 2 && pods.iter().all(all_running)).then_some(()), format!("{} pods", pods.len()))
        })
        .await;
    }
    let kept: BTreeSet<String> = pods::owned_by(&c, &uids[0]).await.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();

    // Orphan: the pods stay, without the reference.
    let orphan = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"});
    c.client.json(Method::DELETE, &rs_url("kept"), Some(&orphan)).await.unwrap();
    // Background (the default): the collector deletes the pods.
    c.client.json(Method::DELETE, &rs_url("gone"), None).await.unwrap();
    until(Duration::from_secs(60), "the deleted ReplicaSet's pods gone", || async {
        let left = pods::owned_by(&c, &uids[1]).await;
        let live = left.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
        ((live == 0).then_some(()), format!("{live} live pods of 'gone'"))
    })
    .await;
    let list = c.client.json(Method::GET, &c.url(1, "/api/v1/namespaces/default/pods?labelSelector=app%3Dkept"), None).await.unwrap();
    let items = list["items"].as_array().unwrap();
    let names: BTreeSet<String> = items.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, kept, "orphaned pods stay");
    assert!(items.iter().all(|p| p["metadata"]["ownerReferences"].as_array().is_none_or(|r| r.is_empty()) && p["metadata"]["deletionTimestamp"].is_null()));
    let bad = c.client.json(Method::DELETE, &c.url(0, "/api/v1/namespaces/default/pods/x?propagationPolicy=Sideways"), None).await.unwrap_err();
    assert!(bad.to_string().contains("propagationPolicy"), "{bad}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statefulset_starts_its_pods_in_order_and_removes_them_from_the_top() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    // Ready one second after start, so the order is visible.
    let app = json!({"name": "app", "image": cluster_tests::pods::IMAGE, "command": ["sh", "-c", "sleep 1; touch /tmp/ready; exec sleep 3600"],
        "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "periodSeconds": 1}});
    let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"terminationGracePeriodSeconds": 1, "containers": [app]}}}});
    let created = c.client.json(Method::POST, &c.url(0, "/apis/apps/v1/namespaces/default/statefulsets"), Some(&sts)).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let pods = until(Duration::from_secs(90), "web-0, web-1, web-2 ready", || async {
        let pods = pods::owned_by(&c, &uid).await;
        let ready = pods.iter().filter(|p| p["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))).count();
        ((ready == 3).then(|| pods.clone()), format!("{} pods, {ready} ready", pods.len()))
    })
    .await;
    let created_at = |i: usize| -> String {
        let p = pods.iter().find(|p| p["metadata"]["name"] == format!("web-{i}").as_str()).unwrap_or_else(|| panic!("web-{i}"));
        assert_eq!(p["spec"]["hostname"], format!("web-{i}").as_str());
        p["metadata"]["creationTimestamp"].as_str().unwrap().to_string()
    };
    let ready_at = |i: usize| -> String {
        let p = pods.iter().find(|p| p["metadata"]["name"] == format!("web-{i}").as_str()).unwrap();
        let cs = p["status"]["conditions"].as_array().unwrap();
        cs.iter().find(|c| c["type"] == "Ready").unwrap()["lastTransitionTime"].as_str().unwrap().to_string()
    };
    // Each pod was created no earlier than its predecessor became ready (RFC 3339 in UTC
    // sorts as text).
    for i in 1..3 {
        assert!(created_at(i) >= ready_at(i - 1), "web-{i} created {} before web-{} was ready {}", created_at(i), i - 1, ready_at(i - 1));
    }

    // Scale to 1: web-2 goes before web-1, and web-0 stays.
    let url = c.url(1, "/apis/apps/v1/namespaces/default/statefulsets/web");
    c.client.json_as(Method::PATCH, &url, Some(&json!({"spec": {"replicas": 1}})), "application/merge-patch+json").await.unwrap();
    // At every look: web-1 is not being removed while web-2 still exists.
    until(Duration::from_secs(60), "only web-0 left", || async {
        let pods = pods::owned_by(&c, &uid).await;
        let state = |n: &str| pods.iter().find(|p| p["metadata"]["name"] == n).map(|p| p["metadata"]["deletionTimestamp"].is_null());
        let (web1, web2) = (state("web-1"), state("web-2"));
        assert!(!(web1 != Some(true) && web2.is_some()), "web-1 removed (live: {web1:?}) while web-2 exists (live: {web2:?})");
        assert_eq!(state("web-0"), Some(true), "web-0 stays");
        let names: BTreeSet<String> = pods.iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()).collect();
        ((names == BTreeSet::from(["web-0".to_string()])).then_some(()), format!("{names:?}"))
    })
    .await;
    let reasons = event_reasons(&c, "web").await;
    assert!(reasons.iter().filter(|r| *r == "SuccessfulCreate").count() >= 3 && reasons.iter().any(|r| r == "SuccessfulDelete"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cronjob_every_minute_runs_a_job_to_completion() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let url = c.url(0, "/apis/batch/v1/namespaces/default/cronjobs");
    let cronjob = |schedule: &str| json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "default"},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
            "containers": [container("tick", "echo tick")]}}}}}});
    let bad = c.client.json(Method::POST, &url, Some(&cronjob("every minute"))).await.unwrap_err();
    assert!(bad.to_string().contains("schedule"), "{bad}");
    let created = c.client.json(Method::POST, &url, Some(&cronjob("* * * * *"))).await.unwrap();
    let uid = created["metadata"]["uid"].as_str().unwrap().to_string();
    let jobs_url = c.url(1, "/apis/batch/v1/namespaces/default/jobs");
    let job = until(Duration::from_secs(150), "a job of the cronjob complete", || async {
        let list = c.client.json(Method::GET, &jobs_url, None).await.unwrap();
        let mine: Vec<Value> = list["items"].as_array().unwrap().iter().filter(|j| j["metadata"]["ownerReferences"][0]["uid"] == uid.as_str()).cloned().collect();
        let done = mine.iter().find(|j| j["status"]["conditions"].as_array().is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete"))).cloned();
        (done, format!("{} jobs", mine.len()))
    })
    .await;
    let scheduled = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"].as_str().unwrap().to_string();
    assert!(scheduled.ends_with(":00Z"), "scheduled on a minute: {scheduled}");
    let status = c.client.json(Method::GET, &format!("{url}/tick"), None).await.unwrap()["status"].clone();
    // (A later minute may have come due meanwhile; RFC 3339 UTC sorts as text.)
    assert!(status["lastScheduleTime"].as_str().is_some_and(|t| t >= scheduled.as_str()), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_is_followed_listed_and_undone_with_orchctl() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let deploy = |v: &str| json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": cluster_tests::pods::IMAGE,
                "command": ["sh", "-c", "exec sleep 3600"], "env": [{"name": "V", "value": v}]}]}}}});
    let url = c.url(0, "/apis/apps/v1/namespaces/default/deployments");
    c.client.json(Method::POST, &url, Some(&deploy("v1"))).await.unwrap();
    let orchctl = |args: &[&str]| {
        let (ok, out, err) = c.orchctl(1, args).unwrap();
        assert!(ok, "orchctl {args:?}: {err}");
        out
    };
    let out = orchctl(&["rollout", "status", "deployment/web", "--timeout", "120"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    // What the controllers did is told in events: on the deployment, its set, its pods.
    let described = orchctl(&["describe", "deployment", "web"]);
    assert!(described.contains("ScalingReplicaSet") && described.contains("Scaled up replica set web-"), "{described}");
    let events = orchctl(&["get", "events"]);
    for reason in ["ScalingReplicaSet", "SuccessfulCreate", "Scheduled"] {
        assert!(events.contains(reason), "no {reason} event in\n{events}");
    }

    c.client.json_as(Method::PATCH, &format!("{url}/web"), Some(&json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": cluster_tests::pods::IMAGE,
        "command": ["sh", "-c", "exec sleep 3600"], "env": [{"name": "V", "value": "v2"}]}]}}}})), "application/merge-patch+json").await.unwrap();
    let out = orchctl(&["rollout", "status", "deployment", "web", "--timeout", "120"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = orchctl(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, vec!["1", "2"], "{history}");

    let out = orchctl(&["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back to revision 1"), "{out}");
    orchctl(&["rollout", "status", "deployment/web", "--timeout", "120"]);
    let env = |p: &Value| p["spec"]["containers"][0]["env"][0]["value"].as_str().unwrap_or("").to_string();
    until(Duration::from_secs(60), "three running pods back on v1", || async {
        let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"), None).await.unwrap();
        let live: Vec<Value> = list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).cloned().collect();
        let ok = live.len() == 3 && live.iter().all(|p| env(p) == "v1" && all_running(p));
        (ok.then_some(()), format!("{:?}", live.iter().map(env).collect::<Vec<_>>()))
    })
    .await;
    let history = orchctl(&["rollout", "history", "deployment/web"]);
    let revisions: Vec<&str> = history.lines().skip(2).filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(revisions, vec!["2", "3"], "the first set is revision 3 now: {history}");
    let out = orchctl(&["scale", "deployment/web", "--replicas", "1"]);
    assert!(out.contains("scaled"), "{out}");
    until(Duration::from_secs(60), "one pod left", || async {
        let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods?labelSelector=app%3Dweb"), None).await.unwrap();
        let live = list["items"].as_array().unwrap().iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
        ((live == 1).then_some(()), format!("{live} live"))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_namespace_deletes_everything_in_it_then_the_namespace() {
    let c = Cluster::start_opts(1, 1, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let c = &c;
    let post = |path: &str, obj: Value| {
        let url = c.url(0, path);
        async move { c.client.json(Method::POST, &url, Some(&obj)).await }
    };
    post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})).await.unwrap();
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "doomed"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container("app", "exec sleep 3600")]}}}});
    post("/apis/apps/v1/namespaces/doomed/deployments", deploy).await.unwrap();
    post("/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "b"}})).await.unwrap();
    let svc = post("/api/v1/namespaces/doomed/services", json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).await.unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let pods_url = c.url(0, "/api/v1/namespaces/doomed/pods");
    let pods_in = || async { c.client.json(Method::GET, &pods_url, None).await.unwrap()["items"].as_array().cloned().unwrap_or_default() };
    until(Duration::from_secs(60), "two running pods in the namespace", || async {
        let pods = pods_in().await;
        ((pods.len() == 2 && pods.iter().all(all_running)).then_some(()), format!("{} pods", pods.len()))
    })
    .await;

    let deleted = c.client.json(Method::DELETE, &c.url(0, "/api/v1/namespaces/doomed"), None).await.unwrap();
    assert_eq!(deleted["status"]["phase"], "Terminating", "{deleted}");
    // Nothing new goes into a terminating namespace; the cluster's own are not deletable.
    let refused = post("/api/v1/namespaces/doomed/configmaps", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}})).await.unwrap_err();
    assert!(refused.to_string().contains("being terminated"), "{refused}");
    let protected = c.client.json(Method::DELETE, &c.url(0, "/api/v1/namespaces/default"), None).await.unwrap_err();
    assert!(protected.to_string().contains("403") || protected.to_string().contains("protected"), "{protected}");

    until(Duration::from_secs(90), "the namespace gone", || async {
        let r = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/doomed"), None).await;
        let pods = pods_in().await.len();
        (r.is_err().then_some(()), format!("namespace still {:?}, {pods} pods", r.ok().map(|n| n["status"].clone())))
    })
    .await;
    for kind in ["pods", "configmaps", "services", "endpoints"] {
        let list = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/doomed/{kind}")), None).await.unwrap();
        assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{kind} left: {list}");
    }
    let rs = c.client.json(Method::GET, &c.url(0, "/apis/apps/v1/namespaces/doomed/replicasets"), None).await.unwrap();
    assert_eq!(rs["items"].as_array().map(Vec::len), Some(0), "{rs}");
    // The Service's address was released with it: another service may take it.
    let again = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "reuse"}, "spec": {"clusterIP": ip, "ports": [{"port": 80}]}});
    post("/api/v1/namespaces/default/services", again).await.expect("the released ClusterIP is free again");
    // Every container of the namespace's pods is gone from the nodes too.
    until(Duration::from_secs(30), "no containers left", || async {
        let left: usize = c.containerds.iter().map(|d| d.containers().len()).sum();
        ((left == 0).then_some(()), format!("{left} containers"))
    })
    .await;
}

/// `kubectl drain` evicts a node's pods through `pods/eviction`, except where a
/// PodDisruptionBudget forbids it: of three guarded pods with `minAvailable: 2`, one may
/// go; the other on the drained node stays (429) and the node stays cordoned until
/// `uncordon`. Through a worker.
#[tokio::test(flavor = "multi_thread")]
async fn drain_evicts_all_but_what_a_disruption_budget_protects() {
    let c = Cluster::start_opts(1, 2, Options { containerd: true, ..Default::default() }).await.expect("cluster starts");
    load_busybox(&c, 0).unwrap();
    let (w1, w2) = (c.nodes[1].name.clone(), c.nodes[2].name.clone());
    let labeled = |name: &str, node: &str, app: &str| {
        let mut p = pods::pod(name, node, "Always", json!([container("app", "exec sleep 3600")]));
        p["metadata"]["labels"] = json!({"app": app});
        p
    };
    for (name, node, app) in [("free", &w1, "free"), ("guarded-1", &w1, "guarded"), ("guarded-2", &w1, "guarded"), ("guarded-3", &w2, "guarded")] {
        pods::create(&c, 0, &labeled(name, node, app)).await.unwrap();
    }
    let pdb = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}}});
    c.client.json(Method::POST, &c.url(1, "/apis/policy/v1/namespaces/default/poddisruptionbudgets"), Some(&pdb)).await.unwrap();
    let pdb_url = c.url(0, "/apis/policy/v1/namespaces/default/poddisruptionbudgets/guard");
    until(Duration::from_secs(60), "three healthy guarded pods, one disruption allowed", || async {
        let b = c.client.json(Method::GET, &pdb_url, None).await.unwrap();
        ((b["status"]["currentHealthy"] == 3 && b["status"]["disruptionsAllowed"] == 1).then_some(()), b["status"].to_string())
    })
    .await;
    let r = cluster_tests::kubectl::kubectl(&c, 1, &["get", "pdb"], None).unwrap();
    assert!(r.stdout.lines().next().unwrap().split_whitespace().eq(["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED", "DISRUPTIONS", "AGE"]), "{r:?}");

    let r = cluster_tests::kubectl::kubectl(&c, 1, &["drain", &w1, "--force", "--ignore-daemonsets", "--timeout=20s"], None).unwrap();
    assert!(!r.ok(), "the budget keeps one pod: drain cannot finish: {r:?}");
    assert!(r.stderr.contains("disruption budget"), "{r:?}");
    let node = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/nodes/{w1}")), None).await.unwrap();
    assert_eq!(node["spec"]["unschedulable"], true, "drain cordons the node");
    let list = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/pods"), None).await.unwrap();
    let live: BTreeSet<String> = list["items"].as_array().unwrap().iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let left_guarded: Vec<&String> = live.iter().filter(|n| n.starts_with("guarded-") && *n != "guarded-3").collect();
    assert_eq!(left_guarded.len(), 1, "exactly one guarded pod on the node was evicted: {live:?}");
    assert!(!live.contains("free") && live.contains("guarded-3"), "{live:?}");

    // The API answers as Kubernetes does: the budget is spent, so a 429.
    let kept = left_guarded[0];
    let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": kept, "namespace": "default"}});
    let err = c.client.json(Method::POST, &c.url(2, &format!("/api/v1/namespaces/default/pods/{kept}/eviction")), Some(&eviction)).await.unwrap_err();
    assert_eq!(err.downcast_ref::<orch::client::HttpError>().map(|e| e.code), Some(429), "{err}");
    assert!(pods::get(&c, 0, kept).await.unwrap()["metadata"]["deletionTimestamp"].is_null(), "a refused eviction deletes nothing");

    let r = cluster_tests::kubectl::kubectl(&c, 1, &["uncordon", &w1], None).unwrap();
    assert!(r.ok(), "{r:?}");
    let node = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/nodes/{w1}")), None).await.unwrap();
    assert!(node["spec"]["unschedulable"].as_bool() != Some(true), "{}", node["spec"]);
}
