//! Scenario `stream`: one client reads a server-streaming method's replies (`--items` items of
//! `--item-bytes`, 1 KiB by default) over one connection, peerwire's streaming method beside
//! tonic server streaming of the same protobuf messages, in one invocation.
//!
//! - `peerwire`: `Protocol::server_streaming` with the prost engine, read through
//!   `ProtocolClient::server_streaming` (a window of `Next` calls, 64 KiB batches);
//! - `tonic`: gRPC server streaming (`proto/stream.proto`) over one channel;
//! - `raw-tcp`: the limit of one connection for the same bytes (`raw.rs`: length-prefixed
//!   items copied into 256 KiB writes, read as slices of the read buffer).
//!
//! Server and client run on their own runtimes in this process; runs alternate between the
//! impls; items/s, MB/s and CPU seconds per million items are the medians of `--runs`.

mod grpc;
mod raw;

use std::time::Instant;

use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::StreamExt;
use peerwire::service::{ItemStream, Prost, Protocol, ProtocolClient};
use peerwire::{CallOptions, Client, ClientConfig, Request, Server, ServerConfig};
use serde_json::{Value, json};

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::report::median_index;
use crate::runtime::RuntimeThread;
use grpc::pb::{Item, StreamRequest};

/// The implementations measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum StreamImpl {
    /// peerwire's server-streaming method.
    Peerwire,
    /// gRPC server streaming.
    Tonic,
    /// Length-prefixed items on plain TCP: what one connection carries.
    RawTcp,
}

impl StreamImpl {
    fn name(self) -> &'static str {
        match self {
            Self::Peerwire => "peerwire",
            Self::Tonic => "tonic",
            Self::RawTcp => "raw-tcp",
        }
    }
}

/// `peerwire-bench stream` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct StreamArgs {
    /// Items in one stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub(crate) items: u64,
    /// Bytes of each item's payload.
    #[arg(long, default_value_t = 1024)]
    pub(crate) item_bytes: u32,
    /// Impls to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub(crate) impls: Vec<StreamImpl>,
    /// Shared options (`--secs` is unused: each run reads one stream; `--warmup` above 0 makes
    /// one unmeasured stream per impl first).
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// One stream read.
#[derive(Debug, Clone, Copy)]
struct Measured {
    items_per_sec: f64,
    cpu_sec_per_mitem: f64,
}

