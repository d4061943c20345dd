//! Creating a cluster's credentials and joining an existing cluster: fetch the CA from a
//! head, check it against the join token *before* sending the secret, then send the secret
//! and a CSR over TLS verified with that CA and receive the node certificate.

use std::path::Path;

use anyhow::{bail, Context};
use orch_raft::tls::{ClusterCa, JoinToken, NodeKey, NodeTls};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;

use super::config::{node_id, write_private, NodeState, Role, Settings};
use crate::client::{base_url, ApiClient};

const TLS_FILE: &str = "tls.json";
const CA_FILE: &str = "ca.json";
pub const TOKEN_FILE: &str = "token";

pub fn load_tls(data_dir: &Path) -> anyhow::Result<NodeTls> {
    let bytes = std::fs::read(data_dir.join(TLS_FILE)).context("reading tls.json from the data dir")?;
    serde_json::from_slice(&bytes).context("tls.json is corrupt")
}

/// What the first head needs to seed the replicated store with.
pub struct Founding {
    pub ca: ClusterCa,
    pub secret: String,
}

pub fn load_founding(data_dir: &Path) -> anyhow::Result<Founding> {
    let ca: ClusterCa = serde_json::from_slice(&std::fs::read(data_dir.join(CA_FILE))?)?;
    let secret = std::fs::read_to_string(data_dir.join("join-secret"))?;
    Ok(Founding { ca, secret })
}

/// Create a new cluster's CA, this node's certificate and the join secret; persist them.
pub fn create_cluster(s: &Settings) -> anyhow::Result<NodeState> {
    let cluster_id = uuid::Uuid::new_v4().to_string();
    let ca = ClusterCa::generate(&cluster_id)?;
    let key = NodeKey::generate(&s.name, &[s.advertise])?;
    let tls = NodeTls { ca_pem: ca.cert_pem.clone(), cert_pem: ca.sign(&key.csr_pem)?, key_pem: key.key_pem };
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    write_private(&s.data_dir.join(CA_FILE), &serde_json::to_vec(&ca)?)?;
    write_private(&s.data_dir.join("join-secret"), secret.as_bytes())?;
    write_private(&s.data_dir.join(TLS_FILE), &serde_json::to_vec(&tls)?)?;
    let token = JoinToken { ca_hash: ca.hash()?, secret };
    write_private(&s.data_dir.join(TOKEN_FILE), format!("{token}\n").as_bytes())?;
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
    let client = ApiClient::default();
    let base = base_url(seed);
    let ca_pem = client.text(&format!("{base}/orch/v1/ca.crt")).await.context("fetching the cluster CA")?;
    token.verify_ca(&ca_pem).context("refusing to join")?;

    let status = client.json(hyper::Method::GET, &format!("{base}/orch/v1/cluster/status"), None).await?;
    let members = status["members"].as_array().cloned().unwrap_or_default();
    let field = |m: &Value, f: &str| m[f].as_str().map(str::to_string);
    let seed_raft = members
        .iter()
        .find(|m| field(m, "apiAddress").as_deref() == Some(seed.trim_start_matches("http://")))
        .or_else(|| members.iter().find(|m| m["reachable"] == true))
        .and_then(|m| field(m, "raftAddress"))
        .context("the seed reported no reachable head")?;
    if members.iter().any(|m| field(m, "name").as_deref() == Some(&s.name)) {
        bail!("a head named {:?} is already a member of this cluster", s.name);
    }

    let key = NodeKey::generate(&s.name, &[s.advertise])?;
    let issued = orch_raft::transport::request_certificate(&seed_raft, &ca_pem, &token.secret, &s.name, &key.csr_pem)
        .await
        .map_err(|e| anyhow::anyhow!("certificate request refused: {e}"))?;
    let tls = NodeTls { ca_pem: issued.ca_pem, cert_pem: issued.cert_pem, key_pem: key.key_pem };
    write_private(&s.data_dir.join(TLS_FILE), &serde_json::to_vec(&tls)?)?;
    let mut seeds: Vec<String> = members.iter().filter_map(|m| field(m, "apiAddress")).collect();
    if seeds.is_empty() {
        seeds.push(seed.trim_start_matches("http://").to_string());
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
pub async fn head_raft_addrs(seeds: &[String]) -> Vec<String> {
    let client = ApiClient::default();
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
