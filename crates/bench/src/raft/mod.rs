//! Scenario `raft`: a leader and two followers on loopback, over the raft transport, beside
//! raw buffered TCP carrying the same bytes.
//!
//! - `append`: the leader keeps `--window` append messages in flight to each follower (raft's
//!   `max_inflight_msgs`), each carrying `--entries-per-msg` entries of `--entry-bytes`;
//!   followers answer every append (their responses ride the transport back, batched as a
//!   raft loop sends them). Reported: entries and entry bytes acknowledged per second, both
//!   followers together. Two raw-TCP baselines carry the same encoded bytes: `raw-tcp`, fed by
//!   the same raft stand-in (it builds each raft-rs message, as for peerwire, before the raw
//!   link writes that message's bytes), so the ratio is the transport's own cost; and
//!   `raw-tcp-bytes`, the bytes alone, which also charges raft's message building to peerwire.
//! - `heartbeat`: heartbeat round trips to one follower (one every `--heartbeat-every-us`),
//!   idle and while `--snapshot-mib` snapshots stream to the same follower back to back.
//! - `snapshot`: the time to deliver one `--snapshot-mib` snapshot, as bytes per second.
//!
//! The leader runs on one runtime, the followers on another (`--threads` workers each).
//!
//! With `--groups 1,100,10000` the scenario is multi-raft instead (`groups.rs`): every member
//! hosts that many raft groups over one transport.

mod cluster;
mod groups;
mod raw;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::{Args, ValueEnum};
use peerwire_raft::{RaftMessage, Snapshot};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

use crate::BoxError;
use crate::cli::CommonArgs;
use crate::harness::new_histogram;
use crate::report::median_index;
use crate::runtime::RuntimeThread;
use cluster::{FOLLOWERS, Followers};

/// The cases of the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RaftCase {
    /// Append throughput.
    Append,
    /// Heartbeat round trip, idle and during a snapshot.
    Heartbeat,
    /// Snapshot throughput.
    Snapshot,
}

/// `peerwire-bench raft` options.
#[derive(Debug, Clone, Args)]
pub(crate) struct RaftArgs {
    /// Entries per append message.
    #[arg(long, default_value_t = 64)]
    pub(crate) entries_per_msg: usize,
    /// Bytes of data per entry.
    #[arg(long, default_value_t = 256)]
    pub(crate) entry_bytes: usize,
    /// Append messages in flight per follower.
    #[arg(long, default_value_t = 256)]
    pub(crate) window: usize,
    /// Snapshot size, MiB.
    #[arg(long, default_value_t = 64)]
    pub(crate) snapshot_mib: usize,
    /// Pause between heartbeats, µs.
    #[arg(long, default_value_t = 1000)]
    pub(crate) heartbeat_every_us: u64,
    /// Cases to run, comma-separated [default: all].
    #[arg(long, value_delimiter = ',')]
    pub(crate) cases: Vec<RaftCase>,
    /// Raft group counts to sweep, comma-separated (e.g. `1,100,10000`): runs the multi-raft
    /// scenario (append across all groups, heartbeat round trips under every group's ticks,
    /// connections per peer, leader CPU per message) instead of the cases.
    #[arg(long, value_delimiter = ',')]
    pub(crate) groups: Vec<usize>,
    /// With `--groups`: every group heartbeats each follower once per tick of this many ms.
    /// The default is TiKV's raft base tick (1 s): a multi-raft store does not beat thousands
    /// of groups at etcd's 100 ms (that is 200,000 heartbeats a second at 10,000 groups).
    #[arg(long, default_value_t = 1000)]
    pub(crate) group_tick_ms: u64,
    /// With `--groups`: every group beats at the same instant of the tick (one store-wide
    /// ticker) instead of spread over it.
    #[arg(long)]
    pub(crate) aligned_ticks: bool,
    /// Draw the results to this PNG (one panel per metric, one line per impl).
    #[arg(long, value_name = "FILE.png")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Shared options.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
}

