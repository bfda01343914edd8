//! Scenario `pull`: one client pulls a whole file (1 GiB by default) from one server, beside
//! raw TCP `sendfile` of the same file and tonic server streaming, in one invocation.
//!
//! - `peerwire-stream`: a pull stream read whole (`StreamRead`): `--chunk-bytes` chunks with
//!   `--window` fetches in flight, each chunk sent with `sendfile` and its CRC32C checked;
//! - `peerwire-chunks`: the same chunks fetched as separate calls, `--window` in flight, taken
//!   in whatever order they complete (a shuffle fetcher's pattern);
//! - `raw-sendfile`: plain tokio TCP, the server `sendfile`s the whole file in one go;
//! - `tonic`: gRPC server streaming of `--chunk-bytes` messages read from the file.
//!
//! The file is read once before the runs so every impl reads from the page cache. Server and
//! client run on their own runtimes in this process; CPU is the process's per GiB pulled, and
//! `rss_growth_mib` the peak resident set above the one before the pull (what a pull holds in
//! memory, whatever the file's size).

mod grpc;
mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use futures::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use peerwire::{ClientConfig, Server, ServerConfig};
use peerwire_pull::{
    PreparedSource, PullClient, PullConfig, ReadOptions, Reader, StreamInfo, StreamManager,
};
use serde_json::{Value, json};

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::report::median_index;
use crate::runtime::RuntimeThread;

/// The implementations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum PullImpl {
    /// A pull stream read whole with a window of fetches.
    PeerwireStream,
    /// The stream's chunks as separate calls, a window in flight, any order.
    PeerwireChunks,
    /// Plain TCP, the whole file by `sendfile`.
    RawSendfile,
    /// gRPC server streaming.
    Tonic,
}

impl PullImpl {
    fn name(self) -> &'static str {
        match self {
            Self::PeerwireStream => "peerwire-stream",
            Self::PeerwireChunks => "peerwire-chunks",
            Self::RawSendfile => "raw-sendfile",
            Self::Tonic => "tonic",
        }
    }
}

/// `peerwire-bench pull` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct PullArgs {
    /// Bytes in the file.
    #[arg(long, default_value_t = 1 << 30)]
    pub(crate) file_bytes: u64,
    /// Bytes per chunk (and per tonic message).
    #[arg(long, default_value_t = 1 << 20)]
    pub(crate) chunk_bytes: usize,
    /// Chunk fetches in flight.
    #[arg(long, default_value_t = 8)]
    pub(crate) window: usize,
    /// Where the file is written (removed at the end) [default: the temporary directory].
    #[arg(long)]
    pub(crate) dir: Option<std::path::PathBuf>,
    /// Impls to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub(crate) impls: Vec<PullImpl>,
    /// Shared options (`--secs` is unused: each run pulls the file once; `--warmup` above 0
    /// makes one unmeasured pull per impl first).
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// One pull.
#[derive(Debug, Clone, Copy)]
struct Measured {
    bytes_per_sec: f64,
    cpu_sec_per_gib: f64,
    rss_growth: u64,
}

