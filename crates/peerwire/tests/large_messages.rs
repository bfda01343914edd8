//! Messages larger than one frame (protocol version 3): they travel in parts up to the
//! receiver's `max_message_bytes`; a message over a limit fails alone, on both sides, with an
//! error naming the limit and the setting, and the connection goes on.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use peerwire::wire::fragment::Fragments;
use peerwire::wire::{Frame, OneWay, Request as WireRequest, Status};
use peerwire::{
    Client, ClientConfig, ConnectionConfig, Error, NotExecuted, Request, Server, ServerConfig,
    handler_fn,
};
use peerwire_testkit::{Received, ScriptedPeer, bounded};
use tokio::sync::mpsc;

/// Connection settings with small frames, so that modest payloads need parts.
fn small_frames(max_message_bytes: u64) -> ConnectionConfig {
    ConnectionConfig {
        max_frame_body: 64 * 1024,
        max_message_bytes,
        ..ConnectionConfig::default()
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// A server with `echo`, `grow` (replies with as many bytes as the payload's decimal number)
/// and `record` (one-way messages into `records`).
async fn server(connection: ConnectionConfig, records: mpsc::UnboundedSender<Bytes>) -> Server {
    let records = Arc::new(records);
    Server::builder(ServerConfig {
        connection,
        handlers: 1,
        ..ServerConfig::default()
    })
    .route(
        "echo",
        handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
    )
    .route(
        "grow",
        handler_fn(|req: Request| async move {
            let len: usize = String::from_utf8_lossy(req.payload()).parse().unwrap();
            Ok(pattern(len, 5))
        }),
    )
    .route(
        "record",
        handler_fn(move |req: Request| {
            let records = records.clone();
            async move {
                records.send(req.into_payload()).unwrap();
                Ok(Bytes::new())
            }
        }),
    )
    .bind("127.0.0.1:0".parse().unwrap())
    .await
    .unwrap()
}

fn client(connection: ConnectionConfig) -> Client {
    Client::new(ClientConfig {
        connection,
        ..ClientConfig::default()
    })
}

#[tokio::test]
async fn calls_replies_and_one_ways_larger_than_a_frame_arrive_whole_and_in_order() {
    let (tx, mut records) = mpsc::unbounded_channel();
    let server = server(small_frames(64 << 20), tx).await;
    let addr = server.local_addr();
    let client = client(small_frames(64 << 20));
    let big = pattern(3 << 20, 1);
    assert_eq!(client.call(addr, "echo", big.clone()).await.unwrap(), big);
    let grown = client.call(addr, "grow", Bytes::from("2000000")).await;
    assert_eq!(grown.unwrap(), pattern(2_000_000, 5));
    // One-way messages keep their order whatever their sizes.
    let sent = [pattern(500_000, 2), pattern(10, 3), pattern(300_000, 4)];
    for m in &sent {
        client.send_oneway(addr, "record", m.clone()).await.unwrap();
    }
    for m in &sent {
        let got = bounded("a one-way message", records.recv()).await.unwrap();
        assert_eq!(&got, m);
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_over_the_peer_limit_fails_alone_before_sending() {
    let (tx, _records) = mpsc::unbounded_channel();
    let server = server(small_frames(1 << 20), tx).await;
    let addr = server.local_addr();
    let client = client(small_frames(64 << 20));
    match client.call(addr, "echo", pattern((1 << 20) + 1, 0)).await {
        Err(Error::NotExecuted {
            reason:
                NotExecuted::PayloadTooLarge {
                    len,
                    limit,
                    setting,
                },
            ..
        }) => {
            assert_eq!((len, limit), ((1 << 20) + 1, 1 << 20));
            assert_eq!(setting, "max_message_bytes");
        }
        other => panic!("expected payload too large, got {other:?}"),
    }
    // Exactly at the limit passes.
    let at_limit = pattern(1 << 20, 9);
    assert_eq!(
        client.call(addr, "echo", at_limit.clone()).await.unwrap(),
        at_limit
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_reply_over_the_caller_limit_fails_that_call_naming_the_callers_setting() {
    let (tx, _records) = mpsc::unbounded_channel();
    let server = server(small_frames(64 << 20), tx).await;
    let addr = server.local_addr();
    let client = client(small_frames(1 << 20));
    match client.call(addr, "grow", Bytes::from("2000000")).await {
        Err(Error::Remote {
            status, message, ..
        }) => {
            // The handler ran: the status says so.
            assert_eq!(status, Status::ReplyTooLarge);
            assert!(status.executed());
            assert!(message.contains("2000000"), "{message}");
            assert!(message.contains("1048576"), "{message}");
            assert!(message.contains("max_message_bytes"), "{message}");
        }
        other => panic!("expected a reply-too-large failure, got {other:?}"),
    }
    // The connection goes on.
    assert_eq!(
        client
            .call(addr, "grow", Bytes::from("1000"))
            .await
            .unwrap(),
        pattern(1000, 5)
    );
    client.shutdown().await;
    server.shutdown().await;
}

/// The frames of `frame` in parts of `part` bytes, as one buffer.
fn in_parts(frame: &Frame, part: usize) -> BytesMut {
    let mut wire = BytesMut::new();
    let mut parts = Fragments::start(frame, part, &mut wire).unwrap();
    while let Some(bytes) = parts.next_part(&mut wire) {
        wire.extend_from_slice(&bytes);
    }
    wire
}

fn wire_request(id: u64, route: &'static str, payload: Bytes) -> Frame {
    Frame::Request(WireRequest {
        id,
        deadline_ms: 5_000,
        route: Bytes::from_static(route.as_bytes()),
        context: Bytes::new(),
        payload,
    })
}

#[tokio::test]
async fn a_peer_sending_more_than_the_limit_gets_a_failure_and_keeps_its_connection() {
    let (tx, mut records) = mpsc::unbounded_channel();
    let server = server(small_frames(1 << 20), tx).await;
    let hello = ScriptedPeer::hello(ServerConfig::default().identity);
    let mut peer = ScriptedPeer::handshaken(server.local_addr(), hello).await;
    // A request and a one-way message over the limit, each followed by a small one.
    let too_big = wire_request(1, "echo", pattern(2 << 20, 0));
    peer.send_raw(&in_parts(&too_big, 60_000)).await;
    let dropped = Frame::OneWay(OneWay {
        id: 7,
        route: Bytes::from_static(b"record"),
        payload: pattern(3 << 20, 0),
    });
    peer.send_raw(&in_parts(&dropped, 60_000)).await;
    peer.send(&Frame::OneWay(OneWay {
        id: 0,
        route: Bytes::from_static(b"record"),
        payload: Bytes::from_static(b"after"),
    }))
    .await;
    peer.send(&wire_request(2, "echo", Bytes::from_static(b"small")))
        .await;
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match peer.recv().await {
            Received::Frame(Frame::Failure(f)) => {
                assert_eq!((f.id, f.status), (1, Status::PayloadTooLarge));
                assert!(f.message.contains("max_message_bytes"), "{}", f.message);
                assert!(f.message.contains("2097152"), "{}", f.message);
                answered.push(1);
            }
            Received::Frame(Frame::Response(r)) => {
                assert_eq!((r.id, &r.payload[..]), (2, &b"small"[..]));
                answered.push(2);
            }
            Received::Frame(Frame::Heartbeat(_)) => {}
            other => panic!("expected the two answers, got {other:?}"),
        }
    }
    // The oversized one-way message was dropped; the one after it arrived.
    let got = bounded("a one-way message", records.recv()).await.unwrap();
    assert_eq!(got, "after");
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_cancelled_while_its_parts_arrive_never_runs() {
    let (tx, mut records) = mpsc::unbounded_channel();
    let server = server(small_frames(1 << 20), tx).await;
    let hello = ScriptedPeer::hello(ServerConfig::default().identity);
    let mut peer = ScriptedPeer::handshaken(server.local_addr(), hello).await;
    // The first frame and two parts of a request to `record`, then its cancel, then the rest.
    let wire = in_parts(&wire_request(1, "record", pattern(300_000, 1)), 60_000);
    let two_parts = 16 + 4 + 2 + 6 + 8 + 2 * (16 + 60_000);
    peer.send_raw(&wire[..two_parts]).await;
    peer.send(&Frame::Cancel { id: 1 }).await;
    peer.send_raw(&wire[two_parts..]).await;
    // A small call after it: the server runs one handler, in order, so once this is answered
    // the cancelled call has had its turn.
    peer.send(&wire_request(2, "echo", Bytes::from_static(b"after")))
        .await;
    let mut answered = Vec::new();
    while answered.len() < 2 {
        match peer.recv().await {
            Received::Frame(Frame::Failure(f)) => {
                assert_eq!((f.id, f.status), (1, Status::Cancelled));
                answered.push(1);
            }
            Received::Frame(Frame::Response(r)) => {
                assert_eq!(r.id, 2);
                answered.push(2);
            }
            Received::Frame(Frame::Heartbeat(_)) => {}
            other => panic!("expected the two answers, got {other:?}"),
        }
    }
    assert!(records.try_recv().is_err(), "the cancelled request ran");
    server.shutdown().await;
}

#[tokio::test]
async fn against_a_version_2_peer_a_message_is_one_frame() {
    let (tx, _records) = mpsc::unbounded_channel();
    let server = server(small_frames(64 << 20), tx).await;
    let addr = server.local_addr();
    let client = client(ConnectionConfig {
        protocol_versions: 1..=2,
        ..small_frames(64 << 20)
    });
    match client.call(addr, "echo", pattern(100_000, 0)).await {
        Err(Error::NotExecuted {
            reason: NotExecuted::PayloadTooLarge { limit, setting, .. },
            ..
        }) => {
            assert!(limit < 64 * 1024);
            assert_eq!(setting, "max_frame_body");
        }
        other => panic!("expected payload too large, got {other:?}"),
    }
    let fits = pattern(60_000, 1);
    assert_eq!(client.call(addr, "echo", fits.clone()).await.unwrap(), fits);
    client.shutdown().await;
    server.shutdown().await;
}
