//! [`KvHandle`]: the store's API inside a node, used by the HTTP server and the native service.
//! Writes go to the leader — proposed here when this node leads, forwarded over peerwire RPC
//! otherwise — and answer once applied. Reads are linearizable through raft's ReadIndex
//! unless asked to be served locally.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{ConfChange, ConfChangeType};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::raft_loop::Request;
use super::shared::{ConfContext, Shared, View};
use crate::blobs::Blobs;
use crate::command::{BlobRef, Op, check_key};
use crate::error::KvError;
use crate::service::{Forwarder, MemberStatus, Status};
use crate::state::Value;

/// The store's API on one node. Clones share the node.
#[derive(Clone)]
pub struct KvHandle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) forwarder: Forwarder,
    pub(crate) request_timeout: Duration,
    pub(crate) inline_max: usize,
    pub(crate) blob_max: u64,
    pub(crate) blobs: Blobs,
    pub(crate) peer_status: Arc<dyn Fn(u64) -> PeerReport + Send + Sync>,
}

impl std::fmt::Debug for KvHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvHandle")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// What a read of `/blob/{key}` finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobValue {
    /// The key holds an inline value.
    Inline(Vec<u8>),
    /// The key holds a blob, present on this node at `path`.
    File {
        /// Where it is.
        path: PathBuf,
        /// What it is.
        blob: BlobRef,
    },
}

/// What the transport knows of one peer, for [`Status`].
#[derive(Debug, Clone, Default)]
pub struct PeerReport {
    /// A lane to it works.
    pub active: bool,
    /// For how long it has been active.
    pub active_for: Option<Duration>,
    /// Its last probed round trip.
    pub rtt: Option<Duration>,
    /// Why it is inactive.
    pub last_error: Option<String>,
}

impl KvHandle {
    /// This node's id.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// This node's view of the cluster.
    pub fn view(&self) -> View {
        self.shared.view()
    }

    /// The largest inline value.
    pub fn inline_max(&self) -> usize {
        self.inline_max
    }

    /// Sets `key` to `value` once a quorum has it and the leader applied it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons waiting; the write may still be applied.
    pub async fn put(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        check_key(&key)?;
        if value.len() > self.inline_max {
            return Err(KvError::ValueTooLarge {
                len: value.len(),
                max: self.inline_max,
            });
        }
        self.write(Op::Put { key, value }).await
    }

    /// The largest blob.
    pub fn blob_max(&self) -> u64 {
        self.blob_max
    }

    /// Streams `body` to this node and every member a lane reaches (a majority at least)
    /// through the data stream, then commits a reference to it under `key`.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: dropping the future may leave the stream half-sent (the servers' idle
    /// timeout aborts it) or the reference proposed.
    pub async fn put_blob<E: std::fmt::Display>(
        &self,
        key: String,
        body: impl futures::Stream<Item = Result<bytes::Bytes, E>> + Unpin,
    ) -> Result<BlobRef, KvError> {
        check_key(&key)?;
        if let Some(refusal) = self.shared.refusal() {
            return Err(refusal);
        }
        let replicas = self.blob_replicas()?;
        let blob = self.blobs.stream_in(&replicas, body, self.blob_max).await?;
        self.write(Op::PutBlob {
            key,
            blob: blob.clone(),
        })
        .await?;
        Ok(blob)
    }

    /// Commits `blob` under `key` after a native client streamed it with this node as the
    /// primary: the stream must have closed here with the claimed length and SHA-256.
    pub(crate) async fn put_received_blob(
        &self,
        key: String,
        blob: BlobRef,
    ) -> Result<(), KvError> {
        check_key(&key)?;
        if blob.size > self.blob_max {
            return Err(KvError::BlobTooLarge {
                len: blob.size,
                max: self.blob_max,
            });
        }
        self.blobs.verify_received(&blob).await?;
        self.write(Op::PutBlob { key, blob }).await
    }

    /// The members a new blob streams to beside this node: those a lane reaches now. Fails
    /// unless they and this node make a majority of the members.
    fn blob_replicas(&self) -> Result<Vec<u64>, KvError> {
        let me = self.id();
        let members: Vec<u64> = self.shared.state().members.keys().copied().collect();
        let others: Vec<u64> = members
            .iter()
            .copied()
            .filter(|id| *id != me && (self.peer_status)(*id).active)
            .collect();
        let quorum = members.len() / 2 + 1;
        if others.len() + 1 < quorum {
            return Err(KvError::Unavailable(format!(
                "node {me} reaches {} of {} members; a blob must reach a majority ({quorum})",
                others.len() + 1,
                members.len()
            )));
        }
        Ok(others)
    }

