//! The raft transport with a fake raft on three members over loopback: every lane delivers,
//! lanes fail over and recover, bad peers are refused, and snapshots stream with bounded
//! memory without holding up heartbeats.

use std::time::Duration;

use bytes::Bytes;
use peerwire_raft::{LanesUp, MessageKind, Snapshot, SnapshotError, SnapshotStatus};
use peerwire_testkit::raft::{Event, FakeMsg, FakeNode, fake_cluster, test_config};
use peerwire_testkit::{Gate, bounded, wait_until};

const BOTH: LanesUp = LanesUp {
    append: true,
    message: true,
};
const NONE: LanesUp = LanesUp {
    append: false,
    message: false,
};

fn msg(kind: MessageKind, from: u64, to: u64, seq: u64) -> FakeMsg {
    FakeMsg::new(kind, from, to, seq)
}

async fn lanes_up(node: &FakeNode, peer: u64) {
    wait_until("both lanes up", || {
        node.transport.lanes_up(peer) == Some(BOTH)
    })
    .await;
}

async fn stop_all(nodes: Vec<FakeNode>) {
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lane_delivers_in_order() {
    let mut nodes = fake_cluster(7, 3).await;
    lanes_up(&nodes[0], 2).await;
    lanes_up(&nodes[0], 3).await;
    // Appends on the append lane, heartbeats and votes on the message lane: in order per
    // lane, to each follower.
    let t = nodes[0].transport.clone();
    for seq in 0..200 {
        t.send([
            msg(MessageKind::Append, 1, 2, seq).with_payload(Bytes::from(vec![seq as u8; 256])),
            msg(MessageKind::Append, 1, 3, seq),
        ]);
    }
    t.send([
        msg(MessageKind::Heartbeat, 1, 2, 1000),
        msg(MessageKind::Vote, 1, 3, 1001),
    ]);
    for follower in [1, 2] {
        let mut appends = Vec::new();
        let mut urgent = Vec::new();
        while appends.len() < 200 || urgent.is_empty() {
            let m = nodes[follower].next_message().await;
            assert_eq!((m.from, m.to), (1, follower as u64 + 1));
            match m.kind {
                MessageKind::Append => appends.push(m.seq),
                _ => urgent.push(m.seq),
            }
        }
        assert_eq!(appends, (0..200).collect::<Vec<_>>(), "appends in order");
        assert_eq!(urgent.len(), 1);
    }

    // A remote has only the pipeline.
    let extra = FakeNode::start(test_config(7, 9), "127.0.0.1:0".parse().unwrap()).await;
    let mut extra = extra;
    t.add_remote(9, vec![extra.addr()]).unwrap();
    assert_eq!(t.lanes_up(9), Some(NONE));
    t.send([
        msg(MessageKind::Append, 1, 9, 5),
        msg(MessageKind::Other, 1, 9, 6),
    ]);
    let mut seqs = vec![
        extra.next_message().await.seq,
        extra.next_message().await.seq,
    ];
    seqs.sort_unstable();
    assert_eq!(seqs, [5, 6]);
    // A working pipeline makes the remote active (once the acknowledgement is back).
    wait_until("the remote active", || t.active_since(9).is_some()).await;
    assert_eq!(t.active_peers(), [2, 3], "remotes are not peers");
    extra.stop().await;
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_lane_falls_back_to_the_pipeline_and_recovers() {
    let mut nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    lanes_up(&nodes[0], 2).await;
    t.faults().break_streams(2, true);
    wait_until("lanes down", || t.lanes_up(2) == Some(NONE)).await;
    for seq in 0..20 {
        t.send([
            msg(MessageKind::Append, 1, 2, seq),
            msg(MessageKind::Heartbeat, 1, 2, 100 + seq),
        ]);
    }
    let mut got = Vec::new();
    for _ in 0..40 {
        got.push(nodes[1].next_message().await.seq);
    }
    got.sort_unstable();
    let want: Vec<u64> = (0..20).chain(100..120).collect();
    assert_eq!(got, want, "the pipeline carried everything");

    t.faults().break_streams(2, false);
    lanes_up(&nodes[0], 2).await;
    t.send([msg(MessageKind::Append, 1, 2, 500)]);
    assert_eq!(nodes[1].next_message().await.seq, 500);
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_redial_after_a_peer_restarts() {
    let mut nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    lanes_up(&nodes[0], 2).await;
    let addr = nodes[1].addr();
    let b = nodes.pop().unwrap();
    b.stop().await;
    wait_until("peer inactive", || t.active_since(2).is_none()).await;
    let status = t.peer_status(2).unwrap();
    assert!(status.last_error().is_some(), "{status:?}");

    let mut b = FakeNode::start(test_config(7, 2), addr).await;
    lanes_up(&nodes[0], 2).await;
    assert!(t.active_since(2).is_some());
    t.send([
        msg(MessageKind::Append, 1, 2, 1),
        msg(MessageKind::Heartbeat, 1, 2, 2),
    ]);
    let mut seqs = vec![b.next_message().await.seq, b.next_message().await.seq];
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2]);
    b.stop().await;
    stop_all(nodes).await;
}

/// Current-thread runtime: the lanes' tasks cannot run while the test sends, so the queues
/// fill deterministically.
#[tokio::test]
async fn full_queues_drop_and_report() {
    let mut cfg = test_config(7, 1);
    cfg.stream_queue = 4;
    cfg.pipeline_queue = 2;
    let a = FakeNode::start(cfg, "127.0.0.1:0".parse().unwrap()).await;
    let b = FakeNode::start(test_config(7, 2), "127.0.0.1:0".parse().unwrap()).await;
    let t = a.transport.clone();
    t.add_peer(2, vec![b.addr()]).unwrap();
    // The lanes are not up yet: everything goes to the pipeline, which holds 2.
    t.send((0..10).map(|seq| msg(MessageKind::Append, 1, 2, seq)));
    assert_eq!(t.handler().unreachable_reports(), 8);

    lanes_up(&a, 2).await;
    let before = t.handler().unreachable_reports();
    t.send((0..10).map(|seq| msg(MessageKind::Heartbeat, 1, 2, seq)));
    assert_eq!(
        t.handler().unreachable_reports() - before,
        6,
        "the message lane holds 4"
    );

    // A snapshot to an unknown member fails at once, reported to raft.
    let mut a = a;
    let p = t.send_snapshot(Snapshot::from_message(msg(MessageKind::Snapshot, 1, 5, 0)));
    assert_eq!(p.finished().await, Err(SnapshotError::UnknownPeer(5)));
    let report = a
        .wait_for("snapshot report", |e| match e {
            Event::SnapshotReport { to, status } => Some((to, status)),
            _ => None,
        })
        .await;
    assert_eq!(report, (5, SnapshotStatus::Failure));
    a.stop().await;
    b.stop().await;
}

/// Members 1 and 2 with 4 KiB batches and 64 KiB frames (and, if given, that message limit),
/// 1 knowing 2 with its lanes up.
async fn small_frame_pair(max_message_bytes: Option<u64>) -> (FakeNode, FakeNode) {
    let config = |id| {
        let mut cfg = test_config(7, id);
        cfg.max_batch_bytes = 4096;
        cfg.snapshot_chunk = 16 * 1024;
        cfg.connection.max_frame_body = 64 * 1024;
        if let Some(max) = max_message_bytes {
            cfg.connection.max_message_bytes = max;
        }
        cfg
    };
    let a = FakeNode::start(config(1), "127.0.0.1:0".parse().unwrap()).await;
    let b = FakeNode::start(config(2), "127.0.0.1:0".parse().unwrap()).await;
    a.transport.add_peer(2, vec![b.addr()]).unwrap();
    lanes_up(&a, 2).await;
    (a, b)
}

/// An append from 1 to 2 numbered `seq` carrying `len` bytes of `seq`.
fn append(seq: u64, len: usize) -> FakeMsg {
    msg(MessageKind::Append, 1, 2, seq).with_payload(Bytes::from(vec![seq as u8; len]))
}

/// A lane's batches never exceed its batch limit: a message that would overflow a batch starts
/// the next, and one larger than the peer accepts in one message (`max_message_bytes`) is
/// dropped and reported while the lane stays up and delivers what follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_their_limit_and_oversized_messages_are_dropped() {
    let (a, mut b) = small_frame_pair(Some(64 * 1024)).await;
    let t = a.transport.clone();
    let since = t.active_since(2);
    // Sent at once, so the lane's writer finds them queued together: two never fit a batch.
    t.send((0..50).map(|seq| append(seq, 3000)));
    t.send([append(50, 100 * 1024)]);
    t.send((51..60).map(|seq| append(seq, 3000)));
    let mut seqs = Vec::new();
    while seqs.len() < 59 {
        let m = b.next_message().await;
        assert_eq!(m.payload.len(), 3000);
        seqs.push(m.seq);
    }
    let expected: Vec<u64> = (0..50).chain(51..60).collect();
    assert_eq!(seqs, expected, "in order, without the oversized one");
    wait_until("the oversized message reported", || {
        t.handler().unreachable_reports() == 1
    })
    .await;
    assert_eq!(t.lanes_up(2), Some(BOTH));
    assert_eq!(t.active_since(2), since, "no lane broke on the way");
    a.stop().await;
    b.stop().await;
}

