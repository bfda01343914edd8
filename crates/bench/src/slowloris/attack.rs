//! The slow peers: connections that send nothing, or a byte at a time, before or after a valid
//! handshake, each reconnecting as soon as the server closes it, so the server holds the full
//! count for the whole run. Each records how long the server kept it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::harness::new_histogram;

/// The four kinds of slow peer, a quarter of the connections each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slow {
    /// Connects and sends nothing.
    Silent,
    /// Sends its handshake a byte at a time.
    TrickledHello,
    /// Completes the handshake, then sends nothing.
    IdleAfterHello,
    /// Completes the handshake, then sends a large frame a byte at a time.
    TrickledFrame,
}

impl Slow {
    /// Every kind, in report order.
    pub(crate) const ALL: [Self; 4] = [
        Self::Silent,
        Self::TrickledHello,
        Self::IdleAfterHello,
        Self::TrickledFrame,
    ];

    /// Its name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Silent => "silent",
            Self::TrickledHello => "trickled-hello",
            Self::IdleAfterHello => "idle-after-hello",
            Self::TrickledFrame => "trickled-frame",
        }
    }
}

/// What a protocol's slow peers send: its handshake, and the start of a large frame.
#[derive(Debug, Clone)]
pub(crate) struct Script {
    /// The bytes that complete the handshake (a peerwire hello; HTTP/2's preface and SETTINGS).
    pub(crate) hello: Vec<u8>,
    /// The start of a frame announcing a large body.
    pub(crate) frame: Vec<u8>,
}

/// How long the server kept each kind's connections, and how many it closed.
#[derive(Debug)]
pub(crate) struct KindTally {
    /// Connections the server closed.
    pub(crate) closed: u64,
    /// How long each closed connection lived, ms.
    pub(crate) lifetime_ms: Histogram<u64>,
}

/// The tallies of a run, one per kind (in [`Slow::ALL`] order).
pub(crate) type Tallies = Arc<Mutex<Vec<KindTally>>>;

/// Starts `count` slow peers against `addr` (a quarter of each kind), each sending a byte every
/// `trickle`, until `stop`. Returns their tallies, filled as connections are closed.
pub(crate) fn start(
    addr: SocketAddr,
    count: usize,
    script: &Script,
    trickle: Duration,
    stop: &CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Tallies {
    let tallies: Tallies = Arc::new(Mutex::new(
        Slow::ALL
            .iter()
            .map(|_| KindTally {
                closed: 0,
                lifetime_ms: new_histogram(),
            })
            .collect(),
    ));
    for i in 0..count {
        let kind = Slow::ALL[i % Slow::ALL.len()];
        let (script, stop, tallies) = (script.clone(), stop.clone(), tallies.clone());
        tasks.spawn(async move {
            while !stop.is_cancelled() {
                let lived = tokio::select! {
                    lived = slow_peer(addr, kind, &script, trickle) => lived,
                    () = stop.cancelled() => return,
                };
                match lived {
                    Some(lived) => {
                        let mut t = tallies.lock().expect("tallies lock poisoned");
                        let tally = &mut t[kind as usize];
                        tally.closed += 1;
                        let _ = tally.lifetime_ms.record(lived.as_millis().max(1) as u64);
                    }
                    // Refused at connect (accept queue full, or out of ports): try again soon.
                    None => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        });
    }
    tallies
}

/// One slow connection until the server closes it: `Some(how long it lived)`, or `None` if it
/// could not connect.
async fn slow_peer(
    addr: SocketAddr,
    kind: Slow,
    script: &Script,
    trickle: Duration,
) -> Option<Duration> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let start = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let trickled = match kind {
        Slow::Silent => None,
        Slow::TrickledHello => Some(script.hello.clone()),
        Slow::IdleAfterHello => {
            write.write_all(&script.hello).await.ok()?;
            None
        }
        Slow::TrickledFrame => {
            write.write_all(&script.hello).await.ok()?;
            Some(script.frame.clone())
        }
    };
    let trickle = async move {
        if let Some(bytes) = trickled {
            let mut tick = tokio::time::interval(trickle);
            for b in bytes {
                tick.tick().await;
                if write.write_all(&[b]).await.is_err() {
                    break;
                }
            }
        }
        // Only the server closing the connection ends the peer.
        std::future::pending::<()>().await;
    };
    let closed = async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = read.read(&mut buf).await
            && n > 0
        {}
    };
    tokio::select! {
        () = closed => {}
        () = trickle => {}
    }
    Some(start.elapsed())
}
