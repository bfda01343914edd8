//! Messages larger than one frame (version 3): how a sender splits them.
//!
//! A request, response or one-way message whose payload is too large for one frame (or large
//! enough that it should not hold other frames back) is sent as a **first frame** of its own
//! kind with the [`MORE`] flag, followed by **continuation frames** (kind 0x0B) carrying the
//! rest of the payload in order. Frames of other messages may go between them.
//!
//! First frame: the kind's fixed fields as usual, then the whole payload's length, then the
//! first part of the payload (this crate's sender puts none there, so the receiver can read
//! every payload byte straight into the message's buffer):
//!
//! | kind | body with [`MORE`] set |
//! |---|---|
//! | Request | deadline_ms (4), route_len R (2), route (R), **message length (8)**, part |
//! | Response | **message length (8)**, part |
//! | OneWay | route_len R (2), route (R), **message length (8)**, part |
//!
//! Continuation (kind 0x0B; header id = the message's id; body ≥ 1 byte: the next part):
//!
//! | flag | meaning |
//! |---:|---|
//! | 0x80 [`MORE`] | more continuations of this message follow |
//! | 0x01 [`REPLY`] | continues a Response; clear: continues a Request or OneWay of the sender |
//!
//! Rules the receiver enforces (a breach is a protocol error): a one-way message sent in parts
//! carries a non-zero id; per connection and direction at most one message of each class (calls
//! and one-ways; replies) is in parts at a time; parts add up to the message length exactly.
//! A message whose length exceeds the receiver's limit is refused alone (see
//! [`Refused`](crate::Refused)); its parts are read and dropped.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::Frame;
use crate::header::{FrameKind, HEADER_LEN, Header};

/// Header flag: more parts of this message follow (on a Request, Response or OneWay: this is
/// the first frame of a message in parts; on a Continuation: not the last part).
pub const MORE: u8 = 0x80;

/// Continuation flag: the part belongs to a Response (clear: to a Request or OneWay).
pub const REPLY: u8 = 0x01;

/// Bytes of the message length a first frame carries.
pub const MESSAGE_LEN_BYTES: usize = 8;

/// Splits one message into a first frame and continuation frames of at most `part` payload
/// bytes, without copying the payload: each step writes a frame head into a buffer and hands
/// back the slice of the payload that follows it on the wire.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use peerwire_wire::{Frame, FrameDecoder, Limits, Response, fragment::Fragments};
///
/// let frame = Frame::Response(Response { id: 3, payload: Bytes::from(vec![7u8; 10_000]) });
/// let mut wire = BytesMut::new();
/// let mut parts = Fragments::start(&frame, 4096, &mut wire).expect("a message");
/// while let Some(part) = parts.next_part(&mut wire) {
///     wire.extend_from_slice(&part);
/// }
/// let mut decoder = FrameDecoder::new(Limits::default());
/// assert_eq!(decoder.decode(&mut wire).unwrap(), Some(frame));
/// ```
#[derive(Debug)]
pub struct Fragments {
    id: u64,
    reply: bool,
    rest: Bytes,
    part: usize,
}

impl Fragments {
    /// Writes the first frame of `frame` (a Request, Response or OneWay with a non-empty
    /// payload) into `dst` and returns the splitter for the rest; `None` for any other frame.
    /// A one-way message must carry a non-zero id.
    ///
    /// # Panics
    ///
    /// If `part` is 0, or a one-way message's id is 0.
    pub fn start(frame: &Frame, part: usize, dst: &mut BytesMut) -> Option<Self> {
        assert!(part > 0, "a part must hold at least one byte");
        let (id, reply, fixed, payload) = match frame {
            Frame::Request(r) if !r.payload.is_empty() => {
                (r.id, false, 6 + r.route.len() + r.context_len(), &r.payload)
            }
            Frame::Response(r) if !r.payload.is_empty() => (r.id, true, 0, &r.payload),
            Frame::OneWay(m) if !m.payload.is_empty() => {
                assert!(m.id != 0, "a one-way message in parts needs a non-zero id");
                (m.id, false, 2 + m.route.len(), &m.payload)
            }
            _ => return None,
        };
        let length = u32::try_from(fixed + MESSAGE_LEN_BYTES)
            .expect("route checked against Limits::max_route before encoding");
        dst.reserve(HEADER_LEN + fixed + MESSAGE_LEN_BYTES);
        let flags = match frame {
            Frame::Request(r) => MORE | r.flags(),
            _ => MORE,
        };
        Header {
            length,
            kind: frame.kind(),
            flags,
            id,
        }
        .write(dst);
        match frame {
            Frame::Request(r) => {
                dst.put_u32(r.deadline_ms);
                dst.put_u16(r.route.len() as u16);
                dst.put_slice(&r.route);
                r.put_context(dst);
            }
            Frame::OneWay(m) => {
                dst.put_u16(m.route.len() as u16);
                dst.put_slice(&m.route);
            }
            _ => {}
        }
        dst.put_u64(payload.len() as u64);
        Some(Self {
            id,
            reply,
            rest: payload.clone(),
            part: part.min(u32::MAX as usize),
        })
    }

    /// Writes the next continuation's header into `dst` and returns its part of the payload,
    /// which must follow it on the wire; `None` when every part was handed out.
    pub fn next_part(&mut self, dst: &mut BytesMut) -> Option<Bytes> {
        if self.rest.is_empty() {
            return None;
        }
        let take = self.rest.len().min(self.part);
        let part = self.rest.split_to(take);
        let mut flags = if self.reply { REPLY } else { 0 };
        if !self.rest.is_empty() {
            flags |= MORE;
        }
        Header {
            length: take as u32,
            kind: FrameKind::Continuation,
            flags,
            id: self.id,
        }
        .write(dst);
        Some(part)
    }

    /// Changes the payload bytes of the parts handed out from now on (a sender may size each
    /// part as it likes: smaller while other frames wait, larger while it writes alone).
    ///
    /// # Panics
    ///
    /// If `part` is 0.
    pub fn set_part(&mut self, part: usize) {
        assert!(part > 0, "a part must hold at least one byte");
        self.part = part.min(u32::MAX as usize);
    }

    /// Payload bytes not yet handed out.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Whether this is a reply (a Response) rather than a call or one-way message.
    pub fn is_reply(&self) -> bool {
        self.reply
    }
}
