//! Differential test on the reference workloads: for every event of `events.ndjson`, the
//! policy `cedargate invoke` returns must agree — route by route, on a concrete path of every
//! route — with Cedar's decision for that route computed here independently: entities built by
//! hand from the workload's documented claim mapping, the full policy set, no slicing.
//!
//! `demo`: every event is checked. `large`: every event runs through `invoke` (and every
//! response is checked for shape and size), and the events of a deterministic sample of
//! principals are checked against the full-set oracle (Cedar scans all 10,001 policies for each
//! of the 512 routes, about a second per principal here); `CEDARGATE_DIFF_PRINCIPALS=all`
//! checks every principal (minutes in a release build).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::str::FromStr;

use base64::Engine;
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema,
};
use cedargate::routes::{Method, Route, RouteTable, Segment};
use serde_json::Value;

struct Oracle {
    schema: Schema,
    policies: PolicySet,
    actions: Entities,
    routes: Vec<(String, Route)>,
    table: RouteTable,
}

impl Oracle {
    fn new(dir: &Path) -> Oracle {
        let text = std::fs::read_to_string(dir.join("schema/api.cedarschema")).unwrap();
        let (schema, _) = Schema::from_cedarschema_str(&text).unwrap();
        let policies = PolicySet::from_str(
            &std::fs::read_to_string(dir.join("policies/generated.cedar")).unwrap(),
        )
        .unwrap();
        let actions = schema.action_entities().unwrap();
        let mut routes: Vec<(String, Route)> = schema
            .actions()
            .filter_map(|a| {
                Route::parse(a.id().unescaped())
                    .ok()
                    .flatten()
                    .map(|r| (a.id().unescaped().to_owned(), r))
            })
            .collect();
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        let table = RouteTable::new(routes.iter().map(|(_, r)| r.clone()).collect()).unwrap();
        Oracle {
            schema,
            policies,
            actions,
            routes,
            table,
        }
    }

