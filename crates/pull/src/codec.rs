//! The pull lane's payloads (offset tables in docs/PROTOCOL.md, "Pull streams"): pure
//! encoders and decoders, no IO.
//!
//! Every reply starts with an outcome byte: 0 for success, followed by the route's fields, or
//! an [`ErrorCode`] followed by a UTF-8 message. Transport failures (busy, deadline, connection
//! lost) stay peerwire failures; these codes are what the stream manager itself answers.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Opens a stream by name (the server's resolver turns the name into a stream bound to the
/// connection): payload the name, reply a [`StreamInfo`].
pub(crate) const OPEN_ROUTE: &str = "pull.open";
/// Describes a stream by id: payload `u64` id, reply a [`StreamInfo`].
pub(crate) const INFO_ROUTE: &str = "pull.info";
/// Fetches one chunk: payload `u64` id, `u64` index; reply a [`ChunkHead`] and the data.
pub(crate) const CHUNK_ROUTE: &str = "pull.chunk";
/// Releases a stream before its end: payload `u64` id, reply the outcome byte alone.
pub(crate) const CLOSE_ROUTE: &str = "pull.close";

/// Bytes of an encoded [`StreamInfo`].
pub(crate) const INFO_LEN: usize = 28;
/// Bytes of a chunk reply before its data: outcome, flags, reserved, CRC32C.
pub(crate) const CHUNK_HEAD_LEN: usize = 8;

/// A stream's id: unique on its server while the stream is registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What a reader learns of a stream before its first chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamInfo {
    /// The stream's id.
    pub id: StreamId,
    /// Its length in bytes, when known up front (buffers and files; not producers).
    pub len: Option<u64>,
    /// Every chunk but the last carries this many bytes (a producer's chunks at most this
    /// many).
    pub chunk_size: u32,
    /// The CRC32C of the whole stream, when known up front.
    pub crc32c: Option<u32>,
    /// Whether chunks may be fetched in any order and again (buffers and files); a producer's
    /// chunks are fetched once each, in order.
    pub random_access: bool,
}

impl StreamInfo {
    /// How many chunks the stream has, when its length is known (an empty stream has one,
    /// empty, chunk).
    pub fn chunks(&self) -> Option<u64> {
        let len = self.len?;
        let size = u64::from(self.chunk_size.max(1));
        Some(len.div_ceil(size).max(1))
    }
}

const KNOWN_LEN: u8 = 1;
const KNOWN_CRC: u8 = 2;
const RANDOM_ACCESS: u8 = 4;
/// Chunk flag: the stream's last chunk.
const LAST: u8 = 1;

/// The head of a chunk reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkHead {
    /// The stream's last chunk.
    pub(crate) last: bool,
    /// CRC32C of the chunk's data.
    pub(crate) crc32c: u32,
}

/// Why the stream manager refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorCode {
    UnknownStream = 1,
    NotAllowed = 2,
    OutOfRange = 3,
    OutOfOrder = 4,
    NoSuchName = 5,
    Io = 6,
    TooManyStreams = 7,
    BadRequest = 8,
    ProducerFailed = 9,
}

impl ErrorCode {
    /// The code as a metrics label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::UnknownStream => "unknown_stream",
            Self::NotAllowed => "not_allowed",
            Self::OutOfRange => "out_of_range",
            Self::OutOfOrder => "out_of_order",
            Self::NoSuchName => "no_such_name",
            Self::Io => "io",
            Self::TooManyStreams => "too_many_streams",
            Self::BadRequest => "bad_request",
            Self::ProducerFailed => "producer_failed",
        }
    }

    fn from_wire(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::UnknownStream,
            2 => Self::NotAllowed,
            3 => Self::OutOfRange,
            4 => Self::OutOfOrder,
            5 => Self::NoSuchName,
            6 => Self::Io,
            7 => Self::TooManyStreams,
            8 => Self::BadRequest,
            9 => Self::ProducerFailed,
            _ => return None,
        })
    }
}

/// A refusal as the server sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

impl Refusal {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(1 + self.message.len());
        b.put_u8(self.code as u8);
        b.put_slice(self.message.as_bytes());
        b.freeze()
    }
}

/// A reply that is not one a stream manager sends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed pull reply: {0}")]
pub(crate) struct Malformed(pub(crate) String);

/// Splits a reply into its success body or its refusal.
pub(crate) fn outcome(mut reply: Bytes) -> Result<Result<Bytes, Refusal>, Malformed> {
    if reply.is_empty() {
        return Err(Malformed("an empty reply".into()));
    }
    let code = reply.get_u8();
    if code == 0 {
        return Ok(Ok(reply));
    }
    let code = ErrorCode::from_wire(code)
        .ok_or_else(|| Malformed(format!("unknown error code {code}")))?;
    Ok(Err(Refusal {
        code,
        message: String::from_utf8_lossy(&reply).into_owned(),
    }))
}

/// A success reply carrying `info`.
pub(crate) fn encode_info(info: &StreamInfo) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + INFO_LEN);
    b.put_u8(0);
    b.put_u64(info.id.0);
    b.put_u64(info.len.unwrap_or(0));
    b.put_u32(info.chunk_size);
    b.put_u32(info.crc32c.unwrap_or(0));
    let mut flags = 0;
    if info.len.is_some() {
        flags |= KNOWN_LEN;
    }
    if info.crc32c.is_some() {
        flags |= KNOWN_CRC;
    }
    if info.random_access {
        flags |= RANDOM_ACCESS;
    }
    b.put_u8(flags);
    b.put_bytes(0, 3);
    b.freeze()
}

