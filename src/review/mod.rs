//! The review tool (`cedargate diff`): who gains and who loses which route between two
//! bundles.
//!
//! Stage: beside the pipeline, over two compiled snapshots. Input: the base and the new
//! snapshot, sample callers, a budget. Output: a [`Review`]: per route the callers newly
//! allowed and newly denied with the determining policies on each side, the routes added and
//! removed, the policies added, removed, changed and renamed, and what the callers covered.
//!
//! Every decision goes through the request core's own parts: claims become facts and the
//! Cedar request through the bundle's mapping (`authorize::caller_request`), and Cedar decides
//! over the same per-route candidates (`decide`). A route whose policies (by body), action
//! groups, mapping and static entities are the same in both bundles decides every caller the
//! same way in both: it needs no caller and is complete by construction.

pub mod callers;
pub mod render;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, UNIX_EPOCH};

use cedar_policy::Policy;

use crate::authorize::caller_request;
use crate::bundle::Snapshot;
use crate::claims::VerifiedClaims;
use crate::decide::{decide, decide_route, CallerRequest, Detail};
use crate::policy_tests;
use crate::routes::RouteId;
use callers::{Caller, Source};

/// One side of a change: the decision and the policies that determined it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub allowed: bool,
    pub policies: Vec<String>,
    /// Why there is no Cedar decision: the route is not in this bundle, or the claims do not
    /// fit its schema (a 401).
    pub note: Option<String>,
}

/// A caller whose decision on a route differs.
#[derive(Debug, Clone)]
pub struct Change {
    pub caller: std::sync::Arc<Caller>,
    pub before: Side,
    pub after: Side,
}

/// Whether the route is in both bundles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Changed,
    Added,
    Removed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Added => "added",
            Self::Removed => "removed",
        }
    }
}

/// The callers who gain and lose one route.
#[derive(Debug, Clone)]
pub struct RouteChange {
    pub route: String,
    pub status: Status,
    /// The gains shown: every named caller, and the generated callers no simpler generated
    /// caller stands for (one whose roles and values are a subset).
    pub gained: Vec<Change>,
    pub lost: Vec<Change>,
    /// How many callers gained and lost in all.
    pub gained_total: usize,
    pub lost_total: usize,
}

/// Policies by id.
#[derive(Debug, Clone, Default)]
pub struct PolicyChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// (from, to): the same policy under another id (or in another file).
    pub renamed: Vec<(String, String)>,
}

/// A route whose generated callers are not every case.
#[derive(Debug, Clone)]
pub struct Sampled {
    pub route: String,
    pub why: Vec<String>,
    pub enumerated: usize,
    pub combinations: f64,
}

/// What the callers covered.
#[derive(Debug, Clone, Default)]
pub struct Coverage {
    pub tests: usize,
    pub samples: usize,
    pub generated: usize,
    /// Routes every case of which was tried (unchanged routes included).
    pub routes_complete: usize,
    /// Routes identical in both bundles.
    pub routes_unchanged: usize,
    pub sampled: Vec<Sampled>,
    /// Test files that did not parse (their cases are not among the callers).
    pub broken_test_files: usize,
    /// Samples whose claims fit neither bundle's schema (a 401 in both): they tell nothing.
    pub unfit_samples: Vec<String>,
}

impl Coverage {
    pub fn complete(&self) -> bool {
        self.sampled.is_empty()
    }
}

/// The review of a change.
#[derive(Debug, Clone)]
pub struct Review {
    pub base: String,
    pub bundle: String,
    /// Routes where some caller gains or loses: gaining routes first, each in route order.
    pub routes: Vec<RouteChange>,
    pub routes_added: Vec<String>,
    pub routes_removed: Vec<String>,
    pub policies: PolicyChanges,
    pub coverage: Coverage,
}

impl Review {
    pub fn widening(&self) -> bool {
        self.routes.iter().any(|r| r.gained_total > 0)
    }

    /// Distinct callers that gain (or lose) some route.
    pub fn callers_changing(&self, gained: bool) -> usize {
        let keys: BTreeSet<String> = self
            .routes
            .iter()
            .flat_map(|r| if gained { &r.gained } else { &r.lost })
            .map(|c| c.caller.key())
            .collect();
        keys.len()
    }
}

