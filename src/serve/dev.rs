//! Development endpoints of `serve` (none of these exist in AWS): `/status`, and under
//! `/_cedargate/` the frontend's configuration, the route list, the explanation of a caller's
//! decisions, and the authorizer on any event (`invoke`). They answer their own origin only.
//!
//! Input: the serve state and, for `explain`, a bearer token (verified exactly as the authorizer
//! verifies it). Output: JSON.

use std::time::SystemTime;

use hyper::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::gateway::{self, method_arn, PUBLIC_ROUTE};
use super::http::{self, Reply};
use super::verdict::evaluate;
use super::App;
use crate::authorize::Input;
use crate::event::AuthzRequest;
use crate::explain::explain;
use crate::routes::{Method, Route, RouteKind, RouteMethod, RouteTable, Segment};
use crate::token::UnverifiedJwt;

/// The OAuth client id the demo page uses with the development issuer.
pub const CLIENT_ID: &str = "cedargate-demo";

/// A method and concrete path that API Gateway sends to `route`, for one-click calls.
pub fn sample(table: &RouteTable, id: usize, route: &Route) -> Option<(String, String)> {
    let RouteKind::Http { method, segments } = &route.kind else {
        return None;
    };
    let verb = match method {
        RouteMethod::One(m) => *m,
        RouteMethod::Any => Method::parse("GET")?,
    };
    // Try plain sample values first, then variants, until the path routes back to this route
    // (a parameter value equal to a sibling literal would reach the literal's route).
    for variant in ["", "-1", "-x"] {
        let mut path = String::new();
        for seg in segments {
            path.push('/');
            match seg {
                Segment::Literal(l) => path.push_str(l),
                Segment::Param(name) => {
                    let lower = name.to_ascii_lowercase();
                    path.push_str(if lower.ends_with("id") {
                        "42"
                    } else {
                        "sample"
                    });
                    path.push_str(variant);
                }
                Segment::Proxy(_) => {
                    path.push_str("sample");
                    path.push_str(variant);
                    path.push_str("/path");
                }
            }
        }
        if path.is_empty() {
            path.push('/');
        }
        if table.route(verb, &path) == Some(id) {
            return Some((verb.as_str().to_owned(), path));
        }
    }
    None
}

/// `GET /_cedargate/routes`: the API's routes with sample calls, and the public endpoint.
pub fn routes(app: &App) -> Reply {
    let stage = &app.gateway.stage;
    let mut list = Vec::new();
    if let Some(snapshot) = app.store.current() {
        for (id, route) in snapshot.routes().routes().iter().enumerate() {
            let Some((method, path)) = sample(snapshot.routes(), id, route) else {
                continue;
            };
            list.push(json!({
                "route": route.name,
                "method": method,
                "samplePath": path,
                "url": format!("/{stage}{path}"),
                "authorizer": true,
            }));
        }
    }
    let (pm, pp) = PUBLIC_ROUTE;
    list.push(json!({
        "route": format!("{pm} {pp}"),
        "method": pm,
        "samplePath": pp,
        "url": format!("/{stage}{pp}"),
        "authorizer": false,
    }));
    http::json(
        StatusCode::OK,
        &json!({
            "stage": stage,
            "revision": app.store.status().revision,
            "routes": list,
        }),
    )
}

/// `GET /_cedargate/config`: what the demo page needs to sign in against this server.
pub fn config(app: &App) -> Reply {
    http::json(
        StatusCode::OK,
        &json!({
            "issuer": app.issuer_url(),
            "audience": app.audience(),
            "clientId": CLIENT_ID,
            "scope": "openid profile email",
            "apiBase": format!("/{}", app.gateway.stage),
            "stage": app.gateway.stage,
            "developmentIssuer": app.issuer.is_some(),
        }),
    )
}

fn unauthorized(reason: &str) -> Reply {
    http::json(
        StatusCode::UNAUTHORIZED,
        &json!({"message": "Unauthorized", "reason": reason}),
    )
}

