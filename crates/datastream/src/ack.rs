//! Acknowledgement accounting (pure): a server acknowledges a packet only when its own write
//! and every successor's acknowledgement report the same stream length.

use super::codec::{FailureKind, ReplicaBytes, Reply, StreamFailure};

/// What one successor answered for a packet: its decoded reply, or why there is none.
pub(crate) type SuccessorAnswer = Result<Reply, String>;

/// Combines this server's write (`me` holds `end` bytes) with its successors' answers for
/// the packet at `offset` into the reply for that packet.
pub(crate) fn combine(
    me: u64,
    end: u64,
    offset: u64,
    answers: Vec<(u64, SuccessorAnswer)>,
) -> Reply {
    let mut replicas = vec![ReplicaBytes {
        node: me,
        bytes: end,
    }];
    for (node, answer) in answers {
        let list = match answer {
            Err(why) => {
                return Err(StreamFailure {
                    kind: FailureKind::Replica,
                    node,
                    offset,
                    message: why,
                });
            }
            Ok(Err(failure)) => return Err(failure),
            Ok(Ok(list)) => list,
        };
        if !list.iter().any(|r| r.node == node) {
            return Err(StreamFailure {
                kind: FailureKind::Mismatch,
                node,
                offset,
                message: format!("node {node}'s acknowledgement does not include itself"),
            });
        }
        if let Some(r) = list.iter().find(|r| r.bytes != end) {
            return Err(StreamFailure {
                kind: FailureKind::Mismatch,
                node: r.node,
                offset,
                message: format!(
                    "node {} holds {} stream bytes, node {me} holds {end}",
                    r.node, r.bytes
                ),
            });
        }
        replicas.extend(list);
    }
    Ok(replicas)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rb(node: u64, bytes: u64) -> ReplicaBytes {
        ReplicaBytes { node, bytes }
    }

    #[test]
    fn equal_counts_are_acknowledged_with_every_replica() {
        let reply = combine(
            1,
            100,
            50,
            vec![
                (2, Ok(Ok(vec![rb(2, 100), rb(3, 100)]))),
                (4, Ok(Ok(vec![rb(4, 100)]))),
            ],
        );
        assert_eq!(
            reply,
            Ok(vec![rb(1, 100), rb(2, 100), rb(3, 100), rb(4, 100)])
        );
        assert_eq!(combine(1, 7, 0, vec![]), Ok(vec![rb(1, 7)]));
    }

    #[test]
    fn a_missing_or_different_count_fails_naming_the_node() {
        let failure =
            combine(1, 100, 50, vec![(2, Ok(Ok(vec![rb(2, 100), rb(3, 60)])))]).unwrap_err();
        assert_eq!((failure.kind, failure.node), (FailureKind::Mismatch, 3));
        let failure = combine(1, 100, 50, vec![(2, Ok(Ok(vec![rb(3, 100)])))]).unwrap_err();
        assert_eq!((failure.kind, failure.node), (FailureKind::Mismatch, 2));
    }

    #[test]
    fn a_silent_successor_fails_naming_it_and_remote_failures_pass_through() {
        let failure = combine(
            1,
            100,
            50,
            vec![
                (2, Ok(Ok(vec![rb(2, 100)]))),
                (3, Err("connection lost".into())),
            ],
        )
        .unwrap_err();
        assert_eq!(
            (failure.kind, failure.node, failure.offset),
            (FailureKind::Replica, 3, 50)
        );
        let remote = StreamFailure {
            kind: FailureKind::Checksum,
            node: 5,
            offset: 50,
            message: "bad".into(),
        };
        assert_eq!(
            combine(1, 100, 50, vec![(2, Ok(Err(remote.clone())))]),
            Err(remote)
        );
    }
}
