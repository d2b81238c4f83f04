//! Shared by the `serve` integration tests: a `cedargate serve` process on a free port, in a
//! temporary copy of the repo's bundle and frontend.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

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

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh directory under the target's tmp dir with a copy of the bundle and the frontend.
pub fn workdir(name: &str) -> PathBuf {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("serve-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for part in ["schema", "policies", "entities", "frontend"] {
        copy_dir(&repo().join(part), &dir.join(part));
    }
    dir
}

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
            let _ = child.kill();
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
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Kept after a failure, for its `serve.log`.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `cedargate token` in `dir`.
pub fn token_in(dir: &Path, user: &str, port: u16, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["token", "--user", user, "--port", &port.to_string()])
        .args(args)
        .current_dir(dir)
        .env_remove("CEDARGATE_ISSUER")
        .env_remove("CEDARGATE_AUDIENCE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cedargate token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}
