//! The raft log on disk: entries and hard state in one of two stores, and the latest snapshot
//! (whose metadata holds the configuration as of its index) in a file beside them
//! (`snapshot.pb`, see `snapshot_file.rs`). Every [`LogStore::persist_all`] is one durable
//! write, so one raft `Ready` — all the proposals batched into it — or several queued ones cost
//! one sync (group commit).
//!
//! The stores ([`LogStoreKind`]): **raft-engine**, TiKV's append-only log
//! store made for raft logs, the default (`engine_log`): a write is one sequential append and one
//! `fdatasync`; and **redb** (`redb_log`), an embedded B-tree database, what earlier versions
//! used: a write is a copy-on-write transaction of B-tree pages and one fsync. Measured side by
//! side (`peerwire-bench kv --log-store raft-engine,redb`), raft-engine's writes take 135 µs
//! where redb's take 200–430 µs on this project's machine (BENCHMARKS.md). A data directory
//! keeps the store it was created with.
//!
//! A snapshot is written to its file first, then recorded in the store; entries it covers are
//! dropped after that. A crash in between leaves the file newer than the record and the
//! entries still there; recovery goes by the file's own metadata and reads entries after it.

mod engine_log;
mod record;
mod redb_log;

use std::path::Path;
use std::sync::Mutex;

use raft::eraftpb::{Entry, HardState, Snapshot};

use crate::snapshot_file::SnapshotFile;
pub use record::{Batch, LogStoreError, LogStoreKind};
use record::{decode, encode};

fn io(e: std::io::Error) -> LogStoreError {
    LogStoreError::Io(format!("the snapshot file: {e}"))
}

/// What a node finds in its data directory at start.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The hard state (term, vote, commit); default if none was saved.
    pub hard_state: HardState,
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// The entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

impl Recovered {
    /// Whether the directory held no raft state (a new node).
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.entries.is_empty()
    }
}

#[derive(Debug)]
enum Store {
    Engine(Box<engine_log::EngineLog>),
    Redb(redb_log::RedbLog),
}

/// The raft log of one node.
#[derive(Debug)]
pub struct LogStore {
    store: Store,
    file: SnapshotFile,
    /// The index of the stored snapshot (0: none). Held while a snapshot is written, so two
    /// writers (this node's own, and one received from the leader) go one after the other and
    /// an older snapshot never replaces a newer one.
    stored: Mutex<u64>,
}

impl LogStore {
    /// Opens the log in `dir` (creating `dir` if needed): the store it already holds, else a
    /// new one of the default kind.
    pub fn open(dir: &Path) -> Result<Self, LogStoreError> {
        Self::open_kind(dir, None)
    }

