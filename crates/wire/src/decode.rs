//! The sans-IO frame decoder.

use bytes::{Buf, Bytes, BytesMut};

use crate::assemble::{Assembler, Head, Refused, Step};
use crate::fragment::{MESSAGE_LEN_BYTES, MORE};
use crate::frame::{
    Failure, Frame, GoAway, HELLO_MAGIC, Heartbeat, Hello, OneWay, Request, Response, StreamData,
    StreamFlags,
};
use crate::header::{FrameKind, HEADER_LEN, Header};
use crate::{GoAwayReason, Lane, Limits, Status, WireError};

/// Turns a byte stream into frames.
///
/// Feed it the connection's read buffer: [`FrameDecoder::decode`] returns `Ok(None)` when the
/// buffer does not yet hold a whole frame (having reserved room for the rest), `Ok(Some(frame))`
/// for each complete frame, and an error when the stream breaks the protocol. After an error the
/// decoder's state is unspecified and the connection must be closed.
///
/// Payloads are slices of the read buffer (no copy). Messages sent in parts (version 3, see
/// [`crate::fragment`]) come out whole, as the frame of their first part's kind; a message
/// over [`Limits::max_payload`] is refused alone ([`FrameDecoder::take_refused`]).
#[derive(Debug)]
pub struct FrameDecoder {
    limits: Limits,
    /// The header of the frame whose body is being awaited.
    head: Option<Header>,
    /// Messages in parts.
    parts: Assembler,
    /// A message refused since the last [`FrameDecoder::take_refused`].
    refused: Option<Refused>,
}

impl FrameDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            head: None,
            parts: Assembler::default(),
            refused: None,
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Replaces the limits, for instance when the handshake completes. Applies from the next
    /// frame header on.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Decodes the next frame from the front of `src`, consuming its bytes.
    ///
    /// After `Ok(None)`, check [`FrameDecoder::take_refused`]: the decoder stops at a refused
    /// message so that the caller can answer it before decoding on.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        loop {
            if self.parts.in_part() {
                match self.parts.feed(src) {
                    Step::NeedMore => return Ok(None),
                    Step::PartDone => continue,
                    Step::Complete(frame) => return Ok(Some(frame)),
                }
            }
            let head = match self.head {
                Some(head) => head,
                None => {
                    if src.len() < HEADER_LEN {
                        src.reserve(HEADER_LEN - src.len());
                        return Ok(None);
                    }
                    let head = Header::parse(&src[..HEADER_LEN])?;
                    check_length(&head, &self.limits)?;
                    src.advance(HEADER_LEN);
                    if head.kind == FrameKind::Continuation {
                        // Its body goes to its message, not to `src`.
                        self.parts.begin_part(&head)?;
                        continue;
                    }
                    self.head = Some(head);
                    head
                }
            };
            let len = head.length as usize;
            if src.len() < len {
                // Bounded: `len` was checked against the limit above.
                src.reserve(len - src.len() + HEADER_LEN);
                return Ok(None);
            }
            self.head = None;
            let body = src.split_to(len).freeze();
            if head.flags & MORE != 0 {
                let (message_head, message_len, first) = parse_first(head, body, &self.limits)?;
                let refused = self.parts.begin(
                    head.id,
                    message_head,
                    message_len,
                    first,
                    self.limits.max_payload,
                )?;
                if refused.is_some() {
                    self.refused = refused;
                    return Ok(None);
                }
                continue;
            }
            return parse_body(head, body, &self.limits).map(Some);
        }
    }

    /// The message refused by the last [`FrameDecoder::decode`], if it refused one.
    pub fn take_refused(&mut self) -> Option<Refused> {
        self.refused.take()
    }

    /// The id of the request whose parts are arriving, if one is: a cancel for it may arrive
    /// before the request is whole.
    pub fn open_request(&self) -> Option<u64> {
        self.parts.open_request()
    }

    /// Whether a message in parts is open: its next part may arrive after other frames.
    pub fn assembling(&self) -> bool {
        self.parts.is_open()
    }

    /// Bytes missing to finish what the decoder reads now (a header, a frame body, or a
    /// message's part), given `buffered` bytes in the read buffer. A reader that offers no
    /// more than this while [`FrameDecoder::assembling`] leaves the bytes of the next part on
    /// the socket, for [`FrameDecoder::direct`].
    pub fn needed(&self, buffered: usize) -> usize {
        if self.parts.in_part() {
            self.parts.part_remaining()
        } else if let Some(head) = self.head {
            (head.length as usize).saturating_sub(buffered)
        } else {
            HEADER_LEN.saturating_sub(buffered)
        }
    }

    /// Where the rest of the part being read goes, and how many bytes of it are missing, when
    /// the read buffer holds none of them: a reader may receive up to that many bytes straight
    /// into the buffer, then report them with [`FrameDecoder::filled`] and call
    /// [`FrameDecoder::decode`] again. `None` when no part is being read (or it is dropped).
    pub fn direct(&mut self) -> Option<(&mut BytesMut, usize)> {
        self.parts.direct()
    }

    /// Records `n` bytes received into the buffer [`FrameDecoder::direct`] returned.
    pub fn filled(&mut self, n: usize) {
        self.parts.filled(n);
    }
}

