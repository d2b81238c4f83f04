//! Snapshot: a bundle's files → everything the authorizer needs, compiled once.
//!
//! Stage: bundle load (cold start, refresh, `validate`, `test`, `publish`). Input:
//! [`BundleFiles`] (`schema/*.cedarschema`, `policies/**/*.cedar`, `entities/**/*.json`).
//! Output: a [`Snapshot`] (schema, policy set, route table, identity mapping, policy index,
//! entity base, IAM plan) or a [`Problems`] report.
//!
//! Invariants: a snapshot exists only if the bundle parsed and passed Cedar's strict
//! validation and cedargate's own checks; everything computable once is computed here, never
//! per request. Policy ids are `<file>#<@id or index>`, so reasons name something a person can
//! find; an `@id` used twice in a bundle is an error (the stock `cedar` CLI refuses it too).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use cedar_policy::{
    Entities, EntityUid, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode, Validator,
};
use miette::{Diagnostic, NamedSource, Report, SourceOffset, SourceSpan};
use sha2::{Digest, Sha256};

use crate::arn::MethodArn;
use crate::decide::PolicyIndex;
use crate::entities::{Mapping, SchemaItem};
use crate::iam::{Base, Plan};
use crate::routes::{Route, RouteError, RouteTable};

use super::locate;

/// The files of a bundle, by path relative to the bundle root (`/`-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFiles {
    pub files: BTreeMap<String, String>,
}

/// Whether a bundle-relative path is part of the bundle.
pub fn is_bundle_path(path: &str) -> bool {
    let ext = |e: &str| path.ends_with(e);
    (path.starts_with("schema/") && (ext(".cedarschema") || ext(".cedarschema.json")))
        || (path.starts_with("policies/") && ext(".cedar"))
        || (path.starts_with("entities/") && ext(".json"))
        || (path.starts_with("policy-tests/") && (ext(".yaml") || ext(".yml")))
}

impl BundleFiles {
    /// Reads the bundle files under `dir`. Hidden files and directories are skipped (editors'
    /// swap files, `.git`).
    pub fn read_dir(dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        for top in ["schema", "policies", "entities", "policy-tests"] {
            let root = dir.join(top);
            if root.is_dir() {
                walk(dir, &root, &mut files, 0)?;
            }
        }
        Ok(Self { files })
    }

    /// SHA-256 over the sorted paths and contents: the bundle's content revision.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, content) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((content.len() as u64).to_be_bytes());
            h.update(content.as_bytes());
        }
        hex::encode(h.finalize())
    }

    fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        suffix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.files
            .iter()
            .filter(move |(p, _)| p.starts_with(prefix) && p.ends_with(suffix))
    }
}

fn walk(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(base, &path, out, depth + 1)?;
        } else if ft.is_file() || ft.is_symlink() {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            if is_bundle_path(&rel) {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                out.insert(rel, text);
            }
        }
    }
    Ok(())
}

/// Everything wrong (and worth a warning) with a bundle, rendered with source spans.
#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<Report>,
    pub warnings: Vec<Report>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
    fn error(&mut self, r: Report) {
        self.errors.push(r);
    }
    /// Records a warning; it renders as one (⚠) whatever the report's own severity.
    fn warn(&mut self, r: Report) {
        self.warnings.push(Report::new(AsWarning(r)));
    }
    /// One line per problem, for logs.
    pub fn summary(&self) -> String {
        let lines: Vec<String> = self.errors.iter().map(one_line).collect();
        lines.join("; ")
    }
}

/// A report's message with its cause chain and first location, on one line.
pub fn one_line(r: &Report) -> String {
    let mut s = r.to_string();
    let mut cause = r.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(help) = r.help() {
        s.push_str(&format!(" (help: {help})"));
    }
    s
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s): {}", self.errors.len(), self.summary())
    }
}

impl std::error::Error for Problems {}

/// A message anchored at a place in a file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct Located {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    help: Option<String>,
}

fn located(
    file: &str,
    text: &str,
    needle: Option<&str>,
    message: String,
    help: Option<String>,
) -> Report {
    let span = needle.and_then(|n| text.find(n)).map(|at| {
        let len = needle.map_or(1, str::len).max(1);
        SourceSpan::new(SourceOffset::from(at), len)
    });
    Report::new(Located {
        message,
        src: NamedSource::new(file, text.to_owned()),
        span,
        help,
    })
}

