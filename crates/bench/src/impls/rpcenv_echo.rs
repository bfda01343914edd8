//! RpcEnv asks: a server-mode environment with an `echo` endpoint, and a client-mode
//! environment asking it through an [`EndpointRef`]. Messages are typed (`bytes::Bytes`, encoded
//! by the default bincode codec), so this measures the whole endpoint path: envelope, codec,
//! dispatcher, inbox and message loop.

use std::net::SocketAddr;

use bytes::Bytes;
use peerwire_rpc::{Endpoint, EndpointError, EndpointRef, ReplyContext, RpcEnv, RpcEnvConfig};

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

/// The endpoint name.
const ENDPOINT: &str = "echo";

/// Answers every ask with the message it got.
struct Echo;

impl Endpoint for Echo {
    type Message = Bytes;

    async fn receive_and_reply(
        &mut self,
        message: Bytes,
        reply: ReplyContext,
    ) -> Result<(), EndpointError> {
        reply.reply(&message);
        Ok(())
    }
}

/// The RpcEnv echo implementation.
#[derive(Debug)]
pub(crate) struct RpcEnvEcho;

/// Asks the echo endpoint.
#[derive(Debug, Clone)]
pub(crate) struct RpcEnvCaller {
    echo: EndpointRef<Bytes>,
}

/// The client-mode environment and the verified ref.
#[derive(Debug)]
pub(crate) struct RpcEnvClient {
    env: RpcEnv,
    caller: RpcEnvCaller,
}

impl EchoImpl for RpcEnvEcho {
    type Server = RpcEnv;
    type Client = RpcEnvClient;
    type Caller = RpcEnvCaller;

    async fn start_server() -> Result<(RpcEnv, SocketAddr), BoxError> {
        let env = RpcEnv::start(RpcEnvConfig::server(
            "bench-server",
            SocketAddr::from(([127, 0, 0, 1], 0)),
        ))
        .await?;
        env.setup_endpoint(ENDPOINT, Echo)?;
        let addr = env.address().ok_or("server env has no address")?;
        Ok((env, addr))
    }

    async fn stop_server(server: RpcEnv) {
        server.shutdown().await;
    }

    async fn connect(addr: SocketAddr) -> Result<RpcEnvClient, BoxError> {
        let env = RpcEnv::start(RpcEnvConfig::client("bench-client")).await?;
        // Verifying the ref opens the connection, so the handshake is not measured.
        let echo = env.endpoint_ref::<Bytes>(addr, ENDPOINT).await?;
        Ok(RpcEnvClient {
            env,
            caller: RpcEnvCaller { echo },
        })
    }

    fn caller(client: &RpcEnvClient) -> RpcEnvCaller {
        client.caller.clone()
    }

    async fn close(client: RpcEnvClient) {
        drop(client.caller);
        client.env.shutdown().await;
    }
}

impl EchoCaller for RpcEnvCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        Ok(self.echo.ask::<Bytes>(payload).await?)
    }
}
