//! Verification keys: configured sources → [`KeyStore`] → the [`VerifyingKey`]s for a token.
//!
//! Stage: beside `token` → `claims`; the only part of token verification that does I/O.
//! Inputs: `CEDARGATE_JWKS_FILE` and `CEDARGATE_PUBLIC_KEY_FILE` (read at start), and remote
//! JWKS (`CEDARGATE_JWKS_URL`, or each issuer's `jwks_uri` from OIDC discovery) fetched lazily.
//! Output: for a token's `alg` and `kid`, the few keys that may verify it.
//!
//! This file is the key cache and its single flight: which keys a token may try, and when a
//! remote source is fetched again. Getting a key is done beside it, one stage per file:
//! `fetch` (file bytes, HTTPS documents, OIDC discovery), `jwk` and `pem` (a document → key
//! material, filtered by what each key says it is for), `material` (checks on the key itself).
//! Those files are private: the types here are the whole interface of `jwks`.
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

mod fetch;
mod jwk;
mod pem;
mod material;
#[cfg(test)]
pub(crate) mod test_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::config::JwtConfig;
use crate::token::{alg_name, shown};
use fetch::{http_client, read_file};
use jwk::keys_from_jwks;
use pem::key_from_pem;

/// A token without `kid` is tried against at most this many keys: enough for a rotation
/// overlap, few enough that a kid-less token cannot make us run many verifications.
pub const MAX_CANDIDATES: usize = 4;

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
    /// The issuer whose OIDC discovery (or own `ISSUER=URL` JWKS) produced this key: tokens it
    /// verifies must name that issuer. `None` for keys configured for every issuer (file, PEM,
    /// a JWKS URL without an issuer).
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

    /// The issuer this key vouches for alone (its discovery or its own JWKS URL), if any.
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
    /// How many of them failed.
    fetch_failures: AtomicU64,
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
    /// A JWKS URL; with an issuer (`ISSUER=URL` in `CEDARGATE_JWKS_URL`) its keys vouch for
    /// that issuer only.
    Jwks {
        url: reqwest::Url,
        issuer: Option<String>,
    },
    Discovery {
        issuer: String,
    },
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
        // An issuer's own JWKS URL first; then one URL for every issuer; else, unless a key
        // file or PEM key means "these keys only" (config.rs), each remaining issuer's
        // discovery.
        let own_url = |issuer: &String| cfg.per_issuer.get(issuer)?.jwks_url.clone();
        let mut sources: Vec<RemoteSource> = cfg
            .issuers
            .iter()
            .filter_map(|issuer| {
                Some(RemoteSource::Jwks {
                    url: own_url(issuer)?,
                    issuer: Some(issuer.clone()),
                })
            })
            .collect();
        match &cfg.jwks_url {
            Some(url) => sources.push(RemoteSource::Jwks {
                url: url.clone(),
                issuer: None,
            }),
            None if cfg.jwks_file.is_some() || cfg.public_key_file.is_some() => {}
            None => sources.extend(
                cfg.issuers
                    .iter()
                    .filter(|issuer| own_url(issuer).is_none())
                    .map(|issuer| RemoteSource::Discovery {
                        issuer: issuer.clone(),
                    }),
            ),
        }
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
            fetch_failures: AtomicU64::new(0),
        })
    }

    /// The keys loaded at start (the fuzz targets check what a JWKS document leaves in it).
    #[cfg(fuzzing)]
    pub(crate) fn fixed_keys(&self) -> &[Arc<VerifyingKey>] {
        &self.fixed
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
            fetch_failures: AtomicU64::new(0),
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

    /// How many JWKS fetches failed (discovery failures included: the keys were not had).
    pub fn fetch_failure_count(&self) -> u64 {
        self.fetch_failures.load(Ordering::Relaxed)
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
                self.fetch_failures.fetch_add(1, Ordering::Relaxed);
                let kept = remote.keys.load().as_ref().map_or(0, |f| f.keys.len());
                tracing::warn!(source = %remote.source, %error, kept, "key refresh failed; keeping the previous keys");
                // Discovery is redone next time: the jwks_uri may be what changed.
                state.jwks_uri = None;
                remote.last_error.store(Some(Arc::new(error.to_string())));
            }
        }
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::test_support::*;
    use super::*;

    fn load(keys: &[Value]) -> Result<KeyStore, JwksError> {
        KeyStore::from_jwks_json(&jwks(keys))
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
}
