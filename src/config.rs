//! Configuration: raw environment strings → a typed, validated [`Config`].
//!
//! Stage: start-up, before anything else runs. Input: the process environment (or any
//! `name → value` lookup, so tests need not touch the real environment). Output: typed settings.
//! Invariants: every error names the variable it comes from; a command asks only for the
//! settings it uses ([`JwtConfig`] is built only by commands that verify tokens); turning a
//! check off must be spelled out, never implied by a missing variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::Algorithm;

/// A configuration error. The message names the variable and the value's problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("`{0}` is required but not set")]
    Missing(&'static str),
    #[error("at least one of `{0}` and `{1}` is required, but neither is set")]
    MissingOneOf(&'static str, &'static str),
    #[error("`{name}` is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

fn invalid(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// Where environment values come from: the real environment, or a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

impl Env for BTreeMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).map(|v| (*v).to_owned())
    }
}

/// Every environment variable cedargate reads (all commands; `CEDARGATE_LOG` is read by the
/// CLI's logging set-up). The parser reads no name outside this list (a unit test records
/// every name it asks for), a start-up warning names any other `CEDARGATE_*` variable (a typo
/// would otherwise silently leave a default in place), and the `template.yaml` checks refuse
/// a function environment with a name outside it.
pub const KNOWN_VARIABLES: &[&str] = &[
    "CEDARGATE_ISSUER",
    "CEDARGATE_AUDIENCE",
    "CEDARGATE_CLIENT_ID",
    "CEDARGATE_TOKEN_USE",
    "CEDARGATE_JWKS_URL",
    "CEDARGATE_JWKS_FILE",
    "CEDARGATE_PUBLIC_KEY_FILE",
    "CEDARGATE_ALGORITHMS",
    "CEDARGATE_CLOCK_SKEW_SECONDS",
    "CEDARGATE_MAX_TOKEN_BYTES",
    "CEDARGATE_JWKS_COOLDOWN_SECONDS",
    "CEDARGATE_JWKS_MAX_AGE_SECONDS",
    "CEDARGATE_HTTP_TIMEOUT_MS",
    "CEDARGATE_POLICY_SOURCE",
    "CEDARGATE_POLICY_REFRESH_SECONDS",
    "CEDARGATE_POLICY_TIMEOUT_MS",
    "CEDARGATE_POLICY_LOAD_TIMEOUT_MS",
    "CEDARGATE_MAX_BUNDLE_BYTES",
    "CEDARGATE_RESPONSE",
    "CEDARGATE_CONTEXT_CLAIMS",
    "CEDARGATE_USAGE_KEY_CLAIM",
    "CEDARGATE_USAGE_KEY_MAP",
    "CEDARGATE_MODE",
    "CEDARGATE_SHADOW_ACKNOWLEDGED",
    "CEDARGATE_LOG_PRINCIPAL",
    "CEDARGATE_LOG_PRINCIPAL_SALT",
    "CEDARGATE_METRICS",
    "CEDARGATE_METRICS_NAMESPACE",
    "CEDARGATE_LOG",
];

/// The variables the Lambda service sets that cedargate reads too (its log controls and the
/// function's name, for the metrics' dimension).
pub const LAMBDA_VARIABLES: &[&str] = &["AWS_LAMBDA_LOG_LEVEL", "AWS_LAMBDA_FUNCTION_NAME"];

/// The `CEDARGATE_*` names among `names` that cedargate does not know, sorted.
pub fn unknown_variables<I, S>(names: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| n.as_ref().to_owned())
        .filter(|n| n.starts_with("CEDARGATE_") && !KNOWN_VARIABLES.contains(&n.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A variable's value, with surrounding whitespace removed; empty counts as unset.
fn value(env: &dyn Env, name: &str) -> Option<String> {
    debug_assert!(
        KNOWN_VARIABLES.contains(&name),
        "{name} is read but not in KNOWN_VARIABLES"
    );
    env.get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

fn list(env: &dyn Env, name: &'static str) -> Result<Vec<String>, ConfigError> {
    let raw = value(env, name).ok_or(ConfigError::Missing(name))?;
    let items: Vec<String> = raw
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if items.is_empty() {
        return Err(invalid(name, "the list is empty"));
    }
    Ok(items)
}

/// A list that may be unset (empty); set, it must name at least one item.
fn optional_list(env: &dyn Env, name: &'static str) -> Result<Vec<String>, ConfigError> {
    match list(env, name) {
        Err(ConfigError::Missing(_)) => Ok(Vec::new()),
        other => other,
    }
}

fn seconds(
    env: &dyn Env,
    name: &'static str,
    default: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    match value(env, name) {
        None => Ok(Duration::from_secs(default)),
        Some(v) => {
            let n: u64 = v
                .parse()
                .map_err(|_| invalid(name, format!("`{v}` is not a whole number of seconds")))?;
            if n > max {
                return Err(invalid(
                    name,
                    format!("`{v}` is more than the maximum of {max}"),
                ));
            }
            Ok(Duration::from_secs(n))
        }
    }
}

fn millis(
    env: &dyn Env,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    match value(env, name) {
        None => Ok(Duration::from_millis(default)),
        Some(v) => {
            let n: u64 = v.parse().map_err(|_| {
                invalid(name, format!("`{v}` is not a whole number of milliseconds"))
            })?;
            if !(min..=max).contains(&n) {
                return Err(invalid(name, format!("`{v}` is outside {min}..={max}")));
            }
            Ok(Duration::from_millis(n))
        }
    }
}

fn count(
    env: &dyn Env,
    name: &'static str,
    default: usize,
    min: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    match value(env, name) {
        None => Ok(default),
        Some(v) => {
            let n: usize = v
                .parse()
                .map_err(|_| invalid(name, format!("`{v}` is not a whole number")))?;
            if !(min..=max).contains(&n) {
                return Err(invalid(name, format!("`{v}` is outside {min}..={max}")));
            }
            Ok(n)
        }
    }
}

fn file(env: &dyn Env, name: &'static str) -> Option<PathBuf> {
    value(env, name).map(PathBuf::from)
}

/// An `http(s)` URL. Plain `http` is accepted only for loopback hosts (local development and
/// tests): keys fetched over plain HTTP from anywhere else could be swapped in transit.
pub fn parse_fetch_url(name: &'static str, raw: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(raw)
        .map_err(|e| invalid(name, format!("`{raw}` is not a URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(
            name,
            format!(
                "`{raw}` uses plain http; only https is accepted (http only for loopback hosts)"
            ),
        )),
        other => Err(invalid(
            name,
            format!("`{raw}` has unsupported scheme `{other}`"),
        )),
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The JWT algorithms cedargate verifies. HMAC is absent on purpose: a shared secret in an
/// authorizer is a key that can mint tokens, and `alg` confusion between RSA keys and HMAC is
/// a classic forgery.
pub const SUPPORTED_ALGORITHMS: &[(&str, Algorithm)] = &[
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

fn algorithms(env: &dyn Env) -> Result<Vec<Algorithm>, ConfigError> {
    const NAME: &str = "CEDARGATE_ALGORITHMS";
    let raw = value(env, NAME).unwrap_or_else(|| "RS256".to_owned());
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let alg = SUPPORTED_ALGORITHMS
            .iter()
            .find(|(n, _)| *n == item)
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                let known: Vec<&str> = SUPPORTED_ALGORITHMS.iter().map(|(n, _)| *n).collect();
                invalid(NAME, format!("`{item}` is not one of {}", known.join(", ")))
            })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    if out.is_empty() {
        return Err(invalid(NAME, "the list is empty"));
    }
    Ok(out)
}

/// Which kind of token the API accepts, as a Cognito token's `token_use` claim names it
/// (`CEDARGATE_TOKEN_USE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenUse {
    /// Access tokens: what an API is meant to receive (RFC 9068's reasoning: an ID token tells
    /// a client who signed in; it is not a grant to call an API).
    #[default]
    Access,
    /// ID tokens, for a user pool whose API is called with them on purpose.
    Id,
}

impl TokenUse {
    /// The value of the `token_use` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Access => "access",
            Self::Id => "id",
        }
    }
}

fn token_use(env: &dyn Env) -> Result<TokenUse, ConfigError> {
    const NAME: &str = "CEDARGATE_TOKEN_USE";
    // One value, never a list: accepting both kinds of token at once is the ID-token-for-an-API
    // confusion this setting exists to prevent.
    match value(env, NAME).as_deref() {
        None | Some("access") => Ok(TokenUse::Access),
        Some("id") => Ok(TokenUse::Id),
        Some(other) => Err(invalid(
            NAME,
            format!("`{other}` is neither `access` nor `id`"),
        )),
    }
}

/// What one issuer's tokens may name to be for this API, and where its keys come from: the
/// `ISSUER=VALUE` items of `CEDARGATE_AUDIENCE`, `CEDARGATE_CLIENT_ID` and `CEDARGATE_JWKS_URL`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerIssuer {
    /// Audiences accepted from this issuer only.
    pub audiences: Vec<String>,
    /// Client ids accepted from this issuer only.
    pub client_ids: Vec<String>,
    /// This issuer's JWKS: keys fetched from it vouch for this issuer alone.
    pub jwks_url: Option<reqwest::Url>,
}

