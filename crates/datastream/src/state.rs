//! The state a data-stream server's connections and stream tasks share (Ratis's
//! `DataStreamManagement` tables): the stream table, closed streams awaiting their link, the
//! packet-byte budget, counters. It sits below both users — the lane's service (`server.rs`)
//! and the stream tasks (`stream.rs`) — so neither imports the other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};

use peerwire_wire::StreamData;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{self, FailureKind, OpenRequest, Reply, StreamFailure, StreamRef};
use super::config::DataStreamConfig;
use super::forward::Forwarder;
use super::routing::RoutingError;
use super::sink::DataSink;
use peerwire::connection::{Connection, ReplySlot};

/// A packet handed from the connection to its stream's task.
pub(crate) struct Packet {
    pub(crate) data: StreamData,
    pub(crate) slot: ReplySlot,
    /// The server's packet-byte budget was exceeded when it arrived.
    pub(crate) over_budget: bool,
}

/// Key of a stream on this server: its connection and the sender's id for it there.
pub(crate) type StreamKey = (u64, u64);

pub(crate) fn conn_key(conn: &Connection) -> u64 {
    conn.id()
}

pub(crate) struct StreamEntry {
    pub(crate) stream: StreamRef,
    pub(crate) tx: mpsc::UnboundedSender<Packet>,
    pub(crate) abort: CancellationToken,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) opened: AtomicU64,
    pub(crate) closed: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) aborted: AtomicU64,
}

pub(crate) struct ServerInner<S: DataSink> {
    pub(crate) cfg: DataStreamConfig,
    pub(crate) sink: S,
    pub(crate) peers: RwLock<HashMap<u64, SocketAddr>>,
    pub(crate) forwarder: Forwarder,
    pub(crate) streams: Mutex<HashMap<StreamKey, StreamEntry>>,
    pub(crate) closed: Mutex<HashMap<StreamRef, S::Closed>>,
    /// Packet bytes received and not yet acknowledged.
    pub(crate) buffered: AtomicUsize,
    pub(crate) tasks: TaskTracker,
    pub(crate) stop: CancellationToken,
    pub(crate) counters: Counters,
    #[cfg(feature = "testing")]
    pub(crate) faults: super::faults::DataStreamFaults,
}

impl<S: DataSink> ServerInner<S> {
    pub(crate) fn me(&self) -> u64 {
        self.cfg.identity.node_id
    }

    pub(crate) fn peer_addr(&self, node: u64) -> Option<SocketAddr> {
        self.peers
            .read()
            .expect("peers lock poisoned")
            .get(&node)
            .copied()
    }

    /// Removes a stream from the table (its packet channel closes once drained).
    pub(crate) fn remove_stream(&self, key: StreamKey) {
        self.streams
            .lock()
            .expect("streams lock poisoned")
            .remove(&key);
    }

    pub(crate) fn failure(&self, kind: FailureKind, offset: u64, message: String) -> StreamFailure {
        StreamFailure {
            kind,
            node: self.me(),
            offset,
            message,
        }
    }

    /// Checks an open against the table, the peers and the limits, and registers it.
    pub(crate) fn admit_open(
        self: &Arc<Self>,
        conn: &Connection,
        open: &OpenRequest,
    ) -> Result<
        (
            StreamKey,
            mpsc::UnboundedReceiver<Packet>,
            CancellationToken,
        ),
        StreamFailure,
    > {
        let me = self.me();
        let routing_failure =
            |e: RoutingError| self.failure(FailureKind::Routing, 0, e.to_string());
        let from = conn.peer().node_id;
        let table = &open.routing;
        let on_route = table.primary() == me || (from != 0 && table.successors(from).contains(&me));
        if !on_route {
            return Err(routing_failure(RoutingError::WrongPrimary {
                primary: table.primary(),
                at: me,
            }));
        }
        if let Some(node) = table
            .successors(me)
            .iter()
            .find(|n| self.peer_addr(**n).is_none())
        {
            return Err(routing_failure(RoutingError::UnknownPeer {
                node: *node,
                at: me,
            }));
        }
        let key = (conn_key(conn), open.wire_id);
        let mut streams = self.streams.lock().expect("streams lock poisoned");
        if streams.len() >= self.cfg.max_streams {
            return Err(self.failure(
                FailureKind::Limit,
                0,
                format!(
                    "node {me} has {} streams open (setting `max_streams`)",
                    streams.len()
                ),
            ));
        }
        if streams.contains_key(&key) {
            return Err(self.failure(
                FailureKind::Malformed,
                0,
                format!(
                    "stream id {} is already open on this connection",
                    open.wire_id
                ),
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let abort = self.stop.child_token();
        streams.insert(
            key,
            StreamEntry {
                stream: open.stream,
                tx,
                abort: abort.clone(),
            },
        );
        Ok((key, rx, abort))
    }
}

/// Sends a data-stream reply to an inbound request or packet.
pub(crate) fn send_reply(conn: &Connection, slot: ReplySlot, id: u64, reply: &Reply) {
    conn.reply(slot, id, codec::encode_reply(reply));
}
