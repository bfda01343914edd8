//! Baseline: tonic (gRPC over HTTP/2) unary echo from `proto/echo.proto`, with default
//! settings, `TCP_NODELAY` on both ends and one `Channel` (one HTTP/2 connection) shared by all
//! callers.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::BoxError;
use crate::echo::{EchoCaller, EchoImpl};

/// Code generated from `proto/echo.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::use_self
)]
mod pb {
    tonic::include_proto!("echo");
}

use pb::echo_client::EchoClient;
use pb::echo_server::{Echo, EchoServer};
use pb::{EchoReply, EchoRequest};

/// Largest message either side accepts: raised from tonic's 4 MiB decoding default, as a user
/// sending large payloads would, so that the payload sweep's 8 MiB (and larger) echoes fit.
const MAX_MESSAGE: usize = crate::baseline::raw_tcp::MAX_FRAME + 4096;

/// How long stopping the server waits for its graceful shutdown.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The tonic echo implementation.
#[derive(Debug)]
pub(crate) struct Tonic;

/// A running tonic server.
#[derive(Debug)]
pub(crate) struct TonicServer {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

#[derive(Debug, Clone, Copy)]
struct EchoService;

#[tonic::async_trait]
impl Echo for EchoService {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Ok(Response::new(EchoReply {
            payload: request.into_inner().payload,
        }))
    }
}

impl EchoImpl for Tonic {
    type Server = TonicServer;
    type Client = Channel;
    type Caller = EchoClient<Channel>;

    async fn start_server() -> Result<(TonicServer, SocketAddr), BoxError> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("tonic server: bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr()?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop, stop_rx) = oneshot::channel::<()>();
        let serve = Server::builder()
            .add_service(
                EchoServer::new(EchoService)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stop_rx.await;
            });
        let task = tokio::spawn(serve);
        Ok((TonicServer { stop, task }, addr))
    }

    async fn stop_server(server: TonicServer) {
        let _ = server.stop.send(());
        let abort = server.task.abort_handle();
        match tokio::time::timeout(STOP_TIMEOUT, server.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("tonic server: {e}"),
            Ok(Err(e)) => eprintln!("tonic server task: {e}"),
            Err(_) => {
                eprintln!("tonic server: graceful shutdown took over {STOP_TIMEOUT:?}; aborted");
                abort.abort();
            }
        }
    }

    async fn connect(addr: SocketAddr) -> Result<Channel, BoxError> {
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(|e| format!("tonic client: connect {addr}: {e}"))?;
        Ok(channel)
    }

    fn caller(client: &Channel) -> EchoClient<Channel> {
        // Clones of a `Channel` share its one connection.
        EchoClient::new(client.clone())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE)
    }

    async fn close(client: Channel) {
        // The connection task ends once the last clone is gone; the client runtime's shutdown
        // reaps anything left.
        drop(client);
    }
}

impl EchoCaller for EchoClient<Channel> {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        let reply = self.echo(EchoRequest { payload }).await?;
        Ok(reply.into_inner().payload)
    }
}
