//! The peerwire wire protocol, versions 1 to 4: frame types and a sans-IO codec.
//!
//! This crate does no IO and does not depend on an async runtime: bytes go in, [`Frame`]s come
//! out ([`FrameDecoder::decode`]), and frames are written into a `BytesMut`
//! ([`Frame::encode`], [`Frame::encode_head`]). Every length read from the wire is checked
//! against [`Limits`] *before* any memory is reserved for it, so a peer cannot make us allocate
//! more than the configured limit per connection.
//!
//! The byte layout of every frame is documented as offset tables in [`header`] and [`frame`],
//! and again in `docs/PROTOCOL.md` at the repository root.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use peerwire_wire::{Frame, FrameDecoder, Limits, Request};
//!
//! let frame = Frame::Request(Request {
//!     id: 7,
//!     deadline_ms: 250,
//!     route: Bytes::from_static(b"echo"),
//!     context: Bytes::new(),
//!     payload: Bytes::from_static(b"hello"),
//! });
//! let mut buf = BytesMut::new();
//! frame.encode(&mut buf);
//!
//! let mut decoder = FrameDecoder::new(Limits::default());
//! assert_eq!(decoder.decode(&mut buf).unwrap(), Some(frame));
//! assert!(buf.is_empty());
//! ```

mod assemble;
mod code;
pub mod context;
mod decode;
mod encode;
mod error;
pub mod fragment;
pub mod frame;
pub mod header;
pub mod limits;

pub use assemble::Refused;
pub use code::{GoAwayReason, Lane, Status};
pub use context::{Context, ContextError};
pub use decode::FrameDecoder;
pub use error::WireError;
pub use frame::{
    Failure, Frame, GoAway, HELLO_MAGIC, Heartbeat, Hello, OneWay, Request, Response, StreamData,
    StreamFlags,
};
pub use header::{FrameKind, HEADER_LEN, Header};
pub use limits::Limits;

/// The highest protocol version this crate speaks. Version 2 adds the version range and the
/// group to the hello; version 3 adds messages larger than one frame ([`fragment`]) and the
/// message limit to the hello; version 4 adds a request's context ([`context`]). Version 1
/// to 3 peers are still understood (group 0; one message per frame before 3; no context
/// before 4).
pub const PROTOCOL_VERSION: u16 = 4;

/// The first version whose requests may carry a context.
pub const CONTEXT_VERSION: u16 = 4;

/// The lowest protocol version this crate speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;
