//! A connection's lifecycle as one plain state type with pure transitions (quinn-proto's way):
//! [`Phase::step`] takes the phase, an [`Event`] and the time, and returns the next phase and
//! the [`Action`]s the driver must carry out. No IO, no clock, no locks: the table test below
//! walks every transition.
//!
//! ```text
//!            close requested (graceful)            drained, or drain timeout
//!   Open ─────────────────────────────▶ Draining ─────────────────────────▶ Lingering
//!    │  go-away sent with the accepted mark           write side shut        │
//!    │                                                                       │ peer closed, or
//!    │ close requested (hard), protocol error, IO error, peer closed         │ linger timeout
//!    └──────────────────────────────────────────────────────────────▶ Closed ◀┘
//! ```
//!
//! Other tasks ask for a close through the connection's close request (`Conn::begin_close`);
//! the driver turns it into [`Event::CloseRequested`] while the connection is open. A request
//! that arrives while draining changes nothing: the drain already bounds the close.

use std::time::Duration;

use peerwire_wire::GoAwayReason;
use tokio::time::Instant;

/// Where a connection is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Calls flow both ways.
    Open,
    /// Our go-away is sent: no new calls; calls in flight finish until `until`.
    Draining {
        /// When the drain gives up on calls still in flight.
        until: Instant,
    },
    /// Our write side is shut; we wait until `until` for the peer to close its side, still
    /// reading (its replies to our calls may arrive).
    Lingering {
        /// When we stop waiting.
        until: Instant,
    },
    /// Done; `why` says how.
    Closed {
        /// The reason, for logs and for the calls that were still pending.
        why: String,
    },
}

/// What happened to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A close was requested (by the owner, the server, the peer's go-away, a timeout, a
    /// protocol violation the service noticed, or the writer failing).
    CloseRequested {
        /// The go-away reason to send.
        reason: GoAwayReason,
        /// Its message.
        message: String,
        /// Skip draining: the peer misbehaved or is gone.
        hard: bool,
    },
    /// The periodic drain check: whether every call in both directions is done.
    DrainCheck {
        /// Every call is done and every reply written.
        drained: bool,
    },
    /// The linger time passed without the peer closing.
    LingerExpired,
    /// The peer closed its side.
    PeerClosed,
    /// Reading failed: the peer broke the protocol (with the go-away reason for it) or the
    /// transport failed (`protocol` is `None`).
    ReadFailed {
        /// The go-away reason, for a protocol violation.
        protocol: Option<GoAwayReason>,
        /// What failed.
        why: String,
    },
}

/// What the driver must do for a transition, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Record a hard close request with this reason (so that everyone who looks sees the
    /// connection closing).
    CloseHard {
        /// The reason.
        reason: GoAwayReason,
        /// Its message.
        message: String,
    },
    /// Send our go-away, marked with the highest request id we accepted, and stop accepting
    /// new calls.
    AnnounceClose {
        /// The reason.
        reason: GoAwayReason,
        /// Its message.
        message: String,
    },
    /// Flush and shut our write side.
    ShutdownWrite,
    /// Keep reading until the peer closes or `until` (then [`Event::PeerClosed`] or
    /// [`Event::LingerExpired`]).
    WaitForPeerClose {
        /// When to stop waiting.
        until: Instant,
    },
    /// Discard input until the peer closes or the linger time passes, so that closing our
    /// socket does not reset the connection before the peer read our go-away. The phase is
    /// already [`Phase::Closed`].
    DiscardUntilPeerCloses,
}

/// The connection's time limits for closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// How long calls in flight may finish after our go-away (`drain_timeout`).
    pub(crate) drain: Duration,
    /// How long we wait for the peer to close its side once ours is shut.
    pub(crate) linger: Duration,
}

impl Phase {
    /// Whether calls flow (no close has started).
    pub(crate) fn is_open(&self) -> bool {
        matches!(self, Self::Open)
    }

    /// Whether the drain is under way.
    pub(crate) fn is_draining(&self) -> bool {
        matches!(self, Self::Draining { .. })
    }

