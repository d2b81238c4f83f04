//! IAM policy: the decision for every route → one exact, wildcarded IAM policy.
//!
//! Stage: after `decide`, before `response`. Input: a [`Plan`] computed once per route table
//! (at bundle load), the per-route decisions, and the method ARN of the request. Output: a
//! [`PolicyDocument`] whose Allow and Deny resources give, for every route and every concrete
//! path API Gateway would send to that route, exactly the route's decision.
//!
//! ## Why this is not a simple translation
//! In execute-api ARNs `*` matches any characters including `/`, so the pattern `GET/pets/*`
//! written for `GET /pets/{id}` also matches `GET/pets/7/history`, which API Gateway sends to
//! another route; and a `*` in the verb position can swallow path segments. API Gateway reuses
//! the returned policy (cached per token) for every route, so any such spill would let a caller
//! into a route the policies deny, or lock them out of one they may use.
//!
//! ## The model
//! A resource is seen as a sequence of symbols: the verb, then the path segments (`GET/` is the
//! root path); or one route key without a verb: `$connect` (the WebSocket connect route) and
//! `$default` (an HTTP API's catch-all route, which API Gateway may name either way). A pattern is a sequence of literal
//! symbols and `*`s, where a `*` between slashes matches one or more whole symbols. (Route
//! literals cannot contain `/`, `*` or `?`, and a `*` that matches an empty string between two
//! slashes matches an empty symbol, so this is exactly IAM's character-level matching.)
//! Every route is split into *virtual routes*, one per verb it serves (`ANY` gives seven). The
//! `$default` route has a virtual route for its route-key resource and, per verb, one for the
//! root path and one for every deeper path that no other route takes (a `{proxy+}` of lowest
//! precedence): whichever form the ARN takes, the policy answers it exactly.
//!
//! At load, for a fixed set of candidate patterns (each route's own pattern, per-verb subtree
//! patterns, deeper patterns for `{proxy+}` routes), [`Plan::new`] computes which virtual routes
//! each pattern *hits* (matches some path routed there) and *covers* (matches every path routed
//! there). Both are decided on finitely many "generic" paths: a path routed to a route stays
//! routed there, and a pattern that matches it keeps matching, when every parameter value is
//! replaced by a fresh symbol that equals no literal; so only the positions forced by literals
//! and the lengths of `{proxy+}` expansions need to be enumerated, up to a bound past which
//! nothing changes.
//!
//! At request time, [`Plan::build`] chooses Allow patterns that cover every allowed virtual
//! route, and Deny patterns (which win in IAM) that cover every denied virtual route an Allow
//! hits, using only Deny patterns that hit no allowed route. Then the policy is exact by
//! construction. The choice is a greedy weighted set cover that prefers few, short resources.
//!
//! Some decision combinations cannot be expressed at all (an allowed `GET /{proxy+}` beside a
//! denied `GET /pets/{id}`: no pattern matches `pets/<one segment>` without also matching
//! `pets/a/b`). Then cedargate never allows more than the policies do: it leaves the affected
//! routes out (cached answers for them are 403 until the cache expires), makes the current
//! request's own answer exact, and reports the routes so they are logged.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};

use serde::Serialize;

use crate::arn::MethodArn;
use crate::routes::{
    Method, RouteId, RouteKind, RouteTable, Segment, HTTP_DEFAULT, METHODS, WEBSOCKET_CONNECT,
};

/// A symbol no literal can equal: stands for "any other value" in generic paths.
const FRESH: &str = "\u{0}";

/// The part of an execute-api ARN before `/{stage}/` (`arn:…:{api}`), as one symbol: patterns
/// replace it by `*` (see [`PolicyDocument::from_shape`]).
const HEAD: &str = "\u{1}head";

/// The stage, for every stage name that equals no route literal.
const STAGE: &str = "\u{1}stage";

/// Budget for enumerating joint paths of one (pattern, route) pair; past it the pair counts
/// as hit, which is the safe direction (a hit demands denies; it never licenses an allow).
const JOINT_BUDGET: usize = 20_000;

/// A small fixed-size bit set over virtual routes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    pub fn new(len: usize) -> Self {
        Self {
            words: vec![0; len.div_ceil(64)],
        }
    }
    pub fn insert(&mut self, i: usize) {
        if let Some(w) = self.words.get_mut(i / 64) {
            *w |= 1 << (i % 64);
        }
    }
    pub fn contains(&self, i: usize) -> bool {
        self.words
            .get(i / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|w| *w == 0)
    }
    pub fn count(&self) -> u32 {
        self.words.iter().map(|w| w.count_ones()).sum()
    }
    pub fn intersects(&self, other: &Self) -> bool {
        self.words.iter().zip(&other.words).any(|(a, b)| a & b != 0)
    }
    /// `|self ∩ other|`
    pub fn count_and(&self, other: &Self) -> u32 {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(a, b)| (a & b).count_ones())
            .sum()
    }
    /// `|self ∩ a \ b|`
    pub fn count_and_not(&self, a: &Self, b: &Self) -> u32 {
        self.words
            .iter()
            .zip(&a.words)
            .zip(&b.words)
            .map(|((s, a), b)| (s & a & !b).count_ones())
            .sum()
    }
    /// `self ∩ a ⊆ b`
    pub fn and_subset_of(&self, a: &Self, b: &Self) -> bool {
        self.words
            .iter()
            .zip(&a.words)
            .zip(&b.words)
            .all(|((s, a), b)| s & a & !b == 0)
    }
    pub fn union_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }
    /// `self ∪= a ∩ b`
    pub fn union_with_and(&mut self, a: &Self, b: &Self) {
        for ((s, a), b) in self.words.iter_mut().zip(&a.words).zip(&b.words) {
            *s |= a & b;
        }
    }
    pub fn difference_with(&mut self, other: &Self) {
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a &= !b;
        }
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, w)| {
            (0..64)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| wi * 64 + b)
        })
    }
}

/// A pattern token.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Tok {
    Lit(String),
    Star,
}

/// A template token of a virtual route (the verb is a literal).
#[derive(Clone, Debug, PartialEq, Eq)]
enum TTok {
    Lit(String),
    Param,
    Proxy,
}

/// One route served with one verb (or the WebSocket connect route).
#[derive(Clone, Debug)]
struct VirtualRoute {
    route: RouteId,
    template: Vec<TTok>,
    /// The generic paths routed here (one per `{proxy+}` length up to the bound).
    instances: Vec<Vec<String>>,
}

