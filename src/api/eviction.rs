//! The `pods/eviction` subresource (policy/v1 `Eviction`), which `kubectl drain` posts:
//! the pod is deleted unless its PodDisruptionBudget forbids it (429), and an allowed
//! disruption is spent in the budget's own compare-and-set write first (`disruption.rs`
//! decides), so evictions racing for a budget's last disruption cannot both pass.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::disruption::{self, Verdict};
use super::handlers::json_response;
use super::resources::{self, Resource};
use super::status::ApiError;
use super::store::{parse_rv, Consistency, Filter, ObjectStore};

fn pods() -> &'static Resource {
    resources::by_plural("", "pods").expect("registered")
}

fn budgets() -> &'static Resource {
    resources::by_plural("policy", "poddisruptionbudgets").expect("registered")
}

/// Evict pod `name` of `ns` as `body` (an Eviction) asks.
pub async fn evict(store: &ObjectStore, ns: &str, name: &str, body: &Value) -> Result<Response, ApiError> {
    if let Some(kind) = body.get("kind").and_then(Value::as_str).filter(|k| *k != "Eviction") {
        return Err(ApiError::bad_request(format!("the body is a {kind}, not an Eviction")));
    }
    if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str).filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!("the Eviction names {n:?}, not the pod {name:?} of the path")));
    }
    let opts = body.get("deleteOptions").cloned().unwrap_or(Value::Null);
    if opts.get("dryRun").is_some_and(|d| d.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::bad_request("dryRun is not supported by this server yet; nothing was evicted"));
    }
    let grace = opts.get("gracePeriodSeconds").and_then(Value::as_i64);
    for _attempt in 0..5 {
        let pod = store.get(pods(), Some(ns), name, Consistency::Linearizable).await?;
        let finished = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if finished || pod["metadata"]["deletionTimestamp"].is_string() {
            return delete(store, ns, name, grace).await;
        }
        let (all, _) = store.list(budgets(), Some(ns), &Filter::default(), Consistency::Linearizable).await?;
        let covering: Vec<&Value> = all.iter().filter(|b| disruption::covers(b, &pod)).collect();
        let pdb = match covering.as_slice() {
            [] => return delete(store, ns, name, grace).await,
            [one] => *one,
            _ => return Err(ApiError::internal("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.")),
        };
        match disruption::judge(pdb, &pod, chrono::Utc::now()) {
            Verdict::Refuse(why) => return Err(ApiError::new(429, "TooManyRequests", why)),
            Verdict::Free => return delete(store, ns, name, grace).await,
            Verdict::Charge(status) => {
                let budget = pdb["metadata"]["name"].as_str().unwrap_or_default();
                let rv = pdb["metadata"]["resourceVersion"].as_str().map(parse_rv).transpose()?;
                let mut next = pdb.clone();
                next["status"] = status;
                match store.update(budgets(), Some(ns), budget, next, rv, true).await {
                    Ok(_) => return delete(store, ns, name, grace).await,
                    // Another eviction (or the controller) wrote the budget: judge again.
                    Err(e) if e.code == 409 => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ApiError::new(429, "TooManyRequests", "the pod's disruption budget kept changing; try again"))
}

async fn delete(store: &ObjectStore, ns: &str, name: &str, grace: Option<i64>) -> Result<Response, ApiError> {
    store.delete_gracefully(pods(), Some(ns), name, None, grace).await?;
    Ok(json_response(StatusCode::CREATED, &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})))
}
