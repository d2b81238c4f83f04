//! Facts: verified claims and the request → the values a route-wide decision can depend on.
//!
//! Stage: after `claims`, before `entities`. Input: the bundle's [`Mapping`] (which claim fills
//! what, read from the schema's annotations at load) and [`Reads`] (which of those values some
//! policy reads, found in the policies at load), the caller's [`VerifiedClaims`] and the
//! [`AuthzRequest`]. Output: one typed [`Facts`] value.
//!
//! ## Why the facts are named
//! A decision reads only what its policies read. Facts hold exactly that: the principal's
//! parents (role claims), the principal and context attributes some policy reads, the
//! resource's attributes, the principal's id only when a policy can tell principals apart by
//! id, and the issuer. Everything else a token or an event carries (`email` when no policy
//! reads it, `sub` itself, a fresh `X-Amzn-Trace-Id` on every request) is left out, so that
//! callers with equal facts share one memoized decision, and a fact a policy reads can never
//! be left out of the memo key (the Cedar request is built from the facts alone: see
//! `entities`).
//!
//! Facts are built from claims, whether they come from a token or not: `test`, `explain
//! --claims` and the review tools build them from trusted claims through the same code.
//!
//! Invariants: every mapped claim is checked against its declared type, read or not (a claim
//! of the wrong type is a [`ClaimError`], never a silent default); sets are sorted and
//! deduplicated (Cedar sets have no order), so equal Cedar values give equal facts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use cedar_policy::EntityTypeName;
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::claims::VerifiedClaims;
use crate::event::AuthzRequest;
use crate::time::unix_millis;

/// A Cedar type the mapping can fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrType {
    String,
    Long,
    Bool,
    Entity(String),
    Set(Box<AttrType>),
    Extension(String),
    Record(BTreeMap<String, (AttrType, bool)>),
}

impl std::fmt::Display for AttrType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::String => f.write_str("String"),
            Self::Long => f.write_str("Long"),
            Self::Bool => f.write_str("Bool"),
            Self::Entity(n) => f.write_str(n),
            Self::Set(e) => write!(f, "Set<{e}>"),
            Self::Extension(n) => f.write_str(n),
            Self::Record(_) => f.write_str("a record"),
        }
    }
}

/// A parent entity type filled from a claim (`@claim("roles") entity Role;`).
#[derive(Debug, Clone)]
pub struct ParentMapping {
    pub(crate) entity_type: EntityTypeName,
    /// `entity_type` as text, as facts name it.
    pub(crate) type_name: String,
    pub(crate) claim: String,
    pub(crate) split: Option<String>,
}

/// A principal attribute filled from a claim.
#[derive(Debug, Clone)]
pub struct AttrMapping {
    pub(crate) name: String,
    pub(crate) claim: String,
    pub(crate) split: Option<String>,
    pub(crate) ty: AttrType,
    pub(crate) required: bool,
}

/// What fills a resource attribute: a part of the method ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArnField {
    Stage,
    ApiId,
    Region,
    AccountId,
    Partition,
}

/// What fills a context attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextField {
    SourceIpString,
    SourceIpAddr,
    UserAgent,
    Stage,
    TimeSeconds,
    Now,
    /// Lower-case header names → attribute names.
    Headers(Vec<(String, String)>),
}

impl ContextField {
    /// Whether the value comes from the request rather than from the method ARN: such a fact
    /// is only as good as the authorizer's cache key (see `template` and [`RequestFact`]).
    pub fn request_facts(&self, attr: &str, reads: &Reads) -> Vec<RequestFact> {
        match self {
            Self::SourceIpString | Self::SourceIpAddr => vec![RequestFact::SourceIp],
            Self::UserAgent => vec![RequestFact::UserAgent],
            Self::TimeSeconds | Self::Now => vec![RequestFact::Time(attr.to_owned())],
            Self::Headers(names) => names
                .iter()
                .filter(|(_, a)| reads.headers.contains(a))
                .map(|(lower, _)| RequestFact::Header(lower.clone()))
                .collect(),
            Self::Stage => Vec::new(),
        }
    }
}

/// A fact that comes from the request itself, not from the token or the method ARN. API
/// Gateway reuses a cached answer for every request with the same identity sources, so a
/// decision that reads one of these is right only when it is part of the cache key (or the
/// cache is off); TOKEN events carry none of them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RequestFact {
    SourceIp,
    UserAgent,
    /// A request header, by lower-case name.
    Header(String),
    /// The request time (the context attribute's name: `time` or `now`).
    Time(String),
}

