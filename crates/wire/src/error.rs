//! The one error type of the wire crate.

use crate::FrameKind;

/// A violation of the wire protocol found while decoding. Every variant means the byte stream
/// can no longer be trusted: the connection that produced it should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame's kind byte is not a kind this version knows.
    #[error("unknown frame kind {0:#04x}")]
    UnknownKind(u8),
    /// The reserved header field is not zero.
    #[error("reserved header field is {0:#06x}, must be zero")]
    ReservedNotZero(u16),
    /// Flag bits that are not defined for the kind are set.
    #[error("undefined flag bits {flags:#04x} on {kind:?} frame")]
    UnknownFlags {
        /// The frame kind.
        kind: FrameKind,
        /// The flags byte as received.
        flags: u8,
    },
    /// The frame body is longer than the receiver's limit.
    #[error(
        "{kind:?} frame body of {len} bytes exceeds the limit of {limit} bytes (max_frame_body)"
    )]
    FrameTooLarge {
        /// The frame kind.
        kind: FrameKind,
        /// Declared body length.
        len: u32,
        /// The limit in force.
        limit: u32,
    },
    /// A fixed-size part of a frame is shorter than its layout requires.
    #[error("{what} truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Which part was short.
        what: &'static str,
        /// Bytes the layout needs.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// A frame of a fixed-size kind has the wrong body length.
    #[error("{kind:?} frame body must be {expected} bytes, got {len}")]
    BadLength {
        /// The frame kind.
        kind: FrameKind,
        /// Declared body length.
        len: u32,
        /// Required body length.
        expected: u32,
    },
    /// A route name is longer than the limit.
    #[error("route of {len} bytes exceeds the limit of {limit} bytes (max_route)")]
    RouteTooLong {
        /// Declared route length.
        len: u16,
        /// The limit in force.
        limit: u16,
    },
    /// A failure or go-away message is longer than the limit.
    #[error("message of {len} bytes exceeds the limit of {limit} bytes (max_message)")]
    MessageTooLong {
        /// Declared message length.
        len: u16,
        /// The limit in force.
        limit: u16,
    },
    /// A failure or go-away message is not UTF-8.
    #[error("message is not valid UTF-8")]
    InvalidUtf8,
    /// A hello does not start with the peerwire magic.
    #[error("bad magic {0:02x?}: not a peerwire peer")]
    BadMagic([u8; 4]),
    /// A frame that must carry a non-zero id carries zero.
    #[error("{0:?} frame must carry a non-zero id")]
    ZeroId(FrameKind),
    /// A continuation arrived for a message that is not open.
    #[error("continuation of {} {id}, which is not open", if *reply { "reply" } else { "message" })]
    UnexpectedPart {
        /// The continuation's id.
        id: u64,
        /// Whether it continues a reply.
        reply: bool,
    },
    /// A message in parts began while another of its class was still open.
    #[error("{kind:?} {id} begins in parts while message {open} is still open")]
    MessageOpen {
        /// The new message's kind.
        kind: FrameKind,
        /// The new message's id.
        id: u64,
        /// The open message's id.
        open: u64,
    },
    /// A part does not fit its message: past its declared length, empty, or the last part
    /// short of it.
    #[error("part of {part} bytes does not fit message {id} ({received} of {len} bytes received)")]
    PartLength {
        /// The message's id.
        id: u64,
        /// Its declared payload length.
        len: u64,
        /// Bytes received before this part.
        received: u64,
        /// The part's length.
        part: u64,
    },
}
