//! Verification keys: configured sources → [`KeyStore`] → the [`VerifyingKey`]s for a token.
//!
//! Stage: beside `token` → `claims`; the only part of token verification that does I/O.
//! Inputs: `CEDARGATE_JWKS_FILE` and `CEDARGATE_PUBLIC_KEY_FILE` (read at start), and remote
//! JWKS (`CEDARGATE_JWKS_URL`, or each issuer's `jwks_uri` from OIDC discovery) fetched lazily.
//! Output: for a token's `alg` and `kid`, the few keys that may verify it.
//!
//! Invariants:
//! - A key verifies only the algorithms its type allows, and only its own `alg` when the JWK
//!   names one. Symmetric keys, private keys, short or broken RSA keys, off-curve points and
//!   keys for other uses are skipped (and logged) one by one: one bad key does not take down the
//!   whole set, but a source with no usable key at all is an error.
//! - Keys come only from configured sources: nothing in a token (`jku`, `x5u`, `jwk`, `x5c`)
//!   is ever read here, so a token cannot make the authorizer fetch a URL.
//! - Remote fetches are single-flight and rate-limited per source to one per
//!   `jwks_cooldown`, whatever triggers them (first use, unknown `kid`, keys older than
//!   `jwks_max_age`); a failed refresh keeps the previous keys.
//! - Keys from files are looked at before any fetch, so a cold start needs no network.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use aws_lc_rs::signature::{
    EcdsaVerificationAlgorithm, ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    ED25519,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::config::{self, JwtConfig, SUPPORTED_ALGORITHMS};
use crate::token::{alg_name, shown};

/// A token without `kid` is tried against at most this many keys: enough for a rotation
/// overlap, few enough that a kid-less token cannot make us run many verifications.
pub const MAX_CANDIDATES: usize = 4;

/// Discovery documents, JWKS and key files larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// RSA below 2048 bits is factorable with enough money (NIST SP 800-131A); above 8192 the
/// verifier (aws-lc) refuses it anyway, so such a key could never verify anything.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Redirects followed when fetching discovery documents and JWKS.
const MAX_REDIRECTS: usize = 3;

/// Algorithms an RSA key verifies when its JWK does not name one.
const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Why keys could not be loaded, or no key fits a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("{origin} is not a JWKS: {reason}")]
    Invalid { origin: String, reason: String },
    #[error("{origin} has no usable signing key: {reason}")]
    NoUsableKey { origin: String, reason: String },
    #[error("`{path}` is not a usable public key: {reason}")]
    PublicKeyFile { path: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("fetching `{url}` failed: {reason}")]
    Fetch { url: String, reason: String },
    #[error("OIDC discovery for issuer `{issuer}` failed: {reason}")]
    Discovery { issuer: String, reason: String },
    #[error("no key has kid `{0}`")]
    UnknownKid(String),
    #[error("key `{kid}` cannot verify `{alg}` signatures")]
    AlgorithmMismatch { kid: String, alg: &'static str },
    #[error("no key can verify `{0}` signatures")]
    NoKeyForAlgorithm(&'static str),
    #[error("no keys are available: {0}")]
    Unavailable(String),
}

/// A public key that may verify token signatures, with the algorithms it may be used for.
#[derive(Debug)]
pub struct VerifyingKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    /// The issuer whose OIDC discovery produced this key: tokens it verifies must name that
    /// issuer. `None` for keys configured directly (file, PEM, explicit JWKS URL).
    issuer: Option<String>,
}

impl VerifyingKey {
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithms this key may verify.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The issuer this key was discovered for, if it came from OIDC discovery.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }

    /// Whether this key verifies the token's signature under the token's `alg`.
    pub(crate) fn verifies(&self, token: &crate::token::UnverifiedJwt) -> bool {
        // The key decides what it may verify; the token's header only asks (RFC 8725 §3.1).
        if !self.fits(token.alg()) {
            return false;
        }
        matches!(
            jsonwebtoken::crypto::verify(
                token.signature_b64(),
                token.signing_input().as_bytes(),
                &self.key,
                token.alg(),
            ),
            Ok(true)
        )
    }
}

/// The verification keys of every configured source. `Send + Sync`; share it behind an `Arc`.
#[derive(Debug)]
pub struct KeyStore {
    /// Keys from files (or fixed JSON): always available, looked at first.
    fixed: Vec<Arc<VerifyingKey>>,
    remotes: Vec<Remote>,
    http: Option<reqwest::Client>,
    cooldown: Duration,
    max_age: Duration,
    fetches: AtomicU64,
}

#[derive(Debug)]
struct Remote {
    source: RemoteSource,
    /// The keys of the last successful fetch; readers never wait for a fetch in progress.
    keys: ArcSwapOption<Fetched>,
    /// Why the last fetch failed, for the error a token gets when no keys are available.
    last_error: ArcSwapOption<String>,
    /// Held for the whole of a fetch: callers that need new keys queue here and then share
    /// the result (single flight).
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Debug)]
enum RemoteSource {
    Jwks(reqwest::Url),
    Discovery { issuer: String },
}

#[derive(Debug)]
struct Fetched {
    keys: Vec<Arc<VerifyingKey>>,
    at: Instant,
    generation: u64,
}

#[derive(Debug, Default)]
struct FetchState {
    /// Bumped on every successful fetch; equals the `generation` of what `keys` holds.
    generation: u64,
    last_attempt: Option<Instant>,
    /// The `jwks_uri` found by discovery, kept until a fetch fails.
    jwks_uri: Option<reqwest::Url>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Queue behind a fetch in progress (the caller has no usable key without it).
    Yes,
    /// Skip if a fetch is in progress (the caller has keys that still work).
    No,
}

/// The keys that fit a token, and whether its `kid` is known at all.
struct Lookup {
    candidates: Vec<Arc<VerifyingKey>>,
    kid_known: bool,
}

impl KeyStore {
    /// Loads `CEDARGATE_JWKS_FILE` / `CEDARGATE_PUBLIC_KEY_FILE` now; remote keys
    /// (`CEDARGATE_JWKS_URL`, or the `jwks_uri` from OIDC discovery of each issuer) are fetched
    /// lazily on first need.
    pub async fn new(cfg: &JwtConfig) -> Result<Self, JwksError> {
        let mut fixed = Vec::new();
        if let Some(path) = &cfg.jwks_file {
            let bytes = read_file(path).await?;
            let origin = format!("`{}`", path.display());
            let doc: Value = serde_json::from_slice(&bytes).map_err(|_| JwksError::Invalid {
                origin: origin.clone(),
                reason: "it is not JSON".to_owned(),
            })?;
            fixed.extend(keys_from_jwks(&doc, &origin, None)?);
        }
        if let Some(path) = &cfg.public_key_file {
            let bytes = read_file(path).await?;
            let key = key_from_pem(&bytes).map_err(|reason| JwksError::PublicKeyFile {
                path: path.display().to_string(),
                reason,
            })?;
            fixed.push(Arc::new(key));
        }
        let sources = match &cfg.jwks_url {
            Some(url) => vec![RemoteSource::Jwks(url.clone())],
            // A key file or PEM key without a URL means "these keys only" (config.rs).
            None if cfg.jwks_file.is_some() || cfg.public_key_file.is_some() => Vec::new(),
            None => cfg
                .issuers
                .iter()
                .map(|issuer| RemoteSource::Discovery {
                    issuer: issuer.clone(),
                })
                .collect(),
        };
        let http = if sources.is_empty() {
            None
        } else {
            Some(http_client(cfg.http_timeout)?)
        };
        Ok(Self {
            fixed,
            remotes: sources.into_iter().map(Remote::new).collect(),
            http,
            cooldown: cfg.jwks_cooldown,
            max_age: cfg.jwks_max_age,
            fetches: AtomicU64::new(0),
        })
    }