#[derive(Clone, Debug)]
struct Candidate {
    toks: Vec<Tok>,
    /// The pattern as written after `{stage}/`.
    text: String,
    hit: BitSet,
    cover: BitSet,
}

/// What a request needs from the builder besides the decisions.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The part of the method ARN after `{stage}/` (`GET/pets/42`, `$connect`, `$default`).
    pub resource: &'a str,
    /// The route that resource is sent to, when the route table has one.
    pub route: Option<RouteId>,
}

/// The Allow and Deny patterns of a policy, relative to `arn:…:{api}/{stage}/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// Patterns, written after `arn:…:execute-api:*/{stage}/`, or after the full
    /// `arn:…:{api}/{stage}/` when `full_prefix` is set.
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    /// Exact resources (the requested one), written after the full `arn:…:{api}/{stage}/`.
    pub allow_exact: Vec<String>,
    pub deny_exact: Vec<String>,
    /// Allowed routes the policy could not allow exactly (left out: never over-allowed).
    pub inexact: Vec<RouteId>,
    /// The patterns come from a [`Plan::full_prefix`] analysis.
    pub full_prefix: bool,
}

/// The requested-route-independent part of a caller's policy ([`Plan::base`]).
#[derive(Clone, Debug)]
pub struct Base {
    allow: Vec<String>,
    deny: Vec<String>,
    /// Allowed virtual routes no chosen Allow covers (inexpressible).
    uncovered: BitSet,
    /// Virtual routes the chosen Denies cover.
    denied_covered: BitSet,
    inexact: Vec<RouteId>,
    /// `Some(true)`: everything allowed; `Some(false)`: nothing.
    everything: Option<bool>,
    full_prefix: bool,
    allowed: BitSet,
    routes: Vec<bool>,
}

impl Base {
    /// Allowed routes the policy cannot express exactly.
    pub fn inexact(&self) -> &[RouteId] {
        &self.inexact
    }

    /// Roughly how many bytes this holds (for bounded caches).
    pub fn weight(&self) -> usize {
        let texts: usize = self
            .allow
            .iter()
            .chain(&self.deny)
            .map(|s| s.len() + 24)
            .sum();
        let bits = (self.uncovered.words.len()
            + self.denied_covered.words.len()
            + self.allowed.words.len())
            * 8;
        texts + bits + self.routes.len() + self.inexact.len() * 8 + 128
    }
}

/// Everything about a route table that does not depend on the caller: computed once at load.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Patterns are written after the full ARN prefix, so they cannot spill (see `spills`).
    full_prefix: bool,
    /// The analysis for stage `*` ([`Plan::any_stage`]).
    any_stage: bool,
    vrs: Vec<VirtualRoute>,
    candidates: Vec<Candidate>,
    /// For each virtual route, the candidates that cover it (cheapest first).
    cover_index: Vec<Vec<usize>>,
}

fn render(toks: &[Tok]) -> String {
    let parts: Vec<&str> = toks
        .iter()
        .map(|t| match t {
            Tok::Lit(s) => s.as_str(),
            Tok::Star => "*",
        })
        .collect();
    parts.join("/")
}

/// Whether a pattern matches a resource; `*` takes one or more symbols.
fn glob_matches<S: AsRef<str>>(g: &[Tok], s: &[S]) -> bool {
    match g.split_first() {
        None => s.is_empty(),
        Some((Tok::Lit(l), rest)) => match s.split_first() {
            Some((head, tail)) => head.as_ref() == l && glob_matches(rest, tail),
            None => false,
        },
        Some((Tok::Star, rest)) => {
            if rest.is_empty() {
                return !s.is_empty();
            }
            (1..=s.len()).any(|k| s.get(k..).is_some_and(|tail| glob_matches(rest, tail)))
        }
    }
}

fn own_pattern(template: &[TTok]) -> Vec<Tok> {
    template
        .iter()
        .map(|t| match t {
            TTok::Lit(s) => Tok::Lit(s.clone()),
            TTok::Param | TTok::Proxy => Tok::Star,
        })
        .collect()
}

fn symbols(path: &[String]) -> Vec<&str> {
    path.iter().map(String::as_str).collect()
}

impl Plan {
    /// Analyses a route table: virtual routes, candidate patterns, and what each pattern hits
    /// and covers.
    pub fn new(table: &RouteTable) -> Self {
        Self::with_stage(table, None)
    }

    /// Whether a plan for `stage` must be computed with the stage's own name: only when some
    /// route literal (or verb) equals it, since a path segment can then spell the stage.
    pub fn stage_is_special(table: &RouteTable, stage: &str) -> bool {
        Method::parse(stage).is_some()
            || stage == WEBSOCKET_CONNECT
            || table.routes().iter().any(|r| {
                r.segments()
                    .iter()
                    .any(|s| matches!(s, Segment::Literal(l) if l == stage))
            })
    }

    /// The analysis for one stage name (see [`Plan::stage_is_special`]); `None` stands for
    /// any stage that equals no route literal.
    pub fn with_stage(table: &RouteTable, stage: Option<&str>) -> Self {
        Self::analyse(table, stage, false)
    }

    /// The analysis for patterns written after the full `arn:…:{api}/{stage}/`: 30-odd bytes
    /// more per resource, but no pattern can reach past the API id, so some decision
    /// combinations beside a `{proxy+}` route become expressible that are not with the short
    /// prefix. Used for callers the short prefix cannot serve exactly.
    pub fn full_prefix(table: &RouteTable) -> Self {
        Self::analyse(table, None, true)
    }

    /// The analysis for stage `*` (API Gateway's console test events). The policy is written
    /// with `*` as the stage, after the full `arn:…:{api}/` prefix, and IAM lets that `*` match
    /// any characters, slashes included: `…/*/GET/*` matches `…/prod/POST/GET/pets`. So a
    /// pattern here hits a virtual route when it matches any tail of one of its resources in
    /// any stage (`GET/pets` of `prod/POST/GET/pets`), and the choice of patterns keeps the
    /// policy exact in every stage at once. The requested resource is never written
    /// literally: with the stage `*` in front it would be a pattern too.
    pub fn any_stage(table: &RouteTable) -> Self {
        let mut plan = Self::analyse_with(table, None, true, true);
        plan.any_stage = true;
        plan
    }