/// Splits the first frame of a message in parts into what it carries besides the payload, the
/// declared payload length, and its part of the payload.
fn parse_first(
    head: Header,
    mut body: Bytes,
    limits: &Limits,
) -> Result<(Head, u64, Bytes), WireError> {
    let message_head = match head.kind {
        FrameKind::Request => {
            let deadline_ms = body.get_u32();
            let route = take_route(&mut body, limits)?;
            let context = take_context(&mut body, head.flags)?;
            Head::Request {
                deadline_ms,
                route,
                context,
            }
        }
        FrameKind::OneWay => Head::OneWay {
            route: take_route(&mut body, limits)?,
        },
        _ => Head::Response,
    };
    if body.len() < MESSAGE_LEN_BYTES {
        return Err(WireError::Truncated {
            what: "message length",
            need: MESSAGE_LEN_BYTES,
            have: body.len(),
        });
    }
    let len = body.get_u64();
    Ok((message_head, len, body))
}

/// Checks the declared body length against the limits and the kind's layout, before any of the
/// body is buffered.
fn check_length(head: &Header, limits: &Limits) -> Result<(), WireError> {
    if head.length > limits.max_body {
        return Err(WireError::FrameTooLarge {
            kind: head.kind,
            len: head.length,
            limit: limits.max_body,
        });
    }
    let (min, exact) = match head.kind {
        FrameKind::Hello | FrameKind::HelloAck => (Hello::V1_LEN, false),
        FrameKind::Request => (6, false),
        FrameKind::Response => (0, false),
        FrameKind::Failure => (8, false),
        FrameKind::OneWay => (2, false),
        FrameKind::Cancel => (0, true),
        FrameKind::Heartbeat => (Heartbeat::LEN, true),
        FrameKind::GoAway => (4, false),
        FrameKind::StreamData => (StreamData::HEAD_LEN, false),
        FrameKind::Continuation => (1, false),
    };
    if head.length < min || (exact && head.length != min) {
        return Err(WireError::BadLength {
            kind: head.kind,
            len: head.length,
            expected: min,
        });
    }
    let needs_id = matches!(
        head.kind,
        FrameKind::Request
            | FrameKind::Response
            | FrameKind::Failure
            | FrameKind::Cancel
            | FrameKind::StreamData
            | FrameKind::Continuation
    );
    if needs_id && head.id == 0 {
        return Err(WireError::ZeroId(head.kind));
    }
    Ok(())
}

/// Splits a length-prefixed route off the front of `body`.
fn take_route(body: &mut Bytes, limits: &Limits) -> Result<Bytes, WireError> {
    let len = body.get_u16();
    if len > limits.max_route {
        return Err(WireError::RouteTooLong {
            len,
            limit: limits.max_route,
        });
    }
    if body.len() < usize::from(len) {
        return Err(WireError::Truncated {
            what: "route",
            need: usize::from(len),
            have: body.len(),
        });
    }
    Ok(body.split_to(usize::from(len)))
}

