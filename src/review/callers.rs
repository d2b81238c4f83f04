//! Callers: whose access the review tool compares.
//!
//! Stage: the review tool, after both bundles compiled. Input: the two snapshots, sample claim
//! files. Output: [`Caller`]s: every case of both bundles' policy tests, every sample, and
//! callers generated per route from what that route's policies read ([`usage`]).
//!
//! ## Generated callers, and when they are complete
//! A route's policies (in either bundle) read some facts; each fact is filled from a claim or
//! the request as the bundle's mapping says. For each such input the literals of the policies
//! split its values into the cases a condition can tell apart ([`usage`]), and one value per case
//! is tried (plus "missing"). The route is **complete** when every combination was tried:
//! then no other caller can get another decision on that route from either bundle.
//!
//! Roles are the exception that keeps this finite: a route of `large` names dozens of roles,
//! and all sets of them are 2^n. When every test of the principal's ancestors is positive,
//! each policy's applicability can only grow as roles are added (it is monotone). A caller
//! that is allowed by one bundle and denied by the other then has a subset of at most 2·c roles
//! with the same difference (c: the most ancestor literals one policy of the route names): the
//! roles that make one policy apply on the allowing side, plus, when the denying side denies
//! by a forbid rather than for want of a permit, the roles that make that forbid apply. Every
//! smaller set keeps the allowing permit's roles and so keeps the difference, or keeps the
//! forbid's. So role sets of at most 2·c roles cover every difference. Where a test is
//! negative (`unless { principal in … }`) every subset is needed, and the budget decides.
//!
//! A route past the budget is **sampled**: as many combinations as the budget allows, chosen
//! deterministically, and the report says how many of how many.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::usage::{Atom, Fact, Usage};
use crate::bundle::Snapshot;
use crate::facts::{ArnField, AttrType, ContextField};
use crate::policy_tests::{
    self,
    format::{DEFAULT_STAGE, DEFAULT_TIME},
};

/// Where a caller comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Test,
    Sample,
    Generated,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "test",
            Self::Sample => "sample",
            Self::Generated => "generated",
        }
    }
}

/// One caller: claims as a token would carry them, and the request facts.
#[derive(Debug, Clone)]
pub struct Caller {
    pub source: Source,
    pub name: String,
    pub claims: Value,
    pub request: policy_tests::Facts,
    /// For generated callers, what was chosen: one item per value (shorter is simpler).
    pub chosen: BTreeSet<String>,
}

impl Caller {
    /// What tells two callers apart for evaluation.
    pub fn key(&self) -> String {
        format!(
            "{}|{:?}|{:?}|{:?}|{}|{}|{:?}",
            self.claims,
            self.request.source_ip,
            self.request.user_agent,
            self.request.headers,
            self.request.stage,
            self.request.time_ms,
            self.source
        )
    }
}

/// The default request facts: those a policy test case gets when it names none.
pub fn default_request() -> policy_tests::Facts {
    policy_tests::Facts {
        source_ip: None,
        user_agent: None,
        stage: DEFAULT_STAGE.to_owned(),
        time_ms: default_time_ms(),
        headers: BTreeMap::new(),
    }
}

/// The policy tests' default time, in Unix milliseconds.
fn default_time_ms() -> i64 {
    crate::time::parse_rfc3339_millis(DEFAULT_TIME).unwrap_or(0)
}

/// Every case of the bundle's policy tests, as callers.
pub fn from_tests(snapshot: &Snapshot, label: &str) -> (Vec<Caller>, usize) {
    let (suites, broken) = policy_tests::suites(snapshot);
    let mut out = Vec::new();
    for suite in &suites {
        for case in &suite.cases {
            out.push(Caller {
                source: Source::Test,
                name: format!("{}{label}: {}", suite.file, case.title()),
                claims: case.claims.clone(),
                request: case.facts.clone(),
                chosen: BTreeSet::new(),
            });
        }
    }
    (out, broken.len())
}

