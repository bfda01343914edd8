//! The raft groups one transport carries (TiKV's regions, Ratis's divisions): a handler per
//! group id. Every message names its group ([`RaftMessage::group`]); the lanes between two
//! members are shared by all groups, and this table sends what arrives, and every report, to
//! the group it belongs to.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use super::handler::{RaftHandler, SnapshotStatus};
use super::link::Report;
use super::message::RaftMessage;

/// The handlers of the groups a transport hosts, by group id.
pub(crate) struct Groups<H> {
    map: RwLock<HashMap<u64, Arc<H>>>,
}

impl<H> Default for Groups<H> {
    fn default() -> Self {
        Self {
            map: RwLock::new(HashMap::new()),
        }
    }
}

impl<H> Groups<H> {
    /// Adds `group`; `false` if it is hosted already.
    pub(crate) fn insert(&self, group: u64, handler: Arc<H>) -> bool {
        let mut map = self.map.write().expect("groups poisoned");
        if map.contains_key(&group) {
            return false;
        }
        map.insert(group, handler);
        true
    }

    /// Removes `group`, returning its handler.
    pub(crate) fn remove(&self, group: u64) -> Option<Arc<H>> {
        self.map.write().expect("groups poisoned").remove(&group)
    }

    /// The handler of `group`. The lock is held only for the lookup: handlers run without
    /// it, so a handler may add or remove groups (a split creating one).
    pub(crate) fn get(&self, group: u64) -> Option<Arc<H>> {
        self.map
            .read()
            .expect("groups poisoned")
            .get(&group)
            .cloned()
    }

    /// The ids of the hosted groups, ascending.
    pub(crate) fn ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .map
            .read()
            .expect("groups poisoned")
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Every hosted group's handler.
    pub(crate) fn all(&self) -> Vec<Arc<H>> {
        self.map
            .read()
            .expect("groups poisoned")
            .values()
            .cloned()
            .collect()
    }
}

/// Whether `id` counts as removed by every group in `handlers` (and there is at least one):
/// only then may a shared lane refuse it as a whole.
pub(crate) fn removed_everywhere<M: RaftMessage, H: RaftHandler<M>>(
    handlers: &[Arc<H>],
    id: u64,
) -> bool {
    !handlers.is_empty() && handlers.iter().all(|h| h.is_id_removed(id))
}

/// [`Report`] to the handler of each report's group.
pub(crate) struct GroupsReport<M, H> {
    pub(crate) groups: Arc<Groups<H>>,
    pub(crate) _message: PhantomData<fn() -> M>,
}

impl<M: RaftMessage, H: RaftHandler<M>> Report for GroupsReport<M, H> {
    fn unreachable(&self, group: u64, id: u64) {
        match self.groups.get(group) {
            Some(handler) => handler.report_unreachable(id),
            None => {
                metrics::counter!("peerwire_raft_reports_dropped_total", "reason" => "unknown_group")
                    .increment(1);
            }
        }
    }

    fn snapshot(&self, group: u64, id: u64, status: SnapshotStatus) {
        match self.groups.get(group) {
            Some(handler) => handler.report_snapshot(id, status),
            None => {
                metrics::counter!("peerwire_raft_reports_dropped_total", "reason" => "unknown_group")
                    .increment(1);
            }
        }
    }

    fn removed(&self, by: u64) {
        for handler in self.groups.all() {
            handler.removed_from_cluster(by);
        }
    }
}
