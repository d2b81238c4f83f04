//! The policy test file format: YAML a security team reads and writes, parsed with locations.
//!
//! Stage: beside the pipeline (the `test` command). Input: the text of one
//! `policy-tests/**/*.yaml` file and the bundle's route names and policy ids. Output: a
//! [`Suite`] of resolved [`Case`]s, or every problem found, each pointing at its line.
//!
//! ```yaml
//! principals:                      # callers, written as the claims of their token
//!   reader:
//!     sub: auth0|reader
//!     https://cedargate.example/roles: [reader]
//! context:                         # request facts for every case (each may override)
//!   sourceIp: 198.51.100.7
//! cases:
//!   - name: readers read and nothing else
//!     principal: reader            # or a list: one row of the matrix per principal
//!     allow: [GET /pets, GET /pets/{petId}]     # everything unlisted must deny
//!     reasons:
//!       GET /pets: [readers-read]  # the policies that must determine the decision
//! ```
//!
//! Invariants: a file that parses yields cases whose routes and policy ids all exist in the
//! bundle; anything unknown (a misspelt route, a field name, a principal) is an error, never a
//! silently skipped check. Unknown fields are refused so that a typo such as `alow:` cannot
//! turn an expectation into nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::marker::PhantomData;

use miette::{NamedSource, Report, SourceOffset, SourceSpan};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use serde_saphyr::{Location, Spanned};

use crate::time::parse_rfc3339_millis;

/// The instant cases run at when they name no `time`: fixed, so that a suite gives the same
/// result tomorrow as today.
pub const DEFAULT_TIME: &str = "2025-01-01T00:00:00Z";

/// The stage cases run in when they name none.
pub const DEFAULT_STAGE: &str = "prod";

// ---- The raw YAML shapes -----------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// For readers of the file: accepted, never used.
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    principals: Pairs<Spanned<String>, Spanned<Value>>,
    #[serde(default)]
    context: Option<RawContext>,
    cases: Vec<RawCase>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Spanned<String>,
    #[serde(default)]
    principal: Option<Spanned<Names>>,
    #[serde(default)]
    claims: Option<Spanned<Value>>,
    #[serde(default)]
    context: Option<RawContext>,
    #[serde(default)]
    allow: Option<Spanned<RouteList>>,
    #[serde(default)]
    deny: Option<Spanned<RouteList>>,
    #[serde(default)]
    reasons: Option<Pairs<Spanned<String>, Vec<Spanned<String>>>>,
    #[serde(default)]
    unauthorized: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContext {
    #[serde(default)]
    source_ip: Option<String>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    stage: Option<Spanned<String>>,
    #[serde(default)]
    time: Option<Spanned<TimeValue>>,
    #[serde(default)]
    headers: Option<BTreeMap<String, String>>,
}

impl RawContext {
    /// `self` with every field `over` sets replaced.
    fn overridden_by(&self, over: Option<&RawContext>) -> RawContext {
        let Some(o) = over else {
            return self.clone();
        };
        RawContext {
            source_ip: o.source_ip.clone().or_else(|| self.source_ip.clone()),
            user_agent: o.user_agent.clone().or_else(|| self.user_agent.clone()),
            stage: o.stage.clone().or_else(|| self.stage.clone()),
            time: o.time.clone().or_else(|| self.time.clone()),
            headers: match (&self.headers, &o.headers) {
                (None, None) => None,
                (a, b) => {
                    let mut merged = a.clone().unwrap_or_default();
                    merged.extend(b.clone().unwrap_or_default());
                    Some(merged)
                }
            },
        }
    }
}

/// A map read in document order (the file's order is the order cases and errors are shown in).
#[derive(Debug)]
struct Pairs<K, V>(Vec<(K, V)>);

impl<K, V> Default for Pairs<K, V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for Pairs<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de>, V: Deserialize<'de>> Visitor<'de> for PairsVisitor<K, V> {
            type Value = Pairs<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(PairsVisitor(PhantomData))
    }
}

/// `principal: reader` or `principal: [reader, editor]`.
#[derive(Debug, Clone)]
struct Names(Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NamesVisitor;
        impl<'de> Visitor<'de> for NamesVisitor {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a principal name or a list of principal names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Names(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push(name);
                }
                Ok(Names(out))
            }
        }
        d.deserialize_any(NamesVisitor)
    }
}

