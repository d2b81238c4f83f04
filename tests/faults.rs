//! Faults of cedargate's two remote peers, from a security review: the key endpoint (JWKS)
//! and the policy source (S3).
//!
//! The key endpoint is a small real HTTP server written here, on 127.0.0.1, that switches
//! behaviour — normal JWKS, down (connection refused), slower than `CEDARGATE_HTTP_TIMEOUT_MS`,
//! garbage, a body bigger than any JWKS (declared or streamed without end), a redirect to
//! itself, rotated keys — and counts the requests it gets. Tokens are verified in-process
//! through the library's `Verifier` (as `jwt_oidc_issuer.rs` does), and once through the
//! `cedargate invoke` binary, whose log is scanned for the tokens.
//!
//! What must hold: no verification waits longer than the timeout (checked with a generous
//! bound, never a tight one: the machines are shared), refetches stay within
//! `CEDARGATE_JWKS_COOLDOWN_SECONDS` (counted at the server and by the key store), keys
//! already known keep verifying throughout, and no log line holds a token or its signature.
//!
//! The policy source is moto (the real S3-protocol server of `s3_store.rs`) behind a small
//! fault-injecting HTTP proxy written here, which forwards to moto and then delays the answer,
//! trickles the body, streams it past `CEDARGATE_MAX_BUNDLE_BYTES` (chunked, or behind a
//! `content-length` that lies) or hands out a new ETag for the same content. cedargate runs as
//! a warm `cedargate invoke` pipe pointed at the proxy (`AWS_ENDPOINT_URL_S3`).
//!
//! Needs `moto_server` (see tests/README.md).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cedargate::claims::{ClaimsError, VerifiedClaims, Verifier};
use cedargate::config::JwtConfig;
use cedargate::jwks::{JwksError, KeyStore};
use cedargate::token::UnverifiedJwt;
use common::{
    allows, bench_key, bundle_copy, demo_arn, demo_env, mint_with, other_key, publish, token_event,
    InvokePipe, Moto, AUDIENCE, ISSUER, ROLES,
};
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------------------------------------
// Plain HTTP/1.1 on a socket: just enough for the two peers below.

/// The request head (up to the blank line) and whatever body bytes came with it; `None` when
/// the client hung up first.
async fn read_head(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            buf.truncate(end);
            return Some((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
}

/// Writes `data` again and again until `limit` bytes went out or the client hung up; the
/// bytes written. `chunked` frames each piece as an HTTP chunk.
async fn stream_until_hangup(
    stream: &mut TcpStream,
    data: &[u8],
    chunked: bool,
    limit: u64,
) -> u64 {
    let mut piece = Vec::new();
    if chunked {
        piece.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    piece.extend_from_slice(data);
    if chunked {
        piece.extend_from_slice(b"\r\n");
    }
    let mut sent = 0u64;
    while sent < limit {
        if stream.write_all(&piece).await.is_err() {
            break;
        }
        sent += data.len() as u64;
    }
    sent
}

/// A body no sane JWKS or bundle comes near: when it is read to its end, nothing caps it.
const ENDLESS: u64 = 4 << 30;

/// JSON whitespace: a document followed by any amount of it still parses, so only a size cap
/// stops a body padded with it.
fn padding() -> Vec<u8> {
    vec![b' '; 64 * 1024]
}

// ---------------------------------------------------------------------------------------------
// The key endpoint.

/// What the key endpoint does with each request, from now on.
#[derive(Debug, Clone)]
enum Keys {
    /// 200 with the current JWKS.
    Normal,
    /// The current JWKS, but only after this long.
    Slow(Duration),
    /// 200 with this body.
    Garbage(&'static str),
    /// 200 declaring a gigabyte body, then streaming whitespace.
    HugeDeclared,
    /// 200, chunked, no length: whitespace until the client hangs up.
    HugeStreamed,
    /// 302 to its own URL.
    RedirectLoop,
}

/// A JWKS endpoint on 127.0.0.1 that misbehaves on demand and counts its requests.
struct KeyEndpoint {
    port: u16,
    behaviour: Arc<Mutex<Keys>>,
    jwks: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
    /// Body bytes written by the huge behaviours before the client hung up.
    streamed: Arc<AtomicU64>,
    accept: Option<JoinHandle<()>>,
}

impl KeyEndpoint {
    async fn start(jwks: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut endpoint = KeyEndpoint {
            port: listener.local_addr().unwrap().port(),
            behaviour: Arc::new(Mutex::new(Keys::Normal)),
            jwks: Arc::new(Mutex::new(jwks)),
            requests: Arc::default(),
            streamed: Arc::default(),
            accept: None,
        };
        endpoint.serve(listener);
        endpoint
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/jwks", self.port)
    }

    fn set(&self, behaviour: Keys) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    fn set_jwks(&self, jwks: String) {
        *self.jwks.lock().unwrap() = jwks;
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn streamed(&self) -> u64 {
        self.streamed.load(Ordering::SeqCst)
    }

    /// Stops listening: connections are refused until [`KeyEndpoint::up`]. Every answer says
    /// `connection: close`, so no pooled connection outlives this either.
    async fn down(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
            let _ = task.await;
        }
        assert!(
            TcpStream::connect(("127.0.0.1", self.port)).await.is_err(),
            "the endpoint still accepts connections"
        );
    }

    /// Listens again on the same port.
    async fn up(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }

    fn serve(&mut self, listener: TcpListener) {
        let (behaviour, jwks, requests, streamed, port) = (
            self.behaviour.clone(),
            self.jwks.clone(),
            self.requests.clone(),
            self.streamed.clone(),
            self.port,
        );
        self.accept = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let behaviour = behaviour.lock().unwrap().clone();
                let jwks = jwks.clone();
                let (requests, streamed) = (requests.clone(), streamed.clone());
                tokio::spawn(async move {
                    answer_keys(stream, behaviour, jwks, requests, streamed, port).await;
                });
            }
        }));
    }
}

