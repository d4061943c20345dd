//! Reading a Kubernetes watch stream (newline-delimited JSON events) from a node.

use anyhow::{bail, Context};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::mpsc;

/// One decoded watch event: its type, object name and resourceVersion, and the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: String,
    pub name: String,
    pub revision: u64,
    pub object: Value,
}

/// Open `url` (a `?watch=true...` URL) and forward each event until the stream ends.
/// The channel closes when the connection ends (node killed, timeout).
pub async fn open(client: &orch::client::ApiClient, url: &str) -> anyhow::Result<mpsc::Receiver<anyhow::Result<Seen>>> {
    let resp = client.send(hyper::Method::GET, url, None, bytes::Bytes::new()).await?;
    if !resp.status().is_success() {
        let code = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        bail!("watch {url}: HTTP {code}: {}", String::from_utf8_lossy(&body));
    }
    let (tx, rx) = mpsc::channel(1024);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return };
            let Some(data) = frame.data_ref() else { continue };
            buf.extend_from_slice(data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if tx.send(decode(&line)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(rx)
}

fn decode(line: &[u8]) -> anyhow::Result<Seen> {
    let v: Value = serde_json::from_slice(line).context("watch event is not JSON")?;
    let kind = v["type"].as_str().context("watch event has no type")?.to_string();
    if kind == "ERROR" {
        bail!("watch error event: {}", v["object"]);
    }
    let revision = v["object"]["metadata"]["resourceVersion"].as_str().context("no resourceVersion")?.parse()?;
    let name = v["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
    Ok(Seen { kind, name, revision, object: v["object"].clone() })
}
