//! Connections per peer: a fixed set of slots, each holding at most one connection, chosen
//! by hash key (Ratis's `ProxiesPool`) or round robin (Spark's connections per peer).
//! Slots connect lazily and, after failures, wait out an exponential backoff with jitter.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::ClientInner;
use super::backoff;
use crate::connection::Connection;
use crate::error::ConnectError;

/// A peer to call: its address and, optionally, the node id expected there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// Transport address.
    pub addr: SocketAddr,
    /// The node expected at `addr` (0 = any). A different node refuses the handshake.
    pub node_id: u64,
}

impl Peer {
    /// The node `node_id` at `addr`.
    pub fn new(addr: SocketAddr, node_id: u64) -> Self {
        Self { addr, node_id }
    }
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Self { addr, node_id: 0 }
    }
}

/// Picks the slot for a call: by hash key when given, else round robin.
pub(crate) fn pick_slot(slots: usize, hash_key: Option<u64>, round_robin: &AtomicUsize) -> usize {
    match hash_key {
        Some(key) => (key % slots as u64) as usize,
        None if slots == 1 => 0,
        None => round_robin.fetch_add(1, Ordering::Relaxed) % slots,
    }
}

#[derive(Debug, Default)]
struct ConnectState {
    failures: u32,
    next_attempt: Option<Instant>,
    last_error: Option<ConnectError>,
}

#[derive(Debug, Default)]
struct Slot {
    current: Mutex<Option<Connection>>,
    connect: tokio::sync::Mutex<ConnectState>,
    /// Connect attempts finished on this slot (changed under `connect`): a caller that waited
    /// for the lock while an attempt ran takes that attempt's outcome instead of making its own.
    attempts: AtomicU64,
}

impl Slot {
    fn open_connection(&self) -> Option<Connection> {
        self.current
            .lock()
            .expect("slot lock poisoned")
            .as_ref()
            .filter(|c| c.is_open())
            .cloned()
    }
}

/// The slots of one peer.
#[derive(Debug)]
pub(crate) struct PeerPool {
    peer: Peer,
    slots: Box<[Slot]>,
    round_robin: AtomicUsize,
}

impl PeerPool {
    pub(crate) fn new(peer: Peer, slots: usize) -> Self {
        Self {
            peer,
            slots: (0..slots).map(|_| Slot::default()).collect(),
            round_robin: AtomicUsize::new(0),
        }
    }

    /// Every open connection of the pool.
    pub(crate) fn connections(&self) -> Vec<Connection> {
        self.slots
            .iter()
            .filter_map(Slot::open_connection)
            .collect()
    }

    /// Returns an open connection for the call, connecting if needed, within `deadline`.
    pub(crate) async fn connection(
        &self,
        client: &ClientInner,
        hash_key: Option<u64>,
        deadline: Instant,
    ) -> Result<Connection, ConnectError> {
        let slot = &self.slots[pick_slot(self.slots.len(), hash_key, &self.round_robin)];
        if let Some(conn) = slot.open_connection() {
            return Ok(conn);
        }
        let seen = slot.attempts.load(Ordering::Acquire);
        let mut state = match tokio::time::timeout_at(deadline, slot.connect.lock()).await {
            Ok(state) => state,
            Err(_) => return Err(ConnectError::Timeout(client.cfg.connect_timeout)),
        };
        // Another caller may have connected while we waited for the lock.
        if let Some(conn) = slot.open_connection() {
            return Ok(conn);
        }
        // Or failed to: one failed attempt answers every caller that waited for it, as a
        // channel in transient failure fails its waiting calls. Each waiting caller making its
        // own attempt in turn would push the backoff further per caller, so the last of n
        // callers to a dead peer would wait out n growing backoffs before learning it is dead.
        if slot.attempts.load(Ordering::Acquire) != seen
            && let Some(last) = &state.last_error
        {
            let remaining = state.next_attempt.map_or(Duration::ZERO, |at| {
                at.saturating_duration_since(Instant::now())
            });
            return Err(ConnectError::Backoff {
                remaining,
                last: Box::new(last.clone()),
            });
        }
        if let Some(at) = state.next_attempt {
            let now = Instant::now();
            if at > now {
                if at > deadline {
                    return Err(ConnectError::Backoff {
                        remaining: at - now,
                        last: Box::new(
                            state
                                .last_error
                                .clone()
                                .unwrap_or(ConnectError::Timeout(Duration::ZERO)),
                        ),
                    });
                }
                tokio::time::sleep_until(at).await;
            }
        }
        let caller_left = deadline.saturating_duration_since(Instant::now());
        let limit = client.cfg.connect_timeout.min(caller_left);
        let attempt = tokio::time::timeout(limit, client.open(self.peer)).await;
        let result = match attempt {
            Ok(result) => result,
            // Cut short by this caller's deadline, not the connect timeout: the peer is not
            // known to be unreachable, so no backoff (and no verdict) for the callers after
            // this one.
            Err(_) if limit < client.cfg.connect_timeout => {
                return Err(ConnectError::Timeout(limit));
            }
            Err(_) => Err(ConnectError::Timeout(limit)),
        };
        slot.attempts.fetch_add(1, Ordering::Release);
        match result {
            Ok(conn) => {
                *state = ConnectState::default();
                *slot.current.lock().expect("slot lock poisoned") = Some(conn.clone());
                Ok(conn)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let wait = backoff::delay(&client.cfg.backoff, state.failures, fastrand::f64());
                state.next_attempt = Some(Instant::now() + wait);
                state.last_error = Some(e.clone());
                metrics::counter!("peerwire_connect_failures_total").increment(1);
                tracing::debug!(peer = %self.peer.addr, error = %e, ?wait, "connect failed");
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_picking() {
        let rr = AtomicUsize::new(0);
        assert_eq!(pick_slot(4, Some(10), &rr), 2);
        assert_eq!(pick_slot(4, Some(10), &rr), 2);
        assert_eq!(pick_slot(1, Some(10), &rr), 0);
        let picks: Vec<usize> = (0..6).map(|_| pick_slot(3, None, &rr)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        assert_eq!(pick_slot(1, None, &rr), 0);
    }
}
