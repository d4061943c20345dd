//! WebSockets between nodes for exec and port-forward: opening one to the node that runs
//! the pod, and passing messages both ways between it and the client's (a node that does
//! not run the pod relays the whole session).

use axum::extract::ws::{CloseFrame, Message};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

use crate::client::{ApiClient, WebSocket};

/// Open a WebSocket at `url` (a node's exec or port-forward endpoint, `wss://`) offering
/// `protocols`, with the credentials and forwarded identity of `client`.
pub async fn connect(client: &ApiClient, url: &str, protocols: &[&str]) -> Result<WebSocket, tungstenite::Error> {
    client.websocket(url, protocols).await
}

/// Pass messages both ways between the client's WebSocket and the pod node's.
pub async fn relay(client: axum::extract::ws::WebSocket, upstream: WebSocket) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut up_tx, mut up_rx) = upstream.split();
    let to_node = async {
        while let Some(Ok(msg)) = client_rx.next().await {
            let out = match msg {
                Message::Binary(b) => tungstenite::Message::Binary(b),
                Message::Text(t) => tungstenite::Message::text(t.as_str()),
                Message::Close(_) => break,
                _ => continue,
            };
            if up_tx.send(out).await.is_err() {
                break;
            }
        }
        let _ = up_tx.close().await;
    };
    let to_client = async {
        while let Some(Ok(msg)) = up_rx.next().await {
            let out = match msg {
                tungstenite::Message::Binary(b) => Message::Binary(b),
                tungstenite::Message::Text(t) => Message::Text(t.as_str().into()),
                tungstenite::Message::Close(frame) => {
                    let code = frame.map_or(1000, |f| u16::from(f.code));
                    let _ = client_tx.send(Message::Close(Some(CloseFrame { code, reason: "".into() }))).await;
                    break;
                }
                _ => continue,
            };
            if client_tx.send(out).await.is_err() {
                break;
            }
        }
    };
    // The pod's node ends the session (after the status); then stop relaying input too.
    tokio::select! {
        _ = to_client => {}
        _ = async { to_node.await; std::future::pending::<()>().await } => {}
    }
}
