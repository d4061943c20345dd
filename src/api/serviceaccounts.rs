//! The ServiceAccount token APIs: TokenRequest (`kubectl create token SA`: a token for a
//! ServiceAccount, optionally bound to a pod of its namespace) and TokenReview (is this token
//! valid, and whose is it: asked by workers, which do not hold the replica). Served by heads.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::status::ApiError;
use super::store::Consistency;
use super::{resources, AppState};
use crate::auth::tokens::{self, KubernetesClaims, Ref};
use crate::auth::{node, User};
use axum::Extension;

/// `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`.
pub async fn token_request(
    State(st): State<AppState>,
    user: Option<Extension<User>>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = match super::reviews::spec_of(&headers, &body, "TokenRequest") {
        Ok(spec) => json!({"spec": spec}),
        Err(e) => return e.into_response(),
    };
    let node = user.as_deref().and_then(node::node_name).map(String::from);
    match issue(&st, &ns, &name, &body, node.as_deref()).await {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `node`: the node asking (NodeRestriction: only for a pod bound to it that runs as this
/// account).
async fn issue(st: &AppState, ns: &str, name: &str, body: &Value, node: Option<&str>) -> Result<Value, ApiError> {
    let spec = &body["spec"];
    let ttl = spec["expirationSeconds"].as_i64().unwrap_or(tokens::DEFAULT_TTL_S);
    if !(tokens::MIN_TTL_S..=tokens::MAX_TTL_S).contains(&ttl) {
        return Err(ApiError::invalid(format!(
            "spec.expirationSeconds: must be between {} and {} seconds", tokens::MIN_TTL_S, tokens::MAX_TTL_S
        )));
    }
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a.iter().filter_map(|v| v.as_str().map(String::from)).collect(),
        _ => vec![tokens::AUDIENCE.into()],
    };
    let sas = resources::by_plural("", "serviceaccounts").expect("registered");
    let sa = st.store.get(sas, Some(ns), name, Consistency::Linearizable).await?;
    let uid = |o: &Value| o["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let pod = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        None if node.is_some() => return Err(ApiError::forbidden("a node may only request tokens bound to its own pods")),
        None => None,
        Some(r) if r["kind"] == "Pod" => {
            let pod_name = r["name"].as_str().ok_or_else(|| ApiError::invalid("spec.boundObjectRef.name: Required value"))?;
            let pods = resources::by_plural("", "pods").expect("registered");
            let pod = st.store.get(pods, Some(ns), pod_name, Consistency::Linearizable).await?;
            if let Some(node) = node {
                let account = pod["spec"]["serviceAccountName"].as_str().filter(|s| !s.is_empty()).unwrap_or("default");
                if pod["spec"]["nodeName"].as_str() != Some(node) || account != name {
                    return Err(ApiError::forbidden(format!("node {node:?} may only request tokens for its own pods' ServiceAccounts")));
                }
            }
            if let Some(want) = r["uid"].as_str().filter(|u| !u.is_empty()) {
                if want != uid(&pod) {
                    return Err(ApiError::conflict(format!("pod {pod_name:?} has another uid than the bound object reference")));
                }
            }
            Some(Ref { name: pod_name.to_string(), uid: uid(&pod) })
        }
        Some(r) => return Err(ApiError::invalid(format!("spec.boundObjectRef.kind: Unsupported value: {}: supported values: \"Pod\"", r["kind"]))),
    };
    let key = st.tokens.key().ok_or_else(|| ApiError::unavailable("the service-account key is not loaded yet"))?;
    let now = chrono::Utc::now().timestamp();
    let claims = KubernetesClaims { namespace: ns.to_string(), serviceaccount: Ref { name: name.to_string(), uid: uid(&sa) }, pod };
    let token = tokens::issue(key, claims, audiences.clone(), now, ttl).map_err(|e| ApiError::internal(e.to_string()))?;
    let expires = chrono::DateTime::from_timestamp(now + ttl, 0).unwrap_or_default().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1", "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
        "spec": {"audiences": audiences, "expirationSeconds": ttl, "boundObjectRef": spec.get("boundObjectRef")},
        "status": {"token": token, "expirationTimestamp": expires}}))
}

/// `POST /apis/authentication.k8s.io/v1/tokenreviews`.
pub async fn token_review(State(st): State<AppState>, Json(body): Json<Value>) -> Response {
    let spec = &body["spec"];
    let Some(token) = spec["token"].as_str() else { return ApiError::invalid("spec.token: Required value").into_response() };
    let audience = spec["audiences"].as_array().and_then(|a| a.first()).and_then(Value::as_str).unwrap_or(tokens::AUDIENCE);
    let status = match st.tokens.review(token, audience) {
        Ok(claims) => {
            let user = claims.user();
            json!({"authenticated": true, "audiences": [audience],
                "user": {"username": user.name, "uid": claims.kubernetes.serviceaccount.uid, "groups": user.groups}})
        }
        Err(e) => json!({"authenticated": false, "error": e}),
    };
    let review = json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
        "spec": {"audiences": spec.get("audiences")}, "status": status});
    (StatusCode::CREATED, Json(review)).into_response()
}
