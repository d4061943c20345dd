//! Rotating the key that seals Secrets (`orchctl cluster rotate-encryption-key`): a new key
//! is installed on every head beside the old one, then made the primary everywhere, every
//! Secret is rewritten (sealed with it), and the old key is removed from every head. Each
//! step needs every head: a head that cannot be reached stops the rotation before the step,
//! with the cluster still reading every Secret (a head holding both keys opens both).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::status::ApiError;
use super::store::{Consistency, Filter};
use super::{resources, AppState};
use crate::auth::encryption::Keyring;

/// One rotation at a time on this head.
static ROTATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn rotate(State(st): State<AppState>) -> Response {
    let _one = ROTATING.lock().await;
    match run(&st).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn run(st: &AppState) -> Result<Value, ApiError> {
    let old = st.store.codec().keyring();
    let id = format!("key-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    let fresh = Keyring::generate(&id);
    let mut both = old.clone();
    both.keys.insert(id.clone(), fresh.keys[&id].clone());
    install_everywhere(st, &both, "add the new key").await?;
    both.primary = id.clone();
    install_everywhere(st, &both, "make the new key the primary").await?;
    let rewritten = rewrite_secrets(st).await?;
    install_everywhere(st, &fresh, "retire the old keys").await?;
    let retired: Vec<&String> = old.keys.keys().collect();
    tracing::info!(primary = %id, rewritten, ?retired, "the key that seals Secrets was rotated");
    Ok(json!({"primary": id, "rewritten": rewritten, "retired": retired}))
}

async fn install_everywhere(st: &AppState, ring: &Keyring, step: &str) -> Result<(), ApiError> {
    let node = st.store.node();
    let status = node.status();
    let bytes = serde_json::to_vec(ring).map_err(|e| ApiError::internal(e.to_string()))?;
    for member in status.voters.values().chain(status.learners.values()) {
        node.install_head_secrets(member, &bytes)
            .await
            .map_err(|e| ApiError::unavailable(format!("every head must be reachable to {step}; stopped before it: {e}")))?;
    }
    Ok(())
}

/// Write every Secret back as it is: the write seals it with the primary key.
async fn rewrite_secrets(st: &AppState) -> Result<usize, ApiError> {
    let secrets = resources::by_plural("", "secrets").expect("registered");
    let (items, _) = st.store.list(secrets, None, &Filter::default(), Consistency::Linearizable).await?;
    let mut n = 0;
    for s in items {
        let (ns, name) = (s["metadata"]["namespace"].as_str().unwrap_or_default(), s["metadata"]["name"].as_str().unwrap_or_default());
        // Without a resourceVersion the update applies to whatever is current.
        let mut body = s.clone();
        body["metadata"].as_object_mut().map(|m| m.remove("resourceVersion"));
        match st.store.update(secrets, Some(ns), name, body, None, false).await {
            Ok(_) => n += 1,
            Err(e) if e.code == 404 => {} // deleted meanwhile
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
