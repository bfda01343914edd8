//! The peerwire side of the `raft` scenario: a leader and two followers, each a raft transport
//! carrying raft-rs messages, with handlers that stand in for raft: followers count what
//! arrives and answer every append and heartbeat; the leader opens its window per follower on
//! every append response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use peerwire::{Identity, Server};
use peerwire_raft::{
    ProcessError, RaftHandler, RaftMessage, SnapshotData, SnapshotError, SnapshotStatus, Transport,
    TransportConfig,
};
use raft::eraftpb::{Entry, Message, MessageType};
use tokio::sync::{Semaphore, mpsc};

use crate::BoxError;

const CLUSTER: u64 = 0xbe9c_4af7;
/// The leader's id; followers are 2 and 3.
pub(crate) const LEADER: u64 = 1;
pub(crate) const FOLLOWERS: [u64; 2] = [2, 3];

/// A follower: counts appends, answers appends and heartbeats, discards snapshot data.
#[derive(Debug)]
pub(crate) struct Follower {
    replies: mpsc::UnboundedSender<Message>,
    pub(crate) entries: AtomicU64,
    pub(crate) snapshot_bytes: AtomicU64,
}

/// A follower's answer to `m`, as raft's would be: an append response acknowledging every
/// entry, a heartbeat response echoing the commit; nothing for other messages.
pub(crate) fn follower_reply(m: &Message) -> Option<Message> {
    let mut reply = Message {
        to: m.from,
        from: m.to,
        term: m.term,
        ..Message::default()
    };
    match m.get_msg_type() {
        MessageType::MsgAppend => {
            reply.set_msg_type(MessageType::MsgAppendResponse);
            reply.index = m.index + m.entries.len() as u64;
        }
        MessageType::MsgHeartbeat => {
            reply.set_msg_type(MessageType::MsgHeartbeatResponse);
            reply.commit = m.commit;
        }
        _ => return None,
    }
    Some(reply)
}

impl RaftHandler<Message> for Follower {
    fn process(&self, m: Message) -> Result<(), ProcessError> {
        let Some(reply) = follower_reply(&m) else {
            return Ok(());
        };
        if m.get_msg_type() == MessageType::MsgAppend {
            self.entries
                .fetch_add(m.entries.len() as u64, Ordering::Relaxed);
        }
        self.replies
            .send(reply)
            .map_err(|_| ProcessError("follower stopped".into()))
    }
    fn is_id_removed(&self, _id: u64) -> bool {
        false
    }
    fn report_unreachable(&self, _id: u64) {}
    fn report_snapshot(&self, _id: u64, _status: SnapshotStatus) {}

    /// Discards the data as it arrives, like a follower writing it to disk.
    async fn receive_snapshot(
        &self,
        _m: Message,
        mut data: SnapshotData,
    ) -> Result<(), SnapshotError> {
        while let Some(chunk) = data.chunk().await {
            self.snapshot_bytes
                .fetch_add(chunk?.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The leader: a send window per follower, opened by append responses; heartbeat responses
/// go to the heartbeat prober.
#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) windows: [Arc<Semaphore>; 2],
    pub(crate) acked_messages: AtomicU64,
    pub(crate) heartbeats: mpsc::UnboundedSender<u64>,
    pub(crate) unreachable: AtomicU64,
}

impl RaftHandler<Message> for Leader {
    fn process(&self, m: Message) -> Result<(), ProcessError> {
        match m.get_msg_type() {
            MessageType::MsgAppendResponse => {
                self.acked_messages.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = FOLLOWERS.iter().position(|f| *f == m.from) {
                    self.windows[i].add_permits(1);
                }
            }
            MessageType::MsgHeartbeatResponse => {
                let _ = self.heartbeats.send(m.commit);
            }
            _ => {}
        }
        Ok(())
    }
    fn is_id_removed(&self, _id: u64) -> bool {
        false
    }
    fn report_unreachable(&self, _id: u64) {
        self.unreachable.fetch_add(1, Ordering::Relaxed);
    }
    fn report_snapshot(&self, _id: u64, _status: SnapshotStatus) {}
}

pub(crate) fn config(id: u64) -> TransportConfig {
    TransportConfig {
        identity: Identity {
            cluster_id: CLUSTER,
            node_id: id,
            epoch: 1,
        },
        probe_interval: None,
        ..TransportConfig::default()
    }
}

async fn serve<H: RaftHandler<Message>>(
    cfg: TransportConfig,
    handler: H,
) -> Result<(Transport<Message, H>, Server), BoxError> {
    let server_cfg = cfg.server_config();
    let transport = Transport::start(cfg, handler)?;
    let server = Server::builder(server_cfg)
        .mount_all(&transport)
        .bind("127.0.0.1:0".parse()?)
        .await?;
    Ok((transport, server))
}

/// Sends the replies a follower's handlers queue on `rx`, in batches, as a raft loop sends a
/// ready's messages together; ends when every handler is gone.
pub(crate) fn send_replies<M: RaftMessage, H: RaftHandler<M>>(
    transport: &Transport<M, H>,
    mut rx: mpsc::UnboundedReceiver<M>,
) {
    let t = transport.clone();
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while rx.recv_many(&mut batch, 1024).await > 0 {
            t.send(batch.drain(..));
        }
    });
}

/// The followers, started on the calling runtime.
pub(crate) struct Followers {
    pub(crate) nodes: Vec<(Transport<Message, Follower>, Server)>,
}

impl Followers {
    pub(crate) async fn start() -> Result<Self, BoxError> {
        let mut nodes = Vec::new();
        for id in FOLLOWERS {
            let (tx, rx) = mpsc::unbounded_channel::<Message>();
            let (transport, server) = serve(
                config(id),
                Follower {
                    replies: tx,
                    entries: AtomicU64::new(0),
                    snapshot_bytes: AtomicU64::new(0),
                },
            )
            .await?;
            send_replies(&transport, rx);
            nodes.push((transport, server));
        }
        Ok(Self { nodes })
    }

