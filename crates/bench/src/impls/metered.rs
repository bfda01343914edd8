//! Any implementation under test with a Prometheus recorder installed in its server's process
//! (peerwire-kv's: every `*_seconds` metric a bucketed histogram, drained by an upkeep thread),
//! so a run puts a number on what the server's metrics cost per call: the same impl without a
//! recorder records into no-op handles. The recorder is process-wide, so these impls run only
//! with the server in a child process (`rpc.rs` refuses them with `--server-in-process`).

use std::marker::PhantomData;
use std::net::SocketAddr;

use crate::BoxError;
use crate::echo::EchoImpl;

/// Impl `I` with the recorder installed before its server starts.
#[derive(Debug)]
pub(crate) struct Metered<I>(PhantomData<I>);

impl<I: EchoImpl> EchoImpl for Metered<I> {
    type Server = I::Server;
    type Client = I::Client;
    type Caller = I::Caller;

    async fn start_server() -> Result<(I::Server, SocketAddr), BoxError> {
        if !peerwire_kv::metrics::install() {
            return Err("the Prometheus recorder could not be installed".into());
        }
        I::start_server().await
    }

    async fn stop_server(server: I::Server) {
        I::stop_server(server).await;
    }

    async fn connect(addr: SocketAddr) -> Result<I::Client, BoxError> {
        I::connect(addr).await
    }

    fn caller(client: &I::Client) -> I::Caller {
        I::caller(client)
    }

    async fn close(client: I::Client) {
        I::close(client).await;
    }
}
