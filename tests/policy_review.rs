#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Reviewing a policy change: the built `cedargate diff` on pairs of bundles whose effect is
//! known, in its three formats.
//!
//! - `tests/bundles/diff/<case>/{base,new}/` holds one change each (see its README). For every
//!   case the JSON report must name exactly the routes that change, who gains or loses them,
//!   the determining policies before and after, the policy and schema changes and the coverage
//!   of the callers considered; `--fail-on-widening` must exit 4 exactly when some caller gains
//!   a route; the markdown must hold real tables (widening first, no row twice); the text's
//!   first line must say what kind of change it is.
//! - The base may be a git revision of the repository that holds the new bundle, with the same
//!   answer as the directory form.
//! - Callers from `--claims` files, errors (a missing base, an unknown revision, an invalid
//!   bundle, an unreadable claims file) and the large reference workload with one policy moved
//!   to another role.
//!
//! Every bundle here also passes the stock `cedar validate`: `policy_tooling.rs` checks that.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use common::{copy_dir, fresh_dir, repo, shared};

/// The cases under `tests/bundles/diff/`; a case that appears or disappears fails here.
const CASES: &[&str] = &[
    "forbid-removed",
    "hidden-literal",
    "narrowed",
    "renamed",
    "role-widened",
    "route-added",
    "sample-caller",
    "scope-loosened",
];

fn case_dir(name: &str) -> PathBuf {
    repo().join("tests/bundles/diff").join(name)
}

/// Runs the built binary with a clean cedargate environment (and no git settings from outside).
fn cedargate(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
    cmd.args(args).stdin(Stdio::null());
    for var in [
        "CEDARGATE_POLICY_SOURCE",
        "CEDARGATE_ISSUER",
        "CEDARGATE_AUDIENCE",
        "CEDARGATE_JWKS_URL",
        "CEDARGATE_JWKS_FILE",
        "CEDARGATE_PUBLIC_KEY_FILE",
        "CEDARGATE_LOG",
        "RUST_LOG",
        "GIT_DIR",
        "GIT_WORK_TREE",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().expect("run cedargate")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// `cedargate diff --base BASE --bundle NEW MORE…`.
fn diff(base: &str, new: &Path, more: &[&str]) -> Output {
    let mut args = vec!["diff", "--base", base, "--bundle", new.to_str().unwrap()];
    args.extend_from_slice(more);
    cedargate(&args)
}

/// The JSON report (`--format json`), which must exit 0 (no `--fail-on-widening` in `more`)
/// and pass [`check_shape`].
fn report(base: &str, new: &Path, more: &[&str]) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(more);
    let out = diff(base, new, &args);
    assert_eq!(
        code(&out),
        0,
        "diff {base} → {}: {}",
        new.display(),
        text(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the report is not JSON ({e}):\n{}", text(&out)));
    check_shape(&v);
    v
}

/// One case of `tests/bundles/diff/`, run in every format.
struct Case {
    name: &'static str,
    base: PathBuf,
    new: PathBuf,
}

impl Case {
    fn new(name: &'static str) -> Self {
        let dir = case_dir(name);
        Self {
            name,
            base: dir.join("base"),
            new: dir.join("new"),
        }
    }

    fn run(&self, more: &[&str]) -> Output {
        diff(self.base.to_str().unwrap(), &self.new, more)
    }

    /// The JSON report; also checks the exit codes with and without `--fail-on-widening`, and
    /// that the flag changes nothing in the report.
    fn json(&self) -> Value {
        let v = report(self.base.to_str().unwrap(), &self.new, &[]);
        let flagged = self.run(&["--format", "json", "--fail-on-widening"]);
        let widening = v["widening"].as_bool().unwrap();
        assert_eq!(
            code(&flagged),
            if widening { 4 } else { 0 },
            "{}: --fail-on-widening with widening {widening}: {}",
            self.name,
            text(&flagged)
        );
        let again: Value = serde_json::from_slice(&flagged.stdout).unwrap_or_else(|e| {
            panic!(
                "{}: not JSON with the flag ({e}): {}",
                self.name,
                text(&flagged)
            )
        });
        assert_eq!(again, v, "{}: the flag changed the report", self.name);
        v
    }

    fn markdown(&self) -> String {
        let out = self.run(&["--format", "markdown"]);
        assert_eq!(code(&out), 0, "{}: {}", self.name, text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The default format's first line.
    fn first_line(&self) -> String {
        let out = self.run(&[]);
        assert_eq!(code(&out), 0, "{}: {}", self.name, text(&out));
        let stdout = String::from_utf8(out.stdout).unwrap();
        let explicit = self.run(&["--format", "text"]);
        assert_eq!(
            String::from_utf8_lossy(&explicit.stdout),
            stdout,
            "{}: text is the default format",
            self.name
        );
        stdout.lines().next().unwrap_or_default().to_owned()
    }
}

// ----- reading a report -----

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("not a string: {s}"))
                .to_owned()
        })
        .collect()
}

fn route_names(v: &Value) -> Vec<String> {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["route"].as_str().unwrap().to_owned())
        .collect()
}

