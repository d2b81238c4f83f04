//! `cedargate serve` at the HTTP level: the gateway behaves as API Gateway with a TOKEN
//! authorizer and its result cache, in front of the demo backend or a real upstream.
//!
//! Each test starts the built binary (`serve --port 0`) in a temporary copy of the repo's
//! bundle, mints tokens with `cedargate token` from the same directory, and talks to it with
//! reqwest. What is covered: the cache (one authorizer call answers every route of a token,
//! each correctly; the TTL; reloads keep cached answers unless `--flush-on-reload`), routing
//! precedence, 401 and 403 as API Gateway sends them, bad tokens, CORS, `--upstream`, the
//! development endpoints and the loopback-only rules; shadow mode (`CEDARGATE_MODE=shadow`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{token_in, workdir, Serve};
use serde_json::{json, Value};

const IMPLICIT: &str = "User is not authorized to access this resource";
const EXPLICIT: &str = "User is not authorized to access this resource with an explicit deny";

fn message(body: &Value) -> &str {
    body.get("Message")
        .or_else(|| body.get("message"))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Every route of the API, called once with the token, answers exactly as the explanation
/// (Cedar's decision) says — and only the first call reaches the authorizer.
#[tokio::test]
async fn one_authorizer_call_answers_every_route_correctly_from_the_cache() {
    let s = Serve::start("cache", &[], &[]);
    let routes = s.get_json("/_cedargate/routes").await;
    let routes = routes["routes"].as_array().unwrap().clone();
    assert!(routes.len() >= 11, "{routes:#?}");

    let mut expected_calls = 0;
    for user in ["reader", "editor", "admin", "operator", "analyst", "guest"] {
        let token = s.token(user, &[]);
        let explanation = s.explain(&token).await;
        let mut allowed_somewhere = false;
        let mut denied_somewhere = false;
        for route in &routes {
            let name = route["route"].as_str().unwrap();
            let method = route["method"].as_str().unwrap();
            let url = route["url"].as_str().unwrap();
            let (status, body) = s.call(method, url, Some(&token), Some("{}")).await;
            if route["authorizer"] == json!(false) {
                assert_eq!(status, 200, "public route {name}");
                continue;
            }
            let decision = explanation["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["route"] == name)
                .unwrap_or_else(|| panic!("{name} missing from {explanation:#}"));
            if decision["allowed"] == json!(true) {
                allowed_somewhere = true;
                assert_eq!(status, 200, "{user} {name}: {body}");
                assert_eq!(body["route"], name, "{user}: the backend got another route");
                assert_eq!(
                    body["requestContext"]["authorizer"]["principalId"],
                    explanation["principal"]["uid"]["id"]
                );
            } else {
                denied_somewhere = true;
                assert_eq!(status, 403, "{user} {name}: {body}");
                assert!(message(&body).starts_with(IMPLICIT), "{body}");
            }
            // The gateway's reading of the IAM policy agrees with Cedar.
            assert_eq!(
                decision["gateway"] == "allow",
                decision["allowed"] == json!(true),
                "{user} {name}: {decision}"
            );
        }
        expected_calls += 1;
        assert_eq!(
            s.invocations().await,
            expected_calls,
            "{user}: every route after the first must come from the cached policy"
        );
        assert!(
            allowed_somewhere,
            "{user} may call something (POST /api/private at least)"
        );
        if user != "admin" {
            assert!(denied_somewhere, "{user} is denied something");
        }
    }
    let status = s.status().await;
    assert!(status["authorizer"]["cacheHits"].as_u64().unwrap() >= 6 * 10);
    assert_eq!(status["authorizer"]["cacheEntries"], 6);
}

#[tokio::test]
async fn the_ttl_bounds_the_cache_and_zero_turns_it_off() {
    let s = Serve::start("ttl", &[], &["--cache-ttl", "3"]);
    let t = s.token("reader", &[]);
    assert_eq!(s.call("GET", "/prod/pets", Some(&t), None).await.0, 200);
    assert_eq!(s.call("GET", "/prod/pets/1", Some(&t), None).await.0, 200);
    assert_eq!(s.invocations().await, 1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert_eq!(s.call("GET", "/prod/pets", Some(&t), None).await.0, 200);
    assert_eq!(
        s.invocations().await,
        2,
        "an expired entry asks the authorizer again"
    );

    let s = Serve::start("ttl0", &[], &["--cache-ttl", "0"]);
    let t = s.token("reader", &[]);
    for _ in 0..3 {
        assert_eq!(s.call("GET", "/prod/pets", Some(&t), None).await.0, 200);
    }
    assert_eq!(s.invocations().await, 3);
    assert_eq!(s.status().await["authorizer"]["cacheEntries"], 0);
}

/// Literal segments before `{param}`, `{param}` before `{proxy+}`, a verb mismatch falls
/// through to a `{proxy+}` with `ANY`; and the cached policy gets each of them right, including
/// an explicit Deny for a literal route under an allowed `{param}` route.
#[tokio::test]
async fn routing_follows_api_gateway_precedence_and_the_cached_policy_is_exact() {
    let no_search = "@id(\"no-search\")\nforbid (principal, action == Action::\"GET /pets/search\", resource);\n";
    let s = Serve::start(
        "precedence",
        &[("policies/zz-no-search.cedar", no_search)],
        &[],
    );
    let reader = s.token("reader", &[]);
    let admin = s.token("admin", &[]);

    let (st, body) = s.call("GET", "/prod/pets/42", Some(&reader), None).await;
    assert_eq!(
        (st, body["route"].as_str()),
        (200, Some("GET /pets/{petId}"))
    );
    assert_eq!(body["request"]["pathParameters"], json!({"petId": "42"}));
    // `search` is a literal route of its own, denied: an explicit Deny under the allowed
    // `GET /pets/{petId}`, answered from the same cached policy.
    let (st, body) = s
        .call("GET", "/prod/pets/search", Some(&reader), None)
        .await;
    assert_eq!((st, message(&body)), (403, EXPLICIT), "{body}");
    let (st, body) = s
        .call("GET", "/prod/pets/searchx", Some(&reader), None)
        .await;
    assert_eq!(
        (st, body["route"].as_str()),
        (200, Some("GET /pets/{petId}"))
    );
    let (st, body) = s
        .call(
            "GET",
            "/prod/pets/7/photos/2024/beach.jpg",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(
        (st, body["route"].as_str()),
        (200, Some("GET /pets/{petId}/photos/{path+}"))
    );
    assert_eq!(
        body["request"]["pathParameters"],
        json!({"petId": "7", "path": "2024/beach.jpg"})
    );
    assert_eq!(s.invocations().await, 1);

    for (method, path, route) in [
        ("GET", "/prod/admin/users", "GET /admin/users"),
        ("GET", "/prod/admin/users/7", "ANY /admin/{proxy+}"),
        ("DELETE", "/prod/admin/users", "ANY /admin/{proxy+}"),
        ("POST", "/prod/admin/settings", "ANY /admin/{proxy+}"),
    ] {
        let (st, body) = s.call(method, path, Some(&admin), None).await;
        assert_eq!(
            (st, body["route"].as_str()),
            (200, Some(route)),
            "{method} {path}"
        );
    }
    // The reader is denied all of them, from its cached policy.
    for (method, path) in [
        ("GET", "/prod/admin/users"),
        ("DELETE", "/prod/admin/users"),
        ("GET", "/prod/admin/x"),
    ] {
        assert_eq!(
            s.call(method, path, Some(&reader), None).await.0,
            403,
            "{method} {path}"
        );
    }
    assert_eq!(s.invocations().await, 2);

    // Paths no route takes: 403 Missing Authentication Token, authorizer not called.
    for (method, path) in [
        ("GET", "/prod/nothing"),
        ("PATCH", "/prod/pets"),
        ("GET", "/prod"),
        ("GET", "/prod/admin"),
    ] {
        let (st, body) = s.call(method, path, Some(&reader), None).await;
        assert_eq!(
            (st, message(&body)),
            (403, "Missing Authentication Token"),
            "{method} {path}"
        );
    }
    assert_eq!(s.invocations().await, 2);
}

#[tokio::test]
async fn missing_malformed_and_forged_tokens_get_401_and_valid_ones_403_when_denied() {
    let s = Serve::start("tokens", &[], &[]);
    let reader = s.token("reader", &[]);

    // No token: 401 before the authorizer, with CORS and API Gateway's error type.
    let res = s.http.get(s.url("/prod/pets")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(res.headers()["x-amzn-errortype"], "UnauthorizedException");
    assert_eq!(
        res.json::<Value>().await.unwrap(),
        json!({"message": "Unauthorized"})
    );
    assert_eq!(s.invocations().await, 0);

    // A key nobody trusts: a token minted in another directory (another key file).
    let elsewhere = workdir("elsewhere");
    let foreign = token_in(&elsewhere, "admin", s.port, &[]);
    let _ = std::fs::remove_dir_all(&elsewhere);
    // The reader's signature on the admin's claims.
    let parts: Vec<&str> = reader.split('.').collect();
    let admin = s.token("admin", &[]);
    let admin_payload = admin.split('.').nth(1).unwrap();
    let spliced = format!("{}.{}.{}", parts[0], admin_payload, parts[2]);
    // One flipped bit in the signature.
    let mut sig = parts[2].to_owned();
    let last = sig.pop().unwrap();
    sig.push(if last == 'A' { 'B' } else { 'A' });
    let flipped = format!("{}.{}.{sig}", parts[0], parts[1]);
    // A token for a serve on another port: another issuer.
    let other_port = token_in(&s.dir, "reader", s.port.wrapping_add(1), &[]);
    // Expired: one second of life, past the 5 s clock-skew allowance.
    let expired = s.token("reader", &["--expires-in", "1"]);
    tokio::time::sleep(Duration::from_millis(7100)).await;
    for (what, token) in [
        ("garbage", "garbage".to_owned()),
        ("foreign key", foreign),
        ("spliced payload", spliced),
        ("flipped signature", flipped),
        ("other issuer", other_port),
        ("expired", expired),
    ] {
        let (st, body) = s.call("GET", "/prod/pets", Some(&token), None).await;
        assert_eq!(
            (st, body.clone()),
            (401, json!({"message": "Unauthorized"})),
            "{what}"
        );
        let (st, _) = s.call("DELETE", "/prod/pets/1", Some(&token), None).await;
        assert_eq!(st, 401, "{what}");
    }

    // Valid token, forbidden route: 403 with API Gateway's body and CORS.
    let res = s
        .http
        .delete(s.url("/prod/pets/1"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    assert_eq!(res.headers()["x-amzn-errortype"], "AccessDeniedException");
    let body: Value = res.json().await.unwrap();
    assert!(message(&body).starts_with(IMPLICIT), "{body}");

    // The public endpoint needs nothing; a CORS preflight is answered without the authorizer.
    let (st, body) = s.call("POST", "/prod/api/public", None, None).await;
    assert_eq!(st, 200);
    assert!(body["message"].as_str().unwrap().contains("Public API"));
    let pre = s
        .http
        .request(reqwest::Method::OPTIONS, s.url("/prod/pets/1"))
        .header("origin", "http://127.0.0.1:1")
        .header("access-control-request-method", "DELETE")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert!(pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("Authorization"));
}

/// Policy edits reload the bundle; cached answers live on until their TTL, as in API Gateway,
/// unless `--flush-on-reload`; an invalid edit is refused and the last good bundle keeps serving.
#[tokio::test]
async fn reloads_keep_api_gateway_cache_semantics_and_refuse_invalid_bundles() {
    let s = Serve::start("reload", &[], &[]);
    let first = s.status().await["policy"]["revision"].clone();
    let before = s.token("reader", &[]);
    assert_eq!(
        s.call("GET", "/prod/pets/42", Some(&before), None).await.0,
        200
    );

    let forbid = "@id(\"no-pet-reads\")\nforbid (principal, action == Action::\"GET /pets/{petId}\", resource);\n";
    s.write("policies/zz-edit.cedar", forbid);
    let status = s
        .wait_status("the reload", |st| st["policy"]["revision"] != first)
        .await;
    assert_eq!(status["reloads"]["last"]["outcome"], "loaded");
    assert_eq!(
        status["reloads"]["last"]["files"],
        json!(["policies/zz-edit.cedar"])
    );
    let second = status["policy"]["revision"].clone();

    // The cached policy still answers for the old token; a new token sees the new policy.
    let (st, body) = s.call("GET", "/prod/pets/42", Some(&before), None).await;
    assert_eq!(st, 200, "API Gateway keeps a cached answer for its TTL");
    assert_eq!(
        body["requestContext"]["authorizer"]["policyRevision"],
        first
    );
    let after = s.token("reader", &["--expires-in", "3599"]);
    let (st, body) = s.call("GET", "/prod/pets/42", Some(&after), None).await;
    assert_eq!((st, message(&body)), (403, EXPLICIT), "{body}");
    let pet = s.explained_route(&before, "GET /pets/{petId}").await;
    assert_eq!(pet["allowed"], false);
    assert_eq!(
        pet["reasons"],
        json!(["policies/zz-edit.cedar#no-pet-reads"])
    );

    // A half-saved file: refused, the last good bundle keeps serving, /status says why.
    s.write(
        "policies/zz-edit.cedar",
        "forbid (principal, action == Action::\"GET /pe",
    );
    let status = s
        .wait_status("the refusal", |st| st["policy"]["lastOutcome"] == "refused")
        .await;
    assert_eq!(status["policy"]["revision"], second);
    assert!(
        status["policy"]["lastError"]
            .as_str()
            .unwrap()
            .contains("zz-edit.cedar"),
        "{status:#}"
    );
    assert_eq!(status["reloads"]["last"]["outcome"], "refused");
    let fresh = s.token("reader", &["--expires-in", "3598"]);
    assert_eq!(
        s.call("GET", "/prod/pets/42", Some(&fresh), None).await.0,
        403
    );
    assert_eq!(s.call("GET", "/prod/pets", Some(&fresh), None).await.0, 200);

    // With --flush-on-reload, the same token sees an edit at once.
    let f = Serve::start("flush", &[], &["--flush-on-reload"]);
    let t = f.token("reader", &[]);
    assert_eq!(f.call("GET", "/prod/pets/42", Some(&t), None).await.0, 200);
    let rev = f.status().await["policy"]["revision"].clone();
    f.write("policies/zz-edit.cedar", forbid);
    let status = f
        .wait_status("the reload", |st| st["policy"]["revision"] != rev)
        .await;
    assert_eq!(status["reloads"]["last"]["flushed"], 1);
    assert_eq!(f.call("GET", "/prod/pets/42", Some(&t), None).await.0, 403);
}

/// A tiny upstream on 127.0.0.1 that records what it receives and echoes it.
async fn upstream() -> (u16, Arc<Mutex<Vec<Value>>>) {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            let record = json!({
                                "method": parts.method.as_str(),
                                "path": parts.uri.path(),
                                "query": parts.uri.query(),
                                "body": String::from_utf8_lossy(&body),
                                "context": parts.headers.get("x-cedargate-context").map(|v| v.to_str().unwrap().to_owned()),
                                "authorization": parts.headers.contains_key("authorization"),
                                "custom": parts.headers.get("x-custom").map(|v| v.to_str().unwrap().to_owned()),
                            });
                            log.lock().unwrap().push(record.clone());
                            let mut res = hyper::Response::new(Full::new(Bytes::from(
                                json!({"upstream": record}).to_string(),
                            )));
                            *res.status_mut() = hyper::StatusCode::CREATED;
                            res.headers_mut()
                                .insert("x-upstream", "yes".parse().unwrap());
                            Ok::<_, std::convert::Infallible>(res)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn upstream_gets_method_path_query_body_and_the_authorizer_context() {
    let (port, seen) = upstream().await;
    let s = Serve::start(
        "upstream",
        &[],
        &["--upstream", &format!("http://127.0.0.1:{port}/base")],
    );
    let editor = s.token("editor", &[]);
    let res = s
        .http
        .put(s.url("/prod/pets/42?size=big&x=%20y"))
        .bearer_auth(&editor)
        .header("x-custom", "kept")
        .header("x-cedargate-context", "{\"principalId\":\"forged\"}")
        .body("{\"name\":\"Rex\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-upstream"], "yes");
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
    let got = seen.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r["method"], "PUT");
    assert_eq!(r["path"], "/base/pets/42");
    assert_eq!(r["query"], "size=big&x=%20y");
    assert_eq!(r["body"], "{\"name\":\"Rex\"}");
    assert_eq!(r["custom"], "kept");
    let context: Value = serde_json::from_str(r["context"].as_str().unwrap()).unwrap();
    assert_eq!(
        context["principalId"], "dev|eddie",
        "the client's forged header is replaced"
    );
    assert_eq!(context["email"], "eddie@cedargate.example");

    // Denied and unauthenticated requests never reach the upstream.
    assert_eq!(
        s.call("DELETE", "/prod/pets/42", Some(&editor), None)
            .await
            .0,
        403
    );
    assert_eq!(s.call("PUT", "/prod/pets/42", None, None).await.0, 401);
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn development_endpoints_and_loopback_rules() {
    let s = Serve::start("dev", &[], &[]);
    // Explain needs a valid token.
    let res = s
        .http
        .get(s.url("/_cedargate/explain"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let reader = s.token("reader", &[]);
    let pets = s.explained_route(&reader, "GET /pets").await;
    assert_eq!(pets["allowed"], true);
    assert_eq!(pets["reasons"], json!(["policies/pets.cedar#readers-read"]));
    assert_eq!(pets["gateway"], "allow");
    // The IAM policy the gateway caches, for a first call to a route the reader may use (so
    // it carries no Deny for the request), with its size as compact JSON.
    let explained = s.explain(&reader).await;
    let iam = &explained["iamPolicy"];
    let document = &iam["document"];
    assert_eq!(
        iam["bytes"],
        serde_json::to_string(document).unwrap().len(),
        "{iam}"
    );
    let statements = document["Statement"].as_array().unwrap();
    assert!(
        statements.iter().any(|st| st["Effect"] == "Allow"),
        "{document}"
    );
    assert_eq!(explained["response"]["policyDocument"], *document);
    assert_eq!(explained["requestAllowed"], true);
    let first = explained["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == explained["requestedRoute"])
        .unwrap();
    assert_eq!(first["allowed"], true);
    assert_eq!(iam["forCall"]["method"], first["method"]);
    assert_eq!(iam["forCall"]["path"], first["samplePath"]);
    // Discovery and JWKS of the development issuer, with the port in the issuer URL.
    let d = s
        .get_json("/dev-issuer/.well-known/openid-configuration")
        .await;
    assert_eq!(
        d["issuer"],
        format!("http://127.0.0.1:{}/dev-issuer", s.port)
    );
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    let jwks: Value = s
        .http
        .get(d["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert!(s.dir.join(".cedargate/dev-issuer.pem").is_file());
    assert!(std::fs::read_to_string(s.dir.join(".cedargate/.gitignore"))
        .unwrap()
        .contains('*'));

    // Requests addressed to another host name are refused (DNS rebinding).
    let res = s
        .http
        .get(s.url("/status"))
        .header("host", format!("evil.example:{}", s.port))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 421);
    // The page is served at /.
    let page = s.http.get(s.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("cedargate"));

    // `cedargate token` names the users when asked for none or an unknown one.
    for args in [vec!["token"], vec!["token", "--user", "nobody"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .args(&args)
            .current_dir(&s.dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("reader") && err.contains("analyst"), "{err}");
    }
}

/// One HTTP/1.1 request with the path exactly as given (no client normalizes it, as
/// `curl --path-as-is` sends it); the status code of the answer.
async fn raw_status(port: u16, method: &str, path: &str, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let head = String::from_utf8_lossy(&answer);
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn serve_upstream_forwards_a_different_path_than_it_authorized() {
    // Security review finding: the gateway routed and authorized the raw path, then built the
    // upstream URL with a setter that resolves `.`/`..` and `%2e%2e`: a reader (denied
    // `GET /admin/users`) got the upstream's `GET /api/admin/users` through
    // `GET /prod/pets/1/photos/%2e%2e/%2e%2e/%2e%2e/admin/users`.
    let (port, seen) = upstream().await;
    let s = Serve::start(
        "dot-segments",
        &[],
        &["--upstream", &format!("http://127.0.0.1:{port}/api")],
    );
    let reader = s.token("reader", &[]);
    for path in [
        "/prod/pets/1/photos/%2e%2e/%2e%2e/%2e%2e/admin/users",
        "/prod/pets/1/photos/../../../admin/users",
        "/prod/pets/1/photos/%2E%2e/%2e%2E/%2E%2E/admin/users",
        "/prod/pets/1/photos/.%2e/%2e./../admin/users",
        // One more `..` would leave the upstream's base path.
        "/prod/pets/1/photos/../../../../admin/users",
        "/prod/pets/1/photos/./x",
        // Encoded separators: one segment to the router, two to a backend that decodes them.
        "/prod/pets/1/photos/..%2f..%2f..%2fadmin%2fusers",
        "/prod/pets/1/photos/..%5C..%5Cadmin",
    ] {
        assert_eq!(
            raw_status(s.port, "GET", path, &reader).await,
            400,
            "{path}"
        );
    }
    assert!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    // Everything else reaches the upstream exactly as routed and authorized.
    for (path, forwarded) in [
        ("/prod/pets/1/photos/a/b.jpg", "/api/pets/1/photos/a/b.jpg"),
        (
            "/prod/pets/1/photos/..jpg/%41",
            "/api/pets/1/photos/..jpg/%41",
        ),
        ("/prod/pets/1/photos/a//b", "/api/pets/1/photos/a//b"),
    ] {
        assert_eq!(
            raw_status(s.port, "GET", path, &reader).await,
            201,
            "{path}"
        );
        let last = seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(last["path"], forwarded, "{path}");
    }
    // And the reader still cannot reach the admin route itself.
    assert_eq!(
        raw_status(s.port, "GET", "/prod/admin/users", &reader).await,
        403
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_development_endpoints_answer_any_web_page() {
    // Security review finding: `/status`, `/_cedargate/config` and `/_cedargate/routes` sent
    // `Access-Control-Allow-Origin: *`, so any page the developer visited could read bundle
    // paths, the upstream URL, the issuer and the last policy error.
    let s = Serve::start("same-origin", &[], &[]);
    let own = format!("http://127.0.0.1:{}", s.port);
    let event = json!({"type": "TOKEN", "authorizationToken": "Bearer x",
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/pets"});
    for path in [
        "/status",
        "/_cedargate/config",
        "/_cedargate/routes",
        "/_cedargate/invoke",
    ] {
        let request = |origin: Option<&str>| {
            let r = if path.ends_with("invoke") {
                s.http.post(s.url(path)).body(event.to_string())
            } else {
                s.http.get(s.url(path))
            };
            match origin {
                Some(o) => r.header("origin", o),
                None => r,
            }
        };
        // Another page's request is refused, and nothing in the answer lets it read it.
        for origin in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:1",
            "https://127.0.0.1",
        ] {
            let res = request(Some(origin)).send().await.unwrap();
            assert_eq!(res.status(), 403, "{path} from {origin}");
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{path}"
            );
        }
        // Its own pages, and tools that send no `Origin`, are answered, without CORS headers.
        for origin in [None, Some(own.as_str())] {
            let res = request(origin).send().await.unwrap();
            assert_eq!(res.status(), 200, "{path} from {origin:?}");
            assert!(
                res.headers().get("access-control-allow-origin").is_none(),
                "{path}"
            );
            assert_eq!(
                res.headers()["cross-origin-resource-policy"],
                "same-origin",
                "{path}"
            );
        }
    }
    // The API itself keeps the CORS the demo API configures.
    let res = s
        .http
        .get(s.url("/prod/pets"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["access-control-allow-origin"], "*");
}

/// With `CEDARGATE_ISSUER` set, serve uses the normal configuration and no development issuer:
/// here a second serve trusts the first one's issuer through `CEDARGATE_JWKS_FILE`.
#[tokio::test]
async fn with_cedargate_issuer_set_serve_trusts_that_issuer_and_runs_no_dev_issuer() {
    let dev = Serve::start("issuer-source", &[], &[]);
    let jwks = dev
        .http
        .get(dev.url("/dev-issuer/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let dir = workdir("configured");
    std::fs::write(dir.join("jwks.json"), jwks).unwrap();
    let issuer = format!("http://127.0.0.1:{}/dev-issuer", dev.port);
    let s = Serve::start_in_env(
        dir,
        &[],
        &[
            ("CEDARGATE_ISSUER", &issuer),
            ("CEDARGATE_AUDIENCE", "https://api.cedargate.example"),
            ("CEDARGATE_JWKS_FILE", "jwks.json"),
        ],
    );
    let status = s.status().await;
    assert_eq!(status["developmentIssuer"], false);
    assert_eq!(status["issuer"], issuer);
    let res = s
        .http
        .get(s.url("/dev-issuer/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        404,
        "no development issuer with CEDARGATE_ISSUER set"
    );
    assert!(
        !s.dir.join(".cedargate").exists(),
        "no development key is made"
    );

    // Tokens of the trusted issuer work; the serve's own port would name another issuer.
    let trusted = dev.token("reader", &[]);
    let (st, body) = s.call("GET", "/prod/pets/42", Some(&trusted), None).await;
    assert_eq!(st, 200, "{body}");
    let own = token_in(&dev.dir, "reader", s.port, &[]);
    assert_eq!(
        s.call("GET", "/prod/pets/42", Some(&own), None).await.0,
        401
    );
}

/// Shadow mode end to end: tokens are verified as usual (a bad one is still 401), every route
/// answers as if allowed, the backend sees `cedargateMode: shadow`, and the decision log says
/// what enforcing mode would have answered. Cold start says so, loudly.
#[tokio::test]
async fn shadow_mode_allows_every_route_and_logs_what_enforce_would_deny() {
    let s = Serve::start_in_env(
        workdir("shadow"),
        &["--cache-ttl", "0"],
        &[("CEDARGATE_MODE", "shadow")],
    );
    let reader = s.token("reader", &[]);
    // Enforcing mode denies a reader DELETE (see the one-call test above): here it passes.
    let (st, body) = s.call("DELETE", "/prod/pets/1", Some(&reader), None).await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = s.call("GET", "/prod/pets", Some(&reader), None).await;
    assert_eq!(st, 200);
    // Bad tokens are refused exactly as when enforcing.
    let (st, _) = s.call("GET", "/prod/pets", Some("garbage"), None).await;
    assert_eq!(st, 401);
    let (st, _) = s.call("GET", "/prod/pets", None, None).await;
    assert_eq!(st, 401);

    // The authorizer context tells the backend (and the access log) that nothing was enforced.
    let event = json!({
        "type": "TOKEN",
        "authorizationToken": format!("Bearer {reader}"),
        "methodArn": "arn:aws:execute-api:us-east-1:123456789012:demoapi/prod/DELETE/pets/1",
    });
    let answer: Value = s
        .http
        .post(s.url("/_cedargate/invoke"))
        .body(event.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["context"]["cedargateMode"], "shadow", "{answer}");
    // One route-wide answer: the whole stage of this API, nothing wider.
    assert_eq!(
        answer["policyDocument"]["Statement"],
        json!([{
            "Action": "execute-api:Invoke",
            "Effect": "Allow",
            "Resource": ["arn:aws:execute-api:us-east-1:123456789012:demoapi/prod/*"],
        }]),
        "{answer}"
    );

    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let lines: Vec<Value> = s
            .log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == "decision")
            .collect();
        if lines.len() >= 5 || std::time::Instant::now() >= deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let delete = lines
        .iter()
        .find(|l| {
            l["arn"]
                .as_str()
                .is_some_and(|a| a.ends_with("/DELETE/pets/1"))
        })
        .unwrap_or_else(|| panic!("no decision line for the DELETE: {lines:?}"));
    assert_eq!(delete["mode"], "shadow", "{delete}");
    assert_eq!(delete["outcome"], "deny", "{delete}");
    assert_eq!(delete["answer"], "allow", "{delete}");
    assert_eq!(delete["ShadowAllowed"], 1, "{delete}");
    assert_eq!(delete["Deny"], 1, "{delete}");
    let get = lines
        .iter()
        .find(|l| l["arn"].as_str().is_some_and(|a| a.ends_with("/GET/pets")))
        .unwrap();
    assert_eq!(
        (&get["outcome"], &get["ShadowAllowed"]),
        (&json!("allow"), &json!(0))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["outcome"] == "unauthorized" && l["answer"] == "unauthorized"),
        "{lines:?}"
    );
    assert!(
        s.log().contains("\"event\":\"shadow_mode\""),
        "no start-up warning"
    );
}