/// Runs the scenario and prints the results.
pub(crate) fn run(args: &RaftArgs) -> Result<(), BoxError> {
    let common = &args.common;
    common.validate()?;
    if args.entries_per_msg == 0 || args.window == 0 || args.snapshot_mib == 0 {
        return Err("--entries-per-msg, --window and --snapshot-mib must be at least 1".into());
    }
    if !args.groups.is_empty() {
        if args.group_tick_ms == 0 {
            return Err("--group-tick-ms must be at least 1".into());
        }
        return groups::run(args);
    }
    let cases = if args.cases.is_empty() {
        vec![RaftCase::Append, RaftCase::Heartbeat, RaftCase::Snapshot]
    } else {
        args.cases.clone()
    };
    let leader_rt = RuntimeThread::start("leader", common.threads)?;
    let follower_rt = RuntimeThread::start("followers", common.threads)?;
    let followers = follower_rt.run(Followers::start())?;
    let addrs: Vec<_> = followers
        .nodes
        .iter()
        .map(|(_, s)| s.local_addr())
        .collect();
    let window = args.window;
    let (leader, leader_server, hb_rx) =
        leader_rt.run(async move { cluster::start_leader(window, &addrs).await })?;
    let hb_rx = Arc::new(Mutex::new(hb_rx));
    let leader_addr = leader_server.local_addr();
    for (t, _) in &followers.nodes {
        t.add_peer(cluster::LEADER, vec![leader_addr])?;
    }

    let mut rows = Vec::new();
    for case in cases {
        let mut runs: Vec<Vec<(&'static str, Value)>> = Vec::new();
        for run in 1..=common.runs {
            eprintln!("[raft] {case:?} run {run}/{} ...", common.runs);
            let result = match case {
                RaftCase::Append => append(args, &leader_rt, &follower_rt, &leader)?,
                RaftCase::Heartbeat => heartbeat(args, &leader_rt, &leader, &hb_rx)?,
                RaftCase::Snapshot => snapshot(args, &leader_rt, &follower_rt, &leader)?,
            };
            eprintln!(
                "[raft] {case:?} run {run}: {}",
                Value::Array(result.iter().map(|(_, v)| v.clone()).collect())
            );
            runs.push(result);
        }
        rows.extend(median_rows(&runs));
    }
    let unreachable = leader.handler().unreachable.load(Ordering::Relaxed);
    if unreachable > 0 {
        eprintln!("[raft] note: the leader's transport reported {unreachable} unreachable sends");
    }
    for row in &rows {
        if common.json {
            println!("{row}");
        } else {
            println!("{}", crate::report::table_line(row));
        }
    }
    crate::plot::draw_if_asked(
        args.plot.as_deref(),
        "raft",
        "peerwire-bench raft: a leader and two followers over the raft transport",
        &PLOT,
        &rows,
    )?;
    leader_rt.run(async move {
        leader.stop().await;
        leader_server.shutdown().await;
    });
    follower_rt.run(followers.stop());
    leader_rt.shutdown();
    follower_rt.shutdown();
    Ok(())
}

/// What `--plot` draws: each case's figure, peerwire beside raw TCP.
const PLOT: crate::plot::PlotSpec<'static> = crate::plot::PlotSpec {
    x_keys: &[],
    category_keys: &["case"],
    series_keys: &[],
    panels: &[
        crate::plot::Panel::of("entries_per_sec", "append: entries/s"),
        crate::plot::Panel::only("bytes_per_sec", "snapshot: bytes/s", "case", "snapshot"),
        crate::plot::Panel::of("p99_us_idle", "heartbeat p99 µs, idle"),
        crate::plot::Panel::of("p99_us_snapshot", "heartbeat p99 µs, during a snapshot"),
    ],
};

/// What `--plot` draws with `--groups`: each figure against the number of groups.
const GROUPS_PLOT: crate::plot::PlotSpec<'static> = crate::plot::PlotSpec {
    x_keys: &[("groups", "raft groups")],
    category_keys: &["groups"],
    series_keys: &[],
    panels: &[
        crate::plot::Panel::of("entries_per_sec", "append: entries/s"),
        crate::plot::Panel::only(
            "p99_us",
            "heartbeat p99 µs under every group's ticks",
            "case",
            "heartbeat",
        ),
        crate::plot::Panel::of(
            "leader_cpu_sec_per_million_msgs",
            "leader CPU s per million messages",
        ),
    ],
};

