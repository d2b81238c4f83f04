//! Entry points for the fuzz targets in `fuzz/`, compiled only under `cargo fuzz` (which sets
//! `--cfg fuzzing`): nothing here exists in a normal build.
//!
//! Stage: tooling. Inputs: untrusted bytes, as a client, an identity provider or whoever can
//! write the policy object would send them. Outputs: none; each entry point runs one parser on
//! the bytes and asserts what must hold of its answer beyond "no panic" (a value it claims to
//! have read is there, an error never quotes a credential, a re-encoded value reads back the
//! same). A broken invariant panics, which is how a fuzzer reports it.
//!
//! Invariants: the same input always takes the same path (no clock, no randomness per call:
//! fixed keys and a fixed "now" are made once per process).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::arn::MethodArn;
use crate::bundle::{BundleFiles, Snapshot};
use crate::claims::Verifier;
use crate::config::JwtConfig;
use crate::event::AuthzRequest;
use crate::jwks::KeyStore;
use crate::policy_tests::format;
use crate::policy_tests::Names;
use crate::store::published::Published;
use crate::token::UnverifiedJwt;

/// The token size cap the targets parse with (the default of `CEDARGATE_MAX_TOKEN_BYTES`).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Strings under these event members are credentials or client-written header values: no
/// error or skipped-header report may quote them.
const SECRET_MEMBERS: [&str; 6] = [
    "authorizationToken",
    "headers",
    "multiValueHeaders",
    "identitySource",
    "queryStringParameters",
    "multiValueQueryStringParameters",
];

fn text(input: &[u8]) -> Option<&str> {
    std::str::from_utf8(input).ok()
}

/// A bearer value (`Authorization` header, TOKEN event token) through the structural parser.
pub fn bearer(input: &[u8]) {
    let Some(value) = text(input) else { return };
    match UnverifiedJwt::parse(value, MAX_TOKEN_BYTES) {
        Ok(jwt) => {
            let token = jwt.as_str();
            // What it accepted is a part of what was sent, within the cap, a compact JWS.
            assert!(value.contains(token));
            assert!(token.len() <= MAX_TOKEN_BYTES);
            let segments: Vec<&str> = token.split('.').collect();
            assert_eq!(segments.len(), 3, "{token}");
            assert!(segments.iter().all(|s| s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')));
            assert!(!segments[0].is_empty() && !segments[2].is_empty());
            // The payload it hands on is the second segment, decoded.
            assert_eq!(URL_SAFE_NO_PAD.decode(segments[1]).unwrap(), jwt.payload());
            // The header it read is a JSON object naming that algorithm (never `none`).
            let header: Value =
                serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segments[0]).unwrap()).unwrap();
            assert_eq!(
                header["alg"].as_str(),
                Some(crate::token::alg_name(jwt.alg()))
            );
            assert_eq!(header.get("kid").and_then(Value::as_str), jwt.kid());
        }
        Err(e) => {
            // An error message never carries the token (it ends up in logs).
            let message = e.to_string();
            let token = value.trim().rsplit(' ').next().unwrap_or_default();
            assert!(
                token.len() < 24 || !message.contains(token),
                "the error quotes the token: {message}"
            );
        }
    }
}

/// The fixed key, issuer and clock of [`signed_claims`].
struct Signer {
    pair: Ed25519KeyPair,
    verifier: Verifier,
    runtime: tokio::runtime::Runtime,
}

const ISSUER: &str = "https://issuer.example/";
const AUDIENCE: &str = "https://api.example";
/// "Now" for [`signed_claims`]: 2026-12-01T00:00:00Z.
const NOW: u64 = 1_796_083_200;
const LEEWAY: u64 = 5;

fn signer() -> &'static Signer {
    static SIGNER: OnceLock<Signer> = OnceLock::new();
    SIGNER.get_or_init(|| {
        // A fixed seed: the same bytes always sign the same way.
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let jwks = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "k1", "alg": "EdDSA", "use": "sig"}]});
        let keys = KeyStore::from_jwks_json(&jwks.to_string()).unwrap();
        let cfg = JwtConfig {
            issuers: vec![ISSUER.to_owned()],
            audiences: vec![AUDIENCE.to_owned()],
            client_ids: Vec::new(),
            per_issuer: Default::default(),
            token_use: crate::config::TokenUse::Access,
            jwks_url: None,
            jwks_file: None,
            public_key_file: None,
            algorithms: vec![jsonwebtoken::Algorithm::EdDSA],
            leeway: Duration::from_secs(LEEWAY),
            max_token_bytes: MAX_TOKEN_BYTES,
            jwks_cooldown: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
            http_timeout: Duration::from_secs(3),
        };
        let verifier = Verifier::new(&cfg, Arc::new(keys));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        Signer {
            pair,
            verifier,
            runtime,
        }
    })
}

