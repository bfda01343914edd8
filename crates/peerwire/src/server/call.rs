//! A received call on its way from a reader to a handler (Hadoop's `Server.Call`).

use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;

use super::call_queue::Schedulable;
use super::route::RouteEntry;
use crate::connection::{Conn, Connection, Principal};

/// A call waiting in the call queue. Schedulers see who made it and which route it is for.
pub struct Call {
    pub(crate) conn: Arc<Conn>,
    /// Request id; 0 for one-way messages.
    pub(crate) id: u64,
    pub(crate) route: Bytes,
    /// The request's context (checked; empty for none).
    pub(crate) context: crate::context::Context,
    pub(crate) payload: Bytes,
    pub(crate) route_entry: Arc<RouteEntry>,
    pub(crate) received: Instant,
    pub(crate) deadline: Option<Instant>,
    /// The in-flight slot; `None` for one-way messages, which get no reply.
    pub(crate) slot: Option<OwnedSemaphorePermit>,
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("peer", &self.conn.peer())
            .field("id", &self.id)
            .field("route", &String::from_utf8_lossy(&self.route))
            .field("payload_len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

impl Call {
    /// When the reader received the call.
    pub fn received(&self) -> Instant {
        self.received
    }

    /// Payload size in bytes.
    pub fn payload_len(&self) -> usize {
        self.payload.len()
    }

    pub(crate) fn connection(&self) -> Connection {
        Connection {
            conn: self.conn.clone(),
        }
    }
}

impl Schedulable for Call {
    /// The caller the fair call queue charges: the authenticated principal. A member proven
    /// by its certificate is its node id; a user by its certificate's name; a holder of the
    /// shared secret by the secret and the node id it claims (every holder is trusted with
    /// its claim); a plaintext peer by its address alone, whatever node id it claims, so all
    /// unauthenticated callers from one host share one level.
    fn caller(&self) -> u64 {
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        match self.conn.principal() {
            Principal::Node(id) => *id,
            Principal::User(name) => hasher.hash_one(("user", name)),
            Principal::Secret(name) => hasher.hash_one(("secret", name, self.conn.peer().node_id)),
            Principal::Anonymous(ip) => hasher.hash_one(("anonymous", ip)),
        }
    }

    fn route(&self) -> &[u8] {
        &self.route
    }
}
