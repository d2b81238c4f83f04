//! Reads: which facts each policy can read (what a route-wide decision depends on).
//!
//! Stage: bundle load, after the policies. Input: each policy, and the principal and resource
//! types of the mapping. Output: per policy a [`Reads`] (union: the bundle's), which `facts`
//! uses to keep exactly the values some policy reads.
//!
//! ## How
//! The scope is read through Cedar's API: `principal == T::"id"` and `principal in T::"id"`
//! tell principals apart by id when `T` is the principal type (a principal has no ancestors of
//! its own type); with another type they read the parents, which are always facts. The same
//! holds for the resource. The conditions are walked in Cedar's JSON form:
//!
//! - `v.a…` and `v has a` (for `v` one of `principal`, `resource`, `context`) read attribute
//!   `a` of `v` (for `context.headers.h`, header `h`);
//! - `principal in E`, `principal == E` and `principal is T in E` with entity literals `E`
//!   read only the id, and that only when some `E` is of the principal type;
//! - every other occurrence of a variable (passed to `==`, `in`, `.contains(…)`, a record, an
//!   operator this walk does not know) reads it whole: the principal's id, the resource's
//!   id, the whole context.
//!
//! The walk is conservative by construction: any expression shape it does not recognise falls
//! through to the last rule, which reads more, never less. Reading more only makes the memo
//! key finer; reading less would let two callers share a decision they should not.

use cedar_policy::{EntityTypeName, Policy, PrincipalConstraint, ResourceConstraint};
use serde_json::Value;

use crate::facts::{Names, Reads};

/// The variables whose reads matter (`action` is fixed per route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Principal,
    Resource,
    Context,
}

fn var_of(e: &Value) -> Option<Var> {
    match e.get("Var").and_then(Value::as_str)? {
        "principal" => Some(Var::Principal),
        "resource" => Some(Var::Resource),
        "context" => Some(Var::Context),
        _ => None,
    }
}

/// The body of a one-key JSON object whose key is `op`.
fn op<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    let obj = e.as_object()?;
    if obj.len() == 1 {
        obj.get(name)
    } else {
        None
    }
}

/// `v.a.b…` as (`v`, [`a`, `b`, …]), for a chain of attribute accesses on a variable.
fn path_of(e: &Value) -> Option<(Var, Vec<&str>)> {
    if let Some(v) = var_of(e) {
        return Some((v, Vec::new()));
    }
    let body = op(e, ".")?;
    let (v, mut path) = path_of(body.get("left")?)?;
    path.push(body.get("attr")?.as_str()?);
    Some((v, path))
}

/// The entity type of an entity literal (`{"Value": {"__entity": {"type": …, "id": …}}}`).
fn literal_type(e: &Value) -> Option<&str> {
    let value = e.get("Value")?;
    let entity = value.get("__entity").unwrap_or(value);
    entity.get("type")?.as_str()
}

/// The entity types of an entity literal or a set of them; `None` when `e` is anything else.
fn literal_types(e: &Value) -> Option<Vec<&str>> {
    if let Some(t) = literal_type(e) {
        return Some(vec![t]);
    }
    let items = op(e, "Set")?.as_array()?;
    items.iter().map(literal_type).collect()
}

struct Walk<'a> {
    principal_type: &'a str,
    resource_type: &'a str,
    reads: Reads,
}

