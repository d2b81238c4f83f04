//! Where things are: the repository, `../shared` (reference workloads, AWS sample events,
//! vectors; `CEDARGATE_SHARED_DIR` overrides), the tools `.ci/run` installs, and fresh
//! temporary directories under the target's tmp dir.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

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

/// An AWS sample event from `shared/fixtures/aws-events`.
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

/// A fresh, empty directory `NAME-PID-N` under the target's tmp dir (`CARGO_TARGET_TMPDIR`).
pub fn fresh_dir(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Copies the directory tree `from` to `to` (created if missing).
pub fn copy_dir(from: &Path, to: &Path) {
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