/// Everything token verification needs.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// Accepted `iss` values, compared as exact strings (Auth0's trailing `/` included).
    pub issuers: Vec<String>,
    /// Accepted `aud` values for every issuer (`CEDARGATE_AUDIENCE` items without an issuer).
    pub audiences: Vec<String>,
    /// Accepted OAuth client ids for every issuer (`CEDARGATE_CLIENT_ID` items without an
    /// issuer): a token without `aud` is for this API when its `client_id` is one of them
    /// (Cognito access tokens), and an `aud` equal to one matches too (Cognito ID tokens).
    /// Every issuer has at least one audience or client id, here or in `per_issuer`.
    pub client_ids: Vec<String>,
    /// What each issuer accepts besides the lists above, and its own JWKS URL (`ISSUER=VALUE`
    /// items); issuers without such items are absent.
    pub per_issuer: BTreeMap<String, PerIssuer>,
    /// The `token_use` a token must carry when it carries one, and must carry when only a
    /// client id made it ours.
    pub token_use: TokenUse,
    /// Explicit JWKS URL for every issuer (keys not bound to one); when absent (and no file
    /// or PEM key is given), an issuer without its own URL has its keys from OIDC discovery.
    pub jwks_url: Option<reqwest::Url>,
    /// A JWKS loaded at start: keys available without network.
    pub jwks_file: Option<PathBuf>,
    /// A PEM public key or X.509 certificate.
    pub public_key_file: Option<PathBuf>,
    /// Allowed `alg` values.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated for `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Tokens longer than this are refused before any parsing.
    pub max_token_bytes: usize,
    /// At most one JWKS refetch for an unknown `kid` per this window.
    pub jwks_cooldown: Duration,
    /// Keys older than this are refreshed on the next use.
    pub jwks_max_age: Duration,
    /// Timeout for discovery and JWKS requests.
    pub http_timeout: Duration,
}

/// A list whose items may be scoped to one issuer: `ISSUER=VALUE` (the issuer exactly as in
/// `CEDARGATE_ISSUER`) holds for that issuer alone, a plain `VALUE` for every issuer. Returns
/// the plain items and the scoped ones by issuer.
type ScopedList = (Vec<String>, BTreeMap<String, Vec<String>>);

fn scoped_list(
    env: &dyn Env,
    name: &'static str,
    issuers: &[String],
) -> Result<ScopedList, ConfigError> {
    let mut plain = Vec::new();
    let mut scoped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // The longest issuer first: `https://a.example/t=x` is scoped to `https://a.example/t`
    // even when `https://a.example/` is configured too.
    let mut by_length: Vec<&String> = issuers.iter().collect();
    by_length.sort_by_key(|i| std::cmp::Reverse(i.len()));
    for item in optional_list(env, name)? {
        let found = by_length.iter().find_map(|iss| {
            let rest = item.strip_prefix(iss.as_str())?.trim_start();
            Some((*iss, rest.strip_prefix('=')?.trim()))
        });
        match found {
            Some((iss, "")) => {
                return Err(invalid(
                    name,
                    format!("the item for issuer `{iss}` has no value after `=`"),
                ))
            }
            Some((iss, value)) => scoped
                .entry(iss.clone())
                .or_default()
                .push(value.to_owned()),
            None => {
                // An item that looks like `https://issuer/=value` but names no configured
                // issuer is a typo: read as a plain value, it would silently match nothing.
                if let Some(iss) = issuer_like_prefix(&item) {
                    return Err(invalid(
                        name,
                        format!("`{item}` scopes its value to issuer `{iss}`, which `CEDARGATE_ISSUER` does not list"),
                    ));
                }
                plain.push(item);
            }
        }
    }
    Ok((plain, scoped))
}

