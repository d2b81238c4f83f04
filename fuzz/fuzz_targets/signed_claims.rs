#![no_main]
//! `cedargate::fuzzing::signed_claims`: see `src/fuzzing.rs` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| cedargate::fuzzing::signed_claims(data));
