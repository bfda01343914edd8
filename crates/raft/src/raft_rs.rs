//! The adapter for raft-rs (crate `raft`): its `eraftpb::Message` is a [`RaftMessage`].
//!
//! Every encoding starts with a format byte:
//!
//! - `0`: the message in raft-rs's own protobuf encoding;
//! - `1`: a **compact append** (etcd's msgappv2 idea): a `MsgAppend` whose entries are
//!   consecutive from `index + 1` and carry no per-entry context, written as the message's
//!   numbers followed by each entry's type, term and data. The indexes are implied, so an
//!   entry costs its data plus 3–4 bytes instead of protobuf's 10 or more.
//!
//! | offset | field (compact append) |
//! |---|---|
//! | 0 | format `1` (u8) |
//! | 1 | `to`, `from`, `term`, `log_term`, `index`, `commit`, `commit_term`, entry count (varints) |
//! | … | per entry: entry type (u8), term (varint), data length (varint), data |
//!
//! - `2`: a message of a raft group other than 0 ([`GroupMessage`], for a multi-raft member):
//!   the group id as a varint, then the message in format `0` or `1`.
//!
//! | offset | field (group message) |
//! |---|---|
//! | 0 | format `2` (u8) |
//! | 1 | group id (varint, 1–10 bytes) |
//! | … | the message, format `0` or `1` |
//!
//! A message of group 0 is written without the prefix, so a single-group member and a
//! multi-raft member exchange group 0's messages in the same bytes; [`GroupMessage`] reads
//! formats `0` and `1` as group 0, and a plain `Message` refuses format `2`.
//!
//! Snapshot data travels beside the message on the snapshot lane
//! ([`RaftMessage::take_snapshot_data`]). Decoding shares the frame's buffer (no copy of entry
//! data).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost::encoding::{decode_varint, encode_varint};
use protobuf::{Message as _, ProtobufEnum as _};
use raft::eraftpb::{Entry, EntryType, Message, MessageType};

use super::message::{MessageKind, RaftMessage};

const FORMAT_PROTOBUF: u8 = 0;
const FORMAT_COMPACT_APPEND: u8 = 1;
const FORMAT_GROUP: u8 = 2;

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

/// A raft-rs message that does not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The protobuf encoding is invalid.
    #[error("protobuf: {0}")]
    Protobuf(#[from] protobuf::ProtobufError),
    /// The compact append encoding is invalid.
    #[error("compact append: {0}")]
    Compact(&'static str),
    /// The format byte is unknown (or missing).
    #[error("unknown message format {0:?}")]
    Format(Option<u8>),
    /// The group id of a group message does not decode.
    #[error("group message: bad group id")]
    Group,
}

/// Whether the message itself (not yet its entries) fits the compact append encoding.
fn compactable_head(m: &Message) -> bool {
    m.get_msg_type() == MessageType::MsgAppend
        && !m.has_snapshot()
        && m.request_snapshot == 0
        && !m.reject
        && m.reject_hint == 0
        && m.context.is_empty()
        && m.deprecated_priority == 0
        && m.priority == 0
        && m.unknown_fields.fields.is_none()
}

/// Appends `m` in the compact append encoding, checking each entry as it goes (one pass over
/// the entries): returns `false`, with `out` left longer by a partial encoding, at the first
/// entry that does not fit (not consecutive, or carrying a context, `sync_log` or unknown
/// fields). The caller truncates and falls back to protobuf.
fn encode_compact(m: &Message, out: &mut BytesMut) -> bool {
    let mut head = Varints::<81>::default();
    head.byte(FORMAT_COMPACT_APPEND);
    for v in [
        m.to,
        m.from,
        m.term,
        m.log_term,
        m.index,
        m.commit,
        m.commit_term,
        m.entries.len() as u64,
    ] {
        head.varint(v);
    }
    out.extend_from_slice(head.bytes());
    let mut index = m.index;
    for e in m.entries.iter() {
        // An index past u64::MAX is not consecutive: the decoder refuses it.
        match index.checked_add(1) {
            Some(next) => index = next,
            None => return false,
        }
        if e.index != index
            || !e.context.is_empty()
            || e.sync_log
            || e.unknown_fields.fields.is_some()
        {
            return false;
        }
        // Each entry is two copies: its small head, then its data.
        let mut head = Varints::<21>::default();
        head.byte(e.get_entry_type().value() as u8);
        head.varint(e.term);
        head.varint(e.data.len() as u64);
        out.reserve(head.len + e.data.len());
        out.put_slice(head.bytes());
        out.put_slice(&e.data);
    }
    true
}

/// A few varints built on the stack, to be copied out at once; `N` bytes of room (a varint
/// takes at most 10).
struct Varints<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for Varints<N> {
    fn default() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }
}

impl<const N: usize> Varints<N> {
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// LEB128, as protobuf writes it.
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.byte((v as u8) | 0x80);
            v >>= 7;
        }
        self.byte(v as u8);
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

