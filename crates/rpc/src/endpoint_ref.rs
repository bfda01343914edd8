//! [`EndpointRef`]: a handle to a named endpoint, local or remote, that can travel inside
//! messages.
//!
//! A ref serializes as its endpoint name and the advertised address of the environment that
//! hosts it. When a message carrying a ref is decoded, the ref is bound in the receiving
//! environment: to the local endpoint if the address is its own, to the remote address
//! otherwise, and — when the host has no address (a client-mode environment) — to the
//! connection the message arrived on, so the receiver can answer or call back over the
//! connection the client opened (Spark's reverse client).

use std::cell::RefCell;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::env::EnvInner;
use peerwire::connection::Connection;
use peerwire::error::Error;

/// How a ref reaches its endpoint.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// An endpoint of the ref's own environment.
    Local,
    /// An endpoint of the environment listening at this address.
    Remote(SocketAddr),
    /// An endpoint of a client-mode environment, reachable over this connection only.
    Reverse(Connection),
    /// Decoded outside any environment: unusable.
    Unbound,
}

pub(crate) struct RefInner {
    pub(crate) name: String,
    pub(crate) target: Target,
    pub(crate) env: Weak<EnvInner>,
}

/// A handle to a named endpoint. Cheap to clone; serializable (see the module docs).
pub struct EndpointRef<M> {
    pub(crate) inner: Arc<RefInner>,
    _message: PhantomData<fn(M)>,
}

impl<M> Clone for EndpointRef<M> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            _message: PhantomData,
        }
    }
}

impl<M> fmt::Debug for EndpointRef<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointRef")
            .field("name", &self.inner.name)
            .field("target", &self.inner.target)
            .finish()
    }
}

impl<M> EndpointRef<M> {
    pub(crate) fn new(name: String, target: Target, env: Weak<EnvInner>) -> Self {
        Self {
            inner: Arc::new(RefInner { name, target, env }),
            _message: PhantomData,
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The address of the environment hosting the endpoint (`None` for client-mode hosts).
    pub fn address(&self) -> Option<SocketAddr> {
        match &self.inner.target {
            Target::Local => self.inner.env.upgrade().and_then(|e| e.address()),
            Target::Remote(addr) => Some(*addr),
            Target::Reverse(_) | Target::Unbound => None,
        }
    }

    fn env(&self) -> Result<Arc<EnvInner>, Error> {
        self.inner.env.upgrade().ok_or_else(|| Error::EnvStopped {
            env: format!("(the environment of ref `{}` is gone)", self.inner.name),
        })
    }
}

impl<M: Serialize + Send + 'static> EndpointRef<M> {
    /// Sends a one-way message (at most once). `Ok` means queued: in the local inbox, on the
    /// connection, or in the outbox while connecting. A full queue or a stopped environment is
    /// an immediate error.
    pub fn send(&self, message: M) -> Result<(), Error> {
        let env = self.env()?;
        env.send(&self.inner, &message)
    }

    /// Asks and waits for the reply, up to the environment's `ask_timeout`.
    ///
    /// The ask ends in exactly one of: the reply; not executed (endpoint busy or not found,
    /// refused before sending); failed remotely (the endpoint's error); unknown (timeout or
    /// connection lost after sending).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the ask; the endpoint may still run it.
    pub async fn ask<R: DeserializeOwned>(&self, message: M) -> Result<R, Error> {
        let env = self.env()?;
        let timeout = env.cfg.ask_timeout;
        env.ask(&self.inner, &message, timeout).await
    }

    /// As [`EndpointRef::ask`], with its own timeout.
    ///
    /// # Cancel safety
    ///
    /// As [`EndpointRef::ask`].
    pub async fn ask_with_timeout<R: DeserializeOwned>(
        &self,
        message: M,
        timeout: Duration,
    ) -> Result<R, Error> {
        let env = self.env()?;
        env.ask(&self.inner, &message, timeout).await
    }
}

#[derive(Serialize, Deserialize)]
struct WireRef {
    name: String,
    address: Option<SocketAddr>,
}

impl<M> Serialize for EndpointRef<M> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WireRef {
            name: self.inner.name.clone(),
            address: self.address(),
        }
        .serialize(serializer)
    }
}

thread_local! {
    /// The environment (and connection) decoding the current message, for binding refs.
    static DECODE_CONTEXT: RefCell<Option<(Weak<EnvInner>, Option<Connection>)>> =
        const { RefCell::new(None) };
}

/// Runs `decode` with refs bound to `env` (and to `conn` for address-less hosts).
pub(crate) fn with_decode_context<T>(
    env: &Arc<EnvInner>,
    conn: Option<&Connection>,
    decode: impl FnOnce() -> T,
) -> T {
    struct Reset(Option<(Weak<EnvInner>, Option<Connection>)>);
    impl Drop for Reset {
        fn drop(&mut self) {
            let previous = self.0.take();
            DECODE_CONTEXT.with(|c| *c.borrow_mut() = previous);
        }
    }
    let previous = DECODE_CONTEXT.with(|c| c.replace(Some((Arc::downgrade(env), conn.cloned()))));
    let _reset = Reset(previous);
    decode()
}

impl<'de, M> Deserialize<'de> for EndpointRef<M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = WireRef::deserialize(deserializer)?;
        let context = DECODE_CONTEXT.with(|c| c.borrow().clone());
        let Some((env, conn)) = context else {
            return Ok(Self::new(wire.name, Target::Unbound, Weak::new()));
        };
        let own_address = env.upgrade().and_then(|e| e.address());
        let target = match (wire.address, conn) {
            (Some(addr), _) if Some(addr) == own_address => Target::Local,
            (Some(addr), _) => Target::Remote(addr),
            (None, Some(conn)) => Target::Reverse(conn),
            (None, None) => Target::Local,
        };
        Ok(Self::new(wire.name, target, env))
    }
}