/// The [`StreamInfo`] of a success body.
pub(crate) fn decode_info(mut body: Bytes) -> Result<StreamInfo, Malformed> {
    if body.len() != INFO_LEN {
        return Err(Malformed(format!(
            "stream info of {} bytes, not {INFO_LEN}",
            body.len()
        )));
    }
    let id = StreamId(body.get_u64());
    let len = body.get_u64();
    let chunk_size = body.get_u32();
    let crc = body.get_u32();
    let flags = body.get_u8();
    if chunk_size == 0 {
        return Err(Malformed("a chunk size of 0".into()));
    }
    Ok(StreamInfo {
        id,
        len: (flags & KNOWN_LEN != 0).then_some(len),
        chunk_size,
        crc32c: (flags & KNOWN_CRC != 0).then_some(crc),
        random_access: flags & RANDOM_ACCESS != 0,
    })
}

/// The payload of a request naming stream `id` (and, for chunks, an index).
pub(crate) fn encode_id(id: StreamId, index: Option<u64>) -> Bytes {
    let mut b = BytesMut::with_capacity(16);
    b.put_u64(id.0);
    if let Some(i) = index {
        b.put_u64(i);
    }
    b.freeze()
}

/// The stream id of an info or close request.
pub(crate) fn decode_id(mut payload: Bytes) -> Result<StreamId, Refusal> {
    if payload.len() != 8 {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("a stream id of {} bytes, not 8", payload.len()),
        ));
    }
    Ok(StreamId(payload.get_u64()))
}

/// The stream id and index of a chunk request.
pub(crate) fn decode_chunk_request(mut payload: Bytes) -> Result<(StreamId, u64), Refusal> {
    if payload.len() != 16 {
        return Err(Refusal::new(
            ErrorCode::BadRequest,
            format!("a chunk request of {} bytes, not 16", payload.len()),
        ));
    }
    Ok((StreamId(payload.get_u64()), payload.get_u64()))
}

/// The bytes of a chunk reply before its data.
pub(crate) fn encode_chunk_head(head: ChunkHead) -> Bytes {
    let mut b = BytesMut::with_capacity(CHUNK_HEAD_LEN);
    b.put_u8(0);
    b.put_u8(if head.last { LAST } else { 0 });
    b.put_u16(0);
    b.put_u32(head.crc32c);
    b.freeze()
}

/// A chunk's head and data, from a success body (the outcome byte already taken).
pub(crate) fn decode_chunk(mut body: Bytes) -> Result<(ChunkHead, Bytes), Malformed> {
    if body.len() < CHUNK_HEAD_LEN - 1 {
        return Err(Malformed(format!(
            "a chunk reply of {} bytes",
            body.len() + 1
        )));
    }
    let flags = body.get_u8();
    body.advance(2);
    let crc32c = body.get_u32();
    Ok((
        ChunkHead {
            last: flags & LAST != 0,
            crc32c,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn info_round_trips(id: u64, len: Option<u64>, size in 1u32.., crc: Option<u32>, random: bool) {
            let info = StreamInfo { id: StreamId(id), len, chunk_size: size, crc32c: crc, random_access: random };
            let body = outcome(encode_info(&info)).unwrap().unwrap();
            prop_assert_eq!(decode_info(body).unwrap(), info);
        }

        #[test]
        fn chunk_round_trips(last: bool, crc: u32, data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut reply = BytesMut::from(&encode_chunk_head(ChunkHead { last, crc32c: crc })[..]);
            reply.extend_from_slice(&data);
            let body = outcome(reply.freeze()).unwrap().unwrap();
            let (head, got) = decode_chunk(body).unwrap();
            prop_assert_eq!(head, ChunkHead { last, crc32c: crc });
            prop_assert_eq!(&got[..], &data[..]);
        }

        #[test]
        fn no_input_panics_a_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let b = Bytes::from(bytes);
            if let Ok(Ok(body)) = outcome(b.clone()) {
                let _ = decode_info(body.clone());
                let _ = decode_chunk(body);
            }
            let _ = decode_id(b.clone());
            let _ = decode_chunk_request(b);
        }
    }

    #[test]
    fn refusals_carry_their_code_and_message() {
        let r = Refusal::new(ErrorCode::NotAllowed, "not yours");
        assert_eq!(outcome(r.encode()).unwrap(), Err(r));
        assert!(
            outcome(Bytes::from_static(&[200, b'x'])).is_err(),
            "unknown code"
        );
        assert!(outcome(Bytes::new()).is_err());
    }

    #[test]
    fn chunk_counts_round_up_and_an_empty_stream_has_one() {
        let info = |len| StreamInfo {
            id: StreamId(1),
            len,
            chunk_size: 10,
            crc32c: None,
            random_access: true,
        };
        assert_eq!(info(Some(0)).chunks(), Some(1));
        assert_eq!(info(Some(10)).chunks(), Some(1));
        assert_eq!(info(Some(11)).chunks(), Some(2));
        assert_eq!(info(None).chunks(), None);
    }
}
