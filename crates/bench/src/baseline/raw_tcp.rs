//! Baseline: hand-written tokio TCP echo with length-prefixed frames (`u32` big-endian length,
//! then the bytes), pipelined over one connection.
//!
//! Server: per connection, read into a buffer, echo every complete frame into a buffered writer,
//! flush once no complete frame is left in the buffer (so pipelined requests are answered in
//! one write), read again. Client: a writer task fed by a channel writes every queued request,
//! then flushes; a reader task completes the callers' oneshots in FIFO order (the echo server
//! preserves order).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::BoxError;
use crate::baseline::accept::AcceptLoop;
use crate::echo::{EchoCaller, EchoImpl};

/// Largest frame either side accepts.
pub(crate) const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Read and write buffer size.
pub(crate) const BUF_SIZE: usize = 64 * 1024;
/// Smallest free space a read is attempted with.
const MIN_READ: usize = 8 * 1024;
/// Requests queued for the client's writer task.
const QUEUE: usize = 1024;
/// How long closing the client waits for its tasks.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The raw TCP echo implementation.
#[derive(Debug)]
pub(crate) struct RawTcp;

/// A raw TCP client: one connection, its writer and reader tasks.
#[derive(Debug)]
pub(crate) struct RawTcpClient {
    caller: RawTcpCaller,
    writer: JoinHandle<io::Result<()>>,
    reader: JoinHandle<io::Result<()>>,
}

/// Queues calls for the client's writer task.
#[derive(Debug, Clone)]
pub(crate) struct RawTcpCaller {
    calls: mpsc::Sender<Call>,
}

#[derive(Debug)]
struct Call {
    payload: Bytes,
    reply: oneshot::Sender<Bytes>,
}

impl EchoImpl for RawTcp {
    type Server = AcceptLoop;
    type Client = RawTcpClient;
    type Caller = RawTcpCaller;

    async fn start_server() -> Result<(AcceptLoop, SocketAddr), BoxError> {
        AcceptLoop::bind("raw-tcp", |stream| async move {
            if let Err(e) = serve_connection(stream).await {
                eprintln!("raw-tcp server: connection: {e}");
            }
        })
        .await
    }

    async fn stop_server(server: AcceptLoop) {
        server.stop().await;
    }

    async fn connect(addr: SocketAddr) -> Result<RawTcpClient, BoxError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("raw-tcp client: connect {addr}: {e}"))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let (calls, calls_rx) = mpsc::channel(QUEUE);
        let (pending, pending_rx) = mpsc::unbounded_channel();
        Ok(RawTcpClient {
            caller: RawTcpCaller { calls },
            writer: tokio::spawn(write_loop(write, calls_rx, pending)),
            reader: tokio::spawn(read_loop(read, pending_rx)),
        })
    }

    fn caller(client: &RawTcpClient) -> RawTcpCaller {
        client.caller.clone()
    }

    async fn close(client: RawTcpClient) {
        let RawTcpClient {
            caller,
            writer,
            reader,
        } = client;
        // The writer ends (and sends FIN) once every sender is gone; the server then closes its
        // side and the reader sees EOF.
        drop(caller);
        join_client_tasks("raw-tcp", writer, reader).await;
    }
}

/// Waits for a client's writer and reader tasks to end (the writer first: it sends FIN once
/// its callers are gone), each for at most [`CLOSE_TIMEOUT`], reporting failures under `impl_name`
/// and aborting a task that does not finish.
pub(crate) async fn join_client_tasks(
    impl_name: &str,
    writer: JoinHandle<io::Result<()>>,
    reader: JoinHandle<io::Result<()>>,
) {
    for (name, task) in [("writer", writer), ("reader", reader)] {
        let abort = task.abort_handle();
        match tokio::time::timeout(CLOSE_TIMEOUT, task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("{impl_name} client: {name}: {e}"),
            Ok(Err(e)) => eprintln!("{impl_name} client: {name} task: {e}"),
            Err(_) => {
                eprintln!("{impl_name} client: {name} did not finish in {CLOSE_TIMEOUT:?}");
                abort.abort();
            }
        }
    }
}

impl EchoCaller for RawTcpCaller {
    async fn call(&mut self, payload: Bytes) -> Result<Bytes, BoxError> {
        let (reply, reply_rx) = oneshot::channel();
        self.calls
            .send(Call { payload, reply })
            .await
            .map_err(|_| "raw-tcp client: the connection's writer has stopped")?;
        reply_rx
            .await
            .map_err(|_| "raw-tcp client: connection closed before the reply arrived".into())
    }
}

/// Server side of one connection.
async fn serve_connection(stream: TcpStream) -> io::Result<()> {
    let (mut read, write) = stream.into_split();
    let mut write = BufWriter::with_capacity(BUF_SIZE, write);
    let mut buf = BytesMut::with_capacity(BUF_SIZE);
    loop {
        let mut wrote = false;
        while let Some(frame) = take_frame(&mut buf)? {
            write_frame(&mut write, &frame).await?;
            wrote = true;
        }
        if wrote {
            write.flush().await?;
        }
        if fill(&mut read, &mut buf).await? == 0 {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed in the middle of a frame",
                ))
            };
        }
    }
}

/// Client writer: writes every queued call, flushes when the queue is empty.
async fn write_loop(
    write: OwnedWriteHalf,
    mut calls: mpsc::Receiver<Call>,
    pending: mpsc::UnboundedSender<oneshot::Sender<Bytes>>,
) -> io::Result<()> {
    let mut write = BufWriter::with_capacity(BUF_SIZE, write);
    while let Some(mut call) = calls.recv().await {
        loop {
            // Register the reply slot before the request can possibly be answered.
            pending
                .send(call.reply)
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "reader has stopped"))?;
            write_frame(&mut write, &call.payload).await?;
            match calls.try_recv() {
                Ok(next) => call = next,
                Err(_) => break,
            }
        }
        write.flush().await?;
    }
    write.shutdown().await
}

/// Client reader: hands each reply to the oldest outstanding call.
async fn read_loop(
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

async fn write_frame(write: &mut BufWriter<OwnedWriteHalf>, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&len| len as usize <= MAX_FRAME)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "frame of {} bytes exceeds the {MAX_FRAME}-byte limit",
                    payload.len()
                ),
            )
        })?;
    write.write_all(&len.to_be_bytes()).await?;
    write.write_all(payload).await
}

/// Reads more bytes into `buf`, first making room for at least [`MIN_READ`] of them. Returns
/// the number read, 0 at EOF.
pub(crate) async fn fill(read: &mut OwnedReadHalf, buf: &mut BytesMut) -> io::Result<usize> {
    if buf.capacity() - buf.len() < MIN_READ {
        buf.reserve(BUF_SIZE);
    }
    read.read_buf(buf).await
}

/// Splits one complete frame's payload off the front of `buf`, or reserves room for the rest of
/// it and returns `None`.
pub(crate) fn take_frame(buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME}-byte limit"),
        ));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_frame_waits_for_whole_frames() {
        let mut buf = BytesMut::new();
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[0, 0, 0, 3, b'a', b'b']);
        assert!(take_frame(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[b'c', 0, 0, 0, 0]);
        assert_eq!(&take_frame(&mut buf).unwrap().unwrap()[..], b"abc");
        assert_eq!(&take_frame(&mut buf).unwrap().unwrap()[..], b"");
        assert!(buf.is_empty());
    }

    #[test]
    fn take_frame_rejects_oversized_lengths() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert!(take_frame(&mut buf).is_err());
    }
}