/// A policy's body without its annotations (from its JSON form): two policies that differ
/// only by `@id` (or by the file they are in) decide alike.
fn body(p: &Policy, json: Option<&serde_json::Value>) -> String {
    match json {
        Some(j) => {
            let mut j = j.clone();
            if let Some(o) = j.as_object_mut() {
                o.remove("annotations");
            }
            j.to_string()
        }
        None => p.to_string(),
    }
}

fn policy_changes(old: &Prepared<'_>, new: &Prepared<'_>) -> PolicyChanges {
    let (before, after) = (&old.bodies, &new.bodies);
    let mut out = PolicyChanges::default();
    let mut removed: Vec<(&String, &String)> = Vec::new();
    for (id, b) in before {
        match after.get(id) {
            Some(a) if a == b => {}
            Some(_) => out.changed.push(id.clone()),
            None => removed.push((id, b)),
        }
    }
    let mut added: Vec<(&String, &String)> = after
        .iter()
        .filter(|(id, _)| !before.contains_key(*id))
        .collect();
    for (id, b) in removed {
        match added.iter().position(|(_, ab)| *ab == b) {
            Some(at) => {
                let (to, _) = added.remove(at);
                out.renamed.push((id.clone(), to.clone()));
            }
            None => out.removed.push(id.clone()),
        }
    }
    out.added = added.into_iter().map(|(id, _)| id.clone()).collect();
    out
}

/// One bundle, prepared for review.
struct Prepared<'s> {
    snapshot: &'s Snapshot,
    routes: HashMap<String, RouteId>,
    /// The policies whose action scope reaches each route, by route id.
    by_route: Vec<Vec<&'s Policy>>,
    usages: BTreeMap<String, usage::Usage>,
    /// Each policy's body without annotations, by id.
    bodies: BTreeMap<String, String>,
}

impl<'s> Prepared<'s> {
    fn new(snapshot: &'s Snapshot) -> Self {
        let names = snapshot.routes().routes();
        let routes = names
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.clone(), i))
            .collect();
        let mut by_route: Vec<Vec<&Policy>> = vec![Vec::new(); names.len()];
        for (policy, rs) in snapshot.index().scoped() {
            for r in rs {
                if let Some(list) = by_route.get_mut(*r) {
                    list.push(policy);
                }
            }
        }
        let ptype = snapshot.mapping().principal_type().to_string();
        let mut usages = BTreeMap::new();
        let mut bodies = BTreeMap::new();
        for p in snapshot.policies.policies() {
            let json = p.to_json().ok();
            let id = p.id().to_string();
            usages.insert(id.clone(), usage::of_json(p, json.as_ref(), &ptype));
            bodies.insert(id, body(p, json.as_ref()));
        }
        Self {
            snapshot,
            routes,
            by_route,
            usages,
            bodies,
        }
    }

    fn policies(&self, r: RouteId) -> &[&'s Policy] {
        self.by_route.get(r).map_or(&[], Vec::as_slice)
    }

    /// What decides route `r` besides the caller: its policies by body and its action groups.
    fn route_basis(&self, r: RouteId) -> (Vec<&str>, Vec<String>) {
        let mut bodies: Vec<&str> = self
            .policies(r)
            .iter()
            .filter_map(|p| self.bodies.get(&p.id().to_string()).map(String::as_str))
            .collect();
        bodies.sort();
        let mut groups: Vec<String> = self
            .snapshot
            .derived
            .route_actions
            .get(r)
            .and_then(|a| self.snapshot.base_entities.ancestors(a))
            .map(|up| up.map(ToString::to_string).collect())
            .unwrap_or_default();
        groups.sort();
        (bodies, groups)
    }

    fn usages_of(&self, r: RouteId) -> Vec<&usage::Usage> {
        self.policies(r)
            .iter()
            .filter_map(|p| self.usages.get(&p.id().to_string()))
            .collect()
    }
}

