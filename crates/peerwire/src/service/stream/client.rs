//! The client side of streaming methods: opening a stream on one connection, pushing a
//! request stream through a window of `Push` calls, and [`ReplyStream`], which reads replies
//! through a window of `Next` calls and puts their batches back in order.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use tokio::time::Instant;

use super::codec::{self, Batch};
use super::{BATCH_BYTES, STREAM_ROUTE, WINDOW};
use crate::connection::Connection;
use crate::envelope::CodecError;
use crate::error::{Error, Unknown};
use crate::transport::BoxFuture;

/// How long one step may take when the stream has no deadline: a `Next` waiting on a slow
/// method is answered empty before this and asked again.
const STEP_DEADLINE: Duration = Duration::from_secs(30);

/// Opens a stream with `open` (the Open payload) on `conn`; its id.
pub(crate) async fn open_stream(
    conn: &Connection,
    open: Bytes,
    deadline: Duration,
) -> Result<u64, Error> {
    let reply = conn.call(STREAM_ROUTE, open, deadline).await?;
    let id: [u8; 8] = reply[..].try_into().map_err(|_| {
        Error::Codec(format!(
            "a stream's open answered {} bytes, not 8",
            reply.len()
        ))
    })?;
    Ok(u64::from_be_bytes(id))
}

fn step_deadline(until: Option<Instant>) -> Duration {
    until.map_or(STEP_DEADLINE, |u| {
        u.saturating_duration_since(Instant::now())
            .min(STEP_DEADLINE)
            .max(Duration::from_millis(1))
    })
}

/// Sends every item of `items` (encoded by `encode`) to stream `id` in batches, at most
/// [`WINDOW`] pushes in flight, then ends the input.
pub(crate) async fn push_all<Q, S>(
    conn: Connection,
    id: u64,
    items: S,
    encode: fn(&Q, &mut Vec<u8>) -> Result<(), CodecError>,
    until: Option<Instant>,
) -> Result<(), Error>
where
    S: Stream<Item = Q> + Send,
{
    let mut items = std::pin::pin!(items);
    let mut inflight = FuturesUnordered::new();
    let mut seq = 0u64;
    let mut scratch = Vec::new();
    let mut source_done = false;
    while !source_done {
        let Some(first) = items.next().await else {
            break;
        };
        let mut batch = BytesMut::with_capacity(BATCH_BYTES.min(64 * 1024) + 64);
        codec::push_header(id, seq, &mut batch);
        let mut add = |q: &Q, batch: &mut BytesMut| -> Result<(), Error> {
            scratch.clear();
            encode(q, &mut scratch)
                .map_err(|e| Error::Codec(format!("a streamed request: {e}")))?;
            codec::put_item(batch, &scratch);
            Ok(())
        };
        add(&first, &mut batch)?;
        // Take what is ready now, up to a batch.
        while batch.len() < BATCH_BYTES {
            match items.next().now_or_never() {
                Some(Some(q)) => add(&q, &mut batch)?,
                Some(None) => {
                    source_done = true;
                    break;
                }
                None => break,
            }
        }
        let conn2 = conn.clone();
        let payload = batch.freeze();
        let deadline = step_deadline(until);
        inflight.push(async move { conn2.call(STREAM_ROUTE, payload, deadline).await });
        seq += 1;
        while inflight.len() >= WINDOW {
            if let Some(r) = inflight.next().await {
                r?;
            }
        }
    }
    while let Some(r) = inflight.next().await {
        r?;
    }
    conn.call(STREAM_ROUTE, codec::end(id, seq), step_deadline(until))
        .await?;
    Ok(())
}

