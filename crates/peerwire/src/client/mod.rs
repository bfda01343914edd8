//! The client: pooled connections per peer, lazy connect, deadlines.

pub mod backoff;
mod pool;
mod retry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peerwire_wire::{GoAwayReason, Lane, Limits};

use crate::connection::{MountPoint, Service};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

pub use crate::config::RetryPolicy;
pub use pool::Peer;

use self::pool::PeerPool;
use crate::config::ClientConfig;
use crate::connection::frame_reader::FrameReader;
use crate::connection::{Conn, Connection, Route, ServeNothing, handshake};
use crate::error::{ConnectError, Error, NotExecuted};
use crate::transport::{ConnectFailure, Connected, Connector, DynConnector};

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// How long to wait for the reply, over all attempts (including connecting); default:
    /// the client's `default_deadline`.
    pub deadline: Option<Duration>,
    /// Picks the pool slot (and so the connection) by hash, keeping related calls on one
    /// connection and in order; default: round robin.
    pub hash_key: Option<u64>,
    /// The call may run twice without harm: unknown outcomes (timeout, lost connection) are
    /// retried too, not only calls that certainly did not run.
    pub idempotent: bool,
    /// Overrides the client's retry policy for this call (`RetryPolicy::never()` to disable).
    pub retry: Option<RetryPolicy>,
    /// Context the call carries to the server (trace context, caller context; see
    /// [`crate::context`]), over the context of the call being handled when the call is made
    /// inside a handler.
    pub context: Option<crate::context::Context>,
}

impl CallOptions {
    /// Options with a deadline.
    pub fn deadline(deadline: Duration) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::default()
        }
    }
}

pub(crate) struct ClientInner {
    pub(crate) cfg: ClientConfig,
    budget: Mutex<retry::RetryBudget>,
    retries: std::sync::atomic::AtomicU64,
    connector: Arc<dyn DynConnector>,
    peers: Mutex<HashMap<Peer, Arc<PeerPool>>>,
    tasks: TaskTracker,
    closed: AtomicBool,
    inbound: Arc<dyn Service>,
    /// The mount point every connection of this client asks for.
    to: MountPoint,
}

impl std::fmt::Debug for ClientInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInner")
            .field("cfg", &self.cfg)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ClientInner {
    /// Opens and handshakes a new connection to `peer`.
    pub(crate) async fn open(&self, peer: Peer) -> Result<Connection, ConnectError> {
        let cfg = &self.cfg.connection;
        let opened = self.connector.connect_split(peer.addr, cfg.security());
        let Connected {
            read,
            mut write,
            proof,
        } = match opened.await {
            Ok(connected) => connected,
            Err(ConnectFailure::Io(e)) => return Err(ConnectError::Io(Arc::new(e))),
            Err(ConnectFailure::Secured(e)) => return Err(ConnectError::Handshake(e)),
        };
        let mut reader = FrameReader::new(read, Limits::handshake(), cfg.read_buffer);
        let ack = handshake::initiate(
            &mut reader,
            &mut write,
            &self.cfg.identity,
            cfg,
            self.to,
            peer.node_id,
            proof.certificate(),
        )
        .await
        .map_err(ConnectError::Handshake)?;
        let principal = crate::connection::Principal::proven(&proof, ack.node_id, peer.addr.ip());
        Ok(Conn::start(
            reader,
            write,
            peer.addr,
            ack,
            principal,
            cfg,
            self.inbound.clone(),
            &self.tasks,
            None,
        ))
    }

    fn pool(&self, peer: Peer) -> Arc<PeerPool> {
        self.peers
            .lock()
            .expect("peers lock poisoned")
            .entry(peer)
            .or_insert_with(|| Arc::new(PeerPool::new(peer, self.cfg.connections_per_peer)))
            .clone()
    }

    fn all_connections(&self) -> Vec<Connection> {
        self.peers
            .lock()
            .expect("peers lock poisoned")
            .values()
            .flat_map(|p| p.connections())
            .collect()
    }
}

impl Drop for ClientInner {
    fn drop(&mut self) {
        for c in self.all_connections() {
            c.conn
                .begin_close(GoAwayReason::Normal, "client dropped".into());
        }
    }
}

/// Calls peers over pooled connections. Cheap to clone; clones share the pools.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<ClientInner>,
}

