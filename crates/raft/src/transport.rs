//! The raft transport (etcd's `Transport`): the peers of one member and the API raft uses.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::time::Instant;

use super::addr_pick::AddrPicker;
use super::config::TransportConfig;
use super::faults::Verdict;
use super::groups::{Groups, GroupsReport};
use super::handler::{RaftHandler, SnapshotStatus};
use super::inbound::RaftInbound;
use super::link::Link;
use super::message::RaftMessage;
use super::peer::RaftPeer;
use super::probe::PeerHealth;
use super::shared::Inner;
use super::snapshot::{Snapshot, SnapshotError, SnapshotProgress};
use super::status::PeerStatus;
use peerwire::error::Error;
use peerwire::mount::{MountPoint, Mountable, Service};
use peerwire_wire::Lane;

/// The raft transport of one member: lanes to every peer, shared by every raft group the
/// member hosts, served on the member's [`Server`](peerwire::Server) port (mounted with
/// [`ServerBuilder::mount_all`](peerwire::ServerBuilder::mount_all)).
///
/// `M` is the raft message type ([`RaftMessage`]), `H` the raft node ([`RaftHandler`]).
pub struct Transport<M, H> {
    inner: Arc<Inner<M, H>>,
    lanes: Arc<RaftInbound<M, H>>,
}

impl<M, H> std::fmt::Debug for Transport<M, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("node", &self.inner.link.node_id())
            .finish_non_exhaustive()
    }
}

impl<M, H> Clone for Transport<M, H> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            lanes: self.lanes.clone(),
        }
    }
}

impl<M: RaftMessage, H: RaftHandler<M>> Transport<M, H> {
    /// Starts a transport for the member `cfg.identity` whose raft side is `handler`, the
    /// transport's group 0. Mount it with
    /// [`ServerBuilder::mount_all`](peerwire::ServerBuilder::mount_all) on a server with the same
    /// identity, then add peers. Must be called within a tokio runtime (an error otherwise);
    /// the transport's tasks run on that runtime whoever calls its other methods.
    pub fn start(cfg: TransportConfig, handler: H) -> Result<Self, Error> {
        let transport = Self::start_multi(cfg)?;
        transport.add_group(0, handler)?;
        Ok(transport)
    }

    /// Starts a transport that hosts no raft group yet: a multi-raft member adds its groups
    /// with [`Transport::add_group`] as it creates them. Every group shares the transport's
    /// lanes to each peer (one set per peer, not per group) and its batches; each message
    /// names its group ([`RaftMessage::group`]; [`raft_rs::GroupMessage`](super::raft_rs::GroupMessage)
    /// for raft-rs).
    pub fn start_multi(cfg: TransportConfig) -> Result<Self, Error> {
        let groups = Arc::new(Groups::default());
        let report = Arc::new(GroupsReport::<M, H> {
            groups: groups.clone(),
            _message: PhantomData,
        });
        let inner = Arc::new(Inner {
            link: Arc::new(Link::new(cfg, report)?),
            groups,
            peers: RwLock::new(HashMap::new()),
            remotes: RwLock::new(HashMap::new()),
            received: Default::default(),
        });
        let lanes = Arc::new(RaftInbound::new(inner.clone()));
        Ok(Self { inner, lanes })
    }

    /// The raft side of group 0 (the handler a single-group transport was started with).
    ///
    /// # Panics
    ///
    /// If the transport hosts no group 0 (see [`Transport::group`]).
    pub fn handler(&self) -> Arc<H> {
        self.group(0)
            .expect("this transport hosts no raft group 0 (use Transport::group)")
    }

    /// The raft side of `group`, if this member hosts it.
    pub fn group(&self, group: u64) -> Option<Arc<H>> {
        self.inner.groups.get(group)
    }

    /// The groups this member hosts, ascending.
    pub fn groups(&self) -> Vec<u64> {
        self.inner.groups.ids()
    }

    /// Hosts raft group `group`, whose raft side is `handler`: messages for it are handed to
    /// `handler`, and drops, unreachable peers and snapshot outcomes of its messages are
    /// reported to it. Lanes and peers are the transport's, shared with every other group.
    /// An error if the group is hosted already.
    pub fn add_group(&self, group: u64, handler: H) -> Result<(), Error> {
        if !self.inner.groups.insert(group, Arc::new(handler)) {
            return Err(Error::Config(format!(
                "node {} hosts raft group {group} already",
                self.inner.link.node_id()
            )));
        }
        tracing::debug!(node = self.inner.link.node_id(), group, "raft group added");
        Ok(())
    }

