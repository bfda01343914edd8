//! What a connection hands the service it carries: the [`Service`] trait a connection calls
//! for every request, one-way message, stream packet and lifecycle event, the [`MountPoint`]
//! a hello names, and the [`ReplySlot`] that travels with each request to its reply.
//!
//! The server core finds a connection's service by the mount point of its hello
//! (`mount.rs`); a client's connections carry the service given to the client (reverse calls
//! over connections this side opened). Either way the connection layer knows only this trait.

use std::fmt;

use peerwire_wire::{GoAwayReason, Hello, Lane, OneWay, Request, Status, StreamData};
use tokio::sync::OwnedSemaphorePermit;

use super::Connection;

/// Where a service is mounted on a server, and what a hello asks for: a lane kind and a group
/// of that lane's service (a raft group, a data-stream group; 0 is the default group).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MountPoint {
    /// The lane kind.
    pub lane: Lane,
    /// The group.
    pub group: u64,
}

impl MountPoint {
    /// The default group (0) of `lane`.
    pub const fn lane(lane: Lane) -> Self {
        Self { lane, group: 0 }
    }

    /// Group `group` of `lane`.
    pub const fn group(lane: Lane, group: u64) -> Self {
        Self { lane, group }
    }
}

/// Ordered by lane code, then group, so a lane's groups sit together.
impl Ord for MountPoint {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.lane.to_wire(), self.group).cmp(&(other.lane.to_wire(), other.group))
    }
}

impl PartialOrd for MountPoint {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for MountPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} lane, group {}", self.lane, self.group)
    }
}

/// A service's refusal of a hello: the go-away reason the peer gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The go-away reason sent to the peer (its typed error on the other side).
    pub reason: GoAwayReason,
    /// Why, naming the peer and the setting involved.
    pub message: String,
}

impl Refusal {
    /// A refusal with `reason` and `message`.
    pub fn new(reason: GoAwayReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// The in-flight slot of one request (or stream packet) the peer sent. It travels with the
/// request to its reply ([`Connection::reply`], [`Connection::fail`]) and is released once
/// the reply is written, so the replies a connection holds stay bounded by its in-flight
/// limit. Dropping it without replying frees the slot; the caller then waits for its
/// deadline, so always reply.
#[derive(Debug)]
pub struct ReplySlot(pub(crate) OwnedSemaphorePermit);

/// A service mounted on a server's port (or given to a client for the calls its peers make
/// over the client's connections): what a connection does with what its peer sends.
///
/// Every method is called on the connection's own task, in the order the frames arrived, and
/// must not block: hand work to a queue or a task of the service's own.
pub trait Service: Send + Sync + 'static {
    /// Admits or refuses a hello for this mount point, after the generic checks (version,
    /// cluster, target node, TLS identity) passed. The default admits every peer.
    fn admit(&self, _hello: &Hello) -> Result<(), Refusal> {
        Ok(())
    }

    /// Where the tasks of a connection on `lane` run, if not on the runtime that accepted it
    /// (the raft snapshot lane runs on a thread of its own). A plaintext TCP socket is moved
    /// to that runtime's reactor.
    fn runtime(&self, _lane: Lane) -> Option<tokio::runtime::Handle> {
        None
    }

    /// The connection was established (after the handshake), before any frame is delivered.
    fn on_connected(&self, _conn: &Connection) {}

    /// A request arrived and was given an in-flight `slot`; answer it with
    /// [`Connection::reply`] or [`Connection::fail`], now or later.
    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot);

    /// A one-way message arrived. The default drops it and counts the drop.
    fn on_oneway(&self, _conn: &Connection, _message: OneWay) {
        metrics::counter!("peerwire_oneway_dropped_total", "reason" => "not_served").increment(1);
    }

    /// A data-stream packet arrived (only on [`Lane::DataStream`] connections) and was given
    /// an in-flight `slot`, like a request; its acknowledgement is the reply. The default
    /// refuses it.
    fn on_stream_data(&self, conn: &Connection, data: StreamData, slot: ReplySlot) {
        conn.fail(
            slot,
            data.id,
            Status::UnknownRoute,
            0,
            "this peer serves no data streams".into(),
        );
    }

    /// The peer cancelled request `id`.
    fn on_cancel(&self, _conn: &Connection, _id: u64) {}

    /// The connection closed; `why` says how.
    fn on_disconnected(&self, _conn: &Connection, _why: &str) {}
}

impl fmt::Debug for dyn Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Service")
    }
}

/// The service of a side that serves nothing (a client whose peers make no calls back): every
/// request fails as an unknown route, one-way messages are dropped and counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServeNothing;

impl Service for ServeNothing {
    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        conn.fail(
            slot,
            request.id,
            Status::UnknownRoute,
            0,
            format!(
                "this peer serves no routes (route `{}`)",
                String::from_utf8_lossy(&request.route)
            ),
        );
    }

    fn on_oneway(&self, _conn: &Connection, _message: OneWay) {
        metrics::counter!("peerwire_oneway_dropped_total", "reason" => "no_routes").increment(1);
    }
}
