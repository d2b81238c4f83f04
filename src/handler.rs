//! The authorizer: one event in, one response (or `Unauthorized`) out.
//!
//! This is the exact code the Lambda runs; `invoke` and `serve` call it too. It is the async
//! edge around the pure core ([`crate::authorize::authorize`]): it keeps the policy store
//! fresh, verifies the token (a key lookup may fetch), holds the caches, writes the logs (one
//! decision line per call, answered or refused: [`crate::audit`]), applies shadow mode, and
//! maps every refusal to the one [`Unauthorized`].
//!
//! ## Shadow mode
//! `CEDARGATE_MODE=shadow` changes the answer only after the decision: tokens are verified and
//! refused exactly as when enforcing, the decisions are made and logged as enforcing would
//! answer, and then the answer allows the request's whole API stage (see [`shadow`]).
//!
//! ## 401, 403 and 500
//! API Gateway turns a Lambda error whose message is exactly `Unauthorized` into 401, a policy
//! into 200/403 per route, and anything else into 500. So: a missing, malformed, invalid or
//! expired token — and an event without a usable method ARN — is [`Unauthorized`]; a valid
//! token gets a policy (with an explicit Deny for the request when it is not permitted); and
//! nothing a client sends can produce another error. With no valid policy bundle loaded, a
//! valid token gets a Deny for everything.
//!
//! ## Caches (warm Lambda, `invoke`, `serve`)
//! - Verified claims per token (its SHA-256), until `exp`: a repeat token costs no signature
//!   check.
//! - Decisions per (bundle, facts digest): callers with the same facts share one entry, so a
//!   never-seen token whose facts are known costs one signature check and a lookup.
//! - The route-independent part of each IAM policy per (bundle, decisions, API and stage),
//!   and the finished policy, with its JSON, per (that part, requested route), where it does
//!   not depend on the requested resource itself.
//!
//! All four are bounded by [`quick_cache`] (S3-FIFO): an entry enters a small probationary
//! queue and moves to the main one only when it is used again, so a flood of one-off tokens,
//! or of requests varying a fact, evicts its own kind and never the warm entries other
//! callers share. Tokens are never logged, only a short fingerprint; header values never.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use quick_cache::sync::Cache;
use quick_cache::Weighter;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::audit::{Audit, Cache as Answered, Granted, Outcome, PolicyError, Record, Totals};
use crate::authorize::{
    authorize, Answer, BaseKey, BaseKeyRef, DecisionKey, Input, Memo, Note, PolicyBase, PolicyKey,
};
use crate::bundle::Snapshot;
use crate::claims::{VerifiedClaims, Verifier};
use crate::config::{JwtConfig, Mode, ObserveConfig, ResponseConfig};
use crate::decide::{Decisions, Detail};
use crate::event::{AuthzRequest, EventError, Flavor};
use crate::facts::ClaimError;
use crate::iam::{Policy, Shape};
use crate::response::Response;
use crate::store::Store;
use crate::time::unix_now;
use crate::token::{bearer, fingerprint_of, UnverifiedJwt};

/// The one error API Gateway maps to 401. Its message must be exactly `Unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

/// How many verified tokens are kept (about a kilobyte each).
const CLAIMS_ENTRIES: usize = 10_000;
// How much memory each memo may take, in (estimated) bytes: together with the verified tokens
// (about 25 MiB at most) some 75 MiB, which leaves a 256 MiB function room for a bundle of
// 10,000 policies (about 140 MiB loaded).
/// Memoized decisions.
const DECISION_BYTES: u64 = 16 << 20;
/// Memoized policy bases.
const BASE_BYTES: u64 = 16 << 20;
/// Memoized finished policies.
const POLICY_BYTES: u64 = 16 << 20;

/// The share of each cache kept for entries used more than once. quick_cache's default (97%)
/// leaves new entries a probationary queue so short that an entry whose second use comes a few
/// hundred requests later (a caller's facts, reused after a while) is already gone; a fifth
/// of the space gives them that time, and a flood of one-off entries still passes through
/// the probationary queue alone, never touching the four fifths the reused entries hold.
const HOT_SHARE: f64 = 0.8;