/// The part before the first `=` when it reads as an issuer URL (`http(s)`, no query): what
/// an `ISSUER=VALUE` item with a misspelt issuer looks like.
fn issuer_like_prefix(item: &str) -> Option<&str> {
    let (left, _) = item.split_once('=')?;
    let left = left.trim();
    let url = reqwest::Url::parse(left).ok()?;
    (matches!(url.scheme(), "http" | "https") && url.query().is_none() && !left.contains('?'))
        .then_some(left)
}

impl JwtConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        const AUDIENCE: &str = "CEDARGATE_AUDIENCE";
        const CLIENT_ID: &str = "CEDARGATE_CLIENT_ID";
        const JWKS_URL: &str = "CEDARGATE_JWKS_URL";
        let issuers = list(env, "CEDARGATE_ISSUER")?;
        let (audiences, scoped_audiences) = scoped_list(env, AUDIENCE, &issuers)?;
        let (client_ids, scoped_client_ids) = scoped_list(env, CLIENT_ID, &issuers)?;
        let (jwks_urls, scoped_jwks_urls) = scoped_list(env, JWKS_URL, &issuers)?;
        // Without either, every token of the issuer would be for this API, whichever
        // application it was minted for.
        if audiences.is_empty()
            && scoped_audiences.is_empty()
            && client_ids.is_empty()
            && scoped_client_ids.is_empty()
        {
            return Err(ConfigError::MissingOneOf(AUDIENCE, CLIENT_ID));
        }
        let jwks_url = match jwks_urls.as_slice() {
            [] => None,
            [one] => Some(parse_fetch_url(JWKS_URL, one)?),
            _ => {
                return Err(invalid(
                    JWKS_URL,
                    "one URL for every issuer, or `ISSUER=URL` items for each issuer",
                ))
            }
        };
        let mut per_issuer: BTreeMap<String, PerIssuer> = BTreeMap::new();
        for (iss, values) in scoped_audiences {
            per_issuer.entry(iss).or_default().audiences = values;
        }
        for (iss, values) in scoped_client_ids {
            per_issuer.entry(iss).or_default().client_ids = values;
        }
        for (iss, urls) in scoped_jwks_urls {
            let [url] = urls.as_slice() else {
                return Err(invalid(
                    JWKS_URL,
                    format!("issuer `{iss}` has more than one URL"),
                ));
            };
            per_issuer.entry(iss).or_default().jwks_url = Some(parse_fetch_url(JWKS_URL, url)?);
        }
        // Each issuer on its own: one left without an audience or client id would have no way
        // to mint a token for this API, which is surely not what the operator meant.
        for iss in &issuers {
            let own = per_issuer.get(iss);
            let has_audience =
                !audiences.is_empty() || own.is_some_and(|p| !p.audiences.is_empty());
            let has_client_id =
                !client_ids.is_empty() || own.is_some_and(|p| !p.client_ids.is_empty());
            if !has_audience && !has_client_id {
                return Err(invalid(
                    AUDIENCE,
                    format!("issuer `{iss}` has no audience (nor a client id in `{CLIENT_ID}`): add `{iss}=AUDIENCE`, or an audience without an issuer for every issuer"),
                ));
            }
        }
        let token_use = token_use(env)?;
        // Discovery is derived from the issuer; a non-URL issuer is fine only when keys come
        // from elsewhere.
        let jwks_file = file(env, "CEDARGATE_JWKS_FILE");
        let public_key_file = file(env, "CEDARGATE_PUBLIC_KEY_FILE");
        if jwks_url.is_none() && jwks_file.is_none() && public_key_file.is_none() {
            for iss in &issuers {
                if per_issuer.get(iss).is_some_and(|p| p.jwks_url.is_some()) {
                    continue;
                }
                parse_fetch_url("CEDARGATE_ISSUER", iss)?;
            }
        }
        Ok(Self {
            issuers,
            audiences,
            client_ids,
            per_issuer,
            token_use,
            jwks_url,
            jwks_file,
            public_key_file,
            algorithms: algorithms(env)?,
            leeway: seconds(env, "CEDARGATE_CLOCK_SKEW_SECONDS", 5, 300)?,
            max_token_bytes: count(env, "CEDARGATE_MAX_TOKEN_BYTES", 16 * 1024, 256, 1 << 20)?,
            jwks_cooldown: seconds(env, "CEDARGATE_JWKS_COOLDOWN_SECONDS", 30, 86_400)?,
            jwks_max_age: seconds(env, "CEDARGATE_JWKS_MAX_AGE_SECONDS", 3_600, 7 * 86_400)?,
            http_timeout: millis(env, "CEDARGATE_HTTP_TIMEOUT_MS", 3_000, 100, 60_000)?,
        })
    }

    /// What tokens of `issuer` may name to be for this API: the lists for every issuer and
    /// the issuer's own.
    pub fn accepted(&self, issuer: &str) -> (Vec<String>, Vec<String>) {
        let own = self.per_issuer.get(issuer);
        let join = |every: &[String], own: Option<&Vec<String>>| {
            let mut out = every.to_vec();
            out.extend(own.into_iter().flatten().cloned());
            out
        };
        (
            join(&self.audiences, own.map(|p| &p.audiences)),
            join(&self.client_ids, own.map(|p| &p.client_ids)),
        )
    }
}

/// Where the policy bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A bundle directory (`schema/`, `policies/`, …).
    Dir(PathBuf),
    /// A published bundle object; with `version`, that one version of it (pinned), else the
    /// current one.
    S3 {
        bucket: String,
        key: String,
        version: Option<String>,
    },
}

/// The longest S3 version id accepted (S3's own are far shorter; this only bounds input).
const MAX_VERSION_ID: usize = 1024;

/// Checks the version id of `s3://bucket/key?versionId=ID`.
fn version_id(name: &'static str, raw: &str, query: &str) -> Result<String, ConfigError> {
    let Some(id) = query.strip_prefix("versionId=") else {
        return Err(invalid(
            name,
            format!("`{raw}`: the only query understood is `?versionId=VERSION_ID`"),
        ));
    };
    if id.is_empty() {
        return Err(invalid(name, format!("`{raw}` has an empty versionId")));
    }
    if id.len() > MAX_VERSION_ID {
        return Err(invalid(
            name,
            format!("`{raw}`: the versionId is over {MAX_VERSION_ID} characters"),
        ));
    }
    // Ids are taken as S3 prints them. `%` would be a URL-encoded copy (S3 would answer "no
    // such version" and the reason would be hard to see); `&`, `?`, `#` and whitespace would
    // be a second parameter or a pasting accident, never part of an id.
    if let Some(c) = id
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '%' | '&' | '?' | '#'))
    {
        return Err(invalid(
            name,
            format!(
                "`{raw}`: the versionId contains `{}`; give the id exactly as S3 lists it, not URL-encoded",
                c.escape_default()
            ),
        ));
    }
    Ok(id.to_owned())
}

