//! Route table: the schema's `"<VERB> <path template>"` actions, and how API Gateway picks one
//! of them for a concrete request.
//!
//! Stage: bundle load (parsing, checks) and request time (routing, in `serve` and in the IAM
//! analysis). Input: action names. Output: a [`RouteTable`] that answers "which route receives
//! `GET /pets/42`?".
//!
//! Invariants:
//! - A route name is an HTTP API route key: an upper-case verb or `ANY`, one space, and a path
//!   template (`/`, or `/`-separated segments; `{param}` is one segment, `{proxy+}` one or more
//!   and only last). `$connect` is the WebSocket connect route; `$default` is an HTTP API's
//!   catch-all route, which receives every request that no other route matches.
//! - Literal segments never contain characters that IAM treats as wildcards (`*`, `?`) or policy
//!   variables (`$`), so a template turned into an ARN pattern means what it says.
//! - Two routes that API Gateway could not tell apart (same verb, same template up to parameter
//!   names) are an error.
//! - Routing follows API Gateway's precedence, decided segment by segment from the left: a literal
//!   segment beats `{param}`, which beats `{proxy+}`; among routes on the same template an explicit
//!   verb beats `ANY`. A route that matches the path but not the verb is skipped, as HTTP APIs do.
//!   Parameters match any segment value, including an empty one; the path `/` is matched only by
//!   the route `/`. A request no route matches goes to `$default` when the table has one.
//!
//! Execute-api resources name a request as `VERB/path` (REST, HTTP API, the routes of an HTTP
//! API's `$default` route as well), or by a route key without a verb: `$connect` (WebSocket) and
//! `$default` (the resource API Gateway may name the HTTP API catch-all route by). Both forms
//! are routed here, so the IAM analysis covers both.

use std::collections::BTreeMap;
use std::fmt;

/// The HTTP methods API Gateway routes. `ANY` stands for all of them.
pub const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The WebSocket connect route: the only WebSocket route that calls an authorizer.
pub const WEBSOCKET_CONNECT: &str = "$connect";

/// The HTTP API catch-all route: it receives every request no other route matches.
pub const HTTP_DEFAULT: &str = "$default";

/// One HTTP method, as an index into [`METHODS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Method(u8);

impl Method {
    pub fn parse(s: &str) -> Option<Self> {
        METHODS
            .iter()
            .position(|m| *m == s)
            .and_then(|i| u8::try_from(i).ok())
            .map(Method)
    }
    pub fn all() -> impl Iterator<Item = Method> {
        (0..METHODS.len())
            .filter_map(|i| u8::try_from(i).ok())
            .map(Method)
    }
    pub fn as_str(self) -> &'static str {
        METHODS.get(usize::from(self.0)).copied().unwrap_or("GET")
    }
    fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verb part of a route key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteMethod {
    One(Method),
    Any,
}

impl RouteMethod {
    pub fn matches(self, m: Method) -> bool {
        match self {
            Self::One(x) => x == m,
            Self::Any => true,
        }
    }
}

/// One segment of a path template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    /// `{name}`: exactly one segment.
    Param(String),
    /// `{name+}`: one or more segments; only last.
    Proxy(String),
}

/// What a route is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteKind {
    Http {
        method: RouteMethod,
        segments: Vec<Segment>,
    },
    WebSocketConnect,
    /// HTTP API `$default`: every verb and path that no other route receives.
    HttpDefault,
}

/// A route of the API: one Cedar action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The action id, exactly as written in the schema (`GET /pets/{petId}`).
    pub name: String,
    pub kind: RouteKind,
}

/// Index of a route in its [`RouteTable`].
pub type RouteId = usize;

/// A route name that cannot be a route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route `{name}`: {reason}")]
    Malformed { name: String, reason: String },
    #[error("routes `{first}` and `{second}` are the same route to API Gateway (same verb and path up to parameter names)")]
    Duplicate { first: String, second: String },
}

