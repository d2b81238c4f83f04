#![no_main]
//! `cedargate::fuzzing::published`: see `src/fuzzing.rs` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cedargate::fuzzing::published(data));
