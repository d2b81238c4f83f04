//! Watch: bundle files change on disk → the policy store reloads.
//!
//! Stage: beside the gateway. Input: file-system events under the bundle's `schema/`,
//! `policies/` and `entities/` (as they exist at start). Output: [`Reload`] records, after
//! [`Store::refresh_now`] ran.
//!
//! Events are debounced (a save is often several events: truncate, write, rename), then the
//! store builds and validates the new bundle aside and swaps it in only if all of it is valid:
//! a half-saved or invalid file never takes effect, the last good snapshot keeps serving and
//! `/status` shows the refusal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::bundle::is_bundle_path;
use crate::store::Store;

/// How long the files must be quiet before a reload.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// One reload triggered by file changes.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reload {
    /// Unix seconds.
    pub at: u64,
    /// Bundle-relative paths that changed.
    pub files: Vec<String>,
    /// The store's outcome: `loaded`, `unchanged`, `refused` or `failed`.
    pub outcome: String,
    pub error: Option<String>,
    /// The revision serving after the reload.
    pub revision: Option<String>,
    /// Cached authorizer answers dropped (`--flush-on-reload` only).
    pub flushed: usize,
}

/// What the watcher reports.
#[derive(Debug, Default)]
pub struct ReloadLog {
    pub count: u64,
    pub last: Option<Reload>,
}

/// Keeps the OS watcher alive; dropping it stops watching.
#[derive(Debug)]
pub struct Watching {
    _watcher: notify::RecommendedWatcher,
    pub dirs: Vec<PathBuf>,
}

/// Starts watching `bundle`; after each debounced batch of changes, reloads the store and
/// calls `after` with the outcome (the gateway flushes its cache there when asked to).
pub fn start(
    bundle: &Path,
    store: Arc<Store>,
    log: Arc<Mutex<ReloadLog>>,
    after: impl Fn(&Reload) -> usize + Send + 'static,
) -> Result<Watching, String> {
    let root = std::fs::canonicalize(bundle)
        .map_err(|e| format!("cannot watch `{}`: {e}", bundle.display()))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if matches!(event.kind, EventKind::Access(_)) {
                return;
            }
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })
    .map_err(|e| format!("cannot start the file watcher: {e}"))?;
    let mut dirs = Vec::new();
    for top in ["schema", "policies", "entities"] {
        let dir = root.join(top);
        if dir.is_dir() {
            watcher
                .watch(&dir, RecursiveMode::Recursive)
                .map_err(|e| format!("cannot watch `{}`: {e}", dir.display()))?;
            dirs.push(dir);
        }
    }
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::new();
            note(&root, &first, &mut changed);
            // Debounce: wait until the files have been quiet for a moment.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(path)) => note(&root, &path, &mut changed),
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if changed.is_empty() {
                continue;
            }
            let before = store.status().revision;
            store.refresh_now().await;
            let status = store.status();
            let mut reload = Reload {
                at: crate::time::unix_now(),
                files: changed.into_iter().collect(),
                outcome: status.last_outcome.unwrap_or_default(),
                error: status.last_error,
                revision: status.revision.clone(),
                flushed: 0,
            };
            if status.revision != before {
                reload.flushed = after(&reload);
            }
            match reload.outcome.as_str() {
                "loaded" | "unchanged" => tracing::info!(
                    event = "serve_reload",
                    outcome = %reload.outcome,
                    files = ?reload.files,
                    revision = reload.revision.as_deref().unwrap_or("-"),
                    flushed = reload.flushed,
                    "bundle files changed"
                ),
                _ => tracing::warn!(
                    event = "serve_reload",
                    outcome = %reload.outcome,
                    files = ?reload.files,
                    error = reload.error.as_deref().unwrap_or("-"),
                    "bundle files changed, but the new bundle was refused; the last good one keeps serving"
                ),
            }
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            log.count = log.count.saturating_add(1);
            log.last = Some(reload);
        }
    });
    Ok(Watching {
        _watcher: watcher,
        dirs,
    })
}

/// Records `path` if it is (or may contain) a bundle file: editors' swap and backup files are
/// left out, directories (no extension) are kept since a renamed directory moves files.
fn note(root: &Path, path: &Path, changed: &mut BTreeSet<String>) {
    let Ok(rel) = path.strip_prefix(root) else {
        return;
    };
    let rel = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/");
    let name = rel.rsplit('/').next().unwrap_or_default();
    if name.starts_with('.') || name.ends_with('~') {
        return;
    }
    if is_bundle_path(&rel) || !name.contains('.') {
        changed.insert(rel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bundle_files_count() {
        let root = Path::new("/b");
        let mut c = BTreeSet::new();
        for p in [
            "/b/policies/a.cedar",
            "/b/policies/.a.cedar.swp",
            "/b/policies/a.cedar~",
            "/b/policies/4913",
            "/b/policies/notes.txt",
            "/elsewhere/x.cedar",
            "/b/entities/roles.json",
        ] {
            note(root, Path::new(p), &mut c);
        }
        let got: Vec<&str> = c.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            ["entities/roles.json", "policies/4913", "policies/a.cedar"]
        );
    }
}
