//! Authorizer event → [`AuthzRequest`]: what cedargate needs to know about one request.
//!
//! Stage: first. Input: the JSON text of the event API Gateway sends to a Lambda authorizer.
//! Output: the token as the client sent it, the method ARN, and the caller-scoped facts that
//! Cedar's context may use (source IP, user agent, headers, time), plus what the event shows
//! about API Gateway's cache key.
//!
//! Flavours: REST `TOKEN`; REST `REQUEST` (payload 1.0); HTTP API payload `1.0` and `2.0`;
//! WebSocket `$connect` (a `REQUEST` event whose method ARN ends in `$connect`).
//!
//! ## Lenient where the client writes, strict where API Gateway does
//! The event is read in one pass into borrowed structs that name only the fields cedargate
//! uses (no intermediate JSON tree, no copies of strings without escapes). Headers, query
//! parameters and cookies are written by the client, so they are read leniently: a header
//! whose name is not an HTTP token or whose value holds a control character is skipped and
//! reported by name ([`SkippedHeader`]) — never by value, which may be a token — and the rest
//! of the event still counts. One odd byte in an unrelated header must not turn a valid token
//! into a 401, nor its parse error put the `Authorization` value into a log. A field of the
//! wrong type is treated as absent; a missing method ARN is an [`EventError`].
//!
//! Invariants: nothing here trusts the token; no input makes this panic. A WebSocket client
//! cannot set headers, so for `$connect` only, the token may come from a query parameter.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::arn::{ArnError, MethodArn};
use crate::routes::WEBSOCKET_CONNECT;

/// Query-string parameters a WebSocket `$connect` may carry the token in.
pub const WEBSOCKET_TOKEN_PARAMS: [&str; 2] = ["access_token", "token"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
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
    /// The text ends before the JSON document does (a stream reader then reads on).
    #[error("the event ends too early: {0}")]
    Incomplete(String),
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

/// A header the event carried but cedargate could not use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkippedHeader {
    /// A valid name (lower case) with a value that is not a string or holds a control
    /// character.
    BadValue(String),
    /// A name that is not an HTTP token; only its length is kept (it may be anything).
    BadName { len: usize },
}

impl fmt::Display for SkippedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadValue(name) => write!(f, "`{name}` (its value is not a header value)"),
            Self::BadName { len } => write!(f, "a header whose {len}-byte name is not a token"),
        }
    }
}

/// One authorization request, whatever the flavour. It borrows what it can from the event
/// text (the token, the headers); [`AuthzRequest::into_owned`] detaches it.
#[derive(Debug, Clone)]
pub struct AuthzRequest<'a> {
    pub flavor: Flavor,
    /// The credential as sent (`Bearer eyJ…`), when there is one.
    pub authorization: Option<Cow<'a, str>>,
    pub arn: MethodArn,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    /// Request headers as sent (REQUEST flavours only): names as the event spells them (HTTP
    /// names are case-insensitive: see [`AuthzRequest::header`]), values checked.
    pub headers: Vec<(Cow<'a, str>, Cow<'a, str>)>,
    /// When API Gateway received the request (unix milliseconds), when the event says.
    pub request_time_ms: Option<i64>,
    /// The route key API Gateway matched (`GET /pets/{petId}`, `$default`, `$connect`), when
    /// the event says (HTTP APIs, WebSocket).
    pub route_key: Option<String>,
    /// What the event shows about how API Gateway caches the answer.
    pub cache: CacheScope,
    /// The values of the authorizer's identity sources, when the event carries them (HTTP
    /// APIs): what API Gateway keys its cache on.
    pub identity_values: Option<Vec<String>>,
    /// Headers skipped as unusable (reported by name, never by value).
    pub skipped_headers: Vec<SkippedHeader>,
}

impl AuthzRequest<'_> {
    /// A header by name, case-insensitively (the first of a repeated name, as API Gateway's
    /// single-value map keeps one).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }

    /// The request, owning everything it borrowed from the event text.
    pub fn into_owned(self) -> AuthzRequest<'static> {
        AuthzRequest {
            flavor: self.flavor,
            authorization: self.authorization.map(|a| Cow::Owned(a.into_owned())),
            arn: self.arn,
            source_ip: self.source_ip,
            user_agent: self.user_agent,
            headers: self
                .headers
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k.into_owned()), Cow::Owned(v.into_owned())))
                .collect(),
            request_time_ms: self.request_time_ms,
            route_key: self.route_key,
            cache: self.cache,
            identity_values: self.identity_values,
            skipped_headers: self.skipped_headers,
        }
    }
}

