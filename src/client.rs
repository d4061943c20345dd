//! A minimal HTTP/1 client for the orch API (plain HTTP), used by orchctl, by joining
//! nodes, by node heartbeats and by the worker's API proxy.

use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

#[derive(Clone)]
pub struct ApiClient {
    http: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl Default for ApiClient {
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

/// A non-2xx answer, carrying the server's `Status` message when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HttpError {
    pub code: u16,
    pub reason: String,
    pub message: String,
}

impl ApiClient {
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(2)));
        connector.set_nodelay(true);
        ApiClient { http: Client::builder(TokioExecutor::new()).build(connector), timeout }
    }

    /// Send a request and return the raw streaming response (no timeout: for watches and proxying).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> anyhow::Result<hyper::Response<Incoming>> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(ct) = content_type {
            req = req.header(hyper::header::CONTENT_TYPE, ct);
        }
        let req = req.body(Full::new(body)).context("building request")?;
        self.http.request(req).await.map_err(|e| anyhow!("{url}: {e}"))
    }

    /// Send a request and read the whole body, with the client timeout.
    pub async fn call(&self, method: Method, url: &str, content_type: Option<&str>, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        let fut = async {
            let resp = self.send(method, url, content_type, body).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map_err(|e| anyhow!("{url}: {e}"))?.to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, fut).await.map_err(|_| anyhow!("{url}: timed out after {:?}", self.timeout))?
    }

    /// Call and decode a JSON answer; a non-2xx answer becomes an `HttpError`.
    pub async fn json(&self, method: Method, url: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.json_as(method, url, body, "application/json").await
    }

    pub async fn json_as(&self, method: Method, url: &str, body: Option<&Value>, content_type: &str) -> anyhow::Result<Value> {
        let payload = body.map(|b| Bytes::from(serde_json::to_vec(b).expect("a Value always serializes"))).unwrap_or_default();
        let (status, bytes) = self.call(method, url, body.map(|_| content_type), payload).await?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        if status.is_success() {
            return Ok(value);
        }
        Err(HttpError {
            code: status.as_u16(),
            reason: value["reason"].as_str().unwrap_or_default().to_string(),
            message: value["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}: {value}")),
        }
        .into())
    }

    /// GET a text resource.
    pub async fn text(&self, url: &str) -> anyhow::Result<String> {
        let (status, bytes) = self.call(Method::GET, url, None, Bytes::new()).await?;
        if !status.is_success() {
            anyhow::bail!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
        }
        Ok(String::from_utf8(bytes.to_vec())?)
    }
}

/// Accept `host:port` or a full `http://host:port` URL; return the URL base.
pub fn base_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("http://{s}")
    }
}
