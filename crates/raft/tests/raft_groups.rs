//! Many raft groups over one raft transport: each group's messages reach its own handler over
//! the lanes the groups share (one set per peer, however many groups); a group removed at
//! runtime is refused for its own messages while the others flow; a group's snapshot does not
//! hold up another group's heartbeats; reports go to the group whose message it was.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use peerwire::Server;
use peerwire_raft::{LanesUp, MessageKind, Snapshot, SnapshotStatus, Transport};
use peerwire_testkit::raft::{Event, FakeMsg, FakeRaft, test_config};
use peerwire_testkit::{Gate, bounded, wait_until};
use tokio::sync::mpsc;

const BOTH: LanesUp = LanesUp {
    append: true,
    message: true,
};

/// A member hosting several raft groups, each a [`FakeRaft`] with its own events.
struct Member {
    id: u64,
    transport: Transport<FakeMsg, FakeRaft>,
    server: Server,
    events: BTreeMap<u64, mpsc::UnboundedReceiver<Event>>,
}

impl Member {
    async fn start(id: u64, groups: impl IntoIterator<Item = u64>) -> Self {
        let cfg = test_config(7, id);
        let server_cfg = cfg.server_config();
        let transport = Transport::start_multi(cfg).unwrap();
        let mut events = BTreeMap::new();
        for group in groups {
            let (raft, rx) = FakeRaft::new();
            transport.add_group(group, raft).unwrap();
            events.insert(group, rx);
        }
        let server = Server::builder(server_cfg)
            .mount_all(&transport)
            .bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self {
            id,
            transport,
            server,
            events,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// The next message group `group` received.
    async fn next_message(&mut self, group: u64) -> FakeMsg {
        let events = self.events.get_mut(&group).expect("hosted group");
        bounded("a message", async {
            loop {
                match events.recv().await.expect("events ended") {
                    Event::Message(m) => return m,
                    _ => continue,
                }
            }
        })
        .await
    }

    /// Nothing waits for group `group` right now (every message sent to it so far was taken).
    fn quiet(&mut self, group: u64) -> bool {
        let events = self.events.get_mut(&group).expect("hosted group");
        !matches!(events.try_recv(), Ok(Event::Message(_)))
    }

    async fn stop(self) {
        self.transport.stop().await;
        self.server.shutdown().await;
    }
}

async fn pair(groups: &[u64]) -> (Member, Member) {
    let a = Member::start(1, groups.iter().copied()).await;
    let b = Member::start(2, groups.iter().copied()).await;
    a.transport.add_peer(2, vec![b.addr()]).unwrap();
    b.transport.add_peer(1, vec![a.addr()]).unwrap();
    wait_until("both lanes up", || a.transport.lanes_up(2) == Some(BOTH)).await;
    (a, b)
}

fn msg(kind: MessageKind, group: u64, seq: u64) -> FakeMsg {
    FakeMsg::new(kind, 1, 2, seq).in_group(group)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_groups_share_one_set_of_lanes_and_each_gets_its_own_messages() {
    let groups: Vec<u64> = (1..=100).collect();
    let (a, mut b) = pair(&groups).await;
    assert_eq!(a.transport.groups(), groups);
    // Appends and heartbeats of every group, interleaved.
    for seq in 0..5 {
        let batch: Vec<FakeMsg> = groups
            .iter()
            .flat_map(|&g| {
                [
                    msg(MessageKind::Append, g, seq).with_payload(Bytes::from(vec![g as u8; 64])),
                    msg(MessageKind::Heartbeat, g, 100 + seq),
                ]
            })
            .collect();
        a.transport.send(batch);
    }
    for &g in &groups {
        let (mut appends, mut heartbeats) = (Vec::new(), Vec::new());
        while appends.len() < 5 || heartbeats.len() < 5 {
            let m = b.next_message(g).await;
            assert_eq!(m.group, g, "group {g} got another group's message");
            match m.kind {
                MessageKind::Append => {
                    assert_eq!(m.payload, Bytes::from(vec![g as u8; 64]));
                    appends.push(m.seq);
                }
                MessageKind::Heartbeat => heartbeats.push(m.seq),
                other => panic!("unexpected {other:?}"),
            }
        }
        // In order within each group and lane.
        assert_eq!(appends, [0, 1, 2, 3, 4]);
        assert_eq!(heartbeats, [100, 101, 102, 103, 104]);
    }
    // Member 1's connections to member 2: the append and message lanes, not one per group.
    // (Member 2 connects to member 1 for its own sends the same way.)
    assert!(
        b.server.connections() <= 4,
        "{} connections for 100 groups",
        b.server.connections()
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_removed_at_runtime_is_refused_alone_while_the_other_flows() {
    let (a, mut b) = pair(&[1, 2]).await;
    a.transport.send([msg(MessageKind::Append, 2, 0)]);
    assert_eq!(b.next_message(2).await.seq, 0);
    let removed = b.transport.remove_group(2);
    assert!(removed.is_some());
    assert_eq!(b.transport.groups(), [1]);
    // Group 2's messages are refused; group 1's, before, between and after them, arrive in
    // order on the same lanes.
    for seq in 1..=50 {
        a.transport.send([
            msg(MessageKind::Append, 1, seq),
            msg(MessageKind::Append, 2, seq),
            msg(MessageKind::Heartbeat, 2, 1000 + seq),
            msg(MessageKind::Heartbeat, 1, 1000 + seq),
        ]);
    }
    // A fence of group 1 on each lane: once both arrive, every group-2 message sent before
    // them on the same lanes has been refused (each lane delivers in order), so none can
    // reach the group added back below.
    a.transport.send([
        msg(MessageKind::Append, 1, 51),
        msg(MessageKind::Heartbeat, 1, 1051),
    ]);
    let (mut appends, mut heartbeats) = (Vec::new(), Vec::new());
    while appends.len() < 51 || heartbeats.len() < 51 {
        let m = b.next_message(1).await;
        assert_eq!(m.group, 1);
        match m.kind {
            MessageKind::Append => appends.push(m.seq),
            _ => heartbeats.push(m.seq),
        }
    }
    assert_eq!(appends, (1..=51).collect::<Vec<_>>());
    assert_eq!(heartbeats, (1001..=1051).collect::<Vec<_>>());
    // The lanes stayed up throughout: a refusal for one group does not touch them.
    assert_eq!(a.transport.lanes_up(2), Some(BOTH));
    // Adding the group back makes its messages flow again.
    let (raft, rx) = FakeRaft::new();
    b.transport.add_group(2, raft).unwrap();
    b.events.insert(2, rx);
    a.transport.send([msg(MessageKind::Append, 2, 99)]);
    assert_eq!(b.next_message(2).await.seq, 99);
    assert!(
        b.transport
            .add_group(2, FakeRaft::new().0)
            .unwrap_err()
            .to_string()
            .contains("group 2 already")
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_snapshot_does_not_hold_up_another_groups_heartbeats() {
    const SIZE: u64 = 32 << 20;
    let (a, mut b) = pair(&[1, 2]).await;
    let gate = Gate::new();
    b.transport.group(1).unwrap().hold_snapshots(gate.clone());
    let body = tokio::io::AsyncReadExt::take(tokio::io::repeat(7), SIZE);
    let progress =
        a.transport
            .send_snapshot(Snapshot::new(msg(MessageKind::Snapshot, 1, 1), SIZE, body));
    // Group 1's snapshot is stuck at the receiver before its first chunk.
    gate.wait_entered(1).await;
    for seq in 0..50 {
        a.transport.send([
            msg(MessageKind::Heartbeat, 2, seq),
            msg(MessageKind::Append, 2, 100 + seq),
        ]);
    }
    for _ in 0..100 {
        let m = b.next_message(2).await;
        assert_eq!(m.group, 2);
    }
    assert!(
        progress.outcome().is_none(),
        "group 2's traffic got through while group 1's snapshot waits"
    );
    gate.open();
    bounded("the snapshot", progress.finished()).await.unwrap();
    // The outcome went to group 1 at the sender, and the snapshot to group 1 at the receiver.
    let mut a = a;
    let report = bounded("group 1's snapshot report", async {
        let events = a.events.get_mut(&1).unwrap();
        loop {
            if let Event::SnapshotReport { to, status } = events.recv().await.unwrap() {
                return (to, status);
            }
        }
    })
    .await;
    assert_eq!(report, (2, SnapshotStatus::Finish));
    let received = bounded("group 1's snapshot", async {
        let events = b.events.get_mut(&1).unwrap();
        loop {
            if let Event::Snapshot { msg, bytes, .. } = events.recv().await.unwrap() {
                return (msg.group, bytes);
            }
        }
    })
    .await;
    assert_eq!(received, (1, SIZE));
    assert!(b.quiet(2));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_snapshot_reports_go_to_the_group_of_their_message() {
    // Member 3 is known but never started: everything to it fails.
    let a = Member::start(1, [1, 2]).await;
    let nowhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = nowhere.local_addr().unwrap();
    drop(nowhere);
    a.transport.add_peer(3, vec![dead]).unwrap();
    let mut a = a;
    let progress = a.transport.send_snapshot(Snapshot::new(
        FakeMsg::new(MessageKind::Snapshot, 1, 3, 1).in_group(2),
        1,
        tokio::io::repeat(0),
    ));
    let report = bounded("group 2's snapshot report", async {
        let events = a.events.get_mut(&2).unwrap();
        loop {
            if let Event::SnapshotReport { to, status } = events.recv().await.unwrap() {
                return (to, status);
            }
        }
    })
    .await;
    assert_eq!(report, (3, SnapshotStatus::Failure));
    assert!(progress.finished().await.is_err());
    // Messages of group 2 only: group 2 hears that member 3 is unreachable, group 1 nothing.
    let g2 = a.transport.group(2).unwrap();
    a.transport.send([
        FakeMsg::new(MessageKind::Append, 1, 3, 0).in_group(2),
        FakeMsg::new(MessageKind::Other, 1, 3, 0).in_group(2),
    ]);
    wait_until("group 2 told member 3 is unreachable", || {
        g2.unreachable_reports() > 0
    })
    .await;
    assert_eq!(a.transport.group(1).unwrap().unreachable_reports(), 0);
    assert!(a.events.get_mut(&1).unwrap().try_recv().is_err());
    assert_eq!(a.id, 1);
    a.stop().await;
}
