//! Messages in parts (version 3): split by `Fragments`, put back together by the decoder,
//! interleaved with other frames, refused alone when over the limit, and every breach of the
//! rules a protocol error.

use bytes::{BufMut, Bytes, BytesMut};
use peerwire_wire::fragment::{Fragments, MORE, REPLY};
use peerwire_wire::{
    Frame, FrameDecoder, FrameKind, Header, Limits, OneWay, Refused, Request, Response, WireError,
};
use proptest::prelude::*;

fn payload(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn request(id: u64, len: usize) -> Frame {
    Frame::Request(Request {
        id,
        deadline_ms: 900,
        route: Bytes::from_static(b"bulk"),
        context: Bytes::new(),
        payload: payload(len, id as u8),
    })
}

/// The frames of `frame` in parts of `part` bytes, each frame as its own buffer.
fn split(frame: &Frame, part: usize) -> Vec<BytesMut> {
    let mut frames = Vec::new();
    let mut first = BytesMut::new();
    let mut parts = Fragments::start(frame, part, &mut first).expect("a message");
    frames.push(first);
    loop {
        let mut next = BytesMut::new();
        let Some(bytes) = parts.next_part(&mut next) else {
            break;
        };
        next.extend_from_slice(&bytes);
        frames.push(next);
    }
    frames
}

fn encoded(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    buf
}

fn decode_all(dec: &mut FrameDecoder, buf: &mut BytesMut) -> Vec<Frame> {
    std::iter::from_fn(|| dec.decode(buf).unwrap()).collect()
}

#[test]
fn a_message_in_parts_comes_out_whole() {
    for frame in [
        request(5, 10_000),
        Frame::Response(Response {
            id: 5,
            payload: payload(10_000, 1),
        }),
        Frame::OneWay(OneWay {
            id: 9,
            route: Bytes::from_static(b"raft.batch"),
            payload: payload(4097, 2),
        }),
        // A request with a context (version 4): the block rides in the first frame.
        Frame::Request(Request {
            id: 6,
            deadline_ms: 900,
            route: Bytes::from_static(b"bulk"),
            context: peerwire_wire::Context::from_entries(
                [(
                    "traceparent",
                    &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..],
                )],
                4096,
            )
            .unwrap()
            .as_bytes()
            .clone(),
            payload: payload(10_000, 6),
        }),
    ] {
        let frames = split(&frame, 4096);
        assert!(frames.len() >= 3, "a first frame and at least two parts");
        let mut wire = BytesMut::new();
        for f in frames {
            wire.extend_from_slice(&f);
        }
        let mut dec = FrameDecoder::new(Limits::default());
        assert_eq!(decode_all(&mut dec, &mut wire), vec![frame]);
        assert!(!dec.assembling());
    }
}

#[test]
fn other_frames_pass_between_the_parts_of_a_call_and_of_a_reply() {
    let big_call = request(1, 9_000);
    let big_reply = Frame::Response(Response {
        id: 1,
        payload: payload(9_000, 7),
    });
    let small = request(2, 10);
    let call_parts = split(&big_call, 1000);
    let reply_parts = split(&big_reply, 1000);
    let mut wire = BytesMut::new();
    // Alternate the two messages' frames, with a small call after every pair.
    for i in 0..call_parts.len().max(reply_parts.len()) {
        if let Some(p) = call_parts.get(i) {
            wire.extend_from_slice(p);
        }
        if let Some(p) = reply_parts.get(i) {
            wire.extend_from_slice(p);
        }
        wire.extend_from_slice(&encoded(&small));
    }
    let out = decode_all(&mut FrameDecoder::new(Limits::default()), &mut wire);
    let smalls = out.iter().filter(|f| **f == small).count();
    assert_eq!(smalls, call_parts.len().max(reply_parts.len()));
    assert!(out.contains(&big_call));
    assert!(out.contains(&big_reply));
    assert_eq!(out.len(), smalls + 2);
}

