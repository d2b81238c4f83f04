//! The request core: one request and its verified claims → the answer, for every entry point.
//!
//! Stage: after `claims`; it runs `facts` → `entities` → `decide` → `iam` → `response`. Input:
//! the current [`Snapshot`] (or none), the parsed request, its claims, the response settings
//! and the time ([`Input`]), and a [`Memo`] that may remember pure results between calls.
//! Output: an [`Outcome`]: the facts, every route's decision with its reasons, the requested
//! route, the flavour's answer and the exact response JSON, and [`Note`]s for the logs.
//!
//! The Lambda handler, `invoke`, `explain`, `test` and `serve` all call [`authorize`], so they
//! cannot disagree: `explain --event` prints the `response` the Lambda returns.
//!
//! ## One answer per flavour
//! REST and HTTP API events get the route-wide IAM policy of `iam`. A WebSocket `$connect`
//! gets a policy naming `{stage}/$connect` alone: it is the only route a WebSocket API
//! authorizes. With `CEDARGATE_RESPONSE=simple`, HTTP API 2.0 events get the requested route's
//! decision as `isAuthorized`, unless the event shows identity sources without the route key
//! (API Gateway would then reuse the answer for every route): that is answered `false`. A
//! route key that the schema's route table does not give for the ARN is noted and, in a simple
//! response, never allowed. With no bundle loaded there is nothing to allow: a Deny for
//! everything (or `false`).
//!
//! ## Memoization
//! Everything here is pure, so a [`Memo`] may hand back an earlier result for equal inputs:
//! decisions keyed by the bundle and a digest of the [`Facts`] (never by the token: callers
//! with equal facts share one entry), and the route-independent part of the IAM policy keyed
//! by the bundle, the decisions and the API and stage. Decisions that read the time are never
//! memoized. [`NoMemo`] computes everything every time.
//!
//! Invariant: pure. No I/O, no logging, no clock but `Input::now`.

use std::sync::Arc;
use std::time::SystemTime;

use crate::bundle::Snapshot;
use crate::claims::VerifiedClaims;
use crate::config::{ResponseConfig, ResponseMode};
use crate::decide::{decide, Decisions, Detail};
use crate::entities;
use crate::event::{AuthzRequest, CacheScope, Flavor};
use crate::facts::{ClaimError, Facts, RequestFact};
use crate::iam::{Base, Plan, Policy, Shape, Target};
use crate::response::{context, usage_key, ContextShape, PolicyResponse, Response, SimpleResponse};
use crate::routes::{Route, RouteId};

/// What one request brings.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub request: &'a AuthzRequest<'a>,
    pub claims: &'a VerifiedClaims,
    /// Stands in for the request time when the event does not carry one.
    pub now: SystemTime,
}

/// The bundle a memo entry belongs to: its content digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BundleId(pub [u8; 32]);

impl BundleId {
    pub fn of(snapshot: &Snapshot) -> Self {
        Self(snapshot.id)
    }
}

/// Everything a memoized decision set depends on. The facts themselves are the key (compared in
/// full, so two callers can share an entry only when their facts are equal, not merely when
/// some hash of them is); their digest only names them in logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionKey {
    pub bundle: BundleId,
    pub detail: Detail,
    pub facts: Arc<Facts>,
}

/// Everything the route-independent part of a policy depends on: the bundle, the decision of
/// every route, and the API and stage (the ARN prefix names partition, region, account, API
/// id and stage; the policy's resources are written with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseKey {
    pub bundle: BundleId,
    /// The decision of every route, one bit each ([`Decisions::allowed_bits`]).
    pub allowed: Box<[u64]>,
    /// `arn:{partition}:execute-api:{region}:{account}:{api}/{stage}/`.
    pub prefix: String,
}

/// A [`BaseKey`] borrowed from the request and its decisions, to look one up without copying.
#[derive(Debug, Clone, Copy)]
pub struct BaseKeyRef<'a> {
    pub bundle: BundleId,
    pub allowed: &'a [u64],
    pub prefix: &'a str,
}

impl BaseKeyRef<'_> {
    pub fn to_owned_key(self) -> BaseKey {
        BaseKey {
            bundle: self.bundle,
            allowed: self.allowed.into(),
            prefix: self.prefix.to_owned(),
        }
    }
}

// One hash for both forms, so that a borrowed key finds the owned one.
impl std::hash::Hash for BaseKeyRef<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.bundle.hash(h);
        self.allowed.hash(h);
        self.prefix.hash(h);
    }
}

impl std::hash::Hash for BaseKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        BaseKeyRef {
            bundle: self.bundle,
            allowed: &self.allowed,
            prefix: &self.prefix,
        }
        .hash(h);
    }
}

impl quick_cache::Equivalent<BaseKey> for BaseKeyRef<'_> {
    fn equivalent(&self, key: &BaseKey) -> bool {
        self.bundle == key.bundle && *self.allowed == *key.allowed && self.prefix == key.prefix
    }
}

/// The IAM analysis in use and the caller's route-independent policy.
/// A caller's route-independent policy ([`Base`]) and the analysis it belongs to, with an id
/// unique in the process that names it in [`PolicyKey`]s.
#[derive(Debug)]
pub struct PolicyBase {
    pub id: u64,
    pub plan: Arc<Plan>,
    pub base: Base,
}

