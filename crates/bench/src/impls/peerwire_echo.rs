//! The implementation under test: a peerwire server with an `echo` route and a
//! `peerwire::Client` (one connection per peer by default) shared by all callers.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

/// The route the echo handler is registered under.
const ROUTE: &str = "echo";

/// The peerwire echo implementation.
#[derive(Debug)]
pub(crate) struct Peerwire;

/// Calls the echo route of one server through a shared client.
#[derive(Debug, Clone)]
pub(crate) struct PeerwireCaller {
    client: peerwire::Client,
    addr: SocketAddr,
}

/// A client and the server address it calls.
#[derive(Debug)]
pub(crate) struct PeerwireClient {
    caller: PeerwireCaller,
}

impl EchoImpl for Peerwire {
    type Server = peerwire::Server;
    type Client = PeerwireClient;
    type Caller = PeerwireCaller;

    async fn start_server() -> Result<(peerwire::Server, SocketAddr), BoxError> {
        let server = peerwire::Server::builder(peerwire::ServerConfig::default())
            .route(
                ROUTE,
                peerwire::handler_fn(
                    |req: peerwire::Request| async move { Ok(req.into_payload()) },
                ),
            )
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| format!("peerwire server: bind 127.0.0.1:0: {e}"))?;
        let addr = server.local_addr();
        Ok((server, addr))
    }

    async fn stop_server(server: peerwire::Server) {
        server.shutdown().await;
    }

    async fn connect(addr: SocketAddr) -> Result<PeerwireClient, BoxError> {
        let mut caller = PeerwireCaller {
            client: peerwire::Client::new(peerwire::ClientConfig::default()),
            addr,
        };
        // Connections are lazy: make one call so the handshake is not measured.
        caller
            .call(Bytes::from_static(b"connect"))
            .await
            .map_err(|e| format!("peerwire client: first call to {addr}: {e}"))?;
        Ok(PeerwireClient { caller })
    }

    fn caller(client: &PeerwireClient) -> PeerwireCaller {
        client.caller.clone()
    }

    async fn close(client: PeerwireClient) {
        client.caller.client.shutdown().await;
    }
}

impl EchoCaller for PeerwireCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(self.client.call(self.addr, ROUTE, payload).await?)
    }
}
