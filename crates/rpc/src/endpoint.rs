//! The [`Endpoint`] trait (Spark's `RpcEndpoint`) and the contexts it is handed.

use std::future::Future;
use std::net::SocketAddr;

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::endpoint_ref::EndpointRef;
use super::env::RpcEnv;
use super::reply::ReplyContext;

/// A named actor living in an [`RpcEnv`]: it receives the messages sent to its name, one at a
/// time and in order, with `&mut self` access.
///
/// Lifecycle: `on_start` runs before any message; `on_stop` runs last, after every message
/// queued before the stop. Connection events (`on_connected`, `on_disconnected`,
/// `on_network_error`) are delivered to every endpoint of the environment, in order with its
/// messages.
///
/// Every method has a default, so an endpoint implements only what it needs. Messages are one
/// serde type per endpoint (usually an enum); a message of another type is refused with an
/// error naming the endpoint and both types.
pub trait Endpoint: Send + 'static {
    /// What this endpoint receives.
    type Message: Serialize + DeserializeOwned + Send + 'static;

    /// Runs once, before any message. `ctx.self_ref()` is this endpoint's own ref.
    fn on_start(
        &mut self,
        ctx: &EndpointContext<Self::Message>,
    ) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A one-way message (sent with [`EndpointRef::send`]). An error goes to
    /// [`Endpoint::on_error`].
    fn receive(
        &mut self,
        message: Self::Message,
        ctx: &MessageContext,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = (message, ctx);
        async {
            Err(EndpointError::new(
                "this endpoint does not accept one-way messages",
            ))
        }
    }

    /// A message that expects a reply (sent with [`EndpointRef::ask`]). Answer through `reply`,
    /// now or later from another task; returning an error fails the ask with its message (if
    /// it was not answered yet) and goes to [`Endpoint::on_error`].
    fn receive_and_reply(
        &mut self,
        message: Self::Message,
        reply: ReplyContext,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = message;
        async move {
            reply.fail("this endpoint does not answer asks");
            Ok(())
        }
    }

    /// Runs once, last.
    fn on_stop(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A connection to `remote` was established (either direction).
    fn on_connected(&mut self, remote: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = remote;
        async {}
    }

    /// The connection to `remote` closed.
    fn on_disconnected(&mut self, remote: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = remote;
        async {}
    }

    /// Messages queued for `remote` could not be delivered (for example, connecting failed).
    fn on_network_error(
        &mut self,
        error: String,
        remote: SocketAddr,
    ) -> impl Future<Output = ()> + Send {
        let _ = (error, remote);
        async {}
    }

    /// `receive` or `receive_and_reply` failed, or a message could not be decoded.
    fn on_error(&mut self, error: EndpointError) -> impl Future<Output = ()> + Send {
        tracing::warn!(%error, "endpoint error");
        async {}
    }
}

/// An endpoint's failure: sent to the asker as the failure message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EndpointError(pub String);

impl EndpointError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl From<String> for EndpointError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<&str> for EndpointError {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Default)]
pub struct MessageContext {
    pub(crate) sender: Option<SocketAddr>,
    pub(crate) remote: Option<SocketAddr>,
    pub(crate) principal: Option<peerwire::Principal>,
}

impl MessageContext {
    /// The sending environment's advertised address (`None` for a client-mode or local sender).
    pub fn sender_address(&self) -> Option<SocketAddr> {
        self.sender
    }

    /// The transport address of the connection the message arrived on (`None` if local).
    pub fn remote_address(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// Who sent the message, as far as its connection proved it (`None` if local).
    pub fn principal(&self) -> Option<&peerwire::Principal> {
        self.principal.as_ref()
    }
}

/// Handed to [`Endpoint::on_start`].
#[derive(Debug)]
pub struct EndpointContext<M> {
    pub(crate) self_ref: EndpointRef<M>,
    pub(crate) env: RpcEnv,
}

impl<M> EndpointContext<M> {
    /// This endpoint's own ref: it may send itself messages or hand the ref to others.
    pub fn self_ref(&self) -> &EndpointRef<M> {
        &self.self_ref
    }

    /// The environment the endpoint lives in.
    pub fn env(&self) -> &RpcEnv {
        &self.env
    }
}

/// An endpoint that processes messages concurrently (Spark's plain `RpcEndpoint` with
/// concurrency enabled): methods take `&self`, and up to the configured number of messages run
/// at once. `on_start` still runs before any message and `on_stop` after all of them; messages
/// are started in order but may finish in any order.
pub trait SharedEndpoint: Send + Sync + 'static {
    /// What this endpoint receives.
    type Message: Serialize + DeserializeOwned + Send + 'static;

    /// Runs once, before any message.
    fn on_start(&self, ctx: &EndpointContext<Self::Message>) -> impl Future<Output = ()> + Send {
        let _ = ctx;
        async {}
    }

    /// A one-way message.
    fn receive(
        &self,
        message: Self::Message,
        ctx: &MessageContext,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = (message, ctx);
        async {
            Err(EndpointError::new(
                "this endpoint does not accept one-way messages",
            ))
        }
    }

    /// A message that expects a reply.
    fn receive_and_reply(
        &self,
        message: Self::Message,
        reply: ReplyContext,
    ) -> impl Future<Output = Result<(), EndpointError>> + Send {
        let _ = message;
        async move {
            reply.fail("this endpoint does not answer asks");
            Ok(())
        }
    }

    /// Runs once, after every message.
    fn on_stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }

    /// A connection to `remote` was established.
    fn on_connected(&self, remote: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = remote;
        async {}
    }

    /// The connection to `remote` closed.
    fn on_disconnected(&self, remote: SocketAddr) -> impl Future<Output = ()> + Send {
        let _ = remote;
        async {}
    }

    /// Messages queued for `remote` could not be delivered.
    fn on_network_error(
        &self,
        error: String,
        remote: SocketAddr,
    ) -> impl Future<Output = ()> + Send {
        let _ = (error, remote);
        async {}
    }

    /// A message failed or could not be decoded.
    fn on_error(&self, error: EndpointError) -> impl Future<Output = ()> + Send {
        tracing::warn!(%error, "endpoint error");
        async {}
    }
}
