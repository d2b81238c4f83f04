//! Shared by the API Gateway flavour tests: the AWS sample authorizer events with real tokens
//! put in where API Gateway puts them, and a bundle with the WebSocket and HTTP API catch-all
//! routes added to the demo API.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::common::{bundle_copy, demo_env, fixture, ROLES};

pub const API: &str = "abcdef123";
pub const PLAN: &str = "https://cedargate.example/plan";
pub const GOLD_KEY: &str = "cedargate-gold-tier-key-0001";
pub const STANDARD_KEY: &str = "cedargate-standard-tier-key-0001";

/// `arn:aws:execute-api:…:abcdef123/{stage}/{resource}`
pub fn arn(stage: &str, resource: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:123456789012:{API}/{stage}/{resource}")
}

/// The demo bundle plus `$connect` (readers may connect) and `$default` (editors may use the
/// catch-all), in a temporary directory.
pub fn gateway_bundle(name: &str) -> PathBuf {
    let dir = bundle_copy(name);
    std::fs::write(
        dir.join("schema/gateway.cedarschema"),
        "// The WebSocket connect route and the HTTP API catch-all route.\n\
         action \"$connect\" appliesTo { principal: [User], resource: [Api], context: RequestContext };\n\
         action \"$default\" appliesTo { principal: [User], resource: [Api], context: RequestContext };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/gateway.cedar"),
        "@id(\"readers-connect\")\n\
         permit (principal in Role::\"reader\", action == Action::\"$connect\", resource);\n\n\
         @id(\"editors-catch-all\")\n\
         permit (principal in Role::\"editor\", action == Action::\"$default\", resource);\n",
    )
    .unwrap();
    dir
}

/// The demo environment on a bundle directory, with usage keys and the roles in the context.
pub fn env_for(bundle: &std::path::Path, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = demo_env()
        .into_iter()
        .filter(|(k, _)| k != "CEDARGATE_POLICY_SOURCE")
        .collect();
    env.push((
        "CEDARGATE_POLICY_SOURCE".into(),
        bundle.display().to_string(),
    ));
    env.push(("CEDARGATE_CONTEXT_CLAIMS".into(), format!("sub,{ROLES}")));
    env.push(("CEDARGATE_USAGE_KEY_CLAIM".into(), PLAN.into()));
    env.push((
        "CEDARGATE_USAGE_KEY_MAP".into(),
        format!("gold={GOLD_KEY},*={STANDARD_KEY}"),
    ));
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    env
}

/// The REST TOKEN sample with a real token.
pub fn token_event(token: &str, resource: &str) -> Value {
    let mut ev = fixture("example-apigw-custom-auth-request.json");
    ev["authorizationToken"] = format!("Bearer {token}").into();
    ev["methodArn"] = arn("prod", resource).into();
    ev
}

/// The HTTP API payload 1.0 sample: identity source `$request.header.Authorization`.
pub fn v1_event(token: &str, resource: &str, route_key: &str) -> Value {
    let mut ev = fixture("example-apigw-v2-custom-authorizer-v1-request.json");
    let bearer = format!("Bearer {token}");
    ev["headers"]["Authorization"] = bearer.clone().into();
    ev["identitySource"] = bearer.clone().into();
    ev["authorizationToken"] = bearer.into();
    ev["methodArn"] = arn("test", resource).into();
    ev["requestContext"]["routeKey"] = route_key.into();
    ev
}

/// The HTTP API payload 2.0 sample with identity sources `$request.header.Authorization` and,
/// with `route_keyed`, `$context.routeKey`; the `$default` stage.
pub fn v2_event(token: &str, resource: &str, route_key: &str, route_keyed: bool) -> Value {
    let mut ev = fixture("example-apigw-v2-custom-authorizer-v2-request.json");
    let bearer = format!("Bearer {token}");
    ev["headers"]["authorization"] = bearer.clone().into();
    ev["identitySource"] = if route_keyed {
        json!([bearer, route_key])
    } else {
        json!([bearer])
    };
    ev["routeArn"] = arn("$default", resource).into();
    ev["routeKey"] = route_key.into();
    ev["requestContext"]["routeKey"] = route_key.into();
    ev
}

/// The HTTP API payload 2.0 sample of an authorizer without identity sources (no cache).
pub fn v2_uncached_event(token: &str, resource: &str, route_key: &str) -> Value {
    let mut ev =
        fixture("example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json");
    ev["headers"]["authorization"] = format!("Bearer {token}").into();
    ev["routeArn"] = arn("$default", resource).into();
    ev["routeKey"] = route_key.into();
    ev["requestContext"]["routeKey"] = route_key.into();
    ev
}

/// The WebSocket `$connect` sample with the token in the query string, as browsers send it.
pub fn ws_event(token: &str) -> Value {
    let mut ev = fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
    ev["queryStringParameters"]["token"] = token.into();
    ev["methodArn"] =
        format!("arn:aws:execute-api:eu-west-1:123456789012:{API}/test/$connect").into();
    ev
}

/// The `$connect` ARN of [`ws_event`].
pub fn ws_arn() -> String {
    format!("arn:aws:execute-api:eu-west-1:123456789012:{API}/test/$connect")
}

/// Every resource of a policy document, flattened.
pub fn resources(doc: &Value) -> Vec<String> {
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["Resource"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_owned())
        .collect()
}
