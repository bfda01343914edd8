//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Each function takes arbitrary bytes and must never panic, hang or allocate without bound,
//! whatever the bytes. Where a decoder succeeds, the target also checks an oracle: what was
//! decoded encodes back to something that decodes to the same value. The functions live in
//! the library (not in `fuzz/`) because the decoders are crate-private; the fuzz crate and
//! this crate's own smoke test (`tests/fuzz_smoke.rs`) call them the same way.
//!
//! | target | what the bytes are |
//! |---|---|
//! | [`frames`] | a byte stream split at fuzzer-chosen points, through the frame decoder |
//! | [`handshake`] | what the peer sends during the hello exchange, on either side |
//! | [`raft_batch`] | a raft lane's one-way body: a batch of raft-rs messages |
//! | [`datastream_packets`] | data-stream open requests, replies and aborts |
//! | [`connection`] | a whole inbound connection to a server with every lane |

mod connection;
mod datastream;
mod frames;
mod handshake;
mod raft;
mod runtime;
mod seeds;

pub use connection::{connection, connection_replies};
pub use datastream::datastream_packets;
pub use frames::frames;
pub use handshake::handshake;
pub use raft::raft_batch;
pub use seeds::{TARGETS, Target, seeds};
