//! Sending one snapshot (etcd's `snapshotSender`) on the snapshot lane, as three kinds of
//! call on one connection:
//!
//! 1. `raft.snap.begin`: the data's size (u64 LE) and the message without its data;
//! 2. `raft.snap.chunk`: the data in order, `snapshot_chunk` bytes per call, at most
//!    `snapshot_window` unacknowledged — the receiver acknowledges a chunk once its consumer
//!    took it, so memory on both sides stays at about window × chunk;
//! 3. `raft.snap.end`: answered once the receiver's raft processed the snapshot.
//!
//! Chunks are written in order because each call is polled once (which queues its request)
//! before the next is made.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use bytes::{BufMut, Bytes, BytesMut};
use peerwire_wire::Lane;
use tokio::io::AsyncReadExt;

use super::link::{Link, SNAP_BEGIN_ROUTE, SNAP_CHUNK_ROUTE, SNAP_END_ROUTE};
use super::message::RaftMessage;
use super::peer_state::PeerShared;
use super::snapshot::{Body, Snapshot, SnapshotError, SnapshotProgress};
use peerwire::client::Peer;
use peerwire::connection::Route;
use peerwire::error::Error;

type ChunkCall<'a> = Pin<Box<dyn Future<Output = Result<Bytes, Error>> + Send + 'a>>;

/// Sends `snapshot` to `peer`, reporting progress.
///
/// # Cancel safety
///
/// Cancelling abandons the snapshot: the calls in flight are cancelled and the receiver's data
/// stream ends as interrupted when the connection is closed.
pub(crate) async fn send<M: RaftMessage>(
    link: &Link,
    peer: &PeerShared,
    snapshot: Snapshot<M>,
    progress: &SnapshotProgress,
) -> Result<(), SnapshotError> {
    let Snapshot {
        message,
        size,
        mut body,
    } = snapshot;
    let addr = peer.addr();
    let connection = match link
        .client(Lane::RaftSnapshot)
        .connection(Peer::new(addr, peer.id), None)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            if !peer.lane_failed(link, Lane::RaftSnapshot, &e) {
                peer.unreachable(addr);
            }
            return Err(SnapshotError::Interrupted(e.to_string()));
        }
    };
    let conn = &connection;
    let timeout = link.cfg.snapshot_chunk_timeout;
    let call = |route: &'static str, payload: Bytes| {
        let route = Route::from(route);
        async move { conn.call(route, payload, timeout).await }
    };

    let mut head = BytesMut::new();
    head.put_u64_le(size);
    message.encode(&mut head);
    drop(message);
    call(SNAP_BEGIN_ROUTE, head.freeze())
        .await
        .map_err(to_snapshot_error)?;

    let sent_bytes = &peer.sent.lane(Lane::RaftSnapshot).bytes;
    let chunk = link.cfg.snapshot_chunk;
    let window = link.cfg.snapshot_window;
    let mut inflight: VecDeque<(ChunkCall<'_>, u64)> = VecDeque::with_capacity(window);
    let mut offset = 0u64;
    loop {
        while inflight.len() < window && offset < size {
            let len = chunk.min((size - offset) as usize);
            let data = match &mut body {
                Body::Memory(all) => all.split_to(len),
                Body::Reader(reader) => {
                    let mut buf = BytesMut::zeroed(len);
                    reader
                        .read_exact(&mut buf)
                        .await
                        .map_err(|e| SnapshotError::Io(format!("at byte {offset}: {e}")))?;
                    buf.freeze()
                }
            };
            offset += len as u64;
            let mut fut: ChunkCall<'_> = Box::pin(call(SNAP_CHUNK_ROUTE, data));
            // Poll once so this chunk's request is queued before the next one's.
            if let std::task::Poll::Ready(r) = futures::poll!(fut.as_mut()) {
                r.map_err(to_snapshot_error)?;
                progress.add_sent(len as u64);
                sent_bytes.increment(len as u64);
                continue;
            }
            inflight.push_back((fut, len as u64));
        }
        let Some((fut, len)) = inflight.pop_front() else {
            break;
        };
        fut.await.map_err(to_snapshot_error)?;
        progress.add_sent(len);
        sent_bytes.increment(len);
    }
    call(SNAP_END_ROUTE, Bytes::new())
        .await
        .map_err(to_snapshot_error)?;
    peer.activate(Lane::RaftSnapshot);
    Ok(())
}

fn to_snapshot_error(e: Error) -> SnapshotError {
    match e {
        Error::Remote { message, .. } => SnapshotError::Remote(message),
        other => SnapshotError::Interrupted(other.to_string()),
    }
}