impl std::fmt::Display for RequestFact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SourceIp => f.write_str("context.sourceIp"),
            Self::UserAgent => f.write_str("context.userAgent"),
            Self::Header(h) => write!(f, "the `{h}` header (context.headers)"),
            Self::Time(a) => write!(f, "the request time (context.{a})"),
        }
    }
}

/// The context attributes cedargate can fill, for documentation and error messages.
pub const CONTEXT_ATTRIBUTES: &[(&str, &str)] = &[
    (
        "sourceIp",
        "String or ipaddr, optional: the caller's IP (REQUEST, HTTP API and WebSocket events)",
    ),
    (
        "userAgent",
        "String, optional: the caller's User-Agent (REQUEST flavours)",
    ),
    ("stage", "String: the API stage from the method ARN"),
    ("time", "Long: unix seconds when the request was received"),
    ("now", "datetime: when the request was received"),
    (
        "headers",
        "a record of optional String attributes named after lower-case request headers",
    ),
];

/// The resource attributes cedargate can fill.
pub const RESOURCE_ATTRIBUTES: &[&str] = &["stage", "apiId", "region", "accountId", "partition"];

/// The identity mapping read from the schema (`bundle::mapping` builds it).
#[derive(Debug, Clone)]
pub struct Mapping {
    pub(crate) principal_type: EntityTypeName,
    pub(crate) id_claim: String,
    /// `@qualify("iss")`: the principal's id is `<iss>|<id claim>`, so that principals of
    /// different issuers never share an id.
    pub(crate) qualify_by_issuer: bool,
    pub(crate) parents: Vec<ParentMapping>,
    pub(crate) attrs: Vec<AttrMapping>,
    pub(crate) resource_type: EntityTypeName,
    pub(crate) resource_attrs: Vec<(String, ArnField)>,
    pub(crate) context: Vec<(String, ContextField)>,
}

impl Mapping {
    pub fn principal_type(&self) -> &EntityTypeName {
        &self.principal_type
    }

    pub fn resource_type(&self) -> &EntityTypeName {
        &self.resource_type
    }

    /// The claim that is the principal's id (`@claim` on the principal type).
    pub fn id_claim(&self) -> &str {
        &self.id_claim
    }

    /// Whether principal ids are qualified by the issuer (`@qualify("iss")`).
    pub fn qualifies_by_issuer(&self) -> bool {
        self.qualify_by_issuer
    }

    /// The principal attributes filled from the `iss` claim: what tells issuers apart where
    /// ids are not qualified.
    pub fn issuer_attributes(&self) -> impl Iterator<Item = &str> {
        self.attrs
            .iter()
            .filter(|a| a.claim == "iss")
            .map(|a| a.name.as_str())
    }

    /// The parent mapping of a parent entity type, by its name.
    pub(crate) fn parent(&self, type_name: &str) -> Option<&ParentMapping> {
        self.parents.iter().find(|p| p.type_name == type_name)
    }

    /// The request facts that some policy reads, each with the context attribute it fills.
    pub fn request_facts(&self, reads: &Reads) -> Vec<RequestFact> {
        let mut out: Vec<RequestFact> = self
            .context
            .iter()
            .filter(|(attr, _)| reads.context.contains(attr))
            .flat_map(|(attr, field)| field.request_facts(attr, reads))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Whether some policy reads the time of the request: then no decision can be reused.
    pub fn reads_time(&self, reads: &Reads) -> bool {
        self.context.iter().any(|(attr, f)| {
            matches!(f, ContextField::TimeSeconds | ContextField::Now)
                && reads.context.contains(attr)
        })
    }
}

/// A set of attribute names, or all of them (a policy read the whole record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Names {
    Some(BTreeSet<String>),
    All,
}

impl Default for Names {
    fn default() -> Self {
        Self::Some(BTreeSet::new())
    }
}

impl Names {
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::Some(set) => set.contains(name),
            Self::All => true,
        }
    }
    pub fn insert(&mut self, name: &str) {
        if let Self::Some(set) = self {
            set.insert(name.to_owned());
        }
    }
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Some(set) if set.is_empty())
    }
    pub fn union_with(&mut self, other: &Names) {
        match (&mut *self, other) {
            (Self::All, _) => {}
            (_, Self::All) => *self = Self::All,
            (Self::Some(a), Self::Some(b)) => a.extend(b.iter().cloned()),
        }
    }
}