    /// A key store over fixed keys (tests, `cedargate serve`'s own issuer): no network.
    pub fn from_jwks_json(json: &str) -> Result<Self, JwksError> {
        let origin = "the given JWKS";
        let doc: Value = serde_json::from_str(json).map_err(|_| JwksError::Invalid {
            origin: origin.to_owned(),
            reason: "it is not JSON".to_owned(),
        })?;
        Ok(Self {
            fixed: keys_from_jwks(&doc, origin, None)?,
            remotes: Vec::new(),
            http: None,
            cooldown: Duration::ZERO,
            max_age: Duration::MAX,
            fetches: AtomicU64::new(0),
        })
    }

    /// The key to verify a token with this header: the first of [`KeyStore::keys_for`].
    pub async fn key_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<VerifyingKey>, JwksError> {
        self.keys_for(alg, kid)
            .await?
            .into_iter()
            .next()
            .ok_or(JwksError::NoKeyForAlgorithm(alg_name(alg)))
    }

    /// The keys that may verify a token with this header, at most [`MAX_CANDIDATES`]: those
    /// with the token's `kid` first, then keys without a `kid` (a PEM key stands for any kid);
    /// for a token without `kid`, every key that fits `alg`. An unknown `kid` (or no fitting
    /// key) triggers at most one refetch per source per cooldown.
    pub async fn keys_for(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
        self.refresh_stale().await;
        let seen = self.generations();
        let mut found = self.lookup(alg, kid);
        let missing = match kid {
            Some(_) => !found.kid_known,
            None => found.candidates.is_empty(),
        };
        if missing && !self.remotes.is_empty() {
            for (remote, seen) in self.remotes.iter().zip(seen) {
                self.refresh(remote, seen, Wait::Yes).await;
            }
            found = self.lookup(alg, kid);
        }
        if !found.candidates.is_empty() {
            return Ok(found.candidates);
        }
        Err(match kid {
            Some(kid) if found.kid_known => JwksError::AlgorithmMismatch {
                kid: shown(kid),
                alg: alg_name(alg),
            },
            _ if !self.has_any_key() => JwksError::Unavailable(self.last_errors()),
            Some(kid) => JwksError::UnknownKid(shown(kid)),
            None => JwksError::NoKeyForAlgorithm(alg_name(alg)),
        })
    }

    /// How many JWKS fetches were attempted (discovery requests not counted).
    #[doc(hidden)]
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn lookup(&self, alg: Algorithm, kid: Option<&str>) -> Lookup {
        let snapshots: Vec<Arc<Fetched>> = self
            .remotes
            .iter()
            .filter_map(|r| r.keys.load_full())
            .collect();
        let all: Vec<&Arc<VerifyingKey>> = self
            .fixed
            .iter()
            .chain(snapshots.iter().flat_map(|f| f.keys.iter()))
            .collect();
        let mut candidates = Vec::new();
        let mut kid_known = false;
        if let Some(kid) = kid {
            for key in all.iter().filter(|k| k.kid() == Some(kid)) {
                kid_known = true;
                if key.fits(alg) {
                    candidates.push(Arc::clone(key));
                }
            }
            // A key without a kid (a PEM key, or a JWK that omits it) may have signed a token
            // that carries one: Auth0 tokens name a kid, the certificate does not.
            candidates.extend(
                all.iter()
                    .filter(|k| k.kid().is_none() && k.fits(alg))
                    .map(|k| Arc::clone(k)),
            );
        } else {
            candidates.extend(all.iter().filter(|k| k.fits(alg)).map(|k| Arc::clone(k)));
        }
        candidates.truncate(MAX_CANDIDATES);
        Lookup {
            candidates,
            kid_known,
        }
    }

    fn has_any_key(&self) -> bool {
        !self.fixed.is_empty() || self.remotes.iter().any(|r| r.keys.load().is_some())
    }

    fn last_errors(&self) -> String {
        let errors: Vec<String> = self
            .remotes
            .iter()
            .filter_map(|r| r.last_error.load_full())
            .map(|e| (*e).clone())
            .collect();
        if errors.is_empty() {
            "no key source is configured".to_owned()
        } else {
            errors.join("; ")
        }
    }

    fn generations(&self) -> Vec<u64> {
        self.remotes
            .iter()
            .map(|r| r.keys.load().as_ref().map_or(0, |f| f.generation))
            .collect()
    }

    /// Keys older than `jwks_max_age` are refreshed by the first caller that notices; the
    /// others go on with the old keys meanwhile, and keep them if the refresh fails.
    async fn refresh_stale(&self) {
        for remote in &self.remotes {
            let stale = remote
                .keys
                .load()
                .as_ref()
                .and_then(|f| (f.at.elapsed() >= self.max_age).then_some(f.generation));
            if let Some(generation) = stale {
                self.refresh(remote, generation, Wait::No).await;
            }
        }
    }

    /// Fetches `remote` again unless another caller did since `seen` (then its result is
    /// shared) or the last attempt was less than a cooldown ago.
    async fn refresh(&self, remote: &Remote, seen: u64, wait: Wait) {
        let mut state = match wait {
            Wait::Yes => remote.fetch.lock().await,
            Wait::No => match remote.fetch.try_lock() {
                Ok(state) => state,
                Err(_) => return,
            },
        };
        if state.generation != seen {
            return;
        }
        // The rate limit applies to every fetch, failed ones included: a stream of tokens with
        // made-up kids must not turn into a stream of requests to the issuer.
        if state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.cooldown)
        {
            return;
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch(remote, &mut state).await {
            Ok(keys) => {
                state.generation = state.generation.wrapping_add(1);
                tracing::info!(source = %remote.source, keys = keys.len(), "fetched verification keys");
                remote.keys.store(Some(Arc::new(Fetched {
                    keys,
                    at: Instant::now(),
                    generation: state.generation,
                })));
                remote.last_error.store(None);
            }
            Err(error) => {
                let kept = remote.keys.load().as_ref().map_or(0, |f| f.keys.len());
                tracing::warn!(source = %remote.source, %error, kept, "key refresh failed; keeping the previous keys");
                // Discovery is redone next time: the jwks_uri may be what changed.
                state.jwks_uri = None;
                remote.last_error.store(Some(Arc::new(error.to_string())));
            }
        }
    }

