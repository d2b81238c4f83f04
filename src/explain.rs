//! Explanation: why a caller gets what it gets — the principal as built, the decision for every
//! route with the policies that determined it, and the IAM policy that would be returned.
//!
//! Stage: beside the pipeline (pure). Input: a snapshot, verified (or trusted test) claims and
//! the request facts. Output: an [`Explanation`], serialisable to JSON for `explain`, `test`
//! and `serve`'s development endpoint.

use std::time::SystemTime;

use serde::Serialize;

use crate::claims::VerifiedClaims;
use crate::decide::{decide, Detail};
use crate::event::AuthzRequest;
use crate::iam::{PolicyDocument, Target};
use crate::store::Snapshot;

/// One route's decision and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteExplanation {
    pub route: String,
    pub allowed: bool,
    /// Policy ids (`<file>#<id>`) that determined the decision; empty for a default deny.
    pub reasons: Vec<String>,
    /// Policies that failed to evaluate (Cedar ignores them for the decision).
    pub errors: Vec<String>,
}

/// Everything about one caller.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub revision: String,
    /// The principal entity as Cedar sees it (`User::"auth0|123"`), with its attributes.
    pub principal: serde_json::Value,
    /// Every ancestor of the principal (claims plus the bundle's static hierarchy).
    pub ancestors: Vec<String>,
    pub routes: Vec<RouteExplanation>,
    /// The route the request's method ARN reaches, when there is one.
    pub requested_route: Option<String>,
    pub policy: PolicyDocument,
    /// Allowed routes the IAM policy cannot express exactly (left out, never over-allowed).
    pub inexact: Vec<String>,
}

/// An explanation could not be built: the claims do not fit the schema.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ExplainError(pub String);

/// Explains the decisions for `claims` on the request `req` (whose method ARN gives the API,
/// stage and requested route).
pub fn explain(
    snapshot: &Snapshot,
    claims: &VerifiedClaims,
    req: &AuthzRequest,
    now: SystemTime,
) -> Result<Explanation, ExplainError> {
    let mapping = &snapshot.mapping;
    let (principal_entity, _) = mapping
        .principal(claims)
        .map_err(|e| ExplainError(e.to_string()))?;
    let principal = principal_entity
        .to_json_value()
        .unwrap_or(serde_json::Value::Null);
    let caller = mapping
        .caller(claims, req, &snapshot.base_entities, now)
        .map_err(|e| ExplainError(e.to_string()))?;
    let mut ancestors: Vec<String> = caller.ancestors.iter().map(ToString::to_string).collect();
    ancestors.sort();
    let decisions = decide(&snapshot.index, &caller, Detail::Explain)
        .map_err(|e| ExplainError(e.to_string()))?;
    let routes: Vec<RouteExplanation> = snapshot
        .routes
        .routes()
        .iter()
        .zip(&decisions.routes)
        .map(|(route, d)| RouteExplanation {
            route: route.name.clone(),
            allowed: d.allowed,
            reasons: d.reasons.iter().map(ToString::to_string).collect(),
            errors: d.errors.clone(),
        })
        .collect();
    let target = snapshot.routes.route_resource(&req.arn.resource);
    let (plan, base) = snapshot.policy_base(&req.arn, &decisions.allowed());
    let shape = plan.finish(
        &base,
        Target {
            resource: &req.arn.resource,
            route: target,
        },
    );
    Ok(Explanation {
        revision: snapshot.revision().to_owned(),
        principal,
        ancestors,
        requested_route: target
            .and_then(|r| snapshot.routes.get(r))
            .map(|r| r.name.clone()),
        inexact: shape
            .inexact
            .iter()
            .filter_map(|r| snapshot.routes.get(*r))
            .map(|r| r.name.clone())
            .collect(),
        policy: PolicyDocument::from_shape(&shape, &req.arn),
        routes,
    })
}
