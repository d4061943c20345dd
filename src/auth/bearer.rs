//! Authenticating bearer tokens (ServiceAccount tokens, `tokens.rs`). A head checks them
//! against its own replica: the signing key and whether the ServiceAccount and pod still
//! exist are local reads, no Raft round trip. A worker asks a head (TokenReview) and keeps
//! the answer briefly, then forwards the request with the identity it learnt, as it does
//! for certificates.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::answers::Answers;
use super::tokens::{self, Bindings, SigningKey, KEY_SIGNING};
use super::User;
use crate::api::resources;
use crate::api::status::ApiError;
use crate::api::store::ObjectStore;
use crate::client::ApiClient;

/// A head's token authenticator.
pub struct Local {
    store: ObjectStore,
    key: OnceLock<SigningKey>,
}

impl Local {
    pub fn new(store: ObjectStore) -> Arc<Local> {
        Arc::new(Local { store, key: OnceLock::new() })
    }

    /// The cluster's signing key (read from the replica once it is there).
    pub fn key(&self) -> Option<&SigningKey> {
        if let Some(k) = self.key.get() {
            return Some(k);
        }
        let kv = self.store.node().reader().get(KEY_SIGNING).ok()??;
        let key: SigningKey = serde_json::from_slice(&kv.value).ok()?;
        Some(self.key.get_or_init(|| key))
    }

    /// The claims of a valid token for `audience`.
    pub fn review(&self, token: &str, audience: &str) -> Result<tokens::Claims, String> {
        let key = self.key().ok_or("the service-account key is not loaded yet")?;
        tokens::verify(key, token, chrono::Utc::now().timestamp(), audience, &Replica(&self.store)).map_err(|e| e.to_string())
    }

    pub fn authenticate(&self, token: &str) -> Result<User, ApiError> {
        self.review(token, tokens::AUDIENCE).map(|c| c.user()).map_err(|e| {
            tracing::debug!(error = %e, "a bearer token was refused");
            super::unauthorized()
        })
    }
}

/// ServiceAccounts and pods as this head's replica has them.
struct Replica<'a>(&'a ObjectStore);

impl Replica<'_> {
    fn uid(&self, plural: &str, ns: &str, name: &str) -> Option<String> {
        let obj = self.0.local_object(resources::by_plural("", plural)?, Some(ns), name)?;
        obj["metadata"]["uid"].as_str().map(String::from)
    }
}

impl Bindings for Replica<'_> {
    fn service_account_uid(&self, ns: &str, name: &str) -> Option<String> {
        self.uid("serviceaccounts", ns, name)
    }
    fn pod_uid(&self, ns: &str, name: &str) -> Option<String> {
        self.uid("pods", ns, name)
    }
}

/// A worker's token authenticator: a head reviews, the answer is kept `TTL`.
#[derive(Clone)]
pub struct Remote {
    client: ApiClient,
    api_base: String,
    answers: Answers<String, Option<User>>,
}

const TTL: Duration = Duration::from_secs(10);

impl Remote {
    pub fn new(client: ApiClient, api_base: &str) -> Remote {
        Remote { client, api_base: api_base.to_string(), answers: Answers::new(TTL) }
    }

    pub async fn authenticate(&self, token: &str) -> Result<User, ApiError> {
        if let Some(answer) = self.answers.get(&token.to_string()) {
            return answer.ok_or_else(super::unauthorized);
        }
        let url = format!("{}/apis/authentication.k8s.io/v1/tokenreviews", self.api_base);
        let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
        let answer = self.client.json(Method::POST, &url, Some(&review)).await.map_err(|e| ApiError::unavailable(format!("asking a head to review a token: {e}")))?;
        let status = &answer["status"];
        let user = (status["authenticated"] == true).then(|| User {
            name: status["user"]["username"].as_str().unwrap_or_default().to_string(),
            groups: status["user"]["groups"].as_array().into_iter().flatten().filter_map(|g| g.as_str().map(String::from)).collect(),
        });
        self.answers.keep(token.to_string(), user.clone());
        user.ok_or_else(super::unauthorized)
    }
}

/// The token authenticator of a node.
#[derive(Clone)]
pub enum Tokens {
    Local(Arc<Local>),
    Remote(Remote),
}

impl Tokens {
    pub async fn authenticate(&self, token: &str) -> Result<User, ApiError> {
        match self {
            Tokens::Local(l) => l.authenticate(token),
            Tokens::Remote(r) => r.authenticate(token).await,
        }
    }
}