/// A bounded cache sized for `entries` entries, holding at most `weight` (by `weighter`).
fn bounded<K, V, W>(entries: usize, weight: u64, weighter: W) -> Cache<K, V, W>
where
    K: Eq + std::hash::Hash,
    V: Clone,
    W: Weighter<K, V> + Clone,
{
    match quick_cache::OptionsBuilder::new()
        .estimated_items_capacity(entries)
        .weight_capacity(weight)
        .hot_allocation(HOT_SHARE)
        .build()
    {
        Ok(options) => Cache::with_options(
            options,
            weighter,
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        ),
        // Not reachable with these settings; the library's defaults are the fallback.
        Err(_) => Cache::with_weighter(entries, weight, weighter),
    }
}

/// Weighs a memo entry by the bytes it holds, roughly.
#[derive(Debug, Clone, Copy, Default)]
struct Bytes;

impl Weighter<DecisionKey, Arc<Decisions>> for Bytes {
    fn weight(&self, k: &DecisionKey, d: &Arc<Decisions>) -> u64 {
        (k.facts.weight() + d.weight()) as u64
    }
}

impl Weighter<BaseKey, Arc<PolicyBase>> for Bytes {
    fn weight(&self, k: &BaseKey, b: &Arc<PolicyBase>) -> u64 {
        (256 + k.allowed.len() * 8 + b.base.weight()) as u64
    }
}

impl Weighter<PolicyKey, Arc<Policy>> for Bytes {
    fn weight(&self, _: &PolicyKey, p: &Arc<Policy>) -> u64 {
        (64 + p.weight()) as u64
    }
}

/// How often the memo answered (`serve` shows it).
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoStats {
    pub claims_hits: u64,
    pub claims_misses: u64,
    pub decision_hits: u64,
    pub decision_misses: u64,
    pub base_hits: u64,
    pub base_misses: u64,
    pub policy_hits: u64,
    pub policy_misses: u64,
    pub decision_entries: usize,
    pub base_entries: usize,
    pub policy_entries: usize,
    pub claims_entries: usize,
}

/// The decision and policy-base memo, bounded.
#[derive(Debug)]
struct CacheMemo {
    decisions: Cache<DecisionKey, Arc<Decisions>, Bytes>,
    bases: Cache<BaseKey, Arc<PolicyBase>, Bytes>,
    policies: Cache<PolicyKey, Arc<Policy>, Bytes>,
    decision_hits: AtomicU64,
    decision_misses: AtomicU64,
    base_hits: AtomicU64,
    base_misses: AtomicU64,
    policy_hits: AtomicU64,
    policy_misses: AtomicU64,
}

/// How much each cache may hold.
#[derive(Debug, Clone, Copy)]
struct Capacity {
    claims: usize,
    /// How many entries each memo is sized for up front (quick_cache shards by it).
    memo_entries: usize,
    decision_bytes: u64,
    base_bytes: u64,
    policy_bytes: u64,
}

impl Capacity {
    const DEFAULT: Self = Self {
        claims: CLAIMS_ENTRIES,
        memo_entries: 10_000,
        decision_bytes: DECISION_BYTES,
        base_bytes: BASE_BYTES,
        policy_bytes: POLICY_BYTES,
    };
}

impl CacheMemo {
    fn new(cap: Capacity) -> Self {
        Self {
            decisions: bounded(cap.memo_entries, cap.decision_bytes, Bytes),
            bases: bounded(cap.memo_entries, cap.base_bytes, Bytes),
            policies: bounded(cap.memo_entries, cap.policy_bytes, Bytes),
            decision_hits: AtomicU64::new(0),
            decision_misses: AtomicU64::new(0),
            base_hits: AtomicU64::new(0),
            base_misses: AtomicU64::new(0),
            policy_hits: AtomicU64::new(0),
            policy_misses: AtomicU64::new(0),
        }
    }
}

