//! The server side (Spark's `StreamManager` and the chunk-fetch and stream-request branches of
//! its `TransportRequestHandler`): registered streams served on the pull lane.
//!
//! - `pull.open` resolves a name to a stream bound to the asking connection;
//! - `pull.info` describes a stream;
//! - `pull.chunk` answers one chunk: a slice of a buffer, a file region sent with `sendfile`
//!   (its CRC32C computed at registration), or a producer's next chunk;
//! - `pull.close` releases a stream.
//!
//! Every request is checked against the stream's [`Reader`]. Streams die with the connection
//! they are bound to, when closed, after a producer's last chunk, or unread past
//! [`PullConfig::idle_timeout`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerwire::config::Identity;
use peerwire::connection::{Connection, FileRegion, PeerInfo, ReplySlot, Service};
use peerwire::mount::{MountPoint, Mountable};
use peerwire_wire::{Lane, Request, Status};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::codec::{self, CHUNK_HEAD_LEN, ChunkHead, ErrorCode, Refusal, StreamId, StreamInfo};
use super::registry::{Entry, Reader, Registry, Released};
use super::source::{Kind, Prepared, Produced, Source};

/// A stream manager's settings.
#[derive(Debug, Clone)]
pub struct PullConfig {
    /// Bytes per chunk (the last may be shorter). Each chunk is one reply, so it must fit the
    /// readers' frames (`max_frame_body`, 16 MiB by default) to go by `sendfile`; 1 MiB by
    /// default, Spark's usual shuffle block scale.
    pub chunk_size: usize,
    /// A stream nobody read for this long is released (Spark leaked such streams until the
    /// channel closed). Default 120 s.
    pub idle_timeout: Duration,
    /// Most streams held at once; a registration past it is refused. Default 4,096.
    pub max_streams: usize,
    /// The group of the pull lane this manager serves (several managers share a port by
    /// group). Default 0.
    pub group: u64,
    /// The identity of the server the manager is mounted on, when it must match.
    pub identity: Option<Identity>,
}

impl Default for PullConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1 << 20,
            idle_timeout: Duration::from_secs(120),
            max_streams: 4096,
            group: 0,
            identity: None,
        }
    }
}

/// Why a stream could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// Reading the source for its checksums failed.
    #[error("reading the stream's source: {0}")]
    Io(#[from] io::Error),
    /// The manager holds `PullConfig::max_streams` streams.
    #[error("{0}")]
    TooManyStreams(String),
}

/// Why a name could not be opened (what a [`Resolve`] answers).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No stream of that name.
    #[error("{0}")]
    NoSuchName(String),
    /// The name exists, but not for this reader.
    #[error("{0}")]
    NotAllowed(String),
    /// The source could not be read.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The future a [`Resolve`] returns.
pub type Resolving = Pin<Box<dyn Future<Output = Result<Source, OpenError>> + Send>>;

/// Turns the names readers open into sources (Spark's `StreamManager.openStream(streamId)`
/// for stream requests; the RpcEnv file server is one).
pub trait Resolve: Send + Sync + 'static {
    /// The source named `name`, for the reader `peer`.
    fn resolve(&self, peer: &PeerInfo, name: &str) -> Resolving;
}

impl<F> Resolve for F
where
    F: Fn(&PeerInfo, &str) -> Resolving + Send + Sync + 'static,
{
    fn resolve(&self, peer: &PeerInfo, name: &str) -> Resolving {
        self(peer, name)
    }
}

/// A buffer or file made ready once (checksums computed), to register as many times as it is
/// read ([`Source::from`]).
#[derive(Clone)]
pub struct PreparedSource(pub(crate) Arc<Prepared>);

impl std::fmt::Debug for PreparedSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (len, crc, _) = self.0.describe();
        f.debug_struct("PreparedSource")
            .field("len", &len)
            .field("crc32c", &crc)
            .finish()
    }
}

impl From<PreparedSource> for Source {
    fn from(p: PreparedSource) -> Self {
        Self(Kind::Ready(p.0))
    }
}