impl Client {
    /// A TCP client.
    ///
    /// # Panics
    ///
    /// If `cfg` is invalid; use [`Client::with_connector`] to get the error instead.
    pub fn new(cfg: ClientConfig) -> Self {
        let network = cfg.connection.network.connector();
        Self::for_mount(
            cfg,
            network,
            Arc::new(ServeNothing),
            MountPoint::lane(Lane::Rpc),
        )
        .expect("invalid client configuration")
    }

    /// A client over any transport (instead of `cfg.connection.network`).
    pub fn with_connector<C: Connector>(cfg: ClientConfig, connector: C) -> Result<Self, Error> {
        Self::for_mount(
            cfg,
            Arc::new(connector),
            Arc::new(ServeNothing),
            MountPoint::lane(Lane::Rpc),
        )
    }

    /// A client of the service mounted at `to` on its peers (a service of your own, mounted
    /// with [`ServerBuilder::mount`](crate::ServerBuilder::mount)). The calls peers make over
    /// its connections go to `serve` (reverse calls over connections this side opened).
    pub fn for_service(
        cfg: ClientConfig,
        to: MountPoint,
        serve: Arc<dyn Service>,
    ) -> Result<Self, Error> {
        let network = cfg.connection.network.connector();
        Self::for_mount(cfg, network, serve, to)
    }

    /// A client whose connections ask for `to` (the raft transport's lanes, the RpcEnv).
    pub(crate) fn for_mount(
        cfg: ClientConfig,
        connector: Arc<dyn DynConnector>,
        inbound: Arc<dyn Service>,
        to: MountPoint,
    ) -> Result<Self, Error> {
        cfg.validate()?;
        Ok(Self {
            inner: Arc::new(ClientInner {
                budget: Mutex::new(retry::RetryBudget::new(&cfg.retry)),
                retries: std::sync::atomic::AtomicU64::new(0),
                cfg,
                connector,
                peers: Mutex::new(HashMap::new()),
                tasks: TaskTracker::new(),
                closed: AtomicBool::new(false),
                inbound,
                to,
            }),
        })
    }

    /// Calls `route` on `peer` with the default deadline.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call (see [`Connection::call`]).
    pub async fn call(
        &self,
        peer: impl Into<Peer>,
        route: impl Into<Route>,
        payload: Bytes,
    ) -> Result<Bytes, Error> {
        self.call_with(peer, route, payload, CallOptions::default())
            .await
    }

