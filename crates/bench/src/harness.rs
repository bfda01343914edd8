//! The closed-loop load generator: `N` workers, each keeping one operation outstanding, a
//! warm-up that is not recorded, then a measured window with an operation count and a latency
//! histogram (microseconds; one histogram per worker, merged at the end).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::BoxError;

/// Highest latency the histograms track, in microseconds (larger values are clamped).
const MAX_LATENCY_US: u64 = 60_000_000;
/// Significant decimal digits kept by the histograms.
const SIGNIFICANT_DIGITS: u8 = 3;

/// One unit of load: each worker runs its operation in a loop, one at a time, so `N` workers
/// keep exactly `N` operations in flight.
pub(crate) trait Worker: Send + 'static {
    /// Performs one operation. `Ok` counts it (and records its latency when it completes
    /// inside the measured window); an error stops the whole load run.
    fn op(&mut self) -> impl Future<Output = Result<(), BoxError>> + Send;
}

/// Timing of a load run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoadSpec {
    /// Time spent running operations before anything is recorded.
    pub(crate) warmup: Duration,
    /// Length of the measured window.
    pub(crate) measure: Duration,
    /// After the window closes, how long workers get to finish the operation they are in before
    /// the run is declared stuck.
    pub(crate) drain_timeout: Duration,
}

impl LoadSpec {
    /// A spec with the default drain timeout (10 s).
    pub(crate) fn new(warmup: Duration, measure: Duration) -> Self {
        Self {
            warmup,
            measure,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub(crate) struct LoadResult {
    /// Operations that completed inside the measured window.
    pub(crate) ops: u64,
    /// Length of the measured window.
    pub(crate) window: Duration,
    /// Latencies (µs) of the operations counted in `ops`.
    pub(crate) latency_us: Histogram<u64>,
}

impl LoadResult {
    /// Completed operations per second of the measured window.
    pub(crate) fn ops_per_sec(&self) -> f64 {
        let secs = self.window.as_secs_f64();
        if secs > 0.0 {
            self.ops as f64 / secs
        } else {
            0.0
        }
    }

    /// The slowest operation's latency in microseconds, 0 if nothing was recorded.
    pub(crate) fn latency_max_us(&self) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.max()
        }
    }

    /// Latency at quantile `q` (0.0..=1.0) in microseconds, 0 if nothing was recorded.
    pub(crate) fn latency_quantile_us(&self, q: f64) -> u64 {
        if self.latency_us.is_empty() {
            0
        } else {
            self.latency_us.value_at_quantile(q)
        }
    }
}

/// An empty latency histogram with the harness's bounds.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// Drives `workers` (one operation in flight each) on the current tokio runtime: `warmup`,
/// then the measured window. Returns the first worker error, if any, after stopping the rest.
///
/// Must be called from within a tokio runtime; the workers are spawned onto it.
pub(crate) async fn run_load<W: Worker>(
    workers: Vec<W>,
    spec: LoadSpec,
) -> Result<LoadResult, BoxError> {
    if workers.is_empty() {
        return Err("load run needs at least one worker (in-flight level 0?)".into());
    }
    let start = Instant::now();
    let window = Window {
        from: start + spec.warmup,
        to: start + spec.warmup + spec.measure,
    };
    let stop = Arc::new(AtomicBool::new(false));

    let mut tasks = JoinSet::new();
    for worker in workers {
        tasks.spawn(worker_loop(worker, window, Arc::clone(&stop)));
    }

    let mut ops = 0;
    let mut latency_us = new_histogram();
    let mut first_error: Option<BoxError> = None;
    let mut deadline = tokio::time::Instant::from_std(window.to + spec.drain_timeout);
    loop {
        let joined = match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(joined)) => joined,
            Ok(None) => break,
            Err(_) => {
                let stuck = tasks.len();
                tasks.shutdown().await;
                return Err(first_error.unwrap_or_else(|| {
                    format!(
                        "{stuck} worker(s) still had an operation outstanding {:?} after the \
                         measured window closed (server stalled or a reply was lost?)",
                        spec.drain_timeout
                    )
                    .into()
                }));
            }
        };
        match joined {
            Ok(Ok(tally)) => {
                ops += tally.ops;
                latency_us
                    .add(&tally.latency_us)
                    .map_err(|e| format!("merging latency histograms: {e}"))?;
            }
            Ok(Err(e)) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
                // The others stop after their current operation; don't wait for the window.
                deadline = deadline.min(tokio::time::Instant::now() + spec.drain_timeout);
            }
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert_with(|| format!("worker task cancelled: {e}").into());
                deadline = deadline.min(tokio::time::Instant::now() + spec.drain_timeout);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(LoadResult {
            ops,
            window: spec.measure,
            latency_us,
        }),
    }
}

/// The measured window: operations completing in `[from, to)` are recorded.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: Instant,
    to: Instant,
}

/// One worker's share of the result.
struct Tally {
    ops: u64,
    latency_us: Histogram<u64>,
}

async fn worker_loop<W: Worker>(
    mut worker: W,
    window: Window,
    stop: Arc<AtomicBool>,
) -> Result<Tally, BoxError> {
    let mut tally = Tally {
        ops: 0,
        latency_us: new_histogram(),
    };
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(tally);
        }
        let began = Instant::now();
        worker.op().await?;
        let done = Instant::now();
        if done >= window.to {
            return Ok(tally);
        }
        if done >= window.from {
            tally.ops += 1;
            let micros = u64::try_from(done.duration_since(began).as_micros()).unwrap_or(u64::MAX);
            tally.latency_us.saturating_record(micros.max(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps 1 ms per operation; fails on operation `fail_at` if set.
    struct Sleeper {
        done: u64,
        fail_at: Option<u64>,
    }

    impl Worker for Sleeper {
        async fn op(&mut self) -> Result<(), BoxError> {
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.done += 1;
            match self.fail_at {
                Some(n) if n == self.done => Err("boom".into()),
                _ => Ok(()),
            }
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn counts_ops_and_records_latency() {
        let workers = (0..3)
            .map(|_| Sleeper {
                done: 0,
                fail_at: None,
            })
            .collect();
        let spec = LoadSpec::new(Duration::from_millis(20), Duration::from_millis(100));
        let result = rt().block_on(run_load(workers, spec)).unwrap();
        assert!(result.ops > 0);
        assert_eq!(result.latency_us.len(), result.ops);
        assert!(result.latency_quantile_us(0.5) >= 1_000);
        assert!(result.ops_per_sec() > 0.0);
    }

    #[test]
    fn first_error_stops_the_run() {
        let workers = vec![
            Sleeper {
                done: 0,
                fail_at: Some(3),
            },
            Sleeper {
                done: 0,
                fail_at: None,
            },
        ];
        let spec = LoadSpec::new(Duration::ZERO, Duration::from_secs(30));
        let err = rt().block_on(run_load(workers, spec)).unwrap_err();
        assert_eq!(err.to_string(), "boom");
    }

    #[test]
    fn no_workers_is_an_error() {
        let spec = LoadSpec::new(Duration::ZERO, Duration::from_millis(1));
        assert!(
            rt().block_on(run_load(Vec::<Sleeper>::new(), spec))
                .is_err()
        );
    }
}
