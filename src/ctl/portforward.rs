//! `orchctl port-forward POD [LOCAL:]REMOTE...`: listen on local ports and carry each
//! accepted connection to the pod's port over its own port-forward WebSocket (the
//! protocol of `crate::portforward`), through whichever node orchctl talks to.

use anyhow::{anyhow, bail, Context};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::client::ApiClient;
use crate::portforward::{self as pf, data_channel, error_channel};

/// Forward until interrupted. `address` is the local address to listen on.
pub async fn port_forward(client: &ApiClient, base: &str, ns: &str, pod: &str, specs: &[String], address: &str) -> anyhow::Result<()> {
    let ws_base = base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let mut tasks = Vec::new();
    for spec in specs {
        let (local, remote) = pf::parse_spec(spec).map_err(|e| anyhow!(e))?;
        let listener = TcpListener::bind((address, local)).await.with_context(|| format!("listening on {address}:{local}"))?;
        let bound = listener.local_addr()?;
        println!("Forwarding from {bound} -> {remote}");
        let url = format!("{ws_base}/api/v1/namespaces/{ns}/pods/{pod}/portforward?ports={remote}");
        tasks.push(tokio::spawn(accept(client.clone(), listener, url)));
    }
    // Each listener runs until orchctl is stopped; a failed one ends the command.
    let (first, _, _) = futures::future::select_all(tasks).await;
    first?
}

async fn accept(client: ApiClient, listener: TcpListener, url: String) -> anyhow::Result<()> {
    loop {
        let (conn, peer) = listener.accept().await?;
        let (url, client) = (url.clone(), client.clone());
        tokio::spawn(async move {
            if let Err(e) = forward(&client, conn, &url).await {
                eprintln!("port-forward for {peer}: {e}");
            }
        });
    }
}

/// Carry one local connection to the pod and back.
async fn forward(client: &ApiClient, mut conn: TcpStream, url: &str) -> anyhow::Result<()> {
    let socket = match client.websocket(url, &pf::PROTOCOLS).await {
        Ok(s) => s,
        Err(tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            bail!("{}", body["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {}", resp.status())));
        }
        Err(e) => bail!("{url}: {e}"),
    };
    let (mut tx, mut rx) = socket.split();
    // The server opens both channels with the port number; wait for both first.
    let mut greeted = 0;
    while greeted < 2 {
        match rx.next().await {
            Some(Ok(Message::Binary(b))) if b.len() == 3 && (b[0] == data_channel(0) || b[0] == error_channel(0)) => greeted += 1,
            Some(Ok(Message::Close(_))) | None => bail!("the server closed the connection before forwarding"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let (mut read, mut write) = conn.split();
    let to_pod = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(Message::Binary(pf::frame(data_channel(0), &buf[..n]).into())).await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = tx.close().await;
    };
    let from_pod = async {
        while let Some(msg) = rx.next().await {
            match msg? {
                Message::Binary(b) => match pf::parse(&b) {
                    Some((c, data)) if c == data_channel(0) => write.write_all(data).await?,
                    Some((c, data)) if c == error_channel(0) && !data.is_empty() => bail!("{}", String::from_utf8_lossy(data)),
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        write.shutdown().await.ok();
        Ok(())
    };
    // The pod's side ends the connection: after the local side is done sending, its
    // answer may still be on the way.
    tokio::select! {
        r = from_pod => r,
        _ = async { to_pod.await; std::future::pending::<()>().await } => Ok(()),
    }
}