/// The replies of a streaming method, in order: each `Ok(reply)`, then the end, or an `Err`
/// as the last item (the method's error as `Remote`, a lost connection or the stream's
/// deadline as `Unknown`). A window of [`WINDOW`] `Next` calls is kept outstanding while it
/// is read, so the method runs at most that many batches ahead of the reader.
///
/// Dropping it before its end closes the stream on the server (the method is dropped) and
/// stops the requests still being pushed.
pub struct ReplyStream<R> {
    conn: Connection,
    id: u64,
    decode: fn(Bytes) -> Result<R, CodecError>,
    what: String,
    inflight: FuturesUnordered<BoxFuture<'static, Result<Bytes, Error>>>,
    batches: BTreeMap<u64, Batch>,
    next_seq: u64,
    ready: VecDeque<Bytes>,
    /// The batch that ends the stream arrived (in order).
    ended: bool,
    /// The error to yield once the ready replies are out.
    error: Option<Error>,
    done: bool,
    until: Option<Instant>,
    pusher: Option<tokio::task::JoinHandle<()>>,
}

impl<R> std::fmt::Debug for ReplyStream<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyStream")
            .field("stream", &self.id)
            .field("method", &self.what)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R> ReplyStream<R> {
    pub(crate) fn new(
        conn: Connection,
        id: u64,
        decode: fn(Bytes) -> Result<R, CodecError>,
        what: String,
        until: Option<Instant>,
        pusher: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        Self {
            conn,
            id,
            decode,
            what,
            inflight: FuturesUnordered::new(),
            batches: BTreeMap::new(),
            next_seq: 0,
            ready: VecDeque::new(),
            ended: false,
            error: None,
            done: false,
            until,
            pusher,
        }
    }

    fn ask(&self) -> BoxFuture<'static, Result<Bytes, Error>> {
        let conn = self.conn.clone();
        let payload = codec::next(self.id, BATCH_BYTES as u32);
        let deadline = step_deadline(self.until);
        Box::pin(async move { conn.call(STREAM_ROUTE, payload, deadline).await })
    }

    fn finish(&mut self) {
        self.done = true;
        self.inflight = FuturesUnordered::new();
        if let Some(p) = self.pusher.take() {
            p.abort();
        }
    }
}

impl<R> Stream for ReplyStream<R> {
    type Item = Result<R, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                let what = &this.what;
                return Poll::Ready(Some(
                    (this.decode)(bytes)
                        .map_err(|e| Error::Codec(format!("a reply of `{what}`: {e}"))),
                ));
            }
            if this.done {
                return Poll::Ready(None);
            }
            if let Some(e) = this.error.take() {
                this.finish();
                return Poll::Ready(Some(Err(e)));
            }
            if let Some(batch) = this.batches.remove(&this.next_seq) {
                this.next_seq += 1;
                this.ready.extend(batch.items);
                if let Some((status, message)) = batch.failure {
                    this.error = Some(Error::Remote {
                        peer: this.conn.peer().addr,
                        status,
                        message,
                    });
                    this.ended = true;
                } else if batch.ended {
                    this.ended = true;
                }
                continue;
            }
            if this.ended {
                this.finish();
                continue;
            }
            if this.until.is_some_and(|u| Instant::now() >= u) {
                let deadline = this.until.map_or(Duration::ZERO, |u| {
                    u.saturating_duration_since(Instant::now())
                });
                this.error = Some(Error::Unknown {
                    peer: this.conn.peer().addr,
                    reason: Unknown::DeadlineExceeded { deadline },
                });
                this.ended = true;
                continue;
            }
            while this.inflight.len() < WINDOW {
                let next = this.ask();
                this.inflight.push(next);
            }
            match this.inflight.poll_next_unpin(cx) {
                Poll::Ready(Some(Ok(bytes))) => match Batch::decode(bytes) {
                    Ok(batch) => {
                        this.batches.insert(batch.seq, batch);
                    }
                    Err(e) => {
                        this.error = Some(Error::Codec(format!("a batch of `{}`: {e}", this.what)));
                        this.ended = true;
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.error = Some(e);
                    this.ended = true;
                }
                Poll::Ready(None) | Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<R> Drop for ReplyStream<R> {
    fn drop(&mut self) {
        if let Some(p) = self.pusher.take() {
            p.abort();
        }
        // Frees the stream on the server (and stops its method if it still runs). Should the
        // one-way message be lost with its connection, the server drops the stream with the
        // connection, or after STREAM_IDLE.
        let _ = self.conn.send_oneway(STREAM_ROUTE, codec::close(self.id));
    }
}
