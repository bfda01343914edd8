//! Receiving snapshots on one snapshot-lane connection (etcd's `snapshotHandler`): a task per
//! connection takes the lane's calls in order. `begin` hands a [`SnapshotData`] stream and the
//! message to [`RaftHandler::receive_snapshot`]; each `chunk` is acknowledged once the stream's
//! consumer took it (so a slow consumer slows the sender, and memory stays at a couple of
//! chunks); `end` is answered with the consumer's outcome. If the connection breaks, the
//! stream ends as interrupted and the message is never processed.

use std::sync::Arc;

use bytes::{Buf, Bytes};
use peerwire_wire::{Lane, Request, Status};
use tokio::sync::{mpsc, oneshot};

use super::handler::RaftHandler;
use super::link::{SNAP_BEGIN_ROUTE, SNAP_CHUNK_ROUTE, SNAP_END_ROUTE};
use super::message::{MessageKind, RaftMessage};
use super::peer_metrics::ReceivedCounters;
use super::shared::Inner;
use super::snapshot::{SnapshotData, SnapshotError};
use peerwire::connection::{Connection, ReplySlot};

/// Chunks buffered between the lane and the consumer.
const DATA_BUFFER: usize = 2;

/// One call of the snapshot lane, with its in-flight slot.
pub(crate) type Work = (Request, ReplySlot);

struct Receiving {
    tx: mpsc::Sender<Bytes>,
    size: u64,
    received: u64,
    done: oneshot::Receiver<Result<(), SnapshotError>>,
    /// When its begin call arrived.
    started: std::time::Instant,
    /// The sender's received-bytes and messages counters on this lane.
    counters: ReceivedCounters,
}

/// Serves the snapshot calls of `conn` until the connection closes.
pub(crate) async fn run<M: RaftMessage, H: RaftHandler<M>>(
    inner: Arc<Inner<M, H>>,
    conn: Connection,
    mut rx: mpsc::UnboundedReceiver<Work>,
) {
    let mut current: Option<Receiving> = None;
    loop {
        let (request, slot) = tokio::select! {
            w = rx.recv() => match w {
                Some(w) => w,
                None => return,
            },
            _ = conn.closing() => return,
            // The transport stops while the sender keeps its connection open.
            _ = inner.link.stop.cancelled() => return,
        };
        let id = request.id;
        let result = match &request.route[..] {
            r if r == SNAP_BEGIN_ROUTE.as_bytes() => {
                begin(&inner, &conn, &mut current, request.payload)
            }
            r if r == SNAP_CHUNK_ROUTE.as_bytes() => {
                chunk(&conn, &mut current, request.payload).await
            }
            r if r == SNAP_END_ROUTE.as_bytes() => end(&mut current).await,
            other => Err((
                Status::UnknownRoute,
                format!(
                    "no route `{}` on the snapshot lane",
                    String::from_utf8_lossy(other)
                ),
            )),
        };
        match result {
            Ok(()) => conn.reply(slot, id, Bytes::new()),
            Err((status, message)) => {
                metrics::counter!("peerwire_raft_snapshots_received_total", "outcome" => "failure")
                    .increment(1);
                tracing::warn!(peer = conn.peer().node_id, %status, %message, "snapshot refused");
                current = None;
                conn.fail(slot, id, status, 0, message);
            }
        }
    }
}

type Refusal = (Status, String);

fn begin<M: RaftMessage, H: RaftHandler<M>>(
    inner: &Arc<Inner<M, H>>,
    conn: &Connection,
    current: &mut Option<Receiving>,
    mut payload: Bytes,
) -> Result<(), Refusal> {
    let bad = |m: String| (Status::BadRequest, m);
    if current.is_some() {
        return Err(bad("a snapshot began before the previous one ended".into()));
    }
    if payload.len() < 8 {
        return Err(bad(format!("snapshot header of {} bytes", payload.len())));
    }
    let size = payload.get_u64_le();
    let msg = M::decode(payload).map_err(|e| bad(format!("undecodable snapshot message: {e}")))?;
    if msg.kind() != MessageKind::Snapshot {
        return Err(bad(format!(
            "a {:?} message on the snapshot lane",
            msg.kind()
        )));
    }
    let handler = inner
        .check_message(conn.peer().node_id, &msg)
        .map_err(|e| (Status::BadRequest, e.to_string()))?;
    let (tx, data_rx) = mpsc::channel(DATA_BUFFER);
    let (done_tx, done) = oneshot::channel();
    let data = SnapshotData::new(size, data_rx);
    inner.link.spawn_bulk(async move {
        let _ = done_tx.send(handler.receive_snapshot(msg, data).await);
    });
    *current = Some(Receiving {
        tx,
        size,
        received: 0,
        done,
        started: std::time::Instant::now(),
        counters: inner.received.of(conn.peer().node_id, Lane::RaftSnapshot),
    });
    Ok(())
}

async fn chunk(
    conn: &Connection,
    current: &mut Option<Receiving>,
    payload: Bytes,
) -> Result<(), Refusal> {
    let Some(r) = current.as_mut() else {
        return Err((Status::BadRequest, "a snapshot chunk before begin".into()));
    };
    r.received += payload.len() as u64;
    r.counters.bytes.increment(payload.len() as u64);
    if r.received > r.size {
        return Err((
            Status::BadRequest,
            format!("{} bytes sent of a {}-byte snapshot", r.received, r.size),
        ));
    }
    tokio::select! {
        sent = r.tx.send(payload) => {
            if sent.is_err() {
                // The consumer stopped early: its outcome says why.
                let why = match (&mut r.done).await {
                    Ok(Err(e)) => e.to_string(),
                    _ => "the snapshot's consumer stopped reading".into(),
                };
                return Err((Status::HandlerFailed, why));
            }
            Ok(())
        }
        _ = conn.closing() => Err((Status::ShuttingDown, "connection closing".into())),
    }
}

async fn end(current: &mut Option<Receiving>) -> Result<(), Refusal> {
    let Some(Receiving {
        tx,
        size,
        received,
        done,
        started,
        counters,
    }) = current.take()
    else {
        return Err((Status::BadRequest, "snapshot end before begin".into()));
    };
    if received != size {
        return Err((
            Status::BadRequest,
            format!("snapshot ended after {received} of {size} bytes"),
        ));
    }
    drop(tx);
    match done.await {
        Ok(Ok(())) => {
            counters.messages.increment(1);
            metrics::counter!("peerwire_raft_snapshots_received_total", "outcome" => "finish")
                .increment(1);
            metrics::histogram!("peerwire_raft_snapshot_receive_duration_seconds")
                .record(started.elapsed().as_secs_f64());
            Ok(())
        }
        Ok(Err(e)) => Err((Status::HandlerFailed, e.to_string())),
        Err(_) => Err((Status::Internal, "the snapshot's consumer panicked".into())),
    }
}
