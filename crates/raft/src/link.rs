//! What every lane of every peer shares: the settings, one client per lane kind, the fault
//! table, the way back to raft for reports, and the transport's stop signal and tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use peerwire_wire::Lane;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::bulk::BulkThread;
use super::config::TransportConfig;
use super::faults::FaultTable;
use super::handler::SnapshotStatus;
use peerwire::client::{Client, RetryPolicy};
use peerwire::config::{BackoffConfig, ClientConfig};
use peerwire::error::{ConnectError, Error, HandshakeError, NotExecuted};
use peerwire::mount::ServeNothing;

/// Route of a batch of messages (one-way) on the append and message lanes.
pub(crate) const BATCH_ROUTE: &str = "raft.batch";
/// Route of one message (a call) on the pipeline lane.
pub(crate) const PIPE_ROUTE: &str = "raft.pipe";
/// Route of a probe (a call) on the pipeline lane.
pub(crate) const PROBE_ROUTE: &str = "raft.probe";
/// Routes of the snapshot lane: begin (size and message), chunk (data), end (outcome).
pub(crate) const SNAP_BEGIN_ROUTE: &str = "raft.snap.begin";
pub(crate) const SNAP_CHUNK_ROUTE: &str = "raft.snap.chunk";
pub(crate) const SNAP_END_ROUTE: &str = "raft.snap.end";

/// The reports lanes make to raft (the non-generic part of `RaftHandler`), each to the
/// group its message belonged to.
pub(crate) trait Report: Send + Sync + 'static {
    fn unreachable(&self, group: u64, id: u64);
    fn snapshot(&self, group: u64, id: u64, status: SnapshotStatus);
    /// To every group: a peer refused this member as removed.
    fn removed(&self, by: u64);
}

/// The shared part of the transport's sending side.
pub(crate) struct Link {
    pub(crate) cfg: TransportConfig,
    append: Client,
    message: Client,
    pipeline: Client,
    snapshot: Client,
    pub(crate) faults: FaultTable,
    pub(crate) report: Arc<dyn Report>,
    removed: AtomicBool,
    pub(crate) stop: CancellationToken,
    pub(crate) tasks: TaskTracker,
    /// The runtime the transport was started on: its tasks run there whoever calls.
    runtime: tokio::runtime::Handle,
    /// Where the snapshot lane runs, if not on `runtime` ([`TransportConfig::bulk_thread`]).
    bulk: Option<BulkThread>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node", &self.cfg.identity.node_id)
            .finish_non_exhaustive()
    }
}

impl Link {
    pub(crate) fn new(cfg: TransportConfig, report: Arc<dyn Report>) -> Result<Self, Error> {
        cfg.validate()?;
        let client = |lane: Lane, connections: usize| {
            Client::for_service(
                ClientConfig {
                    identity: cfg.identity,
                    connection: cfg.connection.clone(),
                    connections_per_peer: connections,
                    connect_timeout: cfg.request_timeout,
                    default_deadline: cfg.request_timeout,
                    // Lanes pace their own redials (`TransportConfig::redial`).
                    backoff: BackoffConfig {
                        initial: Duration::ZERO,
                        max: Duration::ZERO,
                        multiplier: 1.0,
                        jitter: 0.0,
                    },
                    retry: RetryPolicy::never(),
                },
                peerwire::mount::MountPoint::lane(lane),
                Arc::new(ServeNothing),
            )
        };
        Ok(Self {
            append: client(Lane::RaftAppend, 1)?,
            message: client(Lane::RaftMessage, 1)?,
            pipeline: client(Lane::RaftPipeline, cfg.pipeline_workers)?,
            snapshot: client(Lane::RaftSnapshot, 1)?,
            faults: FaultTable::default(),
            report,
            removed: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            runtime: tokio::runtime::Handle::try_current().map_err(|_| {
                Error::Config("the raft transport must be started within a tokio runtime".into())
            })?,
            bulk: if cfg.bulk_thread {
                let name = format!("peerwire-bulk-{}", cfg.identity.node_id);
                Some(BulkThread::start(name).map_err(|e| {
                    Error::Config(format!(
                        "cannot start the raft transport's bulk thread: {e}"
                    ))
                })?)
            } else {
                None
            },
            cfg,
        })
    }

    /// Spawns one of the transport's tasks on its runtime.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn_on(task, &self.runtime);
    }

    /// The runtime of the snapshot lane.
    pub(crate) fn bulk_runtime(&self) -> &tokio::runtime::Handle {
        self.bulk.as_ref().map_or(&self.runtime, BulkThread::handle)
    }

    /// Spawns a task of the snapshot lane on its runtime.
    pub(crate) fn spawn_bulk<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn_on(task, self.bulk_runtime());
    }

    /// The client whose connections carry `lane`.
    pub(crate) fn client(&self, lane: Lane) -> &Client {
        match lane {
            Lane::RaftAppend => &self.append,
            Lane::RaftMessage => &self.message,
            Lane::RaftSnapshot => &self.snapshot,
            _ => &self.pipeline,
        }
    }

    /// The node id of this member.
    pub(crate) fn node_id(&self) -> u64 {
        self.cfg.identity.node_id
    }

    /// Whether a peer refused this member as removed from the cluster.
    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Acquire)
    }

    /// Checks an error for a removed-member refusal; on the first one, tells raft. Returns
    /// whether the error was one.
    pub(crate) fn check_removed(&self, by: u64, error: &Error) -> bool {
        if !is_member_removed(error) {
            return false;
        }
        if !self.removed.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                node = self.node_id(),
                by,
                "this member was removed from the cluster"
            );
            self.report.removed(by);
        }
        true
    }

    /// Closes every lane connection at once.
    pub(crate) async fn shutdown_clients(&self) {
        for c in [&self.append, &self.message, &self.pipeline, &self.snapshot] {
            c.shutdown().await;
        }
    }
}

/// Whether `error` is a peer refusing us as a removed member.
pub(crate) fn is_member_removed(error: &Error) -> bool {
    matches!(
        error,
        Error::NotExecuted {
            reason: NotExecuted::Connect(ConnectError::Handshake(HandshakeError::MemberRemoved(_))),
            ..
        }
    )
}

/// A lane's name as a metrics label.
pub(crate) fn lane_label(lane: Lane) -> &'static str {
    match lane {
        Lane::RaftAppend => "append",
        Lane::RaftMessage => "message",
        Lane::RaftPipeline => "pipeline",
        Lane::RaftSnapshot => "snapshot",
        _ => "other",
    }
}
