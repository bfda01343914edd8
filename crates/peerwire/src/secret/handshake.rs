//! The secret-mode handshake, before the hello exchange (offset tables in docs/PROTOCOL.md,
//! "Secret mode").
//!
//! 1. The initiator sends the preamble: magic `PWS1`, the secret's name (length byte, then
//!    ASCII), then Noise message 1 (`NNpsk0`: the secret mixed in first, an ephemeral key)
//!    as a record (u16 length, bytes).
//! 2. The responder answers `S` and Noise message 2 (its ephemeral key, the shared key
//!    confirmed) as a record, or `R` and a record holding the reason it refuses (an unknown
//!    name; a message 1 that does not authenticate: another secret).
//! 3. Both switch to transport records ([`SecretStream`]).
//!
//! The preamble is the Noise prologue, so a name changed on the way fails the handshake. Fresh
//! ephemeral keys on both sides make every session's keys new: a recorded exchange replayed to
//! a node fails at its first record.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use peerwire_wire::GoAwayReason;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::stream::{MAX_RECORD, SecretStream};
use super::{SecretConfig, SecretFailure};
use crate::HandshakeError;
use crate::connection::handshake::refuse;
use crate::transport::{Connected, Io, Proof};

/// The first bytes of a secret-mode connection.
pub(crate) const MAGIC: [u8; 4] = *b"PWS1";
/// The responder's answer: the handshake goes on.
const ACCEPTED: u8 = b'S';
/// The responder's answer: refused (a record with the reason follows).
const REFUSED: u8 = b'R';
/// The Noise protocol: pre-shared key mixed in first, ephemeral keys only.
const NOISE: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";

fn failed(failure: SecretFailure, message: impl Into<String>) -> HandshakeError {
    HandshakeError::Secret {
        failure,
        message: message.into(),
    }
}

fn io_error(e: &io::Error) -> HandshakeError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => HandshakeError::Closed,
        _ => HandshakeError::Io(e.to_string()),
    }
}

fn prologue(name: &str) -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.push(name.len() as u8);
    p.extend_from_slice(name.as_bytes());
    p
}

fn builder<'a>(key: &'a [u8; 32], prologue: &'a [u8]) -> Result<snow::Builder<'a>, HandshakeError> {
    let params = NOISE
        .parse()
        .map_err(|e| failed(SecretFailure::Malformed, format!("noise parameters: {e}")))?;
    snow::Builder::new(params)
        .psk(0, key)
        .and_then(|b| b.prologue(prologue))
        .map_err(|e| failed(SecretFailure::Malformed, format!("noise setup: {e}")))
}

async fn read_record<R: AsyncRead + Unpin>(r: &mut R) -> Result<Vec<u8>, HandshakeError> {
    let len = r.read_u16().await.map_err(|e| io_error(&e))?;
    let mut buf = vec![0u8; usize::from(len)];
    r.read_exact(&mut buf).await.map_err(|e| io_error(&e))?;
    Ok(buf)
}