    /// Waits until this node is linking, fetching or removing no blob (its blob directory
    /// matches what it applied, as far as the replicas could serve).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn blobs_settled(&self) {
        self.blobs.settled().await
    }

    /// Reads `key` for `GET /blob/{key}`: an inline value, or the blob's file on this node
    /// (fetched from a replica first if this node lacks it).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a fetch goes on in the background.
    pub async fn get_blob(&self, key: &str, serializable: bool) -> Result<BlobValue, KvError> {
        match self.get(key, serializable).await? {
            Value::Inline(v) => Ok(BlobValue::Inline(v)),
            Value::Blob(blob) => {
                let deadline = Instant::now() + self.request_timeout;
                let path = self.blobs.ensure(&blob, deadline).await?;
                Ok(BlobValue::File { path, blob })
            }
        }
    }

    /// Replicates `op` through the leader (this node or another) and waits until applied.
    ///
    /// # Cancel safety
    ///
    /// As [`KvHandle::put`].
    pub async fn write(&self, op: Op) -> Result<(), KvError> {
        let deadline = Instant::now() + self.request_timeout;
        self.with_leader(deadline, |leader, addr| {
            let op = op.clone();
            async move {
                match addr {
                    None => self.propose_local(op, deadline).await,
                    Some(addr) => self.forwarder.propose(leader, addr, &op, deadline).await,
                }
            }
        })
        .await
    }

    /// Proposes `op` on this node only (the leader side of a forwarded write).
    pub(crate) async fn propose_local(&self, op: Op, deadline: Instant) -> Result<(), KvError> {
        let received = std::time::Instant::now();
        // The context of the request being served (and, with `otel`, its span): the entry
        // carries it to every member, whose audit log names it when the entry is applied.
        let context = peerwire::context::outgoing(None);
        self.ask(deadline, |reply| {
            Request::Propose(op, reply, received, context)
        })
        .await
    }

    /// Where this node's applied puts spent their time since the trace was last taken (or the
    /// node started), the slowest of them, and the slow log writes and snapshot phases beside
    /// them; the trace starts again. Only a leader's proposals are traced.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future may lose the report; the trace is still restarted.
    pub async fn take_put_trace(&self) -> Result<super::PutTraceReport, KvError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::TakeTrace(tx))
            .await
            .map_err(|_| KvError::Stopping)?;
        rx.await.map_err(|_| KvError::Stopping)
    }

    /// Proposes a membership change on this node only.
    pub(crate) async fn conf_change_local(
        &self,
        cc: ConfChange,
        deadline: Instant,
    ) -> Result<(), KvError> {
        self.ask(deadline, |reply| Request::ConfChange(cc, reply))
            .await
    }

    async fn ask<T>(
        &self,
        deadline: Instant,
        make: impl FnOnce(oneshot::Sender<Result<T, KvError>>) -> Request,
    ) -> Result<T, KvError> {
        if let Some(refusal) = self.shared.refusal() {
            return Err(refusal);
        }
        let (tx, rx) = oneshot::channel();
        let wait = async {
            self.requests
                .send(make(tx))
                .await
                .map_err(|_| KvError::Stopping)?;
            rx.await.map_err(|_| KvError::Stopping)?
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Timeout(self.request_timeout)),
        }
    }

    /// Runs `op` against the leader: `addr` is `None` when this node leads. Retries errors
    /// that guarantee nothing was applied (no leader yet, a leader change) until `deadline`.
    async fn with_leader<T, F, Fut>(&self, deadline: Instant, op: F) -> Result<T, KvError>
    where
        F: Fn(u64, Option<SocketAddr>) -> Fut,
        Fut: std::future::Future<Output = Result<T, KvError>>,
    {
        let mut views = self.shared.watch();
        loop {
            if let Some(refusal) = self.shared.refusal() {
                return Err(refusal);
            }
            let view = *views.borrow_and_update();
            let err = if view.leader == 0 {
                KvError::NoLeader(format!(
                    "no leader known in term {} (an election is running or a quorum is missing)",
                    view.term
                ))
            } else {
                let addr = if view.leader == self.shared.id {
                    None
                } else {
                    match self.shared.state().members.get(&view.leader) {
                        Some(a) => Some(*a),
                        None => {
                            return Err(KvError::NoLeader(format!(
                                "leader {} has no known address",
                                view.leader
                            )));
                        }
                    }
                };
                match op(view.leader, addr).await {
                    Err(e) if e.is_retryable() => e,
                    other => return other,
                }
            };
            next_view(&mut views, deadline, err).await?;
        }
    }

    /// Reads `key`: linearizable (a ReadIndex round through the leader, then this node's state
    /// once it applied that far) unless `serializable`, which reads this node's state as is.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the read; nothing changes.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<Value, KvError> {
        check_key(key)?;
        if let Some(refusal) = self.shared.refusal() {
            return Err(refusal);
        }
        if !serializable {
            self.read_barrier().await?;
        }
        self.shared
            .state()
            .map
            .get(key)
            .cloned()
            .ok_or(KvError::NotFound)
    }

    /// Waits until this node applied everything committed when the call began (as the leader
    /// confirmed it).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the barrier.
    pub async fn read_barrier(&self) -> Result<u64, KvError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut views = self.shared.watch();
        loop {
            match self.ask(deadline, Request::Read).await {
                Err(e) if e.is_retryable() => {
                    views.borrow_and_update();
                    next_view(&mut views, deadline, e).await?;
                }
                other => return other,
            }
        }
    }

    /// Whether this node can serve: it is not refusing requests, knows a leader, and a
    /// linearizable read-index round trip (through the leader, as every linearizable read)
    /// succeeds within `within` (etcd's `/health`). The error says why not.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: nothing changes.
    pub async fn health(&self, within: Duration) -> Result<u64, KvError> {
        if let Some(refusal) = self.shared.refusal() {
            return Err(refusal);
        }
        let view = self.shared.view();
        if view.leader == 0 {
            return Err(KvError::NoLeader(format!(
                "no leader known in term {}",
                view.term
            )));
        }
        match tokio::time::timeout(within, self.read_barrier()).await {
            Ok(r) => r,
            Err(_) => Err(KvError::Timeout(within)),
        }
    }

    /// Adds member `id` serving peerwire at `addr` (raftexample's `POST /{id}`), once the change
    /// is applied.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons waiting; the change may still be applied.
    pub async fn add_member(&self, id: u64, addr: SocketAddr) -> Result<(), KvError> {
        if id == 0 {
            return Err(KvError::BadMember("member ids start at 1".into()));
        }
        {
            let state = self.shared.state();
            if state.removed.contains(&id) {
                return Err(KvError::BadMember(format!(
                    "member {id} was removed; a removed id cannot rejoin"
                )));
            }
            if state.members.contains_key(&id) {
                return Err(KvError::BadMember(format!("member {id} already exists")));
            }
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = id;
        cc.context = ConfContext {
            addr: Some(addr),
            id: None,
        }
        .encode()
        .into();
        self.change_members(cc).await
    }

    /// Removes member `id` (raftexample's `DELETE /{id}`), once the change is applied.
    ///
    /// # Cancel safety
    ///
    /// As [`KvHandle::add_member`].
    pub async fn remove_member(&self, id: u64) -> Result<(), KvError> {
        {
            let state = self.shared.state();
            if !state.members.contains_key(&id) {
                return Err(KvError::BadMember(format!(
                    "member {id} is not in the cluster"
                )));
            }
            if state.members.len() == 1 {
                return Err(KvError::BadMember(
                    "the last member cannot be removed".into(),
                ));
            }
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = id;
        self.change_members(cc).await
    }

    async fn change_members(&self, cc: ConfChange) -> Result<(), KvError> {
        let deadline = Instant::now() + self.request_timeout;
        self.with_leader(deadline, |leader, addr| {
            let cc = cc.clone();
            async move {
                match addr {
                    None => self.conf_change_local(cc, deadline).await,
                    Some(addr) => {
                        self.forwarder
                            .conf_change(leader, addr, &cc, deadline)
                            .await
                    }
                }
            }
        })
        .await
    }

    /// This node's status: its view and what it knows of each member.
    pub fn status(&self) -> Status {
        let view = self.view();
        let members = self
            .shared
            .state()
            .members
            .iter()
            .map(|(&id, addr)| {
                let report = if id == self.shared.id {
                    PeerReport {
                        active: true,
                        ..PeerReport::default()
                    }
                } else {
                    (self.peer_status)(id)
                };
                MemberStatus {
                    id,
                    address: addr.to_string(),
                    active: report.active,
                    active_for_secs: report.active_for.map(|d| d.as_secs_f64()),
                    rtt_us: report.rtt.map(|d| d.as_micros() as u64),
                    last_error: report.last_error,
                }
            })
            .collect();
        Status {
            id: view.id,
            leader: view.leader,
            term: view.term,
            commit: view.commit,
            applied: view.applied,
            role: view.role,
            snapshot_index: view.snapshot_index,
            refusal: self.shared.refusal().map(|e| e.to_string()),
            members,
        }
    }

    /// Waits until this node refuses requests (it was removed, or its storage failed) or stops.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn until_refused(&self) {
        let mut views = self.shared.watch();
        let _ = views.wait_for(|v| v.refused).await;
    }

    /// A watch of this node's view, updated after every raft step that changes it.
    pub fn views(&self) -> tokio::sync::watch::Receiver<View> {
        self.shared.watch()
    }

    /// Waits until this node applied up to `index`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn wait_applied(&self, index: u64) {
        let mut views = self.shared.watch();
        let _ = views.wait_for(|v| v.applied >= index).await;
    }

    /// Waits until this node knows a leader, and returns it.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future stops waiting; nothing changes.
    pub async fn wait_for_leader(&self) -> u64 {
        let mut views = self.shared.watch();
        let view = views.wait_for(|v| v.leader != 0).await;
        view.map(|v| v.leader).unwrap_or(0)
    }
}

/// Waits for the node's view to change (a leader elected, a new term) before a retry; at
/// `deadline` gives up with `last`, the error that made the caller wait.
async fn next_view(
    views: &mut tokio::sync::watch::Receiver<View>,
    deadline: Instant,
    last: KvError,
) -> Result<(), KvError> {
    match tokio::time::timeout_at(deadline, views.changed()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(KvError::Stopping),
        Err(_) => Err(last),
    }
}
