//! `kill -9` of the leader *process* of a 3-node peerwire-kv cluster under write load, then a
//! restart from its data directory, checked by a history checker: no acknowledged write lost,
//! none applied again after a newer one, no stale or invented read, every node alike at the end
//! (`peerwire_testkit::history`).
//!
//! The nodes are the real `peerwire-kv node` binary, each a child process with its own data
//! directory; the test drives them with the native client over loopback.

#![cfg(unix)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use peerwire_kv::KvClient;
use peerwire_kv::cluster::DEFAULT_CLUSTER_TOKEN;
use peerwire_kv::service::Status;
use peerwire_kv::state::Value;
use peerwire_testkit::bounded;
use peerwire_testkit::history::{self, Final, History, Outcome, Read, Write};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// Keys, one writer each.
const WRITERS: usize = 4;
/// Tasks reading random keys linearizably all along.
const READERS: usize = 2;
/// Acknowledged writes wanted before the kill, after it, and after the restart.
const PHASE_WRITES: usize = 40;
/// How often a wait on another process polls it (there is nothing to subscribe to).
const POLL: Duration = Duration::from_millis(20);

/// The nodes as child processes.
struct Processes {
    peers: Vec<(u64, SocketAddr)>,
    dir: tempfile::TempDir,
    children: Vec<Option<Child>>,
}

