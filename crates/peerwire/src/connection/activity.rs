//! Activity of a connection, observed by its keepalive task.
//!
//! The hot paths only bump counters (a plain store for the single reader and single writer
//! task); the keepalive task samples them at each tick and turns changes into timestamps. So no
//! read, write or call pays for a clock read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    /// Read batches; written only by the driver task.
    reads: AtomicU64,
    /// Write batches; written only by the writer task.
    writes: AtomicU64,
    /// One-way messages sent or received (calls are counted by their ids).
    oneways: AtomicU64,
    /// Last heartbeat round trip in µs (0 = none measured yet).
    rtt_us: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            oneways: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        }
    }

    /// Microseconds since the connection started.
    pub(crate) fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    /// Called by the one driver task after each read.
    pub(crate) fn touch_read(&self) {
        bump_single_writer(&self.reads);
    }

    /// Called by the one writer task after each write batch.
    pub(crate) fn touch_write(&self) {
        bump_single_writer(&self.writes);
    }

    pub(crate) fn touch_oneway(&self) {
        self.oneways.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    pub(crate) fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    pub(crate) fn oneways(&self) -> u64 {
        self.oneways.load(Ordering::Relaxed)
    }

    pub(crate) fn record_rtt(&self, rtt_us: u64) {
        self.rtt_us.store(rtt_us.max(1), Ordering::Relaxed);
    }

    pub(crate) fn rtt(&self) -> Option<Duration> {
        match self.rtt_us.load(Ordering::Relaxed) {
            0 => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// Increments a counter that only one task writes: no read-modify-write instruction needed.
fn bump_single_writer(counter: &AtomicU64) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// Turns counter samples into "last changed at" timestamps (µs since the connection started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChangeTracker {
    value: u64,
    changed_at: u64,
}

impl ChangeTracker {
    /// Records a sample taken at `now` and returns when the value last changed.
    pub(crate) fn observe(&mut self, value: u64, now: u64) -> u64 {
        if value != self.value {
            self.value = value;
            self.changed_at = now;
        }
        self.changed_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_tracker_keeps_the_time_of_the_last_change() {
        let mut t = ChangeTracker::default();
        assert_eq!(t.observe(0, 100), 0);
        assert_eq!(t.observe(3, 200), 200);
        assert_eq!(t.observe(3, 300), 200);
        assert_eq!(t.observe(4, 400), 400);
    }
}
