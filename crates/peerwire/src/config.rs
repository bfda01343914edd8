//! Configuration: identity, per-connection limits and timeouts, server and client settings.
//!
//! Every default is a named constant with the reason for its value.

use std::time::Duration;

use crate::Error;

/// Default largest frame body a connection accepts; see
/// [`peerwire_wire::limits::DEFAULT_MAX_BODY`] for the reasoning (16 MiB).
pub const DEFAULT_MAX_FRAME_BODY: u32 = peerwire_wire::limits::DEFAULT_MAX_BODY;

/// Default largest message payload a connection accepts, whole or in parts; see
/// [`peerwire_wire::limits::DEFAULT_MAX_MESSAGE_BYTES`] for the reasoning (128 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = peerwire_wire::limits::DEFAULT_MAX_MESSAGE_BYTES;

/// Default largest part of a message sent in parts while the connection carries nothing else:
/// 512 KiB. A message larger than this travels in parts; so does any message over 64 KiB while
/// small frames share the connection, in 64 KiB parts, so a small call waits for one small part
/// rather than for the message (see `connection/parts.rs`). Measured alone at one call in
/// flight (`peerwire-bench rpc`, echo calls/s for 1 MiB / 64 MiB payloads): 256 KiB parts
/// 1,366 / 21, 512 KiB 2,133 / 42, 1 MiB 1,069 / 34, a 1 MiB message in one frame 812; and
/// raft snapshot chunks (256 KiB) go whole, which carried snapshots ~8% faster than in parts.
pub const DEFAULT_MESSAGE_PART: usize = 512 * 1024;

/// Default calls in flight per connection: 1,024. Enough to keep a loopback or LAN link busy
/// (the throughput of a single connection levels off well below this), small enough that the
/// replies one connection can have queued stay bounded.
pub const DEFAULT_MAX_INFLIGHT: usize = 1024;

/// Default frames in a connection's write queue: 4,096, etcd's stream buffer size. Replies do
/// not count against it beyond the in-flight limit, so it must exceed `max_inflight`.
pub const DEFAULT_WRITE_QUEUE: usize = 4096;

/// Default bytes of one-way and control frames a connection's write queue holds: 64 MiB.
/// With `write_queue` alone, a peer that stops reading could make a sender hold 4,096 frames
/// of up to 16 MiB each; this caps the sum. Four maximum frames fit, and a frame larger than
/// the budget still passes when the queue is empty.
pub const DEFAULT_WRITE_QUEUE_BYTES: usize = 64 * 1024 * 1024;

/// Default bytes the writer gathers before it writes, even if more frames are queued:
/// 256 KiB. Large enough to fill a socket send buffer in one vectored write, small enough
/// that one batch does not delay the next for long.
pub const DEFAULT_MAX_WRITE_BATCH: usize = 256 * 1024;

/// Default largest read: 64 KiB, a typical socket receive window. Reads start smaller and grow
/// to this only while the peer keeps them full; larger frames grow the buffer up to the frame
/// limit.
pub const DEFAULT_READ_BUFFER: usize = 64 * 1024;

/// Default read timeout: 5 s, etcd's `ConnReadTimeout`. A connection that delivers nothing,
/// not even a heartbeat, for this long is dead.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Default heartbeat interval: a third of the read timeout (etcd sends link heartbeats every
/// `ConnReadTimeout / 3`), so two lost heartbeats do not close a link.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1666);

/// Default idle timeout: 5 minutes without calls closes a connection (heartbeats do not count).
/// Clients reconnect lazily, so this only reclaims connections nobody uses.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Default handshake timeout: 5 s. An unauthenticated peer may hold a connection slot no
/// longer than this.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default drain timeout: 5 s for in-flight calls to finish when a connection closes
/// gracefully; longer calls should not hold a closing connection open.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Default handler pool size: 16. Hadoop's default is 10 blocking threads; ours are tasks, so
/// a few more cost little and absorb handlers that await.
pub const DEFAULT_HANDLERS: usize = 16;

/// Hadoop sizes the call queue at 100 calls per handler; so do we.
pub const DEFAULT_CALL_QUEUE_PER_HANDLER: usize = 100;

/// Default connection limit per server: 10,000 (each costs a few tasks and buffers).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default time a shutting-down server waits for in-flight calls: 5 s.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Default connect timeout (transport connect plus handshake): 5 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default call deadline: 30 s. Spark's 120 s ask timeout hides dead peers for too long;
/// callers that need longer say so per call.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Who a node is: sent in every hello and checked by the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Identity {
    /// The cluster; peers with another cluster id are refused.
    pub cluster_id: u64,
    /// This node's id; 0 for an anonymous client.
    pub node_id: u64,
    /// This node's incarnation; should grow on every restart.
    pub epoch: u64,
}

