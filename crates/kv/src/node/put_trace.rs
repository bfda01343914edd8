//! Where a put's time goes on the leader, and what else the node was doing meanwhile.
//!
//! Every proposal carries [`Stamps`]: when its request reached the node's API, when the raft
//! loop proposed it, when the `Ready` holding its entry went to the log writer and to the
//! followers, when this node's log write holding it was durable, when raft saw it committed,
//! and when it was applied and answered. [`PutTrace`] turns the stamps of every applied put into
//! per-stage histograms, keeps the slowest puts with their stages, and keeps the node's slow
//! events (log writes, snapshot phases, compaction) in a bounded ring, so a slow put can be
//! lined up with what held it up. Pure bookkeeping, owned by the raft loop; read with
//! [`KvHandle::take_put_trace`](super::KvHandle::take_put_trace).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// The stages of a put, in order; each is the time from the previous stamp to its own.
pub const STAGES: [&str; 5] = ["queue", "batch", "local_write", "commit", "apply"];

/// Slowest puts kept per trace (at 200,000 puts, everything above the 99.5th percentile).
const SLOWEST_KEPT: usize = 1024;
/// Events kept per trace (the oldest go first).
const EVENTS_KEPT: usize = 4096;
/// Log writes shorter than this are not kept as events (they are counted in the histogram).
const SLOW_WRITE: Duration = Duration::from_millis(2);
/// Highest value the histograms track, µs (longer values are clamped): one minute.
const MAX_TRACKED_US: u64 = 60_000_000;

/// When a proposal passed each point. `None`: not yet (or, for a proposal settled by a snapshot
/// or a leader change, never).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stamps {
    /// The request reached the node's API.
    pub(crate) received: Instant,
    /// The raft loop proposed it.
    pub(crate) proposed: Instant,
    /// The `Ready` holding its entry went to the log writer and the followers.
    pub(crate) handed: Option<Instant>,
    /// This node's write holding it was durable.
    pub(crate) durable: Option<Instant>,
    /// raft's commit index reached it.
    pub(crate) committed: Option<Instant>,
}

impl Stamps {
    /// A proposal received at `received`, proposed now.
    pub(crate) fn proposed(received: Instant) -> Self {
        Self {
            received,
            proposed: Instant::now(),
            handed: None,
            durable: None,
            committed: None,
        }
    }

    /// The stage durations of a put applied at `applied`, in [`STAGES`] order. `local_write`
    /// runs from `handed` to `durable` and `commit` from `handed` to `committed` (the two
    /// overlap: a leader commits once a quorum has the entry, its own write included or not);
    /// `apply` runs from `committed` (or `durable`, whichever was later) to `applied`.
    fn stages(&self, applied: Instant) -> [Duration; 5] {
        let handed = self.handed.unwrap_or(applied);
        let durable = self.durable.unwrap_or(handed);
        let committed = self.committed.unwrap_or(applied);
        [
            self.proposed.saturating_duration_since(self.received),
            handed.saturating_duration_since(self.proposed),
            durable.saturating_duration_since(handed),
            committed.saturating_duration_since(handed),
            applied.saturating_duration_since(committed.max(durable).min(applied)),
        ]
    }
}

/// What kind of thing a [`TraceEvent`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A log write (one redb transaction and fsync for one or more `Ready`s); kept when it
    /// took at least 2 ms.
    LogWrite,
    /// Encoding the state for a snapshot.
    SnapshotEncode,
    /// Writing and syncing the snapshot file.
    SnapshotSave,
    /// Dropping compacted log entries.
    Compact,
    /// A `Ready` that carried a snapshot from the leader, written and installed.
    SnapshotInstall,
}

impl EventKind {
    /// A short name.
    pub fn name(self) -> &'static str {
        match self {
            Self::LogWrite => "log write",
            Self::SnapshotEncode => "snapshot encode",
            Self::SnapshotSave => "snapshot save",
            Self::Compact => "compaction",
            Self::SnapshotInstall => "snapshot install",
        }
    }
}

