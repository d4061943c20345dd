//! Creating a cluster's credentials (CA, this node's certificate, the join secret and an
//! admin kubeconfig) and joining an existing cluster: fetch the CA from a head, check it
//! against the join token *before* sending the secret, then send the secret and a CSR over
//! TLS verified with that CA and receive the node certificate.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use orch_raft::tls::{ClusterCa, JoinToken, NodeKey, NodeTls};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;

use super::config::{node_id, write_private, NodeState, Role, Settings};
use crate::client::{base_url, host_port, ApiClient, Tls};
use crate::auth::encryption::{Keyring, KEY_FILE};
use crate::kubeconfig::Kubeconfig;

pub const TLS_FILE: &str = "tls.json";
const CA_FILE: &str = "ca.json";
/// The head token (joins heads and workers) and the worker token (workers only).
pub const TOKEN_FILE: &str = "token";
pub const WORKER_TOKEN_FILE: &str = "worker-token";
/// The cluster administrator's kubeconfig, written by the first head (mode 0600).
pub const ADMIN_KUBECONFIG: &str = "admin.kubeconfig";
/// The administrator's user and group (bound to `cluster-admin`, as kubeadm's).
pub const ADMIN_USER: &str = "orch-admin";
pub const MASTERS_GROUP: &str = "system:masters";
/// How long the administrator's client certificate is valid (kubeadm's one year).
const ADMIN_CERT_DAYS: i64 = 365;

pub fn load_tls(data_dir: &Path) -> anyhow::Result<NodeTls> {
    let bytes = std::fs::read(data_dir.join(TLS_FILE)).context("reading tls.json from the data dir")?;
    serde_json::from_slice(&bytes).context("tls.json is corrupt")
}

/// What the first head needs to seed the replicated store with.
pub struct Founding {
    pub ca: ClusterCa,
    /// Joins heads and workers.
    pub secret: String,
    /// Joins workers only.
    pub worker_secret: String,
}

pub fn load_founding(data_dir: &Path) -> anyhow::Result<Founding> {
    let ca: ClusterCa = serde_json::from_slice(&std::fs::read(data_dir.join(CA_FILE))?)?;
    let secret = std::fs::read_to_string(data_dir.join("join-secret"))?;
    let worker_secret = std::fs::read_to_string(data_dir.join("worker-join-secret"))?;
    Ok(Founding { ca, secret, worker_secret })
}

/// Create a new cluster's CA, this node's certificate and the join secret; persist them.
pub fn create_cluster(s: &Settings) -> anyhow::Result<NodeState> {
    let cluster_id = uuid::Uuid::new_v4().to_string();
    let ca = ClusterCa::generate(&cluster_id)?;
    let (ips, dns) = s.certificate_names();
    let key = NodeKey::generate(&s.name, &ips, &dns)?;
    let tls = NodeTls { ca_pem: ca.cert_pem.clone(), cert_pem: ca.sign(&key.csr_pem, &s.name, true)?, key_pem: key.key_pem };
    write_private(&s.data_dir.join(CA_FILE), &serde_json::to_vec(&ca)?)?;
    write_private(&s.data_dir.join(TLS_FILE), &serde_json::to_vec(&tls)?)?;
    // Two tokens, as k3s's server and agent tokens: the worker token can never make a head.
    for (secret_file, token_file) in [("join-secret", TOKEN_FILE), ("worker-join-secret", WORKER_TOKEN_FILE)] {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
        write_private(&s.data_dir.join(secret_file), secret.as_bytes())?;
        let token = JoinToken { ca_hash: ca.hash()?, secret };
        write_private(&s.data_dir.join(token_file), format!("{token}\n").as_bytes())?;
    }
    let (cert, key) = orch_raft::tls::issue_client(&ca, ADMIN_USER, &[MASTERS_GROUP], ADMIN_CERT_DAYS)?;
    Keyring::generate(&format!("key-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"))).save(&s.data_dir.join(KEY_FILE))?;
    let admin = Kubeconfig::for_user("orch", &format!("https://{}", s.api_addr()), &ca.cert_pem, ADMIN_USER, &cert, &key);
    write_private(&s.data_dir.join(ADMIN_KUBECONFIG), admin.to_yaml().as_bytes())?;
    let state = NodeState {
        name: s.name.clone(),
        id: node_id(&s.name),
        role: Role::Head,
        cluster_id,
        api_addr: s.api_addr(),
        raft_addr: s.raft_addr(),
        seeds: vec![s.api_addr()],
        member: false,
    };
    state.save(&s.data_dir)?;
    Ok(state)
}

