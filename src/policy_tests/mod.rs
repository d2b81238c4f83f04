//! Policy tests: a bundle's `policy-tests/**/*.yaml` run against its compiled snapshot.
//!
//! Stage: beside the pipeline (the `test` command). Input: a [`Snapshot`] (whose files include
//! the test files) and the cases [`format`] parsed from them. Output: per case a
//! [`CaseResult`] (pass, or a per-route diff), and a [`Coverage`] report.
//!
//! A case goes through the same code as a request, the request core
//! ([`crate::authorize::authorize`]): its claims become facts and the Cedar principal and
//! parents through the schema's mapping, so a test of "an editor may write" also tests that
//! the roles claim is read as the schema says. The claims do not come from a token
//! ([`VerifiedClaims::from_trusted_json`]): the test file is the trusted source, and signature
//! checks are tested elsewhere.
//!
//! Coverage counts only what a case checks: a policy is covered when it determined the
//! decision of a route some case asserted, and a route when cases expected it both allowed and
//! denied. A policy no test would notice the loss of is reported, as is a route whose every
//! outcome is never asserted.

pub mod format;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use cedar_policy::Effect;
use miette::Report;

use crate::arn::MethodArn;
use crate::authorize::{authorize, Input, NoMemo};
use crate::bundle::Snapshot;
use crate::claims::VerifiedClaims;
use crate::config::ResponseConfig;
use crate::decide::Detail;
use crate::event::AuthzRequest;

pub use format::{Case, Catalog, Expect, Expectation, Facts, Suite};

/// The directory of a bundle that holds its policy tests.
pub const TESTS_DIR: &str = "policy-tests/";

/// One route's decision as a case saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub allowed: bool,
    /// The policies that determined the decision (full ids); empty for a default deny.
    pub reasons: Vec<String>,
    /// Policies that failed to evaluate (Cedar skips them).
    pub errors: Vec<String>,
}

/// A route whose decision differs from the case's expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub route: String,
    pub expected: Expect,
    pub expected_reasons: Option<BTreeSet<String>>,
    pub actual: Actual,
}

/// How one case ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaseResult {
    Passed,
    /// Routes decided otherwise than expected.
    Failed(Vec<Mismatch>),
    /// The case expected decisions but the claims do not fit the schema (a 401), or the
    /// other way round; the text says which.
    Refused(String),
}

/// The synthetic method ARN a case runs with: only the stage matters to decisions (the
/// resource's `stage` and the context's `stage`).
pub fn case_arn(stage: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:123456789012:api/{stage}/GET/")
}

/// The request a case stands for.
pub fn request(facts: &Facts) -> Result<AuthzRequest<'static>, String> {
    let arn = MethodArn::parse(&case_arn(&facts.stage)).map_err(|e| e.to_string())?;
    Ok(AuthzRequest::synthetic(
        arn,
        facts.source_ip.clone(),
        facts.headers.clone(),
        facts.user_agent.clone(),
        Some(facts.time_ms),
    ))
}

/// The test files of the bundle, parsed and resolved against its routes and policies.
/// Returns the suites that parsed and a report for every problem in the others.
/// The route names and policy ids of a snapshot, which test files are resolved against.
#[derive(Debug)]
pub struct Names {
    routes: Vec<String>,
    policies: Vec<String>,
}

impl Names {
    pub fn of(snapshot: &Snapshot) -> Self {
        Self {
            routes: snapshot
                .routes()
                .routes()
                .iter()
                .map(|r| r.name.clone())
                .collect(),
            policies: snapshot
                .policies
                .policies()
                .map(|p| p.id().to_string())
                .collect(),
        }
    }

    pub fn catalog(&self) -> Catalog<'_> {
        Catalog {
            routes: &self.routes,
            policies: &self.policies,
        }
    }
}

pub fn suites(snapshot: &Snapshot) -> (Vec<Suite>, Vec<Report>) {
    let names = Names::of(snapshot);
    let catalog = names.catalog();
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (path, text) in &snapshot.files.files {
        if !path.starts_with(TESTS_DIR) || !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        match format::parse(path, text, catalog) {
            Ok(s) => out.push(s),
            Err(mut errs) => problems.append(&mut errs),
        }
    }
    (out, problems)
}

