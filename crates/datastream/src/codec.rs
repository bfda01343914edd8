//! Payloads of the data-stream lane (pure). Packets themselves are `StreamData` frames
//! (`peerwire_wire::frame`); what travels inside requests and replies is encoded here.
//! All integers are big-endian.
//!
//! ## Open request (route `ds.open`)
//!
//! | offset | bytes | field      | description                                         |
//! |-------:|------:|------------|-----------------------------------------------------|
//! | 0      | 8     | wire id    | the sender's id for the stream on this connection   |
//! | 8      | 8     | client id  | with the stream id, names the stream everywhere      |
//! | 16     | 8     | stream id  |                                                     |
//! | 24     | 4     | header H   | length of the application header                    |
//! | 28     | H     | header     | opaque to peerwire, handed to the sink              |
//! | 28 + H | …     | routing    | the routing table ([`super::routing`])              |
//!
//! ## Abort request (route `ds.abort`)
//!
//! | offset | bytes | field   | description |
//! |-------:|------:|---------|-------------|
//! | 0      | 8     | wire id |             |
//!
//! ## Reply (the Response to an open, a packet or an abort)
//!
//! | offset | bytes | field   | description                      |
//! |-------:|------:|---------|----------------------------------|
//! | 0      | 1     | outcome | 0 = acknowledged, 1 = failed      |
//!
//! Acknowledged: every server of the sender's subtree and the stream bytes it holds.
//!
//! | offset | bytes  | field    | description            |
//! |-------:|-------:|----------|------------------------|
//! | 1      | 2      | count R  |                        |
//! | 3      | R × 16 | replicas | R × (node u64, bytes u64) |
//!
//! Failed: the stream failed, and which server failed it.
//!
//! | offset | bytes | field     | description                          |
//! |-------:|------:|-----------|--------------------------------------|
//! | 1      | 1     | kind      | [`FailureKind`] code                 |
//! | 2      | 8     | node      | the server that failed or found it   |
//! | 10     | 8     | offset    | stream offset of the failing packet  |
//! | 18     | 2     | length M  |                                      |
//! | 20     | M     | message   | UTF-8                                |

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::routing::{MAX_ROUTE_NODES, RoutingTable};

/// Route of the open request.
pub const OPEN: &str = "ds.open";
/// Route of the abort request.
pub const ABORT: &str = "ds.abort";

/// Names a stream on every server: the client that opened it and the client's number for it.
/// The application refers to a closed stream by it (for example in a raft log entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamRef {
    /// Random id of the client that opened the stream.
    pub client_id: u64,
    /// The client's number for the stream.
    pub stream_id: u64,
}

impl std::fmt::Display for StreamRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}-{}", self.client_id, self.stream_id)
    }
}

/// Why a stream failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// A packet's CRC32C did not match its bytes.
    Checksum,
    /// The sink (the application's storage) failed.
    Sink,
    /// A replica could not be reached, failed, or did not answer in time.
    Replica,
    /// A replica acknowledged a different byte count than the primary holds.
    Mismatch,
    /// A packet's offset is not where the stream is.
    OutOfOrder,
    /// The routing table was refused.
    Routing,
    /// A limit was reached (open streams, outstanding packets, packet size).
    Limit,
    /// The stream is not open on this server (never opened, or already cleaned up).
    UnknownStream,
    /// The stream was aborted: by its client, because it was idle too long, or because its
    /// owner went away.
    Aborted,
    /// A packet arrived after the stream's close.
    Closed,
    /// A request was malformed.
    Malformed,
    /// A code this version does not know.
    Other(u8),
}

impl FailureKind {
    fn to_wire(self) -> u8 {
        match self {
            Self::Checksum => 1,
            Self::Sink => 2,
            Self::Replica => 3,
            Self::Mismatch => 4,
            Self::OutOfOrder => 5,
            Self::Routing => 6,
            Self::Limit => 7,
            Self::UnknownStream => 8,
            Self::Aborted => 9,
            Self::Closed => 10,
            Self::Malformed => 11,
            Self::Other(code) => code,
        }
    }

