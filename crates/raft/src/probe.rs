//! What probing a peer tells (etcd's prober and `probing_status`): round-trip time and an
//! estimate of the peer's clock drift. Pure: the caller measures, this keeps the statistics.
//!
//! A probe carries nothing; the reply carries the peer's wall clock. The peer read its clock
//! about half a round trip after we sent, so `drift = remote - (local_send + rtt / 2)`.

use std::time::Duration;

use tokio::time::Instant;

/// Clock drift beyond which etcd warns (1 s): leases and read-index timing assume the
/// members' clocks are close.
pub const CLOCK_DRIFT_WARN: Duration = Duration::from_secs(1);

/// A peer's health as probed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PeerHealth {
    /// Round trip of the last successful probe.
    pub rtt: Option<Duration>,
    /// Smoothed round trip (each new sample weighs 1/8, as TCP's SRTT).
    pub rtt_smoothed: Option<Duration>,
    /// Smallest round trip seen.
    pub rtt_min: Option<Duration>,
    /// The peer's clock minus ours, in nanoseconds (positive: the peer is ahead), from the last
    /// successful probe.
    pub clock_drift_ns: Option<i64>,
    /// Successful probes.
    pub probes_ok: u64,
    /// Failed probes.
    pub probes_failed: u64,
    /// When the last probe (successful or not) ended.
    pub last_probe: Option<Instant>,
    /// Whether the last probe succeeded.
    pub healthy: bool,
}

impl PeerHealth {
    /// Records a successful probe: sent at `local_send_ns` (our wall clock, ns since the unix
    /// epoch), answered with the peer's wall clock `remote_ns`, after `rtt`.
    pub fn record_ok(&mut self, now: Instant, local_send_ns: i64, remote_ns: i64, rtt: Duration) {
        let half = i64::try_from(rtt.as_nanos() / 2).unwrap_or(i64::MAX);
        self.clock_drift_ns = Some(remote_ns.saturating_sub(local_send_ns.saturating_add(half)));
        self.rtt = Some(rtt);
        self.rtt_min = Some(self.rtt_min.map_or(rtt, |m| m.min(rtt)));
        self.rtt_smoothed = Some(match self.rtt_smoothed {
            None => rtt,
            Some(s) => (s * 7 + rtt) / 8,
        });
        self.probes_ok += 1;
        self.last_probe = Some(now);
        self.healthy = true;
    }

    /// Records a failed probe.
    pub fn record_failure(&mut self, now: Instant) {
        self.probes_failed += 1;
        self.last_probe = Some(now);
        self.healthy = false;
    }

    /// Whether the last drift estimate exceeds `limit` either way.
    pub fn drift_exceeds(&self, limit: Duration) -> bool {
        self.clock_drift_ns
            .is_some_and(|d| u128::from(d.unsigned_abs()) > limit.as_nanos())
    }
}

/// Our wall clock in nanoseconds since the unix epoch.
pub(crate) fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    #[test]
    fn drift_subtracts_half_the_round_trip() {
        let now = Instant::now();
        let mut h = PeerHealth::default();
        // Sent at t=1000 ms, took 10 ms; the peer read its clock at 1005 ms of ours but says
        // 1505 ms: it is 500 ms ahead.
        h.record_ok(now, 1000 * MS, 1505 * MS, Duration::from_millis(10));
        assert_eq!(h.clock_drift_ns, Some(500 * MS));
        assert!(!h.drift_exceeds(CLOCK_DRIFT_WARN));
        h.record_ok(now, 2000 * MS, 800 * MS, Duration::from_millis(2));
        assert_eq!(h.clock_drift_ns, Some(-1201 * MS));
        assert!(h.drift_exceeds(CLOCK_DRIFT_WARN));
    }

    #[test]
    fn round_trips_are_smoothed_and_the_minimum_kept() {
        let now = Instant::now();
        let mut h = PeerHealth::default();
        for ms in [8, 16, 4] {
            h.record_ok(now, 0, 0, Duration::from_millis(ms));
        }
        assert_eq!(h.rtt, Some(Duration::from_millis(4)));
        assert_eq!(h.rtt_min, Some(Duration::from_millis(4)));
        // 8, then (7*8+16)/8 = 9, then (7*9+4)/8 = 8.375
        assert_eq!(h.rtt_smoothed, Some(Duration::from_micros(8375)));
        h.record_failure(now);
        assert_eq!((h.probes_ok, h.probes_failed, h.healthy), (3, 1, false));
    }
}
