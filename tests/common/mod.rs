//! Shared helpers for the integration tests: paths to fixtures and tools, token minting with
//! the reference workload's test key, an IAM policy evaluator, and the Lambda runtime emulator.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` (reference workloads, fixtures, vectors); `CEDARGATE_SHARED_DIR` overrides.
pub fn shared() -> PathBuf {
    std::env::var_os("CEDARGATE_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("../shared"))
}

pub fn fixture(name: &str) -> Value {
    let path = shared().join("fixtures/aws-events").join(name);
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// Where `.ci/run` installs tools (`CEDARGATE_TOOLS`, default `~/.cache/cedargate-tools`).
pub fn tools() -> PathBuf {
    std::env::var_os("CEDARGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/cedargate-tools")
        })
}

/// A tool from the tools venv or PATH; a missing tool fails the test with the way to get it.
pub fn tool(name: &str) -> PathBuf {
    let venv = tools().join("venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("`{name}` is not installed: run `.ci/run` once (it installs the test tools)");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("nothing listens on 127.0.0.1:{port} after {within:?}");
}

/// The reference workloads' RS256 test key (kid `bench-key-1`).
pub fn bench_key() -> (jsonwebtoken::EncodingKey, PathBuf) {
    let dir = shared().join("bench/demo");
    let pem = std::fs::read(dir.join("signing-key.pem")).unwrap();
    (
        jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
        dir.join("jwks.json"),
    )
}

pub const ISSUER: &str = "https://cedargate-test.example.auth0.com/";
pub const AUDIENCE: &str = "https://api.cedargate.example";
pub const ROLES: &str = "https://cedargate.example/roles";

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token signed with the bench key; `extra` claims are merged over sensible defaults.
pub fn mint(extra: Value) -> String {
    let (key, _) = bench_key();
    let mut claims = json!({
        "iss": ISSUER,
        "aud": [AUDIENCE, format!("{ISSUER}userinfo")],
        "sub": "auth0|alice",
        "iat": now() - 10,
        "exp": now() + 3600,
    });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("bench-key-1".to_owned());
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// The environment for the repo's demo bundle with tokens from [`mint`].
pub fn demo_env() -> Vec<(String, String)> {
    let (_, jwks) = bench_key();
    vec![
        ("CEDARGATE_ISSUER".into(), ISSUER.into()),
        ("CEDARGATE_AUDIENCE".into(), AUDIENCE.into()),
        ("CEDARGATE_JWKS_FILE".into(), jwks.display().to_string()),
        (
            "CEDARGATE_POLICY_SOURCE".into(),
            repo().display().to_string(),
        ),
    ]
}

/// IAM's wildcard match on one resource: `*` any run of characters (including `/` and none),
/// `?` exactly one; everything else literal.
pub fn iam_match(pattern: &str, subject: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = subject.chars().collect();
    let (mut pi, mut si) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while si < s.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Whether an authorizer policy document allows `arn`: an explicit Deny wins, then any Allow.
pub fn allows(doc: &Value, arn: &str) -> bool {
    let mut allowed = false;
    for st in doc["Statement"].as_array().expect("Statement") {
        let resources: Vec<&str> = match &st["Resource"] {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().map(|r| r.as_str().unwrap()).collect(),
            other => panic!("bad Resource {other}"),
        };
        let hit = resources.iter().any(|r| iam_match(r, arn));
        match st["Effect"].as_str().unwrap() {
            "Deny" if hit => return false,
            "Allow" if hit => allowed = true,
            _ => {}
        }
    }
    allowed
}

/// Reads the child's piped stdout and stderr line by line on background threads, handing each
/// line to `on_line` (a child whose pipes are not read blocks once they fill up).
pub fn drain_output<F>(child: &mut Child, on_line: F)
where
    F: Fn(String) + Clone + Send + 'static,
{
    for pipe in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let on_line = on_line.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                on_line(line);
            }
        });
    }
}

/// The real Lambda runtime API, emulated by `cargo lambda watch`, running this crate's binary.
pub struct LambdaEmulator {
    child: Child,
    port: u16,
    client: reqwest::blocking::Client,
}

