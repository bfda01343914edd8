//! What can go wrong pulling a stream, each case its own variant.

use std::net::SocketAddr;

use super::codec::{ErrorCode, Malformed, Refusal, StreamId};

/// A pull that failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PullError {
    /// The server holds no stream of that id: never registered, released (its reader's
    /// connection closed, it was closed, it sat unread past the idle timeout), or guessed.
    #[error("{peer} holds no stream {id}: {message}")]
    UnknownStream {
        /// The server.
        peer: SocketAddr,
        /// The stream.
        id: StreamId,
        /// The server's words.
        message: String,
    },
    /// The stream exists but is bound to another reader (another connection or node).
    #[error("{peer} refused stream {id} to this reader: {message}")]
    NotAllowed {
        /// The server.
        peer: SocketAddr,
        /// The stream.
        id: StreamId,
        /// The server's words.
        message: String,
    },
    /// The server's resolver knows no stream of that name.
    #[error("{peer} has no stream named {name:?}: {message}")]
    NoSuchName {
        /// The server.
        peer: SocketAddr,
        /// The name asked for.
        name: String,
        /// The server's words.
        message: String,
    },
    /// A chunk index past the stream's end.
    #[error("chunk {index} of stream {id} is past its end: {message}")]
    OutOfRange {
        /// The stream.
        id: StreamId,
        /// The chunk asked for.
        index: u64,
        /// The server's words.
        message: String,
    },
    /// A producer's chunk fetched again or out of order: a producer's chunks are read once,
    /// in order.
    #[error("chunk {index} of stream {id} cannot be fetched now: {message}")]
    OutOfOrder {
        /// The stream.
        id: StreamId,
        /// The chunk asked for.
        index: u64,
        /// The server's words.
        message: String,
    },
    /// Reading from an offset other than 0 needs a stream with random access and a known
    /// length (a buffer or a file).
    #[error("stream {id} is a producer's: it can be read only from its start")]
    NotSeekable {
        /// The stream.
        id: StreamId,
    },
    /// The server failed to read the stream's data (a file that went away, a producer that
    /// failed).
    #[error("{peer} failed to read stream {id}: {message}")]
    Source {
        /// The server.
        peer: SocketAddr,
        /// The stream.
        id: StreamId,
        /// The server's words.
        message: String,
    },
    /// The server holds as many streams as it is configured to.
    #[error("{peer} holds too many streams: {message}")]
    TooManyStreams {
        /// The server.
        peer: SocketAddr,
        /// The server's words.
        message: String,
    },
    /// A chunk's data does not match its CRC32C: corrupted on the way or in the source.
    #[error(
        "chunk {index} of stream {id} is corrupt: CRC32C {actual:08x}, expected {expected:08x}"
    )]
    Checksum {
        /// The stream.
        id: StreamId,
        /// The chunk.
        index: u64,
        /// The CRC32C the server sent.
        expected: u32,
        /// The CRC32C of the bytes received.
        actual: u32,
    },
    /// The whole stream's CRC32C or length differs from what its info promised (its source
    /// changed while it was read).
    #[error("stream {id} does not match its description: {what}")]
    Mismatch {
        /// The stream.
        id: StreamId,
        /// What differs.
        what: String,
    },
    /// The server broke the pull protocol (or the request did not reach a stream manager).
    #[error("{peer}: {message}")]
    Protocol {
        /// The server.
        peer: SocketAddr,
        /// What was wrong.
        message: String,
    },
    /// The call itself failed (connection, deadline, busy server).
    #[error(transparent)]
    Transport(#[from] peerwire::Error),
}

impl PullError {
    /// The client-side error for a server's refusal of a request about `id` (or name).
    pub(crate) fn refused(
        peer: SocketAddr,
        id: StreamId,
        index: u64,
        name: Option<&str>,
        r: Refusal,
    ) -> Self {
        let message = r.message;
        match r.code {
            ErrorCode::UnknownStream => Self::UnknownStream { peer, id, message },
            ErrorCode::NotAllowed => Self::NotAllowed { peer, id, message },
            ErrorCode::NoSuchName => Self::NoSuchName {
                peer,
                name: name.unwrap_or_default().to_owned(),
                message,
            },
            ErrorCode::OutOfRange => Self::OutOfRange { id, index, message },
            ErrorCode::OutOfOrder => Self::OutOfOrder { id, index, message },
            ErrorCode::Io | ErrorCode::ProducerFailed => Self::Source { peer, id, message },
            ErrorCode::TooManyStreams => Self::TooManyStreams { peer, message },
            ErrorCode::BadRequest => Self::Protocol { peer, message },
        }
    }

    pub(crate) fn malformed(peer: SocketAddr, m: Malformed) -> Self {
        Self::Protocol {
            peer,
            message: m.to_string(),
        }
    }
}
