//! Prometheus text for `GET /metrics`: one recorder per process (installed on first use) that
//! collects every `metrics` counter, gauge and histogram — peerwire's transport and server
//! metrics and peerwire-kv's own.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder if no other is installed. Call early, before metrics are recorded.
pub fn install() {
    HANDLE.get_or_init(|| PrometheusBuilder::new().install_recorder().ok());
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
