//! The server core, after Hadoop IPC's reactor, one role per file:
//!
//! | role | file | does |
//! |---|---|---|
//! | listener | `listener.rs` | accepts, enforces the connection limit, runs handshakes |
//! | reader | `reader.rs` | admits each decoded request into the call queue, or answers `Busy` |
//! | call queue | `call_queue.rs` | bounded, with a pluggable [`Scheduler`] (FIFO by default) |
//! | handler | `handler.rs` | a pool of tasks running calls; deadline and panic handling |
//! | responder | `responder.rs` | hands replies to the connection's writer without blocking |
//!
//! Decoding and writing are done by the connection layer ([`crate::connection`]) so that
//! client and server share them.

mod address_caps;
mod call;
pub(crate) mod call_queue;
mod fair_queue;
mod handler;
mod listener;
mod reader;
mod responder;
mod route;
mod route_metrics;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use peerwire_wire::{GoAwayReason, Lane};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use call::Call;
pub use call_queue::{CallQueue, FifoScheduler, Rejected, Schedulable, Scheduler};
pub use fair_queue::{FairScheduler, FairSchedulerConfig};
pub use route::{Handler, HandlerError, HandlerFn, Request, handler_fn};

use self::reader::ServerInbound;
use self::route::Routes;
use crate::config::{Identity, ServerConfig};
use crate::mount::{MountPoint, Mountable, Mounts, Service};

use crate::connection::{Connection, Route};
use crate::error::Error;
use crate::transport::{Listener, TcpListener};

/// State shared by the server's tasks.
#[derive(Debug)]
pub(crate) struct ServerShared {
    pub(crate) cfg: ServerConfig,
    /// Every mounted service, the server core's own (routes and protocols) among them.
    pub(crate) mounts: Mounts,
    pub(crate) conn_limit: Arc<Semaphore>,
    /// Connections per remote address, and the addresses exempt from every cap.
    pub(crate) address_caps: Arc<address_caps::AddressCaps>,
    pub(crate) conn_tasks: TaskTracker,
    pub(crate) shutting_down: CancellationToken,
    connections: Mutex<HashMap<u64, Connection>>,
    next_key: AtomicU64,
}

impl ServerShared {
    pub(crate) fn register(&self, connection: Connection) -> u64 {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.connections
            .lock()
            .expect("connections lock poisoned")
            .insert(key, connection);
        key
    }

    pub(crate) fn unregister(&self, key: u64) {
        self.connections
            .lock()
            .expect("connections lock poisoned")
            .remove(&key);
    }

    fn each_connection(&self, f: impl Fn(&Connection)) {
        for c in self
            .connections
            .lock()
            .expect("connections lock poisoned")
            .values()
        {
            f(c);
        }
    }
}

/// Builds a [`Server`]: routes, protocols and mounted services, scheduler, then bind.
pub struct ServerBuilder {
    cfg: ServerConfig,
    routes: Routes,
    protocols: Vec<crate::service::Protocol>,
    scheduler: Option<Box<dyn Scheduler<Call>>>,
    mounts: Mounts,
    /// The identities mounted services were built with, to check against the server's.
    identities: Vec<(MountPoint, Identity)>,
    /// The first mount point mounted twice: `serve` refuses to start.
    taken: Option<MountPoint>,
    /// What mounted services run once the server listens.
    on_bound: Vec<Box<dyn FnOnce(SocketAddr) + Send>>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("cfg", &self.cfg)
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// Serves `route` with `handler`. A later registration of the same route replaces it.
    pub fn route(mut self, route: impl Into<Route>, handler: impl Handler) -> Self {
        self.routes.insert(route.into(), Arc::new(handler));
        self
    }