struct Inner {
    cfg: PullConfig,
    registry: Registry,
    resolver: RwLock<Option<Arc<dyn Resolve>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Serves registered streams on the pull lane. Mount it on a server with
/// [`ServerBuilder::mount_all`](peerwire::ServerBuilder::mount_all); clones share the streams.
#[derive(Clone)]
pub struct StreamManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for StreamManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamManager")
            .field("streams", &self.inner.registry.len())
            .finish_non_exhaustive()
    }
}

impl StreamManager {
    /// A manager with `cfg`, whose sweeper of idle streams runs on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime, or with a chunk size of 0.
    pub fn new(cfg: PullConfig) -> Self {
        assert!(
            cfg.chunk_size > 0,
            "PullConfig::chunk_size must be positive"
        );
        let inner = Arc::new(Inner {
            registry: Registry::new(cfg.max_streams),
            resolver: RwLock::new(None),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            cfg,
        });
        let every =
            (inner.cfg.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(5));
        tokio::spawn(sweep(Arc::downgrade(&inner), inner.stop.clone(), every));
        Self { inner }
    }

    /// Serves names readers open through `resolver` (replacing any earlier one).
    pub fn set_resolver(&self, resolver: impl Resolve) {
        *self.inner.resolver.write().expect("resolver poisoned") = Some(Arc::new(resolver));
    }

    /// Makes a buffer or file ready to register many times (checksums computed once).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing is registered.
    pub async fn prepare(&self, source: Source) -> io::Result<PreparedSource> {
        if matches!(source.0, Kind::Producer(_)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a producer is read once: register it instead of preparing it",
            ));
        }
        Ok(PreparedSource(
            Prepared::new(source, self.inner.cfg.chunk_size).await?,
        ))
    }

    /// Registers `source` for `reader` and returns its id and description. A file is read
    /// once here for its checksums.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a registration cancelled before it returns leaves nothing registered.
    pub async fn register(
        &self,
        source: Source,
        reader: Reader,
    ) -> Result<StreamInfo, RegisterError> {
        let prepared = Prepared::new(source, self.inner.cfg.chunk_size).await?;
        let id = self
            .inner
            .registry
            .insert(prepared.clone(), reader)
            .map_err(|r| RegisterError::TooManyStreams(r.message))?;
        Ok(self.inner.info(id, &prepared))
    }

    /// Releases stream `id`; whether it was registered.
    pub fn release(&self, id: StreamId) -> bool {
        self.inner.registry.remove(id, Released::Closed)
    }

    /// How many streams are registered.
    pub fn streams(&self) -> usize {
        self.inner.registry.len()
    }

    /// Stops the sweeper and waits for chunk fetches in progress.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the sweeper is stopped either way.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn sweep(inner: Weak<Inner>, stop: CancellationToken, every: Duration) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let Some(inner) = inner.upgrade() else { return };
        inner.registry.expire(inner.cfg.idle_timeout);
    }
}

impl Inner {
    fn info(&self, id: StreamId, source: &Prepared) -> StreamInfo {
        let (len, crc32c, random_access) = source.describe();
        StreamInfo {
            id,
            len,
            chunk_size: u32::try_from(self.cfg.chunk_size).unwrap_or(u32::MAX),
            crc32c,
            random_access,
        }
    }