/// Runs one case: the decision for every route, compared with the expectation.
/// Also returns the per-route decisions (none when the claims did not fit).
pub fn run_case(snapshot: &Snapshot, case: &Case) -> (CaseResult, Option<Vec<Actual>>) {
    let req = match request(&case.facts) {
        Ok(r) => r,
        Err(e) => return (CaseResult::Refused(e), None),
    };
    let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(case.facts.time_ms).unwrap_or(0));
    let decided = VerifiedClaims::from_trusted_json(case.claims.clone())
        .map_err(|e| e.to_string())
        .and_then(|claims| {
            let input = Input {
                request: &req,
                claims: &claims,
                now,
            };
            authorize(
                Some(snapshot),
                &input,
                &ResponseConfig::default(),
                Detail::Explain,
                &NoMemo,
            )
            .map_err(|e| e.to_string())
        });
    let outcome = match (decided, &case.expect) {
        (Err(_), Expectation::Unauthorized) => return (CaseResult::Passed, None),
        (Err(why), Expectation::Decisions { .. }) => {
            return (
                CaseResult::Refused(format!(
                    "the claims do not fit the schema, so the authorizer answers 401 Unauthorized: {why}"
                )),
                None,
            )
        }
        (Ok(o), Expectation::Unauthorized) => {
            return (
                CaseResult::Refused(format!(
                    "expected 401 Unauthorized, but the claims fit the schema: the caller is {}",
                    cedar_policy::EntityUid::from_type_name_and_id(
                        snapshot.mapping().principal_type().clone(),
                        cedar_policy::EntityId::new(&o.principal)
                    )
                )),
                None,
            )
        }
        (Ok(o), Expectation::Decisions { .. }) => o,
    };
    let Some(decisions) = outcome.decisions else {
        return (
            CaseResult::Refused("no decisions were made".to_owned()),
            None,
        );
    };
    let actual: Vec<Actual> = decisions
        .routes(snapshot.index())
        .into_iter()
        .map(|d| Actual {
            allowed: d.allowed,
            reasons: d.reasons.iter().map(ToString::to_string).collect(),
            errors: d.errors,
        })
        .collect();
    let Expectation::Decisions { routes, reasons } = &case.expect else {
        return (CaseResult::Passed, Some(actual));
    };
    let names: Vec<&str> = snapshot
        .routes()
        .routes()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    let mismatches = compare(&names, routes, reasons, &actual);
    let result = if mismatches.is_empty() {
        CaseResult::Passed
    } else {
        CaseResult::Failed(mismatches)
    };
    (result, Some(actual))
}

/// The routes whose actual decision (or determining policies) differ from the expectation.
pub fn compare(
    names: &[&str],
    expect: &[Expect],
    reasons: &[Option<BTreeSet<String>>],
    actual: &[Actual],
) -> Vec<Mismatch> {
    let mut out = Vec::new();
    for (r, a) in actual.iter().enumerate() {
        let e = expect.get(r).copied().unwrap_or(Expect::Unchecked);
        let want_reasons = reasons.get(r).cloned().flatten();
        let decision_ok = match e {
            Expect::Allow => a.allowed,
            Expect::Deny => !a.allowed,
            Expect::Unchecked => true,
        };
        let reasons_ok = want_reasons.as_ref().is_none_or(|want| {
            let got: BTreeSet<String> = a.reasons.iter().cloned().collect();
            *want == got
        });
        if !(decision_ok && reasons_ok) {
            out.push(Mismatch {
                route: names.get(r).map_or_else(String::new, |s| (*s).to_owned()),
                expected: e,
                expected_reasons: want_reasons,
                actual: a.clone(),
            });
        }
    }
    out
}

fn describe(allowed: Option<bool>, reasons: Option<&[String]>) -> String {
    let mut s = match allowed {
        Some(true) => "allow".to_owned(),
        Some(false) => "deny".to_owned(),
        None => "(decision not checked)".to_owned(),
    };
    match reasons {
        None => {}
        Some([]) if allowed == Some(false) => s.push_str(" (no policy applies: default deny)"),
        Some([]) => s.push_str(", determined by no policy"),
        Some(ids) => {
            let _ = write!(s, ", determined by {}", ids.join(", "));
        }
    }
    s
}

