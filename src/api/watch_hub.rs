//! One reader of the store's history for all of a node's watches: each change is read
//! from RocksDB once and its object parsed at most once, then offered to every watch,
//! which keeps what its key prefix and selectors want. A watch that starts behind the hub,
//! falls behind it, or is told of a gap reads the history itself until it is level again.
//!
//! Before, every watch scanned the history and parsed every object on every write: with
//! W watches (every kubelet's pods, every informer) a write cost W scans and W parses.
//!
//! Correctness rests on one order: the hub records how far it has read (`position`)
//! *before* it offers those changes. A follower subscribes first and reads the position
//! after, so every change is either offered to it or at or below the position it reads
//! up to itself; revisions it has already passed are skipped, never sent twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use orch_raft::{Event, HistoryError, StateReader};
use serde_json::Value;
use tokio::sync::broadcast;

/// Where the history comes from (the state machine; a fake in tests).
pub trait History: Send + Sync + 'static {
    /// Events with revision > `after`, in order, at most `limit` revisions' worth.
    fn history(&self, after: u64, limit: usize) -> Result<Vec<Event>, HistoryError>;
    /// The highest applied revision.
    fn revision(&self) -> u64;
    /// Changes whenever the applied revision advances.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// The store's history with sealed values (Secrets) opened, as every watch sees it.
pub struct Opened {
    pub reader: StateReader,
    pub codec: Arc<crate::auth::encryption::Codec>,
}

impl History for Opened {
    fn history(&self, after: u64, limit: usize) -> Result<Vec<Event>, HistoryError> {
        let mut events = self.reader.history(after, limit)?;
        for e in events.iter_mut().filter(|e| crate::auth::encryption::Codec::sealed(&e.key)) {
            match self.codec.open(&e.key, &e.value) {
                Ok(plain) => e.value = plain.into_owned(),
                // Left sealed, the object does not parse and no watch is sent it.
                Err(err) => tracing::error!(key = %e.key, error = %err, "a stored Secret cannot be opened"),
            }
        }
        Ok(events)
    }
    fn revision(&self) -> u64 {
        self.reader.revision()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.reader.subscribe()
    }
}

impl History for StateReader {
    fn history(&self, after: u64, limit: usize) -> Result<Vec<Event>, HistoryError> {
        StateReader::history(self, after, limit)
    }
    fn revision(&self) -> u64 {
        StateReader::revision(self)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        StateReader::subscribe(self)
    }
}

/// Revisions read at once (whole revisions).
const BATCH: usize = 256;
/// Offers kept for followers that have not read them yet; one further behind catches up
/// by reading the history itself (kept small: the offers hold parsed objects).
const OFFERS: usize = 16;
/// How long a follower waits for an offer before it says it is idle (bookmarks, checks).
const IDLE: Duration = Duration::from_secs(1);

/// One change to one key, its object parsed on first use and shared by every watch.
pub struct Change {
    pub event: Event,
    parsed: OnceLock<Option<Value>>,
}

impl Change {
    fn new(event: Event) -> Arc<Change> {
        Arc::new(Change { event, parsed: OnceLock::new() })
    }

    /// The object (after a put, or as it was deleted); None if it is not JSON.
    pub fn object(&self) -> Option<&Value> {
        self.parsed.get_or_init(|| serde_json::from_slice(&self.event.value).ok()).as_ref()
    }
}

enum Offer {
    /// Every change with a revision in (previous offer's `upto`, `upto`].
    Changes { changes: Vec<Arc<Change>>, upto: u64 },
    /// The hub skipped to `upto` (its history was compacted under it): followers read the
    /// history themselves up to there.
    Gap { upto: u64 },
}

pub struct Hub<H> {
    source: Arc<H>,
    offers: broadcast::Sender<Arc<Offer>>,
    /// Every change up to this revision has been offered (or is being: see the module doc).
    position: Arc<AtomicU64>,
    started: OnceLock<()>,
}

impl<H: History> Hub<H> {
    pub fn new(source: H) -> Self {
        Hub { source: Arc::new(source), offers: broadcast::channel(OFFERS).0, position: Arc::new(AtomicU64::new(0)), started: OnceLock::new() }
    }