/// `GET /_cedargate/explain` with `Authorization: Bearer …`: every route's decision for this
/// caller with the determining policies, the IAM policy the authorizer returns, and what the
/// gateway makes of that policy for each route's sample call. `iamPolicy` holds that policy
/// document as the gateway caches it for the token's first call (`forCall`, a route the
/// caller may use when there is one) and its size as compact JSON (`bytes`).
pub async fn explain_caller(app: &App, headers: &HeaderMap) -> Reply {
    let Some(raw) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return unauthorized("no token");
    };
    let token = match UnverifiedJwt::parse(raw, app.max_token_bytes) {
        Ok(t) => t,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let claims = match app.verifier.verify(&token).await {
        Ok(c) => c,
        Err(e) => return unauthorized(&e.to_string()),
    };
    let Some(snapshot) = app.store.current() else {
        return http::json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"message": "no valid policy bundle is loaded", "status": app.store.status()}),
        );
    };
    let stage = &app.gateway.stage;
    let explain_for = |method: &str, path: &str| {
        let event = json!({
            "type": "TOKEN",
            "authorizationToken": raw,
            "methodArn": method_arn(stage, method, path),
        });
        let req = AuthzRequest::from_value(&event).map_err(|e| e.to_string())?;
        let input = Input {
            request: &req,
            claims: &claims,
            now: SystemTime::now(),
        };
        explain(&snapshot, &input, &app.response).map_err(|e| e.to_string())
    };
    // The decisions are route-wide, but the policy answers one request: a request to a denied
    // route adds an explicit Deny for it. API Gateway caches the answer to the token's first
    // call, so show the policy as it is for a first call to a route this caller may use (the
    // usual case), or to `GET /` when there is none.
    let mut first_call = ("GET".to_owned(), "/".to_owned());
    let mut explanation = match explain_for(&first_call.0, &first_call.1) {
        Ok(x) => x,
        Err(e) => return unauthorized(&e),
    };
    let allowed_sample = explanation
        .routes
        .iter()
        .filter(|r| r.allowed)
        .find_map(|r| {
            let id = snapshot.routes().id_of(&r.route)?;
            sample(snapshot.routes(), id, snapshot.routes().get(id)?)
        });
    if let Some((method, path)) = allowed_sample {
        match explain_for(&method, &path) {
            Ok(x) => explanation = x,
            Err(e) => return unauthorized(&e),
        }
        first_call = (method, path);
    }
    let policy = explanation
        .response
        .get("policyDocument")
        .cloned()
        .unwrap_or(Value::Null);
    let mut body = serde_json::to_value(&explanation).unwrap_or(Value::Null);
    if let Some(routes) = body.get_mut("routes").and_then(Value::as_array_mut) {
        for entry in routes {
            let Some(name) = entry.get("route").and_then(Value::as_str) else {
                continue;
            };
            let Some(id) = snapshot.routes().id_of(name) else {
                continue;
            };
            let Some(route) = snapshot.routes().get(id) else {
                continue;
            };
            if let (Some((method, path)), Some(obj)) =
                (sample(snapshot.routes(), id, route), entry.as_object_mut())
            {
                let verdict = evaluate(&policy, &method_arn(stage, &method, &path));
                obj.insert("method".to_owned(), json!(method));
                obj.insert("samplePath".to_owned(), json!(path));
                obj.insert("gateway".to_owned(), json!(verdict.as_str()));
            }
        }
    }
    if let Some(obj) = body.as_object_mut() {
        obj.insert(
            "claims".to_owned(),
            Value::Object(
                claims
                    .as_map()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        );
        obj.insert("token".to_owned(), json!(gateway::fingerprint(raw)));
        // The size that counts against API Gateway's limits: the document as compact JSON,
        // which is how the Lambda's answer carries it.
        obj.insert(
            "iamPolicy".to_owned(),
            json!({
                "forCall": { "method": first_call.0, "path": first_call.1 },
                "bytes": serde_json::to_string(&policy).map_or(0, |t| t.len()),
                "document": policy,
            }),
        );
    }
    http::json(StatusCode::OK, &body)
}

/// `POST /_cedargate/invoke` with an authorizer event (any flavour) as the body: exactly what the
/// Lambda answers, as `cedargate invoke` prints it (`{"error":"Unauthorized"}` for a 401). It
/// calls the authorizer the gateway calls, caches included.
pub async fn invoke(app: &App, body: &[u8]) -> Reply {
    let answer = match std::str::from_utf8(body) {
        Ok(text) => app.gateway.authorizer().handle_json(text, None).await,
        Err(_) => Err(crate::handler::Unauthorized),
    };
    match answer {
        Ok(response) => http::json(StatusCode::OK, &response.to_value()),
        Err(_) => http::json(StatusCode::OK, &json!({"error": "Unauthorized"})),
    }
}

/// `GET /status`: the loaded bundle, the last reload, the authorizer and its cache.
pub fn status(app: &App) -> Reply {
    use std::sync::atomic::Ordering;
    let reloads = app.reloads.lock().unwrap_or_else(|e| e.into_inner());
    let g = &app.gateway;
    let backend = match g.backend() {
        gateway::Backend::Demo => json!("demo"),
        gateway::Backend::Upstream(u) => json!(u.as_str()),
    };
    http::json(
        StatusCode::OK,
        &json!({
            "service": "cedargate serve (development only)",
            "stage": g.stage,
            "policy": app.store.status(),
            "reloads": {
                "count": reloads.count,
                "last": reloads.last,
                "watching": app.watching,
            },
            "authorizer": {
                "invocations": g.counters.authorizer_calls.load(Ordering::Relaxed),
                "cacheHits": g.counters.cache_hits.load(Ordering::Relaxed),
                "cacheEntries": g.cache_entries(),
                "cacheTtlSeconds": g.ttl().as_secs(),
                "flushOnReload": app.flush_on_reload,
                "memo": g.authorizer().memo_stats(),
            },
            "issuer": app.issuer_url(),
            "developmentIssuer": app.issuer.is_some(),
            "audience": app.audience(),
            "backend": backend,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_route_back_to_their_route() {
        let names = [
            "GET /pets/{petId}",
            "GET /pets/search",
            "ANY /admin/{proxy+}",
            "GET /admin/users",
            "GET /pets/{petId}/photos/{path+}",
            "GET /",
            "GET /x/{xId}",
            "GET /x/42",
        ];
        let table = RouteTable::of(&names);
        for (id, route) in table.routes().iter().enumerate() {
            let (m, p) = sample(&table, id, route).unwrap();
            assert_eq!(
                table.route(Method::parse(&m).unwrap(), &p),
                Some(id),
                "{}",
                route.name
            );
        }
        let (_, p) = sample(&table, 6, table.get(6).unwrap()).unwrap();
        assert_eq!(p, "/x/42-1");
    }
}
