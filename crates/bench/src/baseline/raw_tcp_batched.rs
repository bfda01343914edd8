//! Baseline: the limit of plain tokio TCP for pipelined echo — the same framing as `raw-tcp`
//! (`u32` big-endian length, then the bytes), but **both sides coalesce every ready frame into
//! one write**, the way peerwire's writer does: a writer task takes the first frame, yields once
//! so that whatever else is about to be queued is, then drains its queue into one buffer and
//! writes it with one call.
//!
//! Server: per connection, a reader task splits frames off its buffer and hands each reply to
//! the connection's writer task. Client: callers hand requests to the writer task; a reader
//! task completes their oneshots in FIFO order (the echo server preserves order).

use std::io;
use std::net::SocketAddr;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::baseline::accept::AcceptLoop;
use crate::baseline::raw_tcp::{BUF_SIZE, MAX_FRAME, fill, join_client_tasks, take_frame};
use crate::echo::{EchoCaller, EchoImpl};

/// Requests (client) or replies (server) queued for a writer task.
const QUEUE: usize = 4096;

/// The batched raw TCP echo implementation.
#[derive(Debug)]
pub(crate) struct RawTcpBatched;

/// A client: one connection, its writer and reader tasks.
#[derive(Debug)]
pub(crate) struct BatchedClient {
    caller: BatchedCaller,
    writer: JoinHandle<io::Result<()>>,
    reader: JoinHandle<io::Result<()>>,
}

/// Queues calls for the client's writer task.
#[derive(Debug, Clone)]
pub(crate) struct BatchedCaller {
    calls: mpsc::Sender<(Bytes, oneshot::Sender<Bytes>)>,
}

impl EchoImpl for RawTcpBatched {
    type Server = AcceptLoop;
    type Client = BatchedClient;
    type Caller = BatchedCaller;

    async fn start_server() -> Result<(AcceptLoop, SocketAddr), BoxError> {
        AcceptLoop::bind("raw-tcp-batched", |stream| async move {
            if let Err(e) = serve_connection(stream).await {
                eprintln!("raw-tcp-batched server: connection: {e}");
            }
        })
        .await
    }

    async fn stop_server(server: AcceptLoop) {
        server.stop().await;
    }

    async fn connect(addr: SocketAddr) -> Result<BatchedClient, BoxError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("raw-tcp-batched client: connect {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (calls, calls_rx) = mpsc::channel(QUEUE);
        let (pending, pending_rx) = mpsc::unbounded_channel();
        Ok(BatchedClient {
            caller: BatchedCaller { calls },
            writer: tokio::spawn(client_writer(write, calls_rx, pending)),
            reader: tokio::spawn(client_reader(read, pending_rx)),
        })
    }

    fn caller(client: &BatchedClient) -> BatchedCaller {
        client.caller.clone()
    }

    async fn close(client: BatchedClient) {
        let BatchedClient {
            caller,
            writer,
            reader,
        } = client;
        // The writer ends (and sends FIN) once every sender is gone; the server then closes its
        // side and the reader sees EOF.
        drop(caller);
        join_client_tasks("raw-tcp-batched", writer, reader).await;
    }
}

impl EchoCaller for BatchedCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        let (reply, reply_rx) = oneshot::channel();
        self.calls
            .send((payload, reply))
            .await
            .map_err(|_| "raw-tcp-batched client: the connection's writer has stopped")?;
        reply_rx.await.map_err(|_| {
            "raw-tcp-batched client: connection closed before the reply arrived".into()
        })
    }
}

/// Appends one frame (length, then payload) to `out`.
fn put_frame(out: &mut BytesMut, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame of {} bytes exceeds the limit", payload.len()),
            )
        })?;
    out.reserve(4 + payload.len());
    out.put_u32(len);
    out.put_slice(payload);
    Ok(())
}

/// Takes the first item, yields once, then drains everything queued with it: the batch one
/// write carries. `None` once the queue is closed and empty.
async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, batch: &mut Vec<T>) -> Option<()> {
    batch.push(rx.recv().await?);
    tokio::task::yield_now().await;
    while let Ok(item) = rx.try_recv() {
        batch.push(item);
    }
    Some(())
}

/// Server side of one connection: a reader splitting requests, a writer batching replies.
async fn serve_connection(stream: TcpStream) -> io::Result<()> {
    let (mut read, write) = stream.into_split();
    let (replies, replies_rx) = mpsc::channel::<BytesMut>(QUEUE);
    let writer = tokio::spawn(server_writer(write, replies_rx));
    let mut buf = BytesMut::with_capacity(BUF_SIZE);
    let read_result = async {
        loop {
            while let Some(frame) = take_frame(&mut buf)? {
                if replies.send(frame).await.is_err() {
                    return Err(io::Error::new(
                        io::ErrorKind::BrokenPipe,
                        "the connection's writer stopped",
                    ));
                }
            }
            if fill(&mut read, &mut buf).await? == 0 {
                return Ok(());
            }
        }
    }
    .await;
    drop(replies);
    let write_result = writer
        .await
        .map_err(|e| io::Error::other(format!("writer task: {e}")))?;
    read_result.and(write_result)
}

async fn server_writer(
    mut write: OwnedWriteHalf,
    mut replies: mpsc::Receiver<BytesMut>,
) -> io::Result<()> {
    let mut batch = Vec::new();
    let mut out = BytesMut::with_capacity(BUF_SIZE);
    while next_batch(&mut replies, &mut batch).await.is_some() {
        for reply in batch.drain(..) {
            put_frame(&mut out, &reply)?;
        }
        write.write_all(&out).await?;
        out.clear();
    }
    write.shutdown().await
}

/// Client writer: batches queued calls into one write each.
async fn client_writer(
    mut write: OwnedWriteHalf,
    mut calls: mpsc::Receiver<(Bytes, oneshot::Sender<Bytes>)>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Bytes>>,
) -> io::Result<()> {
    let mut batch = Vec::new();
    let mut out = BytesMut::with_capacity(BUF_SIZE);
    while next_batch(&mut calls, &mut batch).await.is_some() {
        for (payload, reply) in batch.drain(..) {
            // Register the reply slot before the request can possibly be answered.
            pending
                .send(reply)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader has stopped"))?;
            put_frame(&mut out, &payload)?;
        }
        write.write_all(&out).await?;
        out.clear();
    }
    write.shutdown().await
}

/// Client reader: hands each reply to the oldest outstanding call.
async fn client_reader(
    mut read: OwnedReadHalf,
    mut pending: mpsc::UnboundedReceiver<oneshot::Sender<Bytes>>,
) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(BUF_SIZE);
    loop {
        while let Some(frame) = take_frame(&mut buf)? {
            let Some(reply) = pending.recv().await else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "reply without an outstanding request",
                ));
            };
            // The caller may have given up; nothing to do then.
            let _ = reply.send(frame.freeze());
        }
        if fill(&mut read, &mut buf).await? == 0 {
            return Ok(());
        }
    }
}
