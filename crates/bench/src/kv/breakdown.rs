//! `kv --breakdown`: where peerwire-kv's puts spent their time on the leader during a measured
//! window, and what the three nodes were doing while the slowest puts waited (slow log writes,
//! snapshot phases, compaction). Pure: renders the nodes' put-trace reports.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use peerwire_kv::node::{EventKind, PutTraceReport, SlowPut, TraceEvent};

/// The slowest puts printed one by one.
const SHOWN: usize = 8;
/// Events printed beside each of them (the longest).
const EVENTS_SHOWN: usize = 4;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn overlaps(put: &SlowPut, e: &TraceEvent) -> bool {
    e.start < put.applied && e.end > put.received
}

const KINDS: [EventKind; 5] = [
    EventKind::LogWrite,
    EventKind::SnapshotEncode,
    EventKind::SnapshotSave,
    EventKind::Compact,
    EventKind::SnapshotInstall,
];

/// The breakdown of one measured window: `reports` from every node, times relative to `epoch`.
pub(crate) fn render(reports: &[PutTraceReport], epoch: Instant) -> String {
    let mut out = String::new();
    let Some(leader) = reports
        .iter()
        .max_by_key(|r| r.stages.last().map_or(0, |s| s.count))
    else {
        return out;
    };
    let puts = leader.stages.last().map_or(0, |s| s.count);
    let _ = writeln!(
        out,
        "  where a put's time went on the leader (node {}, {puts} puts), then each node's log \
         writes (one transaction and fsync each), ms:",
        leader.node
    );
    let _ = writeln!(
        out,
        "  {:<12} {:>8} {:>8} {:>8} {:>8}",
        "stage", "p50", "p99", "p99.9", "max"
    );
    let rows = leader.stages.iter().map(|s| (s.name.to_owned(), s)).chain(
        reports
            .iter()
            .map(|r| (format!("write n{}", r.node), &r.log_writes)),
    );
    for (name, s) in rows {
        let _ = writeln!(
            out,
            "  {:<12} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            name,
            s.p50_us as f64 / 1e3,
            s.p99_us as f64 / 1e3,
            s.p999_us as f64 / 1e3,
            s.max_us as f64 / 1e3
        );
    }
    for r in reports {
        let mut line = format!("  node {} events:", r.node);
        for kind in KINDS {
            let of_kind: Vec<&TraceEvent> = r.events.iter().filter(|e| e.kind == kind).collect();
            if let Some(longest) = of_kind.iter().map(|e| e.end - e.start).max() {
                let _ = write!(
                    line,
                    " {} ×{} (longest {:.1} ms);",
                    kind.name(),
                    of_kind.len(),
                    ms(longest)
                );
            }
        }
        if r.events_dropped > 0 {
            let _ = write!(line, " {} older events dropped;", r.events_dropped);
        }
        let _ = writeln!(out, "{}", line.trim_end_matches(';'));
    }
    let slowest = &leader.slowest;
    if slowest.is_empty() {
        return out;
    }
    let floor = slowest.last().map_or(Duration::ZERO, SlowPut::total);
    let _ = writeln!(
        out,
        "  the {} slowest puts (≥ {:.1} ms) overlapped, by node and kind:",
        slowest.len(),
        ms(floor)
    );
    for r in reports {
        for kind in KINDS {
            let hit = slowest
                .iter()
                .filter(|p| r.events.iter().any(|e| e.kind == kind && overlaps(p, e)))
                .count();
            if hit > 0 {
                let _ = writeln!(
                    out,
                    "    node {} {}: {hit} ({:.0}%)",
                    r.node,
                    kind.name(),
                    100.0 * hit as f64 / slowest.len() as f64
                );
            }
        }
    }
    let none = slowest
        .iter()
        .filter(|p| {
            !reports
                .iter()
                .any(|r| r.events.iter().any(|e| overlaps(p, e)))
        })
        .count();
    let _ = writeln!(out, "    none of these events: {none}");
    let _ = writeln!(out, "  the {SHOWN} slowest:");
    for p in slowest.iter().take(SHOWN) {
        let stages: Vec<String> = peerwire_kv::node::STAGES
            .iter()
            .zip(p.stages)
            .map(|(name, d)| format!("{name} {:.1}", ms(d)))
            .collect();
        let mut line = format!(
            "    at +{:.0} ms: {:.1} ms = {}",
            ms(p.received.saturating_duration_since(epoch)),
            ms(p.total()),
            stages.join(", ")
        );
        let mut beside: Vec<(u64, &TraceEvent)> = reports
            .iter()
            .flat_map(|r| {
                r.events
                    .iter()
                    .filter(|e| overlaps(p, e))
                    .map(|e| (r.node, e))
            })
            .collect();
        beside.sort_by_key(|(_, e)| std::cmp::Reverse(e.end - e.start));
        for (node, e) in beside.iter().take(EVENTS_SHOWN) {
            let _ = write!(
                line,
                "; node {node} {} {:.1} ms from +{:.0}",
                e.kind.name(),
                ms(e.end - e.start),
                ms(e.start.saturating_duration_since(epoch))
            );
        }
        if beside.len() > EVENTS_SHOWN {
            let _ = write!(line, "; {} more", beside.len() - EVENTS_SHOWN);
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use peerwire_kv::node::StageSummary;

    fn report(
        node: u64,
        puts: u64,
        slowest: Vec<SlowPut>,
        events: Vec<TraceEvent>,
    ) -> PutTraceReport {
        let stages = peerwire_kv::node::STAGES
            .iter()
            .copied()
            .chain(["total"])
            .map(|name| StageSummary {
                name,
                count: puts,
                p50_us: 1_000,
                p99_us: 9_000,
                p999_us: 20_000,
                max_us: 30_000,
            })
            .collect();
        PutTraceReport {
            node,
            since: Instant::now(),
            stages,
            log_writes: StageSummary {
                name: "log_write",
                count: 0,
                p50_us: 0,
                p99_us: 0,
                p999_us: 0,
                max_us: 0,
            },
            slowest,
            events,
            events_dropped: 0,
        }
    }

    #[test]
    fn lines_up_the_slowest_puts_with_the_events_they_overlapped() {
        let epoch = Instant::now();
        let at = |m: u64| epoch + Duration::from_millis(m);
        let put = |from: u64, to: u64| SlowPut {
            received: at(from),
            applied: at(to),
            stages: [
                Duration::from_millis(to - from),
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
                Duration::ZERO,
            ],
        };
        let save = TraceEvent {
            kind: EventKind::SnapshotSave,
            start: at(100),
            end: at(180),
            size: 1,
        };
        let leader = report(1, 500, vec![put(90, 130), put(10, 40)], vec![save]);
        let follower = report(2, 0, Vec::new(), Vec::new());
        let text = render(&[follower, leader], epoch);
        assert!(text.contains("node 1, 500 puts"), "{text}");
        assert!(text.contains("node 1 snapshot save: 1 (50%)"), "{text}");
        assert!(text.contains("none of these events: 1"), "{text}");
        assert!(text.contains("at +90 ms: 40.0 ms = queue 40.0"), "{text}");
        assert!(
            text.contains("node 1 snapshot save 80.0 ms from +100"),
            "{text}"
        );
    }
}