impl Drop for KeyEndpoint {
    fn drop(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
        }
    }
}

async fn answer_keys(
    mut stream: TcpStream,
    behaviour: Keys,
    jwks: Arc<Mutex<String>>,
    requests: Arc<AtomicUsize>,
    streamed: Arc<AtomicU64>,
    port: u16,
) {
    if read_head(&mut stream).await.is_none() {
        return;
    }
    requests.fetch_add(1, Ordering::SeqCst);
    let ok = |body: &str| {
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let current = || jwks.lock().unwrap().clone();
    match behaviour {
        Keys::Normal => {
            let _ = stream.write_all(ok(&current()).as_bytes()).await;
        }
        Keys::Slow(delay) => {
            tokio::time::sleep(delay).await;
            let _ = stream.write_all(ok(&current()).as_bytes()).await;
        }
        Keys::Garbage(body) => {
            let _ = stream.write_all(ok(body).as_bytes()).await;
        }
        Keys::HugeDeclared | Keys::HugeStreamed => {
            let chunked = matches!(behaviour, Keys::HugeStreamed);
            let framing = if chunked {
                "transfer-encoding: chunked".to_owned()
            } else {
                format!("content-length: {ENDLESS}")
            };
            // The start of a JWKS that never ends.
            let start = "{\"keys\": [] ";
            let start = if chunked {
                format!("{:x}\r\n{start}\r\n", start.len())
            } else {
                start.to_owned()
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n{framing}\r\n\
                 connection: close\r\n\r\n{start}"
            );
            if stream.write_all(head.as_bytes()).await.is_ok() {
                let sent = stream_until_hangup(&mut stream, &padding(), chunked, ENDLESS).await;
                streamed.fetch_add(sent, Ordering::SeqCst);
            }
        }
        Keys::RedirectLoop => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/jwks\r\n\
                 content-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes()).await;
        }
    }
}

/// The timeout the key store is configured with, and the cooldown between its fetches.
const HTTP_TIMEOUT: Duration = Duration::from_millis(400);
const COOLDOWN: Duration = Duration::from_secs(1);
/// No verification may wait longer than this: the timeout and a generous margin for a busy
/// machine. A verification that waited for a slow endpoint without a bound would wait for
/// [`SLOW`].
const BOUND: Duration = Duration::from_millis(400 + 2_000);
/// How late the slow endpoint answers: far past [`BOUND`].
const SLOW: Duration = Duration::from_secs(8);

/// The two signing keys: `k1` is the bench key, `k2` the large workload's key.
struct Signers {
    k1: EncodingKey,
    k2: EncodingKey,
    n: AtomicUsize,
}

impl Signers {
    fn new() -> Self {
        Signers {
            k1: bench_key().0,
            k2: other_key().0,
            n: AtomicUsize::new(0),
        }
    }

    /// A token never seen before, signed by `key` under `kid`.
    fn fresh(&self, key: &EncodingKey, kid: &str) -> String {
        let n = self.n.fetch_add(1, Ordering::Relaxed);
        mint_with(key, kid, json!({ "sub": format!("auth0|caller-{n}") }))
    }

    fn k1(&self) -> String {
        self.fresh(&self.k1, "k1")
    }

    fn k2(&self) -> String {
        self.fresh(&self.k2, "k2")
    }

    /// Signed with the known key, under a kid nobody published.
    fn unknown_kid(&self) -> String {
        let n = self.n.load(Ordering::Relaxed);
        self.fresh(&self.k1, &format!("made-up-{n}"))
    }
}

/// The public JWK of a reference workload's JWKS file, under another kid.
fn jwk(jwks_file: &Path, kid: &str) -> Value {
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(jwks_file).unwrap()).unwrap();
    let mut key = doc["keys"][0].clone();
    key["kid"] = kid.into();
    key
}

