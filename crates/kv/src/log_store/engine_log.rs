//! The raft log in [raft-engine](https://github.com/tikv/raft-engine) (TiKV's log store made for
//! raft logs; `raft-engine/` in the data directory): append-only files, an in-memory index
//! rebuilt at open, one `fdatasync` per write into preallocated (recycled) files, so a write
//! costs one sequential append and no B-tree pages.
//!
//! One raft group, id 1, holds:
//!
//! | record | kind | value |
//! |---|---|---|
//! | entries | raft-engine entries | `eraftpb::Entry`, protobuf |
//! | `hard_state` | key | `eraftpb::HardState`, protobuf |
//! | `snapshot_index` | key | the stored snapshot's index, u64 little-endian |
//!
//! A batch carrying a snapshot from the leader cleans the group and writes the records again in
//! the same write, so the log never keeps entries from before the snapshot.

use std::path::{Path, PathBuf};

use raft::eraftpb::{Entry, HardState};
use raft_engine::{Command, Config, Engine, LogBatch, MessageExt, ReadableSize, RecoveryMode};

use super::record::{Batch, ENGINE_DIR, LogStoreError, decode};

/// The group every record belongs to.
const GROUP: u64 = 1;
const HARD_STATE: &[u8] = b"hard_state";
const SNAPSHOT_INDEX: &[u8] = b"snapshot_index";

/// The engine's directory in a data directory.
pub(super) fn path(dir: &Path) -> PathBuf {
    dir.join(ENGINE_DIR)
}

/// How raft-engine finds an entry's index.
#[derive(Debug, Clone, Copy)]
struct Entries;

impl MessageExt for Entries {
    type Entry = Entry;

    fn index(e: &Entry) -> u64 {
        e.index
    }
}

fn engine_error(e: raft_engine::Error) -> LogStoreError {
    LogStoreError::Engine(e.to_string())
}

/// The raft-engine log of one node.
pub(super) struct EngineLog {
    engine: Engine,
}

impl std::fmt::Debug for EngineLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineLog").finish_non_exhaustive()
    }
}

impl EngineLog {
    /// Opens (or creates) the engine in `dir`, replaying its files. A torn write at the tail
    /// (a crash during an append) is dropped: it was never acknowledged.
    pub(super) fn open(dir: &Path) -> Result<Self, LogStoreError> {
        let cfg = Config {
            dir: path(dir).display().to_string(),
            recovery_mode: RecoveryMode::TolerateTailCorruption,
            target_file_size: ReadableSize::mb(64),
            // Files whose entries were all compacted are deleted once the log passes this.
            purge_threshold: ReadableSize::mb(256),
            ..Config::default()
        };
        let engine = Engine::open(cfg).map_err(engine_error)?;
        Ok(Self { engine })
    }

    /// The index of the snapshot recorded as stored (0: none).
    pub(super) fn snapshot_index(&self) -> u64 {
        self.engine
            .get(GROUP, SNAPSHOT_INDEX)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map_or(0, u64::from_le_bytes)
    }

    /// The saved hard state, if any.
    pub(super) fn hard_state(&self) -> Result<Option<HardState>, LogStoreError> {
        self.engine
            .get(GROUP, HARD_STATE)
            .map(|v| decode("hard_state", &v))
            .transpose()
    }

    /// The stored entries after `after`, in index order.
    pub(super) fn entries_after(&self, after: u64) -> Result<Vec<Entry>, LogStoreError> {
        let (Some(first), Some(last)) = (
            self.engine.first_index(GROUP),
            self.engine.last_index(GROUP),
        ) else {
            return Ok(Vec::new());
        };
        let begin = first.max(after + 1);
        let mut out = Vec::new();
        if begin <= last {
            self.engine
                .fetch_entries_to::<Entries>(GROUP, begin, last + 1, None, &mut out)
                .map_err(engine_error)?;
        }
        Ok(out)
    }

    /// Writes `batches` in order as one write with one `fdatasync`; `stored` is the index of
    /// the snapshot file, recorded for a batch that carries a snapshot.
    pub(super) fn write(&self, batches: &[Batch<'_>], stored: u64) -> Result<(), LogStoreError> {
        let mut lb = LogBatch::default();
        // The latest hard state written in this call: a clean drops the group's records.
        let mut hard_state = None;
        for batch in batches {
            if batch.snapshot.is_some() {
                lb.add_command(GROUP, Command::Clean);
                lb.put(
                    GROUP,
                    SNAPSHOT_INDEX.to_vec(),
                    stored.to_le_bytes().to_vec(),
                )
                .map_err(engine_error)?;
                if let Some(hs) = batch.hard_state.or(hard_state) {
                    lb.put_message(GROUP, HARD_STATE.to_vec(), hs)
                        .map_err(engine_error)?;
                } else if let Some(hs) = self.hard_state()? {
                    lb.put_message(GROUP, HARD_STATE.to_vec(), &hs)
                        .map_err(engine_error)?;
                }
            }
            if !batch.entries.is_empty() {
                // Entries from the first one's index on replace what is stored there.
                lb.add_entries::<Entries>(GROUP, batch.entries)
                    .map_err(engine_error)?;
            }
            if let Some(hs) = batch.hard_state {
                lb.put_message(GROUP, HARD_STATE.to_vec(), hs)
                    .map_err(engine_error)?;
                hard_state = Some(hs);
            }
        }
        if lb.is_empty() {
            return Ok(());
        }
        self.engine.write(&mut lb, true).map_err(engine_error)?;
        Ok(())
    }

    /// Records that the snapshot file holds `index` (unless a later one is recorded), durably.
    pub(super) fn record_snapshot(&self, index: u64) -> Result<(), LogStoreError> {
        if self.snapshot_index() >= index {
            return Ok(());
        }
        let mut lb = LogBatch::default();
        lb.put(GROUP, SNAPSHOT_INDEX.to_vec(), index.to_le_bytes().to_vec())
            .map_err(engine_error)?;
        self.engine.write(&mut lb, true).map_err(engine_error)?;
        Ok(())
    }

    /// Drops entries before `compact_to` (not synced: entries a crash brings back lie below
    /// the snapshot, where recovery never reads) and deletes the files nothing refers to any
    /// more. Returns how many entries were dropped.
    pub(super) fn compact(&self, compact_to: u64) -> Result<u64, LogStoreError> {
        let dropped = self.engine.compact_to(GROUP, compact_to);
        self.engine.purge_expired_files().map_err(engine_error)?;
        Ok(dropped)
    }

    /// The first stored entry's index (tests).
    #[cfg(test)]
    pub(super) fn first_entry(&self) -> Option<u64> {
        self.engine.first_index(GROUP)
    }

    /// Overwrites the hard state with bytes that do not decode (tests).
    #[cfg(test)]
    pub(super) fn damage_hard_state(&self) {
        let mut lb = LogBatch::default();
        lb.put(GROUP, HARD_STATE.to_vec(), vec![0xff, 0xff, 0xff])
            .unwrap();
        self.engine.write(&mut lb, true).unwrap();
    }
}
