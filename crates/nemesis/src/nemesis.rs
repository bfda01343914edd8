//! Running the schedule: each step's fault made on the real hosts (nftables rules, links,
//! signals), held, healed, and the cluster's recovery measured (every node accepts a write;
//! every node has applied what the leader had committed).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Method;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, http_addr};
use crate::http::{Answer, HttpClient};
use crate::netns::Hosts;
use crate::partition::{Cuts, NodeId};
use crate::schedule::{Kind, Step};
use crate::workload::Clock;

/// How long recovery is waited for after a heal before the step is reported as not recovered.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// What one step did and how the cluster came back.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// The kind.
    pub kind: Kind,
    /// What exactly was done (which nodes, which cuts).
    pub what: String,
    /// When the fault began (ns on the run's clock).
    pub start_ns: u64,
    /// When it was healed.
    pub heal_ns: u64,
    /// The side that keeps a quorum, when the fault has one.
    pub majority: Vec<NodeId>,
    /// The side cut off (or killed, paused, unlinked).
    pub minority: Vec<NodeId>,
    /// From the heal until every node had accepted a write (ms), if within the limit.
    pub writable_after_ms: Option<u64>,
    /// From the heal until every node had applied the leader's commit index (ms).
    pub caught_up_after_ms: Option<u64>,
}

/// Drives faults on the hosts and the cluster.
#[derive(Debug)]
pub struct Nemesis<'a> {
    hosts: &'a Hosts,
    cluster: &'a mut Cluster,
    http: HttpClient,
    clock: Clock,
    /// Nodes paused now.
    paused: Vec<NodeId>,
    /// Nodes whose link is down now.
    unlinked: Vec<NodeId>,
    /// Probe writes so far (each probe value unique).
    probes: u64,
    /// Nodes that exited on their own (not killed by the nemesis), with their status.
    crashed: Vec<(NodeId, String)>,
}

impl<'a> Nemesis<'a> {
    /// A nemesis over `hosts` and `cluster`, stamping records with `clock`.
    pub fn new(hosts: &'a Hosts, cluster: &'a mut Cluster, clock: Clock) -> Self {
        Self {
            hosts,
            cluster,
            http: HttpClient::new(),
            clock,
            paused: Vec::new(),
            unlinked: Vec::new(),
            probes: 0,
            crashed: Vec::new(),
        }
    }

    /// The nodes that exited on their own so far (each restarted by the next heal).
    pub fn exited(&mut self) -> Vec<(NodeId, String)> {
        self.crashed.extend(self.cluster.exited());
        self.crashed.clone()
    }

    fn n(&self) -> NodeId {
        self.cluster.nodes()
    }

