//! Issue #2's acceptance on real clusters: `orchd` processes in network namespaces.
//! Replication and agreement, leader failover with catch-up, full restart, watch across a
//! leader kill, and refusal of bad input.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use cluster_tests::watch::{self, Seen};
use cluster_tests::objects::{create_cm, list_cms, CM};
use cluster_tests::{poll, Cluster};
use hyper::Method;
use orch::client::HttpError;
use serde_json::{json, Value};


fn code_of(e: &anyhow::Error) -> Option<u16> {
    e.downcast_ref::<HttpError>().map(|h| h.code)
}



fn sorted_names_and_rvs(list_json: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(list_json).expect("orchctl -o json prints JSON");
    let mut out: Vec<(String, String)> = v["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| (i["metadata"]["name"].as_str().unwrap().to_string(), i["metadata"]["resourceVersion"].as_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_heads_and_a_worker_agree() -> anyhow::Result<()> {
    let c = Cluster::start(3, 1).await?;
    let manifest = c.work_dir().join("shop.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: prices, namespace: shop}\ndata: {apple: '3'}\n---\n\
         apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\n\
         spec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: c, image: busybox}]}\n",
    )?;
    let (ok, out, err) = c.orchctl(0, &["apply", "-f", manifest.to_str().unwrap()])?;
    assert!(ok, "apply failed: {err}");
    assert_eq!(out.matches("created").count(), 3, "{out}");

    for kind in ["configmaps", "deployments"] {
        let (ok, reference, err) = c.orchctl(0, &["get", kind, "-n", "shop", "-o", "json"])?;
        assert!(ok, "{err}");
        let reference = sorted_names_and_rvs(&reference);
        assert_eq!(reference.len(), 1, "{kind}: {reference:?}");
        for i in 1..4 {
            let (ok, out, err) = c.orchctl(i, &["get", kind, "-n", "shop", "-o", "json"])?;
            assert!(ok, "node {i}: {err}");
            let got = sorted_names_and_rvs(&out);
            if kind == "configmaps" {
                assert_eq!(got, reference, "node {i} disagrees on {kind}");
            } else {
                // The Deployment controller keeps writing the deployment's status, so a later
                // read may see a newer version; a linearizable read never sees an older one.
                let rv = |v: &[(String, String)]| v.iter().map(|(n, r)| (n.clone(), r.parse::<u64>().unwrap())).collect::<Vec<_>>();
                let (got, reference) = (rv(&got), rv(&reference));
                assert_eq!(got.iter().map(|x| &x.0).collect::<Vec<_>>(), reference.iter().map(|x| &x.0).collect::<Vec<_>>(), "node {i} disagrees on {kind}");
                assert!(got.iter().zip(&reference).all(|(g, r)| g.1 >= r.1), "node {i} went back in time on {kind}: {got:?} after {reference:?}");
            }
        }
    }

    // Through the worker: three reachable voters, one leader, and the worker itself.
    poll(Duration::from_secs(20), "worker heartbeat in cluster status", || async {
        let (ok, out, _) = c.orchctl(3, &["cluster", "status", "-o", "json"])?;
        let s: Value = serde_json::from_str(&out)?;
        let workers = s["workers"].as_array().cloned().unwrap_or_default();
        Ok(ok && workers.iter().any(|w| w["name"] == "worker-0" && w["reachable"] == true))
    })
    .await?;
    let (_, out, _) = c.orchctl(3, &["cluster", "status", "-o", "json"])?;
    let s: Value = serde_json::from_str(&out)?;
    let members = s["members"].as_array().unwrap();
    assert_eq!(members.iter().filter(|m| m["suffrage"] == "voter" && m["reachable"] == true).count(), 3, "{s}");
    assert_eq!(members.iter().filter(|m| m["leader"] == true).count(), 1, "{s}");
    let (ok, table, _) = c.orchctl(3, &["cluster", "status"])?;
    assert!(ok && table.contains("worker-0") && table.contains("voter"), "{table}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn leader_kill_fails_over_and_the_killed_node_catches_up() -> anyhow::Result<()> {
    let mut c = Cluster::start(3, 0).await?;
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..20 {
        let name = format!("before-{n}");
        acked.insert(name.clone(), create_cm(&c, n % 3, &name).await?);
    }
    let leader = c.leader().await.context("no leader")?;
    c.kill(leader);
    let killed = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    // Write through the survivors until one is acknowledged.
    let mut attempt = 0;
    let failover = loop {
        let name = format!("failover-{attempt}");
        match create_cm(&c, survivors[attempt % 2], &name).await {
            Ok(rv) => {
                acked.insert(name, rv);
                break killed.elapsed();
            }
            Err(e) => assert!(matches!(code_of(&e), Some(503 | 504) | None), "unexpected error during failover: {e:#}"),
        }
        attempt += 1;
        assert!(killed.elapsed() < Duration::from_secs(15), "no write acknowledged 15 s after the leader was killed");
    };
    println!("failover: first acknowledged write {} ms after SIGKILL of the leader", failover.as_millis());

    for n in 0..20 {
        let name = format!("after-{n}");
        acked.insert(name.clone(), create_cm(&c, survivors[n % 2], &name).await?);
    }

    c.restart(leader).await?;
    // The restarted node's own replica (a local read) must reach every acknowledged write.
    poll(Duration::from_secs(30), "the restarted node to catch up", || async {
        let local = list_cms(&c, leader, true).await?;
        Ok(acked.iter().all(|(name, rv)| local.get(name) == Some(rv)))
    })
    .await?;
    for i in 0..3 {
        let seen = list_cms(&c, i, false).await?;
        for (name, rv) in &acked {
            assert_eq!(seen.get(name), Some(rv), "node {i} lost acknowledged write {name}");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_stop_and_start_keeps_every_object() -> anyhow::Result<()> {
    let mut c = Cluster::start(3, 1).await?;
    let mut acked = BTreeMap::new();
    for n in 0..30 {
        let name = format!("keep-{n}");
        acked.insert(name.clone(), create_cm(&c, n % 4, &name).await?);
    }
    for i in 0..4 {
        c.stop(i);
    }
    // Heads need each other for a quorum: start them all, then wait.
    for i in 0..4 {
        c.start_process(i)?;
    }
    for i in 0..4 {
        c.wait_ready(i).await?;
    }
    for i in 0..4 {
        let seen = list_cms(&c, i, false).await?;
        for (name, rv) in &acked {
            assert_eq!(seen.get(name), Some(rv), "after restart node {i} lacks {name}");
        }
    }
    Ok(())
}

/// Collect events until every name in `want` was seen or the stream ends.
async fn drain(rx: &mut tokio::sync::mpsc::Receiver<anyhow::Result<Seen>>, seen: &mut Vec<Seen>, until: impl Fn(&[Seen]) -> bool, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !until(seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(Ok(ev))) => seen.push(ev),
            Ok(Some(Err(e))) => panic!("watch error: {e:#}"),
            Ok(None) | Err(_) => return,
        }
    }
}

fn assert_ordered_unique(seen: &[Seen]) {
    for pair in seen.windows(2) {
        assert!(pair[0].revision < pair[1].revision, "watch went back or repeated: {:?} then {:?}", pair[0], pair[1]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn watches_survive_a_leader_kill_without_gaps_or_duplicates() -> anyhow::Result<()> {
    let mut c = Cluster::start(3, 0).await?;
    let start_rv = create_cm(&c, 0, "w-start").await?;
    let leader = c.leader().await.context("no leader")?;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let watch_path = |rv: u64| format!("{CM}?watch=true&resourceVersion={rv}");
    let mut on_leader = watch::open(&c.client, &c.url(leader, &watch_path(start_rv))).await?;
    let mut on_follower = watch::open(&c.client, &c.url(follower, &watch_path(start_rv))).await?;

    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    for n in 0..10 {
        let name = format!("w-{n}");
        acked.insert(name.clone(), create_cm(&c, follower, &name).await?);
    }
    c.kill(leader);
    let mut n = 10;
    while acked.len() < 30 {
        let name = format!("w-{n}");
        n += 1;
        match create_cm(&c, follower, &name).await {
            Ok(rv) => {
                acked.insert(name, rv);
            }
            Err(e) => assert!(matches!(code_of(&e), Some(503 | 504) | None), "{e:#}"),
        }
    }

    // The leader's stream ended with the process; resume it on the follower from the last
    // revision it delivered.
    let mut from_leader = Vec::new();
    drain(&mut on_leader, &mut from_leader, |_| false, Duration::from_secs(10)).await;
    let resume_at = from_leader.last().map_or(start_rv, |e| e.revision);
    let mut resumed = watch::open(&c.client, &c.url(follower, &watch_path(resume_at))).await?;
    let all_acked = |seen: &[Seen]| acked.keys().all(|k| seen.iter().any(|e| &e.name == k));
    drain(&mut resumed, &mut from_leader, all_acked, Duration::from_secs(20)).await;
    let mut from_follower = Vec::new();
    drain(&mut on_follower, &mut from_follower, all_acked, Duration::from_secs(20)).await;

    let committed = list_cms(&c, follower, false).await?;
    for (label, seen) in [("resumed", &from_leader), ("follower", &from_follower)] {
        assert_ordered_unique(seen);
        for (name, rv) in &acked {
            assert!(seen.iter().any(|e| &e.name == name && e.revision == *rv), "{label} watch missed {name}@{rv}");
        }
        // Nothing seen that was not committed (writes with unknown outcome may appear, if committed).
        for e in seen.iter() {
            assert_eq!(committed.get(&e.name), Some(&e.revision), "{label} watch saw {e:?}, which is not in the store");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let c = Cluster::start(1, 0).await?;
    let rv = create_cm(&c, 0, "keep").await?;
    let before = list_cms(&c, 0, false).await?;
    let stale = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep", "resourceVersion": (rv - 1).to_string()}, "data": {"v": "x"}});
    let oversized = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big"}, "data": {"v": "x".repeat(4 << 20)}});
    let cases: Vec<(&str, Method, String, &str, Vec<u8>, u16, &str)> = vec![
        ("stale resourceVersion", Method::PUT, format!("{CM}/keep"), "application/json", serde_json::to_vec(&stale)?, 409, "Conflict"),
        ("malformed JSON", Method::POST, CM.into(), "application/json", b"{\"metadata\":".to_vec(), 400, "BadRequest"),
        ("malformed YAML", Method::POST, CM.into(), "application/yaml", b"metadata: [".to_vec(), 400, "BadRequest"),
        ("unknown kind", Method::POST, "/api/v1/namespaces/default/widgets".into(), "application/json", b"{}".to_vec(), 404, "NotFound"),
        ("bad name", Method::POST, CM.into(), "application/json", br#"{"metadata":{"name":"Bad_Name"}}"#.to_vec(), 422, "Invalid"),
        ("ill-typed field", Method::POST, "/apis/apps/v1/namespaces/default/deployments".into(), "application/json",
            br#"{"metadata":{"name":"d"},"spec":{"replicas":"three","selector":{},"template":{}}}"#.to_vec(), 422, "Invalid"),
        ("missing namespace", Method::POST, "/api/v1/namespaces/nope/configmaps".into(), "application/json", br#"{"metadata":{"name":"a"}}"#.to_vec(), 404, "NotFound"),
        ("body over 3 MiB", Method::POST, CM.into(), "application/json", serde_json::to_vec(&oversized)?, 413, "RequestEntityTooLarge"),
        ("kind does not match path", Method::POST, CM.into(), "application/json", br#"{"kind":"Secret","apiVersion":"v1","metadata":{"name":"s"}}"#.to_vec(), 400, "BadRequest"),
    ];
    for (what, method, path, ct, body, code, reason) in cases {
        let (status, bytes) = c.client.call(method, &c.url(0, &path), Some(ct), body.into()).await?;
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("{what}: body is not a Status"))?;
        assert_eq!((status.as_u16(), v["reason"].as_str().unwrap_or("")), (code, reason), "{what}: {v}");
        assert_eq!(v["kind"], "Status", "{what}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{what}: no message");
    }
    assert_eq!(list_cms(&c, 0, false).await?, before, "a refused request changed the store");

    // orchctl validates a whole manifest before writing any of it.
    let bad = c.work_dir().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine}\n---\napiVersion: v1\nkind: Widget\nmetadata: {name: w}\n")?;
    let (ok, _, err) = c.orchctl(0, &["apply", "-f", bad.to_str().unwrap()])?;
    assert!(!ok && err.contains("Widget"), "{err}");
    assert_eq!(list_cms(&c, 0, false).await?, before, "a refused manifest changed the store");

    // A join token whose CA hash does not match is refused before anything is sent.
    let dir = tempfile::tempdir()?;
    let forged = format!("ORCH1::{}::{}", "ab".repeat(32), "s".repeat(32));
    let out = std::process::Command::new(cluster_tests::cluster::bin_dir().join("orchd"))
        .args(["--name", "intruder", "--advertise", "127.0.0.1", "--api-port", "0", "--raft-port", "0", "--data-dir"])
        .arg(dir.path())
        .args(["--join", &c.api(0), "--token", &forged])
        .env_remove("RUST_BACKTRACE")
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("does not match the join token"), "{stderr}");
    assert!(!dir.path().join("tls.json").exists(), "a refused join wrote credentials");
    let nodes = c.client.json(Method::GET, &c.url(0, "/api/v1/nodes"), None).await?;
    assert!(!nodes.to_string().contains("intruder"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_without_a_version_starts_with_every_object_however_many() -> anyhow::Result<()> {
    // More objects than a watch buffers: the initial ADDED events must not wait for a
    // reader that only starts reading once the watch is open.
    let c = Cluster::start(1, 0).await?;
    const N: usize = 600;
    use futures::StreamExt;
    let names: Vec<String> = (0..N).map(|i| format!("many-{i:04}")).collect();
    let created: Vec<anyhow::Result<u64>> = futures::stream::iter(names.iter().map(|n| create_cm(&c, 0, n))).buffer_unordered(32).collect().await;
    for r in created {
        r?;
    }
    let url = c.url(0, "/api/v1/namespaces/default/configmaps?watch=true");
    let open = watch::open(&c.client, &url);
    let mut rx = tokio::time::timeout(Duration::from_secs(20), open).await.context("the watch never started")??;
    let mut added = std::collections::BTreeSet::new();
    while added.len() < N {
        let seen = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.context("initial events stalled")?.context("watch ended")??;
        anyhow::ensure!(seen.kind == "ADDED", "{seen:?}");
        added.insert(seen.name);
    }
    anyhow::ensure!(added.iter().all(|n| n.starts_with("many-")) && added.len() == N);
    Ok(())
}
