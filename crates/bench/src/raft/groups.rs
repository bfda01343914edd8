//! `peerwire-bench raft --groups 1,100,10000`: many raft groups over one raft transport per
//! member (multi-raft), a leader of every group and two followers, raft-rs messages wrapped as
//! [`GroupMessage`]s.
//!
//! For each group count:
//! - `append`: the leader keeps `--window` appends in flight to each follower, over all
//!   groups (each follower's driver takes the groups in turn); entries acknowledged per second,
//!   and the leader runtime's CPU seconds per million messages (each append and its response
//!   count as two).
//! - `heartbeat`: every group heartbeats both followers every `--group-tick-ms` (raft's tick;
//!   the groups' ticks spread over the interval, as groups with raft loops of their own tick,
//!   or all at once with `--aligned-ticks`), and beside that load one group's heartbeat round
//!   trip to follower 2 is timed every `--heartbeat-every-us`; its p99.
//! - `connections_per_peer`: the connections follower 2's server holds from the leader at the
//!   end: the lane count, whatever the number of groups.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use peerwire::Server;
use peerwire_raft::raft_rs::GroupMessage;
use peerwire_raft::{ProcessError, RaftHandler, SnapshotStatus, Transport};
use raft::eraftpb::MessageType;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use super::RaftArgs;
use super::cluster::{self, FOLLOWERS, LEADER};
use crate::BoxError;
use crate::cpu::threads_cpu_secs;
use crate::harness::new_histogram;
use crate::report::median_index;
use crate::runtime::RuntimeThread;

/// The group whose heartbeats are timed.
const PROBE_GROUP: u64 = 0;

/// A follower's side of one group: answers appends and heartbeats in the same group.
#[derive(Debug)]
struct Follower {
    group: u64,
    replies: mpsc::UnboundedSender<GroupMessage>,
}

impl RaftHandler<GroupMessage> for Follower {
    fn process(&self, m: GroupMessage) -> Result<(), ProcessError> {
        let Some(reply) = cluster::follower_reply(&m.message) else {
            return Ok(());
        };
        self.replies
            .send(GroupMessage::new(self.group, reply))
            .map_err(|_| ProcessError("follower stopped".into()))
    }
    fn is_id_removed(&self, _id: u64) -> bool {
        false
    }
    fn report_unreachable(&self, _id: u64) {}
    fn report_snapshot(&self, _id: u64, _status: SnapshotStatus) {}
}

/// What the leader's groups share: send windows per follower, counters, the probe's answers.
#[derive(Debug)]
struct LeaderShared {
    windows: [Arc<Semaphore>; 2],
    acked: AtomicU64,
    heartbeats_answered: AtomicU64,
    probe: mpsc::UnboundedSender<u64>,
    unreachable: AtomicU64,
}

/// The leader's side of one group.
#[derive(Debug)]
struct Leader {
    group: u64,
    shared: Arc<LeaderShared>,
}