    fn from_wire(code: u8) -> Self {
        match code {
            1 => Self::Checksum,
            2 => Self::Sink,
            3 => Self::Replica,
            4 => Self::Mismatch,
            5 => Self::OutOfOrder,
            6 => Self::Routing,
            7 => Self::Limit,
            8 => Self::UnknownStream,
            9 => Self::Aborted,
            10 => Self::Closed,
            11 => Self::Malformed,
            other => Self::Other(other),
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Checksum => f.write_str("checksum mismatch"),
            Self::Sink => f.write_str("sink failed"),
            Self::Replica => f.write_str("replica failed"),
            Self::Mismatch => f.write_str("replica byte count differs"),
            Self::OutOfOrder => f.write_str("packet out of order"),
            Self::Routing => f.write_str("routing table refused"),
            Self::Limit => f.write_str("limit reached"),
            Self::UnknownStream => f.write_str("unknown stream"),
            Self::Aborted => f.write_str("stream aborted"),
            Self::Closed => f.write_str("stream already closed"),
            Self::Malformed => f.write_str("malformed request"),
            Self::Other(code) => write!(f, "failure code {code}"),
        }
    }
}

/// How and where a stream failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at node {node} (stream offset {offset}): {message}")]
pub struct StreamFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// The server that failed, or that found the failure (for a replica that died, the
    /// replica).
    pub node: u64,
    /// Stream offset of the packet being handled.
    pub offset: u64,
    /// Details.
    pub message: String,
}

/// One server of a route and the stream bytes it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaBytes {
    /// The server.
    pub node: u64,
    /// Stream bytes written there (and synced, for a SYNC packet).
    pub bytes: u64,
}

/// A decoded reply.
pub type Reply = Result<Vec<ReplicaBytes>, StreamFailure>;

/// Largest failure message encoded.
const MAX_MESSAGE: usize = 2048;

/// The open request (route `ds.open`): the stream, its header and its route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    /// The sender's id for the stream on this connection (its packets' stream id).
    pub wire_id: u64,
    /// The stream's name on every server.
    pub stream: StreamRef,
    /// The application's header, for the sinks.
    pub header: Bytes,
    /// The route: primary and successors.
    pub routing: RoutingTable,
}

impl OpenRequest {
    /// The request's body.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(28 + self.header.len() + 64);
        buf.put_u64(self.wire_id);
        buf.put_u64(self.stream.client_id);
        buf.put_u64(self.stream.stream_id);
        buf.put_u32(self.header.len() as u32);
        buf.put_slice(&self.header);
        self.routing.encode(&mut buf);
        buf.freeze()
    }

    /// Reads a request's body, or the failure to answer it with.
    pub fn decode(mut src: Bytes) -> Result<Self, StreamFailure> {
        let malformed = |what: &str| StreamFailure {
            kind: FailureKind::Malformed,
            node: 0,
            offset: 0,
            message: format!("open request: {what}"),
        };
        if src.len() < 28 {
            return Err(malformed("shorter than 28 bytes"));
        }
        let wire_id = src.get_u64();
        let stream = StreamRef {
            client_id: src.get_u64(),
            stream_id: src.get_u64(),
        };
        let header_len = src.get_u32() as usize;
        if header_len > src.len() {
            return Err(malformed("header longer than the request"));
        }
        let header = src.split_to(header_len);
        let routing = RoutingTable::decode(&mut src).map_err(|e| StreamFailure {
            kind: FailureKind::Routing,
            node: 0,
            offset: 0,
            message: e.to_string(),
        })?;
        if src.has_remaining() {
            return Err(malformed("trailing bytes"));
        }
        Ok(Self {
            wire_id,
            stream,
            header,
            routing,
        })
    }
}

/// The body of an abort of stream `wire_id`.
pub fn encode_abort(wire_id: u64) -> Bytes {
    Bytes::copy_from_slice(&wire_id.to_be_bytes())
}

/// The stream id an abort body names.
pub fn decode_abort(src: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(src.try_into().ok()?))
}

