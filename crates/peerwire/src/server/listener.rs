//! The listener role (Hadoop's `Listener`): accepts connections, enforces the connection
//! limit, and runs each connection's handshake in its own task so a slow peer never stalls
//! accepting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use peerwire_wire::{GoAwayReason, Limits};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::ServerShared;
use super::address_caps::{AddressPermit, Admitted};
use crate::HandshakeError;
use crate::connection::Principal;
use crate::connection::frame_reader::FrameReader;
use crate::connection::{Conn, handshake};
use crate::transport::{Io, Listener, Proof, Security};

/// After a failed accept (for example out of file descriptors), wait this long before the
/// next one instead of spinning.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Accepts until `shutdown` fires.
pub(crate) async fn run<L: Listener>(
    mut listener: L,
    shared: Arc<ServerShared>,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (io, addr) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                metrics::counter!("peerwire_accept_errors_total").increment(1);
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        metrics::counter!("peerwire_connections_accepted_total").increment(1);
        let admitted = match shared.address_caps.admit(addr.ip()) {
            Some(Admitted::Exempt) => Ok(Permits::Exempt),
            Some(Admitted::Counted(by_address)) => shared
                .conn_limit
                .clone()
                .try_acquire_owned()
                .map(|total| Permits::Counted {
                    _total: total,
                    _by_address: by_address,
                })
                .map_err(|_| "limit"),
            None => Err("per_address"),
        };
        match admitted {
            Ok(permits) => {
                let shared2 = shared.clone();
                shared
                    .conn_tasks
                    .spawn(serve_connection(io, addr, permits, shared2));
            }
            Err("per_address") => {
                metrics::counter!("peerwire_connections_refused_total", "reason" => "per_address")
                    .increment(1);
                let cap = shared.address_caps.per_address();
                shared.conn_tasks.spawn(async move {
                    let (_r, mut w) = io.split_io();
                    handshake::refuse(
                        &mut w,
                        GoAwayReason::TooManyConnections,
                        format!(
                            "{} holds its limit of {cap} connections (setting `max_connections_per_address`)",
                            addr.ip()
                        ),
                    )
                    .await;
                });
            }
            Err(_) => {
                metrics::counter!("peerwire_connections_refused_total", "reason" => "limit")
                    .increment(1);
                let limit = shared.cfg.max_connections;
                shared.conn_tasks.spawn(async move {
                    let (_r, mut w) = io.split_io();
                    handshake::refuse(
                        &mut w,
                        GoAwayReason::TooManyConnections,
                        format!("server is at its limit of {limit} connections (setting `max_connections`)"),
                    )
                    .await;
                });
            }
        }
    }
}

/// A connection's places under the caps, held until it closes.
#[derive(Debug)]
enum Permits {
    /// From an address exempt from the caps.
    Exempt,
    /// Counted in the total and against its address (both released when dropped).
    Counted {
        _total: OwnedSemaphorePermit,
        _by_address: AddressPermit,
    },
}

/// Handshakes, starts the connection, and holds its connection-limit permit until it closes.
async fn serve_connection<I: Io>(
    io: I,
    addr: SocketAddr,
    permit: Permits,
    shared: Arc<ServerShared>,
) {
    // The handshakes' state (TLS, secret mode, the hello) is large and needed only until the
    // connection starts; boxed, it is freed then, and the future this task keeps for the
    // connection's whole life stays small (a few KiB per idle connection otherwise).
    let Some(connection) = Box::pin(establish(io, addr, &shared)).await else {
        return;
    };
    let key = shared.register(connection.clone());
    if shared.shutting_down.is_cancelled() {
        connection
            .conn
            .begin_close(GoAwayReason::Normal, "server shutting down".into());
    }
    connection.closed().await;
    shared.unregister(key);
    drop(permit);
}

/// Secures the stream, runs the hello handshake, and starts the connection on the service
/// the hello names; `None` if any of it failed (counted and logged).
async fn establish<I: Io>(
    io: I,
    addr: SocketAddr,
    shared: &Arc<ServerShared>,
) -> Option<crate::Connection> {
    let cfg = &shared.cfg;
    let timeout = cfg.connection.handshake_timeout;
    let secured = match cfg.connection.security() {
        Security::Plain => {
            let (r, w) = io.split_io();
            Ok((r, w, Proof::None))
        }
        Security::Tls(tls) => crate::tls::accept(io, tls, timeout)
            .await
            .map(|s| (s.read, s.write, s.proof)),
        Security::Secret(secret) => crate::secret::accept(io, secret, timeout)
            .await
            .map(|(s, _name)| (s.read, s.write, s.proof)),
    };
    let (r, mut w, proof) = match secured {
        Ok(secured) => secured,
        Err(e) => {
            handshake_failed(addr, &e);
            return None;
        }
    };
    let mut reader = FrameReader::new(r, Limits::handshake(), cfg.connection.read_buffer);
    // The service the hello's mount point names, once admitted.
    let chosen = std::sync::OnceLock::new();
    let hello = match handshake::accept(
        &mut reader,
        &mut w,
        &cfg.identity,
        &cfg.connection,
        proof.certificate(),
        |hello| {
            let access = &cfg.connection.access;
            if !access.is_open() {
                let principal = Principal::proven(&proof, hello.node_id, addr.ip());
                access
                    .check(&principal, crate::access::Access::Lane(hello.lane))
                    .map_err(|denied| (GoAwayReason::AccessDenied, denied.to_string()))?;
            }
            shared
                .mounts
                .find(hello, cfg.identity.node_id)
                .and_then(|service| {
                    service.admit(hello)?;
                    let _ = chosen.set(service.clone());
                    Ok(())
                })
                .map_err(|refusal| (refusal.reason, refusal.message))
        },
    )
    .await
    {
        Ok(hello) => {
            metrics::counter!("peerwire_handshakes_accepted_total", "lane" => hello.lane.to_string())
                .increment(1);
            hello
        }
        Err(e) => {
            handshake_failed(addr, &e);
            return None;
        }
    };
    let Some(service) = chosen.into_inner() else {
        return None; // not reached: the handshake succeeds only once a service admitted the hello
    };
    let runtime = service.runtime(hello.lane);
    let inbound = service;
    // A lane served on a runtime of its own gets its socket moved to that runtime's reactor.
    if let Some(rt) = &runtime {
        let read = reader.swap_io(Box::new(tokio::io::empty()));
        match crate::transport::rehome(read, w, rt) {
            Ok((read, write)) => {
                reader.swap_io(read);
                w = write;
            }
            Err(e) => {
                tracing::warn!(peer = %addr, error = %e, "could not move a connection to its lane's runtime");
                return None;
            }
        }
    }
    let principal = Principal::proven(&proof, hello.node_id, addr.ip());
    Some(Conn::start(
        reader,
        w,
        addr,
        hello,
        principal,
        &cfg.connection,
        inbound,
        &shared.conn_tasks,
        runtime.as_ref(),
    ))
}

/// Counts and logs a refused or failed handshake, labelled by its kind.
fn handshake_failed(addr: SocketAddr, e: &HandshakeError) {
    metrics::counter!("peerwire_handshakes_failed_total", "reason" => e.label()).increment(1);
    tracing::info!(peer = %addr, error = %e, "handshake refused");
}
