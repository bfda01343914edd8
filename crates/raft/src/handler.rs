//! The raft side of the transport (etcd's `Raft` interface): what the transport calls when a
//! message arrives, when a peer cannot be reached, and when a snapshot was sent or received.

use std::future::Future;

use super::message::RaftMessage;
use super::snapshot::{SnapshotData, SnapshotError};

/// How sending a snapshot ended, as raft needs to know (raft-rs `SnapshotStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The follower received the whole snapshot and raft processed its message.
    Finish,
    /// The snapshot did not get through; raft should try again later.
    Failure,
}

/// The raft node refused a message (for example because it is stopping).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("raft refused the message: {0}")]
pub struct ProcessError(pub String);

/// The raft node behind a [`Transport`](super::Transport). Every method is called from the
/// transport's tasks and must not block: hand the work to the raft loop (a channel) and return.
pub trait RaftHandler<M: RaftMessage>: Send + Sync + 'static {
    /// A message for this node arrived.
    fn process(&self, msg: M) -> Result<(), ProcessError>;

    /// Whether `id` was removed from the cluster: its lanes are refused with
    /// [`GoAwayReason::MemberRemoved`](peerwire::GoAwayReason::MemberRemoved).
    fn is_id_removed(&self, id: u64) -> bool;

    /// A message to `id` could not be sent (lane queue full, peer unreachable): raft should
    /// slow down replication to it (raft-rs `report_unreachable`).
    fn report_unreachable(&self, id: u64);

    /// How sending a snapshot to `id` ended (raft-rs `report_snapshot`).
    fn report_snapshot(&self, id: u64, status: SnapshotStatus);

    /// A snapshot arrived: `msg` is its message without the data, `data` streams the data.
    ///
    /// The default collects the data in memory (up to `u32::MAX` bytes), puts it back into the
    /// message ([`RaftMessage::set_snapshot_data`]) and [processes](RaftHandler::process) it.
    /// Override it to stream the data to disk instead. The sender is told `Finish` only when
    /// this returns `Ok`.
    ///
    /// # Cancel safety
    ///
    /// The transport drives the future to completion unless the connection breaks, in which
    /// case `data` reports [`SnapshotError::Interrupted`].
    fn receive_snapshot(
        &self,
        mut msg: M,
        data: SnapshotData,
    ) -> impl Future<Output = Result<(), SnapshotError>> + Send {
        async move {
            let bytes = data.collect(u32::MAX as u64).await?;
            msg.set_snapshot_data(bytes);
            self.process(msg).map_err(|e| SnapshotError::Refused(e.0))
        }
    }

    /// A peer refused this node because the cluster removed it (etcd's 410 Gone). The
    /// transport stops sending; the node should stop. Default: nothing.
    fn removed_from_cluster(&self, by: u64) {
        let _ = by;
    }
}
