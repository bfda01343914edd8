//! Checking a history: linearizability per key (each key a multi-writer register) with
//! `todc-utils`' Wing & Gong checker (with Lowe's memoisation), and, for a violation, the
//! shortest failing prefix and the operations around it; plus lost acknowledged writes read
//! against the final reads.
//!
//! How outcomes enter the check (as Jepsen does): an `ok` operation spans its invoke and
//! complete times; a write whose outcome is `unknown` may take effect at any time after its
//! invoke, so its completion is put after every other event; a `failed` write certainly did
//! not take effect and is left out (a read of its value then cannot be linearized, which is
//! what a wrongly reported failure looks like); reads that did not return say nothing and are
//! left out.

use std::collections::{BTreeMap, HashMap};

use todc_utils::linearizability::WGLChecker;
use todc_utils::linearizability::history::{Action, History};
use todc_utils::specifications::Specification;

use crate::history::{FINAL_CLIENT, Op, OpKind, Outcome};

/// A register operation as the checker sees it: values are numbered per key (0 is never used).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegisterOp {
    Write(u32),
    Read(Option<u32>),
}

/// A register that starts empty (a missing key).
#[derive(Debug)]
struct Register;

impl Specification for Register {
    type State = Option<u32>;
    type Operation = RegisterOp;

    fn init() -> Self::State {
        None
    }

    fn apply(op: &Self::Operation, state: &Self::State) -> (bool, Self::State) {
        match op {
            RegisterOp::Write(v) => (true, Some(*v)),
            RegisterOp::Read(r) => (r == state, *state),
        }
    }
}

/// A key whose history is not linearizable.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The key.
    pub key: String,
    /// The operation whose completion makes the shortest prefix of the key's history fail.
    pub op: Op,
    /// The key's operations that overlap it or precede it closely (up to 12 completed before
    /// it), in invoke order: the sub-history to read.
    pub window: Vec<Op>,
}

/// An acknowledged write that the final read of its key does not reflect: the final value was
/// written by a write that completed before this one was invoked (or the key was empty).
#[derive(Debug, Clone)]
pub struct LostWrite {
    /// The acknowledged write.
    pub write: Op,
    /// The final read.
    pub final_read: Op,
}

/// What checking a history found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Keys checked.
    pub keys: usize,
    /// Operations that entered the check (ok, and unknown writes).
    pub checked_ops: usize,
    /// Keys that are not linearizable.
    pub violations: Vec<Violation>,
    /// Acknowledged writes missing from the final reads.
    pub lost: Vec<LostWrite>,
}

impl Report {
    /// Whether the history passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.lost.is_empty()
    }
}

/// Checks every key of `history`.
pub fn check(history: &[Op]) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut report = Report {
        keys: by_key.len(),
        ..Report::default()
    };
    for (key, ops) in by_key {
        let key_check = KeyHistory::new(&ops);
        report.checked_ops += key_check.ops.len();
        if let Some(v) = key_check.violation(key) {
            report.violations.push(v);
        }
        report.lost.extend(lost_writes(&ops));
    }
    report
}

/// One key's operations as checker events.
struct KeyHistory<'a> {
    /// The operations that enter the check.
    ops: Vec<&'a Op>,
    /// Value numbers.
    ids: HashMap<&'a str, u32>,
    /// (time, 0 = invoke / 1 = complete, op index), sorted; unknown writes' completions are
    /// not here (they go after everything).
    events: Vec<(u64, u8, usize)>,
}

