//! The API Gateway flavours through the real Lambda runtime API (`cargo lambda watch` running
//! this crate's binary): the AWS sample events for HTTP API payload 1.0, 2.0 with and without
//! identity sources and WebSocket `$connect`, with real tokens, answered in the shape each
//! flavour needs. One emulator, with `CEDARGATE_RESPONSE=simple`: payload 2.0 events get simple
//! responses, and every other flavour — which cannot take one — still gets its IAM policy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{
    allows, arn, env_for, fixture, gateway_bundle, mint, resources, rest_token_event, v1_event,
    v2_event, v2_uncached_event, ws_arn, ws_event, LambdaEmulator, GOLD_KEY, PLAN, ROLES,
};
use serde_json::json;

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