impl LambdaEmulator {
    /// Starts `cargo lambda watch` for the `cedargate` binary with these environment variables.
    pub fn start(env: &[(String, String)]) -> LambdaEmulator {
        let port = free_port();
        let env_file = std::env::temp_dir().join(format!("cedargate-lambda-env-{port}"));
        // Single-quoted: the values are taken literally (`*`, `=`, `$` and `#` included).
        let text: String = env
            .iter()
            .map(|(k, v)| {
                assert!(
                    !v.contains(['\'', '\n']),
                    "{k}: no quote or newline in env values"
                );
                format!("{k}='{v}'\n")
            })
            .collect();
        std::fs::write(&env_file, text).unwrap();
        let mut cmd = Command::new(tool("cargo-lambda"));
        cmd.args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--quiet",
            "--invoke-address",
            "127.0.0.1",
        ])
        .args(["--invoke-port", &port.to_string()])
        .arg("--env-file")
        .arg(&env_file)
        .current_dir(repo())
        .env("CARGO_LAMBDA_GLOBAL", "/dev/null")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("cargo lambda watch");
        // Keep the emulator's output flowing (and visible with --nocapture).
        drain_output(&mut child, |line| eprintln!("[lambda] {line}"));
        wait_for_port(port, Duration::from_secs(120));
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        LambdaEmulator {
            child,
            port,
            client,
        }
    }

    /// Invokes the function; `Err(errorMessage)` when the function failed.
    pub fn invoke(&self, event: &Value) -> Result<Value, String> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/cedargate/invocations",
            self.port
        );
        let resp = self.client.post(url).json(event).send().expect("invoke");
        let failed =
            resp.headers().get("x-amz-function-error").is_some() || !resp.status().is_success();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if failed || body.get("errorMessage").is_some() && body.get("principalId").is_none() {
            return Err(body["errorMessage"].as_str().unwrap_or("").to_owned());
        }
        Ok(body)
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            let pid = self.child.id() as i32;
            // The whole process group: cargo-lambda and the function it started. The `--` is
            // load-bearing: procps-ng's `kill -TERM -19923` reads the group as `-1` and signals
            // every process of the user (it killed the test runner and every other session's
            // processes on the machine).
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real S3-protocol server (moto) over loopback, with its request log.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Moto {
    pub fn start() -> Moto {
        let mut m = Moto {
            child: None,
            port: free_port(),
            log: Default::default(),
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        let mut child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("moto_server");
        let log = self.log.clone();
        drain_output(&mut child, move |line| {
            log.lock().unwrap().push(strip_ansi(&line))
        });
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(60));
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto does not check signatures, so a plain PUT will do).
    pub fn create_bucket(&self, bucket: &str) {
        let resp = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}", self.endpoint()))
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "create bucket: {}",
            resp.status()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Wait until the port is really closed.
        for _ in 0..50 {
            if TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts again on the same port (moto keeps no state across restarts).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Request log lines for the object, e.g. `"GET /bucket/key` with status 200 or 304.
    pub fn gets(&self, bucket: &str, key: &str, status: u16) -> usize {
        let needle = format!("\"GET /{bucket}/{key}");
        let code = format!("\" {status} ");
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle) && l.contains(&code))
            .count()
    }

    /// AWS SDK settings for talking to this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT_URL_S3".into(), self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ]
    }
}

/// The line without ANSI colour sequences: werkzeug colours the status of some requests (304,
/// 404) whenever `click` is importable, which other tools in the same venv bring in.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters… final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Copies the repo's bundle (schema, policies, entities) into a fresh temporary directory.
pub fn bundle_copy(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cedargate-{name}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    for sub in ["schema", "policies", "entities"] {
        let from = repo().join(sub);
        let to = dir.join(sub);
        std::fs::create_dir_all(&to).unwrap();
        for entry in std::fs::read_dir(&from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    dir
}

/// `cedargate publish` of a bundle directory; returns the printed JSON (or the exit code).
pub fn publish(dir: &std::path::Path, to: &str, env: &[(String, String)]) -> Result<Value, i32> {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["publish", "--to", to, "--bundle"])
        .arg(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        return Err(out.status.code().unwrap_or(-1));
    }
    Ok(serde_json::from_slice(&out.stdout).unwrap())
}

/// A long-running `cedargate invoke` pipe: one event in, one answer out, like a warm Lambda.
pub struct InvokePipe {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl InvokePipe {
    pub fn start(env: &[(String, String)]) -> InvokePipe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .arg("invoke")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CEDARGATE_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let err = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l2.lock().unwrap().push(line);
            }
        });
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        InvokePipe {
            child,
            stdin,
            stdout,
            log,
        }
    }

    pub fn send(&mut self, event: &Value) -> Value {
        use std::io::Write;
        writeln!(self.stdin, "{event}").unwrap();
        self.stdin.flush().unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad answer {line:?}: {e}"))
    }

    /// Whether the process logged a line containing `needle`. Logs go to stderr and answers
    /// to stdout, read by different threads: a line written before an answer may be read after
    /// it, so this waits up to five seconds for it.
    pub fn logged(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for InvokePipe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A REST TOKEN event for the demo API.
pub fn token_event(token: &str, verb_path: &str) -> Value {
    json!({
        "type": "TOKEN",
        "authorizationToken": format!("Bearer {token}"),
        "methodArn": format!("arn:aws:execute-api:us-east-1:123456789012:demoapi/prod/{verb_path}"),
    })
}

pub fn demo_arn(verb_path: &str) -> String {
    format!("arn:aws:execute-api:us-east-1:123456789012:demoapi/prod/{verb_path}")
}
