//! Gateway: a local stand-in for an API Gateway REST API stage with a REQUEST authorizer, as
//! `template.yaml` deploys it.
//!
//! Stage: the front of `serve`. Input: an HTTP request under `/{stage}/`. Output: what API
//! Gateway would answer, after calling the authorizer in-process (the exact code the Lambda
//! runs) and then the demo backend or the `--upstream` backend.
//!
//! What it reproduces, because it is what makes a route-wide policy necessary:
//! - The identity sources are the `Authorization` header and the caller's address
//!   (`context.identity.sourceIp`). Without the header, 401 without calling the authorizer.
//!   The authorizer gets a REST `REQUEST` event (headers, path, address); its answer is cached
//!   per (header value, address) for the TTL (300 s by default; 0 turns caching off) and
//!   reused for every route called with the same token from the same address, and the cached
//!   entry is kept for its TTL whatever happens meanwhile (token expiry, policy reloads), as
//!   API Gateway does. The cache is bounded with real eviction: a flood of one-off tokens
//!   pushes out its own kind, not the answers other callers reuse.
//! - Every request is judged by the (cached) IAM policy against the method ARN it would have in
//!   AWS (`arn:aws:execute-api:us-east-1:123456789012:cedargate/prod/GET/pets/42`), by an IAM
//!   evaluator of its own ([`super::verdict`]).
//! - Routing follows API Gateway's precedence (the bundle's [`crate::routes::RouteTable`]);
//!   a path no route takes is 403 `Missing Authentication Token`, as REST APIs answer.
//! - Error bodies, `x-amzn-ErrorType` and CORS headers are those of API Gateway's default
//!   gateway responses with CORS enabled.
//!
//! Paths whose meaning depends on who reads them are refused (400) before routing: a dot
//! segment (`.`, `..`, raw or percent-encoded in any mix, `%2e%2E`, `.%2e`), an encoded slash
//! or backslash (`%2F`, `%5C`), a raw backslash. A backend, proxy or URL library resolves
//! those (`/pets/1/photos/%2e%2e/%2e%2e/%2e%2e/admin/users` is `/admin/users` to one), while
//! routing and the authorizer see the path as sent: the two must never differ. API Gateway
//! documents no normalization of its own, so `serve` takes none and refuses what could differ;
//! every other path reaches the backend byte for byte as it was routed and authorized.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::http::{self, Reply};
use super::verdict::{evaluate, Verdict};
use crate::handler::Authorizer;
use crate::routes::{self, RouteTable, Segment};

/// The parts of the fake execute-api ARN that AWS would fill in.
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";
pub const API_ID: &str = "cedargate";
/// The original example's public endpoint: no authorizer.
pub const PUBLIC_ROUTE: (&str, &str) = ("POST", "/api/public");

const CACHE_LIMIT: usize = 10_000;
/// API Gateway's default integration timeout.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(29);
/// The header that carries the authorizer context to an `--upstream` backend.
pub const CONTEXT_HEADER: &str = "x-cedargate-context";

/// An authorizer answer as API Gateway keeps it.
#[derive(Debug, Clone)]
struct Authorized {
    principal_id: String,
    policy: Value,
    context: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct Entry {
    answer: Arc<Authorized>,
    expires: Instant,
}

/// Counters shown by `/status`.
#[derive(Debug, Default)]
pub struct Counters {
    pub authorizer_calls: AtomicU64,
    pub cache_hits: AtomicU64,
}

/// Where allowed requests go.
#[derive(Debug, Clone)]
pub enum Backend {
    /// The built-in demo backend: echoes the route and the authorizer context.
    Demo,
    /// A real backend: method, path (after the stage), query and body are forwarded.
    Upstream(url::Url),
}

/// The gateway: authorizer, cache, backend.
#[derive(Debug)]
pub struct Gateway {
    pub stage: String,
    authorizer: Arc<Authorizer>,
    ttl: Duration,
    cache: quick_cache::sync::Cache<[u8; 32], Entry>,
    pub counters: Counters,
    backend: Backend,
    http: reqwest::Client,
}

/// A request as the gateway sees it.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: &'a Method,
    /// The path after the stage, starting with `/` (raw, as sent).
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The caller's address (`context.identity.sourceIp`).
    pub peer: IpAddr,
    pub body: Bytes,
}

