//! The API Gateway flavours through the real Lambda runtime API (`cargo lambda watch` running
//! this crate's binary): the AWS sample events for HTTP API payload 1.0, 2.0 with and without
//! identity sources and WebSocket `$connect`, with real tokens, answered in the shape each
//! flavour needs. One emulator, with `CEDARGATE_RESPONSE=simple`: payload 2.0 events get simple
//! responses, and every other flavour — which cannot take one — still gets its IAM policy.
//!
//! And the same events through every way in to the one core: the Lambda runtime, a warm
//! `cedargate invoke`, `cedargate explain --event --json` and `serve`'s `POST
//! /_cedargate/invoke` answer each of them identically, `Unauthorized` included.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{
    add_gateway_routes, allows, arn, env_for, fixture, gateway_bundle, mint, resources,
    rest_request_event, rest_token_event, v1_event, v2_event, v2_uncached_event, workdir, ws_arn,
    ws_event, InvokePipe, LambdaEmulator, Serve, GOLD_KEY, PLAN, ROLES,
};
use serde_json::{json, Value};

#[test]
fn every_flavour_through_the_lambda_runtime() {
    let bundle = gateway_bundle("lambda");
    let lambda = LambdaEmulator::start(&env_for(&bundle, &[("CEDARGATE_RESPONSE", "simple")]));
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"], PLAN: "gold" }));
    let nobody = mint(json!({ "sub": "auth0|nobody", ROLES: [] }));

    // HTTP API payload 2.0, identity sources `Authorization` and `$context.routeKey`.
    let r = lambda
        .invoke(&v2_event(&reader, "GET/pets/42", "GET /pets/{petId}", true))
        .unwrap();
    assert_eq!(
        r,
        json!({"isAuthorized": true, "context": r["context"].clone()})
    );
    assert_eq!(r["context"][ROLES], json!(["reader"]), "{r}");
    let r = lambda
        .invoke(&v2_event(
            &reader,
            "DELETE/pets/42",
            "DELETE /pets/{petId}",
            true,
        ))
        .unwrap();
    assert_eq!(r["isAuthorized"], false, "{r}");
    // Payload 2.0 without identity sources (no cache): simple answers are right.
    let r = lambda
        .invoke(&v2_uncached_event(&reader, "GET/pets", "GET /pets"))
        .unwrap();
    assert_eq!(r["isAuthorized"], true, "{r}");
    // Identity sources without the route key: refused, fail closed.
    let r = lambda
        .invoke(&v2_event(&reader, "GET/pets", "GET /pets", false))
        .unwrap();
    assert_eq!(r["isAuthorized"], false, "{r}");

    // HTTP API payload 1.0: an IAM policy for every route, flat context, no usage key.
    let r = lambda
        .invoke(&v1_event(&reader, "GET/pets/42", "GET /pets/{petId}"))
        .unwrap();
    let doc = &r["policyDocument"];
    assert!(allows(doc, &arn("test", "GET/pets/42")), "{doc}");
    assert!(allows(doc, &arn("test", "GET/pets")), "{doc}");
    assert!(!allows(doc, &arn("test", "POST/pets")), "{doc}");
    assert_eq!(r["context"][ROLES], json!("[\"reader\"]"), "{r}");
    assert!(r.get("usageIdentifierKey").is_none(), "{r}");

    // WebSocket `$connect`: the token in the query string; the policy names `$connect` only.
    let r = lambda.invoke(&ws_event(&reader)).unwrap();
    assert_eq!(resources(&r["policyDocument"]), vec![ws_arn()], "{r}");
    assert!(allows(&r["policyDocument"], &ws_arn()), "{r}");
    assert_eq!(r["usageIdentifierKey"], GOLD_KEY, "{r}");
    let r = lambda.invoke(&ws_event(&nobody)).unwrap();
    assert!(!allows(&r["policyDocument"], &ws_arn()), "{r}");

    // REST TOKEN: a policy and the caller's usage plan key.
    let r = lambda
        .invoke(&rest_token_event(&reader, "GET/pets"))
        .unwrap();
    assert!(
        allows(&r["policyDocument"], &arn("prod", "GET/pets")),
        "{r}"
    );
    assert_eq!(r["usageIdentifierKey"], GOLD_KEY, "{r}");

    // Missing and bad tokens in every flavour: the function fails with exactly `Unauthorized`.
    for ev in [
        fixture("example-apigw-v2-custom-authorizer-v1-request.json"),
        fixture("example-apigw-v2-custom-authorizer-v2-request.json"),
        fixture("example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json"),
        fixture("example-apigw-v2-custom-authorizer-websocket-request.json"),
        v2_event(&format!("{reader}x"), "GET/pets", "GET /pets", true),
        ws_event(&mint(json!({ "exp": common::now() - 3600 }))),
    ] {
        assert_eq!(lambda.invoke(&ev), Err("Unauthorized".to_owned()), "{ev}");
    }
    drop(lambda);
    let _ = std::fs::remove_dir_all(&bundle);
}

