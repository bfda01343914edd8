//! Test support for peerwire: a frame-level scripted peer, a gate for holding handlers, and a
//! ready-made test server.
//!
//! Every wait here is bounded by [`STEP_TIMEOUT`], so a broken test fails instead of hanging.

pub mod datastream;
pub mod fault_proxy;
pub mod history;
pub mod memory;
pub mod raft;
pub mod sim;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use peerwire::wire::{
    Frame, FrameDecoder, GoAway, Hello, Lane, Limits, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION,
    WireError,
};
use peerwire::{
    BackoffConfig, ConnectError, Error, HandlerError, HandshakeError, Identity, NotExecuted,
    Request, Server, ServerConfig, handler_fn,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};

/// A backoff that always waits `ms` milliseconds (no growth, no jitter), for tests that
/// retry or reconnect quickly and predictably.
pub fn fixed_backoff(ms: u64) -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(ms),
        max: Duration::from_millis(ms),
        multiplier: 1.0,
        jitter: 0.0,
    }
}

/// Upper bound for any single step a test waits for.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Prints the logs of the code under test as `RUST_LOG` says, through the test harness's
/// capture; off when `RUST_LOG` is unset. Safe to call from every test.
pub fn logs_from_env() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Awaits `fut` for at most [`STEP_TIMEOUT`], panicking with `what` if it takes longer.
pub async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(STEP_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {STEP_TIMEOUT:?} waiting for {what}"))
}

