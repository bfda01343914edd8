//! A long-lived lane to one peer (etcd's `streamWriter`): a bounded queue of messages and a
//! task that keeps one connection open — dialing with a rate limit, rotating addresses on
//! failure — and writes what is queued as batches. A batch takes everything queued, up to
//! `max_batch_bytes`, so the lane flushes as soon as its queue drains and the connection's
//! writer coalesces batches into vectored writes. The connection's heartbeats keep an idle
//! lane alive and its read timeout closes a dead one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::BytesMut;
use peerwire_wire::Lane;
use tokio::sync::mpsc;

use super::batch;
use super::link::{BATCH_ROUTE, Link, lane_label};
use super::message::RaftMessage;
use super::peer_state::PeerShared;
use peerwire::client::{Peer, backoff};
use peerwire::connection::{Connection, Route};

/// The sending end of a long-lived lane.
#[derive(Debug)]
pub(crate) struct StreamLane<M> {
    tx: mpsc::Sender<M>,
    up: Arc<AtomicBool>,
}

impl<M: RaftMessage> StreamLane<M> {
    /// Starts the lane's task.
    pub(crate) fn start(lane: Lane, link: &Arc<Link>, peer: &Arc<PeerShared>) -> Self {
        let (tx, rx) = mpsc::channel(link.cfg.stream_queue);
        let up = Arc::new(AtomicBool::new(false));
        link.spawn(run(lane, link.clone(), peer.clone(), rx, up.clone()));
        Self { tx, up }
    }

    /// Whether the lane is connected.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// How many messages wait in the lane's queue.
    pub(crate) fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Queues `msg`; gives it back if the queue is full or the lane stopped.
    pub(crate) fn try_send(&self, msg: M) -> Result<(), M> {
        self.tx.try_send(msg).map_err(|e| match e {
            mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m) => m,
        })
    }
}

/// Why a connected lane stopped.
enum Ended {
    Stopped,
    Broken(String),
}

async fn run<M: RaftMessage>(
    lane: Lane,
    link: Arc<Link>,
    peer: Arc<PeerShared>,
    mut rx: mpsc::Receiver<M>,
    up: Arc<AtomicBool>,
) {
    let client = link.client(lane).clone();
    let route = Route::from(BATCH_ROUTE);
    let mut failures = 0u32;
    let mut batch = BatchBuf::default();
    loop {
        if link.is_removed() {
            return;
        }
        let addr = peer.addr();
        tracing::trace!(peer = peer.id, %lane, %addr, "dialing the lane");
        let dialed = if link.faults.streams_down(peer.id) {
            None
        } else {
            tokio::select! {
                r = client.connection(Peer::new(addr, peer.id), None) => Some(r),
                _ = peer.stop.cancelled() => return,
            }
        };
        match dialed {
            Some(Ok(conn)) => {
                failures = 0;
                up.store(true, Ordering::Release);
                peer.stream_up(lane);
                let ended = serve(&conn, &mut rx, &route, &link, &peer, &mut batch).await;
                up.store(false, Ordering::Release);
                peer.stream_down();
                match ended {
                    Ended::Stopped => {
                        conn.close();
                        return;
                    }
                    Ended::Broken(why) => {
                        conn.close();
                        peer.deactivate(lane, why);
                    }
                }
            }
            Some(Err(e)) => {
                peer.sent.lane(lane).failures.increment(1);
                if peer.lane_failed(&link, lane, &e) {
                    return;
                }
                peer.unreachable(addr);
                failures = failures.saturating_add(1);
            }
            None => {
                peer.deactivate(lane, "lane broken by a test hook");
                failures = failures.saturating_add(1);
            }
        }
        // Redial no faster than the rate limit.
        let wait = backoff::delay(&link.cfg.redial, failures.max(1), fastrand::f64());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = peer.stop.cancelled() => return,
        }
    }
}

