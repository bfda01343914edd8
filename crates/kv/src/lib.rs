//! peerwire-kv: a replicated key-value store — etcd's raftexample done as a service — on
//! raft-rs and the peerwire raft transport, with its raft log in redb.
//!
//! | raftexample | peerwire-kv |
//! |---|---|
//! | `raftNode` (raft.go) | [`node`]: the raft loop, [`Node`] |
//! | `wal`, `raft.MemoryStorage`, `snap` | [`log_store`] (redb, fsync per `Ready`), [`storage`] |
//! | `kvstore` (kvstore.go) | [`state`]: the map, applied in log order; [`command`]: entries |
//! | `httpKVAPI` (httpapi.go) | [`http`] (axum) |
//! | `rafthttp.Transport` | `peerwire_raft::Transport` |
//! | (none) | [`service`]: native protocol and leader forwarding; [`client`]: native client |

pub mod audit;
mod blobs;
pub mod client;
pub mod cluster;
pub mod command;
pub mod error;
pub mod http;
pub mod log_store;
pub mod metrics;
pub mod node;
pub mod service;
mod snapshot_file;
pub mod state;
pub mod status_table;
pub mod storage;

pub use client::KvClient;
pub use error::{KvError, StartError};
pub use node::{KvHandle, Node, NodeConfig};