    /// Whether this analysis is for the full ARN prefix.
    pub fn is_full_prefix(&self) -> bool {
        self.full_prefix
    }

    fn analyse(table: &RouteTable, stage: Option<&str>, full_prefix: bool) -> Self {
        Self::analyse_with(table, stage, full_prefix, false)
    }

    fn analyse_with(
        table: &RouteTable,
        stage: Option<&str>,
        full_prefix: bool,
        any_stage: bool,
    ) -> Self {
        let stage_symbol = stage.unwrap_or(STAGE).to_owned();
        let max_len = table
            .routes()
            .iter()
            .map(|r| r.segments().len() + 1)
            .max()
            .unwrap_or(1);
        // Past this many symbols, longer `{proxy+}` expansions behave like shorter ones for
        // every template and candidate (candidates are at most `max_len + 2` tokens).
        let bound = 2 * max_len + 8;

        let mut vrs = Vec::new();
        for (id, route) in table.routes().iter().enumerate() {
            let verbs: Vec<Method> = match &route.kind {
                RouteKind::WebSocketConnect => {
                    vrs.push(route_key_vr(id, WEBSOCKET_CONNECT));
                    continue;
                }
                RouteKind::HttpDefault => {
                    vrs.push(route_key_vr(id, HTTP_DEFAULT));
                    // The requests it receives: whatever no other route takes, at the root
                    // and below it.
                    for verb in Method::all() {
                        let verb = TTok::Lit(verb.as_str().to_owned());
                        for last in [TTok::Lit(String::new()), TTok::Proxy] {
                            vrs.extend(reached_vr(table, id, vec![verb.clone(), last], bound));
                        }
                    }
                    continue;
                }
                RouteKind::Http { method, .. } => {
                    Method::all().filter(|m| method.matches(*m)).collect()
                }
            };
            for verb in verbs {
                let mut template = vec![TTok::Lit(verb.as_str().to_owned())];
                if route.segments().is_empty() {
                    template.push(TTok::Lit(String::new()));
                }
                for seg in route.segments() {
                    template.push(match seg {
                        Segment::Literal(l) => TTok::Lit(l.clone()),
                        Segment::Param(_) => TTok::Param,
                        Segment::Proxy(_) => TTok::Proxy,
                    });
                }
                vrs.extend(reached_vr(table, id, template, bound));
            }
        }

        let mut seen: HashMap<Vec<Tok>, usize> = HashMap::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut add = |toks: Vec<Tok>| {
            if seen.contains_key(&toks) {
                return;
            }
            seen.insert(toks.clone(), candidates.len());
            let text = render(&toks);
            candidates.push(Candidate {
                toks,
                text,
                hit: BitSet::new(vrs.len()),
                cover: BitSet::new(vrs.len()),
            });
        };
        add(vec![Tok::Star]);
        // Ordered, so that the candidates (and so the chosen patterns) are the same on every run.
        let mut verbs_by_path: BTreeMap<Vec<Tok>, BTreeSet<String>> = BTreeMap::new();
        for vr in &vrs {
            let own = own_pattern(&vr.template);
            add(own.clone());
            if vr.template.last() == Some(&TTok::Proxy) {
                // Deeper patterns let a `{proxy+}` route be denied or allowed without touching
                // shallower routes beside it.
                let mut deeper = own.clone();
                for _ in 0..2 {
                    deeper.push(Tok::Star);
                    add(deeper.clone());
                }
            }
            // Subtree patterns: `VERB/prefix/*` for every prefix of the route's own pattern.
            for k in 1..own.len() {
                let mut sub: Vec<Tok> = own.iter().take(k).cloned().collect();
                sub.push(Tok::Star);
                add(sub);
            }
            if let Some((Tok::Lit(verb), rest)) = own.split_first() {
                if verb != WEBSOCKET_CONNECT && verb != HTTP_DEFAULT {
                    verbs_by_path
                        .entry(rest.to_vec())
                        .or_default()
                        .insert(verb.clone());
                }
            }
        }
        // One pattern for every verb of a path that several verbs use (`ANY` routes).
        for (rest, verbs) in verbs_by_path {
            if verbs.len() > 1 {
                let mut toks = vec![Tok::Star];
                toks.extend(rest);
                add(toks);
            }
        }

        for cand in &mut candidates {
            for (vi, vr) in vrs.iter().enumerate() {
                if any_stage {
                    // Covering is matching every resource of the route with the stage's `*`
                    // standing for the stage alone; hitting is matching some tail of one.
                    let covers = !literal_prefix_disagrees(&cand.toks, &vr.template)
                        && vr.instances.iter().all(|p| glob_matches(&cand.toks, p));
                    if covers {
                        cand.cover.insert(vi);
                        cand.hit.insert(vi);
                    } else if hits_in_any_stage(&cand.toks, vr, table, bound) {
                        cand.hit.insert(vi);
                    }
                    continue;
                }
                // A spill needs a path position that can hold the stage name.
                let wild = !full_prefix
                    && vr.template.iter().any(|t| match t {
                        TTok::Param | TTok::Proxy => true,
                        TTok::Lit(l) => *l == stage_symbol,
                    });
                if literal_prefix_disagrees(&cand.toks, &vr.template) {
                    if wild && spills(&cand.toks, vr, table, bound, &stage_symbol) {
                        cand.hit.insert(vi);
                    }
                    continue;
                }
                let covers = vr.instances.iter().all(|p| glob_matches(&cand.toks, p));
                if covers {
                    cand.cover.insert(vi);
                    cand.hit.insert(vi);
                } else if hits(&cand.toks, vr, table, bound)
                    || (wild && spills(&cand.toks, vr, table, bound, &stage_symbol))
                {
                    cand.hit.insert(vi);
                }
            }
        }

        let mut cover_index: Vec<Vec<usize>> = vec![Vec::new(); vrs.len()];
        for (ci, cand) in candidates.iter().enumerate() {
            for vi in cand.cover.iter() {
                if let Some(list) = cover_index.get_mut(vi) {
                    list.push(ci);
                }
            }
        }
        for list in &mut cover_index {
            list.sort_by_key(|ci| candidates.get(*ci).map_or(usize::MAX, |c| c.text.len()));
        }

        Plan {
            full_prefix,
            any_stage: false,
            vrs,
            candidates,
            cover_index,
        }
    }