fn route<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == name)
        .unwrap_or_else(|| panic!("no route `{name}` in the report: {v:#}"))
}

fn changes<'a>(route: &'a Value, side: &str) -> &'a [Value] {
    route[side].as_array().unwrap()
}

/// The routes where some caller gains (`gained`) or loses (`lost`).
fn routes_with(v: &Value, side: &str) -> Vec<String> {
    v["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !changes(r, side).is_empty())
        .map(|r| r["route"].as_str().unwrap().to_owned())
        .collect()
}

/// The role ids a caller's `roles` claim holds (an array of strings, or one string).
fn roles(change: &Value) -> Vec<String> {
    match &change["caller"]["claims"]["roles"] {
        Value::Null => Vec::new(),
        Value::String(s) => vec![s.clone()],
        other => strs(other),
    }
}

/// The scopes a caller's `scope` claim holds (space-separated, as in a token).
fn scopes(change: &Value) -> Vec<String> {
    match &change["caller"]["claims"]["scope"] {
        Value::Null => Vec::new(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        other => strs(other),
    }
}

fn source(change: &Value) -> &str {
    change["caller"]["source"].as_str().unwrap()
}

fn before(change: &Value) -> Vec<String> {
    strs(&change["before"]["policies"])
}

fn after(change: &Value) -> Vec<String> {
    strs(&change["after"]["policies"])
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn set_of(v: &Value) -> BTreeSet<String> {
    strs(v).into_iter().collect()
}

/// What every report must hold, whatever the case: the fields of the contract, counts that
/// agree with the routes, widening routes first, and changes that are changes.
fn check_shape(v: &Value) {
    assert!(!v["base"].as_str().unwrap().is_empty(), "{v:#}");
    assert!(!v["bundle"].as_str().unwrap().is_empty(), "{v:#}");
    let routes = v["routes"].as_array().unwrap();
    let gaining = routes_with(v, "gained");
    let losing = routes_with(v, "lost");
    let summary = &v["summary"];
    assert_eq!(summary["routes_gaining"], gaining.len(), "{v:#}");
    assert_eq!(summary["routes_losing"], losing.len(), "{v:#}");
    assert_eq!(v["widening"], !gaining.is_empty(), "{v:#}");
    let callers_gaining = summary["callers_gaining"].as_u64().unwrap();
    let callers_losing = summary["callers_losing"].as_u64().unwrap();
    assert_eq!(callers_gaining == 0, gaining.is_empty(), "{v:#}");
    assert_eq!(callers_losing == 0, losing.is_empty(), "{v:#}");

    let mut seen_narrowing_only = false;
    for r in routes {
        let name = r["route"].as_str().unwrap();
        assert!(
            matches!(r["status"].as_str(), Some("changed" | "added" | "removed")),
            "{name}: status {}",
            r["status"]
        );
        let (gained, lost) = (changes(r, "gained"), changes(r, "lost"));
        assert!(
            !gained.is_empty() || !lost.is_empty(),
            "{name}: listed without a caller who gains or loses"
        );
        if gained.is_empty() {
            seen_narrowing_only = true;
        } else {
            assert!(
                !seen_narrowing_only,
                "{name}: a widening route after a narrowing one"
            );
        }
        for (side, list, was, is) in [("gained", gained, false, true), ("lost", lost, true, false)]
        {
            for c in list {
                assert!(
                    matches!(source(c), "test" | "sample" | "generated"),
                    "{name}: {side}: source {c}"
                );
                assert!(c["caller"]["name"].is_string(), "{name}: {side}: {c}");
                assert!(c["caller"]["claims"].is_object(), "{name}: {side}: {c}");
                assert!(
                    c["caller"]["context"]["stage"].is_string(),
                    "{name}: {side}: {c}"
                );
                assert_eq!(c["before"]["allowed"], was, "{name}: {side}: {c}");
                assert_eq!(c["after"]["allowed"], is, "{name}: {side}: {c}");
                for id in before(c).iter().chain(after(c).iter()) {
                    assert!(
                        id.starts_with("policies/") && id.contains(".cedar#"),
                        "{name}: {side}: `{id}` is not a full policy id"
                    );
                }
            }
        }
    }

    for key in ["routes_added", "routes_removed"] {
        strs(&v["schema"][key]);
    }
    for key in ["added", "removed", "changed"] {
        strs(&v["policies"][key]);
    }
    for r in v["policies"]["renamed"].as_array().unwrap() {
        assert!(r["from"].is_string() && r["to"].is_string(), "{r}");
    }

    let callers = &v["callers"];
    for key in [
        "tests",
        "samples",
        "generated",
        "routes_complete",
        "routes_sampled",
    ] {
        assert!(callers[key].is_u64(), "callers.{key}: {callers:#}");
    }
    let sampled = callers["sampled"].as_array().unwrap();
    assert_eq!(callers["routes_sampled"], sampled.len(), "{callers:#}");
    let coverage = callers["coverage"].as_str().unwrap();
    assert_eq!(
        coverage,
        if sampled.is_empty() {
            "complete"
        } else {
            "sampled"
        },
        "{callers:#}"
    );
    for s in sampled {
        assert!(s["route"].is_string() && s["why"].is_string(), "{s}");
        assert!(s["enumerated"].is_u64(), "{s}");
        assert!(
            s["combinations"].is_u64() || s["combinations"].is_string(),
            "{s}"
        );
    }
}

/// The callers were every combination that matters, on every route.
fn assert_complete(v: &Value) {
    let callers = &v["callers"];
    assert_eq!(callers["coverage"], "complete", "{callers:#}");
    assert_eq!(callers["routes_sampled"], 0, "{callers:#}");
    assert!(
        callers["routes_complete"].as_u64().unwrap() >= route_names(v).len() as u64,
        "fewer routes complete than routes changed: {callers:#}"
    );
}

/// The report's policy changes, each list as a set (`renamed` as `from → to`).
fn assert_policies(
    v: &Value,
    added: &[&str],
    removed: &[&str],
    changed: &[&str],
    renamed: &[&str],
) {
    let p = &v["policies"];
    assert_eq!(set_of(&p["added"]), set(added), "policies.added: {p:#}");
    assert_eq!(
        set_of(&p["removed"]),
        set(removed),
        "policies.removed: {p:#}"
    );
    assert_eq!(
        set_of(&p["changed"]),
        set(changed),
        "policies.changed: {p:#}"
    );
    let got: BTreeSet<String> = p["renamed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{} → {}",
                r["from"].as_str().unwrap(),
                r["to"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(got, set(renamed), "policies.renamed: {p:#}");
}

fn assert_schema_unchanged(v: &Value) {
    assert_eq!(v["schema"]["routes_added"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["schema"]["routes_removed"],
        serde_json::json!([]),
        "{v:#}"
    );
}

// ----- reading the markdown -----

/// A markdown table: its header line and its rows (the lines after the `| --- |` separator).
struct Table {
    header: String,
    rows: Vec<String>,
}

fn is_separator(line: &str) -> bool {
    let line = line.trim();
    line.starts_with('|')
        && line.ends_with('|')
        && line.contains("---")
        && line.chars().all(|c| matches!(c, '|' | '-' | ':' | ' '))
}

/// The table under the heading `### NAME`, if the heading is there; panics when the heading
/// has no table with at least one row.
fn table_under(md: &str, heading: &str) -> Option<Table> {
    let lines: Vec<&str> = md.lines().collect();
    let at = lines.iter().position(|l| l.trim() == heading)?;
    let section: Vec<&str> = lines[at + 1..]
        .iter()
        .take_while(|l| !l.starts_with('#'))
        .copied()
        .collect();
    let h = section
        .iter()
        .position(|l| l.trim_start().starts_with("| Routes |"))
        .unwrap_or_else(|| panic!("`{heading}` has no `| Routes |` table:\n{md}"));
    assert!(
        section.get(h + 1).is_some_and(|l| is_separator(l)),
        "`{heading}`: no `| --- |` line under the header:\n{md}"
    );
    let rows: Vec<String> = section[h + 2..]
        .iter()
        .take_while(|l| l.trim_start().starts_with('|'))
        .map(|l| l.trim().to_owned())
        .collect();
    assert!(!rows.is_empty(), "`{heading}`: a table without rows:\n{md}");
    let unique: BTreeSet<&String> = rows.iter().collect();
    assert_eq!(unique.len(), rows.len(), "`{heading}`: a row twice:\n{md}");
    Some(Table {
        header: section[h].trim().to_owned(),
        rows,
    })
}

/// Whether a table row names `route` (as itself, not as the start of a longer route).
fn row_names(row: &str, route: &str) -> bool {
    row.match_indices(route).any(|(at, _)| {
        !row[at + route.len()..]
            .chars()
            .next()
            .is_some_and(|c| c == '/' || c == '{' || c.is_alphanumeric())
    })
}

/// The markdown of a report `v`: a widening table naming exactly the widening routes, then a
/// narrowing table naming the narrowing ones, and the coverage line.
fn check_markdown(md: &str, v: &Value) {
    let gaining = routes_with(v, "gained");
    let losing = routes_with(v, "lost");
    let widening = table_under(md, "### Widening");
    let narrowing = table_under(md, "### Narrowing");
    for (table, routes, header) in [
        (
            &widening,
            &gaining,
            "| Routes | Callers who gain | Allowed now by | Before |",
        ),
        (
            &narrowing,
            &losing,
            "| Routes | Callers who lose | Denied now by | Before |",
        ),
    ] {
        match table {
            None => assert!(routes.is_empty(), "no table for {routes:?}:\n{md}"),
            Some(t) => {
                assert!(!routes.is_empty(), "a table without a change:\n{md}");
                assert_eq!(
                    t.header.split_whitespace().collect::<Vec<_>>(),
                    header.split_whitespace().collect::<Vec<_>>(),
                    "{md}"
                );
                for r in routes {
                    assert!(
                        t.rows.iter().any(|row| row_names(row, r)),
                        "no row names `{r}`:\n{md}"
                    );
                }
            }
        }
    }
    if widening.is_some() && narrowing.is_some() {
        assert!(
            md.find("### Widening").unwrap() < md.find("### Narrowing").unwrap(),
            "narrowing before widening:\n{md}"
        );
    }
    if gaining.is_empty() && losing.is_empty() {
        assert!(
            !md.lines().any(|l| l.trim_start().starts_with("| Routes |")),
            "a table without a change:\n{md}"
        );
        assert!(
            md.to_lowercase().contains("no caller gains or loses"),
            "no line says nothing changed:\n{md}"
        );
    }
    let coverage = v["callers"]["coverage"].as_str().unwrap();
    assert!(
        md.lines()
            .any(|l| l.contains("Callers considered") && l.contains(coverage)),
        "no `Callers considered` line saying {coverage}:\n{md}"
    );
}

// ----- the cases -----

const READERS: &str = "policies/readers.cedar#readers";
const WRITERS: &str = "policies/writers.cedar#writers";

#[test]
fn every_case_on_disk_has_a_test() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("tests/bundles/diff"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(on_disk, set(CASES));
    for name in CASES {
        for side in ["base", "new"] {
            assert!(
                case_dir(name).join(side).join("schema").is_dir(),
                "{name}/{side} is not a bundle"
            );
        }
    }
}

#[test]
fn a_permit_for_one_more_role_widens_exactly_that_route_for_that_role() {
    let case = Case::new("role-widened");
    let v = case.json();
    assert_eq!(v["widening"], true);
    assert_eq!(route_names(&v), ["POST /pets"], "{v:#}");
    let r = route(&v, "POST /pets");
    assert_eq!(r["status"], "changed");
    assert!(changes(r, "lost").is_empty(), "{r:#}");
    let gained = changes(r, "gained");
    assert!(!gained.is_empty());
    for c in gained {
        let roles = roles(c);
        assert!(
            roles.iter().any(|r| r == "reader"),
            "a non-reader gains: {c}"
        );
        assert!(
            !roles.iter().any(|r| r == "writer"),
            "a writer gains what it had: {c}"
        );
        assert_eq!(before(c), Vec::<String>::new(), "{c}");
        assert_eq!(
            after(c),
            ["policies/readers-post.cedar#readers-post"],
            "{c}"
        );
    }
    // The test principal `reader` is among them.
    assert!(
        gained
            .iter()
            .any(|c| source(c) == "test" && c["caller"]["claims"]["sub"] == "u-reader"),
        "{r:#}"
    );
    assert_eq!(v["summary"]["routes_gaining"], 1);
    assert_eq!(v["summary"]["routes_losing"], 0);
    assert_policies(
        &v,
        &["policies/readers-post.cedar#readers-post"],
        &[],
        &[],
        &[],
    );
    assert_schema_unchanged(&v);
    assert_complete(&v);
    assert!(
        v["callers"]["tests"].as_u64().unwrap() >= 2,
        "{:#}",
        v["callers"]
    );
    assert_eq!(v["callers"]["samples"], 0);

    check_markdown(&case.markdown(), &v);
    assert!(
        case.first_line().starts_with("widening:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_removed_forbid_widens_every_route_it_covered() {
    let case = Case::new("forbid-removed");
    let v = case.json();
    assert_eq!(v["widening"], true);
    let routes: BTreeSet<String> = route_names(&v).into_iter().collect();
    assert_eq!(
        routes,
        set(&["GET /pets", "GET /pets/{petId}", "POST /pets"]),
        "{v:#}"
    );
    for name in &routes {
        let r = route(&v, name);
        assert_eq!(r["status"], "changed", "{name}");
        assert!(changes(r, "lost").is_empty(), "{name}: {r:#}");
        let gained = changes(r, "gained");
        assert!(!gained.is_empty(), "{name}");
        let now = if name == "POST /pets" {
            WRITERS
        } else {
            READERS
        };
        for c in gained {
            assert_eq!(
                c["caller"]["context"]["sourceIp"], "203.0.113.66",
                "{name}: {c}"
            );
            assert_eq!(
                before(c),
                ["policies/guardrails.cedar#blocked-address"],
                "{name}: {c}"
            );
            assert_eq!(after(c), [now], "{name}: {c}");
        }
        // The base's own test of the blocked address is a caller that gains.
        assert!(
            gained.iter().any(|c| source(c) == "test"),
            "{name}: no test caller gains: {r:#}"
        );
    }
    for c in changes(route(&v, "POST /pets"), "gained") {
        assert!(
            roles(c).iter().any(|r| r == "writer"),
            "a non-writer gains POST /pets: {c}"
        );
    }
    assert_eq!(v["summary"]["routes_gaining"], 3);
    assert_policies(
        &v,
        &[],
        &["policies/guardrails.cedar#blocked-address"],
        &[],
        &[],
    );
    assert_schema_unchanged(&v);
    assert_complete(&v);

    let md = case.markdown();
    check_markdown(&md, &v);
    // The two reads gain the same callers through the same policies: one row.
    let widening = table_under(&md, "### Widening").unwrap();
    assert!(
        widening
            .rows
            .iter()
            .any(|row| row_names(row, "GET /pets") && row_names(row, "GET /pets/{petId}")),
        "the two reads do not share a row:\n{md}"
    );
    assert!(
        case.first_line().starts_with("widening:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_loosened_scope_condition_widens_for_callers_with_the_new_scope_only() {
    let case = Case::new("scope-loosened");
    let v = case.json();
    assert_eq!(v["widening"], true);
    assert_eq!(route_names(&v), ["POST /pets"], "{v:#}");
    let r = route(&v, "POST /pets");
    assert!(changes(r, "lost").is_empty(), "{r:#}");
    let gained = changes(r, "gained");
    assert!(!gained.is_empty());
    for c in gained {
        let scopes = scopes(c);
        assert!(
            scopes.iter().any(|s| s == "pets:admin"),
            "gains without pets:admin: {c}"
        );
        assert!(
            !scopes.iter().any(|s| s == "pets:write"),
            "gains what pets:write gave: {c}"
        );
        assert!(
            !roles(c).iter().any(|r| r == "writer"),
            "a writer gains what it had: {c}"
        );
        assert_eq!(before(c), Vec::<String>::new(), "{c}");
        assert_eq!(after(c), ["policies/scopes.cedar#scoped-writes"], "{c}");
    }
    assert_policies(&v, &[], &[], &["policies/scopes.cedar#scoped-writes"], &[]);
    assert_schema_unchanged(&v);
    assert_complete(&v);

    check_markdown(&case.markdown(), &v);
    assert!(
        case.first_line().starts_with("widening:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_route_added_to_a_group_a_role_has_is_gained_by_that_role() {
    let case = Case::new("route-added");
    let v = case.json();
    assert_eq!(v["widening"], true);
    assert_eq!(
        v["schema"]["routes_added"],
        serde_json::json!(["GET /things"]),
        "{v:#}"
    );
    assert_eq!(
        v["schema"]["routes_removed"],
        serde_json::json!([]),
        "{v:#}"
    );
    assert_eq!(route_names(&v), ["GET /things"], "{v:#}");
    let r = route(&v, "GET /things");
    assert_eq!(r["status"], "added");
    assert!(changes(r, "lost").is_empty(), "{r:#}");
    let gained = changes(r, "gained");
    assert!(!gained.is_empty());
    for c in gained {
        let roles = roles(c);
        assert!(
            roles.iter().any(|r| r == "reader" || r == "writer"),
            "gained without a role that reads: {c}"
        );
        assert_eq!(after(c), [READERS], "{c}");
    }
    for sub in ["u-reader", "u-writer"] {
        assert!(
            gained
                .iter()
                .any(|c| source(c) == "test" && c["caller"]["claims"]["sub"] == sub),
            "the test principal {sub} does not gain: {r:#}"
        );
    }
    // The same policy text now reaches one more route: no policy changed.
    assert_policies(&v, &[], &[], &[], &[]);
    assert_complete(&v);

    check_markdown(&case.markdown(), &v);
    assert!(
        case.first_line().starts_with("widening:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_pure_rename_changes_no_access_and_passes_the_gate() {
    let case = Case::new("renamed");
    let v = case.json();
    assert_eq!(v["widening"], false);
    assert_eq!(v["routes"], serde_json::json!([]), "{v:#}");
    for key in [
        "routes_gaining",
        "routes_losing",
        "callers_gaining",
        "callers_losing",
    ] {
        assert_eq!(v["summary"][key], 0, "summary.{key}");
    }
    assert_policies(
        &v,
        &[],
        &[],
        &[],
        &[
            "policies/readers.cedar#readers → policies/read-access.cedar#readers",
            "policies/writers.cedar#writers → policies/writers.cedar#pet-writers",
        ],
    );
    assert_schema_unchanged(&v);
    assert_complete(&v);

    let md = case.markdown();
    check_markdown(&md, &v);
    for id in [
        "policies/read-access.cedar#readers",
        "policies/writers.cedar#pet-writers",
    ] {
        assert!(md.contains(id), "the rename to {id} is not shown:\n{md}");
    }
    assert!(
        case.first_line().starts_with("no change in access:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_removed_permit_only_narrows_and_passes_the_gate() {
    let case = Case::new("narrowed");
    let v = case.json();
    assert_eq!(v["widening"], false);
    assert_eq!(route_names(&v), ["POST /pets"], "{v:#}");
    let r = route(&v, "POST /pets");
    assert_eq!(r["status"], "changed");
    assert!(changes(r, "gained").is_empty(), "{r:#}");
    let lost = changes(r, "lost");
    assert!(!lost.is_empty());
    for c in lost {
        assert!(
            roles(c).iter().any(|r| r == "writer"),
            "a non-writer loses: {c}"
        );
        assert_eq!(before(c), [WRITERS], "{c}");
        assert_eq!(after(c), Vec::<String>::new(), "{c}");
    }
    assert!(
        lost.iter()
            .any(|c| source(c) == "test" && c["caller"]["claims"]["sub"] == "u-writer"),
        "{r:#}"
    );
    assert_eq!(v["summary"]["routes_gaining"], 0);
    assert_eq!(v["summary"]["callers_gaining"], 0);
    assert!(v["summary"]["routes_losing"].as_u64().unwrap() >= 1);
    assert!(v["summary"]["callers_losing"].as_u64().unwrap() >= 1);
    assert_policies(&v, &[], &[WRITERS], &[], &[]);
    assert_schema_unchanged(&v);
    assert_complete(&v);

    let md = case.markdown();
    check_markdown(&md, &v);
    assert!(table_under(&md, "### Narrowing").is_some(), "{md}");
    assert!(
        case.first_line().starts_with("narrowing only:"),
        "{}",
        case.first_line()
    );
}

#[test]
fn a_literal_no_test_mentions_is_found_by_a_generated_caller() {
    let case = Case::new("hidden-literal");
    let v = case.json();
    assert_eq!(v["widening"], true);
    assert_eq!(route_names(&v), ["POST /pets"], "{v:#}");
    let r = route(&v, "POST /pets");
    assert!(changes(r, "lost").is_empty(), "{r:#}");
    let gained = changes(r, "gained");
    assert!(!gained.is_empty(), "nobody found the new permit: {v:#}");
    for c in gained {
        // No test or sample has this address: only a generated caller can.
        assert_eq!(source(c), "generated", "{c}");
        assert_eq!(c["caller"]["claims"]["email"], "ops@partner.example", "{c}");
        assert!(
            !roles(c).iter().any(|r| r == "writer"),
            "a writer gains what it had: {c}"
        );
        assert_eq!(before(c), Vec::<String>::new(), "{c}");
        assert_eq!(after(c), ["policies/partner.cedar#partner-ops"], "{c}");
    }
    assert!(v["callers"]["generated"].as_u64().unwrap() >= 1);
    assert!(v["callers"]["tests"].as_u64().unwrap() >= 2);
    assert_policies(&v, &["policies/partner.cedar#partner-ops"], &[], &[], &[]);
    assert_schema_unchanged(&v);
    assert_complete(&v);

    check_markdown(&case.markdown(), &v);
    assert!(
        case.first_line().starts_with("widening:"),
        "{}",
        case.first_line()
    );
}

// ----- callers from --claims files -----

/// The report of `sample-caller` with these claims files.
fn with_claims(files: &[&Path]) -> Value {
    let case = Case::new("sample-caller");
    let mut more = Vec::new();
    for f in files {
        more.push("--claims");
        more.push(f.to_str().unwrap());
    }
    report(case.base.to_str().unwrap(), &case.new, &more)
}

/// The sample caller with `sub` `auth0|sample` gains `POST /pets` through the new policy; no
/// test caller does.
fn assert_sample_gains(v: &Value) -> Value {
    assert_eq!(v["widening"], true, "{v:#}");
    assert_eq!(route_names(v), ["POST /pets"], "{v:#}");
    let gained = changes(route(v, "POST /pets"), "gained");
    assert!(
        !gained.iter().any(|c| source(c) == "test"),
        "a test caller gains: {v:#}"
    );
    let sample = gained
        .iter()
        .find(|c| source(c) == "sample" && c["caller"]["claims"]["sub"] == "auth0|sample")
        .unwrap_or_else(|| panic!("the sample caller does not gain: {v:#}"));
    assert_eq!(before(sample), Vec::<String>::new(), "{sample}");
    assert_eq!(
        after(sample),
        ["policies/sample.cedar#sample-user"],
        "{sample}"
    );
    assert_policies(v, &["policies/sample.cedar#sample-user"], &[], &[], &[]);
    sample.clone()
}

#[test]
fn callers_from_claims_files_are_considered_in_every_format_of_file() {
    let tmp = fresh_dir("policy-review-claims");
    // A list of claims objects.
    let list = tmp.join("list.yaml");
    std::fs::write(&list, "- sub: auth0|sample\n  scope: openid\n").unwrap();
    let v = with_claims(&[&list]);
    assert_sample_gains(&v);
    assert_eq!(v["callers"]["samples"], 1, "{:#}", v["callers"]);

    // Named callers, as in a policy-tests file.
    let principals = tmp.join("principals.yaml");
    std::fs::write(
        &principals,
        "principals:\n  partner-bot:\n    sub: auth0|sample\n    roles: [guest]\n",
    )
    .unwrap();
    let v = with_claims(&[&principals]);
    let sample = assert_sample_gains(&v);
    assert!(
        sample["caller"]["name"]
            .as_str()
            .unwrap()
            .contains("partner-bot"),
        "{sample}"
    );

    // A plain mapping name → claims, in JSON; and a second file beside it.
    let plain = tmp.join("plain.json");
    std::fs::write(&plain, r#"{"sampled-user": {"sub": "auth0|sample"}}"#).unwrap();
    let other = tmp.join("other.yaml");
    std::fs::write(&other, "- sub: auth0|somebody-else\n").unwrap();
    let v = with_claims(&[&plain, &other]);
    let sample = assert_sample_gains(&v);
    assert!(
        sample["caller"]["name"]
            .as_str()
            .unwrap()
            .contains("sampled-user"),
        "{sample}"
    );
    assert_eq!(v["callers"]["samples"], 2, "{:#}", v["callers"]);
    let gained = changes(route(&v, "POST /pets"), "gained");
    assert!(
        !gained
            .iter()
            .any(|c| c["caller"]["claims"]["sub"] == "auth0|somebody-else"),
        "another sample gains: {v:#}"
    );

    // Without the file, no sample is considered.
    let case = Case::new("sample-caller");
    let v = report(case.base.to_str().unwrap(), &case.new, &[]);
    assert_eq!(v["callers"]["samples"], 0, "{:#}", v["callers"]);
    let _ = std::fs::remove_dir_all(&tmp);
}

// ----- the base as a git revision -----

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=cedargate tests",
            "-c",
            "user.email=tests@cedargate.example",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

/// A git repository whose last commit holds the case's base bundle under `bundle/`, and whose
/// working tree holds its new bundle there.
fn repository_with(case: &Case) -> PathBuf {
    let root = fresh_dir("policy-review-git");
    let bundle = root.join("bundle");
    copy_dir(&case.base, &bundle);
    git(&root, &["init", "-q"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "base"]);
    std::fs::remove_dir_all(&bundle).unwrap();
    copy_dir(&case.new, &bundle);
    root
}

#[test]
fn a_git_revision_as_base_gives_the_same_routes_as_the_directory() {
    for name in ["role-widened", "renamed", "narrowed"] {
        let case = Case::new(name);
        let from_dirs = case.json();
        let root = repository_with(&case);
        let bundle = root.join("bundle");
        // Run from this repository's root, another git repository: the revision must be read
        // from the repository that holds --bundle.
        let from_git = report("HEAD", &bundle, &[]);
        assert_eq!(from_git["routes"], from_dirs["routes"], "{name}");
        assert_eq!(from_git["policies"], from_dirs["policies"], "{name}");
        assert_eq!(from_git["widening"], from_dirs["widening"], "{name}");
        let gate = diff("HEAD", &bundle, &["--fail-on-widening"]);
        assert_eq!(
            code(&gate),
            if from_dirs["widening"] == true { 4 } else { 0 },
            "{name}: {}",
            text(&gate)
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}

#[test]
fn a_bundle_at_the_top_of_its_repository_reads_its_base_from_a_revision() {
    // A policy repository is often the bundle itself: the bundle's path in it is empty.
    let case = Case::new("role-widened");
    let from_dirs = case.json();
    let root = fresh_dir("policy-review-git-top");
    copy_dir(&case.base, &root);
    git(&root, &["init", "-q"]);
    git(&root, &["add", "-A"]);
    git(&root, &["commit", "-q", "-m", "base"]);
    for sub in ["schema", "policies", "entities", "policy-tests"] {
        let _ = std::fs::remove_dir_all(root.join(sub));
    }
    copy_dir(&case.new, &root);
    let from_git = report("HEAD", &root, &[]);
    assert_eq!(from_git["routes"], from_dirs["routes"]);
    assert_eq!(from_git["policies"], from_dirs["policies"]);
    assert_eq!(from_git["widening"], true);
    let _ = std::fs::remove_dir_all(&root);
}

// ----- errors -----

#[test]
fn a_missing_base_or_an_unknown_revision_is_an_error() {
    let case = Case::new("role-widened");
    let tmp = fresh_dir("policy-review-missing");
    let missing = tmp.join("no-such-bundle");
    let out = diff(
        missing.to_str().unwrap(),
        &case.new,
        &["--fail-on-widening"],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-bundle"), "{stderr}");

    let root = repository_with(&case);
    let out = diff(
        "no-such-revision",
        &root.join("bundle"),
        &["--fail-on-widening"],
    );
    assert_eq!(code(&out), 1, "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-such-revision"), "{stderr}");
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn an_invalid_bundle_on_either_side_exits_3() {
    let valid = repo().join("tests/bundles/valid");
    let broken = repo().join("tests/bundles/broken/unknown-action");
    for (base, new) in [(&valid, &broken), (&broken, &valid)] {
        for more in [&[][..], &["--fail-on-widening"][..]] {
            let out = diff(base.to_str().unwrap(), new, more);
            assert_eq!(
                code(&out),
                3,
                "{} → {} {more:?}: {}",
                base.display(),
                new.display(),
                text(&out)
            );
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("DELETE /pets/{petId}"),
                "the reason is not given: {}",
                text(&out)
            );
        }
    }
}

#[test]
fn an_unreadable_claims_file_is_an_error() {
    let case = Case::new("sample-caller");
    let tmp = fresh_dir("policy-review-claims-missing");
    let missing = tmp.join("no-such-claims.yaml");
    let out = case.run(&["--claims", missing.to_str().unwrap()]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no-such-claims.yaml"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

// ----- the large reference workload -----

/// The reference workloads: `CEDARGATE_BENCH_DIR`, else `bench` of the shared directory.
fn bench_dir() -> PathBuf {
    std::env::var_os("CEDARGATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("bench"))
}

#[test]
fn one_policy_moved_to_another_role_in_the_large_workload() {
    let large = bench_dir().join("large");
    assert!(
        large.join("schema").is_dir(),
        "the reference workload {} is missing (set CEDARGATE_BENCH_DIR)",
        large.display()
    );
    let tmp = fresh_dir("policy-review-large");
    let moved = tmp.join("large");
    for d in ["schema", "policies"] {
        copy_dir(&large.join(d), &moved.join(d));
    }
    let file = moved.join("policies/generated.cedar");
    let original = std::fs::read_to_string(&file).unwrap();
    let from = "@id(\"p33\")\npermit(principal in Role::\"role14\", action == Action::\"GET /svc22/items\", resource);";
    assert!(
        original.contains(from),
        "the workload changed: p33 is not role14's GET /svc22/items"
    );
    let edited = original.replace(from, &from.replace("role14", "role199"));
    // The shared copy is read-only, and so is the copied file: replace it.
    std::fs::remove_file(&file).unwrap();
    std::fs::write(&file, edited).unwrap();

    let base = large.to_str().unwrap();
    let gate = diff(base, &moved, &["--format", "json", "--fail-on-widening"]);
    assert_eq!(code(&gate), 4, "{}", text(&gate));
    let v: Value = serde_json::from_slice(&gate.stdout).unwrap();
    check_shape(&v);
    assert_eq!(v["widening"], true);
    assert_eq!(route_names(&v), ["GET /svc22/items"], "{:#}", v["routes"]);
    let r = route(&v, "GET /svc22/items");
    let p33 = "policies/generated.cedar#p33".to_owned();
    let gained = changes(r, "gained");
    assert!(!gained.is_empty());
    for c in gained {
        assert!(
            roles(c).iter().any(|r| r == "role199"),
            "gains without role199: {c}"
        );
        assert!(after(c).contains(&p33), "{c}");
    }
    let lost = changes(r, "lost");
    assert!(!lost.is_empty(), "role14 loses the route: {r:#}");
    for c in lost {
        assert!(
            roles(c).iter().any(|r| r == "role14"),
            "loses without role14: {c}"
        );
        assert_eq!(before(c), [p33.as_str()], "{c}");
    }
    assert_eq!(v["summary"]["routes_gaining"], 1);
    assert_eq!(v["summary"]["routes_losing"], 1);
    assert_policies(&v, &[], &[], &["policies/generated.cedar#p33"], &[]);
    assert_schema_unchanged(&v);

    let out = diff(base, &moved, &["--format", "markdown"]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let md = String::from_utf8(out.stdout).unwrap();
    check_markdown(&md, &v);
    assert!(
        table_under(&md, "### Widening").is_some() && table_under(&md, "### Narrowing").is_some()
    );

    let out = diff(base, &moved, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("widening:"), "{stdout}");
    let _ = std::fs::remove_dir_all(&tmp);
}
