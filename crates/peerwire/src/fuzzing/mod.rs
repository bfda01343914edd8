//! Entry points for the core's fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Each function takes arbitrary bytes and must never panic, hang or allocate without bound,
//! whatever the bytes. They live in the library (not in `fuzz/`) because the decoders are
//! crate-private. The targets of the service crates are theirs (`peerwire_raft::fuzzing`,
//! `peerwire_datastream::fuzzing`); `peerwire-fuzzing` gathers every target with its seeds.
//!
//! | target | what the bytes are |
//! |---|---|
//! | [`frames`] | a byte stream split at fuzzer-chosen points, through the frame decoder |
//! | [`handshake`] | what the peer sends during the hello exchange, or secret mode's handshake, on either side |

mod frames;
mod handshake;
mod runtime;

pub use frames::frames;
pub use handshake::{FUZZ_SECRET, handshake, secret_opening};
pub use runtime::block_on;
