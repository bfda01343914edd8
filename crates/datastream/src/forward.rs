//! Forwarding to successors (Ratis's `ProxiesPool`): one client on the data-stream lane with
//! a pool of connections per successor; a stream always uses the connection picked by a hash
//! of its client and stream ids, so its packets stay in order and different streams spread
//! over the pool. Forwarded packets carry the very buffer that arrived (no payload copy).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peerwire_wire::{Lane, StreamData};
use tokio::time::Instant;

use super::codec::{self, FailureKind, OpenRequest, Reply, StreamFailure, StreamRef};
use super::config::DataStreamConfig;
use peerwire::client::{Client, Peer, RetryPolicy};
use peerwire::config::ClientConfig;
use peerwire::connection::{Connection, MountPoint, PendingCall, Route, ServeNothing};
use peerwire::error::Error;

/// The pool slot of a stream: a mix of its client and stream ids.
pub(crate) fn pool_hash(stream: StreamRef) -> u64 {
    (stream.client_id.rotate_left(29) ^ stream.stream_id).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16
}

/// A client on the data-stream lane with `connections_per_peer` connections per server;
/// packets are never retried (a failure fails the stream).
pub(crate) fn lane_client(
    cfg: &DataStreamConfig,
    connections_per_peer: usize,
) -> Result<Client, Error> {
    Client::for_service(
        ClientConfig {
            identity: cfg.identity,
            connection: cfg.connection.clone(),
            connections_per_peer,
            connect_timeout: cfg.request_timeout,
            default_deadline: cfg.request_timeout,
            retry: RetryPolicy::never(),
            ..ClientConfig::default()
        },
        MountPoint::group(Lane::DataStream, cfg.group),
        Arc::new(ServeNothing),
    )
}

pub(crate) struct Forwarder {
    client: Client,
    timeout: Duration,
    next_wire_id: AtomicU64,
}

impl Forwarder {
    pub(crate) fn new(cfg: &DataStreamConfig) -> Result<Self, Error> {
        let client = lane_client(cfg, cfg.forward_pool)?;
        Ok(Self {
            client,
            timeout: cfg.request_timeout,
            next_wire_id: AtomicU64::new(1),
        })
    }

    /// Opens `open`'s stream at successor `node`. A failure names the successor (or passes
    /// on the failure a server further down reported).
    pub(crate) async fn open(
        &self,
        node: u64,
        addr: std::net::SocketAddr,
        open: &OpenRequest,
    ) -> Result<(Successor, Reply), StreamFailure> {
        let unreachable = |e: Error| StreamFailure {
            kind: FailureKind::Replica,
            node,
            offset: 0,
            message: e.to_string(),
        };
        let connection = self
            .client
            .connection(Peer::new(addr, node), Some(pool_hash(open.stream)))
            .await
            .map_err(unreachable)?;
        let wire_id = self.next_wire_id.fetch_add(1, Ordering::Relaxed);
        let request = OpenRequest {
            wire_id,
            ..open.clone()
        };
        let reply = connection
            .call(Route::from(codec::OPEN), request.encode(), self.timeout)
            .await
            .map_err(unreachable)?;
        let reply = codec::decode_reply(&reply).ok_or_else(|| StreamFailure {
            kind: FailureKind::Replica,
            node,
            offset: 0,
            message: "malformed open reply".into(),
        })?;
        Ok((
            Successor {
                node,
                conn: connection,
                wire_id,
                timeout: self.timeout,
            },
            reply,
        ))
    }

    pub(crate) async fn shutdown(&self) {
        self.client.shutdown().await;
    }
}

/// A stream opened at one successor.
pub(crate) struct Successor {
    pub(crate) node: u64,
    conn: Connection,
    wire_id: u64,
    timeout: Duration,
}

impl Successor {
    /// Queues a packet for this successor; the result waits for its acknowledgement.
    pub(crate) async fn send(
        &self,
        flags: peerwire_wire::StreamFlags,
        offset: u64,
        checksum: u32,
        payload: Bytes,
    ) -> Result<PendingCall, Error> {
        self.conn
            .send_stream_data(
                StreamData {
                    id: 0,
                    stream_id: self.wire_id,
                    flags,
                    offset,
                    checksum,
                    payload,
                },
                self.timeout,
                Instant::now() + self.timeout,
                None,
            )
            .await
    }

    /// Tells the successor to abort the stream (best effort, in the background).
    pub(crate) fn abort(&self, tasks: &tokio_util::task::TaskTracker) {
        tasks.spawn(send_abort(self.conn.clone(), self.wire_id, self.timeout));
    }
}

/// Asks the receiver of stream `wire_id` on `conn` to abort it; the outcome is ignored (the
/// receiver's idle timeout is the backstop).
pub(crate) async fn send_abort(conn: Connection, wire_id: u64, timeout: Duration) {
    let _ = conn
        .call(
            Route::from(codec::ABORT),
            codec::encode_abort(wire_id),
            timeout,
        )
        .await;
}
