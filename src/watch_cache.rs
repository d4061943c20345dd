//! A node's watch cache of one resource kind, through the node's own API (as the kubelet's,
//! kube-proxy's and CoreDNS's informers do): list, then watch from the list's resourceVersion, keeping
//! the copy current; after an error it lists again and swaps the copy in whole, so readers
//! never see a half-filled cache. Readers are woken on every change and can ask which
//! objects changed since they last looked, so their work follows the change.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use tokio::sync::watch;

pub use crate::changelog::Changed;
use crate::changelog::ChangeLog;
use crate::client::ApiClient;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    synced: bool,
    /// Following the API now (false from a failed list or watch until the next list).
    live: bool,
    /// The newest resourceVersion the copy reflects.
    revision: u64,
    changes: ChangeLog,
}

#[derive(Clone)]
pub struct WatchCache {
    state: Arc<Mutex<State>>,
    /// Bumped on every change; each reader subscribes.
    changed: watch::Sender<u64>,
}

fn key(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!("{}/{}", m["namespace"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or(""))
}

impl WatchCache {
    /// Follow `path` (a collection such as `/api/v1/services`, optionally with a query such
    /// as `?fieldSelector=spec.nodeName=n1`) on the API at `base`; the task ends when every
    /// clone of the cache is dropped.
    pub fn start(client: ApiClient, base: String, path: impl Into<String>) -> WatchCache {
        let path = path.into();
        let cache = WatchCache { state: Arc::default(), changed: watch::Sender::new(0) };
        let weak = Arc::downgrade(&cache.state);
        let changed = cache.changed.clone();
        tokio::spawn(async move {
            let client = client.with_timeout(Duration::from_secs(10));
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                if let Err(e) = follow(&client, &base, &path, &weak, &changed).await {
                    tracing::debug!(%path, error = %e, "watch cache: listing again");
                }
                if let Some(state) = weak.upgrade() {
                    state.lock().expect("cache lock").live = false;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
        cache
    }

    /// A receiver that sees every later change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn objects(&self) -> Vec<Value> {
        self.state.lock().expect("cache lock").objects.values().cloned().collect()
    }

    /// Look at every object in place with its `namespace/name` key (the cache is locked
    /// meanwhile: `f` must not call back into it).
    pub fn visit(&self, mut f: impl FnMut(&str, &Value)) {
        for (key, obj) in &self.state.lock().expect("cache lock").objects {
            f(key, obj);
        }
    }

    /// One object by `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().expect("cache lock").objects.get(key).cloned()
    }

    /// The cache's change counter now, and what changed after `seen` (a value this
    /// returned before; 0 at first, which yields `Everything`).
    pub fn changes_since(&self, seen: u64) -> (u64, Changed) {
        let s = self.state.lock().expect("cache lock");
        (s.changes.seq(), s.changes.since(seen))
    }

    /// The newest resourceVersion the copy reflects (its list's, or a later event's).
    pub fn revision(&self) -> u64 {
        self.state.lock().expect("cache lock").revision
    }

    /// Whether the copy follows the API now: false after a failed list or watch (the
    /// copy is then as last seen) until a list succeeds again.
    pub fn live(&self) -> bool {
        self.state.lock().expect("cache lock").live
    }

    /// Whether a first list has arrived (before that, "nothing" means "not known yet").
    pub fn synced(&self) -> bool {
        self.state.lock().expect("cache lock").synced
    }
}

/// One list and the watch after it; returns when the watch ends or fails.
async fn follow(client: &ApiClient, base: &str, path: &str, weak: &std::sync::Weak<Mutex<State>>, changed: &watch::Sender<u64>) -> anyhow::Result<()> {
    let list = client.json(Method::GET, &format!("{base}{path}"), None).await?;
    let mut rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let objects = list["items"].as_array().into_iter().flatten().map(|o| (key(o), o.clone())).collect();
    let Some(state) = weak.upgrade() else { return Ok(()) };
    {
        let mut s = state.lock().expect("cache lock");
        s.objects = objects;
        s.synced = true;
        s.live = true;
        s.revision = rv.parse().unwrap_or(0);
        s.changes.reset();
    }
    drop(state);
    changed.send_modify(|n| *n += 1);
    loop {
        let sep = if path.contains('?') { '&' } else { '?' };
        let url = format!("{base}{path}{sep}watch=true&allowWatchBookmarks=true&resourceVersion={rv}");
        let resp = client.send(Method::GET, &url, None, bytes::Bytes::new()).await?;
        anyhow::ensure!(resp.status().is_success(), "watch {path}: HTTP {}", resp.status());
        let mut body = resp.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else { continue };
            buf.extend_from_slice(&data);
            while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let event: Value = serde_json::from_slice(&line)?;
                let object = &event["object"];
                match event["type"].as_str().unwrap_or("") {
                    "ERROR" => anyhow::bail!("watch {path}: {}", object["message"]),
                    kind => {
                        if let Some(r) = object["metadata"]["resourceVersion"].as_str() {
                            rv = r.to_string();
                        }
                        let Some(state) = weak.upgrade() else { return Ok(()) };
                        let mut s = state.lock().expect("cache lock");
                        s.revision = s.revision.max(rv.parse().unwrap_or(0));
                        if kind == "BOOKMARK" {
                            continue;
                        }
                        if kind == "DELETED" {
                            s.objects.remove(&key(object));
                        } else {
                            s.objects.insert(key(object), object.clone());
                        }
                        s.changes.record(key(object));
                        drop(s);
                        changed.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    }
}