/// A Cedar diagnostic shown against the bundle file it came from.
///
/// Cedar's errors carry the text they were parsed from but not its file name, and miette
/// prefers an error's own source over one attached later (`with_source_code`), so reports
/// said `[6:3]` without saying where. This wrapper supplies the named file instead; the spans
/// are unchanged, since they are offsets into that same text.
struct InFile {
    inner: Box<dyn Diagnostic + Send + Sync + 'static>,
    src: NamedSource<String>,
}

impl fmt::Debug for InFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for InFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for InFile {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl Diagnostic for InFile {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.inner.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.inner.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.inner.diagnostic_source()
    }
}

/// `e` (an error about the combined schema) as a report against the schema file it came from.
/// Cedar's schema errors carry the text of the fragment they were found in; the file is the one
/// whose text has the same bytes under the error's first label.
fn in_schema_file(e: cedar_policy::SchemaError, files: &BundleFiles) -> Report {
    let texts: Vec<(&String, &String)> = files.with_prefix("schema/", ".cedarschema").collect();
    let label = e.labels().and_then(|mut l| l.next());
    let shown = label.as_ref().and_then(|l| {
        let src = e.source_code()?;
        let data = src.read_span(l.inner(), 0, 0).ok()?;
        Some(data.data().to_vec())
    });
    let owner = match (texts.as_slice(), &label, &shown) {
        ([one], _, _) => Some(*one),
        (_, Some(l), Some(bytes)) => texts.iter().copied().find(|(_, t)| {
            t.as_bytes().get(l.offset()..l.offset() + l.len()) == Some(bytes.as_slice())
        }),
        _ => None,
    };
    match owner {
        Some((path, text)) => in_file(e, path, text),
        None => Report::new(e),
    }
}

/// A report shown with warning severity (cedargate's own warnings are built as plain reports).
struct AsWarning(Report);

impl fmt::Debug for AsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for AsWarning {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Diagnostic for AsWarning {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.0.diagnostic_source()
    }
}

/// `e` as a report that names `file` and shows its text.
fn in_file(e: impl Diagnostic + Send + Sync + 'static, file: &str, text: &str) -> Report {
    Report::new(InFile {
        inner: Box::new(e),
        src: NamedSource::new(file, text.to_owned()),
    })
}

/// A message anchored at a byte range of a file (or at the whole file when `span` is `None`).
fn located_at(
    file: &str,
    text: &str,
    span: Option<(usize, usize)>,
    message: String,
    help: Option<String>,
) -> Report {
    Report::new(Located {
        message,
        src: NamedSource::new(file, text.to_owned()),
        span: span.map(|(at, len)| SourceSpan::new(SourceOffset::from(at), len.max(1))),
        help,
    })
}

/// Entity types declared as enumerations (their ids are checked by validation).
fn enum_types(schema_json: &serde_json::Value) -> HashSet<String> {
    let mut out = HashSet::new();
    if let Some(namespaces) = schema_json.as_object() {
        for (ns, def) in namespaces {
            if let Some(types) = def
                .get("entityTypes")
                .and_then(serde_json::Value::as_object)
            {
                for (name, t) in types {
                    if t.get("enum").is_some() {
                        out.insert(if ns.is_empty() {
                            name.clone()
                        } else {
                            format!("{ns}::{name}")
                        });
                    }
                }
            }
        }
    }
    out
}

/// Policies per validation job: small enough to spread over the cores, large enough that the
/// per-job set-up is noise.
const VALIDATION_CHUNK: usize = 64;

