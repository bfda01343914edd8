//! Protocols: a named, versioned set of typed methods served on one port beside others
//! (Hadoop's protocols registered on one `RPC.Server`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use peerwire_wire::Status;

use super::stream::server::{Chunk, run};

use super::engine::{Engine, EngineId};
use super::stream::{ItemStream, Streaming};
use crate::server::{HandlerError, Request};
use crate::transport::BoxFuture;

/// A method behind an object-safe interface: bytes in, bytes out.
pub(crate) trait ErasedMethod: Send + Sync + 'static {
    fn call(
        &self,
        body: Bytes,
        request: Request,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>>;
}

struct TypedMethod<E, F, Req, Resp> {
    handler: Arc<F>,
    _types: std::marker::PhantomData<fn(E, Req) -> Resp>,
}

impl<E, F, Fut, Req, Resp> ErasedMethod for TypedMethod<E, F, Req, Resp>
where
    E: Engine<Req> + Engine<Resp>,
    F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    fn call(
        &self,
        body: Bytes,
        request: Request,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let handler = self.handler.clone();
        Box::pin(async move {
            let decoded = <E as Engine<Req>>::decode(&body).map_err(|e| HandlerError {
                status: Status::BadRequest,
                message: format!("request does not decode as {}: {e}", E::NAME),
                retry_after: None,
            })?;
            let response = handler(decoded, request).await?;
            let mut out = Vec::new();
            <E as Engine<Resp>>::encode(&response, &mut out)
                .map_err(|e| HandlerError::new(format!("response does not encode: {e}")))?;
            Ok(Bytes::from(out))
        })
    }
}

/// A streaming method behind an object-safe interface: it starts from its first request
/// (server streaming) or its input (client streaming, bidirectional) and gives encoded
/// replies.
pub(crate) trait ErasedStreamMethod: Send + Sync + 'static {
    /// Whether the method reads a stream of requests.
    fn takes_input(&self) -> bool;
    /// Runs the method: its replies, encoded into batches, into `out` until it ends, fails or
    /// `closed` (see `stream/server.rs`).
    fn start(
        &self,
        first: Bytes,
        input: Option<tokio::sync::mpsc::Receiver<Bytes>>,
        request: Request,
        out: tokio::sync::mpsc::Sender<Chunk>,
        closed: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()>;
}

fn bad_first<E: EngineId>(e: impl std::fmt::Display) -> HandlerError {
    HandlerError {
        status: Status::BadRequest,
        message: format!("request does not decode as {}: {e}", E::NAME),
        retry_after: None,
    }
}

/// The shape of a streaming method.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Shape {
    Server,
    Client,
    Bidi,
}

struct StreamMethod<E, F, Req, Resp> {
    handler: Arc<F>,
    _types: std::marker::PhantomData<fn(E, Req) -> Resp>,
}

/// A server-streaming handler: one request in, a stream of replies out.
trait ServerFn<Req, Resp>: Send + Sync + 'static {
    fn start(
        &self,
        req: Req,
        ctx: Request,
    ) -> BoxFuture<'static, Result<ItemStream<Resp>, HandlerError>>;
}

impl<F, Fut, Req, Resp> ServerFn<Req, Resp> for F
where
    F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<ItemStream<Resp>, HandlerError>> + Send + 'static,
{
    fn start(
        &self,
        req: Req,
        ctx: Request,
    ) -> BoxFuture<'static, Result<ItemStream<Resp>, HandlerError>> {
        Box::pin(self(req, ctx))
    }
}

/// A handler reading a stream of requests, answering with one reply (client streaming) or a
/// stream of them (bidirectional).
trait InputFn<Req, Out>: Send + Sync + 'static {
    fn start(
        &self,
        input: Streaming<Req>,
        ctx: Request,
    ) -> BoxFuture<'static, Result<Out, HandlerError>>;
}

impl<F, Fut, Req, Out> InputFn<Req, Out> for F
where
    F: Fn(Streaming<Req>, Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, HandlerError>> + Send + 'static,
{
    fn start(
        &self,
        input: Streaming<Req>,
        ctx: Request,
    ) -> BoxFuture<'static, Result<Out, HandlerError>> {
        Box::pin(self(input, ctx))
    }
}

struct ServerStreaming<E, F, Req, Resp>(StreamMethod<E, F, Req, Resp>);
struct ClientStreaming<E, F, Req, Resp>(StreamMethod<E, F, Req, Resp>);
struct BidiStreaming<E, F, Req, Resp>(StreamMethod<E, F, Req, Resp>);

