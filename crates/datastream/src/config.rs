//! Settings of data-stream clients and servers, with Ratis's choices as defaults where it
//! has them.

use std::time::Duration;

use peerwire::config::{ConnectionConfig, Identity};
use peerwire::error::Error;

/// Data-stream settings. Clients read the `client` fields, servers the `server` fields;
/// both read `identity`, `connection` and `request_timeout`.
#[derive(Debug, Clone)]
pub struct DataStreamConfig {
    /// Cluster id (checked in every handshake) and node id: a server's raft member id, or 0
    /// for an anonymous client.
    pub identity: Identity,
    /// The data-stream group (Ratis's `RaftGroupId`): a server serves this group of the
    /// data-stream lane and forwards to the same group on its replicas; a client opens its
    /// streams in this group. A server with no group of that number refuses the connection
    /// (`HandshakeError::UnknownGroup`) before any stream is open. Default 0.
    pub group: u64,
    /// Settings of each data-stream connection. `max_frame_body` must hold a packet plus 20
    /// bytes.
    pub connection: ConnectionConfig,
    /// How long a packet (or an open) may wait for its acknowledgement, at the client and
    /// at every forwarding hop. A replica that dies fails the stream within this time.
    pub request_timeout: Duration,
    /// Client: packets of one stream sent but not yet acknowledged; `write` waits for room
    /// beyond it (Ratis's outstanding-requests limit).
    pub max_outstanding: usize,
    /// Client: bytes per packet when writing a file.
    pub packet_size: usize,
    /// Server: a stream with no packet for this long is aborted and its sink told, so an
    /// abandoned stream never leaks.
    pub idle_timeout: Duration,
    /// Server: a closed stream the application has not taken (linked) within this long is
    /// handed to `DataSink::discard`.
    pub link_timeout: Duration,
    /// Server: forwarding connections per successor; a stream's packets use the one picked
    /// by a hash of its client and stream ids (Ratis's `clientPoolSize`).
    pub forward_pool: usize,
    /// Server: streams open at once; more are refused.
    pub max_streams: usize,
    /// Server: packet bytes received and not yet acknowledged, over all streams; a packet
    /// beyond it fails its stream.
    pub max_buffered_bytes: usize,
}

impl Default for DataStreamConfig {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            group: 0,
            connection: ConnectionConfig::default(),
            request_timeout: Duration::from_secs(10),
            max_outstanding: 8,
            packet_size: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            link_timeout: Duration::from_secs(300),
            forward_pool: 4,
            max_streams: 1024,
            max_buffered_bytes: 512 * 1024 * 1024,
        }
    }
}

impl DataStreamConfig {
    /// Checks the settings, naming the one that is wrong.
    pub fn validate(&self) -> Result<(), Error> {
        self.connection.validate()?;
        let bad = |what: String| Err(Error::Config(what));
        if self.max_outstanding == 0 {
            return bad("`max_outstanding` must be at least 1".into());
        }
        if self.packet_size == 0
            || self.packet_size + peerwire_wire::StreamData::HEAD_LEN as usize
                > self.connection.max_frame_body as usize
        {
            return bad(format!(
                "`packet_size` ({}) must be non-zero and fit `connection.max_frame_body` ({}) with 20 bytes to spare",
                self.packet_size, self.connection.max_frame_body
            ));
        }
        if self.forward_pool == 0 || self.max_streams == 0 {
            return bad("`forward_pool` and `max_streams` must be at least 1".into());
        }
        if self.max_buffered_bytes < self.connection.max_frame_body as usize {
            return bad(format!(
                "`max_buffered_bytes` ({}) must hold at least one frame (`connection.max_frame_body` = {})",
                self.max_buffered_bytes, self.connection.max_frame_body
            ));
        }
        if self.request_timeout.is_zero() || self.idle_timeout.is_zero() {
            return bad("`request_timeout` and `idle_timeout` must be non-zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        DataStreamConfig::default().validate().unwrap();
        let err = DataStreamConfig {
            packet_size: 16 * 1024 * 1024,
            ..DataStreamConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("packet_size"), "{err}");
        let err = DataStreamConfig {
            max_outstanding: 0,
            ..DataStreamConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("max_outstanding"), "{err}");
    }
}
