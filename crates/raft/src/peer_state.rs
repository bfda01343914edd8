//! What the tasks of one remote member share (etcd's `peerStatus` with its addresses and
//! health): the address picker, active/inactive status, probe results, how many long-lived
//! lanes are up, and the stop signal. It sits below the peer (`peer.rs`) and its lanes
//! (`stream.rs`, `pipeline.rs`, `snapshot_send.rs`, `prober.rs`), so they need not import the
//! peer.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use peerwire_wire::Lane;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::addr_pick::AddrPicker;
use super::link::Link;
use super::peer_metrics::PeerSent;
use super::probe::PeerHealth;
use super::status::PeerStatus;

/// What a peer's tasks share.
#[derive(Debug)]
pub(crate) struct PeerShared {
    pub(crate) id: u64,
    pub(crate) addrs: Mutex<AddrPicker>,
    status: Mutex<PeerStatus>,
    pub(crate) health: Mutex<PeerHealth>,
    /// Long-lived lanes connected now.
    streams_up: AtomicUsize,
    /// Fires when the peer is removed or the transport stops.
    pub(crate) stop: CancellationToken,
    /// What its lanes count: bytes, messages, failures, queue depth.
    pub(crate) sent: PeerSent,
}

impl PeerShared {
    /// The state of member `id` reachable at `addrs`, stopping with `stop`.
    pub(crate) fn new(id: u64, addrs: AddrPicker, stop: CancellationToken) -> Self {
        Self {
            id,
            addrs: Mutex::new(addrs),
            status: Mutex::new(PeerStatus::new()),
            health: Mutex::new(PeerHealth::default()),
            streams_up: AtomicUsize::new(0),
            stop,
            sent: PeerSent::register(id),
        }
    }

    /// The address to dial now.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addrs.lock().expect("addrs poisoned").pick()
    }

    /// Dialing or using `addr` failed: rotate to the next address.
    pub(crate) fn unreachable(&self, addr: SocketAddr) {
        self.addrs.lock().expect("addrs poisoned").unreachable(addr);
    }

    /// A lane works.
    pub(crate) fn activate(&self, lane: Lane) {
        if self
            .status
            .lock()
            .expect("status poisoned")
            .activate(Instant::now())
        {
            tracing::info!(peer = self.id, %lane, "peer became active");
            metrics::gauge!("peerwire_raft_peer_active", "peer" => self.id.to_string()).set(1.0);
        }
    }

    /// A long-lived lane connected: the peer is active at least until it disconnects.
    pub(crate) fn stream_up(&self, lane: Lane) {
        self.streams_up.fetch_add(1, Ordering::AcqRel);
        self.activate(lane);
    }

    /// A long-lived lane's connection ended (call [`PeerShared::deactivate`] after, with why).
    pub(crate) fn stream_down(&self) {
        self.streams_up.fetch_sub(1, Ordering::AcqRel);
    }

    /// A lane failed. While a long-lived lane is still connected the peer stays active: the
    /// failure of a pipeline call, a snapshot or the other stream does not make it
    /// unreachable, and nothing would mark it active again while that lane stays up.
    pub(crate) fn deactivate(&self, lane: Lane, error: impl std::fmt::Display) {
        if self.streams_up.load(Ordering::Acquire) > 0 {
            tracing::debug!(peer = self.id, %lane, %error, "a lane failed; a stream lane is still up");
            return;
        }
        self.set_inactive(lane, error);
    }

    /// A lane's connect or call failed with `error`: as [`PeerShared::deactivate`], unless the
    /// peer refused this node as a removed member (which `link` then records): every lane will
    /// be refused, so the peer is inactive even while another lane is still connected. Returns
    /// whether it was that refusal.
    pub(crate) fn lane_failed(&self, link: &Link, lane: Lane, error: &peerwire::Error) -> bool {
        // The status first: whoever learns of the removal from `link` sees the peer inactive.
        if super::link::is_member_removed(error) {
            self.set_inactive(lane, error);
        } else {
            self.deactivate(lane, error);
        }
        link.check_removed(self.id, error)
    }

    fn set_inactive(&self, lane: Lane, error: impl std::fmt::Display) {
        let error = format!("{lane} lane: {error}");
        if self
            .status
            .lock()
            .expect("status poisoned")
            .deactivate(Instant::now(), error.clone())
        {
            tracing::warn!(peer = self.id, %error, "peer became inactive");
            metrics::gauge!("peerwire_raft_peer_active", "peer" => self.id.to_string()).set(0.0);
        }
    }

    pub(crate) fn status(&self) -> PeerStatus {
        self.status.lock().expect("status poisoned").clone()
    }
}
