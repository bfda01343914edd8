//! Peak resident memory of a process (this one, or a child such as a benchmark's server) during
//! a measurement, sampled from `/proc`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the resident set is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);

/// The resident set size of this process in bytes (`VmRSS`), if the OS reports it.
pub(crate) fn current_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_rss(&status)
}

/// The resident set size of process `pid` in bytes, if the OS reports it (and it still runs).
pub(crate) fn pid_rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

/// `VmRSS` from the text of `/proc/<pid>/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What the sampler saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RssReport {
    /// The largest sample, bytes.
    pub(crate) peak: u64,
    /// The first sample taken at or after the mark given to [`PeakRss::finish`], bytes.
    pub(crate) at_mark: u64,
}

/// Samples the resident set on a thread until [`PeakRss::finish`].
#[derive(Debug)]
pub(crate) struct PeakRss {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Instant, u64)>>,
}

impl PeakRss {
    /// Starts sampling this process.
    pub(crate) fn start() -> std::io::Result<Self> {
        Self::start_with(current_rss_bytes)
    }

    /// Starts sampling process `pid`.
    pub(crate) fn start_for(pid: u32) -> std::io::Result<Self> {
        Self::start_with(move || pid_rss_bytes(pid))
    }

    fn start_with(read: impl Fn() -> Option<u64> + Send + 'static) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let mut samples = Vec::new();
                    loop {
                        samples.push((Instant::now(), read().unwrap_or(0)));
                        if stop.load(Ordering::Relaxed) {
                            return samples;
                        }
                        std::thread::sleep(SAMPLE_EVERY);
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops sampling; the peak, and the resident set at `mark` (for example the start of a
    /// measured window, to tell growth from a plateau). Zeros where `/proc` is not available.
    pub(crate) fn finish(self, mark: Instant) -> RssReport {
        self.stop.store(true, Ordering::Relaxed);
        let samples = self.thread.join().unwrap_or_default();
        summarize(&samples, mark)
    }
}

fn summarize(samples: &[(Instant, u64)], mark: Instant) -> RssReport {
    let peak = samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0);
    let at_mark = samples
        .iter()
        .find(|(at, _)| *at >= mark)
        .or(samples.last())
        .map_or(0, |(_, rss)| *rss);
    RssReport { peak, at_mark }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(1234 * 1024));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn peak_and_value_at_the_mark() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let samples = [(at(0), 10), (at(20), 30), (at(40), 25), (at(60), 40)];
        assert_eq!(
            summarize(&samples, at(30)),
            RssReport {
                peak: 40,
                at_mark: 25
            }
        );
        assert_eq!(
            summarize(&[], t0),
            RssReport {
                peak: 0,
                at_mark: 0
            }
        );
    }
}