impl PolicyBase {
    pub fn new(plan: Arc<Plan>, base: Base) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        Self {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            plan,
            base,
        }
    }
}

/// A finished policy: the [`PolicyBase`] it was finished from and the requested route. Only
/// policies that depend on nothing else are memoized under it (see [`Plan::finish_reusable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyKey {
    pub base: u64,
    pub route: RouteId,
}

/// Remembers pure results between calls. Implementations must return, for a key, only a value
/// that `compute` returned for an equal key.
pub trait Memo: Sync {
    fn decisions(
        &self,
        key: DecisionKey,
        compute: &mut dyn FnMut() -> Result<Arc<Decisions>, ClaimError>,
    ) -> Result<Arc<Decisions>, ClaimError>;
    fn base(
        &self,
        key: &BaseKeyRef<'_>,
        compute: &mut dyn FnMut() -> Arc<PolicyBase>,
    ) -> Arc<PolicyBase>;
    /// The finished policy for `key`; `compute` also says whether it may be kept.
    fn policy(
        &self,
        key: PolicyKey,
        compute: &mut dyn FnMut() -> (Arc<Policy>, bool),
    ) -> Arc<Policy>;
}

/// No memory: every call computes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMemo;

impl Memo for NoMemo {
    fn decisions(
        &self,
        _: DecisionKey,
        compute: &mut dyn FnMut() -> Result<Arc<Decisions>, ClaimError>,
    ) -> Result<Arc<Decisions>, ClaimError> {
        compute()
    }
    fn base(
        &self,
        _: &BaseKeyRef<'_>,
        compute: &mut dyn FnMut() -> Arc<PolicyBase>,
    ) -> Arc<PolicyBase> {
        compute()
    }
    fn policy(
        &self,
        _: PolicyKey,
        compute: &mut dyn FnMut() -> (Arc<Policy>, bool),
    ) -> Arc<Policy> {
        compute().0
    }
}

/// What the response decides: a policy over every route, or the requested route's decision.
#[derive(Debug, Clone)]
pub enum Answer {
    Policy(Arc<Policy>),
    Simple(bool),
}

/// Something about this request worth a log line (the core itself does not log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// No valid policy bundle is loaded: everything is denied.
    NoBundle,
    /// API Gateway matched this route key, but the schema's table routes the ARN elsewhere.
    RouteMismatch { route_key: String },
    /// Simple responses were asked for, but the cache would reuse one answer for every route.
    SimpleRefused,
    /// Allowed routes the IAM policy cannot express exactly (left out).
    Inexpressible(Vec<String>),
    /// Policies that failed to evaluate (ignored by Cedar), per route.
    PolicyErrors(Vec<(String, String)>),
    /// A policy reads a request fact that this event shows is not part of API Gateway's cache
    /// key (or, for TOKEN events, is not carried at all).
    FactNotKeyed { fact: RequestFact, why: String },
}

/// Everything about one answered request (names borrowed from the snapshot it came from).
#[derive(Debug, Clone)]
pub struct Outcome<'s> {
    /// The `principalId` of the answer.
    pub principal: String,
    /// The bundle revision the answer comes from (`none` without one).
    pub revision: &'s str,
    /// The facts the decisions read (none without a bundle).
    pub facts: Option<Arc<Facts>>,
    /// Every route's decision, in route order (none without a bundle).
    pub decisions: Option<Arc<Decisions>>,
    /// Whether `decisions` were computed by this call (not handed back by the memo).
    pub computed: bool,
    /// The route the request's resource reaches, when the table has one.
    pub route_name: Option<&'s str>,
    /// The requested route's decision, as answered.
    pub allowed: bool,
    pub answer: Answer,
    /// The response, exactly as the Lambda returns it.
    pub response: Response,
    pub notes: Vec<Note>,
}