impl PolicySource {
    pub fn parse(name: &'static str, raw: &str) -> Result<Self, ConfigError> {
        if let Some(rest) = raw.strip_prefix("s3://") {
            // A `?` ends the key: a key with a `?` in it cannot be named here, which is
            // better than guessing where a version id begins.
            let (path, version) = match rest.split_once('?') {
                Some((path, query)) => (path, Some(version_id(name, raw, query)?)),
                None => (rest, None),
            };
            let (bucket, key) = path
                .split_once('/')
                .ok_or_else(|| invalid(name, format!("`{raw}` has no key; use s3://bucket/key")))?;
            if bucket.is_empty() || key.is_empty() {
                return Err(invalid(
                    name,
                    format!("`{raw}` needs both a bucket and a key"),
                ));
            }
            return Ok(Self::S3 {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                version,
            });
        }
        if raw.contains("://") {
            return Err(invalid(
                name,
                format!("`{raw}` is neither a directory nor s3://bucket/key[?versionId=ID]"),
            ));
        }
        Ok(Self::Dir(PathBuf::from(raw)))
    }
}

impl std::fmt::Display for PolicySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(p) => write!(f, "{}", p.display()),
            Self::S3 {
                bucket,
                key,
                version,
            } => {
                write!(f, "s3://{bucket}/{key}")?;
                match version {
                    Some(v) => write!(f, "?versionId={v}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Everything the policy store needs.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub source: PolicySource,
    /// How stale a loaded bundle may get before a conditional re-fetch.
    pub refresh: Duration,
    /// The bound on waiting for a refresh at the start of an invocation.
    pub refresh_timeout: Duration,
    /// The bound on waiting for the first load (cold start).
    pub load_timeout: Duration,
    /// Bundles larger than this are refused.
    pub max_bundle_bytes: usize,
}

impl PolicyConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        const SOURCE: &str = "CEDARGATE_POLICY_SOURCE";
        let raw = value(env, SOURCE).unwrap_or_else(|| ".".to_owned());
        Ok(Self {
            source: PolicySource::parse(SOURCE, &raw)?,
            refresh: seconds(env, "CEDARGATE_POLICY_REFRESH_SECONDS", 30, 86_400)?,
            refresh_timeout: millis(env, "CEDARGATE_POLICY_TIMEOUT_MS", 1_500, 50, 60_000)?,
            load_timeout: millis(
                env,
                "CEDARGATE_POLICY_LOAD_TIMEOUT_MS",
                30_000,
                100,
                600_000,
            )?,
            max_bundle_bytes: count(
                env,
                "CEDARGATE_MAX_BUNDLE_BYTES",
                64 * 1024 * 1024,
                1024,
                1 << 30,
            )?,
        })
    }
}

/// The answer HTTP API payload 2.0 events get (`CEDARGATE_RESPONSE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ResponseMode {
    /// An IAM policy covering every route (every flavour): right with any authorizer cache.
    #[default]
    Policy,
    /// `{"isAuthorized": …}` for the requested route (HTTP API 2.0 events with simple responses
    /// enabled); only right when API Gateway's cache is keyed on the route or off, which
    /// cedargate checks on every event. Other flavours cannot take a simple response and still
    /// get a policy.
    Simple,
}

/// Where `usageIdentifierKey` comes from: a verified claim, optionally mapped to API key
/// values (`CEDARGATE_USAGE_KEY_CLAIM`, `CEDARGATE_USAGE_KEY_MAP`). Never from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageKeyConfig {
    /// The claim naming the caller's key or tier.
    pub claim: String,
    /// `claim value → API key value`, in the order written (the first entry an array claim
    /// contains wins); empty: the claim value is the key itself.
    pub map: Vec<(String, String)>,
    /// The key for callers whose claim is missing or not in the map (`*=KEY`).
    pub fallback: Option<String>,
}

fn usage_keys(env: &dyn Env) -> Result<Option<UsageKeyConfig>, ConfigError> {
    const CLAIM: &str = "CEDARGATE_USAGE_KEY_CLAIM";
    const MAP: &str = "CEDARGATE_USAGE_KEY_MAP";
    let claim = value(env, CLAIM);
    let raw_map = value(env, MAP);
    let Some(claim) = claim else {
        if raw_map.is_some() {
            return Err(invalid(
                MAP,
                format!("it maps the values of a claim, so `{CLAIM}` must name the claim"),
            ));
        }
        return Ok(None);
    };
    let mut map: Vec<(String, String)> = Vec::new();
    let mut fallback = None;
    for item in raw_map
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let Some((from, key)) = item.split_once('=') else {
            return Err(invalid(
                MAP,
                "expected `CLAIM_VALUE=API_KEY_VALUE` pairs separated by commas (`*=KEY` for everyone else)",
            ));
        };
        let (from, key) = (from.trim(), key.trim());
        if from.is_empty() || key.is_empty() || key.chars().any(char::is_whitespace) {
            return Err(invalid(
                MAP,
                format!("the entry for `{from}` needs a claim value and an API key value without spaces"),
            ));
        }
        if from == "*" {
            if fallback.replace(key.to_owned()).is_some() {
                return Err(invalid(MAP, "`*` appears twice"));
            }
        } else if map.iter().any(|(f, _)| f == from) {
            return Err(invalid(MAP, format!("`{from}` appears twice")));
        } else {
            map.push((from.to_owned(), key.to_owned()));
        }
    }
    if raw_map.is_some() && map.is_empty() && fallback.is_none() {
        return Err(invalid(MAP, "the map is empty"));
    }
    Ok(Some(UsageKeyConfig {
        claim,
        map,
        fallback,
    }))
}

