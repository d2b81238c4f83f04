//! Authorizer event → [`AuthzRequest`]: what cedargate needs to know about one request.
//!
//! Stage: first. Input: the JSON event API Gateway sends to a Lambda authorizer, parsed with
//! `aws_lambda_events`. Output: the token as the client sent it, the method ARN, and the
//! caller-scoped facts that Cedar's context may use (source IP, user agent, headers, time).
//!
//! Flavours: REST `TOKEN`; REST `REQUEST` (payload 1.0); HTTP API payload `1.0` and `2.0`;
//! WebSocket `$connect` (a `REQUEST` event whose method ARN ends in `$connect`).
//!
//! Invariants: nothing here trusts the token; an event that is not an authorizer event is an
//! [`EventError`], never a panic. A WebSocket client cannot set headers, so for `$connect`
//! only, the token may come from a query-string parameter.

use std::collections::BTreeMap;

use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerRequest, ApiGatewayCustomAuthorizerRequestTypeRequest,
    ApiGatewayV2CustomAuthorizerV1Request, ApiGatewayV2CustomAuthorizerV2Request,
};
use serde_json::Value;

use crate::arn::{ArnError, MethodArn};
use crate::routes::WEBSOCKET_CONNECT;

/// Query-string parameters a WebSocket `$connect` may carry the token in.
pub const WEBSOCKET_TOKEN_PARAMS: [&str; 2] = ["access_token", "token"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Flavor {
    /// REST API, TOKEN authorizer.
    Token,
    /// REST API, REQUEST authorizer.
    Request,
    /// HTTP API, payload format 1.0.
    HttpV1,
    /// HTTP API, payload format 2.0.
    HttpV2,
    /// WebSocket API, `$connect`.
    WebSocket,
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("the event is not JSON: {0}")]
    NotJson(String),
    #[error("the event is not an API Gateway authorizer event: {0}")]
    Unrecognized(String),
    #[error("the `{flavor}` event is malformed: {reason}")]
    Malformed {
        flavor: &'static str,
        reason: String,
    },
    #[error(transparent)]
    Arn(#[from] ArnError),
}

/// One authorization request, whatever the flavour.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    pub flavor: Flavor,
    /// The credential as sent (`Bearer eyJ…`), when there is one.
    pub authorization: Option<String>,
    pub arn: MethodArn,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Request headers, names in lower case (REQUEST flavours only).
    pub headers: BTreeMap<String, String>,
    /// When API Gateway received the request (unix milliseconds), when the event says.
    pub request_time_ms: Option<i64>,
    /// The route key API Gateway matched (`GET /pets/{petId}`, `$default`, `$connect`), when
    /// the event says (HTTP APIs, WebSocket).
    pub route_key: Option<String>,
    /// What the event shows about how API Gateway caches the answer.
    pub cache: CacheScope,
}

/// How far API Gateway reuses a cached answer, as far as the event shows. Only HTTP API 2.0
/// events carry enough to tell: `identitySource` holds the *values* of the authorizer's
/// identity sources (not their names), so `$context.routeKey` is recognised by its value, the
/// route key of the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CacheScope {
    /// No identity source: API Gateway does not cache (HTTP APIs cache only with one).
    Uncached,
    /// The route key is an identity source: one cached answer per route.
    PerRoute,
    /// Identity sources without the route key: one cached answer reused for every route.
    AllRoutes,
    /// The event does not say (REST, HTTP API 1.0, WebSocket).
    Unknown,
}

