//! Renewing this node's certificate when the node starts inside the renewal window (as k3s
//! renews its certificates at start): a head signs a new one for itself with the CA its
//! replica holds (read before Raft starts); a worker asks a head, proving who it is with the
//! certificate it still holds. The new key and certificate replace tls.json before anything
//! serves with them; a node whose certificate has expired must join again.

use std::time::Duration;

use anyhow::{bail, Context};
use orch_raft::node::KEY_CA;
use orch_raft::tls::{ClusterCa, NodeKey, NodeTls};
use serde_json::json;

use super::config::{write_private, NodeState, Role, Settings};
use super::join::{load_tls, TLS_FILE};
use crate::api::credentials::RENEW_NODE_PATH;
use crate::client::{base_url, ApiClient, Tls};

/// Seconds left of `tls`'s certificate at `now` (Unix seconds); negative once expired.
pub fn seconds_left(tls: &NodeTls, now: i64) -> anyhow::Result<i64> {
    Ok(orch_raft::tls::not_after(&tls.cert_pem).context("reading this node's certificate")? - now)
}

/// Renew this node's certificate if fewer than `s.renew_certificate_within` are left of it.
pub async fn renew_if_due(s: &Settings, state: &NodeState) -> anyhow::Result<()> {
    let tls = load_tls(&s.data_dir)?;
    let left = seconds_left(&tls, chrono::Utc::now().timestamp())?;
    if left > s.renew_certificate_within.as_secs() as i64 {
        tracing::info!(days_left = left / 86_400, "node certificate valid");
        return Ok(());
    }
    if left <= 0 {
        bail!("this node's certificate has expired: remove its data dir's tls.json and node.json and join again with a token");
    }
    tracing::info!(days_left = left / 86_400, "renewing the node certificate");
    // The certificate still serves: a failed renewal is retried at the next start.
    if let Err(e) = renew(s, state, tls).await {
        tracing::warn!(error = %format!("{e:#}"), days_left = left / 86_400, "could not renew the node certificate; serving with the current one");
    }
    Ok(())
}

async fn renew(s: &Settings, state: &NodeState, tls: NodeTls) -> anyhow::Result<()> {
    let (ips, dns) = s.certificate_names();
    let key = NodeKey::generate(&state.name, &ips, &dns)?;
    let cert_pem = match state.role {
        Role::Head => sign_as_head(s, state, &key)?,
        Role::Worker => ask_a_head(&tls, state, &key).await?,
    };
    let renewed = NodeTls { ca_pem: tls.ca_pem, cert_pem, key_pem: key.key_pem };
    write_private(&s.data_dir.join(TLS_FILE), &serde_json::to_vec(&renewed)?)?;
    let days = seconds_left(&renewed, chrono::Utc::now().timestamp())? / 86_400;
    tracing::info!(days_left = days, "node certificate renewed");
    Ok(())
}

fn sign_as_head(s: &Settings, state: &NodeState, key: &NodeKey) -> anyhow::Result<String> {
    let stored = orch_raft::node::read_stored(&s.data_dir, KEY_CA)
        .map_err(|e| anyhow::anyhow!("reading the cluster CA from this head's replica: {e}"))?
        .context("this head's replica holds no cluster CA yet; it cannot renew its certificate")?;
    let ca: ClusterCa = serde_json::from_slice(&stored.value).context("the stored cluster CA is corrupt")?;
    Ok(ca.sign(&key.csr_pem, &state.name, true)?)
}

async fn ask_a_head(tls: &NodeTls, state: &NodeState, key: &NodeKey) -> anyhow::Result<String> {
    let client = ApiClient::new(Duration::from_secs(30), &Tls::for_node(tls)?);
    let mut last = anyhow::anyhow!("this node knows no head");
    for seed in &state.seeds {
        let url = format!("{}{RENEW_NODE_PATH}", base_url(seed));
        match client.json(hyper::Method::POST, &url, Some(&json!({"csr": key.csr_pem}))).await {
            Ok(reply) => return reply["certificate"].as_str().map(str::to_string).context("the head's answer holds no certificate"),
            Err(e) => last = e.context(format!("asking {seed} to renew this node's certificate")),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_is_read_from_the_certificate() {
        let ca = ClusterCa::generate("t").unwrap();
        let key = NodeKey::generate("n1", &[], &[]).unwrap();
        let tls = NodeTls { ca_pem: ca.cert_pem.clone(), cert_pem: ca.sign(&key.csr_pem, "n1", false).unwrap(), key_pem: key.key_pem };
        let now = chrono::Utc::now().timestamp();
        let year = orch_raft::tls::NODE_CERT_DAYS * 86_400;
        let left = seconds_left(&tls, now).unwrap();
        assert!((year - 600..=year).contains(&left), "{left}");
        assert!(seconds_left(&tls, now + year + 1).unwrap() < 0, "expired after its year");
    }
}
