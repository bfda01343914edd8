//! Every fuzz target of peerwire, across its crates, with its seeds: the targets in `fuzz/`
//! and this crate's smoke test (`tests/fuzz_smoke.rs`) call them the same way.
//!
//! Each function takes arbitrary bytes and must never panic, hang or allocate without bound,
//! whatever the bytes. Where a decoder succeeds, the target also checks an oracle: what was
//! decoded encodes back to something that decodes to the same value.
//!
//! | target | where | what the bytes are |
//! |---|---|---|
//! | [`frames`] | `peerwire::fuzzing` | a byte stream split at fuzzer-chosen points, through the frame decoder |
//! | [`handshake`] | `peerwire::fuzzing` | what the peer sends during the hello exchange, on either side |
//! | [`raft_batch`] | `peerwire_raft::fuzzing` | a raft lane's one-way body: a batch of raft-rs messages |
//! | [`datastream_packets`] | `peerwire_datastream::fuzzing` | data-stream open requests, replies and aborts |
//! | [`connection`] | here | a whole inbound connection to a server with every lane mounted |

mod connection;
mod seeds;

pub use connection::{connection, connection_replies};
pub use peerwire::fuzzing::{frames, handshake};
pub use peerwire_datastream::fuzzing::datastream_packets;
pub use peerwire_raft::fuzzing::raft_batch;
pub use seeds::{TARGETS, Target, seeds};
