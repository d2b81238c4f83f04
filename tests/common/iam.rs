//! The tests' own IAM policy evaluator (not cedargate's): IAM's wildcard match on a resource,
//! and whether an authorizer's policy document allows a request ARN.

use serde_json::Value;

/// IAM's wildcard match on one resource: `*` any run of characters (including `/` and none),
/// `?` exactly one; everything else literal.
pub fn iam_match(pattern: &str, subject: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = subject.chars().collect();
    let (mut pi, mut si) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether an authorizer policy document allows `arn`: an explicit Deny wins, then any Allow.
pub fn allows(doc: &Value, arn: &str) -> bool {
    let mut allowed = false;
    for st in doc["Statement"].as_array().expect("Statement") {
        let resources: Vec<&str> = match &st["Resource"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|r| r.as_str().unwrap()).collect(),
            other => panic!("bad Resource {other}"),
        };
        let hit = resources.iter().any(|r| iam_match(r, arn));
        match st["Effect"].as_str().unwrap() {
            "Deny" if hit => return false,
            "Allow" if hit => allowed = true,
            _ => {}
        }
    }
    allowed
}