/// Something the node did that may hold puts up.
#[derive(Debug, Clone, Copy)]
pub struct TraceEvent {
    /// What.
    pub kind: EventKind,
    /// When it started.
    pub start: Instant,
    /// When it ended.
    pub end: Instant,
    /// A size: `Ready`s written, snapshot bytes, entries compacted.
    pub size: u64,
}

/// One of the slowest puts.
#[derive(Debug, Clone, Copy)]
pub struct SlowPut {
    /// When its request reached the node.
    pub received: Instant,
    /// When it was applied.
    pub applied: Instant,
    /// Its stages, in [`STAGES`] order.
    pub stages: [Duration; 5],
}

impl SlowPut {
    /// From request to applied.
    pub fn total(&self) -> Duration {
        self.applied.saturating_duration_since(self.received)
    }
}

/// A kept put, ordered by its total.
#[derive(Debug, Clone, Copy)]
struct ByTotal(Duration, SlowPut);

impl PartialEq for ByTotal {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for ByTotal {}
impl PartialOrd for ByTotal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByTotal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// Quantiles of one stage, µs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageSummary {
    /// The stage's name, from [`STAGES`], or `total`.
    pub name: &'static str,
    /// Puts measured.
    pub count: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Slowest, µs.
    pub max_us: u64,
}

/// What a node recorded since its trace was last taken.
#[derive(Debug, Clone)]
pub struct PutTraceReport {
    /// The node.
    pub node: u64,
    /// Since when.
    pub since: Instant,
    /// Each stage of [`STAGES`], then `total` (request to applied).
    pub stages: Vec<StageSummary>,
    /// This node's log writes (one redb transaction and fsync each), as a `log_write` stage:
    /// `count` writes, their durations.
    pub log_writes: StageSummary,
    /// The slowest puts, slowest first.
    pub slowest: Vec<SlowPut>,
    /// Slow log writes, snapshot phases and compactions, oldest first.
    pub events: Vec<TraceEvent>,
    /// Events dropped because the ring was full.
    pub events_dropped: u64,
}

/// The raft loop's record of applied puts and slow events.
#[derive(Debug)]
pub(crate) struct PutTrace {
    since: Instant,
    /// One per stage, then the total.
    histograms: Vec<Histogram<u64>>,
    /// Log write durations.
    writes: Histogram<u64>,
    /// The slowest puts, the fastest of them on top.
    slowest: BinaryHeap<Reverse<ByTotal>>,
    events: VecDeque<TraceEvent>,
    events_dropped: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_US, 2).expect("static bounds are valid")
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).clamp(1, MAX_TRACKED_US)
}

impl Default for PutTrace {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            histograms: (0..=STAGES.len()).map(|_| histogram()).collect(),
            writes: histogram(),
            slowest: BinaryHeap::new(),
            events: VecDeque::new(),
            events_dropped: 0,
        }
    }
}

impl PutTrace {
    /// A put stamped `stamps` was applied at `applied`.
    pub(crate) fn applied(&mut self, stamps: &Stamps, applied: Instant) {
        if stamps.received < self.since {
            return;
        }
        let stages = stamps.stages(applied);
        for (h, d) in self.histograms.iter_mut().zip(stages) {
            h.saturating_record(micros(d));
        }
        let put = SlowPut {
            received: stamps.received,
            applied,
            stages,
        };
        let total = put.total();
        self.histograms[STAGES.len()].saturating_record(micros(total));
        if self.slowest.len() >= SLOWEST_KEPT {
            if self.slowest.peek().is_some_and(|Reverse(p)| p.0 >= total) {
                return;
            }
            self.slowest.pop();
        }
        self.slowest.push(Reverse(ByTotal(total, put)));
    }

