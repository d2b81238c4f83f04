//! Mapping phase: the schema's annotations → the identity [`Mapping`] (which claim fills what).
//!
//! Stage: bundle load, after the schema and the routes. Input: the schema in its resolved JSON
//! form (where annotations are kept) and the route actions. Output: a [`Mapping`], or every
//! [`MappingError`] found (each pointing at a declaration, for the report).
//!
//! The rules (see the README's schema conventions):
//! - `@claim("sub")` on the principal entity type: the claim that is its id; with
//!   `@qualify("iss")` beside it, the id is `<iss>|<sub>`, so that the same `sub` from two
//!   issuers is two principals.
//! - `@claim("roles")` (optionally `@split(" ")`) on an entity type the principal is `in`: the
//!   claim that holds parent ids (an array of strings, one string, or a string to split).
//! - `@claim("email")` on a principal attribute: the claim that fills it, converted to the
//!   declared type (`String`, `Long`, `Bool`, an entity type, or a `Set` of those);
//!   `@split(" ")` turns a string claim (OAuth `scope`) into a `Set<String>`.
//! - The resource type of the route actions stands for the API: its id is the API id, and the
//!   attributes it declares are filled by name from the method ARN.
//! - The context record of the route actions may declare only attributes cedargate fills.
//!
//! Everything that cannot be honoured is refused here, so that a bundle that loads never
//! fails at request time because of its schema. The phases below run in order and each adds
//! its errors; the principal phase alone stops early (nothing else can be checked without a
//! principal type).

use std::collections::{BTreeMap, HashSet};
use std::str::FromStr;

use cedar_policy::{EntityTypeName, EntityUid};
use serde_json::Value;

use super::locate::SchemaItem;
use crate::facts::{
    ArnField, AttrMapping, AttrType, ContextField, Mapping, ParentMapping, CONTEXT_ATTRIBUTES,
    RESOURCE_ATTRIBUTES,
};

/// A problem with the schema's mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MappingError {
    pub message: String,
    /// The declaration the problem is about, so that a report can point at it.
    pub at: SchemaItem,
}