/// `allow: all` or `allow: [GET /pets, …]`.
#[derive(Debug, Clone)]
enum RouteList {
    All,
    Listed(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RouteList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct RoutesVisitor;
        impl<'de> Visitor<'de> for RoutesVisitor {
            type Value = RouteList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a list of routes (`- GET /pets`)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "all" {
                    Ok(RouteList::All)
                } else {
                    // One route written without the list dash is the likeliest slip; say so
                    // rather than guess whether a list was meant.
                    Err(E::custom(format!(
                        "expected `all` or a list of routes; write `- {v}` on its own line, or `[{v}]`"
                    )))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(route) = seq.next_element::<Spanned<String>>()? {
                    out.push(route);
                }
                Ok(RouteList::Listed(out))
            }
        }
        d.deserialize_any(RoutesVisitor)
    }
}

/// `time: 2025-06-01T12:00:00Z` or `time: 1748779200` (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TimeValue(i64);

impl<'de> Deserialize<'de> for TimeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = TimeValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time (`2025-06-01T12:00:00Z`) or unix seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                v.checked_mul(1000)
                    .map(TimeValue)
                    .ok_or_else(|| E::custom("the time is out of range"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom("the time is out of range"))
                    .and_then(|s| self.visit_i64(s))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                parse_rfc3339_millis(v).map(TimeValue).map_err(E::custom)
            }
        }
        d.deserialize_any(TimeVisitor)
    }
}

// ---- What the runner gets ------------------------------------------------------------------

/// The routes and policies a suite is resolved against.
#[derive(Debug, Clone, Copy)]
pub struct Catalog<'a> {
    /// Route names, in route order.
    pub routes: &'a [String],
    /// Every policy id of the bundle (`policies/pets.cedar#readers-read`).
    pub policies: &'a [String],
}

/// What a case expects of one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Allow,
    Deny,
    /// The case does not check this route.
    Unchecked,
}

/// The request facts of a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub stage: String,
    /// Unix milliseconds.
    pub time_ms: i64,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
}

/// What a case expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// The claims do not fit the schema's mapping: the authorizer answers 401.
    Unauthorized,
    /// Per route, in route order: the expected decision, and the expected determining
    /// policies (full ids) where the case names them.
    Decisions {
        routes: Vec<Expect>,
        reasons: Vec<Option<BTreeSet<String>>>,
    },
}

/// One row of the matrix: one principal, one set of request facts, one expectation.
#[derive(Debug, Clone, PartialEq)]
pub struct Case {
    pub name: String,
    /// The principal's name in `principals:`, when the case names one.
    pub principal: Option<String>,
    /// 1-based line of the case's `name:`.
    pub line: u64,
    pub claims: Value,
    pub facts: Facts,
    pub expect: Expectation,
}

impl Case {
    /// `name [principal]`, as printed on the case's line.
    pub fn title(&self) -> String {
        match &self.principal {
            Some(p) => format!("{} [{p}]", self.name),
            None => self.name.clone(),
        }
    }
}

/// The cases of one file.
#[derive(Debug, Clone)]
pub struct Suite {
    pub file: String,
    pub cases: Vec<Case>,
}

/// A problem in a test file, anchored at its place.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{file}:{line}: {message}")]
pub struct TestFileError {
    pub file: String,
    pub line: u64,
    pub message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    help: Option<String>,
}

struct Errors<'a> {
    file: &'a str,
    text: &'a str,
    list: Vec<TestFileError>,
}

impl Errors<'_> {
    fn at(&mut self, loc: &Location, message: String) {
        self.with_help(loc, message, None);
    }

    fn with_help(&mut self, loc: &Location, message: String, help: Option<String>) {
        let span = loc.span();
        let span = span.byte_offset().map(|at| {
            let len = span.byte_len().unwrap_or(1).max(1);
            SourceSpan::new(
                SourceOffset::from(usize::try_from(at).unwrap_or(0)),
                usize::try_from(len).unwrap_or(1),
            )
        });
        self.list.push(TestFileError {
            file: self.file.to_owned(),
            line: loc.line(),
            message,
            src: NamedSource::new(self.file, self.text.to_owned()),
            span,
            help,
        });
    }
}

