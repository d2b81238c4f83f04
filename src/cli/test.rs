//! `cedargate test`: runs the bundle's policy tests (`policy-tests/**/*.yaml`).
//!
//! One line per case, a per-route diff under each failure, a coverage report, and a closing
//! line `N passed, M failed`. Exit 0 when every case passed, 3 when a case failed or the
//! bundle is invalid, 1 when a test file is broken or there are no tests (a gate that runs
//! nothing must not pass).

use std::process::ExitCode;

use crate::bundle::Snapshot;
use crate::policy_tests::{self, CaseResult, Coverage};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// Fail (exit 3) unless every policy and route is covered
    #[arg(long)]
    require_full_coverage: bool,
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
    let snapshot = match Snapshot::compile(files, dir.display().to_string()) {
        Ok((s, _warnings)) => s,
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            eprintln!(
                "cedargate: invalid bundle ({} error(s)): no test can run; `cedargate validate` shows the same",
                problems.errors.len()
            );
            return ExitCode::from(3);
        }
    };
    let (suites, broken) = policy_tests::suites(&snapshot);
    for b in &broken {
        eprintln!("{b:?}");
    }
    let mut coverage = Coverage::new(&snapshot);
    let (mut passed, mut failed) = (0usize, 0usize);
    for suite in &suites {
        for case in &suite.cases {
            let (result, actual) = policy_tests::run_case(&snapshot, case);
            coverage.record(case, actual.as_deref());
            let place = format!("{}:{}", suite.file, case.line);
            match result {
                CaseResult::Passed => {
                    passed += 1;
                    println!("ok    {place}  {}", case.title());
                }
                CaseResult::Failed(mismatches) => {
                    failed += 1;
                    println!("FAIL  {place}  {}", case.title());
                    print!("{}", policy_tests::render_diff(&mismatches, "        "));
                }
                CaseResult::Refused(why) => {
                    failed += 1;
                    println!("FAIL  {place}  {}", case.title());
                    println!("        {why}");
                }
            }
        }
    }
    let no_tests = suites.is_empty() && broken.is_empty();
    if no_tests {
        eprintln!(
            "cedargate: no policy tests in `{}` (write them as `{}*.yaml`)",
            dir.join(policy_tests::TESTS_DIR).display(),
            policy_tests::TESTS_DIR
        );
    }
    let gaps = coverage.gaps();
    if passed + failed > 0 {
        print!("{}", policy_tests::render_coverage(&gaps));
    }
    if !broken.is_empty() {
        eprintln!(
            "cedargate: {} problem(s) in the test files; their cases did not run",
            broken.len()
        );
    }
    println!("{passed} passed, {failed} failed");
    if !broken.is_empty() || no_tests {
        ExitCode::from(1)
    } else if failed > 0 || (args.require_full_coverage && !gaps.is_full()) {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
