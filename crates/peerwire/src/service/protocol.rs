//! Protocols: a named, versioned set of typed methods served on one port beside others
//! (Hadoop's protocols registered on one `RPC.Server`).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use peerwire_wire::Status;

use super::engine::Engine;
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

/// One method of a protocol.
#[derive(Clone)]
pub(crate) struct Method {
    pub(crate) engine: u8,
    pub(crate) idempotent: bool,
    pub(crate) handler: Arc<dyn ErasedMethod>,
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
                metrics: None,
            },
        );
        self
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
