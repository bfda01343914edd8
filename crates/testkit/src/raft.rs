//! A fake raft for testing the raft transport: messages that carry a kind, a sequence number
//! and a payload, and a [`FakeRaft`] handler that turns every call from the transport into an
//! [`Event`] the test can wait for.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use peerwire::{Identity, Server};
use peerwire_raft::{
    MessageKind, ProcessError, RaftHandler, RaftMessage, SnapshotData, SnapshotError,
    SnapshotStatus, Transport, TransportConfig,
};
use tokio::sync::mpsc;

use crate::{Gate, bounded};

/// A raft message of the fake raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMsg {
    /// Its kind.
    pub kind: MessageKind,
    /// Sender.
    pub from: u64,
    /// Receiver.
    pub to: u64,
    /// A sequence number the test chooses.
    pub seq: u64,
    /// The raft group (0 unless set with [`FakeMsg::in_group`]).
    pub group: u64,
    /// Payload (for snapshots: the snapshot's data).
    pub payload: Bytes,
}

impl FakeMsg {
    /// A message of `kind` from `from` to `to`.
    pub fn new(kind: MessageKind, from: u64, to: u64, seq: u64) -> Self {
        Self {
            kind,
            from,
            to,
            seq,
            group: 0,
            payload: Bytes::new(),
        }
    }

    /// The same message in raft group `group`.
    pub fn in_group(mut self, group: u64) -> Self {
        self.group = group;
        self
    }

    /// The same message with `payload`.
    pub fn with_payload(mut self, payload: Bytes) -> Self {
        self.payload = payload;
        self
    }
}

fn kind_code(kind: MessageKind) -> u8 {
    match kind {
        MessageKind::Append => 0,
        MessageKind::Snapshot => 1,
        MessageKind::Heartbeat => 2,
        MessageKind::Vote => 3,
        MessageKind::Other => 4,
    }
}

/// A fake message that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("bad fake message: {0}")]
pub struct FakeDecodeError(&'static str);

impl RaftMessage for FakeMsg {
    type Error = FakeDecodeError;

    fn kind(&self) -> MessageKind {
        self.kind
    }
    fn from(&self) -> u64 {
        self.from
    }
    fn to(&self) -> u64 {
        self.to
    }
    fn group(&self) -> u64 {
        self.group
    }
    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(kind_code(self.kind));
        out.put_u64_le(self.from);
        out.put_u64_le(self.to);
        out.put_u64_le(self.seq);
        out.put_u64_le(self.group);
        out.extend_from_slice(&self.payload);
    }
    fn decode(mut b: Bytes) -> Result<Self, Self::Error> {
        if b.len() < 33 {
            return Err(FakeDecodeError("shorter than its header"));
        }
        let kind = match b.get_u8() {
            0 => MessageKind::Append,
            1 => MessageKind::Snapshot,
            2 => MessageKind::Heartbeat,
            3 => MessageKind::Vote,
            4 => MessageKind::Other,
            _ => return Err(FakeDecodeError("unknown kind")),
        };
        Ok(Self {
            kind,
            from: b.get_u64_le(),
            to: b.get_u64_le(),
            seq: b.get_u64_le(),
            group: b.get_u64_le(),
            payload: b,
        })
    }
    fn take_snapshot_data(&mut self) -> Bytes {
        std::mem::take(&mut self.payload)
    }
    fn set_snapshot_data(&mut self, data: Bytes) {
        self.payload = data;
    }
}

/// What the transport told the fake raft.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A message arrived (snapshots arrive as [`Event::Snapshot`]).
    Message(FakeMsg),
    /// The outcome of a snapshot sent to `to`.
    SnapshotReport {
        /// The receiver.
        to: u64,
        /// The outcome.
        status: SnapshotStatus,
    },
    /// A snapshot arrived whole.
    Snapshot {
        /// Its message (with an empty payload).
        msg: FakeMsg,
        /// Bytes of data received.
        bytes: u64,
        /// A checksum of the data (FNV-1a).
        checksum: u64,
        /// The largest chunk seen.
        max_chunk: usize,
    },
    /// Receiving a snapshot failed.
    SnapshotFailed(SnapshotError),
    /// This member was told it was removed, by `by`.
    Removed {
        /// The peer that refused us.
        by: u64,
    },
}

/// FNV-1a over `data`, continuing from `hash`.
pub fn fnv1a(mut hash: u64, data: &[u8]) -> u64 {
    for b in data {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100_0000_01b3);
    }
    hash
}

/// FNV-1a's starting value.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// A raft handler that records everything as [`Event`]s.
#[derive(Debug)]
pub struct FakeRaft {
    events: mpsc::UnboundedSender<Event>,
    removed: Mutex<HashSet<u64>>,
    unreachable: AtomicU64,
    /// Each snapshot chunk waits here first, when set.
    snapshot_gate: Mutex<Option<Arc<Gate>>>,
}

impl FakeRaft {
    /// A fake raft and the stream of its events.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Event>) {
        let (events, rx) = mpsc::unbounded_channel();
        (
            Self {
                events,
                removed: Mutex::new(HashSet::new()),
                unreachable: AtomicU64::new(0),
                snapshot_gate: Mutex::new(None),
            },
            rx,
        )
    }

    /// Marks `id` as removed from the cluster.
    pub fn remove_member(&self, id: u64) {
        self.removed.lock().unwrap().insert(id);
    }

    /// How many times the transport reported a peer unreachable.
    pub fn unreachable_reports(&self) -> u64 {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Makes every received snapshot chunk wait at `gate` before it is consumed.
    pub fn hold_snapshots(&self, gate: Arc<Gate>) {
        *self.snapshot_gate.lock().unwrap() = Some(gate);
    }
}