#[test]
fn a_message_over_the_limit_is_refused_alone_and_its_parts_are_dropped() {
    let limits = Limits {
        max_payload: 5_000,
        ..Limits::default()
    };
    let mut dec = FrameDecoder::new(limits);
    let too_big = request(3, 6_000);
    let fits = request(4, 4_000);
    let mut wire = BytesMut::new();
    for f in split(&too_big, 1024) {
        wire.extend_from_slice(&f);
    }
    for f in split(&fits, 1024) {
        wire.extend_from_slice(&f);
    }
    assert_eq!(dec.decode(&mut wire).unwrap(), None);
    assert_eq!(
        dec.take_refused(),
        Some(Refused {
            kind: FrameKind::Request,
            id: 3,
            route: Bytes::from_static(b"bulk"),
            len: 6_000,
            limit: 5_000,
        })
    );
    // The refused message's parts are skipped; the next one decodes.
    assert_eq!(dec.decode(&mut wire).unwrap(), Some(fits));
    assert_eq!(dec.take_refused(), None);
    assert!(wire.is_empty());
}

#[test]
fn parts_can_be_received_straight_into_the_message() {
    let frame = request(8, 100_000);
    let mut src: Vec<u8> = Vec::new();
    for f in split(&frame, 30_000) {
        src.extend_from_slice(&f);
    }
    let mut dec = FrameDecoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut at = 0;
    let mut direct = 0;
    let out = loop {
        if let Some(frame) = dec.decode(&mut buf).unwrap() {
            break frame;
        }
        // What a reader does: parts straight into the message, everything else through the
        // read buffer, never reading past what the decoder needs while a message is open.
        if buf.is_empty()
            && let Some((target, want)) = dec.direct()
        {
            let n = want.min(7_000).min(src.len() - at);
            target.put_slice(&src[at..at + n]);
            at += n;
            direct += n;
            dec.filled(n);
            continue;
        }
        let n = if dec.assembling() {
            dec.needed(buf.len()).min(src.len() - at)
        } else {
            (src.len() - at).min(5)
        };
        buf.put_slice(&src[at..at + n]);
        at += n;
    };
    assert_eq!(out, frame);
    assert_eq!(
        direct, 100_000,
        "every payload byte went straight to the message"
    );
    assert_eq!(at, src.len());
}

#[test]
fn a_dropped_message_s_buffer_is_reused_for_the_next_and_a_held_one_is_not() {
    let mut dec = FrameDecoder::new(Limits::default());
    let decode_one = |dec: &mut FrameDecoder, frame: &Frame| {
        let mut wire = BytesMut::new();
        for f in split(frame, 4096) {
            wire.extend_from_slice(&f);
        }
        let Some(Frame::Request(r)) = dec.decode(&mut wire).unwrap() else {
            panic!("not a request");
        };
        r.payload
    };
    let first = decode_one(&mut dec, &request(1, 50_000));
    let at = first.as_ptr();
    drop(first);
    let second = decode_one(&mut dec, &request(2, 40_000));
    assert_eq!(
        second.as_ptr(),
        at,
        "the dropped message's buffer is reused"
    );
    // Held: the next message gets a buffer of its own, and the held one is intact.
    let third = decode_one(&mut dec, &request(3, 40_000));
    assert_ne!(third.as_ptr(), second.as_ptr());
    assert_eq!(second, payload(40_000, 2));
    assert_eq!(third, payload(40_000, 3));
}

fn continuation(id: u64, flags: u8, body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    Header {
        length: body.len() as u32,
        kind: FrameKind::Continuation,
        flags,
        id,
    }
    .write(&mut buf);
    buf.put_slice(body);
    buf
}

fn first_response(id: u64, len: u64) -> BytesMut {
    let mut buf = BytesMut::new();
    Header {
        length: 8,
        kind: FrameKind::Response,
        flags: MORE,
        id,
    }
    .write(&mut buf);
    buf.put_u64(len);
    buf
}

fn error_of(mut wire: BytesMut) -> WireError {
    let mut dec = FrameDecoder::new(Limits::default());
    loop {
        match dec.decode(&mut wire) {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error: the decoder wants more bytes"),
            Err(e) => return e,
        }
    }
}