    /// Stops hosting `group` and returns its raft side. Messages for it are refused from now
    /// on, for that group alone: the lanes and every other group's traffic go on.
    pub fn remove_group(&self, group: u64) -> Option<Arc<H>> {
        let removed = self.inner.groups.remove(group);
        if removed.is_some() {
            tracing::debug!(
                node = self.inner.link.node_id(),
                group,
                "raft group removed"
            );
        }
        removed
    }

    /// Adds member `id` reachable at `addrs` (tried in order, rotating on failure) and starts
    /// its lanes. Adding a known peer changes nothing; an empty address list is an error.
    pub fn add_peer(&self, id: u64, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        self.add(id, addrs, false)
    }

    /// Adds a *remote* (etcd's `AddRemote`): a member that is not (yet) a peer but that this
    /// member must reach, for example a new member catching up. Only the pipeline is used.
    /// Ignored if `id` is already a peer or remote.
    pub fn add_remote(&self, id: u64, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        if self
            .inner
            .peers
            .read()
            .expect("peers poisoned")
            .contains_key(&id)
        {
            return Ok(());
        }
        self.add(id, addrs, true)
    }

    fn add(&self, id: u64, addrs: Vec<SocketAddr>, remote: bool) -> Result<(), Error> {
        if id == self.inner.link.node_id() || id == 0 {
            return Err(Error::Config(format!("{id} cannot be a peer of node {id}")));
        }
        let picker = AddrPicker::new(addrs)
            .ok_or_else(|| Error::Config(format!("peer {id} needs at least one address")))?;
        let map = if remote {
            &self.inner.remotes
        } else {
            &self.inner.peers
        };
        let mut map = map.write().expect("peers poisoned");
        if map.contains_key(&id) {
            return Ok(());
        }
        map.insert(
            id,
            Arc::new(RaftPeer::start(&self.inner.link, id, picker, remote)),
        );
        if !remote {
            drop(map);
            // A member that became a peer no longer needs its remote.
            if let Some(r) = self
                .inner
                .remotes
                .write()
                .expect("peers poisoned")
                .remove(&id)
            {
                r.stop();
            }
        }
        tracing::info!(node = self.inner.link.node_id(), peer = id, remote, "added");
        Ok(())
    }

    /// Removes member `id` and stops its lanes (a snapshot in flight to it fails).
    pub fn remove_peer(&self, id: u64) {
        let removed = self
            .inner
            .peers
            .write()
            .expect("peers poisoned")
            .remove(&id);
        if let Some(p) = removed {
            p.stop();
            tracing::info!(node = self.inner.link.node_id(), peer = id, "removed");
        }
    }

    /// Removes every peer and remote.
    pub fn remove_all_peers(&self) {
        for map in [&self.inner.peers, &self.inner.remotes] {
            for (_, p) in map.write().expect("peers poisoned").drain() {
                p.stop();
            }
        }
    }

    /// Replaces the addresses of member `id` (its lanes move on their next dial).
    pub fn update_peer(&self, id: u64, addrs: Vec<SocketAddr>) -> Result<(), Error> {
        let peers = self.inner.peers.read().expect("peers poisoned");
        let Some(p) = peers.get(&id) else {
            return Err(Error::Config(format!("unknown peer {id}")));
        };
        if !p.state.addrs.lock().expect("addrs poisoned").update(addrs) {
            return Err(Error::Config(format!(
                "peer {id} needs at least one address"
            )));
        }
        Ok(())
    }

    fn peer(&self, id: u64) -> Option<Arc<RaftPeer<M>>> {
        if let Some(p) = self.inner.peers.read().expect("peers poisoned").get(&id) {
            return Some(p.clone());
        }
        self.inner
            .remotes
            .read()
            .expect("peers poisoned")
            .get(&id)
            .cloned()
    }

