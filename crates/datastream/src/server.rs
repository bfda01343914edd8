//! The server side (Ratis's `DataStreamManagement` with `NettyServerStreamRpc`): admits
//! streams on the data-stream lane, runs one task per stream, and keeps closed streams until
//! the application links them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use peerwire_wire::{Hello, OneWay, Request, Status, StreamData};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{self, FailureKind, OpenRequest, StreamRef};
use super::config::DataStreamConfig;
use super::forward::Forwarder;
use super::sink::DataSink;
use super::state::{Counters, Packet, ServerInner, conn_key, send_reply};
use super::stream;
use peerwire::connection::{Connection, MountPoint, ReplySlot, Service};
use peerwire::error::Error;
use peerwire::mount::Mountable;

/// Counters of a data-stream server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DataStreamStats {
    /// Streams opened here.
    pub opened: u64,
    /// Streams closed successfully.
    pub closed: u64,
    /// Streams that failed (checksum, sink, replica, limits).
    pub failed: u64,
    /// Streams aborted (by their client, by the idle timeout, because their owner left, or
    /// because the server stopped).
    pub aborted: u64,
}

/// The inbound policy of data-stream connections.
pub(crate) struct DataStreamInbound<S: DataSink> {
    pub(crate) inner: Arc<ServerInner<S>>,
}

impl<S: DataSink> Service for DataStreamInbound<S> {
    fn admit(&self, _hello: &Hello) -> Result<(), peerwire::mount::Refusal> {
        // Clients (anonymous) open streams; servers (members) forward them.
        Ok(())
    }

    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        let inner = &self.inner;
        match &request.route[..] {
            r if r == codec::OPEN.as_bytes() => {
                let open = match OpenRequest::decode(request.payload) {
                    Ok(open) => open,
                    Err(mut failure) => {
                        failure.node = inner.me();
                        send_reply(conn, slot, request.id, &Err(failure));
                        return;
                    }
                };
                match inner.admit_open(conn, &open) {
                    Ok((key, rx, abort)) => {
                        inner.counters.opened.fetch_add(1, Ordering::Relaxed);
                        metrics::counter!("peerwire_datastream_streams_opened_total").increment(1);
                        let task = stream::run(
                            inner.clone(),
                            conn.clone(),
                            key,
                            open,
                            (request.id, slot),
                            rx,
                            abort,
                        );
                        inner.tasks.spawn(task);
                    }
                    Err(failure) => {
                        metrics::counter!("peerwire_datastream_opens_refused_total").increment(1);
                        send_reply(conn, slot, request.id, &Err(failure));
                    }
                }
            }
            r if r == codec::ABORT.as_bytes() => {
                if let Some(wire_id) = codec::decode_abort(&request.payload) {
                    let key = (conn_key(conn), wire_id);
                    if let Some(entry) = inner
                        .streams
                        .lock()
                        .expect("streams lock poisoned")
                        .get(&key)
                    {
                        entry.abort.cancel();
                    }
                }
                send_reply(conn, slot, request.id, &Ok(Vec::new()));
            }
            other => conn.fail(
                slot,
                request.id,
                Status::UnknownRoute,
                0,
                format!(
                    "the data-stream lane serves `{}` and `{}`, not `{}`",
                    codec::OPEN,
                    codec::ABORT,
                    String::from_utf8_lossy(other)
                ),
            ),
        }
    }

    fn on_stream_data(&self, conn: &Connection, data: StreamData, slot: ReplySlot) {
        let inner = &self.inner;
        let key = (conn_key(conn), data.stream_id);
        let len = data.payload.len();
        let streams = inner.streams.lock().expect("streams lock poisoned");
        let Some(entry) = streams.get(&key) else {
            drop(streams);
            let failure = inner.failure(
                FailureKind::UnknownStream,
                data.offset,
                format!(
                    "stream id {} is not open on this connection at node {}",
                    data.stream_id,
                    inner.me()
                ),
            );
            send_reply(conn, slot, data.id, &Err(failure));
            return;
        };
        let buffered = inner.buffered.fetch_add(len, Ordering::AcqRel) + len;
        let over = buffered > inner.cfg.max_buffered_bytes;
        let id = data.id;
        match entry.tx.send(Packet {
            data,
            slot,
            over_budget: over,
        }) {
            Ok(()) => {}
            Err(mpsc::error::SendError(packet)) => {
                // The task ended between its removal and ours: answer for it.
                drop(streams);
                inner.buffered.fetch_sub(len, Ordering::AcqRel);
                let failure = inner.failure(
                    FailureKind::UnknownStream,
                    packet.data.offset,
                    "the stream ended".into(),
                );
                send_reply(conn, packet.slot, id, &Err(failure));
            }
        }
    }

    fn on_oneway(&self, _conn: &Connection, _message: OneWay) {
        metrics::counter!("peerwire_oneway_dropped_total", "reason" => "datastream_lane")
            .increment(1);
    }

    fn on_disconnected(&self, conn: &Connection, _why: &str) {
        // The owner is gone: its streams end (dropping an entry closes the stream's packet
        // channel; a stream that has not seen its close aborts).
        let key = conn.id();
        self.inner
            .streams
            .lock()
            .expect("streams lock poisoned")
            .retain(|k, _| k.0 != key);
    }
}

