//! A 3-node peerwire-kv cluster in one process over real sockets: writes and reads on every
//! node, the raftexample HTTP API, a killed leader, a restarted node, membership changes, a
//! follower caught up by snapshot, and linearizable reads across a leader change.

mod common;

use std::time::Duration;

use common::{Cluster, http, raw_http};
use peerwire_kv::KvError;
use peerwire_kv::state::Value;
use peerwire_testkit::bounded;

fn inline(v: &str) -> Value {
    Value::Inline(v.as_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_and_gets_work_on_every_node() {
    let c = Cluster::start(3).await;
    c.leader(None).await;
    for id in 1..=3 {
        let h = c.node(id).handle();
        bounded(
            "a put",
            h.put(format!("k{id}"), format!("v{id}").into_bytes()),
        )
        .await
        .unwrap();
    }
    for id in 1..=3 {
        let h = c.node(id).handle();
        for k in 1..=3 {
            let got = bounded("a read", h.get(&format!("k{k}"), false))
                .await
                .unwrap();
            assert_eq!(got, inline(&format!("v{k}")), "node {id}, key k{k}");
        }
        assert_eq!(
            bounded("a read", h.get("missing", false)).await,
            Err(KvError::NotFound)
        );
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raftexample_http_commands_work() {
    let c = Cluster::start(3).await;
    c.leader(None).await;
    let url = |id: u64, path: &str| format!("http://{}{path}", c.node(id).http_addr().unwrap());

    // raftexample's README: curl -L http://127.0.0.1:12380/my-key -XPUT -d hello
    assert_eq!(http("PUT", &url(1, "/my-key"), "hello").await.0, 204);
    for id in 1..=3 {
        assert_eq!(
            http("GET", &url(id, "/my-key"), "").await,
            (200, "hello".into())
        );
    }
    let (code, _) = http("GET", &url(2, "/my-key?serializable=true"), "").await;
    assert_eq!(code, 200);
    assert_eq!(http("GET", &url(2, "/nothing-here"), "").await.0, 404);

    // Bad input: a clear status and message each.
    let long = format!("/{}", "k".repeat(2000));
    let (code, msg) = http("PUT", &url(1, &long), "v").await;
    assert_eq!(code, 400, "{msg}");
    // (The server refuses before reading the body, so only the headers are sent.)
    let msg = raw_http(
        c.node(1).http_addr().unwrap(),
        &format!(
            "PUT /big HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            (1 << 20) + 1
        ),
    )
    .await;
    assert!(msg.starts_with("HTTP/1.1 413"), "{msg}");
    assert!(msg.contains("/blob/"), "{msg}");
    let (code, msg) = http("POST", &url(1, "/not-a-number"), "http://127.0.0.1:1").await;
    assert_eq!(code, 400, "{msg}");
    let (code, msg) = http("POST", &url(1, "/7"), "ftp://nowhere").await;
    assert_eq!(code, 400, "{msg}");
    let (code, msg) = http("DELETE", &url(1, "/9"), "").await;
    assert_eq!(code, 400, "{msg}");

    let (code, status) = http("GET", &url(3, "/status"), "").await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_ne!(status["leader"], 0);
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let (code, metrics) = http("GET", &url(1, "/metrics"), "").await;
    assert_eq!(code, 200);
    assert!(metrics.contains("peerwire_kv_applied_index"), "{metrics}");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_nothing_acknowledged_is_lost() {
    let mut c = Cluster::start(3).await;
    let first = c.leader(None).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        let via = 1 + i % 3;
        c.node(via)
            .handle()
            .put(format!("key-{i}"), format!("value-{i}").into_bytes())
            .await
            .unwrap();
        acked.push(i);
    }
    c.stop(first).await;
    let second = c.leader(Some(first)).await;
    assert_ne!(second, first);
    for (&id, node) in &c.nodes {
        for i in &acked {
            let got = bounded("a read", node.handle().get(&format!("key-{i}"), false))
                .await
                .unwrap_or_else(|e| panic!("node {id} key-{i}: {e}"));
            assert_eq!(got, inline(&format!("value-{i}")));
        }
    }
    // Writes go on with two of three.
    let survivor = *c.nodes.keys().next().unwrap();
    c.node(survivor)
        .handle()
        .put("after".into(), b"yes".to_vec())
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_from_disk_and_catches_up() {
    let mut c = Cluster::start(3).await;
    let leader = c.leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    for i in 0..20 {
        c.node(leader)
            .handle()
            .put(format!("a{i}"), b"1".to_vec())
            .await
            .unwrap();
    }
    c.stop(follower).await;
    for i in 0..20 {
        c.node(leader)
            .handle()
            .put(format!("b{i}"), b"2".to_vec())
            .await
            .unwrap();
    }
    let commit = c.node(leader).handle().view().commit;
    c.restart(follower).await;
    let h = c.node(follower).handle().clone();
    bounded("the restarted node to catch up", h.wait_applied(commit)).await;
    for i in 0..20 {
        assert_eq!(h.get(&format!("a{i}"), true).await.unwrap(), inline("1"));
        assert_eq!(h.get(&format!("b{i}"), true).await.unwrap(), inline("2"));
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_far_behind_follower_catches_up_by_snapshot() {
    // Snapshot every 50 entries, keep 10: 300 entries leave the stopped follower far behind.
    let mut c = Cluster::start_with(3, 50, 10, Duration::from_secs(5)).await;
    let leader = c.leader(None).await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    c.stop(follower).await;
    for i in 0..300 {
        c.node(leader)
            .handle()
            .put(format!("k{i}"), format!("{i}").into_bytes())
            .await
            .unwrap();
    }
    let lv = c.node(leader).handle().view();
    assert!(lv.snapshot_index >= 250, "the leader snapshotted: {lv:?}");
    c.restart(follower).await;
    let h = c.node(follower).handle().clone();
    bounded("the follower to catch up", h.wait_applied(lv.commit)).await;
    assert!(
        h.view().snapshot_index > 1,
        "the follower installed a snapshot: {:?}",
        h.view()
    );
    for i in (0..300).step_by(37) {
        assert_eq!(
            h.get(&format!("k{i}"), true).await.unwrap(),
            inline(&format!("{i}"))
        );
    }

    // Both recover from their snapshot files and compacted logs: the leader from the snapshot
    // it made, the follower from the one it received.
    for id in [leader, follower] {
        c.stop(id).await;
        c.restart(id).await;
        let h = c.node(id).handle().clone();
        // Restarting the leader starts an election; every node agrees on its winner first.
        c.leader(None).await;
        peerwire_testkit::wait_until("the restarted node's view of its snapshot", || {
            h.view().snapshot_index > 1
        })
        .await;
        // Linearizable reads: the last puts may be committed after what this node recovered
        // as its commit index, and it learns of that from the leader.
        for i in (0..300).step_by(23) {
            assert_eq!(
                bounded("a read", h.get(&format!("k{i}"), false)).await,
                Ok(inline(&format!("{i}"))),
                "node {id}, key k{i}, view {:?}",
                h.view()
            );
        }
    }
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed() {
    let mut c = Cluster::start(3).await;
    c.leader(None).await;
    c.node(2)
        .handle()
        .put("before".into(), b"x".to_vec())
        .await
        .unwrap();

    // raftexample: curl -L http://127.0.0.1:12380/4 -XPOST -d http://127.0.0.1:42379, then
    // start node 4 with --join.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let url = format!("http://{}/4", c.node(1).http_addr().unwrap());
    let (code, msg) = http("POST", &url, format!("http://{addr}")).await;
    assert_eq!(code, 204, "{msg}");
    c.start_joiner(4, l).await;
    let h4 = c.node(4).handle().clone();
    assert_eq!(
        bounded("the new member's first read", h4.get("before", false)).await,
        Ok(inline("x"))
    );
    h4.put("from-4".into(), b"y".to_vec()).await.unwrap();
    assert_eq!(
        c.node(1).handle().get("from-4", false).await,
        Ok(inline("y"))
    );
    assert_eq!(c.node(1).handle().status().members.len(), 4);

    // Adding it again, or a removed id, is refused.
    assert!(matches!(
        c.node(1).handle().add_member(4, addr).await,
        Err(KvError::BadMember(_))
    ));

    // Remove it: it learns it was removed and refuses requests.
    let url = format!("http://{}/4", c.node(2).http_addr().unwrap());
    let (code, msg) = http("DELETE", &url, "").await;
    assert_eq!(code, 204, "{msg}");
    bounded("node 4 to learn it was removed", h4.until_refused()).await;
    let (code, msg) = http(
        "GET",
        &format!("http://{}/before", c.node(4).http_addr().unwrap()),
        "",
    )
    .await;
    assert_eq!(code, 410, "{msg}");
    assert!(matches!(
        c.node(1).handle().add_member(4, addr).await,
        Err(KvError::BadMember(_))
    ));
    assert_eq!(c.node(1).handle().status().members.len(), 3);
    c.node(3)
        .handle()
        .put("after".into(), b"z".to_vec())
        .await
        .unwrap();
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linearizable_reads_are_never_stale_after_a_leader_change() {
    let c = Cluster::start_with(3, 10_000, 5_000, Duration::from_millis(1500)).await;
    let old = c.leader(None).await;
    c.node(old)
        .handle()
        .put("k".into(), b"1".to_vec())
        .await
        .unwrap();
    // Cut the leader off; the other two elect a new one and overwrite k.
    for (&id, n) in &c.nodes {
        for &other in c.nodes.keys() {
            if (id == old) != (other == old) {
                n.transport().faults().cut(other);
            }
        }
    }
    let new = c.leader(Some(old)).await;
    c.node(new)
        .handle()
        .put("k".into(), b"2".to_vec())
        .await
        .unwrap();
    // The old leader must not answer a linearizable read with the old value.
    let stale = c.node(old).handle().get("k", false).await;
    assert!(
        matches!(stale, Err(ref e) if e.is_retryable() || matches!(e, KvError::Timeout(_))),
        "an isolated node refused the linearizable read: {stale:?}"
    );
    // A serializable read may be stale, by definition.
    assert_eq!(c.node(old).handle().get("k", true).await, Ok(inline("1")));
    for (&id, n) in &c.nodes {
        for &other in c.nodes.keys() {
            if id != other {
                n.transport().faults().mend(other);
            }
        }
    }
    assert_eq!(
        bounded("a read after mending", c.node(old).handle().get("k", false)).await,
        Ok(inline("2"))
    );
    c.shutdown().await;
}
