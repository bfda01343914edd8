//! Implementations of the library under test (the baselines live in `crate::baseline`).

pub(crate) mod macro_echo;
pub(crate) mod metered;
pub(crate) mod peerwire_echo;
pub(crate) mod rpcenv_echo;
pub(crate) mod service_echo;