fn jwks_of(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

fn k1_jwks() -> String {
    jwks_of(&[jwk(&bench_key().1, "k1")])
}

fn k2_jwk() -> Value {
    jwk(&other_key().1, "k2")
}

/// Settings as the Lambda would read them: keys from `url` only, short timeout and cooldown,
/// and keys due for a refresh after a second (so known keys go through the refresh path too).
fn key_config(url: &str) -> JwtConfig {
    let env: BTreeMap<String, String> = [
        ("CEDARGATE_ISSUER", ISSUER.to_owned()),
        ("CEDARGATE_AUDIENCE", AUDIENCE.to_owned()),
        ("CEDARGATE_JWKS_URL", url.to_owned()),
        (
            "CEDARGATE_HTTP_TIMEOUT_MS",
            HTTP_TIMEOUT.as_millis().to_string(),
        ),
        (
            "CEDARGATE_JWKS_COOLDOWN_SECONDS",
            COOLDOWN.as_secs().to_string(),
        ),
        ("CEDARGATE_JWKS_MAX_AGE_SECONDS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    JwtConfig::from_env(&env).unwrap()
}

async fn verifier_for(endpoint: &KeyEndpoint) -> (Verifier, Arc<KeyStore>) {
    let cfg = key_config(&endpoint.url());
    let keys = Arc::new(KeyStore::new(&cfg).await.unwrap());
    (Verifier::new(&cfg, keys.clone()), keys)
}

/// One verification, which must not wait longer than [`BOUND`].
async fn verify(verifier: &Verifier, token: &str) -> Result<VerifiedClaims, ClaimsError> {
    let jwt = UnverifiedJwt::parse(&format!("Bearer {token}"), 16 * 1024).unwrap();
    let started = Instant::now();
    let result = verifier.verify(&jwt).await;
    let took = started.elapsed();
    assert!(
        took <= BOUND,
        "a verification waited {took:?}, though the key endpoint's timeout is {HTTP_TIMEOUT:?}"
    );
    result
}

/// At most this many fetches fit in `window` when fetches are a cooldown apart.
fn most_fetches_in(window: Duration) -> u64 {
    (window.as_secs_f64() / COOLDOWN.as_secs_f64()).floor() as u64 + 1
}

/// The common course of a key endpoint fault:
/// 1. a cold start while the endpoint misbehaves: refused, within the bound, and the error
///    says `why` (so the fault is the one intended);
/// 2. the endpoint recovers and the key `k1` is fetched;
/// 3. the endpoint misbehaves again, past the cooldown and past the keys' max age: for a few
///    seconds, fresh tokens signed with `k1` keep verifying and tokens with unknown kids are
///    refused, every one within the bound, and the fetches (counted by the key store and,
///    where it is up, by the endpoint) stay one per cooldown, and at least one happened.
async fn known_keys_outlast(endpoint: &mut KeyEndpoint, fault: Keys, why: &str) {
    let signers = Signers::new();
    assert!(!matches!(fault, Keys::Normal), "a fault is needed");
    // One fetch follows a few redirects before it gives up.
    let hops = if matches!(fault, Keys::RedirectLoop) {
        4
    } else {
        1
    };
    endpoint.set(fault.clone());
    let (verifier, keys) = verifier_for(endpoint).await;
    let err = verify(&verifier, &signers.k1()).await.unwrap_err();
    assert!(
        matches!(&err, ClaimsError::Key(JwksError::Unavailable(reason)) if reason.contains(why)),
        "a cold start against the fault says why: {err}"
    );

    endpoint.set(Keys::Normal);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    verify(&verifier, &signers.k1()).await.unwrap();

    endpoint.set(fault);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let (fetches, requests) = (keys.fetch_count(), endpoint.requests());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        let claims = verify(&verifier, &signers.k1()).await;
        assert!(
            claims.is_ok(),
            "a token signed with a known key was refused: {}",
            claims.unwrap_err()
        );
        let err = verify(&verifier, &signers.unknown_kid()).await.unwrap_err();
        assert!(
            matches!(err, ClaimsError::Key(JwksError::UnknownKid(_))),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let window = started.elapsed();
    let fetched = keys.fetch_count() - fetches;
    assert!(fetched >= 1, "the fault was never fetched");
    assert!(
        fetched <= most_fetches_in(window),
        "{fetched} fetches in {window:?} with a cooldown of {COOLDOWN:?}"
    );
    let seen = (endpoint.requests() - requests) as u64;
    assert!(
        seen <= hops * most_fetches_in(window),
        "the endpoint saw {seen} requests in {window:?} with a cooldown of {COOLDOWN:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_endpoint_down_keeps_known_keys_and_retries_once_per_cooldown() {
    let mut endpoint = KeyEndpoint::start(k1_jwks()).await;
    let signers = Signers::new();
    endpoint.down().await;
    let (verifier, keys) = verifier_for(&endpoint).await;
    let err = verify(&verifier, &signers.k1()).await.unwrap_err();
    assert!(
        matches!(&err, ClaimsError::Key(JwksError::Unavailable(reason)) if reason.contains("onnect")),
        "a cold start against a closed port says why: {err}"
    );

    endpoint.up().await;
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    verify(&verifier, &signers.k1()).await.unwrap();
    assert_eq!(endpoint.requests(), 1);

    endpoint.down().await;
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let fetches = keys.fetch_count();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2_500) {
        verify(&verifier, &signers.k1()).await.unwrap();
        let err = verify(&verifier, &signers.unknown_kid()).await.unwrap_err();
        assert!(
            matches!(err, ClaimsError::Key(JwksError::UnknownKid(_))),
            "{err}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let window = started.elapsed();
    let fetched = keys.fetch_count() - fetches;
    assert!(
        (1..=most_fetches_in(window)).contains(&fetched),
        "{fetched} fetch attempts in {window:?} with a cooldown of {COOLDOWN:?}"
    );

    // Back up: the next fetch (a cooldown after the last attempt) brings a new key in.
    endpoint.set_jwks(jwks_of(&[jwk(&bench_key().1, "k1"), k2_jwk()]));
    endpoint.up().await;
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    verify(&verifier, &signers.k2()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_endpoint_slower_than_the_timeout_never_holds_a_request_longer() {
    let mut endpoint = KeyEndpoint::start(k1_jwks()).await;
    known_keys_outlast(&mut endpoint, Keys::Slow(SLOW), "timed out").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_endpoint_answering_garbage_keeps_the_known_keys() {
    for (garbage, why) in [
        ("<html><body>502 Bad Gateway</body></html>", "not JSON"),
        (r#"{"keys": "none today"}"#, "not a JWKS"),
        (r#"[{"kty": "RSA"}]"#, "not a JWKS"),
        (r#"{"keys": []}"#, "no usable signing key"),
        (
            r#"{"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0"}]}"#,
            "no usable signing key",
        ),
    ] {
        let mut endpoint = KeyEndpoint::start(k1_jwks()).await;
        known_keys_outlast(&mut endpoint, Keys::Garbage(garbage), why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_body_bigger_than_the_cap_is_cut_off_while_streaming() {
    for fault in [Keys::HugeDeclared, Keys::HugeStreamed] {
        let mut endpoint = KeyEndpoint::start(k1_jwks()).await;
        // "larger than", not "timed out": the cap stopped the body, not the clock. A client
        // that read the whole body before looking at its size would be stopped by the
        // timeout here, since the body has no end.
        known_keys_outlast(&mut endpoint, fault.clone(), "larger than").await;
        // The socket buffers hold some megabytes; a client that read on would take gigabytes.
        let streamed = endpoint.streamed();
        assert!(
            streamed < 64 << 20,
            "{fault:?}: {streamed} bytes went out before the client hung up"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_redirect_loop_is_given_up_after_a_few_hops() {
    let mut endpoint = KeyEndpoint::start(k1_jwks()).await;
    known_keys_outlast(&mut endpoint, Keys::RedirectLoop, "redirect").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_mid_run_trusts_the_new_kid_and_stops_trusting_the_removed_one() {
    let endpoint = KeyEndpoint::start(k1_jwks()).await;
    let signers = Signers::new();
    let (verifier, keys) = verifier_for(&endpoint).await;
    verify(&verifier, &signers.k1()).await.unwrap();

    // The issuer publishes k2 beside k1 and starts signing with it. Within the cooldown of the
    // last fetch, k2 is not fetched for (a flood of new kids must not become a flood of
    // fetches); after it, the first k2 token fetches once and verifies.
    endpoint.set_jwks(jwks_of(&[jwk(&bench_key().1, "k1"), k2_jwk()]));
    let err = verify(&verifier, &signers.k2()).await.unwrap_err();
    assert_eq!(
        err,
        ClaimsError::Key(JwksError::UnknownKid("k2".to_owned()))
    );
    assert_eq!(endpoint.requests(), 1);
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    verify(&verifier, &signers.k2()).await.unwrap();
    verify(&verifier, &signers.k1()).await.unwrap();
    assert_eq!(endpoint.requests(), 2);

    // k1 is removed. Tokens signed with it verify until the keys are refreshed (max age one
    // second), and never after: a removed key is a revoked key.
    endpoint.set_jwks(jwks_of(&[k2_jwk()]));
    tokio::time::sleep(COOLDOWN + Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut refused = false;
    while started.elapsed() < Duration::from_secs(3) {
        if verify(&verifier, &signers.k1()).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the removed key k1 still verifies");
    for _ in 0..5 {
        let err = verify(&verifier, &signers.k1()).await.unwrap_err();
        assert_eq!(
            err,
            ClaimsError::Key(JwksError::UnknownKid("k1".to_owned()))
        );
        verify(&verifier, &signers.k2()).await.unwrap();
    }
    assert!(
        keys.fetch_count() <= 2 + most_fetches_in(started.elapsed() + COOLDOWN),
        "{} fetches",
        keys.fetch_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_flood_of_unknown_kids_fetches_at_most_once_per_cooldown() {
    let endpoint = KeyEndpoint::start(k1_jwks()).await;
    let signers = Arc::new(Signers::new());
    let (verifier, _keys) = verifier_for(&endpoint).await;
    let verifier = Arc::new(verifier);
    verify(&verifier, &signers.k1()).await.unwrap();
    let before = endpoint.requests();
    let started = Instant::now();
    let flood: Vec<_> = (0..8)
        .map(|_| {
            let (verifier, signers) = (verifier.clone(), signers.clone());
            tokio::spawn(async move {
                let mut refused = 0;
                while started.elapsed() < Duration::from_millis(3_000) {
                    let token = signers.unknown_kid();
                    if verify(&verifier, &token).await.is_err() {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    // Meanwhile the callers with the known key go on.
    let mut known = 0;
    while started.elapsed() < Duration::from_millis(3_000) {
        verify(&verifier, &signers.k1()).await.unwrap();
        known += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut refused = 0;
    for task in flood {
        refused += task.await.unwrap();
    }
    let window = started.elapsed();
    let seen = (endpoint.requests() - before) as u64;
    assert!(
        refused > 50 && known > 10,
        "{refused} refused, {known} known"
    );
    assert!(
        (1..=most_fetches_in(window)).contains(&seen),
        "{refused} tokens with unknown kids made {seen} requests in {window:?}"
    );
}

/// A token's name in the logs: the first 8 bytes of its SHA-256, in hex.
fn fingerprint(token: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(token.as_bytes())[..8])
}

/// Every form of a token a log line could hold: the whole, and its signature alone.
fn token_parts(token: &str) -> [String; 2] {
    [
        token.to_owned(),
        token.rsplit('.').next().unwrap().to_owned(),
    ]
}

#[test]
fn no_log_line_holds_a_token_whatever_the_key_endpoint_does() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut endpoint = rt.block_on(KeyEndpoint::start(k1_jwks()));
    let signers = Signers::new();
    let mut env: Vec<(String, String)> = demo_env()
        .into_iter()
        .filter(|(k, _)| k != "CEDARGATE_JWKS_FILE")
        .collect();
    for (k, v) in [
        ("CEDARGATE_JWKS_URL", endpoint.url()),
        (
            "CEDARGATE_HTTP_TIMEOUT_MS",
            HTTP_TIMEOUT.as_millis().to_string(),
        ),
        (
            "CEDARGATE_JWKS_COOLDOWN_SECONDS",
            COOLDOWN.as_secs().to_string(),
        ),
        ("CEDARGATE_JWKS_MAX_AGE_SECONDS", "1".to_owned()),
    ] {
        env.push((k.to_owned(), v));
    }
    // Everything every crate logs, at debug level.
    let mut pipe = InvokePipe::start_logging(&env, "debug");
    let mut tokens = Vec::new();
    // Whether the token was accepted (an answer with a principal, not `Unauthorized`); every
    // invocation within the bound.
    let mut accepted = |pipe: &mut InvokePipe, token: String| {
        let started = Instant::now();
        let answer = pipe.send(&token_event(&token, "GET/pets"));
        let took = started.elapsed();
        assert!(took <= BOUND, "an invocation waited {took:?}");
        tokens.push(token);
        answer.get("principalId").is_some()
    };

    assert!(accepted(&mut pipe, signers.k1()));
    for fault in [
        Keys::Slow(SLOW),
        Keys::Garbage("not json"),
        Keys::HugeStreamed,
        Keys::RedirectLoop,
    ] {
        endpoint.set(fault);
        std::thread::sleep(COOLDOWN + Duration::from_millis(100));
        assert!(accepted(&mut pipe, signers.k1()));
        assert!(!accepted(&mut pipe, signers.unknown_kid()));
    }
    rt.block_on(endpoint.down());
    std::thread::sleep(COOLDOWN + Duration::from_millis(100));
    assert!(accepted(&mut pipe, signers.k1()));
    assert!(!accepted(&mut pipe, signers.unknown_kid()));
    // A rotation, and a token whose kid is another token.
    endpoint.set(Keys::Normal);
    endpoint.set_jwks(jwks_of(&[k2_jwk()]));
    rt.block_on(endpoint.up());
    std::thread::sleep(COOLDOWN + Duration::from_millis(100));
    assert!(accepted(&mut pipe, signers.k2()));
    assert!(!accepted(&mut pipe, signers.k1()));
    let inner = signers.k2();
    let nested = signers.fresh(&signers.k2, &inner);
    assert!(!accepted(&mut pipe, nested));
    tokens.push(inner);

    assert!(
        pipe.logged("key refresh failed"),
        "the faults were logged (or this test looks at the wrong log)"
    );
    assert!(
        pipe.logged(&fingerprint(&tokens[tokens.len() - 2])),
        "the last refusal was logged"
    );
    // The decision lines' metrics counted the fetches and the failed ones, each once: five
    // faults, each met by a fetch for the unknown kid; the first keys and the rotation fetched.
    let total = |metric: &str| -> u64 {
        pipe.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "decision")
            .filter_map(|v| v[metric].as_u64())
            .sum()
    };
    let failures = total("JwksFetchFailures");
    assert!(failures >= 4, "{failures} failed fetches counted");
    assert!(
        total("JwksFetches") >= failures + 2,
        "{}",
        total("JwksFetches")
    );
    let log = pipe.log.lock().unwrap().join("\n");
    for token in &tokens {
        for part in token_parts(token) {
            assert!(
                !log.contains(&part),
                "the log holds a token (or its signature): {part}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The policy source: moto behind a fault-injecting proxy.

const BUCKET: &str = "policies";
const KEY: &str = "cedargate/bundle.json";
/// `CEDARGATE_POLICY_TIMEOUT_MS`: how long an invocation may wait for a refresh.
const POLICY_TIMEOUT: Duration = Duration::from_millis(400);
/// `CEDARGATE_POLICY_LOAD_TIMEOUT_MS`: the first load's bound, and the S3 client's.
const LOAD_TIMEOUT: Duration = Duration::from_millis(1_500);
/// No invocation may take longer than this: the policy timeout and a generous margin.
const POLICY_BOUND: Duration = Duration::from_millis(400 + 2_000);
/// `CEDARGATE_MAX_BUNDLE_BYTES`: a few times the demo bundle.
const MAX_BUNDLE_BYTES: usize = 128 * 1024;

/// What the proxy does with GETs of the bundle object, from the next connection on (a
/// connection keeps the behaviour it started with). Everything else passes through.
#[derive(Debug, Clone, PartialEq, Eq)]
enum S3Fault {
    Pass,
    /// Answers only after this long.
    SlowAnswer(Duration),
    /// Sends the head at once, then the body a few bytes at a time (minutes for a bundle).
    Trickle,
    /// The object, then whitespace without end, chunked, with no length.
    Grows,
    /// Declares a small `content-length`, then sends the object and whitespace without end.
    LyingLength,
    /// A new ETag on every answer for the same content.
    FreshEtag,
}

#[derive(Debug, Default)]
struct ProxyStats {
    /// Bundle GETs answered 200 with a rewritten ETag.
    fresh_etags: AtomicUsize,
    /// Body bytes streamed by `Grows` and `LyingLength` before the client hung up.
    streamed: AtomicU64,
}

/// A proxy in front of moto on 127.0.0.1 that forwards each request and then misbehaves.
struct S3Proxy {
    port: u16,
    fault: Arc<Mutex<S3Fault>>,
    stats: Arc<ProxyStats>,
    // Last: the proxy's tasks end with its runtime.
    _rt: tokio::runtime::Runtime,
}

impl S3Proxy {
    fn start(moto: &Moto) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(S3Fault::Pass));
        let stats = Arc::new(ProxyStats::default());
        let upstream = moto.endpoint();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let (f, st) = (fault.clone(), stats.clone());
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let fault = f.lock().unwrap().clone();
                let (http, upstream, stats) = (http.clone(), upstream.clone(), st.clone());
                tokio::spawn(async move { proxy(stream, fault, http, upstream, stats).await });
            }
        });
        S3Proxy {
            port,
            fault,
            stats,
            _rt: rt,
        }
    }

    fn set(&self, fault: S3Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// One request: forwarded to moto, its answer sent back as `fault` says.
async fn proxy(
    mut stream: TcpStream,
    fault: S3Fault,
    http: reqwest::Client,
    upstream: String,
    stats: Arc<ProxyStats>,
) {
    let Some((head, mut body)) = read_head(&mut stream).await else {
        return;
    };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        request_line.next().unwrap_or_default().to_owned(),
        request_line.next().unwrap_or_default().to_owned(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    while body.len() < length {
        let mut chunk = vec![0u8; length - body.len()];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    let is_bundle =
        method == "GET" && target.split('?').next() == Some(&format!("/{BUCKET}/{KEY}"));
    let mut forward = http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{upstream}{target}"),
    );
    for (k, v) in &headers {
        // A new ETag for every answer: the one the client holds never matches (S3 compares
        // with its own), so moto must not either.
        let stale = is_bundle && fault == S3Fault::FreshEtag && k == "if-none-match";
        let hop =
            ["host", "connection", "content-length", "transfer-encoding"].contains(&k.as_str());
        if !stale && !hop {
            forward = forward.header(k, v);
        }
    }
    let Ok(answer) = forward.body(body).send().await else {
        return;
    };
    let status = answer.status();
    let mut out_headers: Vec<(String, String)> = answer
        .headers()
        .iter()
        .filter(|(k, _)| {
            ![
                "content-length",
                "transfer-encoding",
                "connection",
                "keep-alive",
            ]
            .contains(&k.as_str())
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    let Ok(object) = answer.bytes().await else {
        return;
    };
    let fault = if is_bundle && status == reqwest::StatusCode::OK {
        fault
    } else {
        S3Fault::Pass
    };
    if fault == S3Fault::FreshEtag {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        for (k, v) in &mut out_headers {
            if k == "etag" {
                *v = format!("\"rewritten-{n}-{}\"", v.trim_matches('"'));
            }
        }
        stats.fresh_etags.fetch_add(1, Ordering::SeqCst);
    }
    let framing = match fault {
        S3Fault::Grows => "transfer-encoding: chunked".to_owned(),
        S3Fault::LyingLength => "content-length: 512".to_owned(),
        _ => format!("content-length: {}", object.len()),
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    for (k, v) in &out_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("{framing}\r\nconnection: close\r\n\r\n"));
    if let S3Fault::SlowAnswer(delay) = fault {
        tokio::time::sleep(delay).await;
    }
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    match fault {
        S3Fault::Trickle => {
            for piece in object.chunks(8) {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if stream.write_all(piece).await.is_err() {
                    return;
                }
            }
        }
        S3Fault::Grows | S3Fault::LyingLength => {
            let chunked = fault == S3Fault::Grows;
            let first = if chunked {
                let mut c = format!("{:x}\r\n", object.len()).into_bytes();
                c.extend_from_slice(&object);
                c.extend_from_slice(b"\r\n");
                c
            } else {
                object.to_vec()
            };
            if stream.write_all(&first).await.is_ok() {
                let sent = stream_until_hangup(&mut stream, &padding(), chunked, ENDLESS).await;
                stats.streamed.fetch_add(sent, Ordering::SeqCst);
            }
        }
        _ => {
            let _ = stream.write_all(&object).await;
        }
    }
}

/// A bundle published to moto, and `cedargate invoke` reading it through the proxy.
struct PolicySource {
    /// Kept running for the proxy.
    _moto: Moto,
    proxy: S3Proxy,
    dir: std::path::PathBuf,
    publish_env: Vec<(String, String)>,
    pipe: InvokePipe,
}

/// A reader's token, and the event of its `GET /pets`, which the demo bundle allows.
fn reader_event() -> Value {
    token_event(
        &common::mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] })),
        "GET/pets",
    )
}

impl PolicySource {
    /// Publishes the demo bundle and starts the pipe, which loads it through the proxy.
    fn start(name: &str) -> (Self, Value) {
        let moto = Moto::start();
        moto.create_bucket(BUCKET);
        let proxy = S3Proxy::start(&moto);
        let mut env = demo_env();
        env.retain(|(k, _)| k != "CEDARGATE_POLICY_SOURCE");
        for (k, v) in [
            ("CEDARGATE_POLICY_SOURCE", format!("s3://{BUCKET}/{KEY}")),
            ("CEDARGATE_POLICY_REFRESH_SECONDS", "1".to_owned()),
            (
                "CEDARGATE_POLICY_TIMEOUT_MS",
                POLICY_TIMEOUT.as_millis().to_string(),
            ),
            (
                "CEDARGATE_POLICY_LOAD_TIMEOUT_MS",
                LOAD_TIMEOUT.as_millis().to_string(),
            ),
            ("CEDARGATE_MAX_BUNDLE_BYTES", MAX_BUNDLE_BYTES.to_string()),
        ] {
            env.push((k.to_owned(), v));
        }
        let mut publish_env = env.clone();
        publish_env.extend(moto.env());
        let mut pipe_env = env;
        pipe_env.extend(moto.env());
        pipe_env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_S3");
        pipe_env.push(("AWS_ENDPOINT_URL_S3".to_owned(), proxy.endpoint()));
        let dir = bundle_copy(name);
        let first = publish(&dir, &format!("s3://{BUCKET}/{KEY}"), &publish_env).unwrap();
        let pipe = InvokePipe::start(&pipe_env);
        let mut source = PolicySource {
            _moto: moto,
            proxy,
            dir,
            publish_env,
            pipe,
        };
        let answer = source.ask();
        assert_eq!(
            answer["context"]["policyRevision"], first["revision"],
            "{answer}"
        );
        assert!(allows(&answer["policyDocument"], &demo_arn("GET/pets")));
        (source, first)
    }

    /// One invocation for the reader's `GET /pets`, which may not wait past the bound.
    fn ask(&mut self) -> Value {
        let started = Instant::now();
        let answer = self.pipe.send(&reader_event());
        let took = started.elapsed();
        assert!(
            took <= POLICY_BOUND,
            "an invocation waited {took:?} for the policy source (timeout {POLICY_TIMEOUT:?})"
        );
        answer
    }

    /// Publishes the bundle with `policies/pets.cedar` edited; the printed JSON.
    fn publish_edit(&self, edit: impl FnOnce(String) -> String) -> Value {
        let path = self.dir.join("policies/pets.cedar");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(text)).unwrap();
        publish(
            &self.dir,
            &format!("s3://{BUCKET}/{KEY}"),
            &self.publish_env,
        )
        .unwrap()
    }

    /// Publishes a new revision in which readers may no longer read: the reader's
    /// `GET /pets` is denied.
    fn publish_readers_denied(&self) -> Value {
        self.publish_edit(|text| {
            let from = "principal in Role::\"reader\"";
            assert!(text.contains(from));
            text.replacen(from, "principal in Role::\"editor\"", 1)
        })
    }

    /// Asks until the answer has `revision` (a refresh window is a second), for at most
    /// `within`; whether it came.
    fn until_revision(&mut self, revision: &Value, within: Duration) -> bool {
        let started = Instant::now();
        while started.elapsed() < within {
            if self.ask()["context"]["policyRevision"] == *revision {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }

    fn loads(&self) -> usize {
        self.pipe
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("policy_loaded"))
            .count()
    }
}

fn revision(answer: &Value) -> &Value {
    &answer["context"]["policyRevision"]
}

/// Asks for a few refresh windows while S3 misbehaves: every answer within the bound, from
/// the bundle of `serving`, and the reader's `GET /pets` decided as it decides.
fn old_bundle_answers(s3: &mut PolicySource, serving: &Value, allowed: bool, what: &str) {
    let started = Instant::now();
    while started.elapsed() < LOAD_TIMEOUT + Duration::from_secs(2) {
        let answer = s3.ask();
        assert_eq!(revision(&answer), &serving["revision"], "{what}: {answer}");
        assert_eq!(
            allows(&answer["policyDocument"], &demo_arn("GET/pets")),
            allowed,
            "{what}: {answer}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn s3_slower_than_the_policy_timeout_holds_no_request_keeps_the_old_bundle_and_recovers() {
    let (mut s3, first) = PolicySource::start("faults-slow");
    let second = s3.publish_readers_denied();

    // An answer that comes long after the timeout, then a body that trickles for minutes:
    // every invocation meanwhile is answered within the bound, by the bundle already loaded.
    for fault in [
        S3Fault::SlowAnswer(Duration::from_secs(30)),
        S3Fault::Trickle,
    ] {
        s3.proxy.set(fault.clone());
        old_bundle_answers(&mut s3, &first, true, &format!("{fault:?}"));
        assert!(
            s3.pipe.logged("policy_refresh_slow"),
            "{fault:?}: the wait was logged"
        );
    }
    // The refreshes that outlived the wait were given up, and said so.
    assert!(
        s3.pipe.logged("timed out"),
        "the slow refresh was given up and reported; log:\n{}",
        s3.pipe.log.lock().unwrap().join("\n")
    );

    // S3 answers normally again: the next refresh loads the new bundle.
    s3.proxy.set(S3Fault::Pass);
    assert!(
        s3.until_revision(
            &second["revision"],
            LOAD_TIMEOUT * 2 + Duration::from_secs(4)
        ),
        "the new bundle was never loaded after S3 recovered"
    );
    let answer = s3.ask();
    assert!(
        !allows(&answer["policyDocument"], &demo_arn("GET/pets")),
        "{answer}"
    );
}

#[test]
fn s3_object_growing_past_the_size_cap_is_refused_while_streaming_and_the_old_bundle_answers() {
    let (mut s3, first) = PolicySource::start("faults-cap");
    let second = s3.publish_readers_denied();
    for (fault, why) in [
        // Chunked, no length: only the cap on the bytes read stops it. "over the limit", not
        // "timed out": the cap stopped the body, not the clock (which would be all that stops
        // a client that buffers the whole body before looking at its size).
        (S3Fault::Grows, "over the limit of 131072 bytes"),
        // The client reads no further than the length says, and the SDK checks what it read
        // against the checksum S3 keeps of the object (publish uploads one): a failed read,
        // not an object to refuse and remember.
        (
            S3Fault::LyingLength,
            "reading s3://policies/cedargate/bundle.json failed: streaming error: body checksum mismatch",
        ),
    ] {
        s3.proxy.stats.streamed.store(0, Ordering::SeqCst);
        s3.proxy.set(fault.clone());
        old_bundle_answers(&mut s3, &first, true, &format!("{fault:?}"));
        assert!(
            s3.pipe.logged(why),
            "{fault:?}: the refusal says `{why}`; log:\n{}",
            s3.pipe.log.lock().unwrap().join("\n")
        );
        // The socket buffers hold some megabytes; a client that read on would take gigabytes.
        let streamed = s3.proxy.stats.streamed.load(Ordering::SeqCst);
        assert!(
            streamed < 64 << 20,
            "{fault:?}: {streamed} bytes went out before the client hung up"
        );
    }
    // A well-behaved S3 again: the object that could not be read whole is loaded now.
    s3.proxy.set(S3Fault::Pass);
    assert!(
        s3.until_revision(&second["revision"], Duration::from_secs(6)),
        "the object was never loaded once S3 sent it whole"
    );
    let answer = s3.ask();
    assert!(
        !allows(&answer["policyDocument"], &demo_arn("GET/pets")),
        "{answer}"
    );
}

#[test]
fn s3_etag_change_with_the_same_content_reloads_nothing_and_keeps_the_revision() {
    let (mut s3, first) = PolicySource::start("faults-etag");
    // Every answer now carries a new ETag for the same bytes (as a re-upload made another
    // way would: multipart, a copy, another encryption), so every refresh downloads the
    // object again. Decisions and revision stay; no new bundle is announced.
    s3.proxy.set(S3Fault::FreshEtag);
    old_bundle_answers(&mut s3, &first, true, "same content, new ETag");
    let downloads = s3.proxy.stats.fresh_etags.load(Ordering::SeqCst);
    assert!(
        downloads >= 2,
        "downloaded {downloads} times under new ETags"
    );
    // A real change under the same fault is still loaded.
    let second = s3.publish_readers_denied();
    assert!(
        s3.until_revision(&second["revision"], Duration::from_secs(6)),
        "the changed bundle was never loaded"
    );
    let answer = s3.ask();
    assert!(
        !allows(&answer["policyDocument"], &demo_arn("GET/pets")),
        "{answer}"
    );
    // The first load and the change: nothing in between, however many downloads.
    assert!(s3.pipe.logged(&format!(
        "\"event\":\"policy_loaded\",\"revision\":{}",
        second["revision"]
    )));
    assert_eq!(
        s3.loads(),
        2,
        "bundle loads announced; log:\n{}",
        s3.pipe.log.lock().unwrap().join("\n")
    );
}
