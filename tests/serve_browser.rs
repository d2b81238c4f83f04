//! `cedargate serve` end to end in a real browser: headless Chromium driven by playwright-core
//! (`tests/support/browser/e2e.mjs`).
//!
//! Starts the built binary with `serve --flush-on-reload` on a free port in a temporary copy of
//! the bundle and frontend, then the script: signs in as a reader and as an admin through the
//! development issuer's sign-in page, calls routes and checks the 200/401/403 and the routes
//! table the page shows; checks the IAM policy panel (a pretty-printed policy document whose
//! statements give every route the table's decision, its compact size shown, Copy) and that at
//! 1280×800 and 800×800 every "Try it" button lies inside the table and the viewport; signs out
//! and sees calls fail with 401, edits a policy file (first half-saved, then valid) and sees
//! the page's decision and policy change. Screenshots of each state go
//! to `<target>/artifacts/serve-browser/`; with `CEDARGATE_UPDATE_SCREENSHOT=1` the reader's
//! view is also copied to `docs/screenshot.png`.
//!
//! Needs Node.js, `npm ci --prefix tests/support` and Debian's `chromium`: `.ci/run` installs
//! them. Without them this test fails and says so; it never skips.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, Serve};

#[test]
fn sign_in_call_routes_sign_out_and_see_a_policy_edit_in_chromium() {
    let support = repo().join("tests/support");
    assert!(
        support
            .join("node_modules/playwright-core/package.json")
            .is_file(),
        "playwright-core is not installed in tests/support/node_modules: run `.ci/run` \
         (or `npm ci --prefix tests/support`) and run the tests again"
    );
    let chromium = std::env::var_os("CEDARGATE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        chromium.is_file(),
        "no Chromium at `{}`: run `.ci/run` (it installs Debian's `chromium`) or set \
         CEDARGATE_CHROMIUM, and run the tests again",
        chromium.display()
    );

    let serve = Serve::start("browser", &[], &["--flush-on-reload"]);
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("artifacts/serve-browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(support.join("browser/e2e.mjs"))
        .current_dir(&support)
        .env("CEDARGATE_BASE", &serve.base)
        .env("CEDARGATE_BUNDLE", &serve.dir)
        .env("CEDARGATE_ARTIFACTS", &artifacts)
        .env("CEDARGATE_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if std::env::var_os("CEDARGATE_UPDATE_SCREENSHOT").is_some() {
        cmd.env(
            "CEDARGATE_SCREENSHOT_OUT",
            repo().join("docs/screenshot.png"),
        );
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!("cannot start `node` (is Node.js installed? run `.ci/run`): {e}")
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            panic!("the browser test did not finish in 240 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        status.success(),
        "the browser test failed ({status}); screenshots in {}\n--- e2e stdout\n{stdout}\n--- e2e stderr\n{stderr}\n--- serve log (last 60 lines)\n{}",
        artifacts.display(),
        serve
            .log()
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for name in [
        "01-signed-out",
        "02-sign-in-page",
        "03-reader",
        "05-admin",
        "07-after-edit",
    ] {
        assert!(
            artifacts.join(format!("{name}.png")).is_file(),
            "screenshot {name} is missing"
        );
    }
}
