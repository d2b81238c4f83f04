//! Exactness of the route-wide IAM policy, by property tests.
//!
//! Random route tables (literal-vs-parameter overlaps, `{proxy+}`, `ANY`, the root path),
//! random decisions, and concrete requests are generated; the policy cedargate builds is
//! evaluated by the tests' own IAM matcher (`common::allows`: character-level `*` and `?`, explicit Deny wins),
//! and the route each request reaches is computed by a reference router written here (not
//! cedargate's). For every request that reaches a route, the policy must answer exactly the
//! route's decision. The one permitted deviation: an allowed route that the builder reports as
//! inexpressible beside denied ones may be left out (cedargate under-allows there; it never
//! over-allows) — but never for the requested route itself.
//!
//! Route-key ARN forms: tables may also hold the WebSocket `$connect` route and the HTTP API
//! `$default` catch-all. Requests then include the resources `{stage}/$connect` and
//! `{stage}/$default` (the route key as the resource), and every `VERB/path` that no other
//! route takes reaches `$default` (the reference router falls back to it); the stage may be
//! HTTP API's `$default` too, so `…/$default/$default` is covered.
//!
//! Stage `*` (API Gateway's console test events): the policy is written with `*` as the stage,
//! which IAM matches against any characters, slashes included. It must be exact in every stage
//! at once: each request is checked under several concrete stage names, including ones that
//! spell a verb or a route literal, so that the stage's `*` swallowing `prod/POST` in
//! `…/prod/POST/GET/pets` is caught.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::exactness::{check, route_name, Case, Tok};
use common::iam_match;

use proptest::prelude::*;

const LITS: [&str; 5] = ["a", "b", "pets", "x", "v1"];

fn template() -> impl Strategy<Value = Vec<Tok>> {
    let seg = prop_oneof![
        4 => prop::sample::select(LITS.to_vec()).prop_map(|l| Tok::Lit(l.to_owned())),
        2 => Just(Tok::Param),
    ];
    (prop::collection::vec(seg, 0..4), any::<bool>()).prop_map(|(mut segs, proxy)| {
        if proxy {
            segs.push(Tok::Proxy);
        }
        segs
    })
}