impl Walk<'_> {
    /// `v` is read whole.
    fn whole(&mut self, v: Var) {
        match v {
            Var::Principal => self.reads.principal_id = true,
            Var::Resource => self.reads.resource_id = true,
            Var::Context => {
                self.reads.context = Names::All;
                self.reads.headers = Names::All;
            }
        }
    }

    /// `v.path…` is read (a non-empty path).
    fn attr(&mut self, v: Var, path: &[&str]) {
        let Some(first) = path.first() else {
            self.whole(v);
            return;
        };
        match v {
            Var::Principal => self.reads.principal_attrs.insert(first),
            Var::Resource => self.reads.resource_attrs.insert(first),
            Var::Context => {
                self.reads.context.insert(first);
                if *first == "headers" {
                    match path.get(1) {
                        Some(h) => self.reads.headers.insert(h),
                        None => self.reads.headers = Names::All,
                    }
                }
            }
        }
    }

    /// Whether comparing `v` with entities of `types` (by `==` or `in`) reads `v`'s id: only
    /// when one of them is of `v`'s own type. With other types `in` reads the ancestors
    /// (the principal's parents, always facts; the resource has none) and `==` is false.
    fn compare_with_literals(&mut self, v: Var, types: &[&str]) {
        let own = match v {
            Var::Principal => self.principal_type,
            Var::Resource => self.resource_type,
            Var::Context => {
                self.whole(v);
                return;
            }
        };
        if types.contains(&own) {
            self.whole(v);
        }
    }

    /// `left <op> right` where one side may be a bare variable compared with entity literals.
    fn comparison(&mut self, left: &Value, right: &Value, symmetric: bool) -> bool {
        let sides: &[(&Value, &Value)] = if symmetric {
            &[(left, right), (right, left)]
        } else {
            &[(left, right)]
        };
        for (var_side, other) in sides {
            if let (Some(v), Some(types)) = (var_of(var_side), literal_types(other)) {
                self.compare_with_literals(v, &types);
                return true;
            }
        }
        false
    }

    fn expr(&mut self, e: &Value) {
        if let Some((v, path)) = path_of(e) {
            self.attr(v, &path);
            return;
        }
        if let Some(body) = op(e, "has") {
            if let (Some((v, mut path)), Some(a)) = (
                body.get("left").and_then(path_of),
                body.get("attr").and_then(Value::as_str),
            ) {
                path.push(a);
                self.attr(v, &path);
                return;
            }
        }
        for (name, symmetric) in [("in", false), ("==", true), ("!=", true)] {
            if let Some(body) = op(e, name) {
                if let (Some(l), Some(r)) = (body.get("left"), body.get("right")) {
                    if self.comparison(l, r, symmetric) {
                        return;
                    }
                }
            }
        }
        if let Some(body) = op(e, "is") {
            if let Some(v) = body.get("left").and_then(var_of) {
                // The type of a variable is fixed by the schema; only `is T in E` reads more.
                match body.get("in") {
                    None => {}
                    Some(target) => match literal_types(target) {
                        Some(types) => self.compare_with_literals(v, &types),
                        None => {
                            self.whole(v);
                            self.expr(target);
                        }
                    },
                }
                return;
            }
        }
        if let Some(v) = var_of(e) {
            self.whole(v);
            return;
        }
        match e {
            Value::Object(map) => map.values().for_each(|v| self.expr(v)),
            Value::Array(items) => items.iter().for_each(|v| self.expr(v)),
            _ => {}
        }
    }
}

