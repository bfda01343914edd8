//! The typed-service echo defined once with `#[peerwire::protocol]`: the same protocol
//! (`Echo` version 1, an idempotent `echo` taking and returning `Bytes` through the serde
//! engine) as `service_echo.rs`, with the server side and the client the macro generates, so
//! a run shows what the macro costs beside the hand-written path.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use peerwire::HandlerError;

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

/// The echo protocol.
#[peerwire::protocol(name = "Echo", version = 1)]
pub(crate) trait Echo {
    /// Returns the payload.
    #[idempotent]
    async fn echo(&self, payload: Bytes) -> Result<Bytes, HandlerError>;
}

struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, payload: Bytes) -> Result<Bytes, HandlerError> {
        Ok(payload)
    }
}

/// The macro-defined echo implementation.
#[derive(Debug)]
pub(crate) struct MacroEcho;

/// Calls `echo` through the generated client.
#[derive(Debug, Clone)]
pub(crate) struct MacroCaller {
    rpc: EchoClient,
    addr: SocketAddr,
}

/// The client and its caller.
#[derive(Debug)]
pub(crate) struct MacroClient {
    client: peerwire::Client,
    caller: MacroCaller,
}

impl EchoImpl for MacroEcho {
    type Server = peerwire::Server;
    type Client = MacroClient;
    type Caller = MacroCaller;

    async fn start_server() -> Result<(peerwire::Server, SocketAddr), BoxError> {
        let server = peerwire::Server::builder(peerwire::ServerConfig::default())
            .protocol(echo_protocol(Arc::new(Echoer)))
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("peerwire macro server: bind 127.0.0.1:0: {e}"))?;
        let addr = server.local_addr();
        Ok((server, addr))
    }

    async fn stop_server(server: peerwire::Server) {
        server.shutdown().await;
    }

    async fn connect(addr: SocketAddr) -> Result<MacroClient, BoxError> {
        let client = peerwire::Client::new(peerwire::ClientConfig::default());
        let mut caller = MacroCaller {
            rpc: EchoClient::new(client.clone()),
            addr,
        };
        // Connections are lazy: make one call so the handshake is not measured.
        caller
            .call(Bytes::from_static(b"connect"))
            .await
            .map_err(|e| format!("peerwire macro client: first call to {addr}: {e}"))?;
        Ok(MacroClient { client, caller })
    }

    fn caller(client: &MacroClient) -> MacroCaller {
        client.caller.clone()
    }

    async fn close(client: MacroClient) {
        client.client.shutdown().await;
    }
}

impl EchoCaller for MacroCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(self.rpc.echo(self.addr, &payload).await?)
    }
}
