//! The HTTP/1 client for the orch API, used by orchctl, by joining nodes, by node
//! heartbeats, the kubelet and the worker's API proxy: HTTPS verified against the cluster
//! CA, authenticated by a client certificate or a bearer token (`Tls`); plain HTTP only
//! for what is not the API (probes of pods).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// A WebSocket to a node's API (exec, port-forward).
pub type WebSocket = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// How a client proves the server and itself: the CA that signed the server's
/// certificate, and the client's own certificate or bearer token.
#[derive(Clone)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
    bearer: Option<HeaderValue>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("bearer", &self.bearer.as_ref().map(|_| "<redacted>")).finish()
    }
}

impl Tls {
    /// Trust `ca_pem`; present `client` (certificate and key PEM) if given, and send
    /// `token` as a bearer token if given.
    pub fn new(ca_pem: &str, client: Option<(&str, &str)>, token: Option<&str>) -> anyhow::Result<Tls> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.context("the CA is not PEM")?).context("the CA certificate is not usable")?;
        }
        if roots.is_empty() {
            anyhow::bail!("no CA certificate given");
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>().context("the client certificate is not PEM")?;
                let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).context("the client key is not PEM")?;
                builder.with_client_auth_cert(chain, key).context("the client certificate and key do not match")?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let bearer = token.map(|t| HeaderValue::from_str(&format!("Bearer {t}"))).transpose().context("the token is not a valid header value")?;
        Ok(Tls { config: Arc::new(config), bearer })
    }

    /// A configuration made elsewhere (the join's CA fetch, which pins instead of verifying).
    pub fn from_config(mut config: rustls::ClientConfig) -> Tls {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Tls { config: Arc::new(config), bearer: None }
    }

    /// A node's own credentials: its certificate from the cluster CA.
    pub fn for_node(tls: &orch_raft::tls::NodeTls) -> anyhow::Result<Tls> {
        Tls::new(&tls.ca_pem, Some((&tls.cert_pem, &tls.key_pem)), None)
    }

    pub fn from_credentials(c: &crate::kubeconfig::Credentials) -> anyhow::Result<Tls> {
        Tls::new(&c.ca_pem, c.client.as_ref().map(|(a, b)| (a.as_str(), b.as_str())), c.token.as_deref())
    }

    /// The rustls configuration, for clients that open their own connections (WebSockets).
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    pub fn bearer(&self) -> Option<&HeaderValue> {
        self.bearer.as_ref()
    }
}

#[derive(Clone)]
pub struct ApiClient {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    tls: Option<Tls>,
    /// Headers sent with every request (a worker's forwarded identity).
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("timeout", &self.timeout).field("tls", &self.tls).finish()
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

fn connector(config: Option<Arc<rustls::ClientConfig>>) -> HttpsConnector<HttpConnector> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    http.set_nodelay(true);
    http.enforce_http(false);
    let config = config.unwrap_or_else(|| {
        // No trust at all: such a client can only speak plain HTTP.
        let empty = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        Arc::new(empty)
    });
    // hyper-rustls announces the HTTP versions it enables itself.
    let mut config = (*config).clone();
    config.alpn_protocols.clear();
    hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config).https_or_http().enable_http1().wrap_connector(http)
}

impl ApiClient {
    /// A client for plain HTTP only (what is not the API: probes of pods).
    pub fn plain(timeout: Duration) -> Self {
        ApiClient { http: Client::builder(TokioExecutor::new()).build(connector(None)), timeout, tls: None, extra: Vec::new() }
    }

    /// A client of the API with these credentials.
    pub fn new(timeout: Duration, tls: &Tls) -> Self {
        let http = Client::builder(TokioExecutor::new()).build(connector(Some(tls.config.clone())));
        ApiClient { http, timeout, tls: Some(tls.clone()), extra: Vec::new() }
    }

    /// The same client (sharing its connections) with another timeout.
    pub fn with_timeout(&self, timeout: Duration) -> Self {
        ApiClient { timeout, ..self.clone() }
    }

    /// The same client, sending `headers` with every request.
    pub fn with_headers(&self, headers: Vec<(HeaderName, HeaderValue)>) -> Self {
        ApiClient { extra: headers, ..self.clone() }
    }

    pub fn tls(&self) -> Option<&Tls> {
        self.tls.as_ref()
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
        if let Some(bearer) = self.tls.as_ref().and_then(|t| t.bearer.as_ref()) {
            req = req.header(hyper::header::AUTHORIZATION, bearer.clone());
        }
        for (k, v) in &self.extra {
            req = req.header(k, v);
        }
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

    /// Open a WebSocket at `url` (`wss://`, the API's exec and port-forward endpoints)
    /// offering `protocols`, with this client's credentials and headers.
    pub async fn websocket(&self, url: &str, protocols: &[&str]) -> Result<WebSocket, tungstenite::Error> {
        use tungstenite::client::IntoClientRequest;
        let io = |e: std::io::Error| tungstenite::Error::Io(e);
        let other = |msg: String| tungstenite::Error::Io(std::io::Error::other(msg));
        let mut request = url.into_client_request()?;
        let headers = request.headers_mut();
        headers.insert("Sec-WebSocket-Protocol", protocols.join(", ").parse().expect("protocol names are valid header values"));
        if let Some(bearer) = self.tls.as_ref().and_then(|t| t.bearer.as_ref()) {
            headers.insert(hyper::header::AUTHORIZATION, bearer.clone());
        }
        for (k, v) in &self.extra {
            headers.append(k, v.clone());
        }
        let tls = self.tls.as_ref().ok_or_else(|| other("this client has no TLS credentials".into()))?;
        let uri = request.uri();
        let host = uri.host().ok_or_else(|| other(format!("{url} names no host")))?.trim_matches(['[', ']']).to_string();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| other(format!("{url}: connecting timed out")))?
            .map_err(io)?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| other(format!("{host}: {e}")))?;
        let stream = tokio_rustls::TlsConnector::from(tls.config.clone()).connect(name, tcp).await.map_err(io)?;
        let (socket, _) = tokio_tungstenite::client_async(request, stream).await?;
        Ok(socket)
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

/// Accept `host:port` or a full `https://host:port` URL; return the URL base (the API is
/// HTTPS only).
pub fn base_url(server: &str) -> String {
    let s = server.trim_end_matches('/');
    if s.starts_with("http://") || s.starts_with("https://") {
        s.to_string()
    } else {
        format!("https://{s}")
    }
}

/// `host:port` of a URL base or address.
pub fn host_port(server: &str) -> &str {
    server.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/')
}