/// What the authorizer response carries besides the decision.
#[derive(Debug, Clone, Default)]
pub struct ResponseConfig {
    /// IAM policy or simple responses for HTTP API 2.0 events.
    pub mode: ResponseMode,
    /// Claims copied into the response `context` (flattened where API Gateway needs it).
    pub context_claims: Vec<String>,
    /// Where `usageIdentifierKey` comes from, when usage plans are in use.
    pub usage_key: Option<UsageKeyConfig>,
}

impl ResponseConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        const MODE: &str = "CEDARGATE_RESPONSE";
        let mode = match value(env, MODE).as_deref() {
            None | Some("policy") => ResponseMode::Policy,
            Some("simple") => ResponseMode::Simple,
            Some(other) => {
                return Err(invalid(
                    MODE,
                    format!("`{other}` is neither `policy` nor `simple`"),
                ))
            }
        };
        let context_claims = match value(env, "CEDARGATE_CONTEXT_CLAIMS") {
            None => vec!["sub".to_owned(), "scope".to_owned()],
            Some(v) if v == "-" => Vec::new(),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        Ok(Self {
            mode,
            context_claims,
            usage_key: usage_keys(env)?,
        })
    }
}

/// Whether decisions are enforced (`CEDARGATE_MODE`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// Every route gets the policies' decision.
    #[default]
    Enforce,
    /// Tokens are verified as in `Enforce` (a bad token is still 401), but every route of the
    /// stage is allowed; what `Enforce` would have denied is logged and counted.
    Shadow,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Shadow => "shadow",
        }
    }

    /// Parses a `CEDARGATE_MODE` value (also used by the `template.yaml` checks).
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw {
            "enforce" => Ok(Mode::Enforce),
            "shadow" => Ok(Mode::Shadow),
            other => Err(format!("`{other}` is neither `enforce` nor `shadow`")),
        }
    }
}

/// How principal ids appear in logs (`CEDARGATE_LOG_PRINCIPAL`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PrincipalLogging {
    /// As the response's `principalId`.
    #[default]
    Plain,
    /// A salted SHA-256, for teams that treat principal ids as personal data: the same
    /// principal always logs the same value (lines stay joinable), the id itself is not there.
    Hash { salt: String },
}

/// What the decision log and the metrics carry, and whether decisions are enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObserveConfig {
    pub mode: Mode,
    /// `CEDARGATE_SHADOW_ACKNOWLEDGED=true`: the deployment says shadow mode is meant.
    pub shadow_acknowledged: bool,
    pub principal: PrincipalLogging,
    /// The CloudWatch namespace of the embedded metrics; `None`: no metrics.
    pub metrics_namespace: Option<String>,
    /// The `level` the decision line carries: Lambda's own log-level filter (JSON log format)
    /// drops lines below `AWS_LAMBDA_LOG_LEVEL`, so the audit line is written at that level
    /// when it is above `INFO`.
    pub audit_level: &'static str,
    /// The metrics' `FunctionName` dimension (`AWS_LAMBDA_FUNCTION_NAME`, else `cedargate`).
    pub function_name: String,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            shadow_acknowledged: false,
            principal: PrincipalLogging::Plain,
            metrics_namespace: Some("cedargate".to_owned()),
            audit_level: "INFO",
            function_name: "cedargate".to_owned(),
        }
    }
}

/// A boolean setting: `true` or `false` (unset: `false`).
fn flag(env: &dyn Env, name: &'static str) -> Result<bool, ConfigError> {
    match value(env, name).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(invalid(
            name,
            format!("`{other}` is neither `true` nor `false`"),
        )),
    }
}

/// The level a line must carry to pass Lambda's application log-level filter at `raw`
/// (`AWS_LAMBDA_LOG_LEVEL`): `INFO` unless the filter is set above it.
pub fn audit_level(raw: Option<&str>) -> &'static str {
    match raw.map(str::trim).map(str::to_ascii_uppercase).as_deref() {
        Some("WARN") => "WARN",
        Some("ERROR") => "ERROR",
        Some("FATAL") => "FATAL",
        _ => "INFO",
    }
}

impl ObserveConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        const MODE: &str = "CEDARGATE_MODE";
        let mode = match value(env, MODE) {
            None => Mode::Enforce,
            Some(raw) => Mode::parse(&raw).map_err(|e| invalid(MODE, e))?,
        };
        const PRINCIPAL: &str = "CEDARGATE_LOG_PRINCIPAL";
        let salt = value(env, "CEDARGATE_LOG_PRINCIPAL_SALT");
        let principal = match value(env, PRINCIPAL).as_deref() {
            None | Some("plain") => {
                if salt.is_some() {
                    return Err(invalid(
                        "CEDARGATE_LOG_PRINCIPAL_SALT",
                        "it is only used with `CEDARGATE_LOG_PRINCIPAL=hash`",
                    ));
                }
                PrincipalLogging::Plain
            }
            Some("hash") => PrincipalLogging::Hash {
                salt: salt.unwrap_or_default(),
            },
            Some(other) => {
                return Err(invalid(
                    PRINCIPAL,
                    format!("`{other}` is neither `plain` nor `hash`"),
                ))
            }
        };
        const METRICS: &str = "CEDARGATE_METRICS";
        let namespace = value(env, "CEDARGATE_METRICS_NAMESPACE");
        let metrics_namespace = match value(env, METRICS).as_deref() {
            None | Some("emf") => Some(namespace.unwrap_or_else(|| "cedargate".to_owned())),
            Some("off") => None,
            Some(other) => {
                return Err(invalid(
                    METRICS,
                    format!("`{other}` is neither `emf` nor `off`"),
                ))
            }
        };
        Ok(Self {
            mode,
            shadow_acknowledged: flag(env, "CEDARGATE_SHADOW_ACKNOWLEDGED")?,
            principal,
            metrics_namespace,
            audit_level: audit_level(env.get("AWS_LAMBDA_LOG_LEVEL").as_deref()),
            function_name: env
                .get("AWS_LAMBDA_FUNCTION_NAME")
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| "cedargate".to_owned()),
        })
    }
}

