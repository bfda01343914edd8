//! Per-route call metrics, registered once when the route is mounted so that a call records
//! through ready handles (no name or label lookup per call):
//! `peerwire_server_call_duration_seconds{route, outcome}`, from the reader receiving the call
//! to its outcome, queue wait included. `outcome` is `ok` (the handler returned a response),
//! `failed` (it returned an error), `panicked`, `expired` (the deadline passed in the queue;
//! not run), `cancelled` (the caller cancelled it in the queue; not run) or `busy` (the call
//! queue was full: answered `Busy` at once, not run; also counted by
//! `peerwire_calls_busy_total{reason}`).

use metrics::Histogram;
use tokio::time::Instant;

/// The metric's name.
pub(crate) const CALL_SECONDS: &str = "peerwire_server_call_duration_seconds";

/// How a call ended, for its route's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallOutcome {
    Ok,
    Failed,
    Panicked,
    Expired,
    Cancelled,
    Busy,
}

/// One route's handles.
pub(crate) struct RouteMetrics {
    ok: Histogram,
    failed: Histogram,
    panicked: Histogram,
    expired: Histogram,
    cancelled: Histogram,
    busy: Histogram,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics").finish_non_exhaustive()
    }
}

impl RouteMetrics {
    /// Registers the handles of `route` with the recorder installed now (none: they do
    /// nothing).
    pub(crate) fn register(route: &[u8]) -> Self {
        let name = String::from_utf8_lossy(route).into_owned();
        let handle = |outcome: &'static str| metrics::histogram!(CALL_SECONDS, "route" => name.clone(), "outcome" => outcome);
        Self {
            ok: handle("ok"),
            failed: handle("failed"),
            panicked: handle("panicked"),
            expired: handle("expired"),
            cancelled: handle("cancelled"),
            busy: handle("busy"),
        }
    }

    /// A call received at `received` ended with `outcome` now.
    pub(crate) fn finished(&self, outcome: CallOutcome, received: Instant) {
        let h = match outcome {
            CallOutcome::Ok => &self.ok,
            CallOutcome::Failed => &self.failed,
            CallOutcome::Panicked => &self.panicked,
            CallOutcome::Expired => &self.expired,
            CallOutcome::Cancelled => &self.cancelled,
            CallOutcome::Busy => &self.busy,
        };
        h.record(received.elapsed().as_secs_f64());
    }
}
