//! Scenario `datastream`: a client streams `--packet-bytes` packets to a primary, which
//! stores them in a sink that discards (the transport is measured, not a disk) and, for
//! `star` and `chain`, forwards them to two replicas; beside raw tokio TCP carrying the same
//! packets over one hop.
//!
//! Goodput is bytes the client wrote and had acknowledged (raw TCP: bytes the receiver read)
//! per second. `cpu_sec_per_gib` is the process's CPU time (client and every server, all in
//! this process) per GiB of goodput. The client and each server run on their own runtime
//! (`--threads` workers each), as separate processes would.

mod raw;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use peerwire::{Identity, Server, ServerConfig};
use peerwire_datastream::{
    DataSink, DataStreamClient, DataStreamConfig, DataStreamServer, RoutingTable, SinkError,
    SinkStream, StreamFlags, StreamInfo,
};
use serde_json::{Value, json};

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::report::median_index;
use crate::runtime::RuntimeThread;

const CLUSTER: u64 = 0xda7a;

/// Routes measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Topology {
    /// Client → primary.
    Single,
    /// Client → primary → two replicas.
    Star,
    /// Client → primary → replica → replica.
    Chain,
}

impl Topology {
    fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Star => "star",
            Self::Chain => "chain",
        }
    }

    fn routing(self) -> RoutingTable {
        match self {
            Self::Single => RoutingTable::single(1),
            Self::Star => RoutingTable::star(1, &[2, 3]).expect("valid star"),
            Self::Chain => RoutingTable::chain(&[1, 2, 3]).expect("valid chain"),
        }
    }
}

/// `peerwire-bench datastream` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct DataStreamArgs {
    /// Bytes per packet.
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) packet_bytes: usize,
    /// Packets in flight per stream (the client's `max_outstanding`).
    #[arg(long, default_value_t = 8)]
    pub(crate) outstanding: usize,
    /// Topologies to run, comma-separated [default: single,star,chain].
    #[arg(long, value_delimiter = ',')]
    pub(crate) topologies: Vec<Topology>,
    /// Draw the results to this PNG (one panel per metric, one line per impl).
    #[arg(long, value_name = "FILE.png")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// A sink that counts and drops.
#[derive(Debug, Clone, Default)]
struct NullSink;

struct NullStream;

impl DataSink for NullSink {
    type Stream = NullStream;
    type Closed = ();

    async fn create(&self, _info: &StreamInfo) -> Result<NullStream, SinkError> {
        Ok(NullStream)
    }
}

impl SinkStream for NullStream {
    type Closed = ();

    async fn write(&mut self, _data: Bytes) -> Result<(), SinkError> {
        Ok(())
    }

