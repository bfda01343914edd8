//! Multi-raft: three members, each hosting several raft-rs groups over **one** raft transport
//! (TiKV's design): every group elects its own leader and replicates its own log, while
//! between two members there is still one set of lanes, shared and batched across groups.
//! A group removed on one member is refused there for its own messages; the others carry on.
//!
//! Run with `cargo run --release -p peerwire --example raft_groups`.
//!
//! Each group on each member is a raft-rs `RawNode` driven by the `raft_cluster` example's raft
//! loop; the loop's messages go out as [`GroupMessage`]s, which carry the group beside raft's
//! message, and [`Transport::add_group`] routes what arrives to the group's loop.

#[path = "raft_cluster.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod raft_cluster;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use peerwire::{Identity, Server};
use peerwire_raft::raft_rs::GroupMessage;
use peerwire_raft::{ProcessError, RaftHandler, SnapshotStatus, Transport, TransportConfig};
use raft_cluster::{Input, Inputs, View, raw_node, run};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const CLUSTER: u64 = 0x9ee4_0006;

/// The raft side of one group on one member: the `raft_cluster` example's inputs, taking the
/// group's messages out of their [`GroupMessage`].
#[derive(Debug)]
pub struct GroupInputs(Inputs);

impl RaftHandler<GroupMessage> for GroupInputs {
    fn process(&self, msg: GroupMessage) -> Result<(), ProcessError> {
        self.0.process(msg.message)
    }
    fn is_id_removed(&self, id: u64) -> bool {
        <Inputs as RaftHandler<_>>::is_id_removed(&self.0, id)
    }
    fn report_unreachable(&self, id: u64) {
        <Inputs as RaftHandler<_>>::report_unreachable(&self.0, id);
    }
    fn report_snapshot(&self, id: u64, status: SnapshotStatus) {
        <Inputs as RaftHandler<_>>::report_snapshot(&self.0, id, status);
    }
}

/// One raft group on one member.
#[derive(Debug)]
pub struct Group {
    inputs: mpsc::UnboundedSender<Input>,
    /// The group's view on this member.
    pub view: watch::Receiver<View>,
    /// The data of the entries this member applied in the group, in order.
    pub log: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: CancellationToken,
    raft_loop: tokio::task::JoinHandle<()>,
}

impl Group {
    /// Proposes `data` in this group (dropped unless this member leads it).
    pub fn propose(&self, data: Vec<u8>) {
        let _ = self.inputs.send(Input::Propose(data));
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.raft_loop.await;
    }
}

/// A member hosting raft groups over one transport and one server port.
#[derive(Debug)]
pub struct GroupMember {
    /// The member's id (its id in every group).
    pub id: u64,
    /// Its one transport.
    pub transport: Transport<GroupMessage, GroupInputs>,
    /// The server its lanes are served on.
    pub server: Server,
    /// Its groups.
    pub groups: BTreeMap<u64, Group>,
}

impl GroupMember {
    /// Starts member `id` hosting `groups`, each with voters `voters`, on a server built by
    /// `serve` (given the transport to mount): the one-port example mounts more beside it.
    pub async fn start(
        id: u64,
        voters: &[u64],
        groups: &[u64],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let cfg = transport_config(id);
        let server_cfg = cfg.server_config();
        let transport = Transport::start_multi(cfg)?;
        let server = Server::builder(server_cfg)
            .mount_all(&transport)
            .bind("127.0.0.1:0".parse()?)
            .await?;
        Self::with(id, transport, server, voters, groups)
    }

    /// A member over a transport and server made elsewhere.
    pub fn with(
        id: u64,
        transport: Transport<GroupMessage, GroupInputs>,
        server: Server,
        voters: &[u64],
        groups: &[u64],
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let mut member = Self {
            id,
            transport,
            server,
            groups: BTreeMap::new(),
        };
        for &group in groups {
            member.add_group(group, voters)?;
        }
        Ok(member)
    }

    /// Starts hosting raft group `group` of `voters`.
    pub fn add_group(
        &mut self,
        group: u64,
        voters: &[u64],
    ) -> Result<(), Box<dyn std::error::Error>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.transport
            .add_group(group, GroupInputs(Inputs(tx.clone())))?;
        let node = raw_node(self.id, voters)?;
        let (view_tx, view) = watch::channel(View::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let transport = self.transport.clone();
        let raft_loop = tokio::spawn(run(
            node,
            move |msgs| {
                transport.send(msgs.into_iter().map(|m| GroupMessage::new(group, m)));
            },
            rx,
            view_tx,
            log.clone(),
            stop.clone(),
        ));
        self.groups.insert(
            group,
            Group {
                inputs: tx,
                view,
                log,
                stop,
                raft_loop,
            },
        );
        Ok(())
    }

