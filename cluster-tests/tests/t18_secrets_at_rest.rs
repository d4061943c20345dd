//! Secrets encrypted at rest on a real cluster (three heads, one worker): after a Secret is
//! written and the heads have snapshotted past it, no file under any head's data dir
//! (Raft log, state machine, snapshots) holds its value, plain or base64; every node still
//! serves it in the clear to a caller allowed to read it, and a watch sees it too.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use cluster_tests::cluster::Cluster;
use hyper::Method;
use serde_json::json;

/// Files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle)) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread")]
async fn no_head_stores_a_secret_in_the_clear() {
    let c = Cluster::start_with(3, 1, &["--snapshot-after", "20", "--snapshot-keep-logs", "5"]).await.expect("cluster starts");
    let plaintext = "orch-plaintext-sentinel-7f3c91";
    let b64 = base64::engine::general_purpose::STANDARD.encode(plaintext);
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vault"}, "stringData": {"token": plaintext}});
    let rv = c.client.json(Method::GET, &c.url(2, "/api/v1/namespaces/default/secrets"), None).await.unwrap()["metadata"]["resourceVersion"].clone();
    let url = c.url(2, &format!("/api/v1/namespaces/default/secrets?watch=true&resourceVersion={}&timeoutSeconds=20", rv.as_str().unwrap()));
    let mut rx = cluster_tests::watch::open(&c.client, &url).await.unwrap();
    c.client.json(Method::POST, &c.url(1, "/api/v1/namespaces/default/secrets"), Some(&secret)).await.unwrap();
    // Enough further writes that every head takes a snapshot holding the Secret.
    for i in 0..40 {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("filler-{i}")}});
        c.client.json(Method::POST, &c.url(0, "/api/v1/namespaces/default/configmaps"), Some(&cm)).await.unwrap();
    }
    for head in 0..3 {
        let snapshots = c.nodes[head].data_dir.join("raft");
        cluster_tests::poll(Duration::from_secs(30), "a snapshot on every head", || async {
            let status = c.status(head).await?;
            let me = status["members"].as_array().into_iter().flatten().find(|m| m["name"] == c.nodes[head].name.as_str()).cloned();
            Ok(me.is_some_and(|m| m["snapshotIndex"].as_u64().unwrap_or(0) > 20))
        })
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", snapshots.display()));
    }
    // Served in the clear by every node, to the admin.
    for node in 0..4 {
        let got = c.client.json(Method::GET, &c.url(node, "/api/v1/namespaces/default/secrets/vault"), None).await.unwrap();
        assert_eq!(got["data"]["token"], b64.as_str(), "through {}", c.nodes[node].name);
    }
    let list = c.client.json(Method::GET, &c.url(2, "/api/v1/namespaces/default/secrets?watch=false"), None).await.unwrap();
    assert!(list["items"].as_array().unwrap().iter().any(|s| s["data"]["token"] == b64.as_str()));
    let event = rx.recv().await.expect("a watch event").unwrap();
    assert_eq!((event.kind.as_str(), &event.object["data"]["token"]), ("ADDED", &json!(b64)), "a watch sees the Secret opened");
    // On disk: ciphertext only, on every head (the worker holds no store).
    for head in 0..3 {
        let dir = &c.nodes[head].data_dir;
        for needle in [plaintext.as_bytes(), b64.as_bytes()] {
            let hits = files_holding(dir, needle);
            assert!(hits.is_empty(), "{} holds the Secret in the clear: {hits:?}", c.nodes[head].name);
        }
        assert!(dir.join("encryption.json").exists(), "{} holds the keys", c.nodes[head].name);
    }
    assert!(!c.nodes[3].data_dir.join("encryption.json").exists(), "a worker holds no key");

    // Rotation: a new key on every head, the Secret rewritten with it, the old key gone,
    // and every node still serves the Secret.
    let keys = |head: usize| -> serde_json::Value { serde_json::from_slice(&std::fs::read(c.nodes[head].data_dir.join("encryption.json")).unwrap()).unwrap() };
    let before = keys(0)["primary"].as_str().unwrap().to_string();
    let (ok, out, err) = c.orchctl(3, &["cluster", "rotate-encryption-key"]).unwrap();
    assert!(ok && out.contains("1 Secrets rewritten"), "{out}{err}");
    for head in 0..3 {
        let ring = keys(head);
        let ids: Vec<&String> = ring["keys"].as_object().unwrap().keys().collect();
        assert_eq!(ids.len(), 1, "{}: {ids:?}", c.nodes[head].name);
        assert_ne!(ids[0], &before, "the old key is gone from {}", c.nodes[head].name);
        assert_eq!(ring["primary"], ids[0].as_str());
    }
    for node in 0..4 {
        let got = c.client.json(Method::GET, &c.url(node, "/api/v1/namespaces/default/secrets/vault"), None).await.unwrap();
        assert_eq!(got["data"]["token"], b64.as_str(), "readable after rotation through {}", c.nodes[node].name);
    }
    let created = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "after"}, "stringData": {"k": "v"}});
    c.client.json(Method::POST, &c.url(2, "/api/v1/namespaces/default/secrets"), Some(&created)).await.unwrap();
    let got = c.client.json(Method::GET, &c.url(0, "/api/v1/namespaces/default/secrets/after"), None).await.unwrap();
    assert_eq!(got["data"]["k"], "dg==");
}
