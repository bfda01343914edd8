//! Frame types and the layout of each frame body.
//!
//! Every frame is a 16-byte [header](crate::header) followed by `length` body bytes. All
//! integers are big-endian. Offsets below are relative to the start of the body.
//!
//! ## Hello / HelloAck (kinds 0x01, 0x02; header id 0; body ≥ 44 bytes, 56 in version 2, 64 from version 3)
//!
//! | offset | bytes | field            | description                                            |
//! |-------:|------:|------------------|--------------------------------------------------------|
//! | 0      | 4     | magic            | ASCII `PWIR`                                           |
//! | 4      | 2     | min version      | lowest protocol version the sender speaks; in an ack, the version the connection runs at |
//! | 6      | 1     | lane             | [`Lane`] code                                          |
//! | 7      | 1     | reserved         | zero                                                   |
//! | 8      | 8     | cluster id       | both sides must agree                                  |
//! | 16     | 8     | node id          | the sender's node id (0 = anonymous client)            |
//! | 24     | 8     | target node id   | the node the sender expects to reach (0 = any)         |
//! | 32     | 8     | epoch            | the sender's incarnation (grows on every restart)      |
//! | 40     | 4     | max frame body   | the largest body the sender accepts                    |
//! | 44     | 2     | max version      | highest version the sender speaks (absent: = min version) |
//! | 46     | 2     | reserved         | zero (ignored on receipt)                              |
//! | 48     | 8     | group            | the group of the lane's service the sender wants (absent: 0) |
//! | 56     | 8     | max message      | the largest message payload the sender accepts, in parts (absent: = max frame body) |
//! | 64     | …     | extensions       | ignored (room for later versions)                      |
//!
//! A version-1 peer sends and reads only the first 44 bytes; it checks that the min version is
//! 1, so a node speaking versions 1 to 2 puts 1 there and is understood by it. A 44-byte hello
//! is read as the range `[min, min]` and group 0.
//!
//! Requests, responses and one-way messages larger than one frame travel in parts from version
//! 3 on: the first frame has flag `0x80` (more) and the message length after its fixed fields;
//! continuation frames (kind 0x0B) carry the rest. See [`crate::fragment`].
//!
//! ## Request (kind 0x03; header id = request id, non-zero)
//!
//! | offset | bytes | field       | description                                          |
//! |-------:|------:|-------------|------------------------------------------------------|
//! | 0      | 4     | deadline_ms | time budget left for the call in ms (0 = none)       |
//! | 4      | 2     | route_len R | length of the route name                             |
//! | 6      | R     | route       | route name bytes (UTF-8 by convention)               |
//! | 6 + R  | …     | payload     | the rest of the body                                 |
//!
//! With flag `0x40` (context, version 4) a context block sits between the route and the
//! payload ([`crate::context`]):
//!
//! | offset | bytes | field         | description                                        |
//! |-------:|------:|---------------|----------------------------------------------------|
//! | 6 + R  | 2     | context_len C | length of the context block                        |
//! | 8 + R  | C     | context       | key/value entries                                  |
//! | 8 + R + C | …  | payload       | the rest of the body                               |
//!
//! ## Response (kind 0x04; header id = request id) — the body is the payload.
//!
//! ## Failure (kind 0x05; header id = request id)
//!
//! | offset | bytes | field          | description                                 |
//! |-------:|------:|----------------|---------------------------------------------|
//! | 0      | 2     | status         | [`Status`] code                             |
//! | 2      | 4     | retry_after_ms | backoff hint for busy callers (0 = none)    |
//! | 6      | 2     | message_len M  |                                             |
//! | 8      | M     | message        | UTF-8 text naming the cause                 |
//!
//! ## OneWay (kind 0x06; header id = 0 or a sender sequence number)
//!
//! | offset | bytes | field       | description                  |
//! |-------:|------:|-------------|------------------------------|
//! | 0      | 2     | route_len R |                              |
//! | 2      | R     | route       |                              |
//! | 2 + R  | …     | payload     | the rest of the body         |
//!
//! ## Cancel (kind 0x07; header id = request id; empty body)
//!
//! ## Heartbeat (kind 0x08; header id = nonce; flag 0x01 = ack; body 8 bytes)
//!
//! | offset | bytes | field        | description                                           |
//! |-------:|------:|--------------|-------------------------------------------------------|
//! | 0      | 8     | timestamp_us | the pinger's clock; an ack echoes the ping's value    |
//!
//! ## GoAway (kind 0x09; header id = the last request id the sender accepted)
//!
//! Requests with a larger id were not executed and are safe to retry elsewhere.
//!
//! | offset | bytes | field         | description           |
//! |-------:|------:|---------------|-----------------------|
//! | 0      | 2     | reason        | [`GoAwayReason`] code |
//! | 2      | 2     | message_len M |                       |
//! | 4      | M     | message       | UTF-8 text            |
//!
//! ## StreamData (kind 0x0A; header id = request id, non-zero; flags 0x01 = SYNC, 0x02 = CLOSE)
//!
//! A packet of a bulk data stream. It is a request: the receiver answers it with a
//! Response (the acknowledgement) or a Failure carrying the same id, so packets share the
//! in-flight limit, deadlines and loss reporting of calls.
//!
//! | offset | bytes | field     | description                                           |
//! |-------:|------:|-----------|-------------------------------------------------------|
//! | 0      | 8     | stream id | the sender's id for the stream on this connection     |
//! | 8      | 8     | offset    | stream bytes that precede this packet                 |
//! | 16     | 4     | checksum  | CRC32C of the payload (checked by the stream layer)   |
//! | 20     | …     | payload   | the rest of the body                                  |