    /// Calls `route` on `peer` with options.
    ///
    /// The call ends in exactly one of: the reply; [`Error::NotExecuted`] (busy, rejected,
    /// refused before sending: safe to retry); [`Error::Remote`] (the handler's error); or
    /// [`Error::Unknown`] (deadline or connection lost after sending). A call refused because
    /// its connection was closing is retried once on a fresh connection, since it did not run.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call (see [`Connection::call`]).
    pub async fn call_with(
        &self,
        peer: impl Into<Peer>,
        route: impl Into<Route>,
        payload: Bytes,
        options: CallOptions,
    ) -> Result<Bytes, Error> {
        let peer = peer.into();
        let route = route.into();
        let deadline = options.deadline.unwrap_or(self.inner.cfg.default_deadline);
        let until = Instant::now() + deadline;
        let context = crate::context::outgoing(options.context.as_ref())
            .as_bytes()
            .clone();
        let pool = self.inner.pool(peer);
        let policy = options.retry.unwrap_or(self.inner.cfg.retry);
        self.inner
            .budget
            .lock()
            .expect("budget lock poisoned")
            .deposit();
        let mut attempt = 1u32;
        let mut closing_retried = false;
        // An earlier attempt whose outcome is unknown: it may have run, so a later attempt that
        // was refused must not report the call as not executed.
        let mut unknown: Option<Error> = None;
        let outcome = |error: Error, unknown: Option<Error>| match unknown {
            Some(earlier) if error.is_not_executed() => earlier,
            _ => error,
        };
        loop {
            let result = self
                .attempt(
                    &pool,
                    peer,
                    &route,
                    &payload,
                    &context,
                    options.hash_key,
                    deadline,
                    until,
                    attempt > 1 || closing_retried,
                )
                .await;
            let error = match result {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            // A connection that was closing when the call was written: a race with the peer's
            // go-away, not overload. Retry once at once, outside the budget.
            if matches!(
                error,
                Error::NotExecuted {
                    reason: NotExecuted::ConnectionClosing { .. },
                    ..
                }
            ) && !closing_retried
            {
                closing_retried = true;
                continue;
            }
            if attempt >= policy.max_attempts || !retry::retryable(&error, options.idempotent) {
                return Err(outcome(error, unknown));
            }
            let pause = backoff::delay(&policy.backoff, attempt, fastrand::f64())
                .max(retry::retry_after(&error).unwrap_or_default());
            let now = Instant::now();
            if now + pause >= until {
                return Err(outcome(error, unknown));
            }
            if !self
                .inner
                .budget
                .lock()
                .expect("budget lock poisoned")
                .try_withdraw(now)
            {
                metrics::counter!("peerwire_retries_refused_total", "reason" => "budget")
                    .increment(1);
                return Err(outcome(error, unknown));
            }
            metrics::counter!("peerwire_retries_total").increment(1);
            self.inner.retries.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %peer.addr, attempt, ?pause, error = %error, "retrying call");
            if error.is_unknown() {
                unknown = Some(error);
            }
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One attempt of a call.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        pool: &PeerPool,
        peer: Peer,
        route: &Route,
        payload: &Bytes,
        context: &Bytes,
        hash_key: Option<u64>,
        deadline: Duration,
        until: Instant,
        retrying: bool,
    ) -> Result<Bytes, Error> {
        let conn = self.connection_until(pool, peer, hash_key, until).await?;
        let remaining = if retrying {
            until.saturating_duration_since(Instant::now())
        } else {
            deadline
        };
        conn.conn
            .call(route, payload.clone(), context.clone(), remaining, until)
            .await
    }

    /// Retries made so far (all calls).
    pub fn retries(&self) -> u64 {
        self.inner.retries.load(Ordering::Relaxed)
    }

    /// Sends a one-way message (at most once). `Ok` means queued on a connection; connecting
    /// may wait up to the default deadline.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: if dropped before it returns, the message was not queued.
    pub async fn send_oneway(
        &self,
        peer: impl Into<Peer>,
        route: impl Into<Route>,
        payload: Bytes,
    ) -> Result<(), Error> {
        let peer = peer.into();
        let until = Instant::now() + self.inner.cfg.default_deadline;
        let pool = self.inner.pool(peer);
        let conn = self.connection_until(&pool, peer, None, until).await?;
        conn.send_oneway(route, payload)
    }

    /// An open connection to `peer` (connecting if needed), for callers that want to hold one.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an abandoned connect leaves the pool as it was.
    pub async fn connection(
        &self,
        peer: impl Into<Peer>,
        hash_key: Option<u64>,
    ) -> Result<Connection, Error> {
        let peer = peer.into();
        let pool = self.inner.pool(peer);
        let until = Instant::now() + self.inner.cfg.connect_timeout;
        self.connection_until(&pool, peer, hash_key, until).await
    }

    async fn connection_until(
        &self,
        pool: &PeerPool,
        peer: Peer,
        hash_key: Option<u64>,
        until: Instant,
    ) -> Result<Connection, Error> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::NotExecuted {
                peer: peer.addr,
                reason: NotExecuted::ClientClosed,
            });
        }
        let conn = pool
            .connection(&self.inner, hash_key, until)
            .await
            .map_err(|e| Error::NotExecuted {
                peer: peer.addr,
                reason: NotExecuted::Connect(e),
            })?;
        // A connect that began before a shutdown may finish after it took its list of
        // connections to close; that shutdown would then miss this one, which would keep it
        // (and its tasks) alive. The pool stored the connection before this check, under the
        // lock the shutdown's list is taken under, so one of the two always closes it.
        if self.inner.closed.load(Ordering::Acquire) {
            conn.close();
            return Err(Error::NotExecuted {
                peer: peer.addr,
                reason: NotExecuted::ClientClosed,
            });
        }
        Ok(conn)
    }

    /// Closes every connection at once: calls in flight end as lost.
    pub fn close_all_hard(&self, why: &str) {
        self.inner.closed.store(true, Ordering::Release);
        for c in self.inner.all_connections() {
            c.conn
                .begin_close_hard(GoAwayReason::Normal, why.to_owned());
        }
    }

    /// Closes every connection gracefully (in-flight calls finish) and waits for them.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the connections keep closing in the background.
    pub async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for c in self.inner.all_connections() {
            c.close();
        }
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }
}
