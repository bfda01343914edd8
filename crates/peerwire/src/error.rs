//! The error type of the peerwire crate.
//!
//! A call ends in exactly one of four ways (see the product brief's delivery contract):
//!
//! | outcome | variant | retry? |
//! |---|---|---|
//! | reply | `Ok(bytes)` | — |
//! | not executed | [`Error::NotExecuted`] | safe: the handler did not run |
//! | failed remotely | [`Error::Remote`] | the handler ran and failed |
//! | unknown | [`Error::Unknown`] | only if the call is idempotent |
//!
//! Wire-visible status codes ([`Status`]) are a separate type from these local outcomes.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use peerwire_wire::{GoAwayReason, Lane, Status, WireError};

/// The one error type of this crate.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The call was not executed by the peer; it is safe to retry.
    #[error("call to {peer} not executed: {reason}")]
    NotExecuted {
        /// The peer the call was for.
        peer: SocketAddr,
        /// Why it was not executed.
        reason: NotExecuted,
    },
    /// The peer executed the call and its handler failed.
    #[error("call to {peer} failed remotely ({status}): {message}")]
    Remote {
        /// The peer that failed the call.
        peer: SocketAddr,
        /// The failure status sent by the peer.
        status: Status,
        /// The handler's message.
        message: String,
    },
    /// The call was sent but its outcome is unknown: it may or may not have run.
    #[error("outcome of call to {peer} unknown: {reason}")]
    Unknown {
        /// The peer the call was sent to.
        peer: SocketAddr,
        /// Why the outcome is unknown.
        reason: Unknown,
    },
    /// A local operation (binding, accepting) failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: Arc<io::Error>,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// No endpoint of that name is registered at that address.
    #[error("endpoint `{name}` not found at {address}")]
    EndpointNotFound {
        /// Where it was looked for.
        address: String,
        /// The endpoint name.
        name: String,
    },
    /// The RpcEnv was shut down (before or while this operation ran; an ask that was already
    /// sent has an unknown outcome).
    #[error("rpc env `{env}` has shut down")]
    EnvStopped {
        /// The environment's name.
        env: String,
    },
    /// A message could not be encoded or decoded.
    #[error("codec: {0}")]
    Codec(String),
}

/// Maps a failure reply from `peer` to its outcome: busy and statuses that guarantee the
/// handler did not run are not executed; the rest failed remotely. Services that carry
/// failures of their own (an RpcEnv's local asks) map them the same way.
pub fn failure_to_error(
    peer: SocketAddr,
    status: Status,
    retry_after_ms: u32,
    message: String,
) -> Error {
    if status == Status::Busy {
        return Error::NotExecuted {
            peer,
            reason: NotExecuted::Busy {
                retry_after: (retry_after_ms > 0)
                    .then(|| Duration::from_millis(u64::from(retry_after_ms))),
                message,
            },
        };
    }
    if !status.executed() {
        return Error::NotExecuted {
            peer,
            reason: NotExecuted::Rejected { status, message },
        };
    }
    Error::Remote {
        peer,
        status,
        message,
    }
}

impl Error {
    /// Whether the call is guaranteed not to have run, so it is safe to retry.
    pub fn is_not_executed(&self) -> bool {
        matches!(self, Self::NotExecuted { .. })
    }

    /// Whether the outcome of the call is unknown (deadline or connection loss after sending).
    pub fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }

    /// An IO failure, with what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

/// Why a call was not executed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NotExecuted {
    /// The peer's call queue was full; it suggests waiting `retry_after` before retrying.
    #[error("server busy ({message}), retry after {retry_after:?}")]
    Busy {
        /// The peer's backoff hint.
        retry_after: Option<Duration>,
        /// The peer's message.
        message: String,
    },
    /// The peer refused the call without running it (unknown route, deadline passed before a
    /// handler took it, shutting down, payload too large, bad request).
    #[error("rejected ({status}): {message}")]
    Rejected {
        /// The failure status sent by the peer.
        status: Status,
        /// The peer's message.
        message: String,
    },
    /// No connection to the peer could be established.
    #[error("connect failed: {0}")]
    Connect(#[source] ConnectError),
    /// The connection was closing (go-away received or closed before the request was
    /// written, or the request id was above the peer's go-away mark).
    #[error("connection closing before the call was accepted: {reason}: {message}")]
    ConnectionClosing {
        /// The go-away reason, or `Normal` for a local close.
        reason: GoAwayReason,
        /// Detail.
        message: String,
    },
    /// A local queue was full; the setting named can be raised.
    #[error("{queue} full at {limit} {unit} (setting `{setting}`)")]
    LocalQueueFull {
        /// Which queue.
        queue: &'static str,
        /// Its capacity.
        limit: usize,
        /// What `limit` counts: `entries` or `bytes`.
        unit: &'static str,
        /// The configuration field that sets it.
        setting: &'static str,
    },
    /// The request (or one-way message) is larger than the peer accepts.
    #[error(
        "payload of {len} bytes exceeds the peer's limit of {limit} bytes for one message (its setting `{setting}`)"
    )]
    PayloadTooLarge {
        /// Request size in bytes.
        len: usize,
        /// The limit.
        limit: usize,
        /// The peer's configuration field that sets it: `max_message_bytes`, or
        /// `max_frame_body` against a peer that sends every message in one frame.
        setting: &'static str,
    },
    /// The route name is longer than the protocol allows.
    #[error("route of {len} bytes exceeds the limit of {limit} bytes")]
    RouteTooLong {
        /// Route length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The deadline passed before the request could be sent (waiting for a connection or
    /// an in-flight slot).
    #[error("deadline of {deadline:?} passed before the request was sent")]
    DeadlineBeforeSend {
        /// The deadline.
        deadline: Duration,
    },
    /// The client was shut down.
    #[error("client shut down")]
    ClientClosed,
}

