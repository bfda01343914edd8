//! Fuzz target: see `peerwire::fuzzing::connection`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    peerwire::fuzzing::connection(data);
});
