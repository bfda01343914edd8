//! Snapshots as the transport carries them: an outgoing [`Snapshot`] (the message plus a body
//! read in chunks), the [`SnapshotProgress`] of one being sent, and the [`SnapshotData`] stream
//! of one being received. Memory stays bounded by the chunk size times the window on both
//! sides, whatever the snapshot's size.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch};

use super::message::RaftMessage;

/// Why a snapshot did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The lane broke before all the data arrived (or was sent).
    #[error("snapshot interrupted: {0}")]
    Interrupted(String),
    /// The snapshot is larger than the receiver accepts.
    #[error("snapshot of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The other side broke the snapshot lane's protocol (bad offsets, sizes or order).
    #[error("snapshot protocol violation: {0}")]
    Protocol(String),
    /// Raft refused the snapshot's message.
    #[error("raft refused the snapshot: {0}")]
    Refused(String),
    /// Reading the snapshot's body failed on the sending side.
    #[error("reading the snapshot body: {0}")]
    Io(String),
    /// The receiver failed the snapshot; its message says why.
    #[error("the receiver failed the snapshot: {0}")]
    Remote(String),
    /// A snapshot to this peer is already being sent.
    #[error("a snapshot to node {0} is already in flight")]
    Busy(u64),
    /// The peer is unknown to the transport.
    #[error("unknown peer {0}")]
    UnknownPeer(u64),
}

/// Where an outgoing snapshot's data comes from.
pub(crate) enum Body {
    /// Already in memory (raft-rs keeps snapshots in memory); sent as zero-copy slices.
    Memory(Bytes),
    /// Read from a stream (a file) chunk by chunk.
    Reader(Box<dyn AsyncRead + Send + Unpin>),
}

/// A snapshot to send: the raft message (its metadata) and a body of `size` bytes.
pub struct Snapshot<M> {
    pub(crate) message: M,
    pub(crate) size: u64,
    pub(crate) body: Body,
}

impl<M: std::fmt::Debug> std::fmt::Debug for Snapshot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("message", &self.message)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<M: RaftMessage> Snapshot<M> {
    /// A snapshot whose `size` bytes of data are read from `body` (etcd's merged snapshot
    /// message: metadata plus a reader).
    pub fn new(message: M, size: u64, body: impl AsyncRead + Send + Unpin + 'static) -> Self {
        Self {
            message,
            size,
            body: Body::Reader(Box::new(body)),
        }
    }

    /// A snapshot whose data is inside the message ([`RaftMessage::take_snapshot_data`]).
    pub fn from_message(mut message: M) -> Self {
        let data = message.take_snapshot_data();
        Self {
            message,
            size: data.len() as u64,
            body: Body::Memory(data),
        }
    }

    /// The member the snapshot is for.
    pub fn to(&self) -> u64 {
        self.message.to()
    }

    /// The raft group the snapshot belongs to.
    pub fn group(&self) -> u64 {
        self.message.group()
    }

    /// The size of the data in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

#[derive(Debug)]
struct ProgressInner {
    to: u64,
    total: u64,
    sent: AtomicU64,
    done: watch::Sender<Option<Result<(), SnapshotError>>>,
}

/// The progress of a snapshot being sent. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SnapshotProgress {
    inner: Arc<ProgressInner>,
}

impl SnapshotProgress {
    pub(crate) fn new(to: u64, total: u64) -> Self {
        Self {
            inner: Arc::new(ProgressInner {
                to,
                total,
                sent: AtomicU64::new(0),
                done: watch::Sender::new(None),
            }),
        }
    }

    /// The member the snapshot goes to.
    pub fn to(&self) -> u64 {
        self.inner.to
    }

    /// Bytes of data the receiver acknowledged so far.
    pub fn sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    /// The snapshot's size in bytes.
    pub fn total(&self) -> u64 {
        self.inner.total
    }

    /// How it ended, if it has.
    pub fn outcome(&self) -> Option<Result<(), SnapshotError>> {
        self.inner.done.borrow().clone()
    }

