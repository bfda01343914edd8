//! The native protocol of peerwire-kv (`KvProtocol` v1, on each node's peerwire port): what
//! native clients call, and how followers forward writes to the leader.
//!
//! | method | request | reply | notes |
//! |---|---|---|---|
//! | `put` | [`PutRequest`] | `Result<(), KvError>` | any node; forwarded to the leader; retried calls answered from the retry cache |
//! | `get` | [`GetRequest`] | `Result<Value, KvError>` | linearizable unless `serializable` |
//! | `add_member` | `(u64, String)` | `Result<(), KvError>` | id and peer URL |
//! | `remove_member` | `u64` | `Result<(), KvError>` | |
//! | `status` | `()` | [`Status`] | |
//! | `put_blob` | [`PutBlobRequest`] | `Result<(), KvError>` | after streaming the blob to this node (its primary): checks the stream's SHA-256, then commits the reference |
//! | `leader.propose` | [`Op`] | `Result<(), KvError>` | leader only: a follower's forwarded write |
//! | `leader.conf_change` | `Vec<u8>` (protobuf `ConfChange`) | `Result<(), KvError>` | leader only |
//!
//! Every method uses the serde engine (bincode). Blob bytes are read on the node's pull lane
//! (`blob/<sha256>`, `peerwire-pull`), not through this protocol.

use std::net::SocketAddr;
use std::time::Duration;

use peerwire::service::Protocol;
use peerwire::{CallOptions, Client, HandlerError, Request};
use protobuf::Message as _;
use raft::eraftpb::ConfChange;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::cluster::parse_peer_url;
use crate::command::Op;
use crate::error::KvError;
use crate::metrics::timed;
use crate::node::KvHandle;
use crate::node::Role;
use crate::state::Value;

/// The protocol's name.
pub const PROTOCOL: &str = "peerwire.kv.KvProtocol";
/// Its version.
pub const VERSION: u32 = 1;

/// `put`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutRequest {
    /// The key.
    pub key: String,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// `get`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GetRequest {
    /// The key.
    pub key: String,
    /// Read this node's state without a ReadIndex round.
    pub serializable: bool,
}

/// `put_blob`'s request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PutBlobRequest {
    /// The key.
    pub key: String,
    /// The blob, already streamed to the node called (its primary) and its replicas.
    pub blob: crate::command::BlobRef,
}

/// One member as a node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: u64,
    /// Its peerwire address.
    pub address: String,
    /// Whether a lane to it works (always true for the node itself).
    pub active: bool,
    /// For how long it has been active, in seconds.
    pub active_for_secs: Option<f64>,
    /// Its last probed round trip, in microseconds.
    pub rtt_us: Option<u64>,
    /// Why it is inactive.
    pub last_error: Option<String>,
}

/// A node's status (`GET /status`, native `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The node.
    pub id: u64,
    /// The leader it knows (0: none).
    pub leader: u64,
    /// Its term.
    pub term: u64,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
    /// Its role.
    pub role: Role,
    /// The index of its latest snapshot.
    pub snapshot_index: u64,
    /// Why it refuses requests (removed, storage failed), if it does.
    pub refusal: Option<String>,
    /// The members it knows.
    pub members: Vec<MemberStatus>,
}

fn deadline_of(req: &Request, fallback: Duration) -> Instant {
    match req.deadline() {
        Some(d) => d,
        None => Instant::now() + fallback,
    }
}

/// The `api` label of the native protocol's request metrics.
const API: &str = "native";

/// The audit log's target (see [`crate::audit`]).
pub use crate::audit::AUDIT_TARGET;

fn audit(node: u64, method: &str, key: &str, call: &Request) {
    crate::audit::request(node, method, key, call.context());
}