impl Memo for CacheMemo {
    fn decisions(
        &self,
        key: DecisionKey,
        compute: &mut dyn FnMut() -> Result<Arc<Decisions>, ClaimError>,
    ) -> Result<Arc<Decisions>, ClaimError> {
        if let Some(d) = self.decisions.get(&key) {
            self.decision_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(d);
        }
        self.decision_misses.fetch_add(1, Ordering::Relaxed);
        let d = compute()?;
        self.decisions.insert(key, d.clone());
        Ok(d)
    }

    fn base(
        &self,
        key: &BaseKeyRef<'_>,
        compute: &mut dyn FnMut() -> Arc<PolicyBase>,
    ) -> Arc<PolicyBase> {
        if let Some(b) = self.bases.get(key) {
            self.base_hits.fetch_add(1, Ordering::Relaxed);
            return b;
        }
        self.base_misses.fetch_add(1, Ordering::Relaxed);
        let b = compute();
        self.bases.insert(key.to_owned_key(), b.clone());
        b
    }

    fn policy(
        &self,
        key: PolicyKey,
        compute: &mut dyn FnMut() -> (Arc<Policy>, bool),
    ) -> Arc<Policy> {
        if let Some(p) = self.policies.get(&key) {
            self.policy_hits.fetch_add(1, Ordering::Relaxed);
            return p;
        }
        self.policy_misses.fetch_add(1, Ordering::Relaxed);
        let (p, reusable) = compute();
        if reusable {
            self.policies.insert(key, p.clone());
        }
        p
    }
}

/// The verified-claims cache key: the SHA-256 of the token.
type TokenKey = [u8; 32];

/// A token as logs name it: its fingerprint, written only when a line is written.
struct Token(TokenKey);

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&fingerprint_of(&self.0))
    }
}

/// The authorizer with its key store, policy store and caches.
#[derive(Debug)]
pub struct Authorizer {
    verifier: Verifier,
    store: Arc<Store>,
    response: ResponseConfig,
    max_token_bytes: usize,
    leeway: u64,
    claims: Cache<TokenKey, Arc<VerifiedClaims>, quick_cache::UnitWeighter>,
    claims_hits: AtomicU64,
    claims_misses: AtomicU64,
    memo: CacheMemo,
    /// The decision log and metrics; also says whether decisions are enforced.
    audit: Audit,
    /// Notes already logged for a bundle revision (logged once per bundle, not per request).
    warned: Mutex<HashSet<(String, String)>>,
    /// The decision line's granted sets, by (bundle digest, the set as route bits): callers
    /// with the same grants share one, so a line costs no digest and no copies of route names.
    granted: Cache<(String, Vec<u64>), Arc<Granted>, quick_cache::UnitWeighter>,
}

/// Granted sets kept for decision lines (a few hundred bytes each).
const GRANTED_SETS: usize = 4096;

impl Authorizer {
    pub fn new(
        jwt: &JwtConfig,
        verifier: Verifier,
        store: Arc<Store>,
        response: ResponseConfig,
        observe: ObserveConfig,
    ) -> Self {
        let audit = Audit::new(observe);
        audit.announce();
        Self::with_capacity(jwt, verifier, store, response, audit, Capacity::DEFAULT)
    }

    fn with_capacity(
        jwt: &JwtConfig,
        verifier: Verifier,
        store: Arc<Store>,
        response: ResponseConfig,
        audit: Audit,
        cap: Capacity,
    ) -> Self {
        Self {
            audit,
            verifier,
            store,
            response,
            max_token_bytes: jwt.max_token_bytes,
            leeway: jwt.leeway.as_secs(),
            claims: bounded(cap.claims, cap.claims as u64, quick_cache::UnitWeighter),
            claims_hits: AtomicU64::new(0),
            claims_misses: AtomicU64::new(0),
            memo: CacheMemo::new(cap),
            warned: Mutex::new(HashSet::new()),
            granted: bounded(GRANTED_SETS, GRANTED_SETS as u64, quick_cache::UnitWeighter),
        }
    }

