//! Fuzz target: see `peerwire_fuzzing::raft_batch`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire_fuzzing::raft_batch(data));
