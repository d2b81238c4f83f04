//! Response: the IAM policy and the caller's facts → what API Gateway expects back.
//!
//! Stage: last. Input: the principal id, a [`PolicyDocument`], verified claims and settings.
//! Output: the authorizer response JSON.
//!
//! Invariants: `context` is flat — strings, numbers and booleans only (API Gateway answers 500
//! for anything else), so arrays and objects are carried as JSON text; no field is ever `null`
//! (absent fields are left out).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::claims::VerifiedClaims;
use crate::iam::PolicyDocument;

/// An authorizer response with an IAM policy (REST APIs, HTTP API payload 1.0 and 2.0 with
/// simple responses off, WebSocket).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyResponse {
    pub principal_id: String,
    pub policy_document: PolicyDocument,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_identifier_key: Option<String>,
}

/// A claim value as API Gateway can carry it in `context`: scalars as they are, arrays and
/// objects as their JSON text, `null` left out.
pub fn flat_value(v: &Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Some(v.clone()),
        Value::Array(_) | Value::Object(_) => Some(Value::String(v.to_string())),
    }
}

/// The `context` map: the configured claims, plus the principal and the policy revision.
pub fn context(
    claims: &VerifiedClaims,
    wanted: &[String],
    principal: &str,
    revision: &str,
) -> Map<String, Value> {
    let mut out = Map::new();
    for name in wanted {
        if let Some(v) = claims.get(name).and_then(flat_value) {
            out.insert(name.clone(), v);
        }
    }
    out.insert("principal".to_owned(), Value::String(principal.to_owned()));
    out.insert(
        "policyRevision".to_owned(),
        Value::String(revision.to_owned()),
    );
    out
}

/// The usage plan key from a claim: a string (or number) claim, never anything the client
/// chooses in the request.
pub fn usage_key(claims: &VerifiedClaims, claim: Option<&str>) -> Option<String> {
    match claims.get(claim?)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
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
            policy_document: PolicyDocument {
                version: "2012-10-17",
                statement: vec![],
            },
            context: Map::new(),
            usage_identifier_key: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains("null") && !text.contains("context") && !text.contains("usage"),
            "{text}"
        );
    }
}
