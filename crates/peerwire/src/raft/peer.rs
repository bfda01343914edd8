//! One remote member (etcd's `peer`): its addresses, status and health, and the lanes that
//! carry messages to it. [`RaftPeer::send`] never blocks: a message goes to the lane
//! [`pick`] names, or is dropped and reported when that lane's queue is full.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

use peerwire_wire::Lane;
use tokio_util::sync::CancellationToken;

use super::addr_pick::AddrPicker;
use super::handler::SnapshotStatus;
use super::link::Link;
use super::message::{MessageKind, RaftMessage};
use super::pick::{LaneChoice, LanesUp, pick};
use super::pipeline::Pipeline;
use super::probe::PeerHealth;
use super::snapshot::{Snapshot, SnapshotError, SnapshotProgress};
use super::status::PeerStatus;
use super::stream::StreamLane;
use super::{prober, snapshot_send};

/// What a peer's tasks share.
#[derive(Debug)]
pub(crate) struct PeerShared {
    pub(crate) id: u64,
    pub(crate) addrs: Mutex<AddrPicker>,
    status: Mutex<PeerStatus>,
    pub(crate) health: Mutex<PeerHealth>,
    /// Long-lived lanes connected now.
    streams_up: AtomicUsize,
    /// Fires when the peer is removed or the transport stops.
    pub(crate) stop: CancellationToken,
}

impl PeerShared {
    /// The address to dial now.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs.lock().expect("addrs poisoned").pick()
    }

    /// Dialing or using `addr` failed: rotate to the next address.
    pub(crate) fn unreachable(&self, addr: SocketAddr) {
        self.addrs.lock().expect("addrs poisoned").unreachable(addr);
    }

    /// A lane works.
    pub(crate) fn activate(&self, lane: Lane) {
        if self
            .status
            .lock()
            .expect("status poisoned")
            .activate(Instant::now())
        {
            tracing::info!(peer = self.id, %lane, "peer became active");
            metrics::gauge!("peerwire_raft_peer_active", "peer" => self.id.to_string()).set(1.0);
        }
    }

    /// A long-lived lane connected: the peer is active at least until it disconnects.
    pub(crate) fn stream_up(&self, lane: Lane) {
        self.streams_up.fetch_add(1, Ordering::AcqRel);
        self.activate(lane);
    }

    /// A long-lived lane's connection ended (call [`PeerShared::deactivate`] after, with why).
    pub(crate) fn stream_down(&self) {
        self.streams_up.fetch_sub(1, Ordering::AcqRel);
    }

    /// A lane failed. While a long-lived lane is still connected the peer stays active: the
    /// failure of a pipeline call, a snapshot or the other stream does not make it
    /// unreachable, and nothing would mark it active again while that lane stays up.
    pub(crate) fn deactivate(&self, lane: Lane, error: impl std::fmt::Display) {
        if self.streams_up.load(Ordering::Acquire) > 0 {
            tracing::debug!(peer = self.id, %lane, %error, "a lane failed; a stream lane is still up");
            return;
        }
        self.set_inactive(lane, error);
    }

    /// A lane's connect or call failed with `error`: as [`PeerShared::deactivate`], unless the
    /// peer refused this node as a removed member (which `link` then records): every lane will
    /// be refused, so the peer is inactive even while another lane is still connected. Returns
    /// whether it was that refusal.
    pub(crate) fn lane_failed(&self, link: &Link, lane: Lane, error: &crate::Error) -> bool {
        // The status first: whoever learns of the removal from `link` sees the peer inactive.
        if super::link::is_member_removed(error) {
            self.set_inactive(lane, error);
        } else {
            self.deactivate(lane, error);
        }
        link.check_removed(self.id, error)
    }

    fn set_inactive(&self, lane: Lane, error: impl std::fmt::Display) {
        let error = format!("{lane} lane: {error}");
        if self
            .status
            .lock()
            .expect("status poisoned")
            .deactivate(Instant::now(), error.clone())
        {
            tracing::warn!(peer = self.id, %error, "peer became inactive");
            metrics::gauge!("peerwire_raft_peer_active", "peer" => self.id.to_string()).set(0.0);
        }
    }

    pub(crate) fn status(&self) -> PeerStatus {
        self.status.lock().expect("status poisoned").clone()
    }
}

/// A remote member and its lanes. A *remote* (etcd's `remote`, for a member not yet in the
/// cluster's peer list) has only the pipeline.
#[derive(Debug)]
pub(crate) struct RaftPeer<M> {
    pub(crate) state: Arc<PeerShared>,
    streams: Option<(StreamLane<M>, StreamLane<M>)>,
    pipeline: Pipeline<M>,
    snapshot_busy: Arc<AtomicBool>,
}

