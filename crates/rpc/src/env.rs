//! [`RpcEnv`] (Spark's `NettyRpcEnv`): endpoints by name, a server (unless in client mode), a
//! client for outgoing asks, outboxes for outgoing one-way messages, and the message loops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::ROUTE;
use super::codec::{self, BincodeCodec, Codec};
use super::dispatcher::Dispatcher;
use super::endpoint::{Endpoint, MessageContext, SharedEndpoint};
use super::endpoint_ref::{EndpointRef, RefInner, Target, with_decode_context};
use super::envelope::{VERIFIER, write_head};
use super::file_server::{FileServer, FileUri, OpenChannelError};
use super::inbound::{RpcInbound, post_failure};
use super::inbox::{Concurrent, Erased, ErasedEndpoint, Inbox, InboxMessage, PostError};
use super::message_loop::MessageLoops;
use super::outbox::Outboxes;
use super::reply::{ReplyContext, ReplySink};
use peerwire::client::{CallOptions, Client};
use peerwire::config::{ClientConfig, Identity, ServerConfig};
use peerwire::error::{Error, Unknown, failure_to_error};
use peerwire::mount::{MountPoint, Mountable, Service};
use peerwire::server::Server;
use peerwire::transport::{Listener, TcpListener};
use peerwire_pull::{PullClient, PullConfig, ReadOptions, StreamManager, StreamRead};
use peerwire_wire::Lane;

/// Default ask timeout: 30 s. Spark's 120 s hides dead peers too long; asks that need longer
/// say so with [`EndpointRef::ask_with_timeout`].
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// Default inbox capacity: 4,096 messages per endpoint. Spark's inboxes are unbounded, which
/// turns a slow endpoint into an out-of-memory error; ours answer busy instead.
pub const DEFAULT_INBOX_CAPACITY: usize = 4096;

/// Default outbox capacity: 4,096 one-way messages queued per remote address while connecting.
pub const DEFAULT_OUTBOX_CAPACITY: usize = 4096;

/// Settings of an [`RpcEnv`].
#[derive(Clone)]
pub struct RpcEnvConfig {
    /// The environment's name (for logs and errors).
    pub name: String,
    /// Where to listen; `None` is client mode (no listener: peers reach this environment's
    /// endpoints only over connections it opened).
    pub bind: Option<SocketAddr>,
    /// The address other nodes should use; default: the bound address.
    pub advertise: Option<SocketAddr>,
    /// Cluster and node identity, used for both the server and the client.
    pub identity: Identity,
    /// Default ask timeout.
    pub ask_timeout: Duration,
    /// Messages an endpoint's inbox holds before senders get busy.
    pub inbox_capacity: usize,
    /// One-way messages queued per remote address while connecting.
    pub outbox_capacity: usize,
    /// Shared message loops; default: the number of CPUs, at least 2.
    pub message_loops: usize,
    /// Server settings (the identity is taken from `identity`).
    pub server: ServerConfig,
    /// Client settings (the identity is taken from `identity`).
    pub client: ClientConfig,
    /// How messages are encoded; default bincode.
    pub codec: Arc<dyn Codec>,
}

impl std::fmt::Debug for RpcEnvConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEnvConfig")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("identity", &self.identity)
            .field("ask_timeout", &self.ask_timeout)
            .field("inbox_capacity", &self.inbox_capacity)
            .field("codec", &self.codec.name())
            .finish_non_exhaustive()
    }
}

impl RpcEnvConfig {
    /// A server-mode environment listening on `bind` (port 0 for an ephemeral port).
    pub fn server(name: impl Into<String>, bind: SocketAddr) -> Self {
        Self {
            bind: Some(bind),
            ..Self::client(name)
        }
    }

    /// A client-mode environment: no listener.
    pub fn client(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            bind: None,
            advertise: None,
            identity: Identity::default(),
            ask_timeout: DEFAULT_ASK_TIMEOUT,
            inbox_capacity: DEFAULT_INBOX_CAPACITY,
            outbox_capacity: DEFAULT_OUTBOX_CAPACITY,
            message_loops: std::thread::available_parallelism().map_or(2, |n| n.get().max(2)),
            server: ServerConfig::default(),
            client: ClientConfig::default(),
            codec: Arc::new(BincodeCodec),
        }
    }
}

