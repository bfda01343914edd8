//! Scenario `overload`: ten clients offer several times the server's measured capacity, one of
//! them (the hog, client 0) most of it; the server answers what it cannot queue with `Busy`.
//! Reported per (impl, load, client): offered, admitted and busy calls per second, admitted
//! p99, and the process's peak RSS — beside the same mix at 50% load.
//!
//! The impls are the same peerwire server with the fair call queue (`peerwire-fair`) and with
//! the FIFO call queue of the same size (`peerwire-fifo`, the baseline: what a server without
//! fair scheduling does). The server's handlers wait `--service-us` per call (a handler bound
//! by a lock or a disk rather than by this machine's two cores), so capacity is set by the
//! handler pool and measured, not assumed: a closed-loop run against the FIFO server before
//! the runs.

mod mix;
mod open_loop;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Args, ValueEnum};
use peerwire::{
    Client, ClientConfig, FairScheduler, FairSchedulerConfig, Identity, Request, RetryPolicy,
    Server, ServerConfig, handler_fn,
};
use serde_json::{Value, json};

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::harness::{self, LoadSpec, Worker, new_histogram};
use crate::rss::PeakRss;
use crate::runtime::RuntimeThread;
use mix::Mix;
use open_loop::{ClientSummary, Window};

const ROUTE: &str = "work";

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OverloadImpl {
    /// The fair call queue (priority levels by decayed cost, weighted round robin).
    #[value(name = "peerwire-fair")]
    Fair,
    /// The FIFO call queue of the same capacity.
    #[value(name = "peerwire-fifo")]
    Fifo,
}

impl OverloadImpl {
    fn name(self) -> &'static str {
        match self {
            Self::Fair => "peerwire-fair",
            Self::Fifo => "peerwire-fifo",
        }
    }
}

/// `peerwire-bench overload` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct OverloadArgs {
    /// Clients, each with its own node id; client 0 is the hog.
    #[arg(long, default_value_t = 10)]
    pub(crate) clients: usize,
    /// Total offered load as multiples of the measured capacity, comma-separated; the largest
    /// is the peak the light clients' rates are set at.
    #[arg(long, value_delimiter = ',', default_value = "0.5,4")]
    pub(crate) load: Vec<f64>,
    /// Each light client's rate at the peak load, as a fraction of its fair share of capacity
    /// (capacity / clients); the hog offers the rest of the load.
    #[arg(long, default_value_t = 0.5)]
    pub(crate) light_share: f64,
    /// Handler tasks of the server.
    #[arg(long, default_value_t = 8)]
    pub(crate) handlers: usize,
    /// Time each call spends in its handler, µs.
    #[arg(long, default_value_t = 1000)]
    pub(crate) service_us: u64,
    /// Call queue capacity (the fair queue splits it between its four levels). Two calls per
    /// handler: an admitted call waits about two handler turns at most, which is what keeps
    /// the admitted p99 near the unloaded one.
    #[arg(long, default_value_t = 16)]
    pub(crate) queue: usize,
    /// Request payload bytes (echoed).
    #[arg(long, default_value_t = 256)]
    pub(crate) payload: usize,
    /// Use this capacity (calls/s) instead of measuring it.
    #[arg(long)]
    pub(crate) capacity: Option<f64>,
    /// Servers to run, comma-separated [default: both].
    #[arg(long, value_delimiter = ',')]
    pub(crate) impls: Vec<OverloadImpl>,
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// One measurement of one (impl, load).
#[derive(Debug, Clone)]
struct RunResult {
    clients: Vec<ClientSummary>,
    /// p99 of every admitted call of every client, µs.
    admitted_p99: u64,
    peak_rss: u64,
    /// Resident set when the measured window opened (after the warm-up).
    window_start_rss: u64,
}