/// A raft message larger than a frame travels in parts (protocol version 3), in order with the
/// small messages around it, on a lane that stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_larger_than_a_frame_arrives_whole_and_in_order() {
    let (a, mut b) = small_frame_pair(None).await;
    let t = a.transport.clone();
    let since = t.active_since(2);
    t.send((0..5).map(|seq| append(seq, 3000)));
    t.send([append(5, 3 << 20)]);
    t.send((6..10).map(|seq| append(seq, 3000)));
    for seq in 0..10 {
        let m = b.next_message().await;
        assert_eq!(m.seq, seq);
        let len = if seq == 5 { 3 << 20 } else { 3000 };
        assert_eq!(m.payload, Bytes::from(vec![seq as u8; len]));
    }
    assert_eq!(t.handler().unreachable_reports(), 0);
    assert_eq!(t.active_since(2), since, "no lane broke on the way");
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_flow_while_a_snapshot_is_held_up_and_an_interrupted_snapshot_fails() {
    const SIZE: u64 = 64 << 20;
    let mut nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    lanes_up(&nodes[0], 2).await;
    let gate = Gate::new();
    nodes[1].transport.handler().hold_snapshots(gate.clone());
    let body = tokio::io::AsyncReadExt::take(tokio::io::repeat(1), SIZE);
    let progress = t.send_snapshot(Snapshot::new(
        msg(MessageKind::Snapshot, 1, 2, 1),
        SIZE,
        body,
    ));
    // The receiver's consumer is stuck before its first chunk: the snapshot lane is full.
    gate.wait_entered(1).await;
    for seq in 0..50 {
        t.send([
            msg(MessageKind::Heartbeat, 1, 2, seq),
            msg(MessageKind::Vote, 1, 2, 100 + seq),
        ]);
    }
    for _ in 0..100 {
        let m = nodes[1].next_message().await;
        assert!(matches!(m.kind, MessageKind::Heartbeat | MessageKind::Vote));
    }
    assert!(
        progress.outcome().is_none(),
        "heartbeats got through while the snapshot waits"
    );
    assert!(progress.sent() < SIZE);

    // The receiver goes away mid-snapshot: both sides see the failure.
    let b = nodes.pop().unwrap();
    drop(b.server);
    let err = bounded("snapshot outcome", progress.finished())
        .await
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Interrupted(_)), "{err}");
    let report = nodes[0]
        .wait_for("snapshot report", |e| match e {
            Event::SnapshotReport { to, status } => Some((to, status)),
            _ => None,
        })
        .await;
    assert_eq!(report, (2, SnapshotStatus::Failure));
    gate.open();
    let mut events = b.events;
    let failed = bounded("receiver failure", async {
        loop {
            match events.recv().await {
                Some(Event::SnapshotFailed(e)) => return e,
                Some(_) => continue,
                None => panic!("events ended"),
            }
        }
    })
    .await;
    assert!(matches!(failed, SnapshotError::Interrupted(_)), "{failed}");
    b.transport.stop().await;
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_stops_while_the_sender_keeps_its_snapshot_lane_open() {
    let nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    let body = tokio::io::AsyncReadExt::take(tokio::io::repeat(1), 1 << 20);
    let progress = t.send_snapshot(Snapshot::new(
        msg(MessageKind::Snapshot, 1, 2, 1),
        1 << 20,
        body,
    ));
    bounded("the snapshot", progress.finished()).await.unwrap();
    // Node 1's snapshot lane to node 2 stays connected; node 2's transport still stops.
    bounded(
        "the receiver's transport to stop",
        nodes[1].transport.stop(),
    )
    .await;
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_refused_and_learns_it() {
    let mut nodes = fake_cluster(7, 2).await;
    // Node 2 considers node 1 removed before node 1 connects... and after: either way node 1
    // is refused with the distinct member-removed error and its raft is told.
    nodes[1].transport.handler().remove_member(1);
    nodes[0]
        .transport
        .send([msg(MessageKind::Heartbeat, 1, 2, 1)]);
    let by = nodes[0]
        .wait_for("removal", |e| match e {
            Event::Removed { by } => Some(by),
            _ => None,
        })
        .await;
    assert_eq!(by, 2);
    assert!(nodes[0].transport.is_removed());
    let status = nodes[0].transport.peer_status(2).unwrap();
    assert!(
        status
            .last_error()
            .is_some_and(|e| e.contains("member removed")),
        "{status:?}"
    );
    // Nothing from the removed member reached raft.
    assert!(nodes[1].events.try_recv().is_err());
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_id_mismatch_is_refused() {
    let a = FakeNode::start(test_config(7, 1), "127.0.0.1:0".parse().unwrap()).await;
    let mut b = FakeNode::start(test_config(8, 2), "127.0.0.1:0".parse().unwrap()).await;
    a.transport.add_peer(2, vec![b.addr()]).unwrap();
    wait_until("a refusal", || {
        a.transport
            .peer_status(2)
            .and_then(|s| s.last_error().map(|e| e.contains("cluster id mismatch")))
            .unwrap_or(false)
    })
    .await;
    a.transport.send([msg(MessageKind::Heartbeat, 1, 2, 1)]);
    wait_until("the pipeline to give up", || {
        a.transport.handler().unreachable_reports() > 0
    })
    .await;
    assert!(b.events.try_recv().is_err(), "nothing crossed clusters");
    assert!(a.transport.active_since(2).is_none());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_and_mend_stop_and_restore_traffic() {
    let mut nodes = fake_cluster(7, 2).await;
    let t = nodes[0].transport.clone();
    lanes_up(&nodes[0], 2).await;
    t.faults().cut(2);
    wait_until("lanes down", || t.lanes_up(2) == Some(NONE)).await;
    t.send([msg(MessageKind::Heartbeat, 1, 2, 1)]);
    t.faults().mend(2);
    lanes_up(&nodes[0], 2).await;
    t.send([msg(MessageKind::Heartbeat, 1, 2, 2)]);
    assert_eq!(
        nodes[1].next_message().await.seq,
        2,
        "the message sent while cut was dropped"
    );
    stop_all(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prober_measures_round_trips_and_drift() {
    let mut cfg = test_config(7, 1);
    cfg.probe_interval = Some(Duration::from_millis(20));
    let a = FakeNode::start(cfg, "127.0.0.1:0".parse().unwrap()).await;
    let b = FakeNode::start(test_config(7, 2), "127.0.0.1:0".parse().unwrap()).await;
    a.transport.add_peer(2, vec![b.addr()]).unwrap();
    wait_until("three probes", || {
        a.transport.peer_health(2).is_some_and(|h| h.probes_ok >= 3)
    })
    .await;
    let h = a.transport.peer_health(2).unwrap();
    assert!(h.healthy);
    assert!(h.rtt.unwrap() < Duration::from_secs(1));
    // Same clock: the drift estimate is within the round trip.
    let drift = h.clock_drift_ns.unwrap().unsigned_abs();
    assert!(
        drift <= h.rtt.unwrap().as_nanos() as u64 + 1_000_000,
        "drift {drift} ns"
    );
    a.stop().await;
    b.stop().await;
}