/// Every server, on one runtime.
struct Servers {
    rt: RuntimeThread,
    server: Server,
    streams: StreamManager,
    ready: PreparedSource,
    raw: SocketAddr,
    tonic: SocketAddr,
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &PullArgs) -> Result<(), BoxError> {
    args.common.validate()?;
    if args.chunk_bytes == 0 || args.window == 0 {
        return Err("--chunk-bytes and --window must be positive".into());
    }
    let impls = if args.impls.is_empty() {
        vec![
            PullImpl::PeerwireStream,
            PullImpl::PeerwireChunks,
            PullImpl::RawSendfile,
            PullImpl::Tonic,
        ]
    } else {
        args.impls.clone()
    };
    let dir = tempfile::tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let path = dir.path().join("pull.bin");
    eprintln!("[pull] writing a {}-byte file ...", args.file_bytes);
    write_file(&path, args.file_bytes)?;
    let servers = start_servers(args, &path)?;
    let client_rt = RuntimeThread::start("client", args.common.threads)?;
    let pull = PullClient::new(ClientConfig::default())?;
    let tonic_client = client_rt.run(grpc::client(servers.tonic, args.chunk_bytes))?;

    let mut results: Vec<(PullImpl, Vec<Measured>)> = Vec::new();
    for imp in &impls {
        results.push((*imp, Vec::new()));
    }
    let warm = usize::from(args.common.warmup > 0.0);
    // Runs alternate between impls, so slow drifts of the machine touch them all alike.
    for run in 0..warm + args.common.runs {
        for (imp, runs) in &mut results {
            let m = measure(*imp, args, &servers, &client_rt, &pull, &tonic_client)?;
            if run < warm {
                continue;
            }
            eprintln!(
                "[pull] {} run {}/{}: {:.0} MB/s, {:.2} CPU s/GiB, RSS +{} MiB",
                imp.name(),
                run + 1 - warm,
                args.common.runs,
                m.bytes_per_sec / 1e6,
                m.cpu_sec_per_gib,
                m.rss_growth >> 20
            );
            runs.push(m);
        }
    }
    let medians: Vec<(PullImpl, Measured, Vec<Measured>)> = results
        .into_iter()
        .map(|(imp, runs)| (imp, median(&runs), runs))
        .collect();
    let of = |which: PullImpl| {
        medians
            .iter()
            .find(|(imp, _, _)| *imp == which)
            .map(|(_, m, _)| m.bytes_per_sec)
    };
    let (raw, tonic) = (of(PullImpl::RawSendfile), of(PullImpl::Tonic));
    for (imp, m, runs) in &medians {
        let r = row(*imp, args, m, runs, raw, tonic);
        if args.common.json {
            println!("{r}");
        } else {
            println!("{}", crate::report::table_line(&r));
        }
    }
    let p = pull.clone();
    client_rt.run(async move { p.shutdown().await });
    drop(tonic_client);
    client_rt.shutdown();
    let Servers {
        rt,
        server,
        streams,
        ..
    } = servers;
    rt.run(async move {
        server.shutdown().await;
        streams.shutdown().await;
    });
    rt.shutdown();
    Ok(())
}

/// Writes `len` pseudo-random bytes to `path` and reads them back once (into the page cache).
fn write_file(path: &std::path::Path, len: u64) -> Result<(), BoxError> {
    use std::io::Write;
    let mut file = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut rng = fastrand::Rng::with_seed(7);
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        rng.fill(&mut block);
        let n = left.min(block.len() as u64) as usize;
        file.write_all(&block[..n])?;
        left -= n as u64;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    let mut sink = std::io::sink();
    std::io::copy(&mut std::fs::File::open(path)?, &mut sink)?;
    Ok(())
}

fn start_servers(args: &PullArgs, path: &std::path::Path) -> Result<Servers, BoxError> {
    let rt = RuntimeThread::start("server", args.common.threads)?;
    let file = Arc::new(std::fs::File::open(path)?);
    let chunk = args.chunk_bytes;
    let opened = std::fs::File::open(path)?;
    let (server, streams, ready, raw, tonic) = rt.run(async move {
        let streams = StreamManager::new(PullConfig {
            chunk_size: chunk,
            ..PullConfig::default()
        });
        let ready = streams.prepare(peerwire_pull::Source::file(opened)).await?;
        let server = Server::builder(ServerConfig::default())
            .mount_all(&streams)
            .bind("127.0.0.1:0".parse().expect("loopback"))
            .await?;
        let raw = raw::server(file.clone()).await?;
        let tonic = grpc::server(file, chunk).await?;
        Ok::<_, BoxError>((server, streams, ready, raw, tonic))
    })?;
    Ok(Servers {
        rt,
        server,
        streams,
        ready,
        raw,
        tonic,
    })
}

