//! Reads frames from a transport stream: every frame a read delivered is decoded before the
//! next read.
//!
//! Reads count as activity for the read timeout only when they make progress: a whole frame,
//! or [`PROGRESS_BYTES`] of one. A peer that trickles a byte at a time (slowloris) keeps no
//! connection alive, while a large frame arriving over a slow link does.

use std::io;

use bytes::BytesMut;
use peerwire_wire::{Frame, FrameDecoder, GoAwayReason, Limits, WireError};
use tokio::io::AsyncReadExt;

use super::activity::Activity;
use super::read_size::ReadSize;
use crate::transport::BoxRead;

/// Bytes of an unfinished frame that count as activity: 16 KiB. At the default 5 s read
/// timeout a frame must arrive at 3.3 KB/s or faster, far below any real link and far above
/// a byte a second.
pub(crate) const PROGRESS_BYTES: usize = 16 * 1024;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed its side.
    Eof,
    /// The transport failed.
    Io(io::Error),
    /// The peer broke the protocol.
    Wire(WireError),
}

impl ReadError {
    /// The go-away reason to send for this error, if the peer can still hear one.
    pub(crate) fn goaway_reason(&self) -> Option<GoAwayReason> {
        match self {
            Self::Eof | Self::Io(_) => None,
            Self::Wire(WireError::FrameTooLarge { .. }) => Some(GoAwayReason::FrameTooLarge),
            Self::Wire(_) => Some(GoAwayReason::ProtocolError),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eof => f.write_str("connection closed by peer"),
            Self::Io(e) => write!(f, "read failed: {e}"),
            Self::Wire(e) => write!(f, "protocol error: {e}"),
        }
    }
}

/// A buffered frame reader over the read half of a transport.
pub(crate) struct FrameReader {
    io: BoxRead,
    buf: BytesMut,
    decoder: FrameDecoder,
    chunk: usize,
    /// How much room each read is offered.
    size: ReadSize,
    /// Bytes read since activity was last reported.
    unreported: usize,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("buffered", &self.buf.len())
            .field("limits", &self.decoder.limits())
            .finish()
    }
}

impl FrameReader {
    /// A reader of `io` enforcing `limits`, offering each read at most `chunk` bytes of room
    /// (less while the connection carries little; see [`ReadSize`]).
    pub(crate) fn new(io: BoxRead, limits: Limits, chunk: usize) -> Self {
        let size = ReadSize::new(chunk);
        Self {
            io,
            buf: BytesMut::with_capacity(size.next()),
            decoder: FrameDecoder::new(limits),
            chunk,
            size,
            unreported: 0,
        }
    }

    /// Puts `io` in place of the stream it reads from, keeping what is buffered, and returns
    /// the old stream.
    pub(crate) fn swap_io(&mut self, io: BoxRead) -> BoxRead {
        std::mem::replace(&mut self.io, io)
    }

    pub(crate) fn set_limits(&mut self, limits: Limits) {
        self.decoder.set_limits(limits);
    }

    /// Reads and drops everything until the peer closes or the transport fails.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub(crate) async fn discard_until_eof(&mut self) {
        loop {
            self.buf.clear();
            if self.buf.capacity() < self.chunk {
                self.buf.reserve(self.chunk);
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Returns the next frame, reading from the transport only when no whole frame is
    /// buffered.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read before cancellation stay buffered for the next call.
    pub(crate) async fn next(&mut self, activity: Option<&Activity>) -> Result<Frame, ReadError> {
        loop {
            if let Some(frame) = self
                .decoder
                .decode(&mut self.buf)
                .map_err(ReadError::Wire)?
            {
                if let Some(activity) = activity {
                    activity.touch_read();
                }
                self.unreported = 0;
                return Ok(frame);
            }
            let want = self.size.next();
            if self.buf.capacity() - self.buf.len() < want / 4 {
                self.buf.reserve(want);
            }
            let offered = self.buf.capacity() - self.buf.len();
            let n = self
                .io
                .read_buf(&mut self.buf)
                .await
                .map_err(ReadError::Io)?;
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.size.record(offered, n);
            self.unreported += n;
            if self.unreported >= PROGRESS_BYTES {
                if let Some(activity) = activity {
                    activity.touch_read();
                }
                self.unreported = 0;
            }
            metrics::counter!("peerwire_bytes_read_total").increment(n as u64);
        }
    }
}