#[test]
fn breaking_the_rules_is_a_protocol_error() {
    // A continuation of nothing.
    assert_eq!(
        error_of(continuation(4, REPLY, b"x")),
        WireError::UnexpectedPart { id: 4, reply: true }
    );
    // A continuation with the wrong id, or of the other class.
    let mut wire = first_response(4, 10);
    wire.extend_from_slice(&continuation(5, REPLY, b"x"));
    assert!(matches!(
        error_of(wire),
        WireError::UnexpectedPart { id: 5, .. }
    ));
    let mut wire = first_response(4, 10);
    wire.extend_from_slice(&continuation(4, 0, b"x"));
    assert!(matches!(
        error_of(wire),
        WireError::UnexpectedPart { reply: false, .. }
    ));
    // A second reply in parts while one is open.
    let mut wire = first_response(4, 10);
    wire.extend_from_slice(&first_response(6, 10));
    assert_eq!(
        error_of(wire),
        WireError::MessageOpen {
            kind: FrameKind::Response,
            id: 6,
            open: 4
        }
    );
    // Parts past the declared length, an empty part, and a last part short of it.
    for (flags, body) in [
        (REPLY | MORE, &b"0123456789"[..]),
        (REPLY, b""),
        (REPLY, b"012"),
    ] {
        let mut wire = first_response(4, 10);
        wire.extend_from_slice(&continuation(4, flags, body));
        let e = error_of(wire);
        assert!(
            matches!(
                e,
                WireError::PartLength { .. } | WireError::BadLength { .. }
            ),
            "{e}"
        );
    }
    // A first frame that declares no more than it carries.
    let mut wire = first_response(4, 0);
    assert!(matches!(
        error_of(std::mem::take(&mut wire)),
        WireError::PartLength { len: 0, .. }
    ));
    // A one-way message in parts without an id.
    let mut wire = BytesMut::new();
    Header {
        length: 10,
        kind: FrameKind::OneWay,
        flags: MORE,
        id: 0,
    }
    .write(&mut wire);
    wire.put_u16(0);
    wire.put_u64(100);
    assert_eq!(error_of(wire), WireError::ZeroId(FrameKind::OneWay));
    // A first frame too short for its message length.
    let mut wire = BytesMut::new();
    Header {
        length: 4,
        kind: FrameKind::Response,
        flags: MORE,
        id: 1,
    }
    .write(&mut wire);
    wire.put_u32(0);
    assert!(matches!(
        error_of(wire),
        WireError::Truncated {
            what: "message length",
            ..
        }
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any mix of messages in parts and whole frames, cut into any read sizes, decodes to the
    /// same messages: each class in order, every message whole.
    #[test]
    fn any_interleaving_and_any_cut_decodes_to_the_same_messages(
        sizes in proptest::collection::vec(1usize..20_000, 1..6),
        part in 1usize..5_000,
        cuts in proptest::collection::vec(1usize..3_000, 1..50),
    ) {
        let calls: Vec<Frame> = sizes.iter().enumerate().map(|(i, &n)| request(i as u64 + 1, n)).collect();
        let replies: Vec<Frame> = sizes.iter().enumerate().map(|(i, &n)| Frame::Response(Response {
            id: i as u64 + 1,
            payload: payload(n / 2 + 1, 9),
        })).collect();
        // Each class's frames in order; the two classes and a small frame interleaved.
        let mut call_frames: Vec<BytesMut> = calls.iter().flat_map(|f| split(f, part)).collect();
        let mut reply_frames: Vec<BytesMut> = replies.iter().flat_map(|f| split(f, part)).collect();
        call_frames.reverse();
        reply_frames.reverse();
        let small = Frame::Cancel { id: 77 };
        let mut wire = Vec::new();
        let mut turn = 0usize;
        while !call_frames.is_empty() || !reply_frames.is_empty() {
            let from = if turn.is_multiple_of(3) { &mut reply_frames } else { &mut call_frames };
            if let Some(f) = from.pop() {
                wire.extend_from_slice(&f);
            }
            if turn.is_multiple_of(5) {
                wire.extend_from_slice(&encoded(&small));
            }
            turn += 1;
        }
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < wire.len() {
            let n = (*cut.next().unwrap()).min(wire.len() - at);
            buf.put_slice(&wire[at..at + n]);
            at += n;
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        let got_calls: Vec<&Frame> = out.iter().filter(|f| matches!(f, Frame::Request(_))).collect();
        let got_replies: Vec<&Frame> = out.iter().filter(|f| matches!(f, Frame::Response(_))).collect();
        prop_assert_eq!(got_calls, calls.iter().collect::<Vec<_>>());
        prop_assert_eq!(got_replies, replies.iter().collect::<Vec<_>>());
        prop_assert!(!dec.assembling());
        prop_assert!(buf.is_empty());
    }
}
