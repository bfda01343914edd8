//! What raft reads: the log kept in memory (raft-rs's `MemStorage`, a copy of what
//! [`LogStore`](crate::log_store::LogStore) made durable, bounded by compaction) and the latest
//! snapshot this node made or received, which raft sends to followers that fell behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, StorageError};

/// raft's view of a node's log. Clones share the same log.
#[derive(Clone, Default)]
pub struct KvStorage {
    /// The entries, hard state and configuration.
    pub core: MemStorage,
    snapshot: Arc<RwLock<Snapshot>>,
    wanted: Arc<AtomicBool>,
}

impl std::fmt::Debug for KvStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.core.rl();
        f.debug_struct("KvStorage")
            .field("hard_state", core.hard_state())
            .finish_non_exhaustive()
    }
}

impl KvStorage {
    /// Replaces the snapshot raft sends to followers.
    pub fn set_snapshot(&self, snap: Snapshot) {
        *self.snapshot.write().expect("snapshot lock poisoned") = snap;
    }

    /// Whether raft asked for a snapshot the stored one cannot serve (too old, or made before
    /// the follower it is for joined); clears the request.
    pub fn take_snapshot_request(&self) -> bool {
        self.wanted.swap(false, Ordering::Relaxed)
    }

    /// The index of the latest snapshot (0: none).
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot
            .read()
            .expect("snapshot lock poisoned")
            .get_metadata()
            .index
    }
}

impl raft::Storage for KvStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.core.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.core.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        let snap = self.snapshot.read().expect("snapshot lock poisoned");
        // The snapshot's term answers for its index even after the entry was compacted.
        if idx == snap.get_metadata().index && idx != 0 {
            return Ok(snap.get_metadata().term);
        }
        drop(snap);
        self.core.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.core.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.core.last_index()
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let snap = self.snapshot.read().expect("snapshot lock poisoned");
        let meta = snap.get_metadata();
        let conf = meta.get_conf_state();
        // A follower refuses a snapshot whose configuration does not name it (a member added
        // after the snapshot was made): have the raft loop make a fresh one; raft asks again.
        let names_to = conf.voters.contains(&to) || conf.learners.contains(&to);
        if meta.index < request_index || meta.index == 0 || !names_to {
            self.wanted.store(true, Ordering::Relaxed);
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(snap.clone())
    }
}
