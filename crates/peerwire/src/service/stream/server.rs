//! The server side of streaming methods: the `svc.stream` route's steps, handled as they
//! arrive (each in a task of its own, not on a handler), and the table of open streams.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use peerwire_wire::{Request as WireRequest, Status};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::codec::{self, Batch, Op};
use super::{BATCH_BYTES, INPUT_BUFFER, OUTPUT_BUFFER, STREAM_IDLE};

/// Batches the runner may have ready ahead of the `Next` calls: the method runs at most this
/// many batches (of up to [`BATCH_BYTES`], and at most [`OUTPUT_BUFFER`] replies each) ahead
/// of its reader, beside the batches of the `Next` window.
const OUTPUT_CHUNKS: usize = 2;
use crate::connection::{Connection, ReplySlot};
use crate::server::HandlerError;
use crate::server::Request;
use crate::service::engine::Engine;
use crate::service::envelope::{ServiceEnvelope, text};
use crate::service::protocol::{ErasedStreamMethod, Protocol};
use crate::service::stream::ItemStream;

/// A streaming method as the table knows it.
struct Entry {
    version: u32,
    engine: u8,
    method: Arc<dyn ErasedStreamMethod>,
}

/// One open stream.
struct Open {
    /// The connection that opened it (the only one that may use it).
    conn: u64,
    input: tokio::sync::Mutex<Input>,
    output: tokio::sync::Mutex<Output>,
    closed: CancellationToken,
    /// When a step last touched it (ms since the service started).
    touched: AtomicU64,
}

struct Input {
    tx: Option<mpsc::Sender<Bytes>>,
    next: u64,
    pending: BTreeMap<u64, (Vec<Bytes>, oneshot::Sender<()>)>,
    end_at: Option<u64>,
}

struct Output {
    rx: mpsc::Receiver<Chunk>,
    next: u64,
    done: Option<Option<(Status, String)>>,
}

/// What the method's runner hands the `Next` calls: replies already laid out as a batch (its
/// header left blank for the `Next` that takes it), or the stream's end.
pub(crate) enum Chunk {
    Items { count: u32, batch: Vec<u8> },
    End,
    Failed(Status, String),
}

/// The streaming methods of a server's protocols and its open streams.
pub(crate) struct StreamService {
    methods: HashMap<(String, String), Entry>,
    versions: HashMap<String, u32>,
    open: Mutex<HashMap<u64, Arc<Open>>>,
    next_id: AtomicU64,
    node_id: u64,
    max_context: usize,
    started: Instant,
}

impl std::fmt::Debug for StreamService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamService")
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

fn fail(conn: &Connection, slot: ReplySlot, id: u64, status: Status, message: String) {
    conn.fail(slot, id, status, 0, message);
}

