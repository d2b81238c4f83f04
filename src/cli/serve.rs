//! `cedargate serve`: the gateway stand-in, the in-process authorizer, a demo backend, the
//! development issuer and the demo page on 127.0.0.1 (see [`crate::serve`]).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Env;
use crate::serve::{issuer, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// The port on 127.0.0.1 (0: any free port)
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// The API Gateway stage the routes are served under (`/prod/pets/42`)
    #[arg(long, default_value = "prod")]
    stage: String,
    /// Seconds an authorizer answer is cached per token, as API Gateway's result TTL (0-3600; 0: no cache)
    #[arg(long, value_name = "SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=3600))]
    cache_ttl: u64,
    /// Drop every cached authorizer answer when the policies reload (API Gateway keeps them until the TTL ends)
    #[arg(long)]
    flush_on_reload: bool,
    /// Send allowed requests to this backend instead of the demo backend (the authorizer context goes in `x-cedargate-context`)
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// The demo page's directory (default: `frontend` in the working directory, else the copy built into the binary)
    #[arg(long, value_name = "DIR")]
    frontend: Option<PathBuf>,
}

pub fn run(args: &Args, env: &dyn Env) -> ExitCode {
    let bundle = match args.bundle.dir() {
        Ok(d) => d,
        Err(e) => return super::config_failure(&e),
    };
    if args.bundle.bundle.is_none() {
        if let Some(raw) = env
            .get("CEDARGATE_POLICY_SOURCE")
            .filter(|s| s.trim().starts_with("s3://"))
        {
            eprintln!("cedargate: serve watches a bundle directory, but CEDARGATE_POLICY_SOURCE is `{}`; pass --bundle DIR", raw.trim());
            return ExitCode::from(1);
        }
    }
    let upstream = match args.upstream.as_deref().map(url::Url::parse) {
        None => None,
        Some(Ok(u)) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Some(_) => {
            eprintln!("cedargate: `--upstream` must be an http(s) URL");
            return ExitCode::from(1);
        }
    };
    let options = Options {
        port: args.port,
        stage: args.stage.clone(),
        cache_ttl: Duration::from_secs(args.cache_ttl),
        flush_on_reload: args.flush_on_reload,
        upstream,
        frontend: Some(
            args.frontend
                .clone()
                .unwrap_or_else(|| PathBuf::from("frontend")),
        ),
        bundle,
        key_file: PathBuf::from(issuer::KEY_FILE),
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(crate::serve::run(options, env)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cedargate: {e}");
            ExitCode::from(1)
        }
    }
}
