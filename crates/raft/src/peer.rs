//! One remote member (etcd's `peer`): its addresses, status and health, and the lanes that
//! carry messages to it. [`RaftPeer::send`] never blocks: a message goes to the lane
//! [`pick`] names, or is dropped and reported when that lane's queue is full.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::time::Instant;

use peerwire_wire::Lane;

use super::addr_pick::AddrPicker;
use super::handler::SnapshotStatus;
use super::link::Link;
use super::message::{MessageKind, RaftMessage};
use super::peer_state::PeerShared;
use super::pick::{LaneChoice, LanesUp, pick};
use super::pipeline::Pipeline;
use super::snapshot::{Snapshot, SnapshotError, SnapshotProgress};
use super::status::PeerStatus;
use super::stream::StreamLane;
use super::{prober, snapshot_send};

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
        let state = Arc::new(PeerShared::new(id, addrs, link.stop.child_token()));
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
        let (lane, result, queued) = match (pick(kind, up), &self.streams) {
            (LaneChoice::Append, Some((append, _))) => {
                (Lane::RaftAppend, append.try_send(msg), append.queued())
            }
            (LaneChoice::Message, Some((_, message))) => {
                (Lane::RaftMessage, message.try_send(msg), message.queued())
            }
            _ => (
                Lane::RaftPipeline,
                self.pipeline.try_send(msg),
                self.pipeline.queued(),
            ),
        };
        // The lane sets it again as it takes messages off the queue.
        self.state.sent.lane(lane).queue_depth.set(queued as f64);
        if result.is_err() {
            self.state.sent.dropped(lane, "queue_full", 1);
            tracing::debug!(
                peer = self.state.id,
                %lane,
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
            let started = std::time::Instant::now();
            let result = tokio::select! {
                r = snapshot_send::send(&link, &state, snapshot, &p) => r,
                _ = state.stop.cancelled() => Err(SnapshotError::Interrupted("peer removed or transport stopped".into())),
            };
            let (status, outcome) = match &result {
                Ok(()) => (SnapshotStatus::Finish, "finish"),
                Err(_) => (SnapshotStatus::Failure, "failure"),
            };
            let counters = state.sent.lane(Lane::RaftSnapshot);
            match &result {
                Ok(()) => counters.messages.increment(1),
                Err(_) => counters.failures.increment(1),
            }
            metrics::counter!("peerwire_raft_snapshots_total", "outcome" => outcome).increment(1);
            metrics::histogram!("peerwire_raft_snapshot_send_duration_seconds", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
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
