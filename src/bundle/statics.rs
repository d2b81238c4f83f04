//! Static entities phase: `entities/**/*.json` and the schema's actions → the entity base that
//! every caller's principal joins.
//!
//! Stage: bundle load, after the schema and the mapping. Input: the entity files, the schema,
//! the principal type. Output: one [`Entities`] set, validated against the schema and
//! transitively closed (the role hierarchy, the action groups).
//!
//! Invariant: no static entity is of the principal type: principals come from tokens only, so
//! a file cannot give some caller extra parents or attributes.

use cedar_policy::{Entities, EntityTypeName, Schema};
use miette::Report;

use super::files::BundleFiles;
use super::locate;
use super::report::{located_at, one_line, Problems};

/// The schema's action entities plus every static entity file, or `Entities::empty()` with
/// the errors in `problems`.
pub(super) fn read(
    files: &BundleFiles,
    schema: &Schema,
    principal_type: Option<&EntityTypeName>,
    problems: &mut Problems,
) -> Entities {
    let mut base = match schema.action_entities() {
        Ok(e) => e,
        Err(e) => {
            problems.error(Report::new(e).wrap_err("the schema's actions cannot form entities"));
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
        match Entities::from_json_str(text, Some(schema)) {
            Ok(es) => {
                for e in es.iter() {
                    if Some(e.uid().type_name()) == principal_type {
                        let at = locate::entity_uid(
                            text,
                            &e.uid().type_name().to_string(),
                            e.uid().id().unescaped(),
                        );
                        problems.error(located_at(path, text, at, format!("`{}` is of the principal type: principals come from tokens, not from static entities", e.uid()), None));
                        continue;
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
    match base.clone().add_entities(static_entities, Some(schema)) {
        Ok(b) => base = b,
        Err(e) => problems.error(Report::new(e).wrap_err("the static entities conflict")),
    }
    base
}
