//! What a connection runs over: any `AsyncRead + AsyncWrite`, produced by a [`Connector`]
//! (client side) or a [`Listener`] (server side).
//!
//! TCP is built in ([`TcpConnector`], [`TcpListener`]); TLS and simulated networks plug in by
//! implementing these traits, without touching the protocol code. Tests can also hand
//! [`tokio::io::duplex`] streams straight to the connection layer.

mod file_send;
mod network;
mod proof;
mod tcp;

use std::any::Any;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::HandshakeError;
use crate::tls::TlsConfig;

pub(crate) use proof::Proof;

pub use file_send::{FileSendTotals, file_send_totals};
pub(crate) use file_send::{record_copied, record_sendfile};
pub use network::Network;
pub(crate) use tcp::rehome;
pub use tcp::{LISTEN_BACKLOG, TcpConnector, TcpListener};

/// The read half of a transport stream.
pub type BoxRead = Box<dyn IoRead>;
/// The write half of a transport stream.
pub type BoxWrite = Box<dyn IoWrite>;

/// A transport half seen as its concrete type, so that the server can take a TCP
/// connection's halves back and move the socket to another runtime's reactor (for a lane
/// served on a thread of its own). Implemented for every `Send + 'static` type.
pub trait AsAny: Send + 'static {
    /// The half, as `Any`.
    fn as_any(&self) -> &dyn Any;
    /// The half, boxed as `Any`.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<T: Send + 'static> AsAny for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// The read half of a transport stream. Implemented for every `AsyncRead + Send + Unpin +
/// 'static` type.
pub trait IoRead: AsyncRead + Send + Unpin + AsAny {}

impl<T: AsyncRead + Send + Unpin + 'static> IoRead for T {}

/// The write half of a transport stream: bytes, and optionally file regions sent without
/// passing through user space.
pub trait IoWrite: AsyncWrite + Send + Unpin + AsAny {
    /// Writes up to `len` bytes of `file` from `offset` straight from the kernel's page
    /// cache (`sendfile`), returning how many were written. `None` means the transport
    /// cannot (the default: TLS, in-memory pipes); the caller then copies the bytes itself.
    fn poll_send_file(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _file: &std::fs::File,
        _offset: u64,
        _len: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        None
    }
}

impl<T: AsyncWrite + Send + 'static> IoWrite for tokio::io::WriteHalf<T> {}

impl IoWrite for tokio::io::DuplexStream {}

/// A bidirectional byte stream a connection can run over.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Splits the stream into independently owned halves. The default uses
    /// [`tokio::io::split`]; transports with a lock-free split (TCP) override it.
    fn split_io(self) -> (BoxRead, BoxWrite)
    where
        Self: Sized,
    {
        let (r, w) = tokio::io::split(self);
        (Box::new(r), Box::new(w))
    }
}

impl Io for tokio::io::DuplexStream {}

/// Opens transport streams to peers (client side).
pub trait Connector: Send + Sync + 'static {
    /// The stream type.
    type Io: Io;

    /// Opens a stream to `addr`.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the attempt; no stream is leaked.
    fn connect(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// Accepts transport streams from peers (server side).
pub trait Listener: Send + 'static {
    /// The stream type.
    type Io: Io;

    /// Waits for the next inbound stream.
    ///
    /// # Cancel safety
    ///
    /// Must be cancel safe: the server calls it inside `select!`.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;

    /// The address peers should connect to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A connected stream, split, ready for the hello exchange.
pub(crate) struct Connected {
    pub(crate) read: BoxRead,
    pub(crate) write: BoxWrite,
    /// What the security layer proved about the peer (its certificate, the secret's name).
    pub(crate) proof: Proof,
}

impl Connected {
    /// Splits a secured stream (TLS, secret mode) into the halves a connection runs on.
    pub(crate) fn split<S>(stream: S, proof: Proof) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read, write) = tokio::io::split(stream);
        Self {
            read: Box::new(read),
            write: Box::new(write),
            proof,
        }
    }
}

/// Why a stream could not be opened: the transport, or the TLS or secret-mode handshake on
/// top of it.
pub(crate) enum ConnectFailure {
    Io(io::Error),
    Secured(HandshakeError),
}

/// How a connection is secured: the configuration's mode.
#[derive(Clone, Copy)]
pub(crate) enum Security<'a> {
    Plain,
    Tls(&'a TlsConfig),
    Secret(&'a crate::secret::SecretConfig),
}

impl crate::config::ConnectionConfig {
    /// The security mode this configuration sets.
    pub(crate) fn security(&self) -> Security<'_> {
        match (&self.tls, &self.secret) {
            (Some(tls), _) => Security::Tls(tls),
            (None, Some(secret)) => Security::Secret(secret),
            (None, None) => Security::Plain,
        }
    }
}

/// Object-safe form of [`Connector`] used inside the client.
pub(crate) trait DynConnector: Send + Sync + 'static {
    /// Connects to `addr` and runs the handshake `security` asks for (TLS, secret mode).
    fn connect_split<'a>(
        &'a self,
        addr: SocketAddr,
        security: Security<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectFailure>>;
}

impl<C: Connector> DynConnector for C {
    fn connect_split<'a>(
        &'a self,
        addr: SocketAddr,
        security: Security<'a>,
    ) -> BoxFuture<'a, Result<Connected, ConnectFailure>> {
        Box::pin(async move {
            let io = self.connect(addr).await.map_err(ConnectFailure::Io)?;
            match security {
                Security::Plain => {
                    let (read, write) = io.split_io();
                    Ok(Connected {
                        read,
                        write,
                        proof: Proof::None,
                    })
                }
                Security::Tls(tls) => crate::tls::connect(io, tls)
                    .await
                    .map_err(ConnectFailure::Secured),
                Security::Secret(secret) => crate::secret::connect(io, secret)
                    .await
                    .map(|(connected, _name)| connected)
                    .map_err(ConnectFailure::Secured),
            }
        })
    }
}
