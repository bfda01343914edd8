//! A history checker for single-writer registers: the workload of the kill -9 test.
//!
//! Each key has one writer that writes the values 1, 2, 3, … in order, each write starting
//! after the previous one ended. A write's outcome is *acknowledged* (the store said it is
//! done) or *unknown* (an error or a timeout: it may or may not have been applied). Reads are
//! linearizable reads that returned a value (failed reads carry no information and are not
//! recorded). After the run, each node's copy of each key is read once more.
//!
//! For such a history, linearizability comes down to a few inequalities, which [`check`]
//! tests (one [`Violation`] each):
//!
//! - a read returns no value older than the newest write acknowledged before the read began
//!   ([`Violation::StaleRead`]: an acknowledged write was lost or overwritten by an older one);
//! - a read returns no value whose write had not begun when the read ended
//!   ([`Violation::ReadFromTheFuture`]: a phantom or corrupted value);
//! - of two reads one after the other, the later returns no older value
//!   ([`Violation::Regressed`]: an old write applied again after a newer one, or a read from a
//!   node that fell behind);
//! - the final value on every node is the newest acknowledged write or a later write whose
//!   outcome is unknown ([`Violation::LostWrite`], [`Violation::PhantomWrite`]), and all nodes
//!   agree ([`Violation::Diverged`]).
//!
//! A duplicated write (one applied twice) is caught when the copy lands after a newer write:
//! the value goes back, which breaks the third or the fourth rule. A copy applied right after
//! its original leaves the register as it was and is, for a register, no error.
//!
//! Pure: no IO, no clock. Times are whatever monotonic instants the caller recorded.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

/// What happened to one write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The store acknowledged it, at this instant.
    Acknowledged(Instant),
    /// The caller got an error or gave up: it may or may not have been applied.
    Unknown,
}

/// One write of `value` to `key`.
#[derive(Debug, Clone)]
pub struct Write {
    /// The key.
    pub key: String,
    /// The value: the write's sequence number for its key, from 1.
    pub value: u64,
    /// When the writer sent it.
    pub invoked: Instant,
    /// What became of it.
    pub outcome: Outcome,
}

/// One successful linearizable read.
#[derive(Debug, Clone)]
pub struct Read {
    /// The key.
    pub key: String,
    /// What it returned (`None`: the key was absent).
    pub value: Option<u64>,
    /// When it was sent.
    pub invoked: Instant,
    /// When its answer arrived.
    pub completed: Instant,
}

/// The value node `node` holds for `key` once everything has quiesced.
#[derive(Debug, Clone)]
pub struct Final {
    /// The node read.
    pub node: u64,
    /// The key.
    pub key: String,
    /// Its value there.
    pub value: Option<u64>,
}

/// A recorded run.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every write, in any order.
    pub writes: Vec<Write>,
    /// Every successful read, in any order.
    pub reads: Vec<Read>,
    /// The final reads, one per node and key.
    pub finals: Vec<Final>,
}

/// A broken rule, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// A write history the checker cannot judge: values not 1, 2, 3, … in invocation order, or
    /// a write begun before the previous one ended.
    BadWorkload {
        /// The key.
        key: String,
        /// What is wrong.
        why: String,
    },
    /// A read returned an older value than a write acknowledged before the read began.
    StaleRead {
        /// The key.
        key: String,
        /// What the read returned.
        got: Option<u64>,
        /// The newest value acknowledged before the read began.
        acknowledged: u64,
    },
    /// A read returned a value no write had begun to write before the read ended.
    ReadFromTheFuture {
        /// The key.
        key: String,
        /// What the read returned.
        got: u64,
        /// The newest value whose write had begun.
        newest_begun: Option<u64>,
    },
    /// A read returned an older value than a read that ended before it began.
    Regressed {
        /// The key.
        key: String,
        /// The earlier read's value.
        earlier: Option<u64>,
        /// The later read's value.
        later: Option<u64>,
    },
    /// A node's final value is older than the newest acknowledged write.
    LostWrite {
        /// The node.
        node: u64,
        /// The key.
        key: String,
        /// Its final value.
        got: Option<u64>,
        /// The newest acknowledged value.
        acknowledged: u64,
    },
    /// A node's final value was never written.
    PhantomWrite {
        /// The node.
        node: u64,
        /// The key.
        key: String,
        /// Its final value.
        got: u64,
    },
    /// Two nodes ended with different values.
    Diverged {
        /// The key.
        key: String,
        /// Each node's value.
        values: Vec<(u64, Option<u64>)>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// What [`check`] found in a history that passed: enough to say the test exercised something.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Acknowledged writes.
    pub acknowledged: usize,
    /// Writes whose outcome is unknown.
    pub unknown: usize,
    /// Successful reads checked.
    pub reads: usize,
    /// Final values checked.
    pub finals: usize,
}

