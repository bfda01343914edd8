//! The run's summary: operations by outcome, availability on each side of each fault, time to
//! recover after each heal, and what the checker found, as text (and JSON beside it).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::Report;
use crate::history::{Api, FINAL_CLIENT, Op, OpKind, Outcome};
use crate::nemesis::FaultRecord;
use crate::partition::NodeId;

/// Operations invoked this soon after a fault began are left out of its availability: the
/// majority needs up to one election timeout (raft's randomised 1–2 s at peerwire-kv's
/// defaults) and a vote to have a leader again.
pub const ELECTION_GRACE_NS: u64 = 2_000_000_000;

/// Outcomes of a set of operations.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    /// Succeeded.
    pub ok: u64,
    /// Certainly not applied.
    pub failed: u64,
    /// Unknown.
    pub unknown: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        match o {
            Outcome::Ok => self.ok += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::Unknown => self.unknown += 1,
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.ok + self.failed + self.unknown
    }

    /// The share that succeeded, in percent (`None` if there were none).
    pub fn ok_percent(&self) -> Option<f64> {
        (self.total() > 0).then(|| 100.0 * self.ok as f64 / self.total() as f64)
    }
}

/// How one fault's sides fared.
#[derive(Debug, Clone, Serialize)]
pub struct SideAvailability {
    /// The fault.
    pub fault: FaultRecord,
    /// Operations sent to the majority side's nodes after the grace and before the heal.
    pub majority: Counts,
    /// The same for the minority side.
    pub minority: Counts,
    /// How the minority side's operations that did not succeed ended: the error's first words,
    /// with counts (a clear error from the node, or the client giving up).
    pub minority_errors: BTreeMap<String, u64>,
}

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: NodeId,
    /// Whether every lane ran mutual TLS.
    pub tls: bool,
    /// Seconds the workload ran.
    pub secs: f64,
    /// Outcomes by `api/kind` (`http/write`, `native/read`, ...), final reads left out.
    pub outcomes: BTreeMap<String, Counts>,
    /// Availability per fault that has sides.
    pub sides: Vec<SideAvailability>,
    /// Faults that had no sides (bridge, flap, mixed), with their recovery.
    pub others: Vec<FaultRecord>,
    /// Keys checked, operations checked.
    pub keys: usize,
    /// Operations that entered the linearizability check.
    pub checked_ops: usize,
    /// Keys with a linearizability violation.
    pub violations: usize,
    /// Acknowledged writes missing from the final reads.
    pub lost_writes: usize,
    /// Nodes whose local value differed from the final read after catching up.
    pub replica_disagreements: usize,
    /// Nodes that exited on their own.
    pub crashes: Vec<String>,
    /// Whether everything held.
    pub passed: bool,
}

/// Inputs of [`summarise`] besides the history.
#[derive(Debug)]
pub struct RunFacts<'a> {
    /// The seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: NodeId,
    /// TLS on.
    pub tls: bool,
    /// Workload seconds.
    pub secs: f64,
    /// The faults.
    pub faults: &'a [FaultRecord],
    /// What the checker found.
    pub report: &'a Report,
    /// Replica disagreements found.
    pub disagreements: usize,
    /// Nodes that exited on their own.
    pub crashes: Vec<String>,
}

/// Summarises a run.
pub fn summarise(history: &[Op], facts: RunFacts<'_>) -> Summary {
    let mut outcomes: BTreeMap<String, Counts> = BTreeMap::new();
    for op in history.iter().filter(|o| o.client != FINAL_CLIENT) {
        let api = match op.api {
            Api::Http => "http",
            Api::Native => "native",
        };
        let kind = match op.kind {
            OpKind::Write => "write",
            OpKind::Read => "read",
        };
        outcomes
            .entry(format!("{api}/{kind}"))
            .or_default()
            .add(op.outcome);
    }
    let mut sides = Vec::new();
    let mut others = Vec::new();
    for f in facts.faults {
        if f.majority.is_empty() {
            others.push(f.clone());
            continue;
        }
        let mut majority = Counts::default();
        let mut minority = Counts::default();
        let mut minority_errors: BTreeMap<String, u64> = BTreeMap::new();
        for op in history.iter().filter(|o| {
            o.client != FINAL_CLIENT
                && o.invoke_ns >= f.start_ns + ELECTION_GRACE_NS
                && o.invoke_ns < f.heal_ns
        }) {
            if f.majority.contains(&op.node) {
                majority.add(op.outcome);
            } else if f.minority.contains(&op.node) {
                minority.add(op.outcome);
                if let Some(e) = &op.error {
                    *minority_errors.entry(error_class(e)).or_default() += 1;
                }
            }
        }
        sides.push(SideAvailability {
            fault: f.clone(),
            majority,
            minority,
            minority_errors,
        });
    }
    let passed = facts.report.passed() && facts.disagreements == 0 && facts.crashes.is_empty();
    Summary {
        seed: facts.seed,
        nodes: facts.nodes,
        tls: facts.tls,
        secs: facts.secs,
        outcomes,
        sides,
        others,
        keys: facts.report.keys,
        checked_ops: facts.report.checked_ops,
        violations: facts.report.violations.len(),
        lost_writes: facts.report.lost.len(),
        replica_disagreements: facts.disagreements,
        crashes: facts.crashes,
        passed,
    }
}

/// An error's first words, before the parts that differ between occurrences (terms, values).
fn error_class(e: &str) -> String {
    let cut = e.find([':', ';']).unwrap_or(e.len());
    let class: String = e[..cut].chars().take(48).collect();
    class.trim().to_owned()
}

fn pct(c: &Counts) -> String {
    c.ok_percent()
        .map_or_else(|| "-".into(), |p| format!("{p:.1}% of {}", c.total()))
}

