//! A peerwire-kv node: the raft loop over a redb log, the peerwire raft transport and native
//! service on the node's one peerwire port, and (optionally) the raftexample HTTP API.
//!
//! ```text
//!  HTTP / native client ──▶ KvHandle ──(leader?)──▶ raft loop ──Ready──▶ LogStore (fsync)
//!                              │ no: forward                 │ send ───▶ Transport ──▶ peers
//!                              ▼                             └ apply ──▶ KvState ──▶ answers
//!                   leader's KvProtocol `leader.propose`
//! ```

mod handle;
mod inputs;
mod log_writer;
mod put_trace;
mod raft_loop;
mod shared;
mod snapshot_policy;
mod waiters;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use peerwire::{Client, ClientConfig, Identity, Server};
use peerwire_raft::{Transport, TransportConfig};
use raft::eraftpb::{HardState, Message, Snapshot};
use raft::{Config, RawNode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use handle::{BlobValue, KvHandle, PeerReport};
pub use inputs::Inputs;
pub use put_trace::{EventKind, PutTraceReport, STAGES, SlowPut, StageSummary, TraceEvent};
pub use shared::{Role, View};

use crate::blobs::Blobs;
use crate::cluster::cluster_id;
use crate::command::DEFAULT_INLINE_MAX;
use crate::error::StartError;
use crate::log_store::{Batch, LogStore};
use crate::state::KvState;
use crate::storage::KvStorage;
use raft_loop::RaftLoop;
pub(crate) use shared::Shared;
use snapshot_policy::SnapshotPolicy;

/// The redial pace of the client members forward writes (and fetch blobs) with: the raft
/// lanes' own, 100 ms doubling to 1 s. After a partition heals, a write through a follower must
/// not wait out a backoff grown during the cut: with the client default's 5 s cap it waited up
/// to 5.7 s (nemesis seed 105, a `mixed` fault on 3 nodes).
pub const FORWARD_REDIAL: peerwire::BackoffConfig = peerwire::BackoffConfig {
    initial: Duration::from_millis(100),
    max: Duration::from_secs(1),
    multiplier: 2.0,
    jitter: 0.2,
};

/// Default raft tick: 100 ms, etcd's heartbeat interval.
pub const DEFAULT_TICK: Duration = Duration::from_millis(100);
/// Default election timeout in ticks: 10 (1 s, etcd's default).
pub const DEFAULT_ELECTION_TICKS: usize = 10;
/// Default snapshot interval: every 100,000 applied entries (etcd's `--snapshot-count`;
/// raftexample's 10,000 makes a busy node serialise its whole map every second).
pub const DEFAULT_SNAPSHOT_ENTRIES: u64 = 100_000;
/// Default entries kept before a snapshot for slightly lagging followers (etcd keeps 5,000
/// after a snapshot for catch-up).
pub const DEFAULT_CATCHUP_ENTRIES: u64 = 5_000;
/// Default time a request waits for the cluster (a leader, a commit): 5 s, etcd's default
/// request timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Handler tasks of the node's server: each waits for its write to commit, so they bound the
/// writes in flight through one node (Hadoop's `ipc.server.handler.count`).
pub const DEFAULT_HANDLERS: usize = 1024;

/// Default largest blob: 16 GiB.
pub const DEFAULT_BLOB_MAX: u64 = 16 << 30;

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This node's id (its position in `peers`, from 1).
    pub id: u64,
    /// Every member's peerwire address, this node's included (raftexample's `--cluster`).
    pub peers: Vec<(u64, SocketAddr)>,
    /// Join an existing cluster (added with `POST /{id}`) instead of starting a new one.
    pub join: bool,
    /// Where the raft log and blobs live.
    pub data_dir: PathBuf,
    /// Where to serve the HTTP API (`None`: no HTTP).
    pub http: Option<SocketAddr>,
    /// Derives the cluster id every member checks.
    pub cluster_token: String,
    /// The raft tick.
    pub tick: Duration,
    /// Election timeout in ticks (heartbeats go every tick).
    pub election_ticks: usize,
    /// Snapshot about every this many applied entries (each member at its own points, a third
    /// of the interval apart, see `snapshot_policy`).
    pub snapshot_entries: u64,
    /// Entries kept before each snapshot.
    pub catchup_entries: u64,
    /// The raft log's store (`None`: the one `data_dir` holds, else raft-engine). A directory
    /// holding the other store is refused at start.
    pub log_store: Option<crate::log_store::LogStoreKind>,
    /// How long a request waits for the cluster.
    pub request_timeout: Duration,
    /// The largest inline value.
    pub inline_max: usize,
    /// The largest blob.
    pub blob_max: u64,
    /// TLS for every peerwire connection this node makes or accepts (`None`: plaintext). The
    /// certificate must name this node (`node-<id>.peerwire`).
    pub tls: Option<peerwire::tls::TlsConfig>,
    /// Secret mode for every peerwire connection (`None`: off; not with `tls`): members,
    /// forwarded writes, blob streams and native clients prove they hold the cluster's secret.
    pub secret: Option<peerwire::secret::SecretConfig>,
    /// Who may use which lane, route and method of this node (default: everyone,
    /// everything).
    pub access: peerwire::access::AccessPolicy,
}

