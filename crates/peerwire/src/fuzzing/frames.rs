//! The frame decoder fed a byte stream in fuzzer-chosen pieces.

use bytes::BytesMut;
use peerwire_wire::{FrameDecoder, Limits};

/// Decodes `data[2..]` as a frame stream. `data[0]` picks the piece size the bytes arrive in
/// (1 to 256) and `data[1]` whether handshake limits apply. Every decoded frame must encode
/// back to bytes that decode to the same frame.
pub fn frames(data: &[u8]) {
    let [piece, mode, stream @ ..] = data else {
        return;
    };
    let piece = usize::from(*piece) + 1;
    let limits = if mode & 1 == 1 {
        Limits::handshake()
    } else {
        Limits {
            max_body: 1 << 16,
            ..Limits::default()
        }
    };
    let mut decoder = FrameDecoder::new(limits);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(piece) {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut again = BytesMut::with_capacity(frame.encoded_len());
                    frame.encode(&mut again);
                    assert_eq!(again.len(), frame.encoded_len(), "encoded_len is exact");
                    let mut check = FrameDecoder::new(Limits {
                        max_body: u32::MAX,
                        ..Limits::default()
                    });
                    let back = check
                        .decode(&mut again)
                        .expect("a re-encoded frame decodes");
                    assert_eq!(back.as_ref(), Some(&frame), "frames round-trip");
                    assert!(again.is_empty(), "a frame re-encodes to exactly one frame");
                }
                Ok(None) => break,
                // A stream error ends the connection: nothing after it is read.
                Err(_) => return,
            }
        }
    }
}
