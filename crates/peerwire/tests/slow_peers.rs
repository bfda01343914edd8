//! Slow and hostile peers: a thousand connections that send nothing or a byte at a time,
//! before or after their hello, are all closed on time, while a legitimate client's calls keep
//! succeeding.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use peerwire::wire::{Frame, FrameKind, HEADER_LEN};
use peerwire::{Client, ClientConfig, ConnectionConfig, Identity, Peer, ServerConfig};
use peerwire_testkit::{Gate, ScriptedPeer, bounded, test_server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_millis(300);
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How often a trickling peer sends its next byte.
const TRICKLE: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy)]
enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends its hello a byte at a time.
    TrickledHello,
    /// Completes the handshake, then sends nothing (not even heartbeat replies).
    IdleAfterHello,
    /// Completes the handshake, then sends a frame a byte at a time.
    TrickledFrame,
}

impl Slow {
    /// The timeout that must close this peer.
    fn timeout(self) -> Duration {
        match self {
            Self::Silent | Self::TrickledHello => HANDSHAKE_TIMEOUT,
            Self::IdleAfterHello | Self::TrickledFrame => READ_TIMEOUT,
        }
    }
}

fn identity(node_id: u64) -> Identity {
    Identity {
        cluster_id: 7,
        node_id,
        epoch: 1,
    }
}

fn hello_bytes() -> Vec<u8> {
    let mut buf = BytesMut::new();
    Frame::Hello(ScriptedPeer::hello(identity(9))).encode(&mut buf);
    buf.to_vec()
}

/// The head of a one-way frame announcing a 1 MiB body, then some of the body: more than a
/// trickling peer sends before it is closed.
fn slow_frame_bytes() -> Vec<u8> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + 4096);
    buf.put_u32(1 << 20);
    buf.put_u8(FrameKind::OneWay as u8);
    buf.put_u8(0);
    buf.put_u16(0);
    buf.put_u64(0);
    buf.put_bytes(0, 4096);
    buf.to_vec()
}