impl<E, F, Req, Resp> ErasedStreamMethod for ServerStreaming<E, F, Req, Resp>
where
    E: Engine<Req> + Engine<Resp>,
    F: ServerFn<Req, Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    fn takes_input(&self) -> bool {
        false
    }

    fn start(
        &self,
        first: Bytes,
        _input: Option<tokio::sync::mpsc::Receiver<Bytes>>,
        request: Request,
        out: tokio::sync::mpsc::Sender<Chunk>,
        closed: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let handler = self.0.handler.clone();
        let started = async move {
            let req = <E as Engine<Req>>::decode(&first).map_err(bad_first::<E>)?;
            handler.start(req, request).await
        };
        Box::pin(run::<E, Resp>(started, out, closed))
    }
}

fn input<E, Req>(input: Option<tokio::sync::mpsc::Receiver<Bytes>>) -> Streaming<Req>
where
    E: Engine<Req>,
{
    let rx = input.unwrap_or_else(|| tokio::sync::mpsc::channel(1).1);
    Streaming::new(rx, <E as Engine<Req>>::decode_bytes, E::NAME)
}

impl<E, F, Req, Resp> ErasedStreamMethod for ClientStreaming<E, F, Req, Resp>
where
    E: Engine<Req> + Engine<Resp>,
    F: InputFn<Req, Resp>,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    fn takes_input(&self) -> bool {
        true
    }

    fn start(
        &self,
        _first: Bytes,
        rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
        request: Request,
        out: tokio::sync::mpsc::Sender<Chunk>,
        closed: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let reply = self.0.handler.start(input::<E, Req>(rx), request);
        let started = async move {
            let one: ItemStream<Resp> = Box::pin(futures::stream::once(reply));
            Ok(one)
        };
        Box::pin(run::<E, Resp>(started, out, closed))
    }
}

impl<E, F, Req, Resp> ErasedStreamMethod for BidiStreaming<E, F, Req, Resp>
where
    E: Engine<Req> + Engine<Resp>,
    F: InputFn<Req, ItemStream<Resp>>,
    Req: Send + 'static,
    Resp: Send + 'static,
{
    fn takes_input(&self) -> bool {
        true
    }

    fn start(
        &self,
        _first: Bytes,
        rx: Option<tokio::sync::mpsc::Receiver<Bytes>>,
        request: Request,
        out: tokio::sync::mpsc::Sender<Chunk>,
        closed: tokio_util::sync::CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let started = self.0.handler.start(input::<E, Req>(rx), request);
        Box::pin(run::<E, Resp>(started, out, closed))
    }
}

/// The unary entry of a streaming method: refused, naming the way to call it.
struct StreamsOnly {
    shape: Shape,
}

impl ErasedMethod for StreamsOnly {
    fn call(
        &self,
        _body: Bytes,
        _request: Request,
    ) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        let shape = self.shape;
        Box::pin(async move {
            Err(HandlerError {
                status: Status::BadRequest,
                message: format!(
                    "the method is {shape:?}-streaming: call it through a streaming client"
                ),
                retry_after: None,
            })
        })
    }
}

/// One method of a protocol.
#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) engine: u8,
    pub(crate) idempotent: bool,
    pub(crate) handler: Arc<dyn ErasedMethod>,
    /// For a streaming method, how it starts (served on the stream route).
    pub(crate) stream: Option<Arc<dyn ErasedStreamMethod>>,
    /// Its call-duration handles, registered when the protocol is mounted.
    pub(crate) metrics: Option<MethodMetrics>,
}

/// A method's handles of `peerwire_service_call_duration_seconds{protocol, method, outcome}`:
/// from the router taking the call to the method's outcome (`ok`, or `failed`: the method
/// returned an error). Registered once, so a call pays no name or label lookup.
#[derive(Clone)]
pub(crate) struct MethodMetrics {
    ok: metrics::Histogram,
    failed: metrics::Histogram,
}

impl MethodMetrics {
    /// Registers the handles of `protocol.method` with the recorder installed now.
    pub(crate) fn register(protocol: &str, method: &str) -> Self {
        let handle = |outcome: &'static str| {
            metrics::histogram!(
                "peerwire_service_call_duration_seconds",
                "protocol" => protocol.to_owned(),
                "method" => method.to_owned(),
                "outcome" => outcome
            )
        };
        Self {
            ok: handle("ok"),
            failed: handle("failed"),
        }
    }

    /// A call the router took at `started` ended with `outcome`.
    pub(crate) fn finished<T, E>(&self, outcome: &Result<T, E>, started: tokio::time::Instant) {
        let h = if outcome.is_ok() {
            &self.ok
        } else {
            &self.failed
        };
        h.record(started.elapsed().as_secs_f64());
    }
}

