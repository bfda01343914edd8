//! Baseline: tarpc echo service over tarpc's serde transport (length-delimited frames, bincode)
//! on TCP with `TCP_NODELAY`, default client and server configs, one client (one connection)
//! shared by all callers; the server spawns each request, as tarpc's examples do.

use std::fmt;
use std::net::SocketAddr;

use bytes::Bytes;
use futures::StreamExt;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use tarpc::client;
use tarpc::context::{self, Context};
use tarpc::serde_transport::Transport;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tokio::net::TcpStream;

use crate::BoxError;
use crate::baseline::accept::AcceptLoop;
use crate::echo::{EchoCaller, EchoImpl};

/// The echo service definition.
#[allow(missing_docs, missing_debug_implementations, unreachable_pub)]
mod service {
    use super::Payload;

    /// Echoes the payload back.
    #[tarpc::service]
    pub(crate) trait Echo {
        /// Returns `payload` unchanged.
        async fn echo(payload: Payload) -> Payload;
    }
}

use service::{Echo, EchoClient};

/// Request and reply bytes. Serialized as one serde byte string (bincode: a length and the
/// bytes), not as a sequence of `u8`s as a plain `Vec<u8>` would be.
#[derive(Debug, Clone)]
pub(crate) struct Payload(pub(crate) Bytes);

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PayloadVisitor;

        impl<'de> Visitor<'de> for PayloadVisitor {
            type Value = Payload;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }

            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload(Bytes::copy_from_slice(v)))
            }

            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Payload, E> {
                Ok(Payload(Bytes::from(v)))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Payload, A::Error> {
                let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(byte) = seq.next_element::<u8>()? {
                    bytes.push(byte);
                }
                Ok(Payload(Bytes::from(bytes)))
            }
        }

        deserializer.deserialize_byte_buf(PayloadVisitor)
    }
}

/// Largest tarpc frame: raised from tokio-util's 8 MiB default, as a user sending large
/// payloads would, so that the payload sweep's 8 MiB (and larger) echoes fit.
const MAX_FRAME: usize = crate::baseline::raw_tcp::MAX_FRAME + 4096;

/// tarpc's bincode transport over `stream`, with frames up to [`MAX_FRAME`].
fn transport<Item, SinkItem>(
    stream: TcpStream,
) -> Transport<TcpStream, Item, SinkItem, Bincode<Item, SinkItem>>
where
    Item: for<'de> Deserialize<'de>,
    SinkItem: Serialize,
{
    let framed = tarpc::tokio_util::codec::Framed::new(
        stream,
        tarpc::tokio_util::codec::LengthDelimitedCodec::builder()
            .max_frame_length(MAX_FRAME)
            .new_codec(),
    );
    tarpc::serde_transport::new(framed, Bincode::default())
}

/// The tarpc echo implementation.
#[derive(Debug)]
pub(crate) struct Tarpc;

#[derive(Debug, Clone, Copy)]
struct EchoServer;

impl Echo for EchoServer {
    async fn echo(self, _: Context, payload: Payload) -> Payload {
        payload
    }
}

impl EchoImpl for Tarpc {
    type Server = AcceptLoop;
    type Client = EchoClient;
    type Caller = EchoClient;

    async fn start_server() -> Result<(AcceptLoop, SocketAddr), BoxError> {
        AcceptLoop::bind("tarpc", |stream| {
            let transport = transport(stream);
            BaseChannel::with_defaults(transport)
                .execute(EchoServer.serve())
                .for_each(|response| async move {
                    tokio::spawn(response);
                })
        })
        .await
    }

    async fn stop_server(server: AcceptLoop) {
        server.stop().await;
    }

    async fn connect(addr: SocketAddr) -> Result<EchoClient, BoxError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("tarpc client: connect {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        Ok(EchoClient::new(client::Config::default(), transport(stream)).spawn())
    }

    fn caller(client: &EchoClient) -> EchoClient {
        // Clones share the client's one connection (and dispatch task).
        client.clone()
    }

    async fn close(client: EchoClient) {
        // The dispatch task closes the connection once the last clone is gone; the client
        // runtime's shutdown reaps anything left.
        drop(client);
    }
}

impl EchoCaller for EchoClient {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        let reply = self.echo(context::current(), Payload(payload)).await?;
        Ok(reply.0)
    }
}
