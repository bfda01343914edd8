//! The data stream's packets: open requests (with their routing tables), replies, aborts.

use bytes::Bytes;

use crate::codec::{OpenRequest, decode_abort, decode_reply, encode_abort, encode_reply};

/// Decodes `data[1..]` as the packet `data[0]` picks (open request, reply, abort). What
/// decodes must encode back to something that decodes to the same value.
pub fn datastream_packets(data: &[u8]) {
    let [which, packet @ ..] = data else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(open) = OpenRequest::decode(Bytes::copy_from_slice(packet)) {
                let back = OpenRequest::decode(open.encode()).expect("a re-encoded open decodes");
                assert_eq!(back, open, "open requests round-trip");
            }
        }
        1 => {
            if let Some(reply) = decode_reply(packet) {
                let again = encode_reply(&reply);
                let back = decode_reply(&again).expect("a re-encoded reply decodes");
                match (&back, &reply) {
                    // Messages are cut at 2 KiB on encode; compare the rest.
                    (Err(b), Err(r)) => {
                        assert_eq!((b.kind, b.node, b.offset), (r.kind, r.node, r.offset));
                        assert!(r.message.starts_with(&b.message), "a message is only cut");
                    }
                    _ => assert_eq!(back, reply, "replies round-trip"),
                }
            }
        }
        _ => {
            if let Some(id) = decode_abort(packet) {
                assert_eq!(decode_abort(&encode_abort(id)), Some(id));
            }
        }
    }
}