impl RunResult {
    fn total_ok(&self) -> u64 {
        self.clients.iter().map(|c| c.ok).sum()
    }
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &OverloadArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.handlers == 0 || args.queue == 0 {
        return Err("--handlers and --queue must be at least 1".into());
    }
    if args.load.is_empty() {
        return Err("--load needs at least one value".into());
    }
    let peak = args.load.iter().copied().fold(f64::NAN, f64::max);
    let impls = if args.impls.is_empty() {
        vec![OverloadImpl::Fair, OverloadImpl::Fifo]
    } else {
        args.impls.clone()
    };
    let capacity = match args.capacity {
        Some(c) => c,
        None => {
            eprintln!("[overload] measuring capacity (closed loop, FIFO server) ...");
            let c = measure_capacity(args)?;
            eprintln!("[overload] capacity: {c:.0} calls/s");
            c
        }
    };
    let mixes: Vec<Mix> = args
        .load
        .iter()
        .map(|&load| Mix::new(capacity, args.clients, load, peak, args.light_share))
        .collect::<Result<_, _>>()?;

    // results[i_impl][i_load] = one entry per run.
    let mut results = vec![vec![Vec::<RunResult>::new(); args.load.len()]; impls.len()];
    for run in 1..=common.runs {
        for (l, mix) in mixes.iter().enumerate() {
            for (i, &kind) in impls.iter().enumerate() {
                let label = format!(
                    "run {run}/{}, load {}, {}",
                    common.runs,
                    load_label(args.load[l]),
                    kind.name()
                );
                eprintln!(
                    "[overload] {label}: offering {:.0} calls/s (hog {:.0}) ...",
                    mix.total(),
                    mix.rates[0]
                );
                let result = run_once(args, kind, mix)?;
                let secs = common.secs;
                let light_ok: u64 = result.clients[1..].iter().map(|c| c.ok).sum();
                let light_offered: u64 = result.clients[1..].iter().map(|c| c.offered).sum();
                eprintln!(
                    "[overload] {label}: admitted {:.0}/s, light success {:.1}%, admitted p99 {} µs, \
                     peak RSS {:.1} MB",
                    result.total_ok() as f64 / secs,
                    percent(light_ok, light_offered),
                    result.admitted_p99,
                    mb(result.peak_rss)
                );
                if let Some(e) = result.clients.iter().find_map(|c| c.first_error.clone()) {
                    eprintln!("[overload] {label}: unexpected errors, first: {e}");
                }
                results[i][l].push(result);
            }
        }
    }

    let mut rows = Vec::new();
    let mut summaries = Vec::new();
    for (i, &kind) in impls.iter().enumerate() {
        let medians: Vec<&RunResult> = results[i].iter().map(|runs| median_run(runs)).collect();
        for (l, median) in medians.iter().enumerate() {
            let all_p99 = median.admitted_p99;
            for (client, outcome) in median.clients.iter().enumerate() {
                rows.push(row(
                    args,
                    kind,
                    args.load[l],
                    client,
                    outcome,
                    median,
                    all_p99,
                    capacity,
                    &mixes[l],
                ));
            }
        }
        summaries.push(summary(args, kind, &medians));
    }

    if common.json {
        for row in &rows {
            println!("{row}");
        }
    } else {
        print_table(args, capacity, &mixes, peak, &rows, &summaries);
    }
    Ok(())
}

/// The run whose admitted total is the median.
fn median_run(runs: &[RunResult]) -> &RunResult {
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i].total_ok());
    &runs[order[order.len() / 2]]
}

