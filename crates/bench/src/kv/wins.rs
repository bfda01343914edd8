//! Across invocations of the whole `kv` comparison: on how many a peerwire-kv (the rows of one
//! impl name) beat etcd, figure by figure (puts/s ratio; p50, p99, p99.9 and the slowest put,
//! lower is a win). Pure.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::report::{Measurement, Row};

/// One clients level's record over the invocations.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// The clients level.
    pub(crate) clients: u64,
    /// Invocations where both impls measured this level.
    pub(crate) invocations: usize,
    /// peerwire-kv's puts/s divided by etcd's, per invocation.
    pub(crate) ratios: Vec<f64>,
    /// Invocations where peerwire-kv's p50, p99, p99.9 and max were lower than etcd's.
    pub(crate) lower: [usize; 4],
}

/// The latency figures compared, in the order of [`Record::lower`].
pub(crate) const FIGURES: [&str; 4] = ["p50", "p99", "p99.9", "max"];

fn figures(m: &Measurement) -> [u64; 4] {
    [m.p50_us, m.p99_us, m.p999_us, m.max_us]
}

fn clients_of(row: &Row) -> Option<u64> {
    row.param("clients").and_then(Value::as_u64)
}

/// Tallies `invocations` (each one invocation's rows) for impl `ours` against etcd, per clients
/// level, in the order the levels first appear.
pub(crate) fn tally(invocations: &[Vec<Row>], ours: &str) -> Vec<Record> {
    let mut records: Vec<Record> = Vec::new();
    for rows in invocations {
        for pw in rows.iter().filter(|r| r.impl_name == ours) {
            let Some(clients) = clients_of(pw) else {
                continue;
            };
            let Some(etcd) = rows
                .iter()
                .find(|r| r.impl_name == "etcd" && clients_of(r) == Some(clients))
            else {
                continue;
            };
            let at = match records.iter().position(|r| r.clients == clients) {
                Some(at) => at,
                None => {
                    records.push(Record {
                        clients,
                        invocations: 0,
                        ratios: Vec::new(),
                        lower: [0; 4],
                    });
                    records.len() - 1
                }
            };
            let record = &mut records[at];
            record.invocations += 1;
            if etcd.median.ops_per_sec > 0.0 {
                record
                    .ratios
                    .push(pw.median.ops_per_sec / etcd.median.ops_per_sec);
            }
            let (ours, theirs) = (figures(&pw.median), figures(&etcd.median));
            for (i, won) in record.lower.iter_mut().enumerate() {
                if ours[i] < theirs[i] {
                    *won += 1;
                }
            }
        }
    }
    records
}

/// The records as a table: one line per clients level.
pub(crate) fn render(records: &[Record]) -> String {
    let mut out = String::from(
        "clients  invocations  puts/s vs etcd (min / median / max)  lower p50  lower p99  lower p99.9  lower max\n",
    );
    for r in records {
        let mut sorted = r.ratios.clone();
        sorted.sort_by(f64::total_cmp);
        let ratio = match (sorted.first(), sorted.last()) {
            (Some(lo), Some(hi)) => format!(
                "{lo:.2}× / {:.2}× / {hi:.2}×",
                sorted[(sorted.len() - 1) / 2]
            ),
            _ => "-".to_owned(),
        };
        let n = r.invocations;
        let _ = writeln!(
            out,
            "{:>7}  {:>11}  {:>35}  {:>9}  {:>9}  {:>11}  {:>9}",
            r.clients,
            n,
            ratio,
            format!("{}/{n}", r.lower[0]),
            format!("{}/{n}", r.lower[1]),
            format!("{}/{n}", r.lower[2]),
            format!("{}/{n}", r.lower[3]),
        );
    }
    out
}

/// A record of impl `ours` as one JSON object (`"scenario":"kv-wins"`).
pub(crate) fn json(record: &Record, ours: &str) -> Value {
    let mut lower = serde_json::Map::new();
    for (name, won) in FIGURES.iter().zip(record.lower) {
        lower.insert((*name).to_owned(), json!(won));
    }
    json!({
        "scenario": "kv-wins",
        "impl": ours,
        "clients": record.clients,
        "invocations": record.invocations,
        "vs_etcd": record.ratios,
        "lower": lower,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(impl_name: &str, clients: u64, ops: f64, p: [u64; 4]) -> Row {
        let m = Measurement {
            ops_per_sec: ops,
            p50_us: p[0],
            p99_us: p[1],
            p999_us: p[2],
            max_us: p[3],
        };
        Row::from_runs(
            "kv",
            impl_name,
            vec![("clients".into(), json!(clients))],
            &[m],
        )
        .unwrap()
    }

    #[test]
    fn counts_wins_per_figure_and_level() {
        let first = vec![
            row("peerwire-kv", 64, 200.0, [1, 5, 9, 20]),
            row("etcd", 64, 100.0, [2, 4, 10, 20]),
            row("peerwire-kv", 1000, 300.0, [1, 1, 1, 1]),
            row("etcd", 1000, 100.0, [2, 2, 2, 2]),
        ];
        let second = vec![
            row("peerwire-kv", 64, 100.0, [3, 3, 3, 3]),
            row("etcd", 64, 100.0, [2, 4, 4, 4]),
        ];
        let records = tally(&[first, second], "peerwire-kv");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].clients, 64);
        assert_eq!(records[0].invocations, 2);
        assert_eq!(records[0].ratios, vec![2.0, 1.0]);
        // p50: 1<2 yes, 3<2 no; p99: 5<4 no, 3<4 yes; p99.9: both; max: 20<20 no (a tie is
        // no win), 3<4 yes.
        assert_eq!(records[0].lower, [1, 1, 2, 1]);
        assert_eq!(records[1].lower, [1, 1, 1, 1]);
        let table = render(&records);
        assert!(table.contains("1.00× / 1.00× / 2.00×"), "{table}");
        assert!(table.lines().nth(1).unwrap().contains("1/2"));
        assert_eq!(json(&records[0], "peerwire-kv")["lower"]["p99.9"], 2);
    }

    #[test]
    fn a_level_without_etcd_is_not_counted() {
        let only = vec![row("peerwire-kv", 1, 10.0, [1, 1, 1, 1])];
        assert!(tally(std::slice::from_ref(&only), "peerwire-kv").is_empty());
        let with_etcd = vec![
            row("peerwire-kv-redb", 1, 10.0, [1, 1, 1, 1]),
            row("etcd", 1, 10.0, [2, 2, 2, 2]),
        ];
        assert!(tally(std::slice::from_ref(&with_etcd), "peerwire-kv").is_empty());
        assert_eq!(tally(&[with_etcd], "peerwire-kv-redb")[0].lower, [1; 4]);
    }
}