    /// Sends raft's messages, each to its `to`. Never blocks: a message whose lane is full is
    /// dropped, counted (`peerwire_raft_messages_dropped_total`) and reported to raft
    /// (`report_unreachable`; `report_snapshot(Failure)` for snapshots). Messages to unknown
    /// members and messages with `to` = 0 are ignored.
    pub fn send(&self, msgs: impl IntoIterator<Item = M>) {
        let link = &self.inner.link;
        for msg in msgs {
            let to = msg.to();
            if to == 0 || link.is_removed() {
                continue;
            }
            let Some(peer) = self.peer(to) else {
                metrics::counter!("peerwire_raft_messages_dropped_total", "peer" => to.to_string(), "lane" => "none", "reason" => "unknown_peer")
                    .increment(1);
                tracing::debug!(to, "message to an unknown peer ignored");
                continue;
            };
            match link.faults.outgoing(to, msg.kind()) {
                Verdict::Pass => peer.send(link, msg),
                Verdict::Drop => {
                    if msg.kind() == super::MessageKind::Snapshot {
                        link.report
                            .snapshot(msg.group(), to, SnapshotStatus::Failure);
                    }
                }
                Verdict::Delay(d) => {
                    let link = link.clone();
                    link.clone().spawn(async move {
                        tokio::time::sleep(d).await;
                        peer.send(&link, msg);
                    });
                }
            }
        }
    }

    /// Streams `snapshot` to its member on the snapshot lane, in chunks, and reports the
    /// outcome to raft (`report_snapshot`). Returns at once; the handle tells progress and
    /// outcome.
    pub fn send_snapshot(&self, snapshot: Snapshot<M>) -> SnapshotProgress {
        let to = snapshot.to();
        match self.peer(to) {
            Some(peer) => peer.send_snapshot(&self.inner.link, snapshot),
            None => {
                let p = SnapshotProgress::new(to, snapshot.size());
                self.inner
                    .link
                    .report
                    .snapshot(snapshot.group(), to, SnapshotStatus::Failure);
                p.finish(Err(SnapshotError::UnknownPeer(to)));
                p
            }
        }
    }

    /// When member `id` became active (a lane to it works), if it is.
    pub fn active_since(&self, id: u64) -> Option<Instant> {
        self.peer(id)?.active_since()
    }

    /// Which long-lived lanes to member `id` are connected (both down for a remote).
    pub fn lanes_up(&self, id: u64) -> Option<super::LanesUp> {
        Some(self.peer(id)?.lanes_up())
    }

    /// The peers that are active now.
    pub fn active_peers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .inner
            .peers
            .read()
            .expect("peers poisoned")
            .iter()
            .filter(|(_, p)| p.active_since().is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The status of member `id`: active or inactive, since when, and the last error.
    pub fn peer_status(&self, id: u64) -> Option<PeerStatus> {
        Some(self.peer(id)?.status())
    }

    /// What probing member `id` measured: round trip and clock drift.
    pub fn peer_health(&self, id: u64) -> Option<PeerHealth> {
        let peer = self.peer(id)?;
        let health = *peer.state.health.lock().expect("health poisoned");
        Some(health)
    }

    /// Whether a peer refused this member as removed from the cluster.
    pub fn is_removed(&self) -> bool {
        self.inner.link.is_removed()
    }

    /// Stops every lane and waits for the transport's tasks to end. Messages still queued are
    /// dropped; snapshots in flight fail.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: the lanes keep stopping in the background.
    pub async fn stop(&self) {
        let link = &self.inner.link;
        link.stop.cancel();
        self.remove_all_peers();
        link.shutdown_clients().await;
        link.tasks.close();
        link.tasks.wait().await;
    }

    /// Fault injection for tests.
    #[cfg(feature = "testing")]
    pub fn faults(&self) -> super::Faults<'_> {
        super::Faults {
            table: &self.inner.link.faults,
        }
    }
}

/// The four raft lanes, in the order they are mounted.
const RAFT_LANES: [Lane; 4] = [
    Lane::RaftAppend,
    Lane::RaftMessage,
    Lane::RaftPipeline,
    Lane::RaftSnapshot,
];

impl<M: RaftMessage, H: RaftHandler<M>> Mountable for Transport<M, H> {
    /// The append, message, pipeline and snapshot lanes (default group), all served by this
    /// transport.
    fn mounts(&self) -> Vec<(MountPoint, Arc<dyn Service>)> {
        RAFT_LANES
            .iter()
            .map(|&lane| {
                (
                    MountPoint::lane(lane),
                    self.lanes.clone() as Arc<dyn Service>,
                )
            })
            .collect()
    }

    fn identity(&self) -> Option<peerwire::config::Identity> {
        Some(self.inner.link.cfg.identity)
    }
}
