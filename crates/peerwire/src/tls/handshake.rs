//! The TLS handshake on both sides, before the hello exchange.

use std::io;
use std::time::Duration;

use peerwire_wire::GoAwayReason;
use rustls_pki_types::CertificateDer;
use tokio::io::AsyncReadExt;

use super::{PeerCert, Prefixed, TLS_HANDSHAKE_RECORD, TlsConfig, TlsFailure, classify_io};
use crate::HandshakeError;
use crate::connection::handshake::refuse;
use crate::transport::{Connected, Io};

/// Server side: tells a TLS client from a plaintext one by its first byte (a plaintext peer
/// gets a [`GoAwayReason::TlsRequired`] go-away it can read), then runs the TLS handshake.
/// All of it is bounded by `timeout`.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops the stream mid-handshake.
pub(crate) async fn accept<I: Io>(
    mut io: I,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<Connected, HandshakeError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let first = tokio::time::timeout_at(deadline, io.read_u8())
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
        .map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
            _ => HandshakeError::Io(e.to_string()),
        })?;
    let io = Prefixed::new(first, io);
    if first != TLS_HANDSHAKE_RECORD {
        let (_, mut write) = io.split_io();
        let message = "this node accepts only TLS connections".to_string();
        refuse(&mut write, GoAwayReason::TlsRequired, message.clone()).await;
        return Err(HandshakeError::Tls {
            failure: TlsFailure::NotTls,
            message: format!("refused a plaintext connection: {message}"),
        });
    }
    let stream = tokio::time::timeout_at(deadline, tls.acceptor().accept(io))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
        .map_err(|e| handshake_error(&e))?;
    let cert = first_cert(stream.get_ref().1.peer_certificates())?;
    Ok(Connected::split(
        stream,
        crate::transport::Proof::Certificate(cert),
    ))
}

/// Client side: runs the TLS handshake on a connected stream.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops the stream mid-handshake.
pub(crate) async fn connect<I: Io>(io: I, tls: &TlsConfig) -> Result<Connected, HandshakeError> {
    let stream = tls
        .connector()
        .connect(TlsConfig::server_name(), io)
        .await
        .map_err(|e| handshake_error(&e))?;
    let cert = first_cert(stream.get_ref().1.peer_certificates())?;
    Ok(Connected::split(
        stream,
        crate::transport::Proof::Certificate(cert),
    ))
}

/// The peer's end-entity certificate. Both sides require one, so rustls has already refused
/// a peer without; this guards the invariant.
fn first_cert(certs: Option<&[CertificateDer<'static>]>) -> Result<PeerCert, HandshakeError> {
    certs
        .and_then(|c| c.first())
        .map(|c| PeerCert::new(c.clone()))
        .ok_or_else(|| HandshakeError::Tls {
            failure: TlsFailure::NoCertificate,
            message: "the peer presented no certificate".into(),
        })
}

fn handshake_error(e: &io::Error) -> HandshakeError {
    classify_io(e).unwrap_or_else(|| match e.kind() {
        io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        _ => HandshakeError::Io(e.to_string()),
    })
}
