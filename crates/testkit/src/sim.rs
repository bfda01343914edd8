//! peerwire over [turmoil]'s simulated network: a [`Connector`] and a [`Listener`] whose
//! streams are turmoil's TCP, and [`Chaos`], a seeded schedule of partitions (both ways and
//! one way), holds, host crashes and restarts, and latency.
//!
//! Inside a turmoil host, set [`ConnectionConfig::network`](peerwire::ConnectionConfig) to
//! [`network()`] and serve a [`SimListener`]: everything else is the real library. Time is
//! turmoil's (tokio's paused clock, advanced by the simulation), so timeouts are exact and a
//! run is a function of its seed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use peerwire::transport::{Connector, Io, Listener, Network};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Opens turmoil TCP streams.
#[derive(Debug, Clone, Copy, Default)]
pub struct SimConnector;

impl Connector for SimConnector {
    type Io = SimStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<SimStream> {
        turmoil::net::TcpStream::connect(addr).await.map(SimStream)
    }
}

/// The simulated network, for [`ConnectionConfig::network`](peerwire::ConnectionConfig).
pub fn network() -> Network {
    Network::new(SimConnector)
}

/// Accepts turmoil TCP streams.
pub struct SimListener {
    inner: turmoil::net::TcpListener,
    addr: SocketAddr,
}

impl SimListener {
    /// Binds `port` on this host, named `host`; peers reach it at the host's simulated
    /// address.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future binds nothing.
    pub async fn bind(host: &str, port: u16) -> io::Result<Self> {
        let inner =
            turmoil::net::TcpListener::bind((IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).await?;
        let port = inner.local_addr()?.port();
        let ip = turmoil::lookup(host);
        Ok(Self {
            inner,
            addr: SocketAddr::new(ip, port),
        })
    }
}

impl std::fmt::Debug for SimListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimListener")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Listener for SimListener {
    type Io = SimStream;

    async fn accept(&mut self) -> io::Result<(SimStream, SocketAddr)> {
        let (stream, addr) = self.inner.accept().await?;
        Ok((SimStream(stream), addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// A turmoil TCP stream.
#[derive(Debug)]
pub struct SimStream(turmoil::net::TcpStream);

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl Io for SimStream {}

/// One fault [`Chaos`] can apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimFault {
    /// Nothing passes between the two hosts.
    Partition(String, String),
    /// Nothing passes from the first host to the second.
    PartitionOneWay(String, String),
    /// Messages between the two hosts are held, and delivered when the hold ends.
    Hold(String, String),
    /// The host crashes; it restarts (its host function runs again) when the fault ends.
    Crash(String),
    /// Every message between the two hosts takes this long.
    Latency(String, String, Duration),
}

/// A seeded schedule of faults: one at a time, each lasting 50 ms to 2 s of simulated time,
/// with a healthy gap of up to 1 s between them, until [`Chaos::heal`].
#[derive(Debug)]
pub struct Chaos {
    rng: fastrand::Rng,
    hosts: Vec<String>,
    crashable: Vec<String>,
    current: Option<(SimFault, Duration)>,
    next_at: Duration,
    /// Every fault applied, with its start time (for the failure message of a test).
    pub log: Vec<(Duration, SimFault)>,
}

impl Chaos {
    /// Faults among `hosts`; only hosts in `crashable` are crashed.
    pub fn new(seed: u64, hosts: &[&str], crashable: &[&str]) -> Self {
        Self {
            rng: fastrand::Rng::with_seed(seed),
            hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            crashable: crashable.iter().map(|h| (*h).to_owned()).collect(),
            current: None,
            next_at: Duration::ZERO,
            log: Vec::new(),
        }
    }

    fn pair(&mut self) -> (String, String) {
        let a = self.rng.usize(0..self.hosts.len());
        let mut b = self.rng.usize(0..self.hosts.len() - 1);
        if b >= a {
            b += 1;
        }
        (self.hosts[a].clone(), self.hosts[b].clone())
    }

    fn pick(&mut self) -> SimFault {
        let kinds = if self.crashable.is_empty() { 4 } else { 5 };
        match self.rng.u8(0..kinds) {
            0 => {
                let (a, b) = self.pair();
                SimFault::Partition(a, b)
            }
            1 => {
                let (a, b) = self.pair();
                SimFault::PartitionOneWay(a, b)
            }
            2 => {
                let (a, b) = self.pair();
                SimFault::Hold(a, b)
            }
            3 => {
                let (a, b) = self.pair();
                SimFault::Latency(a, b, Duration::from_millis(self.rng.u64(20..400)))
            }
            _ => SimFault::Crash(self.crashable[self.rng.usize(0..self.crashable.len())].clone()),
        }
    }

    /// Applies or ends faults as the simulated time says; call before every `sim.step()`.
    pub fn tick(&mut self, sim: &mut turmoil::Sim<'_>) {
        let now = sim.elapsed();
        if now < self.next_at {
            return;
        }
        match self.current.take() {
            Some((fault, _)) => {
                end(sim, &fault);
                self.next_at = now + Duration::from_millis(self.rng.u64(0..1000));
            }
            None => {
                let fault = self.pick();
                start(sim, &fault);
                self.log.push((now, fault.clone()));
                let lasts = Duration::from_millis(self.rng.u64(50..2000));
                self.current = Some((fault, now + lasts));
                self.next_at = now + lasts;
            }
        }
    }

    /// Ends the current fault, if any; no more are started.
    pub fn heal(&mut self, sim: &mut turmoil::Sim<'_>) {
        if let Some((fault, _)) = self.current.take() {
            end(sim, &fault);
        }
        self.next_at = Duration::MAX;
    }
}

fn start(sim: &mut turmoil::Sim<'_>, fault: &SimFault) {
    match fault {
        SimFault::Partition(a, b) => sim.partition(a.as_str(), b.as_str()),
        SimFault::PartitionOneWay(a, b) => sim.partition_oneway(a.as_str(), b.as_str()),
        SimFault::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
        SimFault::Crash(h) => sim.crash(h.as_str()),
        SimFault::Latency(a, b, d) => sim.set_link_latency(a.as_str(), b.as_str(), *d),
    }
}

fn end(sim: &mut turmoil::Sim<'_>, fault: &SimFault) {
    match fault {
        SimFault::Partition(a, b) => sim.repair(a.as_str(), b.as_str()),
        SimFault::PartitionOneWay(a, b) => sim.repair_oneway(a.as_str(), b.as_str()),
        SimFault::Hold(a, b) => sim.release(a.as_str(), b.as_str()),
        SimFault::Crash(h) => sim.bounce(h.as_str()),
        SimFault::Latency(a, b, _) => sim.set_link_latency(a.as_str(), b.as_str(), Duration::ZERO),
    }
}
