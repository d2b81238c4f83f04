//! Schema phase: `schema/*` → the Cedar [`Schema`], its resolved JSON form, and the route
//! table.
//!
//! Stage: first phase of the bundle compiler. Input: [`BundleFiles`]. Output: the schema (each
//! file parsed on its own, so that errors point into the right file, then combined), the
//! resolved JSON form in which the annotations are read, and the routes: every action named
//! `"<VERB> <path>"` (or `$connect`, `$default`). A [`Locator`] finds declarations again in
//! the schema text, for reports about them.

use cedar_policy::{EntityUid, Schema, SchemaFragment};
use miette::Report;

use super::files::BundleFiles;
use super::locate::{self, SchemaItem};
use super::report::{in_file, in_schema_file, located_at, Problems};
use crate::routes::{Route, RouteError, RouteTable};

/// The schema, read.
pub(super) struct Read {
    pub schema: Schema,
    /// The resolved JSON form: annotations and types by fully qualified name.
    pub json: serde_json::Value,
}

/// Parses and combines the schema files. `None` when there is no usable schema (the errors
/// are in `problems`).
pub(super) fn read(files: &BundleFiles, problems: &mut Problems) -> Option<Read> {
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
        return None;
    }
    let schema = match Schema::from_schema_fragments(fragments) {
        Ok(s) => s,
        Err(e) => {
            problems.error(in_schema_file(e, files).wrap_err("the schema is invalid"));
            return None;
        }
    };
    let json = if files.with_prefix("schema/", ".json").next().is_some() && schema_text.is_empty() {
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
                problems.error(Report::new(e).wrap_err("the schema's types cannot be resolved"));
                return None;
            }
        }
    };
    Some(Read { schema, json })
}

/// Finds schema declarations in the schema files, so that cedargate's own checks (which work
/// on the resolved JSON form, without positions) point at the declaration.
pub(super) struct Locator<'a> {
    files: Vec<(&'a str, &'a str)>,
}

impl<'a> Locator<'a> {
    pub fn new(files: &'a BundleFiles) -> Self {
        Self {
            files: files
                .with_prefix("schema/", "")
                .map(|(p, t)| (p.as_str(), t.as_str()))
                .collect(),
        }
    }

    /// A report about `item`, anchored at its declaration when it can be found.
    pub fn report(&self, item: &SchemaItem, message: String, help: Option<String>) -> Report {
        match locate::schema_item(&self.files, item) {
            Some((n, at, len)) => match self.files.get(n) {
                Some((p, t)) => located_at(p, t, Some((at, len)), message, help),
                None => miette::miette!("{message}"),
            },
            None => match self.files.as_slice() {
                [(p, t)] => located_at(p, t, None, message, help),
                _ => match help {
                    Some(h) => miette::miette!(help = h, "{message}"),
                    None => miette::miette!("{message}"),
                },
            },
        }
    }
}

/// The routes: every action named `"<VERB> <path>"`, `$connect` or `$default`, in the order
/// of their action ids; with each route's Cedar action.
pub(super) fn routes(
    schema: &Schema,
    at: &Locator<'_>,
    problems: &mut Problems,
) -> (RouteTable, Vec<EntityUid>) {
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
            Err(e) => problems.error(at.report(&SchemaItem::Action(name.to_owned()), e.to_string(), Some("routes are `\"<VERB> /path/{param}/{proxy+}\"`, VERB one of GET POST PUT PATCH DELETE HEAD OPTIONS ANY".to_owned()))),
        }
    }
    let table = match RouteTable::new(routes) {
        Ok(t) => t,
        Err(e) => {
            let item = match &e {
                RouteError::Duplicate { second, .. } => SchemaItem::Action(second.clone()),
                RouteError::Malformed { name, .. } => SchemaItem::Action(name.clone()),
            };
            problems.error(at.report(&item, e.to_string(), None));
            RouteTable::default()
        }
    };
    if table.is_empty() && problems.errors.is_empty() {
        problems.warn(at.report(&SchemaItem::Nowhere, "the schema declares no routes (actions named `\"<VERB> /path\"`): every request will be denied".to_owned(), None));
    }
    (table, route_actions)
}
