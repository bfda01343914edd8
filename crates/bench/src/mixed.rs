//! Scenario `mixed`: small calls sharing ONE connection with large ones.
//!
//! One client, one connection: `--small-inflight` callers echo `--small` bytes while
//! `--large-inflight` callers echo `--large` bytes (64 MiB by default) on the same connection.
//! Each impl runs the small calls alone (idle) and beside the large ones (loaded) in the same
//! invocation; the row reports both latency distributions of the small calls, their ratio
//! (loaded p99 / idle p99), and the large calls' throughput. It shows head-of-line blocking: a
//! transport that writes a large message whole holds every small call queued behind it for the
//! whole message.

use std::net::SocketAddr;

use clap::Args;
use serde_json::{Value, json};

use crate::BoxError;
use crate::baseline::raw_tcp::RawTcp;
use crate::baseline::tarpc_echo::Tarpc;
use crate::baseline::tonic_echo::Tonic;
use crate::cli::CommonArgs;
use crate::echo::{EchoImpl, EchoWorker};
use crate::harness::{self, LoadResult, LoadSpec};
use crate::impls::peerwire_echo::Peerwire;
use crate::report::{Measurement, median_index};
use crate::runtime::RuntimeThread;

/// `peerwire-bench mixed` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct MixedArgs {
    /// Payload of the small calls in bytes.
    #[arg(long, default_value_t = 1024)]
    small: usize,
    /// Small calls kept in flight.
    #[arg(long, default_value_t = 4)]
    small_inflight: usize,
    /// Payload of the large calls in bytes (64 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    large: usize,
    /// Large calls kept in flight beside them.
    #[arg(long, default_value_t = 2)]
    large_inflight: usize,
    /// Run the large calls on a second connection of their own instead: what the small calls
    /// pay for sharing the machine (CPU, memory bandwidth) rather than the connection.
    #[arg(long)]
    separate_connections: bool,
    /// Impls: `peerwire`, `tonic`, `tarpc`, `raw-tcp` [default: all].
    #[arg(long, value_delimiter = ',')]
    impls: Vec<String>,
    /// Shared options.
    #[command(flatten)]
    common: CommonArgs,
}

/// The impls this scenario knows.
const IMPLS: [&str; 4] = ["peerwire", "tonic", "tarpc", "raw-tcp"];

/// One measurement: the small calls, and the large ones when loaded.
struct Outcome {
    small: LoadResult,
    large: Option<LoadResult>,
}

/// Runs one measurement of impl `I`: the server on one runtime, one client on another; the
/// small callers, and with `loaded` the large ones, share the client's connection.
fn run_once<I: EchoImpl + 'static>(args: &MixedArgs, loaded: bool) -> Result<Outcome, BoxError> {
    let common = &args.common;
    let server_rt = RuntimeThread::start("bench-server", common.threads)?;
    let (server, addr): (I::Server, SocketAddr) = server_rt.run(I::start_server())?;
    let client_rt = RuntimeThread::start("bench-client", common.threads)?;
    let spec = LoadSpec::new(common.warmup(), common.measure());
    let small = crate::rpc::payload_bytes(args.small);
    let large = crate::rpc::payload_bytes(args.large);
    let (small_n, large_n) = (
        args.small_inflight,
        if loaded { args.large_inflight } else { 0 },
    );
    let separate = args.separate_connections;
    let result = client_rt.run(async move {
        let client = I::connect(addr).await?;
        let other = if separate {
            Some(I::connect(addr).await?)
        } else {
            None
        };
        let small_workers: Vec<_> = (0..small_n)
            .map(|_| EchoWorker::new(I::caller(&client), small.clone()))
            .collect();
        let large_workers: Vec<_> = (0..large_n)
            .map(|_| EchoWorker::new(I::caller(other.as_ref().unwrap_or(&client)), large.clone()))
            .collect();
        let (small, large) = if large_workers.is_empty() {
            (harness::run_load(small_workers, spec).await, None)
        } else {
            let (s, l) = tokio::join!(
                harness::run_load(small_workers, spec),
                harness::run_load(large_workers, spec)
            );
            (s, Some(l))
        };
        I::close(client).await;
        if let Some(other) = other {
            I::close(other).await;
        }
        Ok::<_, BoxError>(Outcome {
            small: small?,
            large: large.transpose()?,
        })
    });
    client_rt.shutdown();
    server_rt.run(I::stop_server(server));
    server_rt.shutdown();
    result
}

