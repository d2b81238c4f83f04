//! The development OIDC issuer built into `serve`: DEVELOPMENT ONLY, loopback only.
//!
//! Stage: beside the gateway; it makes the tokens the authorizer then verifies like any other.
//! Input: browser requests (discovery, JWKS, the sign-in page, the authorization-code flow with
//! PKCE) and `cedargate token`. Output: RS256 access tokens (and ID tokens) for the demo users of
//! [`super::users`], with Auth0-shaped claims.
//!
//! Invariants:
//! - It runs only on a loopback address ([`DevIssuer::new`] refuses anything else) and says it
//!   is development-only on its pages and in its logs: anyone who can reach it can sign in as
//!   any demo user with one click.
//! - Its issuer URL is fixed by the port: `http://127.0.0.1:PORT/dev-issuer` ([`issuer_url`]),
//!   so `cedargate token --port PORT` mints tokens that a `serve --port PORT` started from the
//!   same directory accepts.
//! - Its signing key is an RSA-2048 key in `.cedargate/dev-issuer.pem` under the working
//!   directory, created on first use and reused after, so tokens survive restarts; the
//!   directory carries its own `.gitignore` so that the key is never committed.
//! - The authorization-code flow takes PKCE with `S256` only; codes are random, single-use,
//!   bound to the client, redirect URI and challenge, and expire after a minute. Redirect URIs
//!   must be on this server's own origin (127.0.0.1 or localhost, same port).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::http::{self, escape, field, Reply};
use super::users::{self, DemoUser, ROLES_CLAIM, USERS};
use crate::time::unix_now;

/// Where the issuer lives under the server.
pub const PREFIX: &str = "/dev-issuer";
/// The key file, relative to the working directory.
pub const KEY_FILE: &str = ".cedargate/dev-issuer.pem";
/// The audience of the dev issuer's tokens unless `CEDARGATE_AUDIENCE` names another.
pub const DEFAULT_AUDIENCE: &str = "https://api.cedargate.example";

/// The audience the dev issuer puts into its tokens: the first one `CEDARGATE_AUDIENCE` names,
/// else [`DEFAULT_AUDIENCE`]. `serve` and `token` share it, so their tokens agree.
pub fn audience(env: &dyn crate::config::Env) -> String {
    env.get("CEDARGATE_AUDIENCE")
        .and_then(|v| {
            v.split(',')
                .map(str::trim)
                .find(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned())
}
/// Access and ID token lifetime.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
const CODE_TTL: Duration = Duration::from_secs(60);
const MAX_PENDING_CODES: usize = 1000;
/// Scopes granted to everyone on top of the user's own (what an OIDC client asks for).
const BASE_SCOPES: [&str; 3] = ["openid", "profile", "email"];

/// The issuer URL of a `serve` on `port`: the exact `iss` of its tokens.
pub fn issuer_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}{PREFIX}")
}

/// Why the issuer cannot start or sign.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("the development issuer runs only on a loopback address, not on `{0}`")]
    NotLoopback(SocketAddr),
    #[error("cannot read or create the development key `{path}`: {reason}")]
    Key { path: String, reason: String },
    #[error("cannot sign a token")]
    Sign,
}

/// The issuer's RSA key, with its JWK.
#[derive(Debug)]
pub struct DevKey {
    pair: KeyPair,
    kid: String,
    jwk: Value,
}

