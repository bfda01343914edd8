//! The raw TCP baseline of the `stream` scenario, the limit of one loopback connection for the
//! same items: plain tokio, a u32 length before each item's bytes, the server copying items
//! into 256 KiB buffers written whole, the client reading into a buffer as large and taking each
//! item as a slice of it (no framing beyond the length, no encoding, no flow control).

use std::net::SocketAddr;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BoxError;

/// Bytes gathered before a write.
const WRITE_BATCH: usize = 256 * 1024;

/// Starts the server on the current runtime: on each connection, every 12-byte request (count
/// u64, size u32) is answered by `count` items of `size` bytes. It serves until the runtime
/// stops.
pub(crate) async fn server() -> Result<SocketAddr, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            tokio::spawn(serve(conn));
        }
    });
    Ok(addr)
}

async fn serve(mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut out = BytesMut::with_capacity(WRITE_BATCH + 64 * 1024);
    loop {
        let count = conn.read_u64().await?;
        let size = conn.read_u32().await?;
        let data = vec![7u8; size as usize];
        for _ in 0..count {
            out.put_u32(size);
            out.put_slice(&data);
            if out.len() >= WRITE_BATCH {
                conn.write_all(&out).await?;
                out.clear();
            }
        }
        conn.write_all(&out).await?;
        out.clear();
    }
}

/// One connection to the server at `addr`.
pub(crate) async fn client(addr: SocketAddr) -> Result<TcpStream, BoxError> {
    let conn = TcpStream::connect(addr).await?;
    conn.set_nodelay(true)?;
    Ok(conn)
}

/// Reads one stream of `count` items of `size` bytes over `conn`; the items received.
pub(crate) async fn read(conn: &mut TcpStream, count: u64, size: u32) -> Result<u64, BoxError> {
    let mut request = [0u8; 12];
    request[..8].copy_from_slice(&count.to_be_bytes());
    request[8..].copy_from_slice(&size.to_be_bytes());
    conn.write_all(&request).await?;
    let mut buf = BytesMut::with_capacity(2 * WRITE_BATCH);
    let mut n = 0u64;
    while n < count {
        if buf.len() >= 4 {
            let len = (&buf[..4]).get_u32() as usize;
            if buf.len() >= 4 + len {
                let mut item = buf.split_to(4 + len).freeze();
                item.advance(4);
                if item.len() != size as usize {
                    return Err(format!("an item of {} bytes, not {size}", item.len()).into());
                }
                n += 1;
                continue;
            }
        }
        if buf.capacity() - buf.len() < WRITE_BATCH / 2 {
            buf.reserve(2 * WRITE_BATCH);
        }
        if conn.read_buf(&mut buf).await? == 0 {
            return Err(format!("the server closed after {n} of {count} items").into());
        }
    }
    Ok(n)
}
