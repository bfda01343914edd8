//! A [`DataSink`] that stores each stream as a file in a directory: written to
//! `<stream>.part`, renamed to `<stream>` on close (so a complete file is never confused with
//! a partial one), removed on abort and on discard.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use super::sink::{DataSink, SinkError, SinkStream, StreamInfo};

/// Stores streams as files under one directory.
#[derive(Debug, Clone)]
pub struct FileSink {
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl DataSink for FileSink {
    type Stream = FileStream;
    type Closed = PathBuf;

    async fn create(&self, info: &StreamInfo) -> Result<FileStream, SinkError> {
        let path = self.dir.join(info.stream.to_string());
        let part = path.with_extension("part");
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
            .map_err(|e| SinkError(format!("creating {}: {e}", part.display())))?;
        Ok(FileStream { file, path, part })
    }

    async fn discard(&self, closed: PathBuf) {
        let _ = tokio::fs::remove_file(&closed).await;
    }
}

/// One stream's file.
#[derive(Debug)]
pub struct FileStream {
    file: tokio::fs::File,
    path: PathBuf,
    part: PathBuf,
}

impl SinkStream for FileStream {
    type Closed = PathBuf;

    async fn write(&mut self, data: Bytes) -> Result<(), SinkError> {
        Ok(self.file.write_all(&data).await?)
    }

    async fn sync(&mut self) -> Result<(), SinkError> {
        self.file.flush().await?;
        Ok(self.file.sync_data().await?)
    }

    async fn close(mut self) -> Result<PathBuf, SinkError> {
        self.file.flush().await?;
        self.file.sync_all().await?;
        tokio::fs::rename(&self.part, &self.path).await?;
        Ok(self.path)
    }

    async fn abort(mut self, _reason: String) {
        let _ = self.file.flush().await;
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.part).await;
    }
}
