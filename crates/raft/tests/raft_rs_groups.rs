//! raft-rs groups over one raft transport per member, driven by the `raft_groups` example's
//! code: two groups elect and replicate independently over shared lanes, and a group removed
//! on one member is refused there while the other group's traffic flows.

#[path = "../examples/raft_groups.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod raft_groups;

use peerwire_testkit::bounded;
use raft_groups::{applied_in, group_leader, propose_in, start_members};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_raft_groups_elect_and_replicate_independently_over_one_transport() {
    let mut members = start_members(3, &[1, 2]).await.unwrap();
    let first = bounded("group 1's leader", group_leader(&mut members, 1)).await;
    let second = bounded("group 2's leader", group_leader(&mut members, 2)).await;
    propose_in(&members, 1, first, 30);
    propose_in(&members, 2, second, 20);
    bounded("group 1 applied", applied_in(&mut members, 1, 30)).await;
    bounded("group 2 applied", applied_in(&mut members, 2, 20)).await;
    for m in &members {
        let one = m.groups[&1].log.lock().unwrap().clone();
        let two = m.groups[&2].log.lock().unwrap().clone();
        assert_eq!(one.len(), 30, "member {}: group 1's log", m.id);
        assert_eq!(two.len(), 20, "member {}: group 2's log", m.id);
        // Each group applied only its own entries.
        assert!(one.iter().all(|e| e.starts_with(b"group 1 ")));
        assert!(two.iter().all(|e| e.starts_with(b"group 2 ")));
        // One set of lanes per peer, not per group: each of two peers opens at most its
        // append, message and pipeline lanes here.
        assert!(
            m.server.connections() <= 6,
            "member {}: {} connections",
            m.id,
            m.server.connections()
        );
    }

    // Member 3 stops hosting group 2; group 1 goes on everywhere, group 2 on members 1 and 2.
    members[2].remove_group(2).await;
    assert_eq!(members[2].transport.groups(), [1]);
    let second = bounded("group 2's leader", group_leader(&mut members, 2)).await;
    assert_ne!(second, 3);
    propose_in(&members, 2, second, 5);
    let first = bounded("group 1's leader", group_leader(&mut members, 1)).await;
    propose_in(&members, 1, first, 5);
    bounded(
        "group 2 applied on 1 and 2",
        applied_in(&mut members, 2, 25),
    )
    .await;
    bounded(
        "group 1 applied everywhere",
        applied_in(&mut members, 1, 35),
    )
    .await;
    let logs: Vec<Vec<Vec<u8>>> = members
        .iter()
        .map(|m| m.groups[&1].log.lock().unwrap().clone())
        .collect();
    assert!(
        logs.windows(2).all(|w| w[0] == w[1]),
        "group 1's logs agree"
    );
    for m in members {
        bounded("a member to stop", m.stop()).await;
    }
}