/// What the callers are decided from besides the policies: the mapping and the static
/// entities. When these differ, no route can be taken as unchanged.
fn same_inputs(old: &Snapshot, new: &Snapshot) -> bool {
    let entity_files = |s: &Snapshot| -> Vec<(String, serde_json::Value)> {
        s.files
            .files
            .iter()
            .filter(|(p, _)| p.starts_with("entities/"))
            .map(|(p, t)| {
                (
                    p.clone(),
                    serde_json::from_str(t).unwrap_or(serde_json::Value::String(t.clone())),
                )
            })
            .collect()
    };
    format!("{:?}", old.mapping()) == format!("{:?}", new.mapping())
        && entity_files(old) == entity_files(new)
}

/// The Cedar request parts of `caller` in `snapshot`, or why there are none (a 401).
fn request_of(snapshot: &Snapshot, caller: &Caller) -> Result<CallerRequest, String> {
    let claims =
        VerifiedClaims::from_trusted_json(caller.claims.clone()).map_err(|e| e.to_string())?;
    let req = policy_tests::request(&caller.request)?;
    let now =
        UNIX_EPOCH + Duration::from_millis(u64::try_from(caller.request.time_ms).unwrap_or(0));
    caller_request(snapshot, &claims, &req, now).map_err(|e| e.to_string())
}

fn unauthorized(why: &str) -> Side {
    Side {
        allowed: false,
        policies: Vec::new(),
        note: Some(format!("401: {why}")),
    }
}

fn absent() -> Side {
    Side {
        allowed: false,
        policies: Vec::new(),
        note: Some("the route is not in this bundle".to_owned()),
    }
}

/// Every route's decision for `caller` in `p`, by route name.
fn decide_all(p: &Prepared<'_>, caller: &Caller) -> HashMap<String, Side> {
    let names = p.snapshot.routes().routes();
    let decided = request_of(p.snapshot, caller).and_then(|req| {
        decide(p.snapshot.index(), &req, Detail::Explain).map_err(|e| e.to_string())
    });
    match decided {
        Ok(d) => names
            .iter()
            .enumerate()
            .map(|(r, route)| {
                let side = Side {
                    allowed: d.is_allowed(r),
                    policies: d
                        .reasons_of(r, p.snapshot.index())
                        .into_iter()
                        .map(ToString::to_string)
                        .collect(),
                    note: None,
                };
                (route.name.clone(), side)
            })
            .collect(),
        Err(why) => names
            .iter()
            .map(|route| (route.name.clone(), unauthorized(&why)))
            .collect(),
    }
}

fn decide_one(p: &Prepared<'_>, r: Option<RouteId>, req: &Result<CallerRequest, String>) -> Side {
    let Some(r) = r else {
        return absent();
    };
    match req {
        Err(why) => unauthorized(why),
        Ok(req) => match decide_route(p.snapshot.index(), req, r) {
            Ok(d) => Side {
                allowed: d.allowed,
                policies: d.reasons.iter().map(ToString::to_string).collect(),
                note: None,
            },
            Err(e) => unauthorized(&e.to_string()),
        },
    }
}

/// Per route: (gains, losses).
type Changes = BTreeMap<String, (Vec<Change>, Vec<Change>)>;

fn record(
    changes: &mut Changes,
    route: &str,
    caller: &std::sync::Arc<Caller>,
    before: Side,
    after: Side,
) {
    if before.allowed == after.allowed {
        return;
    }
    let entry = changes.entry(route.to_owned()).or_default();
    let change = Change {
        caller: caller.clone(),
        before,
        after,
    };
    if change.after.allowed {
        entry.0.push(change);
    } else {
        entry.1.push(change);
    }
}

/// The generated callers no simpler one stands for: a generated caller whose choices include
/// another changing caller's (more roles, one more scope) is left out of what is shown.
fn simplest(changes: Vec<Change>) -> Vec<Change> {
    let (named, mut generated): (Vec<Change>, Vec<Change>) = changes
        .into_iter()
        .partition(|c| c.caller.source != Source::Generated);
    generated.sort_by_key(|c| c.caller.chosen.len());
    let mut kept: Vec<Change> = Vec::new();
    for c in generated {
        let covered = kept
            .iter()
            .any(|k| k.caller.chosen.is_subset(&c.caller.chosen));
        if !covered {
            kept.push(c);
        }
    }
    let mut out = named;
    out.extend(kept);
    out
}