impl<'a> KeyHistory<'a> {
    fn new(all: &[&'a Op]) -> Self {
        let mut ids = HashMap::new();
        // Every written value gets a number, failed writes' too, so a read of one is seen.
        for op in all.iter().filter(|o| o.kind == OpKind::Write) {
            if let Some(v) = &op.value {
                let next = ids.len() as u32 + 1;
                ids.entry(v.as_str()).or_insert(next);
            }
        }
        let ops: Vec<&Op> = all
            .iter()
            .copied()
            .filter(|o| {
                matches!(
                    (o.kind, o.outcome),
                    (OpKind::Write, Outcome::Ok | Outcome::Unknown) | (OpKind::Read, Outcome::Ok)
                )
            })
            .collect();
        let mut events = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.invoke_ns, 0, i));
            if op.outcome == Outcome::Ok {
                // Invokes sort before completions at the same instant: the lenient reading.
                events.push((op.complete_ns.max(op.invoke_ns), 1, i));
            }
        }
        events.sort_unstable();
        Self { ops, ids, events }
    }

    fn register_op(&self, op: &Op) -> RegisterOp {
        let id = |v: &Option<String>| {
            v.as_deref()
                .map(|s| self.ids.get(s).copied().unwrap_or(u32::MAX))
        };
        match op.kind {
            // A write's value is always numbered.
            OpKind::Write => RegisterOp::Write(id(&op.value).unwrap_or(u32::MAX)),
            // A read of a value nobody wrote gets a number no write has.
            OpKind::Read => RegisterOp::Read(id(&op.value)),
        }
    }

    /// Whether the first `n` events (with writes not completed among them taken as unknown,
    /// and reads not completed among them left out) are linearizable.
    fn prefix_ok(&self, n: usize) -> bool {
        let prefix = &self.events[..n];
        let mut completed = vec![false; self.ops.len()];
        for &(_, what, i) in prefix {
            if what == 1 {
                completed[i] = true;
            }
        }
        let mut actions: Vec<(usize, Action<RegisterOp>)> = Vec::with_capacity(n + 8);
        let mut pending = Vec::new();
        for &(_, what, i) in prefix {
            let op = self.ops[i];
            let reg = self.register_op(op);
            match what {
                0 if completed[i] => actions.push((i, Action::Call(reg))),
                0 if op.kind == OpKind::Write => {
                    actions.push((i, Action::Call(reg)));
                    pending.push((i, reg));
                }
                0 => {}
                _ => actions.push((i, Action::Response(reg))),
            }
        }
        for (i, reg) in pending {
            actions.push((i, Action::Response(reg)));
        }
        if actions.is_empty() {
            return true;
        }
        WGLChecker::<Register>::is_linearizable(History::from_actions(actions))
    }

    /// The violation in this key's history, if any.
    fn violation(&self, key: &str) -> Option<Violation> {
        if self.prefix_ok(self.events.len()) {
            return None;
        }
        // Linearizability is prefix-closed: find the shortest failing prefix.
        let (mut lo, mut hi) = (0usize, self.events.len());
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.prefix_ok(mid) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (at, _, i) = self.events[hi - 1];
        let op = self.ops[i].clone();
        let mut earlier: Vec<&Op> = self
            .ops
            .iter()
            .copied()
            .filter(|o| o.outcome == Outcome::Ok && o.complete_ns < op.invoke_ns)
            .collect();
        earlier.sort_by_key(|o| o.complete_ns);
        let keep_from = earlier.len().saturating_sub(12);
        let mut window: Vec<Op> = earlier[keep_from..].iter().map(|o| (*o).clone()).collect();
        window.extend(
            self.ops
                .iter()
                .filter(|o| o.complete_ns >= op.invoke_ns || o.outcome == Outcome::Unknown)
                .filter(|o| o.invoke_ns <= at)
                .map(|o| (*o).clone()),
        );
        window.sort_by_key(|o| o.invoke_ns);
        window.dedup();
        Some(Violation {
            key: key.to_owned(),
            op,
            window,
        })
    }
}

