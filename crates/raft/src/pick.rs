//! Which lane a message takes (etcd's `peer.pick`): a pure function of the message's kind and
//! which long-lived lanes are up.

use super::message::MessageKind;

/// The long-lived lanes to one peer that are connected and accepting messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LanesUp {
    /// The append lane.
    pub append: bool,
    /// The message lane.
    pub message: bool,
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneChoice {
    /// The long-lived append lane.
    Append,
    /// The long-lived message lane.
    Message,
    /// The pipeline: a small pool of workers sending one message per request, used while the
    /// long-lived lanes are down.
    Pipeline,
    /// The snapshot lane.
    Snapshot,
}

/// The lane for a message of `kind` given the lanes that are up.
///
/// - Snapshots always take the snapshot lane, so a snapshot of any size never holds up the
///   other lanes.
/// - Appends take the append lane when it is up, else the message lane.
/// - Everything else takes the message lane; heartbeats and votes therefore never queue behind
///   appends or snapshots.
/// - With neither long-lived lane up, the pipeline carries the message.
pub fn pick(kind: MessageKind, up: LanesUp) -> LaneChoice {
    match kind {
        MessageKind::Snapshot => LaneChoice::Snapshot,
        MessageKind::Append if up.append => LaneChoice::Append,
        _ if up.message => LaneChoice::Message,
        _ => LaneChoice::Pipeline,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MessageKind::*;

    const NONE: LanesUp = LanesUp {
        append: false,
        message: false,
    };
    const APPEND: LanesUp = LanesUp {
        append: true,
        message: false,
    };
    const MESSAGE: LanesUp = LanesUp {
        append: false,
        message: true,
    };
    const BOTH: LanesUp = LanesUp {
        append: true,
        message: true,
    };

    #[test]
    fn the_lane_table() {
        use LaneChoice as L;
        let table = [
            // kind, lanes up, lane
            (Append, BOTH, L::Append),
            (Append, APPEND, L::Append),
            (Append, MESSAGE, L::Message),
            (Append, NONE, L::Pipeline),
            (Heartbeat, BOTH, L::Message),
            (Heartbeat, APPEND, L::Pipeline),
            (Heartbeat, NONE, L::Pipeline),
            (Vote, BOTH, L::Message),
            (Vote, APPEND, L::Pipeline),
            (Other, BOTH, L::Message),
            (Other, NONE, L::Pipeline),
            (Snapshot, BOTH, L::Snapshot),
            (Snapshot, NONE, L::Snapshot),
        ];
        for (kind, up, want) in table {
            assert_eq!(pick(kind, up), want, "{kind:?} with {up:?}");
        }
    }

    #[test]
    fn urgent_messages_never_share_a_lane_with_bulk_traffic() {
        for up in [NONE, APPEND, MESSAGE, BOTH] {
            for urgent in [Heartbeat, Vote] {
                let lane = pick(urgent, up);
                assert_ne!(lane, pick(Snapshot, up));
                if up.append {
                    assert_ne!(lane, pick(Append, up), "{up:?}");
                }
            }
        }
    }
}
