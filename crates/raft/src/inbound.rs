//! The receiving side of every raft lane (etcd's `streamReader`, `pipelineHandler`,
//! `snapshotHandler` and probing handler), as the server's policy for raft-lane connections.
//!
//! - Append and message lanes: each one-way batch is split, decoded and handed to
//!   [`RaftHandler::process`] in order, on the connection's own task (no call queue, so
//!   nothing is reordered).
//! - Pipeline lane: one message per call, acknowledged after `process`; probes answered with
//!   our wall clock.
//! - Snapshot lane: a task per connection ([`snapshot_recv`](super::snapshot_recv)).
//!
//! Every message is checked: it must come from the member the connection's handshake named,
//! be addressed to us, and not come from a removed member. Undecodable input closes the
//! offending connection only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use peerwire_wire::{GoAwayReason, Hello, Lane, OneWay, Request, Status};
use tokio::sync::mpsc;

use peerwire::mount;

use super::batch;
use super::groups::removed_everywhere;
use super::handler::RaftHandler;
use super::link::{BATCH_ROUTE, PIPE_ROUTE, PROBE_ROUTE, lane_label};
use super::message::RaftMessage;
use super::probe::unix_nanos;
use super::shared::{Inner, Refusal};
use super::snapshot_recv;
use peerwire::connection::{Connection, ReplySlot, Service};

/// The service mounted on a member's raft lanes: admits only members, and never removed ones,
/// and hands what arrives to raft.
pub(crate) struct RaftInbound<M, H> {
    pub(crate) inner: Arc<Inner<M, H>>,
    /// The snapshot-lane connections' tasks, by connection id.
    snapshot_lanes: Mutex<HashMap<u64, mpsc::UnboundedSender<snapshot_recv::Work>>>,
}

