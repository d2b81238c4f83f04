#![no_main]
//! `cedargate::fuzzing::bearer`: see `src/fuzzing.rs` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cedargate::fuzzing::bearer(data));
