//! The review APIs that tell a caller what the server thinks of it: SelfSubjectReview
//! (`kubectl auth whoami`), SelfSubjectAccessReview and SelfSubjectRulesReview (`kubectl
//! auth can-i [--list]`), and SubjectAccessReview (asked by workers, and by admins for
//! others). Served by heads; workers forward them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::protobuf;
use super::status::ApiError;
use super::AppState;
use crate::auth::authorizer::{attributes_of, Verdict, MASTERS};
use crate::auth::rbac::Rule;
use crate::auth::{node, User};

fn created(kind: &str, group: &str, spec: Value, status: Value) -> Response {
    let review = json!({"kind": kind, "apiVersion": format!("{group}/v1"), "metadata": {"creationTimestamp": null},
        "spec": spec, "status": status});
    (StatusCode::CREATED, Json(review)).into_response()
}

/// `kubectl auth whoami`: the caller as this server authenticated it.
pub async fn self_subject(Extension(user): Extension<User>) -> Response {
    let review = json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": {"creationTimestamp": null},
        "status": {"userInfo": {"username": user.name, "groups": user.groups}}});
    (StatusCode::CREATED, Json(review)).into_response()
}

/// A review's `spec`, from a JSON or a Kubernetes protobuf body (kubectl sends the latter).
pub fn spec_of(headers: &HeaderMap, body: &Bytes, kind: &str) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    if ct.starts_with(protobuf::CONTENT_TYPE) {
        let (_, sent, raw) = protobuf::unwrap(body)?;
        if sent != kind {
            return Err(ApiError::bad_request(format!("the body is a {sent}, not a {kind}")));
        }
        return protobuf::review_spec(kind, &raw);
    }
    if !ct.starts_with("application/json") {
        return Err(ApiError::new(415, "UnsupportedMediaType", format!("{ct} is not supported; send JSON")));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("malformed JSON: {e}")))?;
    Ok(v["spec"].clone())
}

/// `kubectl auth can-i VERB RESOURCE`: may the caller do this?
pub async fn self_subject_access(State(st): State<AppState>, Extension(user): Extension<User>, headers: HeaderMap, body: Bytes) -> Response {
    match spec_of(&headers, &body, "SelfSubjectAccessReview") {
        Ok(spec) => access(&st, &user, spec, "SelfSubjectAccessReview"),
        Err(e) => e.into_response(),
    }
}

/// May `spec.user` with `spec.groups` do this? (Authorized as `create subjectaccessreviews`.)
pub async fn subject_access(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let spec = match spec_of(&headers, &body, "SubjectAccessReview") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let Some(name) = spec["user"].as_str().filter(|u| !u.is_empty()) else {
        return ApiError::invalid("spec.user: Required value").into_response();
    };
    let groups = spec["groups"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(String::from)).collect();
    access(&st, &User { name: name.to_string(), groups }, spec, "SubjectAccessReview")
}

fn access(st: &AppState, user: &User, spec: Value, kind: &str) -> Response {
    let attrs = match attributes_of(&spec) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let status = match st.authz.judge(user, &attrs) {
        Ok(Verdict::Allowed) => json!({"allowed": true}),
        Ok(Verdict::Denied(why)) => json!({"allowed": false, "reason": why.unwrap_or_default()}),
        Err(e) => return e.into_response(),
    };
    created(kind, "authorization.k8s.io", spec, status)
}

/// `kubectl auth can-i --list`: every rule the caller holds in `spec.namespace`.
pub async fn self_subject_rules(State(st): State<AppState>, Extension(user): Extension<User>, headers: HeaderMap, body: Bytes) -> Response {
    let spec = match spec_of(&headers, &body, "SelfSubjectRulesReview") {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let ns = spec["namespace"].as_str().unwrap_or_default();
    let Some(policy) = st.authz.policy() else { return ApiError::unavailable("the authorization policy is still loading").into_response() };
    let mut rules = policy.rules_for(&user, ns);
    if user.in_group(MASTERS) {
        rules.insert(0, Rule { verbs: vec!["*".into()], api_groups: vec!["*".into()], resources: vec!["*".into()], ..Default::default() });
        rules.insert(1, Rule { verbs: vec!["*".into()], non_resource_urls: vec!["*".into()], ..Default::default() });
    }
    let resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !r.resources.is_empty())
        .map(|r| json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources, "resourceNames": r.resource_names}))
        .collect();
    let non_resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| !r.non_resource_urls.is_empty())
        .map(|r| json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}))
        .collect();
    // What the Node authorizer allows a node depends on its pods: not listable as rules.
    let incomplete = node::node_name(&user).is_some();
    created("SelfSubjectRulesReview", "authorization.k8s.io", spec, json!({
        "resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": incomplete}))
}