/// What the policies of a bundle read (found by `bundle::reads` at load): the values a
/// decision can depend on besides the principal's parents, which are always facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reads {
    /// Some policy tells principals apart by id (`principal == User::"alice"`, …).
    pub principal_id: bool,
    pub principal_attrs: Names,
    /// Some policy tells APIs apart by id (`resource == Api::"abc"`, …).
    pub resource_id: bool,
    pub resource_attrs: Names,
    /// Context attributes (`context.sourceIp`, `context has time`, …).
    pub context: Names,
    /// Attributes of `context.headers`.
    pub headers: Names,
}

impl Reads {
    /// Everything: for showing a principal as the claims build it, whatever the policies read.
    pub fn everything() -> Self {
        Self {
            principal_id: true,
            principal_attrs: Names::All,
            resource_id: true,
            resource_attrs: Names::All,
            context: Names::All,
            headers: Names::All,
        }
    }

    pub fn union_with(&mut self, other: &Reads) {
        self.principal_id |= other.principal_id;
        self.principal_attrs.union_with(&other.principal_attrs);
        self.resource_id |= other.resource_id;
        self.resource_attrs.union_with(&other.resource_attrs);
        self.context.union_with(&other.context);
        self.headers.union_with(&other.headers);
    }
}

/// A value in the facts: what a claim or the request gives a Cedar attribute.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FactValue {
    String(String),
    Long(i64),
    Bool(bool),
    Entity {
        r#type: String,
        id: String,
    },
    Set(BTreeSet<FactValue>),
    /// An `ipaddr` (validated).
    Ip(String),
    /// A `datetime`, unix milliseconds.
    Datetime(i64),
    Record(BTreeMap<String, FactValue>),
}

/// A parent of the principal: entity type and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Parent {
    pub r#type: String,
    pub id: String,
}

/// Everything a route-wide decision can depend on, besides the bundle: one typed value, built
/// once per request ([`Facts::build`]). Its [`digest`](Facts::digest) keys the decision memo.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Facts {
    /// The issuer of the claims (`iss`), when they name one. Carried so that callers of
    /// different issuers never share a memoized decision, whatever the policies read.
    pub issuer: Option<String>,
    /// The principal's id, when some policy tells principals apart by id.
    pub principal_id: Option<String>,
    /// The principal's parents from claims (the static hierarchy above them is the bundle's).
    pub parents: BTreeSet<Parent>,
    /// The principal attributes some policy reads, when the claims carry them.
    pub principal_attrs: BTreeMap<String, FactValue>,
    /// The API id (the resource's id), when some policy tells APIs apart.
    pub api_id: Option<String>,
    /// The resource attributes some policy reads.
    pub resource_attrs: BTreeMap<String, FactValue>,
    /// The context attributes some policy reads, when the request carries them.
    pub context: BTreeMap<String, FactValue>,
}

/// A digest of [`Facts`]: SHA-256 over their canonical JSON (every map and set is ordered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FactsDigest(pub [u8; 32]);

impl FactsDigest {
    /// The first 12 hex digits, for logs.
    pub fn short(&self) -> String {
        hex::encode(self.0.get(..6).unwrap_or_default())
    }
}

/// A token whose claims do not fit the schema's mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("claim `{claim}` is missing, but `{target}` requires it")]
    Missing { claim: String, target: String },
    #[error("claim `{claim}` for `{target}` must be {expected}, found {found}")]
    WrongType {
        claim: String,
        target: String,
        expected: String,
        found: &'static str,
    },
    #[error("the principal cannot be built: {0}")]
    Entity(String),
}

