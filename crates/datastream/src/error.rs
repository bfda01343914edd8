//! The data-stream client's error type.

use std::sync::Arc;

use super::codec::{StreamFailure, StreamRef};
use super::routing::RoutingError;

/// Why a data-stream operation failed. Every variant names the stream, and where a server is
/// to blame, the server ([`DataStreamError::node`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DataStreamError {
    /// The stream failed on a server of its route (checksum, sink, a replica that died or
    /// timed out, limits, abort).
    #[error("data stream {stream} failed: {failure}")]
    Failed {
        /// The stream.
        stream: StreamRef,
        /// What failed, and where.
        failure: StreamFailure,
    },
    /// Talking to the primary failed (connect, connection lost, deadline).
    #[error("data stream {stream}: primary node {node}: {source}")]
    Primary {
        /// The stream.
        stream: StreamRef,
        /// The primary.
        node: u64,
        /// The transport error.
        #[source]
        source: peerwire::Error,
    },
    /// The routing table was refused before anything was sent.
    #[error("routing table refused: {0}")]
    Routing(#[from] RoutingError),
    /// The stream was closed already.
    #[error("data stream {stream} is closed")]
    Closed {
        /// The stream.
        stream: StreamRef,
    },
    /// A server's reply could not be decoded.
    #[error("data stream {stream}: malformed reply from node {node}")]
    Malformed {
        /// The stream.
        stream: StreamRef,
        /// The server.
        node: u64,
    },
    /// Reading the file to send failed.
    #[error("reading {path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: Arc<std::io::Error>,
    },
}

impl DataStreamError {
    /// The server the error names, if any: the one that failed or found the failure.
    pub fn node(&self) -> Option<u64> {
        match self {
            Self::Failed { failure, .. } => Some(failure.node),
            Self::Primary { node, .. } | Self::Malformed { node, .. } => Some(*node),
            _ => None,
        }
    }

    /// The remote failure, if the stream failed on a server.
    pub fn failure(&self) -> Option<&StreamFailure> {
        match self {
            Self::Failed { failure, .. } => Some(failure),
            _ => None,
        }
    }
}
