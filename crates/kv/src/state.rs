//! The replicated state machine: the map, the members' addresses and the removed members, as
//! of an applied index. Pure: applying entries and encoding snapshots, no IO.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::command::{BlobRef, Op};

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Held in the map itself.
    Inline(Vec<u8>),
    /// Held in the blob directory of each replica.
    Blob(BlobRef),
}

/// The state every member reaches by applying the log in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    /// The map.
    pub map: BTreeMap<String, Value>,
    /// Where each member serves peerwire (raft, data stream, native clients).
    pub members: BTreeMap<u64, SocketAddr>,
    /// Members removed from the cluster; they may not rejoin under the same id.
    pub removed: BTreeSet<u64>,
    /// The index of the last entry applied.
    pub applied: u64,
}

impl KvState {
    /// Applies one operation.
    pub fn apply(&mut self, op: Op) {
        match op {
            Op::Put { key, value } => {
                self.map.insert(key, Value::Inline(value));
            }
            Op::PutBlob { key, blob } => {
                self.map.insert(key, Value::Blob(blob));
            }
        }
    }

    /// Records an added member (a committed `AddNode`).
    pub fn add_member(&mut self, id: u64, addr: SocketAddr) {
        self.members.insert(id, addr);
    }

    /// Records a removed member (a committed `RemoveNode`).
    pub fn remove_member(&mut self, id: u64) {
        self.members.remove(&id);
        self.removed.insert(id);
    }

    /// Encodes the state as snapshot data.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("the state always serialises")
    }

    /// Decodes snapshot data.
    pub fn decode(data: &[u8]) -> Result<Self, bincode::Error> {
        bincode::deserialize(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip() {
        let mut s = KvState::default();
        s.apply(Op::Put {
            key: "a".into(),
            value: b"1".to_vec(),
        });
        s.add_member(4, "127.0.0.1:4".parse().unwrap());
        s.remove_member(2);
        s.applied = 7;
        assert_eq!(KvState::decode(&s.encode()).unwrap(), s);
        assert!(KvState::decode(b"junk").is_err());
    }

    #[test]
    fn later_puts_win() {
        let mut s = KvState::default();
        for v in [b"1", b"2"] {
            s.apply(Op::Put {
                key: "k".into(),
                value: v.to_vec(),
            });
        }
        assert_eq!(s.map["k"], Value::Inline(b"2".to_vec()));
    }
}
