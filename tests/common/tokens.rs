//! Tokens and the environments that trust them: tokens signed with the reference workloads'
//! RS256 test key (`../shared/bench/demo`, kid `bench-key-1`) or, under any kid, with a second
//! key (the large workload's, for rotations); the authorizer environment for the demo bundle
//! and for the gateway bundle (usage plan keys, roles in the context); Amazon Cognito access
//! and ID tokens and the environment for `examples/cognito`; and tokens from `cedargate token`
//! (the development issuer of a `serve` directory).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use super::paths::{repo, shared};

pub const ISSUER: &str = "https://cedargate-test.example.auth0.com/";
pub const AUDIENCE: &str = "https://api.cedargate.example";
pub const ROLES: &str = "https://cedargate.example/roles";
/// The claim [`env_for`] maps to a usage plan key.
pub const PLAN: &str = "https://cedargate.example/plan";
/// The usage plan key of [`PLAN`] `gold`.
pub const GOLD_KEY: &str = "cedargate-gold-tier-key-0001";
/// The usage plan key of every other plan, and of no plan.
pub const STANDARD_KEY: &str = "cedargate-standard-tier-key-0001";

/// The reference workloads' RS256 test key (kid `bench-key-1`), and its JWKS file.
pub fn bench_key() -> (jsonwebtoken::EncodingKey, PathBuf) {
    let dir = shared().join("bench/demo");
    let pem = std::fs::read(dir.join("signing-key.pem")).unwrap();
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        dir.join("jwks.json"),
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The large reference workload's RS256 test key (`../shared/bench/large`, also kid
/// `bench-key-1`) and its JWKS file: a second key, for rotations.
pub fn other_key() -> (jsonwebtoken::EncodingKey, PathBuf) {
    let dir = shared().join("bench/large");
    let pem = std::fs::read(dir.join("signing-key.pem")).unwrap();
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        dir.join("jwks.json"),
    )
}

/// A token signed with the bench key; `extra` claims are merged over sensible defaults.
pub fn mint(extra: Value) -> String {
    let (key, _) = bench_key();
    mint_with(&key, "bench-key-1", extra)
}

/// [`mint`] with another key, under `kid`.
pub fn mint_with(key: &jsonwebtoken::EncodingKey, kid: &str, extra: Value) -> String {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "sub": "auth0|alice",
        "iat": now() - 10,
        "exp": now() + 3600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

/// The environment for the repo's demo bundle with tokens from [`mint`].
pub fn demo_env() -> Vec<(String, String)> {
    let (_, jwks) = bench_key();
    vec![
        ("CEDARGATE_ISSUER".into(), ISSUER.into()),
        ("CEDARGATE_AUDIENCE".into(), AUDIENCE.into()),
        ("CEDARGATE_JWKS_FILE".into(), jwks.display().to_string()),
        (
            "CEDARGATE_POLICY_SOURCE".into(),
            repo().display().to_string(),
        ),
    ]
}

/// The demo environment on a bundle directory, with usage keys and the roles in the context.
pub fn env_for(bundle: &Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = demo_env()
        .into_iter()
        .filter(|(k, _)| k != "CEDARGATE_POLICY_SOURCE")
        .collect();
    env.push((
        "CEDARGATE_POLICY_SOURCE".into(),
        bundle.display().to_string(),
    ));
    env.push(("CEDARGATE_CONTEXT_CLAIMS".into(), format!("sub,{ROLES}")));
    env.push(("CEDARGATE_USAGE_KEY_CLAIM".into(), PLAN.into()));
    env.push((
        "CEDARGATE_USAGE_KEY_MAP".into(),
        format!("gold={GOLD_KEY},*={STANDARD_KEY}"),
    ));
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// The issuer of a Cognito user pool, as its tokens' `iss` (no trailing slash).
pub const COGNITO_ISSUER: &str = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Ab12Cd34E";
/// The pool's app client id: `client_id` of its access tokens, `aud` of its ID tokens.
pub const COGNITO_CLIENT: &str = "4tc0ab2kv1example7q3a1mhq1m";

/// `claims` exactly as given (no defaults), signed with the bench key.
pub fn sign(claims: &Value) -> String {
    let (key, _) = bench_key();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench-key-1".to_owned());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn merged(mut claims: Value, extra: Value) -> Value {
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// The claims of a Cognito access token of [`COGNITO_CLIENT`] (no `aud`); `extra` claims are
/// merged over them, a `null` removes one.
pub fn cognito_access_claims(extra: Value) -> Value {
    merged(
        json!({
            "sub": "0b6e1c1a-0000-4000-8000-000000000003",
            "iss": COGNITO_ISSUER,
            "client_id": COGNITO_CLIENT,
            "origin_jti": "5d1c0c5e-0000-4000-8000-00000000000a",
            "event_id": "5d1c0c5e-0000-4000-8000-00000000000b",
            "token_use": "access",
            "scope": "openid email pets/read pets/write",
            "auth_time": now() - 60,
            "cognito:groups": ["editor"],
            "exp": now() + 3600,
            "iat": now() - 60,
            "jti": "5d1c0c5e-0000-4000-8000-00000000000c",
            "username": "editor",
        }),
        extra,
    )
}

/// The claims of a Cognito ID token for the same user (`aud` = [`COGNITO_CLIENT`]).
pub fn cognito_id_claims(extra: Value) -> Value {
    merged(
        json!({
            "sub": "0b6e1c1a-0000-4000-8000-000000000003",
            "iss": COGNITO_ISSUER,
            "aud": COGNITO_CLIENT,
            "token_use": "id",
            "cognito:groups": ["editor"],
            "cognito:username": "editor",
            "email": "editor@example.com",
            "email_verified": true,
            "auth_time": now() - 60,
            "exp": now() + 3600,
            "iat": now() - 60,
            "jti": "5d1c0c5e-0000-4000-8000-00000000000d",
        }),
        extra,
    )
}

/// The authorizer environment for the Cognito pool and `examples/cognito`: its client id,
/// no audience, and `extra` (e.g. `CEDARGATE_TOKEN_USE`).
pub fn cognito_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let (_, jwks) = bench_key();
    let mut env: Vec<(String, String)> = vec![
        ("CEDARGATE_ISSUER".into(), COGNITO_ISSUER.into()),
        ("CEDARGATE_CLIENT_ID".into(), COGNITO_CLIENT.into()),
        ("CEDARGATE_JWKS_FILE".into(), jwks.display().to_string()),
        (
            "CEDARGATE_POLICY_SOURCE".into(),
            repo().join("examples/cognito").display().to_string(),
        ),
        (
            "CEDARGATE_CONTEXT_CLAIMS".into(),
            "sub,username,cognito:groups,scope".into(),
        ),
    ];
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// `cedargate token --user USER --port PORT ARGS` in `dir` (a token from the development
/// issuer whose key lives there).
pub fn token_in(dir: &Path, user: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["token", "--user", user, "--port", &port.to_string()])
        .args(args)
        .current_dir(dir)
        .env_remove("CEDARGATE_ISSUER")
        .env_remove("CEDARGATE_AUDIENCE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cedargate token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