/// Reviews the change from `old` to `new`.
pub fn review(
    old: &Snapshot,
    new: &Snapshot,
    labels: (&str, &str),
    samples: Vec<Caller>,
    budget: usize,
) -> Review {
    let (po, pn) = (Prepared::new(old), Prepared::new(new));
    let mut coverage = Coverage::default();

    // Route names: the new bundle's order, then the removed ones.
    let mut names: Vec<String> = new
        .routes()
        .routes()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let routes_removed: Vec<String> = old
        .routes()
        .routes()
        .iter()
        .map(|r| r.name.clone())
        .filter(|n| !pn.routes.contains_key(n))
        .collect();
    let routes_added: Vec<String> = names
        .iter()
        .filter(|n| !po.routes.contains_key(*n))
        .cloned()
        .collect();
    names.extend(routes_removed.iter().cloned());

    // Named callers: both bundles' policy tests, then the samples.
    let mut named: Vec<Caller> = Vec::new();
    for (snapshot, label) in [(new, ""), (old, " (base)")] {
        let (cases, broken) = callers::from_tests(snapshot, label);
        coverage.broken_test_files += broken;
        named.extend(cases);
    }
    let mut seen = BTreeSet::new();
    // The same case in both bundles is one caller.
    named.retain(|c| seen.insert(c.key()));
    coverage.tests = named.len();
    coverage.samples = samples.len();
    named.extend(samples);

    let mut changes: Changes = BTreeMap::new();
    for caller in named {
        let caller = std::sync::Arc::new(caller);
        let before = decide_all(&po, &caller);
        let after = decide_all(&pn, &caller);
        let unfit = |sides: &HashMap<String, Side>| {
            sides
                .values()
                .all(|s| s.note.as_deref().is_some_and(|n| n.starts_with("401")))
        };
        if caller.source == Source::Sample && unfit(&before) && unfit(&after) {
            let why = before
                .values()
                .find_map(|s| s.note.clone())
                .unwrap_or_default();
            coverage
                .unfit_samples
                .push(format!("{} ({why})", caller.name));
        }
        for name in &names {
            let b = before.get(name).cloned().unwrap_or_else(absent);
            let a = after.get(name).cloned().unwrap_or_else(absent);
            record(&mut changes, name, &caller, b, a);
        }
    }

    // Generated callers, route by route.
    let inputs_same = same_inputs(old, new);
    for name in &names {
        let (ro, rn) = (po.routes.get(name).copied(), pn.routes.get(name).copied());
        if let (Some(o), Some(n), true) = (ro, rn, inputs_same) {
            if po.route_basis(o) == pn.route_basis(n) {
                coverage.routes_unchanged += 1;
                coverage.routes_complete += 1;
                continue;
            }
        }
        let mut sides: Vec<(&Snapshot, Vec<&usage::Usage>)> = Vec::new();
        if let Some(o) = ro {
            sides.push((old, po.usages_of(o)));
        }
        if let Some(n) = rn {
            sides.push((new, pn.usages_of(n)));
        }
        let generated = callers::generate(&sides, budget);
        coverage.generated += generated.callers.len();
        if generated.complete {
            coverage.routes_complete += 1;
        } else {
            coverage.sampled.push(Sampled {
                route: name.clone(),
                why: generated.why.clone(),
                enumerated: generated.callers.len(),
                combinations: generated.combinations,
            });
        }
        for caller in generated.callers {
            let req_old = request_of(old, &caller);
            let req_new = request_of(new, &caller);
            let b = decide_one(&po, ro, &req_old);
            let a = decide_one(&pn, rn, &req_new);
            if b.allowed != a.allowed {
                record(&mut changes, name, &std::sync::Arc::new(caller), b, a);
            }
        }
    }

    let mut gaining = Vec::new();
    let mut losing = Vec::new();
    for name in &names {
        let Some((gained, lost)) = changes.remove(name) else {
            continue;
        };
        let status = if routes_added.contains(name) {
            Status::Added
        } else if routes_removed.contains(name) {
            Status::Removed
        } else {
            Status::Changed
        };
        let change = RouteChange {
            route: name.clone(),
            status,
            gained_total: gained.len(),
            lost_total: lost.len(),
            gained: simplest(gained),
            lost: simplest(lost),
        };
        if change.gained_total > 0 {
            gaining.push(change);
        } else {
            losing.push(change);
        }
    }
    gaining.extend(losing);
    Review {
        base: labels.0.to_owned(),
        bundle: labels.1.to_owned(),
        routes: gaining,
        routes_added,
        routes_removed,
        policies: policy_changes(&po, &pn),
        coverage,
    }
}

