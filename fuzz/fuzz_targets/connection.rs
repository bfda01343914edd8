//! Fuzz target: see `peerwire_fuzzing::connection`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerwire_fuzzing::connection(data);
});
