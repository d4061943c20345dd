//! Which keys of a local object copy changed since a reader last looked: a bounded log of
//! changed `namespace/name` keys, numbered, shared by the node's watch caches and the
//! leader's informers so their readers do work in proportion to the change.

use std::collections::{BTreeSet, VecDeque};

/// How many changed keys a log remembers for readers that are behind.
pub const LOG_LEN: usize = 8192;

/// What changed since a reader's last look.
#[derive(Debug, PartialEq, Eq)]
pub enum Changed {
    /// These `namespace/name` keys (added, modified or deleted).
    Keys(BTreeSet<String>),
    /// Possibly anything: the copy was replaced whole, or the reader fell too far behind.
    Everything,
}

#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Bumped on every change.
    seq: u64,
    /// Keys changed, by `seq`, newest last; at most `LOG_LEN` of them.
    log: VecDeque<(u64, String)>,
    /// `seq` of the last reset (the copy replaced whole).
    reset_at: u64,
}

impl ChangeLog {
    /// The counter now; pass it back to `since` later.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub fn record(&mut self, key: String) {
        self.seq += 1;
        if self.log.len() == LOG_LEN {
            self.log.pop_front();
        }
        self.log.push_back((self.seq, key));
    }

    /// The copy was replaced whole: every reader must look at everything.
    pub fn reset(&mut self) {
        self.seq += 1;
        self.log.clear();
        self.reset_at = self.seq;
    }

    /// What changed after `seen` (a `seq()` from before; 0 at first, which is `Everything`).
    pub fn since(&self, seen: u64) -> Changed {
        let oldest_kept = self.log.front().map_or(self.seq + 1, |(s, _)| *s);
        if seen < self.reset_at || oldest_kept > seen + 1 {
            return Changed::Everything;
        }
        Changed::Keys(self.log.iter().filter(|(s, _)| *s > seen).map(|(_, k)| k.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_get_the_keys_changed_since_they_looked_or_everything_after_a_reset_or_overflow() {
        let mut log = ChangeLog::default();
        log.reset();
        assert_eq!(log.since(0), Changed::Everything);
        assert_eq!(log.since(1), Changed::Keys(BTreeSet::new()));
        log.record("default/a".into());
        log.record("default/b".into());
        log.record("default/a".into());
        assert_eq!(log.since(1), Changed::Keys(["default/a".to_string(), "default/b".to_string()].into()));
        assert_eq!(log.since(3), Changed::Keys(["default/a".to_string()].into()));
        for i in 0..LOG_LEN {
            log.record(format!("default/n{i}"));
        }
        // The change at seq 4 was pushed out: a reader at 3 can't be told what it missed,
        // one at 4 can.
        assert_eq!(log.since(3), Changed::Everything);
        assert!(matches!(log.since(4), Changed::Keys(k) if k.len() == LOG_LEN));
        assert!(matches!(log.since(log.seq() - 2), Changed::Keys(k) if k.len() == 2));
        let before = log.seq();
        log.reset();
        assert_eq!(log.since(before), Changed::Everything);
        assert_eq!(log.since(log.seq()), Changed::Keys(BTreeSet::new()));
    }
}
