//! The client side (Ratis's `DataStreamClient` / `DataStreamOutput` over
//! `NettyClientStreamRpc`): opens a stream at its primary and writes packets, each with a
//! future for its acknowledgement, at most `max_outstanding` unacknowledged.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use peerwire_wire::{StreamData, StreamFlags};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::codec::{self, FailureKind, OpenRequest, ReplicaBytes, StreamFailure, StreamRef};
use super::config::DataStreamConfig;
use super::error::DataStreamError;
use super::forward::{lane_client, pool_hash, send_abort};
use super::routing::RoutingTable;
use peerwire::client::{Client, Peer};
use peerwire::connection::{Connection, FileRegion, Route};
use peerwire::error::Error;

/// What an acknowledgement reports: the stream bytes every server on the route holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Stream bytes acknowledged (the end of the acknowledged packet).
    pub bytes: u64,
    /// Every server on the route, primary first, with the bytes it holds (all equal to
    /// `bytes`).
    pub replicas: Vec<ReplicaBytes>,
}

/// The final reply of a stream: what `close` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReply {
    /// The stream's name, for the application to link (for example in a raft entry).
    pub stream: StreamRef,
    /// Bytes written.
    pub bytes: u64,
    /// Every server on the route and the bytes it stored.
    pub replicas: Vec<ReplicaBytes>,
}

/// Opens data streams. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DataStreamClient {
    inner: Arc<ClientInner>,
}

#[derive(Debug)]
struct ClientInner {
    client: Client,
    cfg: DataStreamConfig,
    client_id: u64,
    next_stream: AtomicU64,
}

impl DataStreamClient {
    /// A client (identity usually anonymous: node id 0, but the cluster id must match).
    pub fn new(cfg: DataStreamConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let client = lane_client(&cfg, 1)?;
        let client_id = loop {
            let id = fastrand::u64(..);
            if id != 0 {
                break id;
            }
        };
        Ok(Self {
            inner: Arc::new(ClientInner {
                client,
                cfg,
                client_id,
                next_stream: AtomicU64::new(1),
            }),
        })
    }

    /// This client's random id (the first half of every [`StreamRef`] it opens).
    pub fn client_id(&self) -> u64 {
        self.inner.client_id
    }

    /// Opens a stream at `primary` (the address of `routing.primary()`), with an opaque
    /// `header` for the servers' sinks. Returns once every server on the route opened it;
    /// a bad route (unknown peer, wrong primary) is refused here.
    ///
    /// # Cancel safety
    ///
    /// If dropped after the request went out, the stream may open on the servers; with no
    /// packets, their idle timeout aborts it.
    pub async fn open(
        &self,
        primary: SocketAddr,
        header: Bytes,
        routing: RoutingTable,
    ) -> Result<DataStreamOutput, DataStreamError> {
        let inner = &self.inner;
        let stream = StreamRef {
            client_id: inner.client_id,
            stream_id: inner.next_stream.fetch_add(1, Ordering::Relaxed),
        };
        let node = routing.primary();
        let transport = |source: Error| DataStreamError::Primary {
            stream,
            node,
            source,
        };
        let connection = inner
            .client
            .connection(Peer::new(primary, node), Some(pool_hash(stream)))
            .await
            .map_err(transport)?;
        let timeout = inner.cfg.request_timeout;
        let open = OpenRequest {
            wire_id: stream.stream_id,
            stream,
            header,
            routing,
        };
        let reply = connection
            .call(Route::from(codec::OPEN), open.encode(), timeout)
            .await
            .map_err(transport)?;
        match codec::decode_reply(&reply) {
            Some(Ok(_)) => {}
            Some(Err(failure)) => return Err(DataStreamError::Failed { stream, failure }),
            None => return Err(DataStreamError::Malformed { stream, node }),
        }
        Ok(DataStreamOutput {
            conn: connection,
            stream,
            primary: node,
            offset: 0,
            outstanding: Arc::new(Semaphore::new(inner.cfg.max_outstanding)),
            max_outstanding: inner.cfg.max_outstanding,
            failed: Arc::new(Mutex::new(None)),
            closed: false,
            timeout,
            packet_size: inner.cfg.packet_size,
        })
    }

    /// Closes the client's connections (streams still open on them are aborted by the
    /// servers).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe; call again to finish.
    pub async fn shutdown(&self) {
        self.inner.client.shutdown().await;
    }
}