    /// Follow every change after revision `after` (the reading task starts with the first
    /// follower).
    pub fn follow(&self, after: u64) -> Follower<H> {
        self.started.get_or_init(|| {
            self.position.store(self.source.revision(), Ordering::SeqCst);
            tokio::spawn(read(self.source.clone(), self.offers.clone(), self.position.clone()));
        });
        let offers = self.offers.subscribe();
        let level = self.position.load(Ordering::SeqCst);
        Follower { source: self.source.clone(), position: self.position.clone(), offers, after, catch_up_to: Some(level) }
    }
}

/// The hub's task: read each new stretch of history once and offer it.
async fn read<H: History>(source: Arc<H>, offers: broadcast::Sender<Arc<Offer>>, position: Arc<AtomicU64>) {
    let mut changed = source.subscribe();
    let mut after = position.load(Ordering::SeqCst);
    loop {
        let revision = source.revision();
        match source.history(after, BATCH) {
            Ok(events) if events.is_empty() => {
                // Nothing after `after` up to `revision` (read before the scan).
                after = after.max(revision);
                position.store(after, Ordering::SeqCst);
                if changed.changed().await.is_err() {
                    return;
                }
            }
            Ok(events) => {
                let upto = events.last().map_or(after, |e| e.revision);
                let changes = events.into_iter().map(Change::new).collect();
                after = upto;
                position.store(upto, Ordering::SeqCst);
                // No followers is fine: the next one reads the history itself first.
                let _ = offers.send(Arc::new(Offer::Changes { changes, upto }));
            }
            Err(HistoryError::Compacted { .. }) => {
                // Behind a snapshot install: whoever still needs the skipped stretch will
                // find it compacted too, and say so to its client.
                after = source.revision();
                position.store(after, Ordering::SeqCst);
                let _ = offers.send(Arc::new(Offer::Gap { upto: after }));
            }
            Err(HistoryError::Storage(e)) => {
                tracing::warn!(error = %e, "reading the store's history; retrying");
                tokio::time::sleep(IDLE).await;
            }
        }
    }
}

/// One watch's view of the hub.
pub struct Follower<H> {
    source: Arc<H>,
    position: Arc<AtomicU64>,
    offers: broadcast::Receiver<Arc<Offer>>,
    /// Every change up to here has been returned.
    after: u64,
    /// Read the history directly up to here before taking offers again.
    catch_up_to: Option<u64>,
}

impl<H: History> Follower<H> {
    /// Every change up to this revision has been returned.
    pub fn after(&self) -> u64 {
        self.after
    }

    /// The next changes after `after()`, in revision order; empty after a second without
    /// any (`after()` may have moved: revisions without changes). Cancel-safe: state
    /// changes only between awaits.
    pub async fn next(&mut self) -> Result<Vec<Arc<Change>>, HistoryError> {
        let mut idle = false;
        loop {
            if let Some(upto) = self.catch_up_to {
                if self.after < upto {
                    let events = self.source.history(self.after, BATCH)?;
                    if let Some(last) = events.last().map(|e| e.revision) {
                        self.after = last;
                        return Ok(events.into_iter().map(Change::new).collect());
                    }
                    // Nothing up to the applied revision, which is at least `upto`.
                    self.after = upto;
                }
                self.catch_up_to = None;
                if idle {
                    return Ok(Vec::new());
                }
            }
            let offer = match tokio::time::timeout(IDLE, self.offers.recv()).await {
                Ok(Ok(offer)) => offer,
                Err(_) => {
                    // Idle: level with the hub, which may have passed revisions without
                    // changes (so `after()` is current for bookmarks).
                    idle = true;
                    self.catch_up_to = Some(self.position.load(Ordering::SeqCst));
                    continue;
                }
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    self.offers = self.offers.resubscribe();
                    self.catch_up_to = Some(self.position.load(Ordering::SeqCst));
                    continue;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Err(HistoryError::Storage("the history reader stopped".into())),
            };
            match &*offer {
                Offer::Changes { changes, upto } => {
                    let new: Vec<Arc<Change>> = changes.iter().filter(|c| c.event.revision > self.after).cloned().collect();
                    self.after = self.after.max(*upto);
                    if !new.is_empty() {
                        return Ok(new);
                    }
                }
                Offer::Gap { upto } => self.catch_up_to = Some(*upto),
            }
        }
    }
}

#[cfg(test)]
mod tests;