    /// The node did `kind` from `start` to `end`.
    pub(crate) fn event(&mut self, kind: EventKind, start: Instant, end: Instant, size: u64) {
        if kind == EventKind::LogWrite {
            let took = end.saturating_duration_since(start);
            self.writes.saturating_record(micros(took));
            if took < SLOW_WRITE {
                return;
            }
        }
        if self.events.len() >= EVENTS_KEPT {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(TraceEvent {
            kind,
            start,
            end,
            size,
        });
    }

    /// Everything recorded, and a fresh start.
    pub(crate) fn take(&mut self, node: u64) -> PutTraceReport {
        let old = std::mem::take(self);
        let names = STAGES.iter().copied().chain(["total"]);
        PutTraceReport {
            node,
            since: old.since,
            stages: names
                .zip(&old.histograms)
                .map(|(name, h)| summary(name, h))
                .collect(),
            log_writes: summary("log_write", &old.writes),
            // Ascending `Reverse` order is the slowest first.
            slowest: old
                .slowest
                .into_sorted_vec()
                .into_iter()
                .map(|Reverse(p)| p.1)
                .collect(),
            events: old.events.into(),
            events_dropped: old.events_dropped,
        }
    }
}

fn summary(name: &'static str, h: &Histogram<u64>) -> StageSummary {
    StageSummary {
        name,
        count: h.len(),
        p50_us: quantile(h, 0.5),
        p99_us: quantile(h, 0.99),
        p999_us: quantile(h, 0.999),
        max_us: if h.is_empty() { 0 } else { h.max() },
    }
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamps(base: Instant, ms: [u64; 5]) -> Stamps {
        let at = |m: u64| base + Duration::from_millis(m);
        Stamps {
            received: at(ms[0]),
            proposed: at(ms[1]),
            handed: Some(at(ms[2])),
            durable: Some(at(ms[3])),
            committed: Some(at(ms[4])),
        }
    }

    #[test]
    fn stages_split_a_put_and_overlap_the_local_write_with_the_commit() {
        let base = Instant::now();
        // received 0, proposed 1, handed 3, durable 10, committed 6, applied 12.
        let s = stamps(base, [0, 1, 3, 10, 6]).stages(base + Duration::from_millis(12));
        let ms: Vec<u64> = s.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(ms, [1, 2, 7, 3, 2]);
    }

    #[test]
    fn keeps_the_slowest_puts_slowest_first_and_bounded() {
        let base = Instant::now() + Duration::from_millis(1);
        let mut trace = PutTrace {
            since: base,
            ..PutTrace::default()
        };
        let n = SLOWEST_KEPT as u64 + 100;
        for i in 0..n {
            let s = stamps(base, [0, 0, 0, 0, 0]);
            trace.applied(&s, base + Duration::from_millis((i * 37) % n));
        }
        let report = trace.take(1);
        assert_eq!(report.slowest.len(), SLOWEST_KEPT);
        let totals: Vec<u64> = report
            .slowest
            .iter()
            .map(|p| p.total().as_millis() as u64)
            .collect();
        assert_eq!(totals[0], n - 1);
        assert_eq!(*totals.last().unwrap(), n - SLOWEST_KEPT as u64);
        assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
        let total = report.stages.last().unwrap();
        assert_eq!((total.name, total.count), ("total", n));
        assert!(total.max_us >= (n - 1) * 1000);
        // Taken: the trace starts again.
        assert_eq!(trace.take(1).stages[0].count, 0);
    }

    #[test]
    fn puts_received_before_the_trace_started_are_left_out() {
        let before = Instant::now();
        let mut trace = PutTrace::default();
        trace.applied(&stamps(before, [0, 1, 2, 3, 4]), Instant::now());
        assert_eq!(trace.take(1).stages[0].count, 0);
    }

    #[test]
    fn short_log_writes_are_not_events_and_the_ring_is_bounded() {
        let mut trace = PutTrace::default();
        let now = Instant::now();
        trace.event(EventKind::LogWrite, now, now + Duration::from_millis(1), 1);
        for _ in 0..EVENTS_KEPT + 3 {
            trace.event(
                EventKind::SnapshotSave,
                now,
                now + Duration::from_millis(50),
                10,
            );
        }
        let report = trace.take(1);
        assert_eq!(report.log_writes.count, 1, "every write is measured");
        assert_eq!(report.events.len(), EVENTS_KEPT);
        assert_eq!(report.events_dropped, 3);
        assert!(
            report
                .events
                .iter()
                .all(|e| e.kind == EventKind::SnapshotSave)
        );
    }
}