    /// Opens the log in `dir` in store `kind` (`None`: the store `dir` holds, else the
    /// default). A directory holding the other store is refused.
    pub fn open_kind(dir: &Path, kind: Option<LogStoreKind>) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| LogStoreError::Io(format!("creating {}: {e}", dir.display())))?;
        let found = LogStoreKind::found_in(dir);
        let kind = match (found, kind) {
            (Some(found), Some(asked)) if found != asked => {
                return Err(LogStoreError::OtherStore {
                    dir: dir.display().to_string(),
                    found,
                    asked,
                });
            }
            (Some(k), _) | (None, Some(k)) => k,
            (None, None) => LogStoreKind::default(),
        };
        let (store, stored) = match kind {
            LogStoreKind::RaftEngine => {
                let log = engine_log::EngineLog::open(dir)?;
                let stored = log.snapshot_index();
                (Store::Engine(Box::new(log)), stored)
            }
            LogStoreKind::Redb => {
                let log = redb_log::RedbLog::open(dir)?;
                let stored = log.snapshot_index()?;
                (Store::Redb(log), stored)
            }
        };
        Ok(Self {
            store,
            file: SnapshotFile::new(dir),
            stored: Mutex::new(stored),
        })
    }

    /// Which store holds the log.
    pub fn kind(&self) -> LogStoreKind {
        match self.store {
            Store::Engine(_) => LogStoreKind::RaftEngine,
            Store::Redb(_) => LogStoreKind::Redb,
        }
    }

    /// Reads everything a restarting node needs.
    pub fn recover(&self) -> Result<Recovered, LogStoreError> {
        let mut out = Recovered::default();
        let hard_state = match &self.store {
            Store::Engine(log) => log.hard_state()?,
            Store::Redb(log) => log.hard_state()?,
        };
        if let Some(hs) = hard_state {
            out.hard_state = hs;
        }
        if let Some(bytes) = self.file.read().map_err(io)? {
            out.snapshot = Some(decode::<Snapshot>("snapshot", &bytes)?);
        } else if let Store::Redb(log) = &self.store {
            out.snapshot = log.legacy_snapshot()?;
        }
        let after = out.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        // The file may be newer than the store's record, after a crash between the two.
        let mut stored = self.stored.lock().expect("snapshot lock poisoned");
        *stored = (*stored).max(after);
        drop(stored);
        let entries = match &self.store {
            Store::Engine(log) => log.entries_after(after)?,
            Store::Redb(log) => log.entries_after(after)?,
        };
        for pair in entries.windows(2) {
            if pair[0].index + 1 != pair[1].index {
                return Err(LogStoreError::Corrupt {
                    what: format!("entry {}", pair[1].index),
                    reason: format!("follows entry {}", pair[0].index),
                });
            }
        }
        out.entries = entries;
        Ok(out)
    }

    /// Makes `batch` durable: one write, one sync.
    pub fn persist(&self, batch: &Batch<'_>) -> Result<(), LogStoreError> {
        self.persist_all(std::slice::from_ref(batch))
    }

    /// Writes `batches` in order as one write with one sync (group commit of several raft
    /// `Ready`s).
    pub fn persist_all(&self, batches: &[Batch<'_>]) -> Result<(), LogStoreError> {
        if batches.iter().all(Batch::is_empty) {
            return Ok(());
        }
        // A snapshot from the leader goes to its file before the write that drops the log. A
        // crash in between leaves the new snapshot with the old entries after it, which raft
        // treats as any follower's unmatched suffix (the leader overwrites what conflicts);
        // the other order could lose entries this node had acknowledged.
        let mut stored = 0;
        for snap in batches.iter().filter_map(|b| b.snapshot) {
            self.write_snapshot(snap)?;
            // Only a batch with a snapshot reads the stored index: the lock is held while
            // this node's own snapshot is written, and a log write must never wait for that.
            stored = *self.stored.lock().expect("snapshot lock poisoned");
        }
        match &self.store {
            Store::Engine(log) => log.write(batches, stored),
            Store::Redb(log) => log.write(batches, stored),
        }
    }

    /// Saves a snapshot this node made. Returns `false`, and changes nothing, if a snapshot at
    /// the same or a later index is already stored (one from the leader may land while this
    /// one was being written). The entries it covers stay until [`LogStore::compact`] drops
    /// them.
    ///
    /// The snapshot goes to its file, outside the store; only its index is then recorded, in
    /// a small write.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<bool, LogStoreError> {
        if !self.write_snapshot(snap)? {
            return Ok(false);
        }
        let index = snap.get_metadata().index;
        match &self.store {
            Store::Engine(log) => log.record_snapshot(index)?,
            Store::Redb(log) => log.record_snapshot(index)?,
        }
        Ok(true)
    }

    /// Writes `snap` to the snapshot file unless a snapshot at the same or a later index is
    /// stored; returns whether it wrote.
    fn write_snapshot(&self, snap: &Snapshot) -> Result<bool, LogStoreError> {
        let index = snap.get_metadata().index;
        let mut stored = self.stored.lock().expect("snapshot lock poisoned");
        if *stored >= index {
            return Ok(false);
        }
        self.file.replace(&encode(snap)).map_err(io)?;
        *stored = index;
        Ok(true)
    }

    /// Drops the entries before `compact_to` (a stored snapshot must cover them; entries from
    /// there on stay, so slightly lagging followers catch up from the log); in redb at most
    /// `per_transaction` to a transaction. Returns how many were dropped.
    ///
    /// Compaction is not made durable on its own: the next durable write carries it, and
    /// entries a crash brings back lie below the snapshot, where recovery never reads.
    pub fn compact(&self, compact_to: u64, per_transaction: u64) -> Result<u64, LogStoreError> {
        match &self.store {
            Store::Engine(log) => log.compact(compact_to),
            Store::Redb(log) => log.compact(compact_to, per_transaction),
        }
    }

    /// The first stored entry's index (tests).
    #[cfg(test)]
    fn first_entry(&self) -> Option<u64> {
        match &self.store {
            Store::Engine(log) => log.first_entry(),
            Store::Redb(log) => log.first_entry(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("e{index}").into_bytes().into(),
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot {
            data: b"state".to_vec().into(),
            ..Snapshot::default()
        };
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s
    }

    fn open(dir: &Path, kind: LogStoreKind) -> LogStore {
        let store = LogStore::open_kind(dir, Some(kind)).unwrap();
        assert_eq!(store.kind(), kind);
        store
    }

    /// Persists entries 1..=`n` of term 1.
    fn persist_entries(store: &LogStore, n: u64) {
        let entries: Vec<Entry> = (1..=n).map(|i| entry(i, 1)).collect();
        store
            .persist(&Batch {
                entries: &entries,
                ..Batch::default()
            })
            .unwrap();
    }

    #[test]
    fn a_new_directory_is_empty() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), kind);
            assert!(store.recover().unwrap().is_empty());
        }
    }

    #[test]
    fn entries_and_hard_state_survive_reopening() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = open(dir.path(), kind);
                let hs = HardState {
                    term: 2,
                    commit: 3,
                    ..HardState::default()
                };
                let entries: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
                store
                    .persist(&Batch {
                        entries: &entries,
                        hard_state: Some(&hs),
                        ..Batch::default()
                    })
                    .unwrap();
                // A new leader overwrites entries 4 and 5 with its own entry 4.
                store
                    .persist(&Batch {
                        entries: &[entry(4, 2)],
                        ..Batch::default()
                    })
                    .unwrap();
            }
            let store = open(dir.path(), kind);
            let r = store.recover().unwrap();
            assert_eq!(r.hard_state.term, 2);
            assert_eq!(r.hard_state.commit, 3);
            let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index, e.term)).collect();
            assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
        }
    }

    #[test]
    fn batches_written_together_apply_in_order() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), kind);
            let first: Vec<Entry> = (1..=5).map(|i| entry(i, 1)).collect();
            let hs1 = HardState {
                term: 1,
                commit: 2,
                ..HardState::default()
            };
            let hs2 = HardState {
                term: 2,
                commit: 3,
                ..HardState::default()
            };
            let second = [entry(4, 2), entry(5, 2), entry(6, 2)];
            store
                .persist_all(&[
                    Batch {
                        entries: &first,
                        hard_state: Some(&hs1),
                        ..Batch::default()
                    },
                    Batch::default(),
                    Batch {
                        entries: &second,
                        hard_state: Some(&hs2),
                        ..Batch::default()
                    },
                ])
                .unwrap();
            let r = store.recover().unwrap();
            assert_eq!(r.hard_state, hs2);
            let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index, e.term)).collect();
            assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]);
            store.persist_all(&[Batch::default()]).unwrap();
        }
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), kind);
            persist_entries(&store, 3);
            let snap = snapshot(10, 3);
            store
                .persist(&Batch {
                    snapshot: Some(&snap),
                    entries: &[entry(11, 3)],
                    ..Batch::default()
                })
                .unwrap();
            let r = store.recover().unwrap();
            let snap = r.snapshot.unwrap();
            assert_eq!(snap.get_metadata().index, 10);
            assert_eq!(snap.get_metadata().get_conf_state().voters, vec![1, 2, 3]);
            assert_eq!(r.entries.len(), 1);
            assert_eq!(r.entries[0].index, 11);
        }
    }

    #[test]
    fn a_saved_snapshot_then_compaction_drops_entries_before_the_mark_in_short_transactions() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let first_entry = LogStore::first_entry;
            {
                let store = open(dir.path(), kind);
                persist_entries(&store, 20);
                assert!(store.save_snapshot(&snapshot(15, 1)).unwrap());
                // An older one does not replace it.
                assert!(!store.save_snapshot(&snapshot(14, 1)).unwrap());
                // Saving compacts nothing by itself.
                assert_eq!(first_entry(&store), Some(1));
                // Eleven entries (in redb four to a transaction: three transactions).
                assert_eq!(store.compact(12, 4).unwrap(), 11);
                assert_eq!(first_entry(&store), Some(12));
                assert_eq!(store.compact(12, 4).unwrap(), 0, "nothing left to drop");
                let r = store.recover().unwrap();
                // Recovery returns only what follows the snapshot.
                let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
                assert_eq!(idx, (16..=20).collect::<Vec<_>>());
            }
            // Compaction commits are not durable on their own: reopened without a durable commit
            // after them, the dropped entries may be back, but recovery still starts after the
            // snapshot, and the next compaction drops them again.
            let store = open(dir.path(), kind);
            let r = store.recover().unwrap();
            assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
            let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
            assert_eq!(idx, (16..=20).collect::<Vec<_>>());
            store.compact(12, 100).unwrap();
            assert_eq!(first_entry(&store), Some(12));
        }
    }

    #[test]
    fn after_a_crash_between_the_snapshot_file_and_its_record_the_file_wins() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = open(dir.path(), kind);
                persist_entries(&store, 20);
                assert!(store.save_snapshot(&snapshot(10, 1)).unwrap());
                // The crash: the file holds snapshot 15, the database still says 10.
                SnapshotFile::new(dir.path())
                    .replace(&encode(&snapshot(15, 1)))
                    .unwrap();
            }
            let store = open(dir.path(), kind);
            let r = store.recover().unwrap();
            assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
            let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
            assert_eq!(idx, (16..=20).collect::<Vec<_>>());
            // Recovery learned of 15: an older snapshot does not replace it.
            assert!(!store.save_snapshot(&snapshot(12, 1)).unwrap());
            assert!(store.save_snapshot(&snapshot(18, 1)).unwrap());
        }
    }

    #[test]
    fn a_snapshot_an_earlier_version_kept_in_redb_is_read_then_replaced_by_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), LogStoreKind::Redb);
        persist_entries(&store, 20);
        let Store::Redb(log) = &store.store else {
            unreachable!("opened as redb")
        };
        log.put_legacy_snapshot(&snapshot(10, 1));
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 10);
        assert_eq!(r.entries.first().map(|e| e.index), Some(11));

        assert!(store.save_snapshot(&snapshot(15, 1)).unwrap());
        assert!(
            log.legacy_snapshot().unwrap().is_none(),
            "the old copy is gone"
        );
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
    }

    #[test]
    fn a_damaged_record_is_a_typed_error() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path(), kind);
            match &store.store {
                Store::Engine(log) => log.damage_hard_state(),
                Store::Redb(log) => log.damage_hard_state(),
            }
            assert!(matches!(
                store.recover(),
                Err(LogStoreError::Corrupt { .. })
            ));
        }
    }

    #[test]
    fn a_directory_keeps_its_store() {
        let dir = tempfile::tempdir().unwrap();
        drop(open(dir.path(), LogStoreKind::Redb));
        assert_eq!(
            LogStore::open(dir.path()).unwrap().kind(),
            LogStoreKind::Redb
        );
        let err = LogStore::open_kind(dir.path(), Some(LogStoreKind::RaftEngine)).unwrap_err();
        assert!(
            err.to_string().contains("--log-store redb"),
            "the error names the way out: {err}"
        );
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(
            LogStore::open(fresh.path()).unwrap().kind(),
            LogStoreKind::default()
        );
        assert_eq!("redb".parse::<LogStoreKind>(), Ok(LogStoreKind::Redb));
        assert!("rocksdb".parse::<LogStoreKind>().is_err());
    }

    #[test]
    fn a_received_snapshot_after_a_longer_log_leaves_no_stale_entries() {
        for kind in LogStoreKind::ALL {
            let dir = tempfile::tempdir().unwrap();
            {
                let store = open(dir.path(), kind);
                persist_entries(&store, 30);
                let hs = HardState {
                    term: 4,
                    vote: 2,
                    commit: 20,
                    ..HardState::default()
                };
                let snap = snapshot(20, 4);
                // The snapshot and the hard state in the same write; no new entries.
                store
                    .persist(&Batch {
                        snapshot: Some(&snap),
                        hard_state: Some(&hs),
                        ..Batch::default()
                    })
                    .unwrap();
            }
            let store = open(dir.path(), kind);
            let r = store.recover().unwrap();
            assert_eq!(r.snapshot.unwrap().get_metadata().index, 20, "{kind}");
            assert!(r.entries.is_empty(), "{kind}: entries 21..=30 were dropped");
            assert_eq!((r.hard_state.term, r.hard_state.vote), (4, 2), "{kind}");
            // The log goes on after the snapshot.
            store
                .persist(&Batch {
                    entries: &[entry(21, 4)],
                    ..Batch::default()
                })
                .unwrap();
            assert_eq!(store.recover().unwrap().entries[0].index, 21, "{kind}");
        }
    }
}