use bytes::Bytes;

use crate::{GoAwayReason, Lane, Status};

/// The four bytes every hello starts with.
pub const HELLO_MAGIC: [u8; 4] = *b"PWIR";

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Connection opening.
    Hello(Hello),
    /// Acceptance of a hello.
    HelloAck(Hello),
    /// A call expecting one reply.
    Request(Request),
    /// The successful reply to a request.
    Response(Response),
    /// The failed reply to a request.
    Failure(Failure),
    /// A message without reply.
    OneWay(OneWay),
    /// Cancellation of an outstanding request.
    Cancel {
        /// The request being cancelled.
        id: u64,
    },
    /// Liveness probe or acknowledgement.
    Heartbeat(Heartbeat),
    /// Connection close with a reason.
    GoAway(GoAway),
    /// A bulk data stream packet.
    StreamData(StreamData),
}

/// Hello and hello-ack body: who is talking, on which lane and group, in which cluster, and
/// which protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The lowest protocol version the sender speaks. In an ack: the version the connection
    /// runs at (and `max_version` equals it).
    pub min_version: u16,
    /// The highest protocol version the sender speaks.
    pub max_version: u16,
    /// Kind of traffic this connection will carry: which mounted service it is for.
    pub lane: Lane,
    /// Which group of the lane's service the connection is for (a raft group, a data-stream
    /// group); 0 is the default group.
    pub group: u64,
    /// Cluster the sender belongs to.
    pub cluster_id: u64,
    /// The sender's node id (0 = anonymous client).
    pub node_id: u64,
    /// The node the sender expects to reach (0 = any).
    pub target_node_id: u64,
    /// The sender's incarnation number.
    pub epoch: u64,
    /// The largest frame body the sender accepts.
    pub max_frame_body: u32,
    /// The largest message payload the sender accepts, in parts (version 3). Read from an
    /// older hello as `max_frame_body`.
    pub max_message: u64,
}

impl Hello {
    /// Body length of a hello as this crate writes it (version 3 layout).
    pub const LEN: u32 = 64;
    /// Body length of a version-2 hello.
    pub const V2_LEN: u32 = 56;
    /// Body length of a version-1 hello: the shortest hello accepted.
    pub const V1_LEN: u32 = 44;

