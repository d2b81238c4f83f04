//! Entities: verified claims and the event → the Cedar principal, its parents, the resource and
//! the context, as the schema's annotations say.
//!
//! Stage: after `claims`, before `decide`. Input: a [`Mapping`] read once from the schema at
//! bundle load, the caller's [`VerifiedClaims`] and [`AuthzRequest`]. Output: a
//! [`CallerRequest`] for `decide`.
//!
//! ## The mapping, from schema annotations
//! - `@claim("sub")` on the principal entity type: the claim that is its id.
//! - `@claim("roles")` (optionally `@split(" ")`) on an entity type the principal is `in`: the
//!   claim that holds parent ids (an array of strings, one string, or a string to split).
//! - `@claim("email")` on a principal attribute: the claim that fills it, converted to the
//!   declared type (`String`, `Long`, `Bool`, an entity type, or a `Set` of those);
//!   `@split(" ")` turns a string claim (OAuth `scope`) into a `Set<String>`.
//! - The resource type of the route actions stands for the API: its id is the API id, and the
//!   attributes it declares are filled by name from the method ARN.
//! - The context record of the route actions may declare only attributes cedargate fills.
//!
//! Everything that cannot be honoured is refused at load ([`Mapping::from_schema`]), so that a
//! bundle that loads never fails at request time because of its schema. A claim of the wrong
//! type is a [`ClaimError`] (the token does not fit this API), never a silent default.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression,
};
use serde_json::Value;

use crate::arn::MethodArn;
use crate::claims::VerifiedClaims;
use crate::decide::CallerRequest;
use crate::event::AuthzRequest;

/// A problem with the schema's mapping, found at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MappingError {
    pub message: String,
    /// The declaration the problem is about, so that a report can point at it.
    pub at: SchemaItem,
}

/// A declaration in the schema (names as the resolved schema spells them, namespaced types
/// qualified).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaItem {
    EntityType(String),
    Attribute {
        entity: String,
        attr: String,
    },
    Action(String),
    /// An attribute of the routes' context record.
    ContextAttribute(String),
    /// The schema as a whole.
    Nowhere,
}

