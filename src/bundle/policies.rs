//! Policy phase: `policies/**/*.cedar` → one [`PolicySet`], strictly validated.
//!
//! Stage: bundle load, after the schema. Input: the policy files and the schema. Output: the
//! policies renamed `<file>#<@id or index>` (so that reasons name something a person can
//! find), where each starts (for reports about a whole policy), and every parse and
//! validation problem, each in its own file.
//!
//! Invariants: an `@id` used twice in a bundle is an error (the stock `cedar` CLI refuses it
//! too); templates are reported and never apply (a bundle has no links); strict validation is
//! Cedar's own, run on all cores and once per policy shape (see [`validate_parallel`]), with
//! every diagnostic still naming its own policy.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::time::{Duration, Instant};

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::files::BundleFiles;
use super::locate;
use super::report::{in_file, located, located_at, Problems};

/// The policies of a bundle, read and validated.
pub(super) struct Read {
    pub policies: PolicySet,
    /// Where each policy starts: (file, byte offset, length of its first token).
    pub places: HashMap<PolicyId, (String, usize, usize)>,
}

/// Reads, renames and strictly validates every policy file.
pub(super) fn read(
    files: &BundleFiles,
    schema: &Schema,
    schema_json: &serde_json::Value,
    problems: &mut Problems,
) -> Read {
    let mut policies = PolicySet::new();
    let mut seen_ids: HashMap<String, String> = HashMap::new();
    let mut places: HashMap<PolicyId, (String, usize, usize)> = HashMap::new();
    let validator = Validator::new(schema.clone());
    // Where the policy phase spends its time (CEDARGATE_LOG=debug): Cedar's parser and
    // validator, or cedargate's renaming and indexing around them.
    let mut parse_time = Duration::ZERO;
    let mut parsed_files: Vec<(&String, &String, PolicySet)> = Vec::new();
    for (path, text) in files.with_prefix("policies/", ".cedar") {
        let parse_started = Instant::now();
        let parsed = PolicySet::from_str(text);
        parse_time += parse_started.elapsed();
        let parsed = match parsed {
            Ok(p) => p,
            Err(e) => {
                problems
                    .error(in_file(e, path, text).wrap_err(format!("failed to parse `{path}`")));
                continue;
            }
        };
        let renamed = rename(path, text, &parsed, &mut seen_ids, &mut places, problems);
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
    let results = validate_parallel(&validator, &parsed_files, &enum_types(schema_json));
    let validate_time = validate_started.elapsed();
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
    Read { policies, places }
}

/// The policies of one file, renamed `<file>#<@id or index>` in the order they appear.
fn rename(
    path: &String,
    text: &str,
    parsed: &PolicySet,
    seen_ids: &mut HashMap<String, String>,
    places: &mut HashMap<PolicyId, (String, usize, usize)>,
    problems: &mut Problems,
) -> PolicySet {
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
        let id =
            PolicyId::from_str(&format!("{path}#{local}")).unwrap_or_else(|never| match never {});
        if let Some((at, len)) = start {
            places.insert(id.clone(), (path.clone(), at, len));
        }
        if let Err(e) = renamed.add(policy.new_id(id)) {
            problems.error(located(path, text, None, e.to_string(), None));
        }
    }
    renamed
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
