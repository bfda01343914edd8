//! Reads frames from a transport stream: every frame a read delivered is decoded before the
//! next read.
//!
//! While a message in parts is open, the bytes of its parts are received straight into the
//! message's buffer, and reads into the read buffer take no more than the frame at hand, so
//! that the next part's bytes stay on the socket for that: a large message is copied once, by
//! the kernel.
//!
//! Reads count as activity for the read timeout only when they make progress: a whole frame,
//! or [`PROGRESS_BYTES`] of one. A peer that trickles a byte at a time (slowloris) keeps no
//! connection alive, while a large frame arriving over a slow link does.

use std::io;

use bytes::{BufMut, BytesMut};
use peerwire_wire::{Frame, FrameDecoder, GoAwayReason, Limits, Refused, WireError};
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
    /// A message over this side's limit for one message: refused alone; its parts are
    /// dropped and the connection goes on (once the handshake is done).
    Refused(Refused),
}

impl ReadError {
    /// The go-away reason to send for this error, if the peer can still hear one.
    pub(crate) fn goaway_reason(&self) -> Option<GoAwayReason> {
        match self {
            Self::Eof | Self::Io(_) => None,
            Self::Wire(WireError::FrameTooLarge { .. }) => Some(GoAwayReason::FrameTooLarge),
            Self::Wire(_) | Self::Refused(_) => Some(GoAwayReason::ProtocolError),
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Eof => f.write_str("connection closed by peer"),
            Self::Io(e) => write!(f, "read failed: {e}"),
            Self::Wire(e) => write!(f, "protocol error: {e}"),
            Self::Refused(r) => write!(
                f,
                "{:?} {} of {} bytes exceeds the limit of {} bytes for one message",
                r.kind, r.id, r.len, r.limit
            ),
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
    /// Where bytes read are counted (the handshake's counter until the lane is known).
    bytes_read: metrics::Counter,
    /// Where frames read are counted, as `bytes_read`.
    frames_read: metrics::Counter,
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
            bytes_read: super::lane_metrics::LaneCounters::handshake_reads(),
            frames_read: super::lane_metrics::LaneCounters::handshake_frames(),
        }
    }

    /// Counts the bytes and frames read from now on in `counters` (the connection's lane's).
    pub(crate) fn count_reads_in(&mut self, counters: &super::lane_metrics::LaneCounters) {
        self.bytes_read = counters.bytes_read.clone();
        self.frames_read = counters.frames_read.clone();
    }

    /// Puts `io` in place of the stream it reads from, keeping what is buffered, and returns
    /// the old stream.
    pub(crate) fn swap_io(&mut self, io: BoxRead) -> BoxRead {
        std::mem::replace(&mut self.io, io)
    }

    /// The id of the request whose parts are arriving, if one is.
    pub(crate) fn open_request(&self) -> Option<u64> {
        self.decoder.open_request()
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
    /// buffered. A message over the limit for one message comes back as
    /// [`ReadError::Refused`], after which reading may go on.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: bytes read before cancellation stay buffered (or in the message they
    /// belong to) for the next call.
    pub(crate) async fn next(&mut self, activity: Option<&Activity>) -> Result<Frame, ReadError> {
        loop {
            let decoded = self
                .decoder
                .decode(&mut self.buf)
                .map_err(ReadError::Wire)?;
            if let Some(refused) = self.decoder.take_refused() {
                return Err(ReadError::Refused(refused));
            }
            if let Some(frame) = decoded {
                self.frames_read.increment(1);
                if let Some(activity) = activity {
                    activity.touch_read();
                }
                self.unreported = 0;
                return Ok(frame);
            }
            let n = if let Some((target, want)) =
                self.decoder.direct().filter(|_| self.buf.is_empty())
            {
                // A part of a message: straight into the message.
                let n = self
                    .io
                    .read_buf(&mut target.limit(want))
                    .await
                    .map_err(ReadError::Io)?;
                self.decoder.filled(n);
                n
            } else if self.decoder.assembling() {
                // No more than the frame at hand: the next part's bytes stay on the socket.
                let want = self.decoder.needed(self.buf.len()).clamp(1, self.chunk);
                self.buf.reserve(want);
                self.io
                    .read_buf(&mut (&mut self.buf).limit(want))
                    .await
                    .map_err(ReadError::Io)?
            } else {
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
                self.size.record(offered, n);
                n
            };
            if n == 0 {
                return Err(ReadError::Eof);
            }
            self.unreported += n;
            if self.unreported >= PROGRESS_BYTES {
                if let Some(activity) = activity {
                    activity.touch_read();
                }
                self.unreported = 0;
            }
            self.bytes_read.increment(n as u64);
        }
    }
}
