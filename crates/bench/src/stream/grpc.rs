//! The tonic baseline of the `stream` scenario: gRPC server streaming of `proto/stream.proto`
//! items over one `Channel` (HTTP/2 flow control paces it).

use std::net::SocketAddr;
use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::BoxError;

/// Code generated from `proto/stream.proto` (the peerwire side uses its messages too).
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::use_self
)]
pub(crate) mod pb {
    tonic::include_proto!("stream");
}

use pb::items_client::ItemsClient;
use pb::items_server::{Items, ItemsServer};
use pb::{Item, StreamRequest};

/// A client of the streaming service.
pub(crate) type Client = ItemsClient<Channel>;

struct Service;

type ItemStream = Pin<Box<dyn Stream<Item = Result<Item, Status>> + Send>>;

#[tonic::async_trait]
impl Items for Service {
    type StreamStream = ItemStream;

    async fn stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<ItemStream>, Status> {
        let req = request.into_inner();
        let data = Bytes::from(vec![7u8; req.size as usize]);
        let items =
            futures::stream::iter(0..req.count).map(move |_| Ok(Item { data: data.clone() }));
        Ok(Response::new(Box::pin(items)))
    }
}

/// Starts the server on the current runtime; it serves until the runtime stops.
pub(crate) async fn server() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(
        Server::builder()
            .add_service(ItemsServer::new(Service))
            .serve_with_incoming(incoming),
    );
    Ok(addr)
}

/// A client on one channel to the server at `addr`.
pub(crate) async fn client(addr: SocketAddr) -> Result<Client, BoxError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(ItemsClient::new(channel))
}

/// Reads one stream of `count` items of `size` bytes; the items received.
pub(crate) async fn read(client: &mut Client, count: u64, size: u32) -> Result<u64, BoxError> {
    let mut stream = client
        .stream(StreamRequest { count, size })
        .await?
        .into_inner();
    let mut n = 0u64;
    while let Some(item) = stream.next().await {
        item?;
        n += 1;
    }
    Ok(n)
}
