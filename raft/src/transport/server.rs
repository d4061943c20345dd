//! The server side of node-to-node gRPC: decodes requests and hands them to openraft or
//! to `RaftNode`. Every service but Join requires a verified client certificate.

use std::net::SocketAddr;

use tokio::sync::watch;
use tonic::transport::{Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

use super::pb::{self, Blob, Empty, IssueReply, IssueRequest};
use crate::node::{AddHead, RaftNode, KEY_CA, KEY_JOIN_SECRET, KEY_WORKER_JOIN_SECRET};
use crate::tls::ClusterCa;
use crate::types::{codec, Command};

/// Bind `listen` and serve until `shutdown` turns true. Returns once the port is bound.
pub async fn spawn(
    node: RaftNode,
    listen: SocketAddr,
    tls: ServerTlsConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // tonic's `tcp_nodelay` applies only to listeners it binds itself: set it on each
    // accepted connection, or Nagle and delayed ACKs stall some Raft round trips by ~40 ms.
    use tokio_stream::StreamExt;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|tcp| {
            let _ = tcp.set_nodelay(true);
        })
    });
    let router = Server::builder()
        .tls_config(tls)?
        .add_service(pb::raft_server::RaftServer::new(Handler(node.clone())).max_decoding_message_size(256 << 20))
        .add_service(pb::cluster_server::ClusterServer::new(Handler(node.clone())))
        .add_service(pb::join_server::JoinServer::new(Handler(node)));
    tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        if let Err(e) = router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!(error = %e, "gRPC server stopped");
        }
    });
    Ok(())
}

struct Handler(RaftNode);

/// The TLS layer verified any certificate the client sent against the cluster CA; here
/// we insist that one was sent, and that it is a head's: a worker's certificate may not
/// vote, replicate, propose or add members.
fn require_peer_cert<T>(req: &Request<T>) -> Result<(), Status> {
    match req.peer_certs() {
        Some(certs) if certs.first().is_some_and(|c| crate::tls::is_head_certificate(c)) => Ok(()),
        Some(certs) if !certs.is_empty() => Err(Status::permission_denied("only heads may use the Raft and cluster services")),
        _ => Err(Status::unauthenticated("a cluster client certificate is required")),
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: Request<Blob>) -> Result<T, Status> {
    require_peer_cert(&req)?;
    codec::decode(&req.into_inner().data).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<Blob>, Status> {
    Ok(Response::new(Blob { data: codec::encode(value) }))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for Handler {
    async fn append_entries(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        reply(&self.0.raft().append_entries(decode(req)?).await)
    }

    async fn vote(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        reply(&self.0.raft().vote(decode(req)?).await)
    }

    async fn install_snapshot(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        reply(&self.0.raft().install_snapshot(decode(req)?).await)
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Handler {
    async fn propose(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let cmd: Command = decode(req)?;
        reply(&self.0.propose_local(cmd).await)
    }

    async fn read_index(&self, req: Request<Empty>) -> Result<Response<Blob>, Status> {
        require_peer_cert(&req)?;
        reply(&self.0.read_index_local().await)
    }

    async fn add_head(&self, req: Request<Blob>) -> Result<Response<Blob>, Status> {
        let add: AddHead = decode(req)?;
        reply(&self.0.add_head(add).await)
    }

    async fn status(&self, req: Request<Empty>) -> Result<Response<Blob>, Status> {
        require_peer_cert(&req)?;
        reply(&self.0.status())
    }

    async fn install_head_secrets(&self, req: Request<Blob>) -> Result<Response<Empty>, Status> {
        require_peer_cert(&req)?;
        self.0.accept_head_secrets(&req.into_inner().data).map_err(Status::invalid_argument)?;
        tracing::info!("new head secrets installed");
        Ok(Response::new(Empty {}))
    }
}

#[tonic::async_trait]
impl pb::join_server::Join for Handler {
    async fn issue(&self, req: Request<IssueRequest>) -> Result<Response<IssueReply>, Status> {
        let req = req.into_inner();
        let reader = self.0.reader();
        let stored = |key: &str| {
            reader
                .get(key)
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| Status::unavailable("this head has not received the cluster credentials yet"))
        };
        // The head token joins heads and workers; the worker token joins workers only.
        let head_secret = stored(KEY_JOIN_SECRET)?.value;
        let head = req.role == "head";
        let by_head_secret = constant_time_eq(&head_secret, req.secret.as_bytes());
        let by_worker_secret = !head && stored(KEY_WORKER_JOIN_SECRET).is_ok_and(|s| constant_time_eq(&s.value, req.secret.as_bytes()));
        if !by_head_secret && !by_worker_secret {
            tracing::warn!(node = %req.node_name, role = %req.role, "join refused: wrong secret");
            let why = if head { "the join secret is not this cluster's head token (a worker token cannot join a head)" } else { "the join secret is not valid for this cluster" };
            return Err(Status::permission_denied(why));
        }
        let ca: ClusterCa =
            serde_json::from_slice(&stored(KEY_CA)?.value).map_err(|e| Status::internal(e.to_string()))?;
        let cert_pem = ca.sign(&req.csr_pem, &req.node_name, head).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let head_secrets = if req.role == "head" { self.0.head_secrets().map_err(|e| Status::internal(format!("reading the head secrets: {e}")))? } else { Vec::new() };
        tracing::info!(node = %req.node_name, role = %req.role, "issued a node certificate");
        Ok(Response::new(IssueReply { cert_pem, ca_pem: ca.cert_pem, head_secrets }))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