    /// Whether we wait for the peer to close.
    pub(crate) fn is_lingering(&self) -> bool {
        matches!(self, Self::Lingering { .. })
    }

    /// The next phase after `event` at `now`, and what to do. Pure.
    pub(crate) fn step(self, event: Event, now: Instant, timing: Timing) -> (Self, Vec<Action>) {
        use Action::*;
        match (self, event) {
            (Self::Closed { why }, _) => (Self::Closed { why }, Vec::new()),
            // A read failure ends the connection from any phase.
            (
                _,
                Event::ReadFailed {
                    protocol: Some(reason),
                    why,
                },
            ) => (
                Self::Closed { why: why.clone() },
                vec![
                    CloseHard {
                        reason,
                        message: why.clone(),
                    },
                    AnnounceClose {
                        reason,
                        message: why,
                    },
                    ShutdownWrite,
                    DiscardUntilPeerCloses,
                ],
            ),
            (
                _,
                Event::ReadFailed {
                    protocol: None,
                    why,
                },
            ) => (
                Self::Closed { why: why.clone() },
                vec![CloseHard {
                    reason: GoAwayReason::Normal,
                    message: why,
                }],
            ),
            (
                Self::Open,
                Event::CloseRequested {
                    reason,
                    message,
                    hard: true,
                },
            ) => (
                Self::Closed {
                    why: format!("{reason}: {message}"),
                },
                vec![
                    AnnounceClose { reason, message },
                    ShutdownWrite,
                    DiscardUntilPeerCloses,
                ],
            ),
            (
                Self::Open,
                Event::CloseRequested {
                    reason,
                    message,
                    hard: false,
                },
            ) => (
                Self::Draining {
                    until: now + timing.drain,
                },
                vec![AnnounceClose { reason, message }],
            ),
            (Self::Draining { until }, Event::DrainCheck { drained }) => {
                if drained || now >= until {
                    let until = now + timing.linger;
                    (
                        Self::Lingering { until },
                        vec![ShutdownWrite, WaitForPeerClose { until }],
                    )
                } else {
                    (Self::Draining { until }, Vec::new())
                }
            }
            (Self::Lingering { .. }, Event::PeerClosed) => (
                Self::Closed {
                    why: "closed".into(),
                },
                Vec::new(),
            ),
            (Self::Lingering { .. }, Event::LingerExpired) => (
                Self::Closed {
                    why: "peer did not close its side in time".into(),
                },
                Vec::new(),
            ),
            // Anything else changes nothing: a second close request while closing, a drain
            // check or timer that no longer applies.
            (phase, _) => (phase, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        drain: Duration::from_secs(5),
        linger: Duration::from_secs(1),
    };

    fn request(hard: bool) -> Event {
        Event::CloseRequested {
            reason: GoAwayReason::Idle,
            message: "idle".into(),
            hard,
        }
    }

    fn announce() -> Action {
        Action::AnnounceClose {
            reason: GoAwayReason::Idle,
            message: "idle".into(),
        }
    }

    fn closed(why: &str) -> Phase {
        Phase::Closed { why: why.into() }
    }

    #[test]
    fn transition_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let draining = Phase::Draining { until: t0 + s(5) };
        let lingering = Phase::Lingering { until: t0 + s(1) };
        let protocol = Event::ReadFailed {
            protocol: Some(GoAwayReason::ProtocolError),
            why: "bad frame".into(),
        };
        let protocol_actions = vec![
            Action::CloseHard {
                reason: GoAwayReason::ProtocolError,
                message: "bad frame".into(),
            },
            Action::AnnounceClose {
                reason: GoAwayReason::ProtocolError,
                message: "bad frame".into(),
            },
            Action::ShutdownWrite,
            Action::DiscardUntilPeerCloses,
        ];
        let io = Event::ReadFailed {
            protocol: None,
            why: "reset".into(),
        };
        let io_actions = vec![Action::CloseHard {
            reason: GoAwayReason::Normal,
            message: "reset".into(),
        }];
        // (phase, event, time since t0 in s, next phase, actions)
        let cases: Vec<(Phase, Event, u64, Phase, Vec<Action>)> = vec![
            // Open
            (
                Phase::Open,
                request(false),
                0,
                draining.clone(),
                vec![announce()],
            ),
            (
                Phase::Open,
                request(true),
                0,
                closed("idle timeout: idle"),
                vec![
                    announce(),
                    Action::ShutdownWrite,
                    Action::DiscardUntilPeerCloses,
                ],
            ),
            (
                Phase::Open,
                protocol.clone(),
                0,
                closed("bad frame"),
                protocol_actions.clone(),
            ),
            (
                Phase::Open,
                io.clone(),
                0,
                closed("reset"),
                io_actions.clone(),
            ),
            (
                Phase::Open,
                Event::DrainCheck { drained: true },
                0,
                Phase::Open,
                vec![],
            ),
            (Phase::Open, Event::LingerExpired, 0, Phase::Open, vec![]),
            // Draining
            (
                draining.clone(),
                Event::DrainCheck { drained: false },
                1,
                draining.clone(),
                vec![],
            ),
            (
                draining.clone(),
                Event::DrainCheck { drained: true },
                1,
                Phase::Lingering { until: t0 + s(2) },
                vec![
                    Action::ShutdownWrite,
                    Action::WaitForPeerClose { until: t0 + s(2) },
                ],
            ),
            (
                draining.clone(),
                Event::DrainCheck { drained: false },
                5,
                Phase::Lingering { until: t0 + s(6) },
                vec![
                    Action::ShutdownWrite,
                    Action::WaitForPeerClose { until: t0 + s(6) },
                ],
            ),
            (draining.clone(), request(true), 1, draining.clone(), vec![]),
            (
                draining.clone(),
                request(false),
                1,
                draining.clone(),
                vec![],
            ),
            (
                draining.clone(),
                protocol.clone(),
                1,
                closed("bad frame"),
                protocol_actions.clone(),
            ),
            (
                draining.clone(),
                io.clone(),
                1,
                closed("reset"),
                io_actions.clone(),
            ),
            // Lingering
            (
                lingering.clone(),
                Event::PeerClosed,
                0,
                closed("closed"),
                vec![],
            ),
            (
                lingering.clone(),
                Event::LingerExpired,
                1,
                closed("peer did not close its side in time"),
                vec![],
            ),
            (
                lingering.clone(),
                request(true),
                0,
                lingering.clone(),
                vec![],
            ),
            (
                lingering.clone(),
                Event::DrainCheck { drained: true },
                0,
                lingering.clone(),
                vec![],
            ),
            (
                lingering.clone(),
                protocol.clone(),
                0,
                closed("bad frame"),
                protocol_actions,
            ),
            (lingering.clone(), io, 0, closed("reset"), io_actions),
            // Closed stays closed.
            (closed("done"), request(true), 0, closed("done"), vec![]),
            (closed("done"), Event::PeerClosed, 0, closed("done"), vec![]),
        ];
        for (phase, event, at, want_phase, want_actions) in cases {
            let label = format!("{phase:?} + {event:?} at {at}s");
            let (next, actions) = phase.step(event, t0 + s(at), TIMING);
            assert_eq!(next, want_phase, "{label}");
            assert_eq!(actions, want_actions, "{label}");
        }
    }

    #[test]
    fn every_path_from_open_ends_closed() {
        // Graceful: open → draining → lingering → closed, whatever the peer does.
        let t0 = Instant::now();
        for end in [Event::PeerClosed, Event::LingerExpired] {
            let (p, _) = Phase::Open.step(request(false), t0, TIMING);
            assert!(p.is_draining());
            let (p, _) = p.step(Event::DrainCheck { drained: true }, t0, TIMING);
            assert!(p.is_lingering());
            let (p, _) = p.step(end, t0 + TIMING.linger, TIMING);
            assert!(matches!(p, Phase::Closed { .. }));
        }
    }
}
