//! The state a raft transport shares between its sending API (`transport.rs`) and its
//! receiving side (`inbound.rs`, `snapshot_recv.rs`): the link, the group table, the peers,
//! and the checks every received message passes. It sits below all three, so none of them
//! imports another.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::groups::{Groups, removed_everywhere};
use super::handler::RaftHandler;
use super::link::Link;
use super::message::RaftMessage;
use super::peer::RaftPeer;
use super::peer_metrics::Received;

/// Why a received message was not given to raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("undecodable raft message: {0}")]
    Undecodable(String),
    #[error("a message from node {claimed} on a lane of node {lane}")]
    Spoofed { claimed: u64, lane: u64 },
    #[error("a message for node {to} reached node {local}")]
    WrongTarget { to: u64, local: u64 },
    #[error("node {0} was removed from the cluster")]
    Removed(u64),
    #[error("node {id} was removed from raft group {group}")]
    RemovedFromGroup { group: u64, id: u64 },
    #[error("raft group {0} is not hosted here")]
    UnknownGroup(u64),
    #[error("{0}")]
    Raft(String),
    #[error("dropped by a test hook")]
    Faulted,
}

impl Refusal {
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::Spoofed { .. } => "spoofed",
            Self::WrongTarget { .. } => "wrong_target",
            Self::Removed(_) => "removed",
            Self::RemovedFromGroup { .. } => "removed_from_group",
            Self::UnknownGroup(_) => "unknown_group",
            Self::Raft(_) => "raft",
            Self::Faulted => "faulted",
        }
    }

    /// Whether the refusal ends the connection (and the rest of its batch).
    pub(crate) fn closes(&self) -> bool {
        matches!(
            self,
            Self::Undecodable(_) | Self::Spoofed { .. } | Self::Removed(_)
        )
    }
}

/// The transport's state, shared with its inbound side.
pub(crate) struct Inner<M, H> {
    pub(crate) link: Arc<Link>,
    /// The raft groups this member hosts, each with its handler.
    pub(crate) groups: Arc<Groups<H>>,
    pub(crate) peers: RwLock<HashMap<u64, Arc<RaftPeer<M>>>>,
    pub(crate) remotes: RwLock<HashMap<u64, Arc<RaftPeer<M>>>>,
    /// What arrived from each member, by lane.
    pub(crate) received: Received,
}

impl<M: RaftMessage, H: RaftHandler<M>> Inner<M, H> {
    /// Checks a message that arrived on a lane from `lane_node` and finds its group's handler
    /// in `groups`. A member removed from every group is refused as a whole (the lane closes);
    /// one removed from this group only, or a group not hosted here, is refused for that
    /// message alone.
    pub(crate) fn check_message(&self, lane_node: u64, msg: &M) -> Result<Arc<H>, Refusal> {
        let from = msg.from();
        if from != lane_node {
            return Err(Refusal::Spoofed {
                claimed: from,
                lane: lane_node,
            });
        }
        let local = self.link.node_id();
        if msg.to() != local {
            return Err(Refusal::WrongTarget {
                to: msg.to(),
                local,
            });
        }
        let group = msg.group();
        let Some(handler) = self.groups.get(group) else {
            return Err(Refusal::UnknownGroup(group));
        };
        if handler.is_id_removed(from) {
            return Err(if removed_everywhere::<M, H>(&self.groups.all(), from) {
                Refusal::Removed(from)
            } else {
                Refusal::RemovedFromGroup { group, id: from }
            });
        }
        if !self.link.faults.incoming(from) {
            return Err(Refusal::Faulted);
        }
        Ok(handler)
    }
}
