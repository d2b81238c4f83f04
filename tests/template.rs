//! The repository's `template.yaml` (AWS SAM), read as YAML and checked for what `cfn-lint` and
//! `sam validate` (run by `.ci/run`) do not check: the authorizer cache TTL range, that the
//! authorized routes of each API are exactly the schema's routes, that the authorizer's
//! environment names only variables cedargate reads, the one-object policy read grant, and the
//! pieces the deployment guide relies on. Then `cedargate validate` on a bundle whose
//! `template.yaml` has drifted: every problem is named.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use cedargate::bundle::{BundleFiles, Snapshot};
use cedargate::config::KNOWN_VARIABLES;
use cedargate::routes::RouteKind;
use cedargate::template::{s3_grants, ApiKind, Template, MAX_TTL_SECONDS};
use common::{bundle_copy, repo};
use serde_json::{json, Value};

fn template() -> Template {
    let text = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    Template::parse("template.yaml", &text).unwrap()
}

fn snapshot() -> Snapshot {
    let files = BundleFiles::read_dir(&repo()).unwrap();
    Snapshot::compile(files, "repo").unwrap().0
}

fn resource<'a>(t: &'a Template, id: &str) -> &'a Value {
    let r = &t.as_json()["Resources"][id];
    assert!(r.is_object(), "no resource `{id}`");
    r
}

#[test]
fn the_template_passes_the_checks_the_linters_do_not_make() {
    let t = template();
    let findings = t.check(&snapshot());
    assert!(findings.errors.is_empty(), "{:#?}", findings.errors);
    assert!(findings.warnings.is_empty(), "{:#?}", findings.warnings);
}

#[test]
fn the_authorizer_ttl_is_bounded_to_what_api_gateway_accepts() {
    let t = template();
    let settings = t.ttl_settings();
    assert_eq!(
        settings.len(),
        2,
        "REST and HTTP API authorizers: {settings:?}"
    );
    for s in &settings {
        assert_eq!(s.value, json!({"Ref": "AuthorizerCacheTtl"}), "{}", s.at);
    }
    let p = &t.as_json()["Parameters"]["AuthorizerCacheTtl"];
    assert_eq!(p["Type"], "Number");
    assert_eq!(p["Default"], 300);
    assert_eq!(p["MinValue"], 0);
    assert_eq!(p["MaxValue"], MAX_TTL_SECONDS);
}

#[test]
fn every_authorized_route_is_a_schema_route_and_the_reverse() {
    let t = template();
    let snap = snapshot();
    let schema: BTreeSet<String> = snap
        .routes()
        .routes()
        .iter()
        .filter(|r| matches!(r.kind, RouteKind::Http { .. }))
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(schema.len(), 11);
    assert!(schema.contains("ANY /admin/{proxy+}"));
    let apis = t.apis();
    let kinds: Vec<(String, ApiKind)> = apis.iter().map(|a| (a.id.clone(), a.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            ("Api".to_owned(), ApiKind::Rest),
            ("HttpApi".to_owned(), ApiKind::Http)
        ]
    );
    for api in &apis {
        // Same spelling as the schema, not only the same shape.
        let authorized: BTreeSet<String> = api
            .routes
            .iter()
            .filter(|r| r.authorized)
            .map(|r| r.name.clone())
            .collect();
        assert_eq!(authorized, schema, "{}", api.id);
        // The original example's public endpoint: no authorizer.
        let public: Vec<&str> = api
            .routes
            .iter()
            .filter(|r| !r.authorized)
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(public, vec!["POST /api/public"], "{}", api.id);
    }
}