/// Per-endpoint options.
#[derive(Debug, Clone, Copy, Default)]
pub struct EndpointOptions {
    /// Give the endpoint its own message loop instead of the shared pool, so that it can take
    /// its time without delaying other endpoints.
    pub isolated: bool,
    /// Inbox capacity; default: the environment's.
    pub inbox_capacity: Option<usize>,
}

pub(crate) struct EnvInner {
    pub(crate) name: String,
    /// Where peers reach this environment: set at start when it binds a listener of its own,
    /// or once the server it is mounted on binds; unset in client mode.
    address: OnceLock<SocketAddr>,
    /// `address` as envelope text, formatted once.
    sender_text: OnceLock<String>,
    pub(crate) cfg: RpcEnvConfig,
    pub(crate) codec: Arc<dyn Codec>,
    pub(crate) dispatcher: Dispatcher,
    pub(crate) client: Client,
    pub(crate) outboxes: Outboxes,
    pub(crate) loops: MessageLoops,
    /// Background work of the environment (outbox connects).
    pub(crate) tasks: TaskTracker,
    server: Mutex<Option<Server>>,
    /// The streams of the file server, served on the pull lane of the environment's port.
    streams: StreamManager,
    /// Reads other environments' file URIs.
    pull: PullClient,
    files: FileServer,
    /// Set once shutdown starts (checked on every send and ask).
    stopped: AtomicBool,
    terminated: CancellationToken,
}

impl EnvInner {
    /// Where peers reach this environment (`None` in client mode).
    pub(crate) fn address(&self) -> Option<SocketAddr> {
        self.address.get().copied()
    }

    /// Sets the address once: to `advertise` if configured (its port 0 replaced by the bound
    /// port), else to `bound`. Later calls change nothing.
    fn set_address(&self, bound: SocketAddr) {
        let address = match self.cfg.advertise {
            Some(adv) if adv.port() == 0 => SocketAddr::new(adv.ip(), bound.port()),
            Some(adv) => adv,
            None => bound,
        };
        if self.address.set(address).is_ok() {
            let _ = self.sender_text.set(address.to_string());
        }
    }

    /// The address as envelope text ("" in client mode).
    fn sender_text(&self) -> &str {
        self.sender_text.get().map_or("", String::as_str)
    }

    pub(crate) fn display_address(&self) -> String {
        match self.address() {
            Some(addr) => addr.to_string(),
            None => format!("client-mode env `{}`", self.name),
        }
    }

