//! The command line: one file per subcommand, shared argument groups flattened.
//!
//! Exit codes follow the `cedar` CLI: 0 ok, 1 error (bad configuration, unreadable input),
//! 3 validation or test failure. Errors are printed once, to stderr.
//!
//! `serve` and `token` are development parts (the `dev` feature, on by default): a build
//! without them, as the Lambda artifact is, lists neither and says so when one is asked for.

mod diff;
mod explain;
mod invoke;
mod lambda;
mod publish;
mod rollback;
#[cfg(feature = "dev")]
mod serve;
#[cfg(feature = "dev")]
mod token;
mod test;
mod validate;
mod versions;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bundle::BundleFiles;
use crate::config::{ConfigError, PolicySource, ProcessEnv};

#[derive(Debug, Parser)]
#[command(
    name = "cedargate",
    version,
    about = "API Gateway Lambda authorizer: verified JWTs, Cedar policies, one exact route-wide IAM policy",
    after_help = BUILD_NOTE
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

/// What `--help` says about the build's parts.
#[cfg(feature = "dev")]
const BUILD_NOTE: &str = "";
#[cfg(not(feature = "dev"))]
const BUILD_NOTE: &str = "This build has no development parts (`serve`, `token`): build with the default features (`cargo build`) for them.";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run as the AWS Lambda function (the default when AWS_LAMBDA_RUNTIME_API is set)
    Lambda,
    /// Run the Lambda handler on authorizer events and print one JSON response per event
    Invoke(invoke::Args),
    /// Validate a policy bundle: Cedar's strict validation plus cedargate's conventions
    Validate(validate::Args),
    /// Validate the bundle, then upload it to S3 as one self-describing object
    Publish(publish::Args),
    /// List the published versions of a bundle object: revision, digest, when and from what they were built
    Versions(versions::Args),
    /// Make an earlier published version current again, after checking it as the authorizer would
    Rollback(rollback::Args),
    /// Run API Gateway, the authorizer, a demo backend, a development sign-in and the demo page on 127.0.0.1
    #[cfg(feature = "dev")]
    Serve(serve::Args),
    /// Print an access token for a demo user of `serve`'s development issuer (development only)
    #[cfg(feature = "dev")]
    Token(token::Args),
    /// A development command this build leaves out: says so instead of "unrecognized subcommand"
    #[cfg(not(feature = "dev"))]
    #[command(name = "serve", alias = "token", hide = true, disable_help_flag = true)]
    Absent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
        rest: Vec<std::ffi::OsString>,
    },
    /// Run the bundle's policy tests (policy-tests/**/*.yaml) and report coverage
    Test(test::Args),
    /// Explain the decision for a token or claims: principal, every route, the IAM policy
    Explain(explain::Args),
    /// Who gains and who loses which route between a base bundle (directory or git revision) and this one
    Diff(diff::Args),
}

/// Where a command finds its bundle directory.
#[derive(Debug, Clone, clap::Args)]
pub struct BundleArgs {
    /// The bundle directory (default: CEDARGATE_POLICY_SOURCE when it is a directory, else `.`)
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
}

impl BundleArgs {
    pub fn dir(&self) -> Result<PathBuf, ConfigError> {
        if let Some(d) = &self.bundle {
            return Ok(d.clone());
        }
        match std::env::var("CEDARGATE_POLICY_SOURCE")
            .ok()
            .filter(|s| !s.trim().is_empty())
        {
            None => Ok(PathBuf::from(".")),
            Some(raw) => match PolicySource::parse("CEDARGATE_POLICY_SOURCE", raw.trim())? {
                PolicySource::Dir(d) => Ok(d),
                PolicySource::S3 { .. } => Ok(PathBuf::from(".")),
            },
        }
    }
}