/// One open stream. Writes go out in order on one connection to the primary.
///
/// Dropping it without [`close`](Self::close) aborts the stream on every server.
#[derive(Debug)]
pub struct DataStreamOutput {
    conn: Connection,
    stream: StreamRef,
    primary: u64,
    offset: u64,
    outstanding: Arc<Semaphore>,
    max_outstanding: usize,
    failed: Arc<Mutex<Option<DataStreamError>>>,
    closed: bool,
    timeout: Duration,
    packet_size: usize,
}

impl DataStreamOutput {
    /// The stream's name.
    pub fn stream(&self) -> StreamRef {
        self.stream
    }

    /// Bytes handed to [`write`](Self::write) so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Packets written and not yet acknowledged.
    pub fn outstanding(&self) -> usize {
        self.max_outstanding - self.outstanding.available_permits()
    }

    /// Sends `data` as the next packet. Waits while `max_outstanding` packets are
    /// unacknowledged (back-pressure), then returns a future for this packet's
    /// acknowledgement, which may be awaited later or dropped (a later acknowledgement, or
    /// the close, covers it: acknowledgements come in order).
    ///
    /// `SYNC` asks every server to make the stream durable before acknowledging; `CLOSE`
    /// ends the stream (as [`close`](Self::close) does).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe while waiting for room: the packet was not sent.
    pub async fn write(
        &mut self,
        data: Bytes,
        flags: StreamFlags,
    ) -> Result<WriteAck, DataStreamError> {
        let checksum = crc32c::crc32c(&data);
        self.send(Payload::Memory(data), checksum, flags).await
    }

    async fn send(
        &mut self,
        payload: Payload,
        checksum: u32,
        flags: StreamFlags,
    ) -> Result<WriteAck, DataStreamError> {
        self.check_open()?;
        let permit = match tokio::time::timeout(
            self.timeout,
            self.outstanding.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            _ => {
                return Err(self.record(DataStreamError::Failed {
                    stream: self.stream,
                    failure: StreamFailure {
                        kind: FailureKind::Replica,
                        node: self.primary,
                        offset: self.offset,
                        message: format!(
                            "no acknowledgement for {:?} (setting `request_timeout`)",
                            self.timeout
                        ),
                    },
                }));
            }
        };
        self.check_open()?;
        let head = StreamData {
            id: 0,
            stream_id: self.stream.stream_id,
            flags,
            offset: self.offset,
            checksum,
            payload: Bytes::new(),
        };
        let until = Instant::now() + self.timeout;
        let (len, sent) = match payload {
            Payload::Memory(data) => (
                data.len() as u64,
                self.conn
                    .send_stream_data(
                        StreamData {
                            payload: data,
                            ..head
                        },
                        self.timeout,
                        until,
                        Some(permit),
                    )
                    .await,
            ),
            Payload::File(region) => (
                region.len as u64,
                self.conn
                    .send_stream_file(head, region, self.timeout, until, Some(permit))
                    .await,
            ),
        };
        let pending = sent.map_err(|source| {
            self.record(DataStreamError::Primary {
                stream: self.stream,
                node: self.primary,
                source,
            })
        })?;
        self.offset += len;
        if flags.contains(StreamFlags::CLOSE) {
            self.closed = true;
        }
        let (stream, node, failed) = (self.stream, self.primary, self.failed.clone());
        Ok(WriteAck {
            inner: Box::pin(async move {
                let result = match pending.wait().await {
                    Ok(bytes) => match codec::decode_reply(&bytes) {
                        Some(Ok(replicas)) => Ok(Ack {
                            bytes: replicas.first().map_or(0, |r| r.bytes),
                            replicas,
                        }),
                        Some(Err(failure)) => Err(DataStreamError::Failed { stream, failure }),
                        None => Err(DataStreamError::Malformed { stream, node }),
                    },
                    Err(source) => Err(DataStreamError::Primary {
                        stream,
                        node,
                        source,
                    }),
                };
                if let Err(e) = &result {
                    failed
                        .lock()
                        .expect("failed lock poisoned")
                        .get_or_insert_with(|| e.clone());
                }
                result
            }),
        })
    }

