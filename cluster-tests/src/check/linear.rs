//! Linearizability of one key's history against a register model with revisions, by
//! Wing & Gong's search with Lowe's memoization (the algorithm Porcupine and Knossos use).
//! Pure: a history in, a verdict out.
//!
//! Hand-written rather than a crate: the Rust ports of Porcupine found on crates.io are
//! unmaintained and none takes a nondeterministic model, which unknown outcomes (timeouts)
//! need: an operation whose outcome is unknown may have taken effect, or not, at any
//! point after it was invoked.

use std::collections::HashSet;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Create { value: String },
    Read,
    /// Compare-and-set on the resourceVersion.
    Cas { expect: u64, value: String },
    Delete,
}

/// What the client was told. `Unknown`: timed out or the server could not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ret {
    Created { rv: u64 },
    AlreadyExists,
    Value(Option<(String, u64)>),
    Updated { rv: u64 },
    Conflict,
    NotFound,
    Deleted { rv: u64 },
    Unknown,
}

/// One operation: invoked at `start`, answered at `end` (None: never, i.e. unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub start: u64,
    pub end: Option<u64>,
    pub call: Call,
    pub ret: Ret,
}

/// The register: its value and revision (None when written by an op of unknown outcome
/// and not yet observed), and the highest revision linearized so far.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct State {
    reg: Option<(String, Option<u64>)>,
    last_rv: u64,
}

