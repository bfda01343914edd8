//! `--plot FILE.png`: a scenario's result rows drawn with `plotters`, one panel per metric
//! (throughput, p99, ...), one line per impl, against the parameter the run swept (payload,
//! connections, in-flight level, clients, groups) or, where nothing numeric was swept, against
//! the cases the scenario ran (raft's cases, the data stream's topologies).
//!
//! Both axes of a swept parameter are drawn on a log scale when they span more than a decade
//! (payloads from 64 B to 64 MiB; 1 to 1,000 connections). Text is drawn through `ab_glyph`
//! with a TrueType font read at run time ([`FONT_ENV`], or DejaVu Sans where Debian puts it), so
//! building the benchmark needs no fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use serde_json::Value;

use crate::BoxError;

/// Environment variable naming the `.ttf` file plots are lettered with.
pub(crate) const FONT_ENV: &str = "PEERWIRE_PLOT_FONT";

/// Where the font is looked for when [`FONT_ENV`] is not set (Debian's `fonts-dejavu-core`,
/// Fedora, Arch).
const FONT_PATHS: [&str; 3] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// The font family name the font is registered under.
const FAMILY: &str = "sans-serif";

/// Candidate x label positions of a numeric axis (only those next to a swept value are
/// lettered).
const X_LABEL_SLOTS: usize = 400;

/// Size of the image: one panel is `PANEL_WIDTH` wide.
const PANEL_WIDTH: u32 = 640;
const HEIGHT: u32 = 520;

/// What to draw from a scenario's rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlotSpec<'a> {
    /// Numeric parameters that may be the x axis, with their axis label, in order of
    /// preference: the first that takes more than one value in the rows is used.
    pub(crate) x_keys: &'a [(&'a str, &'a str)],
    /// Keys that name a case, for the x axis when no numeric parameter varies.
    pub(crate) category_keys: &'a [&'a str],
    /// Parameters that, where they vary, split an impl's rows into separate lines.
    pub(crate) series_keys: &'a [&'a str],
    /// One panel per metric.
    pub(crate) panels: &'a [Panel<'a>],
}

/// One panel: a metric of the rows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Panel<'a> {
    /// The row key of the metric; rows without it are not in the panel.
    pub(crate) key: &'a str,
    /// The panel's caption.
    pub(crate) label: &'a str,
    /// Only rows whose field `.0` is the string `.1` (a metric several cases share).
    pub(crate) only: Option<(&'a str, &'a str)>,
}

impl<'a> Panel<'a> {
    /// A panel of metric `key` over every row that has it.
    pub(crate) const fn of(key: &'a str, label: &'a str) -> Self {
        Self {
            key,
            label,
            only: None,
        }
    }

    /// A panel of metric `key` over the rows whose `field` is `value`.
    pub(crate) const fn only(key: &'a str, label: &'a str, field: &'a str, value: &'a str) -> Self {
        Self {
            key,
            label,
            only: Some((field, value)),
        }
    }

    fn admits(&self, row: &Value) -> bool {
        row.get(self.key).is_some_and(Value::is_number)
            && self
                .only
                .is_none_or(|(field, value)| row.get(field).and_then(Value::as_str) == Some(value))
    }
}

/// One line of a panel.
#[derive(Debug, Clone, PartialEq)]
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// How the x axis is laid out.
#[derive(Debug, Clone, PartialEq)]
enum XAxis {
    /// A numeric parameter; `log` when it spans more than a decade (values are then drawn at
    /// their base-10 logarithm).
    Numeric {
        key: String,
        label: String,
        log: bool,
    },
    /// Cases at 0, 1, 2, ... with these names.
    Categories(Vec<String>),
}

/// Draws `rows` as `spec` says into the PNG at `path`, under `title`.
pub(crate) fn draw(
    path: &Path,
    title: &str,
    spec: &PlotSpec<'_>,
    rows: &[Value],
) -> Result<(), BoxError> {
    register_font()?;
    if rows.is_empty() {
        return Err("nothing to plot: the run produced no rows".into());
    }
    let panels = spec.panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (PANEL_WIDTH * panels, HEIGHT)).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| format!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| failed(&e))?;
    let root = root.titled(title, (FAMILY, 20)).map_err(|e| failed(&e))?;
    let areas = root.split_evenly((1, panels as usize));
    for (area, panel) in areas.iter().zip(spec.panels) {
        // Each panel's axis from the rows that have its metric (raft's cases each have their
        // own metrics).
        let with_metric: Vec<Value> = rows
            .iter()
            .filter(|row| panel.admits(row))
            .cloned()
            .collect();
        let Some(axis) = x_axis(spec, &with_metric) else {
            continue;
        };
        let series = series(spec, &axis, &with_metric, panel.key);
        draw_panel(area, &axis, panel.label, &series).map_err(|e| failed(&e))?;
    }
    root.present().map_err(|e| failed(&e))?;
    Ok(())
}

