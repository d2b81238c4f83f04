//! Verdict: an IAM policy document and a method ARN → what API Gateway does with the request.
//!
//! Stage: `serve`'s gateway, after the authorizer answered (or its cached answer was found).
//! Input: the `policyDocument` JSON exactly as the authorizer returned it, and the method ARN the
//! request would have in AWS. Output: [`Verdict`].
//!
//! This is deliberately a small, independent reading of IAM's rules rather than a reuse of
//! [`crate::iam`]: the gateway must judge the policy the way API Gateway does, so that a mistake
//! in the policy builder shows up in `serve` instead of being mirrored by it.
//! - A statement applies when its `Action` matches `execute-api:Invoke` (case-insensitive, with
//!   wildcards) and one of its `Resource` patterns matches the ARN.
//! - In `Resource`, `*` matches any run of characters (including `/` and the empty run) and `?`
//!   exactly one character; everything else matches itself, case-sensitively.
//! - An applicable `Deny` wins over any `Allow`; with no applicable `Allow` the request is denied
//!   implicitly. Anything malformed is ignored, which can only deny more.

use serde_json::Value;

/// What the gateway does with a request under a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// A `Deny` statement matched: 403 "… with an explicit deny".
    ExplicitDeny,
    /// No `Allow` matched: 403.
    ImplicitDeny,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::ExplicitDeny => "explicit deny",
            Self::ImplicitDeny => "implicit deny",
        }
    }
}

/// Evaluates `policy` (an IAM policy document) for invoking `arn`.
pub fn evaluate(policy: &Value, arn: &str) -> Verdict {
    let mut allowed = false;
    for statement in one_or_many(policy.get("Statement")) {
        let applies = one_or_many(statement.get("Action"))
            .filter_map(Value::as_str)
            .any(|a| matches_action(a, "execute-api:Invoke"))
            && one_or_many(statement.get("Resource"))
                .filter_map(Value::as_str)
                .any(|p| matches_pattern(p.as_bytes(), arn.as_bytes()));
        if !applies {
            continue;
        }
        match statement.get("Effect").and_then(Value::as_str) {
            Some("Deny") => return Verdict::ExplicitDeny,
            Some("Allow") => allowed = true,
            _ => {}
        }
    }
    if allowed {
        Verdict::Allow
    } else {
        Verdict::ImplicitDeny
    }
}

/// A JSON value that IAM lets be one item or a list of items.
fn one_or_many(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match v {
        Some(Value::Array(a)) => a,
        Some(one) => std::slice::from_ref(one),
        None => &[],
    };
    items.iter()
}

fn matches_action(pattern: &str, action: &str) -> bool {
    matches_pattern(
        pattern.to_ascii_lowercase().as_bytes(),
        action.to_ascii_lowercase().as_bytes(),
    )
}

/// Glob matching with `*` (any run) and `?` (one character), iterative with one backtrack
/// point: linear in practice, never exponential, never recursive.
///
/// Works on bytes; a `?` stands for one byte, which is one character for the ASCII that method
/// ARNs carry (a percent-encoded path stays ASCII).
pub fn matches_pattern(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    // Where the last `*` was, and the text position it is currently assumed to extend to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(b'?'), Some(_)) => {
                p += 1;
                t += 1;
            }
            (Some(a), Some(b)) if a == b => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    // Let the last `*` swallow one more character and retry.
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|c| *c == b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const P: &str = "arn:aws:execute-api:us-east-1:123456789012:api/prod/";

    fn m(p: &str, t: &str) -> bool {
        matches_pattern(p.as_bytes(), t.as_bytes())
    }

    #[test]
    fn wildcards_cross_slashes_and_match_empty_runs() {
        assert!(m("GET/pets/*", "GET/pets/42"));
        assert!(m("GET/pets/*", "GET/pets/42/photos/a"));
        assert!(m("GET/pets/*", "GET/pets/"));
        assert!(!m("GET/pets/*", "GET/pets"));
        assert!(m("*/pets", "DELETE/pets"));
        assert!(m("*", ""));
        assert!(m("**", "abc"));
        assert!(m("a*b*c", "aXbYbZc"));
        assert!(!m("a*b*c", "aXbYbZ"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(m("GET/pets/?", "GET/pets/7"));
        assert!(!m("GET/pets/?", "GET/pets/42"));
        assert!(!m("GET/pets/?", "GET/pets/"));
        assert!(m("???/x", "GET/x"));
        assert!(!m("???/x", "POST/x"));
    }

    #[test]
    fn literals_are_case_sensitive() {
        assert!(!m("GET/Pets", "GET/pets"));
        assert!(m("GET/pets", "GET/pets"));
    }

    #[test]
    fn explicit_deny_wins_and_no_allow_is_an_implicit_deny() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": [format!("{P}GET/pets/*")]},
                {"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": [format!("{P}GET/pets/*/photos/*")]}
            ]
        });
        assert_eq!(
            evaluate(&policy, &format!("{P}GET/pets/42")),
            Verdict::Allow
        );
        assert_eq!(
            evaluate(&policy, &format!("{P}GET/pets/42/photos/a")),
            Verdict::ExplicitDeny
        );
        assert_eq!(
            evaluate(&policy, &format!("{P}DELETE/pets/42")),
            Verdict::ImplicitDeny
        );
    }

    #[test]
    fn single_statement_resource_and_action_forms() {
        let policy = json!({
            "Statement": {"Action": ["EXECUTE-API:*"], "Effect": "Allow", "Resource": format!("{P}*")}
        });
        assert_eq!(evaluate(&policy, &format!("{P}GET/x")), Verdict::Allow);
        let other_action = json!({
            "Statement": [{"Action": "s3:GetObject", "Effect": "Allow", "Resource": "*"}]
        });
        assert_eq!(
            evaluate(&other_action, &format!("{P}GET/x")),
            Verdict::ImplicitDeny
        );
    }

    #[test]
    fn malformed_documents_deny() {
        for doc in [
            json!(null),
            json!({}),
            json!({"Statement": 3}),
            json!({"Statement": [{"Effect": "Allow"}]}),
            json!({"Statement": [{"Effect": "Maybe", "Action": "*", "Resource": "*"}]}),
        ] {
            assert_eq!(evaluate(&doc, "anything"), Verdict::ImplicitDeny, "{doc}");
        }
    }
}