/// Every state `op` can lead to from `s` (empty: `op` cannot happen in `s`).
fn step(s: &State, op: &Op) -> Vec<State> {
    let same = || vec![s.clone()];
    let set = |value: &str, rv: Option<u64>| State { reg: Some((value.to_string(), rv)), last_rv: rv.unwrap_or(s.last_rv).max(s.last_rv) };
    let rv_matches = |expect: u64| matches!(&s.reg, Some((_, None))) || matches!(&s.reg, Some((_, Some(r))) if *r == expect);
    match (&op.call, &op.ret) {
        (Call::Create { value }, Ret::Created { rv }) if s.reg.is_none() && *rv > s.last_rv => vec![set(value, Some(*rv))],
        (Call::Create { .. }, Ret::AlreadyExists) if s.reg.is_some() => same(),
        (Call::Create { value }, Ret::Unknown) if s.reg.is_none() => vec![set(value, None), s.clone()],
        (Call::Create { .. }, Ret::Unknown) => same(),
        (Call::Read, Ret::Value(None)) if s.reg.is_none() => same(),
        (Call::Read, Ret::Value(Some((v, rv)))) => match &s.reg {
            Some((cur, Some(r))) if cur == v && r == rv => same(),
            Some((cur, None)) if cur == v && *rv > s.last_rv => vec![State { reg: Some((cur.clone(), Some(*rv))), last_rv: *rv }],
            _ => vec![],
        },
        (Call::Read, Ret::Unknown) => same(),
        (Call::Cas { expect, value }, Ret::Updated { rv }) if rv_matches(*expect) && *rv > s.last_rv => vec![set(value, Some(*rv))],
        (Call::Cas { expect, .. }, Ret::Conflict) if s.reg.is_some() && !matches!(&s.reg, Some((_, Some(r))) if r == expect) => same(),
        (Call::Cas { .. }, Ret::NotFound) if s.reg.is_none() => same(),
        (Call::Cas { expect, value }, Ret::Unknown) if rv_matches(*expect) => vec![set(value, None), s.clone()],
        (Call::Cas { .. }, Ret::Unknown) => same(),
        (Call::Delete, Ret::Deleted { rv }) if s.reg.is_some() && *rv > s.last_rv => vec![State { reg: None, last_rv: *rv }],
        (Call::Delete, Ret::NotFound) if s.reg.is_none() => same(),
        (Call::Delete, Ret::Unknown) if s.reg.is_some() => vec![State { reg: None, last_rv: s.last_rv }, s.clone()],
        (Call::Delete, Ret::Unknown) => same(),
        _ => vec![],
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order explains the history; the longest prefix found and the op that could not follow.
    Violation { linearized: usize, stuck_at: Op },
    /// The search hit its step budget.
    Inconclusive,
}

/// Check one key's history, starting from an absent key.
pub fn check(history: &[Op], budget: u64) -> Verdict {
    // Events: (time, is_return, op). Calls sort before returns at equal times (concurrent).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(history.len() * 2);
    for (i, op) in history.iter().enumerate() {
        events.push((op.start, false, i));
        events.push((op.end.unwrap_or(u64::MAX), true, i));
    }
    events.sort_by_key(|(t, ret, i)| (*t, *ret, *i));
    let n = events.len();
    // Doubly linked list over events, with a head sentinel at index n.
    let mut next: Vec<usize> = (1..=n).collect();
    next.push(0);
    let mut prev: Vec<usize> = (0..n).map(|i| if i == 0 { n } else { i - 1 }).collect();
    prev.push(n);
    next[n] = if n == 0 { n } else { 0 };
    if n > 0 {
        next[n - 1] = n;
    }
    let mut ret_pos = vec![0usize; history.len()];
    for (pos, (_, is_ret, i)) in events.iter().enumerate() {
        if *is_ret {
            ret_pos[*i] = pos;
        }
    }
    let lift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, pos: usize| {
        let (p, q) = (prev[pos], next[pos]);
        next[p] = q;
        prev[q] = p;
    };
    let unlift = |next: &mut Vec<usize>, prev: &mut Vec<usize>, pos: usize| {
        let (p, q) = (prev[pos], next[pos]);
        next[p] = pos;
        prev[q] = pos;
    };

    let words = history.len().div_ceil(64).max(1);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, State)> = HashSet::new();
    // Each frame: the call position lifted, the state before it, and the choice index used.
    let mut stack: Vec<(usize, State, usize)> = Vec::new();
    let mut state = State { reg: None, last_rv: 0 };
    let mut pos = next[n];
    let mut choice = 0usize;
    let mut steps = 0u64;
    let mut best = (0usize, None::<usize>);
    loop {
        steps += 1;
        if steps > budget {
            return Verdict::Inconclusive;
        }
        if pos == n {
            // Reached the end with every entry lifted?
            if next[n] == n {
                return Verdict::Linearizable;
            }
        }
        let is_call = pos != n && !events[pos].1;
        if is_call {
            let i = events[pos].2;
            let options = step(&state, &history[i]);
            let mut advanced = false;
            while choice < options.len() {
                let candidate = options[choice].clone();
                let mut bits = linearized.clone();
                bits[i / 64] |= 1 << (i % 64);
                if cache.insert((bits.clone(), candidate.clone())) {
                    stack.push((pos, state.clone(), choice));
                    lift(&mut next, &mut prev, pos);
                    lift(&mut next, &mut prev, ret_pos[i]);
                    linearized = bits;
                    state = candidate;
                    pos = next[n];
                    choice = 0;
                    advanced = true;
                    if stack.len() > best.0 {
                        best = (stack.len(), None);
                    }
                    break;
                }
                choice += 1;
            }
            if !advanced {
                pos = next[pos];
                choice = 0;
            }
            continue;
        }
        // A return whose call is not linearized (or the end): backtrack.
        if pos != n && stack.len() >= best.0 {
            best = (stack.len(), Some(events[pos].2));
        }
        let Some((call_pos, old_state, old_choice)) = stack.pop() else {
            let stuck = best.1.or_else(|| (pos != n).then(|| events[pos].2)).unwrap_or(0);
            return Verdict::Violation { linearized: best.0, stuck_at: history[stuck].clone() };
        };
        let i = events[call_pos].2;
        unlift(&mut next, &mut prev, ret_pos[i]);
        unlift(&mut next, &mut prev, call_pos);
        linearized[i / 64] &= !(1 << (i % 64));
        state = old_state;
        pos = call_pos;
        choice = old_choice + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(start: u64, end: u64, call: Call, ret: Ret) -> Op {
        Op { start, end: Some(end), call, ret }
    }

    fn create(v: &str) -> Call {
        Call::Create { value: v.into() }
    }

    fn val(v: &str, rv: u64) -> Ret {
        Ret::Value(Some((v.into(), rv)))
    }

    const BUDGET: u64 = 1_000_000;

    #[test]
    fn sequential_history_is_linearizable() {
        let h = vec![
            op(0, 1, create("a"), Ret::Created { rv: 5 }),
            op(2, 3, Call::Read, val("a", 5)),
            op(4, 5, Call::Cas { expect: 5, value: "b".into() }, Ret::Updated { rv: 9 }),
            op(6, 7, Call::Cas { expect: 5, value: "c".into() }, Ret::Conflict),
            op(8, 9, Call::Delete, Ret::Deleted { rv: 12 }),
            op(10, 11, Call::Read, Ret::Value(None)),
        ];
        assert_eq!(check(&h, BUDGET), Verdict::Linearizable);
    }

    #[test]
    fn lost_write_is_caught() {
        // The create was acknowledged, then a later read finds nothing.
        let h = vec![op(0, 1, create("a"), Ret::Created { rv: 5 }), op(2, 3, Call::Read, Ret::Value(None))];
        assert!(matches!(check(&h, BUDGET), Verdict::Violation { .. }));
    }

    #[test]
    fn stale_read_is_caught() {
        let h = vec![
            op(0, 1, create("a"), Ret::Created { rv: 5 }),
            op(2, 3, Call::Cas { expect: 5, value: "b".into() }, Ret::Updated { rv: 7 }),
            op(4, 5, Call::Read, val("a", 5)),
        ];
        assert!(matches!(check(&h, BUDGET), Verdict::Violation { .. }));
    }

    #[test]
    fn concurrent_read_may_see_either_side() {
        for seen in [Ret::Value(None), val("a", 5)] {
            let h = vec![op(0, 10, create("a"), Ret::Created { rv: 5 }), op(1, 9, Call::Read, seen)];
            assert_eq!(check(&h, BUDGET), Verdict::Linearizable);
        }
    }

    #[test]
    fn unknown_outcomes_may_or_may_not_apply() {
        let unknown = Op { start: 0, end: None, call: create("a"), ret: Ret::Unknown };
        // Seen later: it applied (and its revision is learnt from the read).
        assert_eq!(check(&[unknown.clone(), op(5, 6, Call::Read, val("a", 3))], BUDGET), Verdict::Linearizable);
        // Never seen: it did not.
        assert_eq!(check(&[unknown.clone(), op(5, 6, Call::Read, Ret::Value(None))], BUDGET), Verdict::Linearizable);
        // But it cannot apply before it was invoked.
        let late = Op { start: 10, end: None, call: create("a"), ret: Ret::Unknown };
        assert!(matches!(check(&[late, op(5, 6, Call::Read, val("a", 3))], BUDGET), Verdict::Violation { .. }));
    }

    #[test]
    fn revisions_must_grow_along_the_order() {
        // Two sequential acknowledged updates whose revisions go backwards.
        let h = vec![
            op(0, 1, create("a"), Ret::Created { rv: 5 }),
            op(2, 3, Call::Cas { expect: 5, value: "b".into() }, Ret::Updated { rv: 4 }),
        ];
        assert!(matches!(check(&h, BUDGET), Verdict::Violation { .. }));
    }

    #[test]
    fn failed_create_needs_an_existing_key() {
        let h = vec![op(0, 1, create("a"), Ret::AlreadyExists)];
        assert!(matches!(check(&h, BUDGET), Verdict::Violation { .. }));
    }
}