/// The protocol peerwire serves: `stream` returns `count` items of `size` bytes.
fn protocol() -> Protocol {
    Protocol::new("Items", 1).server_streaming(
        "stream",
        Prost,
        |req: StreamRequest, _ctx: Request| async move {
            let data = Bytes::from(vec![7u8; req.size as usize]);
            let items: ItemStream<Item> = Box::pin(
                futures::stream::iter(0..req.count).map(move |_| Ok(Item { data: data.clone() })),
            );
            Ok(items)
        },
    )
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &StreamArgs) -> Result<(), BoxError> {
    args.common.validate()?;
    let impls = if args.impls.is_empty() {
        vec![StreamImpl::Peerwire, StreamImpl::Tonic, StreamImpl::RawTcp]
    } else {
        args.impls.clone()
    };
    let server_rt = RuntimeThread::start("server", args.common.threads)?;
    let (server, tonic_addr, raw_addr) = server_rt.run(async {
        let server = Server::builder(ServerConfig::default())
            .protocol(protocol())
            .bind("127.0.0.1:0".parse().expect("loopback"))
            .await?;
        let tonic = grpc::server().await?;
        let raw = raw::server().await?;
        Ok::<_, BoxError>((server, tonic, raw))
    })?;
    let addr = server.local_addr();
    let client_rt = RuntimeThread::start("client", args.common.threads)?;
    let client = Client::new(ClientConfig::default());
    let items = ProtocolClient::new(client.clone(), "Items", 1);
    let tonic_client = client_rt.run(grpc::client(tonic_addr))?;
    let raw_conn = std::sync::Arc::new(tokio::sync::Mutex::new(
        client_rt.run(raw::client(raw_addr))?,
    ));

    let mut results: Vec<(StreamImpl, Vec<Measured>)> =
        impls.iter().map(|i| (*i, Vec::new())).collect();
    let warm = usize::from(args.common.warmup > 0.0);
    for run in 0..warm + args.common.runs {
        for (imp, runs) in &mut results {
            let (imp, count, size) = (*imp, args.items, args.item_bytes);
            let (items, mut tonic_client) = (items.clone(), tonic_client.clone());
            let raw_conn = raw_conn.clone();
            let (cpu0, started) = (crate::cpu::process_cpu_secs(), Instant::now());
            let got = client_rt.run(async move {
                match imp {
                    StreamImpl::Peerwire => {
                        let req = StreamRequest { count, size };
                        let mut replies = items
                            .server_streaming::<_, StreamRequest, Item>(
                                addr,
                                "stream",
                                Prost,
                                &req,
                                CallOptions::default(),
                            )
                            .await?;
                        let mut n = 0u64;
                        while let Some(item) = replies.next().await {
                            item?;
                            n += 1;
                        }
                        Ok::<_, BoxError>(n)
                    }
                    StreamImpl::Tonic => grpc::read(&mut tonic_client, count, size).await,
                    StreamImpl::RawTcp => raw::read(&mut *raw_conn.lock().await, count, size).await,
                }
            })?;
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = crate::cpu::process_cpu_secs() - cpu0;
            if got != args.items {
                return Err(format!("{} read {got} of {} items", imp.name(), args.items).into());
            }
            if run < warm {
                continue;
            }
            let m = Measured {
                items_per_sec: got as f64 / elapsed,
                cpu_sec_per_mitem: cpu / (got as f64 / 1e6),
            };
            eprintln!(
                "[stream] {} run {}/{}: {:.0} items/s, {:.2} CPU s per million items",
                imp.name(),
                run + 1 - warm,
                args.common.runs,
                m.items_per_sec,
                m.cpu_sec_per_mitem
            );
            runs.push(m);
        }
    }
    let medians: Vec<(StreamImpl, Measured, Vec<Measured>)> = results
        .into_iter()
        .map(|(imp, runs)| {
            let keys: Vec<f64> = runs.iter().map(|m| m.items_per_sec).collect();
            (imp, runs[median_index(&keys).unwrap_or(0)], runs)
        })
        .collect();
    let raw = medians
        .iter()
        .find(|(imp, _, _)| *imp == StreamImpl::RawTcp)
        .map(|(_, m, _)| m.items_per_sec);
    let tonic = medians
        .iter()
        .find(|(imp, _, _)| *imp == StreamImpl::Tonic)
        .map(|(_, m, _)| m.items_per_sec);
    for (imp, m, runs) in &medians {
        let r = row(*imp, args, m, runs, tonic, raw);
        if args.common.json {
            println!("{r}");
        } else {
            println!("{}", crate::report::table_line(&r));
        }
    }
    client_rt.run(async move { client.shutdown().await });
    drop(tonic_client);
    client_rt.shutdown();
    server_rt.run(async move { server.shutdown().await });
    server_rt.shutdown();
    Ok(())
}

fn row(
    imp: StreamImpl,
    args: &StreamArgs,
    m: &Measured,
    runs: &[Measured],
    tonic: Option<f64>,
    raw: Option<f64>,
) -> Value {
    let mut row = json!({
        "scenario": "stream",
        "impl": imp.name(),
        "items": args.items,
        "item_bytes": args.item_bytes,
        "items_per_sec": m.items_per_sec.round(),
        "mb_per_sec": (m.items_per_sec * f64::from(args.item_bytes) / 1e6).round(),
        "cpu_sec_per_mitem": (m.cpu_sec_per_mitem * 1000.0).round() / 1000.0,
        "runs_items_per_sec": runs.iter().map(|r| r.items_per_sec.round()).collect::<Vec<_>>(),
    });
    if let Some(t) = tonic.filter(|t| *t > 0.0) {
        row["vs_tonic"] = json!((m.items_per_sec / t * 1000.0).round() / 1000.0);
    }
    if let Some(r) = raw.filter(|r| *r > 0.0) {
        row["vs_raw_tcp"] = json!((m.items_per_sec / r * 1000.0).round() / 1000.0);
    }
    row
}
