//! The Kubernetes-shaped HTTP API a head serves: resource paths, discovery, watch, and
//! orch's own endpoints (credentials, cluster status, health, metrics).

pub mod cascade;
pub mod credentials;
pub mod defaults;
pub mod discovery;
pub mod disruption;
pub mod eviction;
pub mod fields;
pub mod handlers;
pub mod limitrange;
pub mod object;
pub mod patch;
pub mod quota;
pub mod protobuf;
pub mod quantity;
pub mod resources;
pub mod reviews;
pub mod rotation;
pub mod scale;
pub mod serviceaccounts;
pub mod service;
pub mod status;
pub mod validation;
pub mod store;
pub mod table;
pub mod watch_hub;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::{json, Value};

use self::status::ApiError;
use self::store::{Consistency, Filter, ObjectStore};
use crate::metrics::Metrics;

/// The label that marks a node's role on its Node object.
pub const ROLE_LABEL: &str = "orch.dev/role";
/// The annotation holding a node's API address.
pub const API_ADDR_ANNOTATION: &str = "orch.dev/api-address";

#[derive(Clone)]
pub struct AppState {
    pub store: ObjectStore,
    pub metrics: Arc<Metrics>,
    /// How long since its last heartbeat a worker counts as unreachable.
    pub heartbeat_grace: Duration,
    /// Decides every request this head serves (Node, RBAC).
    pub authz: Arc<crate::auth::authorizer::Local>,
    /// Issues and checks ServiceAccount tokens.
    pub tokens: Arc<crate::auth::bearer::Local>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/version", get(|| async { axum::Json(discovery::version()) }))
        .route("/version/", get(|| async { axum::Json(discovery::version()) }))
        .route("/api", get(|| async { axum::Json(discovery::api_versions()) }))
        .route("/apis", get(|| async { axum::Json(discovery::api_groups()) }))
        .route("/api/v1", get(|| async { axum::Json(discovery::resource_list("", "v1")) }))
        .route("/apis/{group}/{version}", get(group_discovery))
        .route("/apis/authentication.k8s.io/v1/selfsubjectreviews", post(reviews::self_subject))
        .route("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", post(reviews::self_subject_access))
        .route("/apis/authorization.k8s.io/v1/selfsubjectrulesreviews", post(reviews::self_subject_rules))
        .route("/apis/authorization.k8s.io/v1/subjectaccessreviews", post(reviews::subject_access))
        .route("/apis/authentication.k8s.io/v1/tokenreviews", post(serviceaccounts::token_review))
        .route("/api/v1/namespaces/{ns}/serviceaccounts/{name}/token", post(serviceaccounts::token_request))
        .route("/api/v1/{*rest}", any(handlers::core))
        .route("/apis/{group}/{version}/{*rest}", any(handlers::grouped))
        .route("/orch/v1/ca.crt", get(credentials::ca_cert))
        .route("/orch/v1/certificates/users", post(credentials::sign_user))
        .route(credentials::RENEW_NODE_PATH, post(credentials::renew_node))
        .route("/orch/v1/cluster/tokens", get(credentials::tokens))
        .route("/orch/v1/cluster/tokens/rotate", post(credentials::rotate_token))
        .route("/orch/v1/encryption/rotate", post(rotation::rotate))
        .route("/orch/v1/cluster/status", get(cluster_status))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn group_discovery(Path((group, version)): Path<(String, String)>) -> Response {
    match discovery::resource_list(&group, &version) {
        Some(v) => axum::Json(v).into_response(),
        None => ApiError::not_found(format!("{group}/{version}")).into_response(),
    }
}

/// Ready when a read through a quorum succeeds and the authorization policy is loaded.
async fn readyz(State(st): State<AppState>) -> Response {
    if !st.authz.ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the default authorization policy is not loaded yet").into_response();
    }
    match st.store.node().read_barrier().await {
        Ok(_) => "ok".into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// What namespace `ns` holds of the kinds `quotas` limit, as this node's replica has it.
pub async fn quota_usage(store: &ObjectStore, ns: &str, quotas: &[Value]) -> Result<std::collections::BTreeMap<String, i64>, ApiError> {
    let mut used = std::collections::BTreeMap::new();
    for (plural, group) in quota::kinds_needed(quotas) {
        let Some(res) = resources::by_plural(&group, &plural) else { continue };
        let (objects, _) = store.list(res, Some(ns), &Filter::default(), Consistency::Local).await?;
        quota::add_usage(&mut used, &plural, &group, &objects);
    }
    Ok(used)
}

async fn metrics(State(st): State<AppState>) -> Response {
    let s = st.store.node().status();
    st.metrics.raft_term.set(s.term as i64);
    st.metrics.raft_commit_index.set(s.commit_index as i64);
    st.metrics.raft_applied_index.set(s.applied_index as i64);
    st.metrics.raft_is_leader.set(i64::from(s.leader == Some(s.id)));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.render()).into_response()
}

/// Every Raft member as it reports itself, and every worker by its Node heartbeat.
async fn cluster_status(State(st): State<AppState>) -> Response {
    let node = st.store.node();
    let me = node.status();
    let mut members = Vec::new();
    let all = me.voters.iter().map(|(id, m)| (*id, m, true)).chain(me.learners.iter().map(|(id, m)| (*id, m, false)));
    for (id, member, voter) in all {
        let status = if id == me.id { Ok(me.clone()) } else { node.peer_status(member).await };
        let mut row = json!({
            "id": id.to_string(), "name": member.name, "role": "head",
            "suffrage": if voter { "voter" } else { "learner" },
            "raftAddress": member.raft_addr, "apiAddress": member.api_addr,
            "reachable": status.is_ok(),
        });
        if let Ok(s) = status {
            row["leader"] = (s.leader == Some(s.id)).into();
            row["state"] = s.state.into();
            row["term"] = s.term.into();
            row["commitIndex"] = s.commit_index.into();
            row["appliedIndex"] = s.applied_index.into();
            row["snapshotIndex"] = s.snapshot_index.into();
            row["purgedIndex"] = s.purged_index.into();
        }
        members.push(row);
    }
    let workers = match worker_rows(&st).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    axum::Json(json!({"leader": me.leader.map(|l| l.to_string()), "members": members, "workers": workers})).into_response()
}

async fn worker_rows(st: &AppState) -> Result<Vec<Value>, ApiError> {
    let nodes = resources::by_plural("", "nodes").expect("nodes are registered");
    let filter = Filter { labels: object::Selector::parse(&format!("{ROLE_LABEL}=worker"))?, ..Default::default() };
    let (items, _) = st.store.list(nodes, None, &filter, Consistency::Local).await?;
    let now = chrono::Utc::now();
    Ok(items
        .iter()
        .map(|n| {
            let beat = n.pointer("/status/conditions").and_then(Value::as_array).and_then(|cs| {
                cs.iter().find(|c| c["type"] == "Ready").and_then(|c| c["lastHeartbeatTime"].as_str())
            });
            let age = beat
                .and_then(|b| chrono::DateTime::parse_from_rfc3339(b).ok())
                .map(|t| (now - t.with_timezone(&chrono::Utc)).to_std().unwrap_or_default());
            json!({
                "name": object::name_of(n),
                "role": "worker",
                "apiAddress": n.pointer(&format!("/metadata/annotations/{}", API_ADDR_ANNOTATION.replace('/', "~1"))),
                "lastHeartbeat": beat,
                "reachable": age.is_some_and(|a| a <= st.heartbeat_grace),
            })
        })
        .collect())
}