    /// Mounts `service` at `at` (a lane kind and a group): every connection whose hello names
    /// `at` is handed to it. Mounting two services at one point is an error `serve` reports.
    ///
    /// Lane codes 128–255 ([`Lane::user`]) are for services users write; peerwire's own
    /// services mount through [`ServerBuilder::mount_all`]. The server core's own service,
    /// the routes and typed protocols, is at `MountPoint::lane(Lane::Rpc)`.
    pub fn mount(mut self, at: MountPoint, service: Arc<dyn Service>) -> Self {
        if let Err(taken) = self.mounts.insert(at, service) {
            self.taken.get_or_insert(taken);
        }
        self
    }

    /// Mounts every part of `service`: the lanes of a raft transport, a data-stream server's
    /// lane, an RpcEnv's lane. Its identity must be the server's.
    pub fn mount_all(mut self, service: &impl Mountable) -> Self {
        let identity = service.identity();
        self.on_bound.extend(service.on_bound());
        for (at, part) in service.mounts() {
            if let Some(identity) = identity {
                self.identities.push((at, identity));
            }
            self = self.mount(at, part);
        }
        self
    }

    /// Serves a typed protocol (several protocols share the server and its port).
    pub fn protocol(mut self, protocol: crate::service::Protocol) -> Self {
        self.protocols.retain(|p| p.name != protocol.name);
        self.protocols.push(protocol);
        self
    }

    /// Replaces the FIFO call scheduler.
    pub fn scheduler(mut self, scheduler: impl Scheduler<Call>) -> Self {
        self.scheduler = Some(Box::new(scheduler));
        self
    }

    /// Binds a TCP listener to `addr` (port 0 for an ephemeral port) and starts serving.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes starts nothing.
    pub async fn bind(self, addr: SocketAddr) -> Result<Server, Error> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::io(format!("binding {addr}"), e))?;
        self.serve(listener)
    }

    /// Starts serving connections from `listener`. Must be called within a tokio runtime.
    pub fn serve<L: Listener>(mut self, listener: L) -> Result<Server, Error> {
        self.cfg.validate()?;
        if let Some(at) = self.taken {
            return Err(Error::Config(format!(
                "two services are mounted at the {at}; each mount point takes one"
            )));
        }
        if let Some((at, identity)) = self
            .identities
            .iter()
            .find(|(_, identity)| *identity != self.cfg.identity)
        {
            return Err(Error::Config(format!(
                "the identity of the service at the {at} ({identity:?}) differs from the server's ({:?})",
                self.cfg.identity
            )));
        }
        let streams = crate::service::stream::StreamService::new(
            &self.protocols,
            self.cfg.identity.node_id,
            self.cfg.max_context_bytes,
        );
        if !self.protocols.is_empty() {
            let router = crate::service::ServiceRouter::new(
                std::mem::take(&mut self.protocols),
                self.cfg.identity.node_id,
            );
            self.routes.insert(
                Route::from(crate::service::SERVICE_ROUTE),
                Arc::new(crate::service::RouterHandler(router)),
            );
        }
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listener's address", e))?;
        for hook in self.on_bound.drain(..) {
            hook(local_addr);
        }
        let capacity = self.cfg.call_queue_capacity();
        let scheduler = self
            .scheduler
            .unwrap_or_else(|| Box::new(FifoScheduler::new(capacity)));
        let queue = Arc::new(CallQueue::new(scheduler, Some("peerwire_call_queue_depth")));
        let core = MountPoint::lane(Lane::Rpc);
        if !self.mounts.contains(core) {
            let inbound = ServerInbound {
                routes: Arc::new(self.routes),
                queue: queue.clone(),
                node_id: self.cfg.identity.node_id,
                max_context: self.cfg.max_context_bytes,
                streams,
            };
            self.mounts
                .insert(core, Arc::new(inbound))
                .expect("checked to be free");
        } else if !self.routes.is_empty() {
            return Err(Error::Config(format!(
                "routes or protocols are served at the {core}, where another service is mounted"
            )));
        }
        let shared = Arc::new(ServerShared {
            mounts: self.mounts,
            conn_limit: Arc::new(Semaphore::new(self.cfg.max_connections)),
            address_caps: Arc::new(address_caps::AddressCaps::new(
                self.cfg.max_connections_per_address,
                self.cfg.cap_exempt_addresses.iter().copied(),
            )),
            conn_tasks: TaskTracker::new(),
            shutting_down: CancellationToken::new(),
            connections: Mutex::new(HashMap::new()),
            next_key: AtomicU64::new(0),
            cfg: self.cfg,
        });
        let handler_tasks = TaskTracker::new();
        handler::spawn_pool(shared.cfg.handlers, queue.clone(), &handler_tasks);
        let accept_stop = CancellationToken::new();
        if let Some(period) = queue.tick_interval() {
            // The scheduler's maintenance (the fair queue's cost decay), until shutdown.
            let queue = queue.clone();
            let stop = accept_stop.clone();
            handler_tasks.spawn(async move {
                let mut ticker = tokio::time::interval(period);
                ticker.tick().await;
                loop {
                    tokio::select! {
                        _ = ticker.tick() => queue.tick(),
                        _ = stop.cancelled() => return,
                    }
                }
            });
        }
        let listener_task = tokio::spawn(tracing::Instrument::instrument(
            listener::run(listener, shared.clone(), accept_stop.clone()),
            tracing::info_span!("server", addr = %local_addr),
        ));
        tracing::info!(addr = %local_addr, node = shared.cfg.identity.node_id, "server listening");
        Ok(Server {
            local_addr,
            shared,
            queue,
            handler_tasks,
            accept_stop,
            listener_task: Some(listener_task),
        })
    }
}

