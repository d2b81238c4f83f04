//! The same binary under the real Lambda runtime API (`cargo lambda watch`), invoked with the
//! AWS sample authorizer events carrying real tokens.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{allows, fixture, mint, LambdaEmulator, ROLES};
use serde_json::json;

#[test]
fn token_and_request_events_through_the_lambda_runtime() {
    let lambda = LambdaEmulator::start(&common::demo_env());
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"], "scope": "openid profile" }));

    // REST TOKEN event (the sample's console-test ARN: stage `*`, root path).
    let mut ev = fixture("example-apigw-custom-auth-request.json");
    ev["authorizationToken"] = format!("Bearer {reader}").into();
    ev["methodArn"] =
        "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/prod/GET/pets/42".into();
    let resp = lambda.invoke(&ev).expect("a policy for a valid token");
    assert_eq!(resp["principalId"], "auth0|rita");
    let doc = &resp["policyDocument"];
    let arn =
        |tail: &str| format!("arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/prod/{tail}");
    assert!(allows(doc, &arn("GET/pets/42")));
    assert!(
        allows(doc, &arn("GET/pets")),
        "one policy for every route: {doc}"
    );
    assert!(!allows(doc, &arn("POST/pets")), "{doc}");
    assert!(!allows(doc, &arn("DELETE/pets/42")), "{doc}");
    assert!(resp["context"]["policyRevision"].is_string());

    // REST REQUEST event with the token in the Authorization header.
    let mut ev = fixture("example-apigw-custom-auth-request-type-request.json");
    ev["headers"]["Authorization"] = format!("Bearer {reader}").into();
    let resp = lambda.invoke(&ev).expect("a policy");
    let doc = &resp["policyDocument"];
    // The sample's route `GET /request` is not in the demo schema: it is denied explicitly.
    assert!(!allows(
        doc,
        "arn:aws:execute-api:us-east-1:123456789012:s4x3opwd6i/test/GET/request"
    ));
    assert!(allows(
        doc,
        "arn:aws:execute-api:us-east-1:123456789012:s4x3opwd6i/test/GET/pets/1"
    ));

    // Missing, malformed, forged and expired tokens: exactly `Unauthorized` (API Gateway's 401).
    let mut ev = fixture("example-apigw-custom-auth-request.json");
    for bad in [
        "allow".to_owned(),
        String::new(),
        format!("Bearer {reader}x"),
        format!("Bearer {}", mint(json!({ "exp": common::now() - 3600 }))),
        format!("Bearer {}", mint(json!({ "aud": "https://another.api" }))),
    ] {
        ev["authorizationToken"] = bad.into();
        assert_eq!(lambda.invoke(&ev), Err("Unauthorized".to_owned()));
    }
    let mut ev = fixture("example-apigw-custom-auth-request-type-request.json");
    ev["headers"]
        .as_object_mut()
        .unwrap()
        .remove("Authorization");
    assert_eq!(lambda.invoke(&ev), Err("Unauthorized".to_owned()));
}
