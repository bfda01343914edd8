//! Fault injection for tests (feature `testing`).

use std::sync::atomic::{AtomicU32, Ordering};

/// Faults a data-stream server injects into its own behaviour.
#[derive(Debug, Default)]
pub struct DataStreamFaults {
    corrupt: AtomicU32,
}

impl DataStreamFaults {
    /// Flips a bit in the next `packets` non-empty packets this server forwards (after it
    /// checked them), so the successor's checksum check fails.
    pub fn corrupt_forwarded(&self, packets: u32) {
        self.corrupt.store(packets, Ordering::SeqCst);
    }

    pub(crate) fn take_corruption(&self) -> bool {
        self.corrupt
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}