/// A running server. Stop it with [`Server::shutdown`]; dropping it closes every connection
/// at once instead.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    shared: Arc<ServerShared>,
    queue: Arc<CallQueue<Call>>,
    handler_tasks: TaskTracker,
    accept_stop: CancellationToken,
    listener_task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// A builder with `cfg` and no routes.
    pub fn builder(cfg: ServerConfig) -> ServerBuilder {
        ServerBuilder {
            cfg,
            routes: Routes::default(),
            protocols: Vec::new(),
            scheduler: None,
            mounts: Mounts::default(),
            identities: Vec::new(),
            taken: None,
            on_bound: Vec::new(),
        }
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.shared
            .connections
            .lock()
            .expect("connections lock poisoned")
            .len()
    }

    /// Calls waiting in the call queue now.
    pub fn queued_calls(&self) -> usize {
        self.queue.len()
    }

    /// Stops gracefully: stops accepting, sends every connection a go-away, lets in-flight
    /// and queued calls finish (up to `shutdown_grace`), then closes everything and waits for
    /// every task to end.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if the future is dropped, the remaining connections are closed hard
    /// by the server's `Drop`.
    pub async fn shutdown(mut self) {
        self.accept_stop.cancel();
        if let Some(task) = self.listener_task.take() {
            let _ = task.await;
        }
        self.shared.shutting_down.cancel();
        self.shared.each_connection(|c| {
            c.conn
                .begin_close(GoAwayReason::Normal, "server shutting down".into())
        });
        self.shared.conn_tasks.close();
        let grace = self.shared.cfg.shutdown_grace;
        if tokio::time::timeout(grace, self.shared.conn_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the shutdown grace; closing them"
            );
            self.shared.each_connection(|c| {
                c.conn.begin_close_hard(
                    GoAwayReason::Normal,
                    "server shutdown grace expired (setting `shutdown_grace`)".into(),
                )
            });
            self.shared.conn_tasks.wait().await;
        }
        self.queue.close();
        self.handler_tasks.close();
        if tokio::time::timeout(grace, self.handler_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("handlers still running after the shutdown grace");
        }
        tracing::info!(addr = %self.local_addr, "server stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.accept_stop.cancel();
        if let Some(task) = self.listener_task.take() {
            task.abort();
        }
        self.shared.shutting_down.cancel();
        self.shared.each_connection(|c| {
            c.conn
                .begin_close_hard(GoAwayReason::Normal, "server dropped".into())
        });
        self.shared.conn_tasks.close();
        self.queue.close();
        self.handler_tasks.close();
    }
}
