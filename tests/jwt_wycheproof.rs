//! Project Wycheproof's JWS and JWK vectors against cedargate's key handling and signature
//! check (`KeyStore::from_jwks_json` + `UnverifiedJwt::parse` + `claims::verify_signature`,
//! the same path `Verifier` takes before it reads any claim).
//!
//! The payloads are raw JWS payloads, not JWT claims, so the claims checks are not involved.
//! Every vector is run, with three kinds of exception, each counted and printed:
//! - valid vectors signed with a shared secret (HS*): cedargate never accepts HMAC, by design
//!   (invalid HS* vectors are still run, and must be refused);
//! - valid vectors for algorithms cedargate does not support (ES512 on P-521);
//! - [`STRICTER`]: valid vectors cedargate refuses on purpose, each with its reason.
//!
//! The vectors live in `shared/vectors` beside the repository (override with
//! `CEDARGATE_VECTORS_DIR`).

// Test code: a failed expectation is a failed test, so panicking helpers are the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cedargate::claims::verify_signature;
use cedargate::config::SUPPORTED_ALGORITHMS;
use cedargate::jwks::KeyStore;
use cedargate::token::UnverifiedJwt;
use common::shared;
use serde_json::{json, Value};

const SIGNATURES: &str = "json_web_signature_test.json";
const KEYS: &str = "json_web_key_test.json";

/// Valid vectors that cedargate refuses on purpose.
const STRICTER: &[(&str, u64, &str)] = &[
    (
        SIGNATURES,
        346,
        "RFC 7520 figure 20 is PS384, but the key's JWK says `alg: PS256`; a key verifies only its own alg (RFC 7517 §4.4)",
    ),
    (SIGNATURES, 350, "the same as 346, with `key_ops: [verify]`"),
];

/// `CEDARGATE_VECTORS_DIR`, else `vectors` of the shared directory.
fn vectors_dir() -> PathBuf {
    std::env::var_os("CEDARGATE_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("vectors"))
}

fn load(file: &str) -> Value {
    let path = vectors_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set CEDARGATE_VECTORS_DIR to the Wycheproof vectors)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

/// A vector's key set as a JWKS: the JWS file gives single JWKs, the JWK file key sets.
fn as_jwks(keys: &Value) -> String {
    if keys.get("keys").is_some() {
        keys.to_string()
    } else {
        json!({ "keys": [keys] }).to_string()
    }
}

/// The `alg` of a vector's header, if it decodes at all.
fn header_alg(jws: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

#[derive(Debug, Default)]
struct Tally {
    checked: usize,
    valid_accepted: usize,
    invalid_refused: usize,
    symmetric_groups: usize,
    skipped_shared_secret: usize,
    skipped_unsupported: usize,
    stricter: Vec<(String, u64)>,
    failures: Vec<String>,
}

async fn run(file: &str, tally: &mut Tally) {
    let doc = load(file);
    for group in doc["testGroups"].as_array().unwrap() {
        let public = group.get("public").filter(|k| !k.is_null());
        // Groups with no public key are HMAC/AES groups: the "key" is a secret. Loading their
        // private set shows what cedargate makes of it (nothing usable: `oct` keys are skipped).
        let keys = public.or_else(|| group.get("private").filter(|k| !k.is_null()));
        if public.is_none() {
            tally.symmetric_groups += 1;
        }
        let store = keys.map(|k| KeyStore::from_jwks_json(&as_jwks(k)));
        for test in group["tests"].as_array().unwrap() {
            let id = test["tcId"].as_u64().unwrap();
            let jws = test["jws"].as_str().unwrap();
            let valid = test["result"] == "valid";
            let alg = header_alg(jws).unwrap_or_default();
            // A valid vector of a group without a public key is a MAC (one of them has a header
            // that only lenient decoders read, so the group tells more than its `alg`).
            if valid && (public.is_none() || alg.starts_with("HS")) {
                tally.skipped_shared_secret += 1;
                continue;
            }
            if valid && !SUPPORTED_ALGORITHMS.iter().any(|(name, _)| *name == alg) {
                tally.skipped_unsupported += 1;
                continue;
            }
            let accepted = match &store {
                Some(Ok(store)) => match UnverifiedJwt::parse(jws, 1 << 20) {
                    Ok(token) => verify_signature(store, &token).await.is_ok(),
                    Err(_) => false,
                },
                _ => false,
            };
            tally.checked += 1;
            match (valid, accepted) {
                (true, true) => tally.valid_accepted += 1,
                (false, false) => tally.invalid_refused += 1,
                (true, false) if STRICTER.iter().any(|(f, i, _)| *f == file && *i == id) => {
                    tally.stricter.push((file.to_owned(), id));
                }
                _ => tally.failures.push(format!(
                    "{file} #{id} ({}, {}): expected {}, cedargate {}",
                    group["comment"].as_str().unwrap_or("-"),
                    test["comment"].as_str().unwrap_or("-"),
                    test["result"],
                    if accepted {
                        "accepted it"
                    } else {
                        "refused it"
                    },
                )),
            }
        }
    }
}

#[tokio::test]
async fn wycheproof_jws_and_jwk_vectors() {
    let mut tally = Tally::default();
    run(SIGNATURES, &mut tally).await;
    run(KEYS, &mut tally).await;
    println!(
        "wycheproof: {} vectors checked ({} valid accepted, {} invalid refused); skipped: {} valid HS* \
         vectors (shared secrets, never accepted by design; {} symmetric-key groups in all), {} valid \
         vectors of unsupported algorithms; stricter on purpose: {:?}",
        tally.checked,
        tally.valid_accepted,
        tally.invalid_refused,
        tally.skipped_shared_secret,
        tally.symmetric_groups,
        tally.skipped_unsupported,
        tally.stricter,
    );
    assert!(
        tally.failures.is_empty(),
        "{} mismatches:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
    assert!(
        tally.checked > 300,
        "only {} vectors were checked",
        tally.checked
    );
    assert!(tally.valid_accepted > 0 && tally.invalid_refused > 0);
    assert!(
        tally.skipped_shared_secret > 0,
        "the HS* vectors were expected and counted"
    );
    // The exception list must not rot: every entry is still a vector that needs it.
    for (file, id, reason) in STRICTER {
        assert!(
            tally.stricter.iter().any(|(f, i)| f == file && i == id),
            "{file} #{id} is listed as stricter ({reason}) but no longer needs to be"
        );
    }
}

/// Key sets that publish private material (`d`) or only secrets must not yield any key.
#[test]
fn private_and_symmetric_key_sets_yield_no_verification_key() {
    let mut checked = 0;
    for file in [SIGNATURES, KEYS] {
        for group in load(file)["testGroups"].as_array().unwrap() {
            let Some(private) = group.get("private").filter(|k| !k.is_null()) else {
                continue;
            };
            let jwks: Value = serde_json::from_str(&as_jwks(private)).unwrap();
            let only_secret_material = jwks["keys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k.get("d").is_some() || k["kty"] == "oct");
            if only_secret_material {
                assert!(
                    KeyStore::from_jwks_json(&jwks.to_string()).is_err(),
                    "{file} group `{}`: a key set of private or secret keys was accepted",
                    group["comment"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10, "only {checked} private key sets were checked");
}
