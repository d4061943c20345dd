//! `orchctl exec`: run a command in a pod's container through any node, over the same
//! remote-command WebSocket `kubectl exec` uses; stdin, stdout and stderr are streamed
//! and orchctl exits with the command's exit code.

use anyhow::{anyhow, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message};

use crate::remotecommand::{self as rc, ExecParams};

/// Run the command; returns its exit code.
pub async fn exec(base: &str, ns: &str, pod: &str, params: &ExecParams) -> anyhow::Result<i32> {
    let ws_base = base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
    let url = format!("{ws_base}/api/v1/namespaces/{ns}/pods/{pod}/exec?{}", rc::to_query(params));
    let socket = match crate::daemon::exec::connect(&url, &rc::PROTOCOLS).await {
        Ok(s) => s,
        Err(tungstenite::Error::Http(resp)) => {
            let body: serde_json::Value = resp.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or_default();
            bail!("{}", body["message"].as_str().map(String::from).unwrap_or_else(|| format!("HTTP {}", resp.status())));
        }
        Err(e) => return Err(anyhow!("{url}: {e}")),
    };
    let (mut tx, mut rx) = socket.split();
    let input = params.stdin.then(|| {
        tokio::spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(Message::Binary(rc::frame(rc::STDIN, &buf[..n]).into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(Message::Binary(rc::frame(rc::CLOSE, &[rc::STDIN]).into())).await;
            // Keep the sending half open until the command ends.
            std::future::pending::<()>().await;
        })
    });
    let (mut out, mut err) = (tokio::io::stdout(), tokio::io::stderr());
    let mut status = None;
    while let Some(msg) = rx.next().await {
        match msg? {
            Message::Binary(b) => match rc::parse(&b) {
                Some((rc::STDOUT, data)) => {
                    out.write_all(data).await?;
                    out.flush().await?;
                }
                Some((rc::STDERR, data)) => {
                    err.write_all(data).await?;
                    err.flush().await?;
                }
                Some((rc::ERROR, data)) => status = serde_json::from_slice::<serde_json::Value>(data).ok(),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    if let Some(task) = input {
        task.abort();
    }
    let status = status.ok_or_else(|| anyhow!("the connection closed before the command's status arrived"))?;
    let code = rc::exit_code(&status);
    if code == 126 {
        if let Some(m) = status["message"].as_str() {
            eprintln!("error: {m}");
        }
    }
    Ok(code)
}
