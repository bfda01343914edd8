//! Three raft-rs members in one process, talking over the peerwire raft transport on
//! loopback: they elect a leader, replicate proposals, and — when the leader's links are cut —
//! elect another and carry on; once mended, the old leader catches up.
//!
//! Run with `cargo run --release -p peerwire --example raft_cluster`.
//!
//! Each member is a raft-rs `RawNode` on in-memory storage driven by one task (the raft loop
//! of raft-rs's examples), a [`Transport`] for its messages, and a [`Server`] serving the
//! transport's lanes on the member's port. The transport talks to the loop through a channel:
//! [`RaftHandler`] methods only queue inputs, so they never block.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerwire::{Identity, Server};
use peerwire_raft::{ProcessError, RaftHandler, SnapshotStatus, Transport, TransportConfig};
use raft::eraftpb::{ConfState, Entry, EntryType, Message};
use raft::storage::MemStorage;
use raft::{Config, RawNode, StateRole};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const CLUSTER: u64 = 0x9ee4_0005;
/// One raft tick; elections take 10–20 ticks, heartbeats every 3.
const TICK: Duration = Duration::from_millis(20);

/// What the transport and the application hand to a member's raft loop.
#[derive(Debug)]
pub enum Input {
    /// A message from a peer.
    Message(Message),
    /// A peer could not be reached.
    Unreachable(u64),
    /// How a snapshot to a peer ended.
    Snapshot(u64, SnapshotStatus),
    /// Data to replicate (dropped unless this member leads).
    Propose(Vec<u8>),
}

/// The raft side of a member's transport: queues everything for the raft loop.
#[derive(Debug)]
pub struct Inputs(pub mpsc::UnboundedSender<Input>);

impl RaftHandler<Message> for Inputs {
    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        self.0
            .send(Input::Message(msg))
            .map_err(|_| ProcessError("the raft loop stopped".into()))
    }
    fn is_id_removed(&self, _id: u64) -> bool {
        false
    }
    fn report_unreachable(&self, id: u64) {
        let _ = self.0.send(Input::Unreachable(id));
    }
    fn report_snapshot(&self, id: u64, status: SnapshotStatus) {
        let _ = self.0.send(Input::Snapshot(id, status));
    }
}

/// A member's view of the cluster, published after every step of its raft loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    /// The leader this member knows (0: none).
    pub leader: u64,
    /// Its term.
    pub term: u64,
    /// Entries applied (proposals carried out).
    pub applied: usize,
}

/// One member: raft loop, transport and server.
#[derive(Debug)]
pub struct Member {
    /// The member's id.
    pub id: u64,
    /// Its transport.
    pub transport: Transport<Message, Inputs>,
    server: Server,
    inputs: mpsc::UnboundedSender<Input>,
    /// Its view, updated by the raft loop.
    pub view: watch::Receiver<View>,
    /// The data of the entries it applied, in order.
    pub log: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
    raft_loop: tokio::task::JoinHandle<()>,
}

impl Member {
    /// Proposes `data`; it is replicated if this member leads (else dropped, as raft does).
    pub fn propose(&self, data: Vec<u8>) {
        let _ = self.inputs.send(Input::Propose(data));
    }

    /// Whether this member believes it leads.
    pub fn is_leader(&self) -> bool {
        self.view.borrow().leader == self.id
    }

    /// Stops the raft loop, the transport and the server.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.raft_loop.await;
        self.transport.stop().await;
        self.server.shutdown().await;
    }
}

/// Starts members 1..=n of a cluster on loopback, each knowing all the others.
pub async fn start_cluster(n: u64) -> Result<Vec<Member>, Box<dyn std::error::Error>> {
    let voters: Vec<u64> = (1..=n).collect();
    let mut members = Vec::new();
    for id in 1..=n {
        members.push(start_member(id, &voters).await?);
    }
    let addrs: Vec<_> = members
        .iter()
        .map(|m| (m.id, m.server.local_addr()))
        .collect();
    for m in &members {
        for (id, addr) in &addrs {
            if *id != m.id {
                m.transport.add_peer(*id, vec![*addr])?;
            }
        }
    }
    Ok(members)
}

async fn start_member(id: u64, voters: &[u64]) -> Result<Member, Box<dyn std::error::Error>> {
    let identity = Identity {
        cluster_id: CLUSTER,
        node_id: id,
        epoch: 1,
    };
    let mut cfg = TransportConfig {
        identity,
        ..TransportConfig::default()
    };
    cfg.connection.heartbeat_interval = Duration::from_millis(100);
    cfg.connection.read_timeout = Duration::from_secs(1);
    let server_cfg = cfg.server_config();
    let (tx, rx) = mpsc::unbounded_channel();
    let transport = Transport::start(cfg, Inputs(tx.clone()))?;
    let server = Server::builder(server_cfg)
        .mount_all(&transport)
        .bind("127.0.0.1:0".parse()?)
        .await?;

    let node = raw_node(id, voters)?;
    let (view_tx, view) = watch::channel(View::default());
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let sender = transport.clone();
    let raft_loop = tokio::spawn(run(
        node,
        move |msgs| sender.send(msgs),
        rx,
        view_tx,
        log.clone(),
        stop.clone(),
    ));
    Ok(Member {
        id,
        transport,
        server,
        inputs: tx,
        view,
        log,
        stop,
        raft_loop,
    })
}

/// A raft-rs node `id` of a new group of `voters`, on in-memory storage.
pub fn raw_node(id: u64, voters: &[u64]) -> Result<RawNode<MemStorage>, raft::Error> {
    let storage = MemStorage::new_with_conf_state(ConfState::from((voters.to_vec(), vec![])));
    let config = Config {
        id,
        election_tick: 10,
        heartbeat_tick: 3,
        check_quorum: true,
        pre_vote: true,
        max_inflight_msgs: 256,
        max_size_per_msg: 1 << 20,
        ..Config::default()
    };
    RawNode::new(&config, storage, &raft::default_logger())
}