/// The cache scope of an HTTP API 2.0 event.
///
/// The route key counts as an identity source only if it appears among the identity source
/// values more often than among the values a client chooses (headers, query parameters, path
/// parameters, cookies): a client who sends `X-Anything: GET /pets` cannot make an authorizer
/// keyed on `$request.header.X-Anything` look route-keyed.
fn cache_scope_v2(event: &Value, route_key: Option<&str>) -> CacheScope {
    let sources: Vec<&str> = match event.get("identitySource") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        Some(_) => return CacheScope::AllRoutes,
    };
    if sources.is_empty() {
        return CacheScope::Uncached;
    }
    let Some(key) = route_key.filter(|k| !k.is_empty()) else {
        return CacheScope::AllRoutes;
    };
    let in_sources = sources.iter().filter(|s| **s == key).count();
    let mut chosen_by_client = 0usize;
    for field in ["headers", "queryStringParameters", "pathParameters"] {
        if let Some(Value::Object(m)) = event.get(field) {
            chosen_by_client += m.values().filter(|v| v.as_str() == Some(key)).count();
        }
    }
    if let Some(Value::Array(cookies)) = event.get("cookies") {
        chosen_by_client += cookies
            .iter()
            .filter_map(Value::as_str)
            .filter(|c| *c == key || c.split_once('=').is_some_and(|(_, v)| v == key))
            .count();
    }
    if in_sources > chosen_by_client {
        CacheScope::PerRoute
    } else {
        CacheScope::AllRoutes
    }
}

/// The route key of an event: top level (HTTP API 2.0) or in `requestContext`.
fn route_key_of(event: &Value) -> Option<String> {
    event
        .get("routeKey")
        .or_else(|| event.get("requestContext").and_then(|c| c.get("routeKey")))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn malformed(flavor: &'static str, reason: impl std::fmt::Display) -> EventError {
    EventError::Malformed {
        flavor,
        reason: reason.to_string(),
    }
}

fn headers_of(map: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, value) in map {
        if let Ok(v) = value.to_str() {
            // The first value of a repeated header, as API Gateway's single-value map does.
            out.entry(name.as_str().to_ascii_lowercase())
                .or_insert_with(|| v.to_owned());
        }
    }
    out
}

