//! Several issuers against the bundle: whether a policy that tells principals apart by id can
//! tell whose principal it is.
//!
//! Stage: tooling (`cedargate validate`). Input: the bundle's mapping and per-policy reads,
//! and the issuers configured where the authorizer runs (the `CEDARGATE_ISSUER` of each
//! cedargate function in `template.yaml`, a literal or a parameter's default, and the
//! environment `validate` runs in). Output: warnings, each naming the policy and the fix.
//!
//! Why: a principal's id is its `@claim` (`sub`) alone unless the schema says otherwise, so
//! with two issuers `User::"alice"` is whoever either issuer calls `alice`. That is right when
//! both issuers name the same people (one tenant's two pools), and wrong when they do not. A
//! policy is unambiguous when principal ids are qualified (`@qualify("iss")`) or when it reads
//! a principal attribute filled from `iss`; otherwise it gets a warning with both fixes. The
//! memo is sound either way: the issuer is always among the facts (`facts`).

use serde_json::Value;

use super::{function_environment, text, Findings, Template};
use crate::bundle::Snapshot;
use crate::facts::ISSUER_SEPARATOR;

/// `CEDARGATE_ISSUER` as the authorizer reads it: comma-separated, blanks dropped.
pub fn split_issuers(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Template {
    /// Each cedargate function with the issuers its `CEDARGATE_ISSUER` names: a literal, or
    /// the default of the parameter it refers to (other expressions are not evaluated).
    pub fn issuers(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        for id in self.cedargate_functions() {
            let Some(value) = self
                .resource(&id)
                .and_then(function_environment)
                .and_then(|vars| vars.get("CEDARGATE_ISSUER"))
            else {
                continue;
            };
            let raw = match value {
                Value::String(s) => Some(s.clone()),
                Value::Object(m) => text(m.get("Ref"))
                    .and_then(|p| self.parameter(p))
                    .and_then(|p| text(p.get("Default")))
                    .map(str::to_owned),
                _ => None,
            };
            if let Some(raw) = raw {
                out.push((id, split_issuers(&raw)));
            }
        }
        out
    }
}

/// The template's part: every cedargate function configured with several issuers.
pub(super) fn check(template: &Template, snapshot: &Snapshot, f: &mut Findings) {
    for (function, issuers) in template.issuers() {
        let source = format!("{}: function `{function}`", template.file);
        f.warnings.extend(ambiguous(snapshot, &source, &issuers));
    }
}

/// The warnings for a bundle run with `issuers` (`source` says where they are configured):
/// one per policy that tells principals apart by id without telling issuers apart.
pub fn ambiguous(snapshot: &Snapshot, source: &str, issuers: &[String]) -> Vec<String> {
    let mapping = snapshot.mapping();
    if issuers.len() < 2 || mapping.qualifies_by_issuer() {
        return Vec::new();
    }
    let issuer_attrs: Vec<&str> = mapping.issuer_attributes().collect();
    let principal = mapping.principal_type().to_string();
    let claim = mapping.id_claim();
    let named = issuers
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let example = issuers.first().map_or("", String::as_str);
    let attr_fix = match issuer_attrs.as_slice() {
        [] => "map the issuer (`@claim(\"iss\") issuer: String` on the principal type) and compare `principal.issuer` in the policy".to_owned(),
        attrs => format!(
            "compare `principal.{}` (filled from `iss`) in the policy",
            attrs.join("` or `principal.")
        ),
    };
    snapshot
        .derived
        .policy_reads
        .iter()
        .filter(|(_, r)| r.principal_id)
        .filter(|(_, r)| !issuer_attrs.iter().any(|a| r.principal_attrs.contains(a)))
        .map(|(policy, _)| {
            format!(
                "{source} accepts tokens of {n} issuers ({named}), and policy `{policy}` tells principals apart by id, but a `{principal}` id is the `{claim}` claim alone: the same `{claim}` from two issuers is the same principal to it. Add `@qualify(\"iss\")` to `entity {principal}` (ids become `<iss>{ISSUER_SEPARATOR}<{claim}>`, e.g. `{principal}::\"{example}{ISSUER_SEPARATOR}alice\"`), or {attr_fix}",
                n = issuers.len(),
            )
        })
        .collect()
}

/// Under `@qualify("iss")`, the principal ids that policies name without an issuer: such an
/// id (`User::"alice"`) can never be a caller's, so the policy is dead where it permits and
/// void where it forbids. One warning per policy and id.
pub fn unqualified_ids(snapshot: &Snapshot) -> Vec<String> {
    let mapping = snapshot.mapping();
    if !mapping.qualifies_by_issuer() {
        return Vec::new();
    }
    let principal = mapping.principal_type().to_string();
    let mut out = Vec::new();
    for policy in snapshot.policies.policies() {
        let Ok(json) = policy.to_json() else { continue };
        let mut ids = Vec::new();
        entity_ids(&json, &principal, &mut ids);
        ids.sort();
        ids.dedup();
        for id in ids.into_iter().filter(|id| !id.contains(ISSUER_SEPARATOR)) {
            out.push(format!(
                "policy `{}` names `{principal}::\"{id}\"`, but under `@qualify(\"iss\")` every `{principal}` id is `<iss>{ISSUER_SEPARATOR}<{claim}>`: no caller has this id (write `{principal}::\"ISSUER{ISSUER_SEPARATOR}{id}\"`)",
                policy.id(),
                claim = mapping.id_claim(),
            ));
        }
    }
    // Policies come in no particular order; messages in a stable one.
    out.sort();
    out
}

/// The ids of the entities of type `ty` anywhere in a policy's JSON form (scope and
/// conditions: `{"type": T, "id": I}`, also under `__entity`).
fn entity_ids(v: &Value, ty: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(t)), Some(Value::String(id))) = (m.get("type"), m.get("id"))
            {
                if t == ty {
                    out.push(id.clone());
                }
            }
            m.values().for_each(|v| entity_ids(v, ty, out));
        }
        Value::Array(items) => items.iter().for_each(|v| entity_ids(v, ty, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bundle::BundleFiles;

    const SCHEMA: &str = r#"
@claim("roles") entity Role;
@claim("sub") entity User in [Role] { @claim("iss") issuer?: String };
entity Api;
action "GET /pets" appliesTo { principal: [User], resource: [Api] };
"#;

    fn snapshot(schema: &str, policies: &str) -> Result<Snapshot, String> {
        let files = BundleFiles {
            files: BTreeMap::from([
                ("schema/api.cedarschema".to_owned(), schema.to_owned()),
                ("policies/p.cedar".to_owned(), policies.to_owned()),
            ]),
        };
        Snapshot::compile(files, "test")
            .map(|(s, _)| s)
            .map_err(|p| p.to_string())
    }

    const TWO: [&str; 2] = ["https://a.example/", "https://b.example/"];

    fn two() -> Vec<String> {
        TWO.iter().map(|s| (*s).to_owned()).collect()
    }

    const BY_ID: &str = r#"@id("alice") permit(principal == User::"alice", action, resource);
@id("roles") permit(principal in Role::"reader", action, resource);"#;

    #[test]
    fn a_policy_on_ids_under_several_issuers_is_a_warning_that_names_the_fixes() {
        let s = snapshot(SCHEMA, BY_ID).unwrap();
        let w = ambiguous(&s, "`CEDARGATE_ISSUER`", &two());
        // The policy on roles reads no id: only the one on `alice` is ambiguous.
        assert_eq!(w.len(), 1, "{w:?}");
        let w = &w[0];
        for needle in [
            "`CEDARGATE_ISSUER` accepts tokens of 2 issuers (`https://a.example/`, `https://b.example/`)",
            "policy `policies/p.cedar#alice`",
            "the same `sub` from two issuers is the same principal",
            "Add `@qualify(\"iss\")` to `entity User`",
            "`User::\"https://a.example/|alice\"`",
            "compare `principal.issuer` (filled from `iss`) in the policy",
        ] {
            assert!(w.contains(needle), "{needle}: {w}");
        }
        // One issuer: nothing to tell apart.
        assert!(ambiguous(&s, "x", &two()[..1]).is_empty());
    }

    #[test]
    fn qualified_ids_or_a_policy_reading_the_issuer_are_unambiguous() {
        let qualified = SCHEMA.replace(
            r#"@claim("sub") entity User"#,
            r#"@claim("sub") @qualify("iss") entity User"#,
        );
        let s = snapshot(
            &qualified,
            r#"permit(principal == User::"https://a.example/|alice", action, resource);"#,
        )
        .unwrap();
        assert!(ambiguous(&s, "x", &two()).is_empty());
        let s = snapshot(
            SCHEMA,
            r#"permit(principal == User::"alice", action, resource) when { principal has issuer && principal.issuer == "https://a.example/" };"#,
        )
        .unwrap();
        assert!(ambiguous(&s, "x", &two()).is_empty());
        // Without an `iss` attribute the fix says how to map one.
        let s = snapshot(
            &SCHEMA.replace(r#"{ @claim("iss") issuer?: String }"#, ""),
            BY_ID,
        )
        .unwrap();
        let w = ambiguous(&s, "x", &two());
        assert!(
            w.len() == 1 && w[0].contains("map the issuer (`@claim(\"iss\") issuer: String`"),
            "{w:?}"
        );
    }

    #[test]
    fn qualify_is_iss_on_the_principal_type_only() {
        let err = snapshot(
            &SCHEMA.replace(
                r#"@claim("sub") entity User"#,
                r#"@claim("sub") @qualify("tid") entity User"#,
            ),
            BY_ID,
        )
        .unwrap_err();
        assert!(err.contains("the one qualifier is `\"iss\"`"), "{err}");
        let err = snapshot(
            &SCHEMA.replace(
                r#"@claim("roles") entity Role"#,
                r#"@claim("roles") @qualify("iss") entity Role"#,
            ),
            BY_ID,
        )
        .unwrap_err();
        assert!(err.contains("`@qualify` on `Role`"), "{err}");
    }

    #[test]
    fn under_qualify_an_id_without_an_issuer_is_a_warning() {
        let qualified = SCHEMA.replace(
            r#"@claim("sub") entity User"#,
            r#"@claim("sub") @qualify("iss") entity User"#,
        );
        let s = snapshot(
            &qualified,
            r#"@id("scope") permit(principal == User::"alice", action, resource);
@id("cond") forbid(principal, action, resource) when { principal in [User::"bob", User::"https://a.example/|carol"] };
@id("ok") permit(principal == User::"https://a.example/|alice", action, resource);"#,
        )
        .unwrap();
        let w = unqualified_ids(&s);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("#cond") && w[0].contains("User::\"bob\""),
            "{w:?}"
        );
        assert!(
            w[1].contains("policy `policies/p.cedar#scope` names `User::\"alice\"`"),
            "{w:?}"
        );
        assert!(w[1].contains("write `User::\"ISSUER|alice\"`"), "{w:?}");
        // Without `@qualify` ids are plain `sub`s.
        assert!(unqualified_ids(&snapshot(SCHEMA, BY_ID).unwrap()).is_empty());
    }

    const TEMPLATE: &str = r#"
Parameters:
  Issuer: { Type: String, Default: "https://a.example/,https://b.example/" }
Resources:
  Authz:
    Type: AWS::Serverless::Function
    Metadata: { BuildMethod: rust-cargolambda }
    Properties:
      Environment:
        Variables:
          CEDARGATE_ISSUER: !Ref Issuer
          CEDARGATE_AUDIENCE: aud
  Literal:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          CEDARGATE_ISSUER: "https://a.example/, https://c.example/"
          CEDARGATE_AUDIENCE: aud
  One:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          CEDARGATE_ISSUER: https://a.example/
          CEDARGATE_AUDIENCE: aud
"#;

    #[test]
    fn the_template_s_issuers_come_from_literals_and_parameter_defaults() {
        let t = Template::parse("template.yaml", TEMPLATE).unwrap();
        let mut issuers = t.issuers();
        issuers.sort();
        assert_eq!(
            issuers,
            vec![
                ("Authz".to_owned(), two()),
                (
                    "Literal".to_owned(),
                    vec![
                        "https://a.example/".to_owned(),
                        "https://c.example/".to_owned()
                    ]
                ),
                ("One".to_owned(), vec!["https://a.example/".to_owned()]),
            ]
        );
        let s = snapshot(SCHEMA, BY_ID).unwrap();
        let mut f = Findings::default();
        check(&t, &s, &mut f);
        assert_eq!(f.warnings.len(), 2, "{:?}", f.warnings);
        assert!(f
            .warnings
            .iter()
            .any(|w| w.starts_with("template.yaml: function `Authz` accepts tokens of 2 issuers")));
        assert!(f
            .warnings
            .iter()
            .any(|w| w.starts_with("template.yaml: function `Literal`")));
    }
}