impl FactValue {
    /// Roughly how many bytes this holds (for bounded caches).
    fn weight(&self) -> usize {
        32 + match self {
            Self::String(s) | Self::Ip(s) => s.len(),
            Self::Long(_) | Self::Bool(_) | Self::Datetime(_) => 0,
            Self::Entity { r#type, id } => r#type.len() + id.len(),
            Self::Set(items) => items.iter().map(Self::weight).sum(),
            Self::Record(fields) => fields.iter().map(|(k, v)| 48 + k.len() + v.weight()).sum(),
        }
    }
}

impl Facts {
    /// Roughly how many bytes this holds (for bounded caches).
    pub fn weight(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        let attrs = |m: &BTreeMap<String, FactValue>| {
            m.iter()
                .map(|(k, v)| 48 + k.len() + v.weight())
                .sum::<usize>()
        };
        160 + text(&self.issuer)
            + text(&self.principal_id)
            + text(&self.api_id)
            + self
                .parents
                .iter()
                .map(|p| 64 + p.r#type.len() + p.id.len())
                .sum::<usize>()
            + attrs(&self.principal_attrs)
            + attrs(&self.resource_attrs)
            + attrs(&self.context)
    }

    /// The facts of one request: the claims through the schema's mapping, the request's
    /// context, the ARN's resource attributes, each kept only when `reads` says a policy reads
    /// it. `now` stands in for the request time when the event does not carry one.
    pub fn build(
        mapping: &Mapping,
        reads: &Reads,
        claims: &VerifiedClaims,
        req: &AuthzRequest<'_>,
        now: SystemTime,
    ) -> Result<Facts, ClaimError> {
        Self::build_with_id(mapping, reads, claims, req, now).map(|(f, _)| f)
    }

    /// [`Facts::build`], and the principal's id (the answer's `principalId`, whether or not
    /// it is a fact).
    pub fn build_with_id(
        mapping: &Mapping,
        reads: &Reads,
        claims: &VerifiedClaims,
        req: &AuthzRequest<'_>,
        now: SystemTime,
    ) -> Result<(Facts, String), ClaimError> {
        let id = principal_id(mapping, claims)?;
        let parents = parents(mapping, claims)?;
        let principal_attrs = principal_attrs(mapping, reads, claims)?;
        let facts = Facts {
            issuer: Some(claims.issuer().to_owned()).filter(|s| !s.is_empty()),
            principal_id: reads.principal_id.then(|| id.clone()),
            parents,
            principal_attrs,
            api_id: reads.resource_id.then(|| req.arn.api_id.clone()),
            resource_attrs: resource_attrs(mapping, reads, req),
            context: context(mapping, reads, req, now),
        };
        Ok((facts, id))
    }

    /// The digest that keys the decision memo: SHA-256 over the canonical JSON of the facts
    /// (every map and set is ordered, keys are strings). `None` only if serialising failed,
    /// which plain data cannot; such facts are then simply not memoized.
    pub fn digest(&self) -> Option<FactsDigest> {
        /// Feeds the JSON straight into the hash, without building it in memory.
        struct Hashing(Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(Sha256::new());
        serde_json::to_writer(&mut h, self).ok()?;
        Some(FactsDigest(h.0.finalize().into()))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Between the issuer and the id claim in a qualified principal id (`@qualify("iss")`). An
/// issuer URL cannot contain it (RFC 3986 has no unescaped `|`), so `<iss>|<sub>` is
/// unambiguous even where `sub` contains one (Auth0's `auth0|…`).
pub const ISSUER_SEPARATOR: char = '|';

/// The principal's id: the `@claim` of the principal type, a non-empty string, after the
/// issuer and [`ISSUER_SEPARATOR`] under `@qualify("iss")`. Required whether or not a policy
/// reads it: a principal without an id is nobody.
pub fn principal_id(mapping: &Mapping, claims: &VerifiedClaims) -> Result<String, ClaimError> {
    let target = || mapping.principal_type.to_string();
    let qualified = |id: &str| -> Result<String, ClaimError> {
        if !mapping.qualify_by_issuer {
            return Ok(id.to_owned());
        }
        // Claims that name no issuer (trusted claims without `iss`) cannot give a qualified
        // id; an issuer with the separator in it could make two ids collide.
        match claims.issuer() {
            "" => Err(ClaimError::Missing {
                claim: "iss".to_owned(),
                target: format!("the qualified id of `{}` (`@qualify(\"iss\")`)", target()),
            }),
            iss if iss.contains(ISSUER_SEPARATOR) => Err(ClaimError::Entity(format!(
                "issuer `{}` contains `{ISSUER_SEPARATOR}`, so it cannot qualify an id",
                iss.escape_default()
            ))),
            iss => Ok(format!("{iss}{ISSUER_SEPARATOR}{id}")),
        }
    };
    match claims.get(&mapping.id_claim) {
        Some(Value::String(s)) if !s.is_empty() => qualified(s),
        Some(Value::String(_)) | None => Err(ClaimError::Missing {
            claim: mapping.id_claim.clone(),
            target: target(),
        }),
        Some(other) => Err(ClaimError::WrongType {
            claim: mapping.id_claim.clone(),
            target: target(),
            expected: "a string".to_owned(),
            found: json_kind(other),
        }),
    }
}

/// The parents named by the parent claims: an array of strings, one string, or a string to
/// split. Empty ids are dropped (`"a  b"` split on spaces names two roles, not three).
fn parents(mapping: &Mapping, claims: &VerifiedClaims) -> Result<BTreeSet<Parent>, ClaimError> {
    let mut out = BTreeSet::new();
    for p in &mapping.parents {
        let wrong = |expected: &str, found: &Value| ClaimError::WrongType {
            claim: p.claim.clone(),
            target: p.type_name.clone(),
            expected: expected.to_owned(),
            found: json_kind(found),
        };
        let mut add = |id: &str| {
            if !id.is_empty() {
                out.insert(Parent {
                    r#type: p.type_name.clone(),
                    id: id.to_owned(),
                });
            }
        };
        match (claims.get(&p.claim), &p.split) {
            (None | Some(Value::Null), _) => {}
            (Some(Value::String(s)), Some(sep)) => s.split(sep.as_str()).for_each(&mut add),
            (Some(Value::String(s)), None) => add(s),
            (Some(Value::Array(items)), _) => {
                for item in items {
                    match item {
                        Value::String(s) => add(s),
                        other => return Err(wrong("an array of strings", other)),
                    }
                }
            }
            (Some(other), _) => return Err(wrong("a string or an array of strings", other)),
        }
    }
    Ok(out)
}

/// Every mapped attribute is converted (so that a wrong type is refused), and kept when a
/// policy reads it.
fn principal_attrs(
    mapping: &Mapping,
    reads: &Reads,
    claims: &VerifiedClaims,
) -> Result<BTreeMap<String, FactValue>, ClaimError> {
    let mut out = BTreeMap::new();
    for a in &mapping.attrs {
        let target = || format!("{}.{}", mapping.principal_type, a.name);
        let value = match claims.get(&a.claim) {
            None | Some(Value::Null) if a.required => {
                return Err(ClaimError::Missing {
                    claim: a.claim.clone(),
                    target: target(),
                });
            }
            None | Some(Value::Null) => continue,
            Some(v) => v,
        };
        let read = reads.principal_attrs.contains(&a.name);
        let fact = match (&a.split, value) {
            (Some(sep), Value::String(s)) => read.then(|| {
                FactValue::Set(
                    s.split(sep.as_str())
                        .filter(|x| !x.is_empty())
                        .map(|x| FactValue::String(x.to_owned()))
                        .collect(),
                )
            }),
            // Checked whether read or not (a claim of the wrong type is refused), built only
            // when read.
            _ => convert(value, &a.ty, read).map_err(|expected| ClaimError::WrongType {
                claim: a.claim.clone(),
                target: target(),
                expected,
                found: json_kind(value),
            })?,
        };
        if let Some(fact) = fact {
            out.insert(a.name.clone(), fact);
        }
    }
    Ok(out)
}

/// Converts a claim value to the declared type; `Err` carries what was expected. With `build`
/// false the value is only checked (`Ok(None)`).
fn convert(v: &Value, ty: &AttrType, build: bool) -> Result<Option<FactValue>, String> {
    let value = match (ty, v) {
        (AttrType::String, Value::String(s)) => build.then(|| FactValue::String(s.clone())),
        (AttrType::Long, Value::Number(n)) => {
            let n = n
                .as_i64()
                .ok_or_else(|| "a whole number in Long's range".to_owned())?;
            build.then_some(FactValue::Long(n))
        }
        (AttrType::Bool, Value::Bool(b)) => build.then_some(FactValue::Bool(*b)),
        (AttrType::Entity(t), Value::String(s)) => build.then(|| FactValue::Entity {
            r#type: t.clone(),
            id: s.clone(),
        }),
        (AttrType::Set(e), Value::Array(items)) => {
            let mut out = BTreeSet::new();
            for item in items {
                let one = convert(item, e, build)
                    .map_err(|inner| format!("an array of {e} ({inner})"))?;
                out.extend(one);
            }
            build.then_some(FactValue::Set(out))
        }
        (t, _) => {
            return Err(match t {
                AttrType::String => "a string".to_owned(),
                AttrType::Long => "a number".to_owned(),
                AttrType::Bool => "a boolean".to_owned(),
                AttrType::Entity(n) => format!("a string id of `{n}`"),
                AttrType::Set(e) => format!("an array of {e}"),
                other => format!("{other}"),
            })
        }
    };
    Ok(value)
}

fn resource_attrs(
    mapping: &Mapping,
    reads: &Reads,
    req: &AuthzRequest<'_>,
) -> BTreeMap<String, FactValue> {
    let arn = &req.arn;
    mapping
        .resource_attrs
        .iter()
        .filter(|(name, _)| reads.resource_attrs.contains(name))
        .map(|(name, field)| {
            let v = match field {
                ArnField::Stage => &arn.stage,
                ArnField::ApiId => &arn.api_id,
                ArnField::Region => &arn.region,
                ArnField::AccountId => &arn.account_id,
                ArnField::Partition => &arn.partition,
            };
            (name.clone(), FactValue::String(v.clone()))
        })
        .collect()
}

fn context(
    mapping: &Mapping,
    reads: &Reads,
    req: &AuthzRequest<'_>,
    now: SystemTime,
) -> BTreeMap<String, FactValue> {
    let when_ms = req.request_time_ms.unwrap_or_else(|| unix_millis(now));
    let mut out = BTreeMap::new();
    for (name, field) in mapping
        .context
        .iter()
        .filter(|(name, _)| reads.context.contains(name))
    {
        let value = match field {
            ContextField::SourceIpString => req.source_ip.clone().map(FactValue::String),
            // An address Cedar's `ip()` would refuse is left out (the attribute is optional),
            // rather than failing every policy that reads it.
            ContextField::SourceIpAddr => req
                .source_ip
                .as_deref()
                .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                .map(|ip| FactValue::Ip(ip.to_owned())),
            ContextField::UserAgent => req.user_agent.clone().map(FactValue::String),
            ContextField::Stage => Some(FactValue::String(req.arn.stage.clone())),
            ContextField::TimeSeconds => Some(FactValue::Long(when_ms.div_euclid(1000))),
            ContextField::Now => Some(FactValue::Datetime(when_ms)),
            ContextField::Headers(names) => Some(FactValue::Record(
                names
                    .iter()
                    .filter(|(_, attr)| reads.headers.contains(attr))
                    .filter_map(|(lower, attr)| {
                        req.header(lower)
                            .map(|v| (attr.clone(), FactValue::String(v.to_owned())))
                    })
                    .collect(),
            )),
        };
        if let Some(v) = value {
            out.insert(name.clone(), v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_union_and_membership() {
        let mut a = Names::default();
        assert!(a.is_empty() && !a.contains("x"));
        a.insert("x");
        assert!(a.contains("x") && !a.contains("y"));
        let mut b = Names::default();
        b.insert("y");
        a.union_with(&b);
        assert!(a.contains("y"));
        a.union_with(&Names::All);
        assert_eq!(a, Names::All);
        a.insert("z");
        assert!(a.contains("anything"));
    }

    #[test]
    fn digests_differ_exactly_when_facts_do() {
        let base = Facts {
            issuer: Some("https://issuer.example/".into()),
            principal_id: None,
            parents: [Parent {
                r#type: "Role".into(),
                id: "reader".into(),
            }]
            .into_iter()
            .collect(),
            principal_attrs: BTreeMap::new(),
            api_id: None,
            resource_attrs: BTreeMap::new(),
            context: BTreeMap::new(),
        };
        assert!(base.digest().is_some());
        assert_eq!(base.digest(), base.clone().digest());
        let mut other = base.clone();
        other.issuer = Some("https://other.example/".into());
        assert_ne!(base.digest(), other.digest());
        let mut ip = base.clone();
        ip.context
            .insert("sourceIp".into(), FactValue::String("192.0.2.1".into()));
        assert_ne!(base.digest(), ip.digest());
        // A set's order does not matter: Cedar sets have none.
        let set = |items: &[&str]| {
            FactValue::Set(
                items
                    .iter()
                    .map(|s| FactValue::String((*s).to_owned()))
                    .collect(),
            )
        };
        assert_eq!(set(&["a", "b"]), set(&["b", "a", "a"]));
    }
}