    /// The granted set of the routes of `snapshot` for which `allowed` holds.
    fn granted(&self, snapshot: &Snapshot, allowed: impl Fn(usize) -> bool) -> Arc<Granted> {
        let routes = snapshot.routes().routes();
        let mut bits = vec![0u64; routes.len().div_ceil(64)];
        for r in (0..routes.len()).filter(|r| allowed(*r)) {
            if let Some(word) = bits.get_mut(r / 64) {
                *word |= 1 << (r % 64);
            }
        }
        let key = (snapshot.digest.clone(), bits);
        if let Some(set) = self.granted.get(&key) {
            return set;
        }
        let names = routes
            .iter()
            .enumerate()
            .filter(|(r, _)| allowed(*r))
            .map(|(_, route)| route.name.clone())
            .collect();
        let set = Arc::new(Granted::of(names));
        self.granted.insert(key, set.clone());
        set
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How often the caches answered so far.
    #[cfg(feature = "dev")]
    pub fn memo_stats(&self) -> MemoStats {
        let m = &self.memo;
        MemoStats {
            claims_hits: self.claims_hits.load(Ordering::Relaxed),
            claims_misses: self.claims_misses.load(Ordering::Relaxed),
            decision_hits: m.decision_hits.load(Ordering::Relaxed),
            decision_misses: m.decision_misses.load(Ordering::Relaxed),
            base_hits: m.base_hits.load(Ordering::Relaxed),
            base_misses: m.base_misses.load(Ordering::Relaxed),
            policy_hits: m.policy_hits.load(Ordering::Relaxed),
            policy_misses: m.policy_misses.load(Ordering::Relaxed),
            decision_entries: m.decisions.len(),
            base_entries: m.bases.len(),
            policy_entries: m.policies.len(),
            claims_entries: self.claims.len(),
        }
    }

    /// Handles one authorizer event given as JSON: the response as JSON, or [`Unauthorized`].
    #[cfg(feature = "dev")]
    pub async fn handle(
        &self,
        event: &serde_json::Value,
    ) -> Result<serde_json::Value, Unauthorized> {
        self.handle_json(&event.to_string(), None)
            .await
            .map(|r| r.to_value())
    }

    /// Handles one authorizer event given as JSON text: the response, or [`Unauthorized`].
    /// `decision_id` names the call in the decision log and the response context (the Lambda
    /// passes its request id); without one, a local id is made.
    pub async fn handle_json(
        &self,
        event: &str,
        decision_id: Option<String>,
    ) -> Result<Response, Unauthorized> {
        self.handle_event(AuthzRequest::from_json(event), decision_id)
            .await
    }

    /// Handles one authorizer event, already parsed (or refused by the parser): the response,
    /// or [`Unauthorized`]. Every call, answered or refused, writes one decision line.
    pub async fn handle_event(
        &self,
        event: Result<AuthzRequest<'_>, EventError>,
        decision_id: Option<String>,
    ) -> Result<Response, Unauthorized> {
        let started = Instant::now();
        let id = decision_id.unwrap_or_else(|| self.audit.local_id());
        let mut record = Record::new(id);
        self.store.ensure_fresh().await;
        let result = self.answer(event, &mut record, started).await;
        record.latency_us = started.elapsed().as_micros() as u64;
        record.bundle_age_s = self.store.bundle_age(unix_now());
        let (refreshes, refresh_failures) = self.store.refresh_counts();
        let keys = self.verifier.keys();
        let totals = Totals {
            jwks_fetches: keys.fetch_count(),
            jwks_failures: keys.fetch_failure_count(),
            refreshes,
            refresh_failures,
        };
        self.audit.write(&record, totals);
        result
    }

    /// The answer to one event, with what the decision line says about it put in `record`.
    async fn answer(
        &self,
        event: Result<AuthzRequest<'_>, EventError>,
        record: &mut Record,
        started: Instant,
    ) -> Result<Response, Unauthorized> {
        let req = match event {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event = "unauthorized", reason = %e, "event refused");
                record.unauthorized(format!("event refused: {e}"));
                return Err(Unauthorized);
            }
        };
        record.flavor = Some(flavor_name(req.flavor));
        record.arn = Some(req.arn.to_string());
        for skipped in &req.skipped_headers {
            // By name only: the value may be a token.
            tracing::warn!(event = "header_skipped", arn = %req.arn, header = %skipped, "a request header was skipped as unusable");
        }
        let Some(raw) = req.authorization.as_deref() else {
            tracing::info!(event = "unauthorized", reason = "no token", arn = %req.arn, "no token");
            record.unauthorized("no token");
            return Err(Unauthorized);
        };
        let (key, claims) = self.claims_of(raw, &req, record).await?;
        let token = Token(key);
        let snapshot = self.store.current();
        let input = Input {
            request: &req,
            claims: &claims,
            now: SystemTime::now(),
        };
        let mut outcome = match authorize(
            snapshot.as_deref(),
            &input,
            &self.response,
            Detail::Decision,
            &self.memo,
        ) {
            Ok(o) => o,
            Err(reason) => {
                tracing::info!(event = "unauthorized", token = %token, reason = %reason, "claims do not fit the schema");
                record.unauthorized(format!("claims do not fit the schema: {reason}"));
                return Err(Unauthorized);
            }
        };
        self.log(&outcome, &token, &req, started);
        self.fill(record, &outcome, snapshot.as_deref(), &req);
        if self.audit.config().mode == Mode::Shadow {
            shadow(&mut outcome, &req);
            record.answer = Outcome::Allow;
            record.granted = snapshot
                .as_deref()
                .map_or_else(Granted::none, |s| self.granted(s, |_| true));
        }
        let context = outcome.response.context_mut();
        context.insert("decisionId", Value::String(record.decision_id.clone()));
        if self.audit.config().mode == Mode::Shadow {
            context.insert("cedargateMode", Value::String("shadow".to_owned()));
        }
        Ok(outcome.response)
    }

    /// What the decision line says about an answered request.
    fn fill(
        &self,
        record: &mut Record,
        outcome: &crate::authorize::Outcome<'_>,
        snapshot: Option<&Snapshot>,
        req: &AuthzRequest<'_>,
    ) {
        record.principal = Some(self.audit.principal(&outcome.principal));
        record.revision = Some(outcome.revision.to_owned());
        record.route = outcome.route_name.map(str::to_owned);
        let (Some(snapshot), Some(decisions)) = (snapshot, outcome.decisions.as_deref()) else {
            record.outcome = Outcome::Error;
            record.answer = Outcome::Error;
            record.reason = Some("no valid policy bundle".to_owned());
            return;
        };
        let verdict = if outcome.allowed {
            Outcome::Allow
        } else {
            Outcome::Deny
        };
        record.outcome = verdict;
        record.answer = verdict;
        record.decision_cache = Some(if outcome.computed {
            Answered::Miss
        } else {
            Answered::Hit
        });
        let routes = snapshot.routes();
        if let Some(r) = routes.route_resource(&req.arn.resource) {
            record.reasons = decisions
                .reasons_of(r, snapshot.index())
                .into_iter()
                .map(|p| p.to_string())
                .collect();
        }
        record.policy_errors = decisions
            .errors()
            .map(|(r, e)| PolicyError {
                route: routes.get(r).map_or("-", |r| r.name.as_str()).to_owned(),
                error: e.to_owned(),
            })
            .collect();
        // What the answer grants: API Gateway reuses it for every route until the TTL ends.
        let requested = routes.route_resource(&req.arn.resource);
        record.granted = match &outcome.answer {
            // A simple answer and a WebSocket policy grant the requested route alone.
            Answer::Simple(true) => self.granted(snapshot, |r| Some(r) == requested),
            Answer::Policy(_) if req.flavor == Flavor::WebSocket && outcome.allowed => {
                self.granted(snapshot, |r| Some(r) == requested)
            }
            Answer::Simple(false) | Answer::Policy(_) if req.flavor == Flavor::WebSocket => {
                Granted::none()
            }
            Answer::Simple(false) => Granted::none(),
            Answer::Policy(policy) => self.granted(snapshot, |r| {
                decisions.is_allowed(r) && !policy.shape.inexact.contains(&r)
            }),
        };
    }

    /// The verified claims of the `Authorization` value: from the cache when these exact token
    /// bytes verified before and have not expired since (the same bytes verify the same way,
    /// so they are not parsed again), else parsed and verified now. Also returns the token's
    /// SHA-256, its name in the logs.
    async fn claims_of(
        &self,
        authorization: &str,
        req: &AuthzRequest<'_>,
        record: &mut Record,
    ) -> Result<(TokenKey, Arc<VerifiedClaims>), Unauthorized> {
        let bytes = match bearer(authorization, self.max_token_bytes) {
            Ok(b) => b,
            Err(e) => {
                tracing::info!(event = "unauthorized", reason = %e, arn = %req.arn, "malformed token");
                record.unauthorized(format!("malformed token: {e}"));
                return Err(Unauthorized);
            }
        };
        let key: TokenKey = Sha256::digest(bytes.as_bytes()).into();
        // The fingerprint (8 bytes of the SHA-256) names the token; the token never appears.
        record.token = Some(fingerprint_of(&key));
        if let Some(c) = self.claims.get(&key) {
            // A cached token is still checked for expiry on every use.
            if c.expires_at().saturating_add(self.leeway) > unix_now() {
                self.claims_hits.fetch_add(1, Ordering::Relaxed);
                record.token_cache = Some(Answered::Hit);
                return Ok((key, c));
            }
        }
        self.claims_misses.fetch_add(1, Ordering::Relaxed);
        record.token_cache = Some(Answered::Miss);
        let token = match UnverifiedJwt::from_compact(bytes) {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(event = "unauthorized", reason = %e, arn = %req.arn, "malformed token");
                record.unauthorized(format!("malformed token: {e}"));
                return Err(Unauthorized);
            }
        };
        match self.verifier.verify(&token).await {
            Ok(c) => {
                let c = Arc::new(c);
                self.claims.insert(key, c.clone());
                Ok((key, c))
            }
            Err(e) => {
                tracing::info!(event = "unauthorized", token = %token.fingerprint(), reason = %e, "token refused");
                record.unauthorized(format!("token refused: {e}"));
                Err(Unauthorized)
            }
        }
    }

    /// Whether `note` is logged for the first time for this bundle revision.
    fn first_time(&self, revision: &str, note: String) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if warned.len() >= 1_000 {
            warned.clear();
        }
        warned.insert((revision.to_owned(), note))
    }

    fn log(
        &self,
        outcome: &crate::authorize::Outcome<'_>,
        token: &Token,
        req: &AuthzRequest<'_>,
        started: Instant,
    ) {
        // Field values are computed only when the line is enabled: no hashing or formatting
        // for lines filtered out.
        let fingerprint = token;
        let route = outcome.route_name.unwrap_or("-");
        for note in &outcome.notes {
            match note {
                Note::NoBundle => {
                    let answer = match self.audit.config().mode {
                        Mode::Enforce => "denying everything",
                        Mode::Shadow => "shadow mode: allowing everything all the same",
                    };
                    tracing::error!(event = "no_bundle", token = %fingerprint, "no valid policy bundle: {answer}");
                }
                Note::RouteMismatch { route_key } => tracing::warn!(
                    event = "route_mismatch",
                    arn = %req.arn,
                    route_key = %route_key,
                    route,
                    "API Gateway matched another route than the schema's route table gives for this ARN: the API and the bundle have drifted apart"
                ),
                Note::SimpleRefused => tracing::error!(
                    event = "simple_response_refused",
                    token = %fingerprint,
                    arn = %req.arn,
                    "CEDARGATE_RESPONSE=simple, but the authorizer's identity sources do not include $context.routeKey: API Gateway would reuse this one answer for every route, so it is false. Add $context.routeKey to the identity sources, or remove the identity sources, or use CEDARGATE_RESPONSE=policy"
                ),
                Note::Inexpressible(names) => tracing::warn!(
                    event = "policy_inexpressible",
                    token = %fingerprint,
                    routes = ?names,
                    "these allowed routes cannot be expressed exactly in one IAM policy beside the denied ones; cached answers for them will be 403 (key the authorizer cache on the route, or change the route table)"
                ),
                Note::PolicyErrors(errors) => {
                    for (name, error) in errors {
                        tracing::warn!(event = "policy_error", route = %name, error = %error, "a policy failed to evaluate and was ignored");
                    }
                }
                Note::FactNotKeyed { fact, why } => {
                    if self.first_time(outcome.revision, format!("{fact:?}/{:?}", req.flavor)) {
                        tracing::warn!(
                            event = "fact_not_in_cache_key",
                            fact = %fact,
                            flavor = ?req.flavor,
                            revision = %outcome.revision,
                            "a policy reads {fact}, but {why} (logged once per bundle)"
                        );
                    }
                }
            }
        }
        let (allows, denies, response) = match &outcome.answer {
            Answer::Policy(policy) => (
                policy.shape.allow.len() + policy.shape.allow_exact.len(),
                policy.shape.deny.len() + policy.shape.deny_exact.len(),
                "policy",
            ),
            Answer::Simple(_) => (0, 0, "simple"),
        };
        // The decision itself is in the decision line (crate::audit), written at any log
        // level; this is the policy's shape and the facts' digest, for diagnosis.
        tracing::debug!(
            event = "answer_shape",
            token = %fingerprint,
            route,
            response,
            facts = %outcome
                .facts
                .as_ref()
                .and_then(|f| f.digest())
                .map_or_else(|| "-".to_owned(), |d| d.short()),
            allows,
            denies,
            micros = started.elapsed().as_micros() as u64,
            "answer shape"
        );
    }
}

