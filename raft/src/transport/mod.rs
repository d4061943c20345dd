//! Node-to-node gRPC (tonic, mutual TLS): the generated protobuf code, the client side
//! (openraft's network plus cluster calls) and the server side.

pub mod client;
pub mod server;

#[allow(clippy::all)]
pub mod pb {
    tonic::include_proto!("orch.raft.v1");
}

use std::time::Duration;

use crate::tls::join_client_config;

/// Ask a head (`raft_addr`) to sign our CSR. `ca_pem` must already have been checked
/// against the join token: it is what the server is verified with.
pub async fn request_certificate(
    raft_addr: &str,
    ca_pem: &str,
    secret: &str,
    node_name: &str,
    csr_pem: &str,
    role: &str,
) -> Result<pb::IssueReply, String> {
    let channel = client::endpoint(raft_addr, join_client_config(ca_pem))
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("connecting to {raft_addr}: {e}"))?;
    let mut client = pb::join_client::JoinClient::new(channel);
    let mut req = tonic::Request::new(pb::IssueRequest {
        secret: secret.to_string(),
        node_name: node_name.to_string(),
        csr_pem: csr_pem.to_string(),
        role: role.to_string(),
    });
    req.set_timeout(Duration::from_secs(10));
    client.issue(req).await.map(|r| r.into_inner()).map_err(|s| s.message().to_string())
}
