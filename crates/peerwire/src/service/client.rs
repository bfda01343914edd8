//! The typed client side of a protocol.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::SERVICE_ROUTE;
use super::engine::Engine;
use super::envelope::ServiceEnvelope;
use super::stream::{self, ReplyStream};
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
        let envelope = self.envelope::<E, Req>(method, request)?;
        let options = CallOptions {
            // Idempotent methods may run again; the others are answered from the retry cache.
            idempotent: true,
            ..options
        };
        let reply: Bytes = self
            .client
            .call_with(peer, SERVICE_ROUTE, envelope, options)
            .await?;
        self.decode_reply::<E, Resp>(method, &reply)
    }

    /// The envelope of a call of `method` with `request`: header, then the engine's encoding.
    fn envelope<E, Req>(&self, method: &str, request: &Req) -> Result<Bytes, Error>
    where
        E: Engine<Req>,
    {
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
        Ok(Bytes::from(envelope))
    }

    /// Decodes the reply of a call of `method`.
    fn decode_reply<E, Resp>(&self, method: &str, reply: &Bytes) -> Result<Resp, Error>
    where
        E: Engine<Resp>,
    {
        <E as Engine<Resp>>::decode(reply)
            .map_err(|e| Error::Codec(format!("reply of `{}.{method}`: {e}", self.protocol)))
    }

    /// Calls `method` over `conn`, an open connection (for a server's handler, the connection
    /// its call came on: the peer serves the protocol there with [`super::Callbacks`]), with
    /// `deadline`. Not retried: the connection is this one.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future abandons the call (a cancel frame tells the peer).
    pub async fn call_on<E, Req, Resp>(
        &self,
        conn: &crate::Connection,
        method: &str,
        engine: E,
        request: &Req,
        deadline: std::time::Duration,
    ) -> Result<Resp, Error>
    where
        E: Engine<Req> + Engine<Resp>,
    {
        let _ = engine;
        let envelope = self.envelope::<E, Req>(method, request)?;
        let reply = conn.call(SERVICE_ROUTE, envelope, deadline).await?;
        self.decode_reply::<E, Resp>(method, &reply)
    }

    /// The Open payload of a stream of `method`, with `first` as its first request.
    fn open_payload<E, Req>(&self, method: &str, first: Option<&Req>) -> Result<Bytes, Error>
    where
        E: Engine<Req>,
    {
        let call_id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let header = ServiceEnvelope::encode_header(
            E::ID,
            &self.protocol,
            self.version,
            method,
            self.client_id,
            call_id,
            64,
        )
        .map_err(|e| Error::Config(e.to_string()))?;
        let mut payload = Vec::with_capacity(1 + header.len() + 64);
        payload.push(stream::codec::OPEN);
        payload.extend_from_slice(&header);
        if let Some(first) = first {
            <E as Engine<Req>>::encode(first, &mut payload).map_err(|e| {
                Error::Codec(format!("request to `{}.{method}`: {e}", self.protocol))
            })?;
        }
        Ok(Bytes::from(payload))
    }

    /// Opens a stream of `method` on one connection to `peer`.
    async fn open<E, Req>(
        &self,
        peer: Peer,
        method: &str,
        first: Option<&Req>,
        options: &CallOptions,
    ) -> Result<(crate::Connection, u64, Option<tokio::time::Instant>), Error>
    where
        E: Engine<Req>,
    {
        let payload = self.open_payload::<E, Req>(method, first)?;
        let conn = self.client.connection(peer, options.hash_key).await?;
        let deadline = options
            .deadline
            .unwrap_or(self.client.inner.cfg.default_deadline);
        let until = options.deadline.map(|d| tokio::time::Instant::now() + d);
        let id = match &options.context {
            Some(context) => {
                crate::context::scope(
                    crate::context::outgoing(Some(context)),
                    stream::open_stream(&conn, payload, deadline),
                )
                .await?
            }
            None => stream::open_stream(&conn, payload, deadline).await?,
        };
        Ok((conn, id, until))
    }

    /// Calls a server-streaming `method`: `request` in, its replies out as they come. With
    /// `options.deadline`, the whole stream ends by then.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it returns may leave the stream open on the server until
    /// its connection closes or it idles out; dropping the returned stream closes it.
    pub async fn server_streaming<E, Req, Resp>(
        &self,
        peer: impl Into<Peer>,
        method: &str,
        engine: E,
        request: &Req,
        options: CallOptions,
    ) -> Result<ReplyStream<Resp>, Error>
    where
        E: Engine<Req> + Engine<Resp>,
    {
        let _ = engine;
        let (conn, id, until) = self
            .open::<E, Req>(peer.into(), method, Some(request), &options)
            .await?;
        Ok(ReplyStream::new(
            conn,
            id,
            <E as Engine<Resp>>::decode_bytes,
            format!("{}.{method}", self.protocol),
            until,
            None,
        ))
    }

    /// Calls a client-streaming `method`: every item of `requests` in (pushed as the method
    /// takes them), its one reply out.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future closes the stream on the server.
    pub async fn client_streaming<E, Req, Resp, S>(
        &self,
        peer: impl Into<Peer>,
        method: &str,
        engine: E,
        requests: S,
        options: CallOptions,
    ) -> Result<Resp, Error>
    where
        E: Engine<Req> + Engine<Resp>,
        S: futures::Stream<Item = Req> + Send,
    {
        let _ = engine;
        let (conn, id, until) = self
            .open::<E, Req>(peer.into(), method, None, &options)
            .await?;
        let mut replies: ReplyStream<Resp> = ReplyStream::new(
            conn.clone(),
            id,
            <E as Engine<Resp>>::decode_bytes,
            format!("{}.{method}", self.protocol),
            until,
            None,
        );
        let pushed = stream::push_all(conn, id, requests, <E as Engine<Req>>::encode, until);
        // The method may answer (or fail) before it read everything: whichever comes first.
        let mut pushed = std::pin::pin!(pushed);
        let mut push_done = false;
        loop {
            tokio::select! {
                reply = futures::StreamExt::next(&mut replies) => {
                    return match reply {
                        Some(r) => r,
                        None => Err(Error::Codec(format!(
                            "`{}.{method}` ended without a reply",
                            self.protocol
                        ))),
                    };
                }
                pushed = &mut pushed, if !push_done => {
                    push_done = true;
                    pushed?;
                }
            }
        }
    }

    /// Calls a bidirectional `method`: `requests` are pushed (in a task of their own) while
    /// the replies are read.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before it returns may leave the stream open on the server until
    /// its connection closes or it idles out; dropping the returned stream closes it and stops
    /// the pushing.
    pub async fn bidi_streaming<E, Req, Resp, S>(
        &self,
        peer: impl Into<Peer>,
        method: &str,
        engine: E,
        requests: S,
        options: CallOptions,
    ) -> Result<ReplyStream<Resp>, Error>
    where
        E: Engine<Req> + Engine<Resp>,
        Req: Send + 'static,
        S: futures::Stream<Item = Req> + Send + 'static,
    {
        let _ = engine;
        let (conn, id, until) = self
            .open::<E, Req>(peer.into(), method, None, &options)
            .await?;
        let pusher_conn = conn.clone();
        let what = format!("{}.{method}", self.protocol);
        let pusher = tokio::spawn(async move {
            if let Err(e) = stream::push_all(
                pusher_conn.clone(),
                id,
                requests,
                <E as Engine<Req>>::encode,
                until,
            )
            .await
            {
                tracing::debug!(stream = id, error = %e, "pushing requests failed; closing the stream");
                let _ = pusher_conn.send_oneway(stream::STREAM_ROUTE, stream::codec::close(id));
            }
        });
        Ok(ReplyStream::new(
            conn,
            id,
            <E as Engine<Resp>>::decode_bytes,
            what,
            until,
            Some(pusher),
        ))
    }
}