/// The full configuration of the authorizer (Lambda, `invoke`, `serve`).
#[derive(Debug, Clone)]
pub struct Config {
    pub jwt: JwtConfig,
    pub policy: PolicyConfig,
    pub response: ResponseConfig,
    pub observe: ObserveConfig,
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        Ok(Self {
            jwt: JwtConfig::from_env(env)?,
            policy: PolicyConfig::from_env(env)?,
            response: ResponseConfig::from_env(env)?,
            observe: ObserveConfig::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn issuer_and_an_audience_or_client_id_are_required_and_named() {
        let e = env(&[("CEDARGATE_AUDIENCE", "a")]);
        assert_eq!(
            JwtConfig::from_env(&e).unwrap_err(),
            ConfigError::Missing("CEDARGATE_ISSUER")
        );
        let e = env(&[("CEDARGATE_ISSUER", "https://x/")]);
        let err = JwtConfig::from_env(&e).unwrap_err();
        assert_eq!(
            err,
            ConfigError::MissingOneOf("CEDARGATE_AUDIENCE", "CEDARGATE_CLIENT_ID")
        );
        assert_eq!(
            err.to_string(),
            "at least one of `CEDARGATE_AUDIENCE` and `CEDARGATE_CLIENT_ID` is required, but neither is set"
        );
        // Blank counts as unset, for both.
        let e = env(&[
            ("CEDARGATE_ISSUER", "https://x/"),
            ("CEDARGATE_AUDIENCE", " "),
            ("CEDARGATE_CLIENT_ID", ""),
        ]);
        assert!(matches!(
            JwtConfig::from_env(&e),
            Err(ConfigError::MissingOneOf(..))
        ));
    }

    #[test]
    fn a_client_id_alone_is_enough_and_access_tokens_are_the_default() {
        let e = env(&[
            (
                "CEDARGATE_ISSUER",
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab12",
            ),
            ("CEDARGATE_CLIENT_ID", " 1example23456789, 2other "),
        ]);
        let c = JwtConfig::from_env(&e).unwrap();
        assert!(c.audiences.is_empty());
        assert_eq!(c.client_ids, vec!["1example23456789", "2other"]);
        assert_eq!(c.token_use, TokenUse::Access);
        // And an audience alone keeps the default too.
        let c = JwtConfig::from_env(&env(&[
            ("CEDARGATE_ISSUER", "https://x/"),
            ("CEDARGATE_AUDIENCE", "api"),
        ]))
        .unwrap();
        assert!(c.client_ids.is_empty());
        assert_eq!(c.token_use, TokenUse::Access);
    }

    #[test]
    fn a_client_id_list_of_only_commas_is_refused_and_named() {
        let e = env(&[
            ("CEDARGATE_ISSUER", "https://x/"),
            ("CEDARGATE_AUDIENCE", "api"),
            ("CEDARGATE_CLIENT_ID", " , "),
        ]);
        let err = JwtConfig::from_env(&e).unwrap_err().to_string();
        assert!(
            err.contains("CEDARGATE_CLIENT_ID") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn token_use_is_access_or_id_and_nothing_else() {
        let with = |v: &'static str| {
            JwtConfig::from_env(&env(&[
                ("CEDARGATE_ISSUER", "https://x/"),
                ("CEDARGATE_CLIENT_ID", "c"),
                ("CEDARGATE_TOKEN_USE", v),
            ]))
        };
        assert_eq!(with("access").unwrap().token_use, TokenUse::Access);
        assert_eq!(with(" id ").unwrap().token_use, TokenUse::Id);
        assert_eq!(with("").unwrap().token_use, TokenUse::Access);
        // Both at once, other spellings and other kinds are configuration errors.
        for bad in ["access,id", "ID", "Access", "both", "refresh", "*"] {
            let err = with(bad).unwrap_err().to_string();
            assert!(
                err.contains("CEDARGATE_TOKEN_USE") && err.contains(&format!("`{bad}`")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn lists_keep_exact_strings() {
        let e = env(&[
            (
                "CEDARGATE_ISSUER",
                "https://a.auth0.com/, https://b.example",
            ),
            ("CEDARGATE_AUDIENCE", "api"),
        ]);
        let c = JwtConfig::from_env(&e).unwrap();
        assert_eq!(c.issuers, vec!["https://a.auth0.com/", "https://b.example"]);
        assert_eq!(c.algorithms, vec![Algorithm::RS256]);
    }

    const A: &str = "https://a.example/";
    const B: &str = "https://b.example/";

    #[test]
    fn issuer_items_scope_audiences_client_ids_and_jwks_urls_to_one_issuer() {
        let c = JwtConfig::from_env(&env(&[
            ("CEDARGATE_ISSUER", "https://a.example/, https://b.example/"),
            (
                "CEDARGATE_AUDIENCE",
                "shared, https://a.example/=api-a, https://a.example/ = api-a2",
            ),
            ("CEDARGATE_CLIENT_ID", "https://b.example/=client-b"),
            (
                "CEDARGATE_JWKS_URL",
                "https://b.example/=https://keys.b.example/jwks",
            ),
        ]))
        .unwrap();
        assert_eq!(c.audiences, vec!["shared"]);
        assert!(c.client_ids.is_empty() && c.jwks_url.is_none());
        assert_eq!(c.per_issuer[A].audiences, vec!["api-a", "api-a2"]);
        assert_eq!(c.per_issuer[B].client_ids, vec!["client-b"]);
        assert_eq!(
            c.per_issuer[B].jwks_url.as_ref().map(reqwest::Url::as_str),
            Some("https://keys.b.example/jwks")
        );
        assert_eq!(
            c.accepted(A),
            (
                vec!["shared".into(), "api-a".into(), "api-a2".into()],
                vec![]
            )
        );
        assert_eq!(
            c.accepted(B),
            (vec!["shared".into()], vec!["client-b".into()])
        );
    }

    #[test]
    fn the_longest_matching_issuer_owns_an_item() {
        let c = JwtConfig::from_env(&env(&[
            (
                "CEDARGATE_ISSUER",
                "https://a.example/, https://a.example/tenant2",
            ),
            (
                "CEDARGATE_AUDIENCE",
                "https://a.example/tenant2=x, https://a.example/=y",
            ),
        ]))
        .unwrap();
        assert_eq!(
            c.per_issuer["https://a.example/tenant2"].audiences,
            vec!["x"]
        );
        assert_eq!(c.per_issuer[A].audiences, vec!["y"]);
    }

    #[test]
    fn plain_values_with_an_equals_sign_stay_plain() {
        // Not an issuer before the `=`: an audience (or a URL with a query) as written.
        let c = JwtConfig::from_env(&env(&[
            ("CEDARGATE_ISSUER", A),
            ("CEDARGATE_AUDIENCE", "urn:api=1, https://api.example/?v=2"),
        ]))
        .unwrap();
        assert_eq!(c.audiences, vec!["urn:api=1", "https://api.example/?v=2"]);
        assert!(c.per_issuer.is_empty());
    }

    #[test]
    fn issuer_items_that_cannot_be_honoured_are_refused_and_named() {
        for (vars, name, needle) in [
            // A misspelt issuer would match no token at all.
            (
                vec![("CEDARGATE_AUDIENCE", "https://a.example/=x, https://c.example/=y")],
                "CEDARGATE_AUDIENCE",
                "`https://c.example/`, which `CEDARGATE_ISSUER` does not list",
            ),
            (
                vec![("CEDARGATE_AUDIENCE", "shared, https://b.example/=")],
                "CEDARGATE_AUDIENCE",
                "no value after `=`",
            ),
            // Issuer B has neither an audience nor a client id of its own or for everyone.
            (
                vec![("CEDARGATE_AUDIENCE", "https://a.example/=x")],
                "CEDARGATE_AUDIENCE",
                "issuer `https://b.example/` has no audience",
            ),
            (
                vec![
                    ("CEDARGATE_AUDIENCE", "x"),
                    ("CEDARGATE_JWKS_URL", "https://k.example/1, https://k.example/2"),
                ],
                "CEDARGATE_JWKS_URL",
                "`ISSUER=URL`",
            ),
            (
                vec![
                    ("CEDARGATE_AUDIENCE", "x"),
                    (
                        "CEDARGATE_JWKS_URL",
                        "https://a.example/=https://k.example/1, https://a.example/=https://k.example/2",
                    ),
                ],
                "CEDARGATE_JWKS_URL",
                "more than one URL",
            ),
            (
                vec![
                    ("CEDARGATE_AUDIENCE", "x"),
                    ("CEDARGATE_JWKS_URL", "https://a.example/=http://keys.example/jwks"),
                ],
                "CEDARGATE_JWKS_URL",
                "plain http",
            ),
        ] {
            let mut e = env(&[("CEDARGATE_ISSUER", "https://a.example/,https://b.example/")]);
            e.extend(vars);
            let err = JwtConfig::from_env(&e).unwrap_err().to_string();
            assert!(err.contains(name) && err.contains(needle), "{err}");
        }
    }

    #[test]
    fn an_issuer_with_its_own_jwks_url_needs_no_discovery_url() {
        // A non-URL issuer is fine when its keys come from its own JWKS URL.
        let c = JwtConfig::from_env(&env(&[
            ("CEDARGATE_ISSUER", "legacy-issuer"),
            ("CEDARGATE_AUDIENCE", "api"),
            (
                "CEDARGATE_JWKS_URL",
                "legacy-issuer=https://keys.example/jwks",
            ),
        ]))
        .unwrap();
        assert!(c.per_issuer["legacy-issuer"].jwks_url.is_some());
        let err = JwtConfig::from_env(&env(&[
            ("CEDARGATE_ISSUER", "legacy-issuer"),
            ("CEDARGATE_AUDIENCE", "api"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(err.contains("CEDARGATE_ISSUER"), "{err}");
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let base = [
            ("CEDARGATE_ISSUER", "https://x/"),
            ("CEDARGATE_AUDIENCE", "a"),
        ];
        let mut e = env(&base);
        e.insert("CEDARGATE_JWKS_URL", "http://127.0.0.1:8080/jwks");
        assert!(JwtConfig::from_env(&e).is_ok());
        e.insert("CEDARGATE_JWKS_URL", "http://keys.example/jwks");
        let err = JwtConfig::from_env(&e).unwrap_err().to_string();
        assert!(err.contains("CEDARGATE_JWKS_URL"), "{err}");
    }

    #[test]
    fn unknown_and_symmetric_algorithms_are_refused() {
        let e = env(&[
            ("CEDARGATE_ISSUER", "https://x/"),
            ("CEDARGATE_AUDIENCE", "a"),
            ("CEDARGATE_ALGORITHMS", "RS256,HS256"),
        ]);
        let err = JwtConfig::from_env(&e).unwrap_err().to_string();
        assert!(
            err.contains("CEDARGATE_ALGORITHMS") && err.contains("HS256"),
            "{err}"
        );
    }

    #[test]
    fn numbers_are_checked() {
        let e = env(&[("CEDARGATE_POLICY_REFRESH_SECONDS", "soon")]);
        let err = PolicyConfig::from_env(&e).unwrap_err().to_string();
        assert!(err.contains("CEDARGATE_POLICY_REFRESH_SECONDS"), "{err}");
    }

    /// An environment that records every name asked for.
    #[derive(Default)]
    struct Recording(
        std::cell::RefCell<Vec<String>>,
        BTreeMap<&'static str, &'static str>,
    );

    impl Env for Recording {
        fn get(&self, name: &str) -> Option<String> {
            self.0.borrow_mut().push(name.to_owned());
            self.1.get(name).map(|v| (*v).to_owned())
        }
    }

    #[test]
    fn every_variable_the_parser_reads_is_known() {
        let rec = Recording(
            Default::default(),
            env(&[
                ("CEDARGATE_ISSUER", "https://x/"),
                ("CEDARGATE_AUDIENCE", "a"),
                ("CEDARGATE_USAGE_KEY_CLAIM", "tier"),
                ("CEDARGATE_USAGE_KEY_MAP", "gold=k1"),
            ]),
        );
        Config::from_env(&rec).unwrap();
        let asked = rec.0.borrow();
        assert!(asked.len() > 15, "{asked:?}");
        for name in asked.iter() {
            assert!(
                KNOWN_VARIABLES.contains(&name.as_str())
                    || LAMBDA_VARIABLES.contains(&name.as_str()),
                "{name}"
            );
        }
        // And the list has no stale names (the CLI reads `CEDARGATE_LOG` itself).
        for known in KNOWN_VARIABLES.iter().filter(|k| **k != "CEDARGATE_LOG") {
            assert!(asked.iter().any(|a| a == known), "{known} is never read");
        }
        assert_eq!(
            unknown_variables([
                "CEDARGATE_ISUER",
                "CEDARGATE_ISSUER",
                "HOME",
                "CEDARGATE_ISUER"
            ]),
            vec!["CEDARGATE_ISUER"]
        );
    }

    #[test]
    fn mode_principal_logging_and_metrics_are_validated_and_named() {
        let c = ObserveConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c, ObserveConfig::default());
        let c = ObserveConfig::from_env(&env(&[
            ("CEDARGATE_MODE", "shadow"),
            ("CEDARGATE_SHADOW_ACKNOWLEDGED", "true"),
            ("CEDARGATE_LOG_PRINCIPAL", "hash"),
            ("CEDARGATE_LOG_PRINCIPAL_SALT", "s3cret"),
            ("CEDARGATE_METRICS_NAMESPACE", "Team/Authz"),
            ("AWS_LAMBDA_LOG_LEVEL", "ERROR"),
            ("AWS_LAMBDA_FUNCTION_NAME", "authz-prod"),
        ]))
        .unwrap();
        assert_eq!(c.mode, Mode::Shadow);
        assert!(c.shadow_acknowledged);
        assert_eq!(
            c.principal,
            PrincipalLogging::Hash {
                salt: "s3cret".to_owned()
            }
        );
        assert_eq!(c.metrics_namespace.as_deref(), Some("Team/Authz"));
        assert_eq!(c.audit_level, "ERROR");
        assert_eq!(c.function_name, "authz-prod");
        let off = ObserveConfig::from_env(&env(&[("CEDARGATE_METRICS", "off")])).unwrap();
        assert_eq!(off.metrics_namespace, None);
        for (name, value) in [
            ("CEDARGATE_MODE", "audit"),
            ("CEDARGATE_SHADOW_ACKNOWLEDGED", "yes"),
            ("CEDARGATE_LOG_PRINCIPAL", "sha"),
            ("CEDARGATE_METRICS", "statsd"),
            // A salt without hashing would be a setting that does nothing.
            ("CEDARGATE_LOG_PRINCIPAL_SALT", "s3cret"),
        ] {
            let err = ObserveConfig::from_env(&env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }

    #[test]
    fn response_mode_is_validated() {
        let c = ResponseConfig::from_env(&env(&[])).unwrap();
        assert_eq!(c.mode, ResponseMode::Policy);
        let c = ResponseConfig::from_env(&env(&[("CEDARGATE_RESPONSE", "simple")])).unwrap();
        assert_eq!(c.mode, ResponseMode::Simple);
        let err = ResponseConfig::from_env(&env(&[("CEDARGATE_RESPONSE", "boolean")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CEDARGATE_RESPONSE") && err.contains("boolean"),
            "{err}"
        );
    }

    #[test]
    fn usage_key_map_forms() {
        let c = ResponseConfig::from_env(&env(&[
            (
                "CEDARGATE_USAGE_KEY_CLAIM",
                "https://cedargate.example/plan",
            ),
            (
                "CEDARGATE_USAGE_KEY_MAP",
                "gold = key-gold-0123456789, free=key-free-0123456789, *=key-free-0123456789",
            ),
        ]))
        .unwrap();
        let u = c.usage_key.unwrap();
        assert_eq!(u.claim, "https://cedargate.example/plan");
        assert_eq!(
            u.map,
            vec![
                ("gold".to_owned(), "key-gold-0123456789".to_owned()),
                ("free".to_owned(), "key-free-0123456789".to_owned())
            ]
        );
        assert_eq!(u.fallback.as_deref(), Some("key-free-0123456789"));
        // The claim alone: its value is the key.
        let c =
            ResponseConfig::from_env(&env(&[("CEDARGATE_USAGE_KEY_CLAIM", "api_key")])).unwrap();
        assert!(c.usage_key.unwrap().map.is_empty());
        for (vars, needle) in [
            (
                vec![("CEDARGATE_USAGE_KEY_MAP", "a=b")],
                "CEDARGATE_USAGE_KEY_CLAIM",
            ),
            (
                vec![
                    ("CEDARGATE_USAGE_KEY_CLAIM", "t"),
                    ("CEDARGATE_USAGE_KEY_MAP", "gold"),
                ],
                "pairs",
            ),
            (
                vec![
                    ("CEDARGATE_USAGE_KEY_CLAIM", "t"),
                    ("CEDARGATE_USAGE_KEY_MAP", "a=b,a=c"),
                ],
                "twice",
            ),
            (
                vec![
                    ("CEDARGATE_USAGE_KEY_CLAIM", "t"),
                    ("CEDARGATE_USAGE_KEY_MAP", "a=b c"),
                ],
                "spaces",
            ),
            (
                vec![
                    ("CEDARGATE_USAGE_KEY_CLAIM", "t"),
                    ("CEDARGATE_USAGE_KEY_MAP", ","),
                ],
                "empty",
            ),
        ] {
            let e: BTreeMap<&str, &str> = vars.into_iter().collect();
            let err = ResponseConfig::from_env(&e).unwrap_err().to_string();
            assert!(
                err.contains("CEDARGATE_USAGE_KEY_MAP") && err.contains(needle),
                "{err}"
            );
        }
    }

    #[test]
    fn policy_source_forms() {
        assert_eq!(
            PolicySource::parse("X", "s3://b/k/v.json").unwrap(),
            PolicySource::S3 {
                bucket: "b".into(),
                key: "k/v.json".into(),
                version: None,
            }
        );
        let pinned = PolicySource::parse("X", "s3://b/k.json?versionId=3HL4kq+rm/S.x_-=").unwrap();
        assert_eq!(
            pinned,
            PolicySource::S3 {
                bucket: "b".into(),
                key: "k.json".into(),
                version: Some("3HL4kq+rm/S.x_-=".into()),
            }
        );
        assert_eq!(
            pinned.to_string(),
            "s3://b/k.json?versionId=3HL4kq+rm/S.x_-="
        );
        for (bad, needle) in [
            ("s3://b/k?versionId=", "empty versionId"),
            ("s3://b/k?version=abc", "only query understood"),
            ("s3://b/k?versionId=a%2Bb", "not URL-encoded"),
            ("s3://b/k?versionId=a&x=1", "not URL-encoded"),
            ("s3://b/k?versionId=a b", "not URL-encoded"),
            ("s3://b?versionId=abc", "no key"),
        ] {
            let err = PolicySource::parse("CEDARGATE_POLICY_SOURCE", bad)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("CEDARGATE_POLICY_SOURCE") && err.contains(needle),
                "{bad}: {err}"
            );
        }
        let long = format!("s3://b/k?versionId={}", "a".repeat(MAX_VERSION_ID + 1));
        assert!(PolicySource::parse("X", &long).is_err());
        assert_eq!(
            PolicySource::parse("X", ".").unwrap(),
            PolicySource::Dir(".".into())
        );
        assert!(PolicySource::parse("X", "s3://bucket").is_err());
        assert!(PolicySource::parse("X", "https://x/y").is_err());
    }
}