fn record(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Server side: the first byte tells a secret-mode peer from a plaintext or TLS one (which
/// gets a [`GoAwayReason::SecretRequired`] go-away it can read); then the handshake. All of it
/// bounded by `timeout`.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops the stream mid-handshake.
pub(crate) async fn accept<I: Io>(
    io: I,
    secrets: &SecretConfig,
    timeout: Duration,
) -> Result<(Connected, String), HandshakeError> {
    tokio::time::timeout(timeout, accept_inner(io, secrets))
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

async fn accept_inner<I: Io>(
    mut io: I,
    secrets: &SecretConfig,
) -> Result<(Connected, String), HandshakeError> {
    let first = io.read_u8().await.map_err(|e| io_error(&e))?;
    if first != MAGIC[0] {
        let (_, mut write) = crate::tls::Prefixed::new(first, io).split_io();
        let message = "this node accepts only connections holding its shared secret".to_string();
        refuse(&mut write, GoAwayReason::SecretRequired, message.clone()).await;
        return Err(failed(
            SecretFailure::NotSecret,
            format!("refused a connection without the secret: {message}"),
        ));
    }
    let mut rest = [0u8; 4];
    io.read_exact(&mut rest).await.map_err(|e| io_error(&e))?;
    if rest[..3] != MAGIC[1..] {
        return Err(failed(
            SecretFailure::Malformed,
            "not a secret-mode preamble",
        ));
    }
    let mut name = vec![0u8; usize::from(rest[3])];
    io.read_exact(&mut name).await.map_err(|e| io_error(&e))?;
    let message1 = read_record(&mut io).await?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let refuse_with = |reason: String| {
        let mut out = vec![REFUSED];
        out.extend_from_slice(&record(reason.as_bytes()));
        out
    };
    let Some(key) = secrets.key(&name) else {
        let reason = format!("no secret named {name:?} here");
        let _ = io.write_all(&refuse_with(reason.clone())).await;
        let _ = io.shutdown().await;
        return Err(failed(SecretFailure::UnknownSecret, reason));
    };
    let prologue = prologue(&name);
    let mut noise = builder(&key, &prologue)?
        .build_responder()
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    let mut scratch = vec![0u8; MAX_RECORD];
    if noise.read_message(&message1, &mut scratch).is_err() {
        let reason = format!("the handshake did not authenticate with secret {name:?}");
        let _ = io.write_all(&refuse_with(reason.clone())).await;
        let _ = io.shutdown().await;
        return Err(failed(SecretFailure::WrongSecret, reason));
    }
    let n = noise
        .write_message(&[], &mut scratch)
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    let mut answer = vec![ACCEPTED];
    answer.extend_from_slice(&record(&scratch[..n]));
    io.write_all(&answer).await.map_err(|e| io_error(&e))?;
    let noise = noise
        .into_transport_mode()
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    Ok((
        Connected::split(
            SecretStream::new(io, noise, BytesMut::new()),
            Proof::Secret(name.clone()),
        ),
        name,
    ))
}

/// Client side: the handshake on a connected stream, with the secret `secrets` connects with.
///
/// # Cancel safety
///
/// Not cancel safe: dropping the future drops the stream mid-handshake.
pub(crate) async fn connect<I: Io>(
    mut io: I,
    secrets: &SecretConfig,
) -> Result<(Connected, String), HandshakeError> {
    let (name, key) = secrets.current();
    let prologue = prologue(&name);
    let mut noise = builder(&key, &prologue)?
        .build_initiator()
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    let mut scratch = vec![0u8; MAX_RECORD];
    let n = noise
        .write_message(&[], &mut scratch)
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    let mut hello = prologue.clone();
    hello.extend_from_slice(&record(&scratch[..n]));
    io.write_all(&hello).await.map_err(|e| io_error(&e))?;
    let answer = io.read_u8().await.map_err(|e| io_error(&e))?;
    match answer {
        ACCEPTED => {}
        REFUSED => {
            let reason = read_record(&mut io).await?;
            let reason = String::from_utf8_lossy(&reason).into_owned();
            let failure = if reason.starts_with("no secret named") {
                SecretFailure::UnknownSecret
            } else {
                SecretFailure::WrongSecret
            };
            return Err(failed(failure, format!("the peer refused: {reason}")));
        }
        _ => {
            return Err(failed(
                SecretFailure::PeerNotSecret,
                "the peer answered without secret mode (plaintext or TLS)",
            ));
        }
    }
    let message2 = read_record(&mut io).await?;
    noise.read_message(&message2, &mut scratch).map_err(|_| {
        failed(
            SecretFailure::WrongSecret,
            "the peer's answer did not authenticate",
        )
    })?;
    let noise = noise
        .into_transport_mode()
        .map_err(|e| failed(SecretFailure::Malformed, e.to_string()))?;
    Ok((
        Connected::split(
            SecretStream::new(io, noise, BytesMut::new()),
            Proof::Secret(name.clone()),
        ),
        name.to_owned(),
    ))
}