/// Decides one request: see the module documentation. `Err` when the claims do not fit the
/// schema (the authorizer's 401).
pub fn authorize<'s>(
    snapshot: Option<&'s Snapshot>,
    input: &Input<'_>,
    settings: &ResponseConfig,
    detail: Detail,
    memo: &dyn Memo,
) -> Result<Outcome<'s>, ClaimError> {
    let req = input.request;
    let simple = settings.mode == ResponseMode::Simple && req.flavor == Flavor::HttpV2;
    let Some(snapshot) = snapshot else {
        let answer = if simple {
            Answer::Simple(false)
        } else {
            Answer::Policy(Arc::new(Policy::new(
                Shape {
                    deny: vec!["*".to_owned()],
                    ..Shape::default()
                },
                &req.arn,
            )))
        };
        let principal = input.claims.sub().to_owned();
        let response = respond(req, &principal, input.claims, &answer, "none", settings);
        return Ok(Outcome {
            principal,
            revision: "none",
            facts: None,
            decisions: None,
            computed: false,
            route_name: None,
            allowed: false,
            answer,
            response,
            notes: vec![Note::NoBundle],
        });
    };

    let mapping = snapshot.mapping();
    let (facts, principal) =
        Facts::build_with_id(mapping, snapshot.reads(), input.claims, req, input.now)?;
    let facts = Arc::new(facts);
    let bundle = BundleId::of(snapshot);
    let mut computed = false;
    let mut compute = || {
        computed = true;
        decide_facts(snapshot, &facts, detail)
    };
    let decisions = if snapshot.decisions_reusable() {
        let key = DecisionKey {
            bundle,
            detail,
            facts: facts.clone(),
        };
        memo.decisions(key, &mut compute)?
    } else {
        compute()?
    };

    let mut notes = cache_notes(snapshot, req);
    let routes = snapshot.routes();
    let target = routes.route_resource(&req.arn.resource);
    let target_route = target.and_then(|r| routes.get(r));
    let decided = target.is_some_and(|r| decisions.is_allowed(r));
    let drift = route_drift(req, target_route);
    if let Some(key) = drift {
        notes.push(Note::RouteMismatch {
            route_key: key.to_owned(),
        });
    }
    if computed {
        let errors: Vec<(String, String)> = decisions
            .errors()
            .map(|(r, e)| {
                let name = routes.get(r).map_or("-", |r| r.name.as_str());
                (name.to_owned(), e.to_owned())
            })
            .collect();
        if !errors.is_empty() {
            notes.push(Note::PolicyErrors(errors));
        }
    }

    let (answer, allowed) = if simple {
        if req.cache == CacheScope::AllRoutes {
            notes.push(Note::SimpleRefused);
            (Answer::Simple(false), false)
        } else {
            // A route the schema's table does not agree on is never allowed.
            let yes = decided && drift.is_none();
            (Answer::Simple(yes), yes)
        }
    } else if req.flavor == Flavor::WebSocket {
        // A WebSocket API calls the authorizer for `$connect` only: the policy names that one
        // resource (`{stage}/*/*` would not match it, and nothing else needs an answer).
        let resource = vec![req.arn.resource.clone()];
        let shape = if decided {
            Shape {
                allow_exact: resource,
                ..Shape::default()
            }
        } else {
            Shape {
                deny_exact: resource,
                ..Shape::default()
            }
        };
        (
            Answer::Policy(Arc::new(Policy::new(shape, &req.arn))),
            decided,
        )
    } else {
        let bits = decisions.allowed_bits();
        let key = BaseKeyRef {
            bundle,
            allowed: bits,
            prefix: req.arn.prefix(),
        };
        let base = memo.base(&key, &mut || {
            let (plan, base) = snapshot.policy_base(&req.arn, &decisions.allowed());
            Arc::new(PolicyBase::new(plan, base))
        });
        let mut finish = || {
            let (shape, reusable) = base.plan.finish_reusable(
                &base.base,
                Target {
                    resource: &req.arn.resource,
                    route: target,
                },
            );
            (Arc::new(Policy::new(shape, &req.arn)), reusable)
        };
        let policy = match target {
            Some(route) => memo.policy(
                PolicyKey {
                    base: base.id,
                    route,
                },
                &mut finish,
            ),
            // A resource no route receives is denied by its literal: nothing to share.
            None => finish().0,
        };
        if !policy.shape.inexact.is_empty() {
            notes.push(Note::Inexpressible(
                policy
                    .shape
                    .inexact
                    .iter()
                    .filter_map(|r| routes.get(*r))
                    .map(|r| r.name.clone())
                    .collect(),
            ));
        }
        (Answer::Policy(policy), decided)
    };
    let revision = snapshot.revision();
    let response = respond(req, &principal, input.claims, &answer, revision, settings);
    Ok(Outcome {
        principal,
        revision,
        facts: Some(facts),
        decisions: Some(decisions),
        computed,
        route_name: target_route.map(|r| r.name.as_str()),
        allowed,
        answer,
        response,
        notes,
    })
}

/// The Cedar request parts for a caller, built from claims and a request exactly as
/// [`authorize`] builds them: for tools that decide single routes (the review tool).
pub fn caller_request(
    snapshot: &Snapshot,
    claims: &VerifiedClaims,
    req: &AuthzRequest<'_>,
    now: SystemTime,
) -> Result<crate::decide::CallerRequest, ClaimError> {
    let facts = Facts::build(snapshot.mapping(), snapshot.reads(), claims, req, now)?;
    entities::caller(snapshot.mapping(), &facts, &snapshot.base_entities)
}

/// Cedar's decisions for the caller the facts describe.
fn decide_facts(
    snapshot: &Snapshot,
    facts: &Facts,
    detail: Detail,
) -> Result<Arc<Decisions>, ClaimError> {
    let caller = entities::caller(snapshot.mapping(), facts, &snapshot.base_entities)?;
    decide(snapshot.index(), &caller, detail)
        .map(Arc::new)
        .map_err(|e| ClaimError::Entity(e.to_string()))
}

/// The route key the event says API Gateway matched, when it is not the route the schema's
/// table gives for the ARN (parameter names aside). `None`: they agree, or the event has none.
fn route_drift<'a>(req: &'a AuthzRequest<'_>, routed: Option<&Route>) -> Option<&'a str> {
    let key = req.route_key.as_deref()?;
    let same = match (Route::parse(key), routed) {
        (Ok(Some(matched)), Some(ours)) => matched.shape() == ours.shape(),
        _ => false,
    };
    (!same).then_some(key)
}