/// For each impl in the runs, the row of the median run (by its first metric), with ratios to
/// raw TCP where both ran.
fn median_rows(runs: &[Vec<(&'static str, Value)>]) -> Vec<Value> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    let mut rows: Vec<Value> = (0..first.len())
        .map(|i| {
            let key = |run: &Vec<(&'static str, Value)>| {
                run[i]
                    .1
                    .get("sort_key")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0)
            };
            let keys: Vec<f64> = runs.iter().map(key).collect();
            let median = median_index(&keys).unwrap_or(0);
            let mut row = runs[median][i].1.clone();
            if let Some(obj) = row.as_object_mut() {
                obj.remove("sort_key");
                obj.insert("runs".into(), json!(runs.len()));
            }
            row
        })
        .collect();
    // Each baseline row (`raw-tcp`, `raw-tcp-bytes`) gives the peerwire row a ratio to it
    // (`vs_raw_tcp`, `vs_raw_tcp_bytes`).
    let baselines: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| {
            let name = r["impl"].as_str()?;
            let value = r.get("sort_value").and_then(Value::as_f64)?;
            (name.starts_with("raw-tcp") && value > 0.0)
                .then(|| (format!("vs_{}", name.replace('-', "_")), value))
        })
        .collect();
    for row in &mut rows {
        let value = row.get("sort_value").and_then(Value::as_f64);
        if let Some(obj) = row.as_object_mut() {
            obj.remove("sort_value");
            if let Some(v) = value
                && obj["impl"] == "peerwire"
            {
                for (key, raw) in &baselines {
                    obj.insert(key.clone(), json!((v / raw * 1000.0).round() / 1000.0));
                }
            }
        }
    }
    rows
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

type Leader = peerwire_raft::Transport<raft::eraftpb::Message, cluster::Leader>;

fn append(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    follower_rt: &RuntimeThread,
    leader: &Leader,
) -> Result<Vec<(&'static str, Value)>, BoxError> {
    let (per_msg, entry_bytes) = (args.entries_per_msg, args.entry_bytes);
    let (warmup, window_secs) = (secs(args.common.warmup), secs(args.common.secs));
    let data = Bytes::from(vec![0x42u8; entry_bytes]);

    // peerwire: one driver per follower, sending as its window allows.
    let t = leader.clone();
    let d = data.clone();
    let acked = leader_rt.run(async move {
        let drivers: Vec<_> = FOLLOWERS
            .iter()
            .enumerate()
            .map(|(i, &to)| {
                let (t, d) = (t.clone(), d.clone());
                tokio::spawn(async move {
                    let window = t.handler().windows[i].clone();
                    let mut index = 0u64;
                    loop {
                        match window.acquire().await {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                        t.send([cluster::append(to, index, per_msg, &d)]);
                        index += per_msg as u64;
                    }
                })
            })
            .collect();
        tokio::time::sleep(warmup).await;
        let a0 = t.handler().acked_messages.load(Ordering::Relaxed);
        tokio::time::sleep(window_secs).await;
        let a1 = t.handler().acked_messages.load(Ordering::Relaxed);
        for d in drivers {
            d.abort();
        }
        a1 - a0
    });
    let peerwire_entries = (acked * per_msg as u64) as f64 / window_secs.as_secs_f64();

    // raw TCP: the same encoded message bytes, with and without the raft stand-in building
    // each message first.
    let mut encoded = BytesMut::new();
    cluster::append(2, 0, per_msg, &data).encode(&mut encoded);
    let message = encoded.freeze();
    let message_len = message.len();
    let raw = |fed: bool| {
        raw_append(
            args,
            leader_rt,
            follower_rt,
            message.clone(),
            fed.then(|| data.clone()),
        )
    };
    let raw_fed_entries = raw(true)?;
    let raw_bytes_entries = raw(false)?;

    let row = |name: &str, entries: f64| {
        json!({
            "scenario": "raft",
            "case": "append",
            "impl": name,
            "entries_per_sec": entries.round(),
            "bytes_per_sec": (entries * entry_bytes as f64).round(),
            "entries_per_msg": per_msg,
            "entry_bytes": entry_bytes,
            "message_bytes": message_len,
            "window": args.window,
            "sort_key": entries,
            "sort_value": entries,
        })
    };
    Ok(vec![
        ("peerwire", row("peerwire", peerwire_entries)),
        ("raw-tcp", row("raw-tcp", raw_fed_entries)),
        ("raw-tcp-bytes", row("raw-tcp-bytes", raw_bytes_entries)),
    ])
}

/// Entries per second raw TCP carries to both followers as `message`, one link per follower;
/// with `feed` (the entry data), the raft stand-in builds each message first.
fn raw_append(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    follower_rt: &RuntimeThread,
    message: Bytes,
    feed: Option<Bytes>,
) -> Result<f64, BoxError> {
    let (per_msg, window) = (args.entries_per_msg, args.window);
    let (warmup, window_secs) = (secs(args.common.warmup), secs(args.common.secs));
    let addrs = follower_rt.run(async {
        let mut addrs = Vec::new();
        for _ in FOLLOWERS {
            addrs.push(raw::append_follower().await?);
        }
        Ok::<_, BoxError>(addrs)
    })?;
    let acked = leader_rt.run(async move {
        let mut links = Vec::new();
        for (addr, to) in addrs.into_iter().zip(FOLLOWERS) {
            let feed = feed.clone().map(|data| raw::Feed {
                to,
                entries: per_msg,
                data,
            });
            links.push(raw::AppendLink::start(addr, message.clone(), window, feed).await?);
        }
        tokio::time::sleep(warmup).await;
        let count = |links: &[raw::AppendLink]| -> u64 {
            links.iter().map(|l| l.acked.load(Ordering::Relaxed)).sum()
        };
        let a0 = count(&links);
        tokio::time::sleep(window_secs).await;
        let a1 = count(&links);
        drop(links);
        Ok::<_, BoxError>(a1 - a0)
    })?;
    Ok((acked * per_msg as u64) as f64 / window_secs.as_secs_f64())
}

/// Heartbeat round trips to follower 2 for `for_secs`; returns (p50, p99) in µs.
async fn probe_heartbeats(
    t: &Leader,
    hb_rx: &Mutex<mpsc::UnboundedReceiver<u64>>,
    every: Duration,
    for_secs: Duration,
    seq: &mut u64,
) -> Result<(u64, u64, u64), BoxError> {
    let mut rx = hb_rx.lock().await;
    let mut hist = new_histogram();
    let end = Instant::now() + for_secs;
    while Instant::now() < end {
        *seq += 1;
        let start = Instant::now();
        t.send([cluster::heartbeat(FOLLOWERS[0], *seq)]);
        loop {
            match tokio::time::timeout(Duration::from_secs(2), rx.recv()).await {
                Ok(Some(s)) if s == *seq => break,
                Ok(Some(_)) => continue,
                _ => return Err(format!("heartbeat {seq} unanswered within 2 s").into()),
            }
        }
        hist.saturating_record(start.elapsed().as_micros() as u64);
        tokio::time::sleep(every).await;
    }
    Ok((
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.len(),
    ))
}

fn heartbeat(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    leader: &Leader,
    hb_rx: &Arc<Mutex<mpsc::UnboundedReceiver<u64>>>,
) -> Result<Vec<(&'static str, Value)>, BoxError> {
    let t = leader.clone();
    let hb_rx = hb_rx.clone();
    let every = Duration::from_micros(args.heartbeat_every_us);
    let window = secs(args.common.secs);
    let warmup = secs(args.common.warmup);
    let size = args.snapshot_mib << 20;
    leader_rt.run(async move {
        let mut seq = 0u64;
        probe_heartbeats(&t, &hb_rx, every, warmup, &mut seq).await?;
        let idle = probe_heartbeats(&t, &hb_rx, every, window, &mut seq).await?;

        // Snapshots to the same follower, back to back, for the whole window.
        let data = Bytes::from(vec![0x5au8; size]);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sender = {
            let (t, stop) = (t.clone(), stop.clone());
            tokio::spawn(async move {
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let p = t.send_snapshot(Snapshot::from_message(cluster::snapshot(
                        FOLLOWERS[0],
                        data.clone(),
                    )));
                    if p.finished().await.is_err() {
                        break;
                    }
                    sent += 1;
                }
                sent
            })
        };
        let started = Instant::now();
        let busy = probe_heartbeats(&t, &hb_rx, every, window, &mut seq).await?;
        stop.store(true, Ordering::Relaxed);
        let snapshots = sender.await?;
        let snapshot_rate = (snapshots * size as u64) as f64 / started.elapsed().as_secs_f64();
        let ratio = busy.1 as f64 / idle.1.max(1) as f64;
        Ok::<_, BoxError>(vec![(
            "peerwire",
            json!({
                "scenario": "raft",
                "case": "heartbeat",
                "impl": "peerwire",
                "p50_us_idle": idle.0,
                "p99_us_idle": idle.1,
                "p50_us_snapshot": busy.0,
                "p99_us_snapshot": busy.1,
                "p99_ratio": (ratio * 100.0).round() / 100.0,
                "samples_idle": idle.2,
                "samples_snapshot": busy.2,
                "snapshots_during": snapshots,
                "snapshot_bytes_per_sec_during": snapshot_rate.round(),
                "sort_key": ratio,
            }),
        )])
    })
}

fn snapshot(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    follower_rt: &RuntimeThread,
    leader: &Leader,
) -> Result<Vec<(&'static str, Value)>, BoxError> {
    let size = args.snapshot_mib << 20;
    let data = Bytes::from(vec![0x5au8; size]);
    let t = leader.clone();
    let d = data.clone();
    let peerwire = leader_rt.run(async move {
        let start = Instant::now();
        let p = t.send_snapshot(Snapshot::from_message(cluster::snapshot(FOLLOWERS[0], d)));
        p.finished().await?;
        Ok::<_, BoxError>(size as f64 / start.elapsed().as_secs_f64())
    })?;
    let addr = follower_rt.run(raw::snapshot_receiver())?;
    let raw = leader_rt.run(async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let start = Instant::now();
        raw::send_snapshot(&mut stream, &data).await?;
        Ok::<_, BoxError>(size as f64 / start.elapsed().as_secs_f64())
    })?;
    let row = |name: &str, rate: f64| {
        json!({
            "scenario": "raft",
            "case": "snapshot",
            "impl": name,
            "bytes_per_sec": rate.round(),
            "snapshot_bytes": size,
            "sort_key": rate,
            "sort_value": rate,
        })
    };
    Ok(vec![
        ("peerwire", row("peerwire", peerwire)),
        ("raw-tcp", row("raw-tcp", raw)),
    ])
}