/// The native protocol, defined once: a node serves it ([`kv_protocol`]) and followers forward
/// writes to the leader through its generated client ([`KvProtocolClient`]), as `KvClient`
/// calls any node. Each method answers `Result<T, KvError>` inside the call's
/// own result, so a forwarded request fails at the client exactly as it failed at the leader.
#[peerwire::protocol(name = "peerwire.kv.KvProtocol", version = 1)]
pub trait KvProtocol {
    /// Sets a key once committed and applied (a follower forwards it to the leader).
    async fn put(
        &self,
        req: PutRequest,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError>;
    /// Reads a key: linearizable (ReadIndex) unless `serializable`.
    #[idempotent]
    async fn get(
        &self,
        req: GetRequest,
        call: Request,
    ) -> Result<Result<Value, KvError>, HandlerError>;
    /// Adds member `id` at a peer URL.
    async fn add_member(&self, member: (u64, String)) -> Result<Result<(), KvError>, HandlerError>;
    /// Removes member `id`.
    async fn remove_member(&self, id: u64) -> Result<Result<(), KvError>, HandlerError>;
    /// This node's status.
    #[idempotent]
    async fn status(&self, none: ()) -> Result<Status, HandlerError>;
    /// Commits the reference of a blob already streamed to this node and its replicas.
    async fn put_blob(&self, req: PutBlobRequest) -> Result<Result<(), KvError>, HandlerError>;
    /// A write forwarded by a follower: proposed here, on the leader, within the call's
    /// deadline.
    #[rename = "leader.propose"]
    async fn leader_propose(
        &self,
        op: Op,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError>;
    /// A membership change forwarded by a follower (raft-rs's `ConfChange`, encoded).
    #[rename = "leader.conf_change"]
    async fn leader_conf_change(
        &self,
        change: Vec<u8>,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError>;
}

/// A node's side of [`KvProtocol`].
struct Served(KvHandle);

impl KvProtocol for Served {
    async fn put(
        &self,
        req: PutRequest,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError> {
        audit(self.0.id(), "put", &req.key, &call);
        Ok(timed(API, "put", self.0.put(req.key, req.value)).await)
    }

    async fn get(
        &self,
        req: GetRequest,
        call: Request,
    ) -> Result<Result<Value, KvError>, HandlerError> {
        audit(self.0.id(), "get", &req.key, &call);
        Ok(timed(API, "get", self.0.get(&req.key, req.serializable)).await)
    }

    async fn add_member(
        &self,
        (id, url): (u64, String),
    ) -> Result<Result<(), KvError>, HandlerError> {
        Ok(match parse_peer_url(&url) {
            Ok(addr) => timed(API, "add_member", self.0.add_member(id, addr)).await,
            Err(e) => Err(KvError::BadMember(e.to_string())),
        })
    }

    async fn remove_member(&self, id: u64) -> Result<Result<(), KvError>, HandlerError> {
        Ok(timed(API, "remove_member", self.0.remove_member(id)).await)
    }

    async fn status(&self, (): ()) -> Result<Status, HandlerError> {
        Ok(self.0.status())
    }

    async fn put_blob(&self, req: PutBlobRequest) -> Result<Result<(), KvError>, HandlerError> {
        Ok(timed(API, "put_blob", self.0.put_received_blob(req.key, req.blob)).await)
    }

    async fn leader_propose(
        &self,
        op: Op,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError> {
        audit(self.0.id(), "leader.propose", op.key(), &call);
        let deadline = deadline_of(&call, self.0.request_timeout);
        Ok(timed(API, "propose", self.0.propose_local(op, deadline)).await)
    }

    async fn leader_conf_change(
        &self,
        change: Vec<u8>,
        call: Request,
    ) -> Result<Result<(), KvError>, HandlerError> {
        let deadline = deadline_of(&call, self.0.request_timeout);
        Ok(match ConfChange::parse_from_bytes(&change) {
            Ok(cc) => timed(API, "conf_change", self.0.conf_change_local(cc, deadline)).await,
            Err(e) => Err(KvError::BadMember(format!("undecodable change: {e}"))),
        })
    }
}

/// The protocol served by a node.
pub(crate) fn protocol(handle: KvHandle) -> Protocol {
    kv_protocol(std::sync::Arc::new(Served(handle)))
}

/// A follower's way to the leader: `leader.*` calls over a shared peerwire client.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    client: KvProtocolClient,
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn forward_error(node: u64, e: peerwire::Error) -> KvError {
    match e {
        // Certainly not run: the caller may try again (the leader may have changed).
        peerwire::Error::NotExecuted { reason, .. } => KvError::NoLeader(format!(
            "leader {node} could not take the request: {reason}"
        )),
        other => KvError::Forward {
            node,
            reason: other.to_string(),
        },
    }
}

impl Forwarder {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client: KvProtocolClient::new(client),
        }
    }

    pub(crate) async fn propose(
        &self,
        leader: u64,
        addr: SocketAddr,
        op: &Op,
        deadline: Instant,
    ) -> Result<(), KvError> {
        let options = CallOptions::deadline(remaining(deadline));
        self.client
            .leader_propose_with(addr, op, options)
            .await
            .map_err(|e| forward_error(leader, e))?
    }

    pub(crate) async fn conf_change(
        &self,
        leader: u64,
        addr: SocketAddr,
        cc: &ConfChange,
        deadline: Instant,
    ) -> Result<(), KvError> {
        let options = CallOptions::deadline(remaining(deadline));
        let bytes = cc.write_to_bytes().expect("changes always encode");
        self.client
            .leader_conf_change_with(addr, &bytes, options)
            .await
            .map_err(|e| forward_error(leader, e))?
    }
}
