//! Fuzz target: see `peerwire::fuzzing::datastream_packets`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| peerwire::fuzzing::datastream_packets(data));
