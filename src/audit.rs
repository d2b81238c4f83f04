//! The decision log and the metrics: one JSON line per authorizer call.
//!
//! Stage: the handler's last step. Input: a [`Record`] of one call, filled by the handler
//! (who asked, for what, what the policies said, what was answered, how long it took), and the
//! process's counters (key fetches, policy refreshes). Output: one line on stderr that is both
//! the audit record a security team reads and a CloudWatch Embedded Metric Format (EMF)
//! document: CloudWatch turns the `_aws` member and the PascalCase numbers beside it into
//! metrics, and keeps the rest searchable in Logs Insights. The README's "Decision log" and
//! "Metrics" sections document every field.
//!
//! ## Why not through `tracing`
//! The diagnostic log honours `CEDARGATE_LOG` and Lambda's `AWS_LAMBDA_LOG_LEVEL`; the audit
//! trail must not. A line written here is written whatever the filter says, always as JSON.
//! Lambda's own application log-level filter (JSON log format) drops lines whose `level` is
//! below `AWS_LAMBDA_LOG_LEVEL`, so the line carries that level when it is above `INFO`
//! ([`crate::config::audit_level`]).
//!
//! ## Why hand-written EMF
//! EMF is one JSON shape (`_aws.CloudWatchMetrics[].{Namespace, Dimensions, Metrics}` and the
//! values at top level). The crates that emit it (`metrics_cloudwatch_embedded`, ...) are built
//! on the `metrics` facade and flush one document per metric set on their own schedule; here
//! the metrics belong in the decision line that is written anyway, so one line per call
//! carries everything, with no extra dependency and one `write` per invocation.
//!
//! Invariants: never a token, nor any part of one (only the fingerprint: 8 bytes of its
//! SHA-256); never a header value; the principal hashed when `CEDARGATE_LOG_PRINCIPAL=hash`.
//! Field names are a contract (README): add fields, never rename them.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
#[cfg(test)]
use std::sync::Mutex;
use std::time::SystemTime;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Mode, ObserveConfig, PrincipalLogging};
use crate::time::{rfc3339_millis, unix_millis};

/// At most this many granted route names are listed in a line; beyond it, the count and the
/// digest stand for the set (the names of a large API would make every line kilobytes long).
pub const GRANTED_LISTED: usize = 64;

/// What one call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The requested route is allowed.
    Allow,
    /// A valid token, the requested route not permitted (403).
    Deny,
    /// No usable token, or claims the schema cannot take (401).
    Unauthorized,
    /// No valid policy bundle: everything denied (or, in shadow mode, allowed).
    Error,
}

impl Outcome {
    fn metric(self) -> &'static str {
        match self {
            Outcome::Allow => "Allow",
            Outcome::Deny => "Deny",
            Outcome::Unauthorized => "Unauthorized",
            Outcome::Error => "Error",
        }
    }
}

/// Whether a cache answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cache {
    Hit,
    Miss,
}

/// A policy that failed to evaluate, on a route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub route: String,
    pub error: String,
}

/// One call, as the handler saw it. Everything is optional but the id: a call refused early
/// knows little.
#[derive(Debug, Clone)]
pub struct Record {
    pub decision_id: String,
    /// What enforcing mode answers (in shadow mode: what it would have answered).
    pub outcome: Outcome,
    /// What was answered: differs from `outcome` only in shadow mode.
    pub answer: Outcome,
    pub principal: Option<String>,
    /// The token's fingerprint (never the token).
    pub token: Option<String>,
    pub flavor: Option<&'static str>,
    pub arn: Option<String>,
    pub route: Option<String>,
    /// The policies that determined the requested route's decision.
    pub reasons: Vec<String>,
    pub policy_errors: Vec<PolicyError>,
    pub revision: Option<String>,
    pub token_cache: Option<Cache>,
    pub decision_cache: Option<Cache>,
    /// The routes the answer grants (a cached answer grants them all), in route order.
    pub granted: Arc<Granted>,
    /// Why the call was refused (`unauthorized`, `error`).
    pub reason: Option<String>,
    pub latency_us: u64,
    /// Seconds since the bundle in use was last confirmed current (loaded, or found unchanged).
    pub bundle_age_s: Option<u64>,
}