impl AuthzRequest<'static> {
    /// A request with no event behind it (`explain --token`, policy tests): a REST REQUEST
    /// to `arn` carrying the given facts.
    pub fn synthetic(
        arn: MethodArn,
        source_ip: Option<String>,
        headers: BTreeMap<String, String>,
        user_agent: Option<String>,
        request_time_ms: Option<i64>,
    ) -> Self {
        Self {
            flavor: Flavor::Request,
            authorization: None,
            arn,
            source_ip,
            user_agent,
            headers: headers
                .into_iter()
                .map(|(k, v)| (Cow::Owned(k), Cow::Owned(v)))
                .collect(),
            request_time_ms,
            route_key: None,
            cache: CacheScope::Unknown,
            identity_values: None,
            skipped_headers: Vec::new(),
        }
    }
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

// ---- The event as JSON ------------------------------------------------------------------

/// The visits of a lenient visitor that all give one value: every JSON kind the field was not
/// expected to hold counts as absent (containers are skipped without being built).
macro_rules! otherwise {
    ($value:expr; $($kind:ident)*) => { $( otherwise!(@one $value; $kind); )* };
    (@one $v:expr; bool) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; i64) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; u64) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; f64) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; str) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; unit) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
    };
    (@one $v:expr; seq) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($v)
        }
    };
    (@one $v:expr; map) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($v)
        }
    };
}

/// A JSON value where a string is expected: anything else counts as absent.
#[derive(Debug, Clone, Default)]
enum Lenient<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    #[default]
    Other,
}

impl<'a> Lenient<'a> {
    fn str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
    fn int(&self) -> Option<i64> {
        match self {
            Self::Int(n) => Some(*n),
            _ => None,
        }
    }
    /// The string, still borrowed from the event where it was.
    fn cow(&self) -> Option<Cow<'a, str>> {
        match self {
            Self::Str(s) => Some(s.clone()),
            _ => None,
        }
    }
}

struct LenientVisitor;

impl<'de> Visitor<'de> for LenientVisitor {
    type Value = Lenient<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Lenient::Str(Cow::Owned(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Lenient::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Lenient::Other, Lenient::Int))
    }
    otherwise!(Lenient::Other; f64 bool unit seq map);
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Lenient<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LenientVisitor)
    }
}

/// A JSON object of client-chosen names and values (headers, query parameters), every entry
/// kept in order, duplicates included; anything but an object counts as empty.
#[derive(Debug, Default)]
struct Pairs<'a>(Vec<(Cow<'a, str>, Lenient<'a>)>);

impl<'de: 'a, 'a> Deserialize<'de> for Pairs<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                // Keys through `Lenient`, which borrows them (serde's own `Cow` always copies).
                while let Some(key) = map.next_key::<Lenient<'de>>()? {
                    let value = map.next_value::<Lenient<'de>>()?;
                    if let Lenient::Str(key) = key {
                        if out.is_empty() {
                            // Room for a typical set of request headers, grown once at most.
                            out.reserve(16);
                        }
                        out.push((key, value));
                    }
                }
                Ok(Pairs(out))
            }
            otherwise!(Pairs::default(); seq unit str i64 u64 f64 bool);
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(PairsVisitor)
    }
}

impl<'a> Pairs<'a> {
    fn get_cow(&self, name: &str) -> Option<Cow<'a, str>> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.cow())
    }
    fn string_values(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|(_, v)| v.str())
    }
}