#[test]
fn the_authorizer_function_reads_known_variables_and_one_object() {
    let t = template();
    assert_eq!(
        t.cedargate_functions(),
        vec!["AuthorizerFunction".to_owned()]
    );
    let f = resource(&t, "AuthorizerFunction");
    assert_eq!(f["Metadata"]["BuildMethod"], "rust-cargolambda");
    // The one build property SAM passes to cargo-lambda; the features come from Cargo.toml
    // (`[package.metadata.lambda.build]`, checked with the artifact in tests/lambda_build.rs).
    assert_eq!(
        f["Metadata"]["BuildProperties"],
        json!({ "Binary": "cedargate" })
    );
    assert_eq!(f["Properties"]["Runtime"], "provided.al2023");
    assert_eq!(f["Properties"]["Handler"], "bootstrap");
    assert_eq!(f["Properties"]["CodeUri"], ".");
    assert_eq!(
        t.as_json()["Globals"]["Function"]["Architectures"],
        json!(["arm64"])
    );
    let vars = f["Properties"]["Environment"]["Variables"]
        .as_object()
        .unwrap();
    for name in vars.keys().filter(|n| n.starts_with("CEDARGATE_")) {
        assert!(KNOWN_VARIABLES.contains(&name.as_str()), "{name}");
    }
    assert_eq!(
        vars["CEDARGATE_POLICY_SOURCE"],
        json!({"Fn::Sub": "s3://${PolicyBucket}/${PolicyObjectKey}"})
    );
    // `s3:GetObject` on the one object, and nothing else.
    let grants = s3_grants(f.as_object().unwrap());
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].actions, vec!["s3:GetObject"]);
    assert!(grants[0].one_object, "{grants:?}");
    assert_eq!(
        grants[0].resource,
        json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${PolicyBucket}/${PolicyObjectKey}"})
            .to_string()
    );
}

