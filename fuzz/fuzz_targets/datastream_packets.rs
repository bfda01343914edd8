//! Fuzz target: see `peerwire_fuzzing::datastream_packets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire_fuzzing::datastream_packets(data));