/// One key's writes, in value order.
struct KeyWrites<'a> {
    writes: Vec<&'a Write>,
}

impl KeyWrites<'_> {
    /// The newest value acknowledged strictly before `t`.
    fn acknowledged_before(&self, t: Instant) -> u64 {
        self.writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Acknowledged(at) if at < t))
            .map(|w| w.value)
            .max()
            .unwrap_or(0)
    }

    /// The newest value whose write began at or before `t`.
    fn begun_by(&self, t: Instant) -> Option<u64> {
        self.writes
            .iter()
            .filter(|w| w.invoked <= t)
            .map(|w| w.value)
            .max()
    }

    /// The newest acknowledged value over the whole run.
    fn newest_acknowledged(&self) -> u64 {
        self.writes
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Acknowledged(_)))
            .map(|w| w.value)
            .max()
            .unwrap_or(0)
    }
}

/// Checks `history` against the rules in the module docs. Returns every violation found (none:
/// `Ok` with counts).
pub fn check(history: &History) -> Result<Summary, Vec<Violation>> {
    let mut violations = Vec::new();
    let mut by_key: BTreeMap<&str, KeyWrites<'_>> = BTreeMap::new();
    for w in &history.writes {
        by_key
            .entry(&w.key)
            .or_insert_with(|| KeyWrites { writes: Vec::new() })
            .writes
            .push(w);
    }
    for (key, kw) in &mut by_key {
        kw.writes.sort_by_key(|w| w.invoked);
        if let Some(first) = kw.writes.first()
            && first.value != 1
        {
            violations.push(Violation::BadWorkload {
                key: (*key).to_owned(),
                why: format!("the first write is of {}, not 1", first.value),
            });
        }
        for pair in kw.writes.windows(2) {
            let ended = match pair[0].outcome {
                Outcome::Acknowledged(at) => at <= pair[1].invoked,
                // An unknown outcome ended when the writer gave up, which it recorded by going
                // on; nothing to check.
                Outcome::Unknown => true,
            };
            if pair[1].value != pair[0].value + 1 || !ended {
                violations.push(Violation::BadWorkload {
                    key: (*key).to_owned(),
                    why: format!(
                        "writes of {} then {} (the second must be the next value and begin after the first ended)",
                        pair[0].value, pair[1].value
                    ),
                });
            }
        }
    }
    let empty = KeyWrites { writes: Vec::new() };
    let writes_of = |key: &str| by_key.get(key).unwrap_or(&empty);

    // Reads against writes.
    for r in &history.reads {
        let kw = writes_of(&r.key);
        let acknowledged = kw.acknowledged_before(r.invoked);
        if r.value.unwrap_or(0) < acknowledged {
            violations.push(Violation::StaleRead {
                key: r.key.clone(),
                got: r.value,
                acknowledged,
            });
        }
        if let Some(got) = r.value {
            let newest_begun = kw.begun_by(r.completed);
            if newest_begun.is_none_or(|n| got > n) || got == 0 {
                violations.push(Violation::ReadFromTheFuture {
                    key: r.key.clone(),
                    got,
                    newest_begun,
                });
            }
        }
    }

    // Reads against reads: sorted by completion, each read must return at least the largest
    // value of the reads that completed before it began.
    let mut reads_by_key: BTreeMap<&str, Vec<&Read>> = BTreeMap::new();
    for r in &history.reads {
        reads_by_key.entry(&r.key).or_default().push(r);
    }
    for (key, mut reads) in reads_by_key {
        reads.sort_by_key(|r| r.completed);
        for later in &reads {
            // The newest value returned by a read that completed before `later` began.
            let earlier = reads
                .iter()
                .take_while(|r| r.completed < later.invoked)
                .max_by_key(|r| r.value);
            if let Some(earlier) = earlier
                && earlier.value > later.value
            {
                violations.push(Violation::Regressed {
                    key: key.to_owned(),
                    earlier: earlier.value,
                    later: later.value,
                });
            }
        }
    }

    // Final values.
    let mut finals_by_key: BTreeMap<&str, Vec<&Final>> = BTreeMap::new();
    for f in &history.finals {
        finals_by_key.entry(&f.key).or_default().push(f);
    }
    for (key, finals) in &finals_by_key {
        let kw = writes_of(key);
        let acknowledged = kw.newest_acknowledged();
        let newest = kw.writes.last().map(|w| w.value);
        for f in finals {
            if f.value.unwrap_or(0) < acknowledged {
                violations.push(Violation::LostWrite {
                    node: f.node,
                    key: f.key.clone(),
                    got: f.value,
                    acknowledged,
                });
            }
            if let Some(got) = f.value
                && (got == 0 || newest.is_none_or(|n| got > n))
            {
                violations.push(Violation::PhantomWrite {
                    node: f.node,
                    key: f.key.clone(),
                    got,
                });
            }
        }
        if finals.iter().any(|f| f.value != finals[0].value) {
            violations.push(Violation::Diverged {
                key: (*key).to_owned(),
                values: finals.iter().map(|f| (f.node, f.value)).collect(),
            });
        }
    }
    // Every written key must have been read at the end, or a lost key would go unnoticed.
    for key in by_key.keys() {
        if !finals_by_key.contains_key(key) && by_key[key].newest_acknowledged() > 0 {
            violations.push(Violation::LostWrite {
                node: 0,
                key: (*key).to_owned(),
                got: None,
                acknowledged: by_key[key].newest_acknowledged(),
            });
        }
    }

    if violations.is_empty() {
        Ok(Summary {
            acknowledged: history
                .writes
                .iter()
                .filter(|w| matches!(w.outcome, Outcome::Acknowledged(_)))
                .count(),
            unknown: history
                .writes
                .iter()
                .filter(|w| w.outcome == Outcome::Unknown)
                .count(),
            reads: history.reads.len(),
            finals: history.finals.len(),
        })
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Instants `ms` milliseconds after a fixed origin.
    struct Clock(Instant);

    impl Clock {
        fn at(&self, ms: u64) -> Instant {
            self.0 + Duration::from_millis(ms)
        }
    }

    fn write(c: &Clock, value: u64, invoked: u64, acked: Option<u64>) -> Write {
        Write {
            key: "k".into(),
            value,
            invoked: c.at(invoked),
            outcome: acked.map_or(Outcome::Unknown, |t| Outcome::Acknowledged(c.at(t))),
        }
    }

    fn read(c: &Clock, value: Option<u64>, invoked: u64, completed: u64) -> Read {
        Read {
            key: "k".into(),
            value,
            invoked: c.at(invoked),
            completed: c.at(completed),
        }
    }

    fn finals(values: &[Option<u64>]) -> Vec<Final> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| Final {
                node: i as u64 + 1,
                key: "k".into(),
                value: *v,
            })
            .collect()
    }

    /// Writes 1 (acked at 10), 2 (unknown, begun at 20), 3 (acked at 40, begun at 30).
    fn base(c: &Clock) -> History {
        History {
            writes: vec![
                write(c, 1, 0, Some(10)),
                write(c, 2, 20, None),
                write(c, 3, 30, Some(40)),
            ],
            reads: Vec::new(),
            finals: finals(&[Some(3), Some(3), Some(3)]),
        }
    }

    #[test]
    fn a_correct_history_passes_with_counts() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.reads = vec![
            read(&c, None, 0, 5),      // before any ack
            read(&c, Some(1), 5, 15),  // overlaps the first ack
            read(&c, Some(2), 16, 25), // the unknown write may show
            read(&c, Some(3), 35, 50),
        ];
        let s = check(&h).unwrap();
        assert_eq!(
            s,
            Summary {
                acknowledged: 2,
                unknown: 1,
                reads: 4,
                finals: 3
            }
        );
    }

    #[test]
    fn a_final_value_older_than_an_acknowledged_write_is_a_lost_write() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.finals = finals(&[Some(3), Some(2), Some(3)]);
        let v = check(&h).unwrap_err();
        assert!(v.contains(&Violation::LostWrite {
            node: 2,
            key: "k".into(),
            got: Some(2),
            acknowledged: 3
        }));
        assert!(v.iter().any(|v| matches!(v, Violation::Diverged { .. })));
    }

    #[test]
    fn a_missing_key_is_a_lost_write() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.finals = finals(&[None, Some(3), Some(3)]);
        assert!(matches!(
            check(&h).unwrap_err()[0],
            Violation::LostWrite { got: None, .. }
        ));
        h.finals.clear();
        assert!(matches!(
            check(&h).unwrap_err()[0],
            Violation::LostWrite { node: 0, .. }
        ));
    }

    #[test]
    fn an_unknown_last_write_may_or_may_not_be_there() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.writes.push(write(&c, 4, 50, None));
        h.finals = finals(&[Some(4), Some(4), Some(4)]);
        assert!(check(&h).is_ok());
        h.finals = finals(&[Some(3), Some(3), Some(3)]);
        assert!(check(&h).is_ok());
        h.finals = finals(&[Some(5), Some(5), Some(5)]);
        assert!(matches!(
            check(&h).unwrap_err()[0],
            Violation::PhantomWrite { got: 5, .. }
        ));
    }

    #[test]
    fn a_stale_read_is_caught() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.reads = vec![read(&c, Some(1), 45, 50)];
        assert_eq!(
            check(&h).unwrap_err(),
            vec![Violation::StaleRead {
                key: "k".into(),
                got: Some(1),
                acknowledged: 3
            }]
        );
    }

    #[test]
    fn a_read_of_a_value_not_yet_written_is_caught() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.reads = vec![read(&c, Some(3), 21, 25)];
        assert_eq!(
            check(&h).unwrap_err(),
            vec![Violation::ReadFromTheFuture {
                key: "k".into(),
                got: 3,
                newest_begun: Some(2)
            }]
        );
    }

    #[test]
    fn a_value_going_back_between_reads_is_caught() {
        // Two reads during the unknown write: 2, then 1 (as if write 1 were applied again).
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.reads = vec![read(&c, Some(2), 21, 24), read(&c, Some(1), 25, 28)];
        assert_eq!(
            check(&h).unwrap_err(),
            vec![Violation::Regressed {
                key: "k".into(),
                earlier: Some(2),
                later: Some(1)
            }]
        );
        // Overlapping reads may see either order.
        h.reads = vec![read(&c, Some(2), 21, 26), read(&c, Some(1), 22, 28)];
        assert!(check(&h).is_ok());
    }

    #[test]
    fn a_workload_that_is_not_sequential_is_refused() {
        let c = Clock(Instant::now());
        let mut h = base(&c);
        h.writes.push(write(&c, 5, 60, Some(70)));
        assert!(matches!(
            check(&h).unwrap_err()[0],
            Violation::BadWorkload { .. }
        ));
        let mut h = base(&c);
        // Write 2 begins before write 1 was acknowledged.
        h.writes[0] = write(&c, 1, 0, Some(25));
        assert!(matches!(
            check(&h).unwrap_err()[0],
            Violation::BadWorkload { .. }
        ));
    }
}
