//! Reading a whole stream (Spark's stream request, and its chunk fetches pipelined): a
//! `futures::Stream` of chunks in order, keeping a window of fetches in flight. A new fetch
//! starts only when the reader takes a chunk, so a reader that stops reading stops the server
//! sending; the bytes in flight are bounded by window × chunk size on both sides.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use futures::stream::{FuturesOrdered, Stream, StreamExt};
use tokio_util::task::AbortOnDropHandle;

use super::client::{Chunk, PullClient};
use super::codec::StreamInfo;
use super::error::PullError;

/// How to read a stream.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// The byte to start from (resume); only 0 for a producer's stream.
    pub offset: u64,
    /// Chunk fetches in flight at most. Default 8.
    pub window: usize,
    /// Release the stream on the server once its last chunk arrived. Default true.
    pub close_at_end: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            offset: 0,
            window: 8,
            close_at_end: true,
        }
    }
}

type Fetch = Pin<Box<dyn Future<Output = Result<Chunk, PullError>> + Send>>;

/// A stream being read: yields its bytes in order, chunk by chunk, then checks its length and
/// (read from its start) its CRC32C against its [`StreamInfo`].
pub struct StreamRead {
    client: PullClient,
    addr: SocketAddr,
    info: StreamInfo,
    opts: ReadOptions,
    /// The next chunk to ask for.
    next: u64,
    /// The stream's last chunk, when its length is known.
    end: Option<u64>,
    /// Bytes of the first chunk before the offset.
    skip: usize,
    inflight: FuturesOrdered<Fetch>,
    /// CRC32C of everything received, when reading from the start.
    crc: u32,
    received: u64,
    done: bool,
}

impl std::fmt::Debug for StreamRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamRead")
            .field("info", &self.info)
            .field("next", &self.next)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl StreamRead {
    pub(crate) fn new(
        client: PullClient,
        addr: SocketAddr,
        info: StreamInfo,
        opts: ReadOptions,
    ) -> Result<Self, PullError> {
        let size = u64::from(info.chunk_size.max(1));
        if opts.offset > 0 && !(info.random_access && info.len.is_some()) {
            return Err(PullError::NotSeekable { id: info.id });
        }
        if let Some(len) = info.len
            && opts.offset > len
        {
            return Err(PullError::Mismatch {
                id: info.id,
                what: format!("offset {} is past the stream's {len} bytes", opts.offset),
            });
        }
        let end = info.chunks().map(|n| n - 1);
        let first = (opts.offset / size).min(end.unwrap_or(0));
        Ok(Self {
            client,
            addr,
            info,
            opts: ReadOptions {
                window: opts.window.max(1),
                ..opts
            },
            next: first,
            end,
            skip: usize::try_from(opts.offset - first * size).unwrap_or(0),
            inflight: FuturesOrdered::new(),
            crc: 0,
            received: 0,
            done: false,
        })
    }

    /// The description the stream was opened with.
    pub fn info(&self) -> &StreamInfo {
        &self.info
    }

    /// Starts fetches up to the window. Each runs as a task of its own, so it is on its way
    /// while the reader is busy with earlier chunks; dropping the reader aborts them.
    fn refill(&mut self) {
        while self.inflight.len() < self.opts.window && self.end.is_none_or(|end| self.next <= end)
        {
            let (client, addr, id, index) =
                (self.client.clone(), self.addr, self.info.id, self.next);
            let task =
                AbortOnDropHandle::new(tokio::spawn(
                    async move { client.chunk(addr, id, index).await },
                ));
            self.inflight.push_back(Box::pin(async move {
                task.await.unwrap_or_else(|e| {
                    Err(PullError::Protocol {
                        peer: addr,
                        message: format!("the fetch of chunk {index} failed: {e}"),
                    })
                })
            }));
            self.next += 1;
        }
    }

    /// The checks once the last chunk is in.
    fn finish(&mut self) -> Result<(), PullError> {
        self.done = true;
        self.inflight = FuturesOrdered::new();
        if self.opts.close_at_end {
            let (client, addr, id) = (self.client.clone(), self.addr, self.info.id);
            // Best effort: the stream goes with the connection or the idle timeout anyway.
            tokio::spawn(async move {
                let _ = client.close(addr, id).await;
            });
        }
        let id = self.info.id;
        if let Some(len) = self.info.len
            && self.opts.offset + self.received != len
        {
            return Err(PullError::Mismatch {
                id,
                what: format!(
                    "{} bytes from offset {}, of a stream described as {len} bytes",
                    self.received, self.opts.offset
                ),
            });
        }
        if let Some(crc) = self.info.crc32c
            && self.opts.offset == 0
            && crc != self.crc
        {
            return Err(PullError::Mismatch {
                id,
                what: format!(
                    "CRC32C {:08x} of the bytes read, described as {crc:08x}",
                    self.crc
                ),
            });
        }
        Ok(())
    }
}

impl Stream for StreamRead {
    type Item = Result<Bytes, PullError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        this.refill();
        let chunk = match this.inflight.poll_next_unpin(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                // Nothing left to fetch and no last chunk seen: the length said so.
                return Poll::Ready(this.finish().err().map(Err));
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                this.inflight = FuturesOrdered::new();
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(chunk))) => chunk,
        };
        if this.opts.offset == 0 {
            // From the chunk's own CRC32C, checked on arrival: the bytes are not read again.
            this.crc = crc32c::crc32c_combine(this.crc, chunk.crc32c, chunk.data.len());
        }
        let mut data = chunk.data;
        if this.skip > 0 {
            let skip = this.skip.min(data.len());
            data.advance(skip);
            this.skip = 0;
        }
        this.received += data.len() as u64;
        if chunk.last || this.end == Some(chunk.index) {
            if let Err(e) = this.finish() {
                return Poll::Ready(Some(Err(e)));
            }
        } else {
            this.refill();
        }
        Poll::Ready(Some(Ok(data)))
    }
}