/// Parses and resolves one test file. `Err` holds every problem, each with its place.
pub fn parse(file: &str, text: &str, catalog: Catalog<'_>) -> Result<Suite, Vec<Report>> {
    let raw: RawFile = match serde_saphyr::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            // The parser's own message, anchored at its location in our report type so that
            // every problem of a test file reads the same way (`file:line: message`).
            let message = serde_saphyr::miette::to_miette_report(&e, text, file).to_string();
            let mut errors = Errors {
                file,
                text,
                list: Vec::new(),
            };
            let loc = e.location().unwrap_or(Location::UNKNOWN);
            // `[GET /pets/{petId}]` is the likeliest slip: inside `[…]` a `{` opens a mapping.
            let line = usize::try_from(loc.line())
                .ok()
                .and_then(|n| text.lines().nth(n.checked_sub(1)?));
            let help = line
                .filter(|l| l.contains('[') && l.contains('{'))
                .map(|_| "inside `[…]`, quote route names that contain `{` (`[\"GET /pets/{petId}\"]`), or list them one per line as `- GET /pets/{petId}`".to_owned());
            errors.with_help(&loc, message, help);
            return Err(errors.list.into_iter().map(Report::new).collect());
        }
    };
    let mut errors = Errors {
        file,
        text,
        list: Vec::new(),
    };
    let suite = resolve(file, raw, catalog, &mut errors);
    if errors.list.is_empty() {
        Ok(suite)
    } else {
        Err(errors.list.into_iter().map(Report::new).collect())
    }
}

fn resolve(file: &str, raw: RawFile, catalog: Catalog<'_>, errors: &mut Errors<'_>) -> Suite {
    let mut principals: BTreeMap<String, Value> = BTreeMap::new();
    for (name, claims) in raw.principals.0 {
        if !claims.value.is_object() {
            errors.at(
                &claims.referenced,
                format!(
                    "principal `{}` must be a mapping of token claims (`sub: …`)",
                    name.value
                ),
            );
        }
        if principals
            .insert(name.value.clone(), claims.value)
            .is_some()
        {
            errors.at(
                &name.referenced,
                format!("principal `{}` is defined twice", name.value),
            );
        }
    }
    let defaults = raw.context.unwrap_or_default();
    let mut cases = Vec::new();
    if raw.cases.is_empty() {
        errors.at(&Location::UNKNOWN, "the file has no cases".to_owned());
    }
    for case in raw.cases {
        let context = defaults.overridden_by(case.context.as_ref());
        let facts = facts(&context);
        let line = case.name.referenced.line();
        let expect = expectation(&case, catalog, errors);
        // The rows of the matrix: each named principal, or the inline claims.
        let rows: Vec<(Option<String>, Value)> = match (&case.principal, &case.claims) {
            (Some(_), Some(claims)) => {
                errors.at(
                    &claims.referenced,
                    "a case has `principal` or `claims`, not both".to_owned(),
                );
                Vec::new()
            }
            (None, None) => {
                errors.at(
                    &case.name.referenced,
                    format!(
                        "case `{}` needs `principal` (a name from `principals`) or `claims`",
                        case.name.value
                    ),
                );
                Vec::new()
            }
            (None, Some(claims)) => {
                if !claims.value.is_object() {
                    errors.at(
                        &claims.referenced,
                        "`claims` must be a mapping of token claims (`sub: …`)".to_owned(),
                    );
                }
                vec![(None, claims.value.clone())]
            }
            (Some(names), None) => {
                if names.value.0.is_empty() {
                    errors.at(&names.referenced, "`principal` lists no one".to_owned());
                }
                let mut rows = Vec::new();
                for n in &names.value.0 {
                    match principals.get(n) {
                        Some(claims) => rows.push((Some(n.clone()), claims.clone())),
                        None => {
                            let known: Vec<&str> = principals.keys().map(String::as_str).collect();
                            errors.at(
                                &names.referenced,
                                format!(
                                    "principal `{n}` is not defined under `principals` (defined: {})",
                                    if known.is_empty() { "none".to_owned() } else { format!("`{}`", known.join("`, `")) }
                                ),
                            );
                        }
                    }
                }
                rows
            }
        };
        let Some(expect) = expect else { continue };
        let facts = match facts {
            Ok(f) => f,
            Err((loc, message)) => {
                errors.at(&loc, message);
                continue;
            }
        };
        for (principal, claims) in rows {
            cases.push(Case {
                name: case.name.value.clone(),
                principal,
                line,
                claims,
                facts: facts.clone(),
                expect: expect.clone(),
            });
        }
    }
    Suite {
        file: file.to_owned(),
        cases,
    }
}