impl StreamService {
    /// The streaming methods of `protocols`, if they have any.
    pub(crate) fn new(
        protocols: &[Protocol],
        node_id: u64,
        max_context: usize,
    ) -> Option<Arc<Self>> {
        let mut methods = HashMap::new();
        for p in protocols {
            for (name, m) in &p.methods {
                if let Some(stream) = &m.stream {
                    methods.insert(
                        (p.name.clone(), name.clone()),
                        Entry {
                            version: p.version,
                            engine: m.engine,
                            method: stream.clone(),
                        },
                    );
                }
            }
        }
        if methods.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            methods,
            versions: protocols
                .iter()
                .map(|p| (p.name.clone(), p.version))
                .collect(),
            open: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            node_id,
            max_context,
            started: Instant::now(),
        }))
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn find(&self, conn: &Connection, stream: u64) -> Result<Arc<Open>, String> {
        let open = self.open.lock().expect("streams lock poisoned");
        match open.get(&stream) {
            Some(s) if s.conn == conn.id() => {
                s.touched.store(self.now_ms(), Ordering::Relaxed);
                Ok(s.clone())
            }
            _ => Err(format!(
                "node {} has no open stream {stream} for this connection (closed, expired, or another connection's)",
                self.node_id
            )),
        }
    }

    fn remove(&self, stream: u64) {
        let removed = self
            .open
            .lock()
            .expect("streams lock poisoned")
            .remove(&stream);
        if let Some(s) = removed {
            s.closed.cancel();
            metrics::gauge!("peerwire_streams_open").decrement(1.0);
        }
    }

    /// Handles one step.
    pub(crate) fn on_request(
        self: &Arc<Self>,
        conn: &Connection,
        request: WireRequest,
        slot: ReplySlot,
    ) {
        let id = request.id;
        let op = match codec::decode(request.payload.clone()) {
            Ok(op) => op,
            Err(e) => return fail(conn, slot, id, Status::BadRequest, e.to_string()),
        };
        match op {
            Op::Open(envelope) => self.open(conn, request, envelope, slot),
            Op::Push { stream, seq, items } => match self.find(conn, stream) {
                Ok(s) => {
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        if push(&s, seq, items).await {
                            conn.reply(slot, id, Bytes::new());
                        } else {
                            fail(
                                &conn,
                                slot,
                                id,
                                Status::Cancelled,
                                "the stream was closed".into(),
                            );
                        }
                    });
                }
                Err(e) => fail(conn, slot, id, Status::BadRequest, e),
            },
            Op::End { stream, batches } => match self.find(conn, stream) {
                Ok(s) => {
                    let conn = conn.clone();
                    tokio::spawn(async move {
                        let mut input = s.input.lock().await;
                        input.end_at = Some(batches);
                        if input.next >= batches {
                            input.tx = None;
                        }
                        drop(input);
                        conn.reply(slot, id, Bytes::new());
                    });
                }
                Err(e) => fail(conn, slot, id, Status::BadRequest, e),
            },
            Op::Next { stream, max_bytes } => match self.find(conn, stream) {
                Ok(s) => {
                    let conn = conn.clone();
                    // Answer before the caller gives up: an empty batch asks it to ask again.
                    let budget = std::time::Duration::from_millis(u64::from(request.deadline_ms));
                    let until =
                        (request.deadline_ms > 0).then(|| Instant::now() + budget.mul_f64(0.9));
                    let service = self.clone();
                    // Batches are laid out by the runner at up to BATCH_BYTES; a caller asking
                    // for less still gets whole batches.
                    let _ = max_bytes;
                    tokio::spawn(async move {
                        let batch = next(&s, until).await;
                        s.touched.store(service.now_ms(), Ordering::Relaxed);
                        conn.reply(slot, id, batch);
                    });
                }
                Err(e) => fail(conn, slot, id, Status::BadRequest, e),
            },
            Op::Close { stream } => {
                if self.find(conn, stream).is_ok() {
                    self.remove(stream);
                }
                conn.reply(slot, id, Bytes::new());
            }
        }
    }

    /// Handles a one-way step (only `Close` is sent one-way).
    pub(crate) fn on_oneway(&self, conn: &Connection, payload: Bytes) {
        if let Ok(Op::Close { stream }) = codec::decode(payload)
            && self.find(conn, stream).is_ok()
        {
            self.remove(stream);
        }
    }

    fn open(
        self: &Arc<Self>,
        conn: &Connection,
        request: WireRequest,
        envelope: Bytes,
        slot: ReplySlot,
    ) {
        let id = request.id;
        let envelope = match ServiceEnvelope::decode(envelope) {
            Ok(e) => e,
            Err(e) => {
                return fail(
                    conn,
                    slot,
                    id,
                    Status::BadRequest,
                    format!("bad service envelope: {e}"),
                );
            }
        };
        let protocol = text(&envelope.protocol).to_owned();
        let method = text(&envelope.method).to_owned();
        let Some(entry) = self.methods.get(&(protocol.clone(), method.clone())) else {
            let (status, message) = match self.versions.get(&protocol) {
                None => (
                    Status::UnknownProtocol,
                    format!(
                        "node {} serves no protocol `{protocol}` with streaming methods",
                        self.node_id
                    ),
                ),
                Some(_) => (
                    Status::UnknownMethod,
                    format!("protocol `{protocol}` has no streaming method `{method}`"),
                ),
            };
            return fail(conn, slot, id, status, message);
        };
        if entry.version != envelope.protocol_version {
            return fail(
                conn,
                slot,
                id,
                Status::ProtocolVersionMismatch,
                format!(
                    "node {} serves `{protocol}` version {}, the stream is for version {}",
                    self.node_id, entry.version, envelope.protocol_version
                ),
            );
        }
        if entry.engine != envelope.engine {
            return fail(
                conn,
                slot,
                id,
                Status::BadRequest,
                format!("`{protocol}.{method}` is encoded with another engine"),
            );
        }
        if let Err(denied) = conn.check_access(crate::access::Access::Method {
            protocol: &protocol,
            method: &method,
        }) {
            return fail(conn, slot, id, Status::AccessDenied, denied.to_string());
        }
        let context = match crate::context::accept(
            request.context,
            self.max_context,
            crate::context::SERVER_SETTING,
        ) {
            Ok(c) => c,
            Err(message) => return fail(conn, slot, id, Status::BadRequest, message),
        };
        let stream = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (in_tx, in_rx) = if entry.method.takes_input() {
            let (tx, rx) = mpsc::channel(INPUT_BUFFER);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (out_tx, out_rx) = mpsc::channel(OUTPUT_CHUNKS);
        let open = Arc::new(Open {
            conn: conn.id(),
            input: tokio::sync::Mutex::new(Input {
                tx: in_tx,
                next: 0,
                pending: BTreeMap::new(),
                end_at: None,
            }),
            output: tokio::sync::Mutex::new(Output {
                rx: out_rx,
                next: 0,
                done: None,
            }),
            closed: CancellationToken::new(),
            touched: AtomicU64::new(self.now_ms()),
        });
        self.open
            .lock()
            .expect("streams lock poisoned")
            .insert(stream, open.clone());
        metrics::gauge!("peerwire_streams_open").increment(1.0);
        let call = Request {
            id: 0,
            route: Bytes::from_static(super::STREAM_ROUTE.as_bytes()),
            context: context.clone(),
            payload: Bytes::new(),
            deadline: None,
            oneway: false,
            connection: conn.clone(),
        };
        let span = crate::context::call_span(format!("{protocol}.{method}").as_bytes(), &context)
            .unwrap_or_else(tracing::Span::none);
        let run = entry
            .method
            .start(envelope.body, in_rx, call, out_tx, open.closed.clone());
        let run = tracing::Instrument::instrument(crate::context::scope(context, run), span);
        tokio::spawn(run);
        // The stream goes with its connection, or after STREAM_IDLE without a step.
        let service = self.clone();
        let watched = conn.clone();
        tokio::spawn(async move {
            let idle = STREAM_IDLE.as_millis() as u64;
            loop {
                tokio::select! {
                    () = watched.closed() => break,
                    () = open.closed.cancelled() => return,
                    () = tokio::time::sleep(STREAM_IDLE / 4) => {
                        if service.now_ms().saturating_sub(open.touched.load(Ordering::Relaxed)) > idle {
                            metrics::counter!("peerwire_streams_expired_total").increment(1);
                            break;
                        }
                    }
                }
            }
            service.remove(stream);
        });
        conn.reply(slot, id, Bytes::copy_from_slice(&stream.to_be_bytes()));
    }
}