    async fn sync(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn close(self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn abort(self, _reason: String) {}
}

fn config(node_id: u64, args: &DataStreamArgs) -> DataStreamConfig {
    DataStreamConfig {
        identity: Identity {
            cluster_id: CLUSTER,
            node_id,
            epoch: 1,
        },
        max_outstanding: args.outstanding,
        packet_size: args.packet_bytes,
        // Closed streams are not linked here; drop them soon.
        link_timeout: Duration::from_secs(1),
        ..DataStreamConfig::default()
    }
}

/// The three servers, each on its own runtime as if in its own process.
struct Servers {
    nodes: Vec<(RuntimeThread, DataStreamServer<NullSink>, Server)>,
}

impl Servers {
    fn start(args: &DataStreamArgs) -> Result<Self, BoxError> {
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let rt = RuntimeThread::start(&format!("server{id}"), args.common.threads)?;
            let cfg = config(id, args);
            let (ds, server) = rt.run(async move {
                let server_cfg = ServerConfig {
                    identity: cfg.identity,
                    connection: cfg.connection.clone(),
                    ..ServerConfig::default()
                };
                let ds = DataStreamServer::new(cfg, NullSink)?;
                let server = Server::builder(server_cfg)
                    .mount_all(&ds)
                    .bind("127.0.0.1:0".parse().expect("loopback"))
                    .await?;
                Ok::<_, BoxError>((ds, server))
            })?;
            nodes.push((rt, ds, server));
        }
        for (_, ds, _) in &nodes {
            for (_, other, server) in &nodes {
                if other.node_id() != ds.node_id() {
                    ds.add_peer(other.node_id(), server.local_addr());
                }
            }
        }
        Ok(Self { nodes })
    }

    fn stop(self) {
        for (rt, ds, server) in self.nodes {
            rt.run(async move {
                ds.stop().await;
                server.shutdown().await;
            });
            rt.shutdown();
        }
    }
}

/// One measurement: goodput and CPU.
#[derive(Debug, Clone, Copy)]
struct Measured {
    bytes_per_sec: f64,
    cpu_sec_per_gib: f64,
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &DataStreamArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    config(1, args).validate()?;
    let topologies = if args.topologies.is_empty() {
        vec![Topology::Single, Topology::Star, Topology::Chain]
    } else {
        args.topologies.clone()
    };
    let client_rt = RuntimeThread::start("client", common.threads)?;
    let servers = Servers::start(args)?;
    let primary = servers.nodes[0].2.local_addr();
    let raw_addr = servers.nodes[0].0.run(raw::receiver(args.packet_bytes))?;
    let client = DataStreamClient::new(config(0, args))?;

    let mut rows = Vec::new();
    let mut raw_runs = Vec::new();
    for run in 1..=common.runs {
        eprintln!("[datastream] raw-tcp run {run}/{} ...", common.runs);
        let m = measure_raw(args, &client_rt, raw_addr.clone())?;
        eprintln!("[datastream] raw-tcp run {run}: {m:?}");
        raw_runs.push(m);
    }
    let raw = median(&raw_runs);
    rows.push(row("raw-tcp", "single", 1, args, raw, None));
    for topology in topologies {
        let mut runs = Vec::new();
        for run in 1..=common.runs {
            eprintln!(
                "[datastream] {} run {run}/{} ...",
                topology.name(),
                common.runs
            );
            let m = measure_peerwire(args, &client_rt, &client, primary, topology)?;
            eprintln!("[datastream] {} run {run}: {m:?}", topology.name());
            runs.push(m);
        }
        let m = median(&runs);
        let replicas = if topology == Topology::Single { 1 } else { 3 };
        rows.push(row(
            "peerwire",
            topology.name(),
            replicas,
            args,
            m,
            Some(raw.bytes_per_sec),
        ));
    }
    for r in &rows {
        if common.json {
            println!("{r}");
        } else {
            println!("{}", crate::report::table_line(r));
        }
    }
    crate::plot::draw_if_asked(
        args.plot.as_deref(),
        "datastream",
        &format!(
            "peerwire-bench datastream: {} B packets, {} outstanding",
            args.packet_bytes, args.outstanding
        ),
        &PLOT,
        &rows,
    )?;
    let c = client.clone();
    client_rt.run(async move { c.shutdown().await });
    servers.stop();
    client_rt.shutdown();
    Ok(())
}

/// What `--plot` draws: goodput and CPU per GiB for each topology.
const PLOT: crate::plot::PlotSpec<'static> = crate::plot::PlotSpec {
    x_keys: &[("packet_bytes", "packet (bytes)")],
    category_keys: &["topology"],
    series_keys: &[],
    panels: &[
        crate::plot::Panel::of("bytes_per_sec", "goodput (bytes/s)"),
        crate::plot::Panel::of("cpu_sec_per_gib", "CPU s per GiB"),
    ],
};

fn median(runs: &[Measured]) -> Measured {
    let keys: Vec<f64> = runs.iter().map(|m| m.bytes_per_sec).collect();
    runs[median_index(&keys).unwrap_or(0)]
}

