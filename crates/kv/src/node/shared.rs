//! What the raft loop shares with the rest of the node: the applied state (read by `GET`s),
//! the node's view of the cluster (a watch channel), and whether the node may still serve.

use std::net::SocketAddr;
use std::sync::{Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::command::ProposalId;
use crate::error::KvError;
use crate::state::KvState;

/// A node's raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Asks whether it could win an election.
    PreCandidate,
    /// Runs an election.
    Candidate,
    /// Leads.
    Leader,
}

/// A node's view of the cluster after its latest raft step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct View {
    /// The node.
    pub id: u64,
    /// The leader it knows (0: none).
    pub leader: u64,
    /// Its term.
    pub term: u64,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
    /// Its role.
    pub role: Role,
    /// Proposals waiting to be applied.
    pub pending_proposals: usize,
    /// The index of its latest snapshot (made or received).
    pub snapshot_index: u64,
    /// The node refuses requests (removed, or its storage failed).
    pub refused: bool,
}

/// The context of a membership change entry: the new member's address and the proposal.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfContext {
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) id: Option<ProposalId>,
}

impl ConfContext {
    pub(crate) fn encode(&self) -> Vec<u8> {
        bincode::serialize(self).expect("contexts always serialise")
    }

    pub(crate) fn decode(data: &[u8]) -> Result<Self, String> {
        if data.is_empty() {
            return Ok(Self::default());
        }
        bincode::deserialize(data).map_err(|e| format!("bad change context: {e}"))
    }
}

/// State shared between the raft loop (the only writer) and the API.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) id: u64,
    state: RwLock<KvState>,
    view: watch::Sender<View>,
    refusal: Mutex<Option<KvError>>,
}

impl Shared {
    pub(crate) fn new(id: u64, state: KvState) -> Self {
        let view = View {
            id,
            applied: state.applied,
            ..View::default()
        };
        Self {
            id,
            state: RwLock::new(state),
            view: watch::Sender::new(view),
            refusal: Mutex::new(None),
        }
    }

    pub(crate) fn state(&self) -> RwLockReadGuard<'_, KvState> {
        self.state.read().expect("state lock poisoned")
    }

    pub(crate) fn state_mut(&self) -> RwLockWriteGuard<'_, KvState> {
        self.state.write().expect("state lock poisoned")
    }

    pub(crate) fn applied(&self) -> u64 {
        self.state().applied
    }

    pub(crate) fn publish(&self, view: View) {
        self.view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    pub(crate) fn view(&self) -> View {
        *self.view.borrow()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<View> {
        self.view.subscribe()
    }

    /// Why this node refuses requests, if it does (removed, or storage failed).
    pub(crate) fn refusal(&self) -> Option<KvError> {
        self.refusal.lock().expect("refusal lock poisoned").clone()
    }

    pub(crate) fn set_removed(&self) {
        *self.refusal.lock().expect("refusal lock poisoned") = Some(KvError::Removed(self.id));
    }

    pub(crate) fn set_failed(&self, reason: String) {
        *self.refusal.lock().expect("refusal lock poisoned") = Some(KvError::Storage(reason));
    }

    pub(crate) fn is_removed(&self, id: u64) -> bool {
        self.state().removed.contains(&id)
    }
}
