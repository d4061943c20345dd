//! A node's watch cache of one resource kind, through the node's own API (as kube-proxy's
//! and CoreDNS's informers do): list, then watch from the list's resourceVersion, keeping
//! the copy current; after an error it lists again and swaps the copy in whole, so readers
//! never see a half-filled cache. Readers are woken on every change and can ask which
//! objects changed since they last looked, so their work follows the change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use tokio::sync::watch;

use crate::client::ApiClient;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    synced: bool,
    /// The newest resourceVersion the copy reflects.
    revision: u64,
    /// Bumped on every change of `objects`.
    seq: u64,
    /// Keys changed, by `seq`, newest last; at most `LOG_LEN` of them.
    log: VecDeque<(u64, String)>,
    /// `seq` of the last list, which replaced the copy whole.
    listed_at: u64,
}

/// How many changed keys a cache remembers for readers that are behind.
const LOG_LEN: usize = 8192;

/// What changed since a reader's last look.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    /// These `namespace/name` keys (added, modified or deleted).
    Keys(BTreeSet<String>),
    /// Possibly anything: the copy was listed again, or the reader fell too far behind.
    Everything,
}

impl State {
    fn record(&mut self, key: String) {
        self.seq += 1;
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back((self.seq, key));
    }

    fn changes_since(&self, seen: u64) -> Changed {
        let oldest_kept = self.log.front().map_or(self.seq + 1, |(s, _)| *s);
        if seen < self.listed_at || oldest_kept > seen + 1 {
            return Changed::Everything;
        }
        Changed::Keys(self.log.iter().filter(|(s, _)| *s > seen).map(|(_, k)| k.clone()).collect())
    }
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
    /// Follow `path` (a collection such as `/api/v1/services`) on the API at `base`; the
    /// task ends when every clone of the cache is dropped.
    pub fn start(base: String, path: &'static str) -> WatchCache {
        let cache = WatchCache { state: Arc::default(), changed: watch::Sender::new(0) };
        let weak = Arc::downgrade(&cache.state);
        let changed = cache.changed.clone();
        tokio::spawn(async move {
            let client = ApiClient::new(Duration::from_secs(10));
            loop {
                if weak.strong_count() == 0 {
                    return;
                }
                if let Err(e) = follow(&client, &base, path, &weak, &changed).await {
                    tracing::debug!(path, error = %e, "watch cache: listing again");
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

    /// One object by `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().expect("cache lock").objects.get(key).cloned()
    }

    /// The cache's change counter now, and what changed after `seen` (a value this
    /// returned before; 0 at first, which yields `Everything`).
    pub fn changes_since(&self, seen: u64) -> (u64, Changed) {
        let s = self.state.lock().expect("cache lock");
        (s.seq, s.changes_since(seen))
    }

    /// The newest resourceVersion the copy reflects (its list's, or a later event's).
    pub fn revision(&self) -> u64 {
        self.state.lock().expect("cache lock").revision
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
        let seq = s.seq + 1;
        *s = State { objects, synced: true, revision: rv.parse().unwrap_or(0), seq, log: VecDeque::new(), listed_at: seq };
    }
    drop(state);
    changed.send_modify(|n| *n += 1);
    loop {
        let url = format!("{base}{path}?watch=true&allowWatchBookmarks=true&resourceVersion={rv}");
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
                        s.record(key(object));
                        drop(s);
                        changed.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_the_keys_changed_since_they_looked_or_everything_after_a_relist_or_overflow() {
        let mut s = State { seq: 1, listed_at: 1, synced: true, ..State::default() };
        assert_eq!(s.changes_since(0), Changed::Everything);
        assert_eq!(s.changes_since(1), Changed::Keys(BTreeSet::new()));
        s.record("default/a".into());
        s.record("default/b".into());
        s.record("default/a".into());
        assert_eq!(s.changes_since(1), Changed::Keys(["default/a".to_string(), "default/b".to_string()].into()));
        assert_eq!(s.changes_since(3), Changed::Keys(["default/a".to_string()].into()));
        for i in 0..LOG_LEN {
            s.record(format!("default/n{i}"));
        }
        // The change at seq 4 was pushed out: a reader at 3 can't be told what it missed,
        // one at 4 can.
        assert_eq!(s.changes_since(3), Changed::Everything);
        assert!(matches!(s.changes_since(4), Changed::Keys(k) if k.len() == LOG_LEN));
        assert!(matches!(s.changes_since(s.seq - 2), Changed::Keys(k) if k.len() == 2));
    }
}
