//! Policy store: the current [`Snapshot`], where it comes from, and how it is refreshed.
//!
//! Stage: beside the pipeline; every invocation asks it for the current snapshot. Input: a
//! [`PolicyConfig`]. Output: `Arc<Snapshot>` (or none: then every request is denied).
//!
//! Invariants (OPA-style bundle status):
//! - A new bundle is fetched, checked, compiled and validated aside and swapped in with
//!   `arc-swap` only when all of that succeeded; on any failure the last good snapshot keeps
//!   serving and the reason is logged with the revision that was refused.
//! - With no valid snapshot at all, there is nothing to allow: every request is denied.
//! - Lambda freezes background tasks between invocations, so staleness is checked at the start
//!   of an invocation ([`Store::ensure_fresh`]), bounded by a timeout.

pub mod published;
pub mod dir;
pub mod s3;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::watch;

use crate::bundle::{one_line, BundleFiles, Snapshot};
use crate::config::{PolicyConfig, PolicySource};
use crate::time::unix_seconds;

/// What the store reports about itself (logged on change; shown by `serve`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub source: String,
    /// Revision of the snapshot in use.
    pub revision: Option<String>,
    /// Where that snapshot came from.
    pub origin: Option<String>,
    /// Unix seconds when it was loaded.
    pub loaded_at: Option<u64>,
    /// Unix seconds of the last refresh attempt.
    pub last_attempt: Option<u64>,
    /// `loaded`, `unchanged`, `refused` or `failed`.
    pub last_outcome: Option<String>,
    pub last_error: Option<String>,
    pub refused_revision: Option<String>,
}

/// The outcome of one fetch.
#[derive(Debug)]
pub enum Fetched {
    Unchanged,
    New { files: BundleFiles, origin: String },
}

/// The policy store.
#[derive(Debug)]
pub struct Store {
    source: PolicySource,
    s3: tokio::sync::OnceCell<s3::S3Source>,
    max_bundle_bytes: usize,
    refresh: Duration,
    timeout: Duration,
    load_timeout: Duration,
    current: ArcSwapOption<Snapshot>,
    checked_at: Mutex<Option<Instant>>,
    status: Mutex<Status>,
    /// Whether a refresh task is running (at most one at a time).
    inflight: AtomicBool,
    /// Bumped when a refresh task ends; requests wait on it (bounded).
    finished: watch::Sender<u64>,
    /// Refreshes attempted and failed (refused bundles included), for the metrics.
    refreshes: AtomicU64,
    refresh_failures: AtomicU64,
    /// Unix seconds when the bundle in use was last confirmed current (loaded, or found
    /// unchanged at its source); 0 before.
    confirmed_at: AtomicU64,
}

impl Store {
    /// A store over `cfg.source`, with nothing loaded yet.
    pub fn new(cfg: &PolicyConfig) -> Self {
        Store {
            source: cfg.source.clone(),
            s3: tokio::sync::OnceCell::new(),
            max_bundle_bytes: cfg.max_bundle_bytes,
            refresh: cfg.refresh,
            timeout: cfg.refresh_timeout,
            load_timeout: cfg.load_timeout,
            current: ArcSwapOption::empty(),
            checked_at: Mutex::new(None),
            status: Mutex::new(Status {
                source: cfg.source.to_string(),
                ..Status::default()
            }),
            inflight: AtomicBool::new(false),
            finished: watch::channel(0).0,
            refreshes: AtomicU64::new(0),
            refresh_failures: AtomicU64::new(0),
            confirmed_at: AtomicU64::new(0),
        }
    }

    /// Refreshes attempted and failed so far.
    pub fn refresh_counts(&self) -> (u64, u64) {
        (
            self.refreshes.load(Ordering::Relaxed),
            self.refresh_failures.load(Ordering::Relaxed),
        )
    }

    /// Seconds since the bundle in use was last confirmed current, when one is in use: what
    /// an alarm on a source that stopped answering (or keeps being refused) watches.
    pub fn bundle_age(&self, now: u64) -> Option<u64> {
        let at = self.confirmed_at.load(Ordering::Relaxed);
        (at > 0 && self.current.load().is_some()).then(|| now.saturating_sub(at))
    }

    /// A store holding a fixed snapshot.
    #[cfg(test)]
    pub fn fixed(snapshot: Snapshot) -> Self {
        let store = Store::new(&PolicyConfig {
            source: PolicySource::Dir(".".into()),
            refresh: Duration::MAX,
            refresh_timeout: Duration::from_secs(1),
            load_timeout: Duration::from_secs(1),
            max_bundle_bytes: usize::MAX,
        });
        store.install(snapshot, "loaded");
        *store.checked_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        store
    }

    /// The snapshot in use, if any.
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts a refresh when the snapshot is missing or older than the refresh interval, and
    /// waits for it at most the refresh timeout (with a snapshot to serve) or the load timeout
    /// (cold start: without one, every request would be denied). A refresh that outlives the
    /// wait goes on in the background and is installed when it finishes; it is never started
    /// twice.
    pub async fn ensure_fresh(self: &Arc<Self>) {
        let have = self.current.load().is_some();
        let due = {
            let checked = self.checked_at.lock().unwrap_or_else(|e| e.into_inner());
            !have || checked.is_none_or(|t| t.elapsed() >= self.refresh)
        };
        if !due {
            return;
        }
        let mut done = self.finished.subscribe();
        if !self.start_refresh() && have {
            // Another request already waits for the running refresh; serve what is loaded.
            return;
        }
        let bound = if have {
            self.timeout
        } else {
            self.load_timeout
        };
        if tokio::time::timeout(bound, done.changed()).await.is_err() {
            tracing::warn!(
                event = "policy_refresh_slow",
                waited_ms = bound.as_millis() as u64,
                serving_revision = self.status().revision.as_deref().unwrap_or("none"),
                "policy refresh still running; continuing with the loaded bundle"
            );
        }
    }

