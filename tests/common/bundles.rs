//! Policy bundles for the tests: fresh temporary copies of the repository's bundle (for
//! `invoke` and the Lambda, and with the frontend for `serve`), the gateway bundle (the demo
//! API plus the WebSocket and HTTP API catch-all routes), and `cedargate publish`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::paths::{copy_dir, fresh_dir, repo};

/// A fresh directory `PREFIX-…` with copies of these top-level directories of the repository.
fn repo_copy(prefix: &str, parts: &[&str]) -> PathBuf {
    let dir = fresh_dir(prefix);
    for part in parts {
        copy_dir(&repo().join(part), &dir.join(part));
    }
    dir
}

/// Copies the repo's bundle (schema, policies, entities) into a fresh temporary directory.
pub fn bundle_copy(name: &str) -> PathBuf {
    repo_copy(
        &format!("bundle-{name}"),
        &["schema", "policies", "entities"],
    )
}

/// A fresh directory for `cedargate serve`: the bundle and the frontend.
pub fn workdir(name: &str) -> PathBuf {
    repo_copy(
        &format!("serve-{name}"),
        &["schema", "policies", "entities", "frontend"],
    )
}

/// The demo bundle plus `$connect` (readers may connect) and `$default` (editors may use the
/// catch-all), in a temporary directory.
pub fn gateway_bundle(name: &str) -> PathBuf {
    let dir = bundle_copy(name);
    add_gateway_routes(&dir);
    dir
}

/// Writes the routes and policies of [`gateway_bundle`] into a copy of the demo bundle (for
/// one made by [`workdir`], to be served).
pub fn add_gateway_routes(dir: &Path) {
    std::fs::write(
        dir.join("schema/gateway.cedarschema"),
        "// The WebSocket connect route and the HTTP API catch-all route.\n\
         action \"$connect\" appliesTo { principal: [User], resource: [Api], context: RequestContext };\n\
         action \"$default\" appliesTo { principal: [User], resource: [Api], context: RequestContext };\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("policies/gateway.cedar"),
        "@id(\"readers-connect\")\n\
         permit (principal in Role::\"reader\", action == Action::\"$connect\", resource);\n\n\
         @id(\"editors-catch-all\")\n\
         permit (principal in Role::\"editor\", action == Action::\"$default\", resource);\n",
    )
    .unwrap();
}

/// `cedargate publish` of a bundle directory; returns the printed JSON (or the exit code).
pub fn publish(dir: &Path, to: &str, env: &[(String, String)]) -> Result<Value, i32> {
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