    /// Waits until the snapshot was received and processed (`Ok`) or failed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: waiting has no effect on the snapshot.
    pub async fn finished(&self) -> Result<(), SnapshotError> {
        let mut rx = self.inner.done.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(done) => done.clone().expect("waited for an outcome"),
            Err(_) => Err(SnapshotError::Interrupted("the transport stopped".into())),
        }
    }

    pub(crate) fn add_sent(&self, n: u64) {
        self.inner.sent.fetch_add(n, Ordering::Relaxed);
        metrics::counter!("peerwire_raft_snapshot_bytes_sent_total").increment(n);
    }

    pub(crate) fn finish(&self, outcome: Result<(), SnapshotError>) {
        self.inner.done.send_replace(Some(outcome));
    }
}

/// The data of a snapshot being received, chunk by chunk, in order. Holds at most a couple of
/// chunks: the sender waits while the consumer is slow.
#[derive(Debug)]
pub struct SnapshotData {
    size: u64,
    received: u64,
    rx: mpsc::Receiver<Bytes>,
}

impl SnapshotData {
    pub(crate) fn new(size: u64, rx: mpsc::Receiver<Bytes>) -> Self {
        Self {
            size,
            received: 0,
            rx,
        }
    }

    /// The snapshot's size in bytes, as announced by the sender.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The next chunk; `None` once all `size` bytes arrived.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a chunk is taken only when the future completes.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, SnapshotError>> {
        if self.received == self.size {
            return None;
        }
        match self.rx.recv().await {
            Some(chunk) => {
                self.received += chunk.len() as u64;
                if self.received > self.size {
                    return Some(Err(SnapshotError::Protocol(format!(
                        "received {} bytes of a {}-byte snapshot",
                        self.received, self.size
                    ))));
                }
                Some(Ok(chunk))
            }
            None => Some(Err(SnapshotError::Interrupted(format!(
                "the lane closed after {} of {} bytes",
                self.received, self.size
            )))),
        }
    }

    /// Collects all the data in memory, refusing snapshots larger than `limit` bytes.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the chunks read so far are lost.
    pub async fn collect(mut self, limit: u64) -> Result<Bytes, SnapshotError> {
        if self.size > limit {
            return Err(SnapshotError::TooLarge {
                size: self.size,
                limit,
            });
        }
        // The size is the sender's claim: reserve for what arrives, not for what is announced
        // (a peer announcing 4 GiB and sending nothing must not cost 4 GiB; found by fuzzing).
        let mut all = bytes::BytesMut::with_capacity(self.size.min(COLLECT_RESERVE) as usize);
        while let Some(chunk) = self.chunk().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }
}

/// Most [`SnapshotData::collect`] reserves before data arrives.
const COLLECT_RESERVE: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn data_ends_after_the_announced_size() {
        let (tx, rx) = mpsc::channel(4);
        let mut data = SnapshotData::new(5, rx);
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        tx.send(Bytes::from_static(b"de")).await.unwrap();
        assert_eq!(data.chunk().await.unwrap().unwrap(), "abc");
        assert_eq!(data.chunk().await.unwrap().unwrap(), "de");
        assert!(data.chunk().await.is_none());
    }

    #[tokio::test]
    async fn a_closed_lane_interrupts_the_data() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        let err = SnapshotData::new(5, rx).collect(100).await.unwrap_err();
        assert!(matches!(err, SnapshotError::Interrupted(_)), "{err}");
    }

    #[tokio::test]
    async fn more_data_than_announced_is_a_protocol_error() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"abcdef")).await.unwrap();
        let err = SnapshotData::new(5, rx).collect(100).await.unwrap_err();
        assert!(matches!(err, SnapshotError::Protocol(_)), "{err}");
    }

    #[tokio::test]
    async fn collect_refuses_oversized_snapshots() {
        let (_tx, rx) = mpsc::channel(1);
        let err = SnapshotData::new(500, rx).collect(100).await.unwrap_err();
        assert_eq!(
            err,
            SnapshotError::TooLarge {
                size: 500,
                limit: 100
            }
        );
    }

    #[tokio::test]
    async fn progress_reports_the_outcome_to_every_waiter() {
        let p = SnapshotProgress::new(2, 10);
        p.add_sent(4);
        assert_eq!((p.sent(), p.total(), p.outcome()), (4, 10, None));
        let waiter = p.clone();
        let wait = tokio::spawn(async move { waiter.finished().await });
        p.finish(Ok(()));
        assert_eq!(wait.await.unwrap(), Ok(()));
        assert_eq!(p.finished().await, Ok(()));
    }
}
