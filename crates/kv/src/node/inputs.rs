//! The raft side of the node's transport: hands messages and reports to the raft loop through
//! a bounded channel and never blocks (a full channel drops the message; raft resends).

use std::sync::Arc;

use peerwire_raft::{ProcessError, RaftHandler, SnapshotStatus};
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use super::raft_loop::PeerInput;
use super::shared::Shared;

/// What the node's [`Transport`](peerwire_raft::Transport) calls.
#[derive(Debug)]
pub struct Inputs {
    pub(crate) tx: mpsc::Sender<PeerInput>,
    pub(crate) shared: Arc<Shared>,
}

impl RaftHandler<Message> for Inputs {
    fn process(&self, msg: Message) -> Result<(), ProcessError> {
        self.tx.try_send(PeerInput::Message(msg)).map_err(|e| {
            metrics::counter!("peerwire_kv_inbound_dropped_total").increment(1);
            ProcessError(format!("the raft loop is not taking messages: {e}"))
        })
    }

    fn is_id_removed(&self, id: u64) -> bool {
        self.shared.is_removed(id)
    }

    fn report_unreachable(&self, id: u64) {
        let _ = self.tx.try_send(PeerInput::Unreachable(id));
    }

    fn report_snapshot(&self, id: u64, status: SnapshotStatus) {
        let _ = self.tx.try_send(PeerInput::Snapshot(id, status));
    }

    fn removed_from_cluster(&self, by: u64) {
        tracing::warn!(
            node = self.shared.id,
            by,
            "this node was removed from the cluster"
        );
        self.shared.set_removed();
    }
}