/// The request facts some policy reads that this event shows are outside API Gateway's cache
/// key: a TOKEN event carries none of them, and an HTTP API event lists its identity source
/// values, so a fact whose value is not among them is reused across values. (REST REQUEST and
/// WebSocket events do not say; `cedargate validate` checks those against the template. The
/// time is not judged here: whether a cached answer outlives it depends on the TTL, which no
/// event carries.)
fn cache_notes(snapshot: &Snapshot, req: &AuthzRequest<'_>) -> Vec<Note> {
    let facts = snapshot.request_facts();
    if facts.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for fact in facts {
        let value = match &fact {
            RequestFact::Time(_) => continue,
            RequestFact::SourceIp => req.source_ip.as_deref(),
            RequestFact::UserAgent => req.user_agent.as_deref(),
            RequestFact::Header(h) => req.header(h),
        };
        match req.flavor {
            Flavor::Token => out.push(Note::FactNotKeyed {
                fact,
                why: "TOKEN events do not carry it, so a policy that reads it never sees it: use a REQUEST authorizer with it among the identity sources".to_owned(),
            }),
            Flavor::HttpV1 | Flavor::HttpV2 => {
                let Some(values) = req.identity_values.as_ref().filter(|v| !v.is_empty()) else {
                    continue;
                };
                if !value.is_some_and(|v| values.iter().any(|s| s == v)) {
                    out.push(Note::FactNotKeyed {
                        fact,
                        why: "it is not among the authorizer's identity sources, so API Gateway reuses a cached answer for requests with other values: add it to the identity sources, or set the cache TTL to 0".to_owned(),
                    });
                }
            }
            Flavor::Request | Flavor::WebSocket => {}
        }
    }
    out
}

