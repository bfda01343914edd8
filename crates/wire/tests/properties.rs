//! Property tests for the frame codec: round trips, arbitrary splits, arbitrary garbage.

use bytes::{Bytes, BytesMut};
use peerwire_wire::{
    Failure, Frame, FrameDecoder, GoAway, GoAwayReason, Heartbeat, Hello, Lane, Limits, OneWay,
    Request, Response, Status, StreamData, StreamFlags,
};
use proptest::prelude::*;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 éü:/._-]{0,200}").unwrap()
}

fn frame() -> impl Strategy<Value = Frame> {
    let hello = (
        (any::<u16>(), any::<u16>(), any::<u64>()),
        any::<u8>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        (any::<u32>(), any::<u64>()),
    )
        .prop_map(
            |(
                (min_version, max_version, group),
                lane,
                cluster_id,
                node_id,
                target,
                epoch,
                (max, max_message),
            )| {
                Hello {
                    min_version,
                    max_version,
                    lane: Lane::from_wire(lane),
                    group,
                    cluster_id,
                    node_id,
                    target_node_id: target,
                    epoch,
                    max_frame_body: max,
                    max_message,
                }
            },
        );
    let id = 1..u64::MAX;
    prop_oneof![
        hello.clone().prop_map(Frame::Hello),
        hello.prop_map(Frame::HelloAck),
        (id.clone(), any::<u32>(), bytes(64), bytes(256), bytes(2048)).prop_map(
            |(id, deadline_ms, route, context, payload)| Frame::Request(Request {
                id,
                deadline_ms,
                route,
                context,
                payload
            })
        ),
        (id.clone(), bytes(2048))
            .prop_map(|(id, payload)| Frame::Response(Response { id, payload })),
        (id.clone(), any::<u16>(), any::<u32>(), message()).prop_map(
            |(id, status, retry_after_ms, message)| Frame::Failure(Failure {
                id,
                status: Status::from_wire(status),
                retry_after_ms,
                message
            })
        ),
        (any::<u64>(), bytes(64), bytes(2048))
            .prop_map(|(id, route, payload)| Frame::OneWay(OneWay { id, route, payload })),
        id.clone().prop_map(|id| Frame::Cancel { id }),
        (any::<u64>(), any::<bool>(), any::<u64>()).prop_map(|(nonce, ack, timestamp_us)| {
            Frame::Heartbeat(Heartbeat {
                nonce,
                ack,
                timestamp_us,
            })
        }),
        (any::<u64>(), any::<u16>(), message()).prop_map(|(last, reason, message)| {
            Frame::GoAway(GoAway {
                last_request_id: last,
                reason: GoAwayReason::from_wire(reason),
                message,
            })
        }),
        (
            1u64..,
            any::<u64>(),
            0u8..4,
            any::<u64>(),
            any::<u32>(),
            bytes(2048)
        )
            .prop_map(|(id, stream_id, flags, offset, checksum, payload)| {
                Frame::StreamData(StreamData {
                    id,
                    stream_id,
                    flags: StreamFlags::from_bits_truncate(flags),
                    offset,
                    checksum,
                    payload,
                })
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_of_encode_is_identity(frames in proptest::collection::vec(frame(), 1..8)) {
        let mut buf = BytesMut::new();
        for f in &frames {
            f.encode(&mut buf);
        }
        let mut dec = FrameDecoder::new(Limits::default());
        for f in &frames {
            let got = dec.decode(&mut buf).unwrap();
            prop_assert_eq!(got.as_ref(), Some(f));
        }
        prop_assert_eq!(dec.decode(&mut buf).unwrap(), None);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_head_plus_payload_equals_encode(f in frame()) {
        let mut whole = BytesMut::new();
        f.encode(&mut whole);
        let mut head = BytesMut::new();
        let payload = f.encode_head(&mut head).cloned().unwrap_or_default();
        head.extend_from_slice(&payload);
        prop_assert_eq!(&head[..], &whole[..]);
        prop_assert_eq!(whole.len(), f.encoded_len());
    }

    #[test]
    fn any_split_of_the_stream_decodes_the_same(
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut whole = BytesMut::new();
        for f in &frames {
            f.encode(&mut whole);
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(whole.len() + 1)).collect();
        points.push(whole.len());
        points.sort_unstable();
        let mut dec = FrameDecoder::new(Limits::default());
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut start = 0;
        for end in points {
            buf.extend_from_slice(&whole[start..end]);
            start = end;
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn garbage_never_panics_and_never_overreads(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        max_body in 0u32..100_000,
    ) {
        let limits = Limits { max_body, ..Limits::default() };
        let mut dec = FrameDecoder::new(limits);
        let mut buf = BytesMut::from(&data[..]);
        let mut consumed_frames = 0usize;
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(f)) => {
                    consumed_frames += 1;
                    prop_assert!(buf.len() < before);
                    prop_assert!(f.encoded_len() <= data.len());
                }
                Ok(None) => break,
                Err(_) => break,
            }
            // Each decoded frame consumes at least a header, so this terminates.
            prop_assert!(consumed_frames <= data.len() / 16);
        }
        // Capacity reserved for a pending frame never exceeds the limit plus a header.
        prop_assert!(buf.capacity() <= (max_body as usize + 16).max(data.len()) + 64);
    }
}