/// Limits and timeouts of one connection (both sides use the same kind of settings).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Largest frame body accepted from the peer, in bytes.
    pub max_frame_body: u32,
    /// Largest payload of one request, response or one-way message accepted from the peer, in
    /// bytes (protocol version 3: a message larger than a frame travels in parts). Sent in the
    /// hello: a peer refuses locally to send more. A message over it fails alone (the call,
    /// on both sides, with an error naming this setting); the connection goes on. Against a
    /// version-1 or 2 peer, a message is one frame and `max_frame_body` is the limit.
    pub max_message_bytes: u64,
    /// Payload bytes per part when a message is sent in parts and nothing else shares the
    /// connection: a message larger than this (or than the peer's frame limit) is split. While
    /// small frames share the connection, messages over 64 KiB go in 64 KiB parts, so small
    /// calls wait for one such part at most.
    pub message_part: usize,
    /// Calls in flight on one connection (client: awaiting replies; server: received and
    /// not yet answered). The server stops reading a connection at this limit.
    pub max_inflight: usize,
    /// Frames queued for the writer; a full queue fails a one-way send at once.
    pub write_queue: usize,
    /// Bytes of one-way and control frames queued for the writer; past it a one-way send fails
    /// at once (or, on a lane with back-pressure, waits), as with `write_queue`. A frame is
    /// always accepted into an empty queue.
    pub write_queue_bytes: usize,
    /// Bytes gathered into one vectored write at most.
    pub max_write_batch: usize,
    /// Largest room offered to one socket read. Reads start at 2 KiB and adapt: the offer
    /// doubles when a read fills it and halves after two reads that use less than half, so an
    /// idle connection holds little and a busy one reads in large chunks. Frames larger than
    /// this are still read whole (the decoder makes room for the frame it is reading).
    pub read_buffer: usize,
    /// Heartbeat interval when nothing else is written.
    pub heartbeat_interval: Duration,
    /// Close the connection when nothing arrives for this long.
    pub read_timeout: Duration,
    /// Close the connection when no calls pass for this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Limit for the hello exchange.
    pub handshake_timeout: Duration,
    /// How long a graceful close waits for in-flight calls before closing anyway.
    pub drain_timeout: Duration,
    /// TLS with mutual authentication (`None`: plaintext). When set, every connection made
    /// or accepted with this configuration runs TLS 1.3 and nothing else.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Secret mode (`None`: off): every connection made or accepted runs a Noise handshake
    /// keyed by a shared secret and is encrypted after it ([`crate::secret`]). Not with `tls`.
    pub secret: Option<crate::secret::SecretConfig>,
    /// Who may use which lane, route, protocol method and RpcEnv endpoint on connections
    /// this configuration accepts or opens ([`crate::access`]; default: everyone, everything).
    pub access: crate::access::AccessPolicy,
    /// How streams to peers are opened (TCP unless set: a simulated network in tests).
    pub network: crate::transport::Network,
    /// The protocol versions this node offers in its hello, lowest and highest; a connection
    /// runs at the highest version both sides offer. Defaults to every version this build
    /// speaks; narrow it to pin a cluster to an older version during a rolling upgrade.
    pub protocol_versions: std::ops::RangeInclusive<u16>,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            max_frame_body: DEFAULT_MAX_FRAME_BODY,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            message_part: DEFAULT_MESSAGE_PART,
            max_inflight: DEFAULT_MAX_INFLIGHT,
            write_queue: DEFAULT_WRITE_QUEUE,
            write_queue_bytes: DEFAULT_WRITE_QUEUE_BYTES,
            max_write_batch: DEFAULT_MAX_WRITE_BATCH,
            read_buffer: DEFAULT_READ_BUFFER,
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            read_timeout: DEFAULT_READ_TIMEOUT,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            tls: None,
            secret: None,
            access: crate::access::AccessPolicy::default(),
            network: crate::transport::Network::tcp(),
            protocol_versions: peerwire_wire::MIN_PROTOCOL_VERSION
                ..=peerwire_wire::PROTOCOL_VERSION,
        }
    }
}