/// A meaningful value: API Gateway's samples use `"..."` and `"IP"` as placeholders.
fn present(v: Option<&String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

impl AuthzRequest {
    /// Parses an event from JSON text.
    pub fn from_json(text: &str) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
        Self::from_value(value)
    }

    /// Parses an event already decoded as JSON.
    pub fn from_value(value: Value) -> Result<Self, EventError> {
        let Some(obj) = value.as_object() else {
            return Err(EventError::Unrecognized(
                "expected a JSON object".to_owned(),
            ));
        };
        let kind = obj
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let version = obj
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (kind.as_str(), version.as_str()) {
            ("TOKEN", _) => Self::token(value),
            ("REQUEST", "2.0") => Self::http_v2(value),
            ("REQUEST", "1.0") => Self::http_v1(value),
            ("REQUEST", _) => Self::request(value),
            ("", _) => Err(EventError::Unrecognized("no `type` field".to_owned())),
            (other, _) => Err(EventError::Unrecognized(format!(
                "unknown type `{}`",
                other.chars().take(64).collect::<String>()
            ))),
        }
    }

    fn token(value: Value) -> Result<Self, EventError> {
        const F: &str = "TOKEN";
        let ev: ApiGatewayCustomAuthorizerRequest =
            serde_json::from_value(value).map_err(|e| malformed(F, e))?;
        let arn = ev
            .method_arn
            .as_deref()
            .ok_or_else(|| malformed(F, "no `methodArn`"))?;
        Ok(Self {
            flavor: Flavor::Token,
            authorization: ev.authorization_token,
            arn: MethodArn::parse(arn)?,
            source_ip: None,
            user_agent: None,
            headers: BTreeMap::new(),
            request_time_ms: None,
            route_key: None,
            cache: CacheScope::Unknown,
        })
    }

    fn request(value: Value) -> Result<Self, EventError> {
        const F: &str = "REQUEST";
        // Fields the typed event does not carry (WebSocket's `requestTimeEpoch`, `userAgent`).
        let extra = |path: &[&str]| {
            let mut v = &value;
            for p in path {
                v = v.get(p)?;
            }
            Some(v.clone())
        };
        let time = extra(&["requestContext", "requestTimeEpoch"]).and_then(|v| v.as_i64());
        let ua = extra(&["requestContext", "identity", "userAgent"])
            .and_then(|v| v.as_str().map(str::to_owned));
        let route_key = route_key_of(&value);
        let ev: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(value.clone()).map_err(|e| malformed(F, e))?;
        let arn_text = ev
            .method_arn
            .as_deref()
            .ok_or_else(|| malformed(F, "no `methodArn`"))?;
        let arn = MethodArn::parse(arn_text)?;
        let headers = headers_of(&ev.headers);
        let websocket = arn.resource == WEBSOCKET_CONNECT;
        let mut authorization = headers.get("authorization").cloned();
        if websocket && authorization.is_none() {
            authorization = WEBSOCKET_TOKEN_PARAMS
                .iter()
                .find_map(|p| ev.query_string_parameters.first(p).map(str::to_owned));
        }
        let identity = ev.request_context.identity.as_ref();
        let user_agent = present(headers.get("user-agent")).or(ua);
        Ok(Self {
            flavor: if websocket {
                Flavor::WebSocket
            } else {
                Flavor::Request
            },
            authorization,
            arn,
            source_ip: present(identity.and_then(|i| i.source_ip.as_ref())),
            user_agent,
            headers,
            request_time_ms: time,
            route_key,
            cache: CacheScope::Unknown,
        })
    }

    fn http_v1(value: Value) -> Result<Self, EventError> {
        const F: &str = "HTTP API 1.0";
        let time = value
            .get("requestContext")
            .and_then(|c| c.get("timeEpoch").or_else(|| c.get("requestTimeEpoch")))
            .and_then(Value::as_i64);
        let route_key = route_key_of(&value);
        let ev: ApiGatewayV2CustomAuthorizerV1Request =
            serde_json::from_value(value).map_err(|e| malformed(F, e))?;
        let arn = ev
            .method_arn
            .as_deref()
            .ok_or_else(|| malformed(F, "no `methodArn`"))?;
        let headers = headers_of(&ev.headers);
        let authorization = headers
            .get("authorization")
            .cloned()
            .or(ev.authorization_token);
        Ok(Self {
            flavor: Flavor::HttpV1,
            authorization,
            arn: MethodArn::parse(arn)?,
            source_ip: present(ev.request_context.identity.source_ip.as_ref()),
            user_agent: present(headers.get("user-agent")),
            headers,
            request_time_ms: time,
            route_key,
            cache: CacheScope::Unknown,
        })
    }

    fn http_v2(value: Value) -> Result<Self, EventError> {
        const F: &str = "HTTP API 2.0";
        let route_key = route_key_of(&value);
        let cache = cache_scope_v2(&value, route_key.as_deref());
        let ev: ApiGatewayV2CustomAuthorizerV2Request =
            serde_json::from_value(value).map_err(|e| malformed(F, e))?;
        let arn = ev
            .route_arn
            .as_deref()
            .ok_or_else(|| malformed(F, "no `routeArn`"))?;
        let headers = headers_of(&ev.headers);
        // The identity source, when it is the Authorization header, is also in `headers`.
        let authorization = headers.get("authorization").cloned().or_else(|| {
            ev.identity_source
                .as_ref()
                .and_then(|s| match s.as_slice() {
                    [only] => Some(only.clone()),
                    _ => None,
                })
        });
        let http = &ev.request_context.http;
        Ok(Self {
            flavor: Flavor::HttpV2,
            authorization,
            arn: MethodArn::parse(arn)?,
            source_ip: present(http.source_ip.as_ref()),
            user_agent: present(http.user_agent.as_ref())
                .or_else(|| present(headers.get("user-agent"))),
            headers,
            request_time_ms: Some(ev.request_context.time_epoch),
            route_key,
            cache,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Value {
        // The AWS sample events beside the repository (`CEDARGATE_SHARED_DIR` overrides).
        let shared = std::env::var("CEDARGATE_SHARED_DIR")
            .unwrap_or_else(|_| format!("{}/../shared", env!("CARGO_MANIFEST_DIR")));
        let path = format!("{shared}/fixtures/aws-events/{name}");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e} (set CEDARGATE_SHARED_DIR)"));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn token_event() {
        let r =
            AuthzRequest::from_value(fixture("example-apigw-custom-auth-request.json")).unwrap();
        assert_eq!(r.flavor, Flavor::Token);
        assert_eq!(r.authorization.as_deref(), Some("allow"));
        assert_eq!(r.arn.stage, "*");
        assert_eq!(r.arn.resource, "GET/");
    }

    #[test]
    fn request_event() {
        let mut v = fixture("example-apigw-custom-auth-request-type-request.json");
        v["headers"]["Authorization"] = "Bearer abc".into();
        let r = AuthzRequest::from_value(v).unwrap();
        assert_eq!(r.flavor, Flavor::Request);
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.arn.resource, "GET/request");
        assert_eq!(
            r.headers.get("headerauth1").map(String::as_str),
            Some("headerValue1")
        );
    }

    #[test]
    fn http_api_events() {
        let r = AuthzRequest::from_value(fixture(
            "example-apigw-v2-custom-authorizer-v1-request.json",
        ))
        .unwrap();
        assert_eq!(r.flavor, Flavor::HttpV1);
        assert_eq!(r.authorization.as_deref(), Some("user1,123"));
        let r = AuthzRequest::from_value(fixture(
            "example-apigw-v2-custom-authorizer-v2-request.json",
        ))
        .unwrap();
        assert_eq!(r.flavor, Flavor::HttpV2);
        assert_eq!(
            r.authorization, None,
            "two identity sources: none is the token"
        );
        assert_eq!(r.request_time_ms, Some(1_583_348_638_390));
    }

    #[test]
    fn http_api_2_cache_scope_from_identity_sources() {
        // The sample without identity sources: API Gateway cannot cache.
        let v =
            fixture("example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json");
        let r = AuthzRequest::from_value(v).unwrap();
        assert_eq!(r.cache, CacheScope::Uncached);
        assert_eq!(r.route_key.as_deref(), Some("$default"));
        // Identity sources without the route key: one answer for every route.
        let mut v = fixture("example-apigw-v2-custom-authorizer-v2-request.json");
        assert_eq!(
            AuthzRequest::from_value(v.clone()).unwrap().cache,
            CacheScope::AllRoutes
        );
        // `$context.routeKey` among them: per route.
        v["identitySource"] = serde_json::json!(["Bearer x", "$default"]);
        assert_eq!(
            AuthzRequest::from_value(v.clone()).unwrap().cache,
            CacheScope::PerRoute
        );
        // A client-chosen header carrying the route key does not count.
        v["identitySource"] = serde_json::json!(["Bearer x", "GET /pets"]);
        v["routeKey"] = "GET /pets".into();
        v["headers"]["x-route"] = "GET /pets".into();
        assert_eq!(
            AuthzRequest::from_value(v.clone()).unwrap().cache,
            CacheScope::AllRoutes
        );
        v["identitySource"] = serde_json::json!(["Bearer x", "GET /pets", "GET /pets"]);
        assert_eq!(
            AuthzRequest::from_value(v.clone()).unwrap().cache,
            CacheScope::PerRoute
        );
        v["identitySource"] = serde_json::json!(["GET /pets"]);
        v["headers"].as_object_mut().unwrap().remove("x-route");
        v["cookies"] = serde_json::json!(["r=GET /pets"]);
        assert_eq!(
            AuthzRequest::from_value(v).unwrap().cache,
            CacheScope::AllRoutes
        );
        // Other flavours do not say.
        let r = AuthzRequest::from_value(fixture(
            "example-apigw-v2-custom-authorizer-v1-request.json",
        ))
        .unwrap();
        assert_eq!(r.cache, CacheScope::Unknown);
    }

    #[test]
    fn websocket_event_takes_the_token_from_the_query() {
        let mut v = fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
        v["queryStringParameters"]["token"] = "eyJ.x.y".into();
        let r = AuthzRequest::from_value(v).unwrap();
        assert_eq!(r.flavor, Flavor::WebSocket);
        assert_eq!(r.authorization.as_deref(), Some("eyJ.x.y"));
        assert_eq!(r.source_ip.as_deref(), Some("1.2.3.4"));
        assert_eq!(r.request_time_ms, Some(1_655_103_417_249));
        assert_eq!(r.route_key.as_deref(), Some("$connect"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "[]",
            "null",
            "{}",
            r#"{"type":"TOKEN"}"#,
            r#"{"type":"X"}"#,
            r#"{"type":"REQUEST","methodArn":5}"#,
        ] {
            assert!(AuthzRequest::from_json(text).is_err(), "{text}");
        }
    }
}