fn run_impl(name: &str, args: &MixedArgs, loaded: bool) -> Result<Outcome, BoxError> {
    match name {
        "peerwire" => run_once::<Peerwire>(args, loaded),
        "tonic" => run_once::<Tonic>(args, loaded),
        "tarpc" => run_once::<Tarpc>(args, loaded),
        _ => run_once::<RawTcp>(args, loaded),
    }
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &MixedArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.small_inflight == 0 || args.large_inflight == 0 {
        return Err("--small-inflight and --large-inflight must be at least 1".into());
    }
    let impls = crate::cli::select_impls(&args.impls, &IMPLS)?;
    // results[impl][condition]: condition 0 idle, 1 loaded; one outcome per run.
    let mut results: Vec<[Vec<Outcome>; 2]> = impls.iter().map(|_| [vec![], vec![]]).collect();
    let mut failures: Vec<Vec<String>> = impls.iter().map(|_| vec![]).collect();
    for run in 1..=common.runs {
        for (i, name) in impls.iter().enumerate() {
            for (c, loaded) in [false, true].into_iter().enumerate() {
                let label = format!(
                    "run {run}/{}, {name}, {}",
                    common.runs,
                    if loaded { "loaded" } else { "idle" }
                );
                eprintln!("[mixed] {label} ...");
                match run_impl(name, args, loaded) {
                    Ok(outcome) => {
                        let m = Measurement::from_load(&outcome.small);
                        eprintln!(
                            "[mixed] {label}: small {:.0} ops/s, p50 {} µs, p99 {} µs{}",
                            m.ops_per_sec,
                            m.p50_us,
                            m.p99_us,
                            outcome
                                .large
                                .as_ref()
                                .map(|l| format!(
                                    "; large {:.0} MB/s",
                                    l.ops_per_sec() * args.large as f64 / 1e6
                                ))
                                .unwrap_or_default()
                        );
                        results[i][c].push(outcome);
                    }
                    Err(e) => {
                        eprintln!("[mixed] {label}: failed: {e}");
                        failures[i].push(format!("{label}: {e}"));
                    }
                }
            }
        }
    }
    let lines: Vec<Value> = impls
        .iter()
        .enumerate()
        .map(|(i, name)| row(name, args, &results[i], &failures[i]))
        .collect();
    if common.json {
        for line in &lines {
            println!("{line}");
        }
        return Ok(());
    }
    println!(
        "mixed: {} in flight of {} B echoes, alone (idle) and beside {} in flight of {} B (loaded) on {}; {} s measured after {} s warm-up; median of {} run(s) by the small calls' p99",
        args.small_inflight,
        args.small,
        args.large_inflight,
        args.large,
        if args.separate_connections {
            "a second connection"
        } else {
            "the SAME connection"
        },
        common.secs,
        common.warmup,
        common.runs
    );
    println!(
        "{:<9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>9} {:>10}",
        "impl",
        "idle p50",
        "idle p99",
        "loaded p50",
        "loaded p99",
        "loaded p99.9",
        "p99 ×",
        "large MB/s"
    );
    for l in &lines {
        if l.get("idle").is_none() {
            println!(
                "{:<9} failed: {}",
                l["impl"].as_str().unwrap_or_default(),
                l["failed_runs"]
            );
            continue;
        }
        let us = |v: &Value| format!("{v}µs");
        println!(
            "{:<9} {:>10} {:>10} {:>11} {:>11} {:>12} {:>9} {:>10}",
            l["impl"].as_str().unwrap_or_default(),
            us(&l["idle"]["p50_us"]),
            us(&l["idle"]["p99_us"]),
            us(&l["loaded"]["p50_us"]),
            us(&l["loaded"]["p99_us"]),
            us(&l["loaded"]["p999_us"]),
            l["p99_loaded_vs_idle"].to_string(),
            l["large_mb_per_sec"].to_string(),
        );
    }
    Ok(())
}

/// The JSON row of one impl: medians (by the small calls' p99) of each condition.
fn row(name: &str, args: &MixedArgs, outcomes: &[Vec<Outcome>; 2], failures: &[String]) -> Value {
    if outcomes[0].is_empty() || outcomes[1].is_empty() {
        return json!({"scenario": "mixed", "impl": name, "failed_runs": failures});
    }
    let median = |outcomes: &[Outcome]| -> (usize, Vec<u64>) {
        let p99s: Vec<f64> = outcomes
            .iter()
            .map(|o| Measurement::from_load(&o.small).p99_us as f64)
            .collect();
        let at = median_index(&p99s).expect("at least one run");
        (at, p99s.iter().map(|p| *p as u64).collect())
    };
    let (idle_at, idle_p99s) = median(&outcomes[0]);
    let (loaded_at, loaded_p99s) = median(&outcomes[1]);
    let idle = Measurement::from_load(&outcomes[0][idle_at].small);
    let loaded = Measurement::from_load(&outcomes[1][loaded_at].small);
    let large_mbs: Vec<f64> = outcomes[1]
        .iter()
        .filter_map(|o| o.large.as_ref())
        .map(|l| l.ops_per_sec() * args.large as f64 / 1e6)
        .collect();
    let mut sorted = large_mbs.clone();
    sorted.sort_by(f64::total_cmp);
    let large_median = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let ratio = if idle.p99_us > 0 {
        loaded.p99_us as f64 / idle.p99_us as f64
    } else {
        f64::NAN
    };
    let side = |m: &Measurement, p99s: Vec<u64>| json!({"ops_per_sec": m.ops_per_sec.round() as u64, "p50_us": m.p50_us, "p99_us": m.p99_us, "p999_us": m.p999_us, "p99_us_runs": p99s});
    json!({
        "scenario": "mixed",
        "impl": name,
        "small_bytes": args.small,
        "small_inflight": args.small_inflight,
        "large_bytes": args.large,
        "large_inflight": args.large_inflight,
        "separate_connections": args.separate_connections,
        "runs": args.common.runs,
        "secs": args.common.secs,
        "idle": side(&idle, idle_p99s),
        "loaded": side(&loaded, loaded_p99s),
        "p99_loaded_vs_idle": (ratio * 100.0).round() / 100.0,
        "large_mb_per_sec": large_median.round() as u64,
        "large_mb_per_sec_runs": large_mbs.iter().map(|m| m.round() as u64).collect::<Vec<_>>(),
        "failed_runs": failures.len(),
    })
}
