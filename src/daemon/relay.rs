//! WebSockets between nodes for exec and port-forward: opening one to the node that runs
//! the pod, and passing messages both ways between it and the client's (a node that does
//! not run the pod relays the whole session).

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite;

type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Open a WebSocket at `url` (a node's exec or port-forward endpoint) offering `protocols`.
pub async fn connect(url: &str, protocols: &[&str]) -> Result<Upstream, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    let protocols = protocols.join(", ").parse().expect("protocol names are valid header values");
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols);
    let (stream, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(stream)
}

/// Pass messages both ways between the client's WebSocket and the pod node's.
pub async fn relay(client: WebSocket, upstream: Upstream) {
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
