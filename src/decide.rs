//! Decisions: the Cedar decision for every route, for one caller.
//!
//! Stage: after `entities`, before `iam`. Input: a [`PolicyIndex`] built once per bundle, and
//! the caller's Cedar principal, ancestors, resource and context ([`CallerRequest`]). Output:
//! [`Decisions`], one per route, with the policies that determined each.
//!
//! ## Slicing
//! Cedar evaluates every policy of the set it is given (about half a microsecond each), so
//! 10,000 policies × 512 routes would cost seconds per caller. At load, each policy is indexed
//! by the routes its action scope can match (through the schema's action groups) and by the
//! entity its principal scope names. Per caller, only policies whose scope can match this
//! principal are gathered, grouped by route, and Cedar evaluates each route with just those.
//! A policy left out has a scope that is false for this request, and scope conditions never
//! error, so it could not have been satisfied nor errored: the decision, the determining
//! policies and the errors are exactly those Cedar gives with the full set. A route with no
//! candidate `permit` is denied without calling Cedar (Cedar denies by default); `explain`
//! still evaluates it so that satisfied `forbid`s are reported.
//!
//! Invariants: pure (no I/O); the same inputs give the same decisions.

use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Effect, Entities, EntityTypeName, EntityUid,
    Policy, PolicyId, PolicySet, PrincipalConstraint, Request,
};

use crate::routes::RouteId;

#[derive(Debug, Clone)]
enum PrincipalKey {
    Any,
    Eq(EntityUid),
    In(EntityUid),
    Is(EntityTypeName),
    IsIn(EntityTypeName, EntityUid),
}

#[derive(Debug, Clone)]
struct Indexed {
    policy: Policy,
    effect: Effect,
    routes: Vec<RouteId>,
    principal: PrincipalKey,
}

/// Policies indexed by route and by principal scope; built at bundle load.
#[derive(Debug, Clone, Default)]
pub struct PolicyIndex {
    policies: Vec<Indexed>,
    by_uid: HashMap<EntityUid, Vec<u32>>,
    unscoped: Vec<u32>,
    /// The Cedar action of each route.
    route_actions: Vec<EntityUid>,
    /// Policies whose action scope matches no route (they can never apply to a request).
    off_route: Vec<PolicyId>,
}

impl PolicyIndex {
    /// Indexes `policies`. `route_actions[r]` is the action of route `r`;
    /// `action_ancestors` maps each action to its action groups (transitively).
    pub fn new(
        policies: &PolicySet,
        route_actions: Vec<EntityUid>,
        action_ancestors: &HashMap<EntityUid, HashSet<EntityUid>>,
    ) -> Self {
        let mut index = PolicyIndex {
            route_actions,
            ..Default::default()
        };
        let mut all: Vec<&Policy> = policies.policies().collect();
        // Deterministic order: by id.
        all.sort_by_key(|p| p.id().to_string());
        for policy in all {
            let routes: Vec<RouteId> = match policy.action_constraint() {
                ActionConstraint::Any => (0..index.route_actions.len()).collect(),
                ActionConstraint::Eq(a) => index
                    .route_actions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| **r == a)
                    .map(|(i, _)| i)
                    .collect(),
                ActionConstraint::In(list) => index
                    .route_actions
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        list.iter().any(|a| {
                            *r == a || action_ancestors.get(*r).is_some_and(|anc| anc.contains(a))
                        })
                    })
                    .map(|(i, _)| i)
                    .collect(),
            };
            if routes.is_empty() {
                index.off_route.push(policy.id().clone());
                continue;
            }
            let principal = match policy.principal_constraint() {
                PrincipalConstraint::Any => PrincipalKey::Any,
                PrincipalConstraint::Eq(u) => PrincipalKey::Eq(u),
                PrincipalConstraint::In(u) => PrincipalKey::In(u),
                PrincipalConstraint::Is(t) => PrincipalKey::Is(t),
                PrincipalConstraint::IsIn(t, u) => PrincipalKey::IsIn(t, u),
            };
            let Ok(at) = u32::try_from(index.policies.len()) else {
                break;
            };
            match &principal {
                PrincipalKey::Any | PrincipalKey::Is(_) => index.unscoped.push(at),
                PrincipalKey::Eq(u) | PrincipalKey::In(u) | PrincipalKey::IsIn(_, u) => {
                    index.by_uid.entry(u.clone()).or_default().push(at);
                }
            }
            index.policies.push(Indexed {
                policy: policy.clone(),
                effect: policy.effect(),
                routes,
                principal,
            });
        }
        index
    }

    /// Policies whose action scope matches none of the routes.
    pub fn off_route(&self) -> &[PolicyId] {
        &self.off_route
    }

    /// Every policy that applies to some route, with the routes its action scope matches.
    pub fn scoped(&self) -> impl Iterator<Item = (&Policy, &[RouteId])> {
        self.policies
            .iter()
            .map(|p| (&p.policy, p.routes.as_slice()))
    }

    pub fn route_count(&self) -> usize {
        self.route_actions.len()
    }

    /// The candidate policies for this principal, grouped by route: `(route, policy index)`.
    fn candidates(
        &self,
        principal: &EntityUid,
        ancestors: &HashSet<EntityUid>,
    ) -> Vec<(RouteId, u32)> {
        let ptype = principal.type_name();
        let applies = |key: &PrincipalKey| match key {
            PrincipalKey::Any => true,
            PrincipalKey::Is(t) => t == ptype,
            PrincipalKey::Eq(u) => u == principal,
            PrincipalKey::In(u) => u == principal || ancestors.contains(u),
            PrincipalKey::IsIn(t, u) => t == ptype && (u == principal || ancestors.contains(u)),
        };
        let mut picked: Vec<u32> = self.unscoped.clone();
        for uid in std::iter::once(principal).chain(ancestors.iter()) {
            if let Some(list) = self.by_uid.get(uid) {
                picked.extend(list);
            }
        }
        picked.sort_unstable();
        picked.dedup();
        let mut out = Vec::new();
        for at in picked {
            let Some(p) = self.policies.get(at as usize) else {
                continue;
            };
            if applies(&p.principal) {
                out.extend(p.routes.iter().map(|r| (*r, at)));
            }
        }
        out.sort_unstable();
        out
    }
}