    /// Stops hosting `group` here: its raft loop stops and its messages are refused.
    pub async fn remove_group(&mut self, group: u64) {
        self.transport.remove_group(group);
        if let Some(g) = self.groups.remove(&group) {
            g.stop().await;
        }
    }

    /// Stops every group, the transport and the server.
    pub async fn stop(self) {
        for (_, g) in self.groups {
            g.stop().await;
        }
        self.transport.stop().await;
        self.server.shutdown().await;
    }
}

/// The transport settings of member `id`: quick heartbeats for a demo on loopback.
pub fn transport_config(id: u64) -> TransportConfig {
    let mut cfg = TransportConfig {
        identity: Identity {
            cluster_id: CLUSTER,
            node_id: id,
            epoch: 1,
        },
        ..TransportConfig::default()
    };
    cfg.connection.heartbeat_interval = Duration::from_millis(100);
    cfg.connection.read_timeout = Duration::from_secs(1);
    cfg
}

/// Makes every member a peer of every other.
pub fn connect(members: &[GroupMember]) -> Result<(), peerwire::Error> {
    for m in members {
        for other in members.iter().filter(|o| o.id != m.id) {
            m.transport
                .add_peer(other.id, vec![other.server.local_addr()])?;
        }
    }
    Ok(())
}

/// Starts members 1..=n, each hosting `groups` (every member a voter of each).
pub async fn start_members(
    n: u64,
    groups: &[u64],
) -> Result<Vec<GroupMember>, Box<dyn std::error::Error>> {
    let voters: Vec<u64> = (1..=n).collect();
    let mut members = Vec::new();
    for id in 1..=n {
        members.push(GroupMember::start(id, &voters, groups).await?);
    }
    connect(&members)?;
    Ok(members)
}

/// Waits until every member hosting `group` agrees on a leader that hosts it, and returns
/// it (after a member stops hosting the group, the others may still name it for a while).
pub async fn group_leader(members: &mut [GroupMember], group: u64) -> u64 {
    loop {
        let hosts: Vec<u64> = members
            .iter()
            .filter(|m| m.groups.contains_key(&group))
            .map(|m| m.id)
            .collect();
        let views: Vec<View> = members
            .iter()
            .filter_map(|m| m.groups.get(&group))
            .map(|g| *g.view.borrow())
            .collect();
        let leader = views[0].leader;
        if hosts.contains(&leader) && views.iter().all(|v| v.leader == leader) {
            return leader;
        }
        let changed = members
            .iter_mut()
            .filter_map(|m| m.groups.get_mut(&group))
            .map(|g| Box::pin(g.view.changed()));
        let _ = futures::future::select_all(changed).await;
    }
}

/// Proposes `n` entries named after `group` through its leader.
pub fn propose_in(members: &[GroupMember], group: u64, leader: u64, n: usize) {
    let leader = members
        .iter()
        .find(|m| m.id == leader)
        .and_then(|m| m.groups.get(&group))
        .expect("the leader hosts the group");
    for i in 0..n {
        leader.propose(format!("group {group} entry {i}").into_bytes());
    }
}

/// Waits until every member hosting `group` applied `n` of its entries.
pub async fn applied_in(members: &mut [GroupMember], group: u64, n: usize) {
    for g in members.iter_mut().filter_map(|m| m.groups.get_mut(&group)) {
        let _ = g.view.wait_for(|v| v.applied >= n).await;
    }
}

#[allow(dead_code)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let groups = [1, 2, 3];
    let mut members = start_members(3, &groups).await?;
    for g in groups {
        let leader = group_leader(&mut members, g).await;
        propose_in(&members, g, leader, 50);
        applied_in(&mut members, g, 50).await;
        println!("group {g}: member {leader} leads; 50 entries applied on all 3 members");
    }
    for m in &members {
        println!(
            "member {}: {} server connections for {} groups",
            m.id,
            m.server.connections(),
            m.groups.len()
        );
    }
    // Member 3 stops hosting group 3: the group's other two members carry on without it.
    members[2].remove_group(3).await;
    let leader = group_leader(&mut members, 3).await;
    propose_in(&members, 3, leader, 10);
    applied_in(&mut members, 3, 60).await;
    println!("group 3 removed on member 3; members 1 and 2 applied 10 more in group 3");
    for g in [1, 2] {
        let logs: Vec<Vec<Vec<u8>>> = members
            .iter()
            .map(|m| m.groups[&g].log.lock().expect("log poisoned").clone())
            .collect();
        assert!(
            logs.windows(2).all(|w| w[0] == w[1]),
            "group {g} logs agree"
        );
    }
    for m in members {
        m.stop().await;
    }
    Ok(())
}
