//! Client retries: not-executed calls are retried with backoff within the deadline and the
//! retry budget; idempotent calls also retry unknown outcomes.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use peerwire::wire::{Frame, FrameDecoder, Hello, Lane, Limits, PROTOCOL_VERSION, Response};
use peerwire::{
    CallOptions, Client, ClientConfig, Error, HandlerError, Request, RetryPolicy, Server,
    ServerConfig, Unknown, handler_fn,
};
use peerwire_testkit::{Gate, bounded, fixed_backoff, test_server, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_call_is_retried_and_succeeds_once_capacity_returns() {
    let gate = Gate::new();
    let server = test_server(
        ServerConfig {
            handlers: 1,
            call_queue_capacity: Some(1),
            ..ServerConfig::default()
        },
        gate.clone(),
    )
    .await;
    let addr = server.local_addr();
    let client = Client::new(ClientConfig {
        retry: RetryPolicy {
            max_attempts: 100,
            backoff: fixed_backoff(20),
            ..RetryPolicy::default()
        },
        ..ClientConfig::default()
    });
    // A holds the handler, B fills the queue: C is refused busy, and retried.
    let a = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "gate", Bytes::new()).await }
    });
    gate.wait_entered(1).await;
    let b = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "gate", Bytes::new()).await }
    });
    wait_until("B to be queued", || server.queued_calls() >= 1).await;
    let c = tokio::spawn({
        let client = client.clone();
        async move { client.call(addr, "echo", Bytes::from_static(b"c")).await }
    });
    wait_until("C to be retried", || client.retries() > 0).await;
    // Capacity returns: C's next attempt gets in.
    gate.open();
    assert_eq!(bounded("C", c).await.unwrap().unwrap(), "c");
    bounded("A", a).await.unwrap().unwrap();
    bounded("B", b).await.unwrap().unwrap();
    client.shutdown().await;
    server.shutdown().await;
}

#[tokio::test]
async fn retries_are_bounded_by_the_budget() {
    let server = Server::builder(ServerConfig::default())
        .route(
            "always-busy",
            handler_fn(|_req: Request| async move {
                Err::<Bytes, _>(HandlerError::busy(None, "try later"))
            }),
        )
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = Client::new(ClientConfig {
        retry: RetryPolicy {
            max_attempts: 10,
            backoff: fixed_backoff(1),
            budget_ratio: 0.0,
            budget_min_per_sec: 2,
        },
        ..ClientConfig::default()
    });
    let addr = server.local_addr();
    // Two retries from the per-second allowance, then the budget says no.
    let err = client
        .call(addr, "always-busy", Bytes::new())
        .await
        .unwrap_err();
    assert!(err.is_not_executed(), "{err:?}");
    assert_eq!(client.retries(), 2);
    // The next call gets no retry until the allowance refills.
    client
        .call(addr, "always-busy", Bytes::new())
        .await
        .unwrap_err();
    assert_eq!(client.retries(), 2);
    client.shutdown().await;
    server.shutdown().await;
}

/// A peer that drops its first connection after reading a request (the call's outcome is then
/// unknown to the caller) and echoes on later connections.
async fn flaky_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    peer_that_drops_the_first_call(false).await
}

/// As [`flaky_server`]; with `vanish`, the peer also stops listening once it dropped the first
/// call, so later connects are refused.
async fn peer_that_drops_the_first_call(vanish: bool) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        for connection in 0.. {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let mut buf = BytesMut::new();
            let mut dec = FrameDecoder::new(Limits::default());
            let Some(Frame::Hello(hello)) = next_frame(&mut stream, &mut buf, &mut dec).await
            else {
                return;
            };
            let ack = Hello {
                min_version: PROTOCOL_VERSION,
                max_version: PROTOCOL_VERSION,
                group: 0,
                lane: Lane::Rpc,
                node_id: 9,
                target_node_id: hello.node_id,
                ..hello
            };
            write_frame(&mut stream, &Frame::HelloAck(ack)).await;
            loop {
                match next_frame(&mut stream, &mut buf, &mut dec).await {
                    Some(Frame::Request(req)) if connection == 0 => {
                        drop(req);
                        if vanish {
                            return; // drops the listener too
                        }
                        break; // drop the connection mid-call
                    }
                    Some(Frame::Request(req)) => {
                        let reply = Frame::Response(Response {
                            id: req.id,
                            payload: req.payload,
                        });
                        write_frame(&mut stream, &reply).await;
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
    });
    (addr, task)
}

/// A client that retries (the default 3 attempts) and reconnects after 1 ms.
fn quick_retry_client() -> Client {
    Client::new(ClientConfig {
        retry: RetryPolicy {
            backoff: fixed_backoff(1),
            ..RetryPolicy::default()
        },
        backoff: fixed_backoff(1),
        ..ClientConfig::default()
    })
}

async fn next_frame(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    dec: &mut FrameDecoder,
) -> Option<Frame> {
    loop {
        if let Some(frame) = dec.decode(buf).ok()? {
            return Some(frame);
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

async fn write_frame(stream: &mut TcpStream, frame: &Frame) {
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    let _ = stream.write_all(&out).await;
}

#[tokio::test]
async fn idempotent_calls_retry_unknown_outcomes_and_others_do_not() {
    let client = quick_retry_client();

    // Not idempotent: the lost connection leaves the outcome unknown, and that is reported.
    let (addr, server) = flaky_server().await;
    let err = client
        .call(addr, "echo", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_connection_lost(&err);
    server.abort();

    // Idempotent: retried on a new connection, which answers.
    let (addr, server) = flaky_server().await;
    let options = idempotent();
    let reply = bounded(
        "the idempotent call",
        client.call_with(addr, "echo", Bytes::from_static(b"y"), options),
    )
    .await
    .unwrap();
    assert_eq!(reply, "y");
    assert!(client.retries() >= 1);
    server.abort();
    client.shutdown().await;
}

/// The options of an idempotent call.
fn idempotent() -> CallOptions {
    CallOptions {
        idempotent: true,
        ..CallOptions::default()
    }
}

/// Fails unless `err` is an unknown outcome from a lost connection.
fn assert_connection_lost(err: &Error) {
    assert!(
        matches!(
            err,
            Error::Unknown {
                reason: Unknown::ConnectionLost(_),
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_retry_refused_after_an_unknown_outcome_still_reports_it_unknown() {
    let client = quick_retry_client();
    // The first attempt reaches the peer, which then goes away: the retries are refused at
    // connect, but the first may have run, so the call's outcome is unknown, not "not executed".
    let (addr, server) = peer_that_drops_the_first_call(true).await;
    let options = idempotent();
    let err = bounded(
        "the call",
        client.call_with(addr, "echo", Bytes::from_static(b"z"), options),
    )
    .await
    .unwrap_err();
    assert_connection_lost(&err);
    assert!(client.retries() >= 1, "the refused retries happened");
    bounded("the peer to go", server).await.unwrap();
    client.shutdown().await;
}
