//! Every API Gateway authorizer flavour through `cedargate invoke` (the built binary, the exact
//! handler the Lambda runs): the AWS sample events (HTTP API payload 1.0, 2.0 with and without
//! identity sources, WebSocket `$connect`, REST TOKEN and REQUEST) with real tokens put in
//! where API Gateway puts them, answered with the response shape each flavour needs — IAM
//! policies (route-wide, or `$connect` alone), simple responses where the cache is keyed on the
//! route, flat or nested context, and usage plan keys from claims only. Amazon Cognito tokens
//! against `examples/cognito`: access tokens by `client_id`, ID tokens only with
//! `CEDARGATE_TOKEN_USE=id`. The decision log of real runs: one line per call with its fields
//! and EMF metrics, kept when the level is lowered, and no fragment of a token at any level.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::{
    allows, arn, cognito_access_claims, cognito_env, cognito_id_claims, demo_arn, env_for, fixture,
    gateway_bundle, mint, output_with_stdin, resources, rest_request_event, rest_token_event, sign,
    token_event, v1_event, v2_event, v2_uncached_event, ws_arn, ws_event, InvokePipe, GOLD_KEY,
    PLAN, ROLES, STANDARD_KEY,
};
use serde_json::{json, Value};

fn reader() -> String {
    mint(json!({ "sub": "auth0|rita", ROLES: ["reader"], "scope": "openid" }))
}

fn editor() -> String {
    mint(json!({ "sub": "auth0|ed", ROLES: ["editor"] }))
}

fn nobody() -> String {
    mint(json!({ "sub": "auth0|nobody", ROLES: [] }))
}

/// `cedargate invoke`'s line for a Lambda that fails with `Unauthorized`.
fn unauthorized(v: &Value) -> bool {
    *v == json!({"error": "Unauthorized"})
}