/// `cedargate explain --event FILE --json` with `env`: its `response`, the Lambda's answer.
fn explained(env: &[(String, String)], event: &Value, dir: &std::path::Path, n: usize) -> Value {
    let file = dir.join(format!("event-{n}.json"));
    std::fs::write(&file, event.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["explain", "--json", "--event"])
        .arg(&file)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("CEDARGATE_LOG", "error")
        .output()
        .unwrap();
    // 0: allowed, 2: denied or 401; anything else is a failure of the command itself.
    assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "explain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    doc["response"].clone()
}

#[test]
fn every_way_in_gives_the_lambdas_answer_for_every_flavour() {
    let bundle = gateway_bundle("agree");
    let extra = [("CEDARGATE_RESPONSE", "simple")];
    let env = env_for(&bundle, &extra);
    let lambda = LambdaEmulator::start(&env);
    let mut pipe = InvokePipe::start(&env);
    // `serve` in its own copy of the same bundle, trusting the same issuer and keys.
    let served = workdir("agree");
    add_gateway_routes(&served);
    let serve_env: Vec<(String, String)> = env_for(&served, &extra)
        .into_iter()
        .filter(|(k, _)| k != "CEDARGATE_POLICY_SOURCE")
        .collect();
    let serve_env: Vec<(&str, &str)> = serve_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let serve = Serve::start_in_env(served, &[], &serve_env);
    let http = reqwest::blocking::Client::new();

    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"], PLAN: "gold" }));
    let editor = mint(json!({ "sub": "auth0|eddie", ROLES: ["editor"] }));
    let nobody = mint(json!({ "sub": "auth0|nobody", ROLES: [] }));
    let expired =
        mint(json!({ "sub": "auth0|old", ROLES: ["reader"], "exp": common::now() - 3600 }));
    let mut events = Vec::new();
    for token in [&reader, &editor, &nobody] {
        events.extend([
            rest_token_event(token, "GET/pets"),
            rest_token_event(token, "DELETE/pets/7"),
            rest_request_event(token, "GET/pets/42", "198.51.100.7"),
            // The demo bundle forbids everything from this address.
            rest_request_event(token, "GET/pets/42", "203.0.113.66"),
            v1_event(token, "POST/pets", "POST /pets"),
            v2_event(token, "GET/pets/42", "GET /pets/{petId}", true),
            v2_event(token, "GET/pets", "GET /pets", false),
            v2_uncached_event(token, "DELETE/pets/1", "DELETE /pets/{petId}"),
            // The HTTP API catch-all route.
            v2_event(token, "PATCH/anything/else", "$default", true),
            ws_event(token),
        ]);
    }
    events.extend([
        rest_token_event(&expired, "GET/pets"),
        rest_token_event(&format!("{reader}x"), "GET/pets"),
        v2_event(&expired, "GET/pets", "GET /pets", true),
        fixture("example-apigw-custom-auth-request-type-request.json"),
        fixture("example-apigw-v2-custom-authorizer-v1-request.json"),
        fixture("example-apigw-v2-custom-authorizer-v2-request.json"),
        fixture("example-apigw-v2-custom-authorizer-websocket-request.json"),
    ]);

    let scratch = common::fresh_dir("agree-events");
    let mut kinds = std::collections::BTreeSet::new();
    for (n, event) in events.iter().enumerate() {
        let mut from_lambda = match lambda.invoke(event) {
            Ok(r) => r,
            Err(e) => {
                assert_eq!(e, "Unauthorized", "{event}");
                json!({"error": "Unauthorized"})
            }
        };
        let mut from_invoke = pipe.send(event);
        let from_explain = explained(&env, event, &scratch, n);
        let mut from_serve: Value = http
            .post(serve.url("/_cedargate/invoke"))
            .body(event.to_string())
            .send()
            .unwrap()
            .json()
            .unwrap();
        // Each call has its own decision id (the Lambda's request id, or one made locally);
        // `explain` makes no decision and has none. The rest is the same answer.
        let ids: Vec<Option<Value>> = [&mut from_lambda, &mut from_invoke, &mut from_serve]
            .into_iter()
            .map(|v| {
                v.get_mut("context")
                    .and_then(Value::as_object_mut)
                    .and_then(|c| c.remove("decisionId"))
            })
            .collect();
        if from_lambda.get("error").is_none() {
            assert!(
                ids.iter()
                    .all(|id| id.as_ref().is_some_and(Value::is_string)),
                "{ids:?}"
            );
            assert_ne!(ids[0], ids[1]);
        }
        assert_eq!(from_invoke, from_lambda, "invoke vs Lambda for {event}");
        assert_eq!(from_explain, from_lambda, "explain vs Lambda for {event}");
        assert_eq!(from_serve, from_lambda, "serve vs Lambda for {event}");
        kinds.insert(if from_lambda.get("error").is_some() {
            "unauthorized"
        } else if from_lambda.get("isAuthorized").is_some() {
            "simple"
        } else {
            "policy"
        });
    }
    // Every kind of answer was compared.
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["policy", "simple", "unauthorized"]
    );
    drop(lambda);
    let _ = std::fs::remove_dir_all(&bundle);
    let _ = std::fs::remove_dir_all(&scratch);
}
