//! The raft log on disk: entries and hard state in a [redb](https://www.redb.org) database
//! (`raft.redb` in the data directory), and the latest snapshot (whose metadata holds the
//! configuration as of its index) in a file beside it (`snapshot.pb`, see
//! `snapshot_file.rs`). Every [`LogStore::persist`] is one transaction committed with an
//! fsync, so one raft `Ready` — all the proposals batched into it — costs one fsync (group
//! commit).
//!
//! | table | key | value |
//! |---|---|---|
//! | `entries` | index (u64) | `eraftpb::Entry`, protobuf |
//! | `meta` | `"hard_state"` | `eraftpb::HardState`, protobuf |
//! | `meta` | `"snapshot_index"` | the stored snapshot's index, u64 little-endian |
//! | `snapshots` | `"snapshot"` | read only: where earlier versions kept the snapshot |
//!
//! A snapshot is written to its file first, then recorded in `meta`; entries it covers are
//! dropped after that. A crash in between leaves the file newer than `meta` and the entries
//! still there; recovery goes by the file's own metadata and reads entries after it.

use std::path::Path;
use std::sync::Mutex;

use raft::eraftpb::{Entry, HardState, Snapshot};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::snapshot_file::SnapshotFile;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Where earlier versions stored the snapshot (read when there is no snapshot file).
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

const HARD_STATE: &str = "hard_state";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_INDEX: &str = "snapshot_index";

/// A failure of the log store: the database, or a record that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// redb failed.
    #[error("raft log database: {0}")]
    Db(#[from] redb::Error),
    /// Writing or reading outside the database failed.
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
}

fn db<E: Into<redb::Error>>(e: E) -> LogStoreError {
    LogStoreError::Db(e.into())
}

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

/// One batch for [`LogStore::persist`]: what one raft `Ready` asks to make durable.
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

/// The raft log of one node.
#[derive(Debug)]
pub struct LogStore {
    db: Database,
    file: SnapshotFile,
    /// The index of the stored snapshot (0: none). Held while a snapshot is written, so two
    /// writers (this node's own, and one received from the leader) go one after the other and
    /// an older snapshot never replaces a newer one.
    stored: Mutex<u64>,
}

impl LogStore {
    /// Opens (or creates) `raft.redb` in `dir`, creating `dir` if needed.
    pub fn open(dir: &Path) -> Result<Self, LogStoreError> {
        std::fs::create_dir_all(dir).map_err(db)?;
        let database = Database::create(dir.join("raft.redb")).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(ENTRIES).map_err(db)?;
        txn.open_table(META).map_err(db)?;
        txn.open_table(SNAPSHOTS).map_err(db)?;
        txn.commit().map_err(db)?;
        let stored = {
            let txn = database.begin_read().map_err(db)?;
            let meta = txn.open_table(META).map_err(db)?;
            let index = meta.get(SNAPSHOT_INDEX).map_err(db)?;
            index
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map_or(0, u64::from_le_bytes)
        };
        Ok(Self {
            db: database,
            file: SnapshotFile::new(dir),
            stored: Mutex::new(stored),
        })
    }

