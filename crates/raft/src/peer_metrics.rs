//! Per-peer, per-lane counters of the raft transport (what etcd's `etcd_network_peer_*`
//! metrics tell an operator): bytes and messages sent to and received from each member, send
//! failures, and how deep each lane's queue is. Labels are `peer` (a member's node id) and
//! `lane` (`append`, `message`, `pipeline`, `snapshot`), so their number is bounded by the
//! cluster's size.
//!
//! Handles are registered once — when a peer starts for the sending side, when a member's
//! first message is accepted for the receiving side — so lanes count through ready handles
//! instead of looking names up per batch. Received counters exist only for node ids whose
//! messages passed the membership checks: a stranger claiming ids cannot grow the label set.

use std::collections::HashMap;
use std::sync::Mutex;

use metrics::{Counter, Gauge};
use peerwire_wire::Lane;

use super::link::lane_label;

/// The lanes a peer's counters cover, in [`index`] order.
const LANES: [Lane; 4] = [
    Lane::RaftAppend,
    Lane::RaftMessage,
    Lane::RaftPipeline,
    Lane::RaftSnapshot,
];

/// Where `lane`'s counters sit in a peer's array (other lanes count as the pipeline, which is
/// where the transport sends anything that is not a stream or a snapshot).
fn index(lane: Lane) -> usize {
    match lane {
        Lane::RaftAppend => 0,
        Lane::RaftMessage => 1,
        Lane::RaftSnapshot => 3,
        _ => 2,
    }
}

/// What is sent to one peer on one lane.
#[derive(Clone)]
pub(crate) struct SentCounters {
    /// `peerwire_raft_peer_sent_bytes_total`: payload bytes handed to the connection.
    pub(crate) bytes: Counter,
    /// `peerwire_raft_messages_sent_total`: raft messages the peer's lane carried.
    pub(crate) messages: Counter,
    /// `peerwire_raft_peer_send_failures_total`: a dial, a write or a call that failed.
    pub(crate) failures: Counter,
    /// `peerwire_raft_lane_queue_depth`: messages waiting in the lane's queue.
    pub(crate) queue_depth: Gauge,
}

/// The sending side's counters of one peer, one set per lane.
pub(crate) struct PeerSent {
    peer: String,
    lanes: [SentCounters; 4],
}

impl std::fmt::Debug for PeerSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerSent")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl PeerSent {
    /// The counters of peer `id`, from the recorder installed now.
    pub(crate) fn register(id: u64) -> Self {
        let peer = id.to_string();
        let lanes = LANES.map(|lane| {
            let labels = [
                ("peer", peer.clone()),
                ("lane", lane_label(lane).to_owned()),
            ];
            SentCounters {
                bytes: metrics::counter!("peerwire_raft_peer_sent_bytes_total", &labels),
                messages: metrics::counter!("peerwire_raft_messages_sent_total", &labels),
                failures: metrics::counter!("peerwire_raft_peer_send_failures_total", &labels),
                queue_depth: metrics::gauge!("peerwire_raft_lane_queue_depth", &labels),
            }
        });
        Self { peer, lanes }
    }

    /// The counters of `lane`.
    pub(crate) fn lane(&self, lane: Lane) -> &SentCounters {
        &self.lanes[index(lane)]
    }

    /// Counts `n` messages to this peer dropped on `lane` for `reason` (each is reported to
    /// raft as unreachable). Drops are rare, so this one looks its handle up.
    pub(crate) fn dropped(&self, lane: Lane, reason: &'static str, n: u64) {
        metrics::counter!(
            "peerwire_raft_messages_dropped_total",
            "peer" => self.peer.clone(),
            "lane" => lane_label(lane),
            "reason" => reason
        )
        .increment(n);
    }
}

/// What arrived from one member on one lane.
#[derive(Clone)]
pub(crate) struct ReceivedCounters {
    /// `peerwire_raft_peer_received_bytes_total`: payload bytes of accepted batches, calls and
    /// snapshot chunks.
    pub(crate) bytes: Counter,
    /// `peerwire_raft_messages_received_total`: raft messages handed to raft.
    pub(crate) messages: Counter,
}

/// The receiving side's counters, by member and lane, registered at a member's first accepted
/// message.
#[derive(Default)]
pub(crate) struct Received {
    by_peer: Mutex<HashMap<(u64, usize), ReceivedCounters>>,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received").finish_non_exhaustive()
    }
}

impl Received {
    /// The counters of member `id` on `lane`; call only once a message of `id` was accepted.
    pub(crate) fn of(&self, id: u64, lane: Lane) -> ReceivedCounters {
        let mut by_peer = self.by_peer.lock().expect("received counters poisoned");
        by_peer
            .entry((id, index(lane)))
            .or_insert_with(|| {
                let lane = lane_label(LANES[index(lane)]);
                let labels = [("peer", id.to_string()), ("lane", lane.to_owned())];
                ReceivedCounters {
                    bytes: metrics::counter!("peerwire_raft_peer_received_bytes_total", &labels),
                    messages: metrics::counter!("peerwire_raft_messages_received_total", &labels),
                }
            })
            .clone()
    }
}
