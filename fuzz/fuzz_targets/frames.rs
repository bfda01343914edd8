//! Fuzz target: see `peerwire_fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire_fuzzing::frames(data));