fn load_label(load: f64) -> String {
    format!("{}%", (load * 100.0).round())
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        100.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[allow(clippy::too_many_arguments)]
fn row(
    args: &OverloadArgs,
    kind: OverloadImpl,
    load: f64,
    client: usize,
    c: &ClientSummary,
    run: &RunResult,
    all_p99: u64,
    capacity: f64,
    mix: &Mix,
) -> Value {
    let secs = args.common.secs;
    json!({
        "scenario": "overload",
        "impl": kind.name(),
        "load": load_label(load),
        "client": client,
        "offered_ops_per_sec": round2(c.offered as f64 / secs),
        "ok_ops_per_sec": round2(c.ok as f64 / secs),
        "busy_ops_per_sec": round2(c.busy as f64 / secs),
        "p99_us": c.p99_us,
        "peak_rss_mb": round2(mb(run.peak_rss)),
        "rss_growth_in_window_mb": round2(mb(run.peak_rss.saturating_sub(run.window_start_rss))),
        "p50_us": c.p50_us,
        "success_pct": round2(percent(c.ok, c.offered)),
        "error_ops_per_sec": round2(c.failed as f64 / secs),
        "target_ops_per_sec": round2(mix.rates[client]),
        "admitted_p99_all_us": all_p99,
        "capacity_ops_per_sec": round2(capacity),
        "clients": args.clients,
        "handlers": args.handlers,
        "service_us": args.service_us,
        "queue": args.queue,
        "payload_bytes": args.payload,
        "secs": secs,
        "runs": args.common.runs,
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The verdicts per impl: peak load against the lowest load.
#[derive(Debug)]
struct Summary {
    name: &'static str,
    low_p99: u64,
    peak_p99: u64,
    min_light_success: f64,
    hog_success: f64,
    low_rss: f64,
    peak_rss: f64,
    peak_growth: f64,
}

fn summary(args: &OverloadArgs, kind: OverloadImpl, medians: &[&RunResult]) -> Summary {
    let (mut low, mut high) = (0, 0);
    for (l, load) in args.load.iter().enumerate() {
        if *load < args.load[low] {
            low = l;
        }
        if *load > args.load[high] {
            high = l;
        }
    }
    let peak = medians[high];
    Summary {
        name: kind.name(),
        low_p99: medians[low].admitted_p99,
        peak_p99: peak.admitted_p99,
        min_light_success: peak.clients[1..]
            .iter()
            .map(|c| percent(c.ok, c.offered))
            .fold(f64::INFINITY, f64::min),
        hog_success: percent(peak.clients[0].ok, peak.clients[0].offered),
        low_rss: mb(medians[low].peak_rss),
        peak_rss: mb(peak.peak_rss),
        peak_growth: mb(peak.peak_rss.saturating_sub(peak.window_start_rss)),
    }
}

fn print_table(
    args: &OverloadArgs,
    capacity: f64,
    mixes: &[Mix],
    peak: f64,
    rows: &[Value],
    summaries: &[Summary],
) {
    let c = &args.common;
    println!(
        "overload: {} clients (client 0 the hog), capacity {capacity:.0} calls/s measured ({} \
         handlers x {} µs, queue {}); light clients at {} of their fair share at {}; {} s \
         measured after {} s warm-up; median of {} run(s) by admitted calls",
        args.clients,
        args.handlers,
        args.service_us,
        args.queue,
        args.light_share,
        load_label(peak),
        c.secs,
        c.warmup,
        c.runs
    );
    for (load, mix) in args.load.iter().zip(mixes) {
        println!(
            "  load {}: offered {:.0} calls/s, hog {:.0} ({:.1}x its fair share), each light \
             client {:.0}",
            load_label(*load),
            mix.total(),
            mix.rates[0],
            mix.hog_multiple(capacity),
            mix.rates[1]
        );
    }
    println!(
        "{:<14} {:>5} {:>6} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "impl",
        "load",
        "client",
        "offered/s",
        "ok/s",
        "busy/s",
        "success",
        "p50 µs",
        "p99 µs",
        "RSS MB"
    );
    for r in rows {
        println!(
            "{:<14} {:>5} {:>6} {:>10.0} {:>10.0} {:>10.0} {:>8.1}% {:>8} {:>8} {:>8.1}",
            r["impl"].as_str().unwrap_or_default(),
            r["load"].as_str().unwrap_or_default(),
            r["client"],
            r["offered_ops_per_sec"].as_f64().unwrap_or_default(),
            r["ok_ops_per_sec"].as_f64().unwrap_or_default(),
            r["busy_ops_per_sec"].as_f64().unwrap_or_default(),
            r["success_pct"].as_f64().unwrap_or_default(),
            r["p50_us"],
            r["p99_us"],
            r["peak_rss_mb"].as_f64().unwrap_or_default(),
        );
    }
    println!();
    for s in summaries {
        let ratio = s.peak_p99 as f64 / s.low_p99.max(1) as f64;
        println!(
            "{}: admitted p99 {} µs at {} vs {} µs at {} ({ratio:.2}x, target <= 2x: {}); \
             light clients' success >= {:.1}% (target >= 95%: {}); hog success {:.1}%; peak \
             RSS {:.1} MB vs {:.1} MB, growth during the window {:.1} MB",
            s.name,
            s.peak_p99,
            load_label(peak),
            s.low_p99,
            load_label(args.load.iter().copied().fold(f64::INFINITY, f64::min)),
            if ratio <= 2.0 { "met" } else { "missed" },
            s.min_light_success,
            if s.min_light_success >= 95.0 {
                "met"
            } else {
                "missed"
            },
            s.hog_success,
            s.peak_rss,
            s.low_rss,
            s.peak_growth,
        );
    }
}

/// Secret mode on both sides: the fair queue charges a secret holder by the node id it
/// claims, so the ten clients on this one host are ten callers (in plaintext they would be
/// one: an unauthenticated caller is known by its address only).
fn connection() -> peerwire::ConnectionConfig {
    peerwire::ConnectionConfig {
        secret: Some(
            peerwire::secret::SecretConfig::new("overload", [0x0f; 32])
                .expect("a valid secret name"),
        ),
        ..peerwire::ConnectionConfig::default()
    }
}

fn identity(node_id: u64) -> Identity {
    Identity {
        node_id,
        ..Identity::default()
    }
}

async fn start_server(args: &OverloadArgs, kind: OverloadImpl) -> Result<Server, BoxError> {
    let service = Duration::from_micros(args.service_us);
    let builder = Server::builder(ServerConfig {
        identity: identity(1000),
        connection: connection(),
        handlers: args.handlers,
        call_queue_capacity: Some(args.queue),
        ..ServerConfig::default()
    })
    .route(
        ROUTE,
        handler_fn(move |req: Request| async move {
            tokio::time::sleep(service).await;
            Ok(req.into_payload())
        }),
    );
    let builder = match kind {
        OverloadImpl::Fair => builder.scheduler(FairScheduler::new(
            FairSchedulerConfig::with_capacity(args.queue),
        )),
        OverloadImpl::Fifo => builder,
    };
    Ok(builder
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .map_err(|e| format!("overload server: bind 127.0.0.1:0: {e}"))?)
}

fn new_client(node_id: u64) -> Client {
    Client::new(ClientConfig {
        identity: identity(node_id),
        connection: connection(),
        // Every refusal is observed, not retried.
        retry: RetryPolicy::never(),
        ..ClientConfig::default()
    })
}

/// Starts a `kind` server and a client runtime (each on its own runtime), runs `load` against
/// the server's address on the client runtime, then tears both down, clients first.
fn with_server<T, F, Fut>(args: &OverloadArgs, kind: OverloadImpl, load: F) -> Result<T, BoxError>
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let server_rt = RuntimeThread::start("overload-server", args.common.threads)?;
    let server = server_rt.run({
        let args = args.clone();
        async move { start_server(&args, kind).await }
    })?;
    let client_rt = match RuntimeThread::start("overload-clients", args.common.threads) {
        Ok(rt) => rt,
        Err(e) => {
            server_rt.run(async move { server.shutdown().await });
            return Err(e.into());
        }
    };
    let result = client_rt.run(load(server.local_addr()));
    client_rt.shutdown();
    server_rt.run(async move { server.shutdown().await });
    server_rt.shutdown();
    Ok(result)
}

/// One (impl, mix) measurement: server and clients on their own runtimes, RSS sampled
/// throughout, everything torn down after.
fn run_once(args: &OverloadArgs, kind: OverloadImpl, mix: &Mix) -> Result<RunResult, BoxError> {
    let rss = PeakRss::start()?;
    let window_opens = Instant::now() + args.common.warmup();
    let window = Window {
        warmup: args.common.warmup(),
        measure: args.common.measure(),
    };
    let payload = Bytes::from(vec![0x5a; args.payload]);
    let rates = mix.rates.clone();
    let (clients, admitted_p99) = with_server(args, kind, move |addr| async move {
        let mut tasks = Vec::new();
        let mut handles = Vec::new();
        for (i, rate) in rates.into_iter().enumerate() {
            let client = new_client(i as u64 + 1);
            // Connect before the clock starts.
            let _ = client.connection(addr, None).await;
            handles.push(client.clone());
            tasks.push(tokio::spawn(open_loop::drive(
                client,
                addr,
                ROUTE,
                payload.clone(),
                rate,
                window,
            )));
        }
        let mut summaries = Vec::new();
        let mut all = new_histogram();
        for task in tasks {
            let outcome = task.await.expect("client load task panicked");
            // Same bounds everywhere, so adding cannot fail.
            let _ = all.add(&outcome.latency_us);
            summaries.push(outcome.summary());
        }
        for client in handles {
            client.shutdown().await;
        }
        let p99 = if all.is_empty() {
            0
        } else {
            all.value_at_quantile(0.99)
        };
        (summaries, p99)
    })?;
    let rss = rss.finish(window_opens);
    Ok(RunResult {
        clients,
        admitted_p99,
        peak_rss: rss.peak,
        window_start_rss: rss.at_mark,
    })
}

/// A closed-loop worker for the capacity measurement.
struct CapacityWorker {
    client: Client,
    addr: SocketAddr,
    payload: Bytes,
}

impl Worker for CapacityWorker {
    async fn op(&mut self) -> Result<(), BoxError> {
        self.client
            .call(self.addr, ROUTE, self.payload.clone())
            .await?;
        Ok(())
    }
}

/// The FIFO server's throughput with its handlers kept busy and its queue never full.
fn measure_capacity(args: &OverloadArgs) -> Result<f64, BoxError> {
    // Handlers plus half the queue in flight: every handler busy, no call refused.
    let inflight = args.handlers + args.queue / 2;
    let payload = Bytes::from(vec![0x5a; args.payload]);
    let spec = LoadSpec::new(args.common.warmup(), args.common.measure());
    let result = with_server(args, OverloadImpl::Fifo, move |addr| async move {
        let client = new_client(1);
        let workers = (0..inflight)
            .map(|_| CapacityWorker {
                client: client.clone(),
                addr,
                payload: payload.clone(),
            })
            .collect();
        let result = harness::run_load(workers, spec).await;
        client.shutdown().await;
        result
    })?;
    Ok(result?.ops_per_sec())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(extra: &[&str]) -> OverloadArgs {
        let mut argv = vec!["peerwire-bench", "overload"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Overload(args) => args,
            other => panic!("expected overload, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_documented_scenario() {
        let a = args(&[]);
        assert_eq!(a.clients, 10);
        assert_eq!(a.load, [0.5, 4.0]);
        let a = args(&[
            "--impls",
            "peerwire-fifo",
            "--load",
            "1,2",
            "--capacity",
            "500",
        ]);
        assert_eq!(a.impls, [OverloadImpl::Fifo]);
        assert_eq!(a.capacity, Some(500.0));
    }

    #[test]
    fn every_impl_runs_and_accounts_for_every_call() {
        let a = args(&["--secs", "0.3", "--warmup", "0", "--service-us", "100"]);
        let mix = Mix::new(2000.0, a.clients, 1.0, 1.0, 0.5).unwrap();
        for kind in [OverloadImpl::Fair, OverloadImpl::Fifo] {
            let result = run_once(&a, kind, &mix).unwrap();
            assert_eq!(result.clients.len(), 10);
            for (i, c) in result.clients.iter().enumerate() {
                assert!(c.offered > 0, "{}: client {i} sent nothing", kind.name());
                assert_eq!(
                    c.ok + c.busy + c.failed,
                    c.offered,
                    "{}: client {i}: every call has one outcome",
                    kind.name()
                );
                assert_eq!(c.failed, 0, "{}: {:?}", kind.name(), c.first_error);
            }
            assert!(result.total_ok() > 0);
        }
    }
}