/// A data-stream server: serves its group of the [`Lane::DataStream`](peerwire::Lane::DataStream)
/// lane (`DataStreamConfig::group`) on a peerwire server's port (mount it with
/// [`ServerBuilder::mount_all`](peerwire::ServerBuilder::mount_all)), writes
/// every stream into the application's [`DataSink`] and forwards it along the stream's
/// routing table.
pub struct DataStreamServer<S: DataSink> {
    inner: Arc<ServerInner<S>>,
}

impl<S: DataSink> Clone for DataStreamServer<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: DataSink> std::fmt::Debug for DataStreamServer<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStreamServer")
            .field("node", &self.inner.me())
            .field("streams", &self.active_streams())
            .finish_non_exhaustive()
    }
}

impl<S: DataSink> DataStreamServer<S> {
    /// A server writing into `sink`. Its identity must be the peerwire server's.
    pub fn new(cfg: DataStreamConfig, sink: S) -> Result<Self, Error> {
        cfg.validate()?;
        if cfg.identity.node_id == 0 {
            return Err(Error::Config(
                "a data-stream server needs a node id (identity.node_id 0 is anonymous)".into(),
            ));
        }
        let forwarder = Forwarder::new(&cfg)?;
        Ok(Self {
            inner: Arc::new(ServerInner {
                sink,
                peers: RwLock::new(HashMap::new()),
                forwarder,
                streams: Mutex::new(HashMap::new()),
                closed: Mutex::new(HashMap::new()),
                buffered: AtomicUsize::new(0),
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
                counters: Counters::default(),
                #[cfg(feature = "testing")]
                faults: Default::default(),
                cfg,
            }),
        })
    }

    /// This server's node id.
    pub fn node_id(&self) -> u64 {
        self.inner.me()
    }

    /// Adds or updates the address of server `node`, so routes may name it.
    pub fn add_peer(&self, node: u64, addr: SocketAddr) {
        self.inner
            .peers
            .write()
            .expect("peers lock poisoned")
            .insert(node, addr);
    }

    /// Forgets server `node`: new streams naming it are refused; streams already forwarding
    /// to it go on until they end.
    pub fn remove_peer(&self, node: u64) {
        self.inner
            .peers
            .write()
            .expect("peers lock poisoned")
            .remove(&node);
    }

    /// Streams open on this server.
    pub fn active_streams(&self) -> usize {
        self.inner
            .streams
            .lock()
            .expect("streams lock poisoned")
            .len()
    }

    /// The open streams' names.
    pub fn active_stream_refs(&self) -> Vec<StreamRef> {
        self.inner
            .streams
            .lock()
            .expect("streams lock poisoned")
            .values()
            .map(|e| e.stream)
            .collect()
    }

    /// Packet bytes received and not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffered.load(Ordering::Acquire)
    }

    /// Counters since start.
    pub fn stats(&self) -> DataStreamStats {
        let c = &self.inner.counters;
        DataStreamStats {
            opened: c.opened.load(Ordering::Relaxed),
            closed: c.closed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            aborted: c.aborted.load(Ordering::Relaxed),
        }
    }

    /// Takes what the closed stream `stream` left (the link to the log: the application
    /// calls this when it applies the entry that refers to the stream). `None` if the stream
    /// did not close here, was already taken, or was discarded after `link_timeout`.
    pub fn take_closed(&self, stream: &StreamRef) -> Option<S::Closed> {
        self.inner
            .closed
            .lock()
            .expect("closed lock poisoned")
            .remove(stream)
    }

    /// Streams closed here and not yet taken.
    pub fn closed_streams(&self) -> Vec<StreamRef> {
        self.inner
            .closed
            .lock()
            .expect("closed lock poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// Fault injection for tests.
    #[cfg(feature = "testing")]
    pub fn faults(&self) -> &super::faults::DataStreamFaults {
        &self.inner.faults
    }

    /// Aborts every open stream, waits for their tasks, and closes the forwarding
    /// connections. Closed streams not yet taken are dropped without `discard`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: streams are aborted at the first poll; waiting can be resumed by
    /// calling again.
    pub async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.forwarder.shutdown().await;
    }
}

impl<S: DataSink> Mountable for DataStreamServer<S> {
    /// The data-stream lane, at this server's group (`DataStreamConfig::group`).
    fn mounts(&self) -> Vec<(MountPoint, Arc<dyn Service>)> {
        let service: Arc<dyn Service> = Arc::new(DataStreamInbound {
            inner: self.inner.clone(),
        });
        vec![(
            MountPoint::group(peerwire_wire::Lane::DataStream, self.inner.cfg.group),
            service,
        )]
    }

    fn identity(&self) -> Option<peerwire::config::Identity> {
        Some(self.inner.cfg.identity)
    }
}
