//! Scenario `rpc`: unary echo over ONE connection with `inflight` requests outstanding.
//!
//! For every run, in-flight level and impl (impls interleaved within a run, so machine noise
//! hits all of them alike): the impl's echo server starts on its own runtime, the client on
//! another (each with `--threads` workers), the load runs (warm-up, then the measured window),
//! and both are torn down before the next measurement. The median run per (impl, in-flight)
//! is reported, with ratios against raw TCP and tonic.

use bytes::Bytes;
use clap::Args;
use serde_json::json;

use crate::BoxError;
use crate::baseline::raw_tcp::RawTcp;
use crate::baseline::tarpc_echo::Tarpc;
use crate::baseline::tonic_echo::Tonic;
use crate::cli::CommonArgs;
use crate::echo::{EchoImpl, EchoWorker};
use crate::harness::{self, LoadResult, LoadSpec};
use crate::report::{self, Baseline, Column, Measurement, Row};
use crate::runtime::RuntimeThread;

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
    title: "unary echo over one connection",
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
    title: "RpcEnv ask to a named endpoint over one connection",
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
    title: "typed protocol call (serde engine) over one connection",
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
const COLUMNS: [Column; 2] = [
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
            fn run_once(self, spec: &EchoSpec) -> Result<LoadResult, BoxError> {
                match self {
                    $( $(#[$attr])* Self::$variant => run_once::<$ty>(spec), )*
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
    RawTcp => "raw-tcp", RawTcp;
    RawTcpBatched => "raw-tcp-batched", crate::baseline::raw_tcp_batched::RawTcpBatched;
    Tonic => "tonic", Tonic;
    Tarpc => "tarpc", Tarpc;
}

impl ImplKind {
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
    /// In-flight levels, comma-separated: requests kept outstanding on the one connection.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub(crate) inflight: Vec<usize>,
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
    /// Requests kept outstanding.
    pub(crate) inflight: usize,
    /// Worker threads of each runtime.
    pub(crate) threads: usize,
    /// Warm-up and window.
    pub(crate) load: LoadSpec,
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &RpcArgs, scenario: &Scenario) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.inflight.is_empty() || args.inflight.contains(&0) {
        return Err("--inflight levels must be at least 1".into());
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
    // Every (payload, in-flight) point, payloads outermost.
    let points: Vec<(usize, usize)> = payloads
        .iter()
        .flat_map(|&p| inflights.iter().map(move |&i| (p, i)))
        .collect();

    // measurements[i_point][i_impl] = one entry per run.
    let mut measurements = vec![vec![Vec::<Measurement>::new(); impls.len()]; points.len()];
    for run in 1..=common.runs {
        for (i, &(payload, inflight)) in points.iter().enumerate() {
            for (j, &kind) in impls.iter().enumerate() {
                let spec = EchoSpec {
                    payload,
                    inflight,
                    threads: common.threads,
                    load: LoadSpec::new(common.warmup(), common.measure()),
                };
                let label = format!(
                    "run {run}/{runs}, payload {payload} B, inflight {inflight}, {name}",
                    runs = common.runs,
                    name = kind.name()
                );
                eprintln!("[{}] {label} ...", scenario.name);
                let load = kind
                    .run_once(&spec)
                    .map_err(|e| format!("{} {label}: {e}", scenario.name))?;
                let m = Measurement::from_load(&load);
                eprintln!(
                    "[{}] {label}: {:.0} ops/s, p50 {} µs, p99 {} µs, p99.9 {} µs",
                    scenario.name, m.ops_per_sec, m.p50_us, m.p99_us, m.p999_us
                );
                measurements[i][j].push(m);
            }
        }
    }

    let mut rows = Vec::new();
    for (i, &(payload, inflight)) in points.iter().enumerate() {
        for (j, &kind) in impls.iter().enumerate() {
            let params = vec![
                ("inflight".to_owned(), json!(inflight)),
                ("payload_bytes".to_owned(), json!(payload)),
                ("threads".to_owned(), json!(common.threads)),
                ("secs".to_owned(), json!(common.secs)),
                ("runs".to_owned(), json!(common.runs)),
            ];
            rows.extend(Row::from_runs(
                scenario.name,
                kind.name(),
                params,
                &measurements[i][j],
            ));
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
             thread(s); {} s measured after {} s warm-up; median of {} run(s) by ops/s",
            scenario.name,
            scenario.title,
            payloads
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            common.threads,
            common.threads,
            common.secs,
            common.warmup,
            common.runs
        );
        print!(
            "{}",
            report::render_table(&rows, &COLUMNS, scenario.baselines)
        );
    }
    Ok(())
}

/// One measurement of impl `I`: start its server and a client on separate runtimes, run the
/// load, then close the client, stop the server and drop both runtimes.
fn run_once<I: EchoImpl + 'static>(spec: &EchoSpec) -> Result<LoadResult, BoxError> {
    let server_rt = RuntimeThread::start("bench-server", spec.threads)?;
    let (server, addr) = server_rt.run(I::start_server())?;
    let client_rt = match RuntimeThread::start("bench-client", spec.threads) {
        Ok(rt) => rt,
        Err(e) => {
            server_rt.run(I::stop_server(server));
            return Err(e.into());
        }
    };

    let result = client_rt.run(echo_load::<I>(
        addr,
        payload_bytes(spec.payload),
        spec.inflight,
        spec.load,
    ));
    // Client side first, so the server sees its connection close rather than a shutdown with
    // a live peer.
    client_rt.shutdown();
    server_rt.run(I::stop_server(server));
    server_rt.shutdown();
    result
}

/// Connects impl `I`'s client to `addr` and runs the echo load on it: `inflight` callers
/// sending `payload`, then closes the client.
pub(crate) async fn echo_load<I: EchoImpl>(
    addr: std::net::SocketAddr,
    payload: Bytes,
    inflight: usize,
    load: LoadSpec,
) -> Result<LoadResult, BoxError> {
    let client = I::connect(addr).await?;
    let workers: Vec<_> = (0..inflight)
        .map(|_| EchoWorker::new(I::caller(&client), payload.clone()))
        .collect();
    let result = harness::run_load(workers, load).await;
    I::close(client).await;
    result
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
            inflight: 4,
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
        let load = run_once::<RawTcp>(&spec(200)).expect("raw-tcp run");
        assert!(load.ops > 0, "raw-tcp completed calls");
        let load = run_once::<crate::baseline::raw_tcp_batched::RawTcpBatched>(&spec(200))
            .expect("raw-tcp-batched run");
        assert!(load.ops > 0);
    }

    #[test]
    fn every_impl_echoes() {
        for kind in ImplKind::all() {
            let load = kind
                .run_once(&spec(100))
                .unwrap_or_else(|e| panic!("{}: {e}", kind.name()));
            assert!(load.ops > 0, "{}", kind.name());
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
