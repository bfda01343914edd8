//! TCP transport.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::{AsAny, BoxRead, BoxWrite, Connector, Io, IoWrite, Listener};

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

/// Moves a TCP connection split into `read` and `write` to `runtime`'s reactor: its readiness
/// events then wake that runtime's thread only, not the one that accepted it. Halves of any
/// other transport (TLS, in-memory, simulated) come back unchanged.
///
/// The server accepts every connection on its own runtime and learns the connection's lane only
/// from the handshake. A lane served on a thread of its own (the raft snapshot lane) would
/// otherwise keep the accepting thread busy relaying each of its reads.
///
/// # Errors
///
/// The socket could not be taken from its reactor or registered with the new one; the
/// connection is then lost.
pub(crate) fn rehome(
    read: BoxRead,
    write: BoxWrite,
    runtime: &tokio::runtime::Handle,
) -> io::Result<(BoxRead, BoxWrite)> {
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    // `AsAny` is called on the halves themselves, not on their boxes.
    if !(AsAny::as_any(&*read).is::<OwnedReadHalf>()
        && AsAny::as_any(&*write).is::<OwnedWriteHalf>())
    {
        return Ok((read, write));
    }
    let (Ok(read), Ok(write)) = (
        read.into_any().downcast::<OwnedReadHalf>(),
        write.into_any().downcast::<OwnedWriteHalf>(),
    ) else {
        unreachable!("both halves were checked to be TCP halves");
    };
    let stream = (*read)
        .reunite(*write)
        .map_err(|_| io::Error::other("the halves belong to different TCP connections"))?;
    // `into_std` takes the socket out of its reactor; `from_std` inside `enter` registers it
    // with the new runtime's.
    let std = stream.into_std()?;
    let _entered = runtime.enter();
    let stream = TcpStream::from_std(std)?;
    Ok(stream.split_io())
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

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An accepted connection moved to runtime B keeps working after runtime A, whose reactor
    /// it was registered with, is gone.
    #[test]
    fn a_rehomed_connection_outlives_the_runtime_that_accepted_it() {
        let a = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let b = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (read, write, client) = a.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let (read, write) = server.split_io();
            let (read, write) = rehome(read, write, b.handle()).unwrap();
            (read, write, client.into_std().unwrap())
        });
        drop(a);
        client.set_nonblocking(false).unwrap();
        let echo = std::thread::spawn(move || {
            let mut client = client;
            let mut buf = [0u8; 4];
            client.read_exact(&mut buf).unwrap();
            client.write_all(&buf).unwrap();
        });
        let back = b.block_on(async move {
            let (mut read, mut write) = (read, write);
            write.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            read.read_exact(&mut buf).await.unwrap();
            buf
        });
        assert_eq!(&back, b"ping");
        echo.join().unwrap();
    }

    #[tokio::test]
    async fn halves_of_other_transports_come_back_unchanged() {
        let (stream, _other) = tokio::io::duplex(64);
        let (read, write) = tokio::io::split(stream);
        let (read, write) = rehome(
            Box::new(read),
            Box::new(write),
            &tokio::runtime::Handle::current(),
        )
        .unwrap();
        assert!(AsAny::as_any(&*read).is::<tokio::io::ReadHalf<tokio::io::DuplexStream>>());
        assert!(AsAny::as_any(&*write).is::<tokio::io::WriteHalf<tokio::io::DuplexStream>>());
    }
}