fn row(
    implementation: &str,
    topology: &str,
    replicas: u32,
    args: &DataStreamArgs,
    m: Measured,
    raw: Option<f64>,
) -> Value {
    let mut row = json!({
        "scenario": "datastream",
        "impl": implementation,
        "topology": topology,
        "replicas": replicas,
        "packet_bytes": args.packet_bytes,
        "outstanding": args.outstanding,
        "bytes_per_sec": m.bytes_per_sec.round(),
        "cpu_sec_per_gib": (m.cpu_sec_per_gib * 1000.0).round() / 1000.0,
        "runs": args.common.runs,
    });
    if let Some(raw) = raw.filter(|r| *r > 0.0) {
        row["vs_raw_tcp"] = json!((m.bytes_per_sec / raw * 1000.0).round() / 1000.0);
    }
    row
}

/// Measures goodput over `--secs` after `--warmup`, sampling `counter` and the process CPU.
async fn sample(counter: &AtomicU64, warmup: Duration, window: Duration) -> Measured {
    tokio::time::sleep(warmup).await;
    let (b0, c0) = (
        counter.load(Ordering::Relaxed),
        crate::cpu::process_cpu_secs(),
    );
    let started = tokio::time::Instant::now();
    tokio::time::sleep(window).await;
    let (b1, c1) = (
        counter.load(Ordering::Relaxed),
        crate::cpu::process_cpu_secs(),
    );
    let elapsed = started.elapsed().as_secs_f64();
    let bytes = (b1 - b0) as f64;
    let gib = bytes / (1u64 << 30) as f64;
    Measured {
        bytes_per_sec: bytes / elapsed,
        cpu_sec_per_gib: if gib > 0.0 { (c1 - c0) / gib } else { 0.0 },
    }
}

fn measure_peerwire(
    args: &DataStreamArgs,
    client_rt: &RuntimeThread,
    client: &DataStreamClient,
    primary: SocketAddr,
    topology: Topology,
) -> Result<Measured, BoxError> {
    let (client, packet) = (client.clone(), Bytes::from(vec![0x5au8; args.packet_bytes]));
    let (warmup, window) = (
        Duration::from_secs_f64(args.common.warmup),
        Duration::from_secs_f64(args.common.secs),
    );
    let outstanding = args.outstanding;
    client_rt.run(async move {
        let mut out = client
            .open(primary, Bytes::from_static(b"bench"), topology.routing())
            .await?;
        let acked = Arc::new(AtomicU64::new(0));
        let stop = stop_flag();
        let writer = {
            let (acked, stop) = (acked.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acks = VecDeque::with_capacity(outstanding + 1);
                while !stop.load(Ordering::Relaxed) {
                    acks.push_back(out.write(packet.clone(), StreamFlags::NONE).await?);
                    if acks.len() >= outstanding {
                        let ack = acks.pop_front().expect("non-empty").await?;
                        acked.store(ack.bytes, Ordering::Relaxed);
                    }
                }
                out.close().await?;
                Ok::<_, BoxError>(())
            })
        };
        let m = sample(&acked, warmup, window).await;
        stop.store(true, Ordering::Relaxed);
        writer.await??;
        Ok(m)
    })
}

fn stop_flag() -> Arc<std::sync::atomic::AtomicBool> {
    Arc::new(std::sync::atomic::AtomicBool::new(false))
}

fn measure_raw(
    args: &DataStreamArgs,
    client_rt: &RuntimeThread,
    addr: raw::Receiver,
) -> Result<Measured, BoxError> {
    let packet = Bytes::from(vec![0x5au8; args.packet_bytes]);
    let (warmup, window) = (
        Duration::from_secs_f64(args.common.warmup),
        Duration::from_secs_f64(args.common.secs),
    );
    client_rt.run(async move {
        let sender = raw::Sender::start(addr.addr, packet).await?;
        let m = sample(&addr.received, warmup, window).await;
        sender.stop().await;
        Ok(m)
    })
}