fn decode_compact(mut b: Bytes) -> Result<Message, DecodeError> {
    let next = |b: &mut Bytes| decode_varint(b).map_err(|_| DecodeError::Compact("bad varint"));
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgAppend);
    m.to = next(&mut b)?;
    m.from = next(&mut b)?;
    m.term = next(&mut b)?;
    m.log_term = next(&mut b)?;
    m.index = next(&mut b)?;
    m.commit = next(&mut b)?;
    m.commit_term = next(&mut b)?;
    let count = next(&mut b)?;
    // Each entry takes at least 3 bytes: a count beyond that is a lie, not an allocation.
    if count > b.len() as u64 / 3 {
        return Err(DecodeError::Compact("entry count exceeds the body"));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for i in 0..count {
        if !b.has_remaining() {
            return Err(DecodeError::Compact("truncated entry"));
        }
        let entry_type = EntryType::from_i32(i32::from(b.get_u8()))
            .ok_or(DecodeError::Compact("unknown entry type"))?;
        let term = next(&mut b)?;
        let len = next(&mut b)?;
        if len > b.len() as u64 {
            return Err(DecodeError::Compact("entry data runs past the end"));
        }
        let mut e = Entry::default();
        e.set_entry_type(entry_type);
        e.term = term;
        e.index = m
            .index
            .checked_add(1 + i)
            .ok_or(DecodeError::Compact("entry index overflows"))?;
        e.data = b.split_to(len as usize);
        entries.push(e);
    }
    if b.has_remaining() {
        return Err(DecodeError::Compact("trailing bytes"));
    }
    m.set_entries(entries.into());
    Ok(m)
}

impl RaftMessage for Message {
    type Error = DecodeError;

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
        if compactable_head(self) {
            let start = out.len();
            if encode_compact(self, out) {
                return;
            }
            out.truncate(start);
        }
        out.reserve(1 + self.compute_size() as usize);
        out.put_u8(FORMAT_PROTOBUF);
        // Writing into memory cannot fail; a message whose required fields are missing cannot
        // exist in proto3.
        let _ = self.write_to_writer(&mut out.writer());
    }

    fn decode(mut bytes: Bytes) -> Result<Self, Self::Error> {
        match bytes.first().copied() {
            Some(FORMAT_PROTOBUF) => {
                bytes.advance(1);
                Ok(Self::parse_from_carllerche_bytes(&bytes)?)
            }
            Some(FORMAT_COMPACT_APPEND) => {
                bytes.advance(1);
                decode_compact(bytes)
            }
            other => Err(DecodeError::Format(other)),
        }
    }

    fn take_snapshot_data(&mut self) -> Bytes {
        if self.has_snapshot() {
            self.mut_snapshot().take_data()
        } else {
            Bytes::new()
        }
    }

    fn set_snapshot_data(&mut self, data: Bytes) {
        self.mut_snapshot().set_data(data);
    }
}

/// A raft-rs message of one raft group, for a member that runs many groups over one
/// transport ([`Transport::start_multi`](super::Transport::start_multi)): the group id travels
/// beside the message (format `2`), and group 0 is written as a plain [`Message`].
#[derive(Debug, Clone, PartialEq)]
pub struct GroupMessage {
    /// The raft group.
    pub group: u64,
    /// The raft message.
    pub message: Message,
}

impl GroupMessage {
    /// `message` of `group`.
    pub fn new(group: u64, message: Message) -> Self {
        Self { group, message }
    }
}

impl RaftMessage for GroupMessage {
    type Error = DecodeError;

    fn kind(&self) -> MessageKind {
        self.message.kind()
    }

    fn from(&self) -> u64 {
        self.message.get_from()
    }

    fn to(&self) -> u64 {
        self.message.get_to()
    }

    fn group(&self) -> u64 {
        self.group
    }

    fn encode(&self, out: &mut BytesMut) {
        if self.group != 0 {
            out.put_u8(FORMAT_GROUP);
            encode_varint(self.group, out);
        }
        self.message.encode(out);
    }

    fn decode(mut bytes: Bytes) -> Result<Self, Self::Error> {
        let group = if bytes.first() == Some(&FORMAT_GROUP) {
            bytes.advance(1);
            decode_varint(&mut bytes).map_err(|_| DecodeError::Group)?
        } else {
            0
        };
        Ok(Self {
            group,
            message: Message::decode(bytes)?,
        })
    }

    fn take_snapshot_data(&mut self) -> Bytes {
        self.message.take_snapshot_data()
    }

