//! The cluster's credentials as the API hands them out: the CA certificate (public), client
//! certificates for people (`orchctl kubeconfig user`), renewed node certificates, and the
//! join tokens (read and rotated by an administrator). Signing needs the CA, which every
//! head holds in its replica; a new join secret is a Raft write like any other.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use orch_raft::node::{KEY_CA, KEY_JOIN_SECRET, KEY_WORKER_JOIN_SECRET};
use orch_raft::tls::{ClusterCa, JoinToken};
use orch_raft::{Command, Op, Txn};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Value};

use super::status::ApiError;
use super::AppState;
use crate::auth::User;

/// Where a node asks for its certificate to be renewed (allowed to every node for itself).
pub const RENEW_NODE_PATH: &str = "/orch/v1/certificates/nodes";

fn cluster_ca(st: &AppState) -> Result<ClusterCa, ApiError> {
    let stored = st.store.node().reader().get(KEY_CA).map_err(|e| ApiError::internal(e.to_string()))?;
    stored
        .and_then(|kv| serde_json::from_slice::<ClusterCa>(&kv.value).ok())
        .ok_or_else(|| ApiError::unavailable("this node has not received the cluster CA yet"))
}

/// The cluster CA certificate (public). A joining node checks it against its token's hash.
pub async fn ca_cert(State(st): State<AppState>) -> Response {
    match cluster_ca(&st) {
        Ok(ca) => ([(header::CONTENT_TYPE, "application/x-pem-file")], ca.cert_pem).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Sign a person's CSR (`orchctl kubeconfig user`): `{"csr": PEM, "days": N}` → `{"certificate": PEM}`.
/// Authorized as `post` on this path, which only `cluster-admin` holds by default.
pub async fn sign_user(State(st): State<AppState>, Json(body): Json<Value>) -> Response {
    let Some(csr) = body["csr"].as_str() else { return ApiError::invalid("csr: Required value").into_response() };
    let days = body["days"].as_i64().unwrap_or(365);
    if !(1..=3650).contains(&days) {
        return ApiError::invalid("days: must be between 1 and 3650").into_response();
    }
    let signed = cluster_ca(&st).and_then(|ca| ca.sign_client(csr, days).map(|c| (c, ca)).map_err(|e| ApiError::invalid(e.to_string())));
    match signed {
        Ok((cert, ca)) => Json(json!({"certificate": cert, "ca": ca.cert_pem})).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Renew the calling node's certificate: `{"csr": PEM}` → `{"certificate", "ca"}`. The name
/// is the caller's own (its current certificate, which must still be valid, proved it) and
/// the head name goes only to Raft members, whatever the CSR asks for.
pub async fn renew_node(State(st): State<AppState>, user: Option<Extension<User>>, Json(body): Json<Value>) -> Response {
    let Some(node) = user.as_deref().and_then(crate::auth::node::node_name) else {
        return ApiError::forbidden("only a node may renew its certificate, and only its own").into_response();
    };
    let Some(csr) = body["csr"].as_str() else { return ApiError::invalid("csr: Required value").into_response() };
    let status = st.store.node().status();
    let head = status.voters.values().chain(status.learners.values()).any(|m| m.name == node);
    let signed = cluster_ca(&st).and_then(|ca| ca.sign(csr, node, head).map(|c| (c, ca)).map_err(|e| ApiError::invalid(e.to_string())));
    match signed {
        Ok((cert, ca)) => {
            tracing::info!(node, head, "renewed a node certificate");
            Json(json!({"certificate": cert, "ca": ca.cert_pem})).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// The current join tokens: `{"head": TOKEN, "worker": TOKEN}` (an administrator's).
pub async fn tokens(State(st): State<AppState>) -> Response {
    match current_tokens(&st) {
        Ok((head, worker)) => Json(json!({"head": head.to_string(), "worker": worker.to_string()})).into_response(),
        Err(e) => e.into_response(),
    }
}

fn current_tokens(st: &AppState) -> Result<(JoinToken, JoinToken), ApiError> {
    let ca_hash = cluster_ca(st)?.hash().map_err(|e| ApiError::internal(e.to_string()))?;
    let reader = st.store.node().reader();
    let secret = |key: &str| -> Result<String, ApiError> {
        let kv = reader.get(key).map_err(|e| ApiError::internal(e.to_string()))?;
        let kv = kv.ok_or_else(|| ApiError::unavailable("this node has not received the join secrets yet"))?;
        String::from_utf8(kv.value).map_err(|e| ApiError::internal(e.to_string()))
    };
    let token = |key: &str| secret(key).map(|secret| JoinToken { ca_hash: ca_hash.clone(), secret });
    Ok((token(KEY_JOIN_SECRET)?, token(KEY_WORKER_JOIN_SECRET)?))
}

/// Replace one join token (`{"role": "head"|"worker"}`) with a new one, returned once:
/// the old one stops joining nodes as soon as the write commits. Nodes that joined keep
/// their certificates; only new joins need the new token.
pub async fn rotate_token(State(st): State<AppState>, Json(body): Json<Value>) -> Response {
    let key = match body["role"].as_str() {
        Some("head") => KEY_JOIN_SECRET,
        Some("worker") => KEY_WORKER_JOIN_SECRET,
        _ => return ApiError::invalid(r#"role: Unsupported value: must be "head" or "worker""#).into_response(),
    };
    let result = async {
        let ca_hash = cluster_ca(&st)?.hash().map_err(|e| ApiError::internal(e.to_string()))?;
        let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
        let put = Op::Put { key: key.into(), value: secret.clone().into_bytes() };
        let cmd = Command { request_id: None, fence_term: None, txn: Txn { conditions: vec![], ops: vec![put] } };
        st.store.node().propose(cmd).await.map_err(|e| ApiError::unavailable(format!("storing the new join secret: {e}")))?;
        Ok::<_, ApiError>(JoinToken { ca_hash, secret })
    };
    match result.await {
        Ok(token) => {
            tracing::info!(role = %body["role"], "a join token was rotated");
            Json(json!({"role": body["role"], "token": token.to_string()})).into_response()
        }
        Err(e) => e.into_response(),
    }
}
