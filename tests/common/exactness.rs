//! The exactness check of the route-wide IAM policy, shared by the property tests
//! (`tests/iam_exactness.rs`) and the fuzz target (`fuzz/fuzz_targets/iam.rs`): a case is a
//! route table, its decisions and concrete requests; the policy cedargate builds for it is
//! evaluated by the tests' own IAM matcher ([`super::iam::allows`]) against the route each
//! request reaches by a reference router written here (not cedargate's). See
//! `tests/iam_exactness.rs` for what is checked and the one permitted deviation.

use super::iam::allows;

use cedargate::iam::{PolicyDocument, Target};
use cedargate::routes::{Method, Route, RouteTable, METHODS};

/// `assert_eq!` as an error: the property test shrinks it, the fuzz target panics on it.
macro_rules! ensure_eq {
    ($got:expr, $want:expr $(,)?) => {
        ensure_eq!($got, $want, "{} != {}", stringify!($got), stringify!($want))
    };
    ($got:expr, $want:expr, $($fmt:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            return Err(format!("{:?} != {:?}: {}", got, want, format!($($fmt)+)));
        }
    }};
}

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    Lit(String),
    Param,
    Proxy,
}

/// The reference router: among the routes whose verb and template match, the most specific
/// (segment by segment: literal > parameter > proxy), then explicit verb over `ANY`.
pub fn reference_route(
    routes: &[(String, Option<&'static str>, Vec<Tok>)],
    verb: &str,
    path: &[String],
) -> Option<usize> {
    fn matches(t: &[Tok], p: &[String]) -> bool {
        match (t.first(), p.first()) {
            (None, None) => true,
            (Some(Tok::Proxy), Some(_)) => true,
            (Some(Tok::Lit(l)), Some(s)) => l == s && matches(&t[1..], &p[1..]),
            (Some(Tok::Param), Some(_)) => matches(&t[1..], &p[1..]),
            _ => false,
        }
    }
    fn rank(t: &Tok) -> u8 {
        match t {
            Tok::Lit(_) => 0,
            Tok::Param => 1,
            Tok::Proxy => 2,
        }
    }
    let mut best: Option<usize> = None;
    for (i, (_, v, t)) in routes.iter().enumerate() {
        if v.is_some_and(|v| v != verb) || !matches(t, path) {
            continue;
        }
        best = match best {
            None => Some(i),
            Some(b) => {
                let (bt, tt) = (&routes[b].2, t);
                let mut winner = None;
                for k in 0..bt.len().max(tt.len()) {
                    match (bt.get(k), tt.get(k)) {
                        (Some(x), Some(y)) if rank(x) != rank(y) => {
                            winner = Some(if rank(y) < rank(x) { i } else { b });
                            break;
                        }
                        _ => {}
                    }
                }
                Some(winner.unwrap_or(if routes[b].1.is_none() && v.is_some() {
                    i
                } else {
                    b
                }))
            }
        };
    }
    best
}

pub fn route_name(verb: Option<&str>, t: &[Tok]) -> String {
    let mut path = String::new();
    for (i, s) in t.iter().enumerate() {
        path.push('/');
        match s {
            Tok::Lit(l) => path.push_str(l),
            Tok::Param => path.push_str(&format!("{{p{i}}}")),
            Tok::Proxy => path.push_str("{rest+}"),
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    format!("{} {path}", verb.unwrap_or("ANY"))
}

#[derive(Debug, Clone)]
pub struct Case {
    pub routes: Vec<(String, Option<&'static str>, Vec<Tok>)>,
    pub decisions: Vec<bool>,
    /// The decision for `$connect`, when the table has that route.
    pub connect: Option<bool>,
    /// The decision for `$default`, when the table has that route.
    pub default: Option<bool>,
    pub requests: Vec<(&'static str, Vec<String>)>,
    pub target: usize,
    pub stage: &'static str,
    pub partition: &'static str,
}

/// Concrete requests for every route: each parameter a value, each proxy one to four values.
pub fn instances(t: &[Tok], values: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for shift in 0..values.len().max(1) {
        for proxy_len in 1..=4 {
            let mut p = Vec::new();
            let mut k = shift;
            for s in t {
                match s {
                    Tok::Lit(l) => p.push(l.clone()),
                    Tok::Param => {
                        p.push(
                            values
                                .get(k % values.len().max(1))
                                .cloned()
                                .unwrap_or_else(|| "v".into()),
                        );
                        k += 1;
                    }
                    Tok::Proxy => {
                        for _ in 0..proxy_len {
                            p.push(
                                values
                                    .get(k % values.len().max(1))
                                    .cloned()
                                    .unwrap_or_else(|| "v".into()),
                            );
                            k += 1;
                        }
                    }
                }
            }
            out.push(p);
            if !t.contains(&Tok::Proxy) {
                break;
            }
        }
    }
    out
}

/// The resources that name a route by its key alone.
pub const ROUTE_KEYS: [&str; 2] = ["$connect", "$default"];

pub fn check(c: &Case) -> Result<(), String> {
    // HTTP routes first, then `$connect` and `$default` when present.
    let mut names: Vec<String> = c.routes.iter().map(|(n, _, _)| n.clone()).collect();
    let mut decisions = c.decisions.clone();
    let mut key_route: [Option<usize>; 2] = [None, None];
    for (slot, (key, decision)) in ROUTE_KEYS.iter().zip([c.connect, c.default]).enumerate() {
        if let Some(d) = decision {
            key_route[slot] = Some(names.len());
            names.push((*key).to_owned());
            decisions.push(d);
        }
    }
    let table = RouteTable::new(
        names
            .iter()
            .map(|n| Route::parse(n).unwrap().unwrap())
            .collect(),
    )
    .unwrap();
    // The short-prefix analysis for this stage, and the full-prefix one that serves callers
    // the short prefix cannot: both must be exact. Stage `*` has an analysis of its own.
    let plans = if c.stage == "*" {
        vec![cedargate::iam::Plan::any_stage(&table)]
    } else {
        let short = if cedargate::iam::Plan::stage_is_special(&table, c.stage) {
            cedargate::iam::Plan::with_stage(&table, Some(c.stage))
        } else {
            cedargate::iam::Plan::new(&table)
        };
        vec![short, cedargate::iam::Plan::full_prefix(&table)]
    };
    let values: Vec<String> = [
        "42", "dog", "a", "pets", "", "x*", "history", "prod", "v1", "GET",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    // All concrete requests: generated ones plus instances of every route with every verb.
    let mut requests: Vec<(String, Vec<String>)> = c
        .requests
        .iter()
        .map(|(v, p)| (v.to_string(), p.clone()))
        .collect();
    for (_, v, t) in &c.routes {
        for inst in instances(t, &values) {
            match v {
                Some(v) => requests.push((v.to_string(), inst)),
                None => {
                    for m in METHODS {
                        requests.push((m.to_string(), inst.clone()));
                    }
                }
            }
        }
    }
    // The request that triggered this authorization: a `VERB/path`, or a route key.
    let pick = c.target % (requests.len() + ROUTE_KEYS.len());
    let target_resource = match requests.get(pick) {
        Some((tv, tp)) => format!("{tv}/{}", tp.join("/")),
        None => ROUTE_KEYS[pick - requests.len()].to_owned(),
    };
    let target_route = table.route_resource(&target_resource);
    for plan in &plans {
        check_plan(
            c,
            plan,
            &table,
            &names,
            &decisions,
            &requests,
            &target_resource,
            target_route,
            key_route,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn check_plan(
    c: &Case,
    plan: &cedargate::iam::Plan,
    table: &RouteTable,
    names: &[String],
    decisions: &[bool],
    requests: &[(String, Vec<String>)],
    target_resource: &str,
    target_route: Option<usize>,
    key_route: [Option<usize>; 2],
) -> Result<(), String> {
    let default_route = key_route[1];
    let api = format!(
        "arn:{}:execute-api:us-east-1:123456789012:abc123",
        c.partition
    );
    let prefix = format!("{api}/{}/", c.stage);
    // The stages a request is checked in: the policy's own, or for stage `*` concrete ones,
    // among them names that equal a verb or a route literal.
    let stages: Vec<&str> = if c.stage == "*" {
        vec!["prod", "v1", "$default", "GET", "POST", "a", "pets"]
    } else {
        vec![c.stage]
    };
    let shape = plan.build(
        decisions,
        Target {
            resource: target_resource,
            route: target_route,
        },
        prefix.len() + 3,
    );
    ensure_eq!(shape.full_prefix, plan.is_full_prefix());
    let arn = cedargate::arn::MethodArn::parse(&format!("{prefix}GET/")).unwrap();
    let doc = serde_json::to_value(PolicyDocument::from_shape(&shape, &arn)).unwrap();

    // The exact answer for one resource routed to `r` (`None`: no route, nothing to check).
    let expect = |resource: &str, r: Option<usize>| -> Result<(), String> {
        let Some(r) = r else { return Ok(()) };
        for stage in &stages {
            let arn = format!("{api}/{stage}/{resource}");
            let got = allows(&doc, &arn);
            let want = decisions[r];
            let is_target = resource == target_resource;
            // An allowed route the builder could not express beside denied ones may be left
            // out (a cached 403): the only permitted deviation. The requested resource itself
            // is still allowed exactly, through its literal ARN, unless it contains IAM
            // wildcard characters (which must never be turned into a pattern) or the stage is
            // `*` (whose literal is a pattern too).
            let literal_unsafe = target_resource.contains(['*', '?']) || c.stage == "*";
            if want && shape.inexact.contains(&r) && (!is_target || literal_unsafe) {
                continue;
            }
            ensure_eq!(
                got,
                want,
                "route {} ({}) at {}\npolicy: {}",
                names[r],
                want,
                arn,
                doc
            );
        }
        Ok(())
    };

    for (verb, path) in requests {
        // A single empty segment and the root path are the same resource (`GET/`).
        let path: Vec<String> = if path.len() == 1 && path[0].is_empty() {
            Vec::new()
        } else {
            path.clone()
        };
        // API Gateway's choice: the most specific route, else the catch-all.
        let r = reference_route(&c.routes, verb, &path).or(default_route);
        // cedargate's router must agree with the reference router.
        let ours = table.route(
            Method::parse(verb).unwrap(),
            &format!("/{}", path.join("/")),
        );
        ensure_eq!(ours, r, "router disagrees for {} /{}", verb, path.join("/"));
        expect(&format!("{verb}/{}", path.join("/")), r)?;
    }
    // The route-key resources: `{stage}/$connect` and `{stage}/$default`.
    for (key, r) in ROUTE_KEYS.iter().zip(key_route) {
        ensure_eq!(table.route_resource(key), r);
        expect(key, r)?;
    }
    Ok(())
}
