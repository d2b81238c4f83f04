#![no_main]
//! `cedargate::fuzzing::policy_tests`: see `src/fuzzing.rs` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cedargate::fuzzing::policy_tests(data));
