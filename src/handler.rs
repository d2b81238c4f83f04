//! The authorizer: one event in, one response (or `Unauthorized`) out.
//!
//! This is the exact code the Lambda runs; `invoke` and `serve` call it too. It wires the
//! stages together: event → token → verified claims → Cedar request parts → decisions →
//! IAM policy → response.
//!
//! ## 401, 403 and 500
//! API Gateway turns a Lambda error whose message is exactly `Unauthorized` into 401, a policy
//! into 200/403 per route, and anything else into 500. So: a missing, malformed, invalid or
//! expired token — and an event without a usable method ARN — is [`Unauthorized`]; a valid
//! token gets a policy (with an explicit Deny for the request when it is not permitted); and
//! nothing a client sends can produce another error. With no valid policy bundle loaded, a
//! valid token gets a Deny for everything.
//!
//! Caches (warm Lambda, `invoke`, `serve`): verified claims per token until `exp`; decisions
//! per (bundle, token, caller facts) unless the schema's context uses the time. Both are
//! bounded and keyed by a hash; tokens are never logged, only a short fingerprint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::{VerifiedClaims, Verifier};
use crate::config::{JwtConfig, ResponseConfig};
use crate::decide::{decide, Detail};
use crate::event::AuthzRequest;
use crate::iam::{Base, PolicyDocument, Shape, Target};
use crate::response::{context, usage_key, PolicyResponse};
use crate::store::{Snapshot, Store};
use crate::token::UnverifiedJwt;

/// The one error API Gateway maps to 401. Its message must be exactly `Unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

const CACHE_LIMIT: usize = 10_000;

#[derive(Debug)]
struct DecisionEntry {
    allowed: Vec<bool>,
    principal: String,
    /// The part of the policy that does not depend on the requested route, computed on first
    /// use (the decision key includes the API and stage, so the ARN prefix is fixed here).
    base: OnceLock<Base>,
}

/// A bounded map that is cleared when full: simple, and enough for a warm Lambda's working set.
#[derive(Debug)]
struct Bounded<V> {
    map: Mutex<HashMap<[u8; 32], V>>,
}