/// A protocol: a name, a version, and typed methods, each with its engine.
///
/// ```
/// use peerwire::service::{Protocol, Serde};
/// use peerwire::{HandlerError, Request};
///
/// let p = Protocol::new("ClientProtocol", 1)
///     .method("mkdirs", Serde, |path: String, _ctx: Request| async move {
///         Ok::<bool, HandlerError>(!path.is_empty())
///     })
///     .idempotent_method("getListing", Serde, |dir: String, _ctx: Request| async move {
///         Ok::<Vec<String>, HandlerError>(vec![format!("{dir}/a")])
///     });
/// # let _ = p;
/// ```
#[derive(Clone)]
pub struct Protocol {
    pub(crate) name: String,
    pub(crate) version: u32,
    pub(crate) methods: HashMap<String, Method>,
}

impl std::fmt::Debug for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Protocol")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("methods", &self.methods.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Protocol {
    /// An empty protocol.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
            methods: HashMap::new(),
        }
    }

    fn add<E, F, Fut, Req, Resp>(mut self, name: &str, idempotent: bool, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let method = TypedMethod::<E, F, Req, Resp> {
            handler: Arc::new(handler),
            _types: std::marker::PhantomData,
        };
        self.methods.insert(
            name.to_owned(),
            Method {
                engine: E::ID,
                idempotent,
                handler: Arc::new(method),
                stream: None,
                metrics: None,
            },
        );
        self
    }

    fn add_stream<E: EngineId>(
        mut self,
        name: &str,
        shape: Shape,
        stream: Arc<dyn ErasedStreamMethod>,
    ) -> Self {
        self.methods.insert(
            name.to_owned(),
            Method {
                engine: E::ID,
                idempotent: false,
                handler: Arc::new(StreamsOnly { shape }),
                stream: Some(stream),
                metrics: None,
            },
        );
        self
    }

    /// Adds a server-streaming method: one request in, a stream of replies out (called with
    /// [`ProtocolClient::server_streaming`](super::ProtocolClient::server_streaming)). The
    /// stream is read as the client reads, so a slow reader holds the method back.
    pub fn server_streaming<E, F, Fut, Req, Resp>(self, name: &str, engine: E, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ItemStream<Resp>, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let _ = engine;
        let method = ServerStreaming::<E, F, Req, Resp>(StreamMethod {
            handler: Arc::new(handler),
            _types: std::marker::PhantomData,
        });
        self.add_stream::<E>(name, Shape::Server, Arc::new(method))
    }

    /// Adds a client-streaming method: a stream of requests in ([`Streaming`]), one reply out
    /// (called with [`ProtocolClient::client_streaming`](super::ProtocolClient::client_streaming)).
    pub fn client_streaming<E, F, Fut, Req, Resp>(self, name: &str, engine: E, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Streaming<Req>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let _ = engine;
        let method = ClientStreaming::<E, F, Req, Resp>(StreamMethod {
            handler: Arc::new(handler),
            _types: std::marker::PhantomData,
        });
        self.add_stream::<E>(name, Shape::Client, Arc::new(method))
    }

    /// Adds a bidirectional streaming method: a stream of requests in, a stream of replies out,
    /// both moving at once (called with
    /// [`ProtocolClient::bidi_streaming`](super::ProtocolClient::bidi_streaming)).
    pub fn bidi_streaming<E, F, Fut, Req, Resp>(self, name: &str, engine: E, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Streaming<Req>, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<ItemStream<Resp>, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let _ = engine;
        let method = BidiStreaming::<E, F, Req, Resp>(StreamMethod {
            handler: Arc::new(handler),
            _types: std::marker::PhantomData,
        });
        self.add_stream::<E>(name, Shape::Bidi, Arc::new(method))
    }

    /// Adds a method that must not run twice: a retried call (same client and call id) is
    /// answered from the server's retry cache.
    pub fn method<E, F, Fut, Req, Resp>(self, name: &str, engine: E, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let _ = engine;
        self.add::<E, F, Fut, Req, Resp>(name, false, handler)
    }

    /// Adds a method that may run more than once for one logical call (reads, idempotent
    /// writes): retries simply run it again.
    pub fn idempotent_method<E, F, Fut, Req, Resp>(self, name: &str, engine: E, handler: F) -> Self
    where
        E: Engine<Req> + Engine<Resp>,
        F: Fn(Req, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, HandlerError>> + Send + 'static,
        Req: Send + 'static,
        Resp: Send + 'static,
    {
        let _ = engine;
        self.add::<E, F, Fut, Req, Resp>(name, true, handler)
    }

    /// The protocol's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The protocol's version.
    pub fn version(&self) -> u32 {
        self.version
    }
}