    /// The number of virtual routes (routes × verbs that reach them).
    pub fn virtual_routes(&self) -> usize {
        self.vrs.len()
    }

    /// The number of candidate patterns analysed.
    pub fn candidates(&self) -> usize {
        self.candidates.len()
    }

    /// Chooses the patterns for one caller. `allowed[r]` is the decision for route `r`;
    /// `resource_cost` is the length a resource adds besides its pattern (ARN prefix, quotes).
    pub fn build(
        &self,
        allowed_routes: &[bool],
        target: Target<'_>,
        resource_cost: usize,
    ) -> Shape {
        self.finish(&self.base(allowed_routes, resource_cost), target)
    }

    /// The part of the policy that does not depend on the requested route: computed once per
    /// caller. `resource_cost` is the length a resource adds besides its pattern (ARN prefix,
    /// quotes), used to weigh candidates by bytes.
    pub fn base(&self, allowed_routes: &[bool], resource_cost: usize) -> Base {
        let n = self.vrs.len();
        let mut allowed = BitSet::new(n);
        let mut denied = BitSet::new(n);
        for (vi, vr) in self.vrs.iter().enumerate() {
            if allowed_routes.get(vr.route).copied().unwrap_or(false) {
                allowed.insert(vi);
            } else {
                denied.insert(vi);
            }
        }
        let mut base = Base {
            allow: Vec::new(),
            deny: Vec::new(),
            uncovered: BitSet::new(n),
            denied_covered: BitSet::new(n),
            inexact: Vec::new(),
            everything: None,
            full_prefix: self.full_prefix,
            allowed,
            routes: allowed_routes.to_vec(),
        };
        if base.allowed.is_empty() {
            // Nothing is allowed: one Deny for everything in the stage.
            base.everything = Some(false);
            return base;
        }
        if denied.is_empty() {
            base.everything = Some(true);
            return base;
        }
        let allowed = &base.allowed;
        // Bytes; between equally long patterns, the one with fewer wildcards (closer to the
        // routes the schema declares).
        let cost = |c: &Candidate| {
            let stars = c.toks.iter().filter(|t| **t == Tok::Star).count();
            (resource_cost + c.text.len()) as f64 + 0.01 * stars as f64
        };

        // Deny patterns that touch no allowed route, and what they can deny.
        let valid_deny: Vec<bool> = self
            .candidates
            .iter()
            .map(|c| !c.hit.intersects(allowed))
            .collect();
        let mut deniable = BitSet::new(n);
        for (c, ok) in self.candidates.iter().zip(&valid_deny) {
            if *ok {
                deniable.union_with(&c.cover);
            }
        }

        // Allow patterns whose every denied hit can be denied.
        let mut pool: BTreeSet<usize> = BTreeSet::new();
        for vi in allowed.iter() {
            if let Some(list) = self.cover_index.get(vi) {
                pool.extend(list.iter().copied());
            }
        }
        let pool: Vec<usize> = pool
            .into_iter()
            .filter(|ci| {
                self.candidates
                    .get(*ci)
                    .is_some_and(|c| c.hit.and_subset_of(&denied, &deniable))
            })
            .collect();

        let mean_deny = self
            .candidates
            .iter()
            .map(|c| c.text.len())
            .sum::<usize>()
            .checked_div(self.candidates.len())
            .unwrap_or(16)
            + resource_cost;
        let mut uncovered = allowed.clone();
        let mut must_deny = BitSet::new(n);
        let mut chosen_allow: Vec<usize> = Vec::new();
        let score_of = |c: &Candidate, uncovered: &BitSet, must_deny: &BitSet| {
            let gain = c.cover.count_and(uncovered);
            if gain == 0 {
                return 0.0;
            }
            let extra_denies = c.hit.count_and_not(&denied, must_deny);
            f64::from(gain) / (cost(c) + f64::from(extra_denies) * mean_deny as f64)
        };
        // Lazy greedy: candidates wait in a heap under their last score; the top one is
        // re-scored and taken only if it still beats the next. Scores only go stale slowly
        // (fewer uncovered routes, more denies already paid for), so this picks almost what a
        // full rescan would, at a fraction of the cost; exactness does not depend on the order.
        let mut heap: BinaryHeap<(u64, Reverse<usize>)> = pool
            .iter()
            .filter_map(|&ci| {
                let c = self.candidates.get(ci)?;
                let sc = score_of(c, &uncovered, &must_deny);
                (sc > 0.0).then(|| (rank(sc), Reverse(ci)))
            })
            .collect();
        while let Some((_, Reverse(ci))) = heap.pop() {
            if uncovered.is_empty() {
                break;
            }
            let Some(c) = self.candidates.get(ci) else {
                continue;
            };
            let sc = score_of(c, &uncovered, &must_deny);
            if sc <= 0.0 {
                continue;
            }
            if heap.peek().is_some_and(|(top, _)| *top > rank(sc)) {
                heap.push((rank(sc), Reverse(ci)));
                continue;
            }
            uncovered.difference_with(&c.cover);
            must_deny.union_with_and(&c.hit, &denied);
            chosen_allow.push(ci);
        }

        // Drop allows that later, larger ones made redundant (keeps the result small).
        let mut i = 0;
        while i < chosen_allow.len() {
            let mut others = BitSet::new(n);
            for (j, ci) in chosen_allow.iter().enumerate() {
                if j != i {
                    if let Some(c) = self.candidates.get(*ci) {
                        others.union_with(&c.cover);
                    }
                }
            }
            let needed = chosen_allow
                .get(i)
                .and_then(|ci| self.candidates.get(*ci))
                .is_some_and(|c| !c.cover.and_subset_of(allowed, &others));
            if needed {
                i += 1;
            } else {
                chosen_allow.remove(i);
            }
        }
        // Every denied route a chosen Allow touches must be denied; the pool admitted only
        // allows whose denied hits are all deniable.
        let mut to_deny = BitSet::new(n);
        for ci in &chosen_allow {
            if let Some(c) = self.candidates.get(*ci) {
                to_deny.union_with_and(&c.hit, &denied);
            }
        }
        let mut deny_pool: BTreeSet<usize> = BTreeSet::new();
        for vi in to_deny.iter() {
            if let Some(list) = self.cover_index.get(vi) {
                deny_pool.extend(
                    list.iter()
                        .copied()
                        .filter(|ci| valid_deny.get(*ci).copied().unwrap_or(false)),
                );
            }
        }
        let mut chosen_deny: Vec<usize> = Vec::new();
        while !to_deny.is_empty() {
            let mut best: Option<(f64, usize)> = None;
            for &ci in &deny_pool {
                let Some(c) = self.candidates.get(ci) else {
                    continue;
                };
                let gain = c.cover.count_and(&to_deny);
                if gain == 0 {
                    continue;
                }
                let score = f64::from(gain) / cost(c);
                if best.is_none_or(|(s, _)| score > s) {
                    best = Some((score, ci));
                }
            }
            let Some((_, ci)) = best else { break };
            let Some(c) = self.candidates.get(ci) else {
                break;
            };
            to_deny.difference_with(&c.cover);
            base.denied_covered.union_with(&c.cover);
            chosen_deny.push(ci);
        }

        let texts = |chosen: &[usize]| -> Vec<String> {
            let set: BTreeSet<String> = chosen
                .iter()
                .filter_map(|ci| self.candidates.get(*ci))
                .map(|c| c.text.clone())
                .collect();
            set.into_iter().collect()
        };
        base.allow = texts(&chosen_allow);
        base.deny = texts(&chosen_deny);
        let mut inexact: Vec<RouteId> = uncovered
            .iter()
            .filter_map(|vi| self.vrs.get(vi))
            .map(|vr| vr.route)
            .collect();
        inexact.sort_unstable();
        inexact.dedup();
        base.inexact = inexact;
        base.uncovered = uncovered;
        base
    }

