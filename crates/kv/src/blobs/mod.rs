//! Blobs: values too large for the raft log. Their bytes go to every replica through the
//! peerwire data stream (Ratis's model: the client streams to a primary, which fans out), and
//! only then does a `PutBlob` entry carrying their [`BlobRef`] go through raft. When a node
//! applies that entry it links the stream it received (verifying the SHA-256) under the blob's
//! hash; a node that was not on the stream's route, or lost its copy, fetches the blob from a
//! replica on the pull lane (`serve.rs`: `blob/<sha256>`, read by chunks with `sendfile`).
//!
//! Files are placed and removed under one lock, each time after checking the applied state,
//! so a blob released by one entry and put again by the next is never lost to a race.

mod fetch;
pub(crate) mod files;
pub(crate) mod serve;
pub(crate) mod upload;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::Stream;
use peerwire::{ClientConfig, Identity};
use peerwire_datastream::{
    DataStreamClient, DataStreamConfig, DataStreamServer, FileSink, RoutingTable,
};
use peerwire_pull::{PullClient, PullConfig, StreamManager};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::command::{BlobRef, check_sha256};
use crate::error::KvError;
use crate::node::Shared;
use files::Layout;

/// How a blob's materialisation ended: `None` while it runs.
type Outcome = Option<Result<(), String>>;

/// One node's blobs. Clones share them.
#[derive(Clone)]
pub(crate) struct Blobs {
    inner: Arc<Inner>,
}

struct Inner {
    id: u64,
    layout: Layout,
    server: DataStreamServer<FileSink>,
    streams: DataStreamClient,
    /// This node's blobs on the pull lane (mounted on the node's port by the caller).
    pulls: StreamManager,
    /// Fetches blobs from other nodes' pull lanes.
    pull: PullClient,
    shared: Arc<Shared>,
    /// Serialises placing and removing files in the blob directory.
    place: tokio::sync::Mutex<()>,
    /// Blobs being linked or fetched, by SHA-256.
    pending: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
    /// This node's peerwire address (the primary of the streams it starts).
    addr: Mutex<Option<SocketAddr>>,
    /// Streams received before the node last stopped, removed by the first sweep.
    leftovers: Mutex<Vec<PathBuf>>,
    /// The commit index at start: once applied this far, the log is replayed and the
    /// directory can be swept against the state.
    sweep_after: u64,
    swept: AtomicBool,
    /// Blob tasks running (linking, fetching, removing, sweeping).
    busy: watch::Sender<usize>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs")
            .field("dir", &self.inner.layout.root)
            .finish_non_exhaustive()
    }
}