fn facts(c: &RawContext) -> Result<Facts, (Location, String)> {
    let time_ms = match &c.time {
        Some(t) => t.value.0,
        None => parse_rfc3339_millis(DEFAULT_TIME).map_err(|e| (Location::UNKNOWN, e))?,
    };
    let stage = match &c.stage {
        Some(s) => {
            let ok = !s.value.is_empty()
                && s.value
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
            if !ok && s.value != "$default" {
                return Err((
                    s.referenced,
                    format!(
                        "stage `{}` is not a stage name (letters, digits, `-`, `_`)",
                        s.value
                    ),
                ));
            }
            s.value.clone()
        }
        None => DEFAULT_STAGE.to_owned(),
    };
    Ok(Facts {
        source_ip: c.source_ip.clone(),
        user_agent: c.user_agent.clone(),
        stage,
        time_ms,
        headers: c
            .headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
    })
}

/// The routes a list names, as route indices; unknown names are reported.
fn route_indices(
    list: &Spanned<RouteList>,
    catalog: Catalog<'_>,
    errors: &mut Errors<'_>,
) -> Vec<usize> {
    match &list.value {
        RouteList::All => (0..catalog.routes.len()).collect(),
        RouteList::Listed(names) => {
            let mut out = Vec::new();
            for name in names {
                match catalog.routes.iter().position(|r| *r == name.value) {
                    Some(i) => out.push(i),
                    None => errors.at(&name.referenced, unknown_route(&name.value, catalog)),
                }
            }
            out
        }
    }
}

fn unknown_route(name: &str, catalog: Catalog<'_>) -> String {
    // The closest spelling helps with the usual slip (`{id}` for `{petId}`, a missing verb).
    let near =
        crate::text::did_you_mean(name, catalog.routes.iter().map(String::as_str), usize::MAX);
    format!("route `{name}` is not a route of the schema{near}")
}

/// The expected decision of every route, from `allow` and `deny`:
/// - `allow` alone: the listed routes allow, every other route must deny;
/// - `deny` (with or without `allow`): only the listed routes are checked.
pub fn matrix(routes: usize, allow: Option<&[usize]>, deny: Option<&[usize]>) -> Vec<Expect> {
    let rest = if allow.is_some() && deny.is_none() {
        Expect::Deny
    } else {
        Expect::Unchecked
    };
    let mut out = vec![rest; routes];
    for (list, e) in [(allow, Expect::Allow), (deny, Expect::Deny)] {
        for r in list.into_iter().flatten() {
            if let Some(slot) = out.get_mut(*r) {
                *slot = e;
            }
        }
    }
    out
}

/// Resolves a policy id as written (`readers-read` or `policies/pets.cedar#readers-read`).
pub fn resolve_policy_id(written: &str, catalog: Catalog<'_>) -> Result<String, String> {
    if catalog.policies.iter().any(|p| p == written) {
        return Ok(written.to_owned());
    }
    let suffix = format!("#{written}");
    let matches: Vec<&String> = catalog
        .policies
        .iter()
        .filter(|p| p.ends_with(&suffix))
        .collect();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!(
            "policy `{written}` is not in the bundle (write its `@id`, or `<file>#<@id or index>`)"
        )),
        many => Err(format!(
            "policy `{written}` is ambiguous: it could be `{}`; write the full id",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("`, `")
        )),
    }
}