/// The body of a reply (to an open, a packet or a close).
pub fn encode_reply(reply: &Reply) -> Bytes {
    let mut buf = BytesMut::new();
    match reply {
        Ok(replicas) => {
            buf.reserve(3 + 16 * replicas.len());
            buf.put_u8(0);
            buf.put_u16(replicas.len() as u16);
            for r in replicas {
                buf.put_u64(r.node);
                buf.put_u64(r.bytes);
            }
        }
        Err(f) => {
            let mut end = f.message.len().min(MAX_MESSAGE);
            while !f.message.is_char_boundary(end) {
                end -= 1;
            }
            let message = &f.message[..end];
            buf.reserve(20 + message.len());
            buf.put_u8(1);
            buf.put_u8(f.kind.to_wire());
            buf.put_u64(f.node);
            buf.put_u64(f.offset);
            buf.put_u16(message.len() as u16);
            buf.put_slice(message.as_bytes());
        }
    }
    buf.freeze()
}

/// Decodes a reply; `None` if it is malformed.
/// Reads a reply's body.
pub fn decode_reply(mut src: &[u8]) -> Option<Reply> {
    if src.is_empty() {
        return None;
    }
    match src.get_u8() {
        0 => {
            if src.len() < 2 {
                return None;
            }
            let count = usize::from(src.get_u16());
            if count > MAX_ROUTE_NODES || src.len() != 16 * count {
                return None;
            }
            Some(Ok((0..count)
                .map(|_| ReplicaBytes {
                    node: src.get_u64(),
                    bytes: src.get_u64(),
                })
                .collect()))
        }
        1 => {
            if src.len() < 19 {
                return None;
            }
            let kind = FailureKind::from_wire(src.get_u8());
            let node = src.get_u64();
            let offset = src.get_u64();
            let len = usize::from(src.get_u16());
            if src.len() != len {
                return None;
            }
            let message = String::from_utf8_lossy(src).into_owned();
            Some(Err(StreamFailure {
                kind,
                node,
                offset,
                message,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_round_trips_and_truncations_are_refused() {
        let open = OpenRequest {
            wire_id: 9,
            stream: StreamRef {
                client_id: 0xabc,
                stream_id: 4,
            },
            header: Bytes::from_static(b"file.bin"),
            routing: RoutingTable::star(1, &[2, 3]).unwrap(),
        };
        let bytes = open.encode();
        assert_eq!(OpenRequest::decode(bytes.clone()).unwrap(), open);
        for cut in 0..bytes.len() {
            assert!(
                OpenRequest::decode(bytes.slice(..cut)).is_err(),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn a_bad_table_in_an_open_is_a_routing_failure() {
        let mut buf = BytesMut::new();
        buf.put_u64(1);
        buf.put_u64(2);
        buf.put_u64(3);
        buf.put_u32(0);
        // primary 1, one entry 1 → [1]
        buf.put_u64(1);
        buf.put_u16(1);
        buf.put_u64(1);
        buf.put_u16(1);
        buf.put_u64(1);
        let err = OpenRequest::decode(buf.freeze()).unwrap_err();
        assert_eq!(err.kind, FailureKind::Routing);
        assert!(err.message.contains("cycle"), "{}", err.message);
    }

    #[test]
    fn abort_round_trips() {
        assert_eq!(decode_abort(&encode_abort(77)), Some(77));
        assert_eq!(decode_abort(b"short"), None);
    }

    proptest! {
        #[test]
        fn replies_round_trip(
            replicas in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..10),
            failed in any::<bool>(),
            kind in 1u8..=11,
            node in any::<u64>(),
            offset in any::<u64>(),
            message in "[a-z é]{0,100}",
        ) {
            let reply: Reply = if failed {
                Err(StreamFailure { kind: FailureKind::from_wire(kind), node, offset, message })
            } else {
                Ok(replicas.into_iter().map(|(node, bytes)| ReplicaBytes { node, bytes }).collect())
            };
            prop_assert_eq!(decode_reply(&encode_reply(&reply)), Some(reply));
        }

        #[test]
        fn garbage_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_reply(&bytes);
            let _ = OpenRequest::decode(Bytes::from(bytes));
        }
    }
}
