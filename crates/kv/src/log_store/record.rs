//! What the log store and its two stores share: which store a directory holds, the store's
//! errors, one batch of a raft `Ready`, and the protobuf codec of raft records. A leaf: the
//! stores (`engine_log`, `redb_log`) and the `LogStore` over them import it, it imports none
//! of them.

use std::path::Path;

use raft::eraftpb::{Entry, HardState, Snapshot};

/// raft-engine's directory in a data directory.
pub(super) const ENGINE_DIR: &str = "raft-engine";
/// redb's file in a data directory.
pub(super) const REDB_FILE: &str = "raft.redb";

/// Which store holds a node's raft log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogStoreKind {
    /// raft-engine: append-only files (`raft-engine/` in the data directory).
    #[default]
    RaftEngine,
    /// redb: a B-tree database (`raft.redb` in the data directory).
    Redb,
}

impl LogStoreKind {
    /// Both kinds, the default first.
    pub const ALL: [Self; 2] = [Self::RaftEngine, Self::Redb];

    /// Its name on the command line: `raft-engine` or `redb`.
    pub fn name(self) -> &'static str {
        match self {
            Self::RaftEngine => "raft-engine",
            Self::Redb => "redb",
        }
    }

    /// The store a data directory already holds, if any.
    pub fn found_in(dir: &Path) -> Option<Self> {
        if dir.join(ENGINE_DIR).is_dir() {
            Some(Self::RaftEngine)
        } else if dir.join(REDB_FILE).is_file() {
            Some(Self::Redb)
        } else {
            None
        }
    }
}

impl std::fmt::Display for LogStoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for LogStoreKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("unknown log store `{s}` (raft-engine or redb)"))
    }
}

/// A failure of the log store: the store, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// redb failed.
    #[error("raft log database: {0}")]
    Db(#[from] redb::Error),
    /// raft-engine failed.
    #[error("raft log engine: {0}")]
    Engine(String),
    /// Writing or reading outside the store failed.
    #[error("raft log: {0}")]
    Io(String),
    /// A stored record does not decode (the file is damaged or from another program).
    #[error("raft log record `{what}` does not decode: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why.
        reason: String,
    },
    /// The data directory holds a log in another store than the one asked for.
    #[error(
        "the data directory {dir} holds a {found} raft log, not {asked}: start with --log-store {found}, or use a new directory"
    )]
    OtherStore {
        /// The data directory.
        dir: String,
        /// The store it holds.
        found: LogStoreKind,
        /// The store asked for.
        asked: LogStoreKind,
    },
}

/// One batch for [`LogStore::persist`](super::LogStore::persist): what one raft `Ready` asks to make durable.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// A snapshot received from the leader: replaces the whole log.
    pub snapshot: Option<&'a Snapshot>,
    /// New entries: they replace any stored entries from the first one's index on.
    pub entries: &'a [Entry],
    /// A new hard state.
    pub hard_state: Option<&'a HardState>,
}

impl Batch<'_> {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty() && self.hard_state.is_none()
    }
}

pub(super) fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft records always encode")
}

pub(super) fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, LogStoreError> {
    M::parse_from_bytes(bytes).map_err(|e| LogStoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}
