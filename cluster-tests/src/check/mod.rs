//! Checkers for recorded chaos histories (pure): per-key linearizability (`linear`), no
//! acknowledged write lost, and watch guarantees as etcd states them (ordered, no
//! duplicates, no gaps against the committed history, resumable, nothing uncommitted).

pub mod linear;

use std::collections::BTreeMap;

/// A change in the committed history, or as a watcher saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub rv: u64,
    pub key: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: String,
}

/// An acknowledged write: the server said it applied at `rv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub rv: u64,
    pub key: String,
    pub kind: String,
}

/// Every acknowledged write must be in the committed history, at its revision.
pub fn lost_writes(acks: &[Ack], committed: &[Change]) -> Vec<String> {
    let by_rv: BTreeMap<u64, &Change> = committed.iter().map(|c| (c.rv, c)).collect();
    acks.iter()
        .filter_map(|a| match by_rv.get(&a.rv) {
            Some(c) if c.key == a.key && c.kind == a.kind => None,
            Some(c) => Some(format!("acknowledged {} of {} at rv {} but the history has {} of {} there", a.kind, a.key, a.rv, c.kind, c.key)),
            None => Some(format!("acknowledged {} of {} at rv {} is not in the committed history", a.kind, a.key, a.rv)),
        })
        .collect()
}

/// One watcher's view: the revision it started after, and what it received in order
/// (across reconnections to other nodes, each resumed from the last revision received).
#[derive(Debug, Clone, Default)]
pub struct WatchLog {
    pub name: String,
    pub from: u64,
    pub events: Vec<Change>,
    /// Explicit `410 Gone` answers (allowed, but the watcher then restarts from a fresh list).
    pub gone: usize,
}

/// Violations of the watch guarantees for `w` against the committed history.
pub fn watch_violations(w: &WatchLog, committed: &[Change]) -> Vec<String> {
    let mut out = Vec::new();
    for pair in w.events.windows(2) {
        if pair[1].rv <= pair[0].rv {
            out.push(format!("{}: rv {} after rv {} (reordered or duplicated)", w.name, pair[1].rv, pair[0].rv));
        }
    }
    let by_rv: BTreeMap<u64, &Change> = committed.iter().map(|c| (c.rv, c)).collect();
    for e in &w.events {
        match by_rv.get(&e.rv) {
            Some(c) if *c == e => {}
            _ => out.push(format!("{}: received {e:?}, which is not in the committed history", w.name)),
        }
    }
    if w.gone == 0 {
        let last = w.events.last().map_or(w.from, |e| e.rv);
        let received: std::collections::BTreeSet<u64> = w.events.iter().map(|e| e.rv).collect();
        for c in committed.iter().filter(|c| c.rv > w.from && c.rv <= last) {
            if !received.contains(&c.rv) {
                out.push(format!("{}: gap: missed {c:?}", w.name));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(rv: u64, key: &str, kind: &str) -> Change {
        Change { rv, key: key.into(), kind: kind.into() }
    }

    fn history() -> Vec<Change> {
        vec![ch(3, "a", "ADDED"), ch(4, "b", "ADDED"), ch(6, "a", "MODIFIED"), ch(9, "b", "DELETED")]
    }

    #[test]
    fn lost_write_is_reported() {
        let acks = vec![Ack { rv: 6, key: "a".into(), kind: "MODIFIED".into() }, Ack { rv: 7, key: "c".into(), kind: "ADDED".into() }];
        let v = lost_writes(&acks, &history());
        assert_eq!(v.len(), 1);
        assert!(v[0].contains("rv 7"));
    }

    #[test]
    fn a_faithful_watch_passes() {
        let w = WatchLog { name: "w".into(), from: 3, events: history()[1..].to_vec(), gone: 0 };
        assert!(watch_violations(&w, &history()).is_empty());
    }

    #[test]
    fn reordered_duplicated_gapped_and_phantom_events_are_reported() {
        let h = history();
        let reordered = WatchLog { name: "r".into(), from: 0, events: vec![h[0].clone(), h[2].clone(), h[1].clone(), h[3].clone()], gone: 0 };
        assert!(watch_violations(&reordered, &h).iter().any(|v| v.contains("reordered")));
        let dup = WatchLog { name: "d".into(), from: 0, events: vec![h[0].clone(), h[0].clone()], gone: 0 };
        assert!(watch_violations(&dup, &h).iter().any(|v| v.contains("duplicated")));
        let gap = WatchLog { name: "g".into(), from: 0, events: vec![h[0].clone(), h[2].clone()], gone: 0 };
        assert!(watch_violations(&gap, &h).iter().any(|v| v.contains("gap")));
        let phantom = WatchLog { name: "p".into(), from: 0, events: vec![ch(5, "z", "ADDED")], gone: 0 };
        assert!(watch_violations(&phantom, &h).iter().any(|v| v.contains("not in the committed")));
    }
}