    /// The policy for one request: the caller's [`Base`] plus what the requested route needs —
    /// an explicit Deny when it is denied, and its literal resource when it is allowed but no
    /// exact pattern could allow it, or when no route receives it.
    pub fn finish(&self, base: &Base, target: Target<'_>) -> Shape {
        self.finish_reusable(base, target).0
    }

    /// [`Plan::finish`], and whether the shape depends on nothing but `base` and the target
    /// route (not on the requested resource itself), so that it answers every request for
    /// that route with that base. Whether the literal resource is needed is a property of the
    /// base and the route alone, so this holds for all of the route's requests or for none.
    pub fn finish_reusable(&self, base: &Base, target: Target<'_>) -> (Shape, bool) {
        let used_literal = std::cell::Cell::new(false);
        let shape = self.finish_shape(base, target, &used_literal);
        (shape, !used_literal.get())
    }

    fn finish_shape(
        &self,
        base: &Base,
        target: Target<'_>,
        used_literal: &std::cell::Cell<bool>,
    ) -> Shape {
        // A client-chosen `*` or `?` in a path must never become a pattern; nor may the
        // resource itself behind the stage `*`, where it would be one.
        let literal_ok = !self.any_stage
            && !target.resource.contains(['*', '?'])
            && !target.resource.contains("${");
        let literal = || {
            used_literal.set(true);
            if literal_ok {
                vec![target.resource.to_owned()]
            } else {
                Vec::new()
            }
        };
        match base.everything {
            Some(false) => {
                return Shape {
                    deny: vec!["*".to_owned()],
                    full_prefix: base.full_prefix,
                    ..Shape::default()
                }
            }
            Some(true) => {
                // Everything is allowed, except a request for a resource no route receives.
                return Shape {
                    allow: vec!["*".to_owned()],
                    deny_exact: if target.route.is_none() {
                        literal()
                    } else {
                        Vec::new()
                    },
                    full_prefix: base.full_prefix,
                    ..Shape::default()
                };
            }
            None => {}
        }
        let mut deny: BTreeSet<String> = base.deny.iter().cloned().collect();
        let mut shape = Shape {
            allow: base.allow.clone(),
            inexact: base.inexact.clone(),
            full_prefix: base.full_prefix,
            ..Shape::default()
        };
        let target_vrs: Vec<usize> = self
            .vrs
            .iter()
            .enumerate()
            .filter(|(_, vr)| Some(vr.route) == target.route)
            .map(|(vi, _)| vi)
            .collect();
        let target_allowed = target
            .route
            .is_some_and(|r| base.routes.get(r).copied().unwrap_or(false));
        match target.route {
            // A request for a resource no route of the schema receives (the API and the bundle
            // have drifted apart) is denied explicitly: no wildcard may stand in for a route the
            // policies never saw.
            None => shape.deny_exact = literal(),
            Some(_) if target_allowed => {
                if target_vrs.iter().any(|vi| base.uncovered.contains(*vi)) {
                    shape.allow_exact = literal();
                }
            }
            // The requested route is denied: an explicit Deny for it, by the cheapest pattern
            // that touches no allowed route, else by its literal resource.
            Some(_) => {
                for vi in target_vrs {
                    if base.denied_covered.contains(vi) {
                        continue;
                    }
                    let pattern = self.cover_index.get(vi).and_then(|list| {
                        list.iter()
                            .filter_map(|ci| self.candidates.get(*ci))
                            .find(|c| !c.hit.intersects(&base.allowed))
                    });
                    match pattern {
                        Some(c) => {
                            deny.insert(c.text.clone());
                        }
                        None => shape.deny_exact = literal(),
                    }
                }
            }
        }
        shape.deny = deny.into_iter().collect();
        shape
    }
}

/// The virtual route of `template` for route `id`: its generic paths that the table routes to
/// `id`. `None` when no path reaches it (GET of an `ANY` route beside an explicit GET on the
/// same template; a catch-all path every other route takes): it needs no policy at all.
fn reached_vr(
    table: &RouteTable,
    id: RouteId,
    template: Vec<TTok>,
    bound: usize,
) -> Option<VirtualRoute> {
    let instances: Vec<Vec<String>> = generic_instances(&template, bound)
        .into_iter()
        .filter(|p| table.route_symbols(&symbols(p)) == Some(id))
        .collect();
    (!instances.is_empty()).then_some(VirtualRoute {
        route: id,
        template,
        instances,
    })
}

/// The virtual route of a route named by its key alone (`$connect`, `$default`): one resource.
fn route_key_vr(route: RouteId, key: &str) -> VirtualRoute {
    VirtualRoute {
        route,
        template: vec![TTok::Lit(key.to_owned())],
        instances: vec![vec![key.to_owned()]],
    }
}

