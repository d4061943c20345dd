//! Pure transaction evaluation: state in (a point-read function), writes and events out.
//!
//! No I/O, no clock, no randomness: every replica computes the same result from
//! the same command. The RocksDB state machine (`store::state_machine`) calls this
//! and persists what it returns.

use std::collections::BTreeMap;

use crate::types::{Command, Condition, Event, EventKind, KeyValue, Op, Outcome, Response};

/// A change to persist in the key-value table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put(KeyValue),
    Delete(String),
}

/// What applying one command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
    pub response: Response,
}

/// Evaluate `cmd`, committed at log index `revision` in term `term`.
///
/// `read` returns the current value of a key as of the previous revision.
pub fn apply_command<E>(
    read: &mut impl FnMut(&str) -> Result<Option<KeyValue>, E>,
    revision: u64,
    term: u64,
    cmd: &Command,
) -> Result<Applied, E> {
    let rejected = |outcome| Applied { writes: vec![], events: vec![], response: Response { revision, outcome } };

    if let Some(proposed_term) = cmd.fence_term {
        if proposed_term != term {
            return Ok(rejected(Outcome::Fenced { proposed_term, committed_term: term }));
        }
    }

    // Later ops of the same transaction see the earlier ones.
    let mut overlay: BTreeMap<String, Option<KeyValue>> = BTreeMap::new();
    let mut current = |key: &str, overlay: &BTreeMap<String, Option<KeyValue>>| match overlay.get(key) {
        Some(v) => Ok(v.clone()),
        None => read(key),
    };

    for (index, cond) in cmd.txn.conditions.iter().enumerate() {
        let (key, holds) = match cond {
            Condition::ModRevision { key, revision: want } => {
                let got = current(key, &overlay)?.map_or(0, |kv| kv.mod_revision);
                (key, got == *want)
            }
            Condition::Exists { key } => (key, current(key, &overlay)?.is_some()),
        };
        if !holds {
            let now = current(key, &overlay)?.map_or(0, |kv| kv.mod_revision);
            return Ok(rejected(Outcome::ConditionFailed { index, current: now }));
        }
    }

    let mut events = Vec::with_capacity(cmd.txn.ops.len());
    let mut prev = Vec::with_capacity(cmd.txn.ops.len());
    for op in &cmd.txn.ops {
        let before = current(op.key(), &overlay)?;
        match op {
            Op::Put { key, value } => {
                let create_revision = before.as_ref().map_or(revision, |kv| kv.create_revision);
                let kv = KeyValue { key: key.clone(), value: value.clone(), create_revision, mod_revision: revision };
                events.push(Event {
                    revision,
                    kind: EventKind::Put { created: before.is_none() },
                    key: key.clone(),
                    value: value.clone(),
                    create_revision,
                });
                overlay.insert(key.clone(), Some(kv));
            }
            Op::Delete { key } => {
                if let Some(old) = &before {
                    events.push(Event {
                        revision,
                        kind: EventKind::Delete,
                        key: key.clone(),
                        value: old.value.clone(),
                        create_revision: old.create_revision,
                    });
                    overlay.insert(key.clone(), None);
                }
            }
        }
        prev.push(before);
    }

    let writes = overlay
        .into_iter()
        .map(|(key, v)| match v {
            Some(kv) => Write::Put(kv),
            None => Write::Delete(key),
        })
        .collect();
    Ok(Applied { writes, events, response: Response { revision, outcome: Outcome::Applied { prev } } })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;
    use crate::types::Txn;

    fn put(key: &str, v: &str) -> Op {
        Op::Put { key: key.into(), value: v.as_bytes().to_vec() }
    }

    fn run(state: &BTreeMap<String, KeyValue>, rev: u64, term: u64, cmd: &Command) -> Applied {
        let mut read = |k: &str| Ok::<_, Infallible>(state.get(k).cloned());
        apply_command(&mut read, rev, term, cmd).unwrap()
    }

    fn commit(state: &mut BTreeMap<String, KeyValue>, applied: &Applied) {
        for w in &applied.writes {
            match w {
                Write::Put(kv) => {
                    state.insert(kv.key.clone(), kv.clone());
                }
                Write::Delete(k) => {
                    state.remove(k);
                }
            }
        }
    }

    #[test]
    fn create_then_compare_and_set() {
        let mut state = BTreeMap::new();
        let create = Command {
            request_id: None,
            fence_term: None,
            txn: Txn { conditions: vec![Condition::ModRevision { key: "a".into(), revision: 0 }], ops: vec![put("a", "1")] },
        };
        let r = run(&state, 5, 1, &create);
        assert_eq!(r.response.outcome, Outcome::Applied { prev: vec![None] });
        assert_eq!(r.events[0].kind, EventKind::Put { created: true });
        commit(&mut state, &r);
        assert_eq!(state["a"].mod_revision, 5);

        // A second create fails: the key exists at revision 5.
        let again = run(&state, 6, 1, &create);
        assert_eq!(again.response.outcome, Outcome::ConditionFailed { index: 0, current: 5 });
        assert!(again.writes.is_empty() && again.events.is_empty());

        // CAS on the right revision succeeds and keeps create_revision.
        let cas = Command {
            request_id: None,
            fence_term: None,
            txn: Txn { conditions: vec![Condition::ModRevision { key: "a".into(), revision: 5 }], ops: vec![put("a", "2")] },
        };
        let r = run(&state, 7, 1, &cas);
        commit(&mut state, &r);
        assert_eq!((state["a"].create_revision, state["a"].mod_revision), (5, 7));
        assert_eq!(r.events[0].kind, EventKind::Put { created: false });
    }

    #[test]
    fn fenced_command_changes_nothing() {
        let state = BTreeMap::new();
        let cmd = Command { request_id: None, fence_term: Some(3), txn: Txn { conditions: vec![], ops: vec![put("a", "1")] } };
        let r = run(&state, 9, 4, &cmd);
        assert_eq!(r.response.outcome, Outcome::Fenced { proposed_term: 3, committed_term: 4 });
        assert!(r.writes.is_empty());
        assert!(run(&state, 9, 3, &cmd).writes.len() == 1);
    }

    #[test]
    fn delete_emits_last_value_and_absent_delete_emits_nothing() {
        let mut state = BTreeMap::new();
        let created = run(&state, 2, 1, &Command { request_id: None, fence_term: None, txn: Txn { conditions: vec![], ops: vec![put("k", "v")] } });
        commit(&mut state, &created);
        let del = Command { request_id: None, fence_term: None, txn: Txn { conditions: vec![], ops: vec![Op::Delete { key: "k".into() }, Op::Delete { key: "zz".into() }] } };
        let r = run(&state, 3, 1, &del);
        assert_eq!(r.events.len(), 1);
        assert_eq!((r.events[0].kind, r.events[0].value.as_slice()), (EventKind::Delete, b"v".as_slice()));
        assert_eq!(r.writes, vec![Write::Delete("k".into())]);
    }

    #[test]
    fn exists_condition_guards_writes() {
        let state = BTreeMap::new();
        let cmd = Command {
            request_id: None,
            fence_term: None,
            txn: Txn { conditions: vec![Condition::Exists { key: "ns".into() }], ops: vec![put("ns/pod", "x")] },
        };
        assert_eq!(run(&state, 1, 1, &cmd).response.outcome, Outcome::ConditionFailed { index: 0, current: 0 });
    }

    #[test]
    fn later_ops_see_earlier_ops_in_one_txn() {
        let state = BTreeMap::new();
        let cmd = Command { request_id: None, fence_term: None, txn: Txn { conditions: vec![], ops: vec![put("a", "1"), put("a", "2")] } };
        let r = run(&state, 4, 1, &cmd);
        assert_eq!(r.events[1].kind, EventKind::Put { created: false });
        assert_eq!(r.writes.len(), 1);
        match &r.writes[0] {
            Write::Put(kv) => assert_eq!(kv.value, b"2"),
            w => panic!("unexpected {w:?}"),
        }
    }
}
