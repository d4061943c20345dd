//! An informer: a local copy of one resource kind, kept current by a watch on the
//! leader's own store (list, then events), with the revision it reflects and a wake-up
//! for loops that react to changes, and a log of the keys that changed so those loops can
//! work on just them. A watch that falls too far behind (410) starts over. The copy is
//! only ever whole: `start` returns once the first list is in, and a new list replaces the
//! old copy when it is complete (a controller acting on half a list would, say, create
//! the replicas it did not see yet).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;

use crate::api::resources::Resource;
use crate::changelog::{ChangeLog, Changed};
use crate::api::store::{Filter, ObjectStore, WatchItem};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    revision: u64,
    changes: ChangeLog,
    /// A complete list has been taken in.
    synced: bool,
}

#[derive(Clone)]
pub struct Informer {
    state: Arc<Mutex<State>>,
    pub changed: Arc<Notify>,
}

fn key(obj: &Value) -> String {
    let m = &obj["metadata"];
    format!("{}/{}", m["namespace"].as_str().unwrap_or(""), m["name"].as_str().unwrap_or(""))
}

/// An object's resourceVersion as a number (0 when absent).
pub fn revision(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

impl Informer {
    /// Start following `res` (all namespaces), returning once the copy holds every object;
    /// the task ends when the informer is dropped.
    pub async fn start(store: ObjectStore, res: &'static Resource) -> Informer {
        let informer = Informer { state: Arc::default(), changed: Arc::new(Notify::new()) };
        let weak = Arc::downgrade(&informer.state);
        let changed = informer.changed.clone();
        tokio::spawn(async move {
            loop {
                let mut rx = match store.watch(res, None, Filter::default(), None, true).await {
                    Ok(rx) => rx,
                    Err(e) => {
                        tracing::debug!(kind = res.kind, error = %e, "informer: watch failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                // The list arrives as ADDED events ended by a bookmark; until then it is
                // gathered aside and the previous copy (if any) stays in use.
                let mut listing: Option<BTreeMap<String, Value>> = Some(BTreeMap::new());
                while let Some(item) = rx.recv().await {
                    let Some(state) = weak.upgrade() else { return };
                    let mut s = state.lock().expect("informer lock");
                    match item {
                        WatchItem::Event { object, .. } if listing.is_some() => {
                            s.revision = s.revision.max(revision(&object));
                            listing.as_mut().expect("listing").insert(key(&object), object);
                            continue;
                        }
                        WatchItem::Event { kind, object } => {
                            s.revision = s.revision.max(revision(&object));
                            let k = key(&object);
                            s.changes.record(k.clone());
                            if kind == "DELETED" {
                                s.objects.remove(&k);
                            } else {
                                s.objects.insert(k, object);
                            }
                        }
                        WatchItem::Bookmark(rev) => {
                            s.revision = s.revision.max(rev);
                            if let Some(objects) = listing.take() {
                                s.objects = objects;
                                s.changes.reset();
                                s.synced = true;
                            }
                        }
                        WatchItem::Error(e) => {
                            tracing::debug!(kind = res.kind, error = %e, "informer: watch ended; listing again");
                            break;
                        }
                    }
                    drop(s);
                    changed.notify_one();
                }
            }
        });
        loop {
            let notified = informer.changed.notified();
            if informer.state.lock().expect("informer lock").synced {
                break;
            }
            notified.await;
        }
        // The wake-up the list gave was taken here: give the caller's first pass one.
        informer.changed.notify_one();
        informer
    }

    /// Every object, as of `revision()`.
    pub fn objects(&self) -> Vec<Value> {
        self.state.lock().expect("informer lock").objects.values().cloned().collect()
    }

    /// One object by `namespace/name`.
    pub fn get(&self, key: &str) -> Option<Value> {
        self.state.lock().expect("informer lock").objects.get(key).cloned()
    }

    /// The objects `keep` accepts (looked at in place, cloned only when kept).
    pub fn objects_where(&self, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.state.lock().expect("informer lock").objects.values().filter(|v| keep(v)).cloned().collect()
    }

    /// The objects of one namespace that `keep` accepts (looked at in place, cloned only
    /// when kept).
    pub fn in_namespace(&self, ns: &str, keep: impl Fn(&Value) -> bool) -> Vec<Value> {
        let s = self.state.lock().expect("informer lock");
        // Keys are `ns/name`; '0' is the character after '/'.
        s.objects.range(format!("{ns}/")..format!("{ns}0")).map(|(_, v)| v).filter(|v| keep(v)).cloned().collect()
    }

    /// The change counter now, and what changed after `seen` (see `ChangeLog::since`).
    pub fn changes_since(&self, seen: u64) -> (u64, Changed) {
        let s = self.state.lock().expect("informer lock");
        (s.changes.seq(), s.changes.since(seen))
    }

    /// The newest revision the copy reflects.
    pub fn revision(&self) -> u64 {
        self.state.lock().expect("informer lock").revision
    }

    /// Wait until the copy reflects `rev` (e.g. this loop's own last write), or `limit` passes.
    /// Changes it consumed while waiting are signalled again, so the caller's loop still
    /// wakes for changes that arrived after its own write.
    pub async fn wait_for(&self, rev: u64, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut consumed = false;
        while self.revision() < rev {
            if tokio::time::timeout_at(deadline, self.changed.notified()).await.is_err() {
                break;
            }
            consumed = true;
        }
        if consumed {
            self.changed.notify_one();
        }
    }
}