    /// Reads everything a restarting node needs.
    pub fn recover(&self) -> Result<Recovered, LogStoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let mut out = Recovered::default();
        if let Some(v) = meta.get(HARD_STATE).map_err(db)? {
            out.hard_state = decode(HARD_STATE, v.value())?;
        }
        if let Some(bytes) = self.file.read().map_err(io)? {
            out.snapshot = Some(decode::<Snapshot>(SNAPSHOT, &bytes)?);
        } else {
            let snapshots = txn.open_table(SNAPSHOTS).map_err(db)?;
            if let Some(v) = snapshots.get(SNAPSHOT).map_err(db)? {
                out.snapshot = Some(decode::<Snapshot>(SNAPSHOT, v.value())?);
            }
        }
        let after = out.snapshot.as_ref().map_or(0, |s| s.get_metadata().index);
        // The file may be newer than `meta` says, after a crash between the two.
        let mut stored = self.stored.lock().expect("snapshot lock poisoned");
        *stored = (*stored).max(after);
        drop(stored);
        let entries = txn.open_table(ENTRIES).map_err(db)?;
        for row in entries.range((after + 1)..).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let e: Entry = decode(&format!("entry {}", k.value()), v.value())?;
            if let Some(prev) = out.entries.last()
                && prev.index + 1 != e.index
            {
                return Err(LogStoreError::Corrupt {
                    what: format!("entry {}", e.index),
                    reason: format!("follows entry {}", prev.index),
                });
            }
            out.entries.push(e);
        }
        Ok(out)
    }

    /// Makes `batch` durable: one transaction, one fsync.
    pub fn persist(&self, batch: &Batch<'_>) -> Result<(), LogStoreError> {
        self.persist_all(std::slice::from_ref(batch))
    }

    /// Writes `batches` in order in one transaction with one fsync (group commit of several
    /// raft `Ready`s).
    pub fn persist_all(&self, batches: &[Batch<'_>]) -> Result<(), LogStoreError> {
        if batches.iter().all(Batch::is_empty) {
            return Ok(());
        }
        // A snapshot from the leader goes to its file before the transaction drops the log. A
        // crash in between leaves the new snapshot with the old entries after it, which raft
        // treats as any follower's unmatched suffix (the leader overwrites what conflicts);
        // the other order could lose entries this node had acknowledged.
        for snap in batches.iter().filter_map(|b| b.snapshot) {
            self.write_snapshot(snap)?;
        }
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(db)?;
            let mut meta = txn.open_table(META).map_err(db)?;
            for batch in batches {
                if batch.snapshot.is_some() {
                    entries.retain(|_, _| false).map_err(db)?;
                    let stored = *self.stored.lock().expect("snapshot lock poisoned");
                    meta.insert(SNAPSHOT_INDEX, stored.to_le_bytes().as_slice())
                        .map_err(db)?;
                    drop_legacy_snapshot(&txn)?;
                }
                if let Some(first) = batch.entries.first() {
                    entries.retain_in(first.index.., |_, _| false).map_err(db)?;
                    for e in batch.entries {
                        entries.insert(e.index, encode(e).as_slice()).map_err(db)?;
                    }
                }
                if let Some(hs) = batch.hard_state {
                    meta.insert(HARD_STATE, encode(hs).as_slice()).map_err(db)?;
                }
            }
        }
        txn.commit().map_err(db)
    }

    /// Saves a snapshot this node made. Returns `false`, and changes nothing, if a snapshot at
    /// the same or a later index is already stored (one from the leader may land while this
    /// one was being written). The entries it covers stay until [`LogStore::compact`] drops
    /// them.
    ///
    /// The snapshot goes to its file, outside redb's write transaction; only its index is
    /// then recorded in a small transaction.
    pub fn save_snapshot(&self, snap: &Snapshot) -> Result<bool, LogStoreError> {
        if !self.write_snapshot(snap)? {
            return Ok(false);
        }
        let index = snap.get_metadata().index;
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut meta = txn.open_table(META).map_err(db)?;
            let recorded = meta
                .get(SNAPSHOT_INDEX)
                .map_err(db)?
                .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
                .map(u64::from_le_bytes);
            // A snapshot from the leader may have been recorded meanwhile.
            if recorded.is_none_or(|r| r < index) {
                meta.insert(SNAPSHOT_INDEX, index.to_le_bytes().as_slice())
                    .map_err(db)?;
            }
            drop_legacy_snapshot(&txn)?;
        }
        txn.commit().map_err(db)?;
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
    /// there on stay, so slightly lagging followers catch up from the log), at most
    /// `per_transaction` to a transaction. Returns how many were dropped.
    ///
    /// redb has one writer at a time, so one transaction deleting a whole snapshot interval
    /// (100,000 entries, say) would hold up the log writer — every write waiting on an fsync
    /// behind it — for hundreds of milliseconds. Short transactions let the log writer's in
    /// between. They are not made durable themselves (the log writer's next commit carries
    /// them to disk): entries a crash brings back are below the snapshot, where recovery never
    /// reads, and the next compaction drops them again.
    pub fn compact(&self, compact_to: u64, per_transaction: u64) -> Result<u64, LogStoreError> {
        let per_transaction = per_transaction.max(1);
        let mut dropped = 0;
        loop {
            let mut txn = self.db.begin_write().map_err(db)?;
            txn.set_durability(redb::Durability::None).map_err(db)?;
            let removed = {
                let mut entries = txn.open_table(ENTRIES).map_err(db)?;
                let first = match entries.first().map_err(db)? {
                    Some((k, _)) if k.value() < compact_to => k.value(),
                    _ => return Ok(dropped),
                };
                let end = compact_to.min(first.saturating_add(per_transaction));
                let mut removed = 0u64;
                entries
                    .retain_in(first..end, |_, _| {
                        removed += 1;
                        false
                    })
                    .map_err(db)?;
                removed
            };
            txn.commit().map_err(db)?;
            dropped += removed;
        }
    }
}

