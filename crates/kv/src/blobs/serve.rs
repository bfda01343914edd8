//! Serving this node's blobs on the pull lane (`peerwire-pull`): a reader opens
//! `blob/<sha256>` and reads the file by chunks (sent with `sendfile`, each chunk's CRC32C
//! checked; the reader checks the SHA-256 of the whole). Replicas fetch missing blobs this way,
//! and so do native clients, from whichever node holds the blob.

use std::sync::Weak;
use std::time::Duration;

use peerwire::connection::PeerInfo;
use peerwire_pull::{OpenError, Resolving, Source};

use super::Inner;
use crate::command::check_sha256;

/// The prefix of blob names on the pull lane.
const PREFIX: &str = "blob/";

/// How long an open waits for a blob this node is still linking or fetching.
const PENDING_WAIT: Duration = Duration::from_secs(30);

/// The pull-lane name of blob `sha256`.
pub(crate) fn name(sha256: &str) -> String {
    format!("{PREFIX}{sha256}")
}

/// Opens `blob/<sha256>` as the blob's file, once this node holds it.
pub(super) fn resolve(inner: &Weak<Inner>, _peer: &PeerInfo, name: &str) -> Resolving {
    let inner = inner.clone();
    let name = name.to_owned();
    Box::pin(async move {
        let Some(sha256) = name.strip_prefix(PREFIX) else {
            return Err(OpenError::NoSuchName(format!(
                "blob names are {PREFIX}<sha256>"
            )));
        };
        check_sha256(sha256).map_err(|e| OpenError::NoSuchName(e.to_string()))?;
        let Some(inner) = inner.upgrade() else {
            return Err(OpenError::NoSuchName("the node is stopping".into()));
        };
        let pending = inner
            .pending
            .lock()
            .expect("pending lock poisoned")
            .get(sha256)
            .cloned();
        if let Some(mut outcome) = pending {
            let _ = tokio::time::timeout(PENDING_WAIT, outcome.wait_for(Option::is_some)).await;
        }
        match std::fs::File::open(inner.layout.blob(sha256)) {
            Ok(file) => Ok(Source::file(file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(OpenError::NoSuchName(
                format!("node {} does not hold blob {sha256}", inner.id),
            )),
            Err(e) => Err(OpenError::Io(e)),
        }
    })
}