    fn local_peer(&self) -> SocketAddr {
        self.address()
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    fn check_running(&self) -> Result<(), Error> {
        if self.is_stopped() {
            return Err(Error::EnvStopped {
                env: self.name.clone(),
            });
        }
        Ok(())
    }

    fn local_post_error(&self, name: &str, error: PostError) -> Error {
        match error {
            PostError::NotFound | PostError::Stopped => Error::EndpointNotFound {
                address: self.display_address(),
                name: name.to_owned(),
            },
            PostError::Full { .. } => {
                let (status, message) = post_failure(self, name, error);
                failure_to_error(self.local_peer(), status, 0, message)
            }
        }
    }

    /// Encodes `message` for `receiver` straight into its envelope (one buffer, no copy).
    fn envelope<M: Serialize>(&self, receiver: &str, message: &M) -> Result<Bytes, Error> {
        let mut out = Vec::with_capacity(256);
        write_head(
            &mut out,
            receiver,
            std::any::type_name::<M>(),
            self.sender_text(),
        )
        .map_err(|e| Error::Codec(e.to_string()))?;
        self.codec
            .encode_into(&message, &mut out)
            .map_err(|e| Error::Codec(e.to_string()))?;
        Ok(Bytes::from(out))
    }

    fn unbound(name: &str) -> Error {
        Error::Config(format!(
            "ref to endpoint `{name}` was decoded outside an rpc env and cannot be used"
        ))
    }

    pub(crate) fn send<M: Serialize>(
        self: &Arc<Self>,
        target: &RefInner,
        message: &M,
    ) -> Result<(), Error> {
        self.check_running()?;
        let type_name = std::any::type_name::<M>();
        match &target.target {
            Target::Local => {
                let body = codec::encode(&*self.codec, message)
                    .map_err(|e| Error::Codec(e.to_string()))?;
                let message = InboxMessage::OneWay {
                    type_name: Bytes::from_static(type_name.as_bytes()),
                    body,
                    ctx: MessageContext {
                        sender: self.address(),
                        remote: None,
                        principal: None,
                    },
                    conn: None,
                };
                self.dispatcher
                    .post(&target.name, message)
                    .map_err(|refused| self.local_post_error(&target.name, refused.0))
            }
            Target::Remote(addr) => {
                let envelope = self.envelope(&target.name, message)?;
                self.outboxes.send(self, *addr, envelope)
            }
            Target::Reverse(conn) => {
                let envelope = self.envelope(&target.name, message)?;
                conn.send_oneway(ROUTE, envelope)
            }
            Target::Unbound => Err(Self::unbound(&target.name)),
        }
    }

    pub(crate) async fn ask<M: Serialize, R: DeserializeOwned>(
        self: &Arc<Self>,
        target: &RefInner,
        message: &M,
        timeout: Duration,
    ) -> Result<R, Error> {
        self.check_running()?;
        let exchange = async {
            let reply = match &target.target {
                Target::Local => {
                    let body = codec::encode(&*self.codec, message)
                        .map_err(|e| Error::Codec(e.to_string()))?;
                    let type_name = std::any::type_name::<M>();
                    self.ask_local(&target.name, type_name, body, timeout)
                        .await?
                }
                Target::Remote(addr) => {
                    let envelope = self.envelope(&target.name, message)?;
                    self.client
                        .call_with(*addr, ROUTE, envelope, CallOptions::deadline(timeout))
                        .await?
                }
                Target::Reverse(conn) => {
                    let envelope = self.envelope(&target.name, message)?;
                    conn.call(ROUTE, envelope, timeout).await?
                }
                Target::Unbound => return Err(Self::unbound(&target.name)),
            };
            let conn = match &target.target {
                Target::Reverse(conn) => Some(conn),
                _ => None,
            };
            with_decode_context(self, conn, || codec::decode::<R>(&*self.codec, &reply)).map_err(
                |e| {
                    Error::Codec(format!(
                        "reply of endpoint `{}` is not a `{}`: {e}",
                        target.name,
                        std::any::type_name::<R>()
                    ))
                },
            )
        };
        // Shutdown closes the environment's connections at once, failing asks in flight;
        // report those as what they are.
        match exchange.await {
            Err(_) if self.is_stopped() => Err(Error::EnvStopped {
                env: self.name.clone(),
            }),
            result => result,
        }
    }

    async fn ask_local(
        self: &Arc<Self>,
        name: &str,
        type_name: &'static str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let (tx, rx) = oneshot::channel();
        let reply = ReplyContext::new(
            ReplySink::Local(tx),
            Bytes::copy_from_slice(name.as_bytes()),
            self.address(),
            None,
            self.codec.clone(),
            peerwire::context::outgoing(None),
        );
        let message = InboxMessage::Ask {
            type_name: Bytes::from_static(type_name.as_bytes()),
            body,
            conn: None,
            reply,
        };
        if let Err(refused) = self.dispatcher.post(name, message) {
            let (error, message) = *refused;
            // Dropping the ask answers its (local) reply channel; we report the reason here.
            drop(message);
            return Err(self.local_post_error(name, error));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(bytes))) => Ok(bytes),
            Ok(Ok(Err((status, message)))) => {
                Err(failure_to_error(self.local_peer(), status, 0, message))
            }
            Ok(Err(_)) => Err(Error::Unknown {
                peer: self.local_peer(),
                reason: Unknown::ConnectionLost(format!("endpoint `{name}` went away")),
            }),
            Err(_) => Err(Error::Unknown {
                peer: self.local_peer(),
                reason: Unknown::DeadlineExceeded { deadline: timeout },
            }),
        }
    }
}

/// An RPC environment of named endpoints. Cheap to clone; clones share the environment.
/// Stop it with [`RpcEnv::shutdown`]: endpoints that keep a clone of their environment (from
/// `on_start`) keep it alive until then.
#[derive(Clone)]
pub struct RpcEnv {
    pub(crate) inner: Arc<EnvInner>,
}

impl std::fmt::Debug for RpcEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcEnv")
            .field("name", &self.inner.name)
            .field("address", &self.inner.address())
            .finish_non_exhaustive()
    }
}