impl Processes {
    /// Picks three free loopback ports and starts a node on each.
    ///
    /// The ports are found by binding port 0 and letting go: the nodes are other processes and
    /// take their address on the command line. Another process could take a port in between;
    /// the kernel hands ephemeral ports out in turn, so that is unlikely on a test machine.
    fn start() -> Self {
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let peers = listeners
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap()))
            .collect();
        drop(listeners);
        let mut p = Self {
            peers,
            dir: tempfile::tempdir().unwrap(),
            children: vec![None, None, None],
        };
        for id in 1..=3 {
            p.spawn(id);
        }
        p
    }

    fn cluster_arg(&self) -> String {
        self.peers
            .iter()
            .map(|(_, a)| format!("http://{a}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn log_path(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("node-{id}.log"))
    }

    /// Starts (or restarts) node `id` on its address and data directory; its log is appended
    /// to `node-{id}.log`.
    fn spawn(&mut self, id: u64) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(id))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_peerwire-kv"))
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--cluster", &self.cluster_arg()])
            .args(["--port", "0"])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("data-{id}")))
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.children[id as usize - 1] = Some(child);
    }

    /// Sends SIGKILL to node `id` and reaps it.
    async fn kill9(&mut self, id: u64) {
        let mut child = self.children[id as usize - 1].take().expect("running");
        // tokio's `kill` is SIGKILL on unix: no handler runs, nothing is flushed.
        bounded("the killed node to exit", child.kill())
            .await
            .unwrap();
    }

    fn addr(&self, id: u64) -> SocketAddr {
        self.peers[id as usize - 1].1
    }

    fn endpoints(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(|(_, a)| *a).collect()
    }

    /// Node `id`'s status, if it answers.
    async fn status(&self, client: &KvClient, id: u64) -> Option<Status> {
        client.status_of(self.addr(id)).await.ok()
    }

    /// Polls the running nodes until they all name the same running leader.
    async fn leader(&self, client: &KvClient) -> u64 {
        bounded("the running nodes to agree on a leader", async {
            loop {
                let mut leaders = Vec::new();
                for id in self.running() {
                    leaders.push(self.status(client, id).await.map_or(0, |s| s.leader));
                }
                let first = leaders[0];
                if first != 0
                    && leaders.iter().all(|l| *l == first)
                    && self.running().contains(&first)
                {
                    return first;
                }
                tokio::time::sleep(POLL).await;
            }
        })
        .await
    }

    fn running(&self) -> Vec<u64> {
        (1..=3)
            .filter(|id| self.children[*id as usize - 1].is_some())
            .collect()
    }

    /// Kills every node still running.
    async fn stop(&mut self) {
        for mut child in self.children.iter_mut().filter_map(Option::take) {
            let _ = bounded("a node to exit", child.kill()).await;
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for id in 1..=3 {
                let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- node {id}, last lines of its log ---");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        // `kill_on_drop` ends the children that are left.
    }
}

/// The values this test writes are decimal sequence numbers.
fn parse(value: &Value) -> u64 {
    match value {
        Value::Inline(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("a value this test never writes: {v:?}")),
        Value::Blob(b) => panic!("a blob this test never wrote: {b:?}"),
    }
}

/// The shared record of the run.
struct Recorder {
    history: Mutex<History>,
    acknowledged: watch::Sender<usize>,
    stop: AtomicBool,
}

async fn writer(client: Arc<KvClient>, rec: Arc<Recorder>, key: String) {
    let mut value = 0;
    while !rec.stop.load(Ordering::Relaxed) {
        value += 1;
        let invoked = Instant::now();
        let result = client.put(&key, value.to_string().as_bytes()).await;
        let outcome = match result {
            Ok(()) => Outcome::Acknowledged(Instant::now()),
            Err(e) => {
                tracing::debug!(%key, value, error = %e, "a write with an unknown outcome");
                Outcome::Unknown
            }
        };
        rec.history.lock().unwrap().writes.push(Write {
            key: key.clone(),
            value,
            invoked,
            outcome,
        });
        if matches!(outcome, Outcome::Acknowledged(_)) {
            rec.acknowledged.send_modify(|n| *n += 1);
        } else {
            // A failed write came back at once (no node reachable, no leader yet): wait a
            // little before the next, or the history fills with failures during an election.
            tokio::time::sleep(POLL).await;
        }
    }
}

async fn reader(client: Arc<KvClient>, rec: Arc<Recorder>, keys: Vec<String>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    while !rec.stop.load(Ordering::Relaxed) {
        let key = &keys[rng.usize(..keys.len())];
        let invoked = Instant::now();
        let value = match client.get(key, false).await {
            Ok(v) => Some(parse(&v)),
            Err(peerwire_kv::client::ClientError::Kv(peerwire_kv::KvError::NotFound)) => None,
            Err(_) => {
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        rec.history.lock().unwrap().reads.push(Read {
            key: key.clone(),
            value,
            invoked,
            completed: Instant::now(),
        });
    }
}

/// Waits until at least `n` writes have been acknowledged.
async fn acknowledged(rec: &Recorder, n: usize, what: &str) -> usize {
    let mut rx = rec.acknowledged.subscribe();
    bounded(what, rx.wait_for(|a| *a >= n)).await.unwrap();
    *rx.borrow()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill9_leader_loses_no_acknowledged_write() {
    peerwire_testkit::logs_from_env();
    let mut nodes = Processes::start();
    let client = Arc::new(KvClient::new(nodes.endpoints(), DEFAULT_CLUSTER_TOKEN));
    let first_leader = nodes.leader(&client).await;
    client.find_leader().await.unwrap();

    let keys: Vec<String> = (0..WRITERS).map(|i| format!("key-{i}")).collect();
    let rec = Arc::new(Recorder {
        history: Mutex::new(History::default()),
        acknowledged: watch::Sender::new(0),
        stop: AtomicBool::new(false),
    });
    let mut tasks = Vec::new();
    for key in &keys {
        tasks.push(tokio::spawn(writer(
            client.clone(),
            rec.clone(),
            key.clone(),
        )));
    }
    for seed in 0..READERS as u64 {
        tasks.push(tokio::spawn(reader(
            client.clone(),
            rec.clone(),
            keys.clone(),
            seed,
        )));
    }

    let before_kill = acknowledged(&rec, PHASE_WRITES, "writes before the kill").await;
    nodes.kill9(first_leader).await;
    let killed_at = Instant::now();

    let second_leader = nodes.leader(&client).await;
    assert_ne!(second_leader, first_leader);
    let elected_after = killed_at.elapsed();
    let before_restart = acknowledged(
        &rec,
        before_kill + PHASE_WRITES,
        "writes with two of three nodes",
    )
    .await;
    let resumed_after = killed_at.elapsed();
    nodes.spawn(first_leader);
    acknowledged(
        &rec,
        before_restart + PHASE_WRITES,
        "writes after the restart",
    )
    .await;

    rec.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        bounded("the workload to stop", t).await.unwrap();
    }

    // Every node, the restarted one too, must reach the leader's commit index before its
    // local copy is read.
    let leader = nodes.leader(&client).await;
    let commit = nodes.status(&client, leader).await.unwrap().commit;
    let mut history = std::mem::take(&mut *rec.history.lock().unwrap());
    for id in 1..=3 {
        bounded("every node to apply the whole log", async {
            while nodes
                .status(&client, id)
                .await
                .is_none_or(|s| s.applied < commit)
            {
                tokio::time::sleep(POLL).await;
            }
        })
        .await;
        let local = KvClient::new(vec![nodes.addr(id)], DEFAULT_CLUSTER_TOKEN);
        for key in &keys {
            let value = match bounded("a local read", local.get(key, true)).await {
                Ok(v) => Some(parse(&v)),
                Err(peerwire_kv::client::ClientError::Kv(peerwire_kv::KvError::NotFound)) => None,
                Err(e) => panic!("reading {key} on node {id}: {e}"),
            };
            history.finals.push(Final {
                node: id,
                key: key.clone(),
                value,
            });
        }
    }
    nodes.stop().await;

    let acked_after_kill = history
        .writes
        .iter()
        .filter(|w| matches!(w.outcome, Outcome::Acknowledged(t) if t > killed_at))
        .count();
    match history::check(&history) {
        Ok(summary) => {
            eprintln!(
                "history: {summary:?}; node {first_leader} killed; node {second_leader} led after {elected_after:?}; {PHASE_WRITES} more writes acknowledged after {resumed_after:?}; {acked_after_kill} acknowledged after the kill in all"
            );
            assert!(summary.acknowledged >= 3 * PHASE_WRITES);
            assert!(acked_after_kill >= 2 * PHASE_WRITES);
            assert!(summary.reads > 0);
        }
        Err(violations) => panic!(
            "the history breaks linearizability ({} violations): {violations:#?}",
            violations.len()
        ),
    }
}
