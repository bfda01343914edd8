//! The stored snapshot as a file of its own (`snapshot.pb` in the data directory, an
//! `eraftpb::Snapshot` in protobuf), replaced atomically: written to `snapshot.pb.tmp`,
//! fsynced, renamed over the old one, and the directory fsynced (etcd's `snap` package keeps
//! its snapshots as files beside the WAL for the same reason).
//!
//! Outside redb, writing a snapshot of many megabytes does not hold redb's one write
//! transaction, which every log write waits for.

use std::io::Write;
use std::path::{Path, PathBuf};

const NAME: &str = "snapshot.pb";
const TEMP: &str = "snapshot.pb.tmp";
/// Bytes written between two syncs: the file system never holds more of the snapshot unwritten,
/// so a log fsync on the same disk (which may have to wait for a journal commit carrying the
/// snapshot's dirty data) waits for a few milliseconds' worth at most.
const SYNC_EVERY: usize = 1 << 20;

/// The snapshot file of a data directory.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotFile {
    dir: PathBuf,
}

impl SnapshotFile {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// Replaces the stored snapshot with `bytes`, durably: after this returns, a crash leaves
    /// the new one; before, the old one (never a mix of the two).
    pub(crate) fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let temp = self.dir.join(TEMP);
        let mut file = std::fs::File::create(&temp)?;
        for chunk in bytes.chunks(SYNC_EVERY) {
            file.write_all(chunk)?;
            file.sync_data()?;
        }
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, self.dir.join(NAME))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    /// The stored snapshot's bytes, if there is one.
    pub(crate) fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.dir.join(NAME)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        assert_eq!(file.read().unwrap(), None);
        file.replace(b"first").unwrap();
        file.replace(b"second").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some(&b"second"[..]));
        assert!(!dir.path().join(TEMP).exists());
    }

    #[test]
    fn a_temp_file_left_by_a_crash_is_ignored_and_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path());
        file.replace(b"kept").unwrap();
        std::fs::write(dir.path().join(TEMP), b"half writ").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some(&b"kept"[..]));
        file.replace(b"next").unwrap();
        assert_eq!(file.read().unwrap().as_deref(), Some(&b"next"[..]));
    }
}