/// Yields until `ready()` holds, for at most [`STEP_TIMEOUT`]: for waiting on state another
/// task changes (a queue filling up, a counter moving) without sleeping.
pub async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    bounded(what, async {
        while !ready() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

/// What a scripted peer observed when it tried to read a frame.
#[derive(Debug)]
pub enum Received {
    /// A frame.
    Frame(Frame),
    /// The server closed the connection.
    Eof,
    /// The bytes were not a valid frame.
    Invalid(WireError),
}

/// A peer that speaks raw frames over TCP, for scripting exact exchanges.
#[derive(Debug)]
pub struct ScriptedPeer {
    stream: TcpStream,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl ScriptedPeer {
    /// Connects to `addr` without a handshake.
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = bounded("connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        Self {
            stream,
            buf: BytesMut::new(),
            decoder: FrameDecoder::new(Limits::default()),
        }
    }

    /// An RPC hello from `identity` to any node, offering every version this build speaks.
    pub fn hello(identity: Identity) -> Hello {
        Hello {
            min_version: MIN_PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            lane: Lane::Rpc,
            group: 0,
            cluster_id: identity.cluster_id,
            node_id: identity.node_id,
            target_node_id: 0,
            epoch: identity.epoch,
            max_frame_body: peerwire::config::DEFAULT_MAX_FRAME_BODY,
            max_message: peerwire::config::DEFAULT_MAX_MESSAGE_BYTES,
        }
    }

    /// Connects and completes the handshake with `hello`, panicking if it is refused.
    pub async fn handshaken(addr: SocketAddr, hello: Hello) -> Self {
        let mut peer = Self::connect(addr).await;
        peer.send(&Frame::Hello(hello)).await;
        match peer.recv().await {
            Received::Frame(Frame::HelloAck(_)) => peer,
            other => panic!("handshake refused: {other:?}"),
        }
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &Frame) {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        self.send_raw(&buf).await;
    }

    /// Sends raw bytes. Errors (the server may already have closed) are ignored.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = bounded("write", self.stream.write_all(bytes)).await;
    }

    /// Reads the next frame, EOF, or a decoding error.
    pub async fn recv(&mut self) -> Received {
        bounded("a frame", async {
            loop {
                match self.decoder.decode(&mut self.buf) {
                    Ok(Some(frame)) => return Received::Frame(frame),
                    Ok(None) => {}
                    Err(e) => return Received::Invalid(e),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return Received::Eof,
                    Ok(_) => {}
                }
            }
        })
        .await
    }

    /// Reads frames until a go-away (skipping heartbeats and replies), then expects EOF.
    pub async fn expect_goaway_then_eof(&mut self) -> GoAway {
        loop {
            match self.recv().await {
                Received::Frame(Frame::GoAway(g)) => {
                    self.expect_eof().await;
                    return g;
                }
                Received::Frame(_) => continue,
                other => panic!("expected a go-away, got {other:?}"),
            }
        }
    }

    /// Reads until EOF, ignoring any frames.
    pub async fn expect_eof(&mut self) {
        loop {
            match self.recv().await {
                Received::Eof => return,
                Received::Frame(_) => continue,
                Received::Invalid(e) => panic!("invalid bytes before EOF: {e}"),
            }
        }
    }
}

/// Holds handlers until the test opens it, and tells the test when handlers are waiting.
#[derive(Debug)]
pub struct Gate {
    entered: Semaphore,
    open: Notify,
    opened: std::sync::atomic::AtomicBool,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: Semaphore::new(0),
            open: Notify::new(),
            opened: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Called by a handler: announces it is waiting, then waits until the gate opens.
    pub async fn pass(&self) {
        self.entered.add_permits(1);
        loop {
            let notified = self.open.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.opened.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// Waits until `n` more handlers are waiting at the gate.
    pub async fn wait_entered(&self, n: u32) {
        bounded("handlers to reach the gate", async {
            self.entered
                .acquire_many(n)
                .await
                .expect("gate closed")
                .forget();
        })
        .await;
    }

    /// Lets every waiting and future handler through.
    pub fn open(&self) {
        self.opened
            .store(true, std::sync::atomic::Ordering::Release);
        self.open.notify_waiters();
    }
}

/// A handler that waits at `gate`, then echoes.
fn gate_handler(gate: Arc<Gate>) -> impl peerwire::Handler {
    handler_fn(move |req: Request| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            Ok(req.into_payload())
        }
    })
}

/// Starts a server with `handlers` handler tasks and two routes: `gate` (waits at `gate`, then
/// echoes) and `count` (replies with how many `count` calls ran before it, counted in
/// `executed`), to check which calls were executed.
pub async fn gate_count_server(
    handlers: usize,
    gate: Arc<Gate>,
    executed: Arc<std::sync::atomic::AtomicU64>,
) -> Server {
    Server::builder(ServerConfig {
        handlers,
        ..ServerConfig::default()
    })
    .route("gate", gate_handler(gate))
    .route(
        "count",
        handler_fn(move |_req: Request| {
            let executed = executed.clone();
            async move {
                let before = executed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Bytes::from(before.to_string()))
            }
        }),
    )
    .bind("127.0.0.1:0".parse().expect("loopback address"))
    .await
    .expect("bind test server")
}

/// Starts a server on 127.0.0.1 with an ephemeral port and the test routes:
/// - `echo`: replies with the payload;
/// - `gate`: waits at `gate`, then echoes;
/// - `fail`: fails with the payload as message;
/// - `panic`: panics.
pub async fn test_server(cfg: ServerConfig, gate: Arc<Gate>) -> Server {
    Server::builder(cfg)
        .route(
            "echo",
            handler_fn(|req: Request| async move { Ok(req.into_payload()) }),
        )
        .route("gate", gate_handler(gate))
        .route(
            "fail",
            handler_fn(|req: Request| async move {
                Err::<Bytes, _>(HandlerError::new(
                    String::from_utf8_lossy(req.payload()).into_owned(),
                ))
            }),
        )
        .route(
            "panic",
            handler_fn(|_req: Request| async move {
                if true {
                    panic!("handler exploded");
                }
                Ok(Bytes::new())
            }),
        )
        .bind("127.0.0.1:0".parse().expect("loopback address"))
        .await
        .expect("bind test server")
}

/// The handshake error a call failed with, panicking if it failed otherwise.
pub fn handshake_error(err: Error) -> HandshakeError {
    match err {
        Error::NotExecuted {
            reason: NotExecuted::Connect(ConnectError::Handshake(e)),
            ..
        } => e,
        other => panic!("expected a handshake error, got {other:?}"),
    }
}
