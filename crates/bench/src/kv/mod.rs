//! Scenario `kv`: puts against a local 3-node peerwire-kv cluster through the native client,
//! and — when an `etcd` binary is found — the same load against a local 3-member etcd through
//! its gRPC API, in the same invocation. Both write-ahead logs fsync before acknowledging.
//!
//! Each client keeps one put in flight (closed loop): 8-byte keys over a `--keys` key space,
//! `--value-bytes` values. All clients share `--conns` connections to the leader (peerwire
//! pooled connections; gRPC channels for etcd). The clusters keep their data in a temporary
//! directory on the same disk.

mod breakdown;
mod cluster;
mod etcd;
mod wins;

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use peerwire::ClientConfig;
use peerwire_kv::KvClient;
use peerwire_kv::log_store::LogStoreKind;
use serde_json::json;

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::harness::{LoadResult, LoadSpec, Worker, run_load};
use crate::report::{self, Baseline, Column, Measurement, Row};
use crate::runtime::RuntimeThread;

/// `peerwire-bench kv` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct KvArgs {
    /// Concurrent clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1, 64, 1000])]
    pub(crate) clients: Vec<usize>,
    /// Bytes per value.
    #[arg(long, default_value_t = 256)]
    pub(crate) value_bytes: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) keys: u64,
    /// Connections the clients share.
    #[arg(long, default_value_t = 4)]
    pub(crate) conns: usize,
    /// The peerwire-kv raft log stores to run, comma-separated: `raft-engine` (the default;
    /// rows `peerwire-kv`), `redb` (rows `peerwire-kv-redb`).
    #[arg(long, value_delimiter = ',', default_values_t = vec![LogStoreKind::RaftEngine])]
    pub(crate) log_store: Vec<LogStoreKind>,
    /// Run the whole comparison this many times and report, per figure, how many invocations
    /// peerwire-kv won.
    #[arg(long, default_value_t = 1)]
    pub(crate) invocations: usize,
    /// After each peerwire-kv level, print where the leader's puts spent their time in the
    /// measured window and what the nodes were doing while the slowest waited.
    #[arg(long)]
    pub(crate) breakdown: bool,
    /// The etcd binary [default: `etcd` on PATH, else `target/tools/etcd/etcd` from
    /// `docs/bench/install-etcd`; skipped if none].
    #[arg(long)]
    pub(crate) etcd: Option<PathBuf>,
    /// Draw the results to this PNG (one panel per metric, one line per impl).
    #[arg(long, value_name = "FILE.png")]
    pub(crate) plot: Option<PathBuf>,
    /// Shared options (`--threads`: workers of each node's runtime and of the client's).
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

const COLUMNS: [Column; 1] = [Column {
    key: "clients",
    header: "clients",
}];
const BASELINES: [Baseline; 1] = [Baseline {
    impl_name: "etcd",
    key: "vs_etcd",
    header: "vs etcd",
}];

/// The 8-byte keys one client writes: a stride through the key space from a per-client start.
struct Keys {
    next: u64,
    keys: u64,
}

impl Keys {
    fn for_client(i: u64, keys: u64) -> Self {
        Self {
            next: (i * 7919) % keys,
            keys,
        }
    }

    fn next(&mut self) -> String {
        self.next = (self.next + 104_729) % self.keys;
        format!("{:08x}", self.next)
    }
}

struct KvWorker {
    client: Arc<KvClient>,
    keys: Keys,
    value: Arc<Vec<u8>>,
}

impl Worker for KvWorker {
    async fn op(&mut self) -> Result<(), BoxError> {
        self.client.put(&self.keys.next(), &self.value).await?;
        Ok(())
    }
}

struct EtcdWorker {
    client: etcd::pb::kv_client::KvClient<tonic::transport::Channel>,
    keys: Keys,
    value: Arc<Vec<u8>>,
}

impl Worker for EtcdWorker {
    async fn op(&mut self) -> Result<(), BoxError> {
        self.client
            .put(etcd::pb::PutRequest {
                key: self.keys.next().into_bytes(),
                value: self.value.to_vec(),
                ..Default::default()
            })
            .await?;
        Ok(())
    }
}

/// The rows' impl name for a peerwire-kv on `kind`.
fn impl_name(kind: LogStoreKind) -> String {
    if kind == LogStoreKind::default() {
        "peerwire-kv".to_owned()
    } else {
        format!("peerwire-kv-{kind}")
    }
}