impl NodeConfig {
    /// A node `id` of the cluster `peers` with defaults for the rest.
    pub fn new(id: u64, peers: Vec<(u64, SocketAddr)>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            id,
            peers,
            join: false,
            data_dir: data_dir.into(),
            http: None,
            cluster_token: crate::cluster::DEFAULT_CLUSTER_TOKEN.into(),
            tick: DEFAULT_TICK,
            election_ticks: DEFAULT_ELECTION_TICKS,
            snapshot_entries: DEFAULT_SNAPSHOT_ENTRIES,
            catchup_entries: DEFAULT_CATCHUP_ENTRIES,
            log_store: None,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            inline_max: DEFAULT_INLINE_MAX,
            blob_max: DEFAULT_BLOB_MAX,
            tls: None,
            secret: None,
            access: peerwire::access::AccessPolicy::default(),
        }
    }

    fn listen(&self) -> Result<SocketAddr, StartError> {
        self.peers
            .iter()
            .find(|(id, _)| *id == self.id)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                StartError::Config(format!(
                    "node {} is not in the cluster list ({} members)",
                    self.id,
                    self.peers.len()
                ))
            })
    }
}

/// A running node.
pub struct Node {
    handle: KvHandle,
    transport: Transport<Message, Inputs>,
    server: Server,
    blobs: Blobs,
    http: Option<crate::http::HttpServer>,
    stop: CancellationToken,
    raft_loop: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.handle.id())
            .field("addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

/// Bounded queue from the transport to the raft loop; a full queue drops (raft resends).
const PEER_QUEUE: usize = 8192;
/// Bounded queue of API requests to the raft loop; a full queue makes callers wait.
const REQUEST_QUEUE: usize = 8192;

impl Node {
    /// Opens the data directory, recovers (or bootstraps) the raft state, binds the peerwire
    /// port (and the HTTP port) and starts the raft loop.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave the data directory's lock held until the
    /// process exits.
    pub async fn start(cfg: NodeConfig) -> Result<Self, StartError> {
        Self::start_with(cfg, None).await
    }

    /// As [`Node::start`], serving peerwire on `listener` (already bound to this node's
    /// address in the cluster list) instead of binding it.
    ///
    /// # Cancel safety
    ///
    /// As [`Node::start`].
    pub async fn start_on(
        cfg: NodeConfig,
        listener: tokio::net::TcpListener,
    ) -> Result<Self, StartError> {
        Self::start_with(cfg, Some(listener)).await
    }

    async fn start_with(
        cfg: NodeConfig,
        listener: Option<tokio::net::TcpListener>,
    ) -> Result<Self, StartError> {
        if cfg.id == 0 {
            return Err(StartError::Config("node ids start at 1".into()));
        }
        let listen = cfg.listen()?;
        // `/metrics` serves the process's recorder; install it before anything is recorded.
        crate::metrics::install();
        let store = Arc::new(
            LogStore::open_kind(&cfg.data_dir, cfg.log_store)
                .map_err(|e| StartError::Storage(e.to_string()))?,
        );
        let mut recovered = store
            .recover()
            .map_err(|e| StartError::Storage(e.to_string()))?;
        if recovered.is_empty() && !cfg.join {
            // A new cluster: every founding member writes the same snapshot at index 1 holding
            // the initial configuration (raft-rs's way to bootstrap; a member that joins later
            // gets a snapshot, since no log starts before index 2).
            let snap = bootstrap_snapshot(&cfg);
            let hs = HardState {
                term: 1,
                commit: 1,
                ..HardState::default()
            };
            store
                .persist(&Batch {
                    snapshot: Some(&snap),
                    entries: &[],
                    hard_state: Some(&hs),
                })
                .map_err(|e| StartError::Storage(e.to_string()))?;
            recovered = store
                .recover()
                .map_err(|e| StartError::Storage(e.to_string()))?;
        }

        let start_commit = recovered.hard_state.commit;
        let storage = KvStorage::default();
        let mut state = KvState::default();
        let mut applied = 0;
        if let Some(snap) = recovered.snapshot.take() {
            applied = snap.get_metadata().index;
            state = KvState::decode(&snap.data).map_err(|e| {
                StartError::Storage(format!("the stored snapshot does not decode: {e}"))
            })?;
            state.applied = applied;
            storage.core.wl().apply_snapshot(snap.clone())?;
            storage.set_snapshot(snap);
        } else {
            // A joining node knows the others from the command line until a snapshot arrives.
            state.members = cfg.peers.iter().copied().collect();
        }
        {
            let mut core = storage.core.wl();
            core.append(&recovered.entries)?;
            let mut hs = recovered.hard_state.clone();
            hs.commit = hs.commit.max(applied);
            core.set_hardstate(hs);
        }
        if let Some(addr) = state.members.get(&cfg.id)
            && *addr != listen
        {
            tracing::warn!(node = cfg.id, stored = %addr, given = %listen, "this node's address differs from the stored one");
        }

        let identity = Identity {
            cluster_id: cluster_id(&cfg.cluster_token),
            node_id: cfg.id,
            epoch: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_millis() as u64),
        };
        let mut tcfg = TransportConfig {
            identity,
            ..TransportConfig::default()
        };
        tcfg.connection.tls = cfg.tls.clone();
        tcfg.connection.secret = cfg.secret.clone();
        tcfg.connection.access = cfg.access.clone();
        tcfg.connection.heartbeat_interval = cfg.tick.max(Duration::from_millis(50));
        tcfg.connection.read_timeout =
            (cfg.tick * cfg.election_ticks as u32).max(Duration::from_millis(500));
        let mut server_cfg = tcfg.server_config();
        server_cfg.handlers = DEFAULT_HANDLERS;
        server_cfg.call_queue_capacity = Some(DEFAULT_HANDLERS * 8);

        let shared = Arc::new(Shared::new(cfg.id, state));
        let (peer_tx, peer_rx) = mpsc::channel(PEER_QUEUE);
        let (req_tx, req_rx) = mpsc::channel(REQUEST_QUEUE);
        let transport = Transport::start(
            tcfg,
            Inputs {
                tx: peer_tx,
                shared: shared.clone(),
            },
        )?;
        for (&id, &addr) in &shared.state().members {
            if id != cfg.id {
                transport.add_peer(id, vec![addr])?;
            }
        }

        let mut client_cfg = ClientConfig {
            identity: Identity {
                node_id: cfg.id,
                ..identity
            },
            backoff: FORWARD_REDIAL,
            ..ClientConfig::default()
        };
        client_cfg.connection.tls = cfg.tls.clone();
        client_cfg.connection.secret = cfg.secret.clone();
        let client = Client::new(client_cfg.clone());
        let blobs = Blobs::new(
            &cfg.data_dir,
            identity,
            client_cfg,
            shared.clone(),
            start_commit,
            (cfg.tls.clone(), cfg.secret.clone()),
        )?;
        let peer_status = {
            let t = transport.clone();
            Arc::new(move |id: u64| peer_report(&t, id))
        };
        let handle = KvHandle {
            shared: shared.clone(),
            requests: req_tx,
            forwarder: crate::service::Forwarder::new(client),
            request_timeout: cfg.request_timeout,
            inline_max: cfg.inline_max,
            blob_max: cfg.blob_max,
            blobs: blobs.clone(),
            peer_status,
        };
        let builder = Server::builder(server_cfg)
            .mount_all(&transport)
            .mount_all(blobs.server())
            .mount_all(blobs.pull_server())
            .protocol(crate::service::protocol(handle.clone()));
        let server = match listener {
            Some(l) => builder.serve(peerwire::transport::TcpListener::from_tokio(l))?,
            None => builder.bind(listen).await?,
        };
        blobs.start(server.local_addr());

        let raft_cfg = Config {
            id: cfg.id,
            election_tick: cfg.election_ticks,
            heartbeat_tick: 1,
            applied,
            check_quorum: true,
            pre_vote: true,
            max_inflight_msgs: 256,
            max_size_per_msg: 1 << 20,
            max_committed_size_per_ready: 16 << 20,
            ..Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_cfg, storage.clone(), &logger)?;
        let stop = CancellationToken::new();
        let raft_loop = RaftLoop {
            node,
            storage,
            store,
            transport: transport.clone(),
            blobs: blobs.clone(),
            shared,
            tick: cfg.tick,
            snapshots: SnapshotPolicy::for_node(cfg.id, cfg.snapshot_entries, cfg.catchup_entries),
            proposals: Default::default(),
            reads: Default::default(),
            next_seq: fastrand::u64(..u64::MAX / 2),
            last_leader: 0,
            ticks: 0,
            snapshot_task: None,
            unpersisted: 0,
            trace: put_trace::PutTrace::default(),
        };
        let raft_loop = tokio::spawn(raft_loop.run(peer_rx, req_rx, stop.clone()));
        let http = match cfg.http {
            Some(addr) => Some(crate::http::HttpServer::start(handle.clone(), addr).await?),
            None => None,
        };
        tracing::info!(node = cfg.id, peerwire = %server.local_addr(), http = ?http.as_ref().map(|h| h.local_addr()), "node started");
        Ok(Self {
            handle,
            transport,
            server,
            blobs,
            http,
            stop,
            raft_loop,
        })
    }

    /// The store's API on this node.
    pub fn handle(&self) -> &KvHandle {
        &self.handle
    }

    /// The node's peerwire address (raft, native clients).
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The HTTP API's address, if served.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.local_addr())
    }

    /// The node's raft transport (peer health, and test hooks with feature `testing`).
    pub fn transport(&self) -> &Transport<Message, Inputs> {
        &self.transport
    }

    /// Stops the node: HTTP, the raft loop (failing waiting requests with `Stopping`), the
    /// transport and the server. The data directory keeps everything acknowledged.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave parts running.
    pub async fn stop(self) {
        let id = self.handle.id();
        if let Some(http) = self.http {
            http.stop().await;
        }
        tracing::debug!(node = id, "stopping: HTTP stopped");
        self.stop.cancel();
        let _ = self.raft_loop.await;
        tracing::debug!(node = id, "stopping: raft loop stopped");
        self.blobs.stop().await;
        self.transport.stop().await;
        tracing::debug!(node = id, "stopping: transport stopped");
        self.server.shutdown().await;
        tracing::info!(node = id, "node stopped");
    }
}