impl ConnectionConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), Error> {
        if self.tls.is_some() && self.secret.is_some() {
            return Err(Error::Config(
                "tls and secret are two security modes: set one of them".into(),
            ));
        }
        if self.max_inflight == 0 {
            return Err(Error::Config("max_inflight must be at least 1".into()));
        }
        if self.write_queue <= self.max_inflight {
            return Err(Error::Config(format!(
                "write_queue ({}) must exceed max_inflight ({}) so replies never wait for room",
                self.write_queue, self.max_inflight
            )));
        }
        if self.write_queue_bytes == 0 {
            return Err(Error::Config("write_queue_bytes must be at least 1".into()));
        }
        let spoken = peerwire_wire::MIN_PROTOCOL_VERSION..=peerwire_wire::PROTOCOL_VERSION;
        let (min, max) = (
            *self.protocol_versions.start(),
            *self.protocol_versions.end(),
        );
        if min > max || !spoken.contains(&min) || !spoken.contains(&max) {
            return Err(Error::Config(format!(
                "protocol_versions ({min}..={max}) must be a non-empty range within the versions this build speaks ({}..={})",
                spoken.start(),
                spoken.end()
            )));
        }
        if self.heartbeat_interval >= self.read_timeout {
            return Err(Error::Config(format!(
                "heartbeat_interval ({:?}) must be shorter than read_timeout ({:?})",
                self.heartbeat_interval, self.read_timeout
            )));
        }
        if (self.max_frame_body as usize) < 1024 {
            return Err(Error::Config("max_frame_body must be at least 1024".into()));
        }
        if self.max_message_bytes < u64::from(self.max_frame_body) {
            return Err(Error::Config(format!(
                "max_message_bytes ({}) must be at least max_frame_body ({})",
                self.max_message_bytes, self.max_frame_body
            )));
        }
        if self.message_part < 1024 {
            return Err(Error::Config("message_part must be at least 1024".into()));
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> peerwire_wire::Limits {
        peerwire_wire::Limits {
            max_body: self.max_frame_body,
            max_payload: self.max_message_bytes,
            ..peerwire_wire::Limits::default()
        }
    }
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's identity.
    pub identity: Identity,
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// Handler tasks taking calls from the call queue.
    pub handlers: usize,
    /// Call queue capacity; `None`: `handlers` × 100 (Hadoop's rule).
    pub call_queue_capacity: Option<usize>,
    /// Concurrent connections; further ones are refused with a go-away.
    pub max_connections: usize,
    /// Concurrent connections from one remote address; further ones are refused with a
    /// go-away (default: no cap beyond `max_connections`, since a client host may open many).
    pub max_connections_per_address: usize,
    /// Addresses exempt from both connection caps (a cluster's own members, an operator's
    /// host).
    pub cap_exempt_addresses: Vec<std::net::IpAddr>,
    /// How long shutdown waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// The largest request context accepted (protocol version 4; see [`crate::context`]): a
    /// call whose context is larger, or malformed, fails alone with `BadRequest`.
    pub max_context_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            connection: ConnectionConfig::default(),
            handlers: DEFAULT_HANDLERS,
            call_queue_capacity: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: usize::MAX,
            cap_exempt_addresses: Vec::new(),
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_context_bytes: usize::from(crate::context::DEFAULT_MAX_CONTEXT),
        }
    }
}

impl ServerConfig {
    /// The effective call queue capacity.
    pub fn call_queue_capacity(&self) -> usize {
        self.call_queue_capacity
            .unwrap_or(self.handlers * DEFAULT_CALL_QUEUE_PER_HANDLER)
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        self.connection.validate()?;
        if self.handlers == 0 {
            return Err(Error::Config("handlers must be at least 1".into()));
        }
        if self.call_queue_capacity() == 0 {
            return Err(Error::Config(
                "call_queue_capacity must be at least 1".into(),
            ));
        }
        if self.max_connections == 0 || self.max_connections_per_address == 0 {
            return Err(Error::Config(
                "max_connections and max_connections_per_address must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Reconnect backoff: exponential with jitter.
#[derive(Debug, Clone, Copy)]
pub struct BackoffConfig {
    /// Delay after the first failure.
    pub initial: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth factor per consecutive failure.
    pub multiplier: f64,
    /// Fraction of the delay that is randomised (0 = none, 1 = anywhere in `[0, delay]`).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    /// 100 ms doubling to 5 s with 50% jitter. 100 ms is etcd's redial rate limit; 5 s caps the
    /// wait behind a peer that comes back.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This node's identity (node id 0 for an anonymous client).
    pub identity: Identity,
    /// Per-connection settings.
    pub connection: ConnectionConfig,
    /// Connections kept per peer; calls pick one by hash key or round robin.
    pub connections_per_peer: usize,
    /// Limit for transport connect plus handshake.
    pub connect_timeout: Duration,
    /// Deadline of calls that do not set one.
    pub default_deadline: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Automatic retries of calls that did not run (and of idempotent calls whose outcome is
    /// unknown), bounded by a retry budget.
    pub retry: RetryPolicy,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            connection: ConnectionConfig::default(),
            connections_per_peer: 1,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            default_deadline: DEFAULT_CALL_DEADLINE,
            backoff: BackoffConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl ClientConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        self.connection.validate()?;
        if self.connections_per_peer == 0 {
            return Err(Error::Config(
                "connections_per_peer must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// How a client retries.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts per call, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Delay between attempts (a server's retry-after hint wins if longer).
    pub backoff: BackoffConfig,
    /// Retry tokens earned per first attempt.
    pub budget_ratio: f64,
    /// Retries per second allowed regardless of the budget.
    pub budget_min_per_sec: u32,
}

impl Default for RetryPolicy {
    /// 3 attempts, 10 ms doubling to 1 s with 50% jitter, a budget of 10% plus 10 retries per
    /// second (the values Finagle and Linkerd ship).
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: BackoffConfig {
                initial: Duration::from_millis(10),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.5,
            },
            budget_ratio: 0.1,
            budget_min_per_sec: 10,
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }
}