fn peerwire_kv_runs(
    args: &KvArgs,
    kind: LogStoreKind,
    client_rt: &RuntimeThread,
    spec: LoadSpec,
) -> Result<Vec<LoadResult>, BoxError> {
    let name = impl_name(kind);
    let cluster = cluster::KvCluster::start(args.common.threads, kind)?;
    let cfg = ClientConfig {
        connections_per_peer: args.conns,
        ..ClientConfig::default()
    };
    let client = Arc::new(KvClient::with_config(
        cluster.addrs.clone(),
        peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN,
        cfg,
    ));
    let c = client.clone();
    client_rt.run(async move { c.find_leader().await })?;
    let value = Arc::new(vec![b'v'; args.value_bytes]);
    let mut out = Vec::new();
    for &n in &args.clients {
        let workers: Vec<KvWorker> = (0..n as u64)
            .map(|i| KvWorker {
                client: client.clone(),
                keys: Keys::for_client(i, args.keys),
                value: value.clone(),
            })
            .collect();
        eprintln!("[kv] {name}, {n} clients ...");
        // The traces start again when the measured window does.
        let restart = args.breakdown.then(|| {
            let handles = cluster.handles();
            let warmup = args.common.warmup();
            client_rt.handle().spawn(async move {
                tokio::time::sleep(warmup).await;
                let epoch = std::time::Instant::now();
                for h in &handles {
                    let _ = h.take_put_trace().await;
                }
                epoch
            })
        });
        out.push(client_rt.run(run_load(workers, spec))?);
        if let Some(restart) = restart {
            let handles = cluster.handles();
            let (epoch, reports) = client_rt.run(async move {
                let epoch = restart.await?;
                let mut reports = Vec::new();
                for h in &handles {
                    reports.push(h.take_put_trace().await?);
                }
                Ok::<_, BoxError>((epoch, reports))
            })?;
            eprintln!(
                "[kv] {name} {n} clients, breakdown:\n{}",
                breakdown::render(&reports, epoch)
            );
        }
    }
    drop(client);
    cluster.stop();
    Ok(out)
}

fn etcd_runs(
    args: &KvArgs,
    etcd_bin: &std::path::Path,
    client_rt: &RuntimeThread,
    spec: LoadSpec,
) -> Result<Vec<LoadResult>, BoxError> {
    let cluster = etcd::EtcdCluster::start(etcd_bin, client_rt.handle())?;
    let clients = cluster.clients.clone();
    let conns = args.conns;
    let channels = client_rt.run(async move {
        let leader = etcd::leader(&clients).await?.ok_or("etcd has no leader")?;
        let mut chans = Vec::new();
        for _ in 0..conns {
            chans.push(etcd::channel(leader).await?);
        }
        Ok::<_, BoxError>(chans)
    })?;
    let value = Arc::new(vec![b'v'; args.value_bytes]);
    let mut out = Vec::new();
    for &n in &args.clients {
        let workers: Vec<EtcdWorker> = (0..n as u64)
            .map(|i| EtcdWorker {
                client: etcd::pb::kv_client::KvClient::new(
                    channels[i as usize % channels.len()].clone(),
                ),
                keys: Keys::for_client(i, args.keys),
                value: value.clone(),
            })
            .collect();
        eprintln!("[kv] etcd, {n} clients ...");
        out.push(client_rt.run(run_load(workers, spec))?);
    }
    drop(cluster);
    Ok(out)
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &KvArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.clients.is_empty() || args.clients.contains(&0) || args.conns == 0 || args.keys == 0 {
        return Err("--clients levels, --conns and --keys must be at least 1".into());
    }
    if args.log_store.is_empty() {
        return Err("--log-store needs at least one store".into());
    }
    if args.invocations == 0 {
        return Err("--invocations must be at least 1".into());
    }
    let etcd_bin = etcd::find_etcd(args.etcd.as_deref());
    if etcd_bin.is_none() {
        eprintln!(
            "[kv] no `etcd` on PATH or at {} (run docs/bench/install-etcd); peerwire-kv only",
            etcd::INSTALLED
        );
    }
    let spec = LoadSpec::new(common.warmup(), common.measure());
    let client_rt = RuntimeThread::start("kv-client", common.threads)?;
    let mut invocations = Vec::new();
    for invocation in 1..=args.invocations {
        if args.invocations > 1 {
            eprintln!("[kv] invocation {invocation}/{}", args.invocations);
        }
        // On an error the runtime stops when dropped.
        let rows = one_invocation(args, &client_rt, spec, etcd_bin.as_deref())?;
        print_rows(args, &rows, invocation);
        invocations.push(rows);
    }
    client_rt.shutdown();
    if etcd_bin.is_some() && args.invocations > 1 {
        // The first store asked for is the one tallied.
        let ours = impl_name(args.log_store[0]);
        let records = wins::tally(&invocations, &ours);
        if common.json {
            for record in &records {
                println!("{}", wins::json(record, &ours));
            }
        } else {
            println!(
                "kv: {ours} against etcd over {} invocations (each figure: invocations where \
                 {ours}'s was lower)",
                args.invocations
            );
            print!("{}", wins::render(&records));
        }
    }
    let last = invocations.last().map(Vec::as_slice).unwrap_or_default();
    let values: Vec<serde_json::Value> = last.iter().map(|r| json!(r)).collect();
    crate::plot::draw_if_asked(
        args.plot.as_deref(),
        "kv",
        &format!(
            "peerwire-bench kv: puts of {} B values on a local 3-node cluster (fsync on)",
            args.value_bytes
        ),
        &PLOT,
        &values,
    )
}

