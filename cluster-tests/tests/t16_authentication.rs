//! Authentication on every node's API (one head, one worker): HTTPS only; anonymous
//! requests reach only the public paths; certificates of the cluster CA name their users
//! and groups, those of another CA are refused at the handshake; a worker passes its
//! caller's identity on to the head, and no one but a node may assert an identity.

use std::time::Duration;

use cluster_tests::cluster::{until, Cluster};
use cluster_tests::kubectl::kubectl;
use hyper::header::{HeaderName, HeaderValue};
use hyper::Method;
use orch::client::{ApiClient, HttpError, Tls};
use orch_raft::tls::{issue_client, ClusterCa, NodeTls};
use serde_json::{json, Value};

/// The HTTP status of a failed call (None: no HTTP answer at all, or success).
fn code(r: &anyhow::Result<Value>) -> Option<u16> {
    r.as_ref().err().and_then(|e| e.downcast_ref::<HttpError>()).map(|e| e.code)
}

async fn whoami(c: &Cluster, client: &ApiClient, node: usize) -> anyhow::Result<(String, Vec<String>)> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    let r = client.json(Method::POST, &c.url(node, "/apis/authentication.k8s.io/v1/selfsubjectreviews"), Some(&review)).await?;
    let info = &r["status"]["userInfo"];
    let groups = info["groups"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(String::from)).collect();
    Ok((info["username"].as_str().unwrap_or_default().to_string(), groups))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_node_serves_https_and_knows_who_calls() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let ca: ClusterCa = serde_json::from_slice(&std::fs::read(c.nodes[0].data_dir.join("ca.json")).unwrap()).unwrap();
    let (cert, key) = issue_client(&ca, "bob", &["team-a"], 1).unwrap();
    let bob = c.client_as(Some((&cert, &key)), None).unwrap();
    let anonymous = c.client_as(None, None).unwrap();
    let bad_token = c.client_as(None, Some("not-a-token")).unwrap();
    let other = ClusterCa::generate("another cluster").unwrap();
    let (cert, key) = issue_client(&other, "orch-admin", &["system:masters"], 1).unwrap();
    let stranger = c.client_as(Some((&cert, &key)), None).unwrap();
    let worker_tls: NodeTls = serde_json::from_slice(&std::fs::read(c.nodes[1].data_dir.join("tls.json")).unwrap()).unwrap();
    let worker = ApiClient::new(Duration::from_secs(10), &Tls::for_node(&worker_tls).unwrap());
    let forger = bob.with_headers(vec![
        (HeaderName::from_static("x-remote-user"), HeaderValue::from_static("orch-admin")),
        (HeaderName::from_static("x-remote-group"), HeaderValue::from_static("system:masters")),
    ]);

    for node in [0, 1] {
        // Who each caller is, as the head sees it (through the worker too).
        assert_eq!(whoami(&c, &c.client, node).await.unwrap(), ("orch-admin".into(), strings(&["system:masters", "system:authenticated"])));
        assert_eq!(whoami(&c, &bob, node).await.unwrap(), ("bob".into(), strings(&["team-a", "system:authenticated"])));
        assert_eq!(whoami(&c, &worker, node).await.unwrap(), ("system:node:worker-0".into(), strings(&["system:nodes", "system:authenticated"])));

        // Anonymous: the public paths, and a 401 for everything else, which changes nothing.
        for path in ["/version", "/healthz", "/readyz"] {
            anonymous.text(&c.url(node, path)).await.unwrap_or_else(|e| panic!("anonymous {path} through node {node}: {e}"));
        }
        let r = anonymous.json(Method::GET, &c.url(node, "/api/v1/namespaces/default/secrets"), None).await;
        assert_eq!(code(&r), Some(401), "{r:?}");
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": format!("anon-{node}")}});
        let r = anonymous.json(Method::POST, &c.url(node, "/api/v1/namespaces/default/configmaps"), Some(&cm)).await;
        assert_eq!(code(&r), Some(401), "{r:?}");
        let r = c.client.json(Method::GET, &c.url(0, &format!("/api/v1/namespaces/default/configmaps/anon-{node}")), None).await;
        assert_eq!(code(&r), Some(404), "an anonymous write was stored: {r:?}");
        assert_eq!(code(&whoami(&c, &anonymous, node).await.map(|_| Value::Null)), Some(401));
        let r = bad_token.json(Method::GET, &c.url(node, "/api/v1/namespaces"), None).await;
        assert_eq!(code(&r), Some(401), "an unknown bearer token must not pass as anonymous: {r:?}");

        // A certificate of another CA gets no TLS session at all; nor does plain HTTP.
        let r = stranger.json(Method::GET, &c.url(node, "/version"), None).await;
        assert!(r.is_err() && code(&r).is_none(), "{r:?}");
        let plain = ApiClient::plain(Duration::from_secs(5));
        let r = plain.json(Method::GET, &format!("http://{}/version", c.api(node)), None).await;
        assert!(r.is_err() && code(&r).is_none(), "plain HTTP answered: {r:?}");

        // Only nodes may assert an identity.
        let r = forger.json(Method::GET, &c.url(node, "/api/v1/namespaces"), None).await;
        assert_eq!(code(&r), Some(403), "{r:?}");
        assert_eq!(code(&whoami(&c, &forger, node).await.map(|_| Value::Null)), Some(403));
    }

    // Every refusal is in the audit log of the node that served it.
    let audit = |i: usize| -> Vec<Value> {
        let text = std::fs::read_to_string(c.nodes[i].data_dir.join("audit.log")).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).expect("whole JSON lines")).collect()
    };
    // (The log is written by a thread of its own: poll for the lines.)
    for i in [0, 1] {
        let audit = &audit;
        until(Duration::from_secs(10), &format!("{}'s audit log has the refusals", c.nodes[i].name), || async move {
            let events = audit(i);
            let anonymous_secrets = events.iter().any(|e| e["responseStatus"]["code"] == 401 && e["user"]["username"] == "system:anonymous"
                && e["objectRef"]["resource"] == "secrets" && e["verb"] == "list");
            let forged = events.iter().any(|e| e["responseStatus"]["code"] == 403 && e["user"]["username"] == "bob");
            ((anonymous_secrets && forged).then_some(()), format!("{} events, anonymous list of secrets {anonymous_secrets}, forged {forged}", events.len()))
        })
        .await;
        assert!(audit(i).iter().all(|e| e["apiVersion"] == "audit.k8s.io/v1" && e["kind"] == "Event" && e["auditID"].is_string()));
    }

    // The real kubectl, through the worker, with the admin kubeconfig.
    let r = kubectl(&c, 1, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], None).unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.stdout.trim(), "orch-admin");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(c.kubeconfig()).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the admin kubeconfig must be private");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_token_or_certificate_never_makes_a_head() {
    let c = Cluster::start(1, 1).await.expect("cluster starts");
    let ca_pem = c.admin.as_ref().unwrap().ca_pem.clone();
    let raft = format!("{}:{}", c.nodes[0].ip, cluster_tests::cluster::RAFT_PORT);
    let secret = |token: &str| token.rsplit("::").next().unwrap().to_string();
    let csr = orch_raft::tls::NodeKey::generate("intruder", &[], &[orch_raft::tls::HEAD_DNS_NAME.into()]).unwrap();
    // The worker token joins workers, never heads; the head token joins both.
    let refused = orch_raft::transport::request_certificate(&raft, &ca_pem, &secret(&c.worker_token), "intruder", &csr.csr_pem, "head").await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("worker token")), "{refused:?}");
    let worker = orch_raft::transport::request_certificate(&raft, &ca_pem, &secret(&c.worker_token), "intruder", &csr.csr_pem, "worker").await.unwrap();
    assert!(worker.head_secrets.is_empty(), "a worker receives no encryption keys");
    let head = orch_raft::transport::request_certificate(&raft, &ca_pem, &secret(&c.token), "intruder", &csr.csr_pem, "head").await.unwrap();
    assert!(!head.head_secrets.is_empty(), "a head receives the keys");
    let der = |pem: &str| {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap().to_vec()
    };
    assert!(!orch_raft::tls::is_head_certificate(&der(&worker.cert_pem)), "a worker's CSR asking for the head name did not get it");
    assert!(orch_raft::tls::is_head_certificate(&der(&head.cert_pem)));

    // A worker's real certificate may not use the Raft services (vote, propose, add itself).
    let worker_tls: NodeTls = serde_json::from_slice(&std::fs::read(c.nodes[1].data_dir.join("tls.json")).unwrap()).unwrap();
    let channel = orch_raft::transport::client::endpoint(&raft, worker_tls.client_config()).unwrap().connect().await.unwrap();
    let mut client = orch_raft::transport::pb::cluster_client::ClusterClient::new(channel);
    let status = client.status(orch_raft::transport::pb::Empty {}).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
}
