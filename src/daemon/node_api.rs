//! Node-local API endpoints, served by every node under `/orch/v1/nodes/{node}/...`: a
//! request for another node is forwarded to that node's API address (from its Node
//! object), so a client can reach any node through whichever node it talks to.
//! Loading an OCI image archive into the node's containerd, and pod logs, exec and
//! port-forward (the Kubernetes paths, so `kubectl logs` and `kubectl exec` work too).

use std::path::PathBuf;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use std::collections::HashMap;

use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper::Method;
use serde_json::{json, Value};

use crate::api::status::ApiError;
use crate::api::API_ADDR_ANNOTATION;
use crate::auth::attributes::Attributes;
use crate::auth::authorizer::Authorize;
use crate::auth::{Relay, User};
use hyper::header::{HeaderName, HeaderValue};
use super::logs;
use crate::client::{ApiClient, HttpError};
use crate::kubelet::containerd::ContainerdRuntime;
use crate::kubelet::runtime::ContainerRuntime;

/// Largest image archive accepted in one request.
pub const MAX_IMAGE_BYTES: usize = 2 << 30;

#[derive(Clone)]
pub struct NodeApi {
    pub name: String,
    /// This node's own API, to look other nodes up.
    pub api_base: String,
    pub containerd_socket: PathBuf,
    /// The kubelet's data dir (pod directories with their logs).
    pub kubelet_dir: PathBuf,
    /// Where the kubelet pins pods' namespaces (port-forward enters them).
    pub run_dir: PathBuf,
    /// This node's own credentials (looking pods and nodes up).
    pub client: ApiClient,
    /// The caller, and its identity as passed on when a request is relayed to another node.
    pub user: Option<User>,
    pub caller: Vec<(HeaderName, HeaderValue)>,
    /// Decides whether the caller may do what it asks of this node.
    pub authz: Authorize,
    /// This node's proxy role, if it runs one.
    pub proxy: Option<crate::services::proxy::SharedStatus>,
}

pub fn router(api: NodeApi) -> Router {
    Router::new()
        .route("/orch/v1/nodes/{node}/images", post(load_image))
        .route("/api/v1/namespaces/{ns}/pods/{name}/log", get(pod_log))
        .route("/api/v1/namespaces/{ns}/pods/{name}/exec", get(pod_exec).post(pod_exec))
        .route("/api/v1/namespaces/{ns}/pods/{name}/portforward", get(pod_portforward).post(pod_portforward))
        .route("/orch/v1/proxy", get(proxy_status))
        .with_state(api)
}

/// This node's proxy: mode, last sync, and the revisions of Services and Endpoints its
/// rules reflect (what the service benchmark waits for).
async fn proxy_status(State(api): State<NodeApi>, ext: axum::http::Extensions) -> Result<axum::Json<Value>, ApiError> {
    let api = api.acting_for(&ext);
    api.authorize(Attributes::path("get", "/orch/v1/proxy")).await?;
    let Some(p) = &api.proxy else { return Err(ApiError::not_found(format!("node {} runs no proxy", api.name))) };
    let p = p.lock().expect("proxy status lock").clone();
    Ok(axum::Json(serde_json::json!({
        "mode": p.mode, "lastSync": p.last_sync, "virtualServices": p.virtual_services, "lastError": p.last_error,
        "servicesRevision": p.services_revision, "endpointsRevision": p.endpoints_revision, "lastStepMicros": p.last_step_micros,
    })))
}

impl NodeApi {
    pub fn new(name: &str, api_base: &str, client: &ApiClient, authz: Authorize, dirs: (PathBuf, PathBuf, PathBuf)) -> Self {
        let client = client.with_timeout(Duration::from_secs(600));
        let (containerd_socket, kubelet_dir, run_dir) = dirs;
        NodeApi { name: name.into(), api_base: api_base.into(), containerd_socket, kubelet_dir, run_dir, client, user: None, caller: Vec::new(), authz, proxy: None }
    }

    /// This node API serving a request of `user` (whose identity goes with any relay).
    pub fn acting_for(self, ext: &axum::http::Extensions) -> Self {
        let caller = Relay::from_extensions(ext).0;
        NodeApi { caller, user: ext.get::<User>().cloned(), ..self }
    }

    /// May the caller do `a`? (Every request here passed authentication, so it has a user.)
    pub async fn authorize(&self, a: Attributes) -> Result<(), ApiError> {
        let user = self.user.clone().unwrap_or_else(User::anonymous);
        self.authz.decide(&user, &a).await
    }

    /// A client that relays as the caller: the node's certificate, the caller's identity.
    pub fn relay_client(&self) -> ApiClient {
        self.client.with_headers(self.caller.clone())
    }

    /// A pod as this node's API serves it (errors keep their status code).
    pub async fn pod(&self, ns: &str, name: &str) -> Result<Value, ApiError> {
        let url = format!("{}/api/v1/namespaces/{ns}/pods/{name}", self.api_base);
        self.client.json(Method::GET, &url, None).await.map_err(|e| match e.downcast_ref::<HttpError>() {
            Some(h) if h.code == 404 => ApiError::not_found(format!("pods {name:?} in namespace {ns:?}")),
            _ => ApiError::unavailable(e.to_string()),
        })
    }

    /// The API address of node `node` (from its Node object's annotation).
    pub async fn address_of(&self, node: &str) -> Result<String, ApiError> {
        let obj = self
            .client
            .json(Method::GET, &format!("{}/api/v1/nodes/{node}", self.api_base), None)
            .await
            .map_err(|e| ApiError::not_found(format!("node {node:?}: {e}")))?;
        obj["metadata"]["annotations"][API_ADDR_ANNOTATION]
            .as_str()
            .map(String::from)
            .ok_or_else(|| ApiError::unavailable(format!("node {node:?} has not published its API address")))
    }

