//! The replicated state machine: the map, the members' addresses and the removed members, as
//! of an applied index. Pure: applying entries and encoding snapshots, no IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::command::{BlobRef, Op};

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Held in the map itself.
    Inline(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Held in the blob directory of each replica.
    Blob(BlobRef),
}

/// The state every member reaches by applying the log in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    /// The map: a persistent (structurally shared) ordered map, so the raft loop copies it for
    /// a snapshot in O(1) and the copy is encoded on another thread while writes go on.
    pub map: imbl::OrdMap<String, Value>,
    /// Where each member serves peerwire (raft, data stream, native clients).
    pub members: BTreeMap<u64, SocketAddr>,
    /// Members removed from the cluster; they may not rejoin under the same id.
    pub removed: BTreeSet<u64>,
    /// The index of the last entry applied.
    pub applied: u64,
    /// How many keys hold each blob (by SHA-256): derived from `map`, rebuilt on decode.
    #[serde(skip)]
    blob_refs: HashMap<String, usize>,
}

impl KvState {
    /// Applies one operation. Returns the SHA-256 of a blob no key holds any more (its files
    /// may go).
    pub fn apply(&mut self, op: Op) -> Option<String> {
        let (key, value) = match op {
            Op::Put { key, value } => (key, Value::Inline(value)),
            Op::PutBlob { key, blob } => {
                *self.blob_refs.entry(blob.sha256.clone()).or_default() += 1;
                (key, Value::Blob(blob))
            }
        };
        match self.map.insert(key, value) {
            Some(Value::Blob(old)) => self.release(&old.sha256),
            _ => None,
        }
    }

    fn release(&mut self, sha256: &str) -> Option<String> {
        let count = self.blob_refs.get_mut(sha256)?;
        *count -= 1;
        if *count > 0 {
            return None;
        }
        self.blob_refs.remove(sha256);
        Some(sha256.to_owned())
    }

    /// Whether some key holds the blob `sha256`.
    pub fn holds_blob(&self, sha256: &str) -> bool {
        self.blob_refs.contains_key(sha256)
    }

    /// One reference to each blob some key holds.
    pub fn blobs(&self) -> Vec<BlobRef> {
        let mut seen = BTreeSet::new();
        self.map
            .values()
            .filter_map(|v| match v {
                Value::Blob(b) if seen.insert(b.sha256.as_str()) => Some(b.clone()),
                _ => None,
            })
            .collect()
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
        let mut state: Self = bincode::deserialize(data)?;
        for v in state.map.values() {
            if let Value::Blob(b) = v {
                *state.blob_refs.entry(b.sha256.clone()).or_default() += 1;
            }
        }
        Ok(state)
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

    fn blob(sha: char) -> Op {
        Op::PutBlob {
            key: String::new(),
            blob: BlobRef {
                sha256: sha.to_string().repeat(64),
                size: 1,
                stream: (1, 1),
                replicas: vec![1],
            },
        }
    }

    fn at(key: &str, op: Op) -> Op {
        match op {
            Op::PutBlob { blob, .. } => Op::PutBlob {
                key: key.into(),
                blob,
            },
            other => other,
        }
    }

    #[test]
    fn a_blob_is_released_when_no_key_holds_it() {
        let a = "a".repeat(64);
        let mut s = KvState::default();
        assert_eq!(s.apply(at("x", blob('a'))), None);
        assert_eq!(s.apply(at("y", blob('a'))), None);
        assert!(s.holds_blob(&a));
        assert_eq!(s.blobs().len(), 1, "shared blobs are listed once");
        // Overwriting one holder keeps it; a snapshot round trip keeps the counts.
        assert_eq!(s.apply(at("x", blob('b'))), None);
        let mut s = KvState::decode(&s.encode()).unwrap();
        assert!(s.holds_blob(&a));
        let released = s.apply(Op::Put {
            key: "y".into(),
            value: vec![],
        });
        assert_eq!(released, Some(a.clone()));
        assert!(!s.holds_blob(&a));
        assert_eq!(s.apply(at("x", blob('b'))), None, "same blob again");
        assert_eq!(s.blobs().len(), 1);
    }
}