fn attribute(entity: &str, attr: &str) -> SchemaItem {
    SchemaItem::Attribute {
        entity: entity.to_owned(),
        attr: attr.to_owned(),
    }
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

    /// A type's context or attribute record, resolved; no declaration is an empty record.
    fn record_or_empty(&self, ty: &Value) -> Result<AttrType, String> {
        if ty.is_null() {
            Ok(AttrType::Record(BTreeMap::new()))
        } else {
            self.resolve(ty, 0)
        }
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

/// What the route actions' `appliesTo` declare.
#[derive(Default)]
struct Applies {
    /// Each route with its principal types.
    principals: Vec<(String, Vec<String>)>,
    /// Every resource type of any route, in first-seen order.
    resources: Vec<String>,
    /// Each route with its context type (JSON; null when none is declared).
    contexts: Vec<(String, Value)>,
}

/// The mapping reader: the schema, and the errors found so far.
struct Reader<'a> {
    sj: SchemaJson<'a>,
    errors: Vec<MappingError>,
}

impl<'a> Reader<'a> {
    fn err(&mut self, at: SchemaItem, message: String) {
        self.errors.push(MappingError { message, at });
    }

    /// Phase 1: the `appliesTo` of every route action.
    fn applies(&mut self, route_actions: &[EntityUid]) -> Applies {
        let mut out = Applies::default();
        for action in route_actions {
            let name = action.id().unescaped().to_owned();
            let Some(def) = self.sj.action(action) else {
                self.err(
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
                self.err(
                    SchemaItem::Action(name.clone()),
                    format!("route `{name}` needs `appliesTo {{ principal: …, resource: … }}`"),
                );
                continue;
            }
            for r in resources {
                if !out.resources.contains(&r) {
                    out.resources.push(r);
                }
            }
            out.principals.push((name.clone(), principals));
            let ctx = applies
                .and_then(|a| a.get("context"))
                .cloned()
                .unwrap_or(Value::Null);
            out.contexts.push((name, ctx));
        }
        out
    }

    /// Phase 2: the principal, the one entity type with `@claim` that route actions apply to,
    /// and its id claim. `None` when there is no single such type (then nothing else can be
    /// read).
    fn principal(&mut self, applies: &Applies) -> Option<(String, &'a Value, String)> {
        let claimed: Vec<(String, &'a Value)> = self
            .sj
            .entity_types()
            .into_iter()
            .filter(|(_, t)| annotation(t, "claim").is_some())
            .collect();
        let route_principals: HashSet<&String> = applies
            .principals
            .iter()
            .flat_map(|(_, ps)| ps.iter())
            .collect();
        let candidates: Vec<&(String, &'a Value)> = claimed
            .iter()
            .filter(|(n, _)| route_principals.contains(n))
            .collect();
        let (name, def) = match candidates.as_slice() {
            [one] => (one.0.clone(), one.1),
            [] => {
                self.err(SchemaItem::Nowhere, "no principal type of the routes has a `@claim` annotation naming the claim that is its id (e.g. `@claim(\"sub\") entity User`)".to_owned());
                return None;
            }
            many => {
                let names: Vec<&str> = many.iter().map(|(n, _)| n.as_str()).collect();
                let last = names.last().map_or_else(String::new, |n| (*n).to_owned());
                let message = format!(
                    "several principal types have `@claim`: `{}`; the token maps to exactly one",
                    names.join("`, `")
                );
                self.err(SchemaItem::EntityType(last), message);
                return None;
            }
        };
        for (route, ps) in &applies.principals {
            if !ps.contains(&name) {
                self.err(SchemaItem::Action(route.clone()), format!("route `{route}` does not apply to principal type `{name}`, the type tokens map to"));
            }
        }
        let id_claim = annotation(def, "claim").unwrap_or_default().to_owned();
        if id_claim.is_empty() {
            self.err(
                SchemaItem::EntityType(name.clone()),
                format!("`@claim` on `{name}` is empty"),
            );
        }
        if annotation(def, "split").is_some() {
            self.err(
                SchemaItem::EntityType(name.clone()),
                format!("`@split` on `{name}`: the principal id is one value"),
            );
        }
        Some((name, def, id_claim))
    }

    /// Phase 2b: `@qualify("iss")` on the principal type (ids qualified by the issuer), and
    /// nowhere else: on another type it would silently do nothing.
    fn qualify(&mut self, principal: &str, def: &Value) -> bool {
        for (name, t) in self.sj.entity_types() {
            if name != principal && annotation(t, "qualify").is_some() {
                self.err(SchemaItem::EntityType(name.clone()), format!(
                    "`@qualify` on `{name}`: only the principal type `{principal}` has ids from tokens"
                ));
            }
        }
        match annotation(def, "qualify") {
            None => false,
            Some("iss") => true,
            Some(other) => {
                self.err(
                    SchemaItem::EntityType(principal.to_owned()),
                    format!("`@qualify(\"{other}\")` on `{principal}`: the one qualifier is `\"iss\"` (ids become `<iss>|<id claim>`)"),
                );
                false
            }
        }
    }

    /// Phase 3: parents, the claimed entity types the principal is a member of.
    fn parents(&mut self, principal: &str, def: &Value) -> Vec<ParentMapping> {
        let member_of: Vec<String> = def
            .get("memberOfTypes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|s| qualify(split_name(principal).0, s))
                    .collect()
            })
            .unwrap_or_default();
        let mut parents = Vec::new();
        for (name, t) in self.sj.entity_types() {
            let Some(claim) = annotation(t, "claim") else {
                if annotation(t, "split").is_some() {
                    self.err(
                        SchemaItem::EntityType(name.clone()),
                        format!("`@split` on `{name}` without `@claim`"),
                    );
                }
                continue;
            };
            if name == principal {
                continue;
            }
            if !member_of.contains(&name) {
                self.err(SchemaItem::EntityType(name.clone()), format!(
                    "`@claim` on `{name}`: it is neither the principal type `{principal}` nor a type `{principal}` is `in`, so no token claim can fill it"
                ));
                continue;
            }
            if claim.is_empty() {
                self.err(
                    SchemaItem::EntityType(name.clone()),
                    format!("`@claim` on `{name}` is empty"),
                );
                continue;
            }
            match type_name(&name) {
                Ok(entity_type) => parents.push(ParentMapping {
                    entity_type,
                    type_name: name.clone(),
                    claim: claim.to_owned(),
                    split: annotation(t, "split").map(str::to_owned),
                }),
                Err(e) => self.errors.push(e),
            }
        }
        parents
    }

    /// Phase 4: the principal's attributes with `@claim`.
    fn attributes(&mut self, principal: &str, def: &Value) -> Vec<AttrMapping> {
        let shape = def.get("shape").cloned().unwrap_or(Value::Null);
        let shape_attrs = match &shape {
            Value::Null => serde_json::Map::new(),
            v => {
                let direct = v.get("attributes").and_then(Value::as_object).cloned();
                direct
                    .or_else(|| {
                        let n = v.get("type").and_then(Value::as_str)?;
                        self.sj
                            .common_type(n)?
                            .get("attributes")
                            .and_then(Value::as_object)
                            .cloned()
                    })
                    .unwrap_or_default()
            }
        };
        let mut attrs = Vec::new();
        for (attr, def) in &shape_attrs {
            if let Some(mapping) = self.attribute(principal, attr, def) {
                attrs.push(mapping);
            }
        }
        attrs
    }

    /// One principal attribute: its claim, type and `@split`, checked.
    fn attribute(&mut self, principal: &str, attr: &str, def: &Value) -> Option<AttrMapping> {
        let at = || attribute(principal, attr);
        let required = def.get("required").and_then(Value::as_bool).unwrap_or(true);
        let claim = annotation(def, "claim");
        let split = annotation(def, "split").map(str::to_owned);
        let ty = match self.sj.resolve(def, 0) {
            Ok(t) => t,
            Err(e) => {
                self.err(at(), format!("attribute `{attr}` of `{principal}`: {e}"));
                return None;
            }
        };
        let Some(claim) = claim else {
            if split.is_some() {
                self.err(
                    at(),
                    format!("`@split` on `{principal}.{attr}` without `@claim`"),
                );
            }
            if required {
                self.err(at(), format!(
                    "attribute `{attr}` of `{principal}` is required but has no `@claim`: the authorizer cannot fill it (add `@claim(\"…\")` or make it optional with `?`)"
                ));
            }
            return None;
        };
        let problem = if claim.is_empty() {
            Some(format!("`@claim` on `{principal}.{attr}` is empty"))
        } else if !claim_type_ok(&ty) {
            Some(format!("`{principal}.{attr}` has type {ty}, which a claim cannot fill (use String, Long, Bool, an entity type, or a Set of those)"))
        } else if split.is_some() && ty != AttrType::Set(Box::new(AttrType::String)) {
            Some(format!(
                "`@split` on `{principal}.{attr}` needs type Set<String>, found {ty}"
            ))
        } else if split.as_deref() == Some("") {
            Some(format!(
                "`@split` on `{principal}.{attr}` has an empty separator"
            ))
        } else {
            None
        };
        if let Some(message) = problem {
            self.err(at(), message);
            return None;
        }
        Some(AttrMapping {
            name: attr.to_owned(),
            claim: claim.to_owned(),
            split,
            ty,
            required,
        })
    }

    /// Phase 5: annotations on other types' attributes, which would silently do nothing.
    fn misplaced_claims(&mut self, principal: &str) {
        for (name, def) in self.sj.entity_types() {
            if name == principal {
                continue;
            }
            let attrs = def
                .get("shape")
                .and_then(|s| s.get("attributes"))
                .and_then(Value::as_object);
            for (attr, a) in attrs.into_iter().flatten() {
                if annotation(a, "claim").is_some() || annotation(a, "split").is_some() {
                    self.err(attribute(&name, attr), format!("`@claim` on `{name}.{attr}`: only attributes of the principal type `{principal}` are filled from claims"));
                }
            }
        }
    }

    /// Phase 6: the resource type (the API) and the attributes the method ARN fills.
    fn resource(&mut self, types: &[String]) -> (String, Vec<(String, ArnField)>) {
        let name = match types {
            [one] => one.clone(),
            [] => String::new(),
            many => {
                self.err(
                    SchemaItem::Nowhere,
                    format!(
                        "the routes use several resource types (`{}`); one type stands for the API",
                        many.join("`, `")
                    ),
                );
                String::new()
            }
        };
        let mut attrs = Vec::new();
        let declared = self
            .sj
            .entity_type(&name)
            .and_then(|def| def.get("shape"))
            .and_then(|s| s.get("attributes"))
            .and_then(Value::as_object);
        for (attr, a) in declared.into_iter().flatten() {
            let field = match attr.as_str() {
                "stage" => ArnField::Stage,
                "apiId" => ArnField::ApiId,
                "region" => ArnField::Region,
                "accountId" => ArnField::AccountId,
                "partition" => ArnField::Partition,
                _ => {
                    self.err(attribute(&name, attr), format!("attribute `{attr}` of the resource type `{name}` cannot be filled; the resource knows only {}", RESOURCE_ATTRIBUTES.join(", ")));
                    continue;
                }
            };
            match self.sj.resolve(a, 0) {
                Ok(AttrType::String) => attrs.push((attr.clone(), field)),
                Ok(t) => self.err(
                    attribute(&name, attr),
                    format!("`{name}.{attr}` must be String, found {t}"),
                ),
                Err(e) => self.err(attribute(&name, attr), format!("`{name}.{attr}`: {e}")),
            }
        }
        (name, attrs)
    }

    /// Phase 7: the routes' one context record, and what fills each of its attributes.
    fn context(&mut self, contexts: &[(String, Value)]) -> Vec<(String, ContextField)> {
        let first = contexts
            .first()
            .map(|(_, c)| c.clone())
            .unwrap_or(Value::Null);
        let resolved = self.sj.record_or_empty(&first);
        for (route, c) in contexts {
            if self.sj.record_or_empty(c) != resolved {
                self.err(SchemaItem::Action(route.clone()), format!("route `{route}` has a different context type from the other routes; all routes share one context record"));
            }
        }
        let fields = match resolved {
            Ok(AttrType::Record(fields)) => fields,
            Ok(other) => {
                self.err(
                    SchemaItem::Nowhere,
                    format!("the routes' context must be a record, found {other}"),
                );
                return Vec::new();
            }
            Err(e) => {
                self.err(
                    SchemaItem::Nowhere,
                    format!("the routes' context type: {e}"),
                );
                return Vec::new();
            }
        };
        let mut context = Vec::new();
        for (attr, (ty, required)) in fields {
            if let Some(field) = self.context_field(&attr, &ty, required) {
                context.push((attr, field));
            }
        }
        context
    }

    /// What fills one context attribute, or an error when cedargate cannot fill it.
    fn context_field(&mut self, attr: &str, ty: &AttrType, required: bool) -> Option<ContextField> {
        let at = || SchemaItem::ContextAttribute(attr.to_owned());
        let field = match (attr, ty) {
            ("sourceIp", AttrType::String) => ContextField::SourceIpString,
            ("sourceIp", AttrType::Extension(e)) if e == "ipaddr" => ContextField::SourceIpAddr,
            ("userAgent", AttrType::String) => ContextField::UserAgent,
            ("stage", AttrType::String) => ContextField::Stage,
            ("time", AttrType::Long) => ContextField::TimeSeconds,
            ("now", AttrType::Extension(e)) if e == "datetime" => ContextField::Now,
            ("headers", AttrType::Record(hs)) => {
                let mut names = Vec::new();
                for (h, (hty, hreq)) in hs {
                    if *hty != AttrType::String || *hreq {
                        self.err(SchemaItem::ContextAttribute(h.clone()), format!("context `headers.{h}` must be an optional String (`\"{h}\"?: String`): a request may lack any header"));
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
                self.err(at(), format!("context attribute `{attr}` of type {ty} cannot be filled by the authorizer; it fills {}", known.join("; ")));
                return None;
            }
        };
        let may_be_absent = matches!(
            field,
            ContextField::SourceIpString | ContextField::SourceIpAddr | ContextField::UserAgent
        );
        if may_be_absent && required {
            self.err(
                at(),
                format!(
                    "context `{attr}` must be optional (`{attr}?`): TOKEN events do not carry it"
                ),
            );
        }
        Some(field)
    }
}

/// Reads the mapping from the schema (resolved JSON form) for the given route actions. All
/// problems are returned, not just the first.
pub fn read(
    schema_json: &Value,
    route_actions: &[EntityUid],
) -> Result<Mapping, Vec<MappingError>> {
    let mut r = Reader {
        sj: SchemaJson { root: schema_json },
        errors: Vec::new(),
    };
    let applies = r.applies(route_actions);
    let Some((principal_name, principal_def, id_claim)) = r.principal(&applies) else {
        return Err(r.errors);
    };
    let qualify_by_issuer = r.qualify(&principal_name, principal_def);
    let parents = r.parents(&principal_name, principal_def);
    let attrs = r.attributes(&principal_name, principal_def);
    r.misplaced_claims(&principal_name);
    let (resource_name, resource_attrs) = r.resource(&applies.resources);
    let context = r.context(&applies.contexts);

    let principal_type = type_name(&principal_name);
    let resource_type = type_name(if resource_name.is_empty() {
        "Api"
    } else {
        &resource_name
    });
    match (principal_type, resource_type) {
        (Ok(principal_type), Ok(resource_type)) if r.errors.is_empty() => Ok(Mapping {
            principal_type,
            id_claim,
            qualify_by_issuer,
            parents,
            attrs,
            resource_type,
            resource_attrs,
            context,
        }),
        (p, res) => {
            r.errors.extend(p.err());
            r.errors.extend(res.err());
            Err(r.errors)
        }
    }
}