impl Record {
    pub fn new(decision_id: String) -> Self {
        Self {
            decision_id,
            outcome: Outcome::Unauthorized,
            answer: Outcome::Unauthorized,
            principal: None,
            token: None,
            flavor: None,
            arn: None,
            route: None,
            reasons: Vec::new(),
            policy_errors: Vec::new(),
            revision: None,
            token_cache: None,
            decision_cache: None,
            granted: Granted::none(),
            reason: None,
            latency_us: 0,
            bundle_age_s: None,
        }
    }

    /// Refused with 401, for `reason`.
    pub fn unauthorized(&mut self, reason: impl Into<String>) {
        self.outcome = Outcome::Unauthorized;
        self.answer = Outcome::Unauthorized;
        self.reason = Some(reason.into());
    }
}

/// Counts of events that happen outside calls (key fetches, policy refreshes), as totals; each
/// line reports what was added since the line before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub jwks_fetches: u64,
    pub jwks_failures: u64,
    pub refreshes: u64,
    pub refresh_failures: u64,
}

/// The totals already reported, so that each event is counted in exactly one line.
#[derive(Debug, Default)]
struct Reported {
    jwks_fetches: AtomicU64,
    jwks_failures: AtomicU64,
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
}

impl Reported {
    /// What `now` adds to the totals reported so far (and records `now` as reported).
    fn since(&self, now: Totals) -> Totals {
        // `fetch_max` keeps the largest total seen, so two calls racing never report one
        // event twice nor a negative count.
        let delta = |seen: &AtomicU64, total: u64| {
            total.saturating_sub(seen.fetch_max(total, Ordering::Relaxed))
        };
        Totals {
            jwks_fetches: delta(&self.jwks_fetches, now.jwks_fetches),
            jwks_failures: delta(&self.jwks_failures, now.jwks_failures),
            refreshes: delta(&self.refreshes, now.refreshes),
            refresh_failures: delta(&self.refresh_failures, now.refresh_failures),
        }
    }
}

/// Where lines go: stderr, or (unit tests) a list.
#[derive(Debug, Clone, Default)]
enum Sink {
    #[default]
    Stderr,
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<String>>>),
}

/// Writes decision lines.
#[derive(Debug)]
pub struct Audit {
    cfg: ObserveConfig,
    reported: Reported,
    sink: Sink,
    /// Ids for calls that bring none (`invoke`, `serve`).
    local: LocalIds,
    /// The EMF directive (`CloudWatchMetrics`) as JSON, by which optional metrics a line has:
    /// it is the same text for every line of a kind, so it is written once, not per call.
    directives: [std::sync::OnceLock<Option<Box<RawValue>>>; 1 << OPTIONAL_METRICS.len()],
}

/// The metrics a line may leave out (see [`Line::metrics`]).
const OPTIONAL_METRICS: [&str; 4] = [
    "ShadowAllowed",
    "TokenCacheHit",
    "DecisionCacheHit",
    "BundleAgeSeconds",
];

impl Audit {
    pub fn new(cfg: ObserveConfig) -> Self {
        Self {
            cfg,
            reported: Reported::default(),
            sink: Sink::Stderr,
            local: LocalIds::new(),
            directives: Default::default(),
        }
    }

    #[cfg(test)]
    pub fn in_memory(cfg: ObserveConfig) -> (Self, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut audit = Self::new(cfg);
        audit.sink = Sink::Memory(lines.clone());
        (audit, lines)
    }

    pub fn config(&self) -> &ObserveConfig {
        &self.cfg
    }