/// One whole comparison: `--runs` runs of every clients level on peerwire-kv, then on etcd (when
/// found); the median run of each as a row.
fn one_invocation(
    args: &KvArgs,
    client_rt: &RuntimeThread,
    spec: LoadSpec,
    etcd_bin: Option<&std::path::Path>,
) -> Result<Vec<Row>, BoxError> {
    let common = &args.common;
    // measurements[store][clients level] = one per run.
    let mut pw: Vec<Vec<Vec<Measurement>>> =
        vec![vec![Vec::new(); args.clients.len()]; args.log_store.len()];
    let mut et: Vec<Vec<Measurement>> = vec![Vec::new(); args.clients.len()];
    for run in 1..=common.runs {
        eprintln!("[kv] run {run}/{}", common.runs);
        for (k, &kind) in args.log_store.iter().enumerate() {
            for (i, load) in peerwire_kv_runs(args, kind, client_rt, spec)?
                .iter()
                .enumerate()
            {
                let m = Measurement::from_load(load);
                eprintln!(
                    "[kv] {} {} clients: {:.0} puts/s, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                    impl_name(kind),
                    args.clients[i],
                    m.ops_per_sec,
                    m.p50_us,
                    m.p99_us,
                    m.p999_us,
                    m.max_us
                );
                pw[k][i].push(m);
            }
        }
        if let Some(bin) = etcd_bin {
            for (i, load) in etcd_runs(args, bin, client_rt, spec)?.iter().enumerate() {
                let m = Measurement::from_load(load);
                eprintln!(
                    "[kv] etcd {} clients: {:.0} puts/s, p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                    args.clients[i], m.ops_per_sec, m.p50_us, m.p99_us, m.p999_us, m.max_us
                );
                et[i].push(m);
            }
        }
    }
    let mut rows = Vec::new();
    for (i, &n) in args.clients.iter().enumerate() {
        let params = vec![
            ("clients".to_owned(), json!(n)),
            ("key_bytes".to_owned(), json!(8)),
            ("value_bytes".to_owned(), json!(args.value_bytes)),
            ("conns".to_owned(), json!(args.conns)),
            ("runs".to_owned(), json!(common.runs)),
        ];
        for (k, &kind) in args.log_store.iter().enumerate() {
            rows.extend(Row::from_runs(
                "kv",
                &impl_name(kind),
                params.clone(),
                &pw[k][i],
            ));
        }
        rows.extend(Row::from_runs("kv", "etcd", params, &et[i]));
    }
    report::apply_ratios(&mut rows, &BASELINES);
    Ok(rows)
}

/// Prints one invocation's rows (a table, or JSON lines with the invocation's number).
fn print_rows(args: &KvArgs, rows: &[Row], invocation: usize) {
    let common = &args.common;
    if common.json {
        for row in rows {
            let mut row = row.clone();
            row.extra.push(("invocation".to_owned(), json!(invocation)));
            println!("{}", report::json_line(&row));
        }
    } else {
        println!(
            "kv{}: puts of {} B values, 8 B keys, {} connections; 3-node clusters with fsync; \
             {} s measured after {} s warm-up; median of {} run(s)",
            if args.invocations > 1 {
                format!(" (invocation {invocation}/{})", args.invocations)
            } else {
                String::new()
            },
            args.value_bytes,
            args.conns,
            common.secs,
            common.warmup,
            common.runs
        );
        print!("{}", report::render_table(rows, &COLUMNS, &BASELINES));
    }
}

/// What `--plot` draws: puts/s and latency (p50, p99, p99.9) against the number of clients.
const PLOT: crate::plot::PlotSpec<'static> = crate::plot::PlotSpec {
    x_keys: &[("clients", "concurrent clients")],
    category_keys: &["clients"],
    series_keys: &[],
    panels: &[
        crate::plot::Panel::of("ops_per_sec", "puts/s"),
        crate::plot::Panel::of("p50_us", "p50 latency (µs)"),
        crate::plot::Panel::of("p99_us", "p99 latency (µs)"),
        crate::plot::Panel::of("p999_us", "p99.9 latency (µs)"),
    ],
};