impl Blobs {
    /// Opens the blob directory under `data_dir` and makes the data-stream server (mounted on
    /// the node's port by the caller) and client. `sweep_after` is the commit index recovered
    /// at start: the directory is swept once the node applied that far.
    pub(crate) fn new(
        data_dir: &std::path::Path,
        identity: Identity,
        client: ClientConfig,
        shared: Arc<Shared>,
        sweep_after: u64,
        (tls, secret): (
            Option<peerwire::tls::TlsConfig>,
            Option<peerwire::secret::SecretConfig>,
        ),
    ) -> Result<Self, crate::error::StartError> {
        let storage =
            |e: std::io::Error| crate::error::StartError::Storage(format!("blob directory: {e}"));
        let layout = Layout::create(data_dir).map_err(storage)?;
        let leftovers = files::open(&layout).map_err(storage)?;
        let mut cfg = DataStreamConfig {
            identity,
            ..DataStreamConfig::default()
        };
        // The forwarding client and the uploads to other nodes use the node's TLS.
        cfg.connection.tls = tls;
        cfg.connection.secret = secret;
        let server = DataStreamServer::new(
            cfg.clone(),
            FileSink::new(&layout.incoming)
                .map_err(|e| crate::error::StartError::Storage(e.to_string()))?,
        )?;
        let streams = DataStreamClient::new(DataStreamConfig {
            identity: Identity {
                node_id: 0,
                ..identity
            },
            ..cfg
        })?;
        let pulls = StreamManager::new(PullConfig {
            identity: Some(identity),
            ..PullConfig::default()
        });
        let pull = PullClient::new(client)?;
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak = weak.clone();
            pulls.set_resolver(move |peer: &peerwire::connection::PeerInfo, name: &str| {
                serve::resolve(&weak, peer, name)
            });
            Inner {
                id: identity.node_id,
                layout,
                server,
                streams,
                pulls: pulls.clone(),
                pull,
                shared,
                place: tokio::sync::Mutex::new(()),
                pending: Mutex::new(HashMap::new()),
                addr: Mutex::new(None),
                leftovers: Mutex::new(leftovers),
                sweep_after,
                swept: AtomicBool::new(false),
                busy: watch::channel(0).0,
                tasks: TaskTracker::new(),
                stop: CancellationToken::new(),
            }
        });
        Ok(Self { inner })
    }

    /// The data-stream server to mount on the node's port.
    pub(crate) fn server(&self) -> &DataStreamServer<FileSink> {
        &self.inner.server
    }

    /// The stream manager serving this node's blobs, to mount on the node's port.
    pub(crate) fn pull_server(&self) -> &StreamManager {
        &self.inner.pulls
    }

    /// Records the node's bound address and each member's.
    pub(crate) fn start(&self, addr: SocketAddr) {
        *self.inner.addr.lock().expect("addr lock poisoned") = Some(addr);
        let (members, applied) = {
            let state = self.inner.shared.state();
            (state.members.clone(), state.applied)
        };
        for (id, addr) in members {
            self.add_peer(id, addr);
        }
        self.applied(applied);
    }

    /// Runs `task` in the background, counted in `busy`.
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        struct Done(Arc<Inner>);
        impl Drop for Done {
            fn drop(&mut self) {
                self.0.busy.send_modify(|n| *n -= 1);
            }
        }
        self.inner.busy.send_modify(|n| *n += 1);
        let done = Done(self.inner.clone());
        self.inner.tasks.spawn(async move {
            let _done = done;
            task.await;
        });
    }

    /// Waits until no blob is being linked, fetched or removed.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn settled(&self) {
        let mut busy = self.inner.busy.subscribe();
        let _ = busy.wait_for(|n| *n == 0).await;
    }

    /// The raft loop applied up to `index`: the first time that reaches the commit index
    /// recovered at start, sweep the directory.
    pub(crate) fn applied(&self, index: u64) {
        if index >= self.inner.sweep_after && !self.inner.swept.swap(true, Ordering::AcqRel) {
            self.sweep();
        }
    }

    /// Removes the streams left from before the last stop and the blobs no key holds, and
    /// fetches the held blobs missing here (after a restart or a snapshot).
    fn sweep(&self) {
        let blobs = self.clone();
        self.spawn(async move {
            let inner = &blobs.inner;
            let kept = {
                let _guard = inner.place.lock().await;
                let leftovers =
                    std::mem::take(&mut *inner.leftovers.lock().expect("leftovers lock poisoned"));
                let (layout, shared) = (inner.layout.clone(), inner.shared.clone());
                let swept = tokio::task::spawn_blocking(move || {
                    files::sweep(&layout, &|sha| shared.state().holds_blob(sha), &leftovers)
                })
                .await;
                match swept {
                    Ok(Ok(kept)) => kept,
                    outcome => {
                        tracing::warn!(
                            node = inner.id,
                            ?outcome,
                            "sweeping the blob directory failed"
                        );
                        return;
                    }
                }
            };
            let held = inner.shared.state().blobs();
            for blob in held {
                if !kept.contains(&blob.sha256) {
                    blobs.materialize(blob, None);
                }
            }
        });
    }

    /// Lets streams name member `id` at `addr`.
    pub(crate) fn add_peer(&self, id: u64, addr: SocketAddr) {
        if id != self.inner.id {
            self.inner.server.add_peer(id, addr);
        }
    }

    /// Forgets member `id`.
    pub(crate) fn remove_peer(&self, id: u64) {
        self.inner.server.remove_peer(id);
    }

    /// Where the blob `sha256` is (or will be) on this node.
    pub(crate) fn path(&self, sha256: &str) -> PathBuf {
        self.inner.layout.blob(sha256)
    }

    /// The raft loop applied an entry putting `blob`: link the stream this node received (or
    /// fetch the blob) in the background.
    pub(crate) fn on_applied(&self, blob: &BlobRef) {
        let received = self.inner.server.take_closed(&blob.stream_ref());
        self.materialize(blob.clone(), received);
    }

    /// The raft loop applied an entry after which no key holds blob `sha256`.
    pub(crate) fn on_released(&self, sha256: String) {
        let inner = self.inner.clone();
        self.spawn(async move {
            let _guard = inner.place.lock().await;
            if inner.shared.state().holds_blob(&sha256) {
                return;
            }
            match tokio::fs::remove_file(inner.layout.blob(&sha256)).await {
                Ok(()) => tracing::debug!(node = inner.id, %sha256, "released blob removed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(node = inner.id, %sha256, error = %e, "removing a released blob failed"),
            }
        });
    }

    /// The raft loop installed a snapshot at `index`: remove blobs it no longer holds and
    /// fetch the ones it holds that are missing here.
    pub(crate) fn on_snapshot(&self, index: u64) {
        if self.inner.swept.load(Ordering::Acquire) {
            self.sweep();
        } else {
            self.applied(index);
        }
    }

    /// Waits until blob `blob` is on this node (linking or fetching it if needed) and returns
    /// its path.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the fetch goes on in the background.
    pub(crate) async fn ensure(
        &self,
        blob: &BlobRef,
        deadline: Instant,
    ) -> Result<PathBuf, KvError> {
        check_sha256(&blob.sha256)?;
        let started = Instant::now();
        let path = self.path(&blob.sha256);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return Ok(path);
        }
        let mut outcome = self.materialize(blob.clone(), None);
        let wait = outcome.wait_for(Option::is_some);
        match tokio::time::timeout_at(deadline, wait).await {
            Err(_) => Err(KvError::Timeout(
                deadline.saturating_duration_since(started),
            )),
            Ok(Err(_)) => Err(KvError::Stopping),
            Ok(Ok(done)) => match done.as_ref().expect("waited for an outcome") {
                Ok(()) => Ok(path),
                Err(e) => Err(KvError::Blob(e.clone())),
            },
        }
    }

    /// Starts placing `blob` (from `received`, the stream this node got, if any; else from
    /// another replica) unless that already runs; returns its outcome.
    fn materialize(&self, blob: BlobRef, received: Option<PathBuf>) -> watch::Receiver<Outcome> {
        let mut pending = self.inner.pending.lock().expect("pending lock poisoned");
        if let Some(rx) = pending.get(&blob.sha256) {
            if let Some(path) = received {
                // Another copy is on its way in; this one is not needed.
                self.spawn(async move {
                    let _ = tokio::fs::remove_file(path).await;
                });
            }
            return rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        pending.insert(blob.sha256.clone(), rx.clone());
        drop(pending);
        let inner = self.inner.clone();
        self.spawn(async move {
            let sha256 = blob.sha256.clone();
            let outcome = tokio::select! {
                r = fetch::materialize(&inner, &blob, received) => r,
                () = inner.stop.cancelled() => Err("the node is stopping".into()),
            };
            if let Err(e) = &outcome {
                tracing::warn!(node = inner.id, %sha256, error = %e, "a blob could not be placed");
            }
            inner
                .pending
                .lock()
                .expect("pending lock poisoned")
                .remove(&sha256);
            let _ = tx.send(Some(outcome));
        });
        rx
    }

    /// Streams `body` to this node and the reachable `replicas` (a star with this node as
    /// primary), hashing it on the way, and returns the reference to commit. At most
    /// `max` bytes are taken.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a stream dropped half-way is aborted by the servers' idle timeout.
    pub(crate) async fn stream_in<E: std::fmt::Display>(
        &self,
        replicas: &[u64],
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
        max: u64,
    ) -> Result<BlobRef, KvError> {
        let primary = self
            .inner
            .addr
            .lock()
            .expect("addr lock poisoned")
            .ok_or(KvError::Stopping)?;
        let routing = RoutingTable::star(self.inner.id, replicas)
            .map_err(|e| KvError::Blob(format!("bad route: {e}")))?;
        let out = self
            .inner
            .streams
            .open(primary, Bytes::new(), routing)
            .await
            .map_err(|e| KvError::Blob(e.to_string()))?;
        let mut route = vec![self.inner.id];
        route.extend_from_slice(replicas);
        upload::upload(out, body, max, route, |_| {})
            .await
            .map_err(|e| match e {
                upload::UploadError::TooLarge { len, max } => KvError::BlobTooLarge { len, max },
                other => KvError::Blob(other.to_string()),
            })
    }

    /// Checks that the stream named by `blob` closed on this node with `blob`'s length and
    /// SHA-256 (a native client's claim, checked before it is committed).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn verify_received(&self, blob: &BlobRef) -> Result<(), KvError> {
        check_sha256(&blob.sha256)?;
        if !self
            .inner
            .server
            .closed_streams()
            .contains(&blob.stream_ref())
        {
            return Err(KvError::Blob(format!(
                "stream {} did not close on node {} (or was already used)",
                blob.stream_ref(),
                self.inner.id
            )));
        }
        let path = self.inner.layout.received(blob);
        let b = blob.clone();
        let ok = tokio::task::spawn_blocking(move || files::matches(&path, &b))
            .await
            .map_err(|e| KvError::Blob(e.to_string()))?
            .map_err(|e| KvError::Blob(format!("reading the received stream: {e}")))?;
        if ok {
            Ok(())
        } else {
            Err(KvError::Blob(format!(
                "stream {} does not hold {} bytes with SHA-256 {}",
                blob.stream_ref(),
                blob.size,
                blob.sha256
            )))
        }
    }

    /// Stops streams and fetches.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave tasks running.
    pub(crate) async fn stop(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.streams.shutdown().await;
        self.inner.pull.shutdown().await;
        self.inner.pulls.shutdown().await;
        self.inner.server.stop().await;
    }
}