fn gateway_error(status: StatusCode, error_type: &str, body: Value) -> Reply {
    let mut r = http::json(status, &body);
    http::set(&mut r, "x-amzn-errortype", error_type);
    http::cors(r)
}

pub fn unauthorized() -> Reply {
    gateway_error(
        StatusCode::UNAUTHORIZED,
        "UnauthorizedException",
        json!({"message": "Unauthorized"}),
    )
}

/// Why a request path could mean another path to a backend, proxy or URL library: a dot
/// segment (raw or percent-encoded, any case), an encoded slash or backslash, a raw backslash
/// (WHATWG URL parsers read it as `/`). `None` for every other path.
pub fn ambiguous_path(path: &str) -> Option<&'static str> {
    if path.contains('\\') {
        return Some("a backslash");
    }
    for segment in path.split('/') {
        let bytes = segment.as_bytes();
        // Percent-encoded `/` or `\`, anywhere in the segment.
        let encoded_separator = bytes.windows(3).any(|w| {
            w.first() == Some(&b'%')
                && matches!(
                    w.get(1..3),
                    Some([b'2', b'f' | b'F']) | Some([b'5', b'c' | b'C'])
                )
        });
        if encoded_separator {
            return Some("an encoded slash or backslash");
        }
        // `.` and `..`, with each dot possibly written `%2e` or `%2E`.
        let mut rest = segment;
        let mut dots = 0;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('.') {
                rest = r;
            } else if rest.len() >= 3
                && rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%2e"))
            {
                rest = rest.get(3..).unwrap_or_default();
            } else {
                break;
            }
            dots += 1;
        }
        if rest.is_empty() && (dots == 1 || dots == 2) {
            return Some("a dot segment");
        }
    }
    None
}

pub fn missing_authentication_token() -> Reply {
    gateway_error(
        StatusCode::FORBIDDEN,
        "MissingAuthenticationTokenException",
        json!({"message": "Missing Authentication Token"}),
    )
}

fn access_denied(verdict: Verdict) -> Reply {
    let message = if verdict == Verdict::ExplicitDeny {
        "User is not authorized to access this resource with an explicit deny"
    } else {
        "User is not authorized to access this resource"
    };
    gateway_error(
        StatusCode::FORBIDDEN,
        "AccessDeniedException",
        json!({"Message": message}),
    )
}

/// The method ARN of `method path` in `stage` (`path` starts with `/`).
pub fn method_arn(stage: &str, method: &str, path: &str) -> String {
    format!(
        "arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{stage}/{method}/{}",
        path.strip_prefix('/').unwrap_or(path)
    )
}

/// The path parameters of `path` under the route's template.
pub fn path_parameters(segments: &[Segment], path: &str) -> Map<String, Value> {
    let parts: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let mut out = Map::new();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Segment::Literal(_) => {}
            Segment::Param(name) => {
                if let Some(v) = parts.get(i) {
                    out.insert(name.clone(), Value::String(decode(v)));
                }
            }
            Segment::Proxy(name) => {
                let rest = parts.get(i..).unwrap_or_default().join("/");
                out.insert(name.clone(), Value::String(decode(&rest)));
            }
        }
    }
    out
}

fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The cache key: the identity source values, each length-prefixed.
fn cache_key(header: &str, peer: IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [header, &peer.to_string()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// A short fingerprint of a credential for logs, never the credential itself: the same one
/// the authorizer logs for the token, so the gateway's and the authorizer's lines correlate.
pub fn fingerprint(header: &str) -> String {
    let value = header.trim();
    let token = match value.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => value,
    };
    crate::token::fingerprint(token)
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

impl Gateway {
    pub fn new(
        stage: String,
        authorizer: Arc<Authorizer>,
        ttl: Duration,
        backend: Backend,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(UPSTREAM_TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the upstream HTTP client: {e}"))?;
        Ok(Self {
            stage,
            authorizer,
            ttl,
            cache: quick_cache::sync::Cache::new(CACHE_LIMIT),
            counters: Counters::default(),
            backend,
            http,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The authorizer the gateway calls.
    pub fn authorizer(&self) -> &Authorizer {
        &self.authorizer
    }

    /// Live cache entries.
    pub fn cache_entries(&self) -> usize {
        let now = Instant::now();
        self.cache.iter().filter(|(_, e)| e.expires > now).count()
    }

    /// Drops every cached authorizer answer (`--flush-on-reload`; API Gateway never does this
    /// on its own).
    pub fn flush(&self) -> usize {
        let n = self.cache.len();
        self.cache.clear();
        n
    }

    /// Handles a request under the stage.
    pub async fn handle(&self, routes: Option<&RouteTable>, call: Call<'_>) -> Reply {
        // Before anything reads the path: one that a backend could read as another path is
        // refused, so that what is routed and authorized is what the backend gets.
        if let Some(why) = ambiguous_path(call.path) {
            tracing::info!(
                event = "path_refused",
                reason = why,
                "a request path was refused"
            );
            return gateway_error(
                StatusCode::BAD_REQUEST,
                "BadRequestException",
                json!({"message": format!("Bad request path: {why}")}),
            );
        }
        // CORS preflight: answered by the OPTIONS mock integration, without the authorizer.
        if call.method == Method::OPTIONS
            && call.headers.contains_key("access-control-request-method")
        {
            return http::preflight();
        }
        let route = routes::Method::parse(call.method.as_str())
            .and_then(|m| routes.and_then(|t| t.route(m, call.path)))
            .and_then(|id| routes.and_then(|t| t.get(id)));
        let Some(route) = route else {
            if (call.method.as_str(), call.path) == PUBLIC_ROUTE {
                return http::cors(http::json(
                    StatusCode::OK,
                    &json!({"message": "Hi ⊂◉‿◉つ from Public API"}),
                ));
            }
            return missing_authentication_token();
        };
        let Some(header) = call
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.trim().is_empty())
        else {
            return unauthorized();
        };
        let arn = method_arn(&self.stage, call.method.as_str(), call.path);
        let Some(answer) = self.authorize(header, &call, &route.name, &arn).await else {
            return unauthorized();
        };
        let verdict = evaluate(&answer.policy, &arn);
        tracing::info!(
            event = "gateway",
            token = %fingerprint(header),
            route = %route.name,
            arn = %arn,
            verdict = verdict.as_str(),
            "gateway decision"
        );
        if verdict != Verdict::Allow {
            return access_denied(verdict);
        }
        let mut authorizer = answer.context.clone();
        authorizer.insert(
            "principalId".to_owned(),
            Value::String(answer.principal_id.clone()),
        );
        let params = path_parameters(route.segments(), call.path);
        match &self.backend {
            Backend::Demo => http::cors(demo_backend(
                &self.stage,
                &route.name,
                &call,
                params,
                authorizer,
            )),
            Backend::Upstream(base) => http::cors(self.proxy(base, &call, &authorizer).await),
        }
    }

    /// The authorizer's answer for this credential from this address: cached, or fresh from
    /// the authorizer. `None` is the authorizer's `Unauthorized` (not cached: a 401 is retried,
    /// as API Gateway does with a failing authorizer).
    async fn authorize(
        &self,
        header: &str,
        call: &Call<'_>,
        route: &str,
        arn: &str,
    ) -> Option<Arc<Authorized>> {
        let key = cache_key(header, call.peer);
        let now = Instant::now();
        if !self.ttl.is_zero() {
            if let Some(e) = self.cache.get(&key).filter(|e| e.expires > now) {
                self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
                return Some(e.answer.clone());
            }
        }
        self.counters
            .authorizer_calls
            .fetch_add(1, Ordering::Relaxed);
        let event = self.request_event(call, route, arn);
        let response = self.authorizer.handle(&event).await.ok()?;
        let answer = Arc::new(Authorized {
            principal_id: response
                .get("principalId")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            policy: response
                .get("policyDocument")
                .cloned()
                .unwrap_or(Value::Null),
            context: response
                .get("context")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        });
        if !self.ttl.is_zero() {
            self.cache.insert(
                key,
                Entry {
                    answer: answer.clone(),
                    expires: now + self.ttl,
                },
            );
        }
        Some(answer)
    }

    /// The REST API `REQUEST` authorizer event API Gateway would send for this call.
    fn request_event(&self, call: &Call<'_>, route: &str, arn: &str) -> Value {
        let mut headers = Map::new();
        let mut multi: Map<String, Value> = Map::new();
        for (name, value) in call.headers {
            let Ok(v) = value.to_str() else { continue };
            // The single-value map keeps the last value of a repeated header.
            headers.insert(name.as_str().to_owned(), Value::String(v.to_owned()));
            if let Value::Array(values) = multi
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                values.push(Value::String(v.to_owned()));
            }
        }
        let query: Map<String, Value> =
            url::form_urlencoded::parse(call.query.unwrap_or("").as_bytes())
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
        let (method, template) = route.split_once(' ').unwrap_or(("ANY", route));
        let user_agent = call
            .headers
            .get("user-agent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        json!({
            "type": "REQUEST",
            "methodArn": arn,
            "resource": template,
            "path": call.path,
            "httpMethod": call.method.as_str(),
            "headers": headers,
            "multiValueHeaders": multi,
            "queryStringParameters": query,
            "pathParameters": {},
            "stageVariables": {},
            "requestContext": {
                "path": format!("/{}{}", self.stage, call.path),
                "accountId": ACCOUNT,
                "stage": self.stage,
                "apiId": API_ID,
                "resourcePath": template,
                "httpMethod": if method == "ANY" { call.method.as_str() } else { method },
                "requestTimeEpoch": crate::time::unix_millis(std::time::SystemTime::now()),
                "identity": { "sourceIp": call.peer.to_string(), "userAgent": user_agent },
            },
        })
    }

    async fn proxy(&self, base: &url::Url, call: &Call<'_>, context: &Map<String, Value>) -> Reply {
        let mut url = base.clone();
        let joined = format!(
            "{}{}",
            base.path().trim_end_matches('/'),
            if call.path.is_empty() { "/" } else { call.path }
        );
        url.set_path(&joined);
        // The backend gets exactly the path that was routed and authorized, under its base:
        // should the URL library write it any other way, nothing is sent.
        if url.path() != joined {
            tracing::warn!(
                event = "path_refused",
                "the upstream URL would not carry the authorized path"
            );
            return http::json(
                StatusCode::BAD_REQUEST,
                &json!({"message": "Bad request path"}),
            );
        }
        url.set_query(call.query);
        let Ok(method) = reqwest::Method::from_bytes(call.method.as_str().as_bytes()) else {
            return missing_authentication_token();
        };
        let mut req = self.http.request(method, url);
        for (name, value) in call.headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "content-length" || n == CONTEXT_HEADER {
                continue;
            }
            req = req.header(n, value.as_bytes());
        }
        req = req.header(CONTEXT_HEADER, Value::Object(context.clone()).to_string());
        let response = match req.body(call.body.clone()).send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return http::json(
                    StatusCode::GATEWAY_TIMEOUT,
                    &json!({"message": "Endpoint request timed out"}),
                )
            }
            Err(e) => {
                tracing::warn!(event = "upstream_failed", error = %e, "the upstream backend did not answer");
                return http::json(
                    StatusCode::BAD_GATEWAY,
                    &json!({"message": "Internal server error"}),
                );
            }
        };
        let status =
            StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let headers = response.headers().clone();
        let body = match response.bytes().await {
            Ok(b) if b.len() <= http::MAX_BODY_BYTES => b,
            _ => {
                return http::json(
                    StatusCode::BAD_GATEWAY,
                    &json!({"message": "Internal server error"}),
                )
            }
        };
        let mut reply = http::reply(status, "application/octet-stream", body);
        reply.headers_mut().remove(hyper::header::CONTENT_TYPE);
        for (name, value) in &headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n) || n == "content-length" {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.as_str().as_bytes()),
                hyper::header::HeaderValue::from_bytes(value.as_bytes()),
            ) {
                reply.headers_mut().append(name, value);
            }
        }
        reply
    }
}

