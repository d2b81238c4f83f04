//! `cedargate explain`: why a caller gets what it gets ("why do I get 403?").
//!
//! For an authorizer event of any flavour (`--event`), or a token or a claims file with an
//! optional method ARN: the principal and its ancestors as the schema's mapping builds them,
//! the facts the decisions read, every route's decision with the policies that determined it,
//! and exactly the response the Lambda returns (it comes from the same core function). `--json`
//! prints the same as one JSON document.
//!
//! The bundle is the one the Lambda would use: `--bundle DIR`, else `CEDARGATE_POLICY_SOURCE`
//! (a directory, or a published object on S3, fetched as the Lambda fetches it), else `.`.
//!
//! ## Trust
//! A token is verified exactly as the authorizer verifies it (the `CEDARGATE_*` settings) when
//! `CEDARGATE_ISSUER` is set. Without configuration the command refuses to guess: decoding a
//! token without checking it must be asked for with `--unverified`, and the output then says
//! UNVERIFIED on stderr, in the header and in the JSON (`"verified": false`). The reason is
//! that an explanation of forged or expired claims looks exactly like a real one, and a person
//! answering "why 403?" must not mistake one for the other. A claims file is by nature
//! unverified and is labelled so too. The token itself is never printed, only a fingerprint.
//!
//! Exit codes: 0 explained (and the requested route, when `--arn` or `--event` was given, is
//! allowed); 2 the requested route is denied, or the token is refused (the authorizer's 401);
//! 1 an error (configuration, unreadable input, invalid bundle).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::arn::MethodArn;
use crate::authorize::Input;
use crate::bundle::Snapshot;
use crate::claims::{VerifiedClaims, Verifier};
use crate::config::{Env, JwtConfig, PolicyConfig, ProcessEnv, ResponseConfig};
use crate::event::AuthzRequest;
use crate::explain::{explain, Explanation};
use crate::jwks::KeyStore;
use crate::store::Store;
use crate::token::{parse_object, UnverifiedJwt};

/// The method ARN used when none is given: the API's root in stage `prod`. It reaches no
/// route of most APIs, so the explanation covers every route without singling one out.
pub const DEFAULT_ARN: &str = "arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/";

/// Tokens larger than this are refused before decoding when no configuration says otherwise
/// (the authorizer's default).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// An authorizer event (JSON, any flavour) as API Gateway sends it; `-` reads stdin. The
    /// token and the request facts come from the event
    #[arg(long, value_name = "FILE", conflicts_with_all = ["arn", "source_ip", "headers", "time"])]
    event: Option<PathBuf>,
    /// The caller's token (`eyJ…` or `Bearer eyJ…`); `-` reads it from stdin, which keeps it
    /// out of shell history
    #[arg(
        long,
        value_name = "TOKEN",
        conflicts_with = "claims",
        required_unless_present_any = ["claims", "event"]
    )]
    token: Option<String>,
    /// A file of claims (a JSON or YAML object, as in a policy test) instead of a token; `-`
    /// reads stdin
    #[arg(long, value_name = "FILE")]
    claims: Option<PathBuf>,
    /// Decode the token WITHOUT checking its signature, issuer, audience or expiry
    #[arg(long)]
    unverified: bool,
    /// The method ARN of the request [default: the API root in stage `prod`, which reaches no
    /// route]
    #[arg(long, value_name = "ARN")]
    arn: Option<String>,
    /// The caller's source IP (as a REQUEST authorizer event carries it)
    #[arg(long, value_name = "IP")]
    source_ip: Option<String>,
    /// A request header, `name=value` (repeatable)
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// The request time, RFC 3339 [default: now]
    #[arg(long, value_name = "TIME")]
    time: Option<String>,
    /// Print one JSON document instead of text
    #[arg(long)]
    json: bool,
}

/// Where the claims came from and whether anything vouches for them.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimsOrigin {
    verified: bool,
    /// `token` or `claims file`.
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// A short hash of the token, to correlate with the authorizer's logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    token_fingerprint: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Output<'a> {
    claims: &'a ClaimsOrigin,
    arn: String,
    #[serde(flatten)]
    explanation: &'a Explanation,
}

enum Failure {
    /// Exit 1 with this message.
    Error(String),
    /// The authorizer would answer 401: exit 2 with this message.
    Unauthorized(String),
}

fn read_input(path: &str) -> Result<String, String> {
    if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read `{path}`: {e}"))
    }
}