    fn set_snapshot_data(&mut self, data: Bytes) {
        self.message.set_snapshot_data(data);
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
        for bad in [
            &[][..],
            &[0, 0xff, 0xff, 0xff, 0xff, 0x0f],
            &[1, 1, 2, 3],
            &[1, 1, 2, 3, 4, 5, 6, 7, 200],
            &[9],
        ] {
            assert!(
                Message::decode(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    fn append(index: u64, n: u64, data: usize) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        (
            m.from,
            m.to,
            m.term,
            m.log_term,
            m.index,
            m.commit,
            m.commit_term,
        ) = (1, 2, 9, 8, index, index, 8);
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let mut e = Entry {
                    index: index.wrapping_add(1 + i),
                    term: 9,
                    data: Bytes::from(vec![i as u8; data]),
                    ..Entry::default()
                };
                if i == 1 {
                    e.set_entry_type(EntryType::EntryConfChange);
                }
                e
            })
            .collect();
        m.set_entries(entries.into());
        m
    }

    #[test]
    fn consecutive_appends_use_the_compact_encoding() {
        let m = append(100, 64, 256);
        let mut compact = BytesMut::new();
        m.encode(&mut compact);
        assert_eq!(compact[0], FORMAT_COMPACT_APPEND);
        let protobuf = m.compute_size() as usize;
        // 64 entries: 4 bytes each instead of protobuf's ~10.
        assert!(
            compact.len() + 64 * 5 < protobuf,
            "{} vs {protobuf}",
            compact.len()
        );
        assert!(compact.len() < 64 * 256 + 64 * 4 + 20, "{}", compact.len());
        assert_eq!(Message::decode(compact.freeze()).unwrap(), m);
    }

    #[test]
    fn irregular_appends_fall_back_to_protobuf() {
        let mut gap = append(100, 3, 8);
        gap.mut_entries()[2].index = 500;
        let mut with_context = append(100, 3, 8);
        with_context.mut_entries()[2].context = Bytes::from_static(b"ctx");
        let mut synced = append(100, 3, 8);
        synced.mut_entries()[1].sync_log = true;
        let mut overflowing = append(u64::MAX, 1, 8);
        overflowing.mut_entries()[0].index = 0;
        let mut rejecting = append(100, 0, 0);
        rejecting.reject = true;
        for m in [gap, with_context, synced, overflowing, rejecting] {
            // Into a buffer that already holds earlier messages of a batch: the partial
            // compact encoding must not be left behind.
            let mut out = BytesMut::from(&b"earlier"[..]);
            m.encode(&mut out);
            assert_eq!(&out[..7], b"earlier");
            assert_eq!(out[7], FORMAT_PROTOBUF);
            assert_eq!(Message::decode(out.freeze().slice(7..)).unwrap(), m);
        }
    }

    #[test]
    fn snapshot_data_travels_beside_the_message() {
        let mut s = Message::default();
        s.set_msg_type(MessageType::MsgSnapshot);
        s.mut_snapshot().set_data(Bytes::from_static(b"state"));
        s.mut_snapshot().mut_metadata().set_index(7);
        let data = s.take_snapshot_data();
        assert_eq!(data, "state");
        assert!(s.get_snapshot().get_data().is_empty());
        s.set_snapshot_data(data);
        assert_eq!(s.get_snapshot().get_data(), b"state");
        assert_eq!(s.get_snapshot().get_metadata().get_index(), 7);
    }

    proptest::proptest! {
        #[test]
        fn appends_round_trip(index in 0u64..1 << 40, n in 0u64..20, data in 0usize..300, commit in 0u64..1 << 40) {
            let mut m = append(index, n, data);
            m.commit = commit;
            let mut out = BytesMut::new();
            m.encode(&mut out);
            proptest::prop_assert_eq!(Message::decode(out.freeze()).unwrap(), m);
        }

        #[test]
        fn compact_garbage_never_panics(body in proptest::collection::vec(0u8.., 0..80)) {
            let mut b = vec![FORMAT_COMPACT_APPEND];
            b.extend(body);
            let _ = Message::decode(Bytes::from(b));
        }
    }

    #[test]
    fn group_messages_carry_their_group_and_group_0_is_a_plain_message() {
        for group in [0u64, 1, 127, 128, 10_000, u64::MAX] {
            let msg = GroupMessage::new(group, append(7, 3, 10));
            let mut out = BytesMut::new();
            msg.encode(&mut out);
            let bytes = out.freeze();
            assert_eq!(GroupMessage::decode(bytes.clone()).unwrap(), msg);
            assert_eq!(msg.group(), group);
            if group == 0 {
                // A single-group member reads it as it is.
                assert_eq!(Message::decode(bytes).unwrap(), msg.message);
            } else {
                assert_eq!(bytes[0], FORMAT_GROUP);
                // A single-group member refuses it rather than misreading it.
                assert!(matches!(
                    Message::decode(bytes),
                    Err(DecodeError::Format(Some(FORMAT_GROUP)))
                ));
            }
        }
        // A plain message reads as group 0.
        let mut out = BytesMut::new();
        append(1, 1, 1).encode(&mut out);
        assert_eq!(GroupMessage::decode(out.freeze()).unwrap().group, 0);
        // A group id cut short is an error.
        assert!(matches!(
            GroupMessage::decode(Bytes::from_static(&[FORMAT_GROUP, 0x80])),
            Err(DecodeError::Group)
        ));
    }
}
