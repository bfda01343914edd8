//! Bad input from a peer closes that peer's connection with a reason; the server keeps serving
//! everyone else and never allocates what a length prefix claims.

use bytes::{BufMut, Bytes, BytesMut};
use peerwire::wire::{Frame, FrameKind, GoAwayReason, Header, Request};
use peerwire::{Client, ClientConfig, Identity, ServerConfig};
use peerwire_testkit::{Gate, Received, ScriptedPeer, test_server};

fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[tokio::test]
async fn oversized_length_prefix_closes_only_that_connection() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"before"))
            .await
            .unwrap(),
        "before"
    );

    let rss_before = rss_bytes();
    let mut bad = ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
    let mut header = BytesMut::new();
    Header {
        length: u32::MAX,
        kind: FrameKind::Request,
        flags: 0,
        id: 1,
    }
    .write(&mut header);
    bad.send_raw(&header).await;
    let goaway = bad.expect_goaway_then_eof().await;
    assert_eq!(goaway.reason, GoAwayReason::FrameTooLarge);
    assert!(
        goaway.message.contains("max_frame_body"),
        "{}",
        goaway.message
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        assert!(
            after.saturating_sub(before) < 64 << 20,
            "RSS grew by {} bytes after a 4 GiB length prefix",
            after - before
        );
    }

    assert_eq!(
        client
            .call(addr, "echo", Bytes::from_static(b"after"))
            .await
            .unwrap(),
        "after"
    );
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn random_garbage_closes_the_connection_without_panic() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig::default());
    for seed in 0..20u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let garbage: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
        let mut bad =
            ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
        bad.send_raw(&garbage).await;
        // Whatever the garbage decodes to, the server ends up closing the connection.
        loop {
            match bad.recv().await {
                Received::Eof => break,
                Received::Frame(Frame::GoAway(g)) => {
                    assert!(
                        matches!(
                            g.reason,
                            GoAwayReason::ProtocolError | GoAwayReason::FrameTooLarge
                        ),
                        "seed {seed}: {g:?}"
                    );
                }
                Received::Frame(_) | Received::Invalid(_) => {}
            }
        }
        let reply = client
            .call(addr, "echo", Bytes::from(format!("seed {seed}")))
            .await
            .unwrap();
        assert_eq!(reply, format!("seed {seed}"));
    }
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn garbage_before_the_handshake_is_refused() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let mut bad = ScriptedPeer::connect(server.local_addr()).await;
    bad.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let goaway = bad.expect_goaway_then_eof().await;
    assert!(
        matches!(
            goaway.reason,
            GoAwayReason::FrameTooLarge | GoAwayReason::ProtocolError
        ),
        "{goaway:?}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn frames_that_break_the_rules_are_refused_with_protocol_error() {
    let server = test_server(ServerConfig::default(), Gate::new()).await;
    let addr = server.local_addr();
    // A request with id 0.
    let mut bad = ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
    let mut buf = BytesMut::new();
    Header {
        length: 6,
        kind: FrameKind::Request,
        flags: 0,
        id: 0,
    }
    .write(&mut buf);
    buf.put_u32(0);
    buf.put_u16(0);
    bad.send_raw(&buf).await;
    assert_eq!(
        bad.expect_goaway_then_eof().await.reason,
        GoAwayReason::ProtocolError
    );
    // A second hello after the handshake.
    let mut bad = ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
    bad.send(&Frame::Hello(ScriptedPeer::hello(Identity::default())))
        .await;
    assert_eq!(
        bad.expect_goaway_then_eof().await.reason,
        GoAwayReason::ProtocolError
    );
    // A well-formed request still works on a fresh connection.
    let mut good = ScriptedPeer::handshaken(addr, ScriptedPeer::hello(Identity::default())).await;
    good.send(&Frame::Request(Request {
        id: 1,
        deadline_ms: 0,
        route: Bytes::from_static(b"echo"),
        context: Bytes::new(),
        payload: Bytes::from_static(b"ok"),
    }))
    .await;
    match good.recv().await {
        Received::Frame(Frame::Response(r)) => assert_eq!(r.payload, "ok"),
        other => panic!("expected a response, got {other:?}"),
    }
    server.shutdown().await;
}