fn claims_from_file(path: &Path) -> Result<(VerifiedClaims, ClaimsOrigin), Failure> {
    let shown = path.display().to_string();
    let text = read_input(&shown).map_err(Failure::Error)?;
    let value: Value = if shown.ends_with(".json") {
        serde_json::from_str(&text).map_err(|e| Failure::Error(format!("`{shown}`: {e}")))?
    } else {
        serde_saphyr::from_str(&text).map_err(|e| Failure::Error(format!("`{shown}`: {e}")))?
    };
    // A claims file is what the operator says a token would carry: trusted by their choice,
    // and labelled unverified in the output.
    let claims = VerifiedClaims::from_trusted_json(value)
        .map_err(|e| Failure::Unauthorized(format!("the claims in `{shown}` are refused: {e}")))?;
    let origin = ClaimsOrigin {
        verified: false,
        source: "claims file",
        issuer: Some(claims.issuer().to_owned()).filter(|s| !s.is_empty()),
        token_fingerprint: None,
    };
    Ok((claims, origin))
}

fn token_claims(raw: &str, unverified: bool) -> Result<(VerifiedClaims, ClaimsOrigin), Failure> {
    let raw = if raw == "-" {
        read_input("-").map_err(Failure::Error)?
    } else {
        raw.to_owned()
    };
    // Say how the token will be checked before anything else is said about it.
    if !unverified
        && ProcessEnv
            .get("CEDARGATE_ISSUER")
            .is_none_or(|v| v.trim().is_empty())
    {
        return Err(Failure::Error(
            "cannot verify the token without `CEDARGATE_ISSUER`: set it, `CEDARGATE_AUDIENCE` \
             (or `CEDARGATE_CLIENT_ID`) and the key settings as for the authorizer, or pass \
             `--unverified` to decode the claims WITHOUT checking signature, issuer, audience \
             or expiry"
                .to_owned(),
        ));
    }
    // The authorizer's own settings when it is configured, its size cap included (a token
    // the Lambda refuses as too large must not be explained as accepted).
    let cfg = if unverified {
        None
    } else {
        Some(JwtConfig::from_env(&ProcessEnv).map_err(|e| Failure::Error(e.to_string()))?)
    };
    let max_bytes = cfg.as_ref().map_or(MAX_TOKEN_BYTES, |c| c.max_token_bytes);
    let token = UnverifiedJwt::parse(raw.trim(), max_bytes)
        .map_err(|e| Failure::Unauthorized(format!("the token is refused: {e}")))?;
    let fingerprint = Some(token.fingerprint());
    if unverified {
        // Explicitly asked for: read the payload without any check. The result is labelled
        // UNVERIFIED everywhere it is shown.
        let object = parse_object(token.payload())
            .map_err(|e| Failure::Unauthorized(format!("the payload is invalid: {e}")))?;
        let claims = VerifiedClaims::from_trusted_json(Value::Object(object.into_iter().collect()))
            .map_err(|e| Failure::Unauthorized(format!("the claims are refused: {e}")))?;
        let origin = ClaimsOrigin {
            verified: false,
            source: "token",
            issuer: Some(claims.issuer().to_owned()).filter(|s| !s.is_empty()),
            token_fingerprint: fingerprint,
        };
        return Ok((claims, origin));
    }
    let Some(cfg) = cfg else {
        return Err(Failure::Error("no configuration to verify with".to_owned()));
    };
    let rt = super::build_runtime()
        .map_err(|e| Failure::Error(format!("cannot start the async runtime: {e}")))?;
    let claims = rt.block_on(async {
        let keys = KeyStore::new(&cfg)
            .await
            .map_err(|e| Failure::Error(e.to_string()))?;
        Verifier::new(&cfg, Arc::new(keys))
            .verify(&token)
            .await
            .map_err(|e| {
                Failure::Unauthorized(format!(
                    "the token is refused, so the authorizer answers 401 Unauthorized: {e} \
                     (--unverified shows what its claims would get)"
                ))
            })
    })?;
    let origin = ClaimsOrigin {
        verified: true,
        source: "token",
        issuer: Some(claims.issuer().to_owned()),
        token_fingerprint: fingerprint,
    };
    Ok((claims, origin))
}