/// Join through the head whose API is at `seed`. Nothing secret is sent until the CA the
/// head presents matches the token.
pub async fn join(s: &Settings, seed: &str) -> anyhow::Result<NodeState> {
    let token: JoinToken = s.token.as_deref().context("--join needs --token")?.parse()?;
    let base = base_url(seed);
    let ca_pem = ApiClient::new(Duration::from_secs(30), &pinning::tls()).text(&format!("{base}/orch/v1/ca.crt")).await.context("fetching the cluster CA")?;
    token.verify_ca(&ca_pem).context("refusing to join")?;
    // From here on the server is verified against the CA the token pinned.
    let client = ApiClient::new(Duration::from_secs(30), &Tls::new(&ca_pem, None, None)?);

    let status = client.json(hyper::Method::GET, &format!("{base}/orch/v1/cluster/status"), None).await?;
    let members = status["members"].as_array().cloned().unwrap_or_default();
    let field = |m: &Value, f: &str| m[f].as_str().map(str::to_string);
    let seed_raft = members
        .iter()
        .find(|m| field(m, "apiAddress").as_deref() == Some(host_port(seed)))
        .or_else(|| members.iter().find(|m| m["reachable"] == true))
        .and_then(|m| field(m, "raftAddress"))
        .context("the seed reported no reachable head")?;
    if members.iter().any(|m| field(m, "name").as_deref() == Some(&s.name)) {
        bail!("a head named {:?} is already a member of this cluster", s.name);
    }

    let (ips, dns) = s.certificate_names();
    let key = NodeKey::generate(&s.name, &ips, &dns)?;
    let role = if s.role == Role::Head { "head" } else { "worker" };
    let issued = orch_raft::transport::request_certificate(&seed_raft, &ca_pem, &token.secret, &s.name, &key.csr_pem, role)
        .await
        .map_err(|e| anyhow::anyhow!("certificate request refused: {e}"))?;
    if s.role == Role::Head {
        // The keys that seal Secrets: only heads hold them, never the replicated store.
        let ring = Keyring::parse(&issued.head_secrets).context("the seed head sent no usable encryption keys")?;
        ring.save(&s.data_dir.join(KEY_FILE))?;
    }
    let tls = NodeTls { ca_pem: issued.ca_pem, cert_pem: issued.cert_pem, key_pem: key.key_pem };
    write_private(&s.data_dir.join(TLS_FILE), &serde_json::to_vec(&tls)?)?;
    let mut seeds: Vec<String> = members.iter().filter_map(|m| field(m, "apiAddress")).collect();
    if seeds.is_empty() {
        seeds.push(host_port(seed).to_string());
    }
    let state = NodeState {
        name: s.name.clone(),
        id: node_id(&s.name),
        role: s.role,
        cluster_id: String::new(),
        api_addr: s.api_addr(),
        raft_addr: s.raft_addr(),
        seeds,
        member: s.role == Role::Worker,
    };
    state.save(&s.data_dir)?;
    Ok(state)
}

/// The Raft address of a head, learnt from any seed's cluster status.
pub async fn head_raft_addrs(client: &ApiClient, seeds: &[String]) -> Vec<String> {
    for seed in seeds {
        if let Ok(status) = client.json(hyper::Method::GET, &format!("{}/orch/v1/cluster/status", base_url(seed)), None).await {
            return status["members"]
                .as_array()
                .map(|ms| ms.iter().filter_map(|m| m["raftAddress"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
        }
    }
    Vec::new()
}

/// The one request made before the cluster CA is known: fetching it. The server is not
/// verified here; what it sends is trusted only if its hash matches the join token (as
/// kubeadm's discovery-token-ca-cert-hash), and every later request verifies against it.
mod pinning {
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use crate::client::Tls;

    #[derive(Debug)]
    struct Unverified(Arc<rustls::crypto::CryptoProvider>);

    impl ServerCertVerifier for Unverified {
        fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub fn tls() -> Tls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
            .with_no_client_auth();
        Tls::from_config(config)
    }
}
