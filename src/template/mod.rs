//! SAM template checks: what `cfn-lint` and `sam validate` do not check about a template that
//! deploys cedargate in front of an API.
//!
//! Stage: tooling (`cedargate validate`, when a `template.yaml` lies next to the bundle, and the
//! repository's tests on its own `template.yaml`). Input: the template text and the bundle's
//! route table. Output: [`Findings`], each naming the resource and the route or setting.
//!
//! The checks:
//! - **Authorizer cache TTL within 0–3600 s.** API Gateway refuses other values only at deploy
//!   time (the linters accept them). A TTL taken from a parameter must have a default in range
//!   and `MinValue`/`MaxValue` that keep deploy-time values in range.
//! - **Routes.** For every API in the template that has routes behind a cedargate authorizer,
//!   its authorized routes and the schema's routes are the same set (API Gateway's notion of
//!   "same": verb and path template, parameter names aside). A route the schema lacks is denied
//!   to everyone (the policies never saw it); a schema route the API lacks is dead policy, and
//!   usually a typo on one side. WebSocket APIs are compared on `$connect`; HTTP APIs may have
//!   `$default`; REST APIs have neither.
//! - **Environment.** The cedargate function's environment (and `Globals`) names only
//!   `CEDARGATE_*` variables cedargate knows ([`crate::config::KNOWN_VARIABLES`]; a misspelt one
//!   would silently leave a default in place), no variable Lambda reserves
//!   ([`LAMBDA_RESERVED_VARIABLES`]) and only names Lambda accepts; other variables (`RUST_LOG`,
//!   `AWS_ENDPOINT_URL_S3`, a layer's `AWS_LAMBDA_EXEC_WRAPPER` or `OTEL_*`) are left alone. It
//!   sets the settings the authorizer cannot run without.
//! - **Policy read access** (a warning): the function may read one S3 object, not a bucket.
//! - **Several issuers** ([`issuers`], a warning): with more than one issuer in a function's
//!   `CEDARGATE_ISSUER`, a policy that tells principals apart by id must be able to tell
//!   their issuers apart too.
//! - **Facts against the cache key** ([`cache`]): every request fact a policy reads (source
//!   IP, user agent, a header, the time) is carried by the authorizer's identity sources or the
//!   TTL is 0; a TOKEN authorizer, whose events carry none of them, is an error.
//!
//! YAML: CloudFormation's short tags (`!Ref`, `!Sub`, `!GetAtt A.B`, …) are read as their long
//! forms (`Ref`, `Fn::Sub`, `Fn::GetAtt: [A, B]`), so a template may use either.
//!
//! Which resources are cedargate's: a function built with `BuildMethod: rust-cargolambda` or
//! with a `CEDARGATE_*` variable in its environment; an authorizer whose `FunctionArn` refers to
//! one of them (or any Lambda authorizer, when the template has no such function).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

mod cache;
mod issuers;
mod mode;

pub use cache::{Authorizer, Payload, Source, Ttl};
pub use issuers::{ambiguous as ambiguous_ids, split_issuers, unqualified_ids};

use crate::bundle::Snapshot;
use crate::config::KNOWN_VARIABLES;
use crate::routes::{Route, RouteKind, RouteTable, HTTP_DEFAULT, WEBSOCKET_CONNECT};

/// The largest authorizer result TTL API Gateway accepts, in seconds.
pub const MAX_TTL_SECONDS: u64 = 3600;

/// A template that is not YAML, or not a CloudFormation template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{file}` cannot be read as a template: {reason}")]
pub struct TemplateError {
    file: String,
    reason: String,
}

/// The kinds of API a route can belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApiKind {
    Rest,
    Http,
    WebSocket,
}

impl fmt::Display for ApiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rest => "REST API",
            Self::Http => "HTTP API",
            Self::WebSocket => "WebSocket API",
        })
    }
}

/// A route of an API in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRoute {
    /// The route as written (`GET /pets/{petId}`, `$connect`).
    pub name: String,
    /// The resource that declares it (a function, or an `AWS::ApiGatewayV2::Route`).
    pub declared_by: String,
    /// Whether a cedargate authorizer protects it.
    pub authorized: bool,
}

/// An API of the template and its routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateApi {
    /// The logical id (`ServerlessRestApi` / `ServerlessHttpApi` for SAM's implicit APIs).
    pub id: String,
    pub kind: ApiKind,
    pub routes: Vec<TemplateRoute>,
}

impl TemplateApi {
    /// Files `route` under its API, creating the API (of `kind`) on its first route.
    fn add(
        apis: &mut BTreeMap<String, TemplateApi>,
        id: String,
        kind: ApiKind,
        route: TemplateRoute,
    ) {
        apis.entry(id.clone())
            .or_insert_with(|| TemplateApi {
                id,
                kind,
                routes: Vec::new(),
            })
            .routes
            .push(route);
    }
}

/// An authorizer TTL setting found in the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlSetting {
    /// Where: `CedargateApi` authorizer `CedargateAuthorizer`.
    pub at: String,
    /// The value as written (`300`, `{"Ref":"AuthorizerCacheTtl"}`).
    pub value: Value,
}

