//! Scenario `rpc`: unary echo over ONE connection with `inflight` requests outstanding.
//!
//! For every run, in-flight level and impl (impls interleaved within a run, so machine noise
//! hits all of them alike): the impl's echo server starts on its own runtime, the client on
//! another (each with `--threads` workers), the load runs (warm-up, then the measured window),
//! and both are torn down before the next measurement. The median run per (impl, in-flight)
//! is reported, with ratios against raw TCP and tonic.

use std::time::Instant;

use bytes::Bytes;
use clap::Args;
use serde_json::{Value, json};

use crate::BoxError;
use crate::baseline::raw_tcp::RawTcp;
use crate::baseline::tarpc_echo::Tarpc;
use crate::baseline::tonic_echo::Tonic;
use crate::cli::CommonArgs;
use crate::costs::{self, Costs, ServerMemory, ServerSide};
use crate::echo::{EchoImpl, EchoWorker};
use crate::harness::{self, LoadResult, LoadSpec};
use crate::progress::Progress;
use crate::report::{self, Baseline, Column, Measurement, Row};
use crate::rss::PeakRss;
use crate::runtime::RuntimeThread;
use crate::server_proc::ServerProcess;

/// What distinguishes the scenarios that share this echo workload.
#[derive(Debug)]
pub(crate) struct Scenario {
    /// Scenario name in results.
    name: &'static str,
    /// What the table's title line says the workload is.
    title: &'static str,
    /// Impls run when `--impls` is not given.
    default_impls: &'static [ImplKind],
    /// Ratios reported for every row.
    baselines: &'static [Baseline],
}

/// `rpc`: the raw call path of every impl.
pub(crate) const RPC: Scenario = Scenario {
    name: "rpc",
    title: "unary echo, one connection per client",
    default_impls: &[
        ImplKind::Peerwire,
        ImplKind::RawTcp,
        ImplKind::RawTcpBatched,
        ImplKind::Tonic,
        ImplKind::Tarpc,
    ],
    baselines: &BASELINES,
};

/// `rpcenv`: asks to a named endpoint through an RpcEnv, beside the raw peerwire call path
/// (the target is at least 0.85 of it) and the baselines.
pub(crate) const RPCENV: Scenario = Scenario {
    name: "rpcenv",
    title: "RpcEnv ask to a named endpoint, one connection per client",
    default_impls: &[
        ImplKind::PeerwireRpcEnv,
        ImplKind::Peerwire,
        ImplKind::RawTcp,
        ImplKind::RawTcpBatched,
        ImplKind::Tonic,
    ],
    baselines: &RPCENV_BASELINES,
};

/// `service`: typed-protocol calls (idempotent, and through the retry cache) beside the raw
/// peerwire call path (the target is at most 10% overhead, i.e. at least 0.9 of it).
pub(crate) const SERVICE: Scenario = Scenario {
    name: "service",
    title: "typed protocol call (serde engine), one connection per client",
    default_impls: &[
        ImplKind::PeerwireService,
        ImplKind::PeerwireServiceCached,
        ImplKind::Peerwire,
        ImplKind::RawTcp,
        ImplKind::RawTcpBatched,
        ImplKind::Tonic,
    ],
    baselines: &RPCENV_BASELINES,
};

const RPCENV_BASELINES: [Baseline; 4] = [
    Baseline {
        impl_name: "peerwire",
        key: "vs_peerwire",
        header: "vs peerwire",
    },
    BASELINES[0],
    BASELINES[1],
    BASELINES[2],
];

/// Ratios reported for every row of `rpc`: against raw TCP as most code writes it, against
/// raw TCP that coalesces every ready frame into one write on both sides (the limit plain
/// tokio reaches), and against tonic.
const BASELINES: [Baseline; 3] = [
    Baseline {
        impl_name: "raw-tcp",
        key: "vs_raw_tcp",
        header: "vs raw-tcp",
    },
    Baseline {
        impl_name: "raw-tcp-batched",
        key: "vs_raw_tcp_batched",
        header: "vs batched",
    },
    Baseline {
        impl_name: "tonic",
        key: "vs_tonic",
        header: "vs tonic",
    },
];

/// Parameters shown as table columns (the rest are constant and printed above the table).
const COLUMNS: [Column; 3] = [
    Column {
        key: "connections",
        header: "conns",
    },
    Column {
        key: "inflight",
        header: "inflight",
    },
    Column {
        key: "payload_bytes",
        header: "payload",
    },
];

