//! `cedargate validate`: Cedar's strict validation of the bundle plus cedargate's own checks
//! (route names, annotations, context attributes). Exit 0 valid, 3 invalid.

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
            for w in &problems.warnings {
                eprintln!("{w:?}");
            }
            if args.deny_warnings && !problems.warnings.is_empty() {
                eprintln!(
                    "cedargate: {} warning(s) and --deny-warnings: invalid",
                    problems.warnings.len()
                );
                return ExitCode::from(3);
            }
            println!(
                "valid: {} routes, {} policies, revision {}",
                snapshot.routes.len(),
                snapshot.policies.num_of_policies(),
                snapshot.revision()
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
