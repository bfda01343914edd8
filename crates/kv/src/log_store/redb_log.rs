//! The raft log in a [redb](https://www.redb.org) database (`raft.redb` in the data
//! directory): a B-tree of entries and a table of records, one transaction committed with an
//! fsync per write.
//!
//! | table | key | value |
//! |---|---|---|
//! | `entries` | index (u64) | `eraftpb::Entry`, protobuf |
//! | `meta` | `"hard_state"` | `eraftpb::HardState`, protobuf |
//! | `meta` | `"snapshot_index"` | the stored snapshot's index, u64 little-endian |
//! | `snapshots` | `"snapshot"` | read only: where earlier versions kept the snapshot |

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState, Snapshot};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::record::{Batch, LogStoreError, REDB_FILE, decode, encode};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Where earlier versions stored the snapshot (read when there is no snapshot file).
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

const HARD_STATE: &str = "hard_state";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_INDEX: &str = "snapshot_index";

/// The database file in a data directory.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(REDB_FILE)
}

fn db<E: Into<redb::Error>>(e: E) -> LogStoreError {
    LogStoreError::Db(e.into())
}

/// The redb log of one node.
#[derive(Debug)]
pub(super) struct RedbLog {
    pub(super) db: Database,
}

impl RedbLog {
    /// Opens (or creates) `raft.redb` in `dir`.
    pub(super) fn open(dir: &Path) -> Result<Self, LogStoreError> {
        let database = Database::create(path(dir)).map_err(db)?;
        let txn = database.begin_write().map_err(db)?;
        txn.open_table(ENTRIES).map_err(db)?;
        txn.open_table(META).map_err(db)?;
        txn.open_table(SNAPSHOTS).map_err(db)?;
        txn.commit().map_err(db)?;
        Ok(Self { db: database })
    }

    /// The index of the snapshot recorded as stored (0: none).
    pub(super) fn snapshot_index(&self) -> Result<u64, LogStoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        let index = meta.get(SNAPSHOT_INDEX).map_err(db)?;
        Ok(index
            .and_then(|v| <[u8; 8]>::try_from(v.value()).ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// The saved hard state, if any.
    pub(super) fn hard_state(&self) -> Result<Option<HardState>, LogStoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let meta = txn.open_table(META).map_err(db)?;
        meta.get(HARD_STATE)
            .map_err(db)?
            .map(|v| decode(HARD_STATE, v.value()))
            .transpose()
    }

    /// The snapshot an earlier version kept in the database, if any.
    pub(super) fn legacy_snapshot(&self) -> Result<Option<Snapshot>, LogStoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let snapshots = txn.open_table(SNAPSHOTS).map_err(db)?;
        snapshots
            .get(SNAPSHOT)
            .map_err(db)?
            .map(|v| decode::<Snapshot>(SNAPSHOT, v.value()))
            .transpose()
    }

    /// The stored entries after `after`, in index order.
    pub(super) fn entries_after(&self, after: u64) -> Result<Vec<Entry>, LogStoreError> {
        let txn = self.db.begin_read().map_err(db)?;
        let entries = txn.open_table(ENTRIES).map_err(db)?;
        let mut out = Vec::new();
        for row in entries.range((after + 1)..).map_err(db)? {
            let (k, v) = row.map_err(db)?;
            out.push(decode(&format!("entry {}", k.value()), v.value())?);
        }
        Ok(out)
    }

    /// Writes `batches` in order in one transaction with one fsync; `stored` is the index of
    /// the snapshot file, recorded for a batch that carries a snapshot.
    pub(super) fn write(&self, batches: &[Batch<'_>], stored: u64) -> Result<(), LogStoreError> {
        let txn = self.db.begin_write().map_err(db)?;
        {
            let mut entries = txn.open_table(ENTRIES).map_err(db)?;
            let mut meta = txn.open_table(META).map_err(db)?;
            for batch in batches {
                if batch.snapshot.is_some() {
                    entries.retain(|_, _| false).map_err(db)?;
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

    /// Records that the snapshot file holds `index` (unless a later one is recorded), durably.
    pub(super) fn record_snapshot(&self, index: u64) -> Result<(), LogStoreError> {
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
        txn.commit().map_err(db)
    }

    /// Drops entries before `compact_to`, at most `per_transaction` to a transaction, without
    /// an fsync of their own. Returns how many were dropped.
    pub(super) fn compact(
        &self,
        compact_to: u64,
        per_transaction: u64,
    ) -> Result<u64, LogStoreError> {
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

    /// The first stored entry's index (tests).
    #[cfg(test)]
    pub(super) fn first_entry(&self) -> Option<u64> {
        let txn = self.db.begin_read().unwrap();
        let t = txn.open_table(ENTRIES).unwrap();
        t.first().unwrap().map(|(k, _)| k.value())
    }

    /// Stores a snapshot where an earlier version kept it (tests).
    #[cfg(test)]
    pub(super) fn put_legacy_snapshot(&self, snap: &Snapshot) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(SNAPSHOTS)
            .unwrap()
            .insert(SNAPSHOT, encode(snap).as_slice())
            .unwrap();
        txn.commit().unwrap();
    }

    /// Overwrites the hard state with bytes that do not decode (tests).
    #[cfg(test)]
    pub(super) fn damage_hard_state(&self) {
        let txn = self.db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(HARD_STATE, [0xffu8, 0xff, 0xff].as_slice())
            .unwrap();
        txn.commit().unwrap();
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