/// A payload signed by a trusted key, through every claim check. Whatever the verifier
/// accepts must be what a plain JSON reading of the payload says: the configured issuer, an
/// audience of ours, a non-empty subject, not expired at "now", nothing from the future.
pub fn signed_claims(payload: &[u8]) {
    let s = signer();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"EdDSA","typ":"JWT","kid":"k1"}"#);
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = URL_SAFE_NO_PAD.encode(s.pair.sign(signing_input.as_bytes()).as_ref());
    let token = format!("{signing_input}.{signature}");
    let Ok(jwt) = UnverifiedJwt::parse(&token, usize::MAX) else {
        panic!("a well-formed token was refused")
    };
    let Ok(verified) = s.runtime.block_on(s.verifier.verify_at(&jwt, NOW)) else {
        return;
    };
    let plain: Value = serde_json::from_slice(payload).expect("accepted claims that are not JSON");
    assert_eq!(plain["iss"].as_str(), Some(ISSUER));
    assert_eq!(verified.issuer(), ISSUER);
    let sub = plain["sub"]
        .as_str()
        .expect("accepted without a string sub");
    assert!(!sub.is_empty());
    assert_eq!(verified.sub(), sub);
    let aud_ok = match &plain["aud"] {
        Value::String(a) => a == AUDIENCE,
        Value::Array(a) => a.iter().any(|v| v == AUDIENCE),
        _ => false,
    };
    assert!(aud_ok, "accepted an audience not ours: {}", plain["aud"]);
    let exp = plain["exp"]
        .as_f64()
        .expect("accepted without a numeric exp");
    assert!(
        exp + LEEWAY as f64 > NOW as f64,
        "accepted an expired token"
    );
    for claim in ["nbf", "iat"] {
        if let Some(t) = plain.get(claim) {
            let t = t.as_f64().expect("accepted a non-numeric date");
            assert!(t <= (NOW + LEEWAY) as f64, "accepted {claim} in the future");
        }
    }
    // Every member the verifier kept reads the same in plain JSON (no duplicate member can
    // make the two readings differ).
    for (name, value) in verified.as_map() {
        assert_eq!(&plain[name.as_str()], value, "{name}");
    }
}

/// The strings of an event: those under a credential-bearing member (`secret`) and the others.
fn strings(value: &Value, under_secret: bool, secret: &mut Vec<String>, public: &mut Vec<String>) {
    match value {
        Value::String(s) if under_secret => secret.push(s.clone()),
        Value::String(s) => public.push(s.clone()),
        Value::Array(items) => items
            .iter()
            .for_each(|v| strings(v, under_secret, secret, public)),
        Value::Object(map) => {
            for (k, v) in map {
                let under = under_secret || SECRET_MEMBERS.contains(&k.as_str());
                // Member names are the event's structure (header names are reported by name).
                public.push(k.clone());
                strings(v, under, secret, public);
            }
        }
        _ => {}
    }
}

/// An authorizer event of any flavour (JSON in).
pub fn event(input: &[u8]) {
    let Some(json) = text(input) else { return };
    let parsed = AuthzRequest::from_json(json);
    let value = serde_json::from_str::<Value>(json).ok();
    let (mut secret, mut public) = (Vec::new(), Vec::new());
    if let Some(value) = &value {
        strings(value, false, &mut secret, &mut public);
    }
    // Token-like values: long enough that no report's own words could spell one, and not also
    // written in a member a report may name (the ARN, a member name).
    secret.retain(|s| {
        s.len() >= 16
            && !s.contains(char::is_whitespace)
            && !public.iter().any(|p| p.contains(s.as_str()))
    });
    let never_quotes = |message: &str| {
        for s in &secret {
            assert!(
                !message.contains(s.as_str()),
                "a report quotes a client-written value: {message}"
            );
        }
    };
    match parsed {
        Err(e) => never_quotes(&e.to_string()),
        Ok(request) => {
            for skipped in &request.skipped_headers {
                never_quotes(&skipped.to_string());
                // A skipped header is named only when its name is one of the event's header
                // names; otherwise only its length is kept.
                if let crate::event::SkippedHeader::BadValue(name) = skipped {
                    assert!(
                        public.iter().any(|p| p.eq_ignore_ascii_case(name)),
                        "reported a header name the event does not have: {name}"
                    );
                }
            }
            // Kept headers are header-safe: no control characters reach the decision.
            for (_, v) in &request.headers {
                assert!(
                    !v.bytes().any(|b| b.is_ascii_control() && b != b'\t'),
                    "{v:?}"
                );
            }
            // The ARN it read writes out and reads back as the same ARN.
            let again = MethodArn::parse(&request.arn.to_string()).unwrap();
            assert_eq!(again.to_string(), request.arn.to_string());
            // The same event decoded first as a JSON value reads the same way.
            let other = AuthzRequest::from_value(&value.unwrap()).unwrap();
            assert_eq!(other.flavor, request.flavor);
            assert_eq!(other.arn.to_string(), request.arn.to_string());
            assert_eq!(other.route_key, request.route_key);
        }
    }
}

