//! Baseline implementations the benchmarks compare peerwire against: each a fair,
//! straightforward use of its library with default settings.

pub(crate) mod accept;
pub(crate) mod raw_tcp;
pub(crate) mod raw_tcp_batched;
pub(crate) mod tarpc_echo;
pub(crate) mod tonic_echo;
