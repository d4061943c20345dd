//! The hub against a fake history: every change reaches every follower once and in
//! order, whenever it started and however far behind it fell.

use std::sync::Mutex;

use orch_raft::EventKind;

use super::*;

/// An in-memory history: events by revision, the applied revision, a compaction point.
struct FakeHistory {
    events: Mutex<Vec<Event>>,
    applied: tokio::sync::watch::Sender<u64>,
    /// History before this revision is gone.
    start: AtomicU64,
}

impl FakeHistory {
    fn new() -> Arc<Self> {
        Arc::new(FakeHistory { events: Mutex::new(Vec::new()), applied: tokio::sync::watch::channel(0).0, start: AtomicU64::new(1) })
    }

    /// Apply the next revision: with a change to `key`, or (None) a revision without one.
    fn apply(&self, key: Option<&str>) -> u64 {
        let mut events = self.events.lock().unwrap();
        let revision = *self.applied.borrow() + 1;
        if let Some(key) = key {
            let value = serde_json::to_vec(&serde_json::json!({"rev": revision})).unwrap();
            events.push(Event { revision, kind: EventKind::Put { created: false }, key: key.into(), value, create_revision: 1 });
        }
        self.applied.send_replace(revision);
        revision
    }
}

impl History for Arc<FakeHistory> {
    fn history(&self, after: u64, limit: usize) -> Result<Vec<Event>, HistoryError> {
        let start = self.start.load(Ordering::SeqCst);
        if after + 1 < start {
            return Err(HistoryError::Compacted { requested: after, oldest: start - 1 });
        }
        let events = self.events.lock().unwrap();
        let mut out: Vec<Event> = Vec::new();
        for e in events.iter().filter(|e| e.revision > after) {
            if out.last().is_none_or(|l| l.revision != e.revision) && out.len() == limit {
                break;
            }
            out.push(e.clone());
        }
        Ok(out)
    }
    fn revision(&self) -> u64 {
        *self.applied.borrow()
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }
}

/// Follow from `after` until a change at revision `last` or later; the revisions seen.
async fn collect(mut f: Follower<Arc<FakeHistory>>, last: u64, slow: bool) -> Vec<u64> {
    let mut seen = Vec::new();
    while seen.last().is_none_or(|r| *r < last) {
        for c in f.next().await.unwrap() {
            seen.push(c.event.revision);
            assert_eq!(c.object().unwrap()["rev"], c.event.revision, "the object of its own revision");
        }
        if slow {
            // Falls behind the hub's few kept offers and must read the history itself.
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_reaches_every_follower_once_in_order() {
    let source = FakeHistory::new();
    let hub = Hub::new(source.clone());
    // Changes before the hub starts, some revisions without a change.
    for i in 0..50 {
        source.apply((i % 7 != 3).then_some("a"));
    }
    let early = tokio::spawn(collect(hub.follow(0), 400, false));
    let slow = tokio::spawn(collect(hub.follow(10), 400, true));
    let mut late = Vec::new();
    let mut expected = Vec::new();
    for i in 50..400u64 {
        let key = (i % 7 != 3 || i == 399).then_some("a");
        let rev = source.apply(key);
        if key.is_some() {
            expected.push(rev);
        }
        if i % 100 == 0 {
            // Followers that start mid-stream, from where the writer is.
            late.push((rev, tokio::spawn(collect(hub.follow(rev), 400, false))));
        }
        if i % 10 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let all: Vec<u64> = (1..=50).filter(|i| (i - 1) % 7 != 3).chain(expected.iter().copied()).collect();
    assert_eq!(early.await.unwrap(), all);
    assert_eq!(slow.await.unwrap(), all.iter().copied().filter(|r| *r > 10).collect::<Vec<_>>());
    for (from, f) in late {
        assert_eq!(f.await.unwrap(), all.iter().copied().filter(|r| *r > from).collect::<Vec<_>>(), "from {from}");
    }
}

#[tokio::test]
async fn followers_level_with_the_hub_share_one_parsed_change() {
    let source = FakeHistory::new();
    let hub = Hub::new(source.clone());
    let (mut a, mut b) = (hub.follow(0), hub.follow(0));
    let rev = source.apply(Some("k"));
    let (ca, cb) = (a.next().await.unwrap(), b.next().await.unwrap());
    assert_eq!((ca.len(), cb.len(), ca[0].event.revision), (1, 1, rev));
    assert!(Arc::ptr_eq(&ca[0], &cb[0]), "one change, read and parsed once");
}

#[tokio::test]
async fn an_idle_follower_moves_past_revisions_without_changes() {
    let source = FakeHistory::new();
    let hub = Hub::new(source.clone());
    let mut f = hub.follow(0);
    source.apply(Some("k"));
    assert_eq!(f.next().await.unwrap().len(), 1);
    let quiet = (0..3).map(|_| source.apply(None)).last().unwrap();
    // Nothing is offered for revisions without changes: after its idle second the follower
    // levels with the hub.
    assert!(f.next().await.unwrap().is_empty());
    assert_eq!(f.after(), quiet, "a bookmark here would say: nothing up to {quiet}");
}

#[tokio::test]
async fn a_follower_behind_the_compacted_history_is_told() {
    let source = FakeHistory::new();
    for _ in 0..10 {
        source.apply(Some("k"));
    }
    source.start.store(6, Ordering::SeqCst);
    let hub = Hub::new(source.clone());
    let mut behind = hub.follow(2);
    assert!(matches!(behind.next().await, Err(HistoryError::Compacted { requested: 2, oldest: 5 })));
    let mut level = hub.follow(5);
    assert_eq!(level.next().await.unwrap().iter().map(|c| c.event.revision).collect::<Vec<_>>(), vec![6, 7, 8, 9, 10]);
}
