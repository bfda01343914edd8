//! The unary echo contract every implementation under test provides (a server that returns the
//! request bytes, a client over one connection), and the harness worker that drives it and
//! checks each reply.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::BoxError;
use crate::harness::Worker;

/// An echo server plus a client for it, as one implementation under test.
///
/// The benchmark calls these in order: [`start_server`](Self::start_server) on the server
/// runtime; [`connect`](Self::connect), then [`caller`](Self::caller) once per in-flight slot,
/// then [`close`](Self::close) on the client runtime; finally
/// [`stop_server`](Self::stop_server) on the server runtime.
pub(crate) trait EchoImpl {
    /// A running server.
    type Server: Send + 'static;
    /// A client with its one connection to the server.
    type Client: Send + 'static;
    /// A handle that issues calls on the client's connection; one per in-flight slot.
    type Caller: EchoCaller;

    /// Binds `127.0.0.1:0` and starts serving; returns the server and its address.
    fn start_server() -> impl Future<Output = Result<(Self::Server, SocketAddr), BoxError>> + Send;

    /// Stops accepting, closes connections and waits for the server's tasks to end.
    fn stop_server(server: Self::Server) -> impl Future<Output = ()> + Send;

    /// Opens the client's connection to `addr` (eagerly, so the handshake is not measured).
    fn connect(addr: SocketAddr) -> impl Future<Output = Result<Self::Client, BoxError>> + Send;

    /// A caller sharing `client`'s connection.
    fn caller(client: &Self::Client) -> Self::Caller;

    /// Closes the connection and waits for the client's background tasks to end. All callers
    /// have been dropped by then.
    fn close(client: Self::Client) -> impl Future<Output = ()> + Send;
}

/// Issues echo calls.
pub(crate) trait EchoCaller: Send + 'static {
    /// Sends `payload`, returns the reply's bytes.
    fn call(&mut self, payload: Bytes) -> impl Future<Output = Result<Bytes, BoxError>> + Send;
}

/// A harness worker: echoes `payload` and checks that the reply has the same length.
#[derive(Debug)]
pub(crate) struct EchoWorker<C> {
    caller: C,
    payload: Bytes,
}

impl<C: EchoCaller> EchoWorker<C> {
    /// A worker sending `payload` through `caller`.
    pub(crate) fn new(caller: C, payload: Bytes) -> Self {
        Self { caller, payload }
    }
}

impl<C: EchoCaller> Worker for EchoWorker<C> {
    async fn op(&mut self) -> Result<(), BoxError> {
        let reply = self.caller.call(self.payload.clone()).await?;
        if reply.len() != self.payload.len() {
            return Err(format!(
                "echo reply has {} bytes but the request had {}: the implementation under test \
                 is broken",
                reply.len(),
                self.payload.len()
            )
            .into());
        }
        Ok(())
    }
}
