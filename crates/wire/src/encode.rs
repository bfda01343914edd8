//! Frame encoding. Layouts are documented in [`crate::frame`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::{Frame, HELLO_MAGIC, Heartbeat, Hello, Response, StreamData};
use crate::header::{HEADER_LEN, Header};
use crate::limits::DEFAULT_MAX_MESSAGE;

/// Truncates `message` to at most [`DEFAULT_MAX_MESSAGE`] bytes on a character boundary, so an
/// encoded message never exceeds the default receive limit.
fn bounded_message(message: &str) -> &str {
    let max = usize::from(DEFAULT_MAX_MESSAGE);
    if message.len() <= max {
        return message;
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

fn route_len(route: &Bytes) -> u16 {
    u16::try_from(route.len())
        .expect("route longer than 65535 bytes: check it against Limits::max_route before encoding")
}

impl Frame {
    /// Writes the header and every fixed field of the frame into `dst`, and returns the
    /// payload that must follow them on the wire (if the frame has one).
    ///
    /// This lets a writer send large payloads with vectored IO instead of copying them;
    /// [`Frame::encode`] copies the payload too.
    ///
    /// # Panics
    ///
    /// If the body exceeds `u32::MAX` bytes or a route exceeds 65,535 bytes. Callers check
    /// payloads and routes against the peer's [`Limits`](crate::Limits) first.
    pub fn encode_head(&self, dst: &mut BytesMut) -> Option<&Bytes> {
        let body_len = self.encoded_len() - HEADER_LEN;
        let length = u32::try_from(body_len)
            .expect("frame body longer than u32::MAX: check it against Limits::max_body first");
        let kind = self.kind();
        dst.reserve(HEADER_LEN + body_len.min(256));
        match self {
            Self::Hello(hello) | Self::HelloAck(hello) => {
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: 0,
                }
                .write(dst);
                write_hello(hello, dst);
                None
            }
            Self::Request(req) => {
                Header {
                    length,
                    kind,
                    flags: req.flags(),
                    id: req.id,
                }
                .write(dst);
                dst.put_u32(req.deadline_ms);
                dst.put_u16(route_len(&req.route));
                dst.put_slice(&req.route);
                req.put_context(dst);
                Some(&req.payload)
            }
            Self::Response(resp) => {
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: resp.id,
                }
                .write(dst);
                Some(&resp.payload)
            }
            Self::Failure(failure) => {
                let message = bounded_message(&failure.message);
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: failure.id,
                }
                .write(dst);
                dst.put_u16(failure.status.to_wire());
                dst.put_u32(failure.retry_after_ms);
                dst.put_u16(message.len() as u16);
                dst.put_slice(message.as_bytes());
                None
            }
            Self::OneWay(msg) => {
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: msg.id,
                }
                .write(dst);
                dst.put_u16(route_len(&msg.route));
                dst.put_slice(&msg.route);
                Some(&msg.payload)
            }
            Self::Cancel { id } => {
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: *id,
                }
                .write(dst);
                None
            }
            Self::Heartbeat(hb) => {
                let flags = if hb.ack { Heartbeat::FLAG_ACK } else { 0 };
                Header {
                    length,
                    kind,
                    flags,
                    id: hb.nonce,
                }
                .write(dst);
                dst.put_u64(hb.timestamp_us);
                None
            }
            Self::GoAway(goaway) => {
                let message = bounded_message(&goaway.message);
                Header {
                    length,
                    kind,
                    flags: 0,
                    id: goaway.last_request_id,
                }
                .write(dst);
                dst.put_u16(goaway.reason.to_wire());
                dst.put_u16(message.len() as u16);
                dst.put_slice(message.as_bytes());
                None
            }
            Self::StreamData(data) => {
                let flags = data.flags.bits();
                Header {
                    length,
                    kind,
                    flags,
                    id: data.id,
                }
                .write(dst);
                dst.put_u64(data.stream_id);
                dst.put_u64(data.offset);
                dst.put_u32(data.checksum);
                Some(&data.payload)
            }
        }
    }

    /// Appends the whole frame, payload included, to `dst`.
    ///
    /// # Panics
    ///
    /// As [`Frame::encode_head`].
    pub fn encode(&self, dst: &mut BytesMut) {
        if let Some(payload) = self.encode_head(dst) {
            dst.extend_from_slice(payload);
        }
    }

    /// The number of bytes [`Frame::encode`] writes: header, fixed fields and payload.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Self::Hello(_) | Self::HelloAck(_) => Hello::LEN as usize,
                Self::Request(req) => 6 + req.route.len() + req.context_len() + req.payload.len(),
                Self::Response(resp) => resp.payload.len(),
                Self::Failure(f) => 8 + bounded_message(&f.message).len(),
                Self::OneWay(msg) => 2 + msg.route.len() + msg.payload.len(),
                Self::Cancel { .. } => 0,
                Self::Heartbeat(_) => Heartbeat::LEN as usize,
                Self::GoAway(g) => 4 + bounded_message(&g.message).len(),
                Self::StreamData(data) => StreamData::HEAD_LEN as usize + data.payload.len(),
            }
    }
}