/// Runs a method: encodes its replies straight into batches for `out` — a batch is handed on
/// when it is full or the method has nothing more ready — until it ends, fails, or the stream
/// is closed (which drops the method).
pub(crate) async fn run<E, R>(
    started: impl std::future::Future<Output = Result<ItemStream<R>, HandlerError>>,
    out: mpsc::Sender<Chunk>,
    closed: CancellationToken,
) where
    E: Engine<R>,
{
    let work = async {
        let mut replies = match started.await {
            Ok(s) => s,
            Err(e) => {
                let _ = out.send(Chunk::Failed(e.status(), e.message)).await;
                return;
            }
        };
        let fresh = || {
            let mut b = Vec::with_capacity(BATCH_BYTES + 4096);
            b.resize(Batch::HEAD, 0);
            b
        };
        let mut batch = fresh();
        let mut count = 0u32;
        loop {
            // Wait for a reply only with nothing pending; else take what is ready and hand the
            // batch on when the method would wait.
            let item = if count == 0 {
                replies.next().await
            } else {
                match replies.next().now_or_never() {
                    Some(item) => item,
                    None => {
                        let full = std::mem::replace(&mut batch, fresh());
                        if out.send(Chunk::Items { count, batch: full }).await.is_err() {
                            return;
                        }
                        count = 0;
                        continue;
                    }
                }
            };
            let end = match item {
                Some(Ok(reply)) => {
                    // The length first, filled in once the engine wrote the reply after it.
                    let at = batch.len();
                    batch.extend_from_slice(&[0; 4]);
                    if let Err(e) = E::encode(&reply, &mut batch) {
                        batch.truncate(at);
                        Chunk::Failed(
                            Status::HandlerFailed,
                            format!("a streamed reply does not encode: {e}"),
                        )
                    } else {
                        let len = (batch.len() - at - 4) as u32;
                        batch[at..at + 4].copy_from_slice(&len.to_be_bytes());
                        count += 1;
                        if batch.len() >= BATCH_BYTES || count as usize >= OUTPUT_BUFFER {
                            let full = std::mem::replace(&mut batch, fresh());
                            if out.send(Chunk::Items { count, batch: full }).await.is_err() {
                                return;
                            }
                            count = 0;
                        }
                        continue;
                    }
                }
                Some(Err(e)) => Chunk::Failed(e.status(), e.message),
                None => Chunk::End,
            };
            if count > 0 && out.send(Chunk::Items { count, batch }).await.is_err() {
                return;
            }
            let _ = out.send(end).await;
            return;
        }
    };
    tokio::select! {
        () = work => {}
        () = closed.cancelled() => {}
    }
}