/// Acknowledged writes that the key's final reads do not reflect.
fn lost_writes(ops: &[&Op]) -> Vec<LostWrite> {
    let Some(final_read) = ops
        .iter()
        .filter(|o| o.client == FINAL_CLIENT && o.kind == OpKind::Read && o.outcome == Outcome::Ok)
        .max_by_key(|o| o.complete_ns)
    else {
        return Vec::new();
    };
    // When the write the final read saw completed (a value nobody wrote, or an empty key,
    // counts as written before everything).
    let seen_done = final_read.value.as_ref().and_then(|v| {
        ops.iter()
            .find(|o| o.kind == OpKind::Write && o.value.as_ref() == Some(v))
            .map(|w| match w.outcome {
                Outcome::Ok => w.complete_ns,
                // An unknown write took effect no later than the final read.
                _ => final_read.complete_ns,
            })
    });
    let seen_done = seen_done.unwrap_or(0);
    ops.iter()
        .filter(|o| {
            o.kind == OpKind::Write
                && o.outcome == Outcome::Ok
                && o.invoke_ns > seen_done
                && o.complete_ns < final_read.invoke_ns
                && o.value != final_read.value
        })
        .map(|w| LostWrite {
            write: (*w).clone(),
            final_read: (*final_read).clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Api;

    fn op(client: u32, kind: OpKind, value: Option<&str>, t: (u64, u64), outcome: Outcome) -> Op {
        Op {
            client,
            api: Api::Http,
            node: 1,
            key: "k".into(),
            kind,
            value: value.map(str::to_owned),
            invoke_ns: t.0,
            complete_ns: t.1,
            outcome,
            error: None,
        }
    }

    fn w(c: u32, v: &str, t: (u64, u64)) -> Op {
        op(c, OpKind::Write, Some(v), t, Outcome::Ok)
    }

    fn r(c: u32, v: Option<&str>, t: (u64, u64)) -> Op {
        op(c, OpKind::Read, v, t, Outcome::Ok)
    }

    #[test]
    fn sequential_and_concurrent_histories_pass() {
        let h = vec![
            r(0, None, (0, 1)),
            w(0, "a", (2, 3)),
            r(1, Some("a"), (4, 5)),
            // Two concurrent writes read in either order while they overlap.
            w(0, "b", (10, 20)),
            w(1, "c", (11, 21)),
            r(2, Some("c"), (12, 13)),
            r(2, Some("b"), (14, 15)),
            r(3, Some("b"), (22, 23)),
        ];
        let report = check(&h);
        assert!(report.passed(), "{report:?}");
        assert_eq!(report.keys, 1);
        assert_eq!(report.checked_ops, 8);
    }

    #[test]
    fn a_stale_read_is_a_violation_with_its_window() {
        let h = vec![
            w(0, "a", (0, 1)),
            w(0, "b", (2, 3)),
            r(1, Some("b"), (4, 5)),
            r(2, Some("a"), (6, 7)),
        ];
        let report = check(&h);
        assert_eq!(report.violations.len(), 1, "{report:?}");
        let v = &report.violations[0];
        assert_eq!(v.op.value.as_deref(), Some("a"));
        assert_eq!(v.op.invoke_ns, 6);
        assert!(v.window.iter().any(|o| o.value.as_deref() == Some("b")));
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let mut unknown = w(0, "x", (0, 5));
        unknown.outcome = Outcome::Unknown;
        // Read much later: x took effect after the read of a (allowed: its answer never came).
        let late = vec![
            w(1, "a", (1, 2)),
            unknown.clone(),
            r(2, Some("a"), (10, 11)),
            r(2, Some("x"), (20, 21)),
        ];
        assert!(check(&late).passed());
        let never = vec![w(1, "a", (1, 2)), unknown, r(2, Some("a"), (30, 31))];
        assert!(check(&never).passed());
    }

    #[test]
    fn a_read_of_a_failed_write_is_a_violation() {
        let mut failed = w(0, "x", (0, 5));
        failed.outcome = Outcome::Failed;
        let h = vec![failed, r(1, Some("x"), (6, 7))];
        assert_eq!(check(&h).violations.len(), 1);
    }

    #[test]
    fn a_read_before_the_write_was_invoked_is_a_violation() {
        let h = vec![r(1, Some("x"), (0, 1)), w(0, "x", (5, 6))];
        assert_eq!(check(&h).violations.len(), 1);
    }

    #[test]
    fn a_final_read_missing_an_acknowledged_write_is_a_lost_write() {
        let h = vec![
            w(0, "a", (0, 1)),
            w(0, "b", (2, 3)),
            op(FINAL_CLIENT, OpKind::Read, Some("a"), (10, 11), Outcome::Ok),
        ];
        let report = check(&h);
        assert_eq!(report.lost.len(), 1, "{report:?}");
        assert_eq!(report.lost[0].write.value.as_deref(), Some("b"));
        // The same history is not linearizable either.
        assert_eq!(report.violations.len(), 1);
        let ok = vec![
            w(0, "a", (0, 1)),
            w(0, "b", (2, 3)),
            op(FINAL_CLIENT, OpKind::Read, Some("b"), (10, 11), Outcome::Ok),
        ];
        assert!(check(&ok).passed());
    }

    #[test]
    fn a_long_history_of_many_writers_checks_quickly() {
        // 8 writers and readers over 400 operations with overlapping intervals.
        let mut h = Vec::new();
        let mut last = None::<String>;
        for i in 0..400u64 {
            let t = i * 10;
            if i % 2 == 0 {
                let v = format!("v{i}");
                h.push(w((i % 8) as u32, &v, (t, t + 15)));
                last = Some(v);
            } else {
                h.push(r((i % 8) as u32, last.as_deref(), (t, t + 15)));
            }
        }
        let report = check(&h);
        assert!(report.passed(), "{report:?}");
    }
}
