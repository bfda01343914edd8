//! What a raft entry of peerwire-kv carries: a [`Command`] with the id of its proposal, encoded
//! with bincode. Pure encoding and the request limits, no IO.

use serde::{Deserialize, Serialize};

use crate::error::KvError;

/// The longest key, in bytes. Keys travel in URL paths and in every entry; etcd's gRPC API
/// allows more, raftexample sets no limit, and 1 KiB keeps a path well within what HTTP
/// servers and proxies accept.
pub const MAX_KEY_BYTES: usize = 1024;

/// The largest inline value, in bytes: larger values go through `/blob/{key}` (the data
/// stream) and the log carries only a reference. etcd refuses requests over 1.5 MiB by
/// default; 1 MiB keeps one entry well inside a 1 MiB-per-message append.
pub const DEFAULT_INLINE_MAX: usize = 1 << 20;

/// Checks a key against [`MAX_KEY_BYTES`].
pub fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::BadKey {
            len: key.len(),
            max: MAX_KEY_BYTES,
        });
    }
    Ok(())
}

/// Which proposal an entry came from: the node that proposed it and that node's sequence
/// number, so the proposer can answer its caller when the entry is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProposalId {
    /// The proposing node.
    pub node: u64,
    /// Its sequence number (unique per node run, with a random start).
    pub seq: u64,
}

/// A value stored through the data stream: the log carries this reference, the bytes live in
/// each replica's blob directory under their SHA-256 (content-addressed, so two keys holding
/// the same bytes share one file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Its SHA-256 as 64 lowercase hex digits: also its file name on every replica.
    pub sha256: String,
    /// Its length.
    pub size: u64,
    /// The data stream that carried it (client id, stream id): each replica on its route
    /// links the stream's file when it applies the entry.
    pub stream: (u64, u64),
    /// The nodes that acknowledged every byte; the others fetch it from them.
    pub replicas: Vec<u64>,
}

impl BlobRef {
    /// The data stream that carried the blob.
    pub fn stream_ref(&self) -> peerwire_datastream::StreamRef {
        peerwire_datastream::StreamRef {
            client_id: self.stream.0,
            stream_id: self.stream.1,
        }
    }
}

/// Checks that `sha256` is 64 lowercase hex digits (it names a file, so nothing else may
/// pass).
pub fn check_sha256(sha256: &str) -> Result<(), KvError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(KvError::Blob(format!(
            "`{}` is not a SHA-256 (64 lowercase hex digits)",
            sha256.escape_debug()
        )))
    }
}

/// Hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An operation on the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Sets `key` to an inline value.
    Put {
        /// The key.
        key: String,
        /// The value (as bytes, not a sequence of numbers: one copy to decode).
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Sets `key` to a blob already on the replicas.
    PutBlob {
        /// The key.
        key: String,
        /// The blob.
        blob: BlobRef,
    },
}

impl Op {
    /// The key the operation sets.
    pub fn key(&self) -> &str {
        match self {
            Self::Put { key, .. } | Self::PutBlob { key, .. } => key,
        }
    }
}

/// One normal raft entry of peerwire-kv.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The proposal it came from.
    pub id: ProposalId,
    /// What to do.
    pub op: Op,
}

impl Command {
    /// Encodes the command as entry data.
    pub fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("commands always serialise")
    }

    /// Decodes entry data.
    pub fn decode(data: &[u8]) -> Result<Self, bincode::Error> {
        bincode::deserialize(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding before values were marked as bytes (logs and snapshots written by it are
    /// read by today's code, and the other way round).
    #[derive(Serialize)]
    enum PlainOp {
        Put { key: String, value: Vec<u8> },
    }

    #[test]
    fn values_as_bytes_encode_as_the_plain_sequence_did() {
        let value = vec![0u8, 1, 255, 7];
        let now = Op::Put {
            key: "k".into(),
            value: value.clone(),
        };
        let before = PlainOp::Put {
            key: "k".into(),
            value,
        };
        let now_bytes = bincode::serialize(&now).unwrap();
        assert_eq!(now_bytes, bincode::serialize(&before).unwrap());
        use bincode::Options;
        let varint = bincode::DefaultOptions::new();
        assert_eq!(
            varint.serialize(&now).unwrap(),
            varint.serialize(&before).unwrap()
        );
        let inline = crate::state::Value::Inline(vec![9; 300]);
        #[derive(Serialize)]
        enum PlainValue {
            Inline(Vec<u8>),
        }
        assert_eq!(
            bincode::serialize(&inline).unwrap(),
            bincode::serialize(&PlainValue::Inline(vec![9; 300])).unwrap()
        );
    }

    #[test]
    fn commands_round_trip() {
        let c = Command {
            id: ProposalId { node: 2, seq: 9 },
            op: Op::Put {
                key: "k".into(),
                value: b"v".to_vec(),
            },
        };
        assert_eq!(Command::decode(&c.encode()).unwrap(), c);
        assert!(Command::decode(b"\xff").is_err());
    }

    #[test]
    fn keys_are_checked() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"x".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(matches!(check_key(""), Err(KvError::BadKey { len: 0, .. })));
        assert!(check_key(&"x".repeat(MAX_KEY_BYTES + 1)).is_err());
    }

    #[test]
    fn only_hex_digests_name_blob_files() {
        let good = hex(&[0xab; 32]);
        assert_eq!(good.len(), 64);
        assert!(check_sha256(&good).is_ok());
        for bad in [
            String::new(),
            "../".repeat(21) + "x",
            good.to_uppercase(),
            good[..63].to_string(),
            format!("{good}0"),
        ] {
            assert!(check_sha256(&bad).is_err(), "{bad}");
        }
    }
}