/// Segment values: literals of the table (overlaps), fresh ones, an empty one, and ones with
/// IAM wildcard characters (which must be matched literally).
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(LITS.to_vec()).prop_map(str::to_owned),
        3 => prop::sample::select(vec!["42", "dog", "GET", "history"]).prop_map(str::to_owned),
        // The stage's name and verbs inside paths: what a pattern's leading `*` could reach.
        2 => prop::sample::select(vec!["prod", "v1", "POST", "DELETE"]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["", "a*", "?", "*"]).prop_map(str::to_owned),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let verb = prop::sample::select(vec![
        Some("GET"),
        Some("GET"),
        Some("POST"),
        Some("DELETE"),
        None,
    ]);
    prop::collection::vec((verb, template()), 1..9)
        .prop_flat_map(|raw| {
            let mut routes: Vec<(String, Option<&'static str>, Vec<Tok>)> = Vec::new();
            for (v, t) in raw {
                let name = route_name(v, &t);
                let key = (
                    v,
                    t.iter()
                        .map(|x| match x {
                            Tok::Lit(l) => l.clone(),
                            Tok::Param => "{}".into(),
                            Tok::Proxy => "{+}".into(),
                        })
                        .collect::<Vec<_>>(),
                );
                if routes.iter().any(|(_, v2, t2)| {
                    (
                        *v2,
                        t2.iter()
                            .map(|x| match x {
                                Tok::Lit(l) => l.clone(),
                                Tok::Param => "{}".into(),
                                Tok::Proxy => "{+}".into(),
                            })
                            .collect::<Vec<_>>(),
                    ) == key
                }) {
                    continue;
                }
                routes.push((name, v, t));
            }
            let n = routes.len();
            let req = (
                prop::sample::select(vec!["GET", "POST", "DELETE", "PUT"]),
                prop::collection::vec(value(), 0..6),
            );
            (
                Just(routes),
                prop::collection::vec(any::<bool>(), n),
                prop::collection::vec(req, 1..60),
                0..64usize,
                prop::sample::select(vec!["prod", "v1", "$default", "*"]),
                prop::sample::select(vec!["aws", "aws-cn", "aws-us-gov"]),
                (
                    prop::option::weighted(0.3, any::<bool>()),
                    prop::option::weighted(0.4, any::<bool>()),
                ),
            )
        })
        .prop_map(
            |(routes, decisions, requests, target, stage, partition, (connect, default))| Case {
                routes,
                decisions,
                connect,
                default,
                requests,
                target,
                stage,
                partition,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
    #[test]
    fn the_policy_gives_exactly_each_routes_decision(c in case()) {
        check(&c).map_err(TestCaseError::fail)?;
    }
}

/// The route-key forms on a fixed table: a catch-all allowed beside denied routes, and the
/// reverse, in the `$default` stage, for every request as the one that triggered the call.
#[test]
fn route_key_forms_on_a_fixed_table() {
    for (connect, default) in [
        (Some(true), Some(true)),
        (Some(false), Some(true)),
        (Some(true), Some(false)),
        (None, Some(true)),
        (None, Some(false)),
        (Some(true), None),
    ] {
        let c = Case {
            routes: vec![
                (
                    "GET /pets".into(),
                    Some("GET"),
                    vec![Tok::Lit("pets".into())],
                ),
                (
                    "GET /pets/{p1}".into(),
                    Some("GET"),
                    vec![Tok::Lit("pets".into()), Tok::Param],
                ),
                (
                    "ANY /a/{rest+}".into(),
                    None,
                    vec![Tok::Lit("a".into()), Tok::Proxy],
                ),
            ],
            decisions: vec![true, false, true],
            connect,
            default,
            requests: vec![
                ("POST", vec![]),
                ("GET", vec!["pets".into(), "1".into(), "2".into()]),
            ],
            target: 0,
            stage: "$default",
            partition: "aws",
        };
        for target in 0..200 {
            check(&Case {
                target,
                ..c.clone()
            })
            .unwrap();
        }
    }
}

#[test]
fn iam_matcher_semantics() {
    assert!(iam_match("a/*", "a/b/c"));
    assert!(iam_match("a/*", "a/"));
    assert!(!iam_match("a/*", "a"));
    assert!(iam_match("a/?", "a/b"));
    assert!(!iam_match("a/?", "a/bc"));
    assert!(iam_match("*/GET/*", "prod/GET/x"));
    assert!(!iam_match("prod/*/*", "prod/$connect"));
    assert!(!iam_match("prod/*/*", "prod/$default"));
    assert!(iam_match("$default/*", "$default/$default"));
    // A `*` in the subject is an ordinary character; in the pattern it is always a wildcard.
    assert!(iam_match("DELETE/x/*", "DELETE/x/*/a"));
    assert!(!iam_match("DELETE/x/a", "DELETE/x/*"));
}

/// The finding of the security review: with routes `GET /pets` and `POST /{x}/pets` and only
/// `GET /pets` allowed, a console test event (stage `*`) got `Allow …/*/GET/*`, which also
/// matches `…/prod/POST/GET/pets`, a path of the denied route.
#[test]
fn stage_star_policy_allows_a_denied_route_through_the_stage_wildcard() {
    let c = Case {
        routes: vec![
            (
                "GET /pets".into(),
                Some("GET"),
                vec![Tok::Lit("pets".into())],
            ),
            (
                "POST /{p0}/pets".into(),
                Some("POST"),
                vec![Tok::Param, Tok::Lit("pets".into())],
            ),
        ],
        decisions: vec![true, false],
        connect: None,
        default: None,
        requests: vec![
            ("POST", vec!["GET".into(), "pets".into()]),
            ("GET", vec!["pets".into()]),
        ],
        target: 0,
        stage: "*",
        partition: "aws",
    };
    for target in 0..8 {
        check(&Case {
            target,
            ..c.clone()
        })
        .unwrap();
    }
}
