//! Prometheus text for `GET /metrics`: one recorder per process (installed on first use) that
//! collects every `metrics` counter, gauge and histogram — peerwire's transport and server
//! metrics and peerwire-kv's own.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder if no other is installed. Call early, before metrics are recorded.
/// Returns whether this recorder is the process's (false if another was installed first).
pub fn install() -> bool {
    HANDLE
        .get_or_init(|| {
            // Every `*_seconds` metric (peerwire-kv's durations, the transport's round trips) as a
            // Prometheus histogram (what etcd's alerts are written against), not a summary:
            // 0.25 ms doubling to 8 s.
            let seconds: Vec<f64> = (0..16).map(|i| 0.000_25 * f64::from(1u32 << i)).collect();
            let counts: Vec<f64> = (0..12).map(|i| f64::from(1u32 << i)).collect();
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(names::LOG_WRITE_READIES.into()),
                        &counts,
                    )
                })
                .ok()?
                .install_recorder()
                .ok()
                .inspect(|handle| {
                    describe();
                    start_upkeep(handle.clone());
                })
        })
        .is_some()
}

/// How often the recorder's histograms are drained into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts the thread that drains the recorder's histograms every [`UPKEEP_EVERY`]. The
/// exporter keeps every observation until it is drained (by a scrape or by upkeep), so without
/// it a node nobody scrapes would grow by a few bytes per request forever. The thread lives as
/// long as the process, as the recorder does; draining off the request and raft threads keeps
/// its cost out of their latency.
fn start_upkeep(handle: PrometheusHandle) {
    let started = std::thread::Builder::new()
        .name("peerwire-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = started {
        tracing::warn!(error = %e, "cannot start the metrics upkeep thread: histograms are drained only when /metrics is read");
    }
}

/// The `# HELP` lines of peerwire-kv's own metrics.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(names::HAS_LEADER, "1 while this node knows a leader");
    describe_gauge!(names::IS_LEADER, "1 while this node is the leader");
    describe_counter!(names::LEADER_CHANGES, "Leader changes this node saw");
    describe_gauge!(names::TERM, "The raft term");
    describe_gauge!(names::COMMITTED_INDEX, "The raft commit index");
    describe_gauge!(names::APPLIED_INDEX, "The applied index");
    describe_gauge!(names::APPLY_LAG, "Committed entries not yet applied");
    describe_gauge!(names::PROPOSALS_PENDING, "Proposals waiting to be applied");
    describe_counter!(
        names::PROPOSALS_APPLIED,
        "Proposals this node made that were applied"
    );
    describe_counter!(names::PROPOSALS_FAILED, "Proposals that failed, by reason");
    describe_histogram!(
        names::LOG_WRITE_SECONDS,
        Unit::Seconds,
        "One durable raft-log write (append and sync)"
    );
    describe_histogram!(
        names::LOG_WRITE_READIES,
        "Raft Readys one log write made durable"
    );
    describe_histogram!(
        names::SNAPSHOT_ENCODE_SECONDS,
        Unit::Seconds,
        "Encoding the state for a snapshot"
    );
    describe_histogram!(
        names::SNAPSHOT_SAVE_SECONDS,
        Unit::Seconds,
        "Writing and syncing a snapshot file"
    );
    describe_gauge!(
        names::SNAPSHOT_BYTES,
        Unit::Bytes,
        "The latest snapshot this node made"
    );
    describe_counter!(names::SNAPSHOTS, "Snapshots this node made");
    describe_counter!(
        names::SNAPSHOTS_INSTALLED,
        "Snapshots received from a leader and installed"
    );
    describe_histogram!(
        names::SNAPSHOT_INSTALL_SECONDS,
        Unit::Seconds,
        "Writing and loading a snapshot received from a leader"
    );
    describe_histogram!(
        names::REQUEST_SECONDS,
        Unit::Seconds,
        "Requests served, by api, method and outcome"
    );
}

