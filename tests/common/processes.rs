//! Ports and long-running child processes: free ports, waiting for a listener, draining a
//! child's output, and the processes tests talk to — the Lambda runtime emulator
//! (`cargo lambda watch`), a real S3-protocol server (moto), a warm `cedargate invoke` pipe and
//! `cedargate serve` in a temporary copy of the bundle. Every one is killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::bundles::workdir;
use super::paths::{repo, tool};
use super::tokens::token_in;

/// A port nothing listens on at the moment.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `cmd` to its end with `input` on its stdin; its output and status.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Waits until something accepts connections on `127.0.0.1:PORT`; panics after `within`.
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

/// Reads the child's piped stdout and stderr line by line on background threads, handing each
/// line to `on_line` (a child whose pipes are not read blocks once they fill up). A pipe
/// already taken from the child is left alone.
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

/// Kills the child and reaps it.
fn end(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The real Lambda runtime API, emulated by `cargo lambda watch`, running this crate's binary.
pub struct LambdaEmulator {
    child: Child,
    port: u16,
    client: reqwest::blocking::Client,
    /// Everything the emulator and the function printed, line by line.
    pub log: Arc<Mutex<Vec<String>>>,
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
        // Keep the emulator's output flowing (and visible with --nocapture), and kept.
        let log: Arc<Mutex<Vec<String>>> = Default::default();
        let kept = log.clone();
        drain_output(&mut child, move |line| {
            eprintln!("[lambda] {line}");
            kept.lock().unwrap().push(line);
        });
        wait_for_port(port, Duration::from_secs(120));
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .unwrap();
        LambdaEmulator {
            child,
            port,
            client,
            log,
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
        end(&mut self.child);
    }
}

/// A real S3-protocol server (moto) over loopback, with its request log.
pub struct Moto {
    child: Option<Child>,
    pub port: u16,
    pub log: Arc<Mutex<Vec<String>>>,
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

    /// Turns on versioning for a bucket: every upload keeps the earlier objects as versions.
    pub fn enable_versioning(&self, bucket: &str) {
        let resp = reqwest::blocking::Client::new()
            .put(format!("{}/{bucket}?versioning", self.endpoint()))
            .body(
                "<VersioningConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
                 <Status>Enabled</Status></VersioningConfiguration>",
            )
            .send()
            .unwrap();
        assert!(
            resp.status().is_success(),
            "enable versioning: {}",
            resp.status()
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            end(&mut c);
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

/// A long-running `cedargate invoke` pipe: one event in, one answer out, like a warm Lambda.
pub struct InvokePipe {
    child: Child,
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl InvokePipe {
    pub fn start(env: &[(String, String)]) -> InvokePipe {
        Self::start_logging(env, "info")
    }

    /// [`InvokePipe::start`] with this log filter (`CEDARGATE_LOG`, e.g. `debug`).
    pub fn start_logging(env: &[(String, String)], filter: &str) -> InvokePipe {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cedargate"))
            .arg("invoke")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CEDARGATE_LOG", filter)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        // Answers are read from stdout by `send`; the log (stderr) is collected here.
        let log: Arc<Mutex<Vec<String>>> = Default::default();
        let l2 = log.clone();
        drain_output(&mut child, move |line| l2.lock().unwrap().push(line));
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
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for InvokePipe {
    fn drop(&mut self) {
        end(&mut self.child);
    }
}

/// Settings of the process environment that would change what `serve` does.
const CLEARED: [&str; 10] = [
    "CEDARGATE_ISSUER",
    "CEDARGATE_AUDIENCE",
    "CEDARGATE_JWKS_URL",
    "CEDARGATE_JWKS_FILE",
    "CEDARGATE_PUBLIC_KEY_FILE",
    "CEDARGATE_POLICY_SOURCE",
    "CEDARGATE_CONTEXT_CLAIMS",
    "CEDARGATE_POLICY_REFRESH_SECONDS",
    "AWS_LAMBDA_RUNTIME_API",
    "RUST_LOG",
];

/// A running `cedargate serve`; killed when dropped.
pub struct Serve {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    pub dir: PathBuf,
    pub http: reqwest::Client,
}

impl Serve {
    /// Starts `serve --port 0 ARGS` in a fresh copy of the bundle, after writing `files`
    /// (bundle-relative path, content) into it.
    pub fn start(name: &str, files: &[(&str, &str)], args: &[&str]) -> Self {
        let dir = workdir(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        Self::start_in(dir, args)
    }

    pub fn start_in(dir: PathBuf, args: &[&str]) -> Self {
        Self::start_in_env(dir, args, &[])
    }

    /// [`Serve::start_in`] with environment variables set for the process.
    pub fn start_in_env(dir: PathBuf, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(dir.join("serve.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cedargate"));
        cmd.arg("serve")
            .args(["--port", "0"])
            .args(args)
            .current_dir(&dir)
            .env("CEDARGATE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for name in CLEARED {
            cmd.env_remove(name);
        }
        cmd.envs(envs.iter().copied());
        let mut child = cmd.spawn().expect("cannot start cedargate serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let first = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let Some(base) = first
            .as_deref()
            .and_then(|l| l.strip_prefix("cedargate serve listening on "))
            .map(|u| u.trim_end_matches('/').to_owned())
        else {
            end(&mut child);
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            panic!("serve did not start (first line {first:?}); its log:\n{log}");
        };
        let port: u16 = base.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            port,
            base,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `cedargate token --user USER --port PORT ARGS`, run in this server's directory.
    pub fn token(&self, user: &str, args: &[&str]) -> String {
        token_in(&self.dir, user, self.port, args)
    }

    /// A GET without a token, answered with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn status(&self) -> Value {
        self.get_json("/status").await
    }

    /// The development explain endpoint's answer for a token: every route with its decision.
    pub async fn explain(&self, token: &str) -> Value {
        self.http
            .get(self.url("/_cedargate/explain"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// One route of [`Serve::explain`]'s answer, by route name.
    pub async fn explained_route(&self, token: &str, route: &str) -> Value {
        self.explain(token).await["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == route)
            .unwrap_or_else(|| panic!("no route {route} in the explanation"))
            .clone()
    }

    pub async fn invocations(&self) -> u64 {
        self.status().await["authorizer"]["invocations"]
            .as_u64()
            .unwrap()
    }

    /// Writes a bundle file (bundle-relative path).
    pub fn write(&self, path: &str, content: &str) {
        let p = self.dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Waits until `/status` satisfies `done` (reloads are asynchronous).
    pub async fn wait_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let s = self.status().await;
            if done(&s) {
                return s;
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!(
                    "timed out waiting for {what}; last status: {s:#}\nlog:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// A call through the gateway: (status, JSON body or null).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self.http.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            self.url(path),
        );
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_owned());
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        end(&mut self.child);
        // Kept after a failure, for its `serve.log`.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
