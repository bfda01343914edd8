//! Turning repeated measurements into results: the median run per (impl, parameters), ratios
//! against baselines measured in the same invocation, a human table and JSON lines.
//!
//! Everything here is pure; scenarios build [`Row`]s and print what these functions return.

use std::fmt::Write as _;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::harness::LoadResult;

/// What one run of one (impl, parameters) measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measurement {
    /// Completed operations per second in the measured window.
    pub(crate) ops_per_sec: f64,
    /// Median latency, µs.
    pub(crate) p50_us: u64,
    /// 99th percentile latency, µs.
    pub(crate) p99_us: u64,
    /// 99.9th percentile latency, µs.
    pub(crate) p999_us: u64,
    /// The slowest operation, µs.
    pub(crate) max_us: u64,
}

impl Measurement {
    /// Summarizes a load run.
    pub(crate) fn from_load(load: &LoadResult) -> Self {
        Self {
            ops_per_sec: load.ops_per_sec(),
            p50_us: load.latency_quantile_us(0.50),
            p99_us: load.latency_quantile_us(0.99),
            p999_us: load.latency_quantile_us(0.999),
            max_us: load.latency_max_us(),
        }
    }
}

/// A baseline that other impls are compared against, e.g. raw TCP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline {
    /// The baseline's impl name, as in [`Row::impl_name`].
    pub(crate) impl_name: &'static str,
    /// JSON key of the ratio, e.g. `vs_raw_tcp`.
    pub(crate) key: &'static str,
    /// Table header of the ratio, e.g. `vs raw-tcp`.
    pub(crate) header: &'static str,
}

/// A parameter shown as a table column.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    /// Key in [`Row::params`].
    pub(crate) key: &'static str,
    /// Table header.
    pub(crate) header: &'static str,
}

/// The result for one (scenario, impl, parameter set): its median run plus every run's
/// throughput.
///
/// Serializes as one flat JSON object, keys in this order: `scenario`, `impl`, the params,
/// `ops_per_sec`, `p50_us`, `p99_us`, `p999_us`, `max_us`, `runs_ops_per_sec`, the ratios (`null` when
/// the baseline was not run), then the extra fields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    /// Scenario name, e.g. `rpc`.
    pub(crate) scenario: String,
    /// Implementation name, e.g. `raw-tcp`.
    pub(crate) impl_name: String,
    /// The parameters that identify the comparison group (rows with equal scenario and params
    /// are compared with each other), e.g. `inflight`, `payload_bytes`.
    pub(crate) params: Vec<(String, Value)>,
    /// The median run by throughput.
    pub(crate) median: Measurement,
    /// Throughput of every run, in run order.
    pub(crate) runs_ops_per_sec: Vec<f64>,
    /// `median.ops_per_sec` divided by each baseline's; filled by [`apply_ratios`].
    pub(crate) ratios: Vec<(String, Option<f64>)>,
    /// Scenario-specific fields that do not identify the group.
    pub(crate) extra: Vec<(String, Value)>,
}

impl Row {
    /// Builds the row from all runs, reporting the median run by throughput. `None` if `runs`
    /// is empty.
    pub(crate) fn from_runs(
        scenario: &str,
        impl_name: &str,
        params: Vec<(String, Value)>,
        runs: &[Measurement],
    ) -> Option<Self> {
        let throughputs: Vec<f64> = runs.iter().map(|m| m.ops_per_sec).collect();
        let median = runs[median_index(&throughputs)?];
        Some(Self {
            scenario: scenario.to_owned(),
            impl_name: impl_name.to_owned(),
            params,
            median,
            runs_ops_per_sec: throughputs,
            ratios: Vec::new(),
            extra: Vec::new(),
        })
    }

    /// The value of parameter `key`, if present.
    pub(crate) fn param(&self, key: &str) -> Option<&Value> {
        self.params.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The ratio stored under `key`, `None` if absent or not computable.
    pub(crate) fn ratio(&self, key: &str) -> Option<f64> {
        self.ratios
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| *v)
    }

