//! cedargate's token verification against a real OIDC issuer that nobody here wrote:
//! npm `oauth2-mock-server`, started by `tests/support/oidc/mock-issuer.mjs` on 127.0.0.1.
//!
//! Covers OIDC discovery, fetching the JWKS over HTTP, tokens from the issuer's token endpoint
//! with Auth0-shaped claims (trailing `/` in `iss`, namespaced roles, `scope` string,
//! `permissions` array), a wrong audience, an unknown `kid` (exactly one refetch per cooldown,
//! counted both by the key store and by the issuer), keys of one issuer refusing tokens in
//! another's name, audiences scoped to one issuer (`ISSUER=AUDIENCE`), and through the binary
//! (`invoke`, `explain`, `validate`) the same `sub` from two issuers as two principals under
//! `@qualify("iss")`, and as one with a warning from `validate` without it.
//!
//! Needs Node.js and `npm install --prefix tests/support` (or `npm ci --prefix tests/support`);
//! without them these tests fail and say so.

// Test code: a failed expectation is a failed test, so panicking helpers are the point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use cedargate::claims::{ClaimsError, Verifier};
use cedargate::config::JwtConfig;
use cedargate::jwks::{JwksError, KeyStore};
use cedargate::token::UnverifiedJwt;
use common::{repo, AUDIENCE, ROLES};
use serde_json::{json, Value};

/// One oauth2-mock-server process; killed when dropped.
struct Issuer {
    child: Child,
    /// The issuer identifier, exactly as it appears in `iss`.
    url: String,
    /// The issuer URL without a trailing `/`, for requests.
    base: String,
    http: reqwest::Client,
}

fn support_dir() -> PathBuf {
    repo().join("tests/support")
}