fn malformed(name: &str, reason: impl Into<String>) -> RouteError {
    RouteError::Malformed {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Characters allowed in a literal path segment. Deliberately excludes `*` and `?` (IAM
/// wildcards), `$` (IAM policy variables), `{}` (template syntax), whitespace and `/`.
fn literal_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:@!'()+,;=%&".contains(c)
}

fn param_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Route {
    /// Parses an action name. `Ok(None)`: not a route (an action group such as `read`), which is
    /// any name without a space that is not `$connect` or `$default`.
    pub fn parse(name: &str) -> Result<Option<Route>, RouteError> {
        let special = match name {
            WEBSOCKET_CONNECT => Some(RouteKind::WebSocketConnect),
            HTTP_DEFAULT => Some(RouteKind::HttpDefault),
            _ => None,
        };
        if let Some(kind) = special {
            return Ok(Some(Route {
                name: name.to_owned(),
                kind,
            }));
        }
        let Some((verb, path)) = name.split_once(' ') else {
            if name.starts_with('/') {
                return Err(malformed(
                    name,
                    "a route needs a verb: `GET /path` or `ANY /path`",
                ));
            }
            return Ok(None);
        };
        let method = if verb == "ANY" {
            RouteMethod::Any
        } else {
            RouteMethod::One(Method::parse(verb).ok_or_else(|| {
                malformed(
                    name,
                    format!("`{verb}` is not ANY or one of {}", METHODS.join(", ")),
                )
            })?)
        };
        let segments = parse_template(name, path)?;
        Ok(Some(Route {
            name: name.to_owned(),
            kind: RouteKind::Http { method, segments },
        }))
    }

    /// The segments of an HTTP route (empty for `/`, `$connect` and `$default`).
    pub fn segments(&self) -> &[Segment] {
        match &self.kind {
            RouteKind::Http { segments, .. } => segments,
            RouteKind::WebSocketConnect | RouteKind::HttpDefault => &[],
        }
    }

    /// What API Gateway compares to tell routes apart: the verb and the template with parameter
    /// names left out (`GET /pets/{}`), or the route key itself (`$connect`, `$default`).
    pub fn shape(&self) -> String {
        match &self.kind {
            RouteKind::WebSocketConnect | RouteKind::HttpDefault => self.name.clone(),
            RouteKind::Http { method, segments } => {
                let verb = match method {
                    RouteMethod::One(m) => m.as_str(),
                    RouteMethod::Any => "ANY",
                };
                let mut path = String::new();
                for seg in segments {
                    path.push('/');
                    match seg {
                        Segment::Literal(l) => path.push_str(l),
                        Segment::Param(_) => path.push_str("{}"),
                        Segment::Proxy(_) => path.push_str("{+}"),
                    }
                }
                if path.is_empty() {
                    path.push('/');
                }
                format!("{verb} {path}")
            }
        }
    }
}

fn parse_template(name: &str, path: &str) -> Result<Vec<Segment>, RouteError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(malformed(name, "the path must start with `/`"));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let mut segments = Vec::with_capacity(parts.len());
    let mut names: Vec<&str> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            return Err(malformed(
                name,
                "empty path segment (a doubled or trailing `/`)",
            ));
        }
        if let Some(inner) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
            let (pname, proxy) = match inner.strip_suffix('+') {
                Some(p) => (p, true),
                None => (inner, false),
            };
            if !param_name_ok(pname) {
                return Err(malformed(
                    name,
                    format!("`{part}` is not a valid parameter"),
                ));
            }
            if names.contains(&pname) {
                return Err(malformed(
                    name,
                    format!("parameter `{pname}` appears twice"),
                ));
            }
            names.push(pname);
            if proxy {
                if i + 1 != parts.len() {
                    return Err(malformed(
                        name,
                        format!("`{part}` must be the last segment"),
                    ));
                }
                segments.push(Segment::Proxy(pname.to_owned()));
            } else {
                segments.push(Segment::Param(pname.to_owned()));
            }
        } else {
            if let Some(bad) = part.chars().find(|c| !literal_char_ok(*c)) {
                return Err(malformed(
                    name,
                    format!("segment `{part}` contains `{bad}`, which API Gateway paths or IAM patterns cannot carry literally"),
                ));
            }
            segments.push(Segment::Literal((*part).to_owned()));
        }
    }
    Ok(segments)
}

/// Methods registered on one node of the routing tree.
#[derive(Clone, Debug, Default)]
struct Methods {
    explicit: [Option<RouteId>; 7],
    any: Option<RouteId>,
}