/// A method ARN (`methodArn`, `routeArn`).
pub fn arn(input: &[u8]) {
    let Some(text) = text(input) else { return };
    if let Ok(arn) = MethodArn::parse(text) {
        // What it read writes out and reads back unchanged; the prefix is a prefix of it.
        let written = arn.to_string();
        let again = MethodArn::parse(&written).unwrap();
        assert_eq!(again.to_string(), written);
        assert!(written.starts_with(arn.prefix()));
        assert_eq!(again.prefix(), arn.prefix());
    }
}

/// A published bundle object, as read from S3. Raw bytes first; then, so the fuzzer can get
/// past the digest, the same files sealed with a correct digest, which must read back as they
/// were and compile without panicking.
pub fn published(input: &[u8]) {
    if let Ok((_, files)) = Published::decode(input) {
        let _ = Snapshot::compile(files, "fuzz");
        return;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(input) else {
        return;
    };
    let mut files = BundleFiles::default();
    if let Some(Value::Object(members)) = object.get("files") {
        for (path, content) in members {
            if let Value::String(content) = content {
                files.files.insert(path.clone(), content.clone());
            }
        }
    }
    let sealed = Published::new(
        &files,
        crate::store::published::Built {
            at: "2026-12-01T00:00:00Z".into(),
            by: "fuzz".into(),
            git: None,
            from: None,
        },
        crate::store::published::Summary::default(),
    );
    match Published::decode(sealed.to_json().as_bytes()) {
        Ok((_, back)) => {
            assert_eq!(back, files);
            let _ = Snapshot::compile(back, "fuzz");
        }
        // Refused only for a path outside the bundle's directories.
        Err(crate::store::published::PublishedError::Path(_)) => {}
        Err(e) => panic!("a sealed object was refused: {e}"),
    }
}

/// The repository's own bundle (schema, policies, entities), compiled once, with its names.
fn demo() -> &'static (Snapshot, Names) {
    static DEMO: OnceLock<(Snapshot, Names)> = OnceLock::new();
    DEMO.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = BundleFiles::read_dir(root).unwrap();
        // Its own tests are not part of what the target reads.
        files.files.retain(|p, _| !p.starts_with("policy-tests/"));
        let snapshot = Snapshot::compile(files, "demo").map(|(s, _)| s).unwrap();
        let names = Names::of(&snapshot);
        (snapshot, names)
    })
}

/// A policy-test file (YAML) against the demo bundle: parsed, every problem rendered as the
/// CLI renders it, and each case that resolves run through the core.
pub fn policy_tests(input: &[u8]) {
    let Some(text) = text(input) else { return };
    let (snapshot, names) = demo();
    let catalog = names.catalog();
    match format::parse("policy-tests/fuzz.yaml", text, catalog) {
        Ok(suite) => {
            for case in suite.cases.iter().take(8) {
                let (_, actual) = crate::policy_tests::run_case(snapshot, case);
                if let Some(actual) = actual {
                    assert_eq!(actual.len(), catalog.routes.len());
                }
            }
        }
        Err(reports) => {
            let handler = miette::GraphicalReportHandler::new();
            for report in reports {
                let mut out = String::new();
                handler.render_report(&mut out, report.as_ref()).unwrap();
                assert!(!out.is_empty());
            }
        }
    }
}

/// A JWKS document, as a key endpoint would answer it: keys are taken or refused, never a
/// panic; every key it keeps is usable for an algorithm it names.
pub fn jwks(input: &[u8]) {
    let Some(text) = text(input) else { return };
    if let Ok(store) = KeyStore::from_jwks_json(text) {
        for key in store.fixed_keys() {
            assert!(!key.algorithms().is_empty());
            for alg in key.algorithms() {
                assert!(key.fits(*alg));
            }
        }
    }
}