    async fn fetch(
        &self,
        remote: &Remote,
        state: &mut FetchState,
    ) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
        let (url, issuer) = match &remote.source {
            RemoteSource::Jwks(url) => (url.clone(), None),
            RemoteSource::Discovery { issuer } => {
                let url = match &state.jwks_uri {
                    Some(url) => url.clone(),
                    None => self.discover(issuer).await?,
                };
                state.jwks_uri = Some(url.clone());
                (url, Some(issuer.as_str()))
            }
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let doc = self
            .get_json(&url)
            .await
            .map_err(|reason| JwksError::Fetch {
                url: url.to_string(),
                reason,
            })?;
        keys_from_jwks(&doc, &format!("`{url}`"), issuer)
    }

    /// OIDC Discovery 1.0 §4: the configuration lives under the issuer, and the document must
    /// name exactly that issuer (§4.3), or a document served elsewhere could hand us another
    /// issuer's keys.
    async fn discover(&self, issuer: &str) -> Result<reqwest::Url, JwksError> {
        let fail = |reason: String| JwksError::Discovery {
            issuer: shown(issuer),
            reason,
        };
        let raw = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url =
            config::parse_fetch_url("CEDARGATE_ISSUER", &raw).map_err(|e| fail(e.to_string()))?;
        let doc = self
            .get_json(&url)
            .await
            .map_err(|reason| fail(format!("`{url}`: {reason}")))?;
        match doc.get("issuer") {
            Some(Value::String(named)) if named == issuer => {}
            Some(Value::String(named)) => {
                return Err(fail(format!(
                    "the document names issuer `{}`, not the configured one",
                    shown(named)
                )))
            }
            _ => return Err(fail("the document has no string `issuer`".to_owned())),
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the document has no string `jwks_uri`".to_owned()))?;
        config::parse_fetch_url("jwks_uri", jwks_uri).map_err(|e| fail(e.to_string()))
    }

    /// GET a JSON document: status 200, at most [`MAX_DOCUMENT_BYTES`], within the timeout.
    async fn get_json(&self, url: &reqwest::Url) -> Result<Value, String> {
        let client = self
            .http
            .as_ref()
            .ok_or_else(|| "no HTTP client is configured".to_owned())?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("the server answered {status}"));
        }
        let too_large = || format!("the response is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| "the response is not JSON".to_owned())
    }
}

impl Remote {
    fn new(source: RemoteSource) -> Self {
        Self {
            source,
            keys: ArcSwapOption::empty(),
            last_error: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
        }
    }
}

impl std::fmt::Display for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwks(url) => write!(f, "{url}"),
            Self::Discovery { issuer } => write!(f, "discovery of {issuer}"),
        }
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, JwksError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // A redirect may not leave the URL rules the configuration enforces (https, or
            // http on loopback), nor switch scheme.
            let same_scheme = attempt
                .previous()
                .last()
                .is_none_or(|prev| prev.scheme() == attempt.url().scheme());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if same_scheme
                && config::parse_fetch_url("redirect", attempt.url().as_str()).is_ok()
            {
                attempt.follow()
            } else {
                attempt.error("redirect to another scheme or to plain http off loopback")
            }
        }))
        .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| JwksError::Client(error_chain(&e)))
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out.replace('\n', " ")
}

async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, JwksError> {
    let fail = |reason: String| JwksError::Read {
        path: path.display().to_string(),
        reason,
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(fail(format!(
            "it is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))
}

/// The usable keys of a JWKS document; unusable ones are logged and skipped.
fn keys_from_jwks(
    doc: &Value,
    origin: &str,
    issuer: Option<&str>,
) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
    let jwks = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::Invalid {
            origin: origin.to_owned(),
            reason: "it is not an object with a `keys` array".to_owned(),
        })?;
    let mut keys: Vec<Arc<VerifyingKey>> = Vec::new();
    let mut skipped = Vec::new();
    for jwk in jwks {
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| "-".to_owned(), shown);
        match key_from_jwk(jwk, issuer) {
            Ok(key) => {
                if keys.iter().any(|k| k.kid.is_some() && k.kid == key.kid) {
                    tracing::warn!(
                        source = origin,
                        kid,
                        "two keys share a kid; both will be tried"
                    );
                }
                keys.push(Arc::new(key));
            }
            Err(Skip::Private) => {
                // Not just unusable: whoever publishes a private key has leaked it.
                tracing::error!(
                    source = origin,
                    kid,
                    "the JWKS publishes private key material; the key is skipped and must be considered compromised"
                );
                skipped.push(format!("`{kid}`: {}", Skip::Private));
            }
            Err(skip) => {
                tracing::warn!(source = origin, kid, reason = %skip, "skipping a key that cannot verify tokens");
                skipped.push(format!("`{kid}`: {skip}"));
            }
        }
    }
    if keys.is_empty() {
        let reason = if skipped.is_empty() {
            "the `keys` array is empty".to_owned()
        } else {
            skipped.into_iter().take(3).collect::<Vec<_>>().join("; ")
        };
        return Err(JwksError::NoUsableKey {
            origin: origin.to_owned(),
            reason,
        });
    }
    Ok(keys)
}

/// Why a JWK is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Skip {
    #[error("it contains private key material")]
    Private,
    #[error("{0}")]
    Unusable(String),
}

impl From<String> for Skip {
    fn from(reason: String) -> Self {
        Self::Unusable(reason)
    }
}

impl From<&str> for Skip {
    fn from(reason: &str) -> Self {
        Self::Unusable(reason.to_owned())
    }
}

fn key_from_jwk(jwk: &Value, issuer: Option<&str>) -> Result<VerifyingKey, Skip> {
    let jwk = jwk.as_object().ok_or("it is not a JSON object")?;
    // RFC 7518 §6.2.2 and §6.3.2: these members exist only in private keys (`k` is handled
    // below with the other symmetric-key reasons).
    if ["d", "p", "q", "dp", "dq", "qi", "oth"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err(Skip::Private);
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("`kid` is not a string".into()),
    };
    // RFC 7517 §4.2–4.3: a key published for encryption must not verify signatures.
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(u)) => return Err(format!("`use` is `{}`, not `sig`", shown(u)).into()),
        Some(_) => return Err("`use` is not a string".into()),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` is not an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(alg.as_str()),
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let material = match str_member(jwk, "kty")? {
        "RSA" => Material::Rsa {
            n: b64_member(jwk, "n")?,
            e: b64_member(jwk, "e")?,
        },
        "EC" => {
            let curve = match str_member(jwk, "crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                other => return Err(format!("curve `{}` is not supported", shown(other)).into()),
            };
            let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
            // Fixed-size coordinates (RFC 7518 §6.2.1.2): a P-256 point with 48-byte
            // coordinates is a mislabeled key, not a P-384 one.
            if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                return Err(format!(
                    "the coordinates are not {} bytes long",
                    curve.coordinate_len()
                )
                .into());
            }
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::Ec { curve, point }
        }
        "OKP" => match str_member(jwk, "crv")? {
            "Ed25519" => Material::Ed25519 {
                x: b64_member(jwk, "x")?,
            },
            other => return Err(format!("curve `{}` is not supported", shown(other)).into()),
        },
        "oct" => {
            return Err(
                "it is a symmetric (`oct`) key: whoever can verify with it can also mint tokens"
                    .into(),
            )
        }
        other => return Err(format!("key type `{}` is not supported", shown(other)).into()),
    };
    verifying_key(material, alg, kid, issuer).map_err(Skip::Unusable)
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` is missing or not a string"))
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(str_member(jwk, name)?)
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// Public key material from a JWK, a SubjectPublicKeyInfo or a PKCS#1 key, not yet checked.
enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: Curve, point: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &ECDSA_P256_SHA256_FIXED,
            Self::P384 => &ECDSA_P384_SHA384_FIXED,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
        }
    }
}

