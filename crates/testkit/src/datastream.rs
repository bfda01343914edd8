//! Test support for data streams: a [`MemorySink`] that records everything the server does
//! with each stream, and [`DsNode`], a server with the data-stream lane on loopback.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use peerwire::{Identity, Server, ServerConfig};
use peerwire_datastream::{
    DataSink, DataStreamConfig, DataStreamServer, SinkError, SinkStream, StreamInfo, StreamRef,
};

use crate::Gate;

/// What became of a stream in a [`MemorySink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkState {
    /// Still receiving.
    Open,
    /// Closed.
    Closed,
    /// Aborted with this reason.
    Aborted(String),
    /// Closed and then discarded (not linked in time).
    Discarded,
}

/// Everything one stream did at one server.
#[derive(Debug, Clone)]
pub struct SinkRecord {
    /// The header the stream was opened with.
    pub header: Bytes,
    /// Whether this server was the primary.
    pub primary: bool,
    /// The bytes written, in order (kept after an abort, so tests can check what had been
    /// acknowledged).
    pub data: Vec<u8>,
    /// Stream length at each sync.
    pub syncs: Vec<u64>,
    /// Its state.
    pub state: SinkState,
}

type Records = Arc<Mutex<HashMap<StreamRef, SinkRecord>>>;

/// A sink keeping streams in memory. Clones share the records.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    records: Records,
    gate: Option<Arc<Gate>>,
    fail_writes_after: Option<u64>,
}

impl MemorySink {
    /// A sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink whose writes each wait at `gate` first.
    pub fn gated(gate: Arc<Gate>) -> Self {
        Self {
            gate: Some(gate),
            ..Self::default()
        }
    }

    /// A sink whose writes fail once a stream would exceed `bytes`.
    pub fn failing_after(bytes: u64) -> Self {
        Self {
            fail_writes_after: Some(bytes),
            ..Self::default()
        }
    }

    /// The record of `stream`.
    pub fn record(&self, stream: &StreamRef) -> Option<SinkRecord> {
        self.records.lock().unwrap().get(stream).cloned()
    }

    /// Every stream's state.
    pub fn states(&self) -> Vec<SinkState> {
        self.records
            .lock()
            .unwrap()
            .values()
            .map(|r| r.state.clone())
            .collect()
    }
}

impl DataSink for MemorySink {
    type Stream = MemoryStream;
    type Closed = StreamRef;

    async fn create(&self, info: &StreamInfo) -> Result<MemoryStream, SinkError> {
        self.records.lock().unwrap().insert(
            info.stream,
            SinkRecord {
                header: info.header.clone(),
                primary: info.primary,
                data: Vec::new(),
                syncs: Vec::new(),
                state: SinkState::Open,
            },
        );
        Ok(MemoryStream {
            stream: info.stream,
            records: self.records.clone(),
            gate: self.gate.clone(),
            fail_writes_after: self.fail_writes_after,
        })
    }

    async fn discard(&self, closed: StreamRef) {
        if let Some(r) = self.records.lock().unwrap().get_mut(&closed) {
            r.state = SinkState::Discarded;
        }
    }
}

/// One stream of a [`MemorySink`].
#[derive(Debug)]
pub struct MemoryStream {
    stream: StreamRef,
    records: Records,
    gate: Option<Arc<Gate>>,
    fail_writes_after: Option<u64>,
}

impl MemoryStream {
    fn with<T>(&self, f: impl FnOnce(&mut SinkRecord) -> T) -> T {
        f(self.records.lock().unwrap().get_mut(&self.stream).unwrap())
    }
}

impl SinkStream for MemoryStream {
    type Closed = StreamRef;

    async fn write(&mut self, data: Bytes) -> Result<(), SinkError> {
        if let Some(gate) = &self.gate {
            gate.pass().await;
        }
        let limit = self.fail_writes_after;
        self.with(|r| {
            if let Some(limit) = limit
                && r.data.len() as u64 + data.len() as u64 > limit
            {
                return Err(SinkError(format!("disk full at {limit} bytes")));
            }
            r.data.extend_from_slice(&data);
            Ok(())
        })
    }

    async fn sync(&mut self) -> Result<(), SinkError> {
        self.with(|r| r.syncs.push(r.data.len() as u64));
        Ok(())
    }

    async fn close(self) -> Result<StreamRef, SinkError> {
        self.with(|r| r.state = SinkState::Closed);
        Ok(self.stream)
    }

    async fn abort(self, reason: String) {
        self.with(|r| r.state = SinkState::Aborted(reason));
    }
}

/// A data-stream config for tests: short timeouts, small packets allowed.
pub fn ds_config(cluster_id: u64, node_id: u64) -> DataStreamConfig {
    let mut cfg = DataStreamConfig {
        identity: Identity {
            cluster_id,
            node_id,
            epoch: 1,
        },
        request_timeout: Duration::from_secs(3),
        ..DataStreamConfig::default()
    };
    cfg.connection.heartbeat_interval = Duration::from_millis(200);
    cfg.connection.read_timeout = Duration::from_secs(2);
    cfg
}

/// A server with the data-stream lane and a [`MemorySink`].
#[derive(Debug)]
pub struct DsNode {
    /// Node id.
    pub id: u64,
    /// The data-stream server.
    pub ds: DataStreamServer<MemorySink>,
    /// Its sink.
    pub sink: MemorySink,
    /// The peerwire server.
    pub server: Server,
}

impl DsNode {
    /// Starts node `cfg.identity.node_id` on an ephemeral loopback port.
    pub async fn start(cfg: DataStreamConfig, sink: MemorySink) -> Self {
        let id = cfg.identity.node_id;
        let server_cfg = ServerConfig {
            identity: cfg.identity,
            connection: cfg.connection.clone(),
            ..ServerConfig::default()
        };
        let ds = DataStreamServer::new(cfg, sink.clone()).expect("data-stream config");
        let server = Server::builder(server_cfg)
            .mount_all(&ds)
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .expect("bind");
        Self {
            id,
            ds,
            sink,
            server,
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops the data-stream server, then the server.
    pub async fn stop(self) {
        self.ds.stop().await;
        self.server.shutdown().await;
    }
}

/// Tells every node every other node's address.
pub fn introduce(nodes: &[&DsNode]) {
    for a in nodes {
        for b in nodes {
            if a.id != b.id {
                a.ds.add_peer(b.id, b.addr());
            }
        }
    }
}