#[cfg(test)]
mod tests {
    //! The enumeration's claim, checked against brute force: on bundles drawn at random (roles
    //! in scopes and conditions, positive and negative, a role hierarchy, scopes, an email, a
    //! source address), a route gains (or loses) callers in the review exactly when some caller
    //! of a much larger, independently chosen population gains (or loses) it, and a review that
    //! says complete never misses one.

    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde_json::{json, Value};

    use super::*;
    use crate::bundle::BundleFiles;

    const SCHEMA: &str = r#"
@claim("roles") entity Role in [Role];
@claim("sub") entity User in [Role] {
  @claim("email") email?: String,
  @claim("scope") @split(" ") scopes?: Set<String>,
};
entity Api { stage: String };
type Ctx = { sourceIp?: String, stage: String, time: Long };
action "GET /a" appliesTo { principal: [User], resource: [Api], context: Ctx };
action "GET /b" appliesTo { principal: [User], resource: [Api], context: Ctx };
"#;

    const ENTITIES: &str = r#"[
  {"uid": {"type": "Role", "id": "r1"}, "attrs": {}, "parents": [{"type": "Role", "id": "r2"}]},
  {"uid": {"type": "Role", "id": "r2"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Role", "id": "r3"}, "attrs": {}, "parents": []}
]"#;

    const ROLES: [&str; 4] = ["r1", "r2", "r3", "r4"];
    const ROUTES: [&str; 2] = ["GET /a", "GET /b"];

    fn condition(k: usize) -> &'static str {
        match k {
            0 => "",
            1 => r#"when { principal has scopes && principal.scopes.contains("s1") }"#,
            2 => r#"when { principal has scopes && principal.scopes.containsAny(["s1", "s2"]) }"#,
            3 => r#"when { principal has email && principal.email == "e@x.example" }"#,
            4 => r#"when { context has sourceIp && context.sourceIp == "192.0.2.9" }"#,
            5 => r#"when { principal in Role::"r3" }"#,
            6 => r#"unless { principal in Role::"r2" }"#,
            7 => r#"unless { principal has scopes && principal.scopes.contains("s2") }"#,
            _ => r#"when { principal has email && principal.email like "*@y.example" }"#,
        }
    }

    /// (permit?, scope role or none, route, condition)
    type Drawn = (bool, Option<usize>, usize, usize);

    fn policies(drawn: &[Drawn]) -> String {
        let mut out = String::new();
        for (i, (permit, role, route, cond)) in drawn.iter().enumerate() {
            let effect = if *permit { "permit" } else { "forbid" };
            let principal = match role {
                Some(r) => format!("principal in Role::\"{}\"", ROLES[*r % ROLES.len()]),
                None => "principal".to_owned(),
            };
            out.push_str(&format!(
                "@id(\"p{i}\")\n{effect}({principal}, action == Action::\"{}\", resource) {};\n",
                ROUTES[*route % ROUTES.len()],
                condition(*cond)
            ));
        }
        out
    }

    fn snapshot(drawn: &[Drawn]) -> Snapshot {
        let mut files = BTreeMap::new();
        files.insert("schema/api.cedarschema".to_owned(), SCHEMA.to_owned());
        files.insert("policies/p.cedar".to_owned(), policies(drawn));
        files.insert("entities/roles.json".to_owned(), ENTITIES.to_owned());
        match Snapshot::compile(BundleFiles { files }, "test") {
            Ok((s, _)) => s,
            Err(p) => panic!("bundle: {:?}", p.errors),
        }
    }

