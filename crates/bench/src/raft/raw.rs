//! The raw-TCP baselines of the `raft` scenario: the same bytes over plain buffered tokio TCP.
//!
//! - append: the leader writes each append message's encoded bytes behind a 4-byte length on
//!   one connection per follower, through a `BufWriter` flushed whenever its window is
//!   exhausted; the follower reads each message whole and answers an 8-byte ack, flushed when
//!   its read buffer runs dry. The window works as the peerwire leader's does. With a
//!   [`Feed`], the raft stand-in first builds (and then drops) the same raft-rs message the
//!   peerwire leader is handed, so both pay raft's share of the work and the ratio between
//!   them is the transport's; without one, the link writes the bytes alone.
//! - snapshot: the data written in 256 KiB slices behind its length; the receiver reads and
//!   discards it and answers one byte.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::BoxError;

/// A follower for the append baseline: reads messages and acks each.
pub(crate) async fn append_follower() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let (r, w) = stream.into_split();
                let mut r = BufReader::with_capacity(256 * 1024, r);
                let mut w = BufWriter::new(w);
                let mut body = Vec::new();
                loop {
                    let Ok(len) = r.read_u32_le().await else {
                        return;
                    };
                    body.resize(len as usize, 0);
                    if r.read_exact(&mut body).await.is_err()
                        || w.write_u64_le(len as u64).await.is_err()
                    {
                        return;
                    }
                    if r.buffer().is_empty() && w.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// What the raft stand-in builds for every message of a fed append link: the message
/// `cluster::append(to, index, entries, data)`, as for the peerwire leader.
pub(crate) struct Feed {
    pub(crate) to: u64,
    pub(crate) entries: usize,
    pub(crate) data: Bytes,
}

impl Feed {
    /// Builds the next message as raft would and drops it: raw TCP writes the same message's
    /// bytes, already encoded.
    fn next(&self, index: &mut u64) {
        std::hint::black_box(super::cluster::append(
            self.to,
            *index,
            self.entries,
            &self.data,
        ));
        *index += self.entries as u64;
    }
}

/// The leader's end of one append connection.
pub(crate) struct AppendLink {
    pub(crate) acked: Arc<AtomicU64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for AppendLink {
    /// Stops both tasks, closing the connection.
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl AppendLink {
    /// Connects and keeps `window` messages of `message` in flight until the runtime stops;
    /// with a `feed`, each message is first built by the raft stand-in.
    pub(crate) async fn start(
        addr: SocketAddr,
        message: Bytes,
        window: usize,
        feed: Option<Feed>,
    ) -> Result<Self, BoxError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        let permits = Arc::new(Semaphore::new(window));
        let acked = Arc::new(AtomicU64::new(0));
        let (p, a) = (permits.clone(), acked.clone());
        let reader = tokio::spawn(async move {
            let mut r = BufReader::new(r);
            while r.read_u64_le().await.is_ok() {
                a.fetch_add(1, Ordering::Relaxed);
                p.add_permits(1);
            }
        });
        let writer = tokio::spawn(async move {
            let mut w = BufWriter::with_capacity(256 * 1024, w);
            let len = (message.len() as u32).to_le_bytes();
            let mut index = 0u64;
            loop {
                match permits.try_acquire() {
                    Ok(p) => p.forget(),
                    Err(_) => {
                        if w.flush().await.is_err() {
                            return;
                        }
                        match permits.acquire().await {
                            Ok(p) => p.forget(),
                            Err(_) => return,
                        }
                    }
                }
                if let Some(feed) = &feed {
                    feed.next(&mut index);
                }
                if w.write_all(&len).await.is_err() || w.write_all(&message).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self {
            acked,
            tasks: [reader, writer],
        })
    }
}

/// A receiver for the snapshot baseline: reads `[u64 size][data]`, discards, answers a byte.
pub(crate) async fn snapshot_receiver() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let Ok(size) = stream.read_u64_le().await else {
                        return;
                    };
                    let mut left = size;
                    while left > 0 {
                        let want = buf.len().min(left as usize);
                        match stream.read(&mut buf[..want]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left -= n as u64,
                        }
                    }
                    if stream.write_u8(1).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(addr)
}

/// Sends `data` once on `stream` and waits for the receiver's answer.
pub(crate) async fn send_snapshot(stream: &mut TcpStream, data: &Bytes) -> Result<(), BoxError> {
    stream.write_u64_le(data.len() as u64).await?;
    for slice in data.chunks(256 * 1024) {
        stream.write_all(slice).await?;
    }
    stream.read_u8().await?;
    Ok(())
}