fn measure(
    imp: PullImpl,
    args: &PullArgs,
    servers: &Servers,
    client_rt: &RuntimeThread,
    pull: &PullClient,
    tonic_client: &grpc::Client,
) -> Result<Measured, BoxError> {
    let info = match imp {
        PullImpl::PeerwireStream | PullImpl::PeerwireChunks => {
            let (streams, ready) = (servers.streams.clone(), servers.ready.clone());
            Some(servers.rt.run(async move {
                streams
                    .register(peerwire_pull::Source::from(ready), Reader::Anyone)
                    .await
            })?)
        }
        _ => None,
    };
    let addr = servers.server.local_addr();
    let (raw_addr, chunk, window) = (servers.raw, args.chunk_bytes, args.window);
    let (pull, mut tonic_client) = (pull.clone(), tonic_client.clone());
    let rss = crate::rss::PeakRss::start()?;
    let before = crate::rss::current_rss_bytes().unwrap_or(0);
    let (cpu0, started) = (crate::cpu::process_cpu_secs(), Instant::now());
    let bytes = client_rt.run(async move {
        match (imp, info) {
            (PullImpl::PeerwireStream, Some(info)) => read_stream(&pull, addr, info, window).await,
            (PullImpl::PeerwireChunks, Some(info)) => read_chunks(&pull, addr, info, window).await,
            (PullImpl::RawSendfile, _) => raw::pull(raw_addr, chunk).await,
            (PullImpl::Tonic, _) => grpc::pull(&mut tonic_client).await,
            _ => Err("no stream registered".into()),
        }
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = crate::cpu::process_cpu_secs() - cpu0;
    let report = rss.finish(started);
    if bytes != args.file_bytes {
        return Err(format!(
            "{} pulled {bytes} bytes of a {}-byte file",
            imp.name(),
            args.file_bytes
        )
        .into());
    }
    let gib = bytes as f64 / (1u64 << 30) as f64;
    Ok(Measured {
        bytes_per_sec: bytes as f64 / elapsed,
        cpu_sec_per_gib: cpu / gib,
        rss_growth: report.peak.saturating_sub(before),
    })
}

async fn read_stream(
    pull: &PullClient,
    addr: SocketAddr,
    info: StreamInfo,
    window: usize,
) -> Result<u64, BoxError> {
    let opts = ReadOptions {
        window,
        ..ReadOptions::default()
    };
    let total = pull
        .read(addr, info, opts)?
        .try_fold(0u64, |n, chunk| async move { Ok(n + chunk.len() as u64) })
        .await?;
    Ok(total)
}

async fn read_chunks(
    pull: &PullClient,
    addr: SocketAddr,
    info: StreamInfo,
    window: usize,
) -> Result<u64, BoxError> {
    let chunks = info.chunks().ok_or("a file's stream has a length")?;
    let mut next = 0u64;
    let mut inflight = FuturesUnordered::new();
    let mut total = 0u64;
    loop {
        while inflight.len() < window && next < chunks {
            let (pull, index) = (pull.clone(), next);
            inflight.push(async move { pull.chunk(addr, info.id, index).await });
            next += 1;
        }
        match inflight.next().await {
            Some(chunk) => total += chunk?.data.len() as u64,
            None => break,
        }
    }
    pull.close(addr, info.id).await?;
    Ok(total)
}

fn median(runs: &[Measured]) -> Measured {
    let keys: Vec<f64> = runs.iter().map(|m| m.bytes_per_sec).collect();
    runs[median_index(&keys).unwrap_or(0)]
}

fn row(
    imp: PullImpl,
    args: &PullArgs,
    m: &Measured,
    runs: &[Measured],
    raw: Option<f64>,
    tonic: Option<f64>,
) -> Value {
    let mut row = json!({
        "scenario": "pull",
        "impl": imp.name(),
        "file_bytes": args.file_bytes,
        "chunk_bytes": args.chunk_bytes,
        "window": args.window,
        "bytes_per_sec": m.bytes_per_sec.round(),
        "cpu_sec_per_gib": (m.cpu_sec_per_gib * 1000.0).round() / 1000.0,
        "rss_growth_mib": m.rss_growth >> 20,
        "runs_mb_per_sec": runs.iter().map(|r| (r.bytes_per_sec / 1e6).round()).collect::<Vec<_>>(),
    });
    if let Some(raw) = raw.filter(|r| *r > 0.0) {
        row["vs_raw_sendfile"] = json!((m.bytes_per_sec / raw * 1000.0).round() / 1000.0);
    }
    if let Some(tonic) = tonic.filter(|t| *t > 0.0) {
        row["vs_tonic"] = json!((m.bytes_per_sec / tonic * 1000.0).round() / 1000.0);
    }
    row
}