/// Draws `rows` to `path` when one was given (`--plot`), and says where on stderr.
pub(crate) fn draw_if_asked(
    path: Option<&Path>,
    scenario: &str,
    title: &str,
    spec: &PlotSpec<'_>,
    rows: &[Value],
) -> Result<(), BoxError> {
    let Some(path) = path else {
        return Ok(());
    };
    draw(path, title, spec, rows)?;
    eprintln!("[{scenario}] plot written to {}", path.display());
    Ok(())
}

/// Registers the font once per process.
fn register_font() -> Result<(), BoxError> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let candidates: Vec<String> = match std::env::var(FONT_ENV) {
                Ok(path) => vec![path],
                Err(_) => FONT_PATHS.iter().map(|p| (*p).to_owned()).collect(),
            };
            let (path, bytes) = candidates
                .iter()
                .find_map(|path| std::fs::read(path).ok().map(|b| (path, b)))
                .ok_or_else(|| {
                    format!(
                        "no font to letter the plot with: tried {}; set {FONT_ENV} to a .ttf \
                         file (on Debian: apt-get install fonts-dejavu-core)",
                        candidates.join(", ")
                    )
                })?;
            // The registry keeps the bytes for the life of the process; one font, once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a TrueType font plotters can read"))
        })
        .clone()
        .map_err(Into::into)
}

