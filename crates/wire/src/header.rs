//! The fixed 16-byte header that starts every frame.
//!
//! | offset | bytes | field    | description                                                        |
//! |-------:|------:|----------|--------------------------------------------------------------------|
//! | 0      | 4     | `length` | u32 big-endian: number of body bytes that follow the header         |
//! | 4      | 1     | `kind`   | [`FrameKind`] code                                                  |
//! | 5      | 1     | `flags`  | kind-specific bits; unknown bits must be zero                       |
//! | 6      | 2     | reserved | must be zero (a non-zero value is a protocol error)                 |
//! | 8      | 8     | `id`     | u64 big-endian: request id, stream id or heartbeat nonce (0 = none) |
//!
//! The body length is checked against [`Limits`](crate::Limits) before any byte of the body is
//! buffered.

use bytes::{Buf, BufMut};

use crate::WireError;

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// The kind of a frame, byte 4 of the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// Opens a connection: magic, version, lane, cluster and node identity.
    Hello = 0x01,
    /// Accepts a [`FrameKind::Hello`]; same layout.
    HelloAck = 0x02,
    /// A call that expects exactly one [`FrameKind::Response`] or [`FrameKind::Failure`].
    Request = 0x03,
    /// The successful reply to a request.
    Response = 0x04,
    /// The failed reply to a request: status code, retry hint and message.
    Failure = 0x05,
    /// A message that expects no reply.
    OneWay = 0x06,
    /// The caller no longer wants the reply to a request.
    Cancel = 0x07,
    /// Link liveness probe or its acknowledgement.
    Heartbeat = 0x08,
    /// The sender is closing the connection, with a reason.
    GoAway = 0x09,
    /// A packet of a bulk data stream.
    StreamData = 0x0A,
    /// The next part of a message larger than one frame (version 3).
    Continuation = 0x0B,
}

impl FrameKind {
    /// Maps a wire byte to a kind; `None` for codes this version does not know.
    pub fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0x01 => Self::Hello,
            0x02 => Self::HelloAck,
            0x03 => Self::Request,
            0x04 => Self::Response,
            0x05 => Self::Failure,
            0x06 => Self::OneWay,
            0x07 => Self::Cancel,
            0x08 => Self::Heartbeat,
            0x09 => Self::GoAway,
            0x0A => Self::StreamData,
            0x0B => Self::Continuation,
            _ => return None,
        })
    }

    /// The flag bits defined for this kind; any other bit set is a protocol error.
    pub fn allowed_flags(self) -> u8 {
        match self {
            Self::Heartbeat => crate::frame::Heartbeat::FLAG_ACK,
            Self::StreamData => crate::frame::StreamFlags::ALL.bits(),
            Self::Request => crate::fragment::MORE | crate::context::CONTEXT,
            Self::Response | Self::OneWay => crate::fragment::MORE,
            Self::Continuation => crate::fragment::MORE | crate::fragment::REPLY,
            _ => 0,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Number of body bytes after the header.
    pub length: u32,
    /// Frame kind.
    pub kind: FrameKind,
    /// Kind-specific flag bits.
    pub flags: u8,
    /// Request id, stream id or nonce.
    pub id: u64,
}

impl Header {
    /// Parses a header from the first [`HEADER_LEN`] bytes of `src`, checking the kind, the
    /// flag bits and the reserved field. The caller checks the length against its limits.
    pub fn parse(mut src: &[u8]) -> Result<Self, WireError> {
        if src.len() < HEADER_LEN {
            return Err(WireError::Truncated {
                what: "header",
                need: HEADER_LEN,
                have: src.len(),
            });
        }
        let length = src.get_u32();
        let code = src.get_u8();
        let flags = src.get_u8();
        let reserved = src.get_u16();
        let id = src.get_u64();
        let kind = FrameKind::from_u8(code).ok_or(WireError::UnknownKind(code))?;
        if reserved != 0 {
            return Err(WireError::ReservedNotZero(reserved));
        }
        if flags & !kind.allowed_flags() != 0 {
            return Err(WireError::UnknownFlags { kind, flags });
        }
        Ok(Self {
            length,
            kind,
            flags,
            id,
        })
    }

    /// Writes the header into `dst`.
    pub fn write(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.length);
        dst.put_u8(self.kind as u8);
        dst.put_u8(self.flags);
        dst.put_u16(0);
        dst.put_u64(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            length: 0x0102_0304,
            kind: FrameKind::Request,
            flags: 0,
            id: 0x1122_3344_5566_7788,
        };
        let mut buf = Vec::new();
        h.write(&mut buf);
        assert_eq!(
            buf,
            [
                1, 2, 3, 4, 3, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
            ]
        );
        assert_eq!(Header::parse(&buf).unwrap(), h);
    }

    #[test]
    fn header_rejects_bad_fields() {
        let mut buf = [0u8; HEADER_LEN];
        buf[4] = 0x7f;
        assert_eq!(Header::parse(&buf), Err(WireError::UnknownKind(0x7f)));
        buf[4] = FrameKind::Request as u8;
        buf[6] = 1;
        assert_eq!(Header::parse(&buf), Err(WireError::ReservedNotZero(0x0100)));
        buf[6] = 0;
        buf[5] = 1;
        assert!(matches!(
            Header::parse(&buf),
            Err(WireError::UnknownFlags { .. })
        ));
        buf[4] = FrameKind::Heartbeat as u8;
        assert!(Header::parse(&buf).is_ok());
        assert!(matches!(
            Header::parse(&buf[..10]),
            Err(WireError::Truncated { .. })
        ));
    }
}