    /// Cedar's decision for every route, with the whole policy set.
    fn decide(&self, claims: &Value, api: &str, stage: &str) -> Vec<bool> {
        let user_t = EntityTypeName::from_str("User").unwrap();
        let role_t = EntityTypeName::from_str("Role").unwrap();
        let api_t = EntityTypeName::from_str("Api").unwrap();
        let user = EntityUid::from_type_name_and_id(
            user_t,
            EntityId::new(claims["sub"].as_str().unwrap()),
        );
        let parents: HashSet<EntityUid> = claims["roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|r| {
                        EntityUid::from_type_name_and_id(
                            role_t.clone(),
                            EntityId::new(r.as_str().unwrap()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut attrs = HashMap::new();
        let scopes = claims["scope"].as_str().unwrap_or("");
        attrs.insert(
            "scopes".to_owned(),
            RestrictedExpression::new_set(
                scopes
                    .split(' ')
                    .filter(|s| !s.is_empty())
                    .map(|s| RestrictedExpression::new_string(s.to_owned())),
            ),
        );
        if let Some(e) = claims["email"].as_str() {
            attrs.insert(
                "email".to_owned(),
                RestrictedExpression::new_string(e.to_owned()),
            );
        }
        let resource = EntityUid::from_type_name_and_id(api_t, EntityId::new(api));
        let entities = self
            .actions
            .clone()
            .add_entities(
                [
                    Entity::new(user.clone(), attrs, parents).unwrap(),
                    Entity::new(
                        resource.clone(),
                        HashMap::from([(
                            "stage".to_owned(),
                            RestrictedExpression::new_string(stage.to_owned()),
                        )]),
                        HashSet::new(),
                    )
                    .unwrap(),
                ],
                Some(&self.schema),
            )
            .unwrap();
        let authorizer = Authorizer::new();
        self.routes
            .iter()
            .map(|(name, _)| {
                let action = EntityUid::from_type_name_and_id(
                    EntityTypeName::from_str("Action").unwrap(),
                    EntityId::new(name),
                );
                let req = Request::new(
                    user.clone(),
                    action,
                    resource.clone(),
                    Context::empty(),
                    Some(&self.schema),
                )
                .unwrap();
                authorizer
                    .is_authorized(&req, &self.policies, &entities)
                    .decision()
                    == Decision::Allow
            })
            .collect()
    }
}

/// A concrete request path for a route: parameters `7`, a proxy two segments.
fn concrete(route: &Route) -> String {
    let mut p = String::new();
    for s in route.segments() {
        p.push('/');
        match s {
            Segment::Literal(l) => p.push_str(l),
            Segment::Param(_) => p.push('7'),
            Segment::Proxy(_) => p.push_str("a/b"),
        }
    }
    if p.is_empty() {
        p.push('/');
    }
    p
}

fn claims_of(event: &Value) -> Value {
    let token = event["authorizationToken"]
        .as_str()
        .unwrap()
        .trim_start_matches("Bearer ");
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn invoke_all(dir: &Path) -> (Vec<Value>, Vec<Value>) {
    let workload: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("workload.json")).unwrap()).unwrap();
    let events: Vec<Value> = std::fs::read_to_string(dir.join("events.ndjson"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["invoke", "--events"])
        .arg(dir.join("events.ndjson"))
        .env("CEDARGATE_ISSUER", workload["issuer"].as_str().unwrap())
        .env("CEDARGATE_AUDIENCE", workload["audience"].as_str().unwrap())
        .env("CEDARGATE_JWKS_FILE", dir.join("jwks.json"))
        .env("CEDARGATE_POLICY_SOURCE", dir)
        .env("CEDARGATE_POLICY_LOAD_TIMEOUT_MS", "600000")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let responses: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(responses.len(), events.len(), "one answer per event");
    (events, responses)
}

fn sizes(responses: &[Value]) -> Vec<usize> {
    let mut s: Vec<usize> = responses.iter().map(|r| r.to_string().len()).collect();
    s.sort_unstable();
    s
}

/// Checks the given events; returns how many (event, route) pairs were compared.
fn check(
    oracle: &Oracle,
    events: &[Value],
    responses: &[Value],
    only: Option<&HashSet<String>>,
) -> usize {
    let mut cache: HashMap<String, Vec<bool>> = HashMap::new();
    let mut compared = 0;
    for (event, response) in events.iter().zip(responses) {
        let token = event["authorizationToken"].as_str().unwrap().to_owned();
        if only.is_some_and(|o| !o.contains(&token)) {
            continue;
        }
        assert!(
            response.get("error").is_none(),
            "valid workload tokens get a policy: {response}"
        );
        let arn = event["methodArn"].as_str().unwrap();
        let (prefix, rest) = arn.split_once(":execute-api:").unwrap();
        let parts: Vec<&str> = rest.splitn(3, ':').collect();
        let (api, tail) = parts[2].split_once('/').unwrap();
        let stage = tail.split('/').next().unwrap();
        let base = format!(
            "{prefix}:execute-api:{}:{}:{api}/{stage}/",
            parts[0], parts[1]
        );
        let claims = claims_of(event);
        let decisions = cache
            .entry(token)
            .or_insert_with(|| oracle.decide(&claims, api, stage));
        let doc = &response["policyDocument"];
        for (i, (name, route)) in oracle.routes.iter().enumerate() {
            let cedargate::routes::RouteKind::Http { method, .. } = &route.kind else {
                continue;
            };
            let verb = match method {
                cedargate::routes::RouteMethod::One(m) => *m,
                cedargate::routes::RouteMethod::Any => Method::parse("GET").unwrap(),
            };
            let path = concrete(route);
            assert_eq!(
                oracle.table.route(verb, &path).map(|r| &oracle.routes[r].0),
                Some(name),
                "{path} routes to {name}"
            );
            let resource = format!("{base}{verb}/{}", path.trim_start_matches('/'));
            assert_eq!(
                common::allows(doc, &resource),
                decisions[i],
                "route `{name}` for {} at {resource}: policy {doc}",
                claims["sub"]
            );
            compared += 1;
        }
    }
    compared
}

#[test]
fn demo_workload_agrees_with_cedar_on_every_route_and_fits_8kb() {
    let dir = common::shared().join("bench/demo");
    let oracle = Oracle::new(&dir);
    let (events, responses) = invoke_all(&dir);
    let compared = check(&oracle, &events, &responses, None);
    assert_eq!(compared, events.len() * oracle.routes.len());
    let s = sizes(&responses);
    eprintln!(
        "demo: {} responses, size median {} max {}",
        s.len(),
        s[s.len() / 2],
        s[s.len() - 1]
    );
    assert!(
        *s.last().unwrap() < 8 * 1024,
        "every demo response is under 8 KB"
    );
}

#[test]
fn large_workload_agrees_with_cedar() {
    let dir = common::shared().join("bench/large");
    let oracle = Oracle::new(&dir);
    let (events, responses) = invoke_all(&dir);
    // Every response has the shape API Gateway needs.
    for r in &responses {
        assert!(
            r["principalId"].is_string() && r["policyDocument"]["Statement"].is_array(),
            "{r}"
        );
    }
    let mut tokens: Vec<String> = Vec::new();
    for e in &events {
        let t = e["authorizationToken"].as_str().unwrap().to_owned();
        if !tokens.contains(&t) {
            tokens.push(t);
        }
    }
    let sample: HashSet<String> = match std::env::var("CEDARGATE_DIFF_PRINCIPALS").as_deref() {
        Ok("all") => tokens.iter().cloned().collect(),
        Ok(n) => tokens.iter().take(n.parse().unwrap()).cloned().collect(),
        Err(_) => tokens.iter().take(8).cloned().collect(),
    };
    let compared = check(&oracle, &events, &responses, Some(&sample));
    assert!(
        compared >= sample.len() * oracle.routes.len(),
        "compared {compared}"
    );
    let s = sizes(&responses);
    let over = s.iter().filter(|n| **n > 8 * 1024).count();
    let line = format!(
        "large: {} responses ({} principals checked against the full policy set, {compared} route decisions): size median {} max {} over 8 KB {} ({:.1}%)",
        s.len(),
        sample.len(),
        s[s.len() / 2],
        s[s.len() - 1],
        over,
        100.0 * over as f64 / s.len() as f64
    );
    eprintln!("{line}");
    let _ = std::io::stderr().flush();
}