fn attribute(entity: &str, attr: &str) -> SchemaItem {
    SchemaItem::Attribute {
        entity: entity.to_owned(),
        attr: attr.to_owned(),
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

#[derive(Debug, Clone)]
struct ParentMapping {
    entity_type: EntityTypeName,
    claim: String,
    split: Option<String>,
}

#[derive(Debug, Clone)]
struct AttrMapping {
    name: String,
    claim: String,
    split: Option<String>,
    ty: AttrType,
    required: bool,
}

/// What fills a resource attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArnField {
    Stage,
    ApiId,
    Region,
    AccountId,
    Partition,
}

/// What fills a context attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ContextField {
    SourceIpString,
    SourceIpAddr,
    UserAgent,
    Stage,
    TimeSeconds,
    Now,
    /// Lower-case header names → attribute names.
    Headers(Vec<(String, String)>),
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

/// The identity mapping read from the schema.
#[derive(Debug, Clone)]
pub struct Mapping {
    principal_type: EntityTypeName,
    id_claim: String,
    parents: Vec<ParentMapping>,
    attrs: Vec<AttrMapping>,
    resource_type: EntityTypeName,
    resource_attrs: Vec<(String, ArnField)>,
    context: Vec<(String, ContextField)>,
}

fn annotation<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get("annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Splits `A::B::T` into (`A::B`, `T`).
fn split_name(name: &str) -> (&str, &str) {
    name.rsplit_once("::").unwrap_or(("", name))
}

fn qualify(ns: &str, name: &str) -> String {
    if ns.is_empty() || name.contains("::") {
        name.to_owned()
    } else {
        format!("{ns}::{name}")
    }
}

/// The schema as resolved JSON, navigated by fully qualified names.
struct SchemaJson<'a> {
    root: &'a Value,
}

impl<'a> SchemaJson<'a> {
    fn namespaces(&self) -> impl Iterator<Item = (&'a str, &'a Value)> {
        self.root
            .as_object()
            .into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_str(), v)))
    }

    fn entity_types(&self) -> Vec<(String, &'a Value)> {
        let mut out = Vec::new();
        for (ns, def) in self.namespaces() {
            if let Some(types) = def.get("entityTypes").and_then(Value::as_object) {
                for (name, t) in types {
                    out.push((qualify(ns, name), t));
                }
            }
        }
        out
    }

    fn entity_type(&self, full: &str) -> Option<&'a Value> {
        let (ns, id) = split_name(full);
        self.root.get(ns)?.get("entityTypes")?.get(id)
    }

    fn common_type(&self, full: &str) -> Option<&'a Value> {
        let (ns, id) = split_name(full);
        self.root.get(ns)?.get("commonTypes")?.get(id)
    }

    fn action(&self, full_action: &EntityUid) -> Option<&'a Value> {
        let ns = full_action.type_name().namespace();
        let id = full_action.id().unescaped();
        self.root.get(ns.as_str())?.get("actions")?.get(id)
    }

    /// Resolves a JSON schema type to an [`AttrType`] (common types followed, depth-limited).
    fn resolve(&self, ty: &Value, depth: usize) -> Result<AttrType, String> {
        if depth > 32 {
            return Err("type definitions nest too deeply".to_owned());
        }
        let kind = ty
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a type without `type`")?;
        let name = ty.get("name").and_then(Value::as_str);
        let builtin = kind.strip_prefix("__cedar::").unwrap_or(kind);
        Ok(match builtin {
            "String" => AttrType::String,
            "Long" => AttrType::Long,
            "Bool" | "Boolean" => AttrType::Bool,
            "Set" => AttrType::Set(Box::new(self.resolve(
                ty.get("element").ok_or("a Set without element type")?,
                depth + 1,
            )?)),
            "Entity" => AttrType::Entity(name.ok_or("an entity type without name")?.to_owned()),
            "Extension" => {
                AttrType::Extension(name.ok_or("an extension type without name")?.to_owned())
            }
            "ipaddr" | "decimal" | "datetime" | "duration" => {
                AttrType::Extension(builtin.to_owned())
            }
            "Record" => {
                let mut attrs = BTreeMap::new();
                if let Some(map) = ty.get("attributes").and_then(Value::as_object) {
                    for (k, v) in map {
                        let required = v.get("required").and_then(Value::as_bool).unwrap_or(true);
                        attrs.insert(k.clone(), (self.resolve(v, depth + 1)?, required));
                    }
                }
                AttrType::Record(attrs)
            }
            "EntityOrCommon" => {
                let n = name.ok_or("a type reference without name")?;
                return self.resolve(&serde_json::json!({ "type": n }), depth + 1);
            }
            other => {
                if let Some(common) = self.common_type(other) {
                    return self.resolve(common, depth + 1);
                }
                if self.entity_type(other).is_some() {
                    AttrType::Entity(other.to_owned())
                } else {
                    return Err(format!("unknown type `{other}`"));
                }
            }
        })
    }
}

fn type_name(full: &str) -> Result<EntityTypeName, MappingError> {
    EntityTypeName::from_str(full).map_err(|e| MappingError {
        message: format!("entity type `{full}`: {e}"),
        at: SchemaItem::EntityType(full.to_owned()),
    })
}

/// A claim-filled type is supported when it is a primitive, an entity reference, or a set of
/// those (what a JSON claim can carry without guessing).
fn claim_type_ok(ty: &AttrType) -> bool {
    match ty {
        AttrType::String | AttrType::Long | AttrType::Bool | AttrType::Entity(_) => true,
        AttrType::Set(e) => matches!(
            **e,
            AttrType::String | AttrType::Long | AttrType::Bool | AttrType::Entity(_)
        ),
        AttrType::Extension(_) | AttrType::Record(_) => false,
    }
}

