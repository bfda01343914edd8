//! raft-rs members over the peerwire raft transport on real loopback sockets, driven by the
//! `raft_cluster` example's code: they elect a leader and commit proposals, and a cut leader
//! is replaced and later catches up.

#[path = "../examples/raft_cluster.rs"]
#[allow(dead_code, unreachable_pub, missing_docs)]
mod raft_cluster;

use peerwire_testkit::bounded;
use raft_cluster::{agreed_leader, applied, propose_many, start_cluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_rs_members_elect_a_leader_and_commit_proposals() {
    let mut members = start_cluster(3).await.unwrap();
    let leader = bounded("a leader", agreed_leader(&mut members, None)).await;
    propose_many(&members, leader, 0, 200);
    bounded(
        "200 entries applied everywhere",
        applied(&mut members, 200, None),
    )
    .await;
    let logs: Vec<_> = members
        .iter()
        .map(|m| m.log.lock().unwrap().clone())
        .collect();
    assert_eq!(logs[0].len(), 200);
    assert!(
        logs.windows(2).all(|w| w[0] == w[1]),
        "every member applied the same log"
    );
    assert_eq!(logs[0][199], b"entry 199");
    for m in members {
        bounded("a member to stop", m.stop()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_leader_elects_another_and_mending_lets_it_catch_up() {
    let mut members = start_cluster(3).await.unwrap();
    let first = bounded("a leader", agreed_leader(&mut members, None)).await;
    let first_term = members[0].view.borrow().term;
    propose_many(&members, first, 0, 10);
    bounded("10 applied", applied(&mut members, 10, None)).await;

    for m in &members {
        for peer in members.iter().filter(|p| p.id != m.id) {
            if m.id == first || peer.id == first {
                m.transport.faults().cut(peer.id);
            }
        }
    }
    let second = bounded("a new leader", agreed_leader(&mut members, Some(first))).await;
    assert_ne!(second, first);
    let term = members
        .iter()
        .find(|m| m.id == second)
        .unwrap()
        .view
        .borrow()
        .term;
    assert!(
        term > first_term,
        "a new election: term {term} after {first_term}"
    );
    propose_many(&members, second, 10, 10);
    bounded(
        "20 applied on the majority",
        applied(&mut members, 20, Some(first)),
    )
    .await;
    let cut_off = members.iter().find(|m| m.id == first).unwrap();
    assert_eq!(
        cut_off.log.lock().unwrap().len(),
        10,
        "the cut member applied nothing new"
    );

    for m in &members {
        for peer in members.iter().filter(|p| p.id != m.id) {
            m.transport.faults().mend(peer.id);
        }
    }
    bounded(
        "the old leader to catch up",
        applied(&mut members, 20, None),
    )
    .await;
    let logs: Vec<_> = members
        .iter()
        .map(|m| m.log.lock().unwrap().clone())
        .collect();
    assert!(
        logs.windows(2).all(|w| w[0] == w[1]),
        "logs agree after the heal"
    );
    for m in members {
        bounded("a member to stop", m.stop()).await;
    }
}
