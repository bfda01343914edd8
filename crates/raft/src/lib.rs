//! The raft transport (etcd's rafthttp): raft messages between the members of a cluster over
//! per-peer lanes — a long-lived append lane for log replication, a long-lived message lane for
//! everything else (heartbeats, votes), a pipeline fallback while those are down, and a
//! snapshot lane that streams snapshots in chunks — all on the member's one server port.
//!
//! ```text
//!  raft ──send(msgs)──▶ Transport ──pick(kind, lanes up)──▶ append lane   ─┐
//!                                                        ├▶ message lane  ─┤ one port,
//!                                                        ├▶ pipeline      ─┤ one connection
//!                                                        └▶ snapshot lane ─┘ per lane
//!  peer's server ──RaftInbound──▶ checks (from, to, removed) ──▶ RaftHandler::process
//! ```
//!
//! | etcd rafthttp | peerwire |
//! |---|---|
//! | `Transport` | [`Transport`] (`transport.rs`) |
//! | `Raft` interface | [`RaftHandler`] (`handler.rs`) |
//! | `raftpb.Message` types, `isMsgApp`, `isMsgSnap` | [`RaftMessage`], [`MessageKind`] (`message.rs`) |
//! | `peer`, `peer.pick` | `peer.rs`, [`pick`] (`pick.rs`) |
//! | `streamWriter` (msgappv2 and message streams) | `stream.rs`, batches in `batch.rs` |
//! | `streamReader`, `pipelineHandler` | `inbound.rs` |
//! | `pipeline` | `pipeline.rs` |
//! | `snapshotSender`, `snapshotHandler` | `snapshot_send.rs`, `snapshot_recv.rs`, [`Snapshot`] |
//! | `peerStatus` | [`PeerStatus`] (`status.rs`) |
//! | `urlPicker` | [`AddrPicker`] (`addr_pick.rs`) |
//! | prober, `probing_status` | `prober.rs`, [`PeerHealth`] (`probe.rs`) |
//! | 410 Gone for removed members | [`GoAwayReason::MemberRemoved`](peerwire::GoAwayReason) in the handshake |
//! | `Pause`/`Resume`, functional-test faults | `Faults` (feature `testing`, `faults.rs`) |
//! | raft-rs `eraftpb::Message` | `raft_rs.rs` (feature `raft-rs`, on by default) |

mod addr_pick;
pub mod batch;
mod bulk;
mod config;
mod faults;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod groups;
mod handler;
mod inbound;
mod link;
mod message;
mod peer;
mod peer_metrics;
mod peer_state;
mod pick;
mod pipeline;
mod probe;
mod prober;
#[cfg(feature = "raft-rs")]
pub mod raft_rs;
mod shared;
mod snapshot;
mod snapshot_recv;
mod snapshot_send;
mod status;
mod stream;
mod transport;

pub use addr_pick::AddrPicker;
pub use batch::BatchError;
pub use config::{RAFT_MAX_MESSAGE_BYTES, TransportConfig};
pub use handler::{ProcessError, RaftHandler, SnapshotStatus};
pub use message::{MessageKind, RaftMessage};
pub use pick::{LaneChoice, LanesUp, pick};
pub use probe::{CLOCK_DRIFT_WARN, PeerHealth};
pub use snapshot::{Snapshot, SnapshotData, SnapshotError, SnapshotProgress};
pub use status::{PeerState, PeerStatus};
pub use transport::Transport;

/// Fault injection on one transport (feature `testing`): what etcd's tests do with `Pause`,
/// `Resume` and its network-fault tester.
#[cfg(feature = "testing")]
#[derive(Debug)]
pub struct Faults<'a> {
    table: &'a faults::FaultTable,
}

#[cfg(feature = "testing")]
impl Faults<'_> {
    /// Cuts the link to `peer`: nothing is sent to or accepted from it, and its lanes close
    /// and stay down until [`Faults::mend`].
    pub fn cut(&self, peer: u64) {
        self.table.cut(peer);
    }

    /// Undoes [`Faults::cut`] and [`Faults::pause`] for `peer`.
    pub fn mend(&self, peer: u64) {
        self.table.mend(peer);
    }

    /// Breaks (or, with `false`, restores) the long-lived append and message lanes to `peer`
    /// and keeps them down, so messages take the pipeline.
    pub fn break_streams(&self, peer: u64, on: bool) {
        self.table.break_streams(peer, on);
    }

    /// Drops every message to and from `peer` while keeping its lanes connected (etcd's
    /// `Pause`).
    pub fn pause(&self, peer: u64) {
        self.table.pause(peer);
    }

    /// Drops (or, with `false`, stops dropping) every outgoing message of `kind`.
    pub fn drop_kind(&self, kind: MessageKind, on: bool) {
        self.table.drop_kind(kind, on);
    }

    /// Delays every outgoing message of `kind` by `delay` (`None` to stop).
    pub fn delay_kind(&self, kind: MessageKind, delay: Option<std::time::Duration>) {
        self.table.delay_kind(kind, delay);
    }
}
