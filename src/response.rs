//! Response: the decision and the caller's facts → what API Gateway expects back.
//!
//! Stage: last. Input: the principal id, a [`PolicyDocument`] (or the requested route's
//! decision, for simple responses), verified claims and settings. Output: the authorizer
//! response JSON, in the shape the event's flavour needs (see `docs/flavours.md`):
//!
//! - REST (`TOKEN`, `REQUEST`), HTTP API 1.0, WebSocket: [`PolicyResponse`] with a flat
//!   `context` — strings, numbers and booleans only (API Gateway answers 500 for anything else
//!   there), so arrays and objects are carried as JSON text.
//! - HTTP API 2.0: [`PolicyResponse`], or [`SimpleResponse`] when simple responses are on; the
//!   `context` keeps arrays and objects as they are (payload 2.0 passes them through).
//!
//! Invariants: no field is ever `null` (absent fields are left out, nulls inside arrays and
//! objects are dropped); `usageIdentifierKey` comes from verified claims and configuration only,
//! never from the request, and only in flavours whose APIs have usage plans (REST, WebSocket).
//! A [`Response`] serialises straight to the JSON API Gateway reads, with no intermediate tree.

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::claims::VerifiedClaims;
use crate::config::UsageKeyConfig;
use std::sync::Arc;

use crate::iam::Policy;

/// The `context` of a response: names and values in order, serialised as a JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context(pub Vec<(String, Value)>);

impl Context {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// A value by name.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
    /// Sets `name` to `value` (replacing a value of that name).
    pub fn insert(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

impl Serialize for Context {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// An authorizer response with an IAM policy (REST APIs, HTTP API payload 1.0, HTTP API 2.0
/// with simple responses off, WebSocket).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    pub principal_id: String,
    /// Shared with every response that carries the same policy (it is written once).
    #[serde(serialize_with = "shared")]
    pub policy_document: Arc<Policy>,
    #[serde(skip_serializing_if = "Context::is_empty")]
    pub context: Context,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_identifier_key: Option<String>,
}

fn shared<S: Serializer>(policy: &Arc<Policy>, s: S) -> Result<S::Ok, S::Error> {
    policy.as_ref().serialize(s)
}

/// An HTTP API 2.0 simple response: the decision for the requested route only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimpleResponse {
    pub is_authorized: bool,
    #[serde(skip_serializing_if = "Context::is_empty")]
    pub context: Context,
}

/// What the authorizer answers API Gateway.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Response {
    Policy(PolicyResponse),
    Simple(SimpleResponse),
}

impl Response {
    pub fn context_mut(&mut self) -> &mut Context {
        match self {
            Response::Policy(p) => &mut p.context,
            Response::Simple(s) => &mut s.context,
        }
    }

    /// The response as a JSON value (for tools that look into it).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// How `context` values may look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextShape {
    /// Strings, numbers and booleans only (REST, HTTP API 1.0, WebSocket).
    Flat,
    /// Arrays and objects allowed too (HTTP API 2.0).
    Nested,
}

/// A claim value as API Gateway can carry it in a flat `context`: scalars as they are, arrays
/// and objects as their JSON text, `null` left out.
pub fn flat_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(v.clone()),
        Value::Array(_) | Value::Object(_) => Some(Value::String(v.to_string())),
    }
}

/// A claim value for a nested (HTTP API 2.0) `context`: as it is, without nulls anywhere.
pub fn nested_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(v.clone()),
        Value::Array(items) => Some(Value::Array(
            items.iter().filter_map(nested_value).collect(),
        )),
        Value::Object(map) => Some(Value::Object(
            map.iter()
                .filter_map(|(k, v)| nested_value(v).map(|v| (k.clone(), v)))
                .collect(),
        )),
    }
}

/// The `context` map: the configured claims, plus the principal and the policy revision.
pub fn context(
    claims: &VerifiedClaims,
    wanted: &[String],
    principal: &str,
    revision: &str,
    shape: ContextShape,
) -> Context {
    let mut out = Context(Vec::with_capacity(wanted.len() + 2));
    for name in wanted {
        let value = claims.get(name).and_then(|v| match shape {
            ContextShape::Flat => flat_value(v),
            ContextShape::Nested => nested_value(v),
        });
        if let Some(v) = value {
            out.insert(name, v);
        }
    }
    out.insert("principal", Value::String(principal.to_owned()));
    out.insert("policyRevision", Value::String(revision.to_owned()));
    out
}