    /// Answers a chunk fetch of `entry`.
    async fn chunk(
        &self,
        conn: &Connection,
        entry: &Entry,
        index: u64,
        slot: ReplySlot,
        call: u64,
    ) {
        let size = self.cfg.chunk_size;
        let out_of_range = |chunks: u64| {
            Refusal::new(
                ErrorCode::OutOfRange,
                format!("the stream has {chunks} chunk(s)"),
            )
        };
        match &*entry.source {
            Prepared::Bytes { data, sums } => {
                let Some(&crc32c) = usize::try_from(index).ok().and_then(|i| sums.chunks.get(i))
                else {
                    return refuse(conn, slot, call, &out_of_range(sums.chunks.len() as u64));
                };
                let start = (index as usize) * size;
                let end = (start + size).min(data.len());
                let last = index + 1 == sums.chunks.len() as u64;
                served("bytes", end - start);
                let head = codec::encode_chunk_head(ChunkHead { last, crc32c });
                // The chunk goes from the registered buffer as it is, behind its head.
                conn.reply_with_head(slot, call, head, data.slice(start..end));
            }
            Prepared::File { file, len, sums } => {
                let Some(&crc32c) = usize::try_from(index).ok().and_then(|i| sums.chunks.get(i))
                else {
                    return refuse(conn, slot, call, &out_of_range(sums.chunks.len() as u64));
                };
                let offset = index * size as u64;
                let n = (*len - offset.min(*len)).min(size as u64) as usize;
                let last = index + 1 == sums.chunks.len() as u64;
                let head = codec::encode_chunk_head(ChunkHead { last, crc32c });
                served("file", n);
                if CHUNK_HEAD_LEN + n <= conn.peer_max_frame_body() {
                    let region = FileRegion {
                        file: file.clone(),
                        offset,
                        len: n,
                    };
                    conn.reply_file(slot, call, head, region);
                    return;
                }
                // The reader's frames are smaller than a chunk: read it and reply in parts.
                let f = file.clone();
                let read = tokio::task::spawn_blocking(move || {
                    use std::os::unix::fs::FileExt;
                    let mut buf = BytesMut::zeroed(CHUNK_HEAD_LEN + n);
                    buf[..CHUNK_HEAD_LEN].copy_from_slice(&head);
                    f.read_exact_at(&mut buf[CHUNK_HEAD_LEN..], offset)
                        .map(|()| buf.freeze())
                })
                .await;
                match read {
                    Ok(Ok(payload)) => conn.reply(slot, call, payload),
                    Ok(Err(e)) => refuse(
                        conn,
                        slot,
                        call,
                        &Refusal::new(ErrorCode::Io, e.to_string()),
                    ),
                    Err(e) => refuse(
                        conn,
                        slot,
                        call,
                        &Refusal::new(ErrorCode::Io, e.to_string()),
                    ),
                }
            }
            Prepared::Producer(producer) => match tokio::select! {
                p = producer.chunk(index, size) => p,
                _ = entry.released.cancelled() => {
                    let r = Refusal::new(ErrorCode::UnknownStream, "released while this chunk waited for earlier ones");
                    return refuse(conn, slot, call, &r);
                }
            } {
                Produced::Chunk { data, last } => {
                    served("producer", data.len());
                    let crc32c = crc32c::crc32c(&data);
                    let head = codec::encode_chunk_head(ChunkHead { last, crc32c });
                    conn.reply_with_head(slot, call, head, data);
                    if last {
                        self.registry.remove(entry.id, Released::Finished);
                    }
                }
                Produced::Gone { next } => refuse(
                    conn,
                    slot,
                    call,
                    &Refusal::new(
                        ErrorCode::OutOfOrder,
                        format!("a producer's chunks are read once, in order; the next is {next}"),
                    ),
                ),
                Produced::PastEnd { last } => refuse(
                    conn,
                    slot,
                    call,
                    &Refusal::new(
                        ErrorCode::OutOfRange,
                        format!("the producer's last chunk was {last}"),
                    ),
                ),
                Produced::Failed(why) => {
                    self.registry.remove(entry.id, Released::Finished);
                    refuse(
                        conn,
                        slot,
                        call,
                        &Refusal::new(ErrorCode::ProducerFailed, why),
                    );
                }
            },
        }
    }

    async fn open(&self, conn: &Connection, name: &str) -> Result<Bytes, Refusal> {
        let resolver = self.resolver.read().expect("resolver poisoned").clone();
        let Some(resolver) = resolver else {
            return Err(Refusal::new(
                ErrorCode::NoSuchName,
                "this server opens no streams by name",
            ));
        };
        let source = resolver
            .resolve(conn.peer(), name)
            .await
            .map_err(|e| match e {
                OpenError::NoSuchName(m) => Refusal::new(ErrorCode::NoSuchName, m),
                OpenError::NotAllowed(m) => Refusal::new(ErrorCode::NotAllowed, m),
                OpenError::Io(e) => Refusal::new(ErrorCode::Io, e.to_string()),
            })?;
        let prepared = Prepared::new(source, self.cfg.chunk_size)
            .await
            .map_err(|e| Refusal::new(ErrorCode::Io, e.to_string()))?;
        let id = self
            .registry
            .insert(prepared.clone(), Reader::Connection(conn.id()))?;
        if !conn.is_open() {
            // It closed while the name resolved: its release has already run.
            self.registry.remove(id, Released::Disconnected);
        }
        Ok(codec::encode_info(&self.info(id, &prepared)))
    }
}

