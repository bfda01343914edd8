//! What an operator watches: `/health` as a leader is lost and a quorum with it, and `/metrics`
//! read with a Prometheus text-format parser after puts, snapshots and a leader change.

mod common;

use std::time::Duration;

use common::{Cluster, http};
use peerwire_kv::metrics::names;
use peerwire_testkit::bounded;
use prometheus_parse::{Scrape, Value};

fn url(c: &Cluster, id: u64, path: &str) -> String {
    format!("http://{}{path}", c.node(id).http_addr().unwrap())
}

/// `/metrics` of node `id`, parsed.
async fn scrape(c: &Cluster, id: u64) -> Scrape {
    let (status, text) = http("GET", &url(c, id, "/metrics"), "").await;
    assert_eq!(status, 200);
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("the Prometheus text parses")
}

/// The sum of a counter's or gauge's samples named `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a single value: {other:?}"),
        })
        .sum()
}

/// How many observations a histogram named `name` (with `labels`) holds: its `+Inf` bucket.
fn observations(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match &x.value {
            Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_quorum_and_metrics_move_with_puts_snapshots_and_a_leader_change() {
    // Snapshots every 50 entries: 120 puts make each member snapshot at least once.
    let mut c = Cluster::start_with(3, 50, 10, Duration::from_secs(5)).await;
    let leader = c.leader(None).await;
    for id in 1..=3 {
        let (status, body) = http("GET", &url(&c, id, "/health"), "").await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"health":"true"}"#),
            "node {id}"
        );
    }
    // A follower misses the puts, so it catches up by snapshot afterwards.
    let behind = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(behind).await;
    for i in 0..120 {
        let (status, _) = http("PUT", &url(&c, leader, &format!("/k{i}")), "v").await;
        assert_eq!(status, 204);
    }
    let commit = c.node(leader).handle().view().commit;
    c.restart(behind).await;
    let h = c.node(behind).handle().clone();
    bounded("the follower to catch up", h.wait_applied(commit)).await;
    let (status, _) = http("GET", &url(&c, leader, "/missing"), "").await;
    assert_eq!(status, 404);
    let before = scrape(&c, leader).await;
    assert!(
        value(&before, names::PROPOSALS_APPLIED, &[]) >= 120.0,
        "every put was a proposal applied"
    );
    assert!(observations(&before, names::LOG_WRITE_SECONDS, &[]) >= 1.0);
    let puts = [("api", "http"), ("method", "put"), ("outcome", "ok")];
    assert!(observations(&before, names::REQUEST_SECONDS, &puts) >= 120.0);
    let misses = [("api", "http"), ("method", "get"), ("outcome", "not_found")];
    assert!(observations(&before, names::REQUEST_SECONDS, &misses) >= 1.0);
    assert!(
        value(&before, names::SNAPSHOTS, &[]) >= 1.0,
        "a snapshot was made"
    );
    assert!(observations(&before, names::SNAPSHOT_SAVE_SECONDS, &[]) >= 1.0);
    assert!(value(&before, names::SNAPSHOT_BYTES, &[]) > 0.0);
    assert_eq!(value(&before, names::HAS_LEADER, &[]), 1.0);
    let changes = value(&before, names::LEADER_CHANGES, &[]);
    assert!(changes >= 1.0, "the first election was seen");
    assert!(value(&before, names::COMMITTED_INDEX, &[]) >= 120.0);
    assert!(
        before.docs.contains_key(names::LOG_WRITE_SECONDS),
        "peerwire-kv's metrics have # HELP lines"
    );
    let sent = [("outcome", "finish")];
    assert!(
        observations(
            &before,
            "peerwire_raft_snapshot_send_duration_seconds",
            &sent
        ) >= 1.0,
        "the snapshot to the follower was timed"
    );
    assert!(
        observations(
            &before,
            "peerwire_raft_snapshot_receive_duration_seconds",
            &[]
        ) >= 1.0
    );
    assert!(value(&before, names::SNAPSHOTS_INSTALLED, &[]) >= 1.0);
    // The transport's metrics are on the same page, by peer and lane (the three members share
    // this process's recorder, so the page holds each one's view of the others).
    assert!(value(&before, "peerwire_raft_messages_sent_total", &[]) > 0.0);
    let (behind_label, leader_label) = (behind.to_string(), leader.to_string());
    let to_behind = [("peer", behind_label.as_str()), ("lane", "snapshot")];
    assert!(
        value(&before, "peerwire_raft_peer_sent_bytes_total", &to_behind) > 0.0,
        "the snapshot's bytes counted under the follower it went to"
    );
    let from_leader = [("peer", leader_label.as_str()), ("lane", "snapshot")];
    assert!(
        value(
            &before,
            "peerwire_raft_peer_received_bytes_total",
            &from_leader
        ) > 0.0,
        "and under the leader it came from"
    );
    let appends = [("peer", leader_label.as_str()), ("lane", "append")];
    assert!(value(&before, "peerwire_raft_peer_received_bytes_total", &appends) > 0.0);

    // The leader goes: the two others elect one, see the change and stay healthy.
    c.stop(leader).await;
    let next = c.leader(Some(leader)).await;
    assert_ne!(next, leader);
    let (status, body) = http("GET", &url(&c, next, "/health"), "").await;
    assert_eq!((status, body.as_str()), (200, r#"{"health":"true"}"#));
    let after = scrape(&c, next).await;
    assert!(
        value(&after, names::LEADER_CHANGES, &[]) > changes,
        "the new leader was seen"
    );

    // Without a quorum the last node is not healthy, and says why.
    let other = (1..=3).find(|id| *id != leader && *id != next).unwrap();
    // The follower that caught up may be the new leader or the last node; either way it answers.
    c.stop(next).await;
    let (status, body) = http("GET", &url(&c, other, "/health"), "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""health":"false""#), "{body}");
    assert!(body.contains("reason"), "{body}");
    c.shutdown().await;
}