    /// The leader, as the node reporting the highest term says (asking every node over HTTP).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for i in 1..=self.n() {
            if let Some(s) = self.http.status(http_addr(i)).await {
                let term = s["term"].as_u64().unwrap_or(0);
                let leader = s["leader"].as_u64().unwrap_or(0);
                if leader != 0 && best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, leader as NodeId));
                }
            }
        }
        best.map(|(_, l)| l)
    }

    /// Runs `steps` in order until done or `stop`; everything is healed when it returns.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: cancel through `stop`, which heals before returning.
    pub async fn run(&mut self, steps: &[Step], stop: &CancellationToken) -> Vec<FaultRecord> {
        let mut records = Vec::new();
        for step in steps {
            if sleep_or_stop(step.quiet, stop).await {
                break;
            }
            let record = self.step(step, stop).await;
            println!(
                "[{:>7.1}s] {:<14} {:<40} writable after {} ms, caught up after {} ms",
                record.start_ns as f64 / 1e9,
                record.kind.name(),
                record.what,
                fmt_ms(record.writable_after_ms),
                fmt_ms(record.caught_up_after_ms),
            );
            records.push(record);
            if stop.is_cancelled() {
                break;
            }
        }
        self.heal().await;
        records
    }

    async fn step(&mut self, step: &Step, stop: &CancellationToken) -> FaultRecord {
        let mut rng = fastrand::Rng::with_seed(step.choice);
        let n = self.n();
        let all: Vec<NodeId> = (1..=n).collect();
        let leader = self.leader().await;
        // The leader half the time (when one is known), else any node.
        let target = |rng: &mut fastrand::Rng, prefer_leader: bool| match leader {
            Some(l) if prefer_leader => l,
            _ => rng.u8(1..=n),
        };
        let minority_size = ((n - 1) / 2) as usize;
        let start_ns = self.clock.now_ns();
        let (what, majority, minority) = match step.kind {
            Kind::IsolateLeader => {
                let l = target(&mut rng, true);
                let others = without(&all, &[l]);
                self.cut(&Cuts::split(&[l], &others));
                (format!("node {l} isolated"), others, vec![l])
            }
            Kind::Majority => {
                let mut shuffled = all.clone();
                rng.shuffle(&mut shuffled);
                let (minority, majority) = shuffled.split_at(minority_size);
                self.cut(&Cuts::split(minority, majority));
                (
                    format!("{minority:?} | {majority:?}"),
                    majority.to_vec(),
                    minority.to_vec(),
                )
            }
            Kind::OneWay => {
                let l = target(&mut rng, true);
                let others = without(&all, &[l]);
                self.cut(&Cuts::one_way(&[l], &others));
                (
                    format!("node {l}'s packets lost at {others:?}"),
                    others,
                    vec![l],
                )
            }
            Kind::Bridge => {
                let mut shuffled = all.clone();
                rng.shuffle(&mut shuffled);
                let bridge = shuffled[0];
                let half = (shuffled.len() - 1) / 2;
                let left = shuffled[1..1 + half].to_vec();
                let right = shuffled[1 + half..].to_vec();
                self.cut(&Cuts::bridge(&left, &right));
                (
                    format!("{left:?} | {right:?}, node {bridge} sees both"),
                    Vec::new(),
                    Vec::new(),
                )
            }
            Kind::Flap => {
                let until = Instant::now() + step.hold;
                let mut flips = 0;
                while Instant::now() < until && !stop.is_cancelled() {
                    let mut shuffled = all.clone();
                    rng.shuffle(&mut shuffled);
                    let (a, b) = shuffled.split_at(minority_size.max(1));
                    let cuts = if flips % 2 == 0 {
                        Cuts::split(a, b)
                    } else {
                        Cuts::none()
                    };
                    self.cut(&cuts);
                    flips += 1;
                    let pause = Duration::from_millis(rng.u64(500..=1500));
                    if sleep_or_stop(pause.min(until - Instant::now()), stop).await {
                        break;
                    }
                }
                (format!("{flips} flips"), Vec::new(), Vec::new())
            }
            Kind::Kill => {
                let prefer = rng.bool();
                let t = target(&mut rng, prefer);
                self.cluster.kill(t).await;
                (format!("node {t} killed"), without(&all, &[t]), vec![t])
            }
            Kind::Pause => {
                let prefer = rng.bool();
                let t = target(&mut rng, prefer);
                self.cluster.pause(t);
                self.paused.push(t);
                (format!("node {t} paused"), without(&all, &[t]), vec![t])
            }
            Kind::LinkDown => {
                let prefer = rng.bool();
                let t = target(&mut rng, prefer);
                if let Err(e) = self.hosts.set_link(t, false) {
                    eprintln!("nemesis: link down on node {t}: {e}");
                }
                self.unlinked.push(t);
                (
                    format!("node {t}'s link down"),
                    without(&all, &[t]),
                    vec![t],
                )
            }
            Kind::Mixed => {
                let mut shuffled = all.clone();
                rng.shuffle(&mut shuffled);
                let (minority, majority) = shuffled.split_at(minority_size);
                self.cut(&Cuts::split(minority, majority));
                let victim = majority[rng.usize(..majority.len())];
                let how = if rng.bool() {
                    self.cluster.kill(victim).await;
                    "killed"
                } else {
                    self.cluster.pause(victim);
                    self.paused.push(victim);
                    "paused"
                };
                (
                    format!("{minority:?} | {majority:?}, node {victim} {how}"),
                    Vec::new(),
                    Vec::new(),
                )
            }
        };
        if step.kind != Kind::Flap {
            sleep_or_stop(step.hold, stop).await;
        }
        self.heal().await;
        let heal_ns = self.clock.now_ns();
        let (writable_after_ms, caught_up_after_ms) = self.recovery().await;
        FaultRecord {
            kind: step.kind,
            what,
            start_ns,
            heal_ns,
            majority,
            minority,
            writable_after_ms,
            caught_up_after_ms,
        }
    }

    fn cut(&self, cuts: &Cuts) {
        if let Err(e) = self.hosts.set_cuts(cuts) {
            eprintln!("nemesis: applying {}: {e}", cuts.describe());
        }
    }

    /// Undoes every fault: rules flushed, links up, paused nodes resumed, killed nodes started.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe.
    pub async fn heal(&mut self) {
        self.cut(&Cuts::none());
        for t in self.unlinked.drain(..) {
            if let Err(e) = self.hosts.set_link(t, true) {
                eprintln!("nemesis: link up on node {t}: {e}");
            }
        }
        for t in self.paused.drain(..) {
            self.cluster.resume(t);
        }
        self.crashed.extend(self.cluster.exited());
        for i in 1..=self.n() {
            if !self.cluster.is_running(i)
                && let Err(e) = self.cluster.start_node(i)
            {
                eprintln!("nemesis: restarting node {i}: {e}");
            }
        }
    }

    /// Waits until every node accepts a write, then until every node has applied what the
    /// leader had committed; each time in ms from now, `None` past [`RECOVERY_LIMIT`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn recovery(&mut self) -> (Option<u64>, Option<u64>) {
        let healed = Instant::now();
        let mut pending: Vec<NodeId> = (1..=self.n()).collect();
        while !pending.is_empty() && healed.elapsed() < RECOVERY_LIMIT {
            let mut still = Vec::new();
            for i in pending {
                self.probes += 1;
                let answer = self
                    .http
                    .request(
                        Method::PUT,
                        http_addr(i),
                        &format!("/probe-{i}"),
                        Some(Bytes::from(self.probes.to_string())),
                        Duration::from_secs(1),
                    )
                    .await;
                if !matches!(answer, Answer::Status { code: 204, .. }) {
                    still.push(i);
                }
            }
            pending = still;
            if !pending.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        if !pending.is_empty() {
            return (None, None);
        }
        let writable = healed.elapsed().as_millis() as u64;
        let mut target = None;
        while healed.elapsed() < RECOVERY_LIMIT {
            if target.is_none()
                && let Some(l) = self.leader().await
                && let Some(s) = self.http.status(http_addr(l)).await
            {
                target = s["commit"].as_u64();
            }
            if let Some(commit) = target {
                let mut all = true;
                for i in 1..=self.n() {
                    let applied = self
                        .http
                        .status(http_addr(i))
                        .await
                        .and_then(|s| s["applied"].as_u64())
                        .unwrap_or(0);
                    all &= applied >= commit;
                }
                if all {
                    return (Some(writable), Some(healed.elapsed().as_millis() as u64));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (Some(writable), None)
    }
}

fn without(all: &[NodeId], out: &[NodeId]) -> Vec<NodeId> {
    all.iter().copied().filter(|n| !out.contains(n)).collect()
}

/// Sleeps `d`; true if `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

fn fmt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "(not within 30 s)".into(), |m| m.to_string())
}