fn peer_report(t: &Transport<Message, Inputs>, id: u64) -> PeerReport {
    let status = t.peer_status(id);
    let health = t.peer_health(id);
    PeerReport {
        active: t.active_since(id).is_some(),
        active_for: t.active_since(id).map(|s| s.elapsed()),
        rtt: health.and_then(|h| h.rtt_smoothed),
        last_error: status.and_then(|s| s.last_error().map(str::to_owned)),
    }
}

/// The snapshot at index 1 that founds a cluster: its members as voters, their addresses in the
/// state.
fn bootstrap_snapshot(cfg: &NodeConfig) -> Snapshot {
    let mut state = KvState::default();
    state.members = cfg.peers.iter().copied().collect();
    state.applied = 1;
    let mut snap = Snapshot {
        data: state.encode().into(),
        ..Snapshot::default()
    };
    let meta = snap.mut_metadata();
    meta.index = 1;
    meta.term = 1;
    meta.mut_conf_state().voters = cfg.peers.iter().map(|(id, _)| *id).collect();
    snap
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nemesis seed 105's regression: a follower's redials to the leader are paced no slower
    /// than the raft lanes', so a healed partition is not followed by seconds of refused
    /// forwards.
    #[test]
    fn forwards_redial_no_slower_than_the_raft_lanes() {
        let raft = TransportConfig::default().redial;
        assert!(
            FORWARD_REDIAL.max <= raft.max,
            "{FORWARD_REDIAL:?} vs {raft:?}"
        );
        assert!(FORWARD_REDIAL.max < ClientConfig::default().backoff.max);
        assert!(FORWARD_REDIAL.initial <= raft.initial);
    }
}
