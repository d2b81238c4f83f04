//! The Lambda artifact without the development parts: what `sam build` builds for
//! `BuildMethod: rust-cargolambda` (`cargo lambda build --release`, which reads
//! `[package.metadata.lambda.build]` in `Cargo.toml`) carries neither `serve` and its HTTP
//! server and file watcher, nor the development issuer behind `token`, nor the embedded demo
//! page; and it still answers authorizer events exactly as the full build does.
//!
//! The artifact is built for the host (`--compiler cargo`: no zig, no cross toolchain), not for
//! the template's arm64; the features, and so the parts left out, are the same on both.
//! `.ci/run` builds the same artifact before the tests, so here the build is a no-op there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{demo_env, fresh_dir, mint, repo, token_event, tool, tools, ROLES};
use serde_json::{json, Value};

/// `cargo tree` of the binary's normal dependencies: `name features` per line.
fn dependency_tree(no_default_features: bool) -> String {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(repo())
        .args(["tree", "--locked", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p} [{f}]"]);
    if no_default_features {
        cmd.arg("--no-default-features");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The features `cargo tree` lists for `package`, or `None` when it is not in the tree.
fn features_of(tree: &str, package: &str) -> Option<Vec<String>> {
    let line = tree
        .lines()
        .find(|l| l.starts_with(&format!("{package} v")))?;
    let inner = line.split_once('[')?.1.split_once(']')?.0;
    Some(
        inner
            .split(',')
            .filter(|f| !f.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

#[test]
fn the_lambda_build_has_no_http_server_and_no_file_watcher() {
    // The full build has them: the check below looks at the right names.
    let full = dependency_tree(false);
    assert!(features_of(&full, "notify").is_some(), "{full}");
    assert!(
        features_of(&full, "hyper")
            .unwrap()
            .contains(&"server".to_owned()),
        "{full}"
    );

    let slim = dependency_tree(true);
    assert_eq!(features_of(&slim, "notify"), None, "{slim}");
    // hyper stays (the Lambda runtime's and reqwest's HTTP client), without its server half.
    let hyper = features_of(&slim, "hyper").expect("hyper, for the HTTP clients");
    assert!(!hyper.contains(&"server".to_owned()), "{hyper:?}");
    let hyper_util = features_of(&slim, "hyper-util").unwrap_or_default();
    assert!(
        !hyper_util.iter().any(|f| f.starts_with("server")),
        "{hyper_util:?}"
    );
}

#[test]
fn cargo_lambda_builds_without_the_development_parts_by_default() {
    // `sam build` passes cargo-lambda no feature flags (only `--bin`): the crate's own
    // `[package.metadata.lambda.build]` must turn the default features off.
    let out = Command::new(env!("CARGO"))
        .current_dir(repo())
        .args(["metadata", "--locked", "--no-deps", "--format-version", "1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let package = &meta["packages"][0];
    assert_eq!(package["features"]["default"], json!(["dev"]));
    assert_eq!(
        package["metadata"]["lambda"]["build"]["no_default_features"],
        json!(true)
    );
}

/// Builds the artifact as `sam build` does (release), for the host; returns its `bootstrap`.
fn lambda_artifact() -> PathBuf {
    let dir = fresh_dir("lambda-artifact");
    let out = Command::new(tool("cargo-lambda"))
        .current_dir(repo())
        // A release build of the whole tree takes minutes here: its target directory is kept
        // with the tools, so that every checkout on the machine (CI's fresh clones included)
        // rebuilds only what changed.
        .env("CARGO_TARGET_DIR", tools().join("lambda-target"))
        .args(["lambda", "build", "--release", "--compiler", "cargo"])
        .args(["--bin", "cedargate", "--lambda-dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo lambda build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bootstrap = dir.join("cedargate/bootstrap");
    assert!(bootstrap.is_file(), "no {}", bootstrap.display());
    bootstrap
}

fn run(binary: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .envs(demo_env())
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_lambda_artifact_answers_as_the_full_build_and_has_no_development_commands() {
    let slim = lambda_artifact();
    let full = PathBuf::from(env!("CARGO_BIN_EXE_cedargate"));

    // `--help` lists no development command, and says why.
    let help = String::from_utf8(run(&slim, &["--help"], "").stdout).unwrap();
    for present in ["lambda", "invoke", "validate", "explain", "test", "publish"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{present} "))),
            "{present}: {help}"
        );
    }
    for absent in ["serve", "token"] {
        assert!(
            !help
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{absent} "))),
            "{absent}: {help}"
        );
    }
    assert!(
        help.contains("This build has no development parts"),
        "{help}"
    );
    let full_help = String::from_utf8(run(&full, &["--help"], "").stdout).unwrap();
    assert!(
        full_help
            .lines()
            .any(|l| l.trim_start().starts_with("serve ")),
        "{full_help}"
    );

    // Asked for anyway, a development command is refused with the reason, not run.
    for (args, what) in [
        (vec!["serve", "--port", "0"], "serve"),
        (vec!["token", "--user", "reader"], "token"),
    ] {
        let out = run(&slim, &args, "");
        assert_eq!(out.status.code(), Some(1), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("this build has no development parts (`serve`, `token`)"),
            "{what}: {err}"
        );
    }

    // Neither the embedded demo page nor the development issuer is in the artifact: a line of
    // the page and the issuer's key file name are in the full build only.
    let page = std::fs::read_to_string(repo().join("frontend/index.html")).unwrap();
    let page_line = page
        .lines()
        .map(str::trim)
        .find(|l| l.len() > 40)
        .expect("a long line of the page");
    let (slim_bytes, full_bytes) = (std::fs::read(&slim).unwrap(), std::fs::read(&full).unwrap());
    let contains =
        |hay: &[u8], needle: &str| hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    for needle in [page_line, ".cedargate/dev-issuer.pem"] {
        assert!(contains(&full_bytes, needle), "{needle}");
        assert!(
            !contains(&slim_bytes, needle),
            "`{needle}` is in the Lambda artifact"
        );
    }

    // The same events, the same answers: an allowed and a denied route, and a bad token.
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] }));
    let events = [
        token_event(&reader, "GET/pets/42"),
        token_event(&reader, "DELETE/pets/42"),
        token_event("not-a-token", "GET/pets"),
    ];
    let input: String = events.iter().map(|e| format!("{e}\n")).collect();
    let answers = |binary: &Path| -> Vec<Value> {
        let out = run(binary, &["invoke"], &input);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The decision itself; the context may carry per-invocation values.
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                json!({
                    "principalId": v["principalId"],
                    "policyDocument": v["policyDocument"],
                    "error": v["error"],
                })
            })
            .collect()
    };
    let from_slim = answers(&slim);
    assert_eq!(from_slim.len(), 3, "{from_slim:?}");
    assert_eq!(from_slim[0]["principalId"], "auth0|rita");
    assert_eq!(from_slim[1]["principalId"], "auth0|rita");
    assert_eq!(from_slim[2]["error"], "Unauthorized");
    assert_eq!(from_slim, answers(&full));
}
