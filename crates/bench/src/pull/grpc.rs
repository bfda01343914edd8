//! The tonic baseline of the `pull` scenario: gRPC server streaming (`proto/pull.proto`) of the
//! file in chunk-sized messages, read from the file on a blocking thread as the stream is
//! polled (HTTP/2 flow control paces it), over one `Channel`.

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Request, Response, Status};

use crate::BoxError;

/// Code generated from `proto/pull.proto`.
#[allow(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    clippy::use_self
)]
mod pb {
    tonic::include_proto!("pull");
}

use pb::pull_client::PullClient;
use pb::pull_server::{Pull, PullServer};
use pb::{Chunk, ReadRequest};

/// A client of the streaming service.
pub(crate) type Client = PullClient<Channel>;

/// Largest message either side accepts: a chunk and its framing.
fn max_message(chunk: usize) -> usize {
    chunk + 4096
}

struct FileService {
    file: Arc<std::fs::File>,
    chunk: usize,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<Chunk, Status>> + Send>>;

#[tonic::async_trait]
impl Pull for FileService {
    type ReadStream = ChunkStream;

    async fn read(&self, _request: Request<ReadRequest>) -> Result<Response<ChunkStream>, Status> {
        let (file, chunk) = (self.file.clone(), self.chunk);
        let len = file
            .metadata()
            .map_err(|e| Status::internal(e.to_string()))?
            .len();
        let chunks = futures::stream::unfold(0u64, move |offset| {
            let file = file.clone();
            async move {
                if offset >= len {
                    return None;
                }
                let n = (len - offset).min(chunk as u64) as usize;
                let read = tokio::task::spawn_blocking(move || {
                    let mut buf = vec![0u8; n];
                    file.read_exact_at(&mut buf, offset).map(|()| buf)
                })
                .await;
                let item = match read {
                    Ok(Ok(buf)) => Ok(Chunk {
                        data: Bytes::from(buf),
                    }),
                    Ok(Err(e)) => Err(Status::internal(e.to_string())),
                    Err(e) => Err(Status::internal(e.to_string())),
                };
                Some((item, offset + n as u64))
            }
        });
        Ok(Response::new(Box::pin(chunks)))
    }
}

/// Starts the server on the current runtime; it serves until the runtime stops.
pub(crate) async fn server(file: Arc<std::fs::File>, chunk: usize) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let service = PullServer::new(FileService { file, chunk })
        .max_decoding_message_size(max_message(chunk))
        .max_encoding_message_size(max_message(chunk));
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming),
    );
    Ok(addr)
}

/// A client on one channel to the server at `addr`.
pub(crate) async fn client(
    addr: SocketAddr,
    chunk: usize,
) -> Result<PullClient<Channel>, BoxError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .tcp_nodelay(true)
        .connect()
        .await?;
    Ok(PullClient::new(channel)
        .max_decoding_message_size(max_message(chunk))
        .max_encoding_message_size(max_message(chunk)))
}

/// Reads the whole file; returns the bytes read.
pub(crate) async fn pull(client: &mut PullClient<Channel>) -> Result<u64, BoxError> {
    let mut stream = client
        .read(ReadRequest {
            name: "file".into(),
        })
        .await?
        .into_inner();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        total += chunk?.data.len() as u64;
    }
    Ok(total)
}
