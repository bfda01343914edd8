//! The transport's per-peer metrics (what etcd's `etcd_network_peer_*` give an operator), read
//! through a recorder installed before the members start (this test binary's own process):
//! bytes and messages by peer and lane on both sides, queue depth, send failures and drops.

use bytes::Bytes;
use std::cell::RefCell;
use std::collections::HashMap;

use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use peerwire_raft::{MessageKind, Snapshot};
use peerwire_testkit::raft::{FakeMsg, FakeNode, test_config};
use peerwire_testkit::{bounded, wait_until};

/// A metric's name and its labels, sorted.
type MetricKey = (String, Vec<(String, String)>);

/// What the recorder held so far: its snapshots take counters' increments since the last one,
/// so they are added up here (gauges keep their last value).
struct Seen {
    snapshotter: Snapshotter,
    totals: RefCell<HashMap<MetricKey, f64>>,
}

impl Seen {
    /// The value of the counter or gauge `name` whose labels are exactly `labels`, if one was
    /// registered.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut totals = self.totals.borrow_mut();
        for (k, _, _, v) in self.snapshotter.snapshot().into_vec() {
            let key = k.key();
            let mut labels: Vec<_> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            let entry = totals.entry((key.name().to_owned(), labels)).or_insert(0.0);
            match v {
                DebugValue::Counter(n) => *entry += n as f64,
                DebugValue::Gauge(g) => *entry = g.into_inner(),
                DebugValue::Histogram(_) => {}
            }
        }
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        totals.get(&(name.to_owned(), labels)).copied()
    }
}

fn msg(kind: MessageKind, seq: u64) -> FakeMsg {
    FakeMsg::new(kind, 1, 2, seq)
}

/// Current-thread runtime: the lanes' tasks cannot run while the test sends, so what is queued
/// is known when the gauge is read.
#[tokio::test]
async fn bytes_messages_queue_depth_and_failures_count_by_peer_and_lane() {
    let recorder = DebuggingRecorder::new();
    let s = Seen {
        snapshotter: recorder.snapshotter(),
        totals: RefCell::default(),
    };
    recorder
        .install()
        .expect("the only recorder of this process");

    let a = FakeNode::start(test_config(7, 1), "127.0.0.1:0".parse().unwrap()).await;
    let mut b = FakeNode::start(test_config(7, 2), "127.0.0.1:0".parse().unwrap()).await;
    let t = a.transport.clone();
    t.add_peer(2, vec![b.addr()]).unwrap();
    wait_until("both lanes up", || {
        t.lanes_up(2).is_some_and(|up| up.append && up.message)
    })
    .await;
    let to_2 = |lane| [("peer", "2"), ("lane", lane)];
    let from_1 = |lane| [("peer", "1"), ("lane", lane)];

    // Three heartbeats wait in the message lane's queue until this task yields.
    t.send((0..3).map(|seq| msg(MessageKind::Heartbeat, seq)));
    let depth = "peerwire_raft_lane_queue_depth";
    assert_eq!(s.value(depth, &to_2("message")), Some(3.0));
    for _ in 0..3 {
        b.next_message().await;
    }
    wait_until("the queue drained", || {
        s.value(depth, &to_2("message")) == Some(0.0)
    })
    .await;

    // Ten appends of 1,000 bytes: counted as sent to 2 by node 1 and received from 1 by node 2.
    t.send(
        (0..10).map(|seq| msg(MessageKind::Append, seq).with_payload(Bytes::from(vec![7; 1000]))),
    );
    for _ in 0..10 {
        b.next_message().await;
    }
    let sent = |name, lane| s.value(name, &to_2(lane)).unwrap_or(0.0);
    let received = |name, lane| s.value(name, &from_1(lane)).unwrap_or(0.0);
    wait_until("the appends counted as sent", || {
        sent("peerwire_raft_messages_sent_total", "append") == 10.0
    })
    .await;
    let bytes = sent("peerwire_raft_peer_sent_bytes_total", "append");
    assert!(bytes >= 10_000.0, "{bytes}");
    assert_eq!(
        received("peerwire_raft_messages_received_total", "append"),
        10.0
    );
    assert_eq!(
        received("peerwire_raft_peer_received_bytes_total", "append"),
        sent("peerwire_raft_peer_sent_bytes_total", "append"),
        "the same batches, seen from both ends"
    );
    assert_eq!(sent("peerwire_raft_messages_sent_total", "message"), 3.0);
    assert_eq!(
        received("peerwire_raft_messages_received_total", "message"),
        3.0
    );

    // A snapshot of 300 kB: its bytes on the snapshot lane, one message each way.
    let size = 300_000u64;
    let body = tokio::io::AsyncReadExt::take(tokio::io::repeat(1), size);
    let progress = t.send_snapshot(Snapshot::new(msg(MessageKind::Snapshot, 100), size, body));
    bounded("the snapshot", progress.finished()).await.unwrap();
    assert_eq!(
        sent("peerwire_raft_peer_sent_bytes_total", "snapshot"),
        size as f64
    );
    assert_eq!(
        received("peerwire_raft_peer_received_bytes_total", "snapshot"),
        size as f64
    );
    assert_eq!(
        received("peerwire_raft_messages_received_total", "snapshot"),
        1.0
    );
    wait_until("the snapshot counted as sent", || {
        sent("peerwire_raft_messages_sent_total", "snapshot") == 1.0
    })
    .await;

    // Node 2 goes: the lanes to it fail, each failure counted; what raft sends meanwhile is
    // dropped, counted by peer, lane and reason, and reported unreachable.
    b.stop().await;
    wait_until("a send failure counted", || {
        sent("peerwire_raft_peer_send_failures_total", "append") > 0.0
            && sent("peerwire_raft_peer_send_failures_total", "message") > 0.0
    })
    .await;
    let reports = t.handler().unreachable_reports();
    t.send([msg(MessageKind::Append, 200)]);
    wait_until("the append reported unreachable", || {
        t.handler().unreachable_reports() > reports
    })
    .await;
    let dropped: f64 = ["queue_full", "send_failed", "lane_broken"]
        .iter()
        .filter_map(|reason| {
            s.value(
                "peerwire_raft_messages_dropped_total",
                &[("peer", "2"), ("lane", "pipeline"), ("reason", reason)],
            )
        })
        .sum();
    assert!(dropped >= 1.0, "the dropped append counted under peer 2");
    a.stop().await;
}