    /// Sends the file at `path` as the next packets (`packet_size` bytes each); `flags`
    /// apply to the last packet. Returns the last packet's acknowledgement future, which
    /// covers the whole file.
    ///
    /// Each packet's bytes go from the page cache to the socket with `sendfile` (on Linux
    /// over TCP), not through a user-space buffer; the CRC32C pass reads each packet through
    /// one reused buffer first. A file changed while it is sent fails the stream's checksum.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a part of the file may have been sent.
    pub async fn write_file(
        &mut self,
        path: impl AsRef<Path>,
        flags: StreamFlags,
    ) -> Result<WriteAck, DataStreamError> {
        let path = path.as_ref().to_path_buf();
        let file_error = |source: std::io::Error| DataStreamError::File {
            path: path.display().to_string(),
            source: Arc::new(source),
        };
        let opened = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&path)?;
                let len = file.metadata()?.len();
                Ok::<_, std::io::Error>((file, len))
            })
            .await
            .map_err(|e| file_error(std::io::Error::other(e)))?
            .map_err(file_error)?
        };
        let (file, len) = (Arc::new(opened.0), opened.1);
        let mut buf = Vec::new();
        let mut offset = 0u64;
        loop {
            let chunk = (len - offset).min(self.packet_size as u64) as usize;
            let (checksum, back) = {
                let file = file.clone();
                tokio::task::spawn_blocking(move || checksum_region(&file, offset, chunk, buf))
                    .await
                    .map_err(|e| file_error(std::io::Error::other(e)))?
                    .map_err(file_error)?
            };
            buf = back;
            let region = FileRegion {
                file: file.clone(),
                offset,
                len: chunk,
            };
            offset += chunk as u64;
            let last = offset == len;
            let ack = self
                .send(
                    Payload::File(region),
                    checksum,
                    if last { flags } else { StreamFlags::NONE },
                )
                .await?;
            if last {
                return Ok(ack);
            }
        }
    }

    /// Ends the stream and waits for the final acknowledgement: every server on the route
    /// holds every byte and closed its sink.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the close may have been sent.
    pub async fn close(mut self) -> Result<StreamReply, DataStreamError> {
        let ack = self.write(Bytes::new(), StreamFlags::CLOSE).await?.await?;
        Ok(StreamReply {
            stream: self.stream,
            bytes: ack.bytes,
            replicas: ack.replicas,
        })
    }

    fn check_open(&self) -> Result<(), DataStreamError> {
        if let Some(e) = self.failed.lock().expect("failed lock poisoned").as_ref() {
            return Err(e.clone());
        }
        if self.closed {
            return Err(DataStreamError::Closed {
                stream: self.stream,
            });
        }
        Ok(())
    }

    fn record(&self, e: DataStreamError) -> DataStreamError {
        self.failed
            .lock()
            .expect("failed lock poisoned")
            .get_or_insert_with(|| e.clone());
        e
    }
}

impl Drop for DataStreamOutput {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        // Abandoned: tell the primary now rather than leaving the stream to its idle timeout.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(send_abort(
            self.conn.clone(),
            self.stream.stream_id,
            self.timeout,
        ));
    }
}

/// Where a packet's payload comes from.
enum Payload {
    Memory(Bytes),
    File(FileRegion),
}

/// CRC32C of `len` bytes of `file` from `offset`, read through `buf` (returned for reuse).
fn checksum_region(
    file: &std::fs::File,
    offset: u64,
    len: usize,
    mut buf: Vec<u8>,
) -> std::io::Result<(u32, Vec<u8>)> {
    use std::os::unix::fs::FileExt;
    buf.resize(len.min(256 * 1024), 0);
    let mut crc = 0;
    let mut done = 0;
    while done < len {
        let want = (len - done).min(buf.len());
        let n = file.read_at(&mut buf[..want], offset + done as u64)?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than when it was opened",
            ));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n;
    }
    Ok((crc, buf))
}

/// The acknowledgement of one packet: resolves to the [`Ack`] or to the stream's failure.
#[must_use = "an acknowledgement may be dropped, but then a later one or the close must be awaited"]
pub struct WriteAck {
    inner: Pin<Box<dyn Future<Output = Result<Ack, DataStreamError>> + Send>>,
}

impl std::fmt::Debug for WriteAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteAck")
    }
}

impl Future for WriteAck {
    type Output = Result<Ack, DataStreamError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
