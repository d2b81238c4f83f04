//! Facts against the cache key: does the authorizer's cache key carry every request fact the
//! policies read?
//!
//! Stage: tooling (`cedargate validate` with a `template.yaml`). Input: the template's cedargate
//! authorizers (their type, identity sources and TTL) and the request facts some policy reads
//! (`Snapshot::request_facts`). Output: errors and warnings in [`Findings`].
//!
//! Why: API Gateway reuses an authorizer's answer for every request with the same identity
//! source values until the TTL ends, and cedargate's answer covers every route. A policy that
//! reads `context.sourceIp`, the user agent or a header therefore decides correctly only when
//! that fact is one of the identity sources (or the TTL is 0): otherwise an answer computed for
//! one address is served to another. A TOKEN authorizer's events carry none of these facts at
//! all, so such a policy never sees them (an error). The time is never part of a cache key: a
//! cached answer keeps a time-based decision for up to the TTL (a warning unless the TTL is 0).

use serde_json::{Map, Value};

use super::{obj, text, ApiKind, Findings, Template};
use crate::bundle::Snapshot;
use crate::facts::RequestFact;

/// What kind of Lambda authorizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// REST `TOKEN`: the event carries the token and the method ARN, nothing else.
    Token,
    /// REST `REQUEST`, HTTP API and WebSocket authorizers: the request's headers, source IP, …
    Request,
}

/// One identity source: a part of the request in the cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A request header, by lower-case name.
    Header(String),
    Query(String),
    /// A context variable (`identity.sourceIp`).
    Context(String),
    StageVariable(String),
}

/// How long answers are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ttl {
    Seconds(u64),
    /// Taken from a parameter (judged by its default, when it has one).
    Parameter {
        name: String,
        default: Option<u64>,
    },
    /// Not set: API Gateway's default (300 s).
    Default,
}

impl Ttl {
    /// Whether answers may be cached at all.
    pub(super) fn caches(&self) -> bool {
        !matches!(
            self,
            Self::Seconds(0)
                | Self::Parameter {
                    default: Some(0),
                    ..
                }
        )
    }
}

impl std::fmt::Display for Ttl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Seconds(n) => write!(f, "{n} s"),
            Self::Parameter {
                name,
                default: Some(d),
            } => write!(f, "{d} s (parameter `{name}`'s default)"),
            Self::Parameter {
                name,
                default: None,
            } => write!(f, "the seconds of parameter `{name}`"),
            Self::Default => f.write_str("300 s (API Gateway's default)"),
        }
    }
}

/// A cedargate authorizer of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    /// Where: `` `Api` authorizer `CedargateAuthorizer` ``.
    pub at: String,
    pub kind: ApiKind,
    pub payload: Payload,
    pub sources: Vec<Source>,
    pub ttl: Ttl,
}

/// The kinds of identity source.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Header,
    Query,
    Context,
    StageVariable,
}

impl Kind {
    fn source(self, name: &str) -> Source {
        match self {
            // HTTP header names are case-insensitive.
            Self::Header => Source::Header(name.to_ascii_lowercase()),
            Self::Query => Source::Query(name.to_owned()),
            Self::Context => Source::Context(name.to_owned()),
            Self::StageVariable => Source::StageVariable(name.to_owned()),
        }
    }
}

