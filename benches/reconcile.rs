//! Reconcile cost per controller at 10,000 pods: one full pass of each leader controller's
//! pure decision (`reconcile` over every owner, with the children handed to it as the loop
//! does) over running pods, on one thread. The owner loop's grouping is measured both ways: each owner
//! given every child of its namespace (what the loop did before) and children grouped by
//! their controller (`owners::group_by_controller`). Writes docs/benchmarks/reconcile.{md,json}.
//! Run with `cargo bench --bench reconcile`. A benchmark, not a test: it asserts nothing.

use std::time::Instant;

use orch::control::{daemonset, deployment, endpoints, job, owners, replicaset, statefulset};
use serde_json::{json, Value};

const OWNERS: usize = 100;
const PER_OWNER: usize = 100;
const NODES: usize = 1_000;

fn owner(kind: &str, i: usize, extra: Value) -> Value {
    let mut o = json!({"apiVersion": "apps/v1", "kind": kind,
        "metadata": {"name": format!("{}-{i}", kind.to_lowercase()), "namespace": "default", "uid": format!("{kind}-{i}"), "generation": 1},
        "spec": {"replicas": PER_OWNER, "selector": {"matchLabels": {"app": format!("a{i}")}},
            "template": {"metadata": {"labels": {"app": format!("a{i}")}}, "spec": {"containers": [{"name": "c", "image": "orch.local/busybox:1.35"}]}}}});
    orch::api::object::merge_patch(&mut o, &extra);
    o
}

/// A running, ready pod of owner `kind`/`i`, on a node.
fn pod(kind: &str, i: usize, j: usize, name: String, extra: Value) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("pod-{kind}-{i}-{j}"), "labels": {"app": format!("a{i}")},
            "creationTimestamp": "2026-11-22T00:00:00Z",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": kind, "name": format!("{}-{i}", kind.to_lowercase()), "uid": format!("{kind}-{i}"), "controller": true}]},
        "spec": {"nodeName": format!("node-{}", (i * PER_OWNER + j) % NODES), "containers": [{"name": "c", "image": "orch.local/busybox:1.35", "ports": [{"containerPort": 80}]}]},
        "status": {"phase": "Running", "podIP": format!("10.244.{}.{}", j / 250, j % 250 + 2),
            "conditions": [{"type": "Ready", "status": "True"}]}});
    orch::api::object::merge_patch(&mut p, &extra);
    p
}

/// Best of three runs of `f`, in milliseconds.
fn time(mut f: impl FnMut() -> usize) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut decided = 0;
    for _ in 0..3 {
        let start = Instant::now();
        decided = std::hint::black_box(f());
        best = best.min(start.elapsed().as_secs_f64() * 1000.0);
    }
    (best, decided)
}

/// Each owner with every child of its namespace: how the loop grouped before.
fn by_namespace(owners: &[Value], children: &[Value]) -> Vec<(Value, Vec<Value>)> {
    owners
        .iter()
        .map(|o| (o.clone(), children.iter().filter(|c| c["metadata"]["namespace"] == o["metadata"]["namespace"]).cloned().collect()))
        .collect()
}

