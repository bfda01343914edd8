//! Placing a blob on this node: from the stream it received (verified), or pulled from a
//! replica's pull lane (`blob/<sha256>`, chunks with their CRC32Cs), written to `fetch/`,
//! verified against its SHA-256, and moved into place.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::TryStreamExt;
use peerwire_pull::ReadOptions;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::{Inner, files, serve};
use crate::command::{BlobRef, check_sha256, hex};
/// How long a node keeps trying the replicas for a blob it lacks (a later read or restart
/// tries again).
const FETCH_PATIENCE: Duration = Duration::from_secs(60);

/// Places `blob` on this node: from `received` if it holds the blob, else from a replica.
pub(super) async fn materialize(
    inner: &Inner,
    blob: &BlobRef,
    received: Option<PathBuf>,
) -> Result<(), String> {
    check_sha256(&blob.sha256).map_err(|e| e.to_string())?;
    let target = inner.layout.blob(&blob.sha256);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        if let Some(path) = received {
            let _ = tokio::fs::remove_file(path).await;
        }
        return Ok(());
    }
    // Not handed over by the data-stream server: the stream may have arrived before a restart.
    let received = match received {
        Some(path) => Some(path),
        None => {
            let path = inner.layout.received(blob);
            tokio::fs::try_exists(&path)
                .await
                .unwrap_or(false)
                .then_some(path)
        }
    };
    if let Some(path) = received {
        let (p, b) = (path.clone(), blob.clone());
        match tokio::task::spawn_blocking(move || files::matches(&p, &b)).await {
            Ok(Ok(true)) => return place_held(inner, &path, blob).await,
            outcome => {
                tracing::warn!(node = inner.id, sha256 = %blob.sha256, ?outcome, "the received stream is not the blob; fetching it");
                let _ = tokio::fs::remove_file(&path).await;
            }
        }
    }
    // Replicas may not have applied (and linked) the blob yet, or be restarting: try them all
    // in rounds, backing off, for a bounded time.
    let give_up = tokio::time::Instant::now() + FETCH_PATIENCE;
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut last = String::from("no other member is known");
        for (id, addr) in sources(inner, blob) {
            match fetch_from(inner, addr, blob).await {
                Ok(tmp) => {
                    tracing::info!(node = inner.id, from = id, sha256 = %blob.sha256, bytes = blob.size, "blob fetched");
                    return place_held(inner, &tmp, blob).await;
                }
                Err(e) => last = format!("node {id}: {e}"),
            }
        }
        if !inner.shared.state().holds_blob(&blob.sha256) {
            return Err(format!("no key holds blob {} any more", blob.sha256));
        }
        if tokio::time::Instant::now() + backoff > give_up {
            return Err(format!(
                "no replica could serve blob {} within {FETCH_PATIENCE:?} (last: {last})",
                blob.sha256
            ));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The members to fetch from: the blob's replicas first, then the others.
fn sources(inner: &Inner, blob: &BlobRef) -> Vec<(u64, SocketAddr)> {
    let state = inner.shared.state();
    let mut out: Vec<(u64, SocketAddr)> = blob
        .replicas
        .iter()
        .filter_map(|id| state.members.get(id).map(|a| (*id, *a)))
        .collect();
    for (id, addr) in &state.members {
        if !blob.replicas.contains(id) {
            out.push((*id, *addr));
        }
    }
    out.retain(|(id, _)| *id != inner.id);
    out
}

/// Moves the verified file `from` into place, if some key still holds the blob.
async fn place_held(inner: &Inner, from: &Path, blob: &BlobRef) -> Result<(), String> {
    let _guard = inner.place.lock().await;
    if !inner.shared.state().holds_blob(&blob.sha256) {
        let _ = tokio::fs::remove_file(from).await;
        return Ok(());
    }
    let (layout, from, sha) = (
        inner.layout.clone(),
        from.to_path_buf(),
        blob.sha256.clone(),
    );
    tokio::task::spawn_blocking(move || files::place(&layout, &from, &sha))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("placing the blob: {e}"))?;
    Ok(())
}

/// Fetches `blob` from the member at `addr` into a file under `fetch/`, verified.
async fn fetch_from(inner: &Inner, addr: SocketAddr, blob: &BlobRef) -> Result<PathBuf, String> {
    let tmp = inner
        .layout
        .fetch
        .join(format!("{}.{:016x}.part", blob.sha256, fastrand::u64(..)));
    let result = fetch_into(inner, addr, blob, &tmp).await;
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result.map(|()| tmp)
}

async fn fetch_into(
    inner: &Inner,
    addr: SocketAddr,
    blob: &BlobRef,
    tmp: &Path,
) -> Result<(), String> {
    let info = inner
        .pull
        .open(addr, &serve::name(&blob.sha256))
        .await
        .map_err(|e| e.to_string())?;
    if info.len != Some(blob.size) {
        return Err(format!(
            "the node serves {:?} bytes for a blob of {}",
            info.len, blob.size
        ));
    }
    let mut file = tokio::fs::File::create(tmp)
        .await
        .map_err(|e| format!("creating {}: {e}", tmp.display()))?;
    let mut hasher = Sha256::new();
    let mut read = inner
        .pull
        .read(addr, info, ReadOptions::default())
        .map_err(|e| e.to_string())?;
    while let Some(chunk) = read.try_next().await.map_err(|e| e.to_string())? {
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    let got = hex(&hasher.finalize());
    if got != blob.sha256 {
        return Err(format!("fetched bytes hash to {got}"));
    }
    Ok(())
}
