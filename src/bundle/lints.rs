//! Lints: policies that are valid Cedar but can never change a decision.
//!
//! Stage: bundle load, after the policy index. Input: the [`PolicyIndex`] (each policy with the
//! routes its action scope matches) and the identity [`Mapping`]. Output: warnings, never
//! errors, since such a bundle still decides correctly; `validate --deny-warnings` fails on
//! them. Cedar's validator reports the other kind of dead policy itself (a condition that is
//! false for every well-typed request: "impossible policy").
//!
//! A permit is shadowed when each of its routes is denied to every caller by a forbid with no
//! `when`/`unless` whose principal and resource scopes match any principal and the API: such a
//! forbid is satisfied by every request for those routes, and a satisfied forbid always wins.

use std::collections::HashMap;

use cedar_policy::{Effect, Policy, PolicyId, PrincipalConstraint, ResourceConstraint};

use super::files::BundleFiles;
use super::report::{located_at, Problems};
use crate::decide::PolicyIndex;
use crate::facts::Mapping;
use crate::routes::RouteId;

/// Reports, as warnings, the policies that apply to no route and the permits an
/// unconditional forbid shadows. `places` says where each policy starts.
pub(super) fn report(
    index: &PolicyIndex,
    mapping: &Mapping,
    places: &HashMap<PolicyId, (String, usize, usize)>,
    files: &BundleFiles,
    problems: &mut Problems,
) {
    let at_policy = |id: &PolicyId, message: String, help: Option<String>| match places
        .get(id)
        .and_then(|(p, at, len)| files.files.get(p).map(|t| (p, t, *at, *len)))
    {
        Some((p, t, at, len)) => located_at(p, t, Some((at, len)), message, help),
        None => miette::miette!("{message}"),
    };
    for id in index.off_route() {
        problems.warn(at_policy(
            id,
            format!("policy `{id}` applies to no route, so it never affects a decision"),
            Some("its action scope names only actions that are not routes (`\"<VERB> /path\"`) nor groups of routes".to_owned()),
        ));
    }
    for (permit, forbid) in shadowed_permits(index, mapping) {
        problems.warn(at_policy(
            &permit,
            format!("permit `{permit}` can never allow anything: forbid `{forbid}` denies each of its routes to every caller, unconditionally"),
            None,
        ));
    }
}

/// Whether `forbid` is satisfied by every request on its routes.
fn always_applies(policy: &Policy, mapping: &Mapping) -> bool {
    let principal_any = match policy.principal_constraint() {
        PrincipalConstraint::Any => true,
        PrincipalConstraint::Is(t) => &t == mapping.principal_type(),
        _ => false,
    };
    let resource_any = match policy.resource_constraint() {
        ResourceConstraint::Any => true,
        ResourceConstraint::Is(t) => &t == mapping.resource_type(),
        _ => false,
    };
    policy.effect() == Effect::Forbid
        && principal_any
        && resource_any
        && !policy.has_non_scope_constraint()
}

/// Permits that can never allow, each with the unconditional forbids that shadow it.
fn shadowed_permits(index: &PolicyIndex, mapping: &Mapping) -> Vec<(PolicyId, String)> {
    let total: Vec<(&Policy, &[RouteId])> = index
        .scoped()
        .filter(|(p, _)| always_applies(p, mapping))
        .collect();
    if total.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (permit, routes) in index.scoped() {
        if permit.effect() != Effect::Permit || routes.is_empty() {
            continue;
        }
        let mut by: Vec<String> = Vec::new();
        let all_denied = routes.iter().all(|r| {
            total
                .iter()
                .find(|(_, fr)| fr.contains(r))
                .map(|(f, _)| {
                    let id = f.id().to_string();
                    if !by.contains(&id) {
                        by.push(id);
                    }
                })
                .is_some()
        });
        if all_denied {
            out.push((permit.id().clone(), by.join("`, `")));
        }
    }
    out
}
