//! `GET /api/v1/namespaces/{ns}/pods/{name}/portforward?ports=P,...` on every node: the
//! WebSocket port-forward protocol (`crate::portforward`). The node that runs the pod
//! connects to each port on 127.0.0.1 inside the pod's network namespace (as the kubelet
//! does, so a server bound to localhost is reachable) and streams the bytes; any other
//! node relays the WebSocket to it.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::node_api::NodeApi;
use crate::api::status::ApiError;
use crate::kubelet::netns;
use crate::kubelet::network::SandboxPaths;
use crate::portforward::{self as pf, data_channel, error_channel};

pub async fn handle(api: NodeApi, ns: String, name: String, query: String, ws: WebSocketUpgrade) -> Response {
    match prepare(api, &ns, &name, &query, ws).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn prepare(api: NodeApi, ns: &str, name: &str, query: &str, ws: WebSocketUpgrade) -> Result<Response, ApiError> {
    let ports = pf::parse_ports(query).map_err(ApiError::bad_request)?;
    let pod = api.pod(ns, name).await?;
    let node = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| ApiError::bad_request(format!("pod {name} is not scheduled to a node yet")))?;
    if pod["status"]["phase"] != "Running" {
        return Err(ApiError::bad_request(format!("unable to forward ports: pod {name} is not running (phase {})", pod["status"]["phase"])));
    }
    if node != api.name {
        let addr = api.address_of(node).await?;
        let url = format!("wss://{addr}/api/v1/namespaces/{ns}/pods/{name}/portforward?{query}");
        let upstream = super::relay::connect(&api.relay_client(), &url, &pf::PROTOCOLS).await.map_err(|e| ApiError::unavailable(format!("node {node:?}: {e}")))?;
        return Ok(ws.protocols(pf::PROTOCOLS).on_upgrade(move |socket| super::relay::relay(socket, upstream)));
    }
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let netns = SandboxPaths::new(&api.run_dir, uid).netns;
    if !netns::is_pinned(&netns) {
        return Err(ApiError::bad_request(format!("unable to forward ports: pod {name} has no network namespace on node {node}")));
    }
    let label = format!("{ns}/{name}");
    Ok(ws.protocols(pf::PROTOCOLS).on_upgrade(move |socket| session(socket, netns, ports, label)))
}

/// A TCP connection to `127.0.0.1:port` in the network namespace pinned at `netns` (the
/// socket stays in the namespace it was made in; the thread that entered it ends).
async fn connect_in(netns: PathBuf, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::task::spawn_blocking(move || {
        netns::in_netns(&netns, move || {
            let s = std::net::TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(5))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
    })
    .await
    .map_err(std::io::Error::other)??;
    tokio::net::TcpStream::from_std(stream)
}

async fn session(socket: WebSocket, netns: PathBuf, ports: Vec<u16>, pod: String) {
    let (mut sink, mut stream) = socket.split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    let mut writers = Vec::with_capacity(ports.len());
    for (i, port) in ports.iter().copied().enumerate() {
        for greeting in pf::greeting(i, port) {
            if sink.send(Message::Binary(greeting.into())).await.is_err() {
                return;
            }
        }
        match connect_in(netns.clone(), port).await {
            Ok(conn) => {
                let (mut read, write) = conn.into_split();
                writers.push(Some(write));
                let tx = out_tx.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 32 * 1024];
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 || tx.send(pf::frame(data_channel(i), &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                });
            }
            Err(e) => {
                writers.push(None);
                let message = format!("error forwarding port {port} to pod {pod}: {e}");
                tracing::info!(%message, "port-forward");
                let _ = out_tx.send(pf::frame(error_channel(i), message.as_bytes())).await;
            }
        }
    }
    // Each port's reader holds a sender: the channel closes when every pod side has closed.
    drop(out_tx);
    let input = async {
        while let Some(Ok(msg)) = stream.next().await {
            let Message::Binary(b) = msg else {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
                continue;
            };
            let Some((channel, data)) = pf::parse(&b) else { continue };
            let i = usize::from(channel / 2);
            if channel % 2 != 0 || data.is_empty() {
                continue;
            }
            if let Some(Some(w)) = writers.get_mut(i) {
                if w.write_all(data).await.is_err() {
                    writers[i] = None;
                }
            }
        }
    };
    let output = async {
        while let Some(f) = out_rx.recv().await {
            if sink.send(Message::Binary(f.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
    };
    // Done when the client goes away or every connection to the pod has ended.
    tokio::select! {
        _ = input => {}
        _ = output => {}
    }
}