impl<M: RaftMessage, H: RaftHandler<M>> RaftInbound<M, H> {
    pub(crate) fn new(inner: Arc<Inner<M, H>>) -> Self {
        Self {
            inner,
            snapshot_lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Delivers one message to its group's handler in `groups`, or says why not.
    fn deliver(&self, conn: &Connection, bytes: Bytes) -> Result<(), Refusal> {
        let msg = M::decode(bytes).map_err(|e| Refusal::Undecodable(e.to_string()))?;
        let handler = self.inner.check_message(conn.peer().node_id, &msg)?;
        handler.process(msg).map_err(|e| Refusal::Raft(e.0))
    }

    /// Acts on a refused message: counts it, and closes the connection when the peer broke
    /// the protocol or was removed.
    fn refused(&self, conn: &Connection, refusal: &Refusal) {
        let lane = lane_label(conn.peer().lane);
        metrics::counter!("peerwire_raft_messages_refused_total", "lane" => lane, "reason" => refusal.label())
            .increment(1);
        match refusal {
            Refusal::Undecodable(_) | Refusal::Spoofed { .. } => {
                tracing::warn!(peer = conn.peer().node_id, lane, error = %refusal, "closing a raft lane: bad input");
                conn.abort(GoAwayReason::ProtocolError, refusal.to_string());
            }
            Refusal::Removed(_) => {
                conn.close_with(GoAwayReason::MemberRemoved, refusal.to_string());
            }
            Refusal::WrongTarget { .. }
            | Refusal::RemovedFromGroup { .. }
            | Refusal::UnknownGroup(_)
            | Refusal::Raft(_)
            | Refusal::Faulted => {
                tracing::debug!(peer = conn.peer().node_id, lane, error = %refusal, "raft message dropped");
            }
        }
    }
}

impl<M: RaftMessage, H: RaftHandler<M>> Service for RaftInbound<M, H> {
    fn admit(&self, hello: &Hello) -> Result<(), mount::Refusal> {
        let inner = &self.inner;
        if hello.node_id == 0 {
            return Err(mount::Refusal::new(
                GoAwayReason::ProtocolError,
                format!(
                    "the {} lane is for raft members; node id 0 is anonymous",
                    hello.lane
                ),
            ));
        }
        if removed_everywhere::<M, H>(&inner.groups.all(), hello.node_id) {
            metrics::counter!("peerwire_raft_removed_member_refused_total").increment(1);
            return Err(mount::Refusal::new(
                GoAwayReason::MemberRemoved,
                format!(
                    "node {} was removed from the cluster; node {} refuses its {} lane",
                    hello.node_id,
                    inner.link.node_id(),
                    hello.lane
                ),
            ));
        }
        Ok(())
    }

    fn runtime(&self, lane: Lane) -> Option<tokio::runtime::Handle> {
        (lane == Lane::RaftSnapshot).then(|| self.inner.link.bulk_runtime().clone())
    }

    fn on_connected(&self, conn: &Connection) {
        if conn.peer().lane != Lane::RaftSnapshot {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        self.snapshot_lanes
            .lock()
            .expect("snapshot lanes poisoned")
            .insert(conn.id(), tx);
        self.inner
            .link
            .spawn_bulk(snapshot_recv::run(self.inner.clone(), conn.clone(), rx));
    }

    fn on_disconnected(&self, conn: &Connection, _why: &str) {
        self.snapshot_lanes
            .lock()
            .expect("snapshot lanes poisoned")
            .remove(&conn.id());
    }

    fn on_oneway(&self, conn: &Connection, message: OneWay) {
        if message.route != BATCH_ROUTE.as_bytes() {
            metrics::counter!("peerwire_oneway_dropped_total", "reason" => "unknown_route")
                .increment(1);
            return;
        }
        let mut delivered = 0u64;
        let len = message.payload.len() as u64;
        for item in batch::split(message.payload) {
            let result = item
                .map_err(|e| Refusal::Undecodable(e.to_string()))
                .and_then(|bytes| self.deliver(conn, bytes));
            match result {
                Ok(()) => delivered += 1,
                Err(refusal) => {
                    self.refused(conn, &refusal);
                    if refusal.closes() {
                        break;
                    }
                }
            }
        }
        if delivered > 0 {
            // Counted once a message passed the membership checks, so the peer is a member.
            let counters = self
                .inner
                .received
                .of(conn.peer().node_id, conn.peer().lane);
            counters.messages.increment(delivered);
            counters.bytes.increment(len);
        }
    }

    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        let route = &request.route[..];
        if conn.peer().lane == Lane::RaftSnapshot {
            let lanes = self.snapshot_lanes.lock().expect("snapshot lanes poisoned");
            if let Some(tx) = lanes.get(&conn.id()) {
                // The task ends only with the connection; a send that fails drops the slot,
                // which the closing connection no longer needs.
                let _ = tx.send((request, slot));
            }
            return;
        }
        if route == PROBE_ROUTE.as_bytes() {
            conn.reply(
                slot,
                request.id,
                Bytes::copy_from_slice(&unix_nanos().to_le_bytes()),
            );
        } else if route == PIPE_ROUTE.as_bytes() {
            let len = request.payload.len() as u64;
            match self.deliver(conn, request.payload) {
                Ok(()) => {
                    let counters = self
                        .inner
                        .received
                        .of(conn.peer().node_id, Lane::RaftPipeline);
                    counters.messages.increment(1);
                    counters.bytes.increment(len);
                    conn.reply(slot, request.id, Bytes::new());
                }
                Err(refusal) => {
                    let status = match refusal {
                        Refusal::Raft(_) => Status::HandlerFailed,
                        _ => Status::BadRequest,
                    };
                    conn.fail(slot, request.id, status, 0, refusal.to_string());
                    self.refused(conn, &refusal);
                }
            }
        } else {
            conn.fail(
                slot,
                request.id,
                Status::UnknownRoute,
                0,
                format!(
                    "no route `{}` on a raft lane",
                    String::from_utf8_lossy(route)
                ),
            );
        }
    }
}