    /// Says at start-up, whatever the log level, that decisions are not enforced (shadow mode);
    /// nothing in enforcing mode.
    pub fn announce(&self) {
        if self.cfg.mode != Mode::Shadow {
            return;
        }
        let level = match self.cfg.audit_level {
            "INFO" => "WARN",
            other => other,
        };
        let acknowledged = if self.cfg.shadow_acknowledged {
            " (CEDARGATE_SHADOW_ACKNOWLEDGED=true)"
        } else {
            ""
        };
        let line = serde_json::json!({
            "level": level,
            "timestamp": rfc3339_millis(unix_millis(SystemTime::now())),
            "event": "shadow_mode",
            "message": format!("CEDARGATE_MODE=shadow{acknowledged}: policies are NOT enforced; every route of the stage is allowed for any valid token, and what enforcing mode would deny is logged (outcome `deny`, answer `allow`) and counted (ShadowAllowed)"),
        });
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    /// A decision id for a call that brings none.
    pub fn local_id(&self) -> String {
        self.local.next()
    }

    /// The principal as logs show it.
    pub fn principal(&self, id: &str) -> String {
        match &self.cfg.principal {
            PrincipalLogging::Plain => id.to_owned(),
            PrincipalLogging::Hash { salt } => hashed_principal(salt, id),
        }
    }

    /// Writes the line for `record`, with the events counted in `totals` since the last line.
    pub fn write(&self, record: &Record, totals: Totals) {
        let line = self.line(record, totals, SystemTime::now());
        match &self.sink {
            Sink::Stderr => {
                // One write of the whole line, so lines of concurrent calls never interleave.
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
            #[cfg(test)]
            Sink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(line.trim_end().to_owned()),
        }
    }

    /// The line's text, newline included.
    fn line(&self, record: &Record, totals: Totals, now: SystemTime) -> String {
        let delta = self.reported.since(totals);
        let mut line = Line {
            cfg: &self.cfg,
            r: record,
            delta,
            millis: unix_millis(now),
            metrics: Vec::new(),
            directive: None,
        };
        if let Some(namespace) = &self.cfg.metrics_namespace {
            line.metrics = line.metrics();
            let kind = OPTIONAL_METRICS
                .iter()
                .enumerate()
                .filter(|(_, name)| line.metrics.iter().any(|(m, _, _)| m == *name))
                .fold(0usize, |k, (i, _)| k | 1 << i);
            line.directive = self.directives.get(kind).and_then(|slot| {
                slot.get_or_init(|| directive(namespace, &line.metrics))
                    .as_deref()
            });
        }
        let mut text = serde_json::to_string(&line).unwrap_or_else(|e| {
            format!(
                r#"{{"event":"decision","decision_id":{},"error":{}}}"#,
                Value::from(record.decision_id.as_str()),
                Value::from(e.to_string())
            )
        });
        text.push('\n');
        text
    }
}

/// `sha256:` and the first 16 hex digits of SHA-256(salt, NUL, id): the same principal gives
/// the same value (lines stay joinable per caller), the id cannot be read back, and with a
/// secret salt it cannot be confirmed by hashing guesses (emails are easy to guess).
pub fn hashed_principal(salt: &str, id: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    let digest = h.finalize();
    format!(
        "sha256:{}",
        hex::encode(digest.get(..8).unwrap_or_default())
    )
}

/// A granted set as the line writes it: the count, the digest, and the route names when there
/// are at most [`GRANTED_LISTED`]. Built once per (bundle, set) by the handler and shared: the
/// digest and the names cost more than the rest of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub count: usize,
    pub digest: String,
    pub listed: Option<Vec<String>>,
}

impl Granted {
    /// The set of `routes` (names, in route order).
    pub fn of(routes: Vec<String>) -> Self {
        Self {
            count: routes.len(),
            digest: granted_digest(&routes),
            listed: (routes.len() <= GRANTED_LISTED).then_some(routes),
        }
    }