/// Diagnostic logs go to stderr. Lambda's own log controls are honoured as `lambda_runtime`'s
/// subscriber honours them: `AWS_LAMBDA_LOG_LEVEL` sets the level when present (before
/// `CEDARGATE_LOG` and `RUST_LOG`), and `AWS_LAMBDA_LOG_FORMAT=Text` gives text lines instead
/// of JSON lines. The decision log (`crate::audit`) does not go through this filter: it is
/// written at any level.
fn init_logging(default: &str) {
    let filter = diagnostic_filter(
        std::env::var("AWS_LAMBDA_LOG_LEVEL").ok().as_deref(),
        std::env::var("CEDARGATE_LOG")
            .or_else(|_| std::env::var("RUST_LOG"))
            .ok()
            .as_deref(),
        default,
    );
    let text = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("text"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if text {
        // CloudWatch stamps each line with its time already.
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder.json().with_current_span(false).try_init()
    };
}

/// The diagnostic log's filter: `AWS_LAMBDA_LOG_LEVEL` (TRACE, DEBUG, INFO, WARN, ERROR,
/// FATAL) when set, else `CEDARGATE_LOG`/`RUST_LOG`, else `default`. Whatever it says,
/// `lambda_runtime` logs at DEBUG at most: at TRACE it logs every raw event, and an event
/// carries the caller's token.
fn diagnostic_filter(lambda_level: Option<&str>, own: Option<&str>, default: &str) -> String {
    let lambda = lambda_level.map(|l| match l.trim().to_ascii_uppercase().as_str() {
        "TRACE" => "trace",
        "DEBUG" => "debug",
        "WARN" => "warn",
        "ERROR" | "FATAL" => "error",
        _ => "info",
    });
    let base = lambda
        .map(str::to_owned)
        .or_else(|| own.map(str::to_owned))
        .unwrap_or_else(|| default.to_owned());
    format!("{base},lambda_runtime=debug,lambda_runtime_api_client=debug")
}

fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// The async runtime, or exit code 1 with the reason printed once.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    build_runtime().map_err(|e| {
        eprintln!("cedargate: cannot start the async runtime: {e}");
        ExitCode::from(1)
    })
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(c) => c,
        None if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() => Command::Lambda,
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Lambda => {
            init_logging("info");
            lambda::run(&ProcessEnv)
        }
        Command::Invoke(args) => {
            init_logging("warn");
            invoke::run(&args, &ProcessEnv)
        }
        Command::Validate(args) => {
            init_logging("warn");
            validate::run(&args)
        }
        Command::Publish(args) => {
            init_logging("warn");
            publish::run(&args)
        }
        Command::Versions(args) => {
            init_logging("warn");
            versions::run(&args)
        }
        Command::Rollback(args) => {
            init_logging("warn");
            rollback::run(&args)
        }
        #[cfg(feature = "dev")]
        Command::Serve(args) => {
            init_logging("info");
            serve::run(&args, &ProcessEnv)
        }
        #[cfg(feature = "dev")]
        Command::Token(args) => {
            init_logging("warn");
            token::run(&args, &ProcessEnv)
        }
        #[cfg(not(feature = "dev"))]
        Command::Absent { .. } => {
            eprintln!("cedargate: this build has no development parts (`serve`, `token`): build with the default features (`cargo build`) for them");
            ExitCode::from(1)
        }
        Command::Test(args) => {
            init_logging("warn");
            test::run(&args)
        }
        Command::Explain(args) => {
            init_logging("warn");
            explain::run(&args)
        }
        Command::Diff(args) => {
            init_logging("warn");
            diff::run(&args)
        }
    }
}

/// Prints a configuration error once and returns exit code 1.
/// Reads the bundle's files, or says why not (exit 1).
pub fn read_bundle(dir: &Path) -> Result<BundleFiles, ExitCode> {
    BundleFiles::read_dir(dir).map_err(|e| {
        eprintln!(
            "cedargate: cannot read the bundle in `{}`: {e}",
            dir.display()
        );
        ExitCode::from(1)
    })
}

pub fn config_failure(e: &ConfigError) -> ExitCode {
    eprintln!("cedargate: {e}");
    ExitCode::from(1)
}

#[cfg(test)]
mod tests {
    use super::diagnostic_filter;

    #[test]
    fn lambdas_level_comes_first_and_the_runtime_never_logs_raw_events() {
        assert_eq!(
            diagnostic_filter(Some("ERROR"), Some("debug"), "info"),
            "error,lambda_runtime=debug,lambda_runtime_api_client=debug"
        );
        assert!(diagnostic_filter(Some("FATAL"), None, "info").starts_with("error,"));
        assert!(diagnostic_filter(None, Some("trace"), "info").starts_with("trace,"));
        assert!(diagnostic_filter(None, None, "warn").starts_with("warn,"));
        assert!(diagnostic_filter(Some("TRACE"), None, "info")
            .ends_with("lambda_runtime=debug,lambda_runtime_api_client=debug"));
    }
}