/// Splits a request's context block off the front of `body` when `flags` say one is there
/// (empty otherwise). Its entries are checked by whoever reads them ([`crate::Context::parse`],
/// against its own limit): a bad block fails that call, not the connection.
fn take_context(body: &mut Bytes, flags: u8) -> Result<Bytes, WireError> {
    if flags & crate::context::CONTEXT == 0 {
        return Ok(Bytes::new());
    }
    if body.len() < 2 {
        return Err(WireError::Truncated {
            what: "context length",
            need: 2,
            have: body.len(),
        });
    }
    let len = usize::from(body.get_u16());
    if body.len() < len {
        return Err(WireError::Truncated {
            what: "context",
            need: len,
            have: body.len(),
        });
    }
    Ok(body.split_to(len))
}

/// Reads a length-prefixed message that must fill the rest of `body` exactly.
fn take_message(body: &mut Bytes, kind: FrameKind, limits: &Limits) -> Result<String, WireError> {
    let len = body.get_u16();
    if len > limits.max_message {
        return Err(WireError::MessageTooLong {
            len,
            limit: limits.max_message,
        });
    }
    if body.len() != usize::from(len) {
        return Err(WireError::BadLength {
            kind,
            len: body.len() as u32,
            expected: u32::from(len),
        });
    }
    String::from_utf8(body.to_vec()).map_err(|_| WireError::InvalidUtf8)
}

