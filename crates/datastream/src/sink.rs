//! Where a server puts stream bytes: the application's [`DataSink`] (Ratis's
//! `StateMachine.DataApi` / `DataChannel`). peerwire calls it in order for each stream —
//! create, then writes (and syncs) in stream order, then exactly one of close or abort.

use std::future::Future;

use bytes::Bytes;

use super::codec::StreamRef;
use super::routing::RoutingTable;

/// A sink's failure; the stream fails with [`FailureKind::Sink`](super::FailureKind::Sink)
/// naming this server.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// What a sink learns about a new stream.
#[derive(Debug, Clone)]
pub struct StreamInfo {
    /// The stream's name on every server.
    pub stream: StreamRef,
    /// The client's opaque header.
    pub header: Bytes,
    /// The stream's route.
    pub routing: RoutingTable,
    /// Whether this server is the stream's primary.
    pub primary: bool,
}

/// The application's storage for streams. One per server.
pub trait DataSink: Send + Sync + 'static {
    /// One stream's storage.
    type Stream: SinkStream<Closed = Self::Closed>;
    /// What a closed stream leaves for the application (a path, an id), kept until the
    /// application takes it with `DataStreamServer::take_closed`.
    type Closed: Send + 'static;

    /// Creates the storage of a new stream. An error refuses the open.
    ///
    /// # Cancel safety
    ///
    /// Not cancelled by peerwire except when the server stops.
    fn create(
        &self,
        info: &StreamInfo,
    ) -> impl Future<Output = Result<Self::Stream, SinkError>> + Send;

    /// A closed stream was not taken within `link_timeout` (or never will be): free it.
    /// The default drops it.
    ///
    /// # Cancel safety
    ///
    /// Not cancelled by peerwire except when the server stops.
    fn discard(&self, closed: Self::Closed) -> impl Future<Output = ()> + Send {
        drop(closed);
        async {}
    }
}

/// The storage of one stream.
pub trait SinkStream: Send + 'static {
    /// What closing leaves (see [`DataSink::Closed`]).
    type Closed: Send + 'static;

    /// Appends `data`, the next bytes of the stream. The acknowledgement of the packet
    /// waits for this to finish.
    ///
    /// # Cancel safety
    ///
    /// Not cancelled by peerwire except when the server stops (then `abort` is not called).
    fn write(&mut self, data: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Makes everything written so far durable (a `SYNC` packet).
    ///
    /// # Cancel safety
    ///
    /// As [`SinkStream::write`].
    fn sync(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Finishes the stream (a `CLOSE` packet, after its bytes were written).
    ///
    /// # Cancel safety
    ///
    /// As [`SinkStream::write`].
    fn close(self) -> impl Future<Output = Result<Self::Closed, SinkError>> + Send;

    /// Throws the stream away: it failed, its client aborted it, or it was idle too long.
    ///
    /// # Cancel safety
    ///
    /// As [`SinkStream::write`].
    fn abort(self, reason: String) -> impl Future<Output = ()> + Send;
}