/// The response for the flavour.
fn respond(
    req: &AuthzRequest<'_>,
    principal: &str,
    claims: &VerifiedClaims,
    answer: &Answer,
    revision: &str,
    settings: &ResponseConfig,
) -> Response {
    // Payload 2.0 passes arrays and objects in `context` through; the others need it flat.
    let shape = if req.flavor == Flavor::HttpV2 {
        ContextShape::Nested
    } else {
        ContextShape::Flat
    };
    let context = context(claims, &settings.context_claims, principal, revision, shape);
    match answer {
        Answer::Simple(is_authorized) => Response::Simple(SimpleResponse {
            is_authorized: *is_authorized,
            context,
        }),
        Answer::Policy(policy) => {
            // Usage plans exist for REST and WebSocket APIs only; HTTP APIs have none.
            let usage_identifier_key = match req.flavor {
                Flavor::Token | Flavor::Request | Flavor::WebSocket => {
                    usage_key(claims, settings.usage_key.as_ref())
                }
                Flavor::HttpV1 | Flavor::HttpV2 => None,
            };
            Response::Policy(PolicyResponse {
                principal_id: principal.to_owned(),
                policy_document: policy.clone(),
                context,
                usage_identifier_key,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    //! The memo against Cedar itself: for generated bundles whose policies read each kind of
    //! fact (ids, parents, principal attributes, context attributes, headers, the resource,
    //! the time), and sequences of generated callers, every decision the core gives through a
    //! shared memo is the decision it gives without one, and both are Cedar's own decision for
    //! the full request (the real principal id, every attribute, every policy, no slicing).

    use std::collections::{BTreeMap, HashMap};
    use std::sync::Mutex;

    use cedar_policy::{Authorizer as CedarAuthorizer, Decision, Request as CedarRequest};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::arn::MethodArn;
    use crate::bundle::BundleFiles;
    use crate::facts::Reads;

    const SCHEMA: &str = r#"
@claim("roles") entity Role;
@claim("sub") entity User in [Role] {
  @claim("email") email?: String,
  @claim("level") level?: Long,
  @claim("scope") @split(" ") scopes?: Set<String>,
  @claim("iss") issuer?: String,
};
entity Api { stage: String };
type Ctx = {
  sourceIp?: String,
  userAgent?: String,
  stage: String,
  time: Long,
  headers: { "x-tenant"?: String },
};
action "GET /a" appliesTo { principal: [User], resource: [Api], context: Ctx };
action "GET /b" appliesTo { principal: [User], resource: [Api], context: Ctx };
action "POST /c" appliesTo { principal: [User], resource: [Api], context: Ctx };
action "GET /p/{id}" appliesTo { principal: [User], resource: [Api], context: Ctx };
"#;

    const IDS: [&str; 3] = ["alice", "bob", "carol"];
    /// Two issuers that both call someone `alice`.
    const ISSUERS: [&str; 2] = ["https://a.example/", "https://b.example/"];
    const ROLES: [&str; 2] = ["r1", "r2"];
    const EMAILS: [&str; 2] = ["a@x.example", "b@x.example"];
    const SCOPES: [&str; 2] = ["read", "write"];
    const IPS: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
    const AGENTS: [&str; 2] = ["curl/8", "Mozilla/5.0"];
    const TENANTS: [&str; 2] = ["t1", "t2"];
    const STAGES: [&str; 2] = ["prod", "dev"];
    const APIS: [&str; 2] = ["api1", "api2"];
    /// Requested resources: each route, a client-chosen `*` in a parameter, a resource no route
    /// receives.
    const RESOURCES: [&str; 6] = [
        "GET/a",
        "GET/b",
        "POST/c",
        "GET/p/1",
        "GET/p/x*y",
        "PUT/none",
    ];

    /// A principal id as policies name it: under `@qualify("iss")`, with an issuer.
    fn user(qualify: bool, k: usize) -> String {
        let id = IDS[k % IDS.len()];
        if qualify {
            format!("{}|{id}", ISSUERS[k % ISSUERS.len()])
        } else {
            id.to_owned()
        }
    }

    /// A policy reading one kind of fact, with a literal chosen by `k`; principal ids as
    /// `qualify` makes them.
    fn policy(template: usize, k: usize, qualify: bool) -> String {
        let pick = |list: &[&str]| list[k % list.len()].to_owned();
        match template {
            0 => format!(
                r#"permit(principal == User::"{}", action == Action::"GET /a", resource);"#,
                user(qualify, k)
            ),
            1 => format!(
                r#"permit(principal in Role::"{}", action == Action::"GET /b", resource);"#,
                pick(&ROLES)
            ),
            2 => format!(
                r#"permit(principal, action, resource) when {{ principal has email && principal.email == "{}" }};"#,
                pick(&EMAILS)
            ),
            3 => format!(
                r#"permit(principal, action == Action::"POST /c", resource) when {{ principal has level && principal.level >= {} }};"#,
                k % 4
            ),
            4 => format!(
                r#"permit(principal, action, resource) when {{ principal has scopes && principal.scopes.contains("{}") }};"#,
                pick(&SCOPES)
            ),
            5 => format!(
                r#"forbid(principal, action, resource) when {{ context has sourceIp && context.sourceIp == "{}" }};"#,
                pick(&IPS)
            ),
            6 => format!(
                r#"forbid(principal, action == Action::"GET /a", resource) when {{ context has userAgent && context.userAgent like "*{}*" }};"#,
                &pick(&AGENTS)[..4]
            ),
            7 => format!(
                r#"permit(principal, action == Action::"GET /b", resource) when {{ context.headers has "x-tenant" && context.headers["x-tenant"] == "{}" }};"#,
                pick(&TENANTS)
            ),
            8 => format!(
                r#"forbid(principal, action, resource) when {{ context.stage == "{}" }};"#,
                pick(&STAGES)
            ),
            9 => format!(
                r#"permit(principal, action == Action::"POST /c", resource == Api::"{}");"#,
                pick(&APIS)
            ),
            10 => format!(
                r#"permit(principal, action, resource) when {{ resource.stage == "{}" && principal in Role::"{}" }};"#,
                pick(&STAGES),
                pick(&ROLES)
            ),
            11 => format!(
                r#"forbid(principal, action == Action::"GET /b", resource) when {{ context.time > {} }};"#,
                1_000 + 500 * (k % 3)
            ),
            12 => format!(
                r#"permit(principal, action == Action::"POST /c", resource) when {{ principal == User::"{}" || principal in Role::"{}" }};"#,
                user(qualify, k),
                pick(&ROLES)
            ),
            13 => format!(
                r#"forbid(principal, action == Action::"GET /b", resource) when {{ [User::"{}", User::"carol"].contains(principal) }};"#,
                user(qualify, k)
            ),
            14 => format!(
                r#"permit(principal, action == Action::"GET /b", resource) when {{ principal has issuer && principal.issuer == "{}" }};"#,
                pick(&ISSUERS)
            ),
            _ => format!(
                r#"forbid(principal == User::"{}", action, resource) when {{ principal has issuer && principal.issuer == "{}" }};"#,
                user(qualify, k),
                pick(&ISSUERS)
            ),
        }
    }

    fn snapshot(policies: &[(usize, usize)]) -> Snapshot {
        snapshot_with(policies, false)
    }

    /// The bundle with `policies`; with `qualify`, principal ids qualified by the issuer.
    fn snapshot_with(policies: &[(usize, usize)], qualify: bool) -> Snapshot {
        let text: Vec<String> = policies
            .iter()
            .map(|(t, k)| policy(*t, *k, qualify))
            .collect();
        let schema = if qualify {
            SCHEMA.replace(
                r#"@claim("sub") entity User"#,
                r#"@claim("sub") @qualify("iss") entity User"#,
            )
        } else {
            SCHEMA.to_owned()
        };
        let files = BundleFiles {
            files: BTreeMap::from([
                ("schema/api.cedarschema".to_owned(), schema),
                ("policies/p.cedar".to_owned(), text.join("\n")),
            ]),
        };
        match Snapshot::compile(files, "test") {
            Ok((s, _)) => s,
            Err(p) => panic!("{p}\n{}", text.join("\n")),
        }
    }

    /// One generated caller: the claims and the request.
    #[derive(Debug, Clone)]
    struct Caller {
        id: usize,
        issuer: usize,
        roles: Vec<bool>,
        email: Option<usize>,
        level: Option<i64>,
        scope: Option<usize>,
        ip: Option<usize>,
        agent: Option<usize>,
        tenant: Option<usize>,
        stage: usize,
        api: usize,
        time_s: i64,
        resource: usize,
    }

    fn callers() -> impl Strategy<Value = Caller> {
        (
            (
                0..IDS.len(),
                proptest::collection::vec(any::<bool>(), ROLES.len()),
            ),
            (
                proptest::option::of(0..2usize),
                proptest::option::of(0..5i64),
                proptest::option::of(0..2usize),
            ),
            (
                proptest::option::of(0..2usize),
                proptest::option::of(0..2usize),
                proptest::option::of(0..2usize),
            ),
            (0..2usize, 0..2usize, 900..2200i64, 0..RESOURCES.len()),
            0..ISSUERS.len(),
        )
            .prop_map(
                |(
                    (id, roles),
                    (email, level, scope),
                    (ip, agent, tenant),
                    (stage, api, time_s, resource),
                    issuer,
                )| Caller {
                    id,
                    issuer,
                    roles,
                    email,
                    level,
                    scope,
                    ip,
                    agent,
                    tenant,
                    stage,
                    api,
                    time_s,
                    resource,
                },
            )
    }

    impl Caller {
        fn claims(&self) -> VerifiedClaims {
            let mut c = json!({
                "sub": IDS[self.id],
                "iss": ISSUERS[self.issuer],
                "roles": ROLES.iter().zip(&self.roles).filter(|(_, on)| **on).map(|(r, _)| *r).collect::<Vec<_>>(),
            });
            if let Some(e) = self.email {
                c["email"] = EMAILS[e].into();
            }
            if let Some(l) = self.level {
                c["level"] = l.into();
            }
            if let Some(s) = self.scope {
                c["scope"] = format!("{} other", SCOPES[s]).into();
            }
            VerifiedClaims::from_trusted_json(c).unwrap()
        }

        fn request(&self) -> AuthzRequest<'static> {
            let arn = MethodArn::parse(&format!(
                "arn:aws:execute-api:us-east-1:123456789012:{}/{}/{}",
                APIS[self.api], STAGES[self.stage], RESOURCES[self.resource]
            ))
            .unwrap();
            let mut headers = BTreeMap::new();
            if let Some(t) = self.tenant {
                headers.insert("x-tenant".to_owned(), TENANTS[t].to_owned());
            }
            headers.insert(
                "x-amzn-trace-id".to_owned(),
                format!("Root={}", self.time_s),
            );
            AuthzRequest::synthetic(
                arn,
                self.ip.map(|i| IPS[i].to_owned()),
                headers,
                self.agent.map(|a| AGENTS[a].to_owned()),
                Some(self.time_s * 1000),
            )
        }
    }

    /// A memo that remembers everything, and counts what it handed back.
    #[derive(Default)]
    struct Remember {
        decisions: Mutex<HashMap<DecisionKey, Arc<Decisions>>>,
        bases: Mutex<HashMap<BaseKey, Arc<PolicyBase>>>,
        policies: Mutex<HashMap<PolicyKey, Arc<Policy>>>,
        hits: std::sync::atomic::AtomicUsize,
    }

    impl Memo for Remember {
        fn decisions(
            &self,
            key: DecisionKey,
            compute: &mut dyn FnMut() -> Result<Arc<Decisions>, ClaimError>,
        ) -> Result<Arc<Decisions>, ClaimError> {
            if let Some(d) = self.decisions.lock().unwrap().get(&key) {
                self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(d.clone());
            }
            let d = compute()?;
            self.decisions.lock().unwrap().insert(key, d.clone());
            Ok(d)
        }
        fn base(
            &self,
            key: &BaseKeyRef<'_>,
            compute: &mut dyn FnMut() -> Arc<PolicyBase>,
        ) -> Arc<PolicyBase> {
            let owned = key.to_owned_key();
            if let Some(b) = self.bases.lock().unwrap().get(&owned) {
                return b.clone();
            }
            let b = compute();
            self.bases.lock().unwrap().insert(owned, b.clone());
            b
        }
        fn policy(
            &self,
            key: PolicyKey,
            compute: &mut dyn FnMut() -> (Arc<Policy>, bool),
        ) -> Arc<Policy> {
            if let Some(p) = self.policies.lock().unwrap().get(&key) {
                return p.clone();
            }
            let (p, reusable) = compute();
            if reusable {
                self.policies.lock().unwrap().insert(key, p.clone());
            }
            p
        }
    }

    /// Cedar's decision and reasons for every route, for the full request: the real id, every
    /// attribute the claims carry, every context attribute, the whole policy set.
    fn oracle(
        s: &Snapshot,
        claims: &VerifiedClaims,
        req: &AuthzRequest<'_>,
    ) -> Vec<(bool, Vec<String>)> {
        let mapping = s.mapping();
        let now = SystemTime::UNIX_EPOCH;
        let mut full = Facts::build(mapping, &Reads::everything(), claims, req, now).unwrap();
        full.principal_id = Some(crate::facts::principal_id(mapping, claims).unwrap());
        let caller = entities::caller(mapping, &full, &s.base_entities).unwrap();
        let cedar = CedarAuthorizer::new();
        s.derived
            .route_actions
            .iter()
            .map(|action| {
                let request = CedarRequest::new(
                    caller.principal.clone(),
                    action.clone(),
                    caller.resource.clone(),
                    caller.context.clone(),
                    None,
                )
                .unwrap();
                let r = cedar.is_authorized(&request, &s.policies, &caller.entities);
                let mut reasons: Vec<String> =
                    r.diagnostics().reason().map(ToString::to_string).collect();
                reasons.sort();
                (r.decision() == Decision::Allow, reasons)
            })
            .collect()
    }

    /// Each route's decision and reasons.
    type Verdicts = Vec<(bool, Vec<String>)>;

    fn decisions(s: &Snapshot, o: &Outcome) -> Verdicts {
        o.decisions
            .as_ref()
            .unwrap()
            .routes(s.index())
            .into_iter()
            .map(|d| {
                (
                    d.allowed,
                    d.reasons.iter().map(ToString::to_string).collect(),
                )
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
        #[test]
        fn memoized_decisions_are_cedars_decisions_for_the_full_request(
            policies in proptest::collection::vec((0..16usize, 0..6usize), 1..6),
            sequence in proptest::collection::vec(callers(), 2..14),
            qualify in any::<bool>(),
        ) {
            let s = snapshot_with(&policies, qualify);
            let memo = Remember::default();
            let settings = ResponseConfig::default();
            let mut seen: Vec<(Arc<Facts>, Verdicts)> = Vec::new();
            for caller in &sequence {
                let claims = caller.claims();
                let req = caller.request();
                let input = Input { request: &req, claims: &claims, now: SystemTime::UNIX_EPOCH };
                let memoized = authorize(Some(&s), &input, &settings, Detail::Explain, &memo).unwrap();
                let fresh = authorize(Some(&s), &input, &settings, Detail::Explain, &NoMemo).unwrap();
                let truth = oracle(&s, &claims, &req);
                prop_assert_eq!(&decisions(&s, &memoized), &truth, "memo vs Cedar for {:?}", caller);
                prop_assert_eq!(&decisions(&s, &fresh), &truth, "fresh vs Cedar for {:?}", caller);
                prop_assert_eq!(memoized.response.to_value(), fresh.response.to_value());
                // Equal facts, equal decisions.
                let facts = memoized.facts.clone().unwrap();
                for (other, d) in &seen {
                    if **other == *facts {
                        prop_assert_eq!(d, &truth);
                    }
                }
                seen.push((facts, truth));
            }
        }
    }

    #[test]
    fn facts_leave_out_what_no_policy_reads() {
        // Roles only: two callers with the same roles share one set of facts (and so one memo
        // entry), whatever their ids, emails and request headers.
        let s = snapshot(&[(1, 0)]);
        let settings = ResponseConfig::default();
        let memo = Remember::default();
        let mut a = callers_fixed(0);
        let mut b = callers_fixed(1);
        a.roles = vec![true, false];
        b.roles = vec![true, false];
        b.email = Some(1);
        b.ip = Some(1);
        let (ca, ra, cb, rb) = (a.claims(), a.request(), b.claims(), b.request());
        let oa = authorize(
            Some(&s),
            &Input {
                request: &ra,
                claims: &ca,
                now: SystemTime::UNIX_EPOCH,
            },
            &settings,
            Detail::Decision,
            &memo,
        )
        .unwrap();
        let ob = authorize(
            Some(&s),
            &Input {
                request: &rb,
                claims: &cb,
                now: SystemTime::UNIX_EPOCH,
            },
            &settings,
            Detail::Decision,
            &memo,
        )
        .unwrap();
        assert_eq!(oa.facts, ob.facts);
        assert!(
            oa.computed && !ob.computed,
            "the second caller is served from the memo"
        );
        assert_eq!(memo.hits.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The principalId of the answer is still each caller's own.
        assert_eq!(
            (oa.principal.as_str(), ob.principal.as_str()),
            ("alice", "bob")
        );
        let f = oa.facts.unwrap();
        assert!(f.principal_id.is_none() && f.principal_attrs.is_empty() && f.context.is_empty());
    }

    #[test]
    fn a_policy_on_an_id_or_a_fact_puts_it_in_the_facts() {
        let s = snapshot(&[(0, 0), (5, 0), (7, 0)]);
        let r = s.reads();
        assert!(r.principal_id);
        assert!(r.context.contains("sourceIp") && r.headers.contains("x-tenant"));
        assert!(!r.principal_attrs.contains("email"));
        // Reading the time makes decisions one-off: they are never memoized.
        assert!(s.decisions_reusable());
        assert!(!snapshot(&[(11, 0)]).decisions_reusable());
    }

    #[test]
    fn the_same_sub_from_two_issuers_is_two_principals_only_under_qualify() {
        let settings = ResponseConfig::default();
        let route = |s: &Snapshot| {
            s.routes()
                .routes()
                .iter()
                .position(|r| r.name == "GET /a")
                .unwrap()
        };
        // `alice` of issuer A and `alice` of issuer B.
        let (mut a, mut b) = (callers_fixed(0), callers_fixed(0));
        a.issuer = 0;
        b.issuer = 1;
        let run = |s: &Snapshot, c: &Caller| {
            let (claims, req) = (c.claims(), c.request());
            let input = Input {
                request: &req,
                claims: &claims,
                now: SystemTime::UNIX_EPOCH,
            };
            let o = authorize(Some(s), &input, &settings, Detail::Explain, &NoMemo).unwrap();
            let allowed = decisions(s, &o)[route(s)].0;
            (o.principal.clone(), allowed, o.facts.unwrap())
        };
        // By default the id is `sub` alone: `User::"alice"` is both of them.
        let plain = snapshot_with(&[(0, 0)], false);
        let (pa, allowed_a, fa) = run(&plain, &a);
        let (pb, allowed_b, fb) = run(&plain, &b);
        assert_eq!((pa.as_str(), pb.as_str()), ("alice", "alice"));
        assert!(allowed_a && allowed_b);
        // The facts still differ (the issuer is always one), so neither shares the other's
        // memoized decision.
        assert_ne!(fa, fb);
        // Under `@qualify("iss")` they are two principals, and the policy names one of them.
        let qualified = snapshot_with(&[(0, 0)], true);
        let (pa, allowed_a, fa) = run(&qualified, &a);
        let (pb, allowed_b, fb) = run(&qualified, &b);
        assert_eq!(pa, "https://a.example/|alice");
        assert_eq!(pb, "https://b.example/|alice");
        assert!(allowed_a && !allowed_b);
        assert_ne!(fa.principal_id, fb.principal_id);
        // Claims that name no issuer cannot give a qualified id.
        let claims = VerifiedClaims::from_trusted_json(json!({"sub": "alice"})).unwrap();
        let err = crate::facts::principal_id(qualified.mapping(), &claims)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`iss`") && err.contains("@qualify"), "{err}");
    }

    fn callers_fixed(id: usize) -> Caller {
        Caller {
            id,
            issuer: 0,
            roles: vec![false, false],
            email: None,
            level: None,
            scope: None,
            ip: None,
            agent: None,
            tenant: None,
            stage: 0,
            api: 0,
            time_s: 1_000,
            resource: 0,
        }
    }

    #[test]
    fn stage_star_policy_allows_a_denied_route_through_the_stage_wildcard() {
        // The security review's case, through the core: `GET /pets` allowed, `POST /{x}/pets`
        // denied, a console test event (stage `*`).
        let files = BundleFiles {
            files: BTreeMap::from([
                (
                    "schema/api.cedarschema".to_owned(),
                    r#"
@claim("roles") entity Role;
@claim("sub") entity User in [Role];
entity Api;
action "GET /pets" appliesTo { principal: [User], resource: [Api] };
action "POST /{x}/pets" appliesTo { principal: [User], resource: [Api] };
"#
                    .to_owned(),
                ),
                (
                    "policies/p.cedar".to_owned(),
                    r#"permit(principal, action == Action::"GET /pets", resource);"#.to_owned(),
                ),
            ]),
        };
        let (s, _) = Snapshot::compile(files, "test").unwrap();
        let claims = VerifiedClaims::from_trusted_json(json!({"sub": "u", "iss": "i"})).unwrap();
        let api = "arn:aws:execute-api:us-east-1:123456789012:api1";
        for asked in ["GET/pets", "POST/GET/pets", "POST/a/pets"] {
            let arn = MethodArn::parse(&format!("{api}/*/{asked}")).unwrap();
            let req = AuthzRequest::synthetic(arn, None, BTreeMap::new(), None, None);
            let input = Input {
                request: &req,
                claims: &claims,
                now: SystemTime::UNIX_EPOCH,
            };
            let o = authorize(
                Some(&s),
                &input,
                &ResponseConfig::default(),
                Detail::Decision,
                &NoMemo,
            )
            .unwrap();
            let doc = o.response.to_value()["policyDocument"].clone();
            let allows = |resource: &str| {
                let mut allowed = false;
                for st in doc["Statement"].as_array().unwrap() {
                    let hit = st["Resource"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|r| glob(r.as_str().unwrap(), &format!("{api}/{resource}")));
                    match (st["Effect"].as_str().unwrap(), hit) {
                        ("Deny", true) => return false,
                        ("Allow", true) => allowed = true,
                        _ => {}
                    }
                }
                allowed
            };
            for stage in ["prod", "v1", "POST", "GET"] {
                assert!(
                    allows(&format!("{stage}/GET/pets")),
                    "{asked} {stage}: {doc}"
                );
                assert!(
                    !allows(&format!("{stage}/POST/GET/pets")),
                    "{asked} {stage}: {doc}"
                );
                assert!(
                    !allows(&format!("{stage}/POST/a/pets")),
                    "{asked} {stage}: {doc}"
                );
            }
        }
    }

    /// IAM's `*` (any run of characters, `/` included) and `?` (one), for the test above.
    fn glob(pattern: &str, subject: &str) -> bool {
        fn go(p: &[u8], s: &[u8]) -> bool {
            match p.split_first() {
                None => s.is_empty(),
                Some((b'*', rest)) => (0..=s.len()).any(|k| go(rest, &s[k..])),
                Some((b'?', rest)) => !s.is_empty() && go(rest, &s[1..]),
                Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
            }
        }
        go(pattern.as_bytes(), subject.as_bytes())
    }
}
