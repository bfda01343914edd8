//! The probing task of one peer (etcd's prober): every interval, a call on the pipeline lane
//! whose reply carries the peer's wall clock. Results go into the peer's [`PeerHealth`] and
//! the metrics `peerwire_raft_probe_rtt_seconds` and `peerwire_raft_clock_drift_seconds`.
//!
//! [`PeerHealth`]: super::PeerHealth

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use bytes::{Buf, Bytes};
use peerwire_wire::Lane;

use super::link::{Link, PROBE_ROUTE};
use super::peer_state::PeerShared;
use super::probe::{CLOCK_DRIFT_WARN, unix_nanos};
use peerwire::client::{CallOptions, Peer, RetryPolicy};

pub(crate) async fn run(link: Arc<Link>, peer: Arc<PeerShared>, every: Duration) {
    let client = link.client(Lane::RaftPipeline).clone();
    let opts = CallOptions {
        deadline: Some(link.cfg.request_timeout),
        retry: Some(RetryPolicy::never()),
        ..CallOptions::default()
    };
    let label = peer.id.to_string();
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = peer.stop.cancelled() => return,
        }
        if link.is_removed() || link.faults.is_cut(peer.id) {
            continue;
        }
        let sent_ns = unix_nanos();
        let start = Instant::now();
        let reply = tokio::select! {
            r = client.call_with(Peer::new(peer.addr(), peer.id), PROBE_ROUTE, Bytes::new(), opts.clone()) => r,
            _ = peer.stop.cancelled() => return,
        };
        let rtt = start.elapsed();
        let mut health = peer.health.lock().expect("health poisoned");
        match reply {
            Ok(mut body) if body.len() == 8 => {
                let remote_ns = body.get_i64_le();
                health.record_ok(Instant::now(), sent_ns, remote_ns, rtt);
                metrics::histogram!("peerwire_raft_probe_rtt_seconds", "peer" => label.clone())
                    .record(rtt.as_secs_f64());
                let drift = health.clock_drift_ns.unwrap_or(0) as f64 / 1e9;
                metrics::gauge!("peerwire_raft_clock_drift_seconds", "peer" => label.clone())
                    .set(drift);
                if health.drift_exceeds(CLOCK_DRIFT_WARN) {
                    tracing::warn!(peer = peer.id, drift_s = drift, "clock drift beyond 1 s");
                }
            }
            other => {
                health.record_failure(Instant::now());
                metrics::counter!("peerwire_raft_probe_failures_total", "peer" => label.clone())
                    .increment(1);
                tracing::debug!(peer = peer.id, reply = ?other.map(|b| b.len()), "probe failed");
            }
        }
    }
}