/// The raft loop: ticks, inputs, and after each, the ready state handled in raft-rs's order
/// (send, persist, apply, advance). `send` hands raft's messages to the transport.
pub async fn run(
    mut node: RawNode<MemStorage>,
    send: impl Fn(Vec<Message>) + Send + 'static,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    view: watch::Sender<View>,
    log: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                node.tick();
            }
            input = inputs.recv() => match input {
                Some(Input::Message(m)) => {
                    let _ = node.step(m);
                }
                Some(Input::Unreachable(id)) => node.report_unreachable(id),
                Some(Input::Snapshot(id, status)) => node.report_snapshot(id, match status {
                    SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
                    SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
                }),
                Some(Input::Propose(data)) => {
                    let _ = node.propose(vec![], data);
                }
                None => return,
            },
            _ = stop.cancelled() => return,
        }
        on_ready(&mut node, &send, &log);
        let leader = if node.raft.state == StateRole::Leader {
            node.raft.id
        } else {
            node.raft.leader_id
        };
        let now = View {
            leader,
            term: node.raft.term,
            applied: log.lock().expect("log poisoned").len(),
        };
        view.send_if_modified(|v| std::mem::replace(v, now) != now);
    }
}

fn on_ready(
    node: &mut RawNode<MemStorage>,
    send: &impl Fn(Vec<Message>),
    log: &Mutex<Vec<Vec<u8>>>,
) {
    if !node.has_ready() {
        return;
    }
    let store = node.raft.raft_log.store.clone();
    let mut ready = node.ready();
    send(ready.take_messages());
    if !ready.snapshot().is_empty() {
        store
            .wl()
            .apply_snapshot(ready.snapshot().clone())
            .expect("apply snapshot");
    }
    apply(log, ready.take_committed_entries());
    store.wl().append(ready.entries()).expect("append entries");
    if let Some(hs) = ready.hs() {
        store.wl().set_hardstate(hs.clone());
    }
    send(ready.take_persisted_messages());
    let mut light = node.advance(ready);
    if let Some(commit) = light.commit_index() {
        store.wl().mut_hard_state().set_commit(commit);
    }
    send(light.take_messages());
    apply(log, light.take_committed_entries());
    node.advance_apply();
}

fn apply(log: &Mutex<Vec<Vec<u8>>>, entries: Vec<Entry>) {
    let mut log = log.lock().expect("log poisoned");
    for e in entries {
        // Empty entries are the ones a new leader appends for its term.
        if e.get_entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            log.push(e.data.to_vec());
        }
    }
}

/// Waits until every member in `members` (except `skip`) agrees on one leader, and returns it.
pub async fn agreed_leader(members: &mut [Member], skip: Option<u64>) -> u64 {
    loop {
        let views: Vec<View> = members
            .iter()
            .filter(|m| Some(m.id) != skip)
            .map(|m| *m.view.borrow())
            .collect();
        let leader = views[0].leader;
        if leader != 0 && Some(leader) != skip && views.iter().all(|v| v.leader == leader) {
            return leader;
        }
        let changed = members
            .iter_mut()
            .filter(|m| Some(m.id) != skip)
            .map(|m| Box::pin(m.view.changed()));
        let _ = futures::future::select_all(changed).await;
    }
}

/// Waits until every member except `skip` applied `n` entries.
pub async fn applied(members: &mut [Member], n: usize, skip: Option<u64>) {
    for m in members.iter_mut().filter(|m| Some(m.id) != skip) {
        let _ = m.view.wait_for(|v| v.applied >= n).await;
    }
}

/// Proposes `n` entries through the leader `leader` (batches of raft's own pace).
pub fn propose_many(members: &[Member], leader: u64, from: usize, n: usize) {
    let leader = members
        .iter()
        .find(|m| m.id == leader)
        .expect("leader is a member");
    for i in from..from + n {
        leader.propose(format!("entry {i}").into_bytes());
    }
}

#[allow(dead_code)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut members = start_cluster(3).await?;
    let first = agreed_leader(&mut members, None).await;
    println!(
        "member {first} leads (term {})",
        members[0].view.borrow().term
    );

    propose_many(&members, first, 0, 100);
    applied(&mut members, 100, None).await;
    println!("100 proposals applied on all 3 members");

    // Cut the leader off: the other two elect a new leader and carry on.
    for m in &members {
        if m.id != first {
            m.transport.faults().cut(first);
        } else {
            for peer in members.iter().filter(|p| p.id != first) {
                m.transport.faults().cut(peer.id);
            }
        }
    }
    let second = agreed_leader(&mut members, Some(first)).await;
    println!("member {first} cut off; member {second} now leads");
    propose_many(&members, second, 100, 50);
    applied(&mut members, 150, Some(first)).await;
    println!("50 more applied on the two connected members");

    // Mend: the old leader rejoins as a follower and catches up.
    for m in &members {
        for peer in members.iter().filter(|p| p.id != m.id) {
            m.transport.faults().mend(peer.id);
        }
    }
    applied(&mut members, 150, None).await;
    let logs: Vec<Vec<Vec<u8>>> = members
        .iter()
        .map(|m| m.log.lock().expect("log poisoned").clone())
        .collect();
    assert!(logs.windows(2).all(|w| w[0] == w[1]), "logs agree");
    println!(
        "member {first} rejoined and caught up: all 3 hold the same {} entries",
        logs[0].len()
    );
    for m in members {
        m.stop().await;
    }
    Ok(())
}
