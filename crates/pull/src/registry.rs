//! The streams a manager holds: who may read each, which connection it dies with, and when it
//! was last read, so that streams nobody reads are released.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::codec::{ErrorCode, Refusal, StreamId};
use super::source::Prepared;

/// Who may read a registered stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Any connection that knows the id (the id is random, but not a secret: prefer a binding).
    Anyone,
    /// Connections from this node id (a verified identity under mutual TLS).
    Node(u64),
    /// One connection on the pull lane (its [`Connection::id`]); the stream is released when
    /// that connection closes. Streams opened by name are bound this way.
    ///
    /// [`Connection::id`]: peerwire::connection::Connection::id
    Connection(u64),
}

impl Reader {
    fn admits(self, conn_id: u64, node_id: u64) -> bool {
        match self {
            Self::Anyone => true,
            Self::Node(n) => n != 0 && n == node_id,
            Self::Connection(c) => c == conn_id,
        }
    }
}

/// One registered stream.
pub(crate) struct Entry {
    pub(crate) id: StreamId,
    pub(crate) source: Arc<Prepared>,
    reader: Reader,
    /// Milliseconds since the registry's start when it was last used.
    used: AtomicU64,
    /// Cancelled when the stream is released: fetches waiting on it give up.
    pub(crate) released: CancellationToken,
}

/// Why a stream went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    Closed,
    Disconnected,
    Idle,
    Finished,
}

impl Released {
    fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Disconnected => "disconnected",
            Self::Idle => "idle",
            Self::Finished => "finished",
        }
    }
}

/// The table of streams.
pub(crate) struct Registry {
    streams: Mutex<HashMap<StreamId, Arc<Entry>>>,
    max: usize,
    start: Instant,
}

impl Registry {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            streams: Mutex::new(HashMap::new()),
            max,
            start: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Adds a stream readable by `reader`; refused when the table is full.
    pub(crate) fn insert(
        &self,
        source: Arc<Prepared>,
        reader: Reader,
    ) -> Result<StreamId, Refusal> {
        let mut streams = self.streams.lock().expect("streams poisoned");
        if streams.len() >= self.max {
            return Err(Refusal::new(
                ErrorCode::TooManyStreams,
                format!(
                    "{} streams registered, the limit (`PullConfig::max_streams`)",
                    self.max
                ),
            ));
        }
        let id = loop {
            let id = StreamId(fastrand::u64(1..));
            if !streams.contains_key(&id) {
                break id;
            }
        };
        streams.insert(
            id,
            Arc::new(Entry {
                id,
                source,
                reader,
                used: AtomicU64::new(self.now_ms()),
                released: CancellationToken::new(),
            }),
        );
        metrics::counter!("peerwire_pull_streams_registered_total").increment(1);
        metrics::gauge!("peerwire_pull_streams").set(streams.len() as f64);
        Ok(id)
    }

    /// The stream `id` if the connection `conn_id` from node `node_id` may read it.
    pub(crate) fn get(
        &self,
        id: StreamId,
        conn_id: u64,
        node_id: u64,
    ) -> Result<Arc<Entry>, Refusal> {
        let entry = self
            .streams
            .lock()
            .expect("streams poisoned")
            .get(&id)
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    ErrorCode::UnknownStream,
                    "never registered, or released (closed, its reader disconnected, or unread past the idle timeout)",
                )
            })?;
        if !entry.reader.admits(conn_id, node_id) {
            return Err(Refusal::new(
                ErrorCode::NotAllowed,
                format!(
                    "the stream is bound to {}",
                    match entry.reader {
                        Reader::Anyone => "anyone".to_owned(),
                        Reader::Node(n) => format!("node {n}"),
                        Reader::Connection(_) => "the connection that opened it".to_owned(),
                    }
                ),
            ));
        }
        entry.used.store(self.now_ms(), Ordering::Relaxed);
        Ok(entry)
    }

    /// Removes stream `id`; whether it was there.
    pub(crate) fn remove(&self, id: StreamId, why: Released) -> bool {
        self.remove_where(why, |e| e.id == id) > 0
    }

    /// Releases every stream bound to connection `conn_id`.
    pub(crate) fn release_connection(&self, conn_id: u64) -> usize {
        self.remove_where(Released::Disconnected, |e| {
            e.reader == Reader::Connection(conn_id)
        })
    }

    /// Releases every stream unused for `idle` or longer.
    pub(crate) fn expire(&self, idle: Duration) -> usize {
        let now = self.now_ms();
        let idle = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        self.remove_where(Released::Idle, |e| {
            now.saturating_sub(e.used.load(Ordering::Relaxed)) >= idle
        })
    }

    fn remove_where(&self, why: Released, mut doomed: impl FnMut(&Entry) -> bool) -> usize {
        let mut streams = self.streams.lock().expect("streams poisoned");
        let before = streams.len();
        streams.retain(|_, e| {
            let doomed = doomed(e);
            if doomed {
                e.released.cancel();
            }
            !doomed
        });
        let gone = before - streams.len();
        if gone > 0 {
            metrics::counter!("peerwire_pull_streams_released_total", "reason" => why.label())
                .increment(gone as u64);
            metrics::gauge!("peerwire_pull_streams").set(streams.len() as f64);
        }
        gone
    }

    /// How many streams are registered.
    pub(crate) fn len(&self) -> usize {
        self.streams.lock().expect("streams poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    async fn source() -> Arc<Prepared> {
        Prepared::new(super::super::Source::bytes(Bytes::from_static(b"x")), 4)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn bindings_admit_only_their_reader() {
        let r = Registry::new(10);
        let any = r.insert(source().await, Reader::Anyone).unwrap();
        let node = r.insert(source().await, Reader::Node(3)).unwrap();
        let conn = r.insert(source().await, Reader::Connection(42)).unwrap();
        assert!(r.get(any, 1, 0).is_ok());
        assert!(r.get(node, 1, 3).is_ok());
        assert_eq!(r.get(node, 1, 4).err().unwrap().code, ErrorCode::NotAllowed);
        assert_eq!(r.get(node, 1, 0).err().unwrap().code, ErrorCode::NotAllowed);
        assert!(r.get(conn, 42, 0).is_ok());
        assert_eq!(
            r.get(conn, 43, 0).err().unwrap().code,
            ErrorCode::NotAllowed
        );
        assert_eq!(
            r.get(StreamId(0), 42, 0).err().unwrap().code,
            ErrorCode::UnknownStream
        );
        assert_eq!(r.release_connection(42), 1);
        assert_eq!(
            r.get(conn, 42, 0).err().unwrap().code,
            ErrorCode::UnknownStream
        );
        assert_eq!(r.len(), 2);
    }

    #[tokio::test]
    async fn the_table_is_bounded_and_idle_streams_expire() {
        let r = Registry::new(2);
        let a = r.insert(source().await, Reader::Anyone).unwrap();
        r.insert(source().await, Reader::Anyone).unwrap();
        let full = r.insert(source().await, Reader::Anyone).unwrap_err();
        assert_eq!(full.code, ErrorCode::TooManyStreams);
        assert!(full.message.contains("max_streams"), "{}", full.message);
        assert_eq!(r.expire(Duration::from_secs(3600)), 0);
        assert_eq!(r.expire(Duration::ZERO), 2);
        assert!(!r.remove(a, Released::Closed));
    }
}