/// `identitySource`: an array of values (HTTP API 2.0), one comma-joined string (1.0), or
/// something else (which says nothing trustworthy).
#[derive(Debug, Default)]
enum IdentitySource<'a> {
    #[default]
    Absent,
    Values(Vec<Lenient<'a>>),
    One(Cow<'a, str>),
    Unreadable,
}

impl<'de: 'a, 'a> Deserialize<'de> for IdentitySource<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = IdentitySource<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("identity source values")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Lenient<'de>>()? {
                    out.push(v);
                }
                Ok(IdentitySource::Values(out))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(IdentitySource::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IdentitySource::One(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IdentitySource::Absent)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(IdentitySource::Absent)
            }
            otherwise!(IdentitySource::Unreadable; map i64 u64 f64 bool);
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object of known shape where the event may have anything: anything but an object
/// counts as absent, so one odd field never refuses the whole event. (`T`'s own fields are
/// lenient, so an object never fails to read either.)
#[derive(Debug)]
struct MaybeObject<T>(Option<T>);

impl<T> Default for MaybeObject<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MaybeObject<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = MaybeObject<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|t| MaybeObject(Some(t)))
            }
            otherwise!(MaybeObject(None); seq str i64 u64 f64 bool unit);
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// A JSON array of strings (cookies); anything else counts as empty, non-strings are dropped.
#[derive(Debug, Default)]
struct Strings<'a>(Vec<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Strings<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strings<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Lenient<'de>>()? {
                    if let Lenient::Str(s) = v {
                        out.push(s);
                    }
                }
                Ok(Strings(out))
            }
            otherwise!(Strings::default(); map str i64 u64 f64 bool unit);
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
struct RawIdentity<'a> {
    #[serde(rename = "sourceIp", default, borrow)]
    source_ip: Lenient<'a>,
    #[serde(rename = "userAgent", default, borrow)]
    user_agent: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
struct RawContext<'a> {
    #[serde(default, borrow)]
    identity: MaybeObject<RawIdentity<'a>>,
    /// HTTP API 2.0.
    #[serde(default, borrow)]
    http: MaybeObject<RawIdentity<'a>>,
    #[serde(rename = "requestTimeEpoch", default, borrow)]
    request_time_epoch: Lenient<'a>,
    #[serde(rename = "timeEpoch", default, borrow)]
    time_epoch: Lenient<'a>,
    #[serde(rename = "routeKey", default, borrow)]
    route_key: Lenient<'a>,
}

#[derive(Debug, Default, Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Lenient<'a>,
    #[serde(default, borrow)]
    version: Lenient<'a>,
    #[serde(rename = "methodArn", default, borrow)]
    method_arn: Lenient<'a>,
    #[serde(rename = "routeArn", default, borrow)]
    route_arn: Lenient<'a>,
    #[serde(rename = "authorizationToken", default, borrow)]
    authorization_token: Lenient<'a>,
    #[serde(rename = "identitySource", default, borrow)]
    identity_source: IdentitySource<'a>,
    #[serde(rename = "routeKey", default, borrow)]
    route_key: Lenient<'a>,
    #[serde(default, borrow)]
    headers: Pairs<'a>,
    #[serde(rename = "queryStringParameters", default, borrow)]
    query: Pairs<'a>,
    #[serde(rename = "pathParameters", default, borrow)]
    path_parameters: Pairs<'a>,
    #[serde(default, borrow)]
    cookies: Strings<'a>,
    #[serde(rename = "requestContext", default, borrow)]
    request_context: MaybeObject<RawContext<'a>>,
}

// ---- From JSON to a request ---------------------------------------------------------------

fn malformed(flavor: &'static str, reason: impl fmt::Display) -> EventError {
    EventError::Malformed {
        flavor,
        reason: reason.to_string(),
    }
}

/// An HTTP header name: a token (RFC 9110 §5.6.2).
fn header_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// An HTTP header value: visible characters, spaces and tabs, and bytes beyond ASCII (RFC 9110
/// §5.5); no control characters, which is what a header parser refuses.
fn header_value_ok(value: &str) -> bool {
    // In blocks, each folded without an early exit, so that the compiler can check many bytes
    // at once: the `Authorization` value alone is a kilobyte, on every request.
    value.as_bytes().chunks(32).all(|block| {
        !block.iter().fold(false, |bad, &b| {
            bad | ((b < b' ') & (b != b'\t')) | (b == 0x7f)
        })
    })
}

