//! Shadow mode in a template: refused unless the deployment says it is meant.
//!
//! Stage: tooling (`cedargate validate` with a `template.yaml`). Input: each cedargate
//! function's `CEDARGATE_MODE` (a literal, or a `!Ref` to a parameter whose default or
//! allowed values may say `shadow`) and `CEDARGATE_SHADOW_ACKNOWLEDGED`, and the cedargate
//! authorizers' TTLs and identity sources. Output: errors and warnings in [`Findings`].
//!
//! Why: shadow mode allows every route for any valid token. Deployed by mistake (a value
//! copied from a staging stack), it silently turns authorization off; so a template that can
//! deploy it must also say `CEDARGATE_SHADOW_ACKNOWLEDGED: "true"`. And with a cached answer,
//! API Gateway asks the authorizer once per token per TTL, not once per request: the shadow
//! counts are then decisions per token, not per request (a warning unless the TTL is 0 or the
//! route is in the cache key).

use serde_json::Value;

use super::cache::Source;
use super::{function_environment, text, ApiKind, Findings, Template};
use crate::config::Mode;

/// Whether a function's `CEDARGATE_MODE` may deploy shadow mode; `Err` for a literal that is
/// no mode.
fn may_shadow(template: &Template, v: &Value) -> Result<bool, String> {
    if let Some(s) = v.as_str() {
        return Mode::parse(s.trim()).map(|m| m == Mode::Shadow);
    }
    let Some(param) = v.as_object().and_then(|m| text(m.get("Ref"))) else {
        // Another intrinsic (`!If`, `!FindInMap`, …): it may say anything.
        return Ok(true);
    };
    let Some(p) = template.parameter(param) else {
        return Ok(true);
    };
    let says = |v: &Value| v.as_str().is_some_and(|s| s.trim() == "shadow");
    let allowed = p.get("AllowedValues").and_then(Value::as_array);
    Ok(p.get("Default").is_some_and(says) || allowed.is_none_or(|values| values.iter().any(says)))
}

pub(super) fn check(template: &Template, f: &mut Findings) {
    let file = &template.file;
    let mut shadow = false;
    for id in template.cedargate_functions() {
        let Some(r) = template.resource(&id) else {
            continue;
        };
        let Some(vars) = function_environment(r) else {
            continue;
        };
        let Some(mode) = vars.get("CEDARGATE_MODE") else {
            continue;
        };
        match may_shadow(template, mode) {
            Err(e) => f.errors.push(format!(
                "{file}: function `{id}` sets `CEDARGATE_MODE`: {e}"
            )),
            Ok(false) => {}
            Ok(true) => {
                shadow = true;
                let acknowledged = vars
                    .get("CEDARGATE_SHADOW_ACKNOWLEDGED")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.trim() == "true");
                if !acknowledged {
                    f.errors.push(format!(
                        "{file}: function `{id}` can deploy `CEDARGATE_MODE=shadow`, which allows every route for any valid token; set `CEDARGATE_SHADOW_ACKNOWLEDGED: \"true\"` in its environment if that is meant"
                    ));
                }
            }
        }
    }
    if !shadow {
        return;
    }
    for a in template.authorizers() {
        let route_keyed = a
            .sources
            .iter()
            .any(|s| matches!(s, Source::Context(c) if c == "routeKey" || c == "resourcePath"));
        // An HTTP API without identity sources does not cache (as in `cache::check`).
        let caches = a.ttl.caches() && (a.kind != ApiKind::Http || !a.sources.is_empty());
        if caches && !route_keyed {
            f.warnings.push(format!(
                "{file}: {} caches answers for {}: in shadow mode each token is decided once per TTL for whichever route it calls first, so the shadow counts are decisions per token, not per request (set the TTL to 0, or add the route to the identity sources, for per-request counts)",
                a.at, a.ttl
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(env: &str, params: &str) -> Template {
        let text = format!(
            r#"
Parameters:
{params}
Resources:
  Authz:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: .
      Environment:
        Variables:
          CEDARGATE_ISSUER: https://issuer.example/
          CEDARGATE_AUDIENCE: api
{env}
  Api:
    Type: AWS::Serverless::Api
    Properties:
      StageName: prod
      Auth:
        DefaultAuthorizer: Cedargate
        Authorizers:
          Cedargate:
            FunctionArn: !GetAtt Authz.Arn
            FunctionPayloadType: REQUEST
            Identity:
              Headers: [Authorization]
              ReauthorizeEvery: 300
"#
        );
        Template::parse("template.yaml", &text).unwrap()
    }

    fn findings(env: &str, params: &str) -> Findings {
        let mut f = Findings::default();
        check(&template(env, params), &mut f);
        f
    }

    #[test]
    fn shadow_is_refused_unless_acknowledged() {
        let f = findings("          CEDARGATE_MODE: shadow", "  X:\n    Type: String");
        assert_eq!(f.errors.len(), 1, "{f:?}");
        assert!(
            f.errors[0].contains("CEDARGATE_SHADOW_ACKNOWLEDGED"),
            "{f:?}"
        );
        let f = findings(
            "          CEDARGATE_MODE: shadow\n          CEDARGATE_SHADOW_ACKNOWLEDGED: \"true\"",
            "  X:\n    Type: String",
        );
        assert!(f.errors.is_empty(), "{f:?}");
        // The cache makes the counts per token: said once per authorizer.
        assert_eq!(f.warnings.len(), 1, "{f:?}");
        assert!(f.warnings[0].contains("per token"), "{f:?}");
    }

    #[test]
    fn enforce_needs_nothing_and_a_typo_is_an_error() {
        let f = findings(
            "          CEDARGATE_MODE: enforce",
            "  X:\n    Type: String",
        );
        assert_eq!(f, Findings::default());
        let f = findings(
            "          CEDARGATE_MODE: shadowed",
            "  X:\n    Type: String",
        );
        assert!(f.errors[0].contains("shadowed"), "{f:?}");
    }

    #[test]
    fn a_parameter_that_may_say_shadow_counts_as_shadow() {
        let params =
            "  Mode:\n    Type: String\n    Default: enforce\n    AllowedValues: [enforce, shadow]";
        let f = findings("          CEDARGATE_MODE: !Ref Mode", params);
        assert_eq!(f.errors.len(), 1, "{f:?}");
        let params =
            "  Mode:\n    Type: String\n    Default: enforce\n    AllowedValues: [enforce]";
        let f = findings("          CEDARGATE_MODE: !Ref Mode", params);
        assert!(f.errors.is_empty(), "{f:?}");
    }
}