#[test]
fn the_authorizer_takes_an_audience_or_a_cognito_client_id_and_one_token_use() {
    let t = template();
    let params = &t.as_json()["Parameters"];
    // Either may be left empty (empty means unset), but not both: a rule refuses that.
    assert_eq!(params["Audience"]["Default"], "");
    assert_eq!(params["ClientId"]["Default"], "");
    let rule = t.as_json()["Rules"]["AudienceOrClientId"]["Assertions"][0]["Assert"].to_string();
    assert!(
        rule.contains(r#"{"Ref":"Audience"}"#) && rule.contains(r#"{"Ref":"ClientId"}"#),
        "{rule}"
    );
    // Access tokens unless the deployment says ID tokens; never a list of both.
    assert_eq!(params["TokenUse"]["Default"], "access");
    assert_eq!(params["TokenUse"]["AllowedValues"], json!(["access", "id"]));
    let vars = &resource(&t, "AuthorizerFunction")["Properties"]["Environment"]["Variables"];
    for (var, param) in [
        ("CEDARGATE_AUDIENCE", "Audience"),
        ("CEDARGATE_CLIENT_ID", "ClientId"),
        ("CEDARGATE_TOKEN_USE", "TokenUse"),
    ] {
        assert_eq!(vars[var], json!({ "Ref": param }), "{var}");
    }
}

#[test]
fn the_policy_bucket_is_versioned_encrypted_and_private() {
    let t = template();
    let b = &resource(&t, "PolicyBucket")["Properties"];
    assert_eq!(b["VersioningConfiguration"]["Status"], "Enabled");
    let sse = &b["BucketEncryption"]["ServerSideEncryptionConfiguration"][0];
    assert_eq!(
        sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    let block = &b["PublicAccessBlockConfiguration"];
    for k in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(block[k], true, "{k}");
    }
}

/// The validation expression as API Gateway applies it (a full match), written out for the
/// one expression the template uses: `^Bearer [-0-9a-zA-Z._~+/]+=*$`.
#[test]
fn the_rest_api_uses_a_request_authorizer_keyed_on_token_and_address_with_cors_on_its_errors() {
    let t = template();
    let api = &resource(&t, "Api")["Properties"];
    assert_eq!(api["ApiKeySourceType"], "AUTHORIZER");
    let auth = &api["Auth"];
    assert_eq!(auth["DefaultAuthorizer"], "CedargateAuthorizer");
    let a = &auth["Authorizers"]["CedargateAuthorizer"];
    // The demo policies read the caller's address: only REQUEST events carry it, and only an
    // identity source keeps a cached answer to the address it was computed for.
    assert_eq!(a["FunctionPayloadType"], "REQUEST");
    assert_eq!(a["Identity"]["Headers"], json!(["Authorization"]));
    assert_eq!(a["Identity"]["Context"], json!(["identity.sourceIp"]));
    let parsed = t.authorizers();
    let rest = parsed
        .iter()
        .find(|a| a.at.contains("`Api`"))
        .expect("the REST API's authorizer");
    assert_eq!(rest.payload, cedargate::template::Payload::Request);
    assert!(rest.sources.contains(&cedargate::template::Source::Context(
        "identity.sourceIp".into()
    )));
    for kind in [
        "UNAUTHORIZED",
        "ACCESS_DENIED",
        "MISSING_AUTHENTICATION_TOKEN",
    ] {
        let headers = &api["GatewayResponses"][kind]["ResponseParameters"]["Headers"];
        assert!(
            headers["Access-Control-Allow-Origin"].is_object(),
            "{kind}: {headers}"
        );
    }
    assert_eq!(api["GatewayResponses"]["UNAUTHORIZED"]["StatusCode"], "401");
    assert_eq!(
        api["GatewayResponses"]["ACCESS_DENIED"]["StatusCode"],
        "403"
    );
    // The usage plan meters the key the authorizer picks from the tier claim.
    let key = &resource(&t, "StandardApiKey")["Properties"];
    assert_eq!(key["Value"], json!({"Ref": "StandardApiKeyValue"}));
    let vars = &resource(&t, "AuthorizerFunction")["Properties"]["Environment"]["Variables"];
    assert!(vars["CEDARGATE_USAGE_KEY_MAP"]["Fn::Sub"]
        .as_str()
        .unwrap()
        .contains("*=${StandardApiKeyValue}"));
    let plan = &resource(&t, "StandardUsagePlan")["Properties"];
    assert_eq!(plan["ApiStages"][0]["ApiId"], json!({"Ref": "Api"}));
    for p in [
        "Issuer",
        "Audience",
        "ClientId",
        "TokenUse",
        "AuthorizerCacheTtl",
    ] {
        assert!(t.as_json()["Parameters"][p].is_object(), "{p}");
    }
    for o in [
        "ApiUrl",
        "PublicEndpoint",
        "PrivateEndpoint",
        "PublishCommand",
    ] {
        assert!(t.as_json()["Outputs"][o].is_object(), "{o}");
    }
}

/// Diagnostics as one line: miette wraps long messages and draws a margin.
fn flat(out: &str) -> String {
    out.replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// `cedargate validate --bundle DIR`: exit code and stderr.
fn validate(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["validate", "--bundle"])
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn validate_checks_the_template_beside_the_bundle() {
    let dir = bundle_copy("template");
    // No template: the bundle alone.
    assert_eq!(validate(&dir).0, 0);
    let original = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    std::fs::write(dir.join("template.yaml"), &original).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");

    // Drift: a route the schema lacks, a schema route the API lacks, a TTL API Gateway
    // refuses, a misspelt variable.
    let drifted = original
        .replace(
            "Path: \"/reports/{reportId}\", Method: get }\n\n  # --- Usage plan",
            "Path: \"/reports/{reportId}/pdf\", Method: get }\n\n  # --- Usage plan",
        )
        .replace("    MaxValue: 3600\n", "    MaxValue: 7200\n")
        .replace(
            "CEDARGATE_LOG: info",
            "CEDARGATE_LOGS: info\n          AWS_REGION: eu-west-1\n          AWS_LAMBDA_EXEC_WRAPPER: /opt/otel-instrument\n          OTEL_SERVICE_NAME: authorizer\n          RUST_LOG: info",
        );
    assert_ne!(drifted, original);
    std::fs::write(dir.join("template.yaml"), &drifted).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 3, "{out}");
    for needle in [
        "route `GET /reports/{reportId}/pdf` of the REST API `Api`",
        "route `GET /reports/{reportId}` of the schema is not an authorized route of the REST API `Api`",
        "parameter `AuthorizerCacheTtl` must declare",
        "`CEDARGATE_LOGS`, which cedargate does not read (did you mean `CEDARGATE_LOG`?)",
        "function `AuthorizerFunction` sets `AWS_REGION`, which Lambda reserves: the deployment would fail",
    ] {
        assert!(flat(&out).contains(needle), "missing `{needle}` in:\n{out}");
    }
    // A Lambda layer's settings and other tools' are not cedargate's to refuse.
    for other in ["AWS_LAMBDA_EXEC_WRAPPER", "OTEL_SERVICE_NAME", "RUST_LOG"] {
        assert!(
            !out.contains(&format!("`{other}`")),
            "{other} refused:\n{out}"
        );
    }

    // Short tags are read like their long forms.
    let short = original.replace(
        "FunctionArn:\n              Fn::GetAtt: [AuthorizerFunction, Arn]\n            Identity:\n              # API Gateway",
        "FunctionArn: !GetAtt AuthorizerFunction.Arn\n            Identity:\n              # API Gateway",
    );
    assert_ne!(short, original);
    std::fs::write(dir.join("template.yaml"), &short).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");

    // Not YAML: an error naming the file, not a panic.
    std::fs::write(dir.join("template.yaml"), "Resources: [").unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("`template.yaml` cannot be read as a template"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn validate_checks_the_facts_policies_read_against_each_authorizers_cache_key() {
    let dir = bundle_copy("cache-key");
    let original = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let rest_authorizer = "            FunctionPayloadType: REQUEST\n            FunctionArn:\n              Fn::GetAtt: [AuthorizerFunction, Arn]\n            Identity:\n              # API Gateway answers 401 itself, without calling the Lambda, when one is missing.\n              Headers: [Authorization]\n              Context: [identity.sourceIp]\n";
    let http_identity = "            Identity:\n              Headers: [Authorization]\n              Context: [identity.sourceIp]\n              ReauthorizeEvery: { Ref: AuthorizerCacheTtl }\n\n  HttpBackendFunction:";
    assert!(original.contains(rest_authorizer) && original.contains(http_identity));
    let fact = "context.sourceIp";
    let policy = "guardrails.cedar#blocked-source-ip";

    // As shipped: the address is an identity source of both authorizers. Clean.
    std::fs::write(dir.join("template.yaml"), &original).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(!flat(&out).contains(fact), "{out}");

    // A TOKEN authorizer: its events never carry the address. An error naming the policy.
    let token = original.replace(
        rest_authorizer,
        "            FunctionPayloadType: TOKEN\n            FunctionArn:\n              Fn::GetAtt: [AuthorizerFunction, Arn]\n            Identity:\n              Header: Authorization\n",
    );
    std::fs::write(dir.join("template.yaml"), &token).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 3, "{out}");
    let text = flat(&out);
    assert!(
        text.contains("`Api` authorizer `CedargateAuthorizer` is a TOKEN authorizer, whose events never carry it")
            && text.contains(fact)
            && text.contains(policy),
        "{out}"
    );

    // An HTTP API keyed on the header only, with the cache on: a warning with the fix; with
    // `--deny-warnings`, a failure.
    let header_only = original.replace(
        http_identity,
        "            Identity:\n              Headers: [Authorization]\n              ReauthorizeEvery: { Ref: AuthorizerCacheTtl }\n\n  HttpBackendFunction:",
    );
    std::fs::write(dir.join("template.yaml"), &header_only).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    let text = flat(&out);
    assert!(
        text.contains("`HttpApi` authorizer `CedargateAuthorizer` caches each answer for 300 s")
            && text.contains("identity.sourceIp")
            && text.contains("set the TTL to 0"),
        "{out}"
    );
    let strict = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["validate", "--deny-warnings", "--bundle"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(strict.status.code(), Some(3));

    // The same with the cache off: nothing to reuse, so clean.
    let uncached = header_only.replace(
        "              ReauthorizeEvery: { Ref: AuthorizerCacheTtl }\n\n  HttpBackendFunction:",
        "              ReauthorizeEvery: 0\n\n  HttpBackendFunction:",
    );
    std::fs::write(dir.join("template.yaml"), &uncached).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(!flat(&out).contains(fact), "{out}");
}

#[test]
fn validate_refuses_shadow_mode_in_the_template_unless_acknowledged() {
    let dir = bundle_copy("shadow-template");
    let original = std::fs::read_to_string(repo().join("template.yaml")).unwrap();
    let shadow = original.replace(
        "CEDARGATE_LOG: info",
        "CEDARGATE_LOG: info\n          CEDARGATE_MODE: shadow",
    );
    assert_ne!(shadow, original);
    std::fs::write(dir.join("template.yaml"), &shadow).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 3, "{out}");
    assert!(
        flat(&out).contains("can deploy `CEDARGATE_MODE=shadow`"),
        "{out}"
    );
    // Acknowledged: accepted, with a warning that the cached answers make the counts per
    // token (the template's REST authorizer caches for a TTL, keyed on token and address).
    let acknowledged = shadow.replace(
        "CEDARGATE_MODE: shadow",
        "CEDARGATE_MODE: shadow\n          CEDARGATE_SHADOW_ACKNOWLEDGED: \"true\"",
    );
    std::fs::write(dir.join("template.yaml"), &acknowledged).unwrap();
    let (code, out) = validate(&dir);
    assert_eq!(code, 0, "{out}");
    assert!(
        flat(&out).contains("shadow counts are decisions per token"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