/// The flavour as the decision line names it.
fn flavor_name(f: Flavor) -> &'static str {
    match f {
        Flavor::Token => "token",
        Flavor::Request => "request",
        Flavor::HttpV1 => "httpV1",
        Flavor::HttpV2 => "httpV2",
        Flavor::WebSocket => "webSocket",
    }
}

/// Shadow mode's answer: everything the request's API stage serves is allowed. The answer
/// must still be route-wide, because API Gateway reuses it for every route until the TTL ends:
/// an answer that allowed only the requested route would turn the next route's call into a
/// 403 that enforcing mode might not give, and shadow mode must never refuse a valid token.
/// `{api}/{stage}/*` and nothing wider: another stage or API never gets this answer.
fn shadow(outcome: &mut crate::authorize::Outcome<'_>, req: &AuthzRequest<'_>) {
    match &mut outcome.response {
        Response::Simple(s) => s.is_authorized = true,
        Response::Policy(p) => {
            let shape = Shape {
                allow_exact: vec!["*".to_owned()],
                ..Shape::default()
            };
            p.policy_document = Arc::new(Policy::new(shape, &req.arn));
        }
    }
}

#[cfg(test)]
mod tests {
    //! The caches under a flood: warm entries, used again by the callers that share them,
    //! outlive a flood of one-off tokens and of requests varying a fact a policy reads.

