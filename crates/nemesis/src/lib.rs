//! `peerwire-nemesis`: peerwire-kv on real (namespaced) hosts under a Jepsen-style nemesis.
//!
//! A run puts each node in a network namespace of its own on a private bridge ([`netns`]),
//! starts them as real processes ([`cluster`]), runs concurrent clients through the HTTP API
//! and the native client ([`workload`]) while a seeded schedule ([`schedule`]) of faults
//! ([`nemesis`]: partitions as nftables rules ([`partition`]), links down, `kill -9`,
//! `SIGSTOP`) runs, then checks the recorded history for linearizability per key and for lost
//! acknowledged writes ([`check`]) and prints a summary ([`summary`]). [`harness`] ties a run
//! together; the `peerwire-nemesis` program is its command line.

pub mod check;
pub mod cluster;
pub mod harness;
pub mod history;
pub mod http;
pub mod nemesis;
pub mod netns;
pub mod partition;
pub mod schedule;
pub mod summary;
pub mod workload;