impl<V: Clone> Bounded<V> {
    fn new() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
    fn get(&self, k: &[u8; 32]) -> Option<V> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(k)
            .cloned()
    }
    fn put(&self, k: [u8; 32], v: V) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= CACHE_LIMIT {
            m.clear();
        }
        m.insert(k, v);
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
    claims_cache: Bounded<Arc<VerifiedClaims>>,
    decision_cache: Bounded<Arc<DecisionEntry>>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Authorizer {
    pub fn new(
        jwt: &JwtConfig,
        verifier: Verifier,
        store: Arc<Store>,
        response: ResponseConfig,
    ) -> Self {
        Self {
            verifier,
            store,
            response,
            max_token_bytes: jwt.max_token_bytes,
            leeway: jwt.leeway.as_secs(),
            claims_cache: Bounded::new(),
            decision_cache: Bounded::new(),
        }
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Handles one authorizer event: the response JSON, or [`Unauthorized`].
    pub async fn handle(&self, event: Value) -> Result<Value, Unauthorized> {
        self.store.ensure_fresh().await;
        let started = Instant::now();
        let req = match AuthzRequest::from_value(event) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(event = "unauthorized", reason = %e, "event refused");
                return Err(Unauthorized);
            }
        };
        let Some(raw) = req.authorization.as_deref() else {
            tracing::info!(event = "unauthorized", reason = "no token", arn = %req.arn, "no token");
            return Err(Unauthorized);
        };
        let token = match UnverifiedJwt::parse(raw, self.max_token_bytes) {
            Ok(t) => t,
            Err(e) => {
                tracing::info!(event = "unauthorized", reason = %e, arn = %req.arn, "malformed token");
                return Err(Unauthorized);
            }
        };
        let claims = self.verified(&token).await?;
        let Some(snapshot) = self.store.current() else {
            tracing::error!(event = "decision", token = %token.fingerprint(), reason = "no valid policy bundle", "denying everything");
            return Ok(self.respond(
                &req,
                claims.sub(),
                &claims,
                &Shape {
                    deny: vec!["*".to_owned()],
                    ..Shape::default()
                },
                "none",
            ));
        };
        let entry = match self.decisions(&snapshot, &token, &claims, &req) {
            Ok(e) => e,
            Err(reason) => {
                tracing::info!(event = "unauthorized", token = %token.fingerprint(), reason = %reason, "claims do not fit the schema");
                return Err(Unauthorized);
            }
        };
        let target_route = snapshot.routes.route_resource(&req.arn.resource);
        let shape = self.shape(&snapshot, &entry, &req, target_route);
        let allowed = target_route.is_some_and(|r| entry.allowed.get(r).copied().unwrap_or(false));
        let response = self.respond(&req, &entry.principal, &claims, &shape, snapshot.revision());
        if !shape.inexact.is_empty() {
            let names: Vec<&str> = shape
                .inexact
                .iter()
                .filter_map(|r| snapshot.routes.get(*r))
                .map(|r| r.name.as_str())
                .collect();
            tracing::warn!(
                event = "policy_inexpressible",
                token = %token.fingerprint(),
                routes = ?names,
                "these allowed routes cannot be expressed exactly in one IAM policy beside the denied ones; cached answers for them will be 403 (key the authorizer cache on the route, or change the route table)"
            );
        }
        tracing::info!(
            event = "decision",
            token = %token.fingerprint(),
            principal = %entry.principal,
            arn = %req.arn,
            route = target_route.and_then(|r| snapshot.routes.get(r)).map_or("-", |r| r.name.as_str()),
            allowed,
            revision = %snapshot.revision(),
            allows = shape.allow.len(),
            denies = shape.deny.len(),
            micros = started.elapsed().as_micros() as u64,
            "decision"
        );
        Ok(response)
    }

    async fn verified(&self, token: &UnverifiedJwt) -> Result<Arc<VerifiedClaims>, Unauthorized> {
        let key: [u8; 32] = Sha256::digest(token.as_str().as_bytes()).into();
        if let Some(c) = self.claims_cache.get(&key) {
            // A cached token is still checked for expiry on every use.
            if c.expires_at().saturating_add(self.leeway) > unix_now() {
                return Ok(c);
            }
        }
        match self.verifier.verify(token).await {
            Ok(c) => {
                let c = Arc::new(c);
                self.claims_cache.put(key, c.clone());
                Ok(c)
            }
            Err(e) => {
                tracing::info!(event = "unauthorized", token = %token.fingerprint(), reason = %e, "token refused");
                Err(Unauthorized)
            }
        }
    }

    fn decisions(
        &self,
        snapshot: &Snapshot,
        token: &UnverifiedJwt,
        claims: &VerifiedClaims,
        req: &AuthzRequest,
    ) -> Result<Arc<DecisionEntry>, String> {
        // Everything a decision can depend on besides the bundle and the token.
        let mut h = Sha256::new();
        h.update(snapshot.digest.as_bytes());
        h.update([0]);
        h.update(token.as_str().as_bytes());
        for part in [
            Some(req.arn.partition.as_str()),
            Some(req.arn.region.as_str()),
            Some(req.arn.account_id.as_str()),
            Some(req.arn.api_id.as_str()),
            Some(req.arn.stage.as_str()),
            req.source_ip.as_deref(),
            req.user_agent.as_deref(),
        ] {
            h.update([0]);
            h.update(part.unwrap_or("\u{1}").as_bytes());
        }
        for (k, v) in &req.headers {
            h.update([0]);
            h.update(k.as_bytes());
            h.update([1]);
            h.update(v.as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        let cacheable = !snapshot.mapping.uses_time();
        if cacheable {
            if let Some(e) = self.decision_cache.get(&key) {
                return Ok(e);
            }
        }
        let caller = snapshot
            .mapping
            .caller(claims, req, &snapshot.base_entities, SystemTime::now())
            .map_err(|e| e.to_string())?;
        let decisions =
            decide(&snapshot.index, &caller, Detail::Decision).map_err(|e| e.to_string())?;
        for (route, d) in decisions.routes.iter().enumerate() {
            for err in &d.errors {
                let name = snapshot.routes.get(route).map_or("-", |r| r.name.as_str());
                tracing::warn!(event = "policy_error", route = name, error = %err, "a policy failed to evaluate and was ignored");
            }
        }
        let entry = Arc::new(DecisionEntry {
            allowed: decisions.allowed(),
            principal: caller.principal.id().unescaped().to_owned(),
            base: OnceLock::new(),
        });
        if cacheable {
            self.decision_cache.put(key, entry.clone());
        }
        Ok(entry)
    }

    fn shape(
        &self,
        snapshot: &Snapshot,
        entry: &DecisionEntry,
        req: &AuthzRequest,
        target: Option<usize>,
    ) -> Shape {
        let plan = snapshot.plan_for(&req.arn.stage);
        // What a resource costs besides its pattern: the prefix and JSON quoting.
        let overhead = req.arn.partition.len() + req.arn.stage.len() + 26;
        let base = entry
            .base
            .get_or_init(|| plan.base(&entry.allowed, overhead));
        plan.finish(
            base,
            Target {
                resource: &req.arn.resource,
                route: target,
            },
        )
    }

    fn respond(
        &self,
        req: &AuthzRequest,
        principal: &str,
        claims: &VerifiedClaims,
        shape: &Shape,
        revision: &str,
    ) -> Value {
        let doc = PolicyDocument::from_shape(shape, &req.arn);
        let response = PolicyResponse {
            principal_id: principal.to_owned(),
            policy_document: doc,
            context: context(claims, &self.response.context_claims, principal, revision),
            usage_identifier_key: usage_key(claims, self.response.usage_key_claim.as_deref()),
        };
        serde_json::to_value(response).unwrap_or(Value::Null)
    }
}
