//! The typed client side of a protocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::SERVICE_ROUTE;
use super::engine::Engine;
use super::envelope::ServiceEnvelope;
use crate::client::{CallOptions, Client, Peer};
use crate::error::Error;

/// Calls the methods of one protocol. Cheap to clone.
///
/// Every call gets an id that stays the same across its retries, so the server's retry cache
/// recognises a retried non-idempotent call. That makes it safe to retry every call whose
/// outcome is unknown, which this client does (within the client's retry policy).
#[derive(Debug, Clone)]
pub struct ProtocolClient {
    client: Client,
    protocol: Arc<str>,
    version: u32,
    client_id: u64,
    next_call: Arc<AtomicU64>,
    /// The size of the last request body, to size the next envelope's buffer.
    body_hint: Arc<AtomicUsize>,
}

/// The largest buffer pre-sized from the last request's size.
const BODY_HINT_MAX: usize = 64 * 1024;

impl ProtocolClient {
    /// A client for `protocol` version `version` over `client`'s connections.
    pub fn new(client: Client, protocol: &str, version: u32) -> Self {
        Self {
            client,
            protocol: protocol.into(),
            version,
            client_id: fastrand::u64(1..),
            next_call: Arc::new(AtomicU64::new(1)),
            body_hint: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Calls `method` on `peer` with the client's default deadline.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call (a cancel frame tells the server).
    pub async fn call<E, Req, Resp>(
        &self,
        peer: impl Into<Peer>,
        method: &str,
        engine: E,
        request: &Req,
    ) -> Result<Resp, Error>
    where
        E: Engine<Req> + Engine<Resp>,
    {
        self.call_with(peer, method, engine, request, CallOptions::default())
            .await
    }

    /// Calls `method` with options (deadline, hash key, retry policy).
    ///
    /// # Cancel safety
    ///
    /// As [`ProtocolClient::call`].
    pub async fn call_with<E, Req, Resp>(
        &self,
        peer: impl Into<Peer>,
        method: &str,
        engine: E,
        request: &Req,
        options: CallOptions,
    ) -> Result<Resp, Error>
    where
        E: Engine<Req> + Engine<Resp>,
    {
        let _ = engine;
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let mut envelope = ServiceEnvelope::encode_header(
            E::ID,
            &self.protocol,
            self.version,
            method,
            self.client_id,
            call_id,
            self.body_hint.load(Ordering::Relaxed),
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let header = envelope.len();
        <E as Engine<Req>>::encode(request, &mut envelope)
            .map_err(|e| Error::Codec(format!("request to `{}.{method}`: {e}", self.protocol)))?;
        // Size the next envelope like this one, so a request is not copied as the buffer grows.
        self.body_hint.store(
            (envelope.len() - header).min(BODY_HINT_MAX),
            Ordering::Relaxed,
        );
        let envelope = Bytes::from(envelope);
        let options = CallOptions {
            // Idempotent methods may run again; the others are answered from the retry cache.
            idempotent: true,
            ..options
        };
        let reply: Bytes = self
            .client
            .call_with(peer, SERVICE_ROUTE, envelope, options)
            .await?;
        <E as Engine<Resp>>::decode(&reply)
            .map_err(|e| Error::Codec(format!("reply of `{}.{method}`: {e}", self.protocol)))
    }
}
