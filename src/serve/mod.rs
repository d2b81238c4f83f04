//! `cedargate serve`: the whole system on one machine, for development and demos.
//!
//! Stage: an edge of the crate, like the Lambda. Input: a bundle directory and options.
//! Output: one HTTP server on 127.0.0.1 with
//! - `/{stage}/…` — [`gateway`]: a stand-in for API Gateway that calls the authorizer
//!   in-process ([`crate::handler::Authorizer::handle`], the Lambda's code), caches its answers
//!   per token and judges every request by the cached IAM policy, then calls the demo backend
//!   or `--upstream`;
//! - `/dev-issuer/…` — [`issuer`]: a development OIDC issuer with demo users (only when
//!   `CEDARGATE_ISSUER` is not set; then the authorizer trusts exactly this issuer);
//! - `/status` and `/_cedargate/…` — [`dev`]: reload status, route list, explanations, and the
//!   authorizer itself on any authorizer event (`POST /_cedargate/invoke`); same origin only;
//! - `/` — [`frontend`]: the demo page.
//!
//! Invariants: it listens on 127.0.0.1 only and answers only requests addressed to
//! `127.0.0.1:PORT` or `localhost:PORT` (a web page cannot reach it through DNS rebinding);
//! the bundle reloads when its files change ([`watch`]), and an invalid bundle never replaces
//! a good one; tokens are never logged, only fingerprints.

pub mod dev;
pub mod frontend;
pub mod gateway;
pub mod http;
pub mod issuer;
pub mod users;
pub mod verdict;
pub mod watch;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::claims::Verifier;
use crate::config::{Env, JwtConfig, ObserveConfig, PolicyConfig, PolicySource, ResponseConfig};
use crate::handler::Authorizer;
use crate::jwks::KeyStore;
use crate::store::Store;
use gateway::{Backend, Call, Gateway};
use http::Reply;
use issuer::DevIssuer;

/// Largest body the development issuer reads (forms only).
const ISSUER_BODY_LIMIT: usize = 64 * 1024;

/// Everything `serve` is told on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    pub port: u16,
    pub stage: String,
    pub cache_ttl: Duration,
    pub flush_on_reload: bool,
    pub upstream: Option<url::Url>,
    pub frontend: Option<PathBuf>,
    pub bundle: PathBuf,
    /// The development issuer's key file.
    pub key_file: PathBuf,
}

/// Path prefixes `serve` uses itself: a stage cannot be named like them.
pub const RESERVED_STAGES: [&str; 3] = ["_cedargate", "dev-issuer", "status"];

/// Whether `stage` can be a stage name here (API Gateway: letters, digits, `-`, `_`).
pub fn stage_ok(stage: &str) -> bool {
    !stage.is_empty()
        && stage.len() <= 128
        && stage
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !RESERVED_STAGES.contains(&stage)
}

/// The running server's state.
#[derive(Debug)]
pub struct App {
    port: u16,
    gateway: Arc<Gateway>,
    store: Arc<Store>,
    /// Verifies tokens for `explain`, with the authorizer's configuration and keys.
    verifier: Verifier,
    /// The authorizer's response settings, for `explain`.
    response: ResponseConfig,
    max_token_bytes: usize,
    issuer: Option<DevIssuer>,
    jwt: JwtConfig,
    frontend: frontend::Frontend,
    reloads: Arc<Mutex<watch::ReloadLog>>,
    watching: Vec<String>,
    flush_on_reload: bool,
}

/// An environment with defaults under it: the process environment wins when it sets a
/// variable, except for the names in `forced`.
struct Layered<'a> {
    base: &'a dyn Env,
    defaults: BTreeMap<&'static str, String>,
    forced: BTreeMap<&'static str, String>,
}

impl Env for Layered<'_> {
    fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.forced.get(name) {
            return Some(v.clone());
        }
        self.base
            .get(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| self.defaults.get(name).cloned())
    }
}