    /// The empty set (a refused call), built once.
    pub fn none() -> Arc<Self> {
        static NONE: std::sync::OnceLock<Arc<Granted>> = std::sync::OnceLock::new();
        NONE.get_or_init(|| Arc::new(Granted::of(Vec::new())))
            .clone()
    }
}

/// A digest of a granted set: the first 16 hex digits of SHA-256 over the route names, each
/// followed by a newline, in route order. Equal sets (of the same route table) give equal
/// digests; `""` hashes the empty set.
pub fn granted_digest(routes: &[String]) -> String {
    let mut h = Sha256::new();
    for r in routes {
        h.update(r.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize().get(..8).unwrap_or_default())
}

/// Decision ids made here: `local-` and 8 hex digits that differ per process (from the start
/// time and the process id), then a counter. Unique within a process, and across processes
/// in practice; the Lambda uses its request id instead.
#[derive(Debug)]
struct LocalIds {
    prefix: String,
    next: AtomicU64,
}

impl LocalIds {
    fn new() -> Self {
        let mut h = Sha256::new();
        h.update(unix_millis(SystemTime::now()).to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        let digest = h.finalize();
        Self {
            prefix: format!("local-{}", hex::encode(digest.get(..4).unwrap_or_default())),
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The line: the record's fields, then the embedded metrics.
struct Line<'a> {
    cfg: &'a ObserveConfig,
    r: &'a Record,
    delta: Totals,
    millis: i64,
    /// The metrics and their EMF directive, when metrics are on.
    metrics: Vec<(&'static str, &'static str, Number)>,
    directive: Option<&'a RawValue>,
}

/// The EMF directive declaring `metrics` in `namespace`, as JSON (`None` only if serde_json
/// could not write it, which plain strings never cause: the line then has no metrics).
fn directive(
    namespace: &str,
    metrics: &[(&'static str, &'static str, Number)],
) -> Option<Box<RawValue>> {
    let declared: Vec<Declared> = metrics
        .iter()
        .map(|(name, unit, _)| Declared { name, unit })
        .collect();
    serde_json::value::to_raw_value(&[Directive {
        namespace,
        dimensions: [["FunctionName"]],
        metrics: declared,
    }])
    .ok()
}

impl Serialize for Line<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.r;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("level", self.cfg.audit_level)?;
        m.serialize_entry("timestamp", &rfc3339_millis(self.millis))?;
        m.serialize_entry("event", "decision")?;
        m.serialize_entry("decision_id", &r.decision_id)?;
        m.serialize_entry("mode", self.cfg.mode.as_str())?;
        m.serialize_entry("outcome", &r.outcome)?;
        m.serialize_entry("answer", &r.answer)?;
        if let Some(p) = &r.principal {
            m.serialize_entry("principal", p)?;
        }
        if let Some(t) = &r.token {
            m.serialize_entry("token", t)?;
        }
        if let Some(f) = r.flavor {
            m.serialize_entry("flavor", f)?;
        }
        if let Some(a) = &r.arn {
            m.serialize_entry("arn", a)?;
        }
        if let Some(route) = &r.route {
            m.serialize_entry("route", route)?;
        }
        m.serialize_entry("reasons", &r.reasons)?;
        m.serialize_entry("policy_errors", &r.policy_errors)?;
        if let Some(rev) = &r.revision {
            m.serialize_entry("revision", rev)?;
        }
        if let Some(c) = r.token_cache {
            m.serialize_entry("token_cache", &c)?;
        }
        if let Some(c) = r.decision_cache {
            m.serialize_entry("decision_cache", &c)?;
        }
        m.serialize_entry("granted_count", &r.granted.count)?;
        m.serialize_entry("granted_digest", &r.granted.digest)?;
        if let Some(listed) = &r.granted.listed {
            m.serialize_entry("granted", listed)?;
        }
        if let Some(reason) = &r.reason {
            m.serialize_entry("reason", reason)?;
        }
        m.serialize_entry("latency_us", &r.latency_us)?;
        if let Some(directive) = self.directive {
            m.serialize_entry(
                "_aws",
                &Aws {
                    timestamp: self.millis,
                    cloud_watch_metrics: directive,
                },
            )?;
            m.serialize_entry("FunctionName", &self.cfg.function_name)?;
            for (name, _, value) in &self.metrics {
                m.serialize_entry(name, value)?;
            }
        }
        m.end()
    }
}

/// A metric value: a count or a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(untagged)]
enum Number {
    Int(u64),
    Float(f64),
}

impl Line<'_> {
    /// The metrics of this line: name, unit, value. A metric that does not apply to the call
    /// (a token cache outcome without a token) is left out rather than reported as 0.
    fn metrics(&self) -> Vec<(&'static str, &'static str, Number)> {
        let r = self.r;
        let one = |yes: bool| Number::Int(u64::from(yes));
        let mut out = Vec::with_capacity(14);
        for o in [
            Outcome::Allow,
            Outcome::Deny,
            Outcome::Unauthorized,
            Outcome::Error,
        ] {
            out.push((o.metric(), "Count", one(r.outcome == o)));
        }
        if self.cfg.mode == Mode::Shadow {
            out.push((
                "ShadowAllowed",
                "Count",
                one(r.answer == Outcome::Allow && r.outcome != Outcome::Allow),
            ));
        }
        out.push((
            "Latency",
            "Milliseconds",
            Number::Float(r.latency_us as f64 / 1000.0),
        ));
        if let Some(c) = r.token_cache {
            out.push(("TokenCacheHit", "Count", one(c == Cache::Hit)));
        }
        if let Some(c) = r.decision_cache {
            out.push(("DecisionCacheHit", "Count", one(c == Cache::Hit)));
        }
        let d = self.delta;
        out.push(("JwksFetches", "Count", Number::Int(d.jwks_fetches)));
        out.push(("JwksFetchFailures", "Count", Number::Int(d.jwks_failures)));
        out.push(("PolicyRefreshes", "Count", Number::Int(d.refreshes)));
        out.push((
            "PolicyRefreshFailures",
            "Count",
            Number::Int(d.refresh_failures),
        ));
        if let Some(age) = r.bundle_age_s {
            out.push(("BundleAgeSeconds", "Seconds", Number::Int(age)));
        }
        out
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Aws<'a> {
    timestamp: i64,
    cloud_watch_metrics: &'a RawValue,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Directive<'a> {
    namespace: &'a str,
    dimensions: [[&'static str; 1]; 1],
    metrics: Vec<Declared>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Declared {
    name: &'static str,
    unit: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Record {
        Record {
            outcome: Outcome::Allow,
            answer: Outcome::Allow,
            principal: Some("auth0|rita".to_owned()),
            token: Some("0011223344556677".to_owned()),
            flavor: Some("request"),
            arn: Some("arn:aws:execute-api:us-east-1:1:api/prod/GET/pets".to_owned()),
            route: Some("GET /pets".to_owned()),
            reasons: vec!["policies/read.cedar#readers".to_owned()],
            revision: Some("abc123".to_owned()),
            token_cache: Some(Cache::Miss),
            decision_cache: Some(Cache::Hit),
            granted: Arc::new(Granted::of(vec![
                "GET /pets".to_owned(),
                "GET /pets/{petId}".to_owned(),
            ])),
            latency_us: 1500,
            bundle_age_s: Some(12),
            ..Record::new("req-1".to_owned())
        }
    }

    fn parse(audit: &Audit, r: &Record, totals: Totals) -> Value {
        let text = audit.line(r, totals, SystemTime::UNIX_EPOCH);
        assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn the_line_carries_the_documented_fields() {
        let audit = Audit::new(ObserveConfig::default());
        let v = parse(&audit, &allowed(), Totals::default());
        assert_eq!(v["event"], "decision");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["timestamp"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["decision_id"], "req-1");
        assert_eq!(v["mode"], "enforce");
        assert_eq!(v["outcome"], "allow");
        assert_eq!(v["answer"], "allow");
        assert_eq!(v["principal"], "auth0|rita");
        assert_eq!(v["token"], "0011223344556677");
        assert_eq!(v["route"], "GET /pets");
        assert_eq!(v["reasons"], json!(["policies/read.cedar#readers"]));
        assert_eq!(v["policy_errors"], json!([]));
        assert_eq!(v["revision"], "abc123");
        assert_eq!(v["token_cache"], "miss");
        assert_eq!(v["decision_cache"], "hit");
        assert_eq!(v["granted_count"], 2);
        assert_eq!(v["granted"], json!(["GET /pets", "GET /pets/{petId}"]));
        assert_eq!(
            v["granted_digest"],
            granted_digest(&["GET /pets".to_owned(), "GET /pets/{petId}".to_owned()])
        );
        assert_eq!(v["latency_us"], 1500);
        assert!(v.get("reason").is_none(), "{v}");
    }

    #[test]
    fn the_line_is_an_emf_document_with_every_value_at_top_level() {
        let audit = Audit::new(ObserveConfig::default());
        let totals = Totals {
            jwks_fetches: 2,
            jwks_failures: 1,
            refreshes: 3,
            refresh_failures: 0,
        };
        let v = parse(&audit, &allowed(), totals);
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 0);
        assert_eq!(directive["Namespace"], "cedargate");
        assert_eq!(directive["Dimensions"], json!([["FunctionName"]]));
        assert_eq!(v["FunctionName"], "cedargate");
        let names: Vec<&str> = directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for name in &names {
            assert!(v[*name].is_number(), "{name} has no value: {v}");
        }
        assert_eq!(v["Allow"], 1);
        assert_eq!(v["Deny"], 0);
        assert_eq!(v["Latency"], 1.5);
        assert_eq!(v["DecisionCacheHit"], 1);
        assert_eq!(v["TokenCacheHit"], 0);
        assert_eq!(v["JwksFetches"], 2);
        assert_eq!(v["JwksFetchFailures"], 1);
        assert_eq!(v["PolicyRefreshes"], 3);
        assert_eq!(v["BundleAgeSeconds"], 12);
        assert!(!names.contains(&"ShadowAllowed"), "{names:?}");
        // The next line counts only what happened since.
        let v = parse(
            &audit,
            &allowed(),
            Totals {
                jwks_fetches: 2,
                refreshes: 4,
                ..totals
            },
        );
        assert_eq!(v["JwksFetches"], 0);
        assert_eq!(v["JwksFetchFailures"], 0);
        assert_eq!(v["PolicyRefreshes"], 1);
    }

    #[test]
    fn an_unauthorized_line_declares_only_the_metrics_it_has() {
        let audit = Audit::new(ObserveConfig::default());
        let mut r = Record::new("req-2".to_owned());
        r.unauthorized("no token");
        let v = parse(&audit, &r, Totals::default());
        assert_eq!(v["outcome"], "unauthorized");
        assert_eq!(v["reason"], "no token");
        assert_eq!(v["Unauthorized"], 1);
        assert_eq!(v["granted_count"], 0);
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(!names.contains(&"TokenCacheHit"), "{names:?}");
        assert!(!names.contains(&"BundleAgeSeconds"), "{names:?}");
        assert!(v.get("TokenCacheHit").is_none());
    }

    #[test]
    fn metrics_off_leaves_the_audit_fields_alone() {
        let cfg = ObserveConfig {
            metrics_namespace: None,
            ..ObserveConfig::default()
        };
        let v = parse(&Audit::new(cfg), &allowed(), Totals::default());
        assert!(v.get("_aws").is_none() && v.get("Allow").is_none(), "{v}");
        assert_eq!(v["outcome"], "allow");
    }

    #[test]
    fn shadow_lines_say_what_enforcing_would_have_answered() {
        let cfg = ObserveConfig {
            mode: Mode::Shadow,
            ..ObserveConfig::default()
        };
        let mut r = allowed();
        r.outcome = Outcome::Deny;
        let v = parse(&Audit::new(cfg), &r, Totals::default());
        assert_eq!(v["mode"], "shadow");
        assert_eq!(v["outcome"], "deny");
        assert_eq!(v["answer"], "allow");
        assert_eq!(v["Deny"], 1);
        assert_eq!(v["Allow"], 0);
        assert_eq!(v["ShadowAllowed"], 1);
    }

    #[test]
    fn the_level_passes_lambdas_filter() {
        let cfg = ObserveConfig {
            audit_level: crate::config::audit_level(Some("error")),
            ..ObserveConfig::default()
        };
        let v = parse(&Audit::new(cfg), &allowed(), Totals::default());
        assert_eq!(v["level"], "ERROR");
        assert_eq!(crate::config::audit_level(Some("DEBUG")), "INFO");
        assert_eq!(crate::config::audit_level(None), "INFO");
    }

    #[test]
    fn hashed_principals_are_stable_salted_and_unreadable() {
        let cfg = ObserveConfig {
            principal: PrincipalLogging::Hash {
                salt: "pepper".to_owned(),
            },
            ..ObserveConfig::default()
        };
        let audit = Audit::new(cfg);
        let a = audit.principal("rita@example.com");
        assert_eq!(a, audit.principal("rita@example.com"));
        assert!(a.starts_with("sha256:") && a.len() == 7 + 16, "{a}");
        assert!(!a.contains("rita"));
        assert_ne!(a, audit.principal("ed@example.com"));
        assert_ne!(a, hashed_principal("", "rita@example.com"));
        assert_eq!(
            Audit::new(ObserveConfig::default()).principal("rita@example.com"),
            "rita@example.com"
        );
    }

    #[test]
    fn a_long_granted_set_is_counted_and_digested_not_listed() {
        let audit = Audit::new(ObserveConfig::default());
        let mut r = allowed();
        r.granted = Arc::new(Granted::of(
            (0..=GRANTED_LISTED).map(|i| format!("GET /r{i}")).collect(),
        ));
        let v = parse(&audit, &r, Totals::default());
        assert_eq!(v["granted_count"], GRANTED_LISTED + 1);
        assert!(v.get("granted").is_none());
        assert_eq!(v["granted_digest"].as_str().unwrap().len(), 16);
    }

    #[test]
    fn local_ids_are_unique() {
        let audit = Audit::new(ObserveConfig::default());
        let a = audit.local_id();
        let b = audit.local_id();
        assert!(a.starts_with("local-") && a != b, "{a} {b}");
    }
}
