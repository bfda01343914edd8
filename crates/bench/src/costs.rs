//! What an echo measurement cost besides time: CPU seconds of client and server over the
//! measured window, and the server's resident memory per open connection, idle and busy.
//!
//! The server's memory can only be told apart from the client's when the server runs in a
//! process of its own ([`ServerSide::Child`]); in-process runs report CPU only.

use std::time::Instant;

use crate::cpu;
use crate::rss;

/// Name of the client runtime's worker threads (see [`crate::runtime::RuntimeThread`]).
pub(crate) const CLIENT_WORKERS: &str = "bench-client-w";
/// Name of an in-process server runtime's worker threads.
pub(crate) const SERVER_WORKERS: &str = "bench-server-w";

/// Where the server of one measurement runs, and so how its costs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerSide {
    /// On a runtime of this process: CPU from its worker threads, no memory figure.
    InProcess,
    /// In child process `pid`.
    Child(u32),
}

impl ServerSide {
    /// CPU seconds the server has used so far.
    pub(crate) fn cpu_secs(self) -> f64 {
        match self {
            Self::InProcess => cpu::threads_cpu_secs(SERVER_WORKERS),
            Self::Child(pid) => cpu::pid_cpu_secs(pid),
        }
    }

    /// The server's resident memory now, bytes; `None` in process.
    pub(crate) fn rss_bytes(self) -> Option<u64> {
        match self {
            Self::InProcess => None,
            Self::Child(pid) => rss::pid_rss_bytes(pid),
        }
    }
}

/// CPU seconds of both sides at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuReading {
    /// The client runtime's threads.
    pub(crate) client: f64,
    /// The server (its process, or its runtime's threads).
    pub(crate) server: f64,
}

impl CpuReading {
    /// Reads both sides now.
    pub(crate) fn now(server: ServerSide) -> Self {
        Self {
            client: cpu::threads_cpu_secs(CLIENT_WORKERS),
            server: server.cpu_secs(),
        }
    }
}

/// The server's resident memory at three moments of one measurement, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ServerMemory {
    /// Serving, before any client connected.
    pub(crate) base: u64,
    /// Every client connected (and its handshake done), no call in flight.
    pub(crate) idle: u64,
    /// The largest sample while the load ran.
    pub(crate) busy_peak: u64,
}

/// Costs of one measurement (one run of one impl at one point).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Costs {
    /// Client CPU seconds over the measured window.
    pub(crate) client_cpu_secs: Option<f64>,
    /// Server CPU seconds over the measured window.
    pub(crate) server_cpu_secs: Option<f64>,
    /// The server's memory, when it ran in a process of its own.
    pub(crate) server_memory: Option<ServerMemory>,
}

impl Costs {
    /// Costs from CPU readings at the start and end of the window (`None` if the window was not
    /// sampled) and the server's memory.
    pub(crate) fn new(
        window: Option<(CpuReading, CpuReading)>,
        server_memory: Option<ServerMemory>,
    ) -> Self {
        let (client_cpu_secs, server_cpu_secs) = match window {
            Some((from, to)) => (
                Some((to.client - from.client).max(0.0)),
                Some((to.server - from.server).max(0.0)),
            ),
            None => (None, None),
        };
        Self {
            client_cpu_secs,
            server_cpu_secs,
            server_memory,
        }
    }

    /// CPU seconds of client plus server per million calls, for `ops` calls in the window.
    pub(crate) fn cpu_secs_per_million(&self, ops: u64) -> Option<f64> {
        let total = self.client_cpu_secs? + self.server_cpu_secs?;
        per_million(total, ops)
    }

    /// The server's CPU seconds per million calls.
    pub(crate) fn server_cpu_secs_per_million(&self, ops: u64) -> Option<f64> {
        per_million(self.server_cpu_secs?, ops)
    }

    /// The server's memory per open connection with no call in flight, KiB (growth from
    /// before the clients connected, divided among them).
    pub(crate) fn server_kib_per_conn_idle(&self, connections: usize) -> Option<f64> {
        let memory = self.server_memory?;
        per_connection_kib(memory.idle, memory.base, connections)
    }

    /// The server's memory per open connection at its peak under load, KiB.
    pub(crate) fn server_kib_per_conn_busy(&self, connections: usize) -> Option<f64> {
        let memory = self.server_memory?;
        per_connection_kib(memory.busy_peak, memory.base, connections)
    }
}

fn per_million(secs: f64, ops: u64) -> Option<f64> {
    (ops > 0).then(|| secs / ops as f64 * 1e6)
}

fn per_connection_kib(at: u64, base: u64, connections: usize) -> Option<f64> {
    (connections > 0).then(|| at.saturating_sub(base) as f64 / 1024.0 / connections as f64)
}

/// Samples the client and server CPU at `from` and at `to` (the measured window) on the
/// current tokio runtime.
///
/// # Cancel safety
///
/// Dropping the future loses the readings and nothing else.
pub(crate) async fn sample_window(
    server: ServerSide,
    from: Instant,
    to: Instant,
) -> (CpuReading, CpuReading) {
    tokio::time::sleep_until(tokio::time::Instant::from_std(from)).await;
    let first = CpuReading::now(server);
    tokio::time::sleep_until(tokio::time::Instant::from_std(to)).await;
    (first, CpuReading::now(server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_call_and_per_connection_figures() {
        let from = CpuReading {
            client: 1.0,
            server: 2.0,
        };
        let to = CpuReading {
            client: 1.5,
            server: 3.0,
        };
        let memory = ServerMemory {
            base: 10 << 20,
            idle: (10 << 20) + 100 * 8192,
            busy_peak: (10 << 20) + 100 * 65536,
        };
        let costs = Costs::new(Some((from, to)), Some(memory));
        assert_eq!(costs.cpu_secs_per_million(500_000), Some(3.0));
        assert_eq!(costs.server_cpu_secs_per_million(500_000), Some(2.0));
        assert_eq!(costs.cpu_secs_per_million(0), None);
        assert_eq!(costs.server_kib_per_conn_idle(100), Some(8.0));
        assert_eq!(costs.server_kib_per_conn_busy(100), Some(64.0));
        // Memory that shrank below the base counts as none, not as a negative figure.
        let shrunk = Costs::new(
            None,
            Some(ServerMemory {
                base: 100,
                idle: 50,
                busy_peak: 50,
            }),
        );
        assert_eq!(shrunk.server_kib_per_conn_idle(1), Some(0.0));
        assert_eq!(shrunk.cpu_secs_per_million(10), None);
        assert_eq!(Costs::default().server_kib_per_conn_busy(10), None);
    }
}
