//! Settings of the raft transport, with etcd rafthttp's values as defaults where it has them.

use std::time::Duration;

use peerwire::config::{BackoffConfig, ConnectionConfig, Identity, ServerConfig};
use peerwire::error::Error;

/// Raft transport settings.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    /// This member's identity: `cluster_id` and `node_id` (the raft id) are checked on every
    /// lane. Must equal the identity of the server the transport is served on.
    pub identity: Identity,
    /// Settings of each lane's connection (heartbeats keep idle lanes alive; the read timeout
    /// closes dead ones).
    pub connection: ConnectionConfig,
    /// Messages queued per long-lived lane before new ones are dropped and reported (etcd's
    /// `streamBufSize`, 4096). The lanes are shared by every group the transport hosts: a
    /// member hosting many groups needs room for a tick's messages of all of them (a
    /// heartbeat per group and peer), or heartbeats beyond it are dropped and reported.
    pub stream_queue: usize,
    /// A lane's writer sends the messages it has queued as one frame, up to this many bytes
    /// (a single larger message goes alone).
    pub max_batch_bytes: usize,
    /// Messages queued for the pipeline (etcd's `pipelineBufSize`, 64).
    pub pipeline_queue: usize,
    /// Pipeline workers per peer, each with one message in flight (etcd's
    /// `connPerPipeline`, 4).
    pub pipeline_workers: usize,
    /// How long a pipeline or probe call may take.
    pub request_timeout: Duration,
    /// Bytes per snapshot chunk.
    pub snapshot_chunk: usize,
    /// Snapshot chunks in flight (sent, not yet acknowledged).
    pub snapshot_window: usize,
    /// How long one snapshot chunk may take to be acknowledged.
    pub snapshot_chunk_timeout: Duration,
    /// Redial backoff of a peer's lanes (etcd limits redials to one per 100 ms).
    pub redial: BackoffConfig,
    /// Interval between probes of each peer (round trip and clock drift); `None` disables
    /// probing.
    pub probe_interval: Option<Duration>,
    /// Run the snapshot lane — sending, receiving, and [`RaftHandler::receive_snapshot`] —
    /// on a thread of its own, so that streaming a snapshot does not take the CPU time the
    /// message lane needs for heartbeats and votes (default `true`). With `false` it runs on
    /// the transport's runtime.
    ///
    /// [`RaftHandler::receive_snapshot`]: super::RaftHandler::receive_snapshot
    pub bulk_thread: bool,
}

/// Default largest raft message a member accepts: 512 MiB, etcd's limit for one raft message
/// on its peer streams. Larger than any batch of entries raft sends under its own size limits,
/// so only a runaway entry meets it; snapshot data travels on the snapshot lane in chunks and
/// never counts against it.
pub const RAFT_MAX_MESSAGE_BYTES: u64 = 512 * 1024 * 1024;

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            identity: Identity::default(),
            connection: ConnectionConfig {
                // Lanes are long-lived: never closed for idleness, only for silence.
                idle_timeout: None,
                // etcd's limit for one raft message (its `readBytesLimit`): an append carrying
                // a large entry travels in parts rather than failing.
                max_message_bytes: RAFT_MAX_MESSAGE_BYTES,
                ..ConnectionConfig::default()
            },
            stream_queue: 4096,
            max_batch_bytes: 256 * 1024,
            pipeline_queue: 64,
            pipeline_workers: 4,
            request_timeout: Duration::from_secs(5),
            snapshot_chunk: 256 * 1024,
            snapshot_window: 4,
            snapshot_chunk_timeout: Duration::from_secs(10),
            redial: BackoffConfig {
                initial: Duration::from_millis(100),
                max: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.2,
            },
            probe_interval: Some(Duration::from_secs(5)),
            bulk_thread: true,
        }
    }
}

impl TransportConfig {
    /// Settings for the server that serves this transport's lanes: the same identity and
    /// connection settings, server defaults otherwise.
    pub fn server_config(&self) -> ServerConfig {
        ServerConfig {
            identity: self.identity,
            connection: self.connection.clone(),
            ..ServerConfig::default()
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), Error> {
        self.connection.validate()?;
        let max_body = self.connection.max_frame_body as usize;
        if self.identity.node_id == 0 {
            return Err(Error::Config(
                "a raft member needs a node id other than 0".into(),
            ));
        }
        for (name, value) in [
            ("stream_queue", self.stream_queue),
            ("pipeline_queue", self.pipeline_queue),
            ("pipeline_workers", self.pipeline_workers),
            ("snapshot_window", self.snapshot_window),
        ] {
            if value == 0 {
                return Err(Error::Config(format!("{name} must be at least 1")));
            }
        }
        if self.snapshot_window >= self.connection.max_inflight {
            return Err(Error::Config(format!(
                "snapshot_window ({}) must be below the connection's max_inflight ({})",
                self.snapshot_window, self.connection.max_inflight
            )));
        }
        if self.snapshot_chunk == 0 || self.snapshot_chunk + 64 > max_body {
            return Err(Error::Config(format!(
                "snapshot_chunk ({}) must be between 1 and max_frame_body - 64 ({})",
                self.snapshot_chunk,
                max_body.saturating_sub(64)
            )));
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > max_body {
            return Err(Error::Config(format!(
                "max_batch_bytes ({}) must be between 1 and max_frame_body ({max_body})",
                self.max_batch_bytes
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> TransportConfig {
        TransportConfig {
            identity: Identity {
                cluster_id: 1,
                node_id: 1,
                epoch: 1,
            },
            ..TransportConfig::default()
        }
    }

    #[test]
    fn defaults_with_a_node_id_are_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: [(TransportConfig, &str); 5] = [
            (TransportConfig::default(), "node id"),
            (
                TransportConfig {
                    stream_queue: 0,
                    ..valid()
                },
                "stream_queue",
            ),
            (
                TransportConfig {
                    snapshot_chunk: 64 << 20,
                    ..valid()
                },
                "snapshot_chunk",
            ),
            (
                TransportConfig {
                    snapshot_window: 5000,
                    ..valid()
                },
                "snapshot_window",
            ),
            (
                TransportConfig {
                    max_batch_bytes: 0,
                    ..valid()
                },
                "max_batch_bytes",
            ),
        ];
        for (cfg, name) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err} should name {name}");
        }
    }
}