fn key_error(path: &Path, reason: impl std::fmt::Display) -> IssuerError {
    IssuerError::Key {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

impl DevKey {
    /// Loads the key from `path` (PKCS#8 PEM), or creates it there first: an RSA-2048 key,
    /// written to a temporary file and linked into place, so that two processes starting at
    /// once end up with the same key and a reader never sees half a file.
    pub fn load_or_create(path: &Path) -> Result<Self, IssuerError> {
        if !path.exists() {
            Self::create(path)?;
        }
        let text = std::fs::read_to_string(path).map_err(|e| key_error(path, e))?;
        let der = crate::pem::decode_one(text.as_bytes(), "PRIVATE KEY").ok_or_else(|| {
            key_error(
                path,
                "it is not a PEM `PRIVATE KEY` (delete it to get a new one)",
            )
        })?;
        let pair = KeyPair::from_pkcs8(&der).map_err(|e| key_error(path, e))?;
        Self::from_pair(pair).ok_or_else(|| key_error(path, "the key has no usable public part"))
    }

    fn create(path: &Path) -> Result<(), IssuerError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| key_error(path, e))?;
        // The key directory ignores itself: the key must never be committed.
        let ignore = dir.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(
                &ignore,
                "# cedargate serve's development key: never commit it\n*\n",
            );
        }
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|e| key_error(path, e))?;
        let der = pair.as_der().map_err(|e| key_error(path, e))?;
        let pem = crate::pem::encode("PRIVATE KEY", der.as_ref());
        let nonce: u64 = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into());
        let tmp = dir.join(format!(".dev-issuer.{}.{nonce}.tmp", std::process::id()));
        write_private(&tmp, pem.as_bytes()).map_err(|e| key_error(path, e))?;
        // `hard_link` fails when the target exists: the first process to finish wins.
        let linked = std::fs::hard_link(&tmp, path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(()),
            Err(_) if path.exists() => Ok(()),
            Err(e) => Err(key_error(path, e)),
        }
    }

    fn from_pair(pair: KeyPair) -> Option<Self> {
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        if n.is_empty() || e.is_empty() {
            return None;
        }
        // RFC 7638 thumbprint: the members in lexicographic order, no whitespace.
        let thumbprint = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint.as_bytes()));
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Some(Self { pair, kid, jwk })
    }

    #[cfg(test)]
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `{"keys":[…]}` with the public key.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` as a compact RS256 JWT.
    pub fn sign(&self, claims: &Value) -> Result<String, IssuerError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut signature)
            .map_err(|_| IssuerError::Sign)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The claims of a demo user's access token: what an Auth0 API access token carries, with
/// the namespaced roles claim of a post-login Action and RBAC `permissions`.
pub fn access_claims(
    user: &DemoUser,
    issuer: &str,
    audience: &str,
    client_id: &str,
    now: u64,
    ttl: Duration,
) -> Value {
    let scope: Vec<&str> = BASE_SCOPES
        .iter()
        .chain(user.scopes.iter())
        .copied()
        .collect();
    json!({
        "iss": issuer,
        "sub": user.sub,
        "aud": audience,
        "iat": now,
        "exp": now.saturating_add(ttl.as_secs()),
        "azp": client_id,
        "scope": scope.join(" "),
        "email": user.email,
        "permissions": user.scopes,
        ROLES_CLAIM: user.roles,
    })
}

/// A code waiting to be exchanged.
#[derive(Debug)]
struct Pending {
    user: &'static DemoUser,
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    expires: Instant,
}

/// The issuer: key, identity, and the codes of flows in progress.
#[derive(Debug)]
pub struct DevIssuer {
    url: String,
    port: u16,
    audience: String,
    key: DevKey,
    codes: Mutex<HashMap<String, Pending>>,
}

impl DevIssuer {
    /// An issuer for a server bound to `addr` (loopback only), signing with the key at
    /// `key_path`, for tokens with audience `audience`.
    pub fn new(addr: SocketAddr, key_path: &Path, audience: &str) -> Result<Self, IssuerError> {
        if !addr.ip().is_loopback() {
            return Err(IssuerError::NotLoopback(addr));
        }
        let key = DevKey::load_or_create(key_path)?;
        Ok(Self {
            url: issuer_url(addr.port()),
            port: addr.port(),
            audience: audience.to_owned(),
            key,
            codes: Mutex::new(HashMap::new()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn jwks(&self) -> Value {
        self.key.jwks()
    }

    /// An access token for `user`, as the token endpoint would issue it.
    #[cfg(test)]
    pub fn mint(
        &self,
        user: &DemoUser,
        client_id: &str,
        ttl: Duration,
    ) -> Result<String, IssuerError> {
        self.key.sign(&access_claims(
            user,
            &self.url,
            &self.audience,
            client_id,
            unix_now(),
            ttl,
        ))
    }

    /// Handles a request under [`PREFIX`]; `rest` is the path after it.
    pub fn handle(&self, method: &Method, rest: &str, query: &str, body: &[u8]) -> Reply {
        let mut reply = self.route(method, rest, query, body);
        // The pages have no scripts and are never framed (no clickjacking of the sign-in).
        http::set(
            &mut reply,
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; base-uri 'none'; frame-ancestors 'none'",
        );
        reply
    }

    fn route(&self, method: &Method, rest: &str, query: &str, body: &[u8]) -> Reply {
        match (method, rest) {
            (&Method::OPTIONS, _) => http::preflight(),
            (&Method::GET, "/.well-known/openid-configuration") => {
                http::cors(http::json(StatusCode::OK, &self.discovery()))
            }
            (&Method::GET, "/.well-known/jwks.json") => {
                http::cors(http::json(StatusCode::OK, &self.jwks()))
            }
            (&Method::GET, "/authorize") => self.authorize(&http::form(query.as_bytes()), None),
            (&Method::POST, "/authorize") => {
                let pairs = http::form(body);
                let user = field(&pairs, "user").map(str::to_owned);
                self.authorize(&pairs, user.as_deref())
            }
            (&Method::POST, "/oauth/token") => http::cors(self.token(&http::form(body))),
            (&Method::GET, "" | "/") => http::html(StatusCode::OK, self.home_page()),
            _ => http::json(
                StatusCode::NOT_FOUND,
                &json!({"error": "not_found", "error_description": "no such endpoint of the development issuer"}),
            ),
        }
    }

    fn discovery(&self) -> Value {
        let u = &self.url;
        json!({
            "issuer": u,
            "authorization_endpoint": format!("{u}/authorize"),
            "token_endpoint": format!("{u}/oauth/token"),
            "jwks_uri": format!("{u}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "profile", "email", "delete:pets", "read:reports"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "name", ROLES_CLAIM],
            "cedargate_development_only": true,
        })
    }

    /// Whether `uri` is on this server's own origin (127.0.0.1 or localhost, same port).
    fn redirect_ok(&self, uri: &str) -> bool {
        let Ok(url) = url::Url::parse(uri) else {
            return false;
        };
        let host_ok = matches!(url.host_str(), Some("127.0.0.1" | "localhost"));
        url.scheme() == "http"
            && host_ok
            && url.port() == Some(self.port)
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none()
    }

    /// The checks shared by showing the sign-in page and accepting a choice.
    fn check_request(&self, p: &[(String, String)]) -> Result<Request, String> {
        let redirect_uri = field(p, "redirect_uri").unwrap_or_default();
        if !self.redirect_ok(redirect_uri) {
            return Err(format!(
                "`redirect_uri` must be a page of this server (http://127.0.0.1:{0}/… or http://localhost:{0}/…), not `{1}`",
                self.port,
                redirect_uri.chars().take(200).collect::<String>()
            ));
        }
        if field(p, "response_type") != Some("code") {
            return Err("`response_type` must be `code`".to_owned());
        }
        let client_id = field(p, "client_id").unwrap_or_default();
        if client_id.is_empty() || client_id.len() > 200 {
            return Err("`client_id` is required".to_owned());
        }
        match field(p, "code_challenge_method") {
            Some("S256") => {}
            Some(other) => {
                return Err(format!(
                    "`code_challenge_method` `{}` is not supported: PKCE with `S256` only",
                    other.chars().take(20).collect::<String>()
                ))
            }
            None => {
                return Err(
                    "PKCE is required: send `code_challenge` with `code_challenge_method=S256`"
                        .to_owned(),
                )
            }
        }
        let challenge = field(p, "code_challenge").unwrap_or_default();
        if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(challenge).is_err() {
            return Err(
                "`code_challenge` must be the base64url SHA-256 of the verifier (43 characters)"
                    .to_owned(),
            );
        }
        if let Some(aud) = field(p, "audience").filter(|a| !a.is_empty()) {
            if aud != self.audience {
                return Err(format!(
                    "unknown `audience` `{}`; this issuer serves `{}`",
                    aud.chars().take(200).collect::<String>(),
                    self.audience
                ));
            }
        }
        Ok(Request {
            client_id: client_id.to_owned(),
            redirect_uri: redirect_uri.to_owned(),
            challenge: challenge.to_owned(),
            state: field(p, "state").map(str::to_owned),
            nonce: field(p, "nonce").map(str::to_owned),
        })
    }

    fn authorize(&self, p: &[(String, String)], chosen: Option<&str>) -> Reply {
        let request = match self.check_request(p) {
            Ok(r) => r,
            Err(reason) => {
                tracing::warn!(event = "dev_issuer_refused", reason = %reason, "development issuer: authorization request refused");
                return http::html(StatusCode::BAD_REQUEST, error_page(&reason));
            }
        };
        let Some(login) = chosen else {
            return http::html(StatusCode::OK, sign_in_page(p));
        };
        let Some(user) = users::find(login) else {
            return http::html(
                StatusCode::BAD_REQUEST,
                error_page(&format!(
                    "there is no demo user `{}`",
                    login.chars().take(64).collect::<String>()
                )),
            );
        };
        let mut bytes = [0u8; 32];
        if aws_lc_rs::rand::fill(&mut bytes).is_err() {
            return http::html(
                StatusCode::INTERNAL_SERVER_ERROR,
                error_page("no randomness"),
            );
        }
        let code = URL_SAFE_NO_PAD.encode(bytes);
        {
            let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            codes.retain(|_, c| c.expires > now);
            if codes.len() >= MAX_PENDING_CODES {
                codes.clear();
            }
            codes.insert(
                code.clone(),
                Pending {
                    user,
                    client_id: request.client_id.clone(),
                    redirect_uri: request.redirect_uri.clone(),
                    challenge: request.challenge.clone(),
                    nonce: request.nonce.clone(),
                    expires: now + CODE_TTL,
                },
            );
        }
        tracing::info!(
            event = "dev_issuer_sign_in",
            user = user.login,
            "development issuer: demo user signed in"
        );
        let mut location = request.redirect_uri;
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("code", &code);
        if let Some(state) = &request.state {
            q.append_pair("state", state);
        }
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(&q.finish());
        http::see_other(&location)
    }

    fn token(&self, p: &[(String, String)]) -> Reply {
        let fail = |error: &str, description: &str| {
            let mut r = http::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": error, "error_description": description}),
            );
            http::set(&mut r, "cache-control", "no-store");
            r
        };
        if field(p, "grant_type") != Some("authorization_code") {
            return fail(
                "unsupported_grant_type",
                "only `authorization_code` is supported",
            );
        }
        let code = field(p, "code").unwrap_or_default();
        // Single use: the code is gone whatever happens next.
        let pending = self
            .codes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(code);
        let Some(pending) = pending.filter(|c| c.expires > Instant::now()) else {
            return fail("invalid_grant", "unknown, used or expired code");
        };
        if field(p, "client_id") != Some(pending.client_id.as_str()) {
            return fail("invalid_grant", "the code was issued to another client");
        }
        if field(p, "redirect_uri") != Some(pending.redirect_uri.as_str()) {
            return fail(
                "invalid_grant",
                "`redirect_uri` differs from the authorization request",
            );
        }
        let verifier = field(p, "code_verifier").unwrap_or_default();
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if !verifier_ok || computed != pending.challenge {
            return fail(
                "invalid_grant",
                "`code_verifier` does not match the `code_challenge`",
            );
        }
        let now = unix_now();
        let user = pending.user;
        let access = self.key.sign(&access_claims(
            user,
            &self.url,
            &self.audience,
            &pending.client_id,
            now,
            TOKEN_TTL,
        ));
        let mut id_claims = json!({
            "iss": self.url,
            "sub": user.sub,
            "aud": pending.client_id,
            "iat": now,
            "exp": now.saturating_add(TOKEN_TTL.as_secs()),
            "name": user.name,
            "email": user.email,
            "nickname": user.login,
        });
        if let (Some(nonce), Some(obj)) = (&pending.nonce, id_claims.as_object_mut()) {
            obj.insert("nonce".to_owned(), Value::String(nonce.clone()));
        }
        let (Ok(access), Ok(id)) = (access, self.key.sign(&id_claims)) else {
            return fail("server_error", "cannot sign");
        };
        let scope: Vec<&str> = BASE_SCOPES
            .iter()
            .chain(user.scopes.iter())
            .copied()
            .collect();
        let mut r = http::json(
            StatusCode::OK,
            &json!({
                "access_token": access,
                "id_token": id,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL.as_secs(),
                "scope": scope.join(" "),
            }),
        );
        http::set(&mut r, "cache-control", "no-store");
        r
    }

    fn home_page(&self) -> String {
        page(
            "Development issuer",
            &format!(
                "<p>This is the development OIDC issuer of <code>cedargate serve</code>. Its discovery document is at <a href=\"{0}/.well-known/openid-configuration\">{0}/.well-known/openid-configuration</a>.</p><p>Sign in from the <a href=\"/\">demo page</a>.</p>",
                escape(&self.url)
            ),
        )
    }
}

/// A checked authorization request.
#[derive(Debug)]
struct Request {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    state: Option<String>,
    nonce: Option<String>,
}

const STYLE: &str = r#"
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f6fa;color:#1d2433}
.dev{background:#b42318;color:#fff;text-align:center;padding:.5rem 1rem;font-weight:600;letter-spacing:.02em}
main{max-width:880px;margin:0 auto;padding:2rem 1.25rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0 .25rem}
.lead{color:#4a5568;margin:0 0 1.5rem}
.users{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:1rem;margin:0;padding:0;border:0}
.user{display:flex;flex-direction:column;gap:.35rem;width:100%;text-align:left;background:#fff;border:1px solid #d8dee9;border-radius:12px;padding:1rem 1.1rem;cursor:pointer;font:inherit;color:inherit;box-shadow:0 1px 2px rgba(16,24,40,.05);transition:border-color .15s,box-shadow .15s}
.user:hover,.user:focus-visible{border-color:#3056d3;box-shadow:0 0 0 3px rgba(48,86,211,.15);outline:none}
.name{font-weight:650;font-size:1.05rem}
.login{color:#667085;font-size:.85rem;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.about{color:#344054;font-size:.92rem}
.tags{display:flex;flex-wrap:wrap;gap:.3rem;margin-top:.2rem}
.tag{font-size:.75rem;padding:.1rem .5rem;border-radius:999px;background:#eef2ff;color:#3730a3;font-family:ui-monospace,SFMono-Regular,Menlo,monospace}
.tag.scope{background:#ecfdf3;color:#05603a}
.tag.none{background:#f2f4f7;color:#667085}
.cancel{display:inline-block;margin-top:1.5rem;color:#3056d3}
.error{background:#fff;border:1px solid #fda29b;border-radius:12px;padding:1rem 1.25rem}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em}
"#;

const BANNER: &str = "Development only: this sign-in is cedargate serve's built-in issuer. Anyone who can reach it can sign in as anyone below.";

fn page(title: &str, content: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\"><title>{} · cedargate dev issuer</title><style>{STYLE}</style></head><body><div class=\"dev\" role=\"note\">{BANNER}</div><main>{content}</main></body></html>",
        escape(title)
    )
}

fn error_page(reason: &str) -> String {
    page(
        "Sign-in error",
        &format!(
            "<h1>This sign-in request cannot be served</h1><div class=\"error\"><p>{}</p></div>",
            escape(reason)
        ),
    )
}

/// The sign-in page: the request's parameters as hidden fields, one button per demo user.
fn sign_in_page(p: &[(String, String)]) -> String {
    const KEEP: [&str; 9] = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "audience",
    ];
    let hidden: String = KEEP
        .iter()
        .filter_map(|k| field(p, k).map(|v| (k, v)))
        .map(|(k, v)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(k),
                escape(v)
            )
        })
        .collect();
    let tags = |items: &[&str], class: &str| -> String {
        items
            .iter()
            .map(|t| format!("<span class=\"tag {class}\">{}</span>", escape(t)))
            .collect()
    };
    let cards: String = USERS
        .iter()
        .map(|u| {
            let mut t = tags(u.roles, "role");
            t.push_str(&tags(u.scopes, "scope"));
            if t.is_empty() {
                t = "<span class=\"tag none\">no roles, no scopes</span>".to_owned();
            }
            format!(
                "<button class=\"user\" type=\"submit\" name=\"user\" value=\"{login}\" data-user=\"{login}\"><span class=\"name\">{name}</span><span class=\"login\">{login} · {sub}</span><span class=\"about\">{about}</span><span class=\"tags\">{t}</span></button>",
                login = escape(u.login),
                name = escape(u.name),
                sub = escape(u.sub),
                about = escape(u.about),
            )
        })
        .collect();
    let cancel = match (field(p, "redirect_uri"), field(p, "state")) {
        (Some(uri), state) => {
            let mut q = url::form_urlencoded::Serializer::new(String::new());
            q.append_pair("error", "access_denied");
            q.append_pair("error_description", "sign-in cancelled");
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            let sep = if uri.contains('?') { '&' } else { '?' };
            format!(
                "<a class=\"cancel\" href=\"{}\">Cancel and go back</a>",
                escape(&format!("{uri}{sep}{}", q.finish()))
            )
        }
        _ => String::new(),
    };
    page(
        "Sign in",
        &format!(
            "<h1>Sign in as a demo user</h1><p class=\"lead\">Each user's token carries the roles (<code>{}</code>) and scopes shown; the demo policies decide what they may call.</p><form method=\"post\" action=\"{PREFIX}/authorize\"><fieldset class=\"users\">{hidden}{cards}</fieldset></form>{cancel}",
            escape(ROLES_CLAIM)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tmp_key_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cedargate-issuer-{name}-{}-{}",
            std::process::id(),
            unix_now()
        ));
        dir.join(".cedargate/dev-issuer.pem")
    }

    fn issuer(port: u16) -> DevIssuer {
        let path = tmp_key_path(&format!("i{port}"));
        DevIssuer::new(
            SocketAddr::from(([127, 0, 0, 1], port)),
            &path,
            DEFAULT_AUDIENCE,
        )
        .unwrap()
    }

    #[test]
    fn refuses_anything_but_loopback() {
        let path = tmp_key_path("lan");
        let err = DevIssuer::new(
            SocketAddr::from(([192, 0, 2, 1], 3000)),
            &path,
            DEFAULT_AUDIENCE,
        )
        .unwrap_err();
        assert!(matches!(err, IssuerError::NotLoopback(_)));
        assert!(
            !path.exists(),
            "no key is made for an issuer that cannot run"
        );
    }

    #[test]
    fn the_key_survives_and_ignores_itself() {
        let path = tmp_key_path("persist");
        let a = DevKey::load_or_create(&path).unwrap();
        let b = DevKey::load_or_create(&path).unwrap();
        assert_eq!(a.kid(), b.kid());
        let ignore = std::fs::read_to_string(path.parent().unwrap().join(".gitignore")).unwrap();
        assert!(ignore.lines().any(|l| l == "*"));
        let _ = std::fs::remove_dir_all(path.parent().unwrap().parent().unwrap());
    }

    #[tokio::test]
    async fn minted_tokens_verify_with_the_published_jwks() {
        let iss = issuer(3999);
        let keys = crate::jwks::KeyStore::from_jwks_json(&iss.jwks().to_string()).unwrap();
        let cfg = crate::config::JwtConfig::from_env(&std::collections::BTreeMap::from([
            ("CEDARGATE_ISSUER", iss.url()),
            ("CEDARGATE_AUDIENCE", DEFAULT_AUDIENCE),
            ("CEDARGATE_JWKS_FILE", "unused"),
        ]))
        .unwrap();
        let verifier = crate::claims::Verifier::new(&cfg, std::sync::Arc::new(keys));
        let user = users::find("admin").unwrap();
        let token = iss.mint(user, "cli", TOKEN_TTL).unwrap();
        let parsed = crate::token::UnverifiedJwt::parse(&format!("Bearer {token}"), 16384).unwrap();
        let claims = verifier.verify(&parsed).await.unwrap();
        assert_eq!(claims.sub(), "dev|ada");
        assert_eq!(claims.get(ROLES_CLAIM).unwrap(), &json!(["admin"]));
        assert!(claims
            .get("scope")
            .unwrap()
            .as_str()
            .unwrap()
            .contains("delete:pets"));
    }

    fn challenge(verifier: &str) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    }

    fn auth_query(port: u16, challenge: &str, method: &str) -> String {
        format!(
            "response_type=code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2F&state=s1&code_challenge={challenge}&code_challenge_method={method}"
        )
    }

    fn code_from(reply: &Reply) -> String {
        let loc = reply.headers().get("location").unwrap().to_str().unwrap();
        let url = url::Url::parse(loc).unwrap();
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(field(&pairs, "state"), Some("s1"));
        field(&pairs, "code").unwrap().to_owned()
    }

    #[test]
    fn pkce_code_flow_is_s256_only_and_single_use() {
        let port = 3998;
        let iss = issuer(port);
        let verifier = "a".repeat(50);
        let ch = challenge(&verifier);
        // The page lists the users.
        let page = iss.handle(
            &Method::GET,
            "/authorize",
            &auth_query(port, &ch, "S256"),
            b"",
        );
        assert_eq!(page.status(), StatusCode::OK);
        // `plain` and a missing method are refused.
        for bad in [
            auth_query(port, &ch, "plain"),
            auth_query(port, &ch, "S256").replace("&code_challenge_method=S256", ""),
        ] {
            assert_eq!(
                iss.handle(&Method::GET, "/authorize", &bad, b"").status(),
                StatusCode::BAD_REQUEST
            );
        }
        // A foreign redirect URI is refused.
        let foreign = auth_query(port, &ch, "S256").replace("127.0.0.1", "evil.example");
        assert_eq!(
            iss.handle(&Method::GET, "/authorize", &foreign, b"")
                .status(),
            StatusCode::BAD_REQUEST
        );

        let chosen = format!("{}&user=reader", auth_query(port, &ch, "S256"));
        let r = iss.handle(&Method::POST, "/authorize", "", chosen.as_bytes());
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let code = code_from(&r);
        let exchange = |code: &str, verifier: &str| {
            let body = format!("grant_type=authorization_code&client_id=app&redirect_uri=http%3A%2F%2F127.0.0.1%3A{port}%2F&code={code}&code_verifier={verifier}");
            iss.handle(&Method::POST, "/oauth/token", "", body.as_bytes())
        };
        // A wrong verifier burns the code.
        assert_eq!(
            exchange(&code, &"b".repeat(50)).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(exchange(&code, &verifier).status(), StatusCode::BAD_REQUEST);
        // A fresh code with the right verifier works once.
        let code = code_from(&iss.handle(&Method::POST, "/authorize", "", chosen.as_bytes()));
        assert_eq!(exchange(&code, &verifier).status(), StatusCode::OK);
        assert_eq!(exchange(&code, &verifier).status(), StatusCode::BAD_REQUEST);
    }
}