/// The x axis: the first numeric key of `spec.x_keys` that varies, else the cases.
fn x_axis(spec: &PlotSpec<'_>, rows: &[Value]) -> Option<XAxis> {
    if rows.is_empty() {
        return None;
    }
    for &(key, label) in spec.x_keys {
        let values = distinct_numbers(rows, key);
        if values.len() > 1 {
            let (lo, hi) = (values[0], values[values.len() - 1]);
            return Some(XAxis::Numeric {
                key: key.to_owned(),
                label: label.to_owned(),
                log: lo > 0.0 && hi / lo > 10.0,
            });
        }
    }
    let mut names: Vec<String> = Vec::new();
    for row in rows {
        let name = category(spec, row);
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Some(XAxis::Categories(names))
}

/// The distinct numeric values of `key` in `rows`, ascending.
fn distinct_numbers(rows: &[Value], key: &str) -> Vec<f64> {
    let mut values: Vec<f64> = rows
        .iter()
        .filter_map(|row| row.get(key).and_then(Value::as_f64))
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    values
}

fn category(spec: &PlotSpec<'_>, row: &Value) -> String {
    let parts: Vec<String> = spec
        .category_keys
        .iter()
        .filter_map(|key| row.get(*key).map(display))
        .collect();
    if parts.is_empty() {
        "all".to_owned()
    } else {
        parts.join(" ")
    }
}

fn display(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The lines of the panel for metric `key`: one per impl and combination of the varying
/// series keys, in the order rows first show them; points sorted by x.
fn series(spec: &PlotSpec<'_>, axis: &XAxis, rows: &[Value], key: &str) -> Vec<Series> {
    let varying: Vec<&str> = spec
        .series_keys
        .iter()
        .copied()
        .filter(|k| !matches!(axis, XAxis::Numeric { key, .. } if key == k))
        .filter(|k| {
            let mut seen: Vec<&Value> = Vec::new();
            for row in rows {
                if let Some(v) = row.get(*k)
                    && !seen.contains(&v)
                {
                    seen.push(v);
                }
            }
            seen.len() > 1
        })
        .collect();
    let mut lines: Vec<Series> = Vec::new();
    for row in rows {
        let Some(y) = row.get(key).and_then(Value::as_f64) else {
            continue;
        };
        let x = match axis {
            XAxis::Numeric { key, log, .. } => match row.get(key).and_then(Value::as_f64) {
                Some(x) if *log && x > 0.0 => x.log10(),
                Some(x) if !*log => x,
                _ => continue,
            },
            XAxis::Categories(names) => {
                let name = category(spec, row);
                match names.iter().position(|n| *n == name) {
                    Some(i) => i as f64,
                    None => continue,
                }
            }
        };
        let mut name = row.get("impl").map_or_else(|| "-".to_owned(), display);
        for k in &varying {
            if let Some(v) = row.get(*k) {
                name.push_str(&format!(" {k}={}", display(v)));
            }
        }
        match lines.iter_mut().find(|s| s.name == name) {
            Some(line) => line.points.push((x, y)),
            None => lines.push(Series {
                name,
                points: vec![(x, y)],
            }),
        }
    }
    for line in &mut lines {
        line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    lines
}

/// Draws one metric's panel. The y axis is logarithmic when the values span more than a decade.
fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    axis: &XAxis,
    label: &str,
    series: &[Series],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let xs: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let y_extent = extent(&ys);
    let y_log = y_extent.is_some_and(|(lo, hi)| lo > 0.0 && hi / lo > 10.0);
    let (y_lo, y_hi) = match y_extent {
        None => (0.0, 1.0),
        Some((lo, hi)) if y_log => (lo.log10() - 0.05, hi.log10() + 0.05),
        Some((_, hi)) => (0.0, hi * 1.1 + f64::EPSILON),
    };
    let (x_lo, x_hi, x_label) = match axis {
        XAxis::Numeric { label, .. } => match extent(&xs) {
            None => (0.0, 1.0, label.clone()),
            Some((lo, hi)) => {
                let pad = ((hi - lo) * 0.04).max(0.05);
                (lo - pad, hi + pad, label.clone())
            }
        },
        XAxis::Categories(names) => (-0.5, names.len() as f64 - 0.5, String::new()),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(label, (FAMILY, 17))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?;
    // Numeric axes are labelled at the swept values only: many candidate label positions,
    // and each data point's value printed at the one nearest to it.
    let step = (x_hi - x_lo) / X_LABEL_SLOTS as f64;
    let at_data = |x: f64| xs.iter().copied().find(|p| (x - p).abs() <= step / 2.0);
    let x_format = |x: &f64| match axis {
        XAxis::Numeric { log, key, .. } => at_data(*x)
            .map(|p| {
                let value = if *log { 10f64.powf(p) } else { p };
                if key.contains("bytes") {
                    human_bytes(value)
                } else {
                    human(value)
                }
            })
            .unwrap_or_default(),
        XAxis::Categories(names) => {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        }
    };
    let y_format = |y: &f64| human(if y_log { 10f64.powf(*y) } else { *y });
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .x_label_formatter(&x_format)
        .y_label_formatter(&y_format)
        .label_style((FAMILY, 13));
    match axis {
        XAxis::Categories(names) => mesh.x_labels(names.len().max(1) * 2 + 1),
        XAxis::Numeric { .. } => {
            mesh.x_labels(X_LABEL_SLOTS).disable_x_mesh();
            mesh.set_tick_mark_size(LabelAreaPosition::Bottom, 0)
        }
    };
    mesh.draw()?;
    for (i, line) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = line
            .points
            .iter()
            .map(|&(x, y)| {
                (
                    x,
                    if y_log {
                        y.max(f64::MIN_POSITIVE).log10()
                    } else {
                        y
                    },
                )
            })
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(line.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 13))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// The smallest and largest of `values`, `None` when there are none.
fn extent(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().reduce(f64::min)?;
    let hi = values.iter().copied().reduce(f64::max)?;
    Some((lo, hi))
}

/// A number in two or three significant digits with an SI suffix: 950, 1.5k, 64k, 1.0M.
fn human(x: f64) -> String {
    let (scaled, suffix) = match x.abs() {
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    if scaled.abs() >= 10.0 || (suffix.is_empty() && scaled.fract().abs() < 0.05) {
        format!("{scaled:.0}{suffix}")
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

/// A byte count in binary units: 64 B, 1 KiB, 64 KiB, 1 MiB, 64 MiB.
fn human_bytes(x: f64) -> String {
    let (scaled, unit) = match x.abs() {
        a if a >= (1u64 << 30) as f64 => (x / (1u64 << 30) as f64, "GiB"),
        a if a >= (1u64 << 20) as f64 => (x / (1u64 << 20) as f64, "MiB"),
        a if a >= 1024.0 => (x / 1024.0, "KiB"),
        _ => (x, "B"),
    };
    if (scaled - scaled.round()).abs() < 0.05 {
        format!("{scaled:.0} {unit}")
    } else {
        format!("{scaled:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SPEC: PlotSpec<'static> = PlotSpec {
        x_keys: &[("payload_bytes", "payload"), ("inflight", "in flight")],
        category_keys: &["case"],
        series_keys: &["inflight", "payload_bytes"],
        panels: &[
            Panel::of("ops_per_sec", "calls/s"),
            Panel::of("p99_us", "p99 µs"),
        ],
    };

    fn row(name: &str, payload: u64, inflight: u64, ops: f64) -> Value {
        json!({"impl": name, "payload_bytes": payload, "inflight": inflight, "ops_per_sec": ops})
    }

    #[test]
    fn the_first_swept_parameter_is_the_x_axis_and_the_others_split_lines() {
        let rows = vec![
            row("peerwire", 64, 1, 10.0),
            row("peerwire", 65536, 1, 20.0),
            row("peerwire", 64, 64, 30.0),
            row("tonic", 65536, 64, 5.0),
            row("tonic", 64, 64, 6.0),
        ];
        let axis = x_axis(&SPEC, &rows).unwrap();
        assert_eq!(
            axis,
            XAxis::Numeric {
                key: "payload_bytes".into(),
                label: "payload".into(),
                log: true
            }
        );
        let lines = series(&SPEC, &axis, &rows, "ops_per_sec");
        let names: Vec<&str> = lines.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "peerwire inflight=1",
                "peerwire inflight=64",
                "tonic inflight=64"
            ]
        );
        // Log x, points sorted by payload.
        assert_eq!(
            lines[2].points,
            vec![(64f64.log10(), 6.0), (65536f64.log10(), 5.0)]
        );
        // A metric no row has gives no lines.
        assert!(series(&SPEC, &axis, &rows, "p99_us").is_empty());
    }

    #[test]
    fn cases_are_the_x_axis_when_nothing_numeric_varies() {
        let rows = vec![
            json!({"impl": "peerwire", "case": "append", "ops_per_sec": 3.0}),
            json!({"impl": "raw-tcp", "case": "append", "ops_per_sec": 4.0}),
            json!({"impl": "peerwire", "case": "snapshot", "ops_per_sec": 1.0}),
        ];
        let axis = x_axis(&SPEC, &rows).unwrap();
        assert_eq!(
            axis,
            XAxis::Categories(vec!["append".into(), "snapshot".into()])
        );
        let lines = series(&SPEC, &axis, &rows, "ops_per_sec");
        assert_eq!(lines[0].points, vec![(0.0, 3.0), (1.0, 1.0)]);
        assert_eq!(lines[1].points, vec![(0.0, 4.0)]);
        assert_eq!(x_axis(&SPEC, &[]), None);
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(human(950.0), "950");
        assert_eq!(human(1536.0), "1.5k");
        assert_eq!(human(65536.0), "66k");
        assert_eq!(human(1_048_576.0), "1.0M");
        assert_eq!(human(3.24), "3.2");
        assert_eq!(human(0.0), "0");
        assert_eq!(human_bytes(64.0), "64 B");
        assert_eq!(human_bytes(65536.0), "64 KiB");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(64.0 * 1048576.0), "64 MiB");
    }

    #[test]
    fn draws_a_png_when_a_font_is_at_hand() {
        // Drawing needs a TrueType font; where the machine has none, the error says how to
        // get one, and nothing else is checked.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.png");
        let rows = vec![
            json!({"impl": "peerwire", "payload_bytes": 64, "inflight": 1, "ops_per_sec": 9.0, "p99_us": 80}),
            json!({"impl": "peerwire", "payload_bytes": 65536, "inflight": 1, "ops_per_sec": 3.0, "p99_us": 400}),
        ];
        match draw(&path, "test", &SPEC, &rows) {
            Ok(()) => {
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(&bytes[1..4], b"PNG");
            }
            Err(e) => assert!(e.to_string().contains(FONT_ENV), "{e}"),
        }
    }
}
