//! API Gateway authorizer events: a minimal REST TOKEN event for the demo API (`demoapi`,
//! stage `prod`), and the AWS sample events (`../shared/fixtures/aws-events`) of API
//! `abcdef123` with real tokens put in where API Gateway puts them — REST TOKEN and REQUEST,
//! HTTP API payload 1.0 and 2.0 (with and without identity sources), WebSocket `$connect`.

use serde_json::{json, Value};

use super::paths::fixture;

/// The API id of the sample-based events.
pub const API: &str = "abcdef123";

/// A REST TOKEN event for the demo API.
pub fn token_event(token: &str, verb_path: &str) -> Value {
    json!({
        "type": "TOKEN",
        "authorizationToken": format!("Bearer {token}"),
        "methodArn": demo_arn(verb_path),
    })
}

/// `arn:aws:execute-api:…:demoapi/prod/{verb_path}`
pub fn demo_arn(verb_path: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:123456789012:demoapi/prod/{verb_path}")
}

/// `arn:aws:execute-api:…:abcdef123/{stage}/{resource}`
pub fn arn(stage: &str, resource: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:123456789012:{API}/{stage}/{resource}")
}

/// The REST TOKEN sample with a real token, on the `prod` stage.
pub fn rest_token_event(token: &str, resource: &str) -> Value {
    let mut ev = fixture("example-apigw-custom-auth-request.json");
    ev["authorizationToken"] = format!("Bearer {token}").into();
    ev["methodArn"] = arn("prod", resource).into();
    ev
}

/// The REST REQUEST sample with a real token in its `Authorization` header, on the `prod`
/// stage, from `source_ip`.
pub fn rest_request_event(token: &str, resource: &str, source_ip: &str) -> Value {
    let mut ev = fixture("example-apigw-custom-auth-request-type-request.json");
    let bearer = format!("Bearer {token}");
    ev["headers"]["Authorization"] = bearer.clone().into();
    ev["multiValueHeaders"]["Authorization"] = json!([bearer]);
    ev["methodArn"] = arn("prod", resource).into();
    ev["requestContext"]["identity"]["sourceIp"] = source_ip.into();
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
    ev["methodArn"] = ws_arn().into();
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