    fn same_group(&self, other: &Self) -> bool {
        self.scenario == other.scenario && self.params == other.params
    }
}

impl Serialize for Row {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("scenario", &self.scenario)?;
        map.serialize_entry("impl", &self.impl_name)?;
        for (key, value) in &self.params {
            map.serialize_entry(key, value)?;
        }
        map.serialize_entry("ops_per_sec", &round2(self.median.ops_per_sec))?;
        map.serialize_entry("p50_us", &self.median.p50_us)?;
        map.serialize_entry("p99_us", &self.median.p99_us)?;
        map.serialize_entry("p999_us", &self.median.p999_us)?;
        map.serialize_entry("max_us", &self.median.max_us)?;
        let runs: Vec<f64> = self.runs_ops_per_sec.iter().copied().map(round2).collect();
        map.serialize_entry("runs_ops_per_sec", &runs)?;
        for (key, ratio) in &self.ratios {
            map.serialize_entry(key, &ratio.map(round4))?;
        }
        for (key, value) in &self.extra {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// Index of the median of `values` (the lower median for an even count), `None` if empty.
/// NaN sorts last.
pub(crate) fn median_index(values: &[f64]) -> Option<usize> {
    if values.is_empty() {
        return None;
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    Some(order[(values.len() - 1) / 2])
}

/// Fills every row's ratios against `baselines` (in that order): its median throughput divided
/// by the baseline row's of the same group, `None` when the group has no such baseline row or
/// the baseline measured zero.
pub(crate) fn apply_ratios(rows: &mut [Row], baselines: &[Baseline]) {
    let ratios: Vec<Vec<(String, Option<f64>)>> = rows
        .iter()
        .map(|row| {
            baselines
                .iter()
                .map(|baseline| {
                    let base = rows
                        .iter()
                        .find(|other| {
                            other.impl_name == baseline.impl_name && other.same_group(row)
                        })
                        .map(|other| other.median.ops_per_sec)
                        .filter(|&ops| ops > 0.0);
                    (
                        baseline.key.to_owned(),
                        base.map(|base| row.median.ops_per_sec / base),
                    )
                })
                .collect()
        })
        .collect();
    for (row, ratios) in rows.iter_mut().zip(ratios) {
        row.ratios = ratios;
    }
}

/// One JSON object, no trailing newline.
/// A scenario's JSON row as one `key=value` line (every key but `scenario`), for the
/// scenarios that print rows rather than a table.
pub(crate) fn table_line(row: &Value) -> String {
    row.as_object()
        .map(|o| {
            o.iter()
                .filter(|(k, _)| k.as_str() != "scenario")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("  ")
        })
        .unwrap_or_default()
}

pub(crate) fn json_line(row: &Row) -> String {
    serde_json::to_string(row).expect("a Row always serializes")
}

/// A plain-text table: `impl`, the given param columns, throughput and latencies of the median
/// run, one ratio column per baseline, and every run's throughput.
pub(crate) fn render_table(rows: &[Row], columns: &[Column], baselines: &[Baseline]) -> String {
    render_table_with(rows, columns, baselines, &[])
}

/// [`render_table`] with extra columns taken from each row's [`Row::extra`] fields (after the
/// ratios; `-` where a row has no such field or it is null).
pub(crate) fn render_table_with(
    rows: &[Row],
    columns: &[Column],
    baselines: &[Baseline],
    extras: &[Column],
) -> String {
    let mut header: Vec<String> = vec!["impl".to_owned()];
    header.extend(columns.iter().map(|c| c.header.to_owned()));
    header.extend(["ops/s", "p50 µs", "p99 µs", "p99.9 µs", "max µs"].map(str::to_owned));
    header.extend(baselines.iter().map(|b| b.header.to_owned()));
    header.extend(extras.iter().map(|c| c.header.to_owned()));
    header.push("runs ops/s".to_owned());

    let mut cells: Vec<Vec<String>> = vec![header];
    for row in rows {
        let mut line = vec![row.impl_name.clone()];
        line.extend(columns.iter().map(|c| {
            row.param(c.key)
                .map_or_else(|| "-".to_owned(), display_value)
        }));
        line.push(format!("{:.0}", row.median.ops_per_sec));
        line.push(row.median.p50_us.to_string());
        line.push(row.median.p99_us.to_string());
        line.push(row.median.p999_us.to_string());
        line.push(row.median.max_us.to_string());
        line.extend(baselines.iter().map(|b| {
            row.ratio(b.key)
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"))
        }));
        line.extend(extras.iter().map(|c| {
            row.extra
                .iter()
                .find(|(k, _)| k == c.key)
                .map(|(_, v)| v)
                .filter(|v| !v.is_null())
                .map_or_else(|| "-".to_owned(), display_value)
        }));
        let runs: Vec<String> = row
            .runs_ops_per_sec
            .iter()
            .map(|ops| format!("{ops:.0}"))
            .collect();
        line.push(runs.join(", "));
        cells.push(line);
    }

    let width_of = |i: usize| {
        cells
            .iter()
            .map(|l| l[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cells[0].len()).map(width_of).collect();
    let last = widths.len() - 1;
    let mut out = String::new();
    for line in &cells {
        for (i, cell) in line.iter().enumerate() {
            let pad = widths[i] - cell.chars().count();
            if i > 0 {
                out.push_str("  ");
            }
            // First column left-aligned, numbers right-aligned, the free-form last column as is.
            if i == 0 {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            } else if i == last {
                out.push_str(cell);
            } else {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            }
        }
        let _ = writeln!(out);
    }
    out
}

fn display_value(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASELINES: [Baseline; 2] = [
        Baseline {
            impl_name: "raw-tcp",
            key: "vs_raw_tcp",
            header: "vs raw-tcp",
        },
        Baseline {
            impl_name: "tonic",
            key: "vs_tonic",
            header: "vs tonic",
        },
    ];

    fn m(ops_per_sec: f64, p50_us: u64) -> Measurement {
        Measurement {
            ops_per_sec,
            p50_us,
            p99_us: p50_us * 2,
            p999_us: p50_us * 3,
            max_us: p50_us * 4,
        }
    }

    fn params(inflight: u64) -> Vec<(String, Value)> {
        vec![
            ("inflight".to_owned(), json!(inflight)),
            ("payload_bytes".to_owned(), json!(1024)),
        ]
    }

    fn row(impl_name: &str, inflight: u64, ops: f64) -> Row {
        Row::from_runs("rpc", impl_name, params(inflight), &[m(ops, 10)]).unwrap()
    }

    #[test]
    fn median_index_odd_even_empty() {
        assert_eq!(median_index(&[]), None);
        assert_eq!(median_index(&[5.0]), Some(0));
        assert_eq!(median_index(&[3.0, 1.0, 2.0]), Some(2));
        assert_eq!(median_index(&[10.0, 40.0, 30.0, 20.0]), Some(3)); // lower median: 20
        assert_eq!(median_index(&[1.0, f64::NAN, 2.0]), Some(2));
    }

    #[test]
    fn row_reports_the_median_run_whole() {
        let runs = [m(100.0, 7), m(300.0, 9), m(200.0, 50)];
        let row = Row::from_runs("rpc", "tonic", params(1), &runs).unwrap();
        // The latencies come from the median-throughput run, not per-metric medians.
        assert_eq!(row.median, m(200.0, 50));
        assert_eq!(row.runs_ops_per_sec, vec![100.0, 300.0, 200.0]);
        assert!(Row::from_runs("rpc", "tonic", params(1), &[]).is_none());
    }

    #[test]
    fn ratios_within_the_same_group_only() {
        let mut rows = vec![
            row("peerwire", 1, 50.0),
            row("raw-tcp", 1, 100.0),
            row("tonic", 1, 25.0),
            row("peerwire", 64, 300.0),
            row("raw-tcp", 64, 200.0),
        ];
        apply_ratios(&mut rows, &BASELINES);
        assert_eq!(rows[0].ratio("vs_raw_tcp"), Some(0.5));
        assert_eq!(rows[0].ratio("vs_tonic"), Some(2.0));
        assert_eq!(rows[1].ratio("vs_raw_tcp"), Some(1.0));
        assert_eq!(rows[3].ratio("vs_raw_tcp"), Some(1.5));
        // No tonic row at inflight 64.
        assert_eq!(rows[3].ratio("vs_tonic"), None);
        assert_eq!(rows[3].ratios.len(), 2);
    }

    #[test]
    fn zero_baseline_gives_no_ratio() {
        let mut rows = vec![row("peerwire", 1, 50.0), row("raw-tcp", 1, 0.0)];
        apply_ratios(&mut rows, &BASELINES[..1]);
        assert_eq!(rows[0].ratio("vs_raw_tcp"), None);
    }

    #[test]
    fn json_row_has_the_documented_keys() {
        let mut rows = vec![row("peerwire", 64, 50.0), row("raw-tcp", 64, 100.0)];
        apply_ratios(&mut rows, &BASELINES);
        rows[0].extra.push(("connections".to_owned(), json!(1)));
        let line = json_line(&rows[0]);
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).unwrap();
        let object = value.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "connections",
                "impl",
                "inflight",
                "max_us",
                "ops_per_sec",
                "p50_us",
                "p999_us",
                "p99_us",
                "payload_bytes",
                "runs_ops_per_sec",
                "scenario",
                "vs_raw_tcp",
                "vs_tonic",
            ]
        );
        assert_eq!(object["scenario"], "rpc");
        assert_eq!(object["impl"], "peerwire");
        assert_eq!(object["inflight"], 64);
        assert_eq!(object["runs_ops_per_sec"], json!([50.0]));
        assert_eq!(object["vs_raw_tcp"], json!(0.5));
        assert_eq!(object["vs_tonic"], Value::Null);
        // Keys come out in the documented order.
        assert!(line.starts_with(r#"{"scenario":"rpc","impl":"peerwire","inflight":64,"#));
    }

    #[test]
    fn table_has_headers_and_rows() {
        let mut rows = vec![row("raw-tcp", 1, 14_700.4), row("tonic", 1, 6_200.0)];
        apply_ratios(&mut rows, &BASELINES);
        let columns = [Column {
            key: "inflight",
            header: "inflight",
        }];
        let table = render_table(&rows, &columns, &BASELINES);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("impl"));
        for header in [
            "inflight",
            "ops/s",
            "p99.9 µs",
            "max µs",
            "vs raw-tcp",
            "vs tonic",
            "runs ops/s",
        ] {
            assert!(lines[0].contains(header), "missing {header}: {}", lines[0]);
        }
        assert!(lines[1].starts_with("raw-tcp"));
        assert!(lines[1].contains("14700"));
        assert!(lines[2].contains("0.42")); // 6200 / 14700.4
        assert!(lines[2].contains("1.00")); // vs itself
    }

    #[test]
    fn extra_columns_come_from_the_rows_fields() {
        let mut rows = vec![row("raw-tcp", 1, 100.0), row("tonic", 1, 50.0)];
        rows[0].extra.push(("mb_per_sec".to_owned(), json!(12.5)));
        rows[1].extra.push(("mb_per_sec".to_owned(), Value::Null));
        let extras = [Column {
            key: "mb_per_sec",
            header: "MB/s",
        }];
        let table = render_table_with(&rows, &[], &[], &extras);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains("MB/s"));
        assert!(lines[1].contains("12.5"));
        assert!(lines[2].contains(" - "), "{}", lines[2]);
    }
}