/// Removes the snapshot an earlier version kept in redb, once a snapshot file replaces it.
fn drop_legacy_snapshot(txn: &redb::WriteTransaction) -> Result<(), LogStoreError> {
    txn.open_table(SNAPSHOTS)
        .map_err(db)?
        .remove(SNAPSHOT)
        .map_err(db)?;
    Ok(())
}

fn encode<M: protobuf::Message>(m: &M) -> Vec<u8> {
    m.write_to_bytes().expect("raft records always encode")
}

fn decode<M: protobuf::Message>(what: &str, bytes: &[u8]) -> Result<M, LogStoreError> {
    M::parse_from_bytes(bytes).map_err(|e| LogStoreError::Corrupt {
        what: what.to_owned(),
        reason: e.to_string(),
    })
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
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert!(store.recover().unwrap().is_empty());
    }

    #[test]
    fn entries_and_hard_state_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
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
        let store = LogStore::open(dir.path()).unwrap();
        let r = store.recover().unwrap();
        assert_eq!(r.hard_state.term, 2);
        assert_eq!(r.hard_state.commit, 3);
        let got: Vec<(u64, u64)> = r.entries.iter().map(|e| (e.index, e.term)).collect();
        assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 2)]);
    }

    #[test]
    fn batches_written_together_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
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

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
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

    #[test]
    fn a_saved_snapshot_then_compaction_drops_entries_before_the_mark_in_short_transactions() {
        let dir = tempfile::tempdir().unwrap();
        let first_entry = |store: &LogStore| {
            let txn = store.db.begin_read().unwrap();
            let t = txn.open_table(ENTRIES).unwrap();
            t.first().unwrap().map(|(k, _)| k.value())
        };
        {
            let store = LogStore::open(dir.path()).unwrap();
            persist_entries(&store, 20);
            assert!(store.save_snapshot(&snapshot(15, 1)).unwrap());
            // An older one does not replace it.
            assert!(!store.save_snapshot(&snapshot(14, 1)).unwrap());
            // Saving compacts nothing by itself.
            assert_eq!(first_entry(&store), Some(1));
            // Eleven entries, four to a transaction: three transactions.
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
        let store = LogStore::open(dir.path()).unwrap();
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
        let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, (16..=20).collect::<Vec<_>>());
        store.compact(12, 100).unwrap();
        assert_eq!(first_entry(&store), Some(12));
    }

    #[test]
    fn after_a_crash_between_the_snapshot_file_and_its_record_the_file_wins() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = LogStore::open(dir.path()).unwrap();
            persist_entries(&store, 20);
            assert!(store.save_snapshot(&snapshot(10, 1)).unwrap());
            // The crash: the file holds snapshot 15, the database still says 10.
            SnapshotFile::new(dir.path())
                .replace(&encode(&snapshot(15, 1)))
                .unwrap();
        }
        let store = LogStore::open(dir.path()).unwrap();
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
        let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert_eq!(idx, (16..=20).collect::<Vec<_>>());
        // Recovery learned of 15: an older snapshot does not replace it.
        assert!(!store.save_snapshot(&snapshot(12, 1)).unwrap());
        assert!(store.save_snapshot(&snapshot(18, 1)).unwrap());
    }

    #[test]
    fn a_snapshot_an_earlier_version_kept_in_redb_is_read_then_replaced_by_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        persist_entries(&store, 20);
        let txn = store.db.begin_write().unwrap();
        txn.open_table(SNAPSHOTS)
            .unwrap()
            .insert(SNAPSHOT, encode(&snapshot(10, 1)).as_slice())
            .unwrap();
        txn.commit().unwrap();
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 10);
        assert_eq!(r.entries.first().map(|e| e.index), Some(11));

        assert!(store.save_snapshot(&snapshot(15, 1)).unwrap());
        let txn = store.db.begin_read().unwrap();
        let legacy = txn.open_table(SNAPSHOTS).unwrap();
        assert!(
            legacy.get(SNAPSHOT).unwrap().is_none(),
            "the old copy is gone"
        );
        let r = store.recover().unwrap();
        assert_eq!(r.snapshot.unwrap().get_metadata().index, 15);
    }

    #[test]
    fn a_damaged_record_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(HARD_STATE, [0xffu8, 0xff, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert!(matches!(
            store.recover(),
            Err(LogStoreError::Corrupt { .. })
        ));
    }
}
