//! Link heartbeats, read timeout and idle timeout: a pure policy and the task that applies it.

use std::sync::Arc;
use std::time::Duration;

use peerwire_wire::{Frame, GoAwayReason, Heartbeat};

use super::Conn;
use super::activity::ChangeTracker;

/// What the keepalive task should do at a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepaliveAction {
    /// Nothing is due.
    Nothing,
    /// Nothing was written for a heartbeat interval: send a heartbeat.
    Ping,
    /// Close the connection for this reason.
    Close(GoAwayReason),
}

/// The keepalive policy. Times are microseconds since the connection started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepalivePolicy {
    pub(crate) heartbeat_interval: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
}

impl KeepalivePolicy {
    /// Decides the action at time `now` given the last read, write and call, and whether any
    /// call is in flight (an in-flight call is never idle).
    pub(crate) fn decide(
        &self,
        now: u64,
        last_read: u64,
        last_write: u64,
        last_call: u64,
        calls_in_flight: bool,
    ) -> KeepaliveAction {
        let us = |d: Duration| d.as_micros() as u64;
        if now.saturating_sub(last_read) >= us(self.read_timeout) {
            return KeepaliveAction::Close(GoAwayReason::ReadTimeout);
        }
        if let Some(idle) = self.idle_timeout
            && !calls_in_flight
            && now.saturating_sub(last_call) >= us(idle)
        {
            return KeepaliveAction::Close(GoAwayReason::Idle);
        }
        if now.saturating_sub(last_write) >= us(self.heartbeat_interval) {
            return KeepaliveAction::Ping;
        }
        KeepaliveAction::Nothing
    }

    /// How often the task checks: often enough to ping within 1.5 heartbeat intervals.
    pub(crate) fn tick(&self) -> Duration {
        (self.heartbeat_interval / 2).max(Duration::from_millis(1))
    }
}

/// Runs until the connection starts closing.
pub(crate) async fn run(conn: Arc<Conn>, policy: KeepalivePolicy) {
    let mut ticker = tokio::time::interval(policy.tick());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut nonce = 0u64;
    let (mut reads, mut writes, mut calls) = (
        ChangeTracker::default(),
        ChangeTracker::default(),
        ChangeTracker::default(),
    );
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = conn.closing.cancelled() => return,
        }
        let activity = &conn.activity;
        let now = activity.now_us();
        let in_flight = conn.calls_in_flight();
        let last_read = reads.observe(activity.reads(), now);
        let last_write = writes.observe(activity.writes(), now);
        let mut last_call = calls.observe(conn.call_marker(), now);
        if in_flight {
            last_call = now;
        }
        match policy.decide(now, last_read, last_write, last_call, in_flight) {
            KeepaliveAction::Nothing => {}
            KeepaliveAction::Ping => {
                nonce += 1;
                // A full write queue means frames are flowing anyway: skipping is fine.
                let _ = conn.try_send_control(Frame::Heartbeat(Heartbeat {
                    nonce,
                    ack: false,
                    timestamp_us: now,
                }));
            }
            KeepaliveAction::Close(reason) => {
                let message = match reason {
                    GoAwayReason::ReadTimeout => format!(
                        "nothing received for {:?} (setting `read_timeout`)",
                        policy.read_timeout
                    ),
                    _ => format!(
                        "no calls for {:?} (setting `idle_timeout`)",
                        policy.idle_timeout.unwrap_or_default()
                    ),
                };
                if reason == GoAwayReason::ReadTimeout {
                    // The peer is presumed dead: waiting out the drain timeout for replies
                    // that cannot come would only hold callers longer.
                    conn.begin_close_hard(reason, message);
                } else {
                    conn.begin_close(reason, message);
                }
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    fn policy() -> KeepalivePolicy {
        KeepalivePolicy {
            heartbeat_interval: Duration::from_millis(100),
            read_timeout: Duration::from_millis(300),
            idle_timeout: Some(Duration::from_millis(1000)),
        }
    }

    #[test]
    fn decisions_table() {
        use KeepaliveAction::*;
        // (now, last_read, last_write, last_call, in_flight) -> action
        let table = [
            ((50 * MS, 0, 0, 0, false), Nothing),
            ((100 * MS, 50 * MS, 0, 0, false), Ping),
            ((100 * MS, 50 * MS, 60 * MS, 0, false), Nothing),
            (
                (300 * MS, 0, 290 * MS, 0, false),
                Close(GoAwayReason::ReadTimeout),
            ),
            (
                (1000 * MS, 990 * MS, 990 * MS, 0, false),
                Close(GoAwayReason::Idle),
            ),
            ((1000 * MS, 990 * MS, 990 * MS, 0, true), Nothing),
            ((1000 * MS, 990 * MS, 800 * MS, 0, true), Ping),
            // The read timeout wins over idleness.
            (
                (2000 * MS, 0, 0, 0, false),
                Close(GoAwayReason::ReadTimeout),
            ),
        ];
        for ((now, r, w, c, busy), want) in table {
            assert_eq!(policy().decide(now, r, w, c, busy), want, "at {now}");
        }
    }

    #[test]
    fn no_idle_timeout_means_never_idle() {
        let p = KeepalivePolicy {
            idle_timeout: None,
            ..policy()
        };
        assert_eq!(
            p.decide(10_000 * MS, 10_000 * MS, 10_000 * MS, 0, false),
            KeepaliveAction::Nothing
        );
    }
}
