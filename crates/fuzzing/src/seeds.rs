//! Valid inputs for each target: the starting corpus for `cargo fuzz` and the seeds the smoke
//! test mutates. Each exercises the path past the first check, so mutations explore the
//! decoders' depths rather than their first length test.

use bytes::{BufMut, Bytes, BytesMut};
use peerwire_wire::{
    Failure, Frame, GoAway, GoAwayReason, Heartbeat, Hello, Lane, MIN_PROTOCOL_VERSION, OneWay,
    PROTOCOL_VERSION, Request, Response, Status, StreamData, StreamFlags,
};
use raft::eraftpb::{Entry, Message, MessageType};

use peerwire_datastream::codec::{OpenRequest, encode_abort, encode_reply};
use peerwire_datastream::{FailureKind, ReplicaBytes, RoutingTable, StreamFailure, StreamRef};
use peerwire_raft::RaftMessage;
use peerwire_raft::batch;

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The targets, by name, with their entry points.
pub const TARGETS: &[(&str, Target)] = &[
    ("frames", super::frames),
    ("handshake", super::handshake),
    ("raft_batch", super::raft_batch),
    ("datastream_packets", super::datastream_packets),
    ("connection", |data| drop(super::connection(data))),
];

/// Valid inputs for the target named `target` (empty for an unknown name).
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "frames" => [0u8, 7, 255]
            .iter()
            .map(|piece| prefixed(&[*piece, 0], &encode_all(&sample_frames())))
            .chain([prefixed(
                &[3, 1],
                &encode_all(&[Frame::Hello(hello(Lane::Rpc))]),
            )])
            .collect(),
        "handshake" => vec![
            prefixed(&[0], &encode_all(&[Frame::Hello(hello(Lane::RaftMessage))])),
            prefixed(&[1], &encode_all(&[Frame::HelloAck(hello(Lane::Rpc))])),
            prefixed(&[1], &encode_all(&[goaway()])),
            // Secret mode: a valid opening (the node accepts it), and a refusal as the answer.
            prefixed(&[0x80], &peerwire::fuzzing::secret_opening()),
            prefixed(&[0x81], b"R\x00\x05nope!"),
        ],
        "raft_batch" => vec![raft_body().to_vec()],
        "datastream_packets" => vec![
            prefixed(&[0], &open_request().encode()),
            prefixed(
                &[1],
                &encode_reply(&Ok(vec![ReplicaBytes { node: 2, bytes: 9 }])),
            ),
            prefixed(
                &[1],
                &encode_reply(&Err(StreamFailure {
                    kind: FailureKind::Checksum,
                    node: 3,
                    offset: 10,
                    message: "bad".into(),
                })),
            ),
            prefixed(&[2], &encode_abort(5)),
        ],
        "connection" => connection_seeds(),
        _ => Vec::new(),
    }
}

fn prefixed(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = head.to_vec();
    v.extend_from_slice(body);
    v
}

fn encode_all(frames: &[Frame]) -> Bytes {
    let mut buf = BytesMut::new();
    for f in frames {
        f.encode(&mut buf);
    }
    buf.freeze()
}

fn hello(lane: Lane) -> Hello {
    Hello {
        min_version: MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        lane,
        group: 0,
        cluster_id: 0xC1,
        node_id: 2,
        target_node_id: 1,
        epoch: 1,
        max_frame_body: 1 << 20,
        max_message: 1 << 20,
    }
}

fn goaway() -> Frame {
    Frame::GoAway(GoAway {
        last_request_id: 3,
        reason: GoAwayReason::ClusterMismatch,
        message: "other cluster".into(),
    })
}

fn request(id: u64, route: &'static str, payload: Bytes) -> Frame {
    Frame::Request(Request {
        id,
        deadline_ms: 1000,
        route: Bytes::from_static(route.as_bytes()),
        context: Bytes::new(),
        payload,
    })
}

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Hello(hello(Lane::Rpc)),
        request(1, "echo", Bytes::from_static(b"hello")),
        Frame::Response(Response {
            id: 1,
            payload: Bytes::from_static(b"hello"),
        }),
        Frame::Failure(Failure {
            id: 2,
            status: Status::Busy,
            retry_after_ms: 5,
            message: "queue full".into(),
        }),
        Frame::OneWay(OneWay {
            id: 3,
            route: Bytes::from_static(b"note"),
            payload: Bytes::from_static(b"x"),
        }),
        Frame::Heartbeat(Heartbeat {
            nonce: 7,
            ack: false,
            timestamp_us: 1,
        }),
        stream_data(4, 5, 0, b"abc", StreamFlags::SYNC),
        goaway(),
    ]
}