impl<M: RaftMessage> RaftPeer<M> {
    /// Starts the lanes to member `id` (all of them, or only the pipeline for a remote).
    pub(crate) fn start(link: &Arc<Link>, id: u64, addrs: AddrPicker, remote: bool) -> Self {
        let state = Arc::new(PeerShared {
            id,
            addrs: Mutex::new(addrs),
            status: Mutex::new(PeerStatus::new()),
            health: Mutex::new(PeerHealth::default()),
            streams_up: AtomicUsize::new(0),
            stop: link.stop.child_token(),
        });
        let streams = (!remote).then(|| {
            (
                StreamLane::start(Lane::RaftAppend, link, &state),
                StreamLane::start(Lane::RaftMessage, link, &state),
            )
        });
        if !remote && let Some(every) = link.cfg.probe_interval {
            link.spawn(prober::run(link.clone(), state.clone(), every));
        }
        Self {
            pipeline: Pipeline::start(link, &state),
            state,
            streams,
            snapshot_busy: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops the peer's lanes.
    pub(crate) fn stop(&self) {
        self.state.stop.cancel();
    }

    /// Sends `msg` on its lane, or drops and reports it. Never blocks.
    pub(crate) fn send(&self, link: &Arc<Link>, msg: M) {
        let kind = msg.kind();
        let group = msg.group();
        if kind == MessageKind::Snapshot {
            self.send_snapshot(link, Snapshot::from_message(msg));
            return;
        }
        let up = self.lanes_up();
        let (lane, result) = match (pick(kind, up), &self.streams) {
            (LaneChoice::Append, Some((append, _))) => ("append", append.try_send(msg)),
            (LaneChoice::Message, Some((_, message))) => ("message", message.try_send(msg)),
            _ => ("pipeline", self.pipeline.try_send(msg)),
        };
        if result.is_err() {
            metrics::counter!("peerwire_raft_messages_dropped_total", "lane" => lane, "reason" => "queue_full")
                .increment(1);
            tracing::debug!(
                peer = self.state.id,
                lane,
                ?kind,
                "lane queue full: message dropped"
            );
            link.report.unreachable(group, self.state.id);
        }
    }

    /// Which long-lived lanes are connected.
    pub(crate) fn lanes_up(&self) -> LanesUp {
        match &self.streams {
            Some((append, message)) => LanesUp {
                append: append.is_up(),
                message: message.is_up(),
            },
            None => LanesUp::default(),
        }
    }

    /// Starts streaming `snapshot` to this peer; one at a time per peer.
    pub(crate) fn send_snapshot(
        &self,
        link: &Arc<Link>,
        snapshot: Snapshot<M>,
    ) -> SnapshotProgress {
        let progress = SnapshotProgress::new(self.state.id, snapshot.size());
        let group = snapshot.group();
        if self.snapshot_busy.swap(true, Ordering::AcqRel) {
            metrics::counter!("peerwire_raft_snapshots_total", "outcome" => "busy").increment(1);
            link.report
                .snapshot(group, self.state.id, SnapshotStatus::Failure);
            progress.finish(Err(SnapshotError::Busy(self.state.id)));
            return progress;
        }
        let (link, state, busy, p) = (
            link.clone(),
            self.state.clone(),
            self.snapshot_busy.clone(),
            progress.clone(),
        );
        link.clone().spawn_bulk(async move {
            let result = tokio::select! {
                r = snapshot_send::send(&link, &state, snapshot, &p) => r,
                _ = state.stop.cancelled() => Err(SnapshotError::Interrupted("peer removed or transport stopped".into())),
            };
            let (status, outcome) = match &result {
                Ok(()) => (SnapshotStatus::Finish, "finish"),
                Err(_) => (SnapshotStatus::Failure, "failure"),
            };
            metrics::counter!("peerwire_raft_snapshots_total", "outcome" => outcome).increment(1);
            if let Err(e) = &result {
                tracing::warn!(peer = state.id, error = %e, "snapshot failed");
            }
            busy.store(false, Ordering::Release);
            link.report.snapshot(group, state.id, status);
            p.finish(result);
        });
        progress
    }

    /// The peer's status.
    pub(crate) fn status(&self) -> PeerStatus {
        self.state.status()
    }

    /// When the peer became active, if it is.
    pub(crate) fn active_since(&self) -> Option<Instant> {
        self.state.status().active_since()
    }
}