impl RaftHandler<GroupMessage> for Leader {
    fn process(&self, m: GroupMessage) -> Result<(), ProcessError> {
        let m = m.message;
        match m.get_msg_type() {
            MessageType::MsgAppendResponse => {
                self.shared.acked.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = FOLLOWERS.iter().position(|f| *f == m.from) {
                    self.shared.windows[i].add_permits(1);
                }
            }
            MessageType::MsgHeartbeatResponse => {
                if self.group == PROBE_GROUP && m.from == FOLLOWERS[0] && m.commit > 0 {
                    let _ = self.shared.probe.send(m.commit);
                } else {
                    self.shared
                        .heartbeats_answered
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(())
    }
    fn is_id_removed(&self, _id: u64) -> bool {
        false
    }
    fn report_unreachable(&self, _id: u64) {
        self.shared.unreachable.fetch_add(1, Ordering::Relaxed);
    }
    fn report_snapshot(&self, _id: u64, _status: SnapshotStatus) {}
}

type LeaderTransport = Transport<GroupMessage, Leader>;

/// One group count's cluster.
struct Cluster {
    leader: LeaderTransport,
    leader_server: Server,
    shared: Arc<LeaderShared>,
    followers: Vec<(Transport<GroupMessage, Follower>, Server)>,
}

/// A member's transport settings for `groups` groups: a lane queue that holds a tick's
/// heartbeats of every group (one per group and peer) besides etcd's 4,096.
fn config(id: u64, groups: u64) -> peerwire_raft::TransportConfig {
    let mut cfg = cluster::config(id);
    cfg.stream_queue = cfg.stream_queue.max(4 * groups as usize);
    cfg
}

async fn start_followers(
    groups: u64,
) -> Result<Vec<(Transport<GroupMessage, Follower>, Server)>, BoxError> {
    let mut nodes = Vec::new();
    for id in FOLLOWERS {
        let cfg = config(id, groups);
        let server_cfg = cfg.server_config();
        let transport = Transport::start_multi(cfg)?;
        let (tx, rx) = mpsc::unbounded_channel::<GroupMessage>();
        for group in 0..groups {
            transport.add_group(
                group,
                Follower {
                    group,
                    replies: tx.clone(),
                },
            )?;
        }
        let server = Server::builder(server_cfg)
            .mount_all(&transport)
            .bind("127.0.0.1:0".parse()?)
            .await?;
        cluster::send_replies(&transport, rx);
        nodes.push((transport, server));
    }
    Ok(nodes)
}

async fn start_leader(
    groups: u64,
    window: usize,
    followers: &[std::net::SocketAddr],
) -> Result<
    (
        LeaderTransport,
        Server,
        Arc<LeaderShared>,
        mpsc::UnboundedReceiver<u64>,
    ),
    BoxError,
> {
    let (probe, probe_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(LeaderShared {
        windows: [
            Arc::new(Semaphore::new(window)),
            Arc::new(Semaphore::new(window)),
        ],
        acked: AtomicU64::new(0),
        heartbeats_answered: AtomicU64::new(0),
        probe,
        unreachable: AtomicU64::new(0),
    });
    let cfg = config(LEADER, groups);
    let server_cfg = cfg.server_config();
    let transport = Transport::start_multi(cfg)?;
    for group in 0..groups {
        transport.add_group(
            group,
            Leader {
                group,
                shared: shared.clone(),
            },
        )?;
    }
    let server = Server::builder(server_cfg)
        .mount_all(&transport)
        .bind("127.0.0.1:0".parse()?)
        .await?;
    for (id, addr) in FOLLOWERS.iter().zip(followers) {
        transport.add_peer(*id, vec![*addr])?;
    }
    cluster::lanes_up(&transport).await?;
    Ok((transport, server, shared, probe_rx))
}

/// Runs the sweep over `--groups` and prints one row per group count and case.
pub(crate) fn run(args: &RaftArgs) -> Result<(), BoxError> {
    let common = &args.common;
    let mut rows = Vec::new();
    for &groups in &args.groups {
        if groups == 0 {
            return Err("--groups counts must be at least 1".into());
        }
        let groups = groups as u64;
        let leader_rt = RuntimeThread::start("leader", common.threads)?;
        let follower_rt = RuntimeThread::start("followers", common.threads)?;
        let followers = follower_rt.run(start_followers(groups))?;
        let addrs: Vec<_> = followers.iter().map(|(_, s)| s.local_addr()).collect();
        let window = args.window;
        let (leader, leader_server, shared, mut probe_rx) =
            leader_rt.run(async move { start_leader(groups, window, &addrs).await })?;
        let leader_addr = leader_server.local_addr();
        for (t, _) in &followers {
            t.add_peer(LEADER, vec![leader_addr])?;
        }
        let cluster = Cluster {
            leader,
            leader_server,
            shared,
            followers,
        };
        let mut appends = Vec::new();
        let mut beats = Vec::new();
        for run in 1..=common.runs {
            eprintln!("[raft groups={groups}] run {run}/{} ...", common.runs);
            let a = append(args, &leader_rt, &cluster, groups)?;
            eprintln!("[raft groups={groups}] append run {run}: {a}");
            appends.push(a);
            let (b, rx) = heartbeat(args, &leader_rt, &cluster, groups, probe_rx)?;
            probe_rx = rx;
            eprintln!("[raft groups={groups}] heartbeat run {run}: {b}");
            beats.push(b);
        }
        let connections = cluster.followers[0].1.connections();
        for (case, runs, key) in [
            ("append", &appends, "entries_per_sec"),
            ("heartbeat", &beats, "p99_us"),
        ] {
            let keys: Vec<f64> = runs
                .iter()
                .map(|r| r[key].as_f64().unwrap_or(0.0))
                .collect();
            let spread = keys.iter().copied().fold(f64::INFINITY, f64::min)
                ..=keys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let mut row = runs[median_index(&keys).unwrap_or(0)].clone();
            if let Some(obj) = row.as_object_mut() {
                obj.insert("scenario".into(), json!("raft-groups"));
                obj.insert("case".into(), json!(case));
                obj.insert("impl".into(), json!("peerwire"));
                obj.insert("groups".into(), json!(groups));
                obj.insert("connections_per_peer".into(), json!(connections));
                obj.insert(
                    "unreachable_reports".into(),
                    json!(cluster.shared.unreachable.load(Ordering::Relaxed)),
                );
                obj.insert("runs".into(), json!(runs.len()));
                obj.insert(
                    format!("{key}_range"),
                    json!([spread.start().round(), spread.end().round()]),
                );
            }
            rows.push(row);
        }
        let unreachable = cluster.shared.unreachable.load(Ordering::Relaxed);
        if unreachable > 0 {
            eprintln!("[raft groups={groups}] note: {unreachable} unreachable reports");
        }
        let Cluster {
            leader,
            leader_server,
            followers,
            ..
        } = cluster;
        leader_rt.run(async move {
            leader.stop().await;
            leader_server.shutdown().await;
        });
        follower_rt.run(async move {
            for (t, s) in followers {
                t.stop().await;
                s.shutdown().await;
            }
        });
        leader_rt.shutdown();
        follower_rt.shutdown();
    }
    add_ratios(&mut rows);
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
        &format!(
            "peerwire-bench raft --groups: many raft groups over shared lanes, {} ms ticks",
            args.group_tick_ms
        ),
        &super::GROUPS_PLOT,
        &rows,
    )
}

/// Each row's ratios to the same case's row with the fewest groups: append throughput,
/// CPU per message, heartbeat p99.
fn add_ratios(rows: &mut [Value]) {
    let base = |case: &str, key: &str, rows: &[Value]| -> Option<f64> {
        rows.iter()
            .filter(|r| r["case"] == case)
            .min_by_key(|r| r["groups"].as_u64().unwrap_or(u64::MAX))
            .and_then(|r| r[key].as_f64())
            .filter(|v| *v > 0.0)
    };
    let bases = [
        ("append", "entries_per_sec", "append_vs_fewest_groups"),
        (
            "append",
            "leader_cpu_sec_per_million_msgs",
            "cpu_per_msg_vs_fewest_groups",
        ),
        ("heartbeat", "p99_us", "p99_vs_fewest_groups"),
    ]
    .map(|(case, key, name)| (case, key, name, base(case, key, rows)));
    for row in rows.iter_mut() {
        for (case, key, name, base) in bases {
            if row["case"] == case
                && let (Some(base), Some(v)) = (base, row[key].as_f64())
                && let Some(obj) = row.as_object_mut()
            {
                obj.insert(name.into(), json!((v / base * 1000.0).round() / 1000.0));
            }
        }
    }
}

fn append(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    cluster: &Cluster,
    groups: u64,
) -> Result<Value, BoxError> {
    let per_msg = args.entries_per_msg;
    let warmup = Duration::from_secs_f64(args.common.warmup);
    let window = Duration::from_secs_f64(args.common.secs);
    let data = Bytes::from(vec![0x42u8; args.entry_bytes]);
    let (t, shared) = (cluster.leader.clone(), cluster.shared.clone());
    let (acked, cpu) = leader_rt.run(async move {
        let drivers: Vec<_> = FOLLOWERS
            .iter()
            .enumerate()
            .map(|(i, &to)| {
                let (t, d, shared) = (t.clone(), data.clone(), shared.clone());
                tokio::spawn(async move {
                    let window = shared.windows[i].clone();
                    let mut indexes = vec![0u64; groups as usize];
                    let mut group = 0u64;
                    loop {
                        match window.acquire().await {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                        let index = &mut indexes[group as usize];
                        t.send([GroupMessage::new(
                            group,
                            cluster::append(to, *index, per_msg, &d),
                        )]);
                        *index += per_msg as u64;
                        group = (group + 1) % groups;
                    }
                })
            })
            .collect();
        tokio::time::sleep(warmup).await;
        let (a0, c0) = (
            shared.acked.load(Ordering::Relaxed),
            threads_cpu_secs("leader-w"),
        );
        tokio::time::sleep(window).await;
        let (a1, c1) = (
            shared.acked.load(Ordering::Relaxed),
            threads_cpu_secs("leader-w"),
        );
        for d in drivers {
            d.abort();
        }
        // Let the windows refill before the next measurement.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (a1 - a0, c1 - c0)
    });
    let entries = (acked * per_msg as u64) as f64 / window.as_secs_f64();
    let messages = (acked * 2) as f64;
    Ok(json!({
        "entries_per_sec": entries.round(),
        "messages": acked * 2,
        "leader_cpu_secs": (cpu * 100.0).round() / 100.0,
        "leader_cpu_sec_per_million_msgs": if messages > 0.0 {
            (cpu / messages * 1e6 * 1000.0).round() / 1000.0
        } else {
            0.0
        },
        "entries_per_msg": per_msg,
        "entry_bytes": args.entry_bytes,
        "window": args.window,
    }))
}

/// Every group heartbeats both followers each tick; one group's round trip is timed beside.
/// Returns the row and the probe receiver.
fn heartbeat(
    args: &RaftArgs,
    leader_rt: &RuntimeThread,
    cluster: &Cluster,
    groups: u64,
    mut probe_rx: mpsc::UnboundedReceiver<u64>,
) -> Result<(Value, mpsc::UnboundedReceiver<u64>), BoxError> {
    let tick = Duration::from_millis(args.group_tick_ms);
    let aligned = args.aligned_ticks;
    let every = Duration::from_micros(args.heartbeat_every_us);
    let warmup = Duration::from_secs_f64(args.common.warmup);
    let window = Duration::from_secs_f64(args.common.secs);
    let (t, shared) = (cluster.leader.clone(), cluster.shared.clone());
    leader_rt.run(async move {
        // The background: a heartbeat per group and follower every tick. Groups whose raft
        // loops tick on their own clocks spread over the tick: every millisecond the next
        // slice of groups beats. With `--aligned-ticks`, one store-wide ticker beats every
        // group at once (a burst of all groups' heartbeats each tick).
        let ticker = {
            let t = t.clone();
            tokio::spawn(async move {
                let slices = if aligned {
                    1
                } else {
                    tick.as_millis().max(1) as u64
                };
                let mut interval = tokio::time::interval(tick / slices as u32);
                let mut slice = 0u64;
                loop {
                    interval.tick().await;
                    let (from, to) = (groups * slice / slices, groups * (slice + 1) / slices);
                    let beats = (from..to).flat_map(|g| {
                        FOLLOWERS
                            .iter()
                            .map(move |&to| GroupMessage::new(g, cluster::heartbeat(to, 0)))
                    });
                    t.send(beats);
                    slice = (slice + 1) % slices;
                }
            })
        };
        let mut seq = 0u64;
        let mut hist = new_histogram();
        let start = Instant::now();
        let measure_from = start + warmup;
        let end = measure_from + window;
        let answered0 = shared.heartbeats_answered.load(Ordering::Relaxed);
        while Instant::now() < end {
            seq += 1;
            let sent = Instant::now();
            t.send([GroupMessage::new(
                PROBE_GROUP,
                cluster::heartbeat(FOLLOWERS[0], seq),
            )]);
            loop {
                match tokio::time::timeout(Duration::from_secs(2), probe_rx.recv()).await {
                    Ok(Some(s)) if s == seq => break,
                    Ok(Some(_)) => continue,
                    _ => {
                        ticker.abort();
                        return Err::<_, BoxError>(
                            format!("heartbeat {seq} unanswered within 2 s").into(),
                        );
                    }
                }
            }
            if sent >= measure_from {
                hist.saturating_record(sent.elapsed().as_micros() as u64);
            }
            tokio::time::sleep(every).await;
        }
        ticker.abort();
        let background = shared.heartbeats_answered.load(Ordering::Relaxed) - answered0;
        let elapsed = start.elapsed().as_secs_f64();
        Ok((
            json!({
                "p50_us": hist.value_at_quantile(0.5),
                "p99_us": hist.value_at_quantile(0.99),
                "samples": hist.len(),
                "background_heartbeats_per_sec": (background as f64 / elapsed).round(),
                "group_tick_ms": tick.as_millis() as u64,
                "ticks": if aligned { "aligned" } else { "spread" },
            }),
            probe_rx,
        ))
    })
}