/// The usable headers, in order, and the ones skipped.
#[allow(clippy::type_complexity)]
fn headers_of<'a>(pairs: Pairs<'a>) -> (Vec<(Cow<'a, str>, Cow<'a, str>)>, Vec<SkippedHeader>) {
    let mut skipped = Vec::new();
    // `filter_map` over the pairs' own buffer (the two element types have one layout, so the
    // standard library collects in place): no second allocation per event.
    let usable = pairs
        .0
        .into_iter()
        .filter_map(|(name, value)| {
            if !header_name_ok(&name) {
                skipped.push(SkippedHeader::BadName { len: name.len() });
                return None;
            }
            match value {
                Lenient::Str(v) if header_value_ok(&v) => Some((name, v)),
                _ => {
                    skipped.push(SkippedHeader::BadValue(name.to_ascii_lowercase()));
                    None
                }
            }
        })
        .collect();
    (usable, skipped)
}

/// A meaningful value: API Gateway's samples use `"..."` and `"IP"` as placeholders.
fn present(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The cache scope of an HTTP API 2.0 event.
///
/// The route key counts as an identity source only if it appears among the identity source
/// values more often than among the values a client chooses (headers, query parameters, path
/// parameters, cookies): a client who sends `X-Anything: GET /pets` cannot make an authorizer
/// keyed on `$request.header.X-Anything` look route-keyed.
fn cache_scope_v2(raw: &Raw<'_>, route_key: Option<&str>) -> CacheScope {
    let sources: Vec<&str> = match &raw.identity_source {
        IdentitySource::Absent => Vec::new(),
        IdentitySource::Values(v) => v.iter().filter_map(Lenient::str).collect(),
        IdentitySource::One(s) => vec![s],
        IdentitySource::Unreadable => return CacheScope::AllRoutes,
    };
    if sources.is_empty() {
        return CacheScope::Uncached;
    }
    let Some(key) = route_key.filter(|k| !k.is_empty()) else {
        return CacheScope::AllRoutes;
    };
    let in_sources = sources.iter().filter(|s| **s == key).count();
    let mut chosen_by_client = 0usize;
    for pairs in [&raw.headers, &raw.query, &raw.path_parameters] {
        chosen_by_client += pairs.string_values().filter(|v| *v == key).count();
    }
    chosen_by_client += raw
        .cookies
        .0
        .iter()
        .filter(|c| *c == key || c.split_once('=').is_some_and(|(_, v)| v == key))
        .count();
    if in_sources > chosen_by_client {
        CacheScope::PerRoute
    } else {
        CacheScope::AllRoutes
    }
}

/// The identity source values, when the event carries them.
fn identity_values(raw: &Raw<'_>) -> Option<Vec<String>> {
    match &raw.identity_source {
        IdentitySource::Absent | IdentitySource::Unreadable => None,
        IdentitySource::Values(v) => Some(
            v.iter()
                .filter_map(Lenient::str)
                .map(str::to_owned)
                .collect(),
        ),
        // Payload 1.0 joins the values with commas.
        IdentitySource::One(s) => Some(s.split(',').map(str::to_owned).collect()),
    }
}

impl<'a> AuthzRequest<'a> {
    /// Parses an event from JSON text, borrowing from it.
    pub fn from_json(text: &'a str) -> Result<Self, EventError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw = match Raw::deserialize(&mut de).and_then(|r| de.end().map(|()| r)) {
            Ok(r) => r,
            // Not an object (`[]`, `null`, a bare string), or one with a field twice. serde's
            // message for these may quote the input (a bare token, say), so it is not used.
            Err(e) if e.is_data() => {
                return Err(EventError::Unrecognized(format!(
                    "expected a JSON object with each field once (line {}, column {})",
                    e.line(),
                    e.column()
                )))
            }
            Err(e) if e.is_eof() => return Err(EventError::Incomplete(e.to_string())),
            // Syntax errors name a position, never the text around it.
            Err(e) => return Err(EventError::NotJson(e.to_string())),
        };
        Self::from_raw(raw)
    }

    /// Parses an event already decoded as JSON.
    #[cfg(any(fuzzing, feature = "dev"))]
    pub fn from_value(value: &serde_json::Value) -> Result<AuthzRequest<'static>, EventError> {
        let text = value.to_string();
        AuthzRequest::from_json(&text).map(AuthzRequest::into_owned)
    }

    fn from_raw(mut raw: Raw<'a>) -> Result<Self, EventError> {
        let kind = raw.kind.str().unwrap_or_default();
        let version = raw.version.str().unwrap_or_default();
        let flavor = match (kind, version) {
            ("TOKEN", _) => Flavor::Token,
            ("REQUEST", "2.0") => Flavor::HttpV2,
            ("REQUEST", "1.0") => Flavor::HttpV1,
            ("REQUEST", _) => Flavor::Request,
            ("", _) => return Err(EventError::Unrecognized("no `type` field".to_owned())),
            (other, _) => {
                return Err(EventError::Unrecognized(format!(
                    "unknown type `{}`",
                    crate::token::shown(other)
                )))
            }
        };
        let name = match flavor {
            Flavor::Token => "TOKEN",
            Flavor::Request | Flavor::WebSocket => "REQUEST",
            Flavor::HttpV1 => "HTTP API 1.0",
            Flavor::HttpV2 => "HTTP API 2.0",
        };
        let arn_text = match flavor {
            Flavor::HttpV2 => raw
                .route_arn
                .str()
                .ok_or_else(|| malformed(name, "no `routeArn`"))?,
            _ => raw
                .method_arn
                .str()
                .ok_or_else(|| malformed(name, "no `methodArn`"))?,
        };
        let arn = MethodArn::parse(arn_text)?;
        // What the cache key and the identity sources say, read before the headers are taken.
        let (cache, identity_values) = match flavor {
            Flavor::HttpV2 => (
                cache_scope_v2(&raw, route_key_of(&raw)),
                identity_values(&raw),
            ),
            Flavor::HttpV1 => (CacheScope::Unknown, identity_values(&raw)),
            _ => (CacheScope::Unknown, None),
        };
        let route_key = route_key_of(&raw).map(str::to_owned);
        let mut req = Self {
            flavor,
            authorization: None,
            arn,
            source_ip: None,
            user_agent: None,
            headers: Vec::new(),
            request_time_ms: None,
            route_key,
            cache,
            identity_values,
            skipped_headers: Vec::new(),
        };
        if flavor == Flavor::Token {
            // A TOKEN event carries the token and the ARN, nothing else about the request.
            req.route_key = None;
            req.authorization = raw.authorization_token.cow();
            return Ok(req);
        }
        let (headers, skipped) = headers_of(std::mem::take(&mut raw.headers));
        req.headers = headers;
        req.skipped_headers = skipped;
        let ctx = raw.request_context.0.as_ref();
        let identity = ctx.and_then(|c| c.identity.0.as_ref());
        let http = ctx.and_then(|c| c.http.0.as_ref());
        let header_auth = req.header_cow("authorization");
        match flavor {
            Flavor::HttpV2 => {
                // The identity source, when it is the Authorization header, is also in
                // `headers`; a single identity source value is the token otherwise.
                req.authorization = header_auth.or_else(|| match &raw.identity_source {
                    IdentitySource::Values(v) => match v.as_slice() {
                        [only] => only.cow(),
                        _ => None,
                    },
                    _ => None,
                });
                req.source_ip = present(http.and_then(|h| h.source_ip.str()));
                req.user_agent = present(http.and_then(|h| h.user_agent.str()))
                    .or_else(|| present(req.header("user-agent")));
                req.request_time_ms = ctx.and_then(|c| c.time_epoch.int());
            }
            Flavor::HttpV1 => {
                req.authorization = header_auth.or_else(|| raw.authorization_token.cow());
                req.source_ip = present(identity.and_then(|i| i.source_ip.str()));
                req.user_agent = present(req.header("user-agent"));
                req.request_time_ms =
                    ctx.and_then(|c| c.time_epoch.int().or_else(|| c.request_time_epoch.int()));
            }
            Flavor::Request | Flavor::WebSocket | Flavor::Token => {
                if req.arn.resource == WEBSOCKET_CONNECT {
                    req.flavor = Flavor::WebSocket;
                }
                req.authorization = header_auth;
                if req.flavor == Flavor::WebSocket && req.authorization.is_none() {
                    req.authorization = WEBSOCKET_TOKEN_PARAMS
                        .iter()
                        .find_map(|p| raw.query.get_cow(p));
                }
                req.source_ip = present(identity.and_then(|i| i.source_ip.str()));
                req.user_agent = present(req.header("user-agent"))
                    .or_else(|| present(identity.and_then(|i| i.user_agent.str())));
                req.request_time_ms = ctx.and_then(|c| c.request_time_epoch.int());
            }
        }
        Ok(req)
    }

    /// A header's value as borrowed from the event, by name, case-insensitively.
    fn header_cow(&self, name: &str) -> Option<Cow<'a, str>> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