/// The generic paths of a template: parameters become [`FRESH`], `{proxy+}` takes 1..=bound
/// fresh symbols.
fn generic_instances(template: &[TTok], bound: usize) -> Vec<Vec<String>> {
    let has_proxy = template.contains(&TTok::Proxy);
    let lengths: Vec<usize> = if has_proxy {
        (1..=bound).collect()
    } else {
        vec![1]
    };
    lengths
        .into_iter()
        .map(|len| {
            let mut out = Vec::new();
            for t in template {
                match t {
                    TTok::Lit(l) => out.push(l.clone()),
                    TTok::Param => out.push(FRESH.to_owned()),
                    TTok::Proxy => out.extend(std::iter::repeat_n(FRESH.to_owned(), len)),
                }
            }
            out
        })
        .collect()
}

/// A positive score as an integer key that orders like the score (for the heap).
fn rank(score: f64) -> u64 {
    (score * 1e12) as u64
}

/// Cheap exclusion: before the first wildcard on either side, positions align, and two
/// different literals there mean no path can match both.
fn literal_prefix_disagrees(g: &[Tok], t: &[TTok]) -> bool {
    for (a, b) in g.iter().zip(t) {
        match (a, b) {
            (Tok::Lit(x), TTok::Lit(y)) if x != y => return true,
            (Tok::Lit(_), TTok::Lit(_)) => continue,
            _ => break,
        }
    }
    false
}

/// Whether some path routed to `vr` matches `g`. Enumerates the joint alignments of the
/// pattern and the template; each position takes the literal either side forces, or a fresh
/// symbol (the most generic choice: if that path is routed elsewhere, so is every path with
/// the same alignment).
fn hits(g: &[Tok], vr: &VirtualRoute, table: &RouteTable, bound: usize) -> bool {
    let mut budget = JOINT_BUDGET;
    let mut path: Vec<&str> = Vec::new();
    let found = joint(
        g,
        &vr.template,
        0,
        0,
        &mut path,
        bound,
        &mut budget,
        &mut |p| table.route_symbols(p) == Some(vr.route),
    );
    // Out of budget: assume a hit (safe).
    found || budget == 0
}

/// Whether the pattern, written after `arn:…:execute-api:*/{stage}/`, matches a path routed
/// to `vr` through its leading `*` reaching past the API id: the path then contains the stage
/// name followed by what the pattern spells (`…/prod/GET/pets/…` inside a `{proxy+}` value).
/// Resources are modelled as `[head, stage, verb, segments…]`.
fn spills(g: &[Tok], vr: &VirtualRoute, table: &RouteTable, bound: usize, stage: &str) -> bool {
    let mut pattern = vec![Tok::Star, Tok::Lit(stage.to_owned())];
    pattern.extend(g.iter().cloned());
    let mut template = vec![TTok::Lit(HEAD.to_owned()), TTok::Lit(stage.to_owned())];
    template.extend(vr.template.iter().cloned());
    let mut budget = JOINT_BUDGET;
    let mut path: Vec<&str> = Vec::new();
    let found = joint(
        &pattern,
        &template,
        0,
        0,
        &mut path,
        bound + 2,
        &mut budget,
        &mut |p| table.route_symbols(p.get(2..).unwrap_or_default()) == Some(vr.route),
    );
    found || budget == 0
}

/// Whether the pattern, written after `arn:…:{api}/*/` (stage `*`), matches some resource
/// routed to `vr` in some stage: the stage's `*` takes the stage and possibly more symbols
/// (`prod/POST` of `prod/POST/GET/pets`), the pattern the rest. Resources are modelled as
/// `[stage, verb, segments…]`.
fn hits_in_any_stage(g: &[Tok], vr: &VirtualRoute, table: &RouteTable, bound: usize) -> bool {
    let mut pattern = vec![Tok::Star];
    pattern.extend(g.iter().cloned());
    let mut template = vec![TTok::Lit(STAGE.to_owned())];
    template.extend(vr.template.iter().cloned());
    let mut budget = JOINT_BUDGET;
    let mut path: Vec<&str> = Vec::new();
    let found = joint(
        &pattern,
        &template,
        0,
        0,
        &mut path,
        bound + 1,
        &mut budget,
        &mut |p| table.route_symbols(p.get(1..).unwrap_or_default()) == Some(vr.route),
    );
    // Out of budget: assume a hit (safe).
    found || budget == 0
}

#[allow(clippy::too_many_arguments)]
fn joint<'a>(
    g: &'a [Tok],
    t: &'a [TTok],
    i: usize,
    j: usize,
    path: &mut Vec<&'a str>,
    bound: usize,
    budget: &mut usize,
    visit: &mut dyn FnMut(&[&str]) -> bool,
) -> bool {
    if *budget == 0 {
        return false;
    }
    *budget -= 1;
    let (gt, tt) = match (g.get(i), t.get(j)) {
        (None, None) => return visit(path),
        (Some(a), Some(b)) => (a, b),
        _ => return false,
    };
    if path.len() >= bound {
        return false;
    }
    let sym: &str = match (gt, tt) {
        (Tok::Lit(a), TTok::Lit(b)) if a != b => return false,
        (Tok::Lit(a), _) => a,
        (Tok::Star, TTok::Lit(b)) => b,
        (Tok::Star, _) => FRESH,
    };
    path.push(sym);
    let next_i: &[usize] = if *gt == Tok::Star { &[0, 1] } else { &[1] };
    let next_j: &[usize] = if *tt == TTok::Proxy { &[0, 1] } else { &[1] };
    for di in next_i {
        for dj in next_j {
            if joint(g, t, i + di, j + dj, path, bound, budget, visit) {
                return true;
            }
        }
    }
    path.pop();
    false
}