    use std::collections::BTreeMap;

    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::bundle::{BundleFiles, Snapshot};
    use crate::jwks::test_support::{cfg, jwk, jwks, mint, rsa};
    use crate::jwks::KeyStore;

    const SCHEMA: &str = r#"
@claim("roles") entity Role;
@claim("sub") entity User in [Role];
entity Api;
type Ctx = { sourceIp?: String };
action "GET /a" appliesTo { principal: [User], resource: [Api], context: Ctx };
action "GET /b" appliesTo { principal: [User], resource: [Api], context: Ctx };
"#;
    const POLICIES: &str = r#"
permit (principal in Role::"reader", action == Action::"GET /a", resource);
forbid (principal, action, resource) when { context has sourceIp && context.sourceIp == "203.0.113.66" };
"#;

    fn authorizer(cap: Capacity) -> Authorizer {
        let files = BundleFiles {
            files: BTreeMap::from([
                ("schema/api.cedarschema".to_owned(), SCHEMA.to_owned()),
                ("policies/p.cedar".to_owned(), POLICIES.to_owned()),
            ]),
        };
        let (snapshot, _) = Snapshot::compile(files, "test").unwrap();
        let keys = KeyStore::from_jwks_json(&jwks(&[jwk(
            rsa(),
            json!({"kid": "k1", "alg": "RS256", "use": "sig"}),
        )]))
        .unwrap();
        let jwt = cfg(&[]);
        let verifier = Verifier::new(&jwt, Arc::new(keys));
        Authorizer::with_capacity(
            &jwt,
            verifier,
            Arc::new(Store::fixed(snapshot)),
            ResponseConfig::default(),
            Audit::in_memory(ObserveConfig::default()).0,
            cap,
        )
    }

