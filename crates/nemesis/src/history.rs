//! The history of a run: every operation a client invoked, with its invoke and complete times
//! and its outcome, kept as one JSON object per line.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect (a write) or returned a value (a read).
    Ok,
    /// It certainly did not take effect (the node said so, or it was never sent).
    Failed,
    /// It may or may not have taken effect (a timeout, a broken connection).
    Unknown,
}

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// Set the key to `value`.
    Write,
    /// A linearizable read; `value` is what it returned (`None`: no such key).
    Read,
}

/// Which interface the client used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// raftexample's HTTP API.
    Http,
    /// The native client (`KvClient`).
    Native,
}

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client that ran it (`u32::MAX`: the harness's final reads).
    pub client: u32,
    /// The interface.
    pub api: Api,
    /// The node it was sent to.
    pub node: u8,
    /// The key.
    pub key: String,
    /// Write or read.
    pub kind: OpKind,
    /// The value written, or the value read (`None` for a read of a missing key, or a read
    /// that did not return).
    pub value: Option<String>,
    /// When it was invoked (nanoseconds since the run began, one monotonic clock).
    pub invoke_ns: u64,
    /// When its answer came (or the client gave up).
    pub complete_ns: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The error, if it failed or its outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The client id of the harness's final reads.
pub const FINAL_CLIENT: u32 = u32::MAX;

/// Writes `ops` to `path`, one JSON object per line.
pub fn save(path: &Path, ops: &[Op]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads a history [`save`] wrote.
pub fn load(path: &Path) -> std::io::Result<Vec<Op>> {
    let file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut ops = Vec::new();
    for (n, line) in file.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), n + 1),
            )
        })?;
        ops.push(op);
    }
    Ok(ops)
}