/// The batch being built: its bytes, and the raft groups of its messages (so a lost batch is
/// reported to each group it carried).
#[derive(Default)]
struct BatchBuf {
    bytes: BytesMut,
    /// The groups of the batch's messages, consecutive repeats skipped.
    groups: Vec<u64>,
    /// The group of the message carried over to the next batch.
    carried_group: u64,
}

impl BatchBuf {
    fn note(&mut self, group: u64) {
        if self.groups.last() != Some(&group) {
            self.groups.push(group);
        }
    }

    /// Each group of the batch (and of the carried message) once.
    fn distinct_groups(&self, carried: bool) -> Vec<u64> {
        let mut groups = self.groups.clone();
        if carried {
            groups.push(self.carried_group);
        }
        groups.sort_unstable();
        groups.dedup();
        groups
    }
}

/// Writes batches on `conn` until it breaks or the peer stops.
///
/// A batch holds at most `max_batch_bytes`: a message that would overflow it starts the next
/// batch (a message larger than a frame travels in parts), and a single message larger than
/// the peer accepts in one message is dropped and reported.
async fn serve<M: RaftMessage>(
    conn: &Connection,
    rx: &mut mpsc::Receiver<M>,
    route: &Route,
    link: &Link,
    peer: &PeerShared,
    batch: &mut BatchBuf,
) -> Ended {
    let message_max = conn.max_oneway_payload(route);
    let max = link.cfg.max_batch_bytes.min(message_max);
    let lane = conn.peer().lane;
    let counters = peer.sent.lane(lane);
    // A message that did not fit the previous batch (or was left by the previous connection):
    // it starts the next one.
    let mut carried = (!batch.bytes.is_empty()).then(|| batch.bytes.split());
    loop {
        batch.groups.clear();
        let buf = &mut batch.bytes;
        let fault = link.faults.changed();
        if link.faults.streams_down(peer.id) {
            if let Some(m) = carried.take() {
                buf.unsplit(m);
            }
            return Ended::Broken("lane broken by a test hook".into());
        }
        // One allocation per batch: growing the buffer message by message would copy it
        // again at every doubling.
        let first_group;
        if let Some(m) = carried.take() {
            buf.reserve(max + max / 8);
            buf.extend_from_slice(&m);
            first_group = batch.carried_group;
        } else {
            let first = tokio::select! {
                biased;
                _ = peer.stop.cancelled() => return Ended::Stopped,
                _ = conn.closed() => return Ended::Broken("connection closed".into()),
                _ = fault => continue,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => return Ended::Stopped,
                },
            };
            buf.reserve(max + max / 8);
            batch::push(buf, &first);
            first_group = first.group();
        }
        batch.note(first_group);
        let buf = &mut batch.bytes;
        let mut count = 1u64;
        while buf.len() < max {
            let Ok(m) = rx.try_recv() else { break };
            let start = buf.len();
            batch::push(buf, &m);
            if buf.len() > max {
                carried = Some(buf.split_off(start));
                batch.carried_group = m.group();
                break;
            }
            count += 1;
            let group = m.group();
            if batch.groups.last() != Some(&group) {
                batch.groups.push(group);
            }
        }
        if buf.len() > message_max {
            // One message, larger than the peer accepts: raft will have to send it differently.
            buf.clear();
            peer.sent.dropped(lane, "too_large", 1);
            tracing::warn!(
                peer = peer.id,
                lane = lane_label(lane),
                limit = message_max,
                "dropped a raft message larger than the peer accepts (its `max_message_bytes`)"
            );
            link.report.unreachable(first_group, peer.id);
        } else {
            let body = buf.split().freeze();
            let len = body.len() as u64;
            counters.queue_depth.set(rx.len() as f64);
            if let Err(e) = conn.send_oneway_wait(route, body).await {
                counters.failures.increment(1);
                peer.sent
                    .dropped(lane, "lane_broken", count + u64::from(carried.is_some()));
                for group in batch.distinct_groups(carried.is_some()) {
                    link.report.unreachable(group, peer.id);
                }
                return Ended::Broken(e.to_string());
            }
            counters.messages.increment(count);
            counters.bytes.increment(len);
        }
    }
}
