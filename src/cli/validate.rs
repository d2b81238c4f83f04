//! `cedargate validate`: Cedar's strict validation of the bundle plus cedargate's own checks
//! (route names, annotations, context attributes). Exit 0 valid, 3 invalid.
//!
//! Every problem is a miette report naming file, line and column with the source shown
//! (`Snapshot::compile` builds them); warnings are shown too and fail only with
//! `--deny-warnings`. The verdict on Cedar-level problems is the stock `cedar validate`'s on the
//! same files (`tests/policy_tooling.rs` checks it on a set of broken bundles).

use std::process::ExitCode;

use crate::store::{BundleFiles, Snapshot};

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
    let files = match BundleFiles::read_dir(&dir) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "cedargate: cannot read the bundle in `{}`: {e}",
                dir.display()
            );
            return ExitCode::from(1);
        }
    };
    let origin = dir.display().to_string();
    match Snapshot::compile(files, origin) {
        Ok((snapshot, problems)) => {
            // Checks that need more than the bundle (the routes of the API's `template.yaml`
            // against `snapshot.routes`) belong here: push their reports into `errors` /
            // `warnings` and the verdict below accounts for them.
            let errors: Vec<miette::Report> = Vec::new();
            let warnings = problems.warnings;
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
                snapshot.routes.len(),
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