/// Why the outcome of a sent call is unknown.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Unknown {
    /// No reply arrived within the deadline; a late reply will be discarded.
    #[error("no reply within the deadline of {deadline:?}")]
    DeadlineExceeded {
        /// The deadline.
        deadline: Duration,
    },
    /// The connection was lost after the request was sent.
    #[error("connection lost after sending: {0}")]
    ConnectionLost(String),
}

/// Why a connection could not be established.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The transport could not connect.
    #[error("{0}")]
    Io(Arc<io::Error>),
    /// Connecting (transport and handshake) took longer than the connect timeout.
    #[error("timed out after {0:?} (setting `connect_timeout`)")]
    Timeout(Duration),
    /// Waiting out the reconnect backoff after earlier failures: {last}.
    #[error("in reconnect backoff for another {remaining:?} after: {last}")]
    Backoff {
        /// Time left before the next attempt.
        remaining: Duration,
        /// The last failure.
        last: Box<Self>,
    },
    /// The handshake failed or was refused.
    #[error("handshake: {0}")]
    Handshake(#[source] HandshakeError),
}

/// A failed handshake. Each refusal has its own variant, on both sides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The peer is in another cluster.
    #[error("cluster id mismatch: {0}")]
    ClusterMismatch(String),
    /// The two sides have no protocol version in common; the message names both ranges.
    #[error("protocol version mismatch: {0}")]
    VersionMismatch(String),
    /// The peer is not the node we meant to reach (or we are not the node it meant).
    #[error("wrong node: {0}")]
    WrongNode(String),
    /// The peer mounts no service on the requested lane.
    #[error("unsupported lane: {0}")]
    UnsupportedLane(String),
    /// The peer mounts the lane's service, but not for the requested group.
    #[error("unknown group: {0}")]
    UnknownGroup(String),
    /// The peer is at its connection limit.
    #[error("too many connections: {0}")]
    TooManyConnections(String),
    /// The peer's cluster no longer counts this node as a member (etcd answers 410 Gone).
    #[error("member removed: {0}")]
    MemberRemoved(String),
    /// The peer refused us for another reason.
    #[error("refused ({reason}): {message}")]
    Refused {
        /// The go-away reason.
        reason: GoAwayReason,
        /// The peer's message.
        message: String,
    },
    /// TLS failed or refused the peer (or the peer refused us): no certificate, wrong CA,
    /// expired, a certificate naming another node, or plaintext where TLS is required.
    #[error("tls ({failure}): {message}")]
    Tls {
        /// What kind of failure.
        failure: crate::tls::TlsFailure,
        /// Detail.
        message: String,
    },
    /// Secret mode failed: a peer without the secret, another secret, or a peer that does not
    /// speak secret mode.
    #[error("secret mode ({failure}): {message}")]
    Secret {
        /// What kind of failure.
        failure: crate::secret::SecretFailure,
        /// Detail.
        message: String,
    },
    /// The handshake did not complete in time.
    #[error("no hello within {0:?} (setting `handshake_timeout`)")]
    Timeout(Duration),
    /// The peer sent something that is not a valid handshake.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer closed the connection during the handshake.
    #[error("connection closed during the handshake")]
    Closed,
    /// IO failed during the handshake.
    #[error("io: {0}")]
    Io(String),
}

impl HandshakeError {
    /// A short label of the kind of failure, for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClusterMismatch(_) => "cluster_mismatch",
            Self::VersionMismatch(_) => "version_mismatch",
            Self::WrongNode(_) => "wrong_node",
            Self::UnsupportedLane(_) => "unsupported_lane",
            Self::UnknownGroup(_) => "unknown_group",
            Self::TooManyConnections(_) => "too_many_connections",
            Self::MemberRemoved(_) => "member_removed",
            Self::Refused { .. } => "refused",
            Self::Tls { failure, .. } => failure.label(),
            Self::Secret { failure, .. } => failure.label(),
            Self::Timeout(_) => "timeout",
            Self::Protocol(_) => "protocol",
            Self::Closed => "closed",
            Self::Io(_) => "io",
        }
    }
}