/// The metrics in Prometheus text format (empty if another recorder was installed first).
pub fn render() -> String {
    install();
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// peerwire-kv's own metric names (the table in ARCHITECTURE.md gives each one's meaning; the
/// transport's `peerwire_*` metrics are documented there too).
pub mod names {
    /// Gauge: 1 while this node knows a leader (etcd's `etcd_server_has_leader`).
    pub const HAS_LEADER: &str = "peerwire_kv_has_leader";
    /// Gauge: 1 while this node is the leader (`etcd_server_is_leader`).
    pub const IS_LEADER: &str = "peerwire_kv_is_leader";
    /// Counter: leader changes this node saw (`etcd_server_leader_changes_seen_total`).
    pub const LEADER_CHANGES: &str = "peerwire_kv_leader_changes_seen_total";
    /// Gauge: the raft term.
    pub const TERM: &str = "peerwire_kv_term";
    /// Gauge: the commit index (`etcd_server_proposals_committed_total`).
    pub const COMMITTED_INDEX: &str = "peerwire_kv_committed_index";
    /// Gauge: the applied index (`etcd_server_proposals_applied_total`).
    pub const APPLIED_INDEX: &str = "peerwire_kv_applied_index";
    /// Gauge: committed entries not yet applied.
    pub const APPLY_LAG: &str = "peerwire_kv_apply_lag";
    /// Gauge: proposals waiting to be applied (`etcd_server_proposals_pending`).
    pub const PROPOSALS_PENDING: &str = "peerwire_kv_proposals_pending";
    /// Counter: proposals this node made that were applied.
    pub const PROPOSALS_APPLIED: &str = "peerwire_kv_proposals_applied_total";
    /// Counter, label `reason` (`not_leader`, `dropped`, `indeterminate`, `stopping`, `storage`):
    /// proposals that failed (`etcd_server_proposals_failed_total`).
    pub const PROPOSALS_FAILED: &str = "peerwire_kv_proposals_failed_total";
    /// Histogram, seconds: one durable write of the raft log (append and sync; etcd's
    /// `etcd_disk_wal_fsync_duration_seconds` and `etcd_disk_backend_commit_duration_seconds`
    /// in one, the log being the only store written per request).
    pub const LOG_WRITE_SECONDS: &str = "peerwire_kv_log_write_duration_seconds";
    /// Histogram: raft `Ready`s made durable by one log write.
    pub const LOG_WRITE_READIES: &str = "peerwire_kv_log_write_readies";
    /// Histogram, seconds: encoding the state for a snapshot.
    pub const SNAPSHOT_ENCODE_SECONDS: &str = "peerwire_kv_snapshot_encode_duration_seconds";
    /// Histogram, seconds: writing and syncing a snapshot file (`etcd_snap_db_save_total_duration_seconds`).
    pub const SNAPSHOT_SAVE_SECONDS: &str = "peerwire_kv_snapshot_save_duration_seconds";
    /// Gauge, bytes: the latest snapshot this node made.
    pub const SNAPSHOT_BYTES: &str = "peerwire_kv_snapshot_bytes";
    /// Counter: snapshots this node made.
    pub const SNAPSHOTS: &str = "peerwire_kv_snapshots_total";
    /// Counter: snapshots received from a leader and installed.
    pub const SNAPSHOTS_INSTALLED: &str = "peerwire_kv_snapshots_installed_total";
    /// Histogram, seconds: installing a snapshot received from a leader (write and load).
    pub const SNAPSHOT_INSTALL_SECONDS: &str = "peerwire_kv_snapshot_install_duration_seconds";
    /// Histogram, seconds, labels `api` (`http`, `native`), `method` (`put`, `get`, …) and
    /// `outcome` (`ok` or [`KvError::code`](crate::KvError::code)): requests served.
    pub const REQUEST_SECONDS: &str = "peerwire_kv_request_duration_seconds";
}

/// Records a served request: `api` and `method` name it, `outcome` is `ok` or the error's code.
pub(crate) fn observe_request(
    api: &'static str,
    method: &'static str,
    outcome: &'static str,
    took: std::time::Duration,
) {
    metrics::histogram!(names::REQUEST_SECONDS, "api" => api, "method" => method, "outcome" => outcome)
        .record(took.as_secs_f64());
}

/// Runs `request` and records it as [`observe_request`] does.
pub(crate) async fn timed<T>(
    api: &'static str,
    method: &'static str,
    request: impl std::future::Future<Output = Result<T, crate::KvError>>,
) -> Result<T, crate::KvError> {
    let started = std::time::Instant::now();
    let result = request.await;
    observe_request(api, method, outcome(&result), started.elapsed());
    result
}

/// The outcome label of a result.
pub(crate) fn outcome<T>(result: &Result<T, crate::KvError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}