/// A failed case as a per-route diff: `-` what the case expected, `+` what the policies decide.
pub fn render_diff(mismatches: &[Mismatch], indent: &str) -> String {
    let mut out = String::new();
    for m in mismatches {
        let expected_allowed = match m.expected {
            Expect::Allow => Some(true),
            Expect::Deny => Some(false),
            Expect::Unchecked => None,
        };
        let want: Option<Vec<String>> = m
            .expected_reasons
            .as_ref()
            .map(|s| s.iter().cloned().collect());
        let _ = writeln!(out, "{indent}{}", m.route);
        let _ = writeln!(
            out,
            "{indent}  - expected: {}",
            describe(expected_allowed, want.as_deref())
        );
        let _ = writeln!(
            out,
            "{indent}  + actual:   {}",
            describe(Some(m.actual.allowed), Some(&m.actual.reasons))
        );
        for e in &m.actual.errors {
            let _ = writeln!(
                out,
                "{indent}    (a policy failed to evaluate and was skipped: {e})"
            );
        }
    }
    out
}

/// What the tests exercised.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    /// Every policy id of the bundle, with its effect.
    policies: BTreeMap<String, Effect>,
    routes: Vec<String>,
    determined: BTreeSet<String>,
    touched: Vec<bool>,
    expected_allow: Vec<bool>,
    expected_deny: Vec<bool>,
}

/// The gaps [`Coverage`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gaps {
    pub policies: usize,
    pub routes: usize,
    /// `(policy id, "permit" | "forbid")` of policies that never determined a checked decision.
    pub undetermined: Vec<(String, &'static str)>,
    pub untouched: Vec<String>,
    pub never_allowed: Vec<String>,
    pub never_denied: Vec<String>,
}

impl Gaps {
    pub fn is_full(&self) -> bool {
        self.undetermined.is_empty()
            && self.untouched.is_empty()
            && self.never_allowed.is_empty()
            && self.never_denied.is_empty()
    }
}

impl Coverage {
    pub fn new(snapshot: &Snapshot) -> Self {
        let routes: Vec<String> = snapshot
            .routes()
            .routes()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        let n = routes.len();
        Self {
            policies: snapshot
                .policies
                .policies()
                .map(|p| (p.id().to_string(), p.effect()))
                .collect(),
            routes,
            determined: BTreeSet::new(),
            touched: vec![false; n],
            expected_allow: vec![false; n],
            expected_deny: vec![false; n],
        }
    }

    /// Records what `case` checked and which policies determined those decisions.
    pub fn record(&mut self, case: &Case, actual: Option<&[Actual]>) {
        let Expectation::Decisions { routes, reasons } = &case.expect else {
            return;
        };
        for (r, e) in routes.iter().enumerate() {
            let checked = *e != Expect::Unchecked || reasons.get(r).is_some_and(Option::is_some);
            if !checked {
                continue;
            }
            if let Some(t) = self.touched.get_mut(r) {
                *t = true;
            }
            let slot = match e {
                Expect::Allow => self.expected_allow.get_mut(r),
                Expect::Deny => self.expected_deny.get_mut(r),
                Expect::Unchecked => None,
            };
            if let Some(s) = slot {
                *s = true;
            }
            if let Some(a) = actual.and_then(|a| a.get(r)) {
                self.determined.extend(a.reasons.iter().cloned());
            }
        }
    }

    pub fn gaps(&self) -> Gaps {
        let missing = |flags: &[bool]| -> Vec<String> {
            self.routes
                .iter()
                .zip(flags)
                .filter(|(_, f)| !**f)
                .map(|(n, _)| n.clone())
                .collect()
        };
        Gaps {
            policies: self.policies.len(),
            routes: self.routes.len(),
            undetermined: self
                .policies
                .iter()
                .filter(|(id, _)| !self.determined.contains(*id))
                .map(|(id, e)| {
                    (
                        id.clone(),
                        match e {
                            Effect::Permit => "permit",
                            Effect::Forbid => "forbid",
                        },
                    )
                })
                .collect(),
            untouched: missing(&self.touched),
            never_allowed: missing(&self.expected_allow),
            never_denied: missing(&self.expected_deny),
        }
    }
}

