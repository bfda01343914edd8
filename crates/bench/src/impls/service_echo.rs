//! The implementation under test: a typed protocol (`Echo` version 1) whose `echo` method takes
//! and returns `Bytes` through the serde engine, called with a [`ProtocolClient`] — the full
//! typed-service path (service envelope, protocol and method lookup, engine encode/decode) on
//! top of the raw peerwire call path. With `CACHED`, the method is not idempotent, so every
//! call also goes through the server's retry cache.

use std::net::SocketAddr;

use bytes::Bytes;
use peerwire::service::{Protocol, ProtocolClient, Serde};

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

const PROTOCOL: &str = "Echo";
const METHOD: &str = "echo";

/// The typed-service echo implementation; `CACHED` routes calls through the retry cache.
#[derive(Debug)]
pub(crate) struct ServiceEcho<const CACHED: bool>;

/// Calls `Echo.echo` on one server.
#[derive(Debug, Clone)]
pub(crate) struct ServiceCaller {
    rpc: ProtocolClient,
    addr: SocketAddr,
}

/// The client, its typed stub and the server address.
#[derive(Debug)]
pub(crate) struct ServiceClient {
    client: peerwire::Client,
    caller: ServiceCaller,
}

impl<const CACHED: bool> EchoImpl for ServiceEcho<CACHED> {
    type Server = peerwire::Server;
    type Client = ServiceClient;
    type Caller = ServiceCaller;

    async fn start_server() -> Result<(peerwire::Server, SocketAddr), BoxError> {
        let echo = |payload: Bytes, _ctx: peerwire::Request| async move {
            Ok::<Bytes, peerwire::HandlerError>(payload)
        };
        let protocol = if CACHED {
            Protocol::new(PROTOCOL, 1).method(METHOD, Serde, echo)
        } else {
            Protocol::new(PROTOCOL, 1).idempotent_method(METHOD, Serde, echo)
        };
        let server = peerwire::Server::builder(peerwire::ServerConfig::default())
            .protocol(protocol)
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("peerwire service server: bind 127.0.0.1:0: {e}"))?;
        let addr = server.local_addr();
        Ok((server, addr))
    }

    async fn stop_server(server: peerwire::Server) {
        server.shutdown().await;
    }

    async fn connect(addr: SocketAddr) -> Result<ServiceClient, BoxError> {
        let client = peerwire::Client::new(peerwire::ClientConfig::default());
        let mut caller = ServiceCaller {
            rpc: ProtocolClient::new(client.clone(), PROTOCOL, 1),
            addr,
        };
        // Connections are lazy: make one call so the handshake is not measured.
        caller
            .call(Bytes::from_static(b"connect"))
            .await
            .map_err(|e| format!("peerwire service client: first call to {addr}: {e}"))?;
        Ok(ServiceClient { client, caller })
    }

    fn caller(client: &ServiceClient) -> ServiceCaller {
        client.caller.clone()
    }

    async fn close(client: ServiceClient) {
        client.client.shutdown().await;
    }
}

impl EchoCaller for ServiceCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(self.rpc.call(self.addr, METHOD, Serde, &payload).await?)
    }
}
