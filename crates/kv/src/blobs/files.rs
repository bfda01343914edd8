//! The blob directory's layout and its blocking file work: hashing, placing a verified file
//! under its SHA-256, and the clean-up at start.
//!
//! ```text
//! <data-dir>/blobs/<sha256>            a blob some key holds (verified)
//! <data-dir>/blobs/incoming/<stream>   data streams received here (the FileSink's directory)
//! <data-dir>/blobs/fetch/<sha256>.part a blob being fetched from another replica
//! ```

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::command::{BlobRef, hex};

/// The directories of one node's blobs.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub(crate) root: PathBuf,
    pub(crate) incoming: PathBuf,
    pub(crate) fetch: PathBuf,
}

impl Layout {
    /// The layout under `data_dir`, with its directories created.
    pub(crate) fn create(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("blobs");
        let layout = Self {
            incoming: root.join("incoming"),
            fetch: root.join("fetch"),
            root,
        };
        std::fs::create_dir_all(&layout.incoming)?;
        std::fs::create_dir_all(&layout.fetch)?;
        Ok(layout)
    }

    /// Where the blob `sha256` lives once placed.
    pub(crate) fn blob(&self, sha256: &str) -> PathBuf {
        self.root.join(sha256)
    }

    /// Where the data stream that carried `blob` left its file on this node.
    pub(crate) fn received(&self, blob: &BlobRef) -> PathBuf {
        self.incoming.join(blob.stream_ref().to_string())
    }
}

/// The SHA-256 (hex) and length of a file.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((hex(&hasher.finalize()), len))
}

/// Whether the file at `path` is `blob` (length and SHA-256).
pub(crate) fn matches(path: &Path, blob: &BlobRef) -> std::io::Result<bool> {
    if std::fs::metadata(path)?.len() != blob.size {
        return Ok(false);
    }
    Ok(sha256_file(path)?.0 == blob.sha256)
}

/// Moves the verified file `from` to its place as blob `sha256` and makes the rename durable.
pub(crate) fn place(layout: &Layout, from: &Path, sha256: &str) -> std::io::Result<PathBuf> {
    let to = layout.blob(sha256);
    std::fs::rename(from, &to)?;
    std::fs::File::open(&layout.root)?.sync_all()?;
    Ok(to)
}

/// Prepares the directory at start, before anything is served: half-fetched files go; the
/// streams received before the stop are returned. They stay until the node has replayed its
/// log (an entry committed before the stop may link one), then [`sweep`] removes what is left.
pub(crate) fn open(layout: &Layout) -> std::io::Result<Vec<PathBuf>> {
    for entry in std::fs::read_dir(&layout.fetch)? {
        std::fs::remove_file(entry?.path())?;
    }
    let mut leftovers = Vec::new();
    for entry in std::fs::read_dir(&layout.incoming)? {
        leftovers.push(entry?.path());
    }
    Ok(leftovers)
}

/// Removes the `leftovers` of [`open`] still there and every blob `holds` says no key holds;
/// returns the blobs kept.
pub(crate) fn sweep(
    layout: &Layout,
    holds: &dyn Fn(&str) -> bool,
    leftovers: &[PathBuf],
) -> std::io::Result<HashSet<String>> {
    for path in leftovers {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    let mut kept = HashSet::new();
    for entry in std::fs::read_dir(&layout.root)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if holds(&name) {
            kept.insert(name);
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob_of(data: &[u8], stream: u64) -> BlobRef {
        BlobRef {
            sha256: hex(&Sha256::digest(data)),
            size: data.len() as u64,
            stream: (7, stream),
            replicas: vec![1],
        }
    }

    #[test]
    fn opening_keeps_received_streams_until_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::create(dir.path()).unwrap();
        let held = blob_of(b"held", 1);
        let stale = blob_of(b"stale", 2);
        let received = blob_of(b"received", 3);
        std::fs::write(layout.blob(&held.sha256), b"held").unwrap();
        std::fs::write(layout.blob(&stale.sha256), b"stale").unwrap();
        std::fs::write(layout.received(&received), b"received").unwrap();
        std::fs::write(layout.fetch.join("x.part"), b"half").unwrap();

        let leftovers = open(&layout).unwrap();
        assert_eq!(leftovers, vec![layout.received(&received)]);
        assert_eq!(std::fs::read_dir(&layout.fetch).unwrap().count(), 0);
        assert!(matches(&layout.received(&received), &received).unwrap());

        let kept = sweep(&layout, &|sha| sha == held.sha256, &leftovers).unwrap();
        assert_eq!(kept, HashSet::from([held.sha256.clone()]));
        assert!(matches(&layout.blob(&held.sha256), &held).unwrap());
        assert!(!layout.blob(&stale.sha256).exists());
        assert_eq!(std::fs::read_dir(&layout.incoming).unwrap().count(), 0);
        // A second sweep finds the leftovers gone and is fine with it.
        sweep(&layout, &|_| true, &leftovers).unwrap();
    }
}
