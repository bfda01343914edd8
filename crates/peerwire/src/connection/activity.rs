//! Timestamps of a connection's last read, write and call, shared by its tasks.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Microsecond timestamps relative to the connection's start, updated once per read or
/// write batch (not per frame).
#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    last_read: AtomicU64,
    last_write: AtomicU64,
    last_call: AtomicU64,
    /// Last heartbeat round trip in µs (0 = none measured yet).
    rtt_us: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            origin: Instant::now(),
            last_read: AtomicU64::new(0),
            last_write: AtomicU64::new(0),
            last_call: AtomicU64::new(0),
            rtt_us: AtomicU64::new(0),
        }
    }

    /// Microseconds since the connection started.
    pub(crate) fn now_us(&self) -> u64 {
        self.origin.elapsed().as_micros() as u64
    }

    pub(crate) fn touch_read(&self) {
        self.last_read.store(self.now_us(), Ordering::Relaxed);
    }

    pub(crate) fn touch_write(&self) {
        self.last_write.store(self.now_us(), Ordering::Relaxed);
    }

    pub(crate) fn touch_call(&self) {
        self.last_call.store(self.now_us(), Ordering::Relaxed);
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

    pub(crate) fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.now_us(),
            self.last_read.load(Ordering::Relaxed),
            self.last_write.load(Ordering::Relaxed),
            self.last_call.load(Ordering::Relaxed),
        )
    }
}
