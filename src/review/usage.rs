//! Usage: which facts a policy reads, and against which literal values.
//!
//! Stage: the review tool (`cedargate diff`), on each policy of both bundles. Input: a policy
//! and the principal type. Output: a [`Usage`], the raw material of the callers the review
//! tool generates for a route.
//!
//! ## Why literals are enough, and where they are not
//! A condition that compares a fact with literals (`principal.scopes.contains("a")`,
//! `context.sourceIp == "203.0.113.66"`, `principal in Role::"x"`, `principal.level > 3`) can
//! only tell apart the values the literals split the fact into: "contains `a`" or not, equal to
//! the address or not, at most 3 or more. Trying one value from each part (the literals, a
//! value none of them names, the number on each side of a bound, the fact missing) tries every
//! case the condition can see. That holds only for the shapes listed here; any other use of a
//! fact (compared with another fact, passed to arithmetic, `like` with several patterns, the
//! principal or context used whole) is recorded in [`Usage::unmodelled`], and a route whose
//! policies have one is reported as sampled, never as complete.
//!
//! Parents get one more fact: whether every `principal in …` test is positive (not under `!`,
//! `unless` or an `if` condition). Then adding roles can only make more policies apply, and a
//! difference between two bundles always shows on a caller with few roles (see `callers`).

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{EntityUid, Policy, PrincipalConstraint, ResourceConstraint};
use serde_json::Value;

/// A fact a policy reads, named as the policy names it (the bundle's mapping says which claim
/// or request field fills it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fact {
    /// The principal's ancestors (`principal in Role::"x"`).
    Parents,
    /// The principal's id (`principal == User::"alice"`).
    PrincipalId,
    PrincipalAttr(String),
    ContextAttr(String),
    /// `context.headers.<name>`, as the policy spells the name.
    Header(String),
    ResourceAttr(String),
}

/// A literal a fact is compared with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    Str(String),
    Long(i64),
    /// An entity literal (for [`Fact::Parents`]).
    Entity {
        ty: String,
        id: String,
    },
    /// A `like` pattern: its pieces, `None` for a wildcard.
    Pattern(Vec<Option<String>>),
    /// An `ip("…")` literal, an address or a range.
    Ip(String),
}

/// What one policy reads.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    pub facts: BTreeMap<Fact, BTreeSet<Atom>>,
    /// Why some read cannot be enumerated (empty: every read is a modelled shape).
    pub unmodelled: BTreeSet<String>,
    /// Some `principal in …` test is not positive.
    pub parents_negative: bool,
}

impl Usage {
    /// The distinct entity literals the policy tests the principal's ancestors against.
    pub fn parent_literals(&self) -> usize {
        self.facts.get(&Fact::Parents).map_or(0, BTreeSet::len)
    }
}

/// Polarity of a boolean position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pol {
    Pos,
    Neg,
    Both,
}

impl Pol {
    fn flip(self) -> Self {
        match self {
            Self::Pos => Self::Neg,
            Self::Neg => Self::Pos,
            Self::Both => Self::Both,
        }
    }
}

/// Where an expression stands: a boolean position (with its polarity) or a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Bool(Pol),
    Value,
}

impl Ctx {
    fn pol(self) -> Pol {
        match self {
            Self::Bool(p) => p,
            Self::Value => Pol::Both,
        }
    }
}

/// What `policy` reads; `principal_type` tells an id test from a parent test.
#[cfg(test)]
pub fn of(policy: &Policy, principal_type: &str) -> Usage {
    of_json(policy, policy.to_json().ok().as_ref(), principal_type)
}

/// [`of`], with the policy's JSON form (`Policy::to_json`) already made.
pub fn of_json(policy: &Policy, json: Option<&Value>, principal_type: &str) -> Usage {
    let mut walk = Walk {
        principal_type,
        usage: Usage::default(),
    };
    match policy.principal_constraint() {
        PrincipalConstraint::Eq(u) => walk.entity_test(&u, Pol::Pos, true),
        PrincipalConstraint::In(u) | PrincipalConstraint::IsIn(_, u) => {
            walk.entity_test(&u, Pol::Pos, false);
        }
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => {}
    }
    match policy.resource_constraint() {
        ResourceConstraint::Eq(_) | ResourceConstraint::In(_) | ResourceConstraint::IsIn(..) => {
            walk.unmodelled("the resource's id (the API id) in the scope");
        }
        ResourceConstraint::Any | ResourceConstraint::Is(_) => {}
    }
    let conditions = json.and_then(|j| j.get("conditions"));
    match conditions {
        Some(Value::Array(items)) => {
            for c in items {
                let pol = match c.get("kind").and_then(Value::as_str) {
                    Some("unless") => Pol::Neg,
                    _ => Pol::Pos,
                };
                if let Some(body) = c.get("body") {
                    walk.expr(body, Ctx::Bool(pol));
                }
            }
        }
        Some(_) => walk.unmodelled("a condition cedargate cannot read"),
        None => {}
    }
    walk.usage
}