fn stream_data(id: u64, wire_id: u64, offset: u64, data: &[u8], flags: StreamFlags) -> Frame {
    Frame::StreamData(StreamData {
        id,
        stream_id: wire_id,
        flags,
        offset,
        checksum: crc32c::crc32c(data),
        payload: Bytes::copy_from_slice(data),
    })
}

fn raft_messages() -> Vec<Message> {
    let mut append = Message::default();
    append.set_msg_type(MessageType::MsgAppend);
    append.from = 2;
    append.to = 1;
    append.term = 3;
    append.log_term = 3;
    append.index = 10;
    append.commit = 9;
    append.entries = (11..13)
        .map(|index| Entry {
            index,
            term: 3,
            data: Bytes::from_static(b"put k v"),
            ..Entry::default()
        })
        .collect::<Vec<_>>()
        .into();
    let mut heartbeat = Message::default();
    heartbeat.set_msg_type(MessageType::MsgHeartbeat);
    heartbeat.from = 2;
    heartbeat.to = 1;
    heartbeat.term = 3;
    heartbeat.context = Bytes::from_static(b"ctx");
    vec![append, heartbeat]
}

fn raft_body() -> Bytes {
    let mut body = BytesMut::new();
    for m in raft_messages() {
        batch::push(&mut body, &m);
    }
    body.freeze()
}

fn snapshot_begin() -> Bytes {
    let mut snap = Message::default();
    snap.set_msg_type(MessageType::MsgSnapshot);
    snap.from = 2;
    snap.to = 1;
    snap.term = 3;
    let mut out = BytesMut::new();
    out.put_u64_le(6);
    snap.encode(&mut out);
    out.freeze()
}

fn open_request() -> OpenRequest {
    OpenRequest {
        wire_id: 5,
        stream: StreamRef {
            client_id: 2,
            stream_id: 9,
        },
        header: Bytes::from_static(b"blob"),
        routing: RoutingTable::single(1),
    }
}

fn connection_seeds() -> Vec<Vec<u8>> {
    // Bit 0 of the first byte: the target writes a valid hello for lane `byte >> 1` first.
    let with_hello =
        |lane: u8, frames: Vec<Frame>| prefixed(&[lane << 1 | 1], &encode_all(&frames));
    let raft_oneway = Frame::OneWay(OneWay {
        id: 1,
        route: Bytes::from_static(b"raft.batch"),
        payload: raft_body(),
    });
    let mut pipe = BytesMut::new();
    raft_messages()[0].encode(&mut pipe);
    vec![
        with_hello(
            0,
            vec![
                request(1, "echo", Bytes::from_static(b"hi")),
                request(2, "nowhere", Bytes::new()),
                Frame::Heartbeat(Heartbeat {
                    nonce: 1,
                    ack: false,
                    timestamp_us: 5,
                }),
                goaway(),
            ],
        ),
        with_hello(1, vec![raft_oneway.clone()]),
        with_hello(2, vec![raft_oneway]),
        with_hello(3, vec![request(1, "raft.pipe", pipe.freeze())]),
        with_hello(
            4,
            vec![
                request(1, "raft.snap.begin", snapshot_begin()),
                request(2, "raft.snap.chunk", Bytes::from_static(b"abcdef")),
                request(3, "raft.snap.end", Bytes::new()),
            ],
        ),
        with_hello(
            5,
            vec![
                request(1, "ds.open", open_request().encode()),
                stream_data(2, 5, 0, b"abc", StreamFlags::NONE),
                stream_data(3, 5, 3, b"def", StreamFlags::ALL),
            ],
        ),
        with_hello(
            6,
            vec![
                request(1, "pull.open", Bytes::from_static(b"x")),
                request(
                    2,
                    "pull.chunk",
                    Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 1]),
                ),
                request(3, "pull.info", Bytes::from_static(b"short")),
                request(
                    4,
                    "pull.close",
                    Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 9]),
                ),
            ],
        ),
        // No hello: the raw bytes are the whole conversation.
        prefixed(&[0], &encode_all(&[Frame::Hello(hello(Lane::Rpc))])),
    ]
}