/// An IAM policy document as API Gateway reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyDocument {
    #[serde(rename = "Version")]
    pub version: &'static str,
    #[serde(rename = "Statement")]
    pub statement: Vec<Statement>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Statement {
    #[serde(rename = "Action")]
    pub action: &'static str,
    #[serde(rename = "Effect")]
    pub effect: Effect,
    #[serde(rename = "Resource")]
    pub resource: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

impl PolicyDocument {
    /// Turns a [`Shape`] into a document for the API and stage of `arn`. Patterns start with
    /// `arn:{partition}:execute-api:*/{stage}/`: the `*` stands for `{region}:{account}:{api}`,
    /// which is always this API's (API Gateway evaluates an authorizer's policy only for its own
    /// API), and saves some forty bytes per resource; the analysis counts its reach past the API
    /// id (see `spills`). Exact resources keep the full ARN. A console test's stage `*` is
    /// already a wildcard, so there the full prefix is kept for patterns too.
    pub fn from_shape(shape: &Shape, arn: &MethodArn) -> Self {
        let exact = arn.prefix();
        let short;
        let patterns = if arn.stage == "*" || shape.full_prefix {
            exact
        } else {
            short = format!("arn:{}:execute-api:*/{}/", arn.partition, arn.stage);
            short.as_str()
        };
        let mut statement = Vec::new();
        for (effect, pats, exacts) in [
            (Effect::Allow, &shape.allow, &shape.allow_exact),
            (Effect::Deny, &shape.deny, &shape.deny_exact),
        ] {
            let joined = |head: &str, tail: &str| {
                let mut r = String::with_capacity(head.len() + tail.len());
                r.push_str(head);
                r.push_str(tail);
                r
            };
            let mut resource: Vec<String> = pats.iter().map(|p| joined(patterns, p)).collect();
            resource.extend(exacts.iter().map(|e| joined(exact, e)));
            if !resource.is_empty() {
                statement.push(Statement {
                    action: "execute-api:Invoke",
                    effect,
                    resource,
                });
            }
        }
        PolicyDocument {
            version: "2012-10-17",
            statement,
        }
    }
}

/// A policy ready to send: its shape and its document's JSON, written once. A memoized policy
/// is shared by every response that carries it, so each of those responses copies the JSON
/// instead of building and writing the document again.
#[derive(Debug)]
pub struct Policy {
    pub shape: Shape,
    /// The document as JSON; or the document itself, in the one case serde_json could not
    /// write it (which it cannot fail at for these types).
    json: Result<Box<serde_json::value::RawValue>, PolicyDocument>,
}

impl Policy {
    pub fn new(shape: Shape, arn: &MethodArn) -> Self {
        let document = PolicyDocument::from_shape(&shape, arn);
        let json = serde_json::value::to_raw_value(&document).map_err(|_| document);
        Self { shape, json }
    }

    /// The document, for `arn` (the ARN the policy was made for).
    pub fn document(&self, arn: &MethodArn) -> PolicyDocument {
        PolicyDocument::from_shape(&self.shape, arn)
    }

    /// Roughly how many bytes this holds (for bounded caches).
    pub fn weight(&self) -> usize {
        let texts = |v: &[String]| v.iter().map(|s| s.len() + 24).sum::<usize>();
        let shape = &self.shape;
        texts(&shape.allow)
            + texts(&shape.deny)
            + texts(&shape.allow_exact)
            + texts(&shape.deny_exact)
            + shape.inexact.len() * 8
            + self.json.as_ref().map_or_else(
                |d| d.statement.iter().map(|s| texts(&s.resource) + 64).sum(),
                |j| j.get().len(),
            )
            + 160
    }
}

impl Serialize for Policy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.json {
            Ok(json) => json.serialize(s),
            Err(document) => document.serialize(s),
        }
    }
}