/// One caller's Cedar request parts (the action varies by route).
#[derive(Debug, Clone)]
pub struct CallerRequest {
    pub principal: EntityUid,
    /// Every ancestor of the principal (transitively).
    pub ancestors: HashSet<EntityUid>,
    pub resource: EntityUid,
    pub context: Context,
    pub entities: Entities,
}

/// The decision for one route, with the policies that made it (for tools: `explain`, `test`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub allowed: bool,
    /// The policies that determined the decision (satisfied permits for Allow, satisfied
    /// forbids for an explicit Deny; empty for a default Deny), in the index's order (by id).
    pub reasons: Vec<PolicyId>,
    /// Policies that failed to evaluate (ignored by Cedar for the decision).
    pub errors: Vec<String>,
}

/// The decision for every route. Compact, since it is memoized: one bit per route, each
/// determining policy as its position in the [`PolicyIndex`], and the errors of the routes
/// that have any (most routes of a large API are denied by default for a given caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decisions {
    routes: usize,
    /// Route `r` is bit `r % 64` of word `r / 64`.
    allowed: Box<[u64]>,
    /// `(route, policy)`, sorted: the policies that determined each route's decision.
    reasons: Box<[(u32, u32)]>,
    /// `(route, error)`, in route order.
    errors: Box<[(u32, Box<str>)]>,
}

impl Decisions {
    /// Whether route `r` is allowed (`false` for a route that does not exist).
    pub fn is_allowed(&self, r: RouteId) -> bool {
        self.allowed
            .get(r / 64)
            .is_some_and(|w| w & (1 << (r % 64)) != 0)
    }

    pub fn allowed(&self) -> Vec<bool> {
        (0..self.routes).map(|r| self.is_allowed(r)).collect()
    }

    /// The decision of every route, one bit each (route `r` is bit `r % 64` of word `r / 64`).
    pub fn allowed_bits(&self) -> &[u64] {
        &self.allowed
    }

    /// Policies that failed to evaluate, by route.
    pub fn errors(&self) -> impl Iterator<Item = (RouteId, &str)> {
        self.errors.iter().map(|(r, e)| (*r as RouteId, &**e))
    }

    /// The policies that determined route `r`'s decision, named through `index` (the index
    /// that made these decisions): satisfied permits for an Allow, satisfied forbids for an
    /// explicit Deny, none for a default Deny.
    pub fn reasons_of<'i>(&self, r: RouteId, index: &'i PolicyIndex) -> Vec<&'i PolicyId> {
        let r = r as u32;
        let start = self.reasons.partition_point(|(route, _)| *route < r);
        self.reasons
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|(route, _)| *route == r)
            .filter_map(|(_, at)| index.policies.get(*at as usize))
            .map(|p| p.policy.id())
            .collect()
    }

    /// Every route's decision, in route order, with its policies named through `index` (the
    /// index that made these decisions).
    pub fn routes(&self, index: &PolicyIndex) -> Vec<RouteDecision> {
        let mut out: Vec<RouteDecision> = (0..self.routes)
            .map(|r| RouteDecision {
                allowed: self.is_allowed(r),
                reasons: Vec::new(),
                errors: Vec::new(),
            })
            .collect();
        for (r, at) in self.reasons.iter() {
            let policy = index.policies.get(*at as usize);
            if let (Some(d), Some(p)) = (out.get_mut(*r as usize), policy) {
                d.reasons.push(p.policy.id().clone());
            }
        }
        for (r, e) in self.errors.iter() {
            if let Some(d) = out.get_mut(*r as usize) {
                d.errors.push(e.to_string());
            }
        }
        out
    }

    /// Roughly how many bytes this holds (for bounded caches).
    pub fn weight(&self) -> usize {
        96 + self.allowed.len() * 8
            + self.reasons.len() * 8
            + self.errors.iter().map(|(_, e)| e.len() + 40).sum::<usize>()
    }
}