/// What the checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    file: String,
    root: Map<String, Value>,
}

/// A YAML node with CloudFormation short tags turned into their long forms.
struct Node(Value);

/// The node without its tag.
struct Bare(Value);

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let serde_saphyr::Tagged(Bare(value), tag) = serde_saphyr::Tagged::<Bare>::deserialize(d)?;
        Ok(Node(long_form(value, tag.as_deref())))
    }
}

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(BareVisitor)
    }
}

struct BareVisitor;

impl<'de> Visitor<'de> for BareVisitor {
    type Value = Bare;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Bare, E> {
        Ok(Bare(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Bare, E> {
        Ok(Bare(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Bare, E> {
        Ok(Bare(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Bare, E> {
        Ok(Bare(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Bare, E> {
        Ok(Bare(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Bare, E> {
        Ok(Bare(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Bare, E> {
        Ok(Bare(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Bare, E> {
        Ok(Bare(Value::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Bare, D::Error> {
        Node::deserialize(d).map(|n| Bare(n.0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bare, A::Error> {
        let mut out = Vec::new();
        while let Some(Node(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Bare(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bare, A::Error> {
        let mut out = Map::new();
        while let Some((k, Node(v))) = map.next_entry::<String, Node>()? {
            out.insert(k, v);
        }
        Ok(Bare(Value::Object(out)))
    }
}

/// `!Ref X` → `{"Ref": X}`, `!GetAtt A.B` → `{"Fn::GetAtt": ["A", "B"]}`, `!Condition C` →
/// `{"Condition": C}`, any other `!Name v` → `{"Fn::Name": v}`; YAML's own tags change nothing.
fn long_form(value: Value, tag: Option<&str>) -> Value {
    let Some(tag) = tag else { return value };
    let Some(name) = tag
        .strip_prefix('!')
        .filter(|n| !n.is_empty() && !n.starts_with('!'))
    else {
        return value;
    };
    let mut out = Map::new();
    match name {
        "Ref" | "Condition" => {
            out.insert(name.to_owned(), value);
        }
        "GetAtt" => {
            let parts = match value {
                Value::String(s) => match s.split_once('.') {
                    Some((a, b)) => Value::Array(vec![a.into(), b.into()]),
                    None => Value::String(s),
                },
                other => other,
            };
            out.insert("Fn::GetAtt".to_owned(), parts);
        }
        other => {
            out.insert(format!("Fn::{other}"), value);
        }
    }
    Value::Object(out)
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

/// The logical id a value refers to: `{"Ref": X}`, `{"Fn::GetAtt": [X, …]}` or `"X.Arn"`,
/// `{"Fn::Sub": "${X.Arn}"}`, or the plain id.
fn referent(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.split('.').next().unwrap_or(s).to_owned()),
        Value::Object(m) => {
            if let Some(r) = text(m.get("Ref")) {
                return Some(r.split('.').next().unwrap_or(r).to_owned());
            }
            match m.get("Fn::GetAtt") {
                Some(Value::Array(parts)) => return text(parts.first()).map(str::to_owned),
                Some(Value::String(s)) => {
                    return s.split('.').next().map(str::to_owned);
                }
                _ => {}
            }
            let sub = match m.get("Fn::Sub") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(Value::Array(a)) => text(a.first()),
                _ => None,
            }?;
            let inner = sub.strip_prefix("${")?.split('}').next()?;
            Some(inner.split('.').next().unwrap_or(inner).to_owned())
        }
        _ => None,
    }
}

impl Template {
    /// Parses a template; `file` names it in messages.
    pub fn parse(file: &str, text: &str) -> Result<Self, TemplateError> {
        let err = |reason: String| TemplateError {
            file: file.to_owned(),
            reason,
        };
        let Node(value) = serde_saphyr::from_str::<Node>(text).map_err(|e| err(e.to_string()))?;
        let Value::Object(root) = value else {
            return Err(err("the document is not a mapping".to_owned()));
        };
        if !root.get("Resources").is_some_and(Value::is_object) {
            return Err(err("it has no `Resources` mapping".to_owned()));
        }
        Ok(Self {
            file: file.to_owned(),
            root,
        })
    }

    /// The template as JSON (long forms throughout).
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.root
    }

    fn resources(&self) -> impl Iterator<Item = (&String, &Map<String, Value>)> {
        obj(self.root.get("Resources"))
            .into_iter()
            .flat_map(|m| m.iter())
            .filter_map(|(id, r)| r.as_object().map(|r| (id, r)))
    }

    fn resource(&self, id: &str) -> Option<&Map<String, Value>> {
        obj(obj(self.root.get("Resources"))?.get(id))
    }

    fn parameter(&self, id: &str) -> Option<&Map<String, Value>> {
        obj(obj(self.root.get("Parameters"))?.get(id))
    }

    /// The functions that run cedargate.
    pub fn cedargate_functions(&self) -> Vec<String> {
        self.resources()
            .filter(|(_, r)| text(r.get("Type")) == Some("AWS::Serverless::Function"))
            .filter(|(_, r)| {
                let built = text(obj(r.get("Metadata")).and_then(|m| m.get("BuildMethod")))
                    == Some("rust-cargolambda");
                let configured = function_environment(r)
                    .is_some_and(|vars| vars.keys().any(|k| k.starts_with("CEDARGATE_")));
                built || configured
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Whether a Lambda authorizer definition (with a `FunctionArn` or `AuthorizerUri`) is
    /// cedargate's.
    fn is_cedargate_authorizer(&self, def: &Map<String, Value>, ours: &[String]) -> bool {
        let Some(target) = def.get("FunctionArn").or_else(|| def.get("AuthorizerUri")) else {
            return false;
        };
        if ours.is_empty() {
            return true;
        }
        let refers = |v: &Value| referent(v).is_some_and(|r| ours.contains(&r));
        match target {
            // `AuthorizerUri` is usually a `Fn::Sub` with the function's ARN inside.
            Value::Object(m) if m.contains_key("Fn::Sub") => {
                let s = match m.get("Fn::Sub") {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Array(a)) => text(a.first()).unwrap_or_default().to_owned(),
                    _ => String::new(),
                };
                ours.iter().any(|f| s.contains(&format!("${{{f}.Arn}}")))
            }
            other => refers(other),
        }
    }

    /// The APIs of the template with their routes. SAM's implicit APIs
    /// (`ServerlessRestApi`, `ServerlessHttpApi`) appear when events use them.
    pub fn apis(&self) -> Vec<TemplateApi> {
        let ours = self.cedargate_functions();
        let mut apis: BTreeMap<String, TemplateApi> = BTreeMap::new();
        // Lambda authorizers of each SAM API, and its default authorizer.
        let sam_auth = |api_id: &str| -> (BTreeSet<String>, Option<String>) {
            let auth = self
                .resource(api_id)
                .and_then(|r| obj(r.get("Properties")))
                .and_then(|p| obj(p.get("Auth")));
            let mut lambda = BTreeSet::new();
            if let Some(defs) = auth.and_then(|a| obj(a.get("Authorizers"))) {
                for (name, def) in defs {
                    if def
                        .as_object()
                        .is_some_and(|d| self.is_cedargate_authorizer(d, &ours))
                    {
                        lambda.insert(name.clone());
                    }
                }
            }
            let default = auth
                .and_then(|a| text(a.get("DefaultAuthorizer")))
                .map(str::to_owned);
            (lambda, default)
        };
        for (fid, f) in self.resources() {
            if text(f.get("Type")) != Some("AWS::Serverless::Function") {
                continue;
            }
            let events = obj(f.get("Properties")).and_then(|p| obj(p.get("Events")));
            for (_, ev) in events.into_iter().flatten() {
                let Some(ev) = ev.as_object() else { continue };
                let props = obj(ev.get("Properties"));
                let (kind, api_field, implicit) = match text(ev.get("Type")) {
                    Some("Api") => (ApiKind::Rest, "RestApiId", "ServerlessRestApi"),
                    Some("HttpApi") => (ApiKind::Http, "ApiId", "ServerlessHttpApi"),
                    _ => continue,
                };
                let api_id = props
                    .and_then(|p| p.get(api_field))
                    .and_then(referent)
                    .unwrap_or_else(|| implicit.to_owned());
                let path = props.and_then(|p| text(p.get("Path")));
                let method = props.and_then(|p| text(p.get("Method")));
                let name = match (path, method) {
                    // An HTTP API event without path and method is the `$default` route.
                    (None, None) if kind == ApiKind::Http => HTTP_DEFAULT.to_owned(),
                    (path, method) => {
                        let verb = method.unwrap_or("ANY").to_ascii_uppercase();
                        let verb = if verb == "X-AMAZON-APIGATEWAY-ANY-METHOD" {
                            "ANY".to_owned()
                        } else {
                            verb
                        };
                        format!("{verb} {}", path.unwrap_or("/"))
                    }
                };
                let (lambda, default) = sam_auth(&api_id);
                let chosen = props
                    .and_then(|p| obj(p.get("Auth")))
                    .and_then(|a| text(a.get("Authorizer")))
                    .map(str::to_owned)
                    .or(default);
                let authorized = chosen.is_some_and(|a| lambda.contains(&a));
                TemplateApi::add(
                    &mut apis,
                    api_id,
                    kind,
                    TemplateRoute {
                        name,
                        declared_by: fid.clone(),
                        authorized,
                    },
                );
            }
        }
        // API Gateway v2 resources (WebSocket APIs, HTTP APIs written without SAM).
        let v2_authorizers: BTreeSet<String> = self
            .resources()
            .filter(|(_, r)| text(r.get("Type")) == Some("AWS::ApiGatewayV2::Authorizer"))
            .filter(|(_, r)| {
                obj(r.get("Properties")).is_some_and(|p| self.is_cedargate_authorizer(p, &ours))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for (rid, r) in self.resources() {
            if text(r.get("Type")) != Some("AWS::ApiGatewayV2::Route") {
                continue;
            }
            let Some(props) = obj(r.get("Properties")) else {
                continue;
            };
            let Some(api_id) = props.get("ApiId").and_then(referent) else {
                continue;
            };
            let Some(key) = text(props.get("RouteKey")) else {
                continue;
            };
            let authorized = text(props.get("AuthorizationType")) == Some("CUSTOM")
                && props
                    .get("AuthorizerId")
                    .and_then(referent)
                    .is_some_and(|a| v2_authorizers.contains(&a));
            let kind = match self
                .resource(&api_id)
                .and_then(|a| obj(a.get("Properties")))
                .and_then(|p| text(p.get("ProtocolType")))
            {
                Some("WEBSOCKET") => ApiKind::WebSocket,
                _ => ApiKind::Http,
            };
            TemplateApi::add(
                &mut apis,
                api_id,
                kind,
                TemplateRoute {
                    name: key.to_owned(),
                    declared_by: rid.clone(),
                    authorized,
                },
            );
        }
        apis.into_values().collect()
    }

    /// Every authorizer TTL setting: `ReauthorizeEvery` of SAM authorizers and
    /// `AuthorizerResultTtlInSeconds` of API Gateway authorizer resources.
    pub fn ttl_settings(&self) -> Vec<TtlSetting> {
        let mut out = Vec::new();
        for (id, r) in self.resources() {
            let Some(props) = obj(r.get("Properties")) else {
                continue;
            };
            match text(r.get("Type")) {
                Some("AWS::Serverless::Api" | "AWS::Serverless::HttpApi") => {
                    let defs = obj(props.get("Auth")).and_then(|a| obj(a.get("Authorizers")));
                    for (name, def) in defs.into_iter().flatten() {
                        let ttl = obj(def.get("Identity"))
                            .and_then(|i| i.get("ReauthorizeEvery"))
                            .or_else(|| def.get("ReauthorizeEvery"));
                        if let Some(v) = ttl {
                            out.push(TtlSetting {
                                at: format!("`{id}` authorizer `{name}`"),
                                value: v.clone(),
                            });
                        }
                    }
                }
                Some("AWS::ApiGateway::Authorizer" | "AWS::ApiGatewayV2::Authorizer") => {
                    if let Some(v) = props.get("AuthorizerResultTtlInSeconds") {
                        out.push(TtlSetting {
                            at: format!("authorizer `{id}`"),
                            value: v.clone(),
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Checks a TTL setting; `None` when it is within 0–3600 s whatever is deployed.
    fn ttl_problem(&self, setting: &TtlSetting) -> Option<String> {
        let in_range = |n: u64| n <= MAX_TTL_SECONDS;
        let number = |v: &Value| -> Option<i128> {
            match v {
                Value::Number(n) => n.as_i64().map(i128::from),
                Value::String(s) => s.trim().parse::<i128>().ok(),
                _ => None,
            }
        };
        let check = |n: i128, what: &str| -> Option<String> {
            match u64::try_from(n) {
                Ok(n) if in_range(n) => None,
                _ => Some(format!(
                    "{} caches authorizer results for {what}{n} s; API Gateway accepts 0–{MAX_TTL_SECONDS}",
                    setting.at
                )),
            }
        };
        if let Some(n) = number(&setting.value) {
            return check(n, "");
        }
        let param_id = setting
            .value
            .as_object()
            .and_then(|m| text(m.get("Ref")))?
            .to_owned();
        let Some(param) = self.parameter(&param_id) else {
            return Some(format!(
                "{} takes its TTL from `{param_id}`, which is not a parameter of the template",
                setting.at
            ));
        };
        if let Some(d) = param.get("Default") {
            match number(d) {
                Some(n) => {
                    if let Some(p) = check(n, &format!("parameter `{param_id}`'s default ")) {
                        return Some(p);
                    }
                }
                None => {
                    return Some(format!(
                        "{}: parameter `{param_id}` has a default that is not a number",
                        setting.at
                    ))
                }
            }
        }
        let min = param.get("MinValue").and_then(number);
        let max = param.get("MaxValue").and_then(number);
        match (min, max) {
            (Some(lo), Some(hi)) if lo >= 0 && u64::try_from(hi).is_ok_and(in_range) => None,
            _ => Some(format!(
                "{}: parameter `{param_id}` must declare `MinValue: 0` (or more) and `MaxValue: {MAX_TTL_SECONDS}` (or less), so that a deploy cannot set a TTL API Gateway refuses",
                setting.at
            )),
        }
    }

    /// Runs every check against the bundle: its routes, and the request facts its policies
    /// read against each authorizer's cache key.
    pub fn check(&self, snapshot: &Snapshot) -> Findings {
        let mut f = self.check_routes_only(snapshot.routes());
        cache::check(self, snapshot, &mut f);
        issuers::check(self, snapshot, &mut f);
        f
    }

    /// The checks that need only the route table.
    pub fn check_routes_only(&self, routes: &RouteTable) -> Findings {
        let mut f = Findings::default();
        let file = &self.file;
        for setting in self.ttl_settings() {
            if let Some(p) = self.ttl_problem(&setting) {
                f.errors.push(format!("{file}: {p}"));
            }
        }
        self.check_routes(routes, &mut f);
        self.check_functions(&mut f);
        mode::check(self, &mut f);
        f
    }

    fn check_routes(&self, routes: &RouteTable, f: &mut Findings) {
        let file = &self.file;
        for api in self.apis() {
            if !api.routes.iter().any(|r| r.authorized) {
                continue;
            }
            // The schema's routes this kind of API can have.
            let expected: Vec<&Route> = routes
                .routes()
                .iter()
                .filter(|r| match (&r.kind, api.kind) {
                    (RouteKind::WebSocketConnect, kind) => kind == ApiKind::WebSocket,
                    (_, ApiKind::WebSocket) => false,
                    _ => true,
                })
                .collect();
            let mut seen: BTreeMap<String, &TemplateRoute> = BTreeMap::new();
            for tr in api.routes.iter().filter(|r| r.authorized) {
                let parsed = match Route::parse(&tr.name) {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => {
                        f.errors.push(format!(
                            "{file}: route `{}` of the {} `{}` (declared by `{}`) is not a route key cedargate understands (`VERB /path`, `$default`, `$connect`)",
                            tr.name, api.kind, api.id, tr.declared_by
                        ));
                        continue;
                    }
                };
                let shape = parsed.shape();
                if !expected.iter().any(|r| r.shape() == shape) {
                    f.errors.push(format!(
                        "{file}: route `{}` of the {} `{}` (declared by `{}`) is behind the cedargate authorizer but is not a route of the schema: every caller would be denied it",
                        tr.name, api.kind, api.id, tr.declared_by
                    ));
                }
                seen.insert(shape, tr);
            }
            for r in &expected {
                if seen.contains_key(&r.shape()) {
                    continue;
                }
                let why = match (&r.kind, api.kind) {
                    (RouteKind::HttpDefault, ApiKind::Rest) => {
                        " (REST APIs have no `$default` route: use an HTTP API)".to_owned()
                    }
                    _ => match api.routes.iter().find(|t| {
                        Route::parse(&t.name)
                            .ok()
                            .flatten()
                            .is_some_and(|p| p.shape() == r.shape())
                    }) {
                        Some(t) => format!(
                            " (`{}` declares it without the cedargate authorizer)",
                            t.declared_by
                        ),
                        None => String::new(),
                    },
                };
                f.errors.push(format!(
                    "{file}: route `{}` of the schema is not an authorized route of the {} `{}`{why}",
                    r.name, api.kind, api.id
                ));
            }
            if api.kind == ApiKind::WebSocket && !seen.contains_key(WEBSOCKET_CONNECT) {
                // Reported above when the schema has `$connect`; without it, say so plainly.
                if routes.connect_route().is_none() {
                    f.errors.push(format!(
                        "{file}: the WebSocket API `{}` authorizes with cedargate, but the schema has no `$connect` route",
                        api.id
                    ));
                }
            }
        }
    }

    fn check_functions(&self, f: &mut Findings) {
        let file = &self.file;
        let ours = self.cedargate_functions();
        if let Some(vars) = obj(self.root.get("Globals"))
            .and_then(|g| obj(g.get("Function")))
            .and_then(|fun| obj(fun.get("Environment")))
            .and_then(|e| obj(e.get("Variables")))
        {
            for name in vars.keys() {
                if let Some(why) = variable_problem(name) {
                    f.errors
                        .push(format!("{file}: `Globals` sets `{name}`, {why}"));
                }
            }
        }
        for id in &ours {
            let Some(r) = self.resource(id) else { continue };
            let vars = function_environment(r).cloned().unwrap_or_default();
            for name in vars.keys() {
                if let Some(why) = variable_problem(name) {
                    f.errors
                        .push(format!("{file}: function `{id}` sets `{name}`, {why}"));
                }
            }
            if !vars.contains_key("CEDARGATE_ISSUER") {
                f.errors.push(format!(
                    "{file}: function `{id}` does not set `CEDARGATE_ISSUER`, which the authorizer needs"
                ));
            }
            // Which tokens are for this API: by audience, by client id (Cognito), or both.
            if !vars.contains_key("CEDARGATE_AUDIENCE") && !vars.contains_key("CEDARGATE_CLIENT_ID")
            {
                f.errors.push(format!(
                    "{file}: function `{id}` sets neither `CEDARGATE_AUDIENCE` nor `CEDARGATE_CLIENT_ID`, one of which the authorizer needs"
                ));
            }
            // SAM's cargo-lambda builder reads `Binary` and nothing else: a `Flags` or
            // `Features` here would be ignored without a word, and the artifact built otherwise
            // than the template says.
            if let Some(props) = obj(r.get("Metadata")).and_then(|m| obj(m.get("BuildProperties")))
            {
                for key in props.keys().filter(|k| *k != "Binary") {
                    f.warnings.push(format!(
                        "{file}: function `{id}` sets the build property `{key}`, which `sam build` ignores for `rust-cargolambda` (it reads only `Binary`): build options belong in Cargo.toml's `[package.metadata.lambda.build]`"
                    ));
                }
            }
            for grant in s3_grants(r) {
                if grant.actions.iter().any(|a| a != "s3:GetObject") || !grant.one_object {
                    f.warnings.push(format!(
                        "{file}: function `{id}` may use {} on {}: the authorizer needs only `s3:GetObject` on its one policy object",
                        grant.actions.join(", "),
                        grant.resource
                    ));
                }
            }
        }
    }
}

/// The variables Lambda sets itself and refuses in a function's configuration: a template
/// that sets one fails only at deploy time, after the linters passed it.
pub const LAMBDA_RESERVED_VARIABLES: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

/// Why a function's environment must not set `name` (the rest of the sentence after "sets
/// `name`,"), or `None` when it may.
///
/// Only cedargate's own namespace is closed: a `CEDARGATE_*` name cedargate does not read is a
/// misspelt setting that silently keeps its default. Every other name is someone else's
/// (`RUST_LOG`, `AWS_ENDPOINT_URL_S3` for the SDK, `AWS_LAMBDA_EXEC_WRAPPER` and `OTEL_*` for
/// Lambda layers) and is accepted, except the names Lambda reserves or refuses outright.
fn variable_problem(name: &str) -> Option<String> {
    if name.starts_with("CEDARGATE_") {
        return (!KNOWN_VARIABLES.contains(&name))
            .then(|| format!("which cedargate does not read{}", did_you_mean(name)));
    }
    if LAMBDA_RESERVED_VARIABLES.contains(&name) {
        return Some("which Lambda reserves: the deployment would fail".to_owned());
    }
    // Lambda's key pattern, `[a-zA-Z]([a-zA-Z0-9_])+`.
    let mut chars = name.chars();
    let well_formed = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() >= 2
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    (!well_formed).then(|| {
        "which is not a name Lambda accepts (a letter, then letters, digits or `_`): the deployment would fail".to_owned()
    })
}

/// ` (did you mean `X`?)` for the known variable closest to a misspelt one, if close enough.
fn did_you_mean(name: &str) -> String {
    crate::text::did_you_mean(name, KNOWN_VARIABLES.iter().copied(), 3)
}

fn function_environment(r: &Map<String, Value>) -> Option<&Map<String, Value>> {
    obj(r.get("Properties"))
        .and_then(|p| obj(p.get("Environment")))
        .and_then(|e| obj(e.get("Variables")))
}

/// One S3 permission of a function's `Policies`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Grant {
    pub actions: Vec<String>,
    /// The resource as written (JSON).
    pub resource: String,
    /// Whether it names one object: `arn:…:s3:::bucket/key` without wildcards in the key.
    pub one_object: bool,
}

/// The S3 permissions a SAM function's `Policies` grant (inline statements; SAM policy
/// templates such as `S3ReadPolicy` grant whole buckets and count as such).
pub fn s3_grants(function: &Map<String, Value>) -> Vec<S3Grant> {
    let mut out = Vec::new();
    let Some(policies) = obj(function.get("Properties")).and_then(|p| p.get("Policies")) else {
        return out;
    };
    let items: Vec<&Value> = match policies {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    };
    for item in items {
        let Some(m) = item.as_object() else { continue };
        for (name, _) in m.iter().filter(|(k, _)| k.starts_with("S3")) {
            out.push(S3Grant {
                actions: vec![format!("the SAM policy template `{name}`")],
                resource: "a whole bucket".to_owned(),
                one_object: false,
            });
        }
        let statements: Vec<&Value> = match m.get("Statement") {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(other) => vec![other],
            None => Vec::new(),
        };
        for st in statements {
            let Some(st) = st.as_object() else { continue };
            if text(st.get("Effect")) != Some("Allow") {
                continue;
            }
            let actions: Vec<String> = match st.get("Action") {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let actions: Vec<String> = actions
                .into_iter()
                .filter(|a| a.starts_with("s3:") || a == "*")
                .collect();
            if actions.is_empty() {
                continue;
            }
            let resources: Vec<&Value> = match st.get("Resource") {
                Some(Value::Array(a)) => a.iter().collect(),
                Some(other) => vec![other],
                None => Vec::new(),
            };
            for res in resources {
                out.push(S3Grant {
                    actions: actions.clone(),
                    resource: res.to_string(),
                    one_object: names_one_object(res),
                });
            }
        }
    }
    out
}

/// `arn:{partition}:s3:::{bucket}/{key}` with a non-empty bucket and key and no wildcard in
/// either, written literally or as a `Fn::Sub` template (whose `${…}` stand for single values).
fn names_one_object(res: &Value) -> bool {
    let template = match res {
        Value::String(s) => s.clone(),
        Value::Object(m) => match m.get("Fn::Sub") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) => text(a.first()).unwrap_or_default().to_owned(),
            _ => return false,
        },
        _ => return false,
    };
    // `${AWS::Partition}`, `${PolicyBucket}`, `${PolicyObjectKey}` are single values.
    let mut plain = String::new();
    let mut rest = template.as_str();
    while let Some(start) = rest.find("${") {
        plain.push_str(rest.get(..start).unwrap_or_default());
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(end) = after.find('}') else {
            return false;
        };
        plain.push('V');
        rest = after.get(end + 1..).unwrap_or_default();
    }
    plain.push_str(rest);
    let Some(path) = plain
        .strip_prefix("arn:")
        .and_then(|r| r.split_once(":s3:::"))
        .map(|(_, path)| path)
    else {
        return false;
    };
    match path.split_once('/') {
        Some((bucket, key)) => !bucket.is_empty() && !key.is_empty() && !path.contains(['*', '?']),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> RouteTable {
        RouteTable::of(names)
    }

    const SHORT: &str = r#"
Transform: AWS::Serverless-2016-10-31
Parameters:
  Ttl: { Type: Number, Default: 300, MinValue: 0, MaxValue: 3600 }
Resources:
  Authz:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda }
    Properties:
      Environment:
        Variables:
          CEDARGATE_ISSUER: !Ref Issuer
          CEDARGATE_AUDIENCE: aud
          CEDARGATE_POLICY_SOURCE: !Sub "s3://${Bucket}/bundle.json"
      Policies:
        - Statement:
            - Effect: Allow
              Action: s3:GetObject
              Resource: !Sub "arn:${AWS::Partition}:s3:::${Bucket}/bundle.json"
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      Auth:
        DefaultAuthorizer: Cg
        Authorizers:
          Cg:
            FunctionArn: !GetAtt Authz.Arn
            Identity: { Header: Authorization, ReauthorizeEvery: !Ref Ttl }
  Backend:
    Type: AWS::Serverless::Function
    Properties:
      Events:
        A: { Type: Api, Properties: { RestApiId: !Ref Api, Path: /pets, Method: get } }
        B: { Type: Api, Properties: { RestApiId: !Ref Api, Path: "/pets/{id}", Method: ANY } }
        P: { Type: Api, Properties: { RestApiId: !Ref Api, Path: /public, Method: post, Auth: { Authorizer: NONE } } }
"#;

    #[test]
    fn short_tags_become_long_forms() {
        let t = Template::parse("t.yaml", SHORT).unwrap();
        let authz = &t.as_json()["Resources"]["Authz"]["Properties"]["Environment"]["Variables"];
        assert_eq!(
            authz["CEDARGATE_ISSUER"],
            serde_json::json!({"Ref": "Issuer"})
        );
        assert_eq!(
            authz["CEDARGATE_POLICY_SOURCE"],
            serde_json::json!({"Fn::Sub": "s3://${Bucket}/bundle.json"})
        );
        let arn = &t.as_json()["Resources"]["Api"]["Properties"]["Auth"]["Authorizers"]["Cg"]
            ["FunctionArn"];
        assert_eq!(arn, &serde_json::json!({"Fn::GetAtt": ["Authz", "Arn"]}));
        assert_eq!(long_form(Value::Null, Some("!!null")), Value::Null);
    }

    #[test]
    fn a_matching_template_passes() {
        let t = Template::parse("t.yaml", SHORT).unwrap();
        let f = t.check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]));
        assert_eq!(f, Findings::default());
        let apis = t.apis();
        assert_eq!(apis.len(), 1);
        assert_eq!(apis[0].routes.iter().filter(|r| r.authorized).count(), 2);
    }

    #[test]
    fn routes_are_compared_both_ways() {
        let t = Template::parse("t.yaml", SHORT).unwrap();
        let f = t.check_routes_only(&table(&[
            "GET /pets",
            "DELETE /pets/{petId}",
            "POST /public",
        ]));
        let all = f.errors.join("\n");
        assert!(
            all.contains("route `ANY /pets/{id}` of the REST API `Api`"),
            "{all}"
        );
        assert!(
            all.contains("route `DELETE /pets/{petId}` of the schema"),
            "{all}"
        );
        assert!(
            all.contains("`Backend` declares it without the cedargate authorizer"),
            "{all}"
        );
        assert_eq!(f.errors.len(), 3, "{all}");
    }

    #[test]
    fn ttl_and_environment_are_checked() {
        let bad = SHORT
            .replace("MaxValue: 3600", "MaxValue: 7200")
            .replace("CEDARGATE_AUDIENCE: aud", "CEDARGATE_AUDIENCES: aud")
            .replace(
                "Resource: !Sub \"arn:${AWS::Partition}:s3:::${Bucket}/bundle.json\"",
                "Resource: \"arn:aws:s3:::b/*\"",
            );
        let t = Template::parse("t.yaml", &bad).unwrap();
        let f = t.check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]));
        let all = f.errors.join("\n");
        assert!(all.contains("parameter `Ttl` must declare"), "{all}");
        assert!(
            all.contains("`CEDARGATE_AUDIENCES`, which cedargate does not read"),
            "{all}"
        );
        assert!(
            all.contains("sets neither `CEDARGATE_AUDIENCE` nor `CEDARGATE_CLIENT_ID`"),
            "{all}"
        );
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        let literal = SHORT.replace("ReauthorizeEvery: !Ref Ttl", "ReauthorizeEvery: 4000");
        let f = Template::parse("t.yaml", &literal)
            .unwrap()
            .check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]));
        assert!(f.errors.iter().any(|e| e.contains("4000 s")), "{f:?}");
    }

    #[test]
    fn only_cedargate_names_are_closed_and_lambda_reserved_names_are_refused() {
        let with = |extra: &str| {
            let text = SHORT.replace(
                "          CEDARGATE_AUDIENCE: aud\n",
                &format!("          CEDARGATE_AUDIENCE: aud\n{extra}"),
            );
            Template::parse("t.yaml", &text)
                .unwrap()
                .check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]))
                .errors
        };
        // Other tools' settings and Lambda layers' wrappers are not cedargate's to refuse.
        let others = "          RUST_LOG: debug\n          AWS_ENDPOINT_URL_S3: http://127.0.0.1:9000\n          AWS_LAMBDA_EXEC_WRAPPER: /opt/otel-handler\n          OTEL_SERVICE_NAME: authorizer\n          OTEL_EXPORTER_OTLP_ENDPOINT: http://127.0.0.1:4318\n";
        assert_eq!(with(others), Vec::<String>::new());
        // A misspelt setting of cedargate's own is an error, with the name it probably meant.
        let errors = with("          CEDARGATE_POLICY_REFRESH_SECS: \"60\"\n");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("sets `CEDARGATE_POLICY_REFRESH_SECS`, which cedargate does not read (did you mean `CEDARGATE_POLICY_REFRESH_SECONDS`?)"),
            "{errors:?}"
        );
        // Names Lambda sets itself fail the deployment: say so before it does.
        for reserved in [
            "AWS_REGION",
            "AWS_LAMBDA_FUNCTION_NAME",
            "_HANDLER",
            "AWS_ACCESS_KEY_ID",
        ] {
            let errors = with(&format!("          {reserved}: x\n"));
            assert_eq!(errors.len(), 1, "{reserved}: {errors:?}");
            assert!(
                errors[0].contains(&format!("sets `{reserved}`, which Lambda reserves")),
                "{errors:?}"
            );
        }
        let errors = with("          \"MY-FLAG\": x\n");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`MY-FLAG`, which is not a name Lambda accepts")),
            "{errors:?}"
        );
        // `Globals` reach cedargate's function too.
        let globals = SHORT.replace(
            "Resources:\n",
            "Globals:\n  Function:\n    Environment:\n      Variables:\n        OTEL_SERVICE_NAME: a\n        AWS_REGION: x\n        CEDARGATE_ISUER: y\nResources:\n",
        );
        let errors = Template::parse("t.yaml", &globals)
            .unwrap()
            .check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]))
            .errors;
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`Globals` sets `AWS_REGION`, which Lambda reserves")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.contains("`Globals` sets `CEDARGATE_ISUER`, which cedargate does not read (did you mean `CEDARGATE_ISSUER`?)")), "{errors:?}");
    }

    #[test]
    fn build_properties_sam_ignores_are_named() {
        let text = SHORT.replace(
            "Metadata: { BuildMethod: rust-cargolambda }",
            "Metadata: { BuildMethod: rust-cargolambda, BuildProperties: { Binary: cedargate, Flags: [--no-default-features] } }",
        );
        let f = Template::parse("t.yaml", &text)
            .unwrap()
            .check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]));
        assert_eq!(f.errors, Vec::<String>::new());
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        assert!(
            f.warnings[0].contains("the build property `Flags`, which `sam build` ignores"),
            "{:?}",
            f.warnings
        );
    }

    #[test]
    fn a_client_id_alone_names_the_tokens_for_the_api() {
        let cognito = SHORT.replace("CEDARGATE_AUDIENCE: aud", "CEDARGATE_CLIENT_ID: client");
        let f = Template::parse("t.yaml", &cognito)
            .unwrap()
            .check_routes_only(&table(&["GET /pets", "ANY /pets/{petId}"]));
        assert!(
            !f.errors.iter().any(|e| e.contains("CEDARGATE_CLIENT_ID")),
            "{f:?}"
        );
    }

    #[test]
    fn one_object_grants() {
        for (res, one) in [
            (serde_json::json!("arn:aws:s3:::b/k/bundle.json"), true),
            (
                serde_json::json!({"Fn::Sub": "arn:${AWS::Partition}:s3:::${B}/${K}"}),
                true,
            ),
            (serde_json::json!("arn:aws:s3:::b/*"), false),
            (serde_json::json!("arn:aws:s3:::b"), false),
            (serde_json::json!({"Fn::Sub": "arn:aws:s3:::${B}/*"}), false),
            (serde_json::json!("*"), false),
        ] {
            assert_eq!(names_one_object(&res), one, "{res}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for text in [
            "",
            "[]",
            "a: [",
            "Resources: 3",
            "!Ref x",
            "Resources: {}\n  bad: : :",
        ] {
            let _ = Template::parse("t.yaml", text);
        }
        assert!(Template::parse("t.yaml", "Resources: {}").is_ok());
    }
}
