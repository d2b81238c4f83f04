//! `cedargate token`: an access token for a demo user of `serve`'s development issuer, for
//! scripts and curl. DEVELOPMENT ONLY.
//!
//! It signs with the same key file (`.cedargate/dev-issuer.pem` in the working directory,
//! created if missing) and names the same issuer (`http://127.0.0.1:PORT/dev-issuer`), so a
//! `serve --port PORT` started from the same directory accepts the token.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Env;
use crate::serve::issuer::{self, DevKey};
use crate::serve::users;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The demo user (reader, editor, admin, operator, analyst, guest)
    #[arg(long)]
    user: Option<String>,
    /// The port of the `serve` that should accept the token (its issuer URL contains it)
    #[arg(long, default_value_t = 3000)]
    port: u16,
    /// Lifetime of the token in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    expires_in: u64,
}

pub fn run(args: &Args, env: &dyn Env) -> ExitCode {
    let Some(user) = args.user.as_deref().and_then(users::find) else {
        match &args.user {
            Some(u) => eprintln!("cedargate: there is no demo user `{u}`"),
            None => eprintln!("cedargate: which demo user? `cedargate token --user NAME`"),
        }
        eprintln!();
        for u in users::USERS {
            let mut grants: Vec<String> = u.roles.iter().map(|r| format!("role {r}")).collect();
            grants.extend(u.scopes.iter().map(|s| format!("scope {s}")));
            let grants = if grants.is_empty() {
                "no roles, no scopes".to_owned()
            } else {
                grants.join(", ")
            };
            eprintln!("  {:<9} {:<14} {grants}", u.login, u.name);
        }
        return ExitCode::from(2);
    };
    if env
        .get("CEDARGATE_ISSUER")
        .is_some_and(|v| !v.trim().is_empty())
    {
        eprintln!("cedargate: note: CEDARGATE_ISSUER is set, so `serve` trusts that issuer, not the development issuer this token comes from");
    }
    let audience = issuer::audience(env);
    let key = match DevKey::load_or_create(Path::new(issuer::KEY_FILE)) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("cedargate: {e}");
            return ExitCode::from(1);
        }
    };
    let now = crate::time::unix_now();
    let claims = issuer::access_claims(
        user,
        &issuer::issuer_url(args.port),
        &audience,
        "cedargate-cli",
        now,
        Duration::from_secs(args.expires_in),
    );
    match key.sign(&claims) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cedargate: {e}");
            ExitCode::from(1)
        }
    }
}