    pub(crate) async fn stop(self) {
        for (t, s) in self.nodes {
            t.stop().await;
            s.shutdown().await;
        }
    }
}

/// The leader, started on the calling runtime and connected to the followers.
pub(crate) async fn start_leader(
    window: usize,
    followers: &[std::net::SocketAddr],
) -> Result<
    (
        Transport<Message, Leader>,
        Server,
        mpsc::UnboundedReceiver<u64>,
    ),
    BoxError,
> {
    let (hb_tx, hb_rx) = mpsc::unbounded_channel();
    let (transport, server) = serve(
        config(LEADER),
        Leader {
            windows: [
                Arc::new(Semaphore::new(window)),
                Arc::new(Semaphore::new(window)),
            ],
            acked_messages: AtomicU64::new(0),
            heartbeats: hb_tx,
            unreachable: AtomicU64::new(0),
        },
    )
    .await?;
    for (id, addr) in FOLLOWERS.iter().zip(followers) {
        transport.add_peer(*id, vec![*addr])?;
    }
    lanes_up(&transport).await?;
    Ok((transport, server, hb_rx))
}

/// Waits until both lanes to both followers are up, for at most 10 s.
pub(crate) async fn lanes_up<M: RaftMessage, H: RaftHandler<M>>(
    transport: &Transport<M, H>,
) -> Result<(), BoxError> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !FOLLOWERS.iter().all(|f| {
        transport
            .lanes_up(*f)
            .is_some_and(|up| up.append && up.message)
    }) {
        if tokio::time::Instant::now() > deadline {
            return Err("the leader's lanes did not come up within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// An append of `entries` entries of the shared `data`, after `index`.
pub(crate) fn append(to: u64, index: u64, entries: usize, data: &Bytes) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    (m.from, m.to, m.term, m.log_term, m.index, m.commit) = (LEADER, to, 1, 1, index, index);
    let entries: Vec<Entry> = (0..entries as u64)
        .map(|i| Entry {
            term: 1,
            index: index + 1 + i,
            data: data.clone(),
            ..Entry::default()
        })
        .collect();
    m.set_entries(entries.into());
    m
}

/// A heartbeat carrying `seq` (in `commit`, which the follower echoes).
pub(crate) fn heartbeat(to: u64, seq: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    (m.from, m.to, m.term, m.commit) = (LEADER, to, 1, seq);
    m
}

/// A snapshot message whose data is `data`.
pub(crate) fn snapshot(to: u64, data: Bytes) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgSnapshot);
    (m.from, m.to, m.term) = (LEADER, to, 1);
    m.mut_snapshot().mut_metadata().index = 1;
    m.mut_snapshot().mut_metadata().term = 1;
    m.mut_snapshot().data = data;
    m
}