/// The coverage report, several lines.
pub fn render_coverage(g: &Gaps) -> String {
    let mut out = String::new();
    let covered_policies = g.policies.saturating_sub(g.undetermined.len());
    let both = g.routes.saturating_sub(union_len(&[
        &g.untouched,
        &g.never_allowed,
        &g.never_denied,
    ]));
    let _ = writeln!(
        out,
        "coverage: {covered_policies}/{} policies determined a checked decision; {both}/{} routes expected both allowed and denied{}",
        g.policies,
        g.routes,
        if g.is_full() { " (full coverage)" } else { "" }
    );
    if !g.undetermined.is_empty() {
        let _ = writeln!(
            out,
            "  policies that never determined a decision in any test:"
        );
        for (id, effect) in &g.undetermined {
            let _ = writeln!(out, "    {id} ({effect})");
        }
    }
    for (title, list) in [
        ("routes no test touched", &g.untouched),
        ("routes no test expects to be allowed", &g.never_allowed),
        ("routes no test expects to be denied", &g.never_denied),
    ] {
        let shown: Vec<&String> = list
            .iter()
            .filter(|r| title.ends_with("touched") || !g.untouched.contains(r))
            .collect();
        if !shown.is_empty() {
            let _ = writeln!(out, "  {title}:");
            for r in shown {
                let _ = writeln!(out, "    {r}");
            }
        }
    }
    out
}

fn union_len(lists: &[&Vec<String>]) -> usize {
    lists
        .iter()
        .flat_map(|l| l.iter())
        .collect::<BTreeSet<_>>()
        .len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actual(allowed: bool, reasons: &[&str]) -> Actual {
        Actual {
            allowed,
            reasons: reasons.iter().map(|s| (*s).to_owned()).collect(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn compare_reports_only_what_differs() {
        let names = ["GET /a", "GET /b", "GET /c", "GET /d"];
        let expect = [
            Expect::Allow,
            Expect::Deny,
            Expect::Unchecked,
            Expect::Allow,
        ];
        let reasons = vec![
            None,
            None,
            None,
            Some(["p#x".to_owned()].into_iter().collect::<BTreeSet<_>>()),
        ];
        // All as expected (the unchecked route may be anything).
        let ok = [
            actual(true, &["p#a"]),
            actual(false, &[]),
            actual(true, &["p#c"]),
            actual(true, &["p#x"]),
        ];
        assert!(compare(&names, &expect, &reasons, &ok).is_empty());
        // A wrong decision and wrong reasons.
        let bad = [
            actual(false, &[]),
            actual(false, &[]),
            actual(false, &[]),
            actual(true, &["p#x", "p#y"]),
        ];
        let m = compare(&names, &expect, &reasons, &bad);
        let routes: Vec<&str> = m.iter().map(|m| m.route.as_str()).collect();
        assert_eq!(routes, vec!["GET /a", "GET /d"]);
    }

    #[test]
    fn diff_reads_as_expected_versus_actual() {
        let m = vec![
            Mismatch {
                route: "DELETE /pets/{petId}".to_owned(),
                expected: Expect::Deny,
                expected_reasons: None,
                actual: actual(true, &["policies/pets.cedar#admins-administer"]),
            },
            Mismatch {
                route: "GET /pets".to_owned(),
                expected: Expect::Allow,
                expected_reasons: None,
                actual: actual(false, &[]),
            },
        ];
        let text = render_diff(&m, "  ");
        assert_eq!(
            text,
            "  DELETE /pets/{petId}\n    - expected: deny\n    + actual:   allow, determined by policies/pets.cedar#admins-administer\n  GET /pets\n    - expected: allow\n    + actual:   deny (no policy applies: default deny)\n"
        );
    }

    #[test]
    fn render_coverage_lists_the_gaps() {
        let g = Gaps {
            policies: 3,
            routes: 3,
            undetermined: vec![("policies/a.cedar#x".to_owned(), "forbid")],
            untouched: vec!["GET /c".to_owned()],
            never_allowed: vec!["GET /b".to_owned(), "GET /c".to_owned()],
            never_denied: vec!["GET /c".to_owned()],
        };
        assert!(!g.is_full());
        let text = render_coverage(&g);
        assert!(text.starts_with("coverage: 2/3 policies determined a checked decision; 1/3 routes expected both allowed and denied\n"), "{text}");
        assert!(text.contains("    policies/a.cedar#x (forbid)\n"), "{text}");
        assert!(
            text.contains("  routes no test touched:\n    GET /c\n"),
            "{text}"
        );
        // A route already listed as untouched is not repeated under the other headings.
        assert!(
            text.contains("  routes no test expects to be allowed:\n    GET /b\n"),
            "{text}"
        );
        assert!(!text.contains("expects to be denied"), "{text}");
    }
}
