//! The open-loop load of one client: calls are sent at a fixed rate whether or not earlier
//! ones were answered (as independent users would), each outcome is classified, and admitted
//! calls' latencies are recorded.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use peerwire::{Client, Error, NotExecuted};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::harness::new_histogram;

/// How often the generator tops up the calls due (the rate is exact over time; calls due
/// within one tick leave together).
const TICK: Duration = Duration::from_millis(1);

/// Calls a client may have outstanding; beyond it, due calls are counted as not sent.
const MAX_OUTSTANDING: usize = 20_000;

/// What one client's calls issued inside the measured window came to.
#[derive(Debug, Clone)]
pub(crate) struct ClientOutcome {
    /// Calls issued in the window.
    pub(crate) offered: u64,
    /// Answered with a reply.
    pub(crate) ok: u64,
    /// Refused busy (not executed).
    pub(crate) busy: u64,
    /// Any other error.
    pub(crate) errors: u64,
    /// Due but not sent because `MAX_OUTSTANDING` calls were pending.
    pub(crate) not_sent: u64,
    /// Latency of the admitted (`ok`) calls, µs.
    pub(crate) latency_us: Histogram<u64>,
    /// The first unexpected error, for the operator.
    pub(crate) first_error: Option<String>,
}

/// A client's outcome reduced to what is reported (the histogram is large; results of many
/// runs are kept, and they must not show up as memory growth of the process under test).
#[derive(Debug, Clone)]
pub(crate) struct ClientSummary {
    /// Calls issued in the window.
    pub(crate) offered: u64,
    /// Answered with a reply.
    pub(crate) ok: u64,
    /// Refused busy.
    pub(crate) busy: u64,
    /// Other errors plus calls not sent.
    pub(crate) failed: u64,
    /// Admitted calls' median latency, µs (0 if none).
    pub(crate) p50_us: u64,
    /// Admitted calls' 99th percentile latency, µs (0 if none).
    pub(crate) p99_us: u64,
    /// The first unexpected error.
    pub(crate) first_error: Option<String>,
}

impl ClientOutcome {
    /// The reported figures.
    pub(crate) fn summary(&self) -> ClientSummary {
        let q = |q| {
            if self.latency_us.is_empty() {
                0
            } else {
                self.latency_us.value_at_quantile(q)
            }
        };
        ClientSummary {
            offered: self.offered,
            ok: self.ok,
            busy: self.busy,
            failed: self.errors + self.not_sent,
            p50_us: q(0.5),
            p99_us: q(0.99),
            first_error: self.first_error.clone(),
        }
    }

    fn new() -> Self {
        Self {
            offered: 0,
            ok: 0,
            busy: 0,
            errors: 0,
            not_sent: 0,
            latency_us: new_histogram(),
            first_error: None,
        }
    }

    fn record(&mut self, result: Result<Bytes, Error>, latency: Duration) {
        match result {
            Ok(_) => {
                self.ok += 1;
                let us = u64::try_from(latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                self.latency_us.saturating_record(us);
            }
            Err(Error::NotExecuted {
                reason: NotExecuted::Busy { .. },
                ..
            }) => self.busy += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// Timing of an open-loop run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Sending before anything is recorded.
    pub(crate) warmup: Duration,
    /// The measured window: calls issued inside it are recorded.
    pub(crate) measure: Duration,
}

/// Sends `route` calls with `payload` to `addr` at `rate` per second for the warm-up and the
/// window, waits for every call to finish, and returns what the window's calls came to.
///
/// # Cancel safety
///
/// Dropping the future aborts the calls in flight (each sends a cancel frame).
pub(crate) async fn drive(
    client: Client,
    addr: SocketAddr,
    route: &'static str,
    payload: Bytes,
    rate: f64,
    window: Window,
) -> ClientOutcome {
    let outcome = Arc::new(Mutex::new(ClientOutcome::new()));
    let mut calls = JoinSet::new();
    let start = Instant::now();
    let window_start = start + window.warmup;
    let end = window_start + window.measure;
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if now >= end {
            break;
        }
        // Reap finished calls so the set stays small.
        while calls.try_join_next().is_some() {}
        let due = (rate * now.duration_since(start).as_secs_f64()) as u64;
        let measured = now >= window_start;
        while issued < due {
            issued += 1;
            if measured {
                outcome.lock().expect("outcome lock").offered += 1;
            }
            if calls.len() >= MAX_OUTSTANDING {
                if measured {
                    outcome.lock().expect("outcome lock").not_sent += 1;
                }
                continue;
            }
            let (client, payload, outcome) = (client.clone(), payload.clone(), outcome.clone());
            calls.spawn(async move {
                let sent = Instant::now();
                let result = client.call(addr, route, payload).await;
                if measured {
                    outcome
                        .lock()
                        .expect("outcome lock")
                        .record(result, sent.elapsed());
                }
            });
        }
    }
    while calls.join_next().await.is_some() {}
    outcome.lock().expect("outcome lock").clone()
}