impl RpcEnv {
    /// Starts an environment: binds its listener (unless in client mode) and its message loops.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes starts nothing.
    pub async fn start(cfg: RpcEnvConfig) -> Result<Self, Error> {
        let listener =
            match cfg.bind {
                Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                    Error::io(format!("binding rpc env `{}` to {addr}", cfg.name), e)
                })?),
                None => None,
            };
        Self::start_with(cfg, listener)
    }

    /// Starts an environment serving the streams `listener` accepts (instead of binding
    /// `cfg.bind`; `None` for client mode). With [`ConnectionConfig::network`] this runs an
    /// environment over any transport, a simulated network among them.
    ///
    /// [`ConnectionConfig::network`]: peerwire::ConnectionConfig::network
    pub fn start_on<L: Listener>(cfg: RpcEnvConfig, listener: Option<L>) -> Result<Self, Error> {
        Self::start_with(cfg, listener)
    }

    fn start_with<L: Listener>(cfg: RpcEnvConfig, listener: Option<L>) -> Result<Self, Error> {
        let mut client_cfg = cfg.client.clone();
        client_cfg.identity = cfg.identity;
        client_cfg.validate()?;
        let mut server_cfg = cfg.server.clone();
        server_cfg.identity = cfg.identity;
        server_cfg.validate()?;
        if cfg.inbox_capacity == 0 || cfg.message_loops == 0 {
            return Err(Error::Config(
                "inbox_capacity and message_loops must be at least 1".into(),
            ));
        }
        let bound = match &listener {
            Some(l) => Some(
                l.local_addr()
                    .map_err(|e| Error::io("reading the listener's address", e))?,
            ),
            None => None,
        };
        let streams = StreamManager::new(PullConfig {
            identity: Some(cfg.identity),
            ..PullConfig::default()
        });
        let pull = PullClient::new(client_cfg.clone())?;
        let inner = Arc::new_cyclic(|weak: &Weak<EnvInner>| {
            let inbound = Arc::new(RpcInbound { env: weak.clone() });
            let client = Client::for_service(client_cfg, MountPoint::lane(Lane::RpcEnv), inbound)
                .expect("client configuration validated above");
            let env = weak.clone();
            let files = FileServer::new(
                streams.clone(),
                cfg.name.clone(),
                Arc::new(move || env.upgrade().and_then(|e| e.address())),
            );
            EnvInner {
                name: cfg.name.clone(),
                address: OnceLock::new(),
                sender_text: OnceLock::new(),
                codec: cfg.codec.clone(),
                dispatcher: Dispatcher::default(),
                client,
                outboxes: Outboxes::default(),
                loops: MessageLoops::new(),
                tasks: TaskTracker::new(),
                server: Mutex::new(None),
                streams,
                pull,
                files,
                stopped: AtomicBool::new(false),
                terminated: CancellationToken::new(),
                cfg,
            }
        });
        inner
            .loops
            .start_shared(inner.cfg.message_loops, Arc::downgrade(&inner));
        if let Some(bound) = bound {
            inner.set_address(bound);
        }
        if let Some(listener) = listener {
            let server = Server::builder(server_cfg)
                .mount_all(&Self {
                    inner: inner.clone(),
                })
                .serve(listener)?;
            *inner.server.lock().expect("server lock poisoned") = Some(server);
        }
        tracing::info!(env = %inner.name, address = %inner.display_address(), "rpc env started");
        Ok(Self { inner })
    }

    /// The environment's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The advertised address (`None` in client mode, and while the server it is mounted on
    /// has not bound yet).
    pub fn address(&self) -> Option<SocketAddr> {
        self.inner.address()
    }

    /// Registers `endpoint` under `name` on the shared message loops and returns its ref.
    /// `on_start` runs before any message.
    pub fn setup_endpoint<E: Endpoint>(
        &self,
        name: impl Into<String>,
        endpoint: E,
    ) -> Result<EndpointRef<E::Message>, Error> {
        self.setup_endpoint_with(name, endpoint, EndpointOptions::default())
    }

    /// As [`RpcEnv::setup_endpoint`], with options (isolated loop, inbox capacity).
    pub fn setup_endpoint_with<E: Endpoint>(
        &self,
        name: impl Into<String>,
        endpoint: E,
        options: EndpointOptions,
    ) -> Result<EndpointRef<E::Message>, Error> {
        self.register(name.into(), Box::new(Erased(endpoint)), options)
    }

    /// Registers an endpoint that processes up to `concurrency` messages at once (`&self`
    /// access). `on_start` runs first and `on_stop` after every message.
    pub fn setup_shared_endpoint<E: SharedEndpoint>(
        &self,
        name: impl Into<String>,
        endpoint: E,
        concurrency: u32,
        options: EndpointOptions,
    ) -> Result<EndpointRef<E::Message>, Error> {
        let concurrency = concurrency.max(1);
        let erased = Concurrent {
            endpoint: Arc::new(endpoint),
            slots: Arc::new(tokio::sync::Semaphore::new(concurrency as usize)),
            concurrency,
        };
        self.register(name.into(), Box::new(erased), options)
    }

    fn register<M>(
        &self,
        name: String,
        endpoint: Box<dyn ErasedEndpoint>,
        options: EndpointOptions,
    ) -> Result<EndpointRef<M>, Error> {
        self.inner.check_running()?;
        if name.is_empty() || name.len() > 255 || name.starts_with('$') {
            return Err(Error::Config(format!(
                "endpoint name `{name}` must be 1 to 255 bytes and not start with `$`"
            )));
        }
        let weak = Arc::downgrade(&self.inner);
        let home = if options.isolated {
            self.inner.loops.isolated(weak.clone())
        } else {
            self.inner.loops.shared()
        };
        let capacity = options
            .inbox_capacity
            .unwrap_or(self.inner.cfg.inbox_capacity)
            .max(1);
        let inbox = Inbox::new(name.clone(), endpoint, capacity, home);
        if self.inner.dispatcher.register(inbox.clone()).is_err() {
            return Err(Error::Config(format!(
                "endpoint `{name}` is already registered in rpc env `{}`",
                self.inner.name
            )));
        }
        inbox.start();
        Ok(EndpointRef::new(name, Target::Local, weak))
    }

    /// A ref to a local endpoint, if one is registered under `name`.
    pub fn local_ref<M>(&self, name: &str) -> Option<EndpointRef<M>> {
        self.inner
            .dispatcher
            .contains(name)
            .then(|| EndpointRef::new(name.to_owned(), Target::Local, Arc::downgrade(&self.inner)))
    }

    /// A ref to the endpoint `name` at `address` without checking that it exists (for peers
    /// that may not be up yet). Sends queue in the outbox until a connection is made.
    pub fn endpoint_ref_unchecked<M>(&self, address: SocketAddr, name: &str) -> EndpointRef<M> {
        let target = if Some(address) == self.inner.address() {
            Target::Local
        } else {
            Target::Remote(address)
        };
        EndpointRef::new(name.to_owned(), target, Arc::downgrade(&self.inner))
    }

    /// A ref to the endpoint `name` of the environment at `address`, after checking that it
    /// exists there ([`Error::EndpointNotFound`] otherwise).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn endpoint_ref<M>(
        &self,
        address: SocketAddr,
        name: &str,
    ) -> Result<EndpointRef<M>, Error> {
        let inner = &self.inner;
        inner.check_running()?;
        if Some(address) == inner.address() {
            return self.local_ref(name).ok_or_else(|| Error::EndpointNotFound {
                address: address.to_string(),
                name: name.to_owned(),
            });
        }
        let mut envelope = Vec::new();
        write_head(&mut envelope, VERIFIER, "", inner.sender_text())
            .map_err(|e| Error::Config(e.to_string()))?;
        envelope.extend_from_slice(name.as_bytes());
        let envelope = Bytes::from(envelope);
        let reply = inner
            .client
            .call_with(
                address,
                ROUTE,
                envelope,
                CallOptions::deadline(inner.cfg.ask_timeout),
            )
            .await?;
        if reply.as_ref() == [1] {
            Ok(EndpointRef::new(
                name.to_owned(),
                Target::Remote(address),
                Arc::downgrade(inner),
            ))
        } else {
            Err(Error::EndpointNotFound {
                address: address.to_string(),
                name: name.to_owned(),
            })
        }
    }

    /// Stops a local endpoint: it takes no new messages, processes those already queued, then
    /// runs `on_stop`. Reentrant; does nothing for remote refs.
    pub fn stop<M>(&self, endpoint: &EndpointRef<M>) {
        if let Target::Local = endpoint.inner.target
            && let Some(inbox) = self.inner.dispatcher.get(endpoint.name())
        {
            inbox.stop();
        }
    }

    /// Shuts the environment down: fails pending asks with [`Error::EnvStopped`], stops every
    /// endpoint (each runs `on_stop`), closes the server and the client, and waits for every
    /// task. Later calls wait for the first to finish.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the shutdown continues in the background; [`RpcEnv::await_termination`]
    /// tells when it is done.
    pub async fn shutdown(&self) {
        let inner = self.inner.clone();
        if inner.stopped.swap(true, Ordering::AcqRel) {
            inner.terminated.cancelled().await;
            return;
        }
        // Asks in flight from this environment fail now (as `EnvStopped`).
        inner
            .client
            .close_all_hard(&format!("rpc env `{}` shutting down", inner.name));
        let task = tokio::spawn(async move {
            let inboxes = inner.dispatcher.all();
            for inbox in &inboxes {
                inbox.stop();
            }
            let grace = inner.cfg.server.shutdown_grace;
            for inbox in &inboxes {
                if tokio::time::timeout(grace, inbox.terminated.cancelled())
                    .await
                    .is_err()
                {
                    tracing::warn!(endpoint = %inbox.name, "endpoint did not stop within the shutdown grace");
                }
            }
            let server = inner.server.lock().expect("server lock poisoned").take();
            if let Some(server) = server {
                server.shutdown().await;
            }
            inner.client.shutdown().await;
            inner.pull.shutdown().await;
            inner.streams.shutdown().await;
            inner.tasks.close();
            inner.tasks.wait().await;
            inner.loops.close().await;
            tracing::info!(env = %inner.name, "rpc env stopped");
            inner.terminated.cancel();
        });
        let _ = task.await;
    }

    /// The environment's file server (Spark's `RpcEnv.fileServer`): files, jars and
    /// directories served on this environment's port under URIs that name it.
    pub fn file_server(&self) -> &FileServer {
        &self.inner.files
    }

    /// Opens a URI a file server handed out (`peerwire://host:port/NAME`, Spark's
    /// `RpcEnv.openChannel`) and returns its bytes as a stream of chunks, each checked
    /// against its CRC32C, the whole against its length and CRC32C.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a stream opened by a cancelled call is released with the connection or
    /// after the serving environment's idle timeout.
    pub async fn open_channel(&self, uri: &str) -> Result<StreamRead, OpenChannelError> {
        let uri = FileUri::parse(uri)?;
        let info = self.inner.pull.open(uri.address, &uri.name).await?;
        Ok(self
            .inner
            .pull
            .read(uri.address, info, ReadOptions::default())?)
    }

    /// Reads a file-server URI whole into memory ([`RpcEnv::open_channel`], collected).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, as `open_channel`.
    pub async fn fetch_file(&self, uri: &str) -> Result<Bytes, OpenChannelError> {
        let uri = FileUri::parse(uri)?;
        Ok(self.inner.pull.fetch_all(uri.address, &uri.name).await?)
    }

    /// Waits until the environment has shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn await_termination(&self) {
        self.inner.terminated.cancelled().await;
    }
}

impl Mountable for RpcEnv {
    /// The rpc-env lane (default group): every endpoint of this environment. Mounted on a
    /// server shared with other services, the environment's address becomes that server's
    /// (or `advertise`) once it binds.
    fn mounts(&self) -> Vec<(MountPoint, Arc<dyn Service>)> {
        let service: Arc<dyn Service> = Arc::new(RpcInbound {
            env: Arc::downgrade(&self.inner),
        });
        let mut mounts = vec![(MountPoint::lane(Lane::RpcEnv), service)];
        mounts.extend(self.inner.streams.mounts());
        mounts
    }

    fn identity(&self) -> Option<Identity> {
        Some(self.inner.cfg.identity)
    }

    fn on_bound(&self) -> Option<Box<dyn FnOnce(SocketAddr) + Send>> {
        let env = Arc::downgrade(&self.inner);
        Some(Box::new(move |bound| {
            if let Some(env) = env.upgrade() {
                env.set_address(bound);
            }
        }))
    }
}