impl RaftHandler<FakeMsg> for FakeRaft {
    fn process(&self, msg: FakeMsg) -> Result<(), ProcessError> {
        self.events
            .send(Event::Message(msg))
            .map_err(|_| ProcessError("the test stopped listening".into()))
    }

    fn is_id_removed(&self, id: u64) -> bool {
        self.removed.lock().unwrap().contains(&id)
    }

    fn report_unreachable(&self, _id: u64) {
        self.unreachable.fetch_add(1, Ordering::Relaxed);
    }

    fn report_snapshot(&self, to: u64, status: SnapshotStatus) {
        let _ = self.events.send(Event::SnapshotReport { to, status });
    }

    async fn receive_snapshot(
        &self,
        msg: FakeMsg,
        mut data: SnapshotData,
    ) -> Result<(), SnapshotError> {
        let gate = self.snapshot_gate.lock().unwrap().clone();
        let (mut checksum, mut max_chunk) = (FNV_START, 0);
        loop {
            if let Some(gate) = &gate {
                gate.pass().await;
            }
            match data.chunk().await {
                None => break,
                Some(Ok(chunk)) => {
                    checksum = fnv1a(checksum, &chunk);
                    max_chunk = max_chunk.max(chunk.len());
                }
                Some(Err(e)) => {
                    let _ = self.events.send(Event::SnapshotFailed(e.clone()));
                    return Err(e);
                }
            }
        }
        let _ = self.events.send(Event::Snapshot {
            msg,
            bytes: data.received(),
            checksum,
            max_chunk,
        });
        Ok(())
    }

    fn removed_from_cluster(&self, by: u64) {
        let _ = self.events.send(Event::Removed { by });
    }
}

/// One member: a transport with a [`FakeRaft`], served on its own loopback server.
#[derive(Debug)]
pub struct FakeNode {
    /// The member's id.
    pub id: u64,
    /// The transport.
    pub transport: Transport<FakeMsg, FakeRaft>,
    /// The server its lanes are served on.
    pub server: Option<Server>,
    /// What its raft was told.
    pub events: mpsc::UnboundedReceiver<Event>,
}

/// Settings for fast tests: quick redials, fast heartbeats, no probing unless asked.
pub fn test_config(cluster_id: u64, id: u64) -> TransportConfig {
    let mut cfg = TransportConfig {
        identity: Identity {
            cluster_id,
            node_id: id,
            epoch: 1,
        },
        redial: crate::fixed_backoff(10),
        probe_interval: None,
        ..TransportConfig::default()
    };
    cfg.connection.heartbeat_interval = std::time::Duration::from_millis(100);
    cfg.connection.read_timeout = std::time::Duration::from_secs(2);
    cfg
}

impl FakeNode {
    /// Starts member `cfg.identity.node_id` on `addr` (port 0 for an ephemeral port).
    pub async fn start(cfg: TransportConfig, addr: SocketAddr) -> Self {
        let (raft, events) = FakeRaft::new();
        let id = cfg.identity.node_id;
        let server_cfg = cfg.server_config();
        let transport = Transport::start(cfg, raft).expect("transport config");
        let server = Server::builder(server_cfg)
            .mount_all(&transport)
            .bind(addr)
            .await
            .expect("bind");
        Self {
            id,
            transport,
            server: Some(server),
            events,
        }
    }

    /// The address the member listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server running").local_addr()
    }

    /// The next event, within the step timeout.
    pub async fn next_event(&mut self) -> Event {
        bounded("a raft event", self.events.recv())
            .await
            .expect("event stream ended")
    }

    /// The next event that `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(Event) -> Option<T>) -> T {
        bounded(what, async {
            loop {
                let e = self.events.recv().await.expect("event stream ended");
                if let Some(t) = pick(e) {
                    return t;
                }
            }
        })
        .await
    }

    /// The next delivered message, skipping other events.
    pub async fn next_message(&mut self) -> FakeMsg {
        self.wait_for("a message", |e| match e {
            Event::Message(m) => Some(m),
            _ => None,
        })
        .await
    }

    /// Stops the transport and the server.
    pub async fn stop(mut self) {
        self.transport.stop().await;
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

/// Starts `n` members of cluster `cluster_id` (ids 1..=n) on ephemeral ports, each a peer of
/// every other.
pub async fn fake_cluster(cluster_id: u64, n: u64) -> Vec<FakeNode> {
    fake_cluster_with(cluster_id, n, |_| {}).await
}

/// [`fake_cluster`] with each member's [`test_config`] adjusted by `configure` first (for
/// example to give each member its TLS certificate).
pub async fn fake_cluster_with(
    cluster_id: u64,
    n: u64,
    configure: impl Fn(&mut TransportConfig),
) -> Vec<FakeNode> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let mut cfg = test_config(cluster_id, id);
        configure(&mut cfg);
        nodes.push(FakeNode::start(cfg, "127.0.0.1:0".parse().unwrap()).await);
    }
    let addrs: Vec<(u64, SocketAddr)> = nodes.iter().map(|n| (n.id, n.addr())).collect();
    for node in &nodes {
        for (id, addr) in &addrs {
            if *id != node.id {
                node.transport.add_peer(*id, vec![*addr]).unwrap();
            }
        }
    }
    nodes
}