/// The part of a policy that Cedar's strict validation can depend on: its JSON form without
/// annotations, with the ids of ordinary entity literals blanked. Validation is type-based, so
/// `permit(principal in Role::"a", …)` and the same policy with `Role::"b"` get the same
/// verdict; action ids and the ids of enumerated entity types are checked against the schema
/// and are kept.
fn validation_shape(policy: &cedar_policy::Policy, keep_ids: &HashSet<String>) -> Option<String> {
    fn blank(v: &mut serde_json::Value, keep: &HashSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                let is_uid = map.len() == 2
                    && map.get("id").is_some_and(serde_json::Value::is_string)
                    && map.get("type").is_some_and(serde_json::Value::is_string);
                if is_uid {
                    let ty = map
                        .get("type")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or_default();
                    let keep_id = ty == "Action" || ty.ends_with("::Action") || keep.contains(ty);
                    if !keep_id {
                        map.insert("id".to_owned(), serde_json::Value::String(String::new()));
                    }
                    return;
                }
                map.remove("annotations");
                for value in map.values_mut() {
                    blank(value, keep);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    blank(item, keep);
                }
            }
            _ => {}
        }
    }
    let mut json = policy.to_json().ok()?;
    blank(&mut json, keep_ids);
    Some(json.to_string())
}

/// Runs `work` on every job, on all available cores; results come back in job order.
fn on_all_cores<J: Sync, R: Send>(jobs: &[J], work: impl Fn(&J) -> R + Sync) -> Vec<Option<R>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 16)
        .min(jobs.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        jobs.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let result = work(job);
                if let Some(slot) = slots.get(i) {
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().unwrap_or_else(|e| e.into_inner()))
        .collect()
}

/// Validates every file's policies strictly, like `cedar validate`, but fast on large bundles:
/// policies of the same [`validation_shape`] are validated once (a representative each), on
/// all cores; any shape with an error or a warning is validated again policy by policy, so
/// every diagnostic still names its own policy and source span. Returns the results per file.
fn validate_parallel(
    validator: &Validator,
    files: &[(&String, &String, PolicySet)],
    keep_ids: &HashSet<String>,
) -> Vec<Vec<cedar_policy::ValidationResult>> {
    // Representatives: the first policy of each shape.
    let mut shapes: HashMap<String, usize> = HashMap::new();
    let mut representatives: Vec<cedar_policy::Policy> = Vec::new();
    let mut members: Vec<Vec<(usize, cedar_policy::Policy)>> = Vec::new();
    let mut unshaped: Vec<(usize, cedar_policy::Policy)> = Vec::new();
    for (fi, (_, _, set)) in files.iter().enumerate() {
        let mut all: Vec<&cedar_policy::Policy> = set.policies().collect();
        all.sort_by_key(|p| p.id().to_string());
        for p in all {
            match validation_shape(p, keep_ids) {
                Some(key) => {
                    let at = *shapes.entry(key).or_insert_with(|| {
                        representatives.push(p.clone());
                        members.push(Vec::new());
                        representatives.len() - 1
                    });
                    if let Some(m) = members.get_mut(at) {
                        m.push((fi, p.clone()));
                    }
                }
                None => unshaped.push((fi, p.clone())),
            }
        }
    }
    let chunks: Vec<Vec<cedar_policy::Policy>> = representatives
        .chunks(VALIDATION_CHUNK)
        .map(<[_]>::to_vec)
        .collect();
    let verdicts = on_all_cores(&chunks, |chunk| {
        let set = PolicySet::from_policies(chunk.iter().cloned()).unwrap_or_default();
        let result = validator.validate(&set, ValidationMode::Strict);
        let flagged: HashSet<PolicyId> = result
            .validation_errors()
            .map(|e| e.policy_id().clone())
            .chain(result.validation_warnings().map(|w| w.policy_id().clone()))
            .collect();
        flagged
    });
    let flagged: HashSet<PolicyId> = verdicts.into_iter().flatten().flatten().collect();

    // Everything a flagged shape stands for, and every policy without a shape, validated
    // individually per file.
    let mut recheck: Vec<(usize, cedar_policy::Policy)> = unshaped;
    for (rep, m) in representatives.iter().zip(members) {
        if flagged.contains(rep.id()) {
            recheck.extend(m);
        }
    }
    let mut per_file: Vec<Vec<cedar_policy::Policy>> = files.iter().map(|_| Vec::new()).collect();
    for (fi, p) in recheck {
        if let Some(list) = per_file.get_mut(fi) {
            list.push(p);
        }
    }
    let mut jobs: Vec<(usize, Vec<cedar_policy::Policy>)> = Vec::new();
    for (fi, list) in per_file.into_iter().enumerate() {
        for chunk in list.chunks(VALIDATION_CHUNK) {
            jobs.push((fi, chunk.to_vec()));
        }
    }
    let results = on_all_cores(&jobs, |(_, chunk)| {
        let set = PolicySet::from_policies(chunk.iter().cloned()).unwrap_or_default();
        validator.validate(&set, ValidationMode::Strict)
    });
    let mut out: Vec<Vec<cedar_policy::ValidationResult>> =
        files.iter().map(|_| Vec::new()).collect();
    for ((fi, _), result) in jobs.iter().zip(results) {
        if let (Some(list), Some(result)) = (out.get_mut(*fi), result) {
            list.push(result);
        }
    }
    out
}