/// A sample claims file: a list of claim objects, `principals: {name: claims}`, or a mapping of
/// names to claims. YAML or JSON.
pub fn from_samples(file: &str, text: &str) -> Result<Vec<Caller>, String> {
    let value: Value = if file.ends_with(".json") {
        serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("{file}: {e}"))?
    };
    let named: Vec<(String, Value)> = match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let name = c
                    .get("sub")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("#{}", i + 1), str::to_owned);
                (name, c)
            })
            .collect(),
        Value::Object(mut map) => {
            let inner = match map.remove("principals") {
                Some(Value::Object(p)) => p,
                Some(_) => return Err(format!("{file}: `principals` must map names to claims")),
                None => map,
            };
            inner.into_iter().collect()
        }
        _ => {
            return Err(format!(
                "{file}: expected a list of claim objects or a mapping of names to claims"
            ))
        }
    };
    let mut out = Vec::new();
    for (name, claims) in named {
        if !claims.is_object() {
            return Err(format!("{file}: `{name}`: claims must be an object"));
        }
        out.push(Caller {
            source: Source::Sample,
            name: format!("{file}: {name}"),
            claims,
            request: default_request(),
            chosen: BTreeSet::new(),
        });
    }
    Ok(out)
}

/// What a generated caller varies: a claim, or a part of the request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Knob {
    /// Every parent claim at once (role sets are bounded together, see the module docs).
    Parents,
    Claim(String),
    SourceIp,
    UserAgent,
    Header(String),
    Stage,
    Time,
}

/// The shape of a claim's value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Id,
    Str,
    Strings {
        split: Option<String>,
    },
    Long,
    Bool,
    /// Request parts (strings).
    Text,
}

/// A parent literal, as the claim that makes a caller its descendant: (claim, split, type, id).
type ParentAtom = (String, Option<String>, String, String);

/// What a route's policies read, as inputs of a caller.
#[derive(Debug, Default)]
struct RouteInputs {
    knobs: BTreeMap<Knob, (Shape, BTreeSet<Atom>)>,
    parents: BTreeSet<ParentAtom>,
    /// The most ancestor literals one policy of the route names.
    parent_literals: usize,
    parents_negative: bool,
    unmodelled: BTreeSet<String>,
}

/// A value chosen for one knob.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pick {
    Absent,
    Str(String),
    Strs(Vec<String>),
    Long(i64),
    Bool(bool),
    Parents(Vec<ParentAtom>),
}

/// The callers generated for one route, and whether they are every case.
#[derive(Debug)]
pub struct Generated {
    pub callers: Vec<Caller>,
    pub complete: bool,
    /// Why not complete (empty when complete).
    pub why: Vec<String>,
    /// How many combinations the route's inputs have (may be astronomically many).
    pub combinations: f64,
}

const OTHER: &str = "cedargate-diff-other";
const OTHER_ID: &str = "cedargate-diff-caller";

