//! Authentication on every node's API (one head, one worker): HTTPS only; anonymous
//! requests reach only the public paths; certificates of the cluster CA name their users
//! and groups, those of another CA are refused at the handshake; a worker relays its
//! caller's own credential to the head, which verifies it again, so that not even a node
//! can make an identity up. Join tokens rotate; node certificates renew at start.

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

/// A certificate's DER in base64, as a node relays it.
fn der_base64(pem: &str) -> String {
    use base64::Engine;
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    base64::engine::general_purpose::STANDARD.encode(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
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
    let bob_der = der_base64(&cert);
    let anonymous = c.client_as(None, None).unwrap();
    let bad_token = c.client_as(None, Some("not-a-token")).unwrap();
    let other = ClusterCa::generate("another cluster").unwrap();
    let (cert, key) = issue_client(&other, "orch-admin", &["system:masters"], 1).unwrap();
    let stranger = c.client_as(Some((&cert, &key)), None).unwrap();
    let stranger_der = der_base64(&cert);
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

        // Not even a node can make a caller up: it relays a caller's own certificate, which
        // is verified again; a name alone, or a certificate of another CA, is refused.
        let relaying = |name: &'static str, value: &str| worker.with_headers(vec![(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap())]);
        let by_name = worker.with_headers(vec![
            (HeaderName::from_static("x-remote-user"), HeaderValue::from_static("orch-admin")),
            (HeaderName::from_static("x-remote-group"), HeaderValue::from_static("system:masters")),
        ]);
        let r = by_name.json(Method::GET, &c.url(node, "/api/v1/namespaces/default/secrets"), None).await;
        assert_eq!(code(&r), Some(403), "a node naming an administrator: {r:?}");
        let r = relaying("x-orch-client-certificate", &stranger_der).json(Method::GET, &c.url(node, "/api/v1/namespaces/default/secrets"), None).await;
        assert_eq!(code(&r), Some(401), "a node relaying a certificate of another CA: {r:?}");
        let relayed_bob = relaying("x-orch-client-certificate", &bob_der);
        assert_eq!(whoami(&c, &relayed_bob, node).await.unwrap().0, "bob", "a relayed certificate names its own subject");
        let r = bob.with_headers(vec![(HeaderName::from_static("x-orch-client-certificate"), HeaderValue::from_str(&bob_der).unwrap())])
            .json(Method::GET, &c.url(node, "/api/v1/namespaces"), None)
            .await;
        assert_eq!(code(&r), Some(403), "only nodes relay: {r:?}");
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

#[tokio::test(flavor = "multi_thread")]
async fn join_tokens_rotate_and_node_certificates_renew() {
    let mut c = Cluster::start(1, 1).await.expect("cluster starts");
    let ca_pem = c.admin.as_ref().unwrap().ca_pem.clone();
    let raft = format!("{}:{}", c.nodes[0].ip, cluster_tests::cluster::RAFT_PORT);
    let secret = |token: &str| token.trim().rsplit("::").next().unwrap().to_string();
    let orchctl = |c: &Cluster, args: &[&str]| {
        let (ok, out, err) = c.orchctl(1, args).unwrap();
        assert!(ok, "orchctl {args:?}: {err}");
        out.trim().to_string()
    };

    // The tokens as they are now, for an administrator only (and audited).
    assert_eq!(orchctl(&c, &["cluster", "token"]), c.token);
    assert_eq!(orchctl(&c, &["cluster", "token", "--role", "worker"]), c.worker_token);
    let (_, bob) = c.add_user("bob", None).unwrap();
    for node in [0, 1] {
        let r = bob.json(Method::GET, &c.url(node, "/orch/v1/cluster/tokens"), None).await;
        assert_eq!(code(&r), Some(403), "{r:?}");
        let r = bob.json(Method::POST, &c.url(node, "/orch/v1/cluster/tokens/rotate"), Some(&json!({"role": "worker"}))).await;
        assert_eq!(code(&r), Some(403), "{r:?}");
    }
    let r = c.client.json(Method::POST, &c.url(0, "/orch/v1/cluster/tokens/rotate"), Some(&json!({"role": "all"}))).await;
    assert_eq!(code(&r), Some(422), "{r:?}");
    assert_eq!(orchctl(&c, &["cluster", "token", "--role", "worker"]), c.worker_token, "a refused rotation changed nothing");

    // Rotating a token: the old one joins nothing from then on, the new one joins.
    let key = orch_raft::tls::NodeKey::generate("newcomer", &[], &[]).unwrap();
    for role in ["worker", "head"] {
        let old = if role == "head" { c.token.clone() } else { c.worker_token.clone() };
        let new = orchctl(&c, &["cluster", "rotate-token", "--role", role]);
        assert!(new.starts_with("ORCH1::") && new != old, "{new}");
        assert_eq!(orchctl(&c, &["cluster", "token", "--role", role]), new);
        let refused = orch_raft::transport::request_certificate(&raft, &ca_pem, &secret(&old), "newcomer", &key.csr_pem, role).await;
        assert!(refused.is_err(), "the rotated {role} token still joins");
        orch_raft::transport::request_certificate(&raft, &ca_pem, &secret(&new), "newcomer", &key.csr_pem, role)
            .await
            .unwrap_or_else(|e| panic!("the new {role} token: {e}"));
        if role == "worker" {
            c.worker_token = new;
        }
    }
    let joined = c.add_worker().await.expect("a worker joins with the new worker token");

    // A node starting inside its renewal window renews its certificate: the worker through
    // a head, the head with the CA its replica holds. Both serve as before.
    let tls = |c: &Cluster, i: usize| -> NodeTls { serde_json::from_slice(&std::fs::read(c.nodes[i].data_dir.join("tls.json")).unwrap()).unwrap() };
    for i in [joined, 0] {
        let before = tls(&c, i);
        c.stop(i);
        c.restart_with(i, &["--renew-certificate-within-days", "400"]).await.unwrap_or_else(|e| panic!("{}: {e}\n{}", c.nodes[i].name, c.log_tail(i)));
        let after = tls(&c, i);
        assert_ne!(after.cert_pem, before.cert_pem, "{} kept its certificate", c.nodes[i].name);
        assert_ne!(after.key_pem, before.key_pem, "a renewal brings a new key");
        let node = ApiClient::new(Duration::from_secs(10), &Tls::for_node(&after).unwrap());
        let who = whoami(&c, &node, 0).await.unwrap();
        assert_eq!(who.0, format!("system:node:{}", c.nodes[i].name));
        let head = orch_raft::tls::is_head_certificate(&{
            use rustls::pki_types::{pem::PemObject, CertificateDer};
            CertificateDer::from_pem_slice(after.cert_pem.as_bytes()).unwrap().to_vec()
        });
        assert_eq!(head, i == 0, "a renewal keeps the node's role");
    }
    // Outside the window nothing is renewed.
    let before = tls(&c, joined);
    c.stop(joined);
    c.restart(joined).await.unwrap();
    assert_eq!(tls(&c, joined).cert_pem, before.cert_pem);
    c.wait_ready(1).await.unwrap();
}