/// A compiled bundle: immutable, shared by every request that uses it.
#[derive(Debug)]
pub struct Snapshot {
    /// The content digest of the bundle (SHA-256 hex).
    pub digest: String,
    /// A human label of where the bundle came from (directory, S3 object and version).
    pub origin: String,
    pub loaded_at: SystemTime,
    pub schema: Schema,
    pub policies: PolicySet,
    pub routes: RouteTable,
    pub mapping: Mapping,
    pub index: PolicyIndex,
    /// Static entities and the schema's action entities, transitively closed.
    pub base_entities: Entities,
    /// The IAM analysis for every stage whose name equals no route literal.
    pub plan: std::sync::Arc<Plan>,
    /// Analyses for stages whose name a path segment could spell, made on first use.
    special_plans: std::sync::Mutex<HashMap<String, std::sync::Arc<Plan>>>,
    /// The full-prefix analysis, made the first time a caller needs it.
    full_plan: std::sync::OnceLock<std::sync::Arc<Plan>>,
    /// The Cedar action of each route, in route order.
    pub route_actions: Vec<EntityUid>,
    /// The source of each policy file, for `explain` and `test`.
    pub files: BundleFiles,
}

impl Snapshot {
    /// The IAM analysis for requests in `stage`.
    pub fn plan_for(&self, stage: &str) -> std::sync::Arc<Plan> {
        if !Plan::stage_is_special(&self.routes, stage) {
            return self.plan.clone();
        }
        let mut plans = self.special_plans.lock().unwrap_or_else(|e| e.into_inner());
        plans
            .entry(stage.to_owned())
            .or_insert_with(|| std::sync::Arc::new(Plan::with_stage(&self.routes, Some(stage))))
            .clone()
    }

    /// The analysis and the caller's route-independent policy for requests to `arn`'s API
    /// and stage. Short-prefix patterns when they express the caller's decisions exactly;
    /// otherwise the full-prefix analysis is tried, and the more exact of the two is kept.
    pub fn policy_base(&self, arn: &MethodArn, allowed: &[bool]) -> (std::sync::Arc<Plan>, Base) {
        let plan = self.plan_for(&arn.stage);
        // What a resource costs besides its pattern: its prefix and JSON quoting.
        let short_cost = arn.partition.len() + arn.stage.len() + 26;
        let base = plan.base(allowed, short_cost);
        // Stage `*` (console tests) is written with the full prefix either way.
        if base.inexact().is_empty() || arn.stage == "*" {
            return (plan, base);
        }
        let full = self
            .full_plan
            .get_or_init(|| std::sync::Arc::new(Plan::full_prefix(&self.routes)))
            .clone();
        let full_base = full.base(allowed, arn.prefix().len() + 3);
        if full_base.inexact().len() < base.inexact().len() {
            (full, full_base)
        } else {
            (plan, base)
        }
    }

    /// A short revision for logs and responses: the first 12 hex digits of the digest.
    pub fn revision(&self) -> &str {
        self.digest.get(..12).unwrap_or(&self.digest)
    }