fn ms(v: Option<u64>) -> String {
    v.map_or_else(|| "not within 30 s".into(), |m| format!("{m} ms"))
}

/// The summary as text.
pub fn render(s: &Summary, report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "peerwire-nemesis: seed {} · {} nodes{} · {:.0} s of workload",
        s.seed,
        s.nodes,
        if s.tls { " · mutual TLS" } else { "" },
        s.secs
    );
    let _ = writeln!(out, "\noperations (ok / failed / unknown):");
    for (k, c) in &s.outcomes {
        let _ = writeln!(
            out,
            "  {k:<13} {:>6} / {:>5} / {:>5}",
            c.ok, c.failed, c.unknown
        );
    }
    let _ = writeln!(
        out,
        "\navailability after the first {} s of each fault, and recovery after its heal:",
        ELECTION_GRACE_NS / 1_000_000_000
    );
    for a in &s.sides {
        let _ = writeln!(
            out,
            "  {:<14} {:<34} majority {:<16} minority {:<16} writable {:<10} caught up {}",
            a.fault.kind.name(),
            a.fault.what,
            pct(&a.majority),
            pct(&a.minority),
            ms(a.fault.writable_after_ms),
            ms(a.fault.caught_up_after_ms),
        );
        if !a.minority_errors.is_empty() {
            let errors = a
                .minority_errors
                .iter()
                .map(|(e, n)| format!("{n}× {e}"))
                .collect::<Vec<_>>()
                .join("; ");
            let _ = writeln!(out, "  {:<14} minority answers: {errors}", "");
        }
    }
    for f in &s.others {
        let _ = writeln!(
            out,
            "  {:<14} {:<34} {:<52} writable {:<10} caught up {}",
            f.kind.name(),
            f.what,
            "",
            ms(f.writable_after_ms),
            ms(f.caught_up_after_ms),
        );
    }
    let _ = writeln!(
        out,
        "\nchecked {} operations on {} keys: {} linearizability violations, {} lost acknowledged writes, {} replica disagreements, {} node crashes",
        s.checked_ops,
        s.keys,
        s.violations,
        s.lost_writes,
        s.replica_disagreements,
        s.crashes.len()
    );
    for v in &report.violations {
        let _ = writeln!(
            out,
            "\nVIOLATION on key {}: the history stops being linearizable at {}",
            v.key,
            describe(&v.op)
        );
        for op in &v.window {
            let _ = writeln!(out, "    {}", describe(op));
        }
    }
    for l in &report.lost {
        let _ = writeln!(
            out,
            "\nLOST WRITE on key {}: {} acknowledged, but the final read {}",
            l.write.key,
            describe(&l.write),
            describe(&l.final_read)
        );
    }
    for c in &s.crashes {
        let _ = writeln!(out, "\nCRASH: {c}");
    }
    let _ = writeln!(out, "\n{}", if s.passed { "PASSED" } else { "FAILED" });
    out
}

/// One operation as a line.
pub fn describe(op: &Op) -> String {
    let who = if op.client == FINAL_CLIENT {
        "final".to_owned()
    } else {
        format!("c{}", op.client)
    };
    let what = match op.kind {
        OpKind::Write => format!("write {:?}", op.value.as_deref().unwrap_or("")),
        OpKind::Read => format!("read -> {:?}", op.value.as_deref()),
    };
    format!(
        "[{:.6} .. {:.6}] {who} via node {} ({:?}) {what} {:?}{}",
        op.invoke_ns as f64 / 1e9,
        op.complete_ns as f64 / 1e9,
        op.node,
        op.api,
        op.outcome,
        op.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Kind;

    fn op(node: NodeId, at_s: u64, outcome: Outcome) -> Op {
        Op {
            client: 1,
            api: Api::Native,
            node,
            key: "k".into(),
            kind: OpKind::Write,
            value: Some(format!("{node}-{at_s}")),
            invoke_ns: at_s * 1_000_000_000,
            complete_ns: at_s * 1_000_000_000 + 1,
            outcome,
            error: None,
        }
    }

    #[test]
    fn availability_counts_each_side_after_the_grace_and_before_the_heal() {
        let fault = FaultRecord {
            kind: Kind::IsolateLeader,
            what: "node 1 isolated".into(),
            start_ns: 10_000_000_000,
            heal_ns: 20_000_000_000,
            majority: vec![2, 3],
            minority: vec![1],
            writable_after_ms: Some(300),
            caught_up_after_ms: Some(400),
        };
        let history = vec![
            op(2, 11, Outcome::Failed), // inside the grace: left out
            op(2, 13, Outcome::Ok),
            op(3, 14, Outcome::Ok),
            op(3, 15, Outcome::Unknown),
            Op {
                error: Some("503 no leader: no leader known in term 7".into()),
                ..op(1, 16, Outcome::Failed)
            },
            op(2, 21, Outcome::Failed), // after the heal: left out
        ];
        let report = Report::default();
        let s = summarise(
            &history,
            RunFacts {
                seed: 1,
                nodes: 3,
                tls: false,
                secs: 30.0,
                faults: &[fault],
                report: &report,
                disagreements: 0,
                crashes: Vec::new(),
            },
        );
        assert_eq!(s.sides.len(), 1);
        assert_eq!(
            s.sides[0].majority,
            Counts {
                ok: 2,
                failed: 0,
                unknown: 1
            }
        );
        assert_eq!(s.sides[0].minority.failed, 1);
        assert_eq!(s.outcomes["native/write"].total(), 6);
        assert!(s.passed);
        assert_eq!(s.sides[0].minority_errors["503 no leader"], 1);
        let text = render(&s, &report);
        assert!(text.contains("66.7% of 3"), "{text}");
        assert!(text.contains("PASSED"));
    }
}
