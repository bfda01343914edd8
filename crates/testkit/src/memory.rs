//! An in-memory network: listeners and connectors over `tokio::io::duplex` pipes, so the whole
//! stack (handshake, connection, server core, client pool) runs without sockets.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use peerwire::transport::{Connector, Listener};
use tokio::io::DuplexStream;
use tokio::sync::mpsc;

/// Bytes each direction of an in-memory pipe buffers.
const PIPE_BUFFER: usize = 256 * 1024;

type Inbox = mpsc::UnboundedSender<(DuplexStream, SocketAddr)>;

/// A set of in-memory listeners reachable by address.
#[derive(Debug, Default)]
pub struct MemoryNetwork {
    listeners: Mutex<HashMap<SocketAddr, Inbox>>,
    next_client_port: Mutex<u16>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            listeners: Mutex::new(HashMap::new()),
            next_client_port: Mutex::new(40_000),
        })
    }

    /// Listens on `addr`; a later listener on the same address replaces it.
    pub fn listen(&self, addr: SocketAddr) -> MemoryListener {
        let (tx, rx) = mpsc::unbounded_channel();
        self.listeners
            .lock()
            .expect("network lock")
            .insert(addr, tx);
        MemoryListener { addr, rx }
    }

    /// A connector into this network.
    pub fn connector(self: &Arc<Self>) -> MemoryConnector {
        MemoryConnector { net: self.clone() }
    }
}

/// Accepts in-memory connections made to its address.
#[derive(Debug)]
pub struct MemoryListener {
    addr: SocketAddr,
    rx: mpsc::UnboundedReceiver<(DuplexStream, SocketAddr)>,
}

impl Listener for MemoryListener {
    type Io = DuplexStream;

    async fn accept(&mut self) -> io::Result<(DuplexStream, SocketAddr)> {
        self.rx
            .recv()
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "network dropped"))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

/// Connects to listeners of a [`MemoryNetwork`].
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    net: Arc<MemoryNetwork>,
}

impl Connector for MemoryConnector {
    type Io = DuplexStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<DuplexStream> {
        let inbox = self
            .net
            .listeners
            .lock()
            .expect("network lock")
            .get(&addr)
            .cloned();
        let inbox = inbox.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on {addr}"),
            )
        })?;
        let port = {
            let mut next = self.net.next_client_port.lock().expect("network lock");
            *next = next.wrapping_add(1);
            *next
        };
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        inbox
            .send((theirs, SocketAddr::from(([127, 0, 0, 2], port))))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("listener on {addr} closed"),
                )
            })?;
        Ok(ours)
    }
}
