//! Fuzz target: see `peerwire_fuzzing::handshake`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire_fuzzing::handshake(data));
