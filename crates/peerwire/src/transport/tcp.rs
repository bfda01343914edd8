//! TCP transport.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{BoxRead, BoxWrite, Connector, Io, IoWrite, Listener};

impl IoWrite for tokio::net::tcp::OwnedWriteHalf {
    #[cfg(target_os = "linux")]
    fn poll_send_file(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        file: &std::fs::File,
        offset: u64,
        len: usize,
    ) -> Option<std::task::Poll<io::Result<usize>>> {
        use std::task::Poll;
        let half: &Self = self.get_mut();
        let stream: &TcpStream = AsRef::<TcpStream>::as_ref(half);
        let Ok(mut offset) = nix::libc::off_t::try_from(offset) else {
            return Some(Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "file offset beyond off_t",
            ))));
        };
        Some(loop {
            match stream.poll_write_ready(cx) {
                Poll::Pending => break Poll::Pending,
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let sent = stream.try_io(tokio::io::Interest::WRITABLE, || {
                nix::sys::sendfile::sendfile(stream, file, Some(&mut offset), len)
                    .map_err(io::Error::from)
            });
            match sent {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break Poll::Ready(other),
            }
        })
    }
}

impl Io for TcpStream {
    fn split_io(self) -> (BoxRead, BoxWrite) {
        let (r, w) = self.into_split();
        (Box::new(r), Box::new(w))
    }
}

/// Connects over TCP with `TCP_NODELAY` set: the writer batches frames itself, so Nagle's
/// algorithm would only add latency.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    type Io = TcpStream;

    async fn connect(&self, addr: SocketAddr) -> io::Result<TcpStream> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

/// Connections the kernel queues for `accept`: 4,096 (Linux caps it at `net.core.somaxconn`,
/// 4,096 by default). The common default of 128 overflows when hundreds of peers connect at
/// once (a restart of a large cluster, or a flood of slow peers): the kernel then drops their
/// handshakes and they wait seconds for a retransmission before the server sees them.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Accepts TCP connections, setting `TCP_NODELAY` on each.
#[derive(Debug)]
pub struct TcpListener {
    inner: tokio::net::TcpListener,
}

impl TcpListener {
    /// Binds to `addr` (port 0 picks an ephemeral port).
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it completes leaves no socket bound.
    pub async fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        Ok(Self {
            inner: socket.listen(LISTEN_BACKLOG)?,
        })
    }

    /// Wraps a bound tokio listener.
    pub fn from_tokio(inner: tokio::net::TcpListener) -> Self {
        Self { inner }
    }
}

impl Listener for TcpListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> io::Result<(TcpStream, SocketAddr)> {
        let (stream, addr) = self.inner.accept().await?;
        stream.set_nodelay(true)?;
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}
