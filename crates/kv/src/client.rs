//! [`KvClient`]: the native client. It talks `KvProtocol` to any node of the cluster, prefers
//! the leader once it knows it (saving the forwarding hop), and moves on to the next node
//! when one cannot be reached.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use peerwire::{CallOptions, Client, ClientConfig, Identity};
use peerwire_datastream::{DataStreamClient, DataStreamConfig, RoutingTable};
use peerwire_pull::{PullClient, PullError, ReadOptions};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::blobs::serve;
use crate::blobs::upload::{UploadError, upload};
use crate::cluster::cluster_id;
use crate::command::{BlobRef, hex};
use crate::error::KvError;
use crate::service::{GetRequest, KvProtocolClient, PutBlobRequest, PutRequest, Status};
use crate::state::Value;

/// How a native call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error.
    #[error(transparent)]
    Kv(#[from] KvError),
    /// No node could be reached; the last failure is given.
    #[error("no node reachable: {0}")]
    Unreachable(peerwire::Error),
    /// A write reached a node but its answer did not come back (the node died, the connection
    /// broke, the deadline passed): it may or may not have been applied. Read the key to find
    /// out; it was not sent again.
    #[error("the write's outcome is unknown (it may have been applied): {0}")]
    OutcomeUnknown(peerwire::Error),
    /// The client was given no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Streaming a blob failed.
    #[error("streaming the blob: {0}")]
    Stream(#[from] peerwire_datastream::DataStreamError),
    /// A node's answer does not fit (no such member, a bad address).
    #[error("{0}")]
    Protocol(String),
    /// No node could serve a blob's bytes; the last node's answer is given.
    #[error("reading the blob: {0}")]
    Pull(#[from] PullError),
}

/// Bytes read from a file at a time for an upload (one data-stream packet's worth).
const FILE_READ: usize = 1 << 20;

/// Default deadline of one native call: 10 s (a node waits up to 5 s for the cluster).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A native client of a peerwire-kv cluster. Cheap to share (`&KvClient` across tasks).
#[derive(Debug)]
pub struct KvClient {
    rpc: KvProtocolClient,
    /// Reads blobs on the nodes' pull lanes.
    pull: PullClient,
    cluster_id: u64,
    endpoints: Vec<SocketAddr>,
    preferred: Mutex<Option<SocketAddr>>,
    timeout: Duration,
    /// The TLS settings of `rpc`'s connections, for the data streams of blob uploads too.
    tls: Option<peerwire::tls::TlsConfig>,
    /// The secret mode of `rpc`'s connections, likewise.
    secret: Option<peerwire::secret::SecretConfig>,
}

/// Whether calling a method twice does no harm (so a call whose outcome is unknown may be sent
/// again to another node): the protocol's idempotent methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// `#[idempotent]` in `KvProtocol`: an unknown outcome moves on to the next node.
    Repeatable,
    /// A write: an unknown outcome is the caller's answer.
    Once,
}

impl KvClient {
    /// A client of the cluster named by `cluster_token`, reaching it through `endpoints`
    /// (peerwire addresses of any members).
    pub fn new(endpoints: Vec<SocketAddr>, cluster_token: &str) -> Self {
        Self::with_config(endpoints, cluster_token, ClientConfig::default())
    }

    /// As [`KvClient::new`] with the peerwire client settings given (its identity's cluster id
    /// is set from the token).
    pub fn with_config(
        endpoints: Vec<SocketAddr>,
        cluster_token: &str,
        mut cfg: ClientConfig,
    ) -> Self {
        cfg.identity = Identity {
            cluster_id: cluster_id(cluster_token),
            node_id: 0,
            epoch: 0,
        };
        Self {
            cluster_id: cfg.identity.cluster_id,
            tls: cfg.connection.tls.clone(),
            secret: cfg.connection.secret.clone(),
            pull: PullClient::new(cfg.clone()).expect("the default client settings are valid"),
            rpc: KvProtocolClient::new(Client::new(cfg)),
            endpoints,
            preferred: Mutex::new(None),
            timeout: DEFAULT_CALL_TIMEOUT,
        }
    }

    fn order(&self) -> Vec<SocketAddr> {
        let preferred = *self.preferred.lock().expect("preferred lock poisoned");
        let mut order = Vec::with_capacity(self.endpoints.len() + 1);
        order.extend(preferred);
        order.extend(self.endpoints.iter().filter(|a| Some(**a) != preferred));
        order
    }

    /// Calls one method (`call`, through the generated client) on the preferred node, then the
    /// others.
    async fn call<Resp, F, Fut>(&self, repeat: Repeat, call: F) -> Result<Resp, ClientError>
    where
        F: Fn(SocketAddr, CallOptions) -> Fut,
        Fut: std::future::Future<Output = Result<Result<Resp, KvError>, peerwire::Error>>,
    {
        let mut last = None;
        for addr in self.order() {
            let options = CallOptions::deadline(self.timeout);
            match call(addr, options).await {
                Ok(reply) => {
                    *self.preferred.lock().expect("preferred lock poisoned") = Some(addr);
                    return Ok(reply?);
                }
                Err(e) => {
                    let mut p = self.preferred.lock().expect("preferred lock poisoned");
                    if *p == Some(addr) {
                        *p = None;
                    }
                    drop(p);
                    // A write that may have been applied is not sent again to another node as
                    // a new request: if both were applied, a newer write from another client
                    // could land in between and be overwritten by the copy. Its caller gets
                    // the unknown outcome (reads and other repeatable calls go on).
                    if e.is_unknown() && repeat == Repeat::Once {
                        return Err(ClientError::OutcomeUnknown(e));
                    }
                    tracing::debug!(%addr, error = %e, "node unreachable; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.map_or(ClientError::NoEndpoints, ClientError::Unreachable))
    }

    /// Finds the leader and sends later calls to it first.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn find_leader(&self) -> Result<Option<SocketAddr>, ClientError> {
        let status = self.status().await?;
        let leader = status
            .members
            .iter()
            .find(|m| m.id == status.leader)
            .and_then(|m| m.address.parse().ok());
        if let Some(addr) = leader {
            *self.preferred.lock().expect("preferred lock poisoned") = Some(addr);
        }
        Ok(leader)
    }

    /// Sets `key` to `value`; returns once committed and applied by the leader.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call; the write may still be applied.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), ClientError> {
        let req = PutRequest {
            key: key.to_owned(),
            value: value.to_vec(),
        };
        let rpc = &self.rpc;
        self.call(Repeat::Once, |addr, o| rpc.put_with(addr, &req, o))
            .await
    }

    /// Reads `key` (linearizable unless `serializable`).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn get(&self, key: &str, serializable: bool) -> Result<Value, ClientError> {
        let req = GetRequest {
            key: key.to_owned(),
            serializable,
        };
        let rpc = &self.rpc;
        self.call(Repeat::Repeatable, |addr, o| rpc.get_with(addr, &req, o))
            .await
    }

    /// Adds member `id` at peer URL `url`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call; the change may still be applied.
    pub async fn add_member(&self, id: u64, url: &str) -> Result<(), ClientError> {
        let member = (id, url.to_owned());
        let rpc = &self.rpc;
        self.call(Repeat::Once, |addr, o| {
            rpc.add_member_with(addr, &member, o)
        })
        .await
    }

    /// Removes member `id`.
    ///
    /// # Cancel safety
    ///
    /// As [`KvClient::add_member`].
    pub async fn remove_member(&self, id: u64) -> Result<(), ClientError> {
        let rpc = &self.rpc;
        self.call(Repeat::Once, |addr, o| rpc.remove_member_with(addr, &id, o))
            .await
    }

    /// The status of the first node that answers.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn status(&self) -> Result<Status, ClientError> {
        let mut last = None;
        for addr in self.order() {
            match self.status_of(addr).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::NoEndpoints))
    }

    /// The status of the node at `addr`.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn status_of(&self, addr: SocketAddr) -> Result<Status, ClientError> {
        let options = CallOptions::deadline(self.timeout);
        self.rpc
            .status_with(addr, &(), options)
            .await
            .map_err(ClientError::Unreachable)
    }

    /// Stores the file at `path` as a blob under `key`: streams it through the data stream to
    /// the first node that answers (the primary) and every member it reaches, then has that
    /// node commit the reference. `progress` is called with the bytes sent so far.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a stream dropped half-way is aborted by the servers' idle timeout; a
    /// dropped commit may still be applied.
    pub async fn put_file(
        &self,
        key: &str,
        path: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<BlobRef, ClientError> {
        let file_error = |source| ClientError::File {
            path: path.display().to_string(),
            source,
        };
        let file = tokio::fs::File::open(path).await.map_err(file_error)?;
        let status = self.status().await?;
        let member_addr = |id: u64| -> Result<SocketAddr, ClientError> {
            status
                .members
                .iter()
                .find(|m| m.id == id)
                .and_then(|m| m.address.parse().ok())
                .ok_or_else(|| ClientError::Protocol(format!("node {id} has no known address")))
        };
        let primary = member_addr(status.id)?;
        let replicas: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.id != status.id && m.active)
            .map(|m| m.id)
            .collect();
        let routing = RoutingTable::star(status.id, &replicas)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let mut stream_cfg = DataStreamConfig {
            identity: Identity {
                cluster_id: self.cluster_id,
                node_id: 0,
                epoch: 0,
            },
            ..DataStreamConfig::default()
        };
        stream_cfg.connection.tls = self.tls.clone();
        stream_cfg.connection.secret = self.secret.clone();
        let streams = DataStreamClient::new(stream_cfg).map_err(ClientError::Unreachable)?;
        let mut route = vec![status.id];
        route.extend(&replicas);
        let result = async {
            let out = streams.open(primary, Bytes::new(), routing).await?;
            let body = tokio_util::io::ReaderStream::with_capacity(file, FILE_READ);
            upload(out, body, u64::MAX, route, &mut progress)
                .await
                .map_err(|e| match e {
                    UploadError::Body(_) => file_error(std::io::Error::other(e.to_string())),
                    UploadError::Stream(e) => ClientError::Stream(e),
                    other => ClientError::Protocol(other.to_string()),
                })
        }
        .await;
        streams.shutdown().await;
        let blob = result?;
        let req = PutBlobRequest {
            key: key.to_owned(),
            blob: blob.clone(),
        };
        self.rpc
            .put_blob_with(primary, &req, CallOptions::deadline(self.timeout))
            .await
            .map_err(ClientError::Unreachable)??;
        Ok(blob)
    }

    /// Reads the blob under `key` into the file at `path` (created or truncated), checking its
    /// SHA-256; an inline value is written as is. `progress` is called with the bytes received
    /// so far. Returns the bytes written.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the file may be left half-written.
    pub async fn get_file(
        &self,
        key: &str,
        path: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ClientError> {
        let file_error = |source| ClientError::File {
            path: path.display().to_string(),
            source,
        };
        let blob = match self.get(key, false).await? {
            Value::Inline(v) => {
                tokio::fs::write(path, &v).await.map_err(file_error)?;
                progress(v.len() as u64, v.len() as u64);
                return Ok(v.len() as u64);
            }
            Value::Blob(b) => b,
        };
        // From whichever node holds it: a node that does not answers `NoSuchName`.
        let name = serve::name(&blob.sha256);
        let mut last = None;
        for addr in self.order() {
            let info = match self.pull.open(addr, &name).await {
                Ok(info) => info,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            if info.len != Some(blob.size) {
                return Err(ClientError::Protocol(format!(
                    "{addr} serves {:?} bytes for a blob of {}",
                    info.len, blob.size
                )));
            }
            let mut file = tokio::fs::File::create(path).await.map_err(file_error)?;
            let mut hasher = Sha256::new();
            let mut read = self.pull.read(addr, info, ReadOptions::default())?;
            let mut got = 0u64;
            while let Some(chunk) = read.try_next().await? {
                hasher.update(&chunk);
                file.write_all(&chunk).await.map_err(file_error)?;
                got += chunk.len() as u64;
                progress(got, blob.size);
            }
            file.sync_all().await.map_err(file_error)?;
            let sum = hex(&hasher.finalize());
            if sum != blob.sha256 {
                return Err(ClientError::Protocol(format!(
                    "the blob read hashes to {sum}, not {}",
                    blob.sha256
                )));
            }
            return Ok(blob.size);
        }
        Err(last.map_or(ClientError::NoEndpoints, ClientError::Pull))
    }
}