    fn token(sub: &str) -> String {
        mint(
            rsa(),
            Algorithm::RS256,
            Some("k1"),
            &json!({
                "iss": "https://issuer.example/", "aud": "api", "sub": sub,
                "exp": unix_now() + 3600, "roles": ["reader"],
            }),
        )
    }

    fn event(token: &str, ip: &str) -> String {
        json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:api1/prod/GET/a",
            "headers": { "Authorization": format!("Bearer {token}") },
            "requestContext": { "identity": { "sourceIp": ip } },
        })
        .to_string()
    }

    fn small() -> Capacity {
        Capacity {
            claims: 64,
            memo_entries: 64,
            decision_bytes: 64 << 10,
            base_bytes: 64 << 10,
            policy_bytes: 64 << 10,
        }
    }

    #[tokio::test]
    async fn cache_flood_of_distinct_tokens_keeps_the_tokens_in_use() {
        let a = authorizer(small());
        let warm: Vec<String> = (0..8).map(|i| token(&format!("warm{i}"))).collect();
        for t in warm.iter().chain(&warm) {
            a.handle_json(&event(t, "198.51.100.1"), None)
                .await
                .unwrap();
        }
        // Five times the cache's capacity in tokens seen once each.
        for i in 0..320 {
            a.handle_json(&event(&token(&format!("flood{i}")), "198.51.100.1"), None)
                .await
                .unwrap();
        }
        let before = a.memo_stats();
        assert!(before.claims_entries <= 64, "{before:?}");
        for t in &warm {
            a.handle_json(&event(t, "198.51.100.1"), None)
                .await
                .unwrap();
        }
        let after = a.memo_stats();
        assert_eq!(after.claims_misses, before.claims_misses, "{after:?}");
        assert_eq!(after.claims_hits, before.claims_hits + 8, "{after:?}");
    }

    #[tokio::test]
    async fn cache_flood_of_one_caller_varying_a_fact_keeps_the_decisions_in_use() {
        let a = authorizer(small());
        let t = token("alice");
        // Two callers' facts in use: a reader from two addresses.
        for _ in 0..2 {
            for ip in ["198.51.100.1", "198.51.100.2"] {
                a.handle_json(&event(&t, ip), None).await.unwrap();
            }
        }
        // The policies read `sourceIp`: each new address is a new set of facts.
        for i in 0..1_000 {
            let ip = format!("10.{}.{}.1", i / 250, i % 250);
            a.handle_json(&event(&t, &ip), None).await.unwrap();
        }
        let before = a.memo_stats();
        assert!(before.decision_misses >= 1_000, "{before:?}");
        // The flood did not fit: the memo evicted most of it.
        assert!(before.decision_entries < 200, "{before:?}");
        for ip in ["198.51.100.1", "198.51.100.2"] {
            a.handle_json(&event(&t, ip), None).await.unwrap();
        }
        let after = a.memo_stats();
        assert_eq!(after.decision_misses, before.decision_misses, "{after:?}");
        assert_eq!(after.decision_hits, before.decision_hits + 2, "{after:?}");
    }
}
