//! The raft transport (etcd's rafthttp): raft messages between the members of a cluster over
//! per-peer lanes — a long-lived append lane for log replication, a long-lived message lane for
//! everything else (heartbeats, votes), a pipeline fallback while those are down, and a
//! snapshot lane that streams snapshots in chunks.
//!
//! This module holds the transport's pure parts, each in the file named after it:
//!
//! | etcd rafthttp | peerwire |
//! |---|---|
//! | `raftpb.Message` types, `isMsgApp`, `isMsgSnap` | [`RaftMessage`], [`MessageKind`] (`message.rs`) |
//! | `peer.pick` | [`pick`], [`LaneChoice`] (`pick.rs`) |
//! | `peerStatus` (active, since, last error) | [`PeerStatus`] (`status.rs`) |
//! | `urlPicker` | [`AddrPicker`] (`addr_pick.rs`) |
//! | raft-rs `eraftpb::Message` | `raft_rs.rs` (feature `raft-rs`, on by default) |

mod addr_pick;
mod message;
mod pick;
#[cfg(feature = "raft-rs")]
pub mod raft_rs;
mod status;

pub use addr_pick::AddrPicker;
pub use message::{MessageKind, RaftMessage};
pub use pick::{LaneChoice, LanesUp, pick};
pub use status::{PeerState, PeerStatus};
