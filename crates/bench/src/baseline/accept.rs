//! A TCP accept loop that hands each connection (with `TCP_NODELAY` set) to a handler task and
//! can be stopped, aborting the connections still open.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::BoxError;

/// How long [`AcceptLoop::stop`] waits for the loop to end before aborting it.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct AcceptLoop {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AcceptLoop {
    /// Binds `127.0.0.1:0` and serves every accepted connection with `handler` on its own task.
    /// `name` labels error messages.
    pub(crate) async fn bind<H, F>(
        name: &'static str,
        handler: H,
    ) -> Result<(Self, SocketAddr), BoxError>
    where
        H: Fn(TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("{name} server: bind 127.0.0.1:0: {e}"))?;
        let addr = listener.local_addr()?;
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(accept_loop(name, listener, handler, stop_rx));
        Ok((Self { stop, task }, addr))
    }

    /// Stops accepting, aborts the connection tasks still running and waits for all of them.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_TIMEOUT, self.task).await.is_err() {
            abort.abort();
        }
    }
}

async fn accept_loop<H, F>(
    name: &'static str,
    listener: TcpListener,
    handler: H,
    mut stop: oneshot::Receiver<()>,
) where
    H: Fn(TcpStream) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(e) = stream.set_nodelay(true) {
                        eprintln!("{name} server: set_nodelay for {peer}: {e}");
                    }
                    connections.spawn(handler(stream));
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    eprintln!("{name} server: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}