fn served(source: &'static str, bytes: usize) {
    metrics::counter!("peerwire_pull_chunks_served_total", "source" => source).increment(1);
    metrics::counter!("peerwire_pull_bytes_served_total", "source" => source)
        .increment(bytes as u64);
}

fn refuse(conn: &Connection, slot: ReplySlot, call: u64, r: &Refusal) {
    metrics::counter!("peerwire_pull_refusals_total", "code" => r.code.label()).increment(1);
    conn.reply(slot, call, r.encode());
}

/// The manager as the pull lane's service.
struct PullService(Arc<Inner>);

impl Service for PullService {
    fn on_request(&self, conn: &Connection, request: Request, slot: ReplySlot) {
        let inner = &self.0;
        let call = request.id;
        let peer = conn.peer();
        let entry = |id| inner.registry.get(id, conn.id(), peer.node_id);
        match &request.route[..] {
            r if r == codec::CHUNK_ROUTE.as_bytes() => {
                let found = codec::decode_chunk_request(request.payload)
                    .and_then(|(id, index)| Ok((entry(id)?, index)));
                match found {
                    Ok((entry, index)) => {
                        let (inner, conn) = (inner.clone(), conn.clone());
                        inner.clone().tasks.spawn(async move {
                            // A fetch of a later producer chunk may wait for earlier ones:
                            // never past its connection or the manager.
                            tokio::select! {
                                () = inner.chunk(&conn, &entry, index, slot, call) => {}
                                () = conn.closed() => {}
                                () = inner.stop.cancelled() => {}
                            }
                        });
                    }
                    Err(r) => refuse(conn, slot, call, &r),
                }
            }
            r if r == codec::INFO_ROUTE.as_bytes() => {
                match codec::decode_id(request.payload).and_then(entry) {
                    Ok(e) => {
                        conn.reply(slot, call, codec::encode_info(&inner.info(e.id, &e.source)))
                    }
                    Err(r) => refuse(conn, slot, call, &r),
                }
            }
            r if r == codec::CLOSE_ROUTE.as_bytes() => {
                match codec::decode_id(request.payload).and_then(entry) {
                    Ok(e) => {
                        inner.registry.remove(e.id, Released::Closed);
                        conn.reply(slot, call, Bytes::from_static(&[0]));
                    }
                    Err(r) => refuse(conn, slot, call, &r),
                }
            }
            r if r == codec::OPEN_ROUTE.as_bytes() => {
                let Ok(name) = String::from_utf8(request.payload.to_vec()) else {
                    return refuse(
                        conn,
                        slot,
                        call,
                        &Refusal::new(ErrorCode::BadRequest, "a stream name is UTF-8"),
                    );
                };
                let (inner, conn) = (inner.clone(), conn.clone());
                inner.clone().tasks.spawn(async move {
                    match inner.open(&conn, &name).await {
                        Ok(info) => conn.reply(slot, call, info),
                        Err(r) => refuse(&conn, slot, call, &r),
                    }
                });
            }
            other => conn.fail(
                slot,
                call,
                Status::UnknownRoute,
                0,
                format!(
                    "no route `{}` on the pull lane",
                    String::from_utf8_lossy(other)
                ),
            ),
        }
    }

    fn on_disconnected(&self, conn: &Connection, _why: &str) {
        self.0.registry.release_connection(conn.id());
    }
}

impl Mountable for StreamManager {
    fn mounts(&self) -> Vec<(MountPoint, Arc<dyn Service>)> {
        vec![(
            MountPoint::group(Lane::Pull, self.inner.cfg.group),
            Arc::new(PullService(self.inner.clone())),
        )]
    }

    fn identity(&self) -> Option<Identity> {
        self.inner.cfg.identity
    }
}
