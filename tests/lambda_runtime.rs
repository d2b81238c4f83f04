//! The same binary under the real Lambda runtime API (`cargo lambda watch`), invoked with the
//! AWS sample authorizer events carrying real tokens; the decision line names the call by the
//! runtime's request id (the response context carries it too), and at Lambda's `TRACE` level
//! no part of a token reaches the log.
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

/// The decision lines the function wrote, parsed (the emulator prints them among its own).
fn decision_lines(lambda: &LambdaEmulator, n: usize) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let lines: Vec<serde_json::Value> = lambda
            .log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                l.find('{')
                    .and_then(|at| serde_json::from_str(&l[at..]).ok())
            })
            .filter(|v: &serde_json::Value| v["event"] == "decision")
            .collect();
        if lines.len() >= n || std::time::Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_decision_id_is_the_lambda_request_id_and_trace_logs_no_token() {
    let mut env = common::demo_env();
    // Lambda's own log controls at their most verbose: lambda_runtime logs every raw event
    // at TRACE, and an event carries the token.
    env.push(("AWS_LAMBDA_LOG_LEVEL".into(), "TRACE".into()));
    env.push(("AWS_LAMBDA_LOG_FORMAT".into(), "JSON".into()));
    let lambda = LambdaEmulator::start(&env);
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] }));
    let mut ev = fixture("example-apigw-custom-auth-request.json");
    ev["authorizationToken"] = format!("Bearer {reader}").into();
    ev["methodArn"] =
        "arn:aws:execute-api:us-west-2:123456789012:ymy8tbxw7b/prod/GET/pets/42".into();
    let first = lambda.invoke(&ev).expect("a policy");
    let second = lambda.invoke(&ev).expect("a policy");
    ev["authorizationToken"] = format!("Bearer {reader}x").into();
    assert_eq!(lambda.invoke(&ev), Err("Unauthorized".to_owned()));

    let lines = decision_lines(&lambda, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (answer, line) in [&first, &second].into_iter().zip(&lines) {
        let id = answer["context"]["decisionId"].as_str().unwrap();
        assert_eq!(line["decision_id"], id, "{line}");
        // The runtime's request id (a UUID), not an id made up locally.
        assert!(id.len() == 36 && !id.starts_with("local-"), "{id}");
        assert_eq!(line["outcome"], "allow", "{line}");
    }
    assert_ne!(lines[0]["decision_id"], lines[1]["decision_id"]);
    assert_eq!(lines[2]["outcome"], "unauthorized", "{:?}", lines[2]);

    let log = lambda.log.lock().unwrap().join("\n");
    for part in reader.split('.') {
        for start in (0..part.len().saturating_sub(12)).step_by(6) {
            let fragment = &part[start..start + 12];
            assert!(
                !log.contains(fragment),
                "`{fragment}` of the token is in the log"
            );
        }
    }
}