    /// The versions the sender speaks, lowest and highest.
    pub fn versions(&self) -> std::ops::RangeInclusive<u16> {
        self.min_version..=self.max_version
    }
}

/// A request frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request id, unique among the sender's outstanding requests on this connection.
    pub id: u64,
    /// Time budget left for the call in milliseconds (0 = none).
    pub deadline_ms: u32,
    /// Route name.
    pub route: Bytes,
    /// The encoded context block ([`crate::context`]; version 4), empty for none: sent with
    /// flag [`CONTEXT`](crate::context::CONTEXT) after the route.
    pub context: Bytes,
    /// Request payload.
    pub payload: Bytes,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request this answers.
    pub id: u64,
    /// Reply payload.
    pub payload: Bytes,
}

/// A failed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The request this answers.
    pub id: u64,
    /// Why the call failed.
    pub status: Status,
    /// Backoff hint in milliseconds for busy callers (0 = none).
    pub retry_after_ms: u32,
    /// Human-readable cause.
    pub message: String,
}

/// A one-way message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneWay {
    /// Optional sender sequence number (0 = none).
    pub id: u64,
    /// Route name.
    pub route: Bytes,
    /// Message payload.
    pub payload: Bytes,
}

/// A heartbeat (ping) or its acknowledgement (pong).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// Nonce chosen by the pinger; the ack carries the same value.
    pub nonce: u64,
    /// `true` for the acknowledgement.
    pub ack: bool,
    /// The pinger's clock in microseconds; the ack echoes it so the pinger can compute RTT.
    pub timestamp_us: u64,
}

impl Heartbeat {
    /// Header flag marking an acknowledgement.
    pub const FLAG_ACK: u8 = 0x01;
    /// Body length.
    pub const LEN: u32 = 8;
}

/// The sender is closing the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The last request id the sender accepted; later ones were not executed.
    pub last_request_id: u64,
    /// Why.
    pub reason: GoAwayReason,
    /// Human-readable detail naming the limit or setting involved.
    pub message: String,
}

/// Flags of a [`StreamData`] packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct StreamFlags(u8);

impl StreamFlags {
    /// No flags: an ordinary packet.
    pub const NONE: Self = Self(0);
    /// The receiver must sync the data to stable storage before acknowledging.
    pub const SYNC: Self = Self(0x01);
    /// The last packet of the stream.
    pub const CLOSE: Self = Self(0x02);
    /// All defined flags.
    pub const ALL: Self = Self(0x03);

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from raw bits, dropping undefined ones.
    pub fn from_bits_truncate(bits: u8) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// Whether every flag in `other` is set.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for StreamFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

/// A packet of a bulk data stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamData {
    /// Request id (non-zero); the acknowledgement carries it.
    pub id: u64,
    /// Stream id.
    pub stream_id: u64,
    /// Packet flags.
    pub flags: StreamFlags,
    /// Stream bytes that precede this packet.
    pub offset: u64,
    /// CRC32C of the payload.
    pub checksum: u32,
    /// Packet bytes.
    pub payload: Bytes,
}

impl StreamData {
    /// Bytes of the fixed fields before the payload.
    pub const HEAD_LEN: u32 = 20;
}

impl Frame {
    /// The frame's kind.
    pub fn kind(&self) -> crate::FrameKind {
        use crate::FrameKind as K;
        match self {
            Self::Hello(_) => K::Hello,
            Self::HelloAck(_) => K::HelloAck,
            Self::Request(_) => K::Request,
            Self::Response(_) => K::Response,
            Self::Failure(_) => K::Failure,
            Self::OneWay(_) => K::OneWay,
            Self::Cancel { .. } => K::Cancel,
            Self::Heartbeat(_) => K::Heartbeat,
            Self::GoAway(_) => K::GoAway,
            Self::StreamData(_) => K::StreamData,
        }
    }
}
