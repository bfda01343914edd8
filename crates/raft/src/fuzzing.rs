//! A raft lane's batch body, decoded as raft-rs messages the way the inbound side does.

use bytes::{Bytes, BytesMut};
use raft::eraftpb::Message;

use crate::RaftMessage;
use crate::batch;

/// Splits `data` as a batch body and decodes each piece as a raft-rs message. Each decoded
/// message must encode (compact or protobuf) to bytes that decode to the same message, and a
/// batch rebuilt from the decoded messages must split back into them.
pub fn raft_batch(data: &[u8]) {
    let mut decoded = Vec::new();
    for piece in batch::split(Bytes::copy_from_slice(data)) {
        let Ok(piece) = piece else {
            // A malformed batch is refused whole by the lane; nothing after it is read.
            break;
        };
        let Ok(msg) = Message::decode(piece) else {
            continue;
        };
        // protobuf regroups the unknown fields of repeated embedded messages when it encodes
        // again (found by this target): the first re-encoding may differ in them, so the
        // oracle is that what it decodes to is a fixed point, and that the fields the
        // transport reads survive.
        let back = round_trip(&msg);
        assert_eq!(
            (back.kind(), back.from(), back.to(), back.entries.len()),
            (msg.kind(), msg.from(), msg.to(), msg.entries.len()),
            "the fields the transport reads round-trip"
        );
        assert_eq!(
            round_trip(&back),
            back,
            "a re-encoded message is a fixed point"
        );
        decoded.push(back);
    }
    let mut body = BytesMut::new();
    for msg in &decoded {
        batch::push(&mut body, msg);
    }
    let rebuilt: Vec<Message> = batch::split(body.freeze())
        .map(|piece| Message::decode(piece.expect("a built batch splits")).expect("decodes"))
        .collect();
    assert_eq!(
        rebuilt, decoded,
        "a rebuilt batch splits into the same messages"
    );
}

fn round_trip(msg: &Message) -> Message {
    let mut out = BytesMut::new();
    msg.encode(&mut out);
    Message::decode(out.freeze()).expect("a re-encoded message decodes")
}
