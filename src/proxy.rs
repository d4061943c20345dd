//! The API of a worker: every request is forwarded to a head (writes reach the leader
//! from there; reads are linearizable there) with the caller's identity, over the
//! worker's own certificate, failing over between heads. The head list
//! is refreshed from the cluster status.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::Method;

use crate::api::status::ApiError;
use crate::auth;
use crate::client::{base_url, ApiClient};

#[derive(Clone)]
pub struct Proxy {
    heads: Arc<RwLock<Vec<String>>>,
    client: ApiClient,
}

impl Proxy {
    /// Forward to `seeds` (and the heads learnt from them) with `client`, this node's
    /// own credentials.
    pub fn new(seeds: Vec<String>, client: ApiClient) -> Self {
        Proxy { heads: Arc::new(RwLock::new(seeds)), client }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.read().expect("heads lock").clone()
    }

    /// Keep the head list current (heads join and leave).
    pub async fn refresh_forever(self) {
        loop {
            for head in self.heads() {
                let url = format!("{}/orch/v1/cluster/status", base_url(&head));
                if let Ok(status) = self.client.json(Method::GET, &url, None).await {
                    let fresh: Vec<String> = status["members"]
                        .as_array()
                        .map(|ms| ms.iter().filter_map(|m| m["apiAddress"].as_str().map(str::to_string)).collect())
                        .unwrap_or_default();
                    if !fresh.is_empty() {
                        *self.heads.write().expect("heads lock") = fresh;
                    }
                    break;
                }
            }
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }
}

pub fn router(proxy: Proxy) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route("/livez", get(|| async { "ok" })).fallback(forward).with_state(proxy)
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match crate::api::handlers::read_limited(body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let ct = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    // The head authorizes the caller, not this node: the caller's credential goes along
    // (the authentication layer put it in the extensions; anonymous included), and the
    // head verifies it again.
    let relay = auth::Relay::from_extensions(&parts.extensions);
    let mut headers = relay.0;
    // What the caller accepts decides the answer's shape (a Table for `kubectl get`).
    if let Some(accept) = parts.headers.get(hyper::header::ACCEPT) {
        headers.push((hyper::header::ACCEPT, accept.clone()));
    }
    let client = p.client.with_headers(headers);
    let mut last_error = String::from("no head is known");
    // Rotate the start so load spreads; try every head once.
    let heads = p.heads();
    let start = rand::random_range(0..heads.len().max(1));
    for i in 0..heads.len() {
        let head = &heads[(start + i) % heads.len()];
        let url = format!("{}{path}", base_url(head));
        match client.send(parts.method.clone(), &url, ct, bytes.clone()).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                return Response::from_parts(parts, Body::new(body));
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    ApiError::unavailable(format!("no head is reachable from this worker: {last_error}")).into_response()
}
