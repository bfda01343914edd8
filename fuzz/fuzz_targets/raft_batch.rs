//! Fuzz target: see `peerwire::fuzzing::raft_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::raft_batch(data));
