//! How the bytes of file regions (data-stream packets sent from files) left this process:
//! straight from the page cache with `sendfile`, or copied through a user-space buffer because
//! the transport cannot (TLS, in-memory pipes).
//!
//! A silent fallback to copying costs a copy and a buffer per packet, so both paths are
//! counted: process-wide totals any test or tool can read ([`file_send_totals`]), and the
//! `peerwire_file_bytes_sent_total` counter (label `path`: `sendfile` or `copy`) through the
//! `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering};

static SENDFILE: AtomicU64 = AtomicU64::new(0);
static COPIED: AtomicU64 = AtomicU64::new(0);

/// Bytes of file regions this process has sent, by path, since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileSendTotals {
    /// Sent from the page cache by the kernel (`sendfile`).
    pub sendfile: u64,
    /// Read into a buffer and written like any other bytes.
    pub copied: u64,
}

/// The totals so far (monotonic; compare two readings to see what happened in between).
pub fn file_send_totals() -> FileSendTotals {
    FileSendTotals {
        sendfile: SENDFILE.load(Ordering::Relaxed),
        copied: COPIED.load(Ordering::Relaxed),
    }
}

/// Counts `n` bytes sent with `sendfile`.
pub(crate) fn record_sendfile(n: usize) {
    SENDFILE.fetch_add(n as u64, Ordering::Relaxed);
    metrics::counter!("peerwire_file_bytes_sent_total", "path" => "sendfile").increment(n as u64);
}

/// Counts `n` bytes copied through user space.
pub(crate) fn record_copied(n: usize) {
    COPIED.fetch_add(n as u64, Ordering::Relaxed);
    metrics::counter!("peerwire_file_bytes_sent_total", "path" => "copy").increment(n as u64);
}
