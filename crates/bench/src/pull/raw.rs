//! The raw-TCP `sendfile` baseline of the `pull` scenario: a plain tokio server that, for each
//! connection, reads a one-byte request and sends the whole file with `sendfile`; the reader
//! reads into a chunk-sized buffer and counts. The limit a pull can approach.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BoxError;

/// Starts the server on the current runtime; it serves until the runtime stops.
pub(crate) async fn server(file: Arc<std::fs::File>) -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let file = file.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1];
                if stream.read_exact(&mut request).await.is_ok() {
                    let _ = send_file(&stream, &file).await;
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(addr)
}

/// Sends all of `file` on `stream` with `sendfile`.
async fn send_file(stream: &TcpStream, file: &std::fs::File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    let mut offset: i64 = 0;
    while (offset as u64) < len {
        stream.writable().await?;
        let left = (len - offset as u64).min(1 << 30) as usize;
        match stream.try_io(tokio::io::Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(stream, file, Some(&mut offset), left)
                .map_err(std::io::Error::from)
        }) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads the whole file from the server at `addr`; returns the bytes read.
pub(crate) async fn pull(addr: SocketAddr, buffer: usize) -> Result<u64, BoxError> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    stream.write_all(&[1]).await?;
    let mut buf = vec![0u8; buffer];
    let mut total = 0u64;
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
    }
}
