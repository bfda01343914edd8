//! What the transport needs to know about a raft message: its kind (which decides its lane),
//! its sender and receiver, and how to put it on the wire.

use bytes::{Bytes, BytesMut};

/// The kinds of raft message the transport treats differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Log replication (raft's `MsgApp`): bulk, ordered, on the append lane.
    Append,
    /// A snapshot (raft's `MsgSnap`): possibly huge, streamed on the snapshot lane.
    Snapshot,
    /// A leader's heartbeat or its response: small and latency-critical.
    Heartbeat,
    /// An election message (vote, pre-vote and their responses): small and latency-critical.
    Vote,
    /// Everything else (append responses, timeout-now, read-index, ...).
    Other,
}

impl MessageKind {
    /// Whether losing or delaying this kind stalls the cluster's liveness (heartbeats and votes):
    /// these never wait behind bulk traffic.
    pub fn is_urgent(self) -> bool {
        matches!(self, Self::Heartbeat | Self::Vote)
    }
}

/// A raft message the transport can carry. Implemented for raft-rs's `eraftpb::Message` by the
/// adapter; any raft implementation can implement it for its own message type.
pub trait RaftMessage: Send + Sized + 'static {
    /// The decode error.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The message's kind.
    fn kind(&self) -> MessageKind;
    /// The sending member's id.
    fn from(&self) -> u64;
    /// The receiving member's id.
    fn to(&self) -> u64;
    /// The raft group the message belongs to. One transport carries any number of groups
    /// over one set of lanes per peer; the receiver hands the message to that group's handler
    /// ([`Transport::add_group`](super::Transport::add_group)), and a message for a group it
    /// does not host is dropped for that group alone. A type carrying a group must encode it.
    /// Default: 0, the only group of a single-group transport.
    fn group(&self) -> u64 {
        0
    }
    /// Appends the encoded message to `out`.
    fn encode(&self, out: &mut BytesMut);
    /// Decodes a message encoded by [`RaftMessage::encode`].
    fn decode(bytes: Bytes) -> Result<Self, Self::Error>;

    /// For a snapshot message: takes the snapshot's data out, leaving the metadata. The
    /// transport streams the data on the snapshot lane in chunks and sends the rest as the
    /// message. Default: the message carries no separate data.
    fn take_snapshot_data(&mut self) -> Bytes {
        Bytes::new()
    }

    /// Puts received snapshot data back into a snapshot message (the inverse of
    /// [`RaftMessage::take_snapshot_data`]). Default: the data is dropped.
    fn set_snapshot_data(&mut self, data: Bytes) {
        let _ = data;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_heartbeats_and_votes_are_urgent() {
        let urgent: Vec<MessageKind> = [
            MessageKind::Append,
            MessageKind::Snapshot,
            MessageKind::Heartbeat,
            MessageKind::Vote,
            MessageKind::Other,
        ]
        .into_iter()
        .filter(|k| k.is_urgent())
        .collect();
        assert_eq!(urgent, [MessageKind::Heartbeat, MessageKind::Vote]);
    }
}