/// A mapping expression as one identity source: REST (`method.request.header.X`,
/// `context.identity.sourceIp`), HTTP API (`$request.header.X`, `$context.…`) and WebSocket
/// (`route.request.header.X`) forms.
fn source(expr: &str) -> Option<Source> {
    let e = expr.trim();
    [
        ("method.request.header.", Kind::Header),
        ("$request.header.", Kind::Header),
        ("route.request.header.", Kind::Header),
        ("method.request.querystring.", Kind::Query),
        ("$request.querystring.", Kind::Query),
        ("route.request.querystring.", Kind::Query),
        ("stageVariables.", Kind::StageVariable),
        ("$stageVariables.", Kind::StageVariable),
        ("context.", Kind::Context),
        ("$context.", Kind::Context),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| e.strip_prefix(prefix).map(|name| kind.source(name)))
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// SAM's `Identity` of a Lambda authorizer as identity sources.
fn sam_sources(identity: Option<&Map<String, Value>>, payload: Payload) -> Vec<Source> {
    let Some(identity) = identity else {
        // A TOKEN authorizer reads `Authorization` unless told otherwise.
        return match payload {
            Payload::Token => vec![Source::Header("authorization".to_owned())],
            Payload::Request => Vec::new(),
        };
    };
    let mut out = Vec::new();
    let header = text(identity.get("Header")).map(str::to_owned);
    match (payload, header) {
        (_, Some(h)) => out.push(Source::Header(h.to_ascii_lowercase())),
        (Payload::Token, None) => out.push(Source::Header("authorization".to_owned())),
        (Payload::Request, None) => {}
    }
    for (key, kind) in [
        ("Headers", Kind::Header),
        ("QueryStrings", Kind::Query),
        ("Context", Kind::Context),
        ("StageVariables", Kind::StageVariable),
    ] {
        out.extend(strings(identity.get(key)).iter().map(|n| kind.source(n)));
    }
    out
}

impl Template {
    /// A TTL as written: a number, or a reference to a parameter.
    fn ttl_of(&self, v: Option<&Value>) -> Ttl {
        let number = |v: &Value| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let Some(v) = v else { return Ttl::Default };
        if let Some(n) = number(v) {
            return Ttl::Seconds(n);
        }
        match v.as_object().and_then(|m| text(m.get("Ref"))) {
            Some(name) => Ttl::Parameter {
                name: name.to_owned(),
                default: self
                    .parameter(name)
                    .and_then(|p| p.get("Default"))
                    .and_then(number),
            },
            None => Ttl::Default,
        }
    }

    /// The cedargate authorizers: SAM APIs' Lambda authorizers and API Gateway authorizer
    /// resources whose function is cedargate's.
    pub fn authorizers(&self) -> Vec<Authorizer> {
        let ours = self.cedargate_functions();
        let mut out = Vec::new();
        for (id, r) in self.resources() {
            let Some(props) = obj(r.get("Properties")) else {
                continue;
            };
            match text(r.get("Type")) {
                Some(t @ ("AWS::Serverless::Api" | "AWS::Serverless::HttpApi")) => {
                    let kind = if t == "AWS::Serverless::Api" {
                        ApiKind::Rest
                    } else {
                        ApiKind::Http
                    };
                    let defs = obj(props.get("Auth")).and_then(|a| obj(a.get("Authorizers")));
                    for (name, def) in defs.into_iter().flatten() {
                        let Some(def) = def.as_object() else { continue };
                        if !self.is_cedargate_authorizer(def, &ours) {
                            continue;
                        }
                        let payload = match (kind, text(def.get("FunctionPayloadType"))) {
                            (ApiKind::Rest, None | Some("TOKEN")) => Payload::Token,
                            _ => Payload::Request,
                        };
                        let identity = obj(def.get("Identity"));
                        let ttl = identity
                            .and_then(|i| i.get("ReauthorizeEvery"))
                            .or_else(|| def.get("ReauthorizeEvery"));
                        out.push(Authorizer {
                            at: format!("`{id}` authorizer `{name}`"),
                            kind,
                            payload,
                            sources: sam_sources(identity, payload),
                            ttl: self.ttl_of(ttl),
                        });
                    }
                }
                Some(t @ ("AWS::ApiGateway::Authorizer" | "AWS::ApiGatewayV2::Authorizer")) => {
                    if !self.is_cedargate_authorizer(props, &ours) {
                        continue;
                    }
                    let v1 = t == "AWS::ApiGateway::Authorizer";
                    let type_field = if v1 { "Type" } else { "AuthorizerType" };
                    let payload = match text(props.get(type_field)) {
                        Some("TOKEN") => Payload::Token,
                        _ => Payload::Request,
                    };
                    let kind = if v1 {
                        ApiKind::Rest
                    } else {
                        match props
                            .get("ApiId")
                            .and_then(super::referent)
                            .and_then(|api| self.resource(&api))
                            .and_then(|a| obj(a.get("Properties")))
                            .and_then(|p| text(p.get("ProtocolType")))
                        {
                            Some("WEBSOCKET") => ApiKind::WebSocket,
                            _ => ApiKind::Http,
                        }
                    };
                    // REST: one comma-separated string; v2: a list.
                    let sources: Vec<Source> = strings(props.get("IdentitySource"))
                        .iter()
                        .flat_map(|s| s.split(','))
                        .filter_map(source)
                        .collect();
                    out.push(Authorizer {
                        at: format!("authorizer `{id}`"),
                        kind,
                        payload,
                        sources,
                        ttl: self.ttl_of(props.get("AuthorizerResultTtlInSeconds")),
                    });
                }
                _ => {}
            }
        }
        out
    }
}

/// How to put a fact into this authorizer's cache key, as its kind of definition spells it.
fn fix(fact: &RequestFact, a: &Authorizer) -> String {
    let sam = a.at.contains("` authorizer `");
    match (fact, a.kind, sam) {
        (RequestFact::Time(_), _, _) => String::new(),
        (RequestFact::SourceIp, _, true) => {
            "add `identity.sourceIp` to its `Identity.Context`".to_owned()
        }
        (RequestFact::UserAgent, _, true) => {
            "add `identity.userAgent` to its `Identity.Context`".to_owned()
        }
        (RequestFact::Header(h), _, true) => format!("add `{h}` to its `Identity.Headers`"),
        (RequestFact::SourceIp, ApiKind::Rest, false) => {
            "add `context.identity.sourceIp` to its `IdentitySource`".to_owned()
        }
        (RequestFact::UserAgent, ApiKind::Rest, false) => {
            "add `context.identity.userAgent` to its `IdentitySource`".to_owned()
        }
        (RequestFact::Header(h), ApiKind::Rest, false) => {
            format!("add `method.request.header.{h}` to its `IdentitySource`")
        }
        (RequestFact::SourceIp, _, false) => {
            "add `$context.identity.sourceIp` to its `IdentitySource`".to_owned()
        }
        (RequestFact::UserAgent, _, false) => {
            "add `$context.identity.userAgent` to its `IdentitySource`".to_owned()
        }
        (RequestFact::Header(h), _, false) => {
            format!("add `$request.header.{h}` to its `IdentitySource`")
        }
    }
}

/// Whether the identity sources carry the fact.
fn keyed(fact: &RequestFact, sources: &[Source]) -> bool {
    sources.iter().any(|s| match (fact, s) {
        (RequestFact::SourceIp, Source::Context(c)) => c == "identity.sourceIp",
        (RequestFact::UserAgent, Source::Context(c)) => c == "identity.userAgent",
        (RequestFact::UserAgent, Source::Header(h)) => h == "user-agent",
        (RequestFact::Header(want), Source::Header(h)) => h == want,
        _ => false,
    })
}

/// Checks every request fact the policies read against every cedargate authorizer.
pub(super) fn check(template: &Template, snapshot: &Snapshot, f: &mut Findings) {
    let facts = snapshot.request_facts();
    if facts.is_empty() {
        return;
    }
    let file = &template.file;
    for a in template.authorizers() {
        // HTTP APIs cache only with identity sources, REST APIs whenever the TTL is above 0;
        // a WebSocket authorizer answers one `$connect` and is never reused.
        let caches = match a.kind {
            ApiKind::Rest => a.ttl.caches(),
            ApiKind::Http => a.ttl.caches() && !a.sources.is_empty(),
            ApiKind::WebSocket => false,
        };
        for fact in &facts {
            let readers: Vec<String> = snapshot
                .readers_of(fact)
                .iter()
                .map(|p| format!("`{p}`"))
                .collect();
            let (who, reads) = match readers.as_slice() {
                [one] => (format!("policy {one}"), "reads"),
                _ => (format!("policies {}", readers.join(", ")), "read"),
            };
            match (fact, a.payload) {
                (RequestFact::Time(_), _) if caches => {
                    f.warnings.push(format!(
                        "{file}: {who} {reads} {fact}, and {} caches each answer for {}: a cached answer keeps a time-based decision that long (set the TTL to 0 where the decision must follow the clock)",
                        a.at, a.ttl
                    ));
                }
                (RequestFact::Time(_), _) => {}
                (_, Payload::Token) => f.errors.push(format!(
                    "{file}: {who} {reads} {fact}, but {} is a TOKEN authorizer, whose events never carry it: the policy always sees it absent. Make it a REQUEST authorizer and {}",
                    a.at,
                    fix(fact, &a)
                )),
                (_, Payload::Request) if caches && !keyed(fact, &a.sources) => {
                    f.warnings.push(format!(
                        "{file}: {who} {reads} {fact}, but {} caches each answer for {} and {fact} is not one of its identity sources: API Gateway reuses an answer computed for one value for requests with another. To fix it, {}, or set the TTL to 0",
                        a.at,
                        a.ttl,
                        fix(fact, &a)
                    ));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping_expressions_name_their_source() {
        assert_eq!(
            source("method.request.header.Authorization"),
            Some(Source::Header("authorization".into()))
        );
        assert_eq!(
            source(" context.identity.sourceIp"),
            Some(Source::Context("identity.sourceIp".into()))
        );
        assert_eq!(
            source("$context.identity.sourceIp"),
            Some(Source::Context("identity.sourceIp".into()))
        );
        assert_eq!(
            source("route.request.querystring.token"),
            Some(Source::Query("token".into()))
        );
        assert_eq!(source("nonsense"), None);
        assert!(keyed(
            &RequestFact::Header("x-tenant".into()),
            &[Source::Header("x-tenant".into())]
        ));
        assert!(!keyed(
            &RequestFact::SourceIp,
            &[Source::Header("authorization".into())]
        ));
    }

    #[test]
    fn a_zero_ttl_caches_nothing() {
        assert!(!Ttl::Seconds(0).caches());
        assert!(Ttl::Seconds(1).caches() && Ttl::Default.caches());
        assert!(Ttl::Parameter {
            name: "T".into(),
            default: None
        }
        .caches());
        assert!(!Ttl::Parameter {
            name: "T".into(),
            default: Some(0)
        }
        .caches());
    }
}