/// The request of `--arn`, `--source-ip`, `--header` and `--time`, as a REST REQUEST event
/// would carry it.
fn request(args: &Args) -> Result<AuthzRequest<'static>, String> {
    let arn_text = args.arn.as_deref().unwrap_or(DEFAULT_ARN);
    let arn = MethodArn::parse(arn_text).map_err(|e| e.to_string())?;
    let mut headers = std::collections::BTreeMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once('=')
            .ok_or_else(|| format!("header `{h}` is not `name=value`"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let request_time_ms = args
        .time
        .as_deref()
        .map(crate::time::parse_rfc3339_millis)
        .transpose()?;
    let user_agent = headers.get("user-agent").cloned();
    Ok(AuthzRequest::synthetic(
        arn,
        args.source_ip.clone(),
        headers,
        user_agent,
        request_time_ms,
    ))
}

/// The event of `--event`, parsed as the Lambda parses it.
fn event_request(path: &Path) -> Result<AuthzRequest<'static>, Failure> {
    let text = read_input(&path.display().to_string()).map_err(Failure::Error)?;
    AuthzRequest::from_json(&text)
        .map(AuthzRequest::into_owned)
        .map_err(|e| {
            Failure::Unauthorized(format!(
                "the event is refused, so the authorizer answers 401 Unauthorized: {e}"
            ))
        })
}

fn entity_ref(uid: &Value) -> String {
    let t = uid.get("type").and_then(Value::as_str).unwrap_or("?");
    let id = uid.get("id").and_then(Value::as_str).unwrap_or("?");
    format!("{t}::{}", Value::String(id.to_owned()))
}

fn render_text(origin: &ClaimsOrigin, arn: &str, x: &Explanation) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let from = match (&origin.issuer, &origin.token_fingerprint) {
        (Some(i), Some(f)) => format!("issuer `{i}`, token {f}"),
        (Some(i), None) => format!("issuer `{i}`"),
        (None, Some(f)) => format!("token {f}"),
        (None, None) => String::new(),
    };
    let trust = if origin.verified {
        format!("VERIFIED {} ({from})", origin.source)
    } else {
        format!(
            "UNVERIFIED {} — signature, issuer, audience and expiry NOT checked{}",
            origin.source,
            if from.is_empty() {
                String::new()
            } else {
                format!(" ({from})")
            }
        )
    };
    let _ = writeln!(out, "claims     {trust}");
    let _ = writeln!(
        out,
        "principal  {}",
        x.principal.get("uid").map_or_else(String::new, entity_ref)
    );
    if let Some(attrs) = x.principal.get("attrs").and_then(Value::as_object) {
        for (k, v) in attrs {
            let _ = writeln!(out, "  .{k} = {v}");
        }
    }
    let _ = writeln!(
        out,
        "ancestors  {}",
        if x.ancestors.is_empty() {
            "(none)".to_owned()
        } else {
            x.ancestors.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "facts      {} (what the decisions read; digest {})",
        serde_json::to_string(&x.facts).unwrap_or_default(),
        x.facts_digest
    );
    let _ = writeln!(out, "request    {arn} ({:?} event)", x.flavor);
    let _ = writeln!(
        out,
        "           {}",
        match &x.requested_route {
            Some(r) => format!(
                "reaches route `{r}`: {}",
                if x.request_allowed {
                    "ALLOW"
                } else {
                    "DENY (403)"
                }
            ),
            None => "reaches no route of the schema: DENY (403)".to_owned(),
        }
    );
    let _ = writeln!(out, "revision   {}", x.revision);
    let allowed_count = x.routes.iter().filter(|r| r.allowed).count();
    let _ = writeln!(
        out,
        "\nroutes ({} allowed, {} denied)",
        allowed_count,
        x.routes.len().saturating_sub(allowed_count)
    );
    let width = x.routes.iter().map(|r| r.route.len()).max().unwrap_or(0);
    for r in &x.routes {
        let mark = if x.requested_route.as_deref() == Some(r.route.as_str()) {
            "→"
        } else {
            " "
        };
        let why = match (r.allowed, r.reasons.is_empty()) {
            (false, true) => "no permit applies (default deny)".to_owned(),
            (true, _) => format!("permitted by {}", r.reasons.join(", ")),
            (false, false) => format!("forbidden by {}", r.reasons.join(", ")),
        };
        let _ = writeln!(
            out,
            "{mark} {}  {:<width$}  {why}",
            if r.allowed { "ALLOW" } else { "DENY " },
            r.route
        );
        for e in &r.errors {
            let _ = writeln!(
                out,
                "      (a policy failed to evaluate and was skipped: {e})"
            );
        }
    }
    if !x.inexact.is_empty() {
        let _ = writeln!(
            out,
            "\nallowed routes the IAM policy cannot express exactly (left out, so cached answers for them are 403): {}",
            x.inexact.join(", ")
        );
    }
    let _ = writeln!(out, "\nresponse (exactly what the Lambda returns)");
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(&x.response).unwrap_or_default()
    );
    out
}