struct Walk<'a> {
    principal_type: &'a str,
    usage: Usage,
}

/// The body of a one-key JSON object: (key, body).
fn single(e: &Value) -> Option<(&str, &Value)> {
    let obj = e.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.iter().next().map(|(k, v)| (k.as_str(), v))
}

fn var(e: &Value) -> Option<&str> {
    e.get("Var").and_then(Value::as_str)
}

/// `principal.a`, `context.a`, `context.headers.h`, `resource.a` as the fact they read.
fn access(e: &Value) -> Option<Fact> {
    let (key, body) = single(e)?;
    if key != "." {
        return None;
    }
    let attr = body.get("attr")?.as_str()?.to_owned();
    let left = body.get("left")?;
    if let Some(v) = var(left) {
        return match v {
            "principal" => Some(Fact::PrincipalAttr(attr)),
            "context" => Some(Fact::ContextAttr(attr)),
            "resource" => Some(Fact::ResourceAttr(attr)),
            _ => None,
        };
    }
    match access(left)? {
        Fact::ContextAttr(h) if h == "headers" => Some(Fact::Header(attr)),
        _ => None,
    }
}

/// The literals of a literal expression (a value, a set of them, an `ip("…")`); `None` when
/// `e` is not a literal.
fn literals(e: &Value) -> Option<Vec<Atom>> {
    if let Some(v) = e.get("Value") {
        return value_atoms(v);
    }
    let (key, body) = single(e)?;
    match key {
        "Set" => {
            let mut out = Vec::new();
            for item in body.as_array()? {
                out.extend(literals(item)?);
            }
            Some(out)
        }
        "ip" => {
            let arg = body.as_array()?.first()?.get("Value")?.as_str()?;
            Some(vec![Atom::Ip(arg.to_owned())])
        }
        _ => None,
    }
}

fn value_atoms(v: &Value) -> Option<Vec<Atom>> {
    match v {
        Value::String(s) => Some(vec![Atom::Str(s.clone())]),
        Value::Number(n) => Some(vec![Atom::Long(n.as_i64()?)]),
        Value::Bool(_) => Some(Vec::new()),
        Value::Array(items) => {
            let mut out = Vec::new();
            for i in items {
                out.extend(value_atoms(i)?);
            }
            Some(out)
        }
        Value::Object(o) => {
            let entity = o.get("__entity").unwrap_or(v);
            let ty = entity.get("type")?.as_str()?;
            let id = entity.get("id")?.as_str()?;
            Some(vec![Atom::Entity {
                ty: ty.to_owned(),
                id: id.to_owned(),
            }])
        }
        Value::Null => None,
    }
}

