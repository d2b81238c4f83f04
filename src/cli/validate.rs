//! `cedargate validate`: Cedar's strict validation of the bundle plus cedargate's own checks
//! (route names, annotations, context attributes). Exit 0 valid, 3 invalid.
//!
//! Every problem is a miette report naming file, line and column with the source shown
//! (`Snapshot::compile` builds them); warnings are shown too and fail only with
//! `--deny-warnings`. The verdict on Cedar-level problems is the stock `cedar validate`'s on the
//! same files (`tests/policy_tooling.rs` checks it on a set of broken bundles).
//!
//! When a `template.yaml` (AWS SAM) lies beside the bundle, its API routes, authorizer TTLs,
//! function environment and authorizer cache keys are checked against the bundle too
//! (`crate::template`): a route behind the authorizer that the schema lacks, or the reverse, is
//! an error naming the route; a policy reading a request fact the cache key does not carry is a
//! warning (an error under a TOKEN authorizer, whose events never carry it). With several
//! issuers (a function's `CEDARGATE_ISSUER` in the template, else the environment's), a policy
//! that tells principals apart by id without telling their issuers apart is a warning; under
//! `@qualify("iss")`, so is a principal id that a policy names without an issuer.

use std::process::ExitCode;

use crate::bundle::Snapshot;
use crate::template::{ambiguous_ids, split_issuers, unqualified_ids, Template};

/// The SAM template checked beside the bundle, when there is one.
pub const TEMPLATE_FILE: &str = "template.yaml";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// Fail on warnings too
    #[arg(long)]
    deny_warnings: bool,
}

pub fn run(args: &Args) -> ExitCode {
    let dir = match args.bundle.dir() {
        Ok(d) => d,
        Err(e) => return super::config_failure(&e),
    };
    let files = match super::read_bundle(&dir) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let origin = dir.display().to_string();
    match Snapshot::compile(files, origin) {
        Ok((snapshot, problems)) => {
            // Checks that need more than the bundle: the API's `template.yaml` beside it.
            let mut errors: Vec<miette::Report> = Vec::new();
            let mut warnings = problems.warnings;
            let from_template = check_template(&dir, &snapshot, &mut errors, &mut warnings);
            warnings.extend(
                unqualified_ids(&snapshot)
                    .into_iter()
                    .map(|w| miette::miette!(severity = miette::Severity::Warning, "{w}")),
            );
            // The issuers of the environment `validate` runs in (a deployment pipeline's), when
            // the template did not already name several.
            if !from_template {
                let issuers = std::env::var("CEDARGATE_ISSUER")
                    .map(|raw| split_issuers(&raw))
                    .unwrap_or_default();
                warnings.extend(
                    ambiguous_ids(&snapshot, "`CEDARGATE_ISSUER`", &issuers)
                        .into_iter()
                        .map(|w| miette::miette!(severity = miette::Severity::Warning, "{w}")),
                );
            }
            for e in &errors {
                eprintln!("{e:?}");
            }
            for w in &warnings {
                eprintln!("{w:?}");
            }
            if !errors.is_empty() {
                eprintln!("cedargate: invalid bundle: {} error(s)", errors.len());
                return ExitCode::from(3);
            }
            if args.deny_warnings && !warnings.is_empty() {
                eprintln!(
                    "cedargate: {} warning(s) and --deny-warnings: invalid",
                    warnings.len()
                );
                return ExitCode::from(3);
            }
            println!(
                "valid: {} routes, {} policies, revision {}{}",
                snapshot.routes().len(),
                snapshot.policies.num_of_policies(),
                snapshot.revision(),
                match warnings.len() {
                    0 => String::new(),
                    n => format!(" ({n} warning(s))"),
                }
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            for w in &problems.warnings {
                eprintln!("{w:?}");
            }
            eprintln!(
                "cedargate: invalid bundle: {} error(s)",
                problems.errors.len()
            );
            ExitCode::from(3)
        }
    }
}

/// Runs the `template.yaml` checks when the bundle directory has one. Returns whether the
/// template configures some cedargate function with several issuers.
fn check_template(
    dir: &std::path::Path,
    snapshot: &Snapshot,
    errors: &mut Vec<miette::Report>,
    warnings: &mut Vec<miette::Report>,
) -> bool {
    let path = dir.join(TEMPLATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
        Err(e) => {
            errors.push(miette::miette!("cannot read `{}`: {e}", path.display()));
            return false;
        }
    };
    let template = match Template::parse(TEMPLATE_FILE, &text) {
        Ok(t) => t,
        Err(e) => {
            errors.push(miette::miette!("{e}"));
            return false;
        }
    };
    let several = template.issuers().iter().any(|(_, i)| i.len() > 1);
    let findings = template.check(snapshot);
    errors.extend(findings.errors.into_iter().map(|e| miette::miette!("{e}")));
    warnings.extend(
        findings
            .warnings
            .into_iter()
            .map(|w| miette::miette!(severity = miette::Severity::Warning, "{w}")),
    );
    several
}