/// Defines [`ImplKind`], the implementations `rpc` can run, from one line per impl:
/// `Variant => "cli-name", type implementing EchoImpl;` (attributes such as `#[cfg(..)]`
/// allowed). The order is the default run order.
macro_rules! rpc_impls {
    ($( $(#[$attr:meta])* $variant:ident => $name:literal, $ty:ty; )*) => {
        /// An implementation under test.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum ImplKind {
            $( $(#[$attr])* #[doc = $name] $variant, )*
        }

        impl ImplKind {
            /// Every implementation built in, in the default order.
            #[allow(clippy::vec_init_then_push)] // entries may be `#[cfg]`-gated
            pub(crate) fn all() -> Vec<Self> {
                let mut all = Vec::new();
                $( $(#[$attr])* all.push(Self::$variant); )*
                all
            }

            /// The name used on the command line and in results.
            pub(crate) fn name(self) -> &'static str {
                match self {
                    $( $(#[$attr])* Self::$variant => $name, )*
                }
            }

            /// One measurement: server, client, load, teardown.
            fn run_once(self, spec: &EchoSpec) -> Result<(LoadResult, Costs), BoxError> {
                match self {
                    $( $(#[$attr])* Self::$variant => run_once::<$ty>(self, spec), )*
                }
            }

            /// Serves this impl's echo server in this process until stdin closes (the child
            /// side of [`ServerProcess`]).
            pub(crate) fn serve_until_stdin_closes(self, threads: usize) -> Result<(), BoxError> {
                match self {
                    $( $(#[$attr])* Self::$variant => crate::server_proc::serve::<$ty>(threads), )*
                }
            }
        }
    };
}

rpc_impls! {
    Peerwire => "peerwire", crate::impls::peerwire_echo::Peerwire;
    PeerwireRpcEnv => "peerwire-rpcenv", crate::impls::rpcenv_echo::RpcEnvEcho;
    PeerwireService => "peerwire-service", crate::impls::service_echo::ServiceEcho<false>;
    PeerwireServiceCached => "peerwire-service-rc", crate::impls::service_echo::ServiceEcho<true>;
    PeerwireServiceMacro => "peerwire-service-macro", crate::impls::macro_echo::MacroEcho;
    PeerwireSecret => "peerwire-secret", crate::impls::peerwire_echo::PeerwireSecret;
    PeerwireTls => "peerwire-tls", crate::impls::peerwire_echo::PeerwireTls;
    PeerwireTraced => "peerwire-traced", crate::impls::peerwire_echo::PeerwireTraced;
    PeerwireMetered => "peerwire-prom", crate::impls::metered::Metered<crate::impls::peerwire_echo::Peerwire>;
    PeerwireServiceMetered => "peerwire-service-prom", crate::impls::metered::Metered<crate::impls::service_echo::ServiceEcho<false>>;
    RawTcp => "raw-tcp", RawTcp;
    RawTcpBatched => "raw-tcp-batched", crate::baseline::raw_tcp_batched::RawTcpBatched;
    Tonic => "tonic", Tonic;
    Tarpc => "tarpc", Tarpc;
}

impl ImplKind {
    /// Whether the impl's server installs a metrics recorder (see `impls::metered`).
    fn installs_recorder(self) -> bool {
        matches!(self, Self::PeerwireMetered | Self::PeerwireServiceMetered)
    }

    /// Parses a command-line impl name.
    pub(crate) fn parse(name: &str) -> Result<Self, String> {
        let all = Self::all();
        if let Some(kind) = all.iter().copied().find(|kind| kind.name() == name) {
            return Ok(kind);
        }
        let known: Vec<&str> = all.iter().map(|kind| kind.name()).collect();
        Err(format!(
            "unknown impl `{name}`; available: {}",
            known.join(", ")
        ))
    }
}

/// `peerwire-bench rpc` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct RpcArgs {
    /// Request payloads in bytes, comma-separated (the reply echoes the same bytes): each is
    /// measured at every in-flight level, e.g. `64,1024,16384,65536,1048576`.
    #[arg(long, value_delimiter = ',', default_value = "1024")]
    pub(crate) payload: Vec<usize>,
    /// In-flight levels, comma-separated: requests kept outstanding on each connection.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub(crate) inflight: Vec<usize>,
    /// Connection counts, comma-separated: that many clients, each with its own connection
    /// and `--inflight` requests outstanding on it, e.g. `--connections 1,100,1000
    /// --inflight 1` (a NameNode's or an etcd's view of many clients).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub(crate) connections: Vec<usize>,
    /// Run the echo server on a runtime of this process instead of in a child process (the
    /// server's memory per connection is then not reported).
    #[arg(long)]
    pub(crate) server_in_process: bool,
    /// Draw throughput and p99 against the swept parameter, one line per impl, to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Impls to run, comma-separated [default: every impl built in].
    #[arg(long, value_delimiter = ',', value_parser = ImplKind::parse)]
    pub(crate) impls: Vec<ImplKind>,
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// What one measurement needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EchoSpec {
    /// Request payload bytes.
    pub(crate) payload: usize,
    /// Clients, each with its own connection.
    pub(crate) connections: usize,
    /// Requests kept outstanding on each connection.
    pub(crate) inflight: usize,
    /// Whether the server runs in a child process.
    pub(crate) server_in_child: bool,
    /// Worker threads of each runtime.
    pub(crate) threads: usize,
    /// Warm-up and window.
    pub(crate) load: LoadSpec,
}

/// One point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Point {
    payload: usize,
    connections: usize,
    inflight: usize,
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &RpcArgs, scenario: &Scenario) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.inflight.is_empty() || args.inflight.contains(&0) {
        return Err("--inflight levels must be at least 1".into());
    }
    if args.connections.is_empty() || args.connections.contains(&0) {
        return Err("--connections counts must be at least 1".into());
    }
    let mut impls = if args.impls.is_empty() {
        scenario.default_impls.to_vec()
    } else {
        args.impls.clone()
    };
    dedup_in_order(&mut impls);
    let mut inflights = args.inflight.clone();
    dedup_in_order(&mut inflights);
    let mut payloads = args.payload.clone();
    dedup_in_order(&mut payloads);
    let mut connection_counts = args.connections.clone();
    dedup_in_order(&mut connection_counts);
    // Every (payload, connections, in-flight) point, payloads outermost.
    let mut points = Vec::new();
    for &payload in &payloads {
        for &connections in &connection_counts {
            for &inflight in &inflights {
                points.push(Point {
                    payload,
                    connections,
                    inflight,
                });
            }
        }
    }

    let progress = Progress::new(
        scenario.name,
        (common.runs * points.len() * impls.len()) as u64,
    );
    // measurements[i_point][i_impl] = one entry per run.
    let mut measurements =
        vec![vec![Vec::<(Measurement, Costs, u64)>::new(); impls.len()]; points.len()];
    for run in 1..=common.runs {
        for (i, point) in points.iter().enumerate() {
            for (j, &kind) in impls.iter().enumerate() {
                let spec = EchoSpec {
                    payload: point.payload,
                    connections: point.connections,
                    inflight: point.inflight,
                    server_in_child: !args.server_in_process,
                    threads: common.threads,
                    load: LoadSpec::new(common.warmup(), common.measure()),
                };
                let label = format!(
                    "run {run}/{runs}, payload {payload} B, {connections} conn x {inflight} in \
                     flight, {name}",
                    runs = common.runs,
                    payload = point.payload,
                    connections = point.connections,
                    inflight = point.inflight,
                    name = kind.name()
                );
                progress.start(&label);
                let (load, costs) = kind
                    .run_once(&spec)
                    .map_err(|e| format!("{} {label}: {e}", scenario.name))?;
                let m = Measurement::from_load(&load);
                progress.done(&format!(
                    "{label}: {:.0} ops/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
                    m.ops_per_sec, m.p50_us, m.p99_us, m.p999_us
                ));
                measurements[i][j].push((m, costs, load.ops));
            }
        }
    }
    progress.finish();

    let mut rows = Vec::new();
    for (i, point) in points.iter().enumerate() {
        for (j, &kind) in impls.iter().enumerate() {
            let params = vec![
                ("inflight".to_owned(), json!(point.inflight)),
                ("payload_bytes".to_owned(), json!(point.payload)),
                ("connections".to_owned(), json!(point.connections)),
                ("threads".to_owned(), json!(common.threads)),
                ("secs".to_owned(), json!(common.secs)),
                ("runs".to_owned(), json!(common.runs)),
            ];
            let runs = &measurements[i][j];
            let plain: Vec<Measurement> = runs.iter().map(|(m, _, _)| *m).collect();
            let Some(mut row) = Row::from_runs(scenario.name, kind.name(), params, &plain) else {
                continue;
            };
            let throughputs: Vec<f64> = plain.iter().map(|m| m.ops_per_sec).collect();
            if let Some(median) = report::median_index(&throughputs) {
                let (m, costs, ops) = runs[median];
                row.extra = cost_fields(point, &m, &costs, ops);
            }
            rows.push(row);
        }
    }
    report::apply_ratios(&mut rows, scenario.baselines);

    if common.json {
        for row in &rows {
            println!("{}", report::json_line(row));
        }
    } else {
        println!(
            "{}: {}; payload {} B; {} server + {} client worker \
             thread(s); server {}; {} s measured after {} s warm-up; median of {} run(s) by \
             ops/s; MB/s is payload bytes each way; CPU is client + server",
            scenario.name,
            scenario.title,
            payloads
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            common.threads,
            common.threads,
            if args.server_in_process {
                "in process"
            } else {
                "in a child process"
            },
            common.secs,
            common.warmup,
            common.runs
        );
        print!(
            "{}",
            report::render_table_with(&rows, &COLUMNS, scenario.baselines, &COST_COLUMNS)
        );
    }
    let values: Vec<Value> = rows.iter().map(|r| json!(r)).collect();
    crate::plot::draw_if_asked(
        args.plot.as_deref(),
        scenario.name,
        &format!("peerwire-bench {}: {}", scenario.name, scenario.title),
        &PLOT,
        &values,
    )?;
    Ok(())
}

/// The median run's throughput in bytes and its costs, as row fields.
fn cost_fields(point: &Point, m: &Measurement, costs: &Costs, ops: u64) -> Vec<(String, Value)> {
    let round = |x: Option<f64>, places: i32| {
        x.map(|x| {
            let scale = 10f64.powi(places);
            (x * scale).round() / scale
        })
    };
    vec![
        (
            "mb_per_sec".to_owned(),
            json!(round(Some(m.ops_per_sec * point.payload as f64 / 1e6), 2)),
        ),
        (
            "cpu_s_per_mcall".to_owned(),
            json!(round(costs.cpu_secs_per_million(ops), 2)),
        ),
        (
            "server_cpu_s_per_mcall".to_owned(),
            json!(round(costs.server_cpu_secs_per_million(ops), 2)),
        ),
        (
            "server_kib_per_conn_idle".to_owned(),
            json!(round(costs.server_kib_per_conn_idle(point.connections), 1)),
        ),
        (
            "server_kib_per_conn_busy".to_owned(),
            json!(round(costs.server_kib_per_conn_busy(point.connections), 1)),
        ),
    ]
}

/// What `--plot` draws: throughput, p99 and CPU per call against the swept parameter.
const PLOT: crate::plot::PlotSpec<'static> = crate::plot::PlotSpec {
    x_keys: &[
        ("payload_bytes", "payload (bytes)"),
        ("connections", "connections"),
        ("inflight", "in flight per connection"),
    ],
    category_keys: &["payload_bytes"],
    series_keys: &["payload_bytes", "connections", "inflight"],
    panels: &[
        crate::plot::Panel::of("ops_per_sec", "calls/s"),
        crate::plot::Panel::of("p99_us", "p99 latency (µs)"),
        crate::plot::Panel::of(
            "cpu_s_per_mcall",
            "CPU s per million calls (client + server)",
        ),
        crate::plot::Panel::of(
            "server_kib_per_conn_busy",
            "server KiB per connection, busy",
        ),
    ],
};

/// Cost fields shown as table columns.
const COST_COLUMNS: [Column; 4] = [
    Column {
        key: "mb_per_sec",
        header: "MB/s",
    },
    Column {
        key: "cpu_s_per_mcall",
        header: "CPU s/Mcall",
    },
    Column {
        key: "server_kib_per_conn_idle",
        header: "srv KiB/conn idle",
    },
    Column {
        key: "server_kib_per_conn_busy",
        header: "busy",
    },
];

/// One measurement of impl `I` (named `kind`): start its server (in a child process, or on a
/// runtime of this process) and a client runtime, run the load, then close the clients, stop
/// the server and drop both runtimes.
fn run_once<I: EchoImpl + 'static>(
    kind: ImplKind,
    spec: &EchoSpec,
) -> Result<(LoadResult, Costs), BoxError> {
    if kind.installs_recorder() && !spec.server_in_child {
        return Err(format!(
            "{} installs a process-wide metrics recorder: run it without --server-in-process",
            kind.name()
        )
        .into());
    }
    if spec.server_in_child {
        let server = ServerProcess::spawn(kind, spec.threads)?;
        let side = ServerSide::Child(server.pid());
        let result = run_client::<I>(spec, server.addr(), side);
        let stopped = server.stop();
        let result = result?;
        stopped?;
        return Ok(result);
    }
    let server_rt = RuntimeThread::start("bench-server", spec.threads)?;
    let (server, addr) = server_rt.run(I::start_server())?;
    let result = run_client::<I>(spec, addr, ServerSide::InProcess);
    server_rt.run(I::stop_server(server));
    server_rt.shutdown();
    result
}

/// The client half of [`run_once`]: its own runtime, the load, then the runtime's shutdown
/// (before the server stops, so the server sees its connections close rather than a shutdown
/// with live peers).
fn run_client<I: EchoImpl + 'static>(
    spec: &EchoSpec,
    addr: std::net::SocketAddr,
    side: ServerSide,
) -> Result<(LoadResult, Costs), BoxError> {
    let client_rt = RuntimeThread::start("bench-client", spec.threads)?;
    let result = client_rt.run(echo_load_costed::<I>(
        addr,
        EchoLoad {
            payload: payload_bytes(spec.payload),
            connections: spec.connections,
            inflight: spec.inflight,
            load: spec.load,
            server: side,
        },
    ));
    client_rt.shutdown();
    result
}

/// What [`echo_load_costed`] runs.
#[derive(Debug, Clone)]
pub(crate) struct EchoLoad {
    /// The request payload.
    pub(crate) payload: Bytes,
    /// Clients, each with its own connection.
    pub(crate) connections: usize,
    /// Callers per connection, each keeping one call outstanding.
    pub(crate) inflight: usize,
    /// Warm-up and window.
    pub(crate) load: LoadSpec,
    /// Where the server runs, to read its costs.
    pub(crate) server: ServerSide,
}

/// Connects one impl `I` client to `addr` and runs the echo load on it: `inflight` callers
/// sending `payload`, then closes the client.
///
/// # Cancel safety
///
/// Not cancel safe: dropping it leaves the client's connection to be torn down with its
/// runtime.
pub(crate) async fn echo_load<I: EchoImpl>(
    addr: std::net::SocketAddr,
    payload: Bytes,
    inflight: usize,
    load: LoadSpec,
) -> Result<LoadResult, BoxError> {
    let spec = EchoLoad {
        payload,
        connections: 1,
        inflight,
        load,
        server: ServerSide::InProcess,
    };
    echo_load_costed::<I>(addr, spec)
        .await
        .map(|(load, _)| load)
}

/// Connects `spec.connections` impl `I` clients to `addr` (one connection each), runs the echo
/// load with `spec.inflight` callers on each, and reads what it cost: CPU over the window, and
/// the server's memory before the clients connected, with all of them idle, and at its peak
/// under load (when the server is a child process). Closes every client at the end.
///
/// # Cancel safety
///
/// Not cancel safe: dropping it leaves the clients' connections to be torn down with their
/// runtime.
pub(crate) async fn echo_load_costed<I: EchoImpl>(
    addr: std::net::SocketAddr,
    spec: EchoLoad,
) -> Result<(LoadResult, Costs), BoxError> {
    let base = spec.server.rss_bytes();
    let mut clients = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        match I::connect(addr).await {
            Ok(client) => clients.push(client),
            Err(e) => {
                let opened = clients.len();
                close_all::<I>(clients).await;
                return Err(
                    format!("connection {} of {}: {e}", opened + 1, spec.connections).into(),
                );
            }
        }
    }
    let idle = spec.server.rss_bytes();
    let workers: Vec<_> = clients
        .iter()
        .flat_map(|client| (0..spec.inflight).map(|_| I::caller(client)))
        .map(|caller| EchoWorker::new(caller, spec.payload.clone()))
        .collect();
    let sampler = match spec.server {
        ServerSide::Child(pid) => PeakRss::start_for(pid).ok(),
        ServerSide::InProcess => None,
    };
    let started = Instant::now();
    let window_from = started + spec.load.warmup;
    let cpu = tokio::spawn(costs::sample_window(
        spec.server,
        window_from,
        window_from + spec.load.measure,
    ));
    let result = harness::run_load(workers, spec.load).await;
    // The window has closed by now (unless the load failed early), so the sampler's last
    // reading is due at once.
    let window = match tokio::time::timeout(std::time::Duration::from_secs(2), cpu).await {
        Ok(Ok(readings)) => Some(readings),
        _ => None,
    };
    let busy_peak = sampler.map(|s| s.finish(window_from).peak);
    close_all::<I>(clients).await;
    let memory = match (base, idle, busy_peak) {
        (Some(base), Some(idle), Some(busy_peak)) => Some(ServerMemory {
            base,
            idle,
            busy_peak: busy_peak.max(idle),
        }),
        _ => None,
    };
    result.map(|load| (load, Costs::new(window, memory)))
}

async fn close_all<I: EchoImpl>(clients: Vec<I::Client>) {
    for client in clients {
        I::close(client).await;
    }
}

/// A payload of `len` bytes with a non-trivial pattern.
pub(crate) fn payload_bytes(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn dedup_in_order<T: PartialEq + Copy>(items: &mut Vec<T>) {
    let mut seen = Vec::with_capacity(items.len());
    items.retain(|item| {
        if seen.contains(item) {
            false
        } else {
            seen.push(*item);
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn spec(measure_ms: u64) -> EchoSpec {
        EchoSpec {
            payload: 64,
            connections: 1,
            inflight: 4,
            server_in_child: false,
            threads: 1,
            load: LoadSpec {
                warmup: Duration::ZERO,
                measure: Duration::from_millis(measure_ms),
                drain_timeout: Duration::from_secs(5),
            },
        }
    }

    #[test]
    fn raw_tcp_smoke() {
        let (load, _) = run_once::<RawTcp>(ImplKind::RawTcp, &spec(200)).expect("raw-tcp run");
        assert!(load.ops > 0, "raw-tcp completed calls");
        let (load, _) = run_once::<crate::baseline::raw_tcp_batched::RawTcpBatched>(
            ImplKind::RawTcpBatched,
            &spec(200),
        )
        .expect("raw-tcp-batched run");
        assert!(load.ops > 0);
    }

    #[test]
    fn every_impl_echoes() {
        for kind in ImplKind::all() {
            if kind.installs_recorder() {
                // Its recorder would outlive the run in this process: refused here, run in a
                // child process by `tests/server_process.rs`.
                let err = kind.run_once(&spec(100)).unwrap_err().to_string();
                assert!(err.contains("--server-in-process"), "{err}");
                continue;
            }
            let (load, _) = kind
                .run_once(&spec(100))
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert!(load.ops > 0, "{}", kind.name());
        }
    }

    #[test]
    fn many_connections_share_the_load_and_report_costs() {
        for kind in [ImplKind::Peerwire, ImplKind::Tonic] {
            let spec = EchoSpec {
                connections: 5,
                inflight: 1,
                ..spec(200)
            };
            let (load, costs) = kind
                .run_once(&spec)
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert!(load.ops > 0, "{}", kind.name());
            // The window was sampled; in process, the server's memory is not told apart.
            assert!(costs.cpu_secs_per_million(load.ops).is_some());
            assert_eq!(costs.server_memory, None);
        }
    }

    #[test]
    fn parses_the_documented_command_line() {
        let cli = Cli::try_parse_from([
            "peerwire-bench",
            "rpc",
            "--payload",
            "64,512",
            "--inflight",
            "1,64",
            "--connections",
            "1,100",
            "--plot",
            "rpc.png",
            "--secs",
            "3",
            "--runs",
            "1",
            "--impls",
            "raw-tcp,tonic,tarpc",
            "--json",
        ])
        .unwrap();
        #[allow(irrefutable_let_patterns)] // more scenarios will follow
        let Command::Rpc(args) = cli.command else {
            panic!("expected the rpc subcommand");
        };
        assert_eq!(args.payload, [64, 512]);
        assert_eq!(args.inflight, [1, 64]);
        assert_eq!(args.connections, [1, 100]);
        assert_eq!(args.plot.as_deref(), Some(std::path::Path::new("rpc.png")));
        assert!(!args.server_in_process);
        assert_eq!(
            args.impls,
            [ImplKind::RawTcp, ImplKind::Tonic, ImplKind::Tarpc]
        );
        assert!(args.common.json);
        assert_eq!(args.common.threads, 1);
        assert!(Cli::try_parse_from(["peerwire-bench", "rpc", "--impls", "grpc"]).is_err());
    }

    #[test]
    fn impl_names_round_trip() {
        for kind in ImplKind::all() {
            assert_eq!(ImplKind::parse(kind.name()), Ok(kind));
        }
        assert!(ImplKind::parse("nope").unwrap_err().contains("raw-tcp"));
    }
}