/// The inputs the policies in `policies` read, resolved through `snapshot`'s mapping.
fn resolve(snapshot: &Snapshot, usages: &[&Usage], into: &mut RouteInputs) {
    let mapping = snapshot.mapping();
    for u in usages {
        into.parent_literals = into.parent_literals.max(u.parent_literals());
        into.parents_negative |= u.parents_negative;
        into.unmodelled.extend(u.unmodelled.iter().cloned());
        for (fact, atoms) in &u.facts {
            match fact {
                Fact::Parents => {
                    for atom in atoms {
                        if let Atom::Entity { ty, id } = atom {
                            parent_atoms(snapshot, ty, id, &mut into.parents);
                        }
                    }
                }
                Fact::PrincipalId => {
                    if mapping.qualify_by_issuer {
                        into.unmodelled.insert(
                            "principal ids qualified by the issuer (`@qualify(\"iss\")`)"
                                .to_owned(),
                        );
                    }
                    add(
                        into,
                        Knob::Claim(mapping.id_claim.clone()),
                        Shape::Id,
                        atoms,
                    );
                }
                Fact::PrincipalAttr(a) => {
                    let Some(m) = mapping.attrs.iter().find(|m| m.name == *a) else {
                        continue; // not filled from claims: the same for every caller
                    };
                    let shape = match &m.ty {
                        AttrType::String => Shape::Str,
                        AttrType::Long => Shape::Long,
                        AttrType::Bool => Shape::Bool,
                        AttrType::Set(inner) if **inner == AttrType::String => Shape::Strings {
                            split: m.split.clone(),
                        },
                        other => {
                            into.unmodelled
                                .insert(format!("`principal.{a}` of type {other}"));
                            continue;
                        }
                    };
                    add(into, Knob::Claim(m.claim.clone()), shape, atoms);
                }
                Fact::ContextAttr(a) => {
                    let Some((_, field)) = mapping.context.iter().find(|(n, _)| n == a) else {
                        continue;
                    };
                    let knob = match field {
                        ContextField::SourceIpString | ContextField::SourceIpAddr => Knob::SourceIp,
                        ContextField::UserAgent => Knob::UserAgent,
                        ContextField::Stage => Knob::Stage,
                        ContextField::TimeSeconds => Knob::Time,
                        ContextField::Now => {
                            into.unmodelled
                                .insert(format!("`context.{a}` (a datetime)"));
                            continue;
                        }
                        ContextField::Headers(_) => continue,
                    };
                    add(into, knob, Shape::Text, atoms);
                }
                Fact::Header(h) => {
                    let lower = mapping.context.iter().find_map(|(_, f)| match f {
                        ContextField::Headers(names) => names
                            .iter()
                            .find(|(_, attr)| attr == h)
                            .map(|(l, _)| l.clone()),
                        _ => None,
                    });
                    if let Some(lower) = lower {
                        add(into, Knob::Header(lower), Shape::Text, atoms);
                    }
                }
                Fact::ResourceAttr(a) => {
                    match mapping.resource_attrs.iter().find(|(n, _)| n == a) {
                        Some((_, ArnField::Stage)) => add(into, Knob::Stage, Shape::Text, atoms),
                        Some(_) => {
                            into.unmodelled.insert(format!(
                                "`resource.{a}` (a part of the method ARN other than the stage)"
                            ));
                        }
                        None => {}
                    }
                }
            }
        }
    }
}

fn add(into: &mut RouteInputs, knob: Knob, shape: Shape, atoms: &BTreeSet<Atom>) {
    let entry = into
        .knobs
        .entry(knob.clone())
        .or_insert_with(|| (shape.clone(), BTreeSet::new()));
    if entry.0 != shape {
        into.unmodelled.insert(format!(
            "{} is read with two different types",
            knob_name(&knob)
        ));
    }
    entry.1.extend(atoms.iter().cloned());
}

/// The claims that make a caller a descendant of `ty::"id"`: the claim of that type, or (for
/// a type no claim fills) the claims of the static entities below it.
fn parent_atoms(snapshot: &Snapshot, ty: &str, id: &str, into: &mut BTreeSet<ParentAtom>) {
    let mapping = snapshot.mapping();
    if let Some(pm) = mapping.parent(ty) {
        into.insert((
            pm.claim.clone(),
            pm.split.clone(),
            ty.to_owned(),
            id.to_owned(),
        ));
        return;
    }
    for e in snapshot.base_entities.iter() {
        let uid = e.uid();
        let uid_ty = uid.type_name().to_string();
        let Some(pm) = mapping.parent(&uid_ty) else {
            continue;
        };
        let below = snapshot
            .base_entities
            .ancestors(&uid)
            .is_some_and(|mut up| {
                up.any(|a| a.type_name().to_string() == ty && a.id().unescaped() == id)
            });
        if below {
            into.insert((
                pm.claim.clone(),
                pm.split.clone(),
                uid_ty,
                uid.id().unescaped().to_owned(),
            ));
        }
    }
}

fn knob_name(k: &Knob) -> String {
    match k {
        Knob::Parents => "the roles".to_owned(),
        Knob::Claim(c) => format!("claim `{c}`"),
        Knob::SourceIp => "the source IP".to_owned(),
        Knob::UserAgent => "the user agent".to_owned(),
        Knob::Header(h) => format!("header `{h}`"),
        Knob::Stage => "the stage".to_owned(),
        Knob::Time => "the time".to_owned(),
    }
}