impl Methods {
    fn get(&self, m: Method) -> Option<RouteId> {
        self.explicit.get(m.index()).copied().flatten().or(self.any)
    }
    fn slot(&mut self, m: RouteMethod) -> Option<&mut Option<RouteId>> {
        match m {
            RouteMethod::One(x) => self.explicit.get_mut(x.index()),
            RouteMethod::Any => Some(&mut self.any),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Node {
    methods: Methods,
    literal: BTreeMap<String, Node>,
    param: Option<Box<Node>>,
    proxy: Methods,
}

/// The routes of an API and API Gateway's choice among them.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    root: Node,
    connect: Option<RouteId>,
    default: Option<RouteId>,
}

impl RouteTable {
    /// A table of route names, for unit tests; panics on a name that is not a valid route.
    #[cfg(test)]
    #[allow(clippy::unwrap_used)]
    pub(crate) fn of(names: &[&str]) -> Self {
        RouteTable::new(
            names
                .iter()
                .map(|n| Route::parse(n).unwrap().unwrap())
                .collect(),
        )
        .unwrap()
    }

    /// Builds the table; refuses routes that API Gateway could not tell apart.
    pub fn new(routes: Vec<Route>) -> Result<Self, RouteError> {
        let mut table = RouteTable {
            routes: Vec::new(),
            root: Node::default(),
            connect: None,
            default: None,
        };
        for route in routes {
            let id = table.routes.len();
            let existing = match &route.kind {
                RouteKind::WebSocketConnect => table.connect.replace(id),
                RouteKind::HttpDefault => table.default.replace(id),
                RouteKind::Http { method, segments } => {
                    let mut node = &mut table.root;
                    let mut proxy = false;
                    for seg in segments {
                        match seg {
                            Segment::Literal(l) => {
                                node = node.literal.entry(l.clone()).or_default()
                            }
                            Segment::Param(_) => {
                                node = node.param.get_or_insert_with(Default::default)
                            }
                            Segment::Proxy(_) => proxy = true,
                        }
                    }
                    let methods = if proxy {
                        &mut node.proxy
                    } else {
                        &mut node.methods
                    };
                    methods.slot(*method).and_then(|s| s.replace(id))
                }
            };
            if let Some(prev) = existing {
                let first = table
                    .routes
                    .get(prev)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                return Err(RouteError::Duplicate {
                    first,
                    second: route.name,
                });
            }
            table.routes.push(route);
        }
        Ok(table)
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn get(&self, id: RouteId) -> Option<&Route> {
        self.routes.get(id)
    }

    pub fn id_of(&self, name: &str) -> Option<RouteId> {
        self.routes.iter().position(|r| r.name == name)
    }

    /// The route API Gateway sends `method path` to. `path` is the request path (`/pets/42`;
    /// a missing leading `/` is tolerated, as in method ARNs).
    pub fn route(&self, method: Method, path: &str) -> Option<RouteId> {
        self.route_relative(method, path.strip_prefix('/').unwrap_or(path))
    }

    /// Routes a path given without its leading `/` (as in a method ARN): `""` is the root,
    /// `"/x"` is an empty segment followed by `x`.
    fn route_relative(&self, method: Method, rel: &str) -> Option<RouteId> {
        let found = if rel.is_empty() {
            self.root.methods.get(method)
        } else {
            let segs: Vec<&str> = rel.split('/').collect();
            find(&self.root, &segs, method)
        };
        found.or(self.default)
    }

    /// The WebSocket `$connect` route, when the schema has one.
    pub fn connect_route(&self) -> Option<RouteId> {
        self.connect
    }

    /// The HTTP API `$default` route, when the schema has one.
    pub fn default_route(&self) -> Option<RouteId> {
        self.default
    }

    /// The route for the part of an execute-api resource after `{stage}/`: `GET/pets/42`,
    /// `GET/` (the root path), `$connect` or `$default`.
    pub fn route_resource(&self, resource: &str) -> Option<RouteId> {
        match resource {
            WEBSOCKET_CONNECT => return self.connect,
            HTTP_DEFAULT => return self.default,
            _ => {}
        }
        let (verb, rel) = resource.split_once('/')?;
        self.route_relative(Method::parse(verb)?, rel)
    }

    /// [`Self::route_resource`] on a resource given as symbols (`["GET", "pets", "42"]`,
    /// `["GET", ""]` for the root).
    pub fn route_symbols(&self, symbols: &[&str]) -> Option<RouteId> {
        match symbols {
            [single] if *single == WEBSOCKET_CONNECT => self.connect,
            [single] if *single == HTTP_DEFAULT => self.default,
            [verb, ""] => {
                let m = Method::parse(verb)?;
                self.root.methods.get(m).or(self.default)
            }
            [verb, rest @ ..] if !rest.is_empty() => {
                let m = Method::parse(verb)?;
                find(&self.root, rest, m).or(self.default)
            }
            _ => None,
        }
    }
}

/// Depth-first search in precedence order: literal child, then parameter, then proxy. The
/// first complete match is the most specific route.
fn find(node: &Node, segs: &[&str], m: Method) -> Option<RouteId> {
    let Some((head, rest)) = segs.split_first() else {
        return node.methods.get(m);
    };
    if let Some(child) = node.literal.get(*head) {
        if let Some(found) = find(child, rest, m) {
            return Some(found);
        }
    }
    if let Some(child) = &node.param {
        if let Some(found) = find(child, rest, m) {
            return Some(found);
        }
    }
    node.proxy.get(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(names: &[&str]) -> RouteTable {
        RouteTable::of(names)
    }

    fn routed<'a>(t: &'a RouteTable, verb: &str, path: &str) -> Option<&'a str> {
        t.route(Method::parse(verb).unwrap(), path)
            .map(|id| t.get(id).unwrap().name.as_str())
    }

    #[test]
    fn parses_route_keys_and_groups() {
        assert_eq!(Route::parse("read").unwrap(), None);
        assert_eq!(Route::parse("read:svc0").unwrap(), None);
        let r = Route::parse("GET /pets/{petId}/files/{path+}")
            .unwrap()
            .unwrap();
        assert_eq!(
            r.segments(),
            &[
                Segment::Literal("pets".into()),
                Segment::Param("petId".into()),
                Segment::Literal("files".into()),
                Segment::Proxy("path".into())
            ]
        );
        assert_eq!(Route::parse("ANY /").unwrap().unwrap().segments(), &[]);
        assert_eq!(
            Route::parse("$connect").unwrap().unwrap().kind,
            RouteKind::WebSocketConnect
        );
        assert_eq!(
            Route::parse("$default").unwrap().unwrap().kind,
            RouteKind::HttpDefault
        );
        assert_eq!(Route::parse("$disconnect").unwrap(), None);
    }

    #[test]
    fn shapes_ignore_parameter_names() {
        let a = Route::parse("GET /pets/{id}/{rest+}").unwrap().unwrap();
        let b = Route::parse("GET /pets/{petId}/{path+}").unwrap().unwrap();
        assert_eq!(a.shape(), b.shape());
        assert_eq!(a.shape(), "GET /pets/{}/{+}");
        assert_eq!(Route::parse("ANY /").unwrap().unwrap().shape(), "ANY /");
        assert_eq!(
            Route::parse("$default").unwrap().unwrap().shape(),
            "$default"
        );
    }

    #[test]
    fn default_route_takes_what_no_other_route_matches() {
        let t = table(&["GET /pets/{id}", "GET /", "$default", "$connect"]);
        assert_eq!(routed(&t, "GET", "/pets/1"), Some("GET /pets/{id}"));
        assert_eq!(routed(&t, "GET", "/"), Some("GET /"));
        assert_eq!(routed(&t, "POST", "/"), Some("$default"));
        assert_eq!(routed(&t, "POST", "/pets/1"), Some("$default"));
        assert_eq!(routed(&t, "GET", "/pets/1/x"), Some("$default"));
        let name = |id: Option<usize>| id.map(|i| t.get(i).unwrap().name.clone());
        assert_eq!(
            name(t.route_resource("$default")).as_deref(),
            Some("$default")
        );
        assert_eq!(
            name(t.route_resource("GET/zzz")).as_deref(),
            Some("$default")
        );
        assert_eq!(
            name(t.route_symbols(&["DELETE", ""])).as_deref(),
            Some("$default")
        );
        assert_eq!(
            name(t.route_symbols(&["$connect"])).as_deref(),
            Some("$connect")
        );
        // Not a request at all: no fallback.
        assert_eq!(t.route_resource("FETCH/pets/1"), None);
        assert_eq!(t.route_symbols(&["$disconnect"]), None);
        // Without `$connect`, the connect resource reaches nothing, `$default` or not.
        let t = table(&["$default"]);
        assert_eq!(t.route_resource("$connect"), None);
    }

    #[test]
    fn refuses_malformed_routes() {
        for bad in [
            "get /pets",
            "FETCH /pets",
            "GET pets",
            "GET /pets/",
            "GET //pets",
            "GET /pets/{proxy+}/x",
            "GET /pets/{id}/{id}",
            "GET /pe*ts",
            "GET /pets?",
            "GET /${aws:username}",
            "GET /{}",
            "GET /a b",
            "/pets",
        ] {
            assert!(Route::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn refuses_routes_api_gateway_cannot_tell_apart() {
        let routes = ["GET /pets/{id}", "GET /pets/{petId}"]
            .iter()
            .map(|n| Route::parse(n).unwrap().unwrap())
            .collect();
        assert!(matches!(
            RouteTable::new(routes),
            Err(RouteError::Duplicate { .. })
        ));
        // Same template, different verbs, is fine; so is ANY beside GET.
        table(&["GET /pets/{id}", "PUT /pets/{petId}", "ANY /pets/{x}"]);
    }

    #[test]
    fn precedence_literal_then_param_then_proxy() {
        let t = table(&[
            "GET /pets/dog/1",
            "GET /pets/dog/{id}",
            "GET /pets/{proxy+}",
            "ANY /{proxy+}",
            "GET /",
        ]);
        assert_eq!(routed(&t, "GET", "/pets/dog/1"), Some("GET /pets/dog/1"));
        assert_eq!(routed(&t, "GET", "/pets/dog/2"), Some("GET /pets/dog/{id}"));
        assert_eq!(routed(&t, "GET", "/pets/cat/1"), Some("GET /pets/{proxy+}"));
        assert_eq!(routed(&t, "POST", "/pets/dog/1"), Some("ANY /{proxy+}"));
        assert_eq!(routed(&t, "GET", "/"), Some("GET /"));
        assert_eq!(routed(&t, "POST", "/"), None);
        assert_eq!(routed(&t, "GET", "/pets"), Some("ANY /{proxy+}"));
    }

    #[test]
    fn explicit_verb_beats_any_on_the_same_template() {
        let t = table(&["ANY /pets/{id}", "DELETE /pets/{id}"]);
        assert_eq!(routed(&t, "DELETE", "/pets/1"), Some("DELETE /pets/{id}"));
        assert_eq!(routed(&t, "GET", "/pets/1"), Some("ANY /pets/{id}"));
    }

    #[test]
    fn backtracks_when_the_literal_branch_fails() {
        let t = table(&["GET /a/{x}/c", "GET /{y}/b/d"]);
        assert_eq!(routed(&t, "GET", "/a/b/d"), Some("GET /{y}/b/d"));
        assert_eq!(routed(&t, "GET", "/a/b/c"), Some("GET /a/{x}/c"));
    }

    #[test]
    fn proxy_needs_at_least_one_segment_and_root_is_its_own_route() {
        let t = table(&["GET /files/{p+}", "GET /{p+}"]);
        assert_eq!(routed(&t, "GET", "/files"), Some("GET /{p+}"));
        assert_eq!(routed(&t, "GET", "/files/a/b/c"), Some("GET /files/{p+}"));
        assert_eq!(routed(&t, "GET", "/"), None);
    }

    #[test]
    fn resources_and_symbols_agree() {
        let t = table(&["GET /", "GET /pets/{id}", "$connect"]);
        assert_eq!(t.route_resource("GET/"), t.route_symbols(&["GET", ""]));
        assert_eq!(
            t.route_resource("GET/pets/1"),
            t.route_symbols(&["GET", "pets", "1"])
        );
        assert_eq!(t.route_resource("$connect"), t.connect_route());
        assert_eq!(t.route_symbols(&["$connect"]), t.connect_route());
        assert_eq!(t.route_resource("FETCH/pets/1"), None);
        // After the verb comes the path without its leading slash: `GET//pets/1` has an empty
        // first segment and is not `GET /pets/1`.
        assert_eq!(t.route_resource("GET//pets/1"), None);
    }
}
