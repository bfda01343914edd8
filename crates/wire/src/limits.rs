//! Size limits enforced by the decoder before memory is reserved.

/// Default largest frame body: 16 MiB.
///
/// Large enough for any control message and for typical RPC payloads (four times tonic's
/// 4 MiB default, a frequent complaint), small enough that a hostile peer can make a
/// connection buffer at most 16 MiB. Bulk data (snapshots, data streams) travels in chunks of
/// at most this size, so it never needs a larger limit; Spark's 128 MiB and Hadoop's 128 MB
/// limits exist because their bulk paths send whole objects.
pub const DEFAULT_MAX_BODY: u32 = 16 * 1024 * 1024;

/// Default largest message payload, after a message in parts is put back together: 128 MiB.
///
/// Hadoop IPC's default (`ipc.maximum.data.length`): large enough for the bulk replies RPC
/// systems send whole (a block report, a batch of raft entries, a serialized table), small
/// enough that one connection cannot make a node hold more than two such messages in memory
/// (one call and one reply at a time). Raft lanes raise it to 512 MiB, etcd's limit for a
/// raft message. Anything larger should be a data stream.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 128 * 1024 * 1024;

/// Default largest route name: 1 KiB. Routes are names such as `hello-service/SayHi`.
pub const DEFAULT_MAX_ROUTE: u16 = 1024;

/// Default largest failure or go-away message: 4 KiB. Enough for an error chain; anything
/// longer is a bug or an attack.
pub const DEFAULT_MAX_MESSAGE: u16 = 4096;

/// Default largest frame accepted before the handshake completes: 256 bytes. A hello is 44
/// bytes; until a peer has proven who it is, it may not make us buffer more.
pub const DEFAULT_MAX_HANDSHAKE_BODY: u32 = 256;

/// Limits the decoder checks before buffering a frame body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame body in bytes (all kinds).
    pub max_body: u32,
    /// Largest route name in bytes.
    pub max_route: u16,
    /// Largest failure / go-away message in bytes.
    pub max_message: u16,
    /// Largest payload of one request, response or one-way message in bytes, whole or in
    /// parts; a message in parts declaring more is refused alone.
    pub max_payload: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            max_route: DEFAULT_MAX_ROUTE,
            max_message: DEFAULT_MAX_MESSAGE,
            max_payload: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

impl Limits {
    /// The limits in force before the handshake completes: only hello-sized frames.
    pub fn handshake() -> Self {
        Self {
            max_body: DEFAULT_MAX_HANDSHAKE_BODY,
            max_payload: u64::from(DEFAULT_MAX_HANDSHAKE_BODY),
            ..Self::default()
        }
    }
}
