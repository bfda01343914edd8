//! The raw-TCP baseline of the `datastream` scenario: the same packets written back to back
//! on one plain tokio TCP connection; the receiver reads into a packet-sized buffer and
//! counts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::BoxError;

/// The receiving end: its address and the bytes it read.
#[derive(Debug, Clone)]
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) received: Arc<AtomicU64>,
}

/// Starts a receiver on the current runtime.
pub(crate) async fn receiver(buffer: usize) -> Result<Receiver, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; buffer];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    counter.fetch_add(n as u64, Ordering::Relaxed);
                }
            });
        }
    });
    Ok(Receiver { addr, received })
}

/// A sender writing `packet` back to back until stopped.
pub(crate) struct Sender {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sender {
    pub(crate) async fn start(addr: SocketAddr, packet: Bytes) -> Result<Self, BoxError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            while !flag.load(Ordering::Relaxed) {
                if stream.write_all(&packet).await.is_err() {
                    return;
                }
            }
        });
        Ok(Self { stop, task })
    }

    pub(crate) async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
    }
}