fn expectation(
    case: &RawCase,
    catalog: Catalog<'_>,
    errors: &mut Errors<'_>,
) -> Option<Expectation> {
    let before = errors.list.len();
    if case.unauthorized == Some(true) {
        if case.allow.is_some() || case.deny.is_some() || case.reasons.is_some() {
            errors.at(
                &case.name.referenced,
                "`unauthorized: true` means no decision is made: drop `allow`, `deny` and `reasons`"
                    .to_owned(),
            );
            return None;
        }
        return Some(Expectation::Unauthorized);
    }
    if case.allow.is_none() && case.deny.is_none() && case.reasons.is_none() {
        errors.at(
            &case.name.referenced,
            format!(
                "case `{}` expects nothing: add `allow` (every other route must deny), `deny`, `reasons` or `unauthorized: true`",
                case.name.value
            ),
        );
        return None;
    }
    let allow = case
        .allow
        .as_ref()
        .map(|l| route_indices(l, catalog, errors));
    let deny = case
        .deny
        .as_ref()
        .map(|l| route_indices(l, catalog, errors));
    if let (Some(a), Some(d), Some(deny_list)) = (&allow, &deny, &case.deny) {
        for r in a.iter().filter(|r| d.contains(r)) {
            let name = catalog.routes.get(*r).map_or("", String::as_str);
            errors.at(
                &deny_list.referenced,
                format!("route `{name}` is in both `allow` and `deny`"),
            );
        }
    }
    let mut reasons = vec![None; catalog.routes.len()];
    for (route, ids) in case.reasons.iter().flat_map(|p| p.0.iter()) {
        let Some(r) = catalog.routes.iter().position(|n| *n == route.value) else {
            errors.at(&route.referenced, unknown_route(&route.value, catalog));
            continue;
        };
        let mut set = BTreeSet::new();
        for id in ids {
            match resolve_policy_id(&id.value, catalog) {
                Ok(full) => {
                    set.insert(full);
                }
                Err(message) => errors.at(&id.referenced, message),
            }
        }
        if let Some(slot) = reasons.get_mut(r) {
            *slot = Some(set);
        }
    }
    if errors.list.len() > before {
        return None;
    }
    Some(Expectation::Decisions {
        routes: matrix(catalog.routes.len(), allow.as_deref(), deny.as_deref()),
        reasons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: [&str; 4] = [
        "GET /pets",
        "POST /pets",
        "DELETE /pets/{petId}",
        "POST /api/private",
    ];
    const POLICIES: [&str; 3] = [
        "policies/pets.cedar#readers-read",
        "policies/guardrails.cedar#blocked-ip",
        "policies/other.cedar#0",
    ];

    fn parse_ok(text: &str) -> Suite {
        let routes: Vec<String> = ROUTES.iter().map(|s| (*s).to_owned()).collect();
        let policies: Vec<String> = POLICIES.iter().map(|s| (*s).to_owned()).collect();
        let catalog = Catalog {
            routes: &routes,
            policies: &policies,
        };
        match parse("policy-tests/t.yaml", text, catalog) {
            Ok(s) => s,
            Err(errs) => panic!(
                "{:?}",
                errs.iter().map(|e| format!("{e:?}")).collect::<Vec<_>>()
            ),
        }
    }

    fn parse_err(text: &str) -> Vec<String> {
        let routes: Vec<String> = ROUTES.iter().map(|s| (*s).to_owned()).collect();
        let policies: Vec<String> = POLICIES.iter().map(|s| (*s).to_owned()).collect();
        let catalog = Catalog {
            routes: &routes,
            policies: &policies,
        };
        match parse("policy-tests/t.yaml", text, catalog) {
            Ok(s) => panic!("expected errors, parsed {s:?}"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    const BASE: &str = "principals:\n  reader:\n    sub: auth0|r\n    https://cedargate.example/roles: [reader]\n  editor:\n    sub: auth0|e\n";

    #[test]
    fn allow_list_alone_denies_everything_unlisted() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: readers\n    principal: reader\n    allow:\n      - GET /pets\n      - POST /api/private\n"
        ));
        let [case] = s.cases.as_slice() else {
            panic!("one case expected: {s:?}")
        };
        assert_eq!(case.line, 8);
        assert_eq!(case.principal.as_deref(), Some("reader"));
        assert_eq!(
            case.claims["https://cedargate.example/roles"],
            serde_json::json!(["reader"])
        );
        let Expectation::Decisions { routes, reasons } = &case.expect else {
            panic!("decisions expected")
        };
        assert_eq!(
            routes,
            &vec![Expect::Allow, Expect::Deny, Expect::Deny, Expect::Allow]
        );
        assert!(reasons.iter().all(Option::is_none));
    }

    #[test]
    fn deny_list_checks_only_what_it_lists() {
        assert_eq!(
            matrix(4, None, Some(&[2])),
            vec![
                Expect::Unchecked,
                Expect::Unchecked,
                Expect::Deny,
                Expect::Unchecked
            ]
        );
        assert_eq!(
            matrix(3, Some(&[0]), Some(&[2])),
            vec![Expect::Allow, Expect::Unchecked, Expect::Deny]
        );
        assert_eq!(matrix(2, Some(&[]), None), vec![Expect::Deny, Expect::Deny]);
        assert_eq!(
            matrix(2, None, None),
            vec![Expect::Unchecked, Expect::Unchecked]
        );
    }

    #[test]
    fn all_and_principal_lists_expand_to_rows() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: blocked\n    principal: [reader, editor]\n    context: {{sourceIp: 203.0.113.66}}\n    deny: all\n"
        ));
        assert_eq!(s.cases.len(), 2);
        let titles: Vec<String> = s.cases.iter().map(Case::title).collect();
        assert_eq!(titles, vec!["blocked [reader]", "blocked [editor]"]);
        for c in &s.cases {
            assert_eq!(c.facts.source_ip.as_deref(), Some("203.0.113.66"));
            assert_eq!(
                c.expect,
                Expectation::Decisions {
                    routes: vec![Expect::Deny; 4],
                    reasons: vec![None; 4]
                }
            );
        }
    }

    #[test]
    fn context_defaults_are_overridden_per_case() {
        let s = parse_ok(&format!(
            "{BASE}context:\n  sourceIp: 198.51.100.1\n  stage: dev\n  headers: {{X-Tenant: a, X-Other: o}}\ncases:\n  - name: one\n    principal: reader\n    context:\n      time: 2030-01-02T03:04:05.678+01:00\n      headers: {{x-tenant: b}}\n    deny: [POST /pets]\n"
        ));
        let [case] = s.cases.as_slice() else {
            panic!("one case")
        };
        assert_eq!(case.facts.source_ip.as_deref(), Some("198.51.100.1"));
        assert_eq!(case.facts.stage, "dev");
        assert_eq!(
            case.facts.time_ms,
            parse_rfc3339_millis("2030-01-02T02:04:05.678Z").unwrap()
        );
        assert_eq!(
            case.facts.headers.get("x-tenant").map(String::as_str),
            Some("b")
        );
        assert_eq!(
            case.facts.headers.get("x-other").map(String::as_str),
            Some("o")
        );
    }

    #[test]
    fn default_time_and_stage_are_fixed() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: one\n    claims: {{sub: x}}\n    deny: [POST /pets]\n"
        ));
        let [case] = s.cases.as_slice() else {
            panic!("one case")
        };
        assert_eq!(case.facts.time_ms, 1_735_689_600_000);
        assert_eq!(case.facts.stage, "prod");
        assert_eq!(case.principal, None);
        assert_eq!(case.claims, serde_json::json!({"sub": "x"}));
    }

    #[test]
    fn unix_seconds_are_a_time_too() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: one\n    principal: reader\n    context: {{time: 86400}}\n    deny: [POST /pets]\n"
        ));
        assert_eq!(s.cases.first().map(|c| c.facts.time_ms), Some(86_400_000));
    }

    #[test]
    fn reasons_take_short_and_full_ids() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: r\n    principal: reader\n    allow: [GET /pets]\n    reasons:\n      GET /pets: [readers-read]\n      POST /pets: []\n      DELETE /pets/{{petId}}: [policies/other.cedar#0]\n"
        ));
        let Some(Expectation::Decisions { reasons, .. }) = s.cases.first().map(|c| &c.expect)
        else {
            panic!("decisions expected")
        };
        let set = |ids: &[&str]| Some(ids.iter().map(|s| (*s).to_owned()).collect());
        assert_eq!(
            reasons,
            &vec![
                set(&["policies/pets.cedar#readers-read"]),
                set(&[]),
                set(&["policies/other.cedar#0"]),
                None
            ]
        );
    }

    #[test]
    fn unknown_things_are_errors_with_lines() {
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: bad\n    principal: reader\n    allow:\n      - GET /pet\n    reasons:\n      GET /pets: [nope]\n  - name: who\n    principal: nobody\n    deny: all\n"
        ));
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("policy-tests/t.yaml:11:"), "{errs:?}");
        assert!(
            errs[0].contains("route `GET /pet` is not a route"),
            "{errs:?}"
        );
        assert!(errs[0].contains("did you mean `GET /pets`"), "{errs:?}");
        assert!(errs[1].starts_with("policy-tests/t.yaml:13:"), "{errs:?}");
        assert!(
            errs[1].contains("policy `nope` is not in the bundle"),
            "{errs:?}"
        );
        assert!(errs[2].starts_with("policy-tests/t.yaml:15:"), "{errs:?}");
        assert!(
            errs[2].contains("principal `nobody` is not defined"),
            "{errs:?}"
        );
    }

    #[test]
    fn typos_in_field_names_are_refused() {
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: typo\n    principal: reader\n    alow: [GET /pets]\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("policy-tests/t.yaml:10:"), "{errs:?}");
        assert!(errs[0].contains("alow"), "{errs:?}");
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: typo\n    principal: reader\n    context: {{sourceIP: 1.2.3.4}}\n    deny: all\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
    }

    #[test]
    fn a_case_must_expect_something_and_be_consistent() {
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: nothing\n    principal: reader\n"
        ));
        assert!(errs[0].contains("expects nothing"), "{errs:?}");
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: both\n    principal: reader\n    allow: [GET /pets]\n    deny: [GET /pets]\n"
        ));
        assert!(errs[0].contains("in both `allow` and `deny`"), "{errs:?}");
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: both\n    principal: reader\n    claims: {{sub: x}}\n    deny: all\n"
        ));
        assert!(errs[0].contains("not both"), "{errs:?}");
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: one route\n    principal: reader\n    allow: GET /pets\n"
        ));
        assert!(errs[0].starts_with("policy-tests/t.yaml:10:"), "{errs:?}");
        assert!(errs[0].contains("- GET /pets"), "{errs:?}");
    }

    #[test]
    fn unauthorized_cases_expect_no_decisions() {
        let s = parse_ok(&format!(
            "{BASE}cases:\n  - name: roles as a number\n    claims: {{sub: x, https://cedargate.example/roles: 7}}\n    unauthorized: true\n"
        ));
        assert_eq!(
            s.cases.first().map(|c| &c.expect),
            Some(&Expectation::Unauthorized)
        );
        let errs = parse_err(&format!(
            "{BASE}cases:\n  - name: both\n    principal: reader\n    unauthorized: true\n    deny: all\n"
        ));
        assert!(errs[0].contains("no decision"), "{errs:?}");
    }

    #[test]
    fn braces_in_flow_lists_get_a_hint() {
        let routes = vec!["GET /pets/{petId}".to_owned()];
        let catalog = Catalog {
            routes: &routes,
            policies: &[],
        };
        let text = "cases:\n  - name: x\n    claims: {sub: a}\n    allow: [GET /pets/{petId}]\n";
        let errs = parse("t.yaml", text, catalog).unwrap_err();
        let help = errs[0].help().map(|h| h.to_string()).unwrap_or_default();
        assert!(help.contains("quote route names"), "{errs:?}");
        let quoted =
            "cases:\n  - name: x\n    claims: {sub: a}\n    allow: [\"GET /pets/{petId}\"]\n";
        assert!(parse("t.yaml", quoted, catalog).is_ok());
    }

    #[test]
    fn broken_yaml_names_the_line() {
        let errs = parse_err("cases:\n  - name: x\n    allow: [GET /pets\n");
        assert!(errs[0].starts_with("policy-tests/t.yaml:"), "{errs:?}");
        assert!(!errs[0].starts_with("policy-tests/t.yaml:0:"), "{errs:?}");
    }

    #[test]
    fn short_ids_must_be_unique() {
        let routes = vec!["GET /x".to_owned()];
        let policies = vec![
            "policies/a.cedar#0".to_owned(),
            "policies/b.cedar#0".to_owned(),
        ];
        let catalog = Catalog {
            routes: &routes,
            policies: &policies,
        };
        let err = resolve_policy_id("0", catalog).unwrap_err();
        assert!(err.contains("ambiguous"), "{err}");
        assert_eq!(
            resolve_policy_id("policies/b.cedar#0", catalog),
            Ok("policies/b.cedar#0".to_owned())
        );
    }
}