impl Material {
    /// What a key of this type may verify when nothing narrows it: each curve has exactly one
    /// ECDSA algorithm (RFC 7518 §3.4), RSA keys any RSA algorithm.
    fn family(&self) -> Vec<Algorithm> {
        match self {
            Self::Rsa { .. } => RSA_ALGORITHMS.to_vec(),
            Self::Ec { curve, .. } => vec![curve.algorithm()],
            Self::Ed25519 { .. } => vec![Algorithm::EdDSA],
        }
    }

    /// Checks the key itself and builds jsonwebtoken's key.
    fn into_decoding_key(self) -> Result<DecodingKey, String> {
        match self {
            Self::Rsa { n, e } => {
                let (n, e) = (without_leading_zeros(&n), without_leading_zeros(&e));
                check_rsa(n, e)?;
                Ok(DecodingKey::from_rsa_raw_components(n, e))
            }
            Self::Ec { curve, point } => {
                // Off-curve points enable invalid-curve attacks; aws-lc checks the point here
                // so a broken key is skipped at load instead of failing every token.
                ParsedPublicKey::new(curve.verification(), &point)
                    .map_err(|_| "the point is not on the curve".to_owned())?;
                // jsonwebtoken keeps EC public keys as the uncompressed SEC1 point, whichever
                // constructor builds them.
                Ok(DecodingKey::from_ec_der(&point))
            }
            Self::Ed25519 { x } => {
                if x.len() != 32 {
                    return Err("the Ed25519 key is not 32 bytes long".to_owned());
                }
                ParsedPublicKey::new(&ED25519, &x)
                    .map_err(|_| "the Ed25519 key is not valid".to_owned())?;
                Ok(DecodingKey::from_ed_der(&x))
            }
        }
    }
}

fn verifying_key(
    material: Material,
    alg: Option<&str>,
    kid: Option<String>,
    issuer: Option<&str>,
) -> Result<VerifyingKey, String> {
    let family = material.family();
    // RFC 7517 §4.4: a key that names its `alg` is meant for that algorithm only; using it for
    // another (even of the same family) is exactly the cross-algorithm reuse JWK `alg` exists
    // to prevent.
    let algorithms = match alg {
        None => family,
        Some(name) => {
            let alg = SUPPORTED_ALGORITHMS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .ok_or_else(|| {
                    format!(
                        "`alg` `{}` is not a signature algorithm cedargate supports",
                        shown(name)
                    )
                })?;
            if !family.contains(&alg) {
                return Err(format!(
                    "`alg` `{name}` does not match the key type and curve"
                ));
            }
            vec![alg]
        }
    };
    Ok(VerifyingKey {
        kid,
        algorithms,
        key: material.into_decoding_key()?,
        issuer: issuer.map(str::to_owned),
    })
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = match n.first() {
        Some(top) => n
            .len()
            .saturating_mul(8)
            .saturating_sub(top.leading_zeros() as usize),
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "the RSA modulus has {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    if n.last().is_none_or(|low| low % 2 == 0) {
        return Err("the RSA modulus is even".to_owned());
    }
    // e = 1 makes "signatures" trivial to forge; even exponents are not RSA.
    if e.len() > 8 {
        return Err("the RSA public exponent is implausibly large".to_owned());
    }
    let exponent = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if exponent < 3 || exponent % 2 == 0 {
        return Err(format!(
            "the RSA public exponent {exponent} is not an odd number of at least 3"
        ));
    }
    if has_roca_fingerprint(n) {
        return Err("the RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be computed".to_owned());
    }
    Ok(())
}

/// Small primes of the ROCA fingerprint test (Nemec et al., CCS 2017).
const ROCA_PRIMES: [u64; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// Whether `n` looks generated by the Infineon library that builds primes as
/// `k·M + (65537^a mod M)`: then `n mod p` lies in the subgroup generated by 65537 for every
/// small prime `p` of `M`, which a random modulus does with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % p);
        let generator = 65537 % p;
        let mut power = 1u64;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

/// The key in a PEM file: `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) or
/// an X.509 `CERTIFICATE`, whose key is used as is (the original Auth0 example verified with
/// the tenant's signing certificate; its validity dates and signature are not what makes the
/// key trustworthy, the configuration is).
fn key_from_pem(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let blocks = crate::pem::decode(bytes)?;
    // One block only: the second certificate of a chain is a CA, whose key must not verify
    // tokens.
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "it holds {} PEM blocks; exactly one is expected",
            blocks.len()
        ));
    };
    let der = block.der.as_slice();
    let material = match block.label.as_str() {
        "CERTIFICATE" => {
            let (rest, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| format!("the certificate does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the certificate has trailing data".to_owned());
            }
            spki_material(cert.public_key())?
        }
        "PUBLIC KEY" => {
            let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
                .map_err(|e| format!("the public key does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the public key has trailing data".to_owned());
            }
            spki_material(&spki)?
        }
        "RSA PUBLIC KEY" => {
            let (rest, rsa) = RSAPublicKey::from_der(der)
                .map_err(|e| format!("the RSA public key does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the RSA public key has trailing data".to_owned());
            }
            Material::Rsa {
                n: rsa.modulus.to_vec(),
                e: rsa.exponent.to_vec(),
            }
        }
        label if label.contains("PRIVATE KEY") => {
            return Err("it holds a private key; give the public key or the certificate".to_owned())
        }
        label => {
            return Err(format!(
                "PEM label `{}` is not a public key or certificate",
                shown(label)
            ))
        }
    };
    verifying_key(material, None, None, None)
}

