//! What the server runs: the [`Handler`] trait, the per-call [`Request`], and the route table.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use peerwire_wire::Status;

use crate::connection::{Connection, PeerInfo, Route};
use crate::transport::BoxFuture;

/// One call as a handler sees it.
#[derive(Debug)]
pub struct Request {
    /// Request id on its connection (0 for one-way messages).
    pub(crate) id: u64,
    pub(crate) route: Bytes,
    pub(crate) context: crate::context::Context,
    pub(crate) payload: Bytes,
    pub(crate) deadline: Option<Instant>,
    pub(crate) oneway: bool,
    pub(crate) connection: Connection,
}

impl Request {
    /// The request payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Takes the payload.
    pub fn into_payload(self) -> Bytes {
        self.payload
    }

    /// The route the call was addressed to.
    pub fn route(&self) -> &[u8] {
        &self.route
    }

    /// Who sent the call.
    pub fn peer(&self) -> &PeerInfo {
        self.connection.peer()
    }

    /// Who sent the call, as far as the connection proved it (see
    /// [`Principal`](crate::connection::Principal)).
    pub fn principal(&self) -> &crate::connection::Principal {
        self.connection.principal()
    }

    /// The context the call carried (trace context, caller context; empty if none, or if the
    /// caller's connection runs at a version before 4). See [`crate::context`].
    pub fn context(&self) -> &crate::context::Context {
        &self.context
    }

    /// The caller context: who started the work this call is part of (the `caller` entry of
    /// [`Request::context`]), as Hadoop's `CallerContext` for audit logs.
    pub fn caller_context(&self) -> Option<&str> {
        self.context.get_str(crate::context::CALLER)
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether this is a one-way message (its result is discarded).
    pub fn is_oneway(&self) -> bool {
        self.oneway
    }

    /// The connection the call arrived on: the handler may call the peer back over it.
    pub fn connection(&self) -> &Connection {
        &self.connection
    }

    /// Whether the caller has cancelled the call (it gave up: its deadline passed or its future
    /// was dropped). A handler doing long work should check, or race [`Request::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.id != 0 && self.connection.conn.cancels().is_cancelled(self.id)
    }

    /// Completes when the caller cancels the call. Never completes for one-way messages.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn cancelled(&self) {
        if self.id == 0 {
            return std::future::pending().await;
        }
        self.connection.conn.cancels().cancelled(self.id).await;
    }
}

/// A handler's failure, sent to the caller as a failure frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub(crate) status: Status,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl HandlerError {
    /// The handler ran and failed (the caller sees [`crate::Error::Remote`]).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            status: Status::HandlerFailed,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The request was malformed; nothing was done (the caller sees not-executed).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: Status::BadRequest,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The handler is overloaded and did nothing; the caller may retry after the hint.
    pub fn busy(retry_after: Option<Duration>, message: impl Into<String>) -> Self {
        Self {
            status: Status::Busy,
            message: message.into(),
            retry_after,
        }
    }

    /// The status sent to the caller.
    pub fn status(&self) -> Status {
        self.status
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(e: std::io::Error) -> Self {
        Self::new(e.to_string())
    }
}

impl From<String> for HandlerError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HandlerError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Serves calls for one route.
pub trait Handler: Send + Sync + 'static {
    /// Handles one call. For one-way messages the result is discarded.
    fn call(&self, request: Request) -> BoxFuture<'static, Result<Bytes, HandlerError>>;
}

/// A [`Handler`] made from an async closure; see [`handler_fn`].
pub struct HandlerFn<F> {
    f: F,
}

impl<F> fmt::Debug for HandlerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerFn")
    }
}

/// Makes a handler from an async closure.
///
/// ```
/// use peerwire::{handler_fn, Request};
/// let echo = handler_fn(|req: Request| async move { Ok(req.into_payload()) });
/// # let _ = echo;
/// ```
pub fn handler_fn<F, Fut>(f: F) -> HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    HandlerFn { f }
}

impl<F, Fut> Handler for HandlerFn<F>
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Bytes, HandlerError>> + Send + 'static,
{
    fn call(&self, request: Request) -> BoxFuture<'static, Result<Bytes, HandlerError>> {
        Box::pin((self.f)(request))
    }
}

/// A mounted route: its handler and its metrics' handles.
#[derive(Debug)]
pub(crate) struct RouteEntry {
    pub(crate) handler: Arc<dyn Handler>,
    pub(crate) metrics: super::route_metrics::RouteMetrics,
}

/// The route table, fixed when the server starts.
#[derive(Default)]
pub(crate) struct Routes {
    map: HashMap<Bytes, Arc<RouteEntry>>,
}

impl std::fmt::Debug for dyn Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Handler")
    }
}

impl fmt::Debug for Routes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.map.keys().map(|k| String::from_utf8_lossy(k)))
            .finish()
    }
}

impl Routes {
    pub(crate) fn insert(&mut self, route: Route, handler: Arc<dyn Handler>) {
        let metrics = super::route_metrics::RouteMetrics::register(&route.0);
        self.map
            .insert(route.0, Arc::new(RouteEntry { handler, metrics }));
    }

    pub(crate) fn get(&self, route: &[u8]) -> Option<&Arc<RouteEntry>> {
        self.map.get(route)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
