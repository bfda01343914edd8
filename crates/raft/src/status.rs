//! A peer's health as the transport sees it (etcd's `peerStatus`): active or inactive, since
//! when, and the error that made it inactive. Pure: the caller passes the time.

use tokio::time::Instant;

/// Active or inactive, with the time of the last change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Never connected yet.
    Unknown,
    /// A lane to the peer works, since the instant given.
    Active {
        /// When the peer became active.
        since: Instant,
    },
    /// No lane to the peer works, since the instant given, because of `error`.
    Inactive {
        /// When the peer became inactive.
        since: Instant,
        /// Why: the last lane failure.
        error: String,
    },
}

/// The status of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    state: PeerState,
}

impl Default for PeerStatus {
    fn default() -> Self {
        Self::new()
    }
}

impl PeerStatus {
    /// A peer not yet connected.
    pub fn new() -> Self {
        Self {
            state: PeerState::Unknown,
        }
    }

    /// Records that a lane works. Returns true if this is a change (the peer became active).
    pub fn activate(&mut self, now: Instant) -> bool {
        if matches!(self.state, PeerState::Active { .. }) {
            return false;
        }
        self.state = PeerState::Active { since: now };
        true
    }

    /// Records a lane failure. Returns true if this is a change (the peer became inactive); a
    /// failure while already inactive only updates the error.
    pub fn deactivate(&mut self, now: Instant, error: impl Into<String>) -> bool {
        let error = error.into();
        match &mut self.state {
            PeerState::Inactive { error: last, .. } => {
                *last = error;
                false
            }
            _ => {
                self.state = PeerState::Inactive { since: now, error };
                true
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> &PeerState {
        &self.state
    }

    /// When the peer became active, if it is (etcd's `ActiveSince`).
    pub fn active_since(&self) -> Option<Instant> {
        match self.state {
            PeerState::Active { since } => Some(since),
            _ => None,
        }
    }

    /// The error that made the peer inactive, if it is.
    pub fn last_error(&self) -> Option<&str> {
        match &self.state {
            PeerState::Inactive { error, .. } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn transitions_keep_the_time_of_the_change() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let mut s = PeerStatus::new();
        assert_eq!(s.active_since(), None);
        assert!(s.activate(at(1)));
        assert!(!s.activate(at(2)), "already active: no change");
        assert_eq!(s.active_since(), Some(at(1)));

        assert!(s.deactivate(at(3), "connection reset"));
        assert!(!s.deactivate(at(4), "connection refused"));
        assert_eq!(
            s.state(),
            &PeerState::Inactive {
                since: at(3),
                error: "connection refused".into()
            },
            "inactive since the first failure, with the latest error"
        );
        assert_eq!(s.active_since(), None);

        assert!(s.activate(at(5)));
        assert_eq!(s.active_since(), Some(at(5)));
        assert_eq!(s.last_error(), None);
    }

    #[test]
    fn a_peer_that_never_connected_can_fail() {
        let t0 = Instant::now();
        let mut s = PeerStatus::new();
        assert!(s.deactivate(t0, "dial timeout"));
        assert_eq!(s.last_error(), Some("dial timeout"));
    }
}
