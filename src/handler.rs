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
//! ## One answer per flavour
//! REST and HTTP API events get the route-wide IAM policy of `iam`. A WebSocket `$connect`
//! gets a policy naming `{stage}/$connect` alone: it is the only route a WebSocket API
//! authorizes. With `CEDARGATE_RESPONSE=simple`, HTTP API 2.0 events get the requested route's
//! decision as `isAuthorized` — unless the event shows identity sources without the route key
//! (API Gateway would then reuse the answer for every route), which is answered `false` and
//! logged as `simple_response_refused`. A route key that the schema's route table does not
//! give for the ARN is logged as `route_mismatch` and, in a simple response, never allowed.
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
use crate::config::{JwtConfig, ResponseConfig, ResponseMode};
use crate::decide::{decide, Detail};
use crate::event::{AuthzRequest, CacheScope, Flavor};
use crate::iam::{Base, Plan, PolicyDocument, Shape, Target};
use crate::response::{context, usage_key, ContextShape, PolicyResponse, SimpleResponse};
use crate::routes::Route;
use crate::store::{Snapshot, Store};
use crate::token::UnverifiedJwt;

/// The one error API Gateway maps to 401. Its message must be exactly `Unauthorized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Unauthorized")]
pub struct Unauthorized;

const CACHE_LIMIT: usize = 10_000;

/// What the response decides: a policy over every route, or the requested route's decision.
#[derive(Debug)]
enum Answer {
    Policy(Shape),
    Simple(bool),
}

/// The route key the event says API Gateway matched, when it is not the route the schema's
/// table gives for the ARN (parameter names aside). `None`: they agree, or the event has none.
fn route_drift<'a>(req: &'a AuthzRequest, routed: Option<&Route>) -> Option<&'a str> {
    let key = req.route_key.as_deref()?;
    let same = match (Route::parse(key), routed) {
        (Ok(Some(matched)), Some(ours)) => matched.shape() == ours.shape(),
        _ => false,
    };
    (!same).then_some(key)
}

#[derive(Debug)]
struct DecisionEntry {
    allowed: Vec<bool>,
    principal: String,
    /// The part of the policy that does not depend on the requested route, computed on first
    /// use (the decision key includes the API and stage, so the ARN prefix is fixed here).
    base: OnceLock<(Arc<Plan>, Base)>,
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
        let simple = self.simple_responses(&req);
        let Some(snapshot) = self.store.current() else {
            tracing::error!(event = "decision", token = %token.fingerprint(), reason = "no valid policy bundle", "denying everything");
            let answer = if simple {
                Answer::Simple(false)
            } else {
                Answer::Policy(Shape {
                    deny: vec!["*".to_owned()],
                    ..Shape::default()
                })
            };
            return Ok(self.respond(&req, claims.sub(), &claims, &answer, "none"));
        };
        let entry = match self.decisions(&snapshot, &token, &claims, &req) {
            Ok(e) => e,
            Err(reason) => {
                tracing::info!(event = "unauthorized", token = %token.fingerprint(), reason = %reason, "claims do not fit the schema");
                return Err(Unauthorized);
            }
        };
        let target_route = snapshot.routes.route_resource(&req.arn.resource);
        let allowed = target_route.is_some_and(|r| entry.allowed.get(r).copied().unwrap_or(false));
        let route_name = target_route
            .and_then(|r| snapshot.routes.get(r))
            .map_or("-", |r| r.name.as_str());
        let drift = route_drift(&req, target_route.and_then(|r| snapshot.routes.get(r)));
        if let Some(key) = drift {
            tracing::warn!(
                event = "route_mismatch",
                arn = %req.arn,
                route_key = key,
                route = route_name,
                "API Gateway matched another route than the schema's route table gives for this ARN: the API and the bundle have drifted apart"
            );
        }
        let answer = if simple {
            if req.cache == CacheScope::AllRoutes {
                tracing::error!(
                    event = "simple_response_refused",
                    token = %token.fingerprint(),
                    arn = %req.arn,
                    "CEDARGATE_RESPONSE=simple, but the authorizer's identity sources do not include $context.routeKey: API Gateway would reuse this one answer for every route, so it is false. Add $context.routeKey to the identity sources, or remove the identity sources, or use CEDARGATE_RESPONSE=policy"
                );
                Answer::Simple(false)
            } else {
                // A route the schema's table does not agree on is never allowed.
                Answer::Simple(allowed && drift.is_none())
            }
        } else if req.flavor == Flavor::WebSocket {
            // A WebSocket API calls the authorizer for `$connect` only: the policy names that one
            // resource (`{stage}/*/*` would not match it, and nothing else needs an answer).
            let resource = vec![req.arn.resource.clone()];
            Answer::Policy(if allowed {
                Shape {
                    allow_exact: resource,
                    ..Shape::default()
                }
            } else {
                Shape {
                    deny_exact: resource,
                    ..Shape::default()
                }
            })
        } else {
            Answer::Policy(self.shape(&snapshot, &entry, &req, target_route))
        };
        let response = self.respond(
            &req,
            &entry.principal,
            &claims,
            &answer,
            snapshot.revision(),
        );
        let (allows, denies) = match &answer {
            Answer::Policy(shape) => {
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
                (shape.allow.len(), shape.deny.len())
            }
            Answer::Simple(_) => (0, 0),
        };
        tracing::info!(
            event = "decision",
            token = %token.fingerprint(),
            principal = %entry.principal,
            arn = %req.arn,
            route = route_name,
            allowed,
            response = if simple { "simple" } else { "policy" },
            revision = %snapshot.revision(),
            allows,
            denies,
            micros = started.elapsed().as_micros() as u64,
            "decision"
        );
        Ok(response)
    }

    /// Whether this event gets a simple response: only HTTP API 2.0 events can take one.
    fn simple_responses(&self, req: &AuthzRequest) -> bool {
        self.response.mode == ResponseMode::Simple && req.flavor == Flavor::HttpV2
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
        let (plan, base) = entry
            .base
            .get_or_init(|| snapshot.policy_base(&req.arn, &entry.allowed));
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
        answer: &Answer,
        revision: &str,
    ) -> Value {
        // Payload 2.0 passes arrays and objects in `context` through; the others need it flat.
        let shape = if req.flavor == Flavor::HttpV2 {
            ContextShape::Nested
        } else {
            ContextShape::Flat
        };
        let context = context(
            claims,
            &self.response.context_claims,
            principal,
            revision,
            shape,
        );
        let value = match answer {
            Answer::Simple(is_authorized) => serde_json::to_value(SimpleResponse {
                is_authorized: *is_authorized,
                context,
            }),
            Answer::Policy(shape) => {
                // Usage plans exist for REST and WebSocket APIs only; HTTP APIs have none.
                let usage_identifier_key = match req.flavor {
                    Flavor::Token | Flavor::Request | Flavor::WebSocket => {
                        usage_key(claims, self.response.usage_key.as_ref())
                    }
                    Flavor::HttpV1 | Flavor::HttpV2 => None,
                };
                serde_json::to_value(PolicyResponse {
                    principal_id: principal.to_owned(),
                    policy_document: PolicyDocument::from_shape(shape, &req.arn),
                    context,
                    usage_identifier_key,
                })
            }
        };
        value.unwrap_or(Value::Null)
    }
}
