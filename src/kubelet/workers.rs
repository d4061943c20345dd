//! Which pods the kubelet syncs, and when: each pod has at most one sync running (its
//! worker), and a pod is synced when its object changed, when its last sync asks to look
//! again (it acted, or changed while its worker ran), when a time it asked for comes
//! (back-off, grace period, probe), or on a full pass. Pure bookkeeping; the kubelet loop
//! spawns the workers. Pods no longer wait for each other: a pod created while another is
//! being pulled or started gets a worker of its own at once.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

#[derive(Debug, Default)]
pub struct Workers {
    /// Pods with a worker running; true if the pod became due meanwhile.
    busy: BTreeMap<String, bool>,
    /// Pods to sync at the next pass.
    requeued: BTreeSet<String>,
    /// When pods asked to be looked at again.
    wake_at: BTreeMap<String, SystemTime>,
}

impl Workers {
    /// Whether to start a worker for `uid` now (it is then busy until `done`): `changed` is
    /// true when its object changed or on a full pass. A pod due while its worker runs is
    /// synced again after it.
    pub fn start(&mut self, uid: &str, changed: bool, now: SystemTime) -> bool {
        let requeued = self.requeued.remove(uid);
        let timed = self.wake_at.get(uid).is_some_and(|t| *t <= now);
        if !(changed || requeued || timed) {
            return false;
        }
        if let Some(due_again) = self.busy.get_mut(uid) {
            *due_again = true;
            return false;
        }
        self.wake_at.remove(uid);
        self.busy.insert(uid.to_string(), false);
        true
    }

    /// Ask for `uid` to be synced at the next pass (a probe result arrived, say).
    pub fn requeue(&mut self, uid: &str) {
        self.requeued.insert(uid.to_string());
    }

    /// `uid`'s worker finished: `acted` if it changed anything (its result is to be
    /// looked at), `wake_at` when it wants to look again. Returns true when the loop must
    /// run a pass sooner than it planned: the pod is requeued, or its time comes first.
    pub fn done(&mut self, uid: &str, acted: bool, wake_at: Option<SystemTime>) -> bool {
        let due_again = self.busy.remove(uid).unwrap_or(false);
        let earliest = self.next_wake();
        if let Some(t) = wake_at {
            self.wake_at.insert(uid.to_string(), t);
        }
        if acted || due_again {
            self.requeued.insert(uid.to_string());
            return true;
        }
        wake_at.is_some_and(|t| earliest.is_none_or(|e| t < e))
    }

    pub fn is_busy(&self, uid: &str) -> bool {
        self.busy.contains_key(uid)
    }

    /// The pods whose worker is running.
    pub fn busy(&self) -> BTreeSet<String> {
        self.busy.keys().cloned().collect()
    }

    /// The earliest time a pod asked for.
    pub fn next_wake(&self) -> Option<SystemTime> {
        self.wake_at.values().min().copied()
    }

    /// Whether a pod outside `known` is requeued or due by `now` (an orphan being cleaned up).
    pub fn pending_outside(&self, known: &BTreeSet<String>, now: SystemTime) -> bool {
        self.requeued.iter().any(|u| !known.contains(u)) || self.wake_at.iter().any(|(u, t)| *t <= now && !known.contains(u))
    }

    /// Forget pods that are neither in `known` nor busy.
    pub fn retain(&mut self, known: &BTreeSet<String>) {
        let busy = &self.busy;
        self.requeued.retain(|u| known.contains(u) || busy.contains_key(u));
        self.wake_at.retain(|u, _| known.contains(u) || busy.contains_key(u));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_pod_gets_one_worker_at_a_time_and_a_change_meanwhile_syncs_it_again() {
        let mut w = Workers::default();
        assert!(!w.start("a", false, t(10)), "nothing changed, nothing due");
        assert!(w.start("a", true, t(10)));
        assert!(w.is_busy("a"));
        assert!(!w.start("a", true, t(10)), "its worker is still running");
        assert!(w.done("a", false, None), "changed meanwhile: look again");
        assert!(w.start("a", false, t(11)), "requeued");
        assert!(!w.done("a", false, None));
        assert!(!w.start("a", false, t(12)), "synced, nothing due");
    }

    #[test]
    fn a_pod_that_acted_is_synced_again_to_see_the_result() {
        let mut w = Workers::default();
        assert!(w.start("a", true, t(10)));
        assert!(w.done("a", true, None));
        assert!(w.start("a", false, t(10)));
    }

    #[test]
    fn a_pod_is_due_at_the_time_it_asked_for_and_an_earlier_time_wakes_the_loop() {
        let mut w = Workers::default();
        assert!(w.start("a", true, t(10)));
        assert!(w.done("a", false, Some(t(30))), "the first time asked for");
        assert!(w.start("b", true, t(10)));
        assert!(!w.done("b", false, Some(t(40))), "later than one already planned");
        assert!(w.start("c", true, t(10)));
        assert!(w.done("c", false, Some(t(20))), "earlier than any planned");
        assert_eq!(w.next_wake(), Some(t(20)));
        assert!(!w.start("a", false, t(29)));
        assert!(w.start("a", false, t(30)));
        assert_eq!(w.next_wake(), Some(t(20)), "a's time is spent");
    }

    #[test]
    fn orphans_pending_are_found_and_forgotten_pods_dropped() {
        let mut w = Workers::default();
        let known: BTreeSet<String> = ["a".to_string()].into();
        assert!(w.start("gone", true, t(10)));
        w.done("gone", false, Some(t(20)));
        assert!(!w.pending_outside(&known, t(15)));
        assert!(w.pending_outside(&known, t(20)));
        w.requeue("other");
        assert!(w.pending_outside(&known, t(0)));
        assert!(w.start("busy", true, t(10)));
        w.retain(&known);
        assert!(!w.pending_outside(&known, t(100)), "unknown and idle: forgotten");
        assert!(w.is_busy("busy"), "a running worker is never forgotten");
        assert!(w.done("busy", true, None));
        assert!(w.pending_outside(&known, t(0)), "its pod is looked at again");
    }
}
