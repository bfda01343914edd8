//! A raft lane's batch body, decoded as raft-rs messages the way the inbound side does.

use bytes::{Bytes, BytesMut};
use raft::eraftpb::Message;

use crate::raft::RaftMessage;
use crate::raft::batch;

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
        let mut again = BytesMut::new();
        msg.encode(&mut again);
        let back = Message::decode(again.freeze()).expect("a re-encoded message decodes");
        assert_eq!(back, msg, "raft messages round-trip");
        let _ = msg.kind();
        decoded.push(msg);
    }
    let mut body = BytesMut::new();
    for msg in &decoded {
        batch::push(&mut body, msg);
    }
    let back: Vec<Message> = batch::split(body.freeze())
        .map(|piece| Message::decode(piece.expect("a built batch splits")).expect("decodes"))
        .collect();
    assert_eq!(
        back, decoded,
        "a rebuilt batch splits into the same messages"
    );
}