/// The usage plan key (`usageIdentifierKey`) from verified claims, never from anything the
/// client chooses in the request.
///
/// Without a map, the claim's value is the API key value (a string, or a number as text):
/// per-caller keys provisioned in the identity provider. With a map, the claim's value (or, for
/// an array claim such as roles, the first map entry the array contains) selects an API key
/// value: per-tier keys. `*=KEY` in the map covers callers without a matching value; without it
/// they get no key (and API Gateway refuses methods that require one with 403).
pub fn usage_key(claims: &VerifiedClaims, cfg: Option<&UsageKeyConfig>) -> Option<String> {
    let cfg = cfg?;
    let claim = claims.get(&cfg.claim);
    if cfg.map.is_empty() {
        let own = match claim {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        return own.or_else(|| cfg.fallback.clone());
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let values: Vec<String> = match claim {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(v) => text(v).into_iter().collect(),
        None => Vec::new(),
    };
    let mapped = cfg
        .map
        .iter()
        .find(|(from, _)| values.contains(from))
        .map(|(_, key)| key.clone());
    mapped.or_else(|| cfg.fallback.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattening_keeps_scalars_and_encodes_the_rest() {
        assert_eq!(flat_value(&json!("a")), Some(json!("a")));
        assert_eq!(flat_value(&json!(3)), Some(json!(3)));
        assert_eq!(flat_value(&json!(true)), Some(json!(true)));
        assert_eq!(flat_value(&json!(null)), None);
        assert_eq!(flat_value(&json!(["a", "b"])), Some(json!("[\"a\",\"b\"]")));
        assert_eq!(flat_value(&json!({"k": 1})), Some(json!("{\"k\":1}")));
    }

    #[test]
    fn no_null_fields() {
        let r = PolicyResponse {
            principal_id: "p".into(),
            policy_document: Arc::new(Policy::new(
                crate::iam::Shape::default(),
                &crate::arn::MethodArn::parse(
                    "arn:aws:execute-api:us-east-1:123456789012:abc/prod/GET/pets",
                )
                .unwrap(),
            )),
            context: Context::default(),
            usage_identifier_key: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains("null") && !text.contains("context") && !text.contains("usage"),
            "{text}"
        );
        let r = SimpleResponse {
            is_authorized: false,
            context: Context::default(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"isAuthorized":false}"#
        );
    }

    #[test]
    fn nested_context_keeps_arrays_and_maps_without_nulls() {
        assert_eq!(
            nested_value(&json!({"a": [1, null, "x"], "b": null, "c": {"d": true}})),
            Some(json!({"a": [1, "x"], "c": {"d": true}}))
        );
        assert_eq!(nested_value(&json!(null)), None);
        let claims = VerifiedClaims::from_trusted_json(json!({
            "sub": "u", "iss": "i", "exp": 1, "roles": ["reader", "editor"]
        }))
        .unwrap();
        let wanted = vec!["roles".to_owned(), "missing".to_owned()];
        let flat = context(&claims, &wanted, "u", "rev", ContextShape::Flat);
        assert_eq!(flat.get("roles"), Some(&json!("[\"reader\",\"editor\"]")));
        let nested = context(&claims, &wanted, "u", "rev", ContextShape::Nested);
        assert_eq!(nested.get("roles"), Some(&json!(["reader", "editor"])));
        assert!(nested.get("missing").is_none());
        assert_eq!(
            serde_json::to_value(&nested).unwrap(),
            json!({"roles": ["reader", "editor"], "principal": "u", "policyRevision": "rev"})
        );
    }

    #[test]
    fn usage_keys_come_from_claims_and_the_map() {
        let claims = |extra: Value| {
            let mut c = json!({"sub": "u", "iss": "i", "exp": 1});
            for (k, v) in extra.as_object().unwrap() {
                c[k] = v.clone();
            }
            VerifiedClaims::from_trusted_json(c).unwrap()
        };
        let own = UsageKeyConfig {
            claim: "api_key".into(),
            map: vec![],
            fallback: None,
        };
        assert_eq!(
            usage_key(&claims(json!({"api_key": "k-123"})), Some(&own)).as_deref(),
            Some("k-123")
        );
        assert_eq!(
            usage_key(&claims(json!({"api_key": 42})), Some(&own)).as_deref(),
            Some("42")
        );
        assert_eq!(usage_key(&claims(json!({"api_key": ""})), Some(&own)), None);
        assert_eq!(
            usage_key(&claims(json!({"api_key": ["a"]})), Some(&own)),
            None
        );
        assert_eq!(usage_key(&claims(json!({})), None), None);
        let tiers = UsageKeyConfig {
            claim: "roles".into(),
            map: vec![
                ("admin".into(), "K-ADMIN".into()),
                ("reader".into(), "K-READ".into()),
            ],
            fallback: Some("K-FREE".into()),
        };
        // Map order decides among several matching values.
        assert_eq!(
            usage_key(&claims(json!({"roles": ["reader", "admin"]})), Some(&tiers)).as_deref(),
            Some("K-ADMIN")
        );
        assert_eq!(
            usage_key(&claims(json!({"roles": "reader"})), Some(&tiers)).as_deref(),
            Some("K-READ")
        );
        assert_eq!(
            usage_key(&claims(json!({"roles": ["guest"]})), Some(&tiers)).as_deref(),
            Some("K-FREE")
        );
        assert_eq!(
            usage_key(&claims(json!({})), Some(&tiers)).as_deref(),
            Some("K-FREE")
        );
        let strict = UsageKeyConfig {
            fallback: None,
            ..tiers
        };
        assert_eq!(
            usage_key(&claims(json!({"roles": ["guest"]})), Some(&strict)),
            None
        );
    }
}