/// Whether `s` matches a `like` pattern (`None` pieces match any run of characters).
fn like(pieces: &[Option<String>], s: &str) -> bool {
    match pieces.split_first() {
        None => s.is_empty(),
        Some((Some(lit), rest)) => s.strip_prefix(lit.as_str()).is_some_and(|t| like(rest, t)),
        Some((None, rest)) => s
            .char_indices()
            .map(|(i, _)| i)
            .chain(std::iter::once(s.len()))
            .any(|i| s.get(i..).is_some_and(|t| like(rest, t))),
    }
}

/// Strings that match a pattern: wildcards empty, and the first one filled (so that a literal
/// equal to one of them still leaves a matching value that is not that literal).
fn pattern_examples(pieces: &[Option<String>]) -> Vec<String> {
    let plain: String = pieces.iter().flatten().map(String::as_str).collect();
    let mut out = vec![plain];
    if let Some(at) = pieces.iter().position(Option::is_none) {
        let filled: String = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                Some(l) => l.as_str(),
                None if i == at => "z",
                None => "",
            })
            .collect();
        out.push(filled);
    }
    out
}

/// The string values the literals split a fact into; returns the `like` patterns among them.
fn strings(
    atoms: &BTreeSet<Atom>,
    into: &mut Vec<String>,
    why: &mut Vec<String>,
    what: &str,
) -> Vec<Vec<Option<String>>> {
    let patterns: Vec<Vec<Option<String>>> = atoms
        .iter()
        .filter_map(|a| match a {
            Atom::Pattern(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    if patterns.len() > 1 {
        why.push(format!(
            "{what} is matched against {} `like` patterns (a value matching several at once is not searched for)",
            patterns.len()
        ));
    }
    for a in atoms {
        match a {
            Atom::Str(s) => into.push(s.clone()),
            Atom::Pattern(p) => into.extend(pattern_examples(p)),
            Atom::Ip(s) => {
                if s.contains('/') {
                    why.push(format!(
                        "{what} is tested against the range {s} (ranges are tried at their first address only)"
                    ));
                }
                into.push(s.split('/').next().unwrap_or(s).to_owned());
            }
            Atom::Long(n) => into.push(n.to_string()),
            Atom::Entity { .. } => {}
        }
    }
    into.sort();
    into.dedup();
    patterns
}

/// A string none of `taken` is and no pattern matches: the value no literal names. `None`
/// when every candidate is taken or matched (a pattern like `*` leaves no such value, and then
/// there is no such case to try either).
fn other(taken: &[String], base: &str, patterns: &[Vec<Option<String>>]) -> Option<String> {
    let candidates = (1..10)
        .map(|n| {
            if n == 1 {
                base.to_owned()
            } else {
                format!("{base}-{n}")
            }
        })
        .chain(["", "0", "~", "-", "Z9"].map(str::to_owned));
    candidates
        .into_iter()
        .find(|c| !taken.contains(c) && !patterns.iter().any(|p| like(p, c)))
}

/// Every subset of `items` with at most `k` elements, smallest first, until `cap`.
pub(super) fn subsets<T: Clone>(items: &[T], k: usize, cap: usize) -> (Vec<Vec<T>>, bool) {
    let mut out: Vec<Vec<T>> = vec![Vec::new()];
    let mut level: Vec<(Vec<T>, usize)> = vec![(Vec::new(), 0)];
    for _ in 0..k.min(items.len()) {
        let mut next = Vec::new();
        for (set, from) in &level {
            for (i, item) in items.iter().enumerate().skip(*from) {
                if out.len() >= cap {
                    return (out, false);
                }
                let mut s = set.clone();
                s.push(item.clone());
                out.push(s.clone());
                next.push((s, i + 1));
            }
        }
        level = next;
    }
    (out, true)
}

/// `n` choose at most `k`, as a float (it may be astronomically large).
fn choose_up_to(n: usize, k: usize) -> f64 {
    let mut total = 0.0;
    let mut term = 1.0;
    for i in 0..=k.min(n) {
        if i > 0 {
            term = term * (n - i + 1) as f64 / i as f64;
        }
        total += term;
    }
    total
}

/// Each number literal and its two neighbours: a bound (`>`, `<=`, …) against `n` tells
/// `n - 1`, `n` and `n + 1` apart, and nothing finer.
fn around(atoms: &BTreeSet<Atom>) -> BTreeSet<i64> {
    atoms
        .iter()
        .filter_map(|a| match a {
            Atom::Long(n) => Some(*n),
            _ => None,
        })
        .flat_map(|n| [n.saturating_sub(1), n, n.saturating_add(1)])
        .collect()
}

/// One input's values.
struct Dim {
    knob: Knob,
    picks: Vec<Pick>,
    /// Every case of this input is among `picks`.
    complete: bool,
    /// How many values the input has in all (≥ `picks.len()`).
    size: f64,
    /// For a set claim given as one string: the separator.
    split: Option<String>,
}

fn dims(
    inputs: &RouteInputs,
    required: &BTreeSet<String>,
    budget: usize,
) -> (Vec<Dim>, Vec<String>) {
    let mut why: Vec<String> = inputs
        .unmodelled
        .iter()
        .map(|w| format!("reads {w}"))
        .collect();
    let mut out = Vec::new();
    if !inputs.parents.is_empty() {
        let atoms: Vec<ParentAtom> = inputs.parents.iter().cloned().collect();
        let k = if inputs.parents_negative {
            atoms.len()
        } else {
            (2 * inputs.parent_literals.max(1)).min(atoms.len())
        };
        let size = choose_up_to(atoms.len(), k);
        let (sets, complete) = subsets(&atoms, k, budget.max(1));
        if !complete {
            why.push(format!(
                "{} sets of at most {k} of its {} roles are more than the budget",
                fmt_count(size),
                atoms.len()
            ));
        }
        out.push(Dim {
            knob: Knob::Parents,
            picks: sets.into_iter().map(Pick::Parents).collect(),
            complete,
            size,
            split: None,
        });
    }
    for (knob, (shape, atoms)) in &inputs.knobs {
        let what = knob_name(knob);
        let mut picks = Vec::new();
        let mut complete = true;
        let optional = match knob {
            Knob::Claim(c) => !required.contains(c),
            Knob::SourceIp | Knob::UserAgent | Knob::Header(_) => true,
            Knob::Stage | Knob::Time | Knob::Parents => false,
        };
        match shape {
            Shape::Id | Shape::Str | Shape::Text => {
                let mut vals = Vec::new();
                let patterns = strings(atoms, &mut vals, &mut why, &what);
                let base = match knob {
                    Knob::SourceIp => "192.0.2.1",
                    Knob::Stage => DEFAULT_STAGE,
                    Knob::Claim(_) if *shape == Shape::Id => OTHER_ID,
                    _ => OTHER,
                };
                if *knob == Knob::Stage {
                    vals.retain(|s| {
                        !s.is_empty()
                            && s.chars()
                                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                    });
                    if !vals.iter().any(|v| v == DEFAULT_STAGE) {
                        vals.push(DEFAULT_STAGE.to_owned());
                    }
                } else if *knob == Knob::Time {
                    let mut secs = around(atoms);
                    secs.insert(default_time_ms() / 1000);
                    picks.extend(secs.into_iter().map(Pick::Long));
                } else if let Some(o) = other(&vals, base, &patterns) {
                    vals.push(o);
                }
                if *knob != Knob::Time {
                    picks.extend(vals.into_iter().map(Pick::Str));
                }
            }
            Shape::Strings { .. } => {
                let mut vals = Vec::new();
                let patterns = strings(atoms, &mut vals, &mut why, &what);
                if let Some(o) = other(&vals, OTHER, &patterns) {
                    vals.push(o);
                }
                let (sets, all) = subsets(&vals, vals.len(), budget.max(1));
                if !all {
                    why.push(format!(
                        "{what}: the sets of its {} values are more than the budget",
                        vals.len()
                    ));
                    complete = false;
                }
                picks.extend(sets.into_iter().map(Pick::Strs));
            }
            Shape::Long => {
                let mut nums = around(atoms);
                nums.insert(0);
                picks.extend(nums.into_iter().map(Pick::Long));
            }
            Shape::Bool => picks.extend([Pick::Bool(true), Pick::Bool(false)]),
        }
        if optional {
            picks.push(Pick::Absent);
        }
        let size = if complete {
            picks.len() as f64
        } else {
            2f64.powi(i32::try_from(atoms.len() + 1).unwrap_or(i32::MAX))
        };
        let split = match shape {
            Shape::Strings { split } => split.clone(),
            _ => None,
        };
        out.push(Dim {
            knob: knob.clone(),
            picks,
            complete,
            size,
            split,
        });
    }
    (out, why)
}

/// A count for people: exact when small, else in powers of ten.
pub fn fmt_count(n: f64) -> String {
    if n < 1e15 {
        format!("{n:.0}")
    } else {
        format!("{n:.1e}")
    }
}

/// The claims every generated caller starts from: an id, and a value for every claim the
/// mappings require.
fn base_claims(snapshots: &[&Snapshot]) -> (Map<String, Value>, BTreeSet<String>) {
    let mut claims = Map::new();
    claims.insert("sub".to_owned(), Value::String(OTHER_ID.to_owned()));
    let mut required = BTreeSet::new();
    for s in snapshots {
        let m = s.mapping();
        claims
            .entry(m.id_claim.clone())
            .or_insert_with(|| Value::String(OTHER_ID.to_owned()));
        for a in m.attrs.iter().filter(|a| a.required) {
            required.insert(a.claim.clone());
            let v = match &a.ty {
                AttrType::Long => Value::from(0),
                AttrType::Bool => Value::Bool(false),
                AttrType::Set(_) => match &a.split {
                    Some(_) => Value::String(String::new()),
                    None => Value::Array(Vec::new()),
                },
                _ => Value::String(OTHER.to_owned()),
            };
            claims.entry(a.claim.clone()).or_insert(v);
        }
    }
    (claims, required)
}

/// A small deterministic mixer (splitmix64) for sampling combinations.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The callers for one route, from the usages of its policies in each bundle.
pub fn generate(sides: &[(&Snapshot, Vec<&Usage>)], budget: usize) -> Generated {
    let mut inputs = RouteInputs::default();
    for (snapshot, usages) in sides {
        resolve(snapshot, usages, &mut inputs);
    }
    let snapshots: Vec<&Snapshot> = sides.iter().map(|(s, _)| *s).collect();
    let (base, required) = base_claims(&snapshots);
    let (dims, mut why) = dims(&inputs, &required, budget);
    let combinations: f64 = dims.iter().map(|d| d.size).product();
    let listed: f64 = dims.iter().map(|d| d.picks.len() as f64).product();
    let mut combos: Vec<Vec<usize>> = Vec::new();
    if listed <= budget as f64 {
        let total = listed as usize;
        for n in 0..total {
            let mut rest = n;
            let mut combo = Vec::with_capacity(dims.len());
            for d in &dims {
                let len = d.picks.len().max(1);
                combo.push(rest % len);
                rest /= len;
            }
            combos.push(combo);
        }
    } else {
        why.push(format!(
            "{} combinations of its inputs are more than the budget of {budget}",
            fmt_count(combinations)
        ));
        let mut seen = BTreeSet::new();
        let mut i = 0u64;
        while seen.len() < budget && i < (budget as u64) * 4 {
            let combo: Vec<usize> = dims
                .iter()
                .enumerate()
                .map(|(j, d)| {
                    let h = mix(i.wrapping_mul(1_000_003).wrapping_add(j as u64));
                    (h % d.picks.len().max(1) as u64) as usize
                })
                .collect();
            if seen.insert(combo.clone()) {
                combos.push(combo);
            }
            i += 1;
        }
    }
    let complete = why.is_empty() && dims.iter().all(|d| d.complete);
    let callers = combos
        .iter()
        .map(|combo| build(&base, &dims, combo))
        .collect();
    Generated {
        callers,
        complete,
        why,
        combinations,
    }
}

fn build(base: &Map<String, Value>, dims: &[Dim], combo: &[usize]) -> Caller {
    let mut claims = base.clone();
    let mut request = default_request();
    let mut chosen = BTreeSet::new();
    for (d, at) in dims.iter().zip(combo) {
        let Some(pick) = d.picks.get(*at) else {
            continue;
        };
        match (&d.knob, pick) {
            (Knob::Parents, Pick::Parents(atoms)) => {
                let mut by_claim: BTreeMap<&str, (Option<&String>, Vec<&str>)> = BTreeMap::new();
                for (claim, split, ty, id) in atoms {
                    by_claim
                        .entry(claim)
                        .or_insert((split.as_ref(), Vec::new()))
                        .1
                        .push(id);
                    chosen.insert(format!("{ty}::\"{id}\""));
                }
                for (claim, (split, ids)) in by_claim {
                    let v = match split {
                        Some(sep) => Value::String(ids.join(sep)),
                        None => Value::Array(ids.into_iter().map(Value::from).collect()),
                    };
                    claims.insert(claim.to_owned(), v);
                }
            }
            (Knob::Claim(c), Pick::Absent) => {
                claims.remove(c);
            }
            (Knob::Claim(c), Pick::Str(s)) => {
                if s != OTHER_ID {
                    chosen.insert(format!("{c} = {s:?}"));
                }
                claims.insert(c.clone(), Value::String(s.clone()));
            }
            (Knob::Claim(c), Pick::Strs(items)) => {
                if items.is_empty() {
                    chosen.insert(format!("{c} = []"));
                }
                for i in items {
                    chosen.insert(format!("{c} ∋ {i:?}"));
                }
                let v = match &d.split {
                    Some(sep) => Value::String(items.join(sep)),
                    None => Value::Array(items.iter().cloned().map(Value::from).collect()),
                };
                claims.insert(c.clone(), v);
            }
            (Knob::Claim(c), Pick::Long(n)) => {
                chosen.insert(format!("{c} = {n}"));
                claims.insert(c.clone(), Value::from(*n));
            }
            (Knob::Claim(c), Pick::Bool(b)) => {
                chosen.insert(format!("{c} = {b}"));
                claims.insert(c.clone(), Value::Bool(*b));
            }
            (Knob::SourceIp, Pick::Str(s)) => {
                chosen.insert(format!("sourceIp = {s}"));
                request.source_ip = Some(s.clone());
            }
            (Knob::UserAgent, Pick::Str(s)) => {
                chosen.insert(format!("userAgent = {s:?}"));
                request.user_agent = Some(s.clone());
            }
            (Knob::Header(h), Pick::Str(s)) => {
                chosen.insert(format!("header {h} = {s:?}"));
                request.headers.insert(h.clone(), s.clone());
            }
            (Knob::Stage, Pick::Str(s)) => {
                if s != DEFAULT_STAGE {
                    chosen.insert(format!("stage = {s}"));
                }
                request.stage = s.clone();
            }
            (Knob::Time, Pick::Long(secs)) => {
                if secs.saturating_mul(1000) != default_time_ms() {
                    chosen.insert(format!("time = {secs}"));
                }
                request.time_ms = secs.saturating_mul(1000);
            }
            _ => {}
        }
    }
    let name = if chosen.is_empty() {
        "any signed-in caller".to_owned()
    } else {
        chosen.iter().cloned().collect::<Vec<_>>().join(", ")
    };
    Caller {
        source: Source::Generated,
        name,
        claims: Value::Object(claims),
        request,
        chosen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_matches_as_cedar_does_and_other_values_stay_outside_every_pattern() {
        let p = vec![None, Some("@x.example".to_owned())];
        assert!(like(&p, "@x.example") && like(&p, "a@x.example"));
        assert!(!like(&p, "a@x.example.org"));
        let ab = vec![Some("a".to_owned()), None, Some("b".to_owned())];
        assert!(like(&ab, "ab") && like(&ab, "a-b") && !like(&ab, "ba"));
        for e in pattern_examples(&ab) {
            assert!(like(&ab, &e), "{e}");
        }
        // `*e*` matches the usual stand-in value: another one is chosen.
        let e = vec![None, Some("e".to_owned()), None];
        let o = other(&[], OTHER, std::slice::from_ref(&e)).expect("a value outside `*e*`");
        assert!(!like(&e, &o));
        assert_eq!(other(&[], OTHER, &[vec![None]]), None);
    }
}