    /// Compiles a bundle. `Err` holds every error found (and the warnings).
    pub fn compile(
        files: BundleFiles,
        origin: impl Into<String>,
    ) -> Result<(Snapshot, Problems), Problems> {
        let mut problems = Problems::default();
        let started = std::time::Instant::now();
        let phase = |name: &str| {
            tracing::debug!(
                phase = name,
                millis = started.elapsed().as_millis() as u64,
                "bundle compile"
            )
        };

        // Schema: each file parsed on its own (errors point into the right file), then
        // combined; annotations are read from the resolved JSON form.
        let mut fragments = Vec::new();
        let mut schema_text = String::new();
        for (path, text) in files.with_prefix("schema/", "") {
            let parsed = if path.ends_with(".json") {
                SchemaFragment::from_json_str(text).map_err(|e| in_file(e, path, text))
            } else {
                match SchemaFragment::from_cedarschema_str(text) {
                    Ok((frag, warnings)) => {
                        for w in warnings {
                            problems.warn(in_file(w, path, text));
                        }
                        Ok(frag)
                    }
                    Err(e) => Err(in_file(e, path, text)),
                }
            };
            match parsed {
                Ok(f) => {
                    fragments.push(f);
                    if !path.ends_with(".json") {
                        schema_text.push_str(text);
                        schema_text.push('\n');
                    }
                }
                Err(r) => problems.error(r.wrap_err(format!("failed to parse schema `{path}`"))),
            }
        }
        if fragments.is_empty() && problems.errors.is_empty() {
            problems.error(miette::miette!(
                help = "a bundle has `schema/*.cedarschema` and `policies/**/*.cedar`",
                "no schema found under `schema/`"
            ));
        }
        if !problems.errors.is_empty() {
            return Err(problems);
        }
        let schema = match Schema::from_schema_fragments(fragments) {
            Ok(s) => s,
            Err(e) => {
                problems.error(in_schema_file(e, &files).wrap_err("the schema is invalid"));
                return Err(problems);
            }
        };
        let schema_json = if files.with_prefix("schema/", ".json").next().is_some()
            && schema_text.is_empty()
        {
            // JSON schemas: the combined JSON is already the resolved form's input.
            let mut merged = serde_json::Map::new();
            for (_, text) in files.with_prefix("schema/", ".json") {
                if let Ok(serde_json::Value::Object(m)) =
                    serde_json::from_str::<serde_json::Value>(text)
                {
                    merged.extend(m);
                }
            }
            serde_json::Value::Object(merged)
        } else {
            match cedar_policy::schema_str_to_json_with_resolved_types(&schema_text) {
                Ok((json, _)) => json,
                Err(e) => {
                    problems
                        .error(Report::new(e).wrap_err("the schema's types cannot be resolved"));
                    return Err(problems);
                }
            }
        };
        // cedargate's own schema checks work on the resolved JSON form, which has no
        // positions: their reports point at the declaration found again in the text.
        let schema_files: Vec<(&str, &str)> = files
            .with_prefix("schema/", "")
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let at_schema =
            |item: &SchemaItem, message: String, help: Option<String>| match locate::schema_item(
                &schema_files,
                item,
            ) {
                Some((n, at, len)) => match schema_files.get(n) {
                    Some((p, t)) => located_at(p, t, Some((at, len)), message, help),
                    None => miette::miette!("{message}"),
                },
                None => match schema_files.as_slice() {
                    [(p, t)] => located_at(p, t, None, message, help),
                    _ => match help {
                        Some(h) => miette::miette!(help = h, "{message}"),
                        None => miette::miette!("{message}"),
                    },
                },
            };

        phase("schema");
        // Routes: every action named "<VERB> <path>" (or `$connect`).
        let mut routes = Vec::new();
        let mut route_actions = Vec::new();
        let mut actions: Vec<&EntityUid> = schema.actions().collect();
        actions.sort_by_key(|a| a.to_string());
        for action in actions {
            let name = action.id().unescaped();
            match Route::parse(name) {
                Ok(Some(route)) => {
                    routes.push(route);
                    route_actions.push(action.clone());
                }
                Ok(None) => {}
                Err(e) => problems.error(at_schema(&SchemaItem::Action(name.to_owned()), e.to_string(), Some("routes are `\"<VERB> /path/{param}/{proxy+}\"`, VERB one of GET POST PUT PATCH DELETE HEAD OPTIONS ANY".to_owned()))),
            }
        }
        let table = match RouteTable::new(routes) {
            Ok(t) => t,
            Err(e) => {
                let item = match &e {
                    RouteError::Duplicate { second, .. } => SchemaItem::Action(second.clone()),
                    RouteError::Malformed { name, .. } => SchemaItem::Action(name.clone()),
                };
                problems.error(at_schema(&item, e.to_string(), None));
                RouteTable::default()
            }
        };
        if table.is_empty() && problems.errors.is_empty() {
            problems.warn(at_schema(&SchemaItem::Nowhere, "the schema declares no routes (actions named `\"<VERB> /path\"`): every request will be denied".to_owned(), None));
        }

        // Identity mapping from annotations.
        let mapping = match Mapping::from_schema(&schema_json, &route_actions) {
            Ok(m) => Some(m),
            Err(errs) => {
                for e in errs {
                    problems.error(at_schema(&e.at, e.message, None));
                }
                None
            }
        };

        phase("routes and mapping");
        // Policies: per file, renamed `<file>#<@id or index>`, validated strictly per file so
        // that diagnostics carry the right source.
        let mut policies = PolicySet::new();
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        // Where each policy starts (`permit`/`forbid`), for reports about a whole policy.
        let mut places: HashMap<PolicyId, (String, usize, usize)> = HashMap::new();
        let validator = Validator::new(schema.clone());
        // Where the policy phase spends its time (CEDARGATE_LOG=debug): Cedar's parser and
        // validator, or cedargate's renaming and indexing around them.
        let (mut parse_time, mut validate_time) = (Duration::ZERO, Duration::ZERO);
        let mut parsed_files: Vec<(&String, &String, PolicySet)> = Vec::new();
        for (path, text) in files.with_prefix("policies/", ".cedar") {
            let parse_started = Instant::now();
            let parsed = PolicySet::from_str(text);
            parse_time += parse_started.elapsed();
            let parsed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    problems.error(
                        in_file(e, path, text).wrap_err(format!("failed to parse `{path}`")),
                    );
                    continue;
                }
            };
            let mut ordered: Vec<_> = parsed.policies().collect();
            ordered.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            let mut renamed = PolicySet::new();
            let starts = locate::policy_starts(text);
            for (index, policy) in ordered.into_iter().enumerate() {
                let start = starts.get(index).copied();
                let local = policy
                    .annotation("id")
                    .map_or_else(|| index.to_string(), str::to_owned);
                if let Some(other) = seen_ids
                    .get(&local)
                    .filter(|_| policy.annotation("id").is_some())
                {
                    problems.error(located_at(
                        path,
                        text,
                        start,
                        format!("policy id `{local}` is already used in `{other}`"),
                        Some("each `@id` names one policy in the bundle".to_owned()),
                    ));
                    continue;
                }
                if policy.annotation("id").is_some() {
                    seen_ids.insert(local.clone(), path.clone());
                }
                let id = PolicyId::from_str(&format!("{path}#{local}"))
                    .unwrap_or_else(|never| match never {});
                if let Some((at, len)) = start {
                    places.insert(id.clone(), (path.clone(), at, len));
                }
                if let Err(e) = renamed.add(policy.new_id(id)) {
                    problems.error(located(path, text, None, e.to_string(), None));
                }
            }
            for t in parsed.templates() {
                problems.warn(located(
                    path,
                    text,
                    None,
                    format!(
                        "`{}` is a template; a bundle has no template links, so it never applies",
                        t.id()
                    ),
                    None,
                ));
            }
            parsed_files.push((path, text, renamed));
        }

        // Strict validation is per policy, so it runs on all cores, in chunks; results are
        // reported in file order whatever finishes first.
        let validate_started = Instant::now();
        let results = validate_parallel(&validator, &parsed_files, &enum_types(&schema_json));
        validate_time += validate_started.elapsed();
        for ((path, text, renamed), chunk_results) in parsed_files.iter().zip(results) {
            for result in chunk_results {
                for e in result.validation_errors() {
                    problems.error(in_file(e.clone(), path, text));
                }
                for w in result.validation_warnings() {
                    problems.warn(in_file(w.clone(), path, text));
                }
            }
            for p in renamed.policies() {
                if let Err(e) = policies.add(p.clone()) {
                    problems.error(located(path, text, None, e.to_string(), None));
                }
            }
        }

        tracing::debug!(
            parse_millis = parse_time.as_millis() as u64,
            validate_millis = validate_time.as_millis() as u64,
            "policy phase: Cedar parse and strict validation (the rest is renaming and checks)"
        );
        phase("policies");
        // Static entities (role hierarchy), validated against the schema, plus the actions.
        let mut base = match schema.action_entities() {
            Ok(e) => e,
            Err(e) => {
                problems
                    .error(Report::new(e).wrap_err("the schema's actions cannot form entities"));
                Entities::empty()
            }
        };
        let mut static_entities = Vec::new();
        for (path, text) in files.with_prefix("entities/", ".json") {
            // A JSON syntax error first, with its line and column: Cedar's message has them only
            // in words.
            if let Err(e) = serde_json::from_str::<serde_json::Value>(text) {
                let at = locate::offset_of(text, e.line(), e.column());
                problems.error(located_at(
                    path,
                    text,
                    at.map(|a| (a, 1)),
                    format!("`{path}` is not valid JSON: {e}"),
                    None,
                ));
                continue;
            }
            match Entities::from_json_str(text, Some(&schema)) {
                Ok(es) => {
                    for e in es.iter() {
                        if let Some(m) = &mapping {
                            if e.uid().type_name() == m.principal_type() {
                                let at = locate::entity_uid(
                                    text,
                                    &e.uid().type_name().to_string(),
                                    e.uid().id().unescaped(),
                                );
                                problems.error(located_at(path, text, at, format!("`{}` is of the principal type: principals come from tokens, not from static entities", e.uid()), None));
                                continue;
                            }
                        }
                        static_entities.push(e.clone());
                    }
                }
                Err(e) => {
                    // Cedar's entity errors carry no position: find the entity they name.
                    let report = Report::new(e);
                    let message = one_line(&report);
                    let at = locate::uid_in_message(&message)
                        .and_then(|(ty, id)| locate::entity_uid(text, &ty, &id));
                    problems.error(match at {
                        Some(span) => located_at(
                            path,
                            text,
                            Some(span),
                            format!("failed to load entities `{path}`: {message}"),
                            None,
                        ),
                        None => report.wrap_err(format!("failed to load entities `{path}`")),
                    });
                }
            }
        }
        match base.clone().add_entities(static_entities, Some(&schema)) {
            Ok(b) => base = b,
            Err(e) => problems.error(Report::new(e).wrap_err("the static entities conflict")),
        }

        let Some(mapping) = mapping else {
            return Err(problems);
        };
        if !problems.errors.is_empty() {
            return Err(problems);
        }

        // Each route's action groups, transitively, for slicing.
        let mut action_ancestors: HashMap<EntityUid, HashSet<EntityUid>> = HashMap::new();
        for a in &route_actions {
            let up: HashSet<EntityUid> = base
                .ancestors(a)
                .map(|i| i.cloned().collect())
                .unwrap_or_default();
            action_ancestors.insert(a.clone(), up);
        }
        phase("entities");
        let index = PolicyIndex::new(&policies, route_actions.clone(), &action_ancestors);
        let at_policy = |id: &PolicyId, message: String, help: Option<String>| match places
            .get(id)
            .and_then(|(p, at, len)| files.files.get(p).map(|t| (p, t, *at, *len)))
        {
            Some((p, t, at, len)) => located_at(p, t, Some((at, len)), message, help),
            None => miette::miette!("{message}"),
        };
        for id in index.off_route() {
            problems.warn(at_policy(
                id,
                format!("policy `{id}` applies to no route, so it never affects a decision"),
                Some("its action scope names only actions that are not routes (`\"<VERB> /path\"`) nor groups of routes".to_owned()),
            ));
        }
        for (permit, forbid) in super::lints::shadowed_permits(&index, &mapping) {
            problems.warn(at_policy(
                &permit,
                format!("permit `{permit}` can never allow anything: forbid `{forbid}` denies each of its routes to every caller, unconditionally"),
                None,
            ));
        }
        phase("index");
        let plan = Plan::new(&table);
        phase("iam plan");
        let digest = files.digest();
        Ok((
            Snapshot {
                digest,
                origin: origin.into(),
                loaded_at: SystemTime::now(),
                schema,
                policies,
                routes: table,
                mapping,
                index,
                base_entities: base,
                plan: std::sync::Arc::new(plan),
                special_plans: std::sync::Mutex::new(HashMap::new()),
                full_plan: std::sync::OnceLock::new(),
                route_actions,
                files,
            },
            problems,
        ))
    }
}