fn parse_body(head: Header, mut body: Bytes, limits: &Limits) -> Result<Frame, WireError> {
    // Every `get_*` below is covered by the minimum length checked in `check_length`.
    Ok(match head.kind {
        FrameKind::Hello | FrameKind::HelloAck => {
            let mut magic = [0u8; 4];
            body.copy_to_slice(&mut magic);
            if magic != HELLO_MAGIC {
                return Err(WireError::BadMagic(magic));
            }
            let min_version = body.get_u16();
            let lane = Lane::from_wire(body.get_u8());
            let _reserved = body.get_u8();
            let mut hello = Hello {
                min_version,
                max_version: min_version,
                lane,
                group: 0,
                cluster_id: body.get_u64(),
                node_id: body.get_u64(),
                target_node_id: body.get_u64(),
                epoch: body.get_u64(),
                max_frame_body: body.get_u32(),
                max_message: 0,
            };
            // A version-1 hello ends here: the range [min, min], group 0.
            if body.remaining() >= (Hello::V2_LEN - Hello::V1_LEN) as usize {
                hello.max_version = body.get_u16();
                let _reserved = body.get_u16();
                hello.group = body.get_u64();
            }
            // Version 3 adds the message limit; before it, a message is one frame.
            hello.max_message = if body.remaining() >= 8 {
                body.get_u64()
            } else {
                u64::from(hello.max_frame_body)
            };
            // Bytes past offset 64 are extensions of later versions: ignored.
            if head.kind == FrameKind::Hello {
                Frame::Hello(hello)
            } else {
                Frame::HelloAck(hello)
            }
        }
        FrameKind::Request => {
            let deadline_ms = body.get_u32();
            let route = take_route(&mut body, limits)?;
            let context = take_context(&mut body, head.flags)?;
            Frame::Request(Request {
                id: head.id,
                deadline_ms,
                route,
                context,
                payload: body,
            })
        }
        FrameKind::Response => Frame::Response(Response {
            id: head.id,
            payload: body,
        }),
        FrameKind::Failure => {
            let status = Status::from_wire(body.get_u16());
            let retry_after_ms = body.get_u32();
            let message = take_message(&mut body, head.kind, limits)?;
            Frame::Failure(Failure {
                id: head.id,
                status,
                retry_after_ms,
                message,
            })
        }
        FrameKind::OneWay => {
            let route = take_route(&mut body, limits)?;
            Frame::OneWay(OneWay {
                id: head.id,
                route,
                payload: body,
            })
        }
        FrameKind::Cancel => Frame::Cancel { id: head.id },
        FrameKind::Heartbeat => Frame::Heartbeat(Heartbeat {
            nonce: head.id,
            ack: head.flags & Heartbeat::FLAG_ACK != 0,
            timestamp_us: body.get_u64(),
        }),
        FrameKind::GoAway => {
            let reason = GoAwayReason::from_wire(body.get_u16());
            let message = take_message(&mut body, head.kind, limits)?;
            Frame::GoAway(GoAway {
                last_request_id: head.id,
                reason,
                message,
            })
        }
        // Continuations never reach here: their bodies go to their messages.
        FrameKind::Continuation => {
            return Err(WireError::UnexpectedPart {
                id: head.id,
                reply: head.flags & crate::fragment::REPLY != 0,
            });
        }
        FrameKind::StreamData => {
            let stream_id = body.get_u64();
            let offset = body.get_u64();
            let checksum = body.get_u32();
            Frame::StreamData(StreamData {
                id: head.id,
                stream_id,
                flags: StreamFlags::from_bits_truncate(head.flags),
                offset,
                checksum,
                payload: body,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn header(kind: FrameKind, length: u32, id: u64) -> BytesMut {
        let mut buf = BytesMut::new();
        Header {
            length,
            kind,
            flags: 0,
            id,
        }
        .write(&mut buf);
        buf
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut buf = header(FrameKind::Response, u32::MAX, 1);
        let mut dec = FrameDecoder::new(Limits::default());
        let err = dec.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            WireError::FrameTooLarge { len: u32::MAX, .. }
        ));
        // Nothing was reserved for the body.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn handshake_limits_refuse_large_frames() {
        let mut buf = header(FrameKind::Response, 1024, 1);
        let mut dec = FrameDecoder::new(Limits::handshake());
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::FrameTooLarge { limit: 256, .. })
        ));
    }

    #[test]
    fn a_context_block_is_split_off_and_a_short_one_is_refused() {
        let mut dec = FrameDecoder::new(Limits::default());
        // deadline, route "r", context of 3 bytes, payload "p".
        let mut buf = BytesMut::new();
        Header {
            length: 4 + 2 + 1 + 2 + 3 + 1,
            kind: FrameKind::Request,
            flags: crate::context::CONTEXT,
            id: 1,
        }
        .write(&mut buf);
        buf.put_u32(0);
        buf.put_u16(1);
        buf.put_slice(b"r");
        buf.put_u16(3);
        buf.put_slice(b"abc");
        buf.put_slice(b"p");
        let Some(Frame::Request(req)) = dec.decode(&mut buf).unwrap() else {
            panic!("a request")
        };
        assert_eq!(&req.context[..], b"abc");
        assert_eq!(&req.payload[..], b"p");

        // A context length past the end of the body.
        let mut buf = BytesMut::new();
        Header {
            length: 4 + 2 + 1 + 2 + 1,
            kind: FrameKind::Request,
            flags: crate::context::CONTEXT,
            id: 1,
        }
        .write(&mut buf);
        buf.put_u32(0);
        buf.put_u16(1);
        buf.put_slice(b"r");
        buf.put_u16(100);
        buf.put_slice(b"x");
        assert!(matches!(
            FrameDecoder::new(Limits::default()).decode(&mut buf),
            Err(WireError::Truncated {
                what: "context",
                ..
            })
        ));

        // The flag means nothing on a response: refused.
        let mut buf = BytesMut::new();
        Header {
            length: 0,
            kind: FrameKind::Response,
            flags: crate::context::CONTEXT,
            id: 1,
        }
        .write(&mut buf);
        assert!(matches!(
            FrameDecoder::new(Limits::default()).decode(&mut buf),
            Err(WireError::UnknownFlags { .. })
        ));
    }

    #[test]
    fn fixed_size_kinds_check_their_length() {
        let mut buf = header(FrameKind::Heartbeat, 9, 1);
        let mut dec = FrameDecoder::new(Limits::default());
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::BadLength { .. })
        ));
        let mut buf = header(FrameKind::Cancel, 0, 0);
        assert_eq!(
            FrameDecoder::new(Limits::default()).decode(&mut buf),
            Err(WireError::ZeroId(FrameKind::Cancel))
        );
    }

    #[test]
    fn route_longer_than_body_is_truncated_error() {
        let mut buf = header(FrameKind::Request, 8, 1);
        buf.put_u32(0);
        buf.put_u16(100);
        buf.put_u16(0);
        let mut dec = FrameDecoder::new(Limits::default());
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::Truncated { what: "route", .. })
        ));
    }

    #[test]
    fn route_over_limit_is_refused() {
        let mut buf = header(FrameKind::OneWay, 2, 0);
        buf.put_u16(5000);
        let mut dec = FrameDecoder::new(Limits::default());
        assert!(matches!(
            dec.decode(&mut buf),
            Err(WireError::RouteTooLong { len: 5000, .. })
        ));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut buf = header(FrameKind::Hello, Hello::LEN, 0);
        buf.put_slice(b"HTTP");
        buf.put_bytes(0, Hello::LEN as usize - 4);
        let mut dec = FrameDecoder::new(Limits::handshake());
        assert_eq!(dec.decode(&mut buf), Err(WireError::BadMagic(*b"HTTP")));
    }

    /// A version-1 hello body: the 44 bytes a version-1 node writes.
    fn v1_hello_body(buf: &mut BytesMut, version: u16, lane: u8) {
        buf.put_slice(&HELLO_MAGIC);
        buf.put_u16(version);
        buf.put_u8(lane);
        buf.put_u8(0);
        buf.put_u64(7); // cluster
        buf.put_u64(3); // node
        buf.put_u64(0); // target
        buf.put_u64(9); // epoch
        buf.put_u32(1 << 20);
    }

    #[test]
    fn a_version_1_hello_reads_as_one_version_and_group_0() {
        let mut buf = header(FrameKind::Hello, Hello::V1_LEN, 0);
        v1_hello_body(&mut buf, 1, 4);
        let Some(Frame::Hello(hello)) = FrameDecoder::new(Limits::handshake())
            .decode(&mut buf)
            .unwrap()
        else {
            panic!("not a hello");
        };
        assert_eq!(hello.versions(), 1..=1);
        assert_eq!(hello.group, 0);
        assert_eq!(hello.lane, Lane::RaftSnapshot);
        assert_eq!((hello.cluster_id, hello.node_id, hello.epoch), (7, 3, 9));
    }

    #[test]
    fn a_version_3_hello_carries_its_range_group_and_message_limit_at_44_48_and_56() {
        let hello = Hello {
            min_version: 1,
            max_version: 2,
            lane: Lane::DataStream,
            group: 0x0102_0304_0506_0708,
            cluster_id: 7,
            node_id: 3,
            target_node_id: 0,
            epoch: 9,
            max_frame_body: 1 << 20,
            max_message: 1 << 30,
        };
        let mut buf = BytesMut::new();
        Frame::Hello(hello).encode(&mut buf);
        let body = &buf[HEADER_LEN..];
        assert_eq!(body.len(), 64);
        // A version-1 reader sees its own 44 bytes: min version 1 at offset 4.
        let mut v1 = BytesMut::new();
        v1_hello_body(&mut v1, 1, 5);
        v1[16..24].copy_from_slice(&body[16..24]);
        assert_eq!(&body[..44], &v1[..]);
        assert_eq!(&body[44..46], &[0, 2]);
        assert_eq!(&body[46..48], &[0, 0]);
        assert_eq!(&body[48..56], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&body[56..64], &(1u64 << 30).to_be_bytes());
        // A version-2 hello (56 bytes) reads as one message per frame.
        let mut v2 = header(FrameKind::Hello, Hello::V2_LEN, 0);
        v2.put_slice(&body[..56]);
        let Some(Frame::Hello(read)) = FrameDecoder::new(Limits::handshake())
            .decode(&mut v2)
            .unwrap()
        else {
            panic!("not a hello");
        };
        assert_eq!(read.max_message, 1 << 20);
        // Later extensions past offset 64 are ignored.
        let mut longer = header(FrameKind::Hello, 68, 0);
        longer.put_slice(body);
        longer.put_u32(0xdead_beef);
        let decoded = FrameDecoder::new(Limits::handshake())
            .decode(&mut longer)
            .unwrap();
        assert_eq!(decoded, Some(Frame::Hello(hello)));
    }

    #[test]
    fn partial_input_waits_for_more() {
        let frame = Frame::Response(Response {
            id: 9,
            payload: Bytes::from_static(b"abcdef"),
        });
        let mut whole = BytesMut::new();
        frame.encode(&mut whole);
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        for (i, byte) in whole.iter().enumerate() {
            buf.put_u8(*byte);
            let out = dec.decode(&mut buf).unwrap();
            if i + 1 < whole.len() {
                assert_eq!(out, None);
            } else {
                assert_eq!(out, Some(frame.clone()));
            }
        }
    }
}
