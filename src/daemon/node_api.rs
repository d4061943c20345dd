//! Node-local API endpoints, served by every node under `/orch/v1/nodes/{node}/...`: a
//! request for another node is forwarded to that node's API address (from its Node
//! object), so a client can reach any node through whichever node it talks to.
//! So far: loading an OCI image archive into the node's containerd.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use hyper::Method;
use serde_json::json;

use crate::api::status::ApiError;
use crate::api::API_ADDR_ANNOTATION;
use crate::client::ApiClient;
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
    pub client: ApiClient,
}

pub fn router(api: NodeApi) -> Router {
    Router::new().route("/orch/v1/nodes/{node}/images", post(load_image)).with_state(api)
}

impl NodeApi {
    pub fn new(name: &str, api_base: &str, containerd_socket: PathBuf) -> Self {
        NodeApi { name: name.into(), api_base: api_base.into(), containerd_socket, client: ApiClient::new(Duration::from_secs(600)) }
    }

    /// The API address of node `node` (from its Node object's annotation).
    async fn address_of(&self, node: &str) -> Result<String, ApiError> {
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
        match self.client.send(parts.method.clone(), &format!("http://{addr}{path}"), ct, bytes).await {
            Ok(resp) => {
                let (parts, body) = resp.into_parts();
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => ApiError::unavailable(format!("node {node:?} at {addr}: {e}")).into_response(),
        }
    }
}

async fn load_image(State(api): State<NodeApi>, Path(node): Path<String>, req: Request) -> Response {
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