fn main() {
    let mut rows: Vec<(String, String, f64, f64, usize)> = Vec::new();
    let mut names = || "x".to_string();

    // ReplicaSets: 100 × 100 pods.
    let sets: Vec<Value> = (0..OWNERS).map(|i| owner("ReplicaSet", i, json!({}))).collect();
    let rs_pods: Vec<Value> = (0..OWNERS).flat_map(|i| (0..PER_OWNER).map(move |j| pod("ReplicaSet", i, j, format!("rs-{i}-{j}"), json!({})))).collect();
    let rs_pass = |groups: Vec<(Value, Vec<Value>)>, names: &mut dyn FnMut() -> String| groups.iter().map(|(o, c)| replicaset::reconcile(o, c, names).len()).sum::<usize>();
    let (old, _) = time(|| rs_pass(by_namespace(&sets, &rs_pods), &mut names));
    let (new, decided) = time(|| rs_pass(owners::group_by_controller(sets.clone(), rs_pods.clone()), &mut names));
    rows.push(("ReplicaSet".into(), "100 sets × 100 pods".into(), old, new, decided));

    // Jobs: 100 × 100 pods (parallelism and completions 100, none finished).
    let jobs: Vec<Value> = (0..OWNERS).map(|i| owner("Job", i, json!({"apiVersion": "batch/v1", "spec": {"parallelism": PER_OWNER, "completions": PER_OWNER, "template": {"spec": {"restartPolicy": "Never"}}}, "status": {"startTime": "2026-11-22T00:00:00Z"}}))).collect();
    let job_pods: Vec<Value> = (0..OWNERS).flat_map(|i| (0..PER_OWNER).map(move |j| pod("Job", i, j, format!("job-{i}-{j}"), json!({})))).collect();
    let now = chrono::Utc::now();
    let job_pass = |groups: Vec<(Value, Vec<Value>)>, names: &mut dyn FnMut() -> String| groups.iter().map(|(o, c)| job::reconcile(o, c, now, names).len()).sum::<usize>();
    let (old, _) = time(|| job_pass(by_namespace(&jobs, &job_pods), &mut names));
    let (new, decided) = time(|| job_pass(owners::group_by_controller(jobs.clone(), job_pods.clone()), &mut names));
    rows.push(("Job".into(), "100 jobs × 100 pods".into(), old, new, decided));

    // StatefulSets: 100 × 100 ordinal pods.
    let stss: Vec<Value> = (0..OWNERS).map(|i| owner("StatefulSet", i, json!({"spec": {"serviceName": format!("s{i}")}}))).collect();
    let sts_pods: Vec<Value> = (0..OWNERS).flat_map(|i| (0..PER_OWNER).map(move |j| pod("StatefulSet", i, j, format!("statefulset-{i}-{j}"), json!({})))).collect();
    let sts_pass = |groups: Vec<(Value, Vec<Value>)>| groups.iter().map(|(o, c)| statefulset::reconcile(o, c, &[]).len()).sum::<usize>();
    let (old, _) = time(|| sts_pass(by_namespace(&stss, &sts_pods)));
    let (new, decided) = time(|| sts_pass(owners::group_by_controller(stss.clone(), sts_pods.clone())));
    rows.push(("StatefulSet".into(), "100 sets × 100 pods".into(), old, new, decided));

    // Deployments: 100, each with its ReplicaSet (10,000 pods behind them, not read).
    let deploys: Vec<Value> = (0..OWNERS).map(|i| owner("Deployment", i, json!({}))).collect();
    let d_sets: Vec<Value> = (0..OWNERS)
        .map(|i| {
            owner("ReplicaSet", i, json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": format!("deployment-{i}"), "uid": format!("Deployment-{i}"), "controller": true}]},
                "status": {"replicas": PER_OWNER, "readyReplicas": PER_OWNER, "availableReplicas": PER_OWNER}}))
        })
        .collect();
    let d_pass = |groups: Vec<(Value, Vec<Value>)>| groups.iter().map(|(o, c)| deployment::reconcile(o, c).len()).sum::<usize>();
    let (old, _) = time(|| d_pass(by_namespace(&deploys, &d_sets)));
    let (new, decided) = time(|| d_pass(owners::group_by_controller(deploys.clone(), d_sets.clone())));
    rows.push(("Deployment".into(), "100 deployments × 1 set".into(), old, new, decided));

    // DaemonSet: one over 1,000 nodes (its 1,000 pods among 10,000).
    let nodes: Vec<Value> = (0..NODES).map(|n| json!({"metadata": {"name": format!("node-{n}")}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})).collect();
    let ds = owner("DaemonSet", 0, json!({}));
    let mut ds_pods: Vec<Value> = rs_pods[..9_000].to_vec();
    let template_hash = daemonset::template_hash(&ds["spec"]["template"]);
    ds_pods.extend((0..NODES).map(|n| {
        pod("DaemonSet", 0, n, format!("ds-{n}"), json!({"metadata": {"labels": {daemonset::HASH_LABEL: template_hash.clone()}}, "spec": {"nodeName": format!("node-{n}")}}))
    }));
    let ds_pass = |groups: Vec<(Value, Vec<Value>)>, names: &mut dyn FnMut() -> String| groups.iter().map(|(o, c)| daemonset::reconcile(o, &nodes, c, names).len()).sum::<usize>();
    let (old, _) = time(|| ds_pass(by_namespace(std::slice::from_ref(&ds), &ds_pods), &mut names));
    let (new, decided) = time(|| ds_pass(owners::group_by_controller(vec![ds.clone()], ds_pods.clone()), &mut names));
    rows.push(("DaemonSet".into(), "1 set × 1,000 nodes".into(), old, new, decided));

    // Endpoints: a full resync of 100 services over the 10,000 ReplicaSet pods.
    let services: Vec<Value> = (0..OWNERS)
        .map(|i| json!({"metadata": {"name": format!("svc-{i}"), "namespace": "default", "uid": format!("svc-{i}")},
            "spec": {"selector": {"app": format!("a{i}")}, "clusterIP": format!("10.96.0.{}", i + 1), "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}]}}))
        .collect();
    let eps: Vec<Value> = services.iter().map(|s| json!({"metadata": {"name": s["metadata"]["name"], "namespace": "default"}, "subsets": endpoints::subsets(s, &rs_pods)})).collect();
    let (full, decided) = time(|| endpoints::reconcile(&services, &rs_pods, &eps).len());
    rows.push(("Endpoints (full resync)".into(), "100 services × 100 pods".into(), full, full, decided));

    let json = json!({"pods": OWNERS * PER_OWNER, "rows": rows.iter().map(|(c, shape, old, new, decided)|
        json!({"controller": c, "shape": shape, "all_children_ms": old, "grouped_ms": new, "actions": decided})).collect::<Vec<_>>()});
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks");
    std::fs::create_dir_all(&out).expect("docs/benchmarks");
    std::fs::write(out.join("reconcile.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let mut md = String::from(
        "# Reconcile cost per controller at 10,000 pods\n\n`cargo bench --bench reconcile`: one full pass of each leader \
         controller's pure decision over every owner, with every pod running and ready, one thread, best of 3. Actions: \
         what the pass decided (status writes, as the fixtures carry no status; the StatefulSet and Deployment fixtures \
         also lack revision labels, so each owner decides one rollout step too; no replica is created). \"Every child of the namespace\" is how the owner \
         loop handed children to each owner before this benchmark; \"grouped\" is `owners::group_by_controller` (one \
         pass over the children). Endpoints are reconciled incrementally in the loop (only services a change touches); \
         the row is its full resync.\n\n| controller | shape | every child of the namespace (ms) | grouped (ms) | actions |\n|---|---|---:|---:|---:|\n",
    );
    for (c, shape, old, new, decided) in &rows {
        md.push_str(&format!("| {c} | {shape} | {old:.1} | {new:.1} | {decided} |\n"));
    }
    std::fs::write(out.join("reconcile.md"), &md).unwrap();
    print!("{md}");
}