impl App {
    fn issuer_url(&self) -> String {
        match &self.issuer {
            Some(i) => i.url().to_owned(),
            None => self.jwt.issuers.first().cloned().unwrap_or_default(),
        }
    }

    fn audience(&self) -> String {
        self.jwt.audiences.first().cloned().unwrap_or_default()
    }

    fn host_ok(&self, req: &Request<Incoming>) -> bool {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        let port = self.port.to_string();
        match host.rsplit_once(':') {
            Some((name, p)) => p == port && matches!(name, "127.0.0.1" | "localhost"),
            // Browsers leave out the default port.
            None => self.port == 80 && matches!(host, "127.0.0.1" | "localhost"),
        }
    }

    /// Whether a request comes from this server's own pages: no `Origin` (not a cross-origin
    /// fetch: curl, scripts, a top-level navigation) or exactly this server's origin.
    fn own_origin(&self, req: &Request<Incoming>) -> bool {
        let Some(origin) = req.headers().get(hyper::header::ORIGIN) else {
            return true;
        };
        let port = self.port.to_string();
        let Some(host) = origin.to_str().ok().and_then(|o| o.strip_prefix("http://")) else {
            return false;
        };
        match host.rsplit_once(':') {
            Some((name, p)) => p == port && matches!(name, "127.0.0.1" | "localhost"),
            // Browsers leave out the default port.
            None => self.port == 80 && matches!(host, "127.0.0.1" | "localhost"),
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: std::net::IpAddr) -> Reply {
        if !self.host_ok(&req) {
            return http::reply(
                StatusCode::MISDIRECTED_REQUEST,
                "text/plain; charset=utf-8",
                format!(
                    "cedargate serve answers only requests to 127.0.0.1:{0} or localhost:{0}\n",
                    self.port
                ),
            );
        }
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().map(str::to_owned);
        let stage_prefix = format!("/{}", self.gateway.stage);

        // Development endpoints: same origin only (the demo page is served from here). A
        // request another page sends is refused before it runs, not only left unreadable
        // (`POST /_cedargate/invoke` is a request a page can send without a preflight).
        let dev_endpoint = path == "/status" || path.starts_with("/_cedargate/");
        if dev_endpoint && !self.own_origin(&req) {
            return http::same_origin(http::reply(
                StatusCode::FORBIDDEN,
                "text/plain; charset=utf-8",
                "the development endpoints answer pages of this server only\n",
            ));
        }
        if path == "/status" {
            return http::same_origin(dev::status(&self));
        }
        if let Some(rest) = path.strip_prefix("/_cedargate/") {
            let reply = match (&method, rest) {
                (&Method::GET, "routes") => dev::routes(&self),
                (&Method::GET, "config") => dev::config(&self),
                (&Method::GET, "explain") => dev::explain_caller(&self, req.headers()).await,
                (&Method::POST, "invoke") => {
                    let body = match http::read_body(req.into_body(), http::MAX_BODY_BYTES).await {
                        Ok(b) => b,
                        Err(_) => return http::same_origin(too_large()),
                    };
                    dev::invoke(&self, &body).await
                }
                _ => not_found(),
            };
            return http::same_origin(reply);
        }
        if let (Some(issuer), Some(rest)) = (&self.issuer, path.strip_prefix(issuer::PREFIX)) {
            if rest.is_empty() || rest.starts_with('/') {
                let (parts, body) = req.into_parts();
                let body = match http::read_body(body, ISSUER_BODY_LIMIT).await {
                    Ok(b) => b,
                    Err(_) => return too_large(),
                };
                return issuer.handle(&parts.method, rest, query.as_deref().unwrap_or(""), &body);
            }
        }
        let under_stage = if path == stage_prefix {
            Some("/")
        } else {
            path.strip_prefix(&stage_prefix)
                .filter(|rest| rest.starts_with('/'))
        };
        if let Some(sub) = under_stage {
            let sub = sub.to_owned();
            let (parts, body) = req.into_parts();
            let body = match http::read_body(body, http::MAX_BODY_BYTES).await {
                Ok(b) => b,
                Err(http::BodyError::TooLarge) => return http::cors(too_large()),
                Err(http::BodyError::Broken) => {
                    return http::json(StatusCode::BAD_REQUEST, &json!({"message": "Bad Request"}))
                }
            };
            let snapshot = self.store.current();
            return self
                .gateway
                .handle(
                    snapshot.as_deref().map(|s| s.routes()),
                    Call {
                        method: &parts.method,
                        path: &sub,
                        query: query.as_deref(),
                        headers: &parts.headers,
                        peer,
                        body,
                    },
                )
                .await;
        }
        if method == Method::GET || method == Method::HEAD {
            if let Some(r) = self.frontend.get(&path) {
                return r;
            }
        }
        not_found()
    }
}

fn not_found() -> Reply {
    http::json(StatusCode::NOT_FOUND, &json!({"message": "Not Found"}))
}

fn too_large() -> Reply {
    http::json(
        StatusCode::PAYLOAD_TOO_LARGE,
        &json!({"message": "Request Too Long"}),
    )
}

/// Runs the server until Ctrl-C. Prints where it listens on stdout first.
pub async fn run(opts: Options, env: &dyn Env) -> Result<(), String> {
    if !stage_ok(&opts.stage) {
        return Err(format!(
            "`{}` cannot be a stage here: letters, digits, `-` and `_`, and none of {}",
            opts.stage,
            RESERVED_STAGES.join(", ")
        ));
    }
    // Loopback only, whatever the options: the gateway has no TLS and the issuer signs in
    // anyone who asks.
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], opts.port)))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;

    // Who signs tokens: the configured issuer(s), or the built-in development issuer.
    let configured = env
        .get("CEDARGATE_ISSUER")
        .is_some_and(|v| !v.trim().is_empty());
    let mut defaults = BTreeMap::new();
    let mut forced = BTreeMap::new();
    let (issuer, jwt, keys) = if configured {
        let jwt = JwtConfig::from_env(env).map_err(|e| e.to_string())?;
        let keys = KeyStore::new(&jwt).await.map_err(|e| e.to_string())?;
        (None, jwt, keys)
    } else {
        let audience = issuer::audience(env);
        let dev = DevIssuer::new(addr, &opts.key_file, &audience).map_err(|e| e.to_string())?;
        forced.insert("CEDARGATE_ISSUER", dev.url().to_owned());
        forced.insert("CEDARGATE_AUDIENCE", audience);
        // Keys come from the issuer in-process: no JWKS URL, file or discovery.
        forced.insert("CEDARGATE_JWKS_FILE", String::new());
        forced.insert("CEDARGATE_JWKS_URL", String::new());
        forced.insert("CEDARGATE_PUBLIC_KEY_FILE", String::new());
        // Show the demo users' roles and email in the authorizer context.
        defaults.insert(
            "CEDARGATE_CONTEXT_CLAIMS",
            format!("sub,email,scope,{}", users::ROLES_CLAIM),
        );
        let layered = Layered {
            base: env,
            defaults: defaults.clone(),
            forced: forced.clone(),
        };
        let mut jwt = JwtConfig::from_env(&layered).map_err(|e| e.to_string())?;
        jwt.jwks_file = None;
        jwt.jwks_url = None;
        jwt.public_key_file = None;
        let keys = KeyStore::from_jwks_json(&dev.jwks().to_string()).map_err(|e| e.to_string())?;
        tracing::warn!(
            event = "dev_issuer",
            issuer = %dev.url(),
            key_file = %opts.key_file.display(),
            "DEVELOPMENT ONLY: the built-in issuer signs tokens for demo users for anyone who can reach 127.0.0.1:{}; set CEDARGATE_ISSUER to use a real issuer",
            addr.port()
        );
        (Some(dev), jwt, keys)
    };
    let layered = Layered {
        base: env,
        defaults,
        forced: BTreeMap::new(),
    };
    let response = ResponseConfig::from_env(&layered).map_err(|e| e.to_string())?;
    let mut policy = PolicyConfig::from_env(env).map_err(|e| e.to_string())?;
    policy.source = PolicySource::Dir(opts.bundle.clone());
    // The watcher reloads on every change; periodic re-reads at the start of requests would
    // only race with it (a request-started refresh can read the files just before a save).
    policy.refresh = Duration::from_secs(86_400);

    let keys = Arc::new(keys);
    let store = Arc::new(Store::new(&policy));
    let observe = ObserveConfig::from_env(env).map_err(|e| e.to_string())?;
    let authorizer = Arc::new(Authorizer::new(
        &jwt,
        Verifier::new(&jwt, keys.clone()),
        store.clone(),
        response.clone(),
        observe,
    ));
    let verifier = Verifier::new(&jwt, keys);
    store.refresh_now().await;
    let first = store.status();

    let backend = match &opts.upstream {
        Some(u) => Backend::Upstream(u.clone()),
        None => Backend::Demo,
    };
    let gateway = Arc::new(Gateway::new(
        opts.stage.clone(),
        authorizer,
        opts.cache_ttl,
        backend,
    )?);
    let reloads = Arc::new(Mutex::new(watch::ReloadLog::default()));
    let flush = opts.flush_on_reload;
    let gw = gateway.clone();
    let watching = watch::start(&opts.bundle, store.clone(), reloads.clone(), move |_| {
        if flush {
            gw.flush()
        } else {
            0
        }
    })?;
    let app = Arc::new(App {
        port: addr.port(),
        gateway,
        store,
        max_token_bytes: jwt.max_token_bytes,
        verifier,
        response,
        frontend: frontend::Frontend::new(opts.frontend.clone()),
        watching: watching
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
        issuer,
        jwt,
        reloads,
        flush_on_reload: opts.flush_on_reload,
    });
    print_banner(&app, &opts, &first);

    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let app = app.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let app = app.clone();
                        async move { Ok::<_, Infallible>(app.handle(req, peer.ip()).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(watching);
    Ok(())
}

fn print_banner(app: &App, opts: &Options, first: &crate::store::Status) {
    let base = format!("http://127.0.0.1:{}", app.port);
    let routes = app.store.current().map_or(0, |s| s.routes().len());
    // The first line is stable: scripts and tests read the URL from it.
    println!("cedargate serve listening on {base}/");
    println!();
    println!("  open this        {base}/");
    println!(
        "  API (stage)      {base}/{}/…   {routes} routes, authorizer cache {} s{}",
        opts.stage,
        opts.cache_ttl.as_secs(),
        if opts.flush_on_reload {
            ", flushed on reload"
        } else {
            ""
        }
    );
    println!("  status           {base}/status");
    match &app.issuer {
        Some(i) => {
            println!(
                "  dev issuer       {}   DEVELOPMENT ONLY (key {})",
                i.url(),
                opts.key_file.display()
            );
            let port = if app.port == 3000 {
                String::new()
            } else {
                format!(" --port {}", app.port)
            };
            println!(
                "  a token          cedargate token --user reader{port}   (users: {})",
                users::logins()
            );
        }
        None => println!("  issuer           {} (CEDARGATE_ISSUER)", app.issuer_url()),
    }
    if let Some(u) = &opts.upstream {
        println!("  upstream         {u}");
    }
    println!("  frontend         {}", app.frontend.describe());
    match (first.revision.as_deref(), first.last_error.as_deref()) {
        (Some(rev), None) => println!(
            "  policies         {} (revision {rev}), reloaded when files change",
            opts.bundle.display()
        ),
        (_, Some(err)) => {
            println!(
                "  policies         {}: NOT LOADED, every request is denied until the files are fixed:",
                opts.bundle.display()
            );
            println!("                   {err}");
        }
        (None, None) => println!("  policies         {}: not loaded", opts.bundle.display()),
    }
    println!();
}
