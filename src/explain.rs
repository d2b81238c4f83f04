//! Explanation: why a caller gets what it gets — the principal as the claims build it, the
//! facts the decisions read, every route's decision with the policies that determined it, and
//! the exact answer the Lambda returns.
//!
//! Stage: beside the pipeline (pure). Input: a snapshot, verified (or trusted) claims, the
//! request and the response settings. Output: an [`Explanation`], serialisable to JSON for
//! `explain` and `serve`'s development endpoint.
//!
//! Invariant: the answer comes from [`authorize`], the function the Lambda calls, so an
//! explanation never shows a different response from the one the Lambda returns. It asks for
//! complete reasons ([`Detail::Explain`]): routes without an applicable permit are still
//! evaluated, so that the `forbid`s that would deny them are named; the decisions are the same.

use serde::Serialize;

use crate::authorize::{authorize, Answer, Input, NoMemo};
use crate::bundle::Snapshot;
use crate::config::ResponseConfig;
use crate::decide::Detail;
use crate::entities;
use crate::event::Flavor;
use crate::facts::{self, ClaimError, Facts, Reads};
use crate::iam::PolicyDocument;

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
    pub flavor: Flavor,
    /// The principal entity as the claims build it (`User::"auth0|123"`), every mapped
    /// attribute included.
    pub principal: serde_json::Value,
    /// Every ancestor of the principal (claims plus the bundle's static hierarchy).
    pub ancestors: Vec<String>,
    /// What the decisions read: the values two callers must share to share a decision.
    pub facts: Facts,
    /// The first 12 hex digits of the facts digest (the decision memo's key, as logged).
    pub facts_digest: String,
    pub routes: Vec<RouteExplanation>,
    /// The route the request's method ARN reaches, when there is one.
    pub requested_route: Option<String>,
    /// The requested route's answer: allowed by the response.
    pub request_allowed: bool,
    /// The IAM policy of the response (none for simple responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyDocument>,
    /// Allowed routes the IAM policy cannot express exactly (left out, never over-allowed).
    pub inexact: Vec<String>,
    /// Exactly what the Lambda returns for this request.
    pub response: serde_json::Value,
}

/// Explains the decisions for the claims on the request of `input`.
pub fn explain(
    snapshot: &Snapshot,
    input: &Input<'_>,
    settings: &ResponseConfig,
) -> Result<Explanation, ClaimError> {
    let outcome = authorize(Some(snapshot), input, settings, Detail::Explain, &NoMemo)?;
    let mapping = snapshot.mapping();
    // The principal as the claims build it, whatever the policies read: what a person
    // debugging "why 403?" expects to see.
    let mut everything = Facts::build(
        mapping,
        &Reads::everything(),
        input.claims,
        input.request,
        input.now,
    )?;
    everything.principal_id = Some(facts::principal_id(mapping, input.claims)?);
    let principal = entities::principal(mapping, &everything)?
        .to_json_value()
        .unwrap_or(serde_json::Value::Null);
    let caller = entities::caller(mapping, &everything, &snapshot.base_entities)?;
    let mut ancestors: Vec<String> = caller.ancestors.iter().map(ToString::to_string).collect();
    ancestors.sort();
    let routes: Vec<RouteExplanation> = match &outcome.decisions {
        Some(d) => snapshot
            .routes()
            .routes()
            .iter()
            .zip(d.routes(snapshot.index()))
            .map(|(route, d)| RouteExplanation {
                route: route.name.clone(),
                allowed: d.allowed,
                reasons: d.reasons.iter().map(ToString::to_string).collect(),
                errors: d.errors,
            })
            .collect(),
        None => Vec::new(),
    };
    let (policy, inexact) = match &outcome.answer {
        Answer::Policy(policy) => (
            Some(policy.document(&input.request.arn)),
            policy
                .shape
                .inexact
                .iter()
                .filter_map(|r| snapshot.routes().get(*r))
                .map(|r| r.name.clone())
                .collect(),
        ),
        Answer::Simple(_) => (None, Vec::new()),
    };
    let facts = outcome
        .facts
        .as_deref()
        .cloned()
        .unwrap_or_else(|| everything.clone());
    Ok(Explanation {
        revision: outcome.revision.to_owned(),
        flavor: input.request.flavor,
        principal,
        ancestors,
        facts_digest: facts.digest().map_or_else(String::new, |d| d.short()),
        facts,
        routes,
        requested_route: outcome.route_name.map(str::to_owned),
        request_allowed: outcome.allowed,
        policy,
        inexact,
        response: outcome.response.to_value(),
    })
}