/// Runs one slow peer until the server closes it; returns how long that took.
async fn slow_peer(addr: SocketAddr, kind: Slow) -> Duration {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let start = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let trickled = match kind {
        Slow::Silent => None,
        Slow::TrickledHello => Some(hello_bytes()),
        Slow::IdleAfterHello => {
            write.write_all(&hello_bytes()).await.expect("hello");
            None
        }
        Slow::TrickledFrame => {
            write.write_all(&hello_bytes()).await.expect("hello");
            Some(slow_frame_bytes())
        }
    };
    let trickle = async move {
        if let Some(bytes) = trickled {
            let mut tick = tokio::time::interval(TRICKLE);
            for b in bytes {
                tick.tick().await;
                if write.write_all(&[b]).await.is_err() {
                    break;
                }
            }
        }
        // Never the reason the peer stops: only the server closing it is.
        std::future::pending::<()>().await;
    };
    let closed = async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = read.read(&mut buf).await
            && n > 0
        {}
    };
    tokio::select! {
        _ = closed => {}
        _ = trickle => unreachable!(),
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_peers_are_closed_on_time_and_calls_keep_working() {
    // The server runs on a runtime of its own, as it would in its own process: the thousand
    // peers' tasks must not starve its accept loop (the kernel's accept queue would overflow
    // and delay connections before the server ever saw them).
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_rt.spawn(test_server(
        ServerConfig {
            identity: identity(1),
            connection: ConnectionConfig {
                handshake_timeout: HANDSHAKE_TIMEOUT,
                read_timeout: READ_TIMEOUT,
                heartbeat_interval: READ_TIMEOUT / 3,
                ..ConnectionConfig::default()
            },
            ..ServerConfig::default()
        },
        Gate::new(),
    ));
    let server = server.await.unwrap();
    let addr = server.local_addr();
    let kinds = [
        Slow::Silent,
        Slow::TrickledHello,
        Slow::IdleAfterHello,
        Slow::TrickledFrame,
    ];
    let peers: Vec<_> = (0..1000)
        .map(|i| {
            let kind = kinds[i % kinds.len()];
            tokio::spawn(async move { (kind, slow_peer(addr, kind).await) })
        })
        .collect();

    // A legitimate client calls throughout.
    let client = Client::new(ClientConfig {
        identity: identity(2),
        ..ClientConfig::default()
    });
    for i in 0..200u32 {
        let payload = Bytes::from(i.to_be_bytes().to_vec());
        let reply = bounded(
            "a call among slow peers",
            client.call(Peer::new(addr, 1), "echo", payload.clone()),
        )
        .await
        .expect("call");
        assert_eq!(reply, payload);
    }

    for p in peers {
        let (kind, took) = bounded("a slow peer to be closed", p).await.unwrap();
        // On time: its timeout plus scheduling slack on a loaded two-core machine, far below
        // what a trickling peer would last if each byte counted as activity.
        assert!(
            took < kind.timeout() * 6,
            "{kind:?} lasted {took:?} against a timeout of {:?}",
            kind.timeout()
        );
    }
    client.shutdown().await;
    server_rt
        .spawn(async move { server.shutdown().await })
        .await
        .unwrap();
    server_rt.shutdown_background();
}

/// A peer that completes the handshake and then never reads: the sender's one-way frames pile
/// up in its write queue until `write_queue_bytes`, and then sends fail at once with the
/// setting named, long before the frame count (`write_queue`) would stop them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_cannot_grow_the_senders_write_queue_past_its_byte_budget() {
    use peerwire::wire::{FrameDecoder, Hello, Lane, Limits, PROTOCOL_VERSION};
    use peerwire::{Error, NotExecuted};

    const BUDGET: usize = 2 << 20;
    const PAYLOAD: usize = 256 << 10;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let peer = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let mut dec = FrameDecoder::new(Limits::default());
        let hello = loop {
            if let Some(Frame::Hello(h)) = dec.decode(&mut buf).unwrap() {
                break h;
            }
            assert!(stream.read_buf(&mut buf).await.unwrap() > 0);
        };
        let mut ack = BytesMut::new();
        Frame::HelloAck(Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            group: 0,
            lane: Lane::Rpc,
            node_id: 9,
            target_node_id: hello.node_id,
            ..hello
        })
        .encode(&mut ack);
        stream.write_all(&ack).await.unwrap();
        // Never reads again; holds the connection open until the test ends.
        let _ = stopped.await;
        drop(stream);
    });
    let client = Client::new(ClientConfig {
        connection: ConnectionConfig {
            write_queue_bytes: BUDGET,
            // Nothing will answer the heartbeats: keep the connection up for the test.
            read_timeout: Duration::from_secs(60),
            ..ConnectionConfig::default()
        },
        ..ClientConfig::default()
    });
    let payload = Bytes::from(vec![0u8; PAYLOAD]);
    let mut accepted = 0usize;
    let err = bounded("the write queue to fill", async {
        loop {
            match client.send_oneway(addr, "sink", payload.clone()).await {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            // Let the writer move what the socket takes.
            tokio::task::yield_now().await;
        }
    })
    .await;
    match err {
        Error::NotExecuted {
            reason: NotExecuted::LocalQueueFull { setting, limit, .. },
            ..
        } => {
            assert_eq!(setting, "write_queue_bytes");
            assert_eq!(limit, BUDGET);
        }
        other => panic!("expected a full write queue, got {other:?}"),
    }
    // What was accepted: the budget, the writer's batch and what the kernel's socket buffers
    // took (a few MiB on loopback), far from the 4,096 frames `write_queue` allows (1 GiB).
    assert!(
        accepted * PAYLOAD < 64 << 20,
        "{accepted} frames of {PAYLOAD} bytes accepted"
    );
    assert!(accepted < ConnectionConfig::default().write_queue);
    client.shutdown().await;
    let _ = stop.send(());
    bounded("the peer task", peer).await.unwrap();
}
