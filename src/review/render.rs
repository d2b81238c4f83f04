//! The review as text for a terminal, Markdown for a pull request, JSON for tools.
//!
//! Stage: last, after [`super::review`]. Input: a [`Review`]. Output: a string.
//!
//! The Markdown is for people deciding whether to merge: the widening first, routes that change
//! the same way for the same callers share one row, long caller lists are cut with a count, and
//! what the callers covered closes it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{json, Value};

use super::callers::{fmt_count, Caller, Source};
use super::{Change, Review, RouteChange, Side};

/// Most callers named in one table cell or text line.
const SHOWN: usize = 6;

fn caller_label(c: &Caller) -> String {
    match c.source {
        Source::Test => format!("test {}", c.name),
        Source::Sample => format!("sample {}", c.name),
        Source::Generated => c.name.clone(),
    }
}

/// The "before"/"now" side in words.
fn side_words(s: &Side) -> String {
    words(s, false)
}

/// [`side_words`], policy ids as Markdown code.
fn side_markdown(s: &Side) -> String {
    words(s, true)
}

fn words(s: &Side, md: bool) -> String {
    if let Some(note) = &s.note {
        return note.clone();
    }
    let ids: Vec<String> = s
        .policies
        .iter()
        .map(|p| if md { code(p) } else { p.clone() })
        .collect();
    match (s.allowed, ids.is_empty()) {
        (true, _) => format!("allowed by {}", ids.join(", ")),
        (false, false) => format!("forbidden by {}", ids.join(", ")),
        (false, true) => "denied: no permit applies".to_owned(),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn headline(r: &Review) -> String {
    let gaining = r.routes.iter().filter(|c| c.gained_total > 0).count();
    let losing = r.routes.iter().filter(|c| c.lost_total > 0).count();
    if gaining > 0 {
        let mut s = format!(
            "widening: callers gain access to {}",
            plural(gaining, "route", "routes")
        );
        if losing > 0 {
            let _ = write!(
                s,
                "; callers lose access to {}",
                plural(losing, "route", "routes")
            );
        }
        s
    } else if losing > 0 {
        format!(
            "narrowing only: callers lose access to {}; no caller gains any route",
            plural(losing, "route", "routes")
        )
    } else {
        "no change in access: no caller gains or loses any route".to_owned()
    }
}

fn coverage_words(r: &Review) -> String {
    let c = &r.coverage;
    let mut s = format!(
        "{} from policy tests, {} from samples, {} generated; ",
        c.tests, c.samples, c.generated
    );
    if c.complete() {
        let _ = write!(
            s,
            "complete: every combination that can change a route's decision was tried, on every route ({} unchanged)",
            c.routes_unchanged
        );
    } else {
        let _ = write!(
            s,
            "sampled on {} of {} routes (complete on {})",
            c.sampled.len(),
            c.sampled.len() + c.routes_complete,
            c.routes_complete
        );
    }
    if !c.unfit_samples.is_empty() {
        let _ = write!(
            s,
            "; {} sample(s) fit neither schema and were refused by both: {}",
            c.unfit_samples.len(),
            c.unfit_samples.join(", ")
        );
    }
    if c.broken_test_files > 0 {
        let _ = write!(
            s,
            "; {} broken test file(s) left out (`cedargate test` shows why)",
            c.broken_test_files
        );
    }
    s
}

/// The terminal summary.
pub fn text(r: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", headline(r));
    let _ = writeln!(out, "  {} → {}", r.base, r.bundle);
    for rc in &r.routes {
        for (sign, list, total) in [
            ("+", &rc.gained, rc.gained_total),
            ("-", &rc.lost, rc.lost_total),
        ] {
            if list.is_empty() {
                continue;
            }
            let shown = if list.len() < total {
                format!(" (the simplest {} shown)", list.len().min(SHOWN))
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "{sign} {}{}: {} by {}{shown}",
                rc.route,
                match rc.status {
                    super::Status::Added => " (new route)",
                    super::Status::Removed => " (removed route)",
                    super::Status::Changed => "",
                },
                if sign == "+" { "gained" } else { "lost" },
                plural(total, "caller", "callers")
            );
            for c in list.iter().take(SHOWN) {
                let _ = writeln!(
                    out,
                    "    {}: now {}; before {}",
                    caller_label(&c.caller),
                    side_words(&c.after),
                    side_words(&c.before)
                );
            }
            if list.len() > SHOWN {
                let _ = writeln!(out, "    … and {} more", list.len() - SHOWN);
            }
        }
    }
    let p = &r.policies;
    if !r.routes_added.is_empty() || !r.routes_removed.is_empty() {
        let _ = writeln!(
            out,
            "schema: routes added: {}; removed: {}",
            list_or_none(&r.routes_added),
            list_or_none(&r.routes_removed)
        );
    }
    if !(p.added.is_empty() && p.removed.is_empty() && p.changed.is_empty() && p.renamed.is_empty())
    {
        let renamed: Vec<String> = p
            .renamed
            .iter()
            .map(|(a, b)| format!("{a} → {b}"))
            .collect();
        let _ = writeln!(
            out,
            "policies: added: {}; removed: {}; changed: {}; renamed: {}",
            list_or_none(&p.added),
            list_or_none(&p.removed),
            list_or_none(&p.changed),
            list_or_none(&renamed)
        );
    }
    let _ = writeln!(out, "callers: {}", coverage_words(r));
    for s in &r.coverage.sampled {
        let _ = writeln!(
            out,
            "  sampled {}: {} of {} combinations ({})",
            s.route,
            s.enumerated,
            fmt_count(s.combinations),
            s.why.join("; ")
        );
    }
    out
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// Text for a Markdown table cell: pipes escaped, no line breaks.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

/// One table: rows grouped by (callers, now, before), each row listing its routes.
fn table(out: &mut String, changes: &[&RouteChange], gained: bool) {
    // (callers, now, before) → routes.
    let mut rows: BTreeMap<(Vec<String>, String, String), Vec<String>> = BTreeMap::new();
    let mut order: Vec<(Vec<String>, String, String)> = Vec::new();
    for rc in changes {
        let list: &[Change] = if gained { &rc.gained } else { &rc.lost };
        // Within a route, callers with the same policies on both sides share a row.
        let mut by_sides: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for c in list {
            by_sides
                .entry((side_markdown(&c.after), side_markdown(&c.before)))
                .or_default()
                .push(caller_label(&c.caller));
        }
        let total = if gained {
            rc.gained_total
        } else {
            rc.lost_total
        };
        for ((now, before), mut callers) in by_sides {
            let shown = callers.len();
            callers.truncate(SHOWN);
            if shown > SHOWN {
                callers.push(format!("… and {} more", shown - SHOWN));
            }
            if total > list.len() && by_sides_single(list) {
                callers.push(format!("({total} callers in all; the simplest shown)"));
            }
            let key = (callers, now, before);
            if !rows.contains_key(&key) {
                order.push(key.clone());
            }
            let route = match rc.status {
                super::Status::Added => format!("{} (new)", code(&rc.route)),
                super::Status::Removed => format!("{} (removed)", code(&rc.route)),
                super::Status::Changed => code(&rc.route),
            };
            rows.entry(key).or_default().push(route);
        }
    }
    let (who, now) = if gained {
        ("Callers who gain", "Allowed now by")
    } else {
        ("Callers who lose", "Denied now by")
    };
    let _ = writeln!(out, "| Routes | {who} | {now} | Before |");
    let _ = writeln!(out, "| --- | --- | --- | --- |");
    for key in order {
        let Some(routes) = rows.get(&key) else {
            continue;
        };
        let (callers, now, before) = &key;
        let callers: Vec<String> = callers.iter().map(|c| cell(c)).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            routes.join("<br>"),
            callers.join("<br>"),
            cell(
                now.trim_start_matches("allowed by ")
                    .trim_start_matches("forbidden by ")
                    .trim_start_matches("denied: ")
            ),
            cell(before)
        );
    }
}

fn by_sides_single(list: &[Change]) -> bool {
    list.windows(2).all(|w| match w {
        [a, b] => a.after.policies == b.after.policies && a.before.policies == b.before.policies,
        _ => true,
    })
}

/// The pull-request comment.
pub fn markdown(r: &Review) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## cedargate diff");
    let _ = writeln!(out);
    let _ = writeln!(out, "{} → {}", code(&r.base), code(&r.bundle));
    let _ = writeln!(out);
    let head = headline(r);
    if r.widening() {
        let _ = writeln!(out, "**{}**", capitalise(&head));
    } else {
        let _ = writeln!(out, "{}", capitalise(&head));
    }
    let gaining: Vec<&RouteChange> = r.routes.iter().filter(|c| c.gained_total > 0).collect();
    let losing: Vec<&RouteChange> = r.routes.iter().filter(|c| c.lost_total > 0).collect();
    if !gaining.is_empty() {
        let _ = writeln!(out, "\n### Widening\n");
        table(&mut out, &gaining, true);
    }
    if !losing.is_empty() {
        let _ = writeln!(out, "\n### Narrowing\n");
        table(&mut out, &losing, false);
    }
    if !r.routes_added.is_empty() || !r.routes_removed.is_empty() {
        let _ = writeln!(out, "\n### Routes\n");
        for (what, list) in [("Added", &r.routes_added), ("Removed", &r.routes_removed)] {
            if !list.is_empty() {
                let items: Vec<String> = list.iter().map(|s| code(s)).collect();
                let _ = writeln!(out, "- {what}: {}", items.join(", "));
            }
        }
    }
    let p = &r.policies;
    if !(p.added.is_empty() && p.removed.is_empty() && p.changed.is_empty() && p.renamed.is_empty())
    {
        let _ = writeln!(out, "\n### Policies\n");
        for (what, list) in [
            ("Added", &p.added),
            ("Removed", &p.removed),
            ("Changed", &p.changed),
        ] {
            if !list.is_empty() {
                let items: Vec<String> = list.iter().map(|s| code(s)).collect();
                let _ = writeln!(out, "- {what}: {}", items.join(", "));
            }
        }
        if !p.renamed.is_empty() {
            let items: Vec<String> = p
                .renamed
                .iter()
                .map(|(a, b)| format!("{} → {}", code(a), code(b)))
                .collect();
            let _ = writeln!(
                out,
                "- Renamed (same policy, no change in access): {}",
                items.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\n**Callers considered:** {}", coverage_words(r));
    if !r.coverage.sampled.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "| Sampled route | Tried | Why not every case |");
        let _ = writeln!(out, "| --- | --- | --- |");
        for s in &r.coverage.sampled {
            let _ = writeln!(
                out,
                "| {} | {} of {} | {} |",
                code(&s.route),
                s.enumerated,
                fmt_count(s.combinations),
                cell(&s.why.join("; "))
            );
        }
    }
    out
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn side_json(s: &Side) -> Value {
    let mut v = json!({"allowed": s.allowed, "policies": s.policies});
    if let (Some(note), Some(o)) = (&s.note, v.as_object_mut()) {
        o.insert("note".to_owned(), Value::String(note.clone()));
    }
    v
}

fn caller_json(c: &Caller) -> Value {
    let mut context = serde_json::Map::new();
    if let Some(ip) = &c.request.source_ip {
        context.insert("sourceIp".to_owned(), json!(ip));
    }
    if let Some(ua) = &c.request.user_agent {
        context.insert("userAgent".to_owned(), json!(ua));
    }
    if !c.request.headers.is_empty() {
        context.insert("headers".to_owned(), json!(c.request.headers));
    }
    context.insert("stage".to_owned(), json!(c.request.stage));
    context.insert("time".to_owned(), json!(c.request.time_ms / 1000));
    json!({
        "source": c.source.as_str(),
        "name": c.name,
        "claims": c.claims,
        "context": context,
    })
}

fn changes_json(list: &[Change]) -> Value {
    Value::Array(
        list.iter()
            .map(|c| {
                json!({
                    "caller": caller_json(&c.caller),
                    "before": side_json(&c.before),
                    "after": side_json(&c.after),
                })
            })
            .collect(),
    )
}

/// For tools.
pub fn json(r: &Review) -> Value {
    let c = &r.coverage;
    json!({
        "base": r.base,
        "bundle": r.bundle,
        "widening": r.widening(),
        "summary": {
            "routes_gaining": r.routes.iter().filter(|x| x.gained_total > 0).count(),
            "routes_losing": r.routes.iter().filter(|x| x.lost_total > 0).count(),
            "callers_gaining": r.callers_changing(true),
            "callers_losing": r.callers_changing(false),
        },
        "routes": r.routes.iter().map(|rc| json!({
            "route": rc.route,
            "status": rc.status.as_str(),
            "gained": changes_json(&rc.gained),
            "lost": changes_json(&rc.lost),
            "gained_total": rc.gained_total,
            "lost_total": rc.lost_total,
        })).collect::<Vec<_>>(),
        "schema": {"routes_added": r.routes_added, "routes_removed": r.routes_removed},
        "policies": {
            "added": r.policies.added,
            "removed": r.policies.removed,
            "changed": r.policies.changed,
            "renamed": r.policies.renamed.iter().map(|(a, b)| json!({"from": a, "to": b})).collect::<Vec<_>>(),
        },
        "callers": {
            "tests": c.tests,
            "samples": c.samples,
            "generated": c.generated,
            "coverage": if c.complete() { "complete" } else { "sampled" },
            "routes_complete": c.routes_complete,
            "routes_unchanged": c.routes_unchanged,
            "routes_sampled": c.sampled.len(),
            "broken_test_files": c.broken_test_files,
            "unfit_samples": c.unfit_samples,
            "sampled": c.sampled.iter().map(|s| json!({
                "route": s.route,
                "why": s.why.join("; "),
                "enumerated": s.enumerated,
                "combinations": fmt_count(s.combinations),
            })).collect::<Vec<_>>(),
        },
    })
}