    /// Fetches and installs now, waiting for the result without a bound (tools, tests, the
    /// directory watcher of `serve`).
    pub async fn refresh_now(self: &Arc<Self>) {
        let mut done = self.finished.subscribe();
        self.start_refresh();
        let _ = done.changed().await;
    }

    /// Spawns the refresh task unless one is running; returns whether it started one.
    fn start_refresh(self: &Arc<Self>) -> bool {
        if self.inflight.swap(true, Ordering::AcqRel) {
            return false;
        }
        // Checked now, so that requests arriving meanwhile do not queue more refreshes.
        *self.checked_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let me = Arc::clone(self);
        tokio::spawn(async move {
            me.refresh_once().await;
            *me.checked_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            me.inflight.store(false, Ordering::Release);
            me.finished.send_modify(|n| *n = n.wrapping_add(1));
        });
        true
    }

    async fn refresh_once(&self) {
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;
        match result {
            Ok(Fetched::Unchanged) => self.record_unchanged(),
            Ok(Fetched::New { files, origin }) => {
                let digest = files.digest();
                // A new object can hold the bundle already loaded: S3 gives the same bytes a
                // new ETag (and version) when they are uploaded another way (multipart, a
                // copy, other encryption). The content digest, not the ETag, says whether the
                // bundle changed; compiling it again would cost a full compile, throw away
                // the analyses the loaded snapshot made on first use, and announce a new
                // bundle where there is none.
                if self
                    .current
                    .load()
                    .as_ref()
                    .is_some_and(|s| s.digest == digest)
                {
                    self.record_unchanged();
                    return;
                }
                let revision = digest.get(..12).unwrap_or(&digest).to_owned();
                // Compiling is CPU work; keep it off the async workers.
                let compiled =
                    tokio::task::spawn_blocking(move || Snapshot::compile(files, origin)).await;
                match compiled {
                    Ok(Ok((snapshot, problems))) => {
                        for w in &problems.warnings {
                            tracing::warn!(revision = %revision, warning = %one_line(w), "bundle warning");
                        }
                        self.install(snapshot, "loaded");
                    }
                    Ok(Err(problems)) => {
                        self.record_failure(
                            format!("bundle refused: {}", problems.summary()),
                            Some(revision),
                        );
                    }
                    Err(e) => self
                        .record_failure(format!("bundle compilation failed: {e}"), Some(revision)),
                }
            }
            Err(e) => self.record_failure(e, None),
        }
    }

    fn record_unchanged(&self) {
        self.confirmed_at
            .store(unix_seconds(SystemTime::now()), Ordering::Relaxed);
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.last_attempt = Some(unix_seconds(SystemTime::now()));
        s.last_outcome = Some("unchanged".to_owned());
    }

    fn install(&self, snapshot: Snapshot, outcome: &str) {
        self.confirmed_at
            .store(unix_seconds(snapshot.loaded_at), Ordering::Relaxed);
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.revision = Some(snapshot.revision().to_owned());
        s.origin = Some(snapshot.origin.clone());
        s.loaded_at = Some(unix_seconds(snapshot.loaded_at));
        s.last_attempt = Some(unix_seconds(SystemTime::now()));
        s.last_outcome = Some(outcome.to_owned());
        s.last_error = None;
        s.refused_revision = None;
        tracing::info!(
            event = "policy_loaded",
            revision = %snapshot.revision(),
            origin = %snapshot.origin,
            routes = snapshot.routes().len(),
            policies = snapshot.policies.num_of_policies(),
            "policy bundle loaded"
        );
        self.current.store(Some(Arc::new(snapshot)));
    }

    fn record_failure(&self, error: String, refused: Option<String>) {
        self.refresh_failures.fetch_add(1, Ordering::Relaxed);
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.last_attempt = Some(unix_seconds(SystemTime::now()));
        s.last_outcome = Some(
            if refused.is_some() {
                "refused"
            } else {
                "failed"
            }
            .to_owned(),
        );
        s.last_error = Some(error.clone());
        s.refused_revision = refused.clone();
        let serving = s.revision.clone();
        drop(s);
        match serving {
            Some(rev) => tracing::error!(
                event = "policy_refresh_failed",
                error = %error,
                refused_revision = refused.as_deref().unwrap_or("-"),
                serving_revision = %rev,
                "policy refresh failed; keeping the last good bundle"
            ),
            None => tracing::error!(
                event = "policy_refresh_failed",
                error = %error,
                refused_revision = refused.as_deref().unwrap_or("-"),
                "no valid policy bundle: every request is denied"
            ),
        }
    }

    async fn fetch(&self) -> Result<Fetched, String> {
        let current = self.current.load_full();
        match &self.source {
            PolicySource::Dir(path) => {
                dir::fetch(path, current.as_deref().map(|s| s.digest.as_str())).await
            }
            PolicySource::S3 {
                bucket,
                key,
                version,
            } => {
                let source = self
                    .s3
                    .get_or_init(|| async {
                        // One bound for a whole fetch (the SDK's timeouts and the source's own
                        // deadline); the wait of a request is bounded separately, and usually
                        // shorter, by `ensure_fresh`.
                        let bound = self.load_timeout.max(self.timeout);
                        let client = s3::client(bound).await;
                        s3::S3Source::new(
                            client,
                            s3::Location {
                                bucket: bucket.clone(),
                                key: key.clone(),
                                version: version.clone(),
                            },
                            self.max_bundle_bytes,
                            bound,
                        )
                    })
                    .await;
                source.fetch(current.is_some()).await
            }
        }
    }
}