/// What one policy reads. `principal_type` and `resource_type` are the mapping's.
pub fn of_policy(
    policy: &Policy,
    principal_type: &EntityTypeName,
    resource_type: &EntityTypeName,
) -> Reads {
    let principal_type = principal_type.to_string();
    let resource_type = resource_type.to_string();
    let mut walk = Walk {
        principal_type: &principal_type,
        resource_type: &resource_type,
        reads: Reads::default(),
    };
    match policy.principal_constraint() {
        PrincipalConstraint::Eq(u)
        | PrincipalConstraint::In(u)
        | PrincipalConstraint::IsIn(_, u)
            if u.type_name().to_string() == principal_type =>
        {
            walk.reads.principal_id = true;
        }
        _ => {}
    }
    match policy.resource_constraint() {
        ResourceConstraint::Eq(u) | ResourceConstraint::In(u) | ResourceConstraint::IsIn(_, u)
            if u.type_name().to_string() == resource_type =>
        {
            walk.reads.resource_id = true;
        }
        _ => {}
    }
    match policy.to_json() {
        Ok(json) => {
            if let Some(conditions) = json.get("conditions") {
                walk.expr(conditions);
            }
        }
        // No JSON form (not expected for a parsed policy): assume it reads everything.
        Err(_) => walk.reads = Reads::everything(),
    }
    walk.reads
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn reads(text: &str) -> Reads {
        let policy = Policy::from_str(text).unwrap();
        of_policy(
            &policy,
            &EntityTypeName::from_str("User").unwrap(),
            &EntityTypeName::from_str("Api").unwrap(),
        )
    }

    fn names(list: &[&str]) -> Names {
        let mut n = Names::default();
        for s in list {
            n.insert(s);
        }
        n
    }

    #[test]
    fn scopes_read_ids_only_for_their_own_type() {
        assert_eq!(
            reads(r#"permit(principal in Role::"r", action, resource);"#),
            Reads::default()
        );
        assert!(reads(r#"permit(principal == User::"alice", action, resource);"#).principal_id);
        assert!(reads(r#"permit(principal in User::"alice", action, resource);"#).principal_id);
        assert!(reads(r#"permit(principal, action, resource == Api::"a1");"#).resource_id);
        assert_eq!(
            reads(r#"permit(principal is User, action, resource is Api);"#),
            Reads::default()
        );
    }

    #[test]
    fn attribute_reads() {
        let r = reads(
            r#"permit(principal, action, resource) when {
                principal has scopes && principal.scopes.contains("x") &&
                context.sourceIp == "1.2.3.4" && resource.stage == "prod" &&
                context.headers has "x-tenant" && context.headers["x-tenant"] == "t"
            };"#,
        );
        assert!(!r.principal_id && !r.resource_id);
        assert_eq!(r.principal_attrs, names(&["scopes"]));
        assert_eq!(r.resource_attrs, names(&["stage"]));
        assert_eq!(r.context, names(&["headers", "sourceIp"]));
        assert_eq!(r.headers, names(&["x-tenant"]));
    }

    #[test]
    fn comparisons_with_literals_of_other_types_read_nothing_more() {
        let r = reads(
            r#"permit(principal, action, resource) when {
                principal in Role::"admin" || principal in [Role::"a", Role::"b"] ||
                principal is User in Role::"c"
            };"#,
        );
        assert_eq!(r, Reads::default());
        assert!(
            reads(r#"permit(principal, action, resource) when { principal == User::"x" };"#)
                .principal_id
        );
        assert!(
            reads(r#"permit(principal, action, resource) when { User::"x" != principal };"#)
                .principal_id
        );
        assert!(
            reads(
                r#"permit(principal, action, resource) when { principal in [Role::"a", User::"x"] };"#
            )
            .principal_id
        );
    }

    #[test]
    fn anything_else_reads_the_whole_variable() {
        // The principal compared with an attribute's value: its id matters.
        let r = reads(
            r#"permit(principal, action, resource) when { principal == principal.manager };"#,
        );
        assert!(r.principal_id);
        assert_eq!(r.principal_attrs, names(&["manager"]));
        // The principal inside a set.
        assert!(
            reads(
                r#"permit(principal, action, resource) when { [principal].contains(principal) };"#
            )
            .principal_id
        );
        // The whole context.
        let r = reads(r#"permit(principal, action, resource) when { context == {} };"#);
        assert_eq!((r.context, r.headers), (Names::All, Names::All));
        // The whole headers record.
        let r =
            reads(r#"permit(principal, action, resource) when { context.headers == {"a": "b"} };"#);
        assert_eq!(r.headers, Names::All);
        // A condition on a static entity reads nothing of the caller.
        assert_eq!(
            reads(r#"permit(principal, action, resource) when { Role::"a" in Role::"b" };"#),
            Reads::default()
        );
        // `action` is fixed per route.
        assert_eq!(
            reads(r#"permit(principal, action, resource) when { action == Action::"x" };"#),
            Reads::default()
        );
    }
}