#[test]
fn http_api_payload_1_0_gets_a_route_wide_policy_with_a_flat_context() {
    let bundle = gateway_bundle("v1");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let r = pipe.send(&v1_event(&reader(), "GET/pets/42", "GET /pets/{petId}"));
    assert_eq!(r["principalId"], "auth0|rita", "{r}");
    let doc = &r["policyDocument"];
    assert!(allows(doc, &arn("test", "GET/pets/42")), "{doc}");
    assert!(
        allows(doc, &arn("test", "GET/pets")),
        "one policy for every route: {doc}"
    );
    assert!(!allows(doc, &arn("test", "POST/pets")), "{doc}");
    assert!(!allows(doc, &arn("test", "DELETE/pets/42")), "{doc}");
    // Payload 1.0 needs a flat context: the roles array travels as JSON text.
    assert_eq!(r["context"][ROLES], json!("[\"reader\"]"), "{r}");
    assert!(r["context"]["policyRevision"].is_string());
    // HTTP APIs have no usage plans.
    assert!(r.get("usageIdentifierKey").is_none(), "{r}");

    // Missing and bad tokens: exactly `Unauthorized`.
    let mut ev = v1_event(&reader(), "GET/pets/42", "GET /pets/{petId}");
    ev["headers"]["Authorization"] = "Bearer x.y.z".into();
    ev["authorizationToken"] = "Bearer x.y.z".into();
    assert!(unauthorized(&pipe.send(&ev)));
    let sample = fixture("example-apigw-v2-custom-authorizer-v1-request.json");
    assert!(
        unauthorized(&pipe.send(&sample)),
        "the sample's `user1,123` is no token"
    );
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn http_api_payload_2_0_policy_responses_keep_arrays_and_maps_in_the_context() {
    let bundle = gateway_bundle("v2");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    for ev in [
        v2_event(&reader(), "GET/pets/42", "GET /pets/{petId}", false),
        v2_event(&reader(), "GET/pets/42", "GET /pets/{petId}", true),
        v2_uncached_event(&reader(), "GET/pets/42", "GET /pets/{petId}"),
    ] {
        let r = pipe.send(&ev);
        let doc = &r["policyDocument"];
        // The `$default` stage.
        assert!(allows(doc, &arn("$default", "GET/pets/42")), "{doc}");
        assert!(allows(doc, &arn("$default", "GET/pets/search")), "{doc}");
        assert!(!allows(doc, &arn("$default", "POST/pets")), "{doc}");
        assert!(
            !allows(doc, &arn("test", "GET/pets/42")),
            "another stage: {doc}"
        );
        // Payload 2.0 passes arrays through.
        assert_eq!(r["context"][ROLES], json!(["reader"]), "{r}");
        assert!(r.get("usageIdentifierKey").is_none(), "{r}");
        assert!(r.get("isAuthorized").is_none(), "policy mode: {r}");
    }
    // The samples as they are (no token, or two identity values neither of which is a token).
    for name in [
        "example-apigw-v2-custom-authorizer-v2-request.json",
        "example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json",
    ] {
        assert!(unauthorized(&pipe.send(&fixture(name))), "{name}");
    }
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn http_api_default_route_in_both_arn_forms() {
    let bundle = gateway_bundle("default-route");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    // Editors may use the catch-all, whichever form the route ARN takes.
    let r = pipe.send(&v2_event(&editor(), "$default", "$default", false));
    let doc = &r["policyDocument"];
    for resource in ["$default", "PATCH/anything/else", "GET/", "GET/pets/42/x"] {
        assert!(allows(doc, &arn("$default", resource)), "{resource}: {doc}");
    }
    assert!(allows(doc, &arn("$default", "GET/pets/42")), "{doc}");
    assert!(!allows(doc, &arn("$default", "DELETE/pets/42")), "{doc}");
    // Readers may not. Beside a denied catch-all, `GET /pets/{petId}` cannot be allowed by any
    // pattern (`GET/pets/*` also matches `GET/pets/42/x`, which the catch-all receives): it is
    // left out of the cached policy (a 403 until the cache expires; never an over-allow) and
    // logged, while the request that asked for it is answered exactly.
    for ev in [
        v2_event(&reader(), "$default", "$default", false),
        v2_event(&reader(), "PATCH/anything/else", "$default", false),
        v2_event(&reader(), "GET/pets/42", "GET /pets/{petId}", false),
    ] {
        let asked = ev["routeArn"].as_str().unwrap().to_owned();
        let r = pipe.send(&ev);
        let doc = &r["policyDocument"];
        for resource in ["$default", "PATCH/anything/else", "GET/pets/42/x"] {
            assert!(
                !allows(doc, &arn("$default", resource)),
                "{resource}: {doc}"
            );
        }
        assert!(allows(doc, &arn("$default", "GET/pets")), "{doc}");
        let exact = asked.ends_with("GET/pets/42");
        assert_eq!(allows(doc, &asked), exact, "{asked}: {doc}");
    }
    assert!(pipe.logged("policy_inexpressible"));
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn simple_responses_only_where_the_cache_is_keyed_on_the_route() {
    let bundle = gateway_bundle("simple");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[("CEDARGATE_RESPONSE", "simple")]));
    let ok = pipe.send(&v2_event(
        &reader(),
        "GET/pets/42",
        "GET /pets/{petId}",
        true,
    ));
    assert_eq!(ok["isAuthorized"], true, "{ok}");
    assert!(
        ok.get("policyDocument").is_none() && ok.get("principalId").is_none(),
        "{ok}"
    );
    assert_eq!(ok["context"][ROLES], json!(["reader"]), "{ok}");
    assert_eq!(ok["context"]["principal"], "auth0|rita", "{ok}");
    let no = pipe.send(&v2_event(&reader(), "POST/pets", "POST /pets", true));
    assert_eq!(no["isAuthorized"], false, "{no}");
    // No identity source: API Gateway does not cache, a simple answer is right.
    let r = pipe.send(&v2_uncached_event(
        &reader(),
        "GET/pets/42",
        "GET /pets/{petId}",
    ));
    assert_eq!(r["isAuthorized"], true, "{r}");
    // Identity sources without `$context.routeKey`: the answer would be reused for every
    // route, so it is `false` (fail closed) and the reason is logged.
    let r = pipe.send(&v2_event(
        &reader(),
        "GET/pets/42",
        "GET /pets/{petId}",
        false,
    ));
    assert_eq!(r["isAuthorized"], false, "{r}");
    assert!(pipe.logged("simple_response_refused"));
    // A client cannot fake the route key with a header of its own.
    let mut ev = v2_event(&reader(), "GET/pets/42", "GET /pets/{petId}", false);
    ev["headers"]["x-route"] = "GET /pets/{petId}".into();
    ev["identitySource"] = json!([ev["headers"]["authorization"], "GET /pets/{petId}"]);
    assert_eq!(pipe.send(&ev)["isAuthorized"], false);
    // API Gateway matched another route than the schema's table gives: never allowed.
    let r = pipe.send(&v2_event(
        &reader(),
        "GET/pets/42",
        "DELETE /pets/{petId}",
        true,
    ));
    assert_eq!(r["isAuthorized"], false, "{r}");
    assert!(pipe.logged("route_mismatch"));
    // Parameter names may differ between the API and the schema.
    let r = pipe.send(&v2_event(&reader(), "GET/pets/42", "GET /pets/{id}", true));
    assert_eq!(r["isAuthorized"], true, "{r}");
    // Other flavours cannot take a simple response: they still get policies.
    let r = pipe.send(&v1_event(&reader(), "GET/pets/42", "GET /pets/{petId}"));
    assert!(
        allows(&r["policyDocument"], &arn("test", "GET/pets/42")),
        "{r}"
    );
    let r = pipe.send(&ws_event(&reader()));
    assert!(allows(&r["policyDocument"], &ws_arn()), "{r}");
    let r = pipe.send(&rest_token_event(&reader(), "GET/pets"));
    assert!(
        allows(&r["policyDocument"], &arn("prod", "GET/pets")),
        "{r}"
    );
    // Bad tokens are still `Unauthorized`, not `false`.
    let mut ev = v2_event(&reader(), "GET/pets/42", "GET /pets/{petId}", true);
    ev["headers"]["authorization"] = "Bearer nope".into();
    assert!(unauthorized(&pipe.send(&ev)));
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn websocket_connect_policy_names_the_connect_route_only() {
    let bundle = gateway_bundle("websocket");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let r = pipe.send(&ws_event(&reader()));
    assert_eq!(r["principalId"], "auth0|rita", "{r}");
    let doc = &r["policyDocument"];
    assert_eq!(resources(doc), vec![ws_arn()], "{doc}");
    assert_eq!(doc["Statement"][0]["Effect"], "Allow", "{doc}");
    assert!(allows(doc, &ws_arn()));
    // A flat context, and the usage plan key (WebSocket APIs have usage plans).
    assert_eq!(r["context"][ROLES], json!("[\"reader\"]"), "{r}");
    assert_eq!(r["usageIdentifierKey"], STANDARD_KEY, "{r}");
    // The other query parameter name, and the header (non-browser clients).
    let mut ev = ws_event(&reader());
    ev["queryStringParameters"]
        .as_object_mut()
        .unwrap()
        .remove("token");
    ev["queryStringParameters"]["access_token"] = reader().into();
    assert!(allows(&pipe.send(&ev)["policyDocument"], &ws_arn()));
    let mut ev = ws_event(&reader());
    ev["queryStringParameters"]
        .as_object_mut()
        .unwrap()
        .remove("token");
    ev["headers"]["Authorization"] = format!("Bearer {}", reader()).into();
    assert!(allows(&pipe.send(&ev)["policyDocument"], &ws_arn()));
    // Denied callers get an explicit Deny for `$connect`.
    let r = pipe.send(&ws_event(&nobody()));
    let doc = &r["policyDocument"];
    assert_eq!(resources(doc), vec![ws_arn()], "{doc}");
    assert_eq!(doc["Statement"][0]["Effect"], "Deny", "{doc}");
    // No token, a bad token: `Unauthorized`.
    let sample = fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
    assert!(unauthorized(&pipe.send(&sample)));
    let mut ev = ws_event("not-a-token");
    ev["queryStringParameters"]["token"] = "not-a-token".into();
    assert!(unauthorized(&pipe.send(&ev)));
    let _ = std::fs::remove_dir_all(&bundle);

    // A bundle without `$connect` (the repo's demo API) never lets anyone connect.
    let mut demo = InvokePipe::start(&common::demo_env());
    let r = demo.send(&ws_event(&reader()));
    assert!(!allows(&r["policyDocument"], &ws_arn()), "{r}");
}

#[test]
fn usage_keys_come_from_claims_never_from_the_request() {
    let bundle = gateway_bundle("usage");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let gold = mint(json!({ "sub": "auth0|g", ROLES: ["reader"], PLAN: "gold" }));
    let odd = mint(json!({ "sub": "auth0|o", ROLES: ["reader"], PLAN: "platinum" }));
    let key = |v: Value| v["usageIdentifierKey"].as_str().map(str::to_owned);
    assert_eq!(
        key(pipe.send(&rest_token_event(&gold, "GET/pets"))).as_deref(),
        Some(GOLD_KEY)
    );
    assert_eq!(
        key(pipe.send(&rest_token_event(&odd, "GET/pets"))).as_deref(),
        Some(STANDARD_KEY)
    );
    assert_eq!(
        key(pipe.send(&rest_token_event(&reader(), "GET/pets"))).as_deref(),
        Some(STANDARD_KEY)
    );
    // A REST REQUEST event with the client's own `x-api-key` header: ignored.
    let mut ev = fixture("example-apigw-custom-auth-request-type-request.json");
    ev["headers"]["Authorization"] = format!("Bearer {}", reader()).into();
    ev["headers"]["x-api-key"] = GOLD_KEY.into();
    ev["queryStringParameters"]["api_key"] = GOLD_KEY.into();
    assert_eq!(key(pipe.send(&ev)).as_deref(), Some(STANDARD_KEY));
    // Denied callers carry their key too (API Gateway meters the 403).
    let r = pipe.send(&rest_token_event(&nobody(), "DELETE/pets/1"));
    assert!(!allows(&r["policyDocument"], &arn("prod", "DELETE/pets/1")));
    assert_eq!(key(r).as_deref(), Some(STANDARD_KEY));
    // HTTP APIs have no usage plans: no key.
    assert_eq!(
        key(pipe.send(&v2_event(&gold, "GET/pets", "GET /pets", false))),
        None
    );
    let _ = std::fs::remove_dir_all(&bundle);
}

/// `cedargate invoke` on `input` (stdin): its output lines, parsed, and its log.
fn invoke_stdin(env: &[(String, String)], input: &str) -> (Vec<Value>, String) {
    let out = output_with_stdin(
        std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .arg("invoke")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CEDARGATE_LOG", "info"),
        input.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    (lines, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn invoke_reads_documents_over_several_lines_and_answers_every_one() {
    let bundle = gateway_bundle("stream");
    let env = env_for(&bundle, &[]);
    let first = rest_token_event(&reader(), "GET/pets");
    let second = rest_request_event(&editor(), "POST/pets", "198.51.100.7");
    let input = format!(
        "{}\n\n   \n{}\nnot json at all\n{}\n{{\"type\": \"TOKEN\", \"authorizationToken\":",
        // A document spread over many lines, as a pretty-printer writes it.
        serde_json::to_string_pretty(&first).unwrap(),
        second,
        json!([1, 2, 3]),
    );
    let (lines, log) = invoke_stdin(&env, &input);
    // One answer per document, in order; blank lines are no documents; the garbage line, the
    // array and the unfinished last document are each refused as the Lambda refuses them.
    assert_eq!(lines.len(), 5, "{lines:?}\n{log}");
    assert!(
        allows(&lines[0]["policyDocument"], &arn("prod", "GET/pets")),
        "{}",
        lines[0]
    );
    assert!(
        allows(&lines[1]["policyDocument"], &arn("prod", "POST/pets")),
        "{}",
        lines[1]
    );
    assert!(unauthorized(&lines[2]), "{}", lines[2]);
    assert!(unauthorized(&lines[3]), "{}", lines[3]);
    assert!(unauthorized(&lines[4]), "{}", lines[4]);
    assert!(log.contains("the input ends inside a JSON event"), "{log}");
}

#[test]
fn a_token_in_the_logs_and_a_valid_token_refused_through_one_bad_header_byte() {
    // Security review finding: one header value that a strict parser refuses (a control
    // character) used to refuse the whole event, and the parse error that was logged quoted
    // the value: the whole JWT when it was the `Authorization` header.
    let bundle = gateway_bundle("bad-header");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let token = reader();
    let signature = token.rsplit('.').next().unwrap().to_owned();

    // An unrelated header with a control character: skipped, by name; the token counts.
    for odd in ["a\u{1}b", "tab\tis fine but not\u{0}this", "del\u{7f}"] {
        let mut ev = rest_request_event(&token, "GET/pets", "198.51.100.7");
        ev["headers"]["X-Odd"] = odd.into();
        ev["multiValueHeaders"]["X-Odd"] = json!([odd]);
        let r = pipe.send(&ev);
        assert!(
            allows(&r["policyDocument"], &arn("prod", "GET/pets")),
            "{r}"
        );
    }
    assert!(pipe.logged("x-odd"), "the skipped header is named");

    // The `Authorization` value itself with a control character: no token, so 401, and the
    // value is in no log line.
    let mut ev = rest_request_event(&token, "GET/pets", "198.51.100.7");
    ev["headers"]["Authorization"] = format!("Bearer {token}\u{1}").into();
    assert!(unauthorized(&pipe.send(&ev)));
    // The same in every flavour that reads headers.
    let mut v1 = v1_event(&token, "GET/pets", "GET /pets");
    v1["headers"]["Authorization"] = format!("Bearer {token}\u{7f}").into();
    v1["authorizationToken"] = Value::Null;
    assert!(unauthorized(&pipe.send(&v1)));
    let mut v2 = v2_uncached_event(&token, "GET/pets", "GET /pets");
    v2["headers"]["authorization"] = format!("Bearer \u{1b}{token}").into();
    assert!(unauthorized(&pipe.send(&v2)));
    // A later good event still answers: nothing was lost.
    let r = pipe.send(&rest_request_event(&token, "GET/pets", "198.51.100.7"));
    assert!(
        allows(&r["policyDocument"], &arn("prod", "GET/pets")),
        "{r}"
    );
    assert!(
        pipe.logged("`authorization`"),
        "the skipped header is named"
    );
    let log = pipe.log.lock().unwrap().join("\n");
    assert!(!log.contains(&signature), "a token reached the log:\n{log}");
    assert!(!log.contains("eyJ"), "a token reached the log:\n{log}");
}

#[test]
fn a_policy_reading_a_fact_the_cache_key_lacks_is_logged_once_per_bundle() {
    // The demo bundle forbids one source address (`policies/guardrails.cedar`).
    let bundle = gateway_bundle("unkeyed");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let count = |pipe: &InvokePipe, needle: &str| {
        pipe.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    };
    // Every line an event logs is read once its decision line is.
    let settle = |pipe: &InvokePipe, decisions: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while count(pipe, r#""decision""#) < decisions && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(count(pipe, r#""decision""#), decisions);
    };
    // TOKEN events carry no address: the policy can never see one.
    for _ in 0..3 {
        pipe.send(&rest_token_event(&reader(), "GET/pets"));
    }
    settle(&pipe, 3);
    assert_eq!(count(&pipe, "fact_not_in_cache_key"), 1);
    assert!(pipe.logged("TOKEN events do not carry it"));
    // An HTTP API cache keyed on the header alone reuses an answer across addresses.
    for _ in 0..3 {
        pipe.send(&v2_event(&reader(), "GET/pets", "GET /pets", true));
    }
    settle(&pipe, 6);
    assert!(pipe.logged("not among the authorizer's identity sources"));
    assert_eq!(count(&pipe, "fact_not_in_cache_key"), 2);
    // A REST REQUEST event does not show its identity sources (`validate` checks the
    // template): nothing to say.
    pipe.send(&rest_request_event(&reader(), "GET/pets", "198.51.100.7"));
    settle(&pipe, 7);
    assert_eq!(count(&pipe, "fact_not_in_cache_key"), 2);
}

/// The routes of the demo API (`examples/cognito` has the same ones), as `VERB/path` on the
/// demo ARN, that a Cognito `editor` reaches.
const EDITOR_ALLOWED: [&str; 7] = [
    "POST/api/private",
    "GET/pets",
    "GET/pets/search",
    "GET/pets/42",
    "GET/pets/42/photos/a/b.jpg",
    "POST/pets",
    "PUT/pets/42",
];
const EDITOR_DENIED: [&str; 4] = [
    "DELETE/pets/42",
    "GET/admin/users",
    "GET/admin/settings",
    "GET/reports/7",
];

/// Whether the pipe logs `needle` within a few seconds (the log is read beside the answers).
fn logs_soon(pipe: &InvokePipe, needle: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !pipe.logged(needle) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    pipe.logged(needle)
}

fn assert_editor_routes(r: &Value) {
    let doc = &r["policyDocument"];
    for route in EDITOR_ALLOWED {
        assert!(allows(doc, &demo_arn(route)), "{route}: {doc}");
    }
    for route in EDITOR_DENIED {
        assert!(!allows(doc, &demo_arn(route)), "{route}: {doc}");
    }
}

#[test]
fn a_cognito_access_token_is_accepted_by_its_client_id_and_mapped_by_the_cognito_bundle() {
    let mut pipe = InvokePipe::start(&cognito_env(&[]));
    let access = sign(&cognito_access_claims(json!({})));
    let r = pipe.send(&token_event(&access, "GET/pets/42"));
    assert_eq!(
        r["principalId"], "0b6e1c1a-0000-4000-8000-000000000003",
        "{r}"
    );
    assert_editor_routes(&r);
    // REST context values are flat: the groups array travels as JSON text.
    assert_eq!(r["context"]["cognito:groups"], json!("[\"editor\"]"), "{r}");
    assert_eq!(r["context"]["username"], "editor", "{r}");
    // Resource server scopes: `reports/read` opens the reports, `pets/delete` lets the admin
    // group delete.
    let admin = sign(&cognito_access_claims(json!({
        "cognito:groups": ["admin"],
        "scope": "pets/read pets/write pets/delete reports/read",
    })));
    let doc = pipe.send(&token_event(&admin, "DELETE/pets/42"))["policyDocument"].clone();
    for route in ["DELETE/pets/42", "GET/admin/settings", "GET/reports/7"] {
        assert!(allows(&doc, &demo_arn(route)), "{route}: {doc}");
    }
    // Another app client of the pool, no `token_use`, an `aud` that is not ours beside our
    // `client_id`: refused.
    for refused in [
        json!({"client_id": "7other0client0of0the0pool"}),
        json!({"token_use": null}),
        json!({"aud": "https://other-api.example"}),
    ] {
        let token = sign(&cognito_access_claims(refused.clone()));
        assert!(
            unauthorized(&pipe.send(&token_event(&token, "GET/pets"))),
            "{refused}"
        );
    }
}

#[test]
fn a_cognito_id_token_is_refused_unless_token_use_is_id_and_then_access_tokens_are() {
    let id = sign(&cognito_id_claims(json!({})));
    let access = sign(&cognito_access_claims(json!({})));
    // Access tokens by default: the ID token's `aud` is the client id, but it is an ID token.
    let mut pipe = InvokePipe::start(&cognito_env(&[]));
    assert!(unauthorized(&pipe.send(&token_event(&id, "GET/pets"))));
    assert!(logs_soon(&pipe, "`CEDARGATE_TOKEN_USE` accepts `access`"));
    drop(pipe);
    // ID tokens with `CEDARGATE_TOKEN_USE=id`, and then never access tokens.
    let mut pipe = InvokePipe::start(&cognito_env(&[("CEDARGATE_TOKEN_USE", "id")]));
    let r = pipe.send(&token_event(&id, "GET/pets"));
    assert_eq!(
        r["principalId"], "0b6e1c1a-0000-4000-8000-000000000003",
        "{r}"
    );
    assert_editor_routes(&r);
    assert!(unauthorized(&pipe.send(&token_event(&access, "GET/pets"))));
    assert!(logs_soon(&pipe, "`CEDARGATE_TOKEN_USE` accepts `id`"));
}

#[test]
fn an_invalid_token_use_is_a_configuration_error_that_names_the_variable() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .arg("invoke")
        .envs(cognito_env(&[("CEDARGATE_TOKEN_USE", "access,id")]))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CEDARGATE_TOKEN_USE") && err.contains("`access,id`"),
        "{err}"
    );
}

/// The decision lines `invoke` wrote to stderr, parsed, waiting until there are `n`.
fn decision_lines(pipe: &InvokePipe, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let lines: Vec<Value> = pipe
            .log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "decision")
            .collect();
        if lines.len() >= n || std::time::Instant::now() >= deadline {
            return lines;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn every_call_writes_one_decision_line_with_its_reasons_and_grants() {
    let bundle = gateway_bundle("decision-log");
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let token = reader();
    let allowed = pipe.send(&rest_request_event(&token, "GET/pets/42", "198.51.100.7"));
    let denied = pipe.send(&rest_request_event(&token, "GET/pets/42", "203.0.113.66"));
    let refused = pipe.send(&rest_token_event(&format!("{token}x"), "GET/pets"));
    assert!(unauthorized(&refused));
    let lines = decision_lines(&pipe, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");

    let a = &lines[0];
    assert_eq!(a["outcome"], "allow", "{a}");
    assert_eq!(a["answer"], "allow", "{a}");
    assert_eq!(a["mode"], "enforce", "{a}");
    assert_eq!(a["level"], "INFO", "{a}");
    assert_eq!(a["principal"], "auth0|rita", "{a}");
    assert_eq!(a["flavor"], "request", "{a}");
    assert_eq!(a["route"], "GET /pets/{petId}", "{a}");
    assert_eq!(a["arn"], arn("prod", "GET/pets/42"), "{a}");
    assert!(
        a["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().ends_with("#readers-read")),
        "{a}"
    );
    assert_eq!(a["token_cache"], "miss", "{a}");
    assert_eq!(a["decision_cache"], "miss", "{a}");
    assert_eq!(a["revision"], allowed["context"]["policyRevision"], "{a}");
    // The answer is reused for every route it allows: the line lists them all.
    let granted: Vec<&str> = a["granted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    // (`GET /pets/{petId}` is allowed for the requested path alone: beside `GET /pets/search`
    // the policy cannot allow it for every path exactly, so it is not in the granted set.)
    assert!(
        granted.contains(&"GET /pets") && granted.contains(&"GET /pets/search"),
        "{a}"
    );
    assert!(!granted.contains(&"POST /pets"), "{a}");
    assert!(!granted.contains(&"DELETE /pets/{petId}"), "{a}");
    assert_eq!(a["granted_count"], granted.len(), "{a}");
    assert!(a["latency_us"].is_u64(), "{a}");
    // The decision id is in the response context too, for the backend and the access log.
    assert_eq!(
        allowed["context"]["decisionId"], a["decision_id"],
        "{allowed}"
    );
    assert!(
        a["decision_id"].as_str().unwrap().starts_with("local-"),
        "{a}"
    );

    let d = &lines[1];
    assert_eq!(d["outcome"], "deny", "{d}");
    assert_eq!(d["granted_count"], 0, "{d}");
    assert!(
        d["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().ends_with("#blocked-source-ip")),
        "{d}"
    );
    // The same token again: the verified claims came from the cache.
    assert_eq!(d["token_cache"], "hit", "{d}");
    assert_eq!(
        denied["context"]["decisionId"], d["decision_id"],
        "{denied}"
    );
    assert_ne!(d["decision_id"], a["decision_id"]);

    let u = &lines[2];
    assert_eq!(u["outcome"], "unauthorized", "{u}");
    assert!(
        u["reason"].as_str().unwrap().starts_with("malformed token"),
        "{u}"
    );
    assert!(u.get("principal").is_none(), "{u}");
    assert!(u["token"].as_str().unwrap().len() == 16, "{u}");
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn decision_lines_are_emf_documents() {
    let bundle = gateway_bundle("emf");
    let mut pipe = InvokePipe::start(&env_for(
        &bundle,
        &[("CEDARGATE_METRICS_NAMESPACE", "Test/Cedargate")],
    ));
    pipe.send(&rest_request_event(
        &reader(),
        "GET/pets/42",
        "198.51.100.7",
    ));
    pipe.send(&rest_request_event(
        &reader(),
        "DELETE/pets/42",
        "198.51.100.7",
    ));
    pipe.send(&rest_token_event("x.y.z", "GET/pets"));
    let lines = decision_lines(&pipe, 3);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for (line, outcome) in lines.iter().zip(["Allow", "Deny", "Unauthorized"]) {
        let aws = &line["_aws"];
        assert!(aws["Timestamp"].is_i64(), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 1, "{line}");
        let d = &directives[0];
        assert_eq!(d["Namespace"], "Test/Cedargate", "{line}");
        // Every dimension named has a string value at top level.
        for set in d["Dimensions"].as_array().unwrap() {
            for name in set.as_array().unwrap() {
                assert!(line[name.as_str().unwrap()].is_string(), "{line}");
            }
        }
        // Every metric declared has a number at top level, and a unit CloudWatch knows.
        for m in d["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(line[name].is_number(), "{name} in {line}");
            assert!(
                ["Count", "Milliseconds", "Seconds"].contains(&m["Unit"].as_str().unwrap()),
                "{m}"
            );
        }
        for o in ["Allow", "Deny", "Unauthorized", "Error"] {
            assert_eq!(line[o], u64::from(o == outcome), "{o} in {line}");
        }
        assert!(line["Latency"].is_number(), "{line}");
    }
    assert_eq!(
        lines[0]["BundleAgeSeconds"].as_u64().map(|s| s < 3600),
        Some(true)
    );
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn a_lowered_log_level_keeps_the_decision_lines_and_says_so_in_their_level() {
    let bundle = gateway_bundle("audit-level");
    let env = env_for(&bundle, &[("AWS_LAMBDA_LOG_LEVEL", "ERROR")]);
    // CEDARGATE_LOG says debug; Lambda's level wins, as lambda_runtime's subscriber has it.
    let mut pipe = InvokePipe::start_logging(&env, "debug");
    pipe.send(&rest_request_event(
        &reader(),
        "GET/pets/42",
        "198.51.100.7",
    ));
    pipe.send(&rest_token_event("x.y.z", "GET/pets"));
    let lines = decision_lines(&pipe, 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    // Lambda's own filter (JSON log format) drops lines below its level: these carry it.
    assert!(lines.iter().all(|l| l["level"] == "ERROR"), "{lines:?}");
    // And the diagnostic lines below ERROR are gone.
    let log = pipe.log.lock().unwrap().clone();
    assert!(
        !log.iter()
            .any(|l| l.contains("\"level\":\"INFO\"") || l.contains("\"level\":\"WARN\"")),
        "{log:?}"
    );
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn no_token_or_part_of_one_is_logged_at_any_level() {
    let bundle = gateway_bundle("no-token-in-logs");
    let token = reader();
    let parts: Vec<&str> = token.split('.').collect();
    for (filter, lambda_level) in [
        ("trace", None),
        ("info", Some("DEBUG")),
        ("info", Some("TRACE")),
    ] {
        let mut extra = vec![("CEDARGATE_LOG_PRINCIPAL", "hash")];
        if let Some(l) = lambda_level {
            extra.push(("AWS_LAMBDA_LOG_LEVEL", l));
        }
        let mut pipe = InvokePipe::start_logging(&env_for(&bundle, &extra), filter);
        pipe.send(&rest_request_event(&token, "GET/pets/42", "198.51.100.7"));
        pipe.send(&v1_event(&token, "POST/pets", "POST /pets"));
        pipe.send(&rest_token_event(&format!("{token}x"), "GET/pets"));
        pipe.send(&rest_token_event(
            &format!("{}.{}", parts[0], parts[1]),
            "GET/pets",
        ));
        let lines = decision_lines(&pipe, 4);
        assert_eq!(lines.len(), 4, "{filter} {lambda_level:?}: {lines:?}");
        let log = pipe.log.lock().unwrap().join("\n");
        for part in &parts {
            // Any 12 characters of a part would be a fragment.
            for start in (0..part.len().saturating_sub(12)).step_by(6) {
                let fragment = &part[start..start + 12];
                assert!(
                    !log.contains(fragment),
                    "{filter} {lambda_level:?}: `{fragment}` of the token is in the log"
                );
            }
        }
        // The principal is hashed as asked.
        assert!(!log.contains("auth0|rita"), "{filter} {lambda_level:?}");
        assert!(lines[0]["principal"]
            .as_str()
            .unwrap()
            .starts_with("sha256:"));
    }
    let _ = std::fs::remove_dir_all(&bundle);
}

#[test]
fn without_a_valid_bundle_the_decision_line_says_error_and_counts_the_failed_refresh() {
    let bundle = gateway_bundle("no-valid-bundle");
    std::fs::write(bundle.join("policies/broken.cedar"), "permit (principal,").unwrap();
    let mut pipe = InvokePipe::start(&env_for(&bundle, &[]));
    let r = pipe.send(&rest_request_event(
        &reader(),
        "GET/pets/42",
        "198.51.100.7",
    ));
    assert!(
        !allows(&r["policyDocument"], &arn("prod", "GET/pets/42")),
        "{r}"
    );
    let lines = decision_lines(&pipe, 1);
    let l = &lines[0];
    assert_eq!(
        (&l["outcome"], &l["answer"]),
        (&json!("error"), &json!("error")),
        "{l}"
    );
    assert_eq!(l["reason"], "no valid policy bundle", "{l}");
    assert_eq!(l["Error"], 1, "{l}");
    assert!(l["PolicyRefreshes"].as_u64().unwrap() >= 1, "{l}");
    assert!(l["PolicyRefreshFailures"].as_u64().unwrap() >= 1, "{l}");
    // No bundle, no age to report.
    assert!(l.get("BundleAgeSeconds").is_none(), "{l}");
    let _ = std::fs::remove_dir_all(&bundle);
}