    /// Send the request on to the node it is for; the answer comes back as it is.
    async fn forward(&self, node: &str, req: Request) -> Response {
        let addr = match self.address_of(node).await {
            Ok(a) => a,
            Err(e) => return e.into_response(),
        };
        let (parts, body) = req.into_parts();
        let bytes = match to_bytes(body, MAX_IMAGE_BYTES).await {
            Ok(b) => b,
            Err(e) => return ApiError::bad_request(format!("reading the request: {e}")).into_response(),
        };
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let ct = parts.headers.get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        match self.relay_client().send(parts.method.clone(), &format!("https://{addr}{path}"), ct, bytes).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => ApiError::unavailable(format!("node {node:?} at {addr}: {e}")).into_response(),
        }
    }
}

/// Which container of `pod` a request means: the named one, or the only one.
pub fn choose_container(pod: &Value, name: &str, wanted: Option<&String>) -> Result<String, ApiError> {
    let spec = &pod["spec"];
    let names: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    match wanted {
        Some(c) if names.contains(&c.as_str()) => Ok(c.clone()),
        Some(c) => Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}"))),
        None => match spec["containers"].as_array().map(Vec::as_slice) {
            Some([only]) => Ok(only["name"].as_str().unwrap_or_default().to_string()),
            _ => Err(ApiError::bad_request(format!("a container name must be specified for pod {name}, choose one of: {names:?}"))),
        },
    }
}

type Upgrade = Result<axum::extract::ws::WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>;

/// The node API for this caller, once it may open `subresource` of the pod, and the
/// upgrade. Authorized before the upgrade is looked at: a denied caller hears 403 whatever
/// protocol it tried (kubectl falls back from WebSocket to SPDY and reports the last).
async fn stream_for(
    api: NodeApi,
    ext: axum::http::Extensions,
    subresource: &str,
    ns: &str,
    name: &str,
    ws: Upgrade,
) -> Result<(NodeApi, axum::extract::ws::WebSocketUpgrade), Response> {
    let api = api.acting_for(&ext);
    api.authorize(Attributes::resource("create", "", "pods", subresource, ns, name)).await.map_err(IntoResponse::into_response)?;
    let ws = ws.map_err(IntoResponse::into_response)?;
    Ok((api, ws))
}

async fn pod_exec(
    State(api): State<NodeApi>,
    ext: axum::http::Extensions,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Response {
    match stream_for(api, ext, "exec", &ns, &name, ws).await {
        Ok((api, ws)) => super::exec::handle(api, ns, name, query.unwrap_or_default(), ws).await,
        Err(r) => r,
    }
}

async fn pod_portforward(
    State(api): State<NodeApi>,
    ext: axum::http::Extensions,
    Path((ns, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    ws: Upgrade,
) -> Response {
    match stream_for(api, ext, "portforward", &ns, &name, ws).await {
        Ok((api, ws)) => super::portforward::handle(api, ns, name, query.unwrap_or_default(), ws).await,
        Err(r) => r,
    }
}

async fn pod_log(
    State(api): State<NodeApi>,
    Path((ns, name)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    req: Request,
) -> Response {
    let api = api.acting_for(req.extensions());
    if let Err(e) = api.authorize(Attributes::resource("get", "", "pods", "log", &ns, &name)).await {
        return e.into_response();
    }
    let pod = match api.pod(&ns, &name).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
        return ApiError::bad_request(format!("pod {name} is not scheduled to a node yet")).into_response();
    };
    if node != api.name {
        return api.forward(node, req).await;
    }
    let container = match choose_container(&pod, &name, q.get("container")) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true" || v == "1");
    let tail_lines = match q.get("tailLines").map(|t| t.parse::<usize>()) {
        Some(Err(_)) => return ApiError::bad_request("tailLines must be a non-negative number").into_response(),
        other => other.map(Result::unwrap_or_default),
    };
    let r = logs::LogRequest {
        uid: pod["metadata"]["uid"].as_str().unwrap_or_default().to_string(),
        pod: name,
        container,
        previous: flag("previous"),
        tail_lines,
        follow: flag("follow"),
    };
    match logs::stream(api.kubelet_dir.clone(), api.containerd_socket.clone(), r) {
        Ok(rx) => {
            let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
            ([(hyper::header::CONTENT_TYPE, "text/plain")], body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn load_image(State(api): State<NodeApi>, Path(node): Path<String>, req: Request) -> Response {
    let api = api.acting_for(req.extensions());
    if let Err(e) = api.authorize(Attributes::path("post", &format!("/orch/v1/nodes/{node}/images"))).await {
        return e.into_response();
    }
    if node != api.name {
        return api.forward(&node, req).await;
    }
    let archive = match to_bytes(req.into_body(), MAX_IMAGE_BYTES).await {
        Ok(b) => b,
        Err(e) => return ApiError::new(413, "RequestEntityTooLarge", format!("image archive: {e}")).into_response(),
    };
    let runtime = match ContainerdRuntime::connect(&api.containerd_socket).await {
        Ok(r) => r,
        Err(e) => return ApiError::unavailable(e.to_string()).into_response(),
    };
    match runtime.import_image(&archive).await {
        Ok(images) => {
            tracing::info!(?images, "images loaded");
            (StatusCode::OK, axum::Json(json!({"node": api.name, "images": images}))).into_response()
        }
        Err(e @ crate::kubelet::runtime::RuntimeError::BadArchive(_)) => ApiError::bad_request(e.to_string()).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}