impl crate::frame::Request {
    /// The header flags of this request's (first) frame besides MORE.
    pub(crate) fn flags(&self) -> u8 {
        if self.context.is_empty() {
            0
        } else {
            crate::context::CONTEXT
        }
    }

    /// The bytes the context takes on the wire: its length field and block, or nothing.
    pub(crate) fn context_len(&self) -> usize {
        if self.context.is_empty() {
            0
        } else {
            2 + self.context.len()
        }
    }

    /// Writes the context's length and block, if there is one.
    ///
    /// # Panics
    ///
    /// If the block is longer than `u16::MAX` (check it against the peer's limit first).
    pub(crate) fn put_context(&self, dst: &mut BytesMut) {
        if !self.context.is_empty() {
            dst.put_u16(
                u16::try_from(self.context.len()).expect("a context block fits a u16 length"),
            );
            dst.put_slice(&self.context);
        }
    }
}

impl Response {
    /// Writes the header of this reply and its payload, as if `trailing` more payload bytes
    /// followed: for a reply whose tail comes from somewhere other than memory (a file region
    /// sent with `sendfile`). Those `trailing` bytes must follow on the wire; the receiver sees
    /// one payload of `payload.len() + trailing` bytes.
    ///
    /// # Panics
    ///
    /// If the body would exceed `u32::MAX` bytes.
    pub fn encode_head_with_trailing(&self, trailing: usize, dst: &mut BytesMut) {
        let length = u32::try_from(self.payload.len() + trailing)
            .expect("frame body longer than u32::MAX: check it against Limits::max_body first");
        dst.reserve(HEADER_LEN + self.payload.len());
        Header {
            length,
            kind: crate::header::FrameKind::Response,
            flags: 0,
            id: self.id,
        }
        .write(dst);
        dst.put_slice(&self.payload);
    }
}

impl StreamData {
    /// Writes the header and fixed fields of this packet as if its payload were
    /// `payload_len` bytes, ignoring `self.payload`: for senders whose payload comes from
    /// somewhere other than memory (a file sent with `sendfile`). The payload bytes must
    /// follow on the wire.
    ///
    /// # Panics
    ///
    /// If the body would exceed `u32::MAX` bytes.
    pub fn encode_head_with_len(&self, payload_len: usize, dst: &mut BytesMut) {
        let length = u32::try_from(Self::HEAD_LEN as usize + payload_len)
            .expect("frame body longer than u32::MAX: check it against Limits::max_body first");
        dst.reserve(HEADER_LEN + Self::HEAD_LEN as usize);
        Header {
            length,
            kind: crate::header::FrameKind::StreamData,
            flags: self.flags.bits(),
            id: self.id,
        }
        .write(dst);
        dst.put_u64(self.stream_id);
        dst.put_u64(self.offset);
        dst.put_u32(self.checksum);
    }
}

fn write_hello(hello: &Hello, dst: &mut BytesMut) {
    dst.put_slice(&HELLO_MAGIC);
    dst.put_u16(hello.min_version);
    dst.put_u8(hello.lane.to_wire());
    dst.put_u8(0);
    dst.put_u64(hello.cluster_id);
    dst.put_u64(hello.node_id);
    dst.put_u64(hello.target_node_id);
    dst.put_u64(hello.epoch);
    dst.put_u32(hello.max_frame_body);
    dst.put_u16(hello.max_version);
    dst.put_u16(0);
    dst.put_u64(hello.group);
    dst.put_u64(hello.max_message);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(3000); // 6000 bytes
        let cut = bounded_message(&long);
        assert!(cut.len() <= usize::from(DEFAULT_MAX_MESSAGE));
        assert!(cut.len() >= usize::from(DEFAULT_MAX_MESSAGE) - 1);
        assert!(long.starts_with(cut));
    }

    #[test]
    fn stream_head_with_len_matches_encode() {
        let data = StreamData {
            id: 7,
            stream_id: 9,
            flags: crate::StreamFlags::SYNC,
            offset: 1 << 40,
            checksum: 0xdead_beef,
            payload: Bytes::from_static(b"payload bytes"),
        };
        let mut whole = BytesMut::new();
        Frame::StreamData(data.clone()).encode(&mut whole);
        let mut head = BytesMut::new();
        data.encode_head_with_len(data.payload.len(), &mut head);
        head.extend_from_slice(&data.payload);
        assert_eq!(head, whole);
    }

    #[test]
    fn response_head_with_trailing_bytes_matches_encode() {
        let whole_reply = Response {
            id: 11,
            payload: Bytes::from_static(b"head+the file's bytes"),
        };
        let mut whole = BytesMut::new();
        Frame::Response(whole_reply.clone()).encode(&mut whole);
        let (prefix, tail) = whole_reply.payload.split_at(5);
        let mut head = BytesMut::new();
        Response {
            id: 11,
            payload: Bytes::copy_from_slice(prefix),
        }
        .encode_head_with_trailing(tail.len(), &mut head);
        head.extend_from_slice(tail);
        assert_eq!(head, whole);
    }

    #[test]
    fn encoded_len_matches_encode() {
        let frame = Frame::Failure(crate::Failure {
            id: 3,
            status: crate::Status::Busy,
            retry_after_ms: 10,
            message: "x".repeat(5000),
        });
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        assert_eq!(buf.len(), frame.encoded_len());
    }
}
