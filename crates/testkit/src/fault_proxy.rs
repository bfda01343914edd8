//! A loopback TCP proxy that injects network faults between real processes or sockets:
//! delay, blackhole (a partition that holds bytes until it heals), reset, and slow bytes.
//!
//! Point a peer at [`FaultProxy::addr`] instead of the server's address, then change the
//! fault with [`FaultProxy::set`] at any time; every connection through the proxy follows the
//! current fault. Dropping the proxy closes its listener and all its connections.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What the proxy does to the bytes passing through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything at once.
    Pass,
    /// Hold each chunk this long before forwarding it (in order, both directions).
    Delay(Duration),
    /// Forward nothing, in either direction, and stop reading: bytes wait (and the senders'
    /// buffers fill) until the fault changes, as in a partition that heals before TCP gives
    /// up. New connections are accepted and held too.
    Blackhole,
    /// Reset every connection (RST), and reset new ones as soon as they arrive.
    Reset,
    /// Forward at most this many bytes per second in each direction, in small slices.
    Slow(u32),
}

/// A fault-injecting TCP proxy to one target address.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    fault: watch::Sender<Fault>,
    tasks: JoinSet<()>,
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (fault, faults) = watch::channel(Fault::Pass);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(listener, target, faults));
        Self { addr, fault, tasks }
    }

    /// The address peers should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the fault; connections already open follow it at once.
    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    /// The current fault.
    pub fn fault(&self) -> Fault {
        *self.fault.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, faults: watch::Receiver<Fault>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        conns.spawn(proxy_connection(client, target, faults.clone()));
        // Reap finished connections so the set stays as small as the open ones.
        while conns.try_join_next().is_some() {}
    }
}

/// Proxies one connection until either side closes or the fault resets it.
async fn proxy_connection(
    client: TcpStream,
    target: SocketAddr,
    mut faults: watch::Receiver<Fault>,
) {
    let _ = client.set_nodelay(true);
    // A blackhole holds new connections before they reach the target.
    if wait_unless_blackholed(&mut faults).await == Fault::Reset {
        reset(&client);
        return;
    }
    let Ok(server) = TcpStream::connect(target).await else {
        reset(&client);
        return;
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Each direction ends on its own (a FIN is passed on, the other direction goes on), or
    // both end on a reset.
    tokio::join!(
        pump(client_read, server_write, faults.clone()),
        pump(server_read, client_write, faults),
    );
}

/// Waits while the fault is a blackhole; returns the fault that ended the wait.
async fn wait_unless_blackholed(faults: &mut watch::Receiver<Fault>) -> Fault {
    loop {
        let now = *faults.borrow_and_update();
        if now != Fault::Blackhole {
            return now;
        }
        if faults.changed().await.is_err() {
            return Fault::Reset;
        }
    }
}

/// Forwards `from` to `to` under the current fault until `from` ends or a reset. On a reset
/// both sockets are set to close with RST; otherwise the write side is shut down (a FIN).
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut faults: watch::Receiver<Fault>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if wait_unless_blackholed(&mut faults).await == Fault::Reset {
            reset(from.as_ref());
            reset(to.as_ref());
            return;
        }
        let read = tokio::select! {
            read = from.read(&mut buf) => read,
            changed = faults.changed() => {
                if changed.is_err() {
                    return;
                }
                // Look at the new fault before reading on.
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            let take = match wait_unless_blackholed(&mut faults).await {
                Fault::Reset => {
                    reset(from.as_ref());
                    reset(to.as_ref());
                    return;
                }
                Fault::Pass | Fault::Blackhole => chunk.len(),
                Fault::Delay(d) => {
                    tokio::time::sleep(d).await;
                    chunk.len()
                }
                Fault::Slow(bytes_per_sec) => {
                    // Tenth-of-a-second slices: smooth enough, few wakeups.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    (bytes_per_sec as usize / 10).clamp(1, chunk.len())
                }
            };
            if to.write_all(&chunk[..take]).await.is_err() {
                return;
            }
            chunk = &chunk[take..];
        }
    }
}

/// Makes the next close of `stream` a reset (RST) instead of a FIN.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}