/// The methods a verb position can hold, for tests and tools that enumerate resources.
pub fn methods() -> &'static [&'static str] {
    &METHODS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> RouteTable {
        RouteTable::of(names)
    }

    fn toks(s: &str) -> Vec<Tok> {
        s.split('/')
            .map(|p| {
                if p == "*" {
                    Tok::Star
                } else {
                    Tok::Lit(p.to_owned())
                }
            })
            .collect()
    }

    #[test]
    fn glob_star_takes_whole_symbols_including_slashes() {
        let g = toks("GET/pets/*");
        assert!(glob_matches(&g, &["GET", "pets", "1"]));
        assert!(glob_matches(&g, &["GET", "pets", "1", "history"]));
        assert!(!glob_matches(&g, &["GET", "pets"]));
        assert!(glob_matches(&toks("*/pets"), &["GET", "a", "pets"]));
        assert!(glob_matches(&toks("GET/*"), &["GET", ""]));
        assert!(!glob_matches(&toks("*/*"), &["$connect"]));
        assert!(glob_matches(&toks("*"), &["$connect"]));
    }

    #[test]
    fn own_pattern_of_a_param_route_hits_deeper_routes() {
        let t = table(&["GET /pets/{id}", "GET /pets/{id}/history"]);
        let plan = Plan::new(&t);
        let own = plan
            .candidates
            .iter()
            .find(|c| c.text == "GET/pets/*")
            .unwrap();
        // `GET/pets/*` matches every `GET /pets/{id}/history` path too.
        assert_eq!(own.cover.count(), 2);
        assert_eq!(own.hit.count(), 2);
        let hist = plan
            .candidates
            .iter()
            .find(|c| c.text == "GET/pets/*/history")
            .unwrap();
        assert_eq!(hist.hit.count(), 1);
    }

    fn shape(names: &[&str], allowed: &[&str]) -> Shape {
        shape_for(names, allowed, "GET/pets/1")
    }

    fn shape_for(names: &[&str], allowed: &[&str], resource: &str) -> Shape {
        shape_in(Plan::new, names, allowed, resource)
    }

    fn full_shape_for(names: &[&str], allowed: &[&str], resource: &str) -> Shape {
        shape_in(Plan::full_prefix, names, allowed, resource)
    }

    fn shape_in(
        analyse: fn(&RouteTable) -> Plan,
        names: &[&str],
        allowed: &[&str],
        resource: &str,
    ) -> Shape {
        let t = table(names);
        let plan = analyse(&t);
        let decisions: Vec<bool> = t
            .routes()
            .iter()
            .map(|r| allowed.contains(&r.name.as_str()))
            .collect();
        plan.build(
            &decisions,
            Target {
                resource,
                route: t.route_resource(resource),
            },
            60,
        )
    }

    #[test]
    fn param_allowed_deeper_denied_needs_a_deny() {
        let s = shape(
            &["GET /pets/{id}", "GET /pets/{id}/history"],
            &["GET /pets/{id}"],
        );
        // Either Deny matches exactly the history paths here.
        assert!(
            s.deny == ["GET/pets/*/history"] || s.deny == ["GET/pets/*/*"],
            "{s:?}"
        );
        assert!(s.allow == ["GET/pets/*"] || s.allow == ["*"], "{s:?}");
    }

    #[test]
    fn proxy_denied_beside_allowed_param_is_denied_deeper() {
        let s = shape(
            &["GET /pets/{id}", "GET /pets/{proxy+}"],
            &["GET /pets/{id}"],
        );
        assert_eq!(s.deny, vec!["GET/pets/*/*"]);
        assert!(s.allow == ["GET/pets/*"] || s.allow == ["*"], "{s:?}");
        assert!(s.inexact.is_empty());
    }

    #[test]
    fn inexpressible_combination_is_never_over_allowed() {
        let s = shape(&["GET /pets/{id}", "GET /{proxy+}"], &["GET /{proxy+}"]);
        // `GET/*` would allow GET /pets/1; nothing exact exists, so the proxy route is left out.
        assert!(!s.allow.iter().any(|a| a == "GET/*" || a == "*"));
        assert_eq!(s.inexact.len(), 1);
    }

    #[test]
    fn a_resource_no_route_receives_is_denied_explicitly() {
        let s = shape_for(&["GET /a", "GET /b"], &["GET /a", "GET /b"], "GET/zzz");
        assert_eq!(
            (s.allow, s.deny_exact),
            (vec!["*".to_owned()], vec!["GET/zzz".to_owned()])
        );
        let s = shape_for(&["GET /a", "GET /b"], &["GET /a"], "GET/zzz");
        assert!(s.deny_exact.contains(&"GET/zzz".to_owned()), "{s:?}");
        // Never a client-chosen wildcard as a pattern.
        let s = shape_for(&["GET /a", "GET /b"], &["GET /a", "GET /b"], "GET/*");
        assert!(s.deny.is_empty() && s.deny_exact.is_empty(), "{s:?}");
    }

    #[test]
    fn a_finished_policy_is_reusable_only_when_no_resource_of_its_route_changes_it() {
        // For each table and each set of allowed routes: the resources of one route either all
        // say "reusable" and all get the same shape, or none says it (the literal is used).
        let cases: [(&[&str], &[&str]); 3] = [
            (
                &["GET /pets/{id}", "GET /{proxy+}"],
                &["GET/pets/1", "GET/pets/a*b", "GET/x/y", "GET/x*/y", "GET/q"],
            ),
            (
                &["GET /a", "GET /b", "POST /{x}/pets"],
                &["GET/a", "GET/b", "POST/1/pets", "POST/*/pets"],
            ),
            (
                &["GET /pets/{id}", "GET /pets/{id}/history", "$default"],
                &[
                    "GET/pets/1",
                    "GET/pets/1/history",
                    "GET/pets/?/history",
                    "PUT/z",
                    "PUT/z*",
                ],
            ),
        ];
        let mut seen_both = (false, false);
        for (names, resources) in cases {
            let t = table(names);
            let plan = Plan::new(&t);
            let n = t.routes().len();
            for mask in 0..(1u32 << n) {
                let decisions: Vec<bool> = (0..n).map(|i| mask & (1 << i) != 0).collect();
                let base = plan.base(&decisions, 60);
                let mut by_route: BTreeMap<RouteId, Vec<(Shape, bool)>> = BTreeMap::new();
                for resource in resources {
                    let Some(route) = t.route_resource(resource) else {
                        continue;
                    };
                    let finished = plan.finish_reusable(
                        &base,
                        Target {
                            resource,
                            route: Some(route),
                        },
                    );
                    by_route.entry(route).or_default().push(finished);
                }
                for (route, finished) in by_route {
                    let reusable = finished.first().is_some_and(|(_, r)| *r);
                    assert!(
                        finished.iter().all(|(_, r)| *r == reusable),
                        "{names:?} {decisions:?} route {route}: {finished:?}"
                    );
                    if reusable {
                        seen_both.0 = true;
                        assert!(
                            finished.windows(2).all(|w| w[0].0 == w[1].0),
                            "{names:?} {decisions:?} route {route}: {finished:?}"
                        );
                    } else {
                        seen_both.1 = true;
                    }
                }
            }
        }
        assert_eq!(seen_both, (true, true), "both kinds were exercised");
    }

    #[test]
    fn nothing_or_everything() {
        assert_eq!(shape(&["GET /a", "GET /b"], &[]).deny, vec!["*"]);
        assert_eq!(
            shape(&["GET /a", "GET /b"], &["GET /a", "GET /b"]).allow,
            vec!["*"]
        );
    }

    #[test]
    fn default_route_is_answered_in_both_forms() {
        let names = ["GET /pets", "$default"];
        // Only the catch-all allowed: everything but the one explicit route. With the short
        // prefix, a Deny for `GET/pets` would also match `POST/a/{stage}/GET/pets`, which the
        // catch-all receives: not expressible, so the full prefix serves this caller.
        let s = shape_for(&names, &["$default"], "$default");
        assert_eq!(s.inexact, vec![1], "{s:?}");
        assert!(!s.allow.contains(&"*".to_owned()), "{s:?}");
        let s = full_shape_for(&names, &["$default"], "$default");
        assert_eq!(
            (s.allow.clone(), s.deny.clone()),
            (vec!["*".to_owned()], vec!["GET/pets".to_owned()])
        );
        assert!(s.inexact.is_empty() && s.full_prefix);
        // Only the explicit route allowed: the catch-all is denied, here by its route key
        // (again only with the full prefix: `GET/pets` would reach `GET/a/{stage}/GET/pets`).
        assert_eq!(
            shape_for(&names, &["GET /pets"], "$default").inexact,
            vec![0]
        );
        let s = full_shape_for(&names, &["GET /pets"], "$default");
        assert_eq!(s.allow, vec!["GET/pets".to_owned()], "{s:?}");
        assert!(s.deny.contains(&"$default".to_owned()), "{s:?}");
        // An allowed catch-all beside a denied `{param}` route cannot be exact under `GET`
        // (`GET/pets/*` would also deny `GET/pets/a/b`): left out, never over-allowed.
        let s = shape_for(&["GET /pets/{id}", "$default"], &["$default"], "$default");
        assert_eq!(s.inexact, vec![1]);
        assert!(!s.allow.contains(&"*".to_owned()), "{s:?}");
        assert!(s.allow.contains(&"$default".to_owned()), "{s:?}");
    }

    #[test]
    fn websocket_connect_is_not_matched_by_verb_patterns() {
        let s = shape(&["$connect", "GET /a"], &["$connect"]);
        assert!(s.allow.contains(&"$connect".to_owned()) || s.allow.contains(&"*".to_owned()));
        assert!(!s.allow.contains(&"*".to_owned()), "{s:?}");
    }
}
