//! The adapter for raft-rs (crate `raft`): its `eraftpb::Message` is a [`RaftMessage`],
//! encoded with its own protobuf codec.

use bytes::{BufMut, Bytes, BytesMut};
use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};

use super::message::{MessageKind, RaftMessage};

/// The transport's kind of a raft-rs message type.
pub fn kind_of(msg_type: MessageType) -> MessageKind {
    use MessageType::*;
    match msg_type {
        MsgAppend => MessageKind::Append,
        MsgSnapshot => MessageKind::Snapshot,
        MsgHeartbeat | MsgHeartbeatResponse => MessageKind::Heartbeat,
        MsgRequestVote | MsgRequestVoteResponse | MsgRequestPreVote | MsgRequestPreVoteResponse => {
            MessageKind::Vote
        }
        MsgHup | MsgBeat | MsgPropose | MsgAppendResponse | MsgUnreachable | MsgSnapStatus
        | MsgCheckQuorum | MsgTransferLeader | MsgTimeoutNow | MsgReadIndex | MsgReadIndexResp => {
            MessageKind::Other
        }
    }
}

impl RaftMessage for Message {
    type Error = protobuf::ProtobufError;

    fn kind(&self) -> MessageKind {
        kind_of(self.get_msg_type())
    }

    fn from(&self) -> u64 {
        self.get_from()
    }

    fn to(&self) -> u64 {
        self.get_to()
    }

    fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.compute_size() as usize);
        // Writing into memory cannot fail; a message whose required fields are missing cannot
        // exist in proto3.
        let _ = self.write_to_writer(&mut out.writer());
    }

    fn decode(bytes: Bytes) -> Result<Self, Self::Error> {
        Self::parse_from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::{Entry, Snapshot};

    use super::*;

    #[test]
    fn every_message_type_has_its_kind() {
        use MessageType::*;
        let table = [
            (MsgAppend, MessageKind::Append),
            (MsgSnapshot, MessageKind::Snapshot),
            (MsgHeartbeat, MessageKind::Heartbeat),
            (MsgHeartbeatResponse, MessageKind::Heartbeat),
            (MsgRequestVote, MessageKind::Vote),
            (MsgRequestVoteResponse, MessageKind::Vote),
            (MsgRequestPreVote, MessageKind::Vote),
            (MsgRequestPreVoteResponse, MessageKind::Vote),
            (MsgAppendResponse, MessageKind::Other),
            (MsgTimeoutNow, MessageKind::Other),
            (MsgReadIndex, MessageKind::Other),
            (MsgReadIndexResp, MessageKind::Other),
            (MsgTransferLeader, MessageKind::Other),
        ];
        for (t, kind) in table {
            let mut m = Message::default();
            m.set_msg_type(t);
            assert_eq!(m.kind(), kind, "{t:?}");
        }
    }

    #[test]
    fn round_trips_with_entries_and_snapshots() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.set_from(1);
        m.set_to(3);
        m.set_term(7);
        m.set_index(41);
        m.set_log_term(6);
        m.set_commit(40);
        let entries: Vec<Entry> = (42..45)
            .map(|i| {
                let mut e = Entry::default();
                e.set_index(i);
                e.set_term(7);
                e.set_data(vec![i as u8; 256].into());
                e
            })
            .collect();
        m.set_entries(entries.into());
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let back = Message::decode(out.freeze()).unwrap();
        assert_eq!(back, m);
        assert_eq!((back.from(), back.to()), (1, 3));

        let mut s = Message::default();
        s.set_msg_type(MessageType::MsgSnapshot);
        let mut snap = Snapshot::default();
        snap.mut_metadata().set_index(100);
        snap.set_data(vec![9u8; 4096].into());
        s.set_snapshot(snap);
        let mut out = BytesMut::new();
        s.encode(&mut out);
        assert_eq!(Message::decode(out.freeze()).unwrap(), s);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Message::decode(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0x0f])).is_err());
    }
}