impl Issuer {
    fn start(args: &[&str]) -> Self {
        let support = support_dir();
        assert!(
            support
                .join("node_modules/oauth2-mock-server/package.json")
                .is_file(),
            "oauth2-mock-server is not installed: run `npm install --prefix tests/support` \
             (or `npm ci --prefix tests/support`) and run the tests again"
        );
        let mut child = Command::new("node")
            .arg(support.join("oidc/mock-issuer.mjs"))
            .args(args)
            .current_dir(&support)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `node` (is Node.js installed?): {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Some(url)) if url.starts_with("http://127.0.0.1:") => url,
            other => {
                let _ = child.kill();
                panic!("the mock issuer did not print its URL: {other:?}");
            }
        };
        let base = url.trim_end_matches('/').to_owned();
        Self {
            child,
            url,
            base,
            http: reqwest::Client::new(),
        }
    }

    /// A token from the issuer's token endpoint (client credentials), with extra form fields
    /// understood by mock-issuer.mjs.
    async fn token(&self, fields: &[(&str, &str)]) -> String {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", "pets-app")
            .extend_pairs(fields)
            .finish();
        let response: Value = self
            .http
            .post(format!("{}/token", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        response["access_token"].as_str().unwrap().to_owned()
    }

    /// How many times the issuer served its JWKS.
    async fn jwks_requests(&self) -> u64 {
        let response: Value = self
            .http
            .get(format!("{}/test/jwks-requests", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["count"].as_u64().unwrap()
    }
}

impl Drop for Issuer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Configuration as the Lambda would read it from its environment.
fn config(issuers: &[&Issuer], algorithms: &str, cooldown_seconds: &str) -> JwtConfig {
    let issuers: Vec<&str> = issuers.iter().map(|i| i.url.as_str()).collect();
    let env: BTreeMap<String, String> = [
        ("CEDARGATE_ISSUER", issuers.join(",")),
        ("CEDARGATE_AUDIENCE", AUDIENCE.to_owned()),
        ("CEDARGATE_ALGORITHMS", algorithms.to_owned()),
        (
            "CEDARGATE_JWKS_COOLDOWN_SECONDS",
            cooldown_seconds.to_owned(),
        ),
        ("CEDARGATE_HTTP_TIMEOUT_MS", "10000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    JwtConfig::from_env(&env).unwrap()
}

async fn verify(
    verifier: &Verifier,
    token: &str,
) -> Result<cedargate::claims::VerifiedClaims, ClaimsError> {
    let jwt = UnverifiedJwt::parse(&format!("Bearer {token}"), 16 * 1024).unwrap();
    verifier.verify(&jwt).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_from_a_real_issuer() {
    let issuer = Issuer::start(&["--trailing-slash"]);
    assert!(
        issuer.url.ends_with('/'),
        "Auth0-style issuer: {}",
        issuer.url
    );
    let cfg = config(&[&issuer], "RS256", "2");
    let keys = Arc::new(KeyStore::new(&cfg).await.unwrap());
    let verifier = Verifier::new(&cfg, keys.clone());
    assert_eq!(
        keys.fetch_count(),
        0,
        "keys are fetched on first need, not at start"
    );

    // A good token, Auth0-shaped.
    let token = issuer
        .token(&[
            ("aud", AUDIENCE),
            ("sub", "auth0|alice"),
            ("scope", "read:pets write:pets"),
            ("roles", "admin,vet"),
            ("permissions", "read:pets,write:pets"),
        ])
        .await;
    let claims = verify(&verifier, &token).await.unwrap();
    assert_eq!(claims.sub(), "auth0|alice");
    assert_eq!(claims.issuer(), issuer.url);
    assert_eq!(claims.get("scope"), Some(&json!("read:pets write:pets")));
    assert_eq!(claims.get(ROLES), Some(&json!(["admin", "vet"])));
    assert_eq!(
        claims.get("permissions"),
        Some(&json!(["read:pets", "write:pets"]))
    );
    assert!(claims.expires_at() > 0);
    assert_eq!(keys.fetch_count(), 1);
    assert_eq!(issuer.jwks_requests().await, 1);

    // The same issuer, the same key, another API's audience.
    let other_api = issuer
        .token(&[("aud", "https://other-api.example"), ("sub", "auth0|alice")])
        .await;
    let err = verify(&verifier, &other_api).await.unwrap_err();
    assert!(matches!(err, ClaimsError::Audience(_)), "{err}");
    // No audience at all (the server's default for client credentials without `aud`).
    let no_aud = issuer.token(&[("sub", "auth0|alice")]).await;
    assert!(verify(&verifier, &no_aud).await.is_err());
    assert_eq!(keys.fetch_count(), 1, "refusing claims fetches nothing");

    // A kid the JWKS does not know. Within the cooldown of the first fetch: no refetch.
    let rotated = issuer
        .token(&[
            ("aud", AUDIENCE),
            ("sub", "auth0|alice"),
            ("kid", "rotated-key"),
        ])
        .await;
    let err = verify(&verifier, &rotated).await.unwrap_err();
    assert_eq!(
        err,
        ClaimsError::Key(JwksError::UnknownKid("rotated-key".to_owned()))
    );
    assert_eq!(keys.fetch_count(), 1);

    // After the cooldown: exactly one refetch, however many callers ask at once.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let verifier = Arc::new(verifier);
    let attempts: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, rotated) = (verifier.clone(), rotated.clone());
            tokio::spawn(async move { verify(&verifier, &rotated).await.is_err() })
        })
        .collect();
    for attempt in attempts {
        assert!(
            attempt.await.unwrap(),
            "a token with an unknown kid was accepted"
        );
    }
    assert!(verify(&verifier, &rotated).await.is_err());
    assert_eq!(keys.fetch_count(), 2, "one refetch for the unknown kid");
    assert_eq!(
        issuer.jwks_requests().await,
        2,
        "the issuer saw exactly one more JWKS request"
    );

    // Known keys keep working without fetching.
    assert!(verify(&verifier, &token).await.is_ok());
    assert_eq!(keys.fetch_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_each_vouch_for_their_own_tokens() {
    let rsa = Issuer::start(&["--trailing-slash"]);
    let ec = Issuer::start(&["--alg", "ES256"]);
    let cfg = config(&[&rsa, &ec], "RS256,ES256", "30");
    let keys = Arc::new(KeyStore::new(&cfg).await.unwrap());
    let verifier = Verifier::new(&cfg, keys.clone());

    for issuer in [&rsa, &ec] {
        let token = issuer
            .token(&[("aud", AUDIENCE), ("sub", "auth0|bob")])
            .await;
        let claims = verify(&verifier, &token).await.unwrap();
        assert_eq!(claims.issuer(), issuer.url);
    }

    // Each issuer's key signing a token in the other's name.
    for (signer, named) in [(&ec, &rsa), (&rsa, &ec)] {
        let forged = signer
            .token(&[("aud", AUDIENCE), ("sub", "auth0|bob"), ("iss", &named.url)])
            .await;
        let err = verify(&verifier, &forged).await.unwrap_err();
        assert!(matches!(err, ClaimsError::KeyOfOtherIssuer { .. }), "{err}");
    }
    // Discovery once per issuer, one JWKS fetch each.
    assert_eq!(
        (rsa.jwks_requests().await, ec.jwks_requests().await),
        (1, 1)
    );
    assert_eq!(keys.fetch_count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_that_names_itself_differently_is_refused() {
    // The server says `http://127.0.0.1:PORT/`; configured without the slash, discovery must
    // refuse it (OIDC Discovery §4.3: exact match), and no key is fetched.
    let issuer = Issuer::start(&["--trailing-slash"]);
    let env: BTreeMap<&str, &str> = [
        ("CEDARGATE_ISSUER", issuer.base.as_str()),
        ("CEDARGATE_AUDIENCE", AUDIENCE),
    ]
    .into_iter()
    .collect();
    let cfg = JwtConfig::from_env(&env).unwrap();
    let keys = Arc::new(KeyStore::new(&cfg).await.unwrap());
    let verifier = Verifier::new(&cfg, keys.clone());
    let token = issuer
        .token(&[("aud", AUDIENCE), ("sub", "auth0|carol")])
        .await;
    let err = verify(&verifier, &token).await.unwrap_err();
    assert!(err.to_string().contains("names issuer"), "{err}");
    assert_eq!(keys.fetch_count(), 0);
    assert_eq!(issuer.jwks_requests().await, 0);
}

/// A bundle whose one policy lets `alice` of `issuer` in, by id; with `qualify`, ids are
/// `<iss>|<sub>`.
fn alice_bundle(name: &str, issuer: &Issuer, qualify: bool) -> PathBuf {
    let dir = common::fresh_dir(name);
    std::fs::create_dir_all(dir.join("schema")).unwrap();
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let annotation = if qualify { r#"@qualify("iss") "# } else { "" };
    std::fs::write(
        dir.join("schema/api.cedarschema"),
        format!(
            r#"@claim("sub") {annotation}entity User;
entity Api;
action "GET /pets" appliesTo {{ principal: [User], resource: [Api] }};
action "GET /pets/{{petId}}" appliesTo {{ principal: [User], resource: [Api] }};
"#
        ),
    )
    .unwrap();
    let alice = if qualify {
        format!("{}|alice", issuer.url)
    } else {
        "alice".to_owned()
    };
    std::fs::write(
        dir.join("policies/alice.cedar"),
        format!("@id(\"alice\")\npermit(principal == User::\"{alice}\", action, resource);\n"),
    )
    .unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_issuers_have_their_own_audiences_and_principals() {
    let a = Issuer::start(&["--trailing-slash"]);
    let b = Issuer::start(&["--alg", "ES256"]);
    let issuers = format!("{},{}", a.url, b.url);
    let audiences = format!("{}=api-a, {}=api-b", a.url, b.url);

    // Each issuer's audience is good for its own tokens only.
    let env: BTreeMap<&str, &str> = [
        ("CEDARGATE_ISSUER", issuers.as_str()),
        ("CEDARGATE_AUDIENCE", audiences.as_str()),
        ("CEDARGATE_ALGORITHMS", "RS256,ES256"),
        ("CEDARGATE_HTTP_TIMEOUT_MS", "10000"),
    ]
    .into_iter()
    .collect();
    let cfg = JwtConfig::from_env(&env).unwrap();
    let verifier = Verifier::new(&cfg, Arc::new(KeyStore::new(&cfg).await.unwrap()));
    for (issuer, aud, ok) in [
        (&a, "api-a", true),
        (&b, "api-b", true),
        (&a, "api-b", false),
        (&b, "api-a", false),
    ] {
        let token = issuer.token(&[("aud", aud), ("sub", "alice")]).await;
        match (verify(&verifier, &token).await, ok) {
            (Ok(claims), true) => assert_eq!(claims.issuer(), issuer.url),
            (Err(ClaimsError::Audience(found)), false) => assert_eq!(found, aud),
            (other, _) => panic!("{} with `{aud}`: {other:?}", issuer.url),
        }
    }

    // Through the binary: `alice` of A and `alice` of B, each with its own audience.
    let token_a = a.token(&[("aud", "api-a"), ("sub", "alice")]).await;
    let token_b = b.token(&[("aud", "api-b"), ("sub", "alice")]).await;
    let run = |bundle: &PathBuf| {
        let env: Vec<(String, String)> = [
            ("CEDARGATE_ISSUER", issuers.clone()),
            ("CEDARGATE_AUDIENCE", audiences.clone()),
            ("CEDARGATE_ALGORITHMS", "RS256,ES256".to_owned()),
            ("CEDARGATE_POLICY_SOURCE", bundle.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let mut pipe = common::InvokePipe::start(&env);
        let arn = common::demo_arn("GET/pets");
        [&token_a, &token_b].map(|token| {
            let answer = pipe.send(&common::token_event(token, "GET/pets"));
            let allowed = common::allows(&answer["policyDocument"], &arn);
            (answer["principalId"].as_str().unwrap().to_owned(), allowed)
        })
    };
    // Under `@qualify("iss")`: two principals, and the policy names A's.
    let qualified = alice_bundle("issuers-qualified", &a, true);
    assert_eq!(
        run(&qualified),
        [
            (format!("{}|alice", a.url), true),
            (format!("{}|alice", b.url), false)
        ]
    );
    // `explain` shows the principal as built, qualified.
    let event = qualified.join("event-b.json");
    std::fs::write(
        &event,
        common::token_event(&token_b, "GET/pets").to_string(),
    )
    .unwrap();
    let explained = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["explain", "--json", "--event"])
        .arg(&event)
        .env("CEDARGATE_ISSUER", &issuers)
        .env("CEDARGATE_AUDIENCE", &audiences)
        .env("CEDARGATE_ALGORITHMS", "RS256,ES256")
        .env("CEDARGATE_POLICY_SOURCE", &qualified)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&explained.stdout);
    assert!(
        stdout.contains(&format!("{}|alice", b.url)),
        "{stdout}\n{}",
        String::from_utf8_lossy(&explained.stderr)
    );

    // By default the id is `sub` alone: both are `User::"alice"`, and `validate`, told of
    // both issuers, says so and how to fix it.
    let plain = alice_bundle("issuers-plain", &a, false);
    assert_eq!(
        run(&plain),
        [("alice".to_owned(), true), ("alice".to_owned(), true)]
    );
    let validate = |bundle: &PathBuf| {
        Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .args(["validate", "--bundle"])
            .arg(bundle)
            .env("CEDARGATE_ISSUER", &issuers)
            .output()
            .unwrap()
    };
    let out = validate(&plain);
    // miette wraps long messages: read them as one line.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("policy `policies/alice.cedar#alice` tells principals apart by id")
            && stderr.contains("@qualify(\"iss\")"),
        "{stderr}"
    );
    let out = validate(&qualified);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("tells principals apart"),
        "{stderr}"
    );
}
