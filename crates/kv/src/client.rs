//! [`KvClient`]: the native client. It talks `KvProtocol` to any node of the cluster, prefers
//! the leader once it knows it (saving the forwarding hop), and moves on to the next node
//! when one cannot be reached.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use peerwire::service::{ProtocolClient, Serde};
use peerwire::{CallOptions, Client, ClientConfig, Identity};

use crate::cluster::cluster_id;
use crate::error::KvError;
use crate::service::{GetRequest, PROTOCOL, PutRequest, Status, VERSION};
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
    /// The client was given no endpoints.
    #[error("no endpoints given")]
    NoEndpoints,
}

/// Default deadline of one native call: 10 s (a node waits up to 5 s for the cluster).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A native client of a peerwire-kv cluster. Cheap to share (`&KvClient` across tasks).
#[derive(Debug)]
pub struct KvClient {
    rpc: ProtocolClient,
    endpoints: Vec<SocketAddr>,
    preferred: Mutex<Option<SocketAddr>>,
    timeout: Duration,
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
            rpc: ProtocolClient::new(Client::new(cfg), PROTOCOL, VERSION),
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

    async fn call<Req, Resp>(&self, method: &str, req: &Req) -> Result<Resp, ClientError>
    where
        Serde: peerwire::service::Engine<Req> + peerwire::service::Engine<Result<Resp, KvError>>,
    {
        let mut last = None;
        for addr in self.order() {
            let options = CallOptions::deadline(self.timeout);
            match self
                .rpc
                .call_with::<Serde, Req, Result<Resp, KvError>>(addr, method, Serde, req, options)
                .await
            {
                Ok(reply) => {
                    *self.preferred.lock().expect("preferred lock poisoned") = Some(addr);
                    return Ok(reply?);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "node unreachable; trying the next");
                    let mut p = self.preferred.lock().expect("preferred lock poisoned");
                    if *p == Some(addr) {
                        *p = None;
                    }
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
        self.call("put", &req).await
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
        self.call("get", &req).await
    }

    /// Adds member `id` at peer URL `url`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call; the change may still be applied.
    pub async fn add_member(&self, id: u64, url: &str) -> Result<(), ClientError> {
        self.call("add_member", &(id, url.to_owned())).await
    }

    /// Removes member `id`.
    ///
    /// # Cancel safety
    ///
    /// As [`KvClient::add_member`].
    pub async fn remove_member(&self, id: u64) -> Result<(), ClientError> {
        self.call("remove_member", &id).await
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
            .call_with::<Serde, (), Status>(addr, "status", Serde, &(), options)
            .await
            .map_err(ClientError::Unreachable)
    }
}
