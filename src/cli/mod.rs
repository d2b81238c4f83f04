//! The command line: one file per subcommand, shared argument groups flattened.
//!
//! Exit codes follow the `cedar` CLI: 0 ok, 1 error (bad configuration, unreadable input),
//! 3 validation or test failure. Errors are printed once, to stderr.
//!
//! `serve` and `token` are development parts (the `dev` feature, on by default): a build
//! without them, as the Lambda artifact is, lists neither and says so when one is asked for.

mod explain;
mod invoke;
mod lambda;
mod publish;
#[cfg(feature = "dev")]
mod serve;
#[cfg(feature = "dev")]
mod token;
mod test;
mod validate;

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

/// Logs go to stderr as JSON lines. `CEDARGATE_LOG` (or `RUST_LOG`) sets the filter.
fn init_logging(default: &str) {
    let filter = std::env::var("CEDARGATE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default.to_owned());
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_current_span(false)
        .try_init();
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
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