/// The demo backend: what the original example's private endpoint did, echoing what API
/// Gateway hands a Lambda proxy integration (`requestContext.authorizer`).
fn demo_backend(
    stage: &str,
    route: &str,
    call: &Call<'_>,
    params: Map<String, Value>,
    authorizer: Map<String, Value>,
) -> Reply {
    let message = if route == "POST /api/private" {
        "Hi ⊂◉‿◉つ from Private API. Only logged in users can see this".to_owned()
    } else {
        format!("Hi ⊂◉‿◉つ from the demo backend: the policies let you call `{route}`")
    };
    let body = match std::str::from_utf8(&call.body) {
        Ok("") => Value::Null,
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
        Err(_) => Value::String(format!("<{} bytes>", call.body.len())),
    };
    http::json(
        StatusCode::OK,
        &json!({
            "message": message,
            "route": route,
            "request": {
                "method": call.method.as_str(),
                "path": call.path,
                "stage": stage,
                "pathParameters": params,
                "query": call.query,
                "body": body,
            },
            "requestContext": { "authorizer": authorizer },
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::Route;

    #[test]
    fn paths_a_backend_could_read_otherwise_are_named() {
        for path in [
            "/pets/1/photos/../../admin/users",
            "/pets/./1",
            "/pets/1/photos/%2e%2e/%2e%2e/%2e%2e/admin/users",
            "/pets/%2E%2e/admin",
            "/pets/.%2e/admin",
            "/pets/%2e./admin",
            "/pets/%2e",
            "/pets/..",
            "/pets/1/photos/a%2fb",
            "/pets/1/photos/a%2Fb",
            "/pets/a%5cb",
            "/pets/a\\b",
        ] {
            assert!(ambiguous_path(path).is_some(), "{path}");
        }
        for path in [
            "/",
            "/pets",
            "/pets/1/photos/a/b",
            "/pets/...",
            "/pets/.hidden",
            "/pets/a..b",
            "/pets/%2e%2e%2e",
            "/pets/%41",
            "/pets//x",
            "/pets/%25",
        ] {
            assert_eq!(ambiguous_path(path), None, "{path}");
        }
    }

    #[test]
    fn arns_carry_the_stage_and_the_raw_path() {
        assert_eq!(
            method_arn("prod", "GET", "/pets/42"),
            "arn:aws:execute-api:us-east-1:123456789012:cedargate/prod/GET/pets/42"
        );
        assert_eq!(
            method_arn("prod", "GET", "/"),
            "arn:aws:execute-api:us-east-1:123456789012:cedargate/prod/GET/"
        );
    }

    #[test]
    fn fingerprints_match_the_authorizer_s() {
        let t = crate::token::fingerprint("abc.def.ghi");
        assert_eq!(fingerprint("Bearer abc.def.ghi"), t);
        assert_eq!(fingerprint("bearer  abc.def.ghi "), t);
        assert_ne!(fingerprint("Bearer abc.def.ghj"), t);
    }

    #[test]
    fn path_parameters_follow_the_template() {
        let r = Route::parse("GET /pets/{petId}/photos/{path+}")
            .unwrap()
            .unwrap();
        let p = path_parameters(r.segments(), "/pets/4%202/photos/a/b.jpg");
        assert_eq!(p.get("petId").unwrap(), "4 2");
        assert_eq!(p.get("path").unwrap(), "a/b.jpg");
    }
}