/// The route key of an event: top level (HTTP API 2.0) or in `requestContext`.
fn route_key_of<'r>(raw: &'r Raw<'_>) -> Option<&'r str> {
    raw.route_key.str().or_else(|| {
        raw.request_context
            .0
            .as_ref()
            .and_then(|c| c.route_key.str())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

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

    fn parse(v: &Value) -> AuthzRequest<'static> {
        AuthzRequest::from_value(v).unwrap()
    }

    #[test]
    fn token_event() {
        let r = parse(&fixture("example-apigw-custom-auth-request.json"));
        assert_eq!(r.flavor, Flavor::Token);
        assert_eq!(r.authorization.as_deref(), Some("allow"));
        assert_eq!(r.arn.stage, "*");
        assert_eq!(r.arn.resource, "GET/");
        assert!(r.headers.is_empty() && r.source_ip.is_none());
    }

    #[test]
    fn request_event() {
        let mut v = fixture("example-apigw-custom-auth-request-type-request.json");
        v["headers"]["Authorization"] = "Bearer abc".into();
        let r = parse(&v);
        assert_eq!(r.flavor, Flavor::Request);
        assert_eq!(r.authorization.as_deref(), Some("Bearer abc"));
        assert_eq!(r.arn.resource, "GET/request");
        assert_eq!(r.header("headerauth1"), Some("headerValue1"));
        assert!(r.skipped_headers.is_empty());
    }

    #[test]
    fn http_api_events() {
        let r = parse(&fixture(
            "example-apigw-v2-custom-authorizer-v1-request.json",
        ));
        assert_eq!(r.flavor, Flavor::HttpV1);
        assert_eq!(r.authorization.as_deref(), Some("user1,123"));
        assert_eq!(
            r.identity_values,
            Some(vec!["user1".to_owned(), "123".to_owned()])
        );
        let r = parse(&fixture(
            "example-apigw-v2-custom-authorizer-v2-request.json",
        ));
        assert_eq!(r.flavor, Flavor::HttpV2);
        assert_eq!(
            r.authorization, None,
            "two identity sources: none is the token"
        );
        assert_eq!(r.request_time_ms, Some(1_583_348_638_390));
        assert_eq!(r.source_ip.as_deref(), Some("IP"));
    }

    #[test]
    fn http_api_2_cache_scope_from_identity_sources() {
        // The sample without identity sources: API Gateway cannot cache.
        let v =
            fixture("example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json");
        let r = parse(&v);
        assert_eq!(r.cache, CacheScope::Uncached);
        assert_eq!(r.route_key.as_deref(), Some("$default"));
        // Identity sources without the route key: one answer for every route.
        let mut v = fixture("example-apigw-v2-custom-authorizer-v2-request.json");
        assert_eq!(parse(&v).cache, CacheScope::AllRoutes);
        // `$context.routeKey` among them: per route.
        v["identitySource"] = json!(["Bearer x", "$default"]);
        assert_eq!(parse(&v).cache, CacheScope::PerRoute);
        // A client-chosen header carrying the route key does not count.
        v["identitySource"] = json!(["Bearer x", "GET /pets"]);
        v["routeKey"] = "GET /pets".into();
        v["headers"]["x-route"] = "GET /pets".into();
        assert_eq!(parse(&v).cache, CacheScope::AllRoutes);
        v["identitySource"] = json!(["Bearer x", "GET /pets", "GET /pets"]);
        assert_eq!(parse(&v).cache, CacheScope::PerRoute);
        v["identitySource"] = json!(["GET /pets"]);
        v["headers"].as_object_mut().unwrap().remove("x-route");
        v["cookies"] = json!(["r=GET /pets"]);
        assert_eq!(parse(&v).cache, CacheScope::AllRoutes);
        // Identity sources that are not values say nothing to rely on.
        v["identitySource"] = json!({"a": 1});
        assert_eq!(parse(&v).cache, CacheScope::AllRoutes);
        // Other flavours do not say.
        let r = parse(&fixture(
            "example-apigw-v2-custom-authorizer-v1-request.json",
        ));
        assert_eq!(r.cache, CacheScope::Unknown);
    }

    #[test]
    fn websocket_event_takes_the_token_from_the_query() {
        let mut v = fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
        v["queryStringParameters"]["token"] = "eyJ.x.y".into();
        let r = parse(&v);
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
            "5",
            "{}",
            r#"{"type":"TOKEN"}"#,
            r#"{"type":"X"}"#,
            r#"{"type":"REQUEST","methodArn":5}"#,
            r#"{"type":"REQUEST","methodArn":"arn:aws:s3:::b/k"}"#,
            r#"{"type":"TOKEN","methodArn":"arn:aws:execute-api:us-east-1:123456789012:a/prod/GET/"} trailing"#,
            r#"{"type":"TOKEN","methodArn":"#,
        ] {
            assert!(AuthzRequest::from_json(text).is_err(), "{text}");
        }
    }

    #[test]
    fn odd_fields_count_as_absent() {
        let v = json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:us-east-1:123456789012:a/prod/GET/x",
            "headers": ["not", "an", "object"],
            "queryStringParameters": 7,
            "requestContext": {"identity": "nobody", "requestTimeEpoch": "soon"},
            "cookies": {"a": 1},
        });
        let r = parse(&v);
        assert!(r.headers.is_empty() && r.source_ip.is_none() && r.request_time_ms.is_none());
    }

    /// Every AWS sample event, read by `aws_lambda_events` too: wherever that strict reading
    /// accepts an event, the two agree on the token, the ARN, the address and the headers.
    #[test]
    fn the_samples_read_as_aws_lambda_events_reads_them() {
        use aws_lambda_events::apigw::{
            ApiGatewayCustomAuthorizerRequest, ApiGatewayCustomAuthorizerRequestTypeRequest,
            ApiGatewayV2CustomAuthorizerV1Request, ApiGatewayV2CustomAuthorizerV2Request,
        };
        let header_map = |m: &http::HeaderMap| -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = Vec::new();
            for (k, v) in m {
                let k = k.as_str().to_ascii_lowercase();
                if !out.iter().any(|(n, _)| *n == k) {
                    out.push((k, v.to_str().unwrap().to_owned()));
                }
            }
            out.sort();
            out
        };
        let ours = |r: &AuthzRequest<'_>| -> Vec<(String, String)> {
            let mut out: Vec<(String, String)> = Vec::new();
            for (k, v) in &r.headers {
                let k = k.to_ascii_lowercase();
                if !out.iter().any(|(n, _)| *n == k) {
                    out.push((k, v.to_string()));
                }
            }
            out.sort();
            out
        };
        let mut v = fixture("example-apigw-custom-auth-request.json");
        v["authorizationToken"] = "Bearer eyJ.a.b".into();
        let theirs: ApiGatewayCustomAuthorizerRequest = serde_json::from_value(v.clone()).unwrap();
        let r = parse(&v);
        assert_eq!(
            r.authorization.as_deref(),
            theirs.authorization_token.as_deref()
        );
        assert_eq!(Some(r.arn.to_string()), theirs.method_arn);

        let mut v = fixture("example-apigw-custom-auth-request-type-request.json");
        v["headers"]["Authorization"] = "Bearer eyJ.a.b".into();
        let theirs: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(v.clone()).unwrap();
        let r = parse(&v);
        assert_eq!(ours(&r), header_map(&theirs.headers));
        assert_eq!(Some(r.arn.to_string()), theirs.method_arn);
        assert_eq!(
            r.source_ip,
            theirs.request_context.identity.and_then(|i| i.source_ip)
        );

        let v = fixture("example-apigw-v2-custom-authorizer-v1-request.json");
        let theirs: ApiGatewayV2CustomAuthorizerV1Request =
            serde_json::from_value(v.clone()).unwrap();
        let r = parse(&v);
        assert_eq!(ours(&r), header_map(&theirs.headers));
        assert_eq!(Some(r.arn.to_string()), theirs.method_arn);
        assert_eq!(r.source_ip, theirs.request_context.identity.source_ip);

        for name in [
            "example-apigw-v2-custom-authorizer-v2-request.json",
            "example-apigw-v2-custom-authorizer-v2-request-without-identity-source.json",
        ] {
            let v = fixture(name);
            let theirs: ApiGatewayV2CustomAuthorizerV2Request =
                serde_json::from_value(v.clone()).unwrap();
            let r = parse(&v);
            assert_eq!(ours(&r), header_map(&theirs.headers), "{name}");
            assert_eq!(Some(r.arn.to_string()), theirs.route_arn, "{name}");
            assert_eq!(r.request_time_ms, Some(theirs.request_context.time_epoch));
            assert_eq!(
                r.identity_values.is_some(),
                theirs.identity_source.is_some()
            );
        }

        let mut v = fixture("example-apigw-v2-custom-authorizer-websocket-request.json");
        v["queryStringParameters"]["token"] = "eyJ.a.b".into();
        let theirs: ApiGatewayCustomAuthorizerRequestTypeRequest =
            serde_json::from_value(v.clone()).unwrap();
        let r = parse(&v);
        assert_eq!(ours(&r), header_map(&theirs.headers));
        assert_eq!(
            r.authorization.as_deref(),
            theirs.query_string_parameters.first("token")
        );

        // Where the strict reading refuses the whole event over one header, this one keeps the
        // event and skips the header.
        let mut v = fixture("example-apigw-custom-auth-request-type-request.json");
        v["headers"]["X-Odd"] = "a\u{1}b".into();
        assert!(
            serde_json::from_value::<ApiGatewayCustomAuthorizerRequestTypeRequest>(v.clone())
                .is_err()
        );
        assert!(AuthzRequest::from_value(&v).is_ok());
    }

    #[test]
    fn one_bad_header_is_skipped_by_name_and_the_rest_counts() {
        let mut v = fixture("example-apigw-custom-auth-request-type-request.json");
        v["headers"]["Authorization"] = "Bearer eyJ.good.token".into();
        v["headers"]["X-Odd"] = "a\u{1}b".into();
        v["headers"]["X-Null"] = Value::Null;
        v["headers"]["bad name"] = "v".into();
        let r = parse(&v);
        assert_eq!(r.authorization.as_deref(), Some("Bearer eyJ.good.token"));
        assert_eq!(r.header("x-odd"), None);
        assert_eq!(
            r.skipped_headers,
            vec![
                SkippedHeader::BadValue("x-odd".into()),
                SkippedHeader::BadValue("x-null".into()),
                SkippedHeader::BadName { len: 8 },
            ]
        );
        // A bad `Authorization` value is skipped like any other: no token, never logged.
        v["headers"]["Authorization"] = "Bearer eyJ.bad\u{7f}".into();
        let r = parse(&v);
        assert_eq!(r.authorization, None);
        let shown: Vec<String> = r.skipped_headers.iter().map(ToString::to_string).collect();
        assert!(shown.iter().all(|s| !s.contains("eyJ")), "{shown:?}");
        assert!(
            shown.iter().any(|s| s.contains("`authorization`")),
            "{shown:?}"
        );
    }

    #[test]
    fn header_values_refuse_control_bytes_wherever_they_fall() {
        let ok = ["", "a b\tc", "caf\u{e9} \u{2603}", &"~".repeat(100)];
        for v in ok {
            assert!(header_value_ok(v), "{v:?}");
        }
        // Every position, across the block boundaries of the check.
        for len in [1, 31, 32, 33, 64, 65, 200] {
            for at in 0..len {
                for bad in ['\0', '\u{1}', '\n', '\r', '\u{1f}', '\u{7f}'] {
                    let mut v: Vec<char> = vec!['x'; len];
                    v[at] = bad;
                    let v: String = v.into_iter().collect();
                    assert!(!header_value_ok(&v), "{len} {at} {bad:?}");
                }
            }
        }
    }
}
