//! Errors of peerwire-kv: what a request can end in ([`KvError`], sent over the wire to native
//! clients and mapped to HTTP statuses) and why a node could not start ([`StartError`]).

use serde::{Deserialize, Serialize};

/// How a key-value request failed. Serialised into native-client replies, so a forwarded
/// request fails at the client exactly as it failed at the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum KvError {
    /// The key is empty or longer than the limit.
    #[error("key of {len} bytes: keys must be 1 to {max} bytes")]
    BadKey {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An inline value over the limit: large values go through `/blob/{key}`.
    #[error(
        "value of {len} bytes is over the inline limit of {max} bytes; PUT it to /blob/{{key}} instead"
    )]
    ValueTooLarge {
        /// The value's length (or the bytes read before giving up).
        len: usize,
        /// The inline limit.
        max: usize,
    },
    /// No key with that name.
    #[error("key not found")]
    NotFound,
    /// This node does not lead; `leader` is the one it knows, if any. Clients and following
    /// nodes retry there.
    #[error("node {node} is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The node that refused.
        node: u64,
        /// The leader it knows.
        leader: Option<u64>,
    },
    /// No leader is known: an election is running or a quorum is missing.
    #[error("no leader: {0}")]
    NoLeader(String),
    /// The request was not committed before its deadline; a write may still commit later.
    #[error("timed out after {0:?} waiting for the cluster; a write may still be applied")]
    Timeout(std::time::Duration),
    /// The write's outcome cannot be known (it may or may not have been applied).
    #[error("the outcome is unknown ({0}); the write may or may not be applied")]
    Indeterminate(String),
    /// The leader lost its leadership before the write committed; it was not applied.
    #[error("the write was dropped by a leader change (not applied); retry it")]
    Dropped,
    /// This node was removed from the cluster.
    #[error("node {0} was removed from the cluster")]
    Removed(u64),
    /// A membership change that cannot be made (bad id, bad URL, unknown member, last member).
    #[error("bad membership change: {0}")]
    BadMember(String),
    /// The node is shutting down.
    #[error("the node is stopping")]
    Stopping,
    /// Reaching another node failed.
    #[error("forwarding to node {node} failed: {reason}")]
    Forward {
        /// The node that could not be reached.
        node: u64,
        /// Why.
        reason: String,
    },
    /// A blob over the blob limit.
    #[error("blob of at least {len} bytes is over the limit of {max} bytes")]
    BlobTooLarge {
        /// The bytes received before giving up.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Too few members are reachable to store a blob on a majority.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A blob transfer failed.
    #[error("blob: {0}")]
    Blob(String),
    /// The node's storage failed (the node stops serving writes).
    #[error("storage: {0}")]
    Storage(String),
}

impl KvError {
    /// The HTTP status for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::BadKey { .. } | Self::BadMember(_) => 400,
            Self::NotFound => 404,
            Self::Removed(_) => 410,
            Self::ValueTooLarge { .. } | Self::BlobTooLarge { .. } => 413,
            Self::Blob(_) => 502,
            Self::NotLeader { .. } | Self::NoLeader(_) | Self::Stopping | Self::Forward { .. } => {
                503
            }
            Self::Dropped | Self::Unavailable(_) => 503,
            Self::Timeout(_) | Self::Indeterminate(_) => 504,
            Self::Storage(_) => 500,
        }
    }

    /// A short name of the error's kind, for metric labels (a fixed set: `bad_key`,
    /// `bad_member`, `not_found`, `removed`, `too_large`, `blob`, `not_leader`, `no_leader`,
    /// `stopping`, `forward`, `dropped`, `unavailable`, `timeout`, `indeterminate`, `storage`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey { .. } => "bad_key",
            Self::BadMember(_) => "bad_member",
            Self::NotFound => "not_found",
            Self::Removed(_) => "removed",
            Self::ValueTooLarge { .. } | Self::BlobTooLarge { .. } => "too_large",
            Self::Blob(_) => "blob",
            Self::NotLeader { .. } => "not_leader",
            Self::NoLeader(_) => "no_leader",
            Self::Stopping => "stopping",
            Self::Forward { .. } => "forward",
            Self::Dropped => "dropped",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::Indeterminate(_) => "indeterminate",
            Self::Storage(_) => "storage",
        }
    }

    /// Whether a client may retry the request elsewhere or later without risk of applying it
    /// twice (the request was certainly not applied).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::NotLeader { .. }
                | Self::NoLeader(_)
                | Self::Dropped
                | Self::Stopping
                | Self::Unavailable(_)
        )
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The data directory or its raft log could not be opened or read.
    #[error("storage: {0}")]
    Storage(String),
    /// raft refused the stored state.
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// Binding a port or starting the transport failed.
    #[error("network: {0}")]
    Network(String),
}

impl From<redb::Error> for StartError {
    fn from(e: redb::Error) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<peerwire::Error> for StartError {
    fn from(e: peerwire::Error) -> Self {
        Self::Network(e.to_string())
    }
}

impl From<std::io::Error> for StartError {
    fn from(e: std::io::Error) -> Self {
        Self::Network(e.to_string())
    }
}