/// A `like` pattern's pieces (`None`: a wildcard).
fn pattern_pieces(pattern: &Value) -> Option<Vec<Option<String>>> {
    // Cedar's JSON gives one piece per character: runs are joined, wildcards merged.
    let mut out: Vec<Option<String>> = Vec::new();
    for piece in pattern.as_array()? {
        match (piece, out.last_mut()) {
            (Value::String(w), Some(None)) if w == "Wildcard" => {}
            (Value::String(w), _) if w == "Wildcard" => out.push(None),
            (Value::Object(o), last) => {
                let lit = o.get("Literal")?.as_str()?;
                match last {
                    Some(Some(run)) => run.push_str(lit),
                    _ => out.push(Some(lit.to_owned())),
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

impl Walk<'_> {
    fn unmodelled(&mut self, why: &str) {
        self.usage.unmodelled.insert(why.to_owned());
    }

    fn record(&mut self, fact: Fact, atoms: impl IntoIterator<Item = Atom>) {
        self.usage.facts.entry(fact).or_default().extend(atoms);
    }

    /// `principal == E` (`eq`) or `principal in E`.
    fn entity_test(&mut self, u: &EntityUid, pol: Pol, eq: bool) {
        let ty = u.type_name().to_string();
        let id = u.id().unescaped().to_owned();
        if ty == self.principal_type {
            // A principal has no ancestors of its own type: `in` is `==` here.
            self.record(Fact::PrincipalId, [Atom::Str(id)]);
        } else if !eq {
            if pol != Pol::Pos {
                self.usage.parents_negative = true;
            }
            self.record(Fact::Parents, [Atom::Entity { ty, id }]);
        }
        // `principal == Role::"x"` is never true of a principal: it reads nothing.
    }

    fn entity_atoms(&mut self, atoms: &[Atom], pol: Pol, eq: bool) {
        for a in atoms {
            if let Atom::Entity { ty, id } = a {
                if *ty == self.principal_type {
                    self.record(Fact::PrincipalId, [Atom::Str(id.clone())]);
                } else if !eq {
                    if pol != Pol::Pos {
                        self.usage.parents_negative = true;
                    }
                    self.record(Fact::Parents, [a.clone()]);
                }
            }
        }
    }

    fn children(&mut self, body: &Value) {
        match body {
            Value::Array(items) => {
                for i in items {
                    self.expr(i, Ctx::Value);
                }
            }
            Value::Object(o) => {
                for v in o.values() {
                    if v.is_object() {
                        self.expr(v, Ctx::Value);
                    }
                }
            }
            _ => {}
        }
    }

    fn expr(&mut self, e: &Value, ctx: Ctx) {
        if e.get("Value").is_some() {
            return;
        }
        let Some((key, body)) = single(e) else {
            self.children(e);
            return;
        };
        let left = body.get("left");
        let right = body.get("right");
        match key {
            "Var" => match body.as_str() {
                Some("action") => {}
                Some(v) => self.unmodelled(&format!("`{v}` used whole")),
                None => {}
            },
            "Slot" | "Unknown" => self.unmodelled("a template slot"),
            "&&" | "||" => {
                let inner = Ctx::Bool(ctx.pol());
                for side in [left, right].into_iter().flatten() {
                    self.expr(side, inner);
                }
            }
            "!" => {
                if let Some(arg) = body.get("arg") {
                    self.expr(arg, Ctx::Bool(ctx.pol().flip()));
                }
            }
            "if-then-else" => {
                if let Some(c) = body.get("if") {
                    self.expr(c, Ctx::Bool(Pol::Both));
                }
                for branch in [body.get("then"), body.get("else")].into_iter().flatten() {
                    self.expr(branch, ctx);
                }
            }
            "==" | "!=" => self.compare(left, right),
            "in" => self.member(left, right, ctx),
            // `fact.contains(literal)`, and `[literals].contains(fact)` alike.
            "contains" | "containsAll" | "containsAny" => {
                self.fact_vs_literals(left, right, true);
            }
            "isEmpty" => match body.get("arg").and_then(access) {
                Some(f) => self.record(f, []),
                None => self.children(body),
            },
            "has" => {
                let attr = body.get("attr").and_then(Value::as_str);
                let fact = match (left, attr) {
                    (Some(l), Some(a)) => match var(l) {
                        Some("principal") => Some(Fact::PrincipalAttr(a.to_owned())),
                        Some("context") => Some(Fact::ContextAttr(a.to_owned())),
                        Some("resource") => Some(Fact::ResourceAttr(a.to_owned())),
                        _ => match access(l) {
                            Some(Fact::ContextAttr(h)) if h == "headers" => {
                                Some(Fact::Header(a.to_owned()))
                            }
                            _ => None,
                        },
                    },
                    _ => None,
                };
                match fact {
                    Some(f) => self.record(f, []),
                    None => self.children(body),
                }
            }
            "like" => {
                let fact = left.and_then(access);
                let pieces = body.get("pattern").and_then(pattern_pieces);
                match (fact, pieces) {
                    (Some(f), Some(x)) => self.record(f, [Atom::Pattern(x)]),
                    _ => self.children(body),
                }
            }
            "<" | "<=" | ">" | ">=" => self.fact_vs_literals(left, right, true),
            "." => match (access(e), ctx) {
                // A boolean attribute used as a condition: true, false or missing.
                (Some(f), Ctx::Bool(_)) => self.record(f, []),
                (Some(f), Ctx::Value) => {
                    self.unmodelled(&format!("{} in an expression", describe(&f)));
                }
                (None, _) => self.children(body),
            },
            "is" => {
                let on_principal = left.and_then(var) == Some("principal");
                if !on_principal {
                    self.children(body);
                } else if let Some(target) = body.get("in") {
                    self.member(left, Some(target), ctx);
                }
            }
            "isInRange" => {
                let args = body.as_array();
                let fact = args.and_then(|a| a.first()).and_then(access);
                let range = args.and_then(|a| a.get(1)).and_then(literals);
                match (fact, range) {
                    (Some(f), Some(atoms)) => self.record(f, atoms),
                    _ => self.children(body),
                }
            }
            "ip" | "decimal" | "datetime" | "duration" => {
                if literals(e).is_none() {
                    self.children(body);
                }
            }
            _ => self.children(body),
        }
    }

    /// `fact OP literal` (or `literal OP fact` when `either_side`).
    fn fact_vs_literals(&mut self, left: Option<&Value>, right: Option<&Value>, either_side: bool) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        if let (Some(f), Some(atoms)) = (access(l), literals(r)) {
            self.record(f, atoms);
        } else if let (true, Some(f), Some(atoms)) = (either_side, access(r), literals(l)) {
            self.record(f, atoms);
        } else {
            self.expr(l, Ctx::Value);
            self.expr(r, Ctx::Value);
        }
    }

    fn compare(&mut self, left: Option<&Value>, right: Option<&Value>) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        for (a, b) in [(l, r), (r, l)] {
            if var(a) == Some("principal") {
                if let Some(atoms) = literals(b) {
                    self.entity_atoms(&atoms, Pol::Both, true);
                    return;
                }
            }
        }
        self.fact_vs_literals(Some(l), Some(r), true);
    }

    fn member(&mut self, left: Option<&Value>, right: Option<&Value>, ctx: Ctx) {
        let (Some(l), Some(r)) = (left, right) else {
            return;
        };
        if var(l) == Some("principal") {
            if let Some(atoms) = literals(r) {
                self.entity_atoms(&atoms, ctx.pol(), false);
                return;
            }
        }
        self.expr(l, Ctx::Value);
        self.expr(r, Ctx::Value);
    }
}

/// A fact as a reader would write it.
pub fn describe(f: &Fact) -> String {
    match f {
        Fact::Parents => "the principal's ancestors".to_owned(),
        Fact::PrincipalId => "the principal's id".to_owned(),
        Fact::PrincipalAttr(a) => format!("`principal.{a}`"),
        Fact::ContextAttr(a) => format!("`context.{a}`"),
        Fact::Header(h) => format!("`context.headers.{h}`"),
        Fact::ResourceAttr(a) => format!("`resource.{a}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(src: &str) -> Usage {
        let p = Policy::parse(None, src).expect("policy");
        of(&p, "User")
    }

    #[test]
    fn scope_and_literal_conditions_are_modelled() {
        let u = usage(
            r#"permit(principal in Role::"reader", action, resource)
               when { principal has scopes && principal.scopes.containsAny(["a", "b"])
                      && context.sourceIp == "203.0.113.66" && principal.level >= 3 };"#,
        );
        assert!(u.unmodelled.is_empty(), "{:?}", u.unmodelled);
        assert!(!u.parents_negative);
        assert_eq!(u.parent_literals(), 1);
        let scopes = &u.facts[&Fact::PrincipalAttr("scopes".into())];
        assert!(scopes.contains(&Atom::Str("a".into())) && scopes.contains(&Atom::Str("b".into())));
        assert!(u.facts[&Fact::ContextAttr("sourceIp".into())]
            .contains(&Atom::Str("203.0.113.66".into())));
        assert!(u.facts[&Fact::PrincipalAttr("level".into())].contains(&Atom::Long(3)));
    }

    #[test]
    fn negative_parent_tests_and_whole_variables_are_flagged() {
        let u = usage(r#"forbid(principal, action, resource) unless { principal in Role::"x" };"#);
        assert!(u.parents_negative);
        let u = usage(
            r#"permit(principal, action, resource) when { principal.email == context.other };"#,
        );
        assert!(!u.unmodelled.is_empty());
        let u = usage(r#"permit(principal == User::"alice", action, resource);"#);
        assert!(u.facts[&Fact::PrincipalId].contains(&Atom::Str("alice".into())));
    }

    #[test]
    fn like_patterns_and_literal_sets_are_read() {
        let u = usage(
            r#"permit(principal, action, resource) when { principal.email like "*@partner.example" };"#,
        );
        assert!(u.facts[&Fact::PrincipalAttr("email".into())]
            .contains(&Atom::Pattern(vec![None, Some("@partner.example".into())])));
        let u = usage(
            r#"permit(principal, action, resource) when { principal has email && ["a@x", "b@x"].contains(principal.email) };"#,
        );
        assert!(u.unmodelled.is_empty(), "{:?}", u.unmodelled);
        assert!(u.facts[&Fact::PrincipalAttr("email".into())].contains(&Atom::Str("b@x".into())));
    }
}