fn spki_material(spki: &SubjectPublicKeyInfo<'_>) -> Result<Material, String> {
    let oid = &spki.algorithm.algorithm;
    let data = spki.subject_public_key.data.to_vec();
    if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Ok(Material::Rsa {
                n: rsa.modulus.to_vec(),
                e: rsa.exponent.to_vec(),
            }),
            _ => Err("the RSA public key does not parse".to_owned()),
        }
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let curve = match curve {
            Some(c) if c == OID_EC_P256 => Curve::P256,
            Some(c) if c == OID_NIST_EC_P384 => Curve::P384,
            Some(c) => return Err(format!("curve `{c}` is not supported")),
            None => return Err("the EC key names no curve".to_owned()),
        };
        Ok(Material::Ec { curve, point: data })
    } else if *oid == OID_SIG_ED25519 {
        Ok(Material::Ed25519 { x: data })
    } else {
        Err(format!("key algorithm `{oid}` is not supported"))
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Keys, JWKs, tokens and a tiny JWKS server for the tests of this module and `claims`.

    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};

    use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
    use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
        ECDSA_P384_SHA384_FIXED_SIGNING,
    };
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{json, Value};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A generated key pair: what signs tokens, and the public half in the forms sources use.
    pub struct TestKey {
        pub encoding: EncodingKey,
        /// The public JWK members (kty, crv/n/e/x/y), without kid, alg or use.
        pub public: Value,
        /// DER SubjectPublicKeyInfo.
        pub spki: Vec<u8>,
        /// PKCS#1 RSAPublicKey for RSA keys.
        pub pkcs1: Option<Vec<u8>>,
        /// PKCS#8 private key, for tests that must refuse private material.
        pub pkcs8: Vec<u8>,
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn pem(label: &str, der: &[u8]) -> String {
        crate::pem::encode(label, der)
    }

    fn rsa_new() -> TestKey {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair)
            .unwrap()
            .as_ref()
            .to_vec();
        let public = pair.public_key();
        let n = public.modulus().big_endian_without_leading_zero().to_vec();
        let e = public.exponent().big_endian_without_leading_zero().to_vec();
        let spki = AsDer::<PublicKeyX509Der>::as_der(public)
            .unwrap()
            .as_ref()
            .to_vec();
        TestKey {
            encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", &pkcs8).as_bytes()).unwrap(),
            public: json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)}),
            spki,
            pkcs1: Some(public.as_ref().to_vec()),
            pkcs8,
        }
    }

    /// RSA key generation is slow in debug builds: each test binary makes two and shares them.
    pub fn rsa() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(rsa_new)
    }

    pub fn rsa_other() -> &'static TestKey {
        static KEY: OnceLock<TestKey> = OnceLock::new();
        KEY.get_or_init(rsa_new)
    }

    pub fn ec(alg: Algorithm) -> TestKey {
        let (signing, crv, len) = match alg {
            Algorithm::ES256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
            Algorithm::ES384 => (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
            _ => panic!("not an EC algorithm"),
        };
        let pair = EcdsaKeyPair::generate(signing).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
        let point = pair.public_key().as_ref().to_vec();
        let (x, y) = point[1..].split_at(len);
        TestKey {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            public: json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}),
            spki: AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
                .unwrap()
                .as_ref()
                .to_vec(),
            pkcs1: None,
            pkcs8,
        }
    }

    pub fn ed25519() -> TestKey {
        let pair = Ed25519KeyPair::generate().unwrap();
        let pkcs8 = pair.to_pkcs8().unwrap().as_ref().to_vec();
        let x = pair.public_key().as_ref().to_vec();
        TestKey {
            encoding: EncodingKey::from_ed_der(&pkcs8),
            public: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)}),
            spki: AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
                .unwrap()
                .as_ref()
                .to_vec(),
            pkcs1: None,
            pkcs8,
        }
    }

    /// The public JWK with extra members (kid, alg, use, …) merged in.
    pub fn jwk(key: &TestKey, extra: Value) -> Value {
        let mut jwk = key.public.clone();
        for (k, v) in extra.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        jwk
    }

    pub fn jwks(keys: &[Value]) -> String {
        json!({ "keys": keys }).to_string()
    }

    pub fn mint(key: &TestKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
    }

    /// A hand-built X.509 certificate around `spki`. Only the structure matters: cedargate uses
    /// the certificate as a key container and never checks its signature.
    pub fn certificate(spki: &[u8]) -> Vec<u8> {
        fn der(tag: u8, content: &[u8]) -> Vec<u8> {
            let mut out = vec![tag];
            let len = content.len();
            if len < 128 {
                out.push(len as u8);
            } else if len < 256 {
                out.extend([0x81, len as u8]);
            } else {
                out.extend([0x82, (len >> 8) as u8, len as u8]);
            }
            out.extend_from_slice(content);
            out
        }
        let sha256_rsa = der(
            0x30,
            &[
                der(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
                ),
                der(0x05, &[]),
            ]
            .concat(),
        );
        let name = der(
            0x30,
            &der(
                0x31,
                &der(
                    0x30,
                    &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"cedargate test")].concat(),
                ),
            ),
        );
        let validity = der(
            0x30,
            &[der(0x17, b"250101000000Z"), der(0x17, b"350101000000Z")].concat(),
        );
        let tbs = der(
            0x30,
            &[
                der(0xa0, &der(0x02, &[2])),
                der(0x02, &[1]),
                sha256_rsa.clone(),
                name.clone(),
                validity,
                name,
                spki.to_vec(),
            ]
            .concat(),
        );
        der(0x30, &[tbs, sha256_rsa, der(0x03, &[0, 1, 2, 3])].concat())
    }

    /// A minimal HTTP/1.1 server on 127.0.0.1 serving fixed JSON bodies by path, counting
    /// requests per path. Bodies can be replaced while it runs.
    pub struct JsonServer {
        pub base: String,
        routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
        hits: Arc<Mutex<HashMap<String, usize>>>,
        total: Arc<AtomicUsize>,
        task: tokio::task::JoinHandle<()>,
    }

    impl JsonServer {
        pub async fn start() -> Self {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let routes: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
            let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
            let total = Arc::new(AtomicUsize::new(0));
            let (r, h, t) = (routes.clone(), hits.clone(), total.clone());
            let task = tokio::spawn(async move {
                loop {
                    let Ok((mut socket, _)) = listener.accept().await else {
                        return;
                    };
                    let (r, h, t) = (r.clone(), h.clone(), t.clone());
                    tokio::spawn(async move {
                        let mut request = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => request.extend_from_slice(&buf[..n]),
                            }
                        }
                        let line = String::from_utf8_lossy(&request)
                            .lines()
                            .next()
                            .unwrap_or("")
                            .to_owned();
                        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                        t.fetch_add(1, Ordering::SeqCst);
                        *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                        let route = r.lock().unwrap().get(&path).cloned();
                        let (status, body) = route.unwrap_or((404, "{}".to_owned()));
                        let head = format!(
                            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body.as_bytes()).await;
                        let _ = socket.shutdown().await;
                    });
                }
            });
            Self {
                base,
                routes,
                hits,
                total,
                task,
            }
        }

        pub fn set(&self, path: &str, status: u16, body: impl Into<String>) {
            self.routes
                .lock()
                .unwrap()
                .insert(path.to_owned(), (status, body.into()));
        }

        pub fn hits(&self, path: &str) -> usize {
            self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
        }

        pub fn total(&self) -> usize {
            self.total.load(Ordering::SeqCst)
        }
    }

    impl Drop for JsonServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde_json::json;

    use super::test_support::*;
    use super::*;

    fn load(keys: &[Value]) -> Result<KeyStore, JwksError> {
        KeyStore::from_jwks_json(&jwks(keys))
    }

    fn one_key(jwk: Value) -> Result<VerifyingKey, Skip> {
        key_from_jwk(&jwk, None)
    }

    fn skipped(jwk: Value) -> String {
        match one_key(jwk) {
            Ok(key) => panic!("key was accepted: {key:?}"),
            Err(skip) => skip.to_string(),
        }
    }

    fn cfg(pairs: &[(&str, &str)]) -> JwtConfig {
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        env.insert("CEDARGATE_ISSUER".into(), "https://issuer.example/".into());
        env.insert("CEDARGATE_AUDIENCE".into(), "api".into());
        for (k, v) in pairs {
            env.insert((*k).into(), (*v).into());
        }
        JwtConfig::from_env(&env).unwrap()
    }

    #[test]
    fn key_algorithms_follow_type_and_pinned_alg() {
        let rsa = rsa();
        assert_eq!(
            one_key(rsa.public.clone()).unwrap().algorithms(),
            RSA_ALGORITHMS
        );
        assert_eq!(
            one_key(jwk(rsa, json!({"alg": "PS384"})))
                .unwrap()
                .algorithms(),
            [Algorithm::PS384]
        );
        assert_eq!(
            one_key(ec(Algorithm::ES256).public).unwrap().algorithms(),
            [Algorithm::ES256]
        );
        assert_eq!(
            one_key(ec(Algorithm::ES384).public).unwrap().algorithms(),
            [Algorithm::ES384]
        );
        assert_eq!(
            one_key(ed25519().public).unwrap().algorithms(),
            [Algorithm::EdDSA]
        );
        let key = one_key(jwk(
            rsa,
            json!({"kid": "k1", "use": "sig", "key_ops": ["verify"]}),
        ))
        .unwrap();
        assert_eq!(key.kid(), Some("k1"));
    }

    #[test]
    fn keys_for_other_uses_are_skipped() {
        let rsa = rsa();
        assert!(skipped(jwk(rsa, json!({"use": "enc"}))).contains("`use`"));
        assert!(skipped(jwk(rsa, json!({"use": 1}))).contains("`use`"));
        assert!(skipped(jwk(rsa, json!({"key_ops": ["encrypt"]}))).contains("key_ops"));
        assert!(skipped(jwk(rsa, json!({"key_ops": []}))).contains("key_ops"));
        assert!(skipped(jwk(rsa, json!({"key_ops": "verify"}))).contains("key_ops"));
    }

    #[test]
    fn alg_must_match_kty_and_curve() {
        let rsa = rsa();
        let p256 = ec(Algorithm::ES256);
        for (jwk, what) in [
            (jwk(rsa, json!({"alg": "ES256"})), "RSA key pinned to ES256"),
            (jwk(rsa, json!({"alg": "RSA-OAEP"})), "RSA encryption alg"),
            (jwk(rsa, json!({"alg": "HS256"})), "RSA key pinned to HS256"),
            (
                jwk(&p256, json!({"alg": "ES384"})),
                "P-256 key pinned to ES384",
            ),
            (jwk(&p256, json!({"alg": "ES521"})), "unknown alg"),
            (
                jwk(&p256, json!({"alg": "RS256"})),
                "EC key pinned to RS256",
            ),
            (
                jwk(&ed25519(), json!({"alg": "ES256"})),
                "OKP key pinned to ES256",
            ),
            (
                jwk(&p256, json!({"crv": "P-384"})),
                "P-256 coordinates labeled P-384",
            ),
            (jwk(&p256, json!({"kty": "RSA"})), "EC members labeled RSA"),
        ] {
            assert!(one_key(jwk).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn weak_or_broken_rsa_keys_are_skipped() {
        let rsa = rsa();
        let n = URL_SAFE_NO_PAD
            .decode(rsa.public["n"].as_str().unwrap())
            .unwrap();
        let short = URL_SAFE_NO_PAD.encode(&n[..128]); // 1024 bits
        assert!(skipped(jwk(rsa, json!({"n": short}))).contains("1024 bits"));
        assert!(skipped(jwk(rsa, json!({"e": "AQ"}))).contains("exponent 1"));
        assert!(skipped(jwk(rsa, json!({"e": "Ag"}))).contains("exponent 2"));
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(skipped(jwk(rsa, json!({"n": URL_SAFE_NO_PAD.encode(&even)}))).contains("even"));
        // A leading zero octet (seen in real JWKS) is tolerated, and does not count as a bit.
        let padded = [&[0u8][..], &n].concat();
        assert!(one_key(jwk(rsa, json!({"n": URL_SAFE_NO_PAD.encode(&padded)}))).is_ok());
    }

    #[test]
    fn roca_fingerprint() {
        // A modulus of the shape the Infineon library produced, n = p·q with p, q ≡ 65537^a
        // (mod every small prime), versus our generated keys.
        let generated = URL_SAFE_NO_PAD
            .decode(rsa().public["n"].as_str().unwrap())
            .unwrap();
        assert!(!has_roca_fingerprint(&generated));
        // Build n mod p = 65537^k mod p for every ROCA prime via the CRT-free trick: any number
        // of the form 65537^k has the fingerprint.
        let mut n = vec![1u8];
        for _ in 0..7 {
            // n *= 65537 (big-endian byte vector)
            let mut carry = 0u64;
            for byte in n.iter_mut().rev() {
                let v = u64::from(*byte) * 65537 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                n.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        assert!(has_roca_fingerprint(&n));
    }

    #[test]
    fn symmetric_private_and_unsupported_keys_are_skipped() {
        assert!(
            skipped(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})).contains("symmetric")
        );
        let mut private = rsa().public.clone();
        private["d"] = json!("AQAB");
        assert!(matches!(one_key(private), Err(Skip::Private)));
        let mut private = ec(Algorithm::ES256).public;
        private["d"] = json!("AQAB");
        assert!(matches!(one_key(private), Err(Skip::Private)));
        assert!(
            skipped(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})).contains("P-521")
        );
        assert!(
            skipped(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}))
                .contains("secp256k1")
        );
        assert!(skipped(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"})).contains("Ed448"));
        assert!(skipped(json!({"kty": "OKP", "crv": "X25519", "x": "AA"})).contains("X25519"));
        assert!(skipped(json!({"kty": "DSA"})).contains("DSA"));
        assert!(skipped(json!("RSA")).contains("object"));
    }

    #[test]
    fn off_curve_points_are_skipped() {
        let mut key = ec(Algorithm::ES256).public;
        let mut y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        key["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
        assert!(skipped(key).contains("not on the curve"));
    }

    #[test]
    fn one_bad_key_does_not_spoil_the_set_but_no_good_key_is_an_error() {
        let store = load(&[
            json!({"kty": "oct", "k": "c2VjcmV0"}),
            jwk(rsa(), json!({"kid": "good"})),
            jwk(rsa_other(), json!({"kid": "enc", "use": "enc"})),
        ])
        .unwrap();
        assert_eq!(store.fixed.len(), 1);
        let err = load(&[json!({"kty": "oct", "k": "c2VjcmV0", "kid": "s"})])
            .err()
            .unwrap();
        assert!(matches!(err, JwksError::NoUsableKey { .. }), "{err}");
        assert!(err.to_string().contains("symmetric"), "{err}");
        assert!(matches!(load(&[]), Err(JwksError::NoUsableKey { .. })));
        assert!(matches!(
            KeyStore::from_jwks_json("[]"),
            Err(JwksError::Invalid { .. })
        ));
        assert!(matches!(
            KeyStore::from_jwks_json("nope"),
            Err(JwksError::Invalid { .. })
        ));
    }

    #[test]
    fn pem_public_keys_and_certificates() {
        let rsa = rsa();
        for text in [
            pem("PUBLIC KEY", &rsa.spki),
            pem("RSA PUBLIC KEY", rsa.pkcs1.as_ref().unwrap()),
            pem("CERTIFICATE", &certificate(&rsa.spki)),
        ] {
            let key = key_from_pem(text.as_bytes()).unwrap();
            assert_eq!(key.algorithms(), RSA_ALGORITHMS);
            assert_eq!(key.kid(), None);
        }
        let p384 = ec(Algorithm::ES384);
        assert_eq!(
            key_from_pem(pem("PUBLIC KEY", &p384.spki).as_bytes())
                .unwrap()
                .algorithms(),
            [Algorithm::ES384]
        );
        let ed = ed25519();
        assert_eq!(
            key_from_pem(pem("CERTIFICATE", &certificate(&ed.spki)).as_bytes())
                .unwrap()
                .algorithms(),
            [Algorithm::EdDSA]
        );
    }

    #[test]
    fn pem_files_that_are_not_one_public_key_are_refused() {
        let rsa = rsa();
        let private = key_from_pem(pem("PRIVATE KEY", &rsa.pkcs8).as_bytes())
            .err()
            .unwrap();
        assert!(private.contains("private key"), "{private}");
        let chain = format!(
            "{}{}",
            pem("CERTIFICATE", &certificate(&rsa.spki)),
            pem("CERTIFICATE", &certificate(&rsa_other().spki))
        );
        assert!(key_from_pem(chain.as_bytes())
            .err()
            .unwrap()
            .contains("2 PEM blocks"));
        assert!(key_from_pem(b"no pem here").is_err());
        assert!(key_from_pem(pem("PUBLIC KEY", b"\x30\x00").as_bytes()).is_err());
        // The same size rules as JWKS: a 1024-bit RSA key in a certificate is refused.
        let small = {
            let n = URL_SAFE_NO_PAD
                .decode(rsa.public["n"].as_str().unwrap())
                .unwrap();
            let mut pkcs1 = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
            pkcs1.extend_from_slice(&n[..128]);
            pkcs1.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
            pkcs1
        };
        let err = key_from_pem(pem("RSA PUBLIC KEY", &small).as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("1024 bits"), "{err}");
    }

    #[tokio::test]
    async fn lookup_by_kid_and_alg() {
        let store = load(&[
            jwk(rsa(), json!({"kid": "rs", "alg": "RS256"})),
            jwk(&ec(Algorithm::ES256), json!({"kid": "es"})),
        ])
        .unwrap();
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("rs"))
                .await
                .unwrap()
                .kid(),
            Some("rs")
        );
        assert_eq!(
            store
                .key_for(Algorithm::PS256, Some("rs"))
                .await
                .unwrap_err(),
            JwksError::AlgorithmMismatch {
                kid: "rs".into(),
                alg: "PS256"
            }
        );
        assert_eq!(
            store.key_for(Algorithm::ES256, None).await.unwrap().kid(),
            Some("es")
        );
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("nope"))
                .await
                .unwrap_err(),
            JwksError::UnknownKid("nope".into())
        );
        assert_eq!(
            store.key_for(Algorithm::EdDSA, None).await.unwrap_err(),
            JwksError::NoKeyForAlgorithm("EdDSA")
        );
    }

    #[tokio::test]
    async fn kidless_tokens_try_a_bounded_number_of_keys() {
        let keys: Vec<Value> = (0..6)
            .map(|i| jwk(rsa(), json!({"kid": format!("k{i}")})))
            .collect();
        let store = load(&keys).unwrap();
        assert_eq!(
            store.keys_for(Algorithm::RS256, None).await.unwrap().len(),
            MAX_CANDIDATES
        );
    }

    #[tokio::test]
    async fn a_pem_key_stands_for_any_kid() {
        let dir = std::env::temp_dir().join(format!("cedargate-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cert.pem");
        std::fs::write(&path, pem("CERTIFICATE", &certificate(&rsa().spki))).unwrap();
        let store = KeyStore::new(&cfg(&[(
            "CEDARGATE_PUBLIC_KEY_FILE",
            path.to_str().unwrap(),
        )]))
        .await
        .unwrap();
        assert!(store.http.is_none(), "a PEM key alone means no fetching");
        assert!(store
            .key_for(Algorithm::RS256, Some("whatever-auth0-says"))
            .await
            .is_ok());
        assert!(store.key_for(Algorithm::RS256, None).await.is_ok());
        assert!(store.key_for(Algorithm::ES256, None).await.is_err());
        let missing = KeyStore::new(&cfg(&[(
            "CEDARGATE_PUBLIC_KEY_FILE",
            "/nonexistent/key.pem",
        )]))
        .await;
        assert!(matches!(missing, Err(JwksError::Read { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn remote_cfg(url: &str, cooldown_ms: u64, max_age_ms: u64) -> JwtConfig {
        let mut cfg = cfg(&[("CEDARGATE_JWKS_URL", url)]);
        cfg.jwks_cooldown = Duration::from_millis(cooldown_ms);
        cfg.jwks_max_age = Duration::from_millis(max_age_ms);
        cfg
    }

    #[tokio::test]
    async fn remote_keys_are_fetched_lazily_and_unknown_kids_refetch_once_per_cooldown() {
        let server = JsonServer::start().await;
        server.set("/jwks", 200, jwks(&[jwk(rsa(), json!({"kid": "a"}))]));
        let store = KeyStore::new(&remote_cfg(
            &format!("{}/jwks", server.base),
            300,
            3_600_000,
        ))
        .await
        .unwrap();
        assert_eq!(store.fetch_count(), 0, "nothing is fetched at start");
        assert!(store.key_for(Algorithm::RS256, Some("a")).await.is_ok());
        assert_eq!(store.fetch_count(), 1);
        assert!(store.key_for(Algorithm::RS256, Some("a")).await.is_ok());
        assert_eq!(store.fetch_count(), 1, "known kids are served from memory");

        // Within the cooldown of the first fetch, an unknown kid does not refetch.
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("b"))
                .await
                .unwrap_err(),
            JwksError::UnknownKid("b".into())
        );
        assert_eq!(store.fetch_count(), 1);

        // After it, one refetch picks up a rotated key; more unknown kids wait for the cooldown.
        tokio::time::sleep(Duration::from_millis(350)).await;
        server.set(
            "/jwks",
            200,
            jwks(&[
                jwk(rsa(), json!({"kid": "a"})),
                jwk(rsa_other(), json!({"kid": "b"})),
            ]),
        );
        assert!(store.key_for(Algorithm::RS256, Some("b")).await.is_ok());
        assert_eq!(store.fetch_count(), 2);
        assert!(store.key_for(Algorithm::RS256, Some("c")).await.is_err());
        assert!(store.key_for(Algorithm::RS256, Some("d")).await.is_err());
        assert_eq!(store.fetch_count(), 2);
        assert_eq!(server.hits("/jwks"), 2);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let server = JsonServer::start().await;
        server.set("/jwks", 200, jwks(&[jwk(rsa(), json!({"kid": "a"}))]));
        let store = Arc::new(
            KeyStore::new(&remote_cfg(
                &format!("{}/jwks", server.base),
                60_000,
                3_600_000,
            ))
            .await
            .unwrap(),
        );
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let kid = if i % 2 == 0 { "a" } else { "unknown" };
                    store.key_for(Algorithm::RS256, Some(kid)).await.is_ok()
                })
            })
            .collect();
        let mut ok = 0;
        for task in tasks {
            ok += usize::from(task.await.unwrap());
        }
        assert_eq!(ok, 8);
        assert_eq!(store.fetch_count(), 1);
        assert_eq!(server.total(), 1);
    }

    #[tokio::test]
    async fn stale_keys_are_refreshed_and_kept_when_the_refresh_fails() {
        let server = JsonServer::start().await;
        server.set("/jwks", 200, jwks(&[jwk(rsa(), json!({"kid": "a"}))]));
        let store = KeyStore::new(&remote_cfg(&format!("{}/jwks", server.base), 0, 100))
            .await
            .unwrap();
        assert!(store.key_for(Algorithm::RS256, Some("a")).await.is_ok());
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.set("/jwks", 500, "{}");
        assert!(
            store.key_for(Algorithm::RS256, Some("a")).await.is_ok(),
            "old keys keep working"
        );
        assert_eq!(store.fetch_count(), 2, "the stale keys were refetched");
        // A refresh that succeeds replaces the set: a key dropped from the JWKS is gone.
        tokio::time::sleep(Duration::from_millis(150)).await;
        server.set("/jwks", 200, jwks(&[jwk(rsa_other(), json!({"kid": "b"}))]));
        assert!(store.key_for(Algorithm::RS256, Some("b")).await.is_ok());
        assert!(store.key_for(Algorithm::RS256, Some("a")).await.is_err());
    }

    #[tokio::test]
    async fn file_keys_need_no_network_and_stay_available() {
        let server = JsonServer::start().await;
        server.set("/jwks", 503, "{}");
        let dir = std::env::temp_dir().join(format!("cedargate-jwks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("jwks.json");
        std::fs::write(&path, jwks(&[jwk(rsa(), json!({"kid": "file"}))])).unwrap();
        let mut cfg = remote_cfg(&format!("{}/jwks", server.base), 0, 3_600_000);
        cfg.jwks_file = Some(path);
        let store = KeyStore::new(&cfg).await.unwrap();
        assert!(store.key_for(Algorithm::RS256, Some("file")).await.is_ok());
        assert_eq!(server.total(), 0, "a kid in the file needs no fetch");
        let err = store
            .key_for(Algorithm::RS256, Some("remote"))
            .await
            .unwrap_err();
        assert_eq!(err, JwksError::UnknownKid("remote".into()));
        assert_eq!(server.total(), 1);
        assert!(store.key_for(Algorithm::RS256, Some("file")).await.is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn unreachable_keys_say_why() {
        let server = JsonServer::start().await;
        server.set("/jwks", 200, "not json");
        let store = KeyStore::new(&remote_cfg(&format!("{}/jwks", server.base), 0, 3_600_000))
            .await
            .unwrap();
        let err = store
            .key_for(Algorithm::RS256, Some("a"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JwksError::Unavailable(why) if why.contains("not JSON")),
            "{err}"
        );
        server.set("/jwks", 200, "x".repeat(MAX_DOCUMENT_BYTES + 1));
        let err = store
            .key_for(Algorithm::RS256, Some("a"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    fn discovery(issuer: &str, jwks_uri: &str) -> String {
        json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string()
    }

    #[tokio::test]
    async fn discovery_finds_each_issuers_keys_and_tags_them() {
        let a = JsonServer::start().await;
        let b = JsonServer::start().await;
        let (iss_a, iss_b) = (format!("{}/", a.base), b.base.clone());
        a.set(
            "/.well-known/openid-configuration",
            200,
            discovery(&iss_a, &format!("{}/keys", a.base)),
        );
        a.set("/keys", 200, jwks(&[jwk(rsa(), json!({"kid": "ka"}))]));
        b.set(
            "/.well-known/openid-configuration",
            200,
            discovery(&iss_b, &format!("{}/keys", b.base)),
        );
        b.set(
            "/keys",
            200,
            jwks(&[jwk(rsa_other(), json!({"kid": "kb"}))]),
        );
        let mut cfg = cfg(&[]);
        cfg.issuers = vec![iss_a.clone(), iss_b.clone()];
        let store = KeyStore::new(&cfg).await.unwrap();
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("ka"))
                .await
                .unwrap()
                .issuer(),
            Some(iss_a.as_str())
        );
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("kb"))
                .await
                .unwrap()
                .issuer(),
            Some(iss_b.as_str())
        );
        assert_eq!(store.fetch_count(), 2);
        assert_eq!(a.hits("/.well-known/openid-configuration"), 1);
    }

    #[tokio::test]
    async fn discovery_documents_must_name_the_issuer_and_a_safe_jwks_uri() {
        let server = JsonServer::start().await;
        let issuer = server.base.clone();
        let mut cfg = cfg(&[]);
        cfg.issuers = vec![issuer.clone()];
        cfg.jwks_cooldown = Duration::ZERO;
        server.set("/keys", 200, jwks(&[jwk(rsa(), json!({"kid": "k"}))]));
        for (doc, want) in [
            (
                discovery(&format!("{issuer}/"), &format!("{issuer}/keys")),
                "names issuer",
            ),
            (
                discovery("https://evil.example", &format!("{issuer}/keys")),
                "names issuer",
            ),
            (discovery(&issuer, "http://keys.example/jwks"), "plain http"),
            (discovery(&issuer, "file:///etc/passwd"), "scheme"),
            (json!({"issuer": issuer}).to_string(), "jwks_uri"),
        ] {
            server.set("/.well-known/openid-configuration", 200, doc);
            let store = KeyStore::new(&cfg).await.unwrap();
            let err = store
                .key_for(Algorithm::RS256, Some("k"))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert_eq!(server.hits("/keys"), 0);
    }

    #[tokio::test]
    async fn redirects_may_not_leave_loopback_http() {
        let server = JsonServer::start().await;
        let store = KeyStore::new(&remote_cfg(&format!("{}/jwks", server.base), 0, 3_600_000))
            .await
            .unwrap();
        // Served by hand: our tiny server only does 200/404-style bodies, so test the policy on
        // a real redirect response.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://keys.example/jwks\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let url = reqwest::Url::parse(&format!("http://{addr}/jwks")).unwrap();
        let err = store.get_json(&url).await.unwrap_err();
        assert!(err.contains("redirect"), "{err}");
    }
}