/// Delivers push `seq`'s items to the method once every earlier push is delivered; true once
/// they are in, false if the stream was closed first.
async fn push(s: &Open, seq: u64, items: Vec<Bytes>) -> bool {
    let (done_tx, done_rx) = oneshot::channel();
    let deliver = async {
        let mut input = s.input.lock().await;
        input.pending.insert(seq, (items, done_tx));
        loop {
            let next = input.next;
            let Some((batch, done)) = input.pending.remove(&next) else {
                break;
            };
            if let Some(tx) = input.tx.clone() {
                for item in batch {
                    // A method that stopped reading drops the rest.
                    if tx.send(item).await.is_err() {
                        break;
                    }
                }
            }
            let _ = done.send(());
            input.next += 1;
            if input.end_at.is_some_and(|end| input.next >= end) {
                input.tx = None;
            }
        }
        drop(input);
        done_rx.await.is_ok()
    };
    tokio::select! {
        delivered = deliver => delivered,
        () = s.closed.cancelled() => false,
    }
}

/// The next batch of replies: waits for the runner's next batch (until `until`, then answers
/// an empty batch so the caller asks again), and stamps its header.
async fn next(s: &Open, until: Option<Instant>) -> Bytes {
    let mut output = s.output.lock().await;
    let seq = output.next;
    output.next += 1;
    if let Some(done) = &output.done {
        return Batch::encode(seq, 0, &[], true, done.as_ref());
    }
    let chunk = tokio::select! {
        chunk = output.rx.recv() => chunk.unwrap_or(Chunk::End),
        () = s.closed.cancelled() => Chunk::Failed(Status::Cancelled, "the stream was closed".to_owned()),
        () = sleep_until(until) => return Batch::encode(seq, 0, &[], false, None),
    };
    match chunk {
        Chunk::Items { count, mut batch } => {
            Batch::stamp(&mut batch, seq, count);
            Bytes::from(batch)
        }
        Chunk::End => {
            output.done = Some(None);
            Batch::encode(seq, 0, &[], true, None)
        }
        Chunk::Failed(status, message) => {
            let failure = (status, message);
            let reply = Batch::encode(seq, 0, &[], true, Some(&failure));
            output.done = Some(Some(failure));
            reply
        }
    }
}

async fn sleep_until(until: Option<Instant>) {
    match until {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