/// How much to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detail {
    /// Only what the decision needs: routes without a candidate permit are denied unevaluated.
    Decision,
    /// Evaluate every route that has any candidate policy, for complete reasons.
    Explain,
}

/// A request Cedar refused to build (not expected: the parts come from the schema's mapping).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the Cedar request cannot be built: {0}")]
pub struct DecideError(String);

/// Decides one route for one caller, with every determining policy and error: what the
/// review tool asks for each caller it generates for that route. The same candidates and the
/// same Cedar evaluation as [`decide`], limited to `route`.
pub fn decide_route(
    index: &PolicyIndex,
    req: &CallerRequest,
    route: RouteId,
) -> Result<RouteDecision, DecideError> {
    let mut candidates = index.candidates(&req.principal, &req.ancestors);
    candidates.retain(|(r, _)| *r == route);
    let mut out = RouteDecision {
        allowed: false,
        reasons: Vec::new(),
        errors: Vec::new(),
    };
    let Some(response) = evaluate(&Authorizer::new(), index, req, route, &candidates)? else {
        return Ok(out);
    };
    out.allowed = response.decision() == Decision::Allow;
    out.reasons = response.diagnostics().reason().cloned().collect();
    out.reasons.sort_by_key(ToString::to_string);
    out.errors = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    Ok(out)
}

/// Cedar's answer for `route` over its candidate policies `group` (`None`: no candidate, or
/// no such route, which is a default deny).
fn evaluate(
    authorizer: &Authorizer,
    index: &PolicyIndex,
    req: &CallerRequest,
    route: RouteId,
    group: &[(RouteId, u32)],
) -> Result<Option<cedar_policy::Response>, DecideError> {
    let Some(action) = index.route_actions.get(route) else {
        return Ok(None);
    };
    if group.is_empty() {
        return Ok(None);
    }
    let Ok(set) = PolicySet::from_policies(
        group
            .iter()
            .filter_map(|(_, at)| index.policies.get(*at as usize))
            .map(|p| p.policy.clone()),
    ) else {
        return Ok(None);
    };
    let request = Request::new(
        req.principal.clone(),
        action.clone(),
        req.resource.clone(),
        req.context.clone(),
        None,
    )
    .map_err(|e| DecideError(e.to_string()))?;
    Ok(Some(authorizer.is_authorized(
        &request,
        &set,
        &req.entities,
    )))
}

/// Decides every route for one caller.
pub fn decide(
    index: &PolicyIndex,
    req: &CallerRequest,
    detail: Detail,
) -> Result<Decisions, DecideError> {
    let authorizer = Authorizer::new();
    let candidates = index.candidates(&req.principal, &req.ancestors);
    let routes = index.route_count();
    let mut allowed = vec![0u64; routes.div_ceil(64)];
    let mut reasons: Vec<(u32, u32)> = Vec::new();
    let mut errors: Vec<(u32, Box<str>)> = Vec::new();
    let mut start = 0;
    while start < candidates.len() {
        let Some((route, _)) = candidates.get(start).copied() else {
            break;
        };
        let end = candidates
            .iter()
            .skip(start)
            .position(|(r, _)| *r != route)
            .map_or(candidates.len(), |n| start + n);
        let group = candidates.get(start..end).unwrap_or_default();
        start = end;
        let has_permit = group.iter().any(|(_, at)| {
            index
                .policies
                .get(*at as usize)
                .is_some_and(|p| p.effect == Effect::Permit)
        });
        if !has_permit && detail == Detail::Decision {
            continue;
        }
        let Some(response) = evaluate(&authorizer, index, req, route, group)? else {
            continue;
        };
        let Ok(route_no) = u32::try_from(route) else {
            continue;
        };
        if response.decision() == Decision::Allow {
            if let Some(w) = allowed.get_mut(route / 64) {
                *w |= 1 << (route % 64);
            }
        }
        // Each determining policy by its place in the index: it is one of this route's
        // candidates.
        for id in response.diagnostics().reason() {
            let at = group.iter().map(|(_, at)| *at).find(|at| {
                index
                    .policies
                    .get(*at as usize)
                    .is_some_and(|p| p.policy.id() == id)
            });
            if let Some(at) = at {
                reasons.push((route_no, at));
            }
        }
        errors.extend(
            response
                .diagnostics()
                .errors()
                .map(|e| (route_no, e.to_string().into_boxed_str())),
        );
    }
    // By route, and within a route in the index's order (by policy id).
    reasons.sort_unstable();
    Ok(Decisions {
        routes,
        allowed: allowed.into(),
        reasons: reasons.into(),
        errors: errors.into(),
    })
}