/// The bundle the Lambda would use: `--bundle`, else `CEDARGATE_POLICY_SOURCE` (a directory,
/// or an S3 object fetched through the policy store exactly as the Lambda fetches it).
fn load_snapshot(args: &Args) -> Result<Arc<Snapshot>, ExitCode> {
    let source = ProcessEnv
        .get("CEDARGATE_POLICY_SOURCE")
        .filter(|s| !s.trim().is_empty());
    let s3 = args.bundle.bundle.is_none()
        && source
            .as_deref()
            .is_some_and(|s| s.trim().starts_with("s3://"));
    if s3 {
        let cfg = PolicyConfig::from_env(&ProcessEnv).map_err(|e| super::config_failure(&e))?;
        let rt = super::runtime()?;
        let store = Arc::new(Store::new(&cfg));
        rt.block_on(store.refresh_now());
        return store.current().ok_or_else(|| {
            let status = store.status();
            eprintln!(
                "cedargate: no valid policy bundle at `{}`: {}",
                status.source,
                status.last_error.unwrap_or_default()
            );
            ExitCode::from(1)
        });
    }
    let dir = args.bundle.dir().map_err(|e| super::config_failure(&e))?;
    let files = super::read_bundle(&dir)?;
    match Snapshot::compile(files, dir.display().to_string()) {
        Ok((s, _)) => Ok(Arc::new(s)),
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            eprintln!("cedargate: the bundle is invalid; `cedargate validate` shows why");
            Err(ExitCode::from(1))
        }
    }
}

/// Says that the authorizer answers 401, as the Lambda's `invoke` line would, and exits 2.
fn unauthorized(json: bool, reason: &str) -> ExitCode {
    eprintln!("cedargate: {reason}");
    if json {
        println!(
            "{}",
            serde_json::json!({"response": {"error": "Unauthorized"}, "reason": reason})
        );
    }
    ExitCode::from(2)
}

pub fn run(args: &Args) -> ExitCode {
    let req = match &args.event {
        Some(path) => match event_request(path) {
            Ok(r) => r,
            Err(Failure::Error(e)) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
            Err(Failure::Unauthorized(e)) => return unauthorized(args.json, &e),
        },
        None => match request(args) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let token = match (&args.token, &args.event) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(_)) if args.claims.is_none() => match &req.authorization {
            Some(t) => Some(t.to_string()),
            None => {
                return unauthorized(
                    args.json,
                    "the event carries no token, so the authorizer answers 401 Unauthorized",
                )
            }
        },
        (None, _) => None,
    };
    let claims = match (&token, &args.claims) {
        (Some(t), _) => token_claims(t, args.unverified),
        (None, Some(path)) => claims_from_file(path),
        (None, None) => Err(Failure::Error(
            "give --event, --token or --claims".to_owned(),
        )),
    };
    let (claims, origin) = match claims {
        Ok(c) => c,
        Err(Failure::Error(e)) => {
            eprintln!("cedargate: {e}");
            return ExitCode::from(1);
        }
        Err(Failure::Unauthorized(e)) => return unauthorized(args.json, &e),
    };
    if !origin.verified {
        eprintln!(
            "cedargate: WARNING: the claims are UNVERIFIED ({}): nothing checked who issued them",
            origin.source
        );
    }
    let settings = match ResponseConfig::from_env(&ProcessEnv) {
        Ok(s) => s,
        Err(e) => return super::config_failure(&e),
    };
    let snapshot = match load_snapshot(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let input = Input {
        request: &req,
        claims: &claims,
        now: SystemTime::now(),
    };
    let x = match explain(&snapshot, &input, &settings) {
        Ok(x) => x,
        Err(e) => {
            return unauthorized(
                args.json,
                &format!(
                "the claims do not fit the schema, so the authorizer answers 401 Unauthorized: {e}"
            ),
            )
        }
    };
    let arn = req.arn.to_string();
    if args.json {
        let out = Output {
            claims: &origin,
            arn,
            explanation: &x,
        };
        match serde_json::to_string_pretty(&out) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("cedargate: cannot serialise the explanation: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", render_text(&origin, &arn, &x));
    }
    if (args.arn.is_some() || args.event.is_some()) && !x.request_allowed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}
