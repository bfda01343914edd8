//! Streaming methods: a method that takes a stream of requests, gives a stream of replies, or
//! both (client, server and bidirectional streaming), over the same multiplexed connection as
//! every other call.
//!
//! A stream is a handful of ordinary calls on the `svc.stream` route (`stream/codec.rs` and
//! docs/PROTOCOL.md have the payloads): `Open` starts the method in a task of its own on the
//! server and answers with the stream's id; the client then keeps a window of `Next` calls
//! outstanding, each answered with a batch of replies (up to 256 KiB), and, for a method that
//! takes a stream, a window of `Push` calls, each answered once its requests are in the
//! method's input. So:
//!
//! - **Flow control**: the server lays the method's replies out as batches (of at most
//!   [`OUTPUT_BUFFER`] replies and [`BATCH_BYTES`]) and runs it at most two batches ahead of
//!   the `Next` window (and the one it is filling), and a client pushes at
//!   most [`WINDOW`] batches beyond what the method has taken (its input holds
//!   [`INPUT_BUFFER`] requests): a slow reader or a slow method holds the other side back,
//!   and memory stays bounded whatever the stream's length.
//! - **Cancellation**: dropping the client's [`ReplyStream`] (or the request stream's
//!   consumer) sends `Close`, which drops the method's task on the server; a method that
//!   fails ends the stream with its error on the client. A stream is also dropped when its
//!   connection closes or it sees no call for [`STREAM_IDLE`].
//! - **Deadlines**: `CallOptions::deadline` bounds the whole stream; past it, the client's
//!   stream ends with `Unknown(DeadlineExceeded)` and the server's side is closed.
//! - **Outcomes**: opening ends as any call does (`NotExecuted`, `Remote`, `Unknown`); a
//!   reply stream yields its replies, then ends, or yields the method's error (`Remote`) or a
//!   lost connection (`Unknown`) as its last item.
//!
//! Steps are calls, so a stream's calls share the connection's scheduling, limits and context
//! with every other call. Its steps are not queued behind the handlers: they run in tasks of
//! their own, so a stream waiting on a slow peer holds no handler.

mod client;
pub(crate) mod codec;
pub(crate) mod server;

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use peerwire_wire::Status;
use tokio::sync::mpsc;

pub use client::ReplyStream;
pub(crate) use client::{open_stream, push_all};
pub(crate) use server::StreamService;

use crate::envelope::CodecError;
use crate::server::HandlerError;

/// The route stream steps travel on.
pub(crate) const STREAM_ROUTE: &str = "svc.stream";

/// Calls of one stream in flight each way (`Next` calls; `Push` calls).
pub const WINDOW: usize = 4;
/// The most bytes of items in one batch (one `Next` reply or one `Push`).
pub const BATCH_BYTES: usize = 256 * 1024;
/// The most replies in one batch (the server hands a batch on when it is full or the method
/// has nothing more ready).
pub const OUTPUT_BUFFER: usize = 1024;
/// Requests waiting for a method that takes a stream.
pub const INPUT_BUFFER: usize = 256;
/// A stream that sees no call for this long is dropped by its server.
pub const STREAM_IDLE: Duration = Duration::from_secs(60);

/// What a server-streaming or bidirectional method returns: its replies, each `Ok`, or an
/// `Err` that ends the stream with that error on the client.
pub type ItemStream<R> = futures::stream::BoxStream<'static, Result<R, HandlerError>>;

/// The requests a client-streaming or bidirectional method reads, in the order the client
/// sent them; it ends when the client's request stream ends. A request that does not decode
/// is an `Err` (`BadRequest`) in its place.
pub struct Streaming<Q> {
    rx: mpsc::Receiver<Bytes>,
    decode: fn(Bytes) -> Result<Q, CodecError>,
    engine: &'static str,
}

impl<Q> std::fmt::Debug for Streaming<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming").finish_non_exhaustive()
    }
}

impl<Q> Streaming<Q> {
    pub(crate) fn new(
        rx: mpsc::Receiver<Bytes>,
        decode: fn(Bytes) -> Result<Q, CodecError>,
        engine: &'static str,
    ) -> Self {
        Self { rx, decode, engine }
    }
}

impl<Q> Stream for Streaming<Q> {
    type Item = Result<Q, HandlerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(bytes)) => {
                Poll::Ready(Some((self.decode)(bytes).map_err(|e| HandlerError {
                    status: Status::BadRequest,
                    message: format!("a streamed request does not decode as {}: {e}", self.engine),
                    retry_after: None,
                })))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