    /// Callers none of the generator's values are chosen for: every role set, and values on
    /// either side of each literal.
    fn population() -> Vec<Caller> {
        let mut out = Vec::new();
        for mask in 0..(1usize << ROLES.len()) {
            let roles: Vec<&str> = (0..ROLES.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| ROLES[i])
                .collect();
            for scope in [
                None,
                Some(""),
                Some("s1"),
                Some("s2"),
                Some("s1 s2"),
                Some("zz"),
            ] {
                for email in [None, Some("e@x.example"), Some("q@y.example"), Some("o@o")] {
                    for ip in [None, Some("192.0.2.9"), Some("198.51.100.7")] {
                        let mut claims = json!({"sub": "u", "roles": roles});
                        if let (Some(s), Some(o)) = (scope, claims.as_object_mut()) {
                            o.insert("scope".to_owned(), Value::from(s));
                        }
                        if let (Some(e), Some(o)) = (email, claims.as_object_mut()) {
                            o.insert("email".to_owned(), Value::from(e));
                        }
                        let mut request = callers::default_request();
                        request.source_ip = ip.map(str::to_owned);
                        out.push(Caller {
                            source: Source::Sample,
                            name: String::new(),
                            claims,
                            request,
                            chosen: BTreeSet::new(),
                        });
                    }
                }
            }
        }
        out
    }

    /// Per route: does some caller of the population gain it, lose it?
    fn brute_force(old: &Snapshot, new: &Snapshot) -> BTreeMap<String, (bool, bool)> {
        let (po, pn) = (Prepared::new(old), Prepared::new(new));
        let mut out: BTreeMap<String, (bool, bool)> = BTreeMap::new();
        for c in population() {
            let (ro, rn) = (request_of(old, &c), request_of(new, &c));
            for route in ROUTES {
                let b = decide_one(&po, po.routes.get(route).copied(), &ro);
                let a = decide_one(&pn, pn.routes.get(route).copied(), &rn);
                let e = out.entry(route.to_owned()).or_default();
                e.0 |= a.allowed && !b.allowed;
                e.1 |= b.allowed && !a.allowed;
            }
        }
        out
    }

    fn drawn() -> impl Strategy<Value = Vec<Drawn>> {
        proptest::collection::vec(
            (
                any::<bool>(),
                proptest::option::of(0..4usize),
                0..2usize,
                0..9usize,
            ),
            1..6,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        #[test]
        fn a_complete_review_finds_every_route_any_caller_gains_or_loses(old in drawn(), new in drawn()) {
            let (so, sn) = (snapshot(&old), snapshot(&new));
            let review = review(&so, &sn, ("old", "new"), Vec::new(), 100_000);
            let truth = brute_force(&so, &sn);
            let sampled: BTreeSet<&str> = review.coverage.sampled.iter().map(|s| s.route.as_str()).collect();
            for route in ROUTES {
                let found = review.routes.iter().find(|r| r.route == route);
                let gains = found.is_some_and(|r| r.gained_total > 0);
                let losses = found.is_some_and(|r| r.lost_total > 0);
                let (g, l) = truth.get(route).copied().unwrap_or_default();
                // Whatever the review finds is real.
                prop_assert!(!gains || g, "{route}: reported gain that no caller has");
                prop_assert!(!losses || l, "{route}: reported loss that no caller has");
                // A route the review calls complete misses nothing.
                if !sampled.contains(route) {
                    prop_assert_eq!(gains, g, "{} gains; policies\n{}\n→\n{}", route, policies(&old), policies(&new));
                    prop_assert_eq!(losses, l, "{} losses; policies\n{}\n→\n{}", route, policies(&old), policies(&new));
                }
            }
        }
    }

    #[test]
    fn subsets_stop_at_the_size_bound_and_the_cap() {
        let items = [1, 2, 3, 4];
        let (all, complete) = callers_subsets(&items, 2, 100);
        assert!(complete);
        assert_eq!(all.len(), 1 + 4 + 6);
        let (some, complete) = callers_subsets(&items, 4, 5);
        assert!(!complete);
        assert_eq!(some.len(), 5);
    }

    fn callers_subsets(items: &[i32], k: usize, cap: usize) -> (Vec<Vec<i32>>, bool) {
        callers::subsets(items, k, cap)
    }
}