impl Mapping {
    /// Reads the mapping from the schema (resolved JSON form) for the given route actions.
    /// `principals_of` and `resources_of` give each route action's `appliesTo` types and
    /// `context_of` its context type (as JSON). All problems are returned, not just the first.
    pub fn from_schema(
        schema_json: &Value,
        route_actions: &[EntityUid],
    ) -> Result<Mapping, Vec<MappingError>> {
        let sj = SchemaJson { root: schema_json };
        let mut errors: Vec<MappingError> = Vec::new();
        let mut err = |at: SchemaItem, message: String| errors.push(MappingError { message, at });

        // The appliesTo of every route action.
        let mut principal_sets: Vec<(String, Vec<String>)> = Vec::new();
        let mut resource_types: Vec<String> = Vec::new();
        let mut contexts: Vec<(String, Value)> = Vec::new();
        for action in route_actions {
            let name = action.id().unescaped().to_owned();
            let Some(def) = sj.action(action) else {
                err(
                    SchemaItem::Action(name.clone()),
                    format!("route `{name}` is not in the schema's actions"),
                );
                continue;
            };
            let applies = def.get("appliesTo");
            let list = |key: &str| -> Vec<String> {
                applies
                    .and_then(|a| a.get(key))
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let principals = list("principalTypes");
            let resources = list("resourceTypes");
            if principals.is_empty() || resources.is_empty() {
                err(
                    SchemaItem::Action(name.clone()),
                    format!("route `{name}` needs `appliesTo {{ principal: …, resource: … }}`"),
                );
                continue;
            }
            for r in &resources {
                if !resource_types.contains(r) {
                    resource_types.push(r.clone());
                }
            }
            principal_sets.push((name.clone(), principals));
            let ctx = applies
                .and_then(|a| a.get("context"))
                .cloned()
                .unwrap_or(Value::Null);
            contexts.push((name, ctx));
        }

        // The principal: the one entity type with @claim that route actions apply to.
        let claimed: Vec<(String, &Value)> = sj
            .entity_types()
            .into_iter()
            .filter(|(_, t)| annotation(t, "claim").is_some())
            .collect();
        let route_principals: HashSet<&String> = principal_sets
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .collect();
        let principal_candidates: Vec<&(String, &Value)> = claimed
            .iter()
            .filter(|(n, _)| route_principals.contains(n))
            .collect();
        let (principal_name, principal_def) = match principal_candidates.as_slice() {
            [one] => (one.0.clone(), one.1),
            [] => {
                err(SchemaItem::Nowhere, "no principal type of the routes has a `@claim` annotation naming the claim that is its id (e.g. `@claim(\"sub\") entity User`)".to_owned());
                return Err(errors);
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
                err(
                    SchemaItem::EntityType(
                        names.last().map_or_else(String::new, |n| (*n).to_owned()),
                    ),
                    format!(
                    "several principal types have `@claim`: `{}`; the token maps to exactly one",
                    names.join("`, `")
                ),
                );
                return Err(errors);
            }
        };
        for (route, ps) in &principal_sets {
            if !ps.contains(&principal_name) {
                err(SchemaItem::Action(route.clone()), format!("route `{route}` does not apply to principal type `{principal_name}`, the type tokens map to"));
            }
        }
        let id_claim = annotation(principal_def, "claim")
            .unwrap_or_default()
            .to_owned();
        if id_claim.is_empty() {
            err(
                SchemaItem::EntityType(principal_name.clone()),
                format!("`@claim` on `{principal_name}` is empty"),
            );
        }
        if annotation(principal_def, "split").is_some() {
            err(
                SchemaItem::EntityType(principal_name.clone()),
                format!("`@split` on `{principal_name}`: the principal id is one value"),
            );
        }

        // Parents: claimed entity types the principal is a member of.
        let member_of: Vec<String> = principal_def
            .get("memberOfTypes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| qualify(split_name(&principal_name).0, s))
                    .collect()
            })
            .unwrap_or_default();
        let mut parents = Vec::new();
        for (name, def) in &claimed {
            if *name == principal_name {
                continue;
            }
            if !member_of.contains(name) {
                err(SchemaItem::EntityType(name.clone()), format!(
                    "`@claim` on `{name}`: it is neither the principal type `{principal_name}` nor a type `{principal_name}` is `in`, so no token claim can fill it"
                ));
                continue;
            }
            let claim = annotation(def, "claim").unwrap_or_default().to_owned();
            if claim.is_empty() {
                err(
                    SchemaItem::EntityType(name.clone()),
                    format!("`@claim` on `{name}` is empty"),
                );
                continue;
            }
            match type_name(name) {
                Ok(entity_type) => parents.push(ParentMapping {
                    entity_type,
                    claim,
                    split: annotation(def, "split").map(str::to_owned),
                }),
                Err(e) => err(e.at, e.message),
            }
        }
        for (name, def) in sj.entity_types() {
            if annotation(def, "split").is_some() && annotation(def, "claim").is_none() {
                err(
                    SchemaItem::EntityType(name.clone()),
                    format!("`@split` on `{name}` without `@claim`"),
                );
            }
        }

        // Principal attributes.
        let mut attrs = Vec::new();
        let shape = principal_def.get("shape").cloned().unwrap_or(Value::Null);
        let shape_attrs = match &shape {
            Value::Null => serde_json::Map::new(),
            v => {
                let direct = v.get("attributes").and_then(Value::as_object).cloned();
                direct
                    .or_else(|| {
                        let n = v.get("type").and_then(Value::as_str)?;
                        sj.common_type(n)?
                            .get("attributes")
                            .and_then(Value::as_object)
                            .cloned()
                    })
                    .unwrap_or_default()
            }
        };
        for (attr, def) in &shape_attrs {
            let required = def.get("required").and_then(Value::as_bool).unwrap_or(true);
            let claim = annotation(def, "claim");
            let split = annotation(def, "split").map(str::to_owned);
            let ty = match sj.resolve(def, 0) {
                Ok(t) => t,
                Err(e) => {
                    err(
                        attribute(&principal_name, attr),
                        format!("attribute `{attr}` of `{principal_name}`: {e}"),
                    );
                    continue;
                }
            };
            let Some(claim) = claim else {
                if split.is_some() {
                    err(
                        attribute(&principal_name, attr),
                        format!("`@split` on `{principal_name}.{attr}` without `@claim`"),
                    );
                }
                if required {
                    err(attribute(&principal_name, attr), format!(
                        "attribute `{attr}` of `{principal_name}` is required but has no `@claim`: the authorizer cannot fill it (add `@claim(\"…\")` or make it optional with `?`)"
                    ));
                }
                continue;
            };
            if claim.is_empty() {
                err(
                    attribute(&principal_name, attr),
                    format!("`@claim` on `{principal_name}.{attr}` is empty"),
                );
                continue;
            }
            if !claim_type_ok(&ty) {
                err(attribute(&principal_name, attr), format!("`{principal_name}.{attr}` has type {ty}, which a claim cannot fill (use String, Long, Bool, an entity type, or a Set of those)"));
                continue;
            }
            if split.is_some() && ty != AttrType::Set(Box::new(AttrType::String)) {
                err(
                    attribute(&principal_name, attr),
                    format!(
                        "`@split` on `{principal_name}.{attr}` needs type Set<String>, found {ty}"
                    ),
                );
                continue;
            }
            if split.as_deref() == Some("") {
                err(
                    attribute(&principal_name, attr),
                    format!("`@split` on `{principal_name}.{attr}` has an empty separator"),
                );
                continue;
            }
            attrs.push(AttrMapping {
                name: attr.clone(),
                claim: claim.to_owned(),
                split,
                ty,
                required,
            });
        }
        // Annotations elsewhere that would silently do nothing.
        for (name, def) in sj.entity_types() {
            if name == principal_name {
                continue;
            }
            if let Some(map) = def
                .get("shape")
                .and_then(|s| s.get("attributes"))
                .and_then(Value::as_object)
            {
                for (attr, a) in map {
                    if annotation(a, "claim").is_some() || annotation(a, "split").is_some() {
                        err(attribute(&name, attr), format!("`@claim` on `{name}.{attr}`: only attributes of the principal type `{principal_name}` are filled from claims"));
                    }
                }
            }
        }

        // The resource.
        let resource_name = match resource_types.as_slice() {
            [one] => one.clone(),
            [] => String::new(),
            many => {
                err(
                    SchemaItem::Nowhere,
                    format!(
                        "the routes use several resource types (`{}`); one type stands for the API",
                        many.join("`, `")
                    ),
                );
                String::new()
            }
        };
        let mut resource_attrs = Vec::new();
        if !resource_name.is_empty() {
            if let Some(def) = sj.entity_type(&resource_name) {
                let attrs_json = def
                    .get("shape")
                    .and_then(|s| s.get("attributes"))
                    .and_then(Value::as_object);
                for (attr, a) in attrs_json.into_iter().flatten() {
                    let field = match attr.as_str() {
                        "stage" => ArnField::Stage,
                        "apiId" => ArnField::ApiId,
                        "region" => ArnField::Region,
                        "accountId" => ArnField::AccountId,
                        "partition" => ArnField::Partition,
                        _ => {
                            err(attribute(&resource_name, attr), format!("attribute `{attr}` of the resource type `{resource_name}` cannot be filled; the resource knows only {}", RESOURCE_ATTRIBUTES.join(", ")));
                            continue;
                        }
                    };
                    match sj.resolve(a, 0) {
                        Ok(AttrType::String) => resource_attrs.push((attr.clone(), field)),
                        Ok(t) => err(
                            attribute(&resource_name, attr),
                            format!("`{resource_name}.{attr}` must be String, found {t}"),
                        ),
                        Err(e) => err(
                            attribute(&resource_name, attr),
                            format!("`{resource_name}.{attr}`: {e}"),
                        ),
                    }
                }
            }
        }

        // The context.
        let mut context = Vec::new();
        let first = contexts
            .first()
            .map(|(_, c)| c.clone())
            .unwrap_or(Value::Null);
        let resolved_first = if first.is_null() {
            Ok(AttrType::Record(BTreeMap::new()))
        } else {
            sj.resolve(&first, 0)
        };
        for (route, c) in &contexts {
            let this = if c.is_null() {
                Ok(AttrType::Record(BTreeMap::new()))
            } else {
                sj.resolve(c, 0)
            };
            if this != resolved_first {
                err(SchemaItem::Action(route.clone()), format!("route `{route}` has a different context type from the other routes; all routes share one context record"));
            }
        }
        match resolved_first {
            Ok(AttrType::Record(fields)) => {
                for (attr, (ty, required)) in fields {
                    let field = match (attr.as_str(), &ty) {
                        ("sourceIp", AttrType::String) => ContextField::SourceIpString,
                        ("sourceIp", AttrType::Extension(e)) if e == "ipaddr" => {
                            ContextField::SourceIpAddr
                        }
                        ("userAgent", AttrType::String) => ContextField::UserAgent,
                        ("stage", AttrType::String) => ContextField::Stage,
                        ("time", AttrType::Long) => ContextField::TimeSeconds,
                        ("now", AttrType::Extension(e)) if e == "datetime" => ContextField::Now,
                        ("headers", AttrType::Record(hs)) => {
                            let mut names = Vec::new();
                            for (h, (hty, hreq)) in hs {
                                if *hty != AttrType::String || *hreq {
                                    err(SchemaItem::ContextAttribute(h.clone()), format!("context `headers.{h}` must be an optional String (`\"{h}\"?: String`): a request may lack any header"));
                                }
                                names.push((h.to_ascii_lowercase(), h.clone()));
                            }
                            ContextField::Headers(names)
                        }
                        _ => {
                            let known: Vec<String> = CONTEXT_ATTRIBUTES
                                .iter()
                                .map(|(n, t)| format!("`{n}` ({t})"))
                                .collect();
                            err(SchemaItem::ContextAttribute(attr.clone()), format!("context attribute `{attr}` of type {ty} cannot be filled by the authorizer; it fills {}", known.join("; ")));
                            continue;
                        }
                    };
                    let may_be_absent = matches!(
                        field,
                        ContextField::SourceIpString
                            | ContextField::SourceIpAddr
                            | ContextField::UserAgent
                    );
                    if may_be_absent && required {
                        err(SchemaItem::ContextAttribute(attr.clone()), format!("context `{attr}` must be optional (`{attr}?`): TOKEN events do not carry it"));
                    }
                    context.push((attr, field));
                }
            }
            Ok(other) => err(
                SchemaItem::Nowhere,
                format!("the routes' context must be a record, found {other}"),
            ),
            Err(e) => err(
                SchemaItem::Nowhere,
                format!("the routes' context type: {e}"),
            ),
        }

        let principal_type = type_name(&principal_name).map_err(|e| vec![e]);
        let resource_type = type_name(if resource_name.is_empty() {
            "Api"
        } else {
            &resource_name
        })
        .map_err(|e| vec![e]);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Mapping {
            principal_type: principal_type?,
            id_claim,
            parents,
            attrs,
            resource_type: resource_type?,
            resource_attrs,
            context,
        })
    }

    pub fn principal_type(&self) -> &EntityTypeName {
        &self.principal_type
    }

    pub fn resource_type(&self) -> &EntityTypeName {
        &self.resource_type
    }

    /// Whether decisions may depend on the time of the request.
    pub fn uses_time(&self) -> bool {
        self.context
            .iter()
            .any(|(_, f)| matches!(f, ContextField::TimeSeconds | ContextField::Now))
    }

    /// The principal entity and its direct parents, from verified claims.
    pub fn principal(
        &self,
        claims: &VerifiedClaims,
    ) -> Result<(Entity, Vec<EntityUid>), ClaimError> {
        let pt = self.principal_type.to_string();
        let id = match claims.get(&self.id_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) | None => {
                return Err(ClaimError::Missing {
                    claim: self.id_claim.clone(),
                    target: pt,
                });
            }
            Some(other) => {
                return Err(ClaimError::WrongType {
                    claim: self.id_claim.clone(),
                    target: pt,
                    expected: "a string".to_owned(),
                    found: json_kind(other),
                })
            }
        };
        let uid = EntityUid::from_type_name_and_id(self.principal_type.clone(), EntityId::new(&id));

        let mut parents = Vec::new();
        for p in &self.parents {
            let target = p.entity_type.to_string();
            let ids: Vec<String> = match (claims.get(&p.claim), &p.split) {
                (None | Some(Value::Null), _) => Vec::new(),
                (Some(Value::String(s)), Some(sep)) => s
                    .split(sep.as_str())
                    .filter(|x| !x.is_empty())
                    .map(str::to_owned)
                    .collect(),
                (Some(Value::String(s)), None) => vec![s.clone()],
                (Some(Value::Array(items)), _) => {
                    let mut out = Vec::new();
                    for item in items {
                        match item {
                            Value::String(s) => out.push(s.clone()),
                            other => {
                                return Err(ClaimError::WrongType {
                                    claim: p.claim.clone(),
                                    target,
                                    expected: "an array of strings".to_owned(),
                                    found: json_kind(other),
                                })
                            }
                        }
                    }
                    out
                }
                (Some(other), _) => {
                    return Err(ClaimError::WrongType {
                        claim: p.claim.clone(),
                        target,
                        expected: "a string or an array of strings".to_owned(),
                        found: json_kind(other),
                    })
                }
            };
            for id in ids.into_iter().filter(|s| !s.is_empty()) {
                parents.push(EntityUid::from_type_name_and_id(
                    p.entity_type.clone(),
                    EntityId::new(&id),
                ));
            }
        }

        let mut attrs: HashMap<String, RestrictedExpression> = HashMap::new();
        for a in &self.attrs {
            let target = format!("{pt}.{}", a.name);
            let value = match claims.get(&a.claim) {
                None | Some(Value::Null) => {
                    if a.required {
                        return Err(ClaimError::Missing {
                            claim: a.claim.clone(),
                            target,
                        });
                    }
                    continue;
                }
                Some(v) => v,
            };
            let expr = match (&a.split, value) {
                (Some(sep), Value::String(s)) => RestrictedExpression::new_set(
                    s.split(sep.as_str())
                        .filter(|x| !x.is_empty())
                        .map(|x| RestrictedExpression::new_string(x.to_owned())),
                ),
                _ => convert(value, &a.ty).map_err(|expected| ClaimError::WrongType {
                    claim: a.claim.clone(),
                    target,
                    expected,
                    found: json_kind(value),
                })?,
            };
            attrs.insert(a.name.clone(), expr);
        }
        let entity = Entity::new(uid, attrs, parents.iter().cloned().collect())
            .map_err(|e| ClaimError::Entity(e.to_string()))?;
        Ok((entity, parents))
    }

    /// The resource entity for the API in the method ARN.
    pub fn resource(&self, arn: &MethodArn) -> Result<Entity, ClaimError> {
        let uid = EntityUid::from_type_name_and_id(
            self.resource_type.clone(),
            EntityId::new(&arn.api_id),
        );
        let attrs: HashMap<String, RestrictedExpression> = self
            .resource_attrs
            .iter()
            .map(|(name, field)| {
                let v = match field {
                    ArnField::Stage => &arn.stage,
                    ArnField::ApiId => &arn.api_id,
                    ArnField::Region => &arn.region,
                    ArnField::AccountId => &arn.account_id,
                    ArnField::Partition => &arn.partition,
                };
                (name.clone(), RestrictedExpression::new_string(v.clone()))
            })
            .collect();
        Entity::new(uid, attrs, HashSet::new()).map_err(|e| ClaimError::Entity(e.to_string()))
    }

    /// The context record for this request.
    pub fn context(&self, req: &AuthzRequest, now: SystemTime) -> Result<Context, ClaimError> {
        let when_ms = req.request_time_ms.unwrap_or_else(|| {
            now.duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        });
        let mut pairs: Vec<(String, RestrictedExpression)> = Vec::new();
        for (name, field) in &self.context {
            let value = match field {
                ContextField::SourceIpString => {
                    req.source_ip.clone().map(RestrictedExpression::new_string)
                }
                ContextField::SourceIpAddr => req
                    .source_ip
                    .as_deref()
                    .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
                    .map(RestrictedExpression::new_ip),
                ContextField::UserAgent => {
                    req.user_agent.clone().map(RestrictedExpression::new_string)
                }
                ContextField::Stage => {
                    Some(RestrictedExpression::new_string(req.arn.stage.clone()))
                }
                ContextField::TimeSeconds => {
                    Some(RestrictedExpression::new_long(when_ms.div_euclid(1000)))
                }
                ContextField::Now => {
                    Some(RestrictedExpression::new_datetime(rfc3339_millis(when_ms)))
                }
                ContextField::Headers(names) => Some(
                    RestrictedExpression::new_record(names.iter().filter_map(|(lower, attr)| {
                        req.headers
                            .get(lower)
                            .map(|v| (attr.clone(), RestrictedExpression::new_string(v.clone())))
                    }))
                    .map_err(|e| ClaimError::Entity(e.to_string()))?,
                ),
            };
            if let Some(v) = value {
                pairs.push((name.clone(), v));
            }
        }
        Context::from_pairs(pairs).map_err(|e| ClaimError::Entity(e.to_string()))
    }

    /// Builds the caller's Cedar request parts. `base` holds the bundle's static and action
    /// entities (transitively closed).
    pub fn caller(
        &self,
        claims: &VerifiedClaims,
        req: &AuthzRequest,
        base: &Entities,
        now: SystemTime,
    ) -> Result<CallerRequest, ClaimError> {
        let (principal, parents) = self.principal(claims)?;
        let principal_uid = principal.uid();
        let mut ancestors: HashSet<EntityUid> = HashSet::new();
        for p in &parents {
            ancestors.insert(p.clone());
            if let Some(up) = base.ancestors(p) {
                ancestors.extend(up.cloned());
            }
        }
        let resource = self.resource(&req.arn)?;
        let resource_uid = resource.uid();
        let context = self.context(req, now)?;
        let entities = base
            .clone()
            .add_entities([principal, resource], None)
            .map_err(|e| ClaimError::Entity(e.to_string()))?;
        Ok(CallerRequest {
            principal: principal_uid,
            ancestors,
            resource: resource_uid,
            context,
            entities,
        })
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

/// Converts a claim value to the declared type; `Err` carries what was expected.
fn convert(v: &Value, ty: &AttrType) -> Result<RestrictedExpression, String> {
    match (ty, v) {
        (AttrType::String, Value::String(s)) => Ok(RestrictedExpression::new_string(s.clone())),
        (AttrType::Long, Value::Number(n)) => n
            .as_i64()
            .map(RestrictedExpression::new_long)
            .ok_or_else(|| "a whole number in Long's range".to_owned()),
        (AttrType::Bool, Value::Bool(b)) => Ok(RestrictedExpression::new_bool(*b)),
        (AttrType::Entity(t), Value::String(s)) => {
            let tn = EntityTypeName::from_str(t).map_err(|_| format!("an id of `{t}`"))?;
            Ok(RestrictedExpression::new_entity_uid(
                EntityUid::from_type_name_and_id(tn, EntityId::new(s)),
            ))
        }
        (AttrType::Set(e), Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(convert(item, e).map_err(|inner| format!("an array of {e} ({inner})"))?);
            }
            Ok(RestrictedExpression::new_set(out))
        }
        (t, _) => Err(match t {
            AttrType::String => "a string".to_owned(),
            AttrType::Long => "a number".to_owned(),
            AttrType::Bool => "a boolean".to_owned(),
            AttrType::Entity(n) => format!("a string id of `{n}`"),
            AttrType::Set(e) => format!("an array of {e}"),
            other => format!("{other}"),
        }),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` for unix milliseconds (Cedar's `datetime` format).
pub fn rfc3339_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetime_format() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_583_348_638_390),
            "2020-03-04T19:03:58.390Z"
        );
        assert_eq!(
            rfc3339_millis(4_102_444_800_000),
            "2100-01-01T00:00:00.000Z"
        );
    }
}
