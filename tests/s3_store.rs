//! Policies hot-loaded from a real S3-protocol server (moto, over loopback): publish, load,
//! change, refuse, survive an outage, recover; conditional GETs; a cold start against an
//! empty bucket; a pinned version and a rollback on a versioned bucket; and the same
//! change-and-pick-up through the real Lambda runtime.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::{
    allows, bundle_copy, demo_arn, mint, publish, token_event, InvokePipe, LambdaEmulator, Moto,
    ROLES,
};
use serde_json::json;

const BUCKET: &str = "policies";
const KEY: &str = "cedargate/bundle.json";

fn env(moto: &Moto) -> Vec<(String, String)> {
    let mut env = common::demo_env();
    env.retain(|(k, _)| k != "CEDARGATE_POLICY_SOURCE");
    env.push((
        "CEDARGATE_POLICY_SOURCE".into(),
        format!("s3://{BUCKET}/{KEY}"),
    ));
    env.push(("CEDARGATE_POLICY_REFRESH_SECONDS".into(), "1".into()));
    env.push(("CEDARGATE_POLICY_TIMEOUT_MS".into(), "3000".into()));
    env.extend(moto.env());
    env
}

fn wait_past_refresh() {
    std::thread::sleep(Duration::from_millis(1300));
}

fn edit(dir: &std::path::Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} contains {from}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
}

#[test]
fn publish_refresh_refuse_outage_recover() {
    let mut moto = Moto::start();
    moto.create_bucket(BUCKET);
    let env = env(&moto);
    let to = format!("s3://{BUCKET}/{KEY}");
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] }));
    let get_pets = token_event(&reader, "GET/pets");

    // Cold start against an empty bucket: nothing to allow, so everything is denied.
    let mut pipe = InvokePipe::start(&env);
    let resp = pipe.send(&get_pets);
    assert!(
        !allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert!(
        !allows(&resp["policyDocument"], &demo_arn("POST/api/private")),
        "{resp}"
    );
    assert!(pipe.logged("no valid policy bundle"), "the logs say why");

    // Publish: picked up on the next invocation after the refresh window.
    let dir = bundle_copy("s3");
    let first = publish(&dir, &to, &env).unwrap();
    assert_eq!(first["published"], to);
    assert!(first["etag"].is_string() && first["digest"].as_str().unwrap().starts_with("sha256:"));
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert!(
        allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], first["revision"]);

    // An unchanged bundle is not downloaded again: the next checks are 304s.
    let downloads = moto.gets(BUCKET, KEY, 200);
    wait_past_refresh();
    pipe.send(&get_pets);
    wait_past_refresh();
    pipe.send(&get_pets);
    assert_eq!(
        moto.gets(BUCKET, KEY, 200),
        downloads,
        "no new download of an unchanged bundle"
    );
    assert!(
        moto.gets(BUCKET, KEY, 304) >= 2,
        "conditional GETs answered 304"
    );

    // A changed policy, published: the next invocation after the window decides differently.
    edit(
        &dir,
        "policies/pets.cedar",
        "principal in Role::\"reader\"",
        "principal in Role::\"editor\"",
    );
    let second = publish(&dir, &to, &env).unwrap();
    assert_ne!(second["digest"], first["digest"]);
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert!(
        !allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "the change took effect: {resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], second["revision"]);

    // An invalid bundle cannot be published by cedargate; upload one anyway, by hand.
    edit(&dir, "policies/pets.cedar", "permit (", "permit ((");
    assert_eq!(
        publish(&dir, &to, &env),
        Err(3),
        "publish refuses an invalid bundle"
    );
    let mut object: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(write_object(&dir)).unwrap()).unwrap();
    object["files"]["policies/pets.cedar"] =
        std::fs::read_to_string(dir.join("policies/pets.cedar"))
            .unwrap()
            .into();
    put_raw(&moto, &object.to_string());
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert_eq!(
        resp["context"]["policyRevision"], second["revision"],
        "decisions unchanged"
    );
    assert!(!allows(&resp["policyDocument"], &demo_arn("GET/pets")));
    assert!(
        pipe.logged("digest"),
        "the refusal is logged with its reason"
    );

    // A truncated object: refused too.
    put_raw(&moto, &object.to_string()[..200]);
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert_eq!(resp["context"]["policyRevision"], second["revision"]);
    assert!(pipe.logged("not a cedargate bundle"), "truncation logged");

    // The S3 server goes away: decisions unchanged, the failure logged.
    moto.stop();
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert_eq!(resp["context"]["policyRevision"], second["revision"]);
    assert!(
        pipe.logged("S3 unreachable") || pipe.logged("timed out"),
        "outage logged"
    );

    // It comes back (empty: moto keeps no state); a new good bundle is picked up.
    moto.restart();
    moto.create_bucket(BUCKET);
    edit(&dir, "policies/pets.cedar", "permit ((", "permit (");
    edit(
        &dir,
        "policies/pets.cedar",
        "principal in Role::\"editor\",\n  action in Action::\"read\"",
        "principal in Role::\"reader\",\n  action in Action::\"read\"",
    );
    let third = publish(&dir, &to, &env).unwrap();
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert!(
        allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], third["revision"]);
}

/// Writes the bundle object to a file without publishing it (publish --out).
fn write_object(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("object.json");
    // Build the object from a valid state of the bundle: restore the edit, write, re-apply.
    let pets = dir.join("policies/pets.cedar");
    let broken = std::fs::read_to_string(&pets).unwrap();
    std::fs::write(&pets, broken.replace("permit ((", "permit (")).unwrap();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(["publish", "--out"])
        .arg(&out)
        .arg("--bundle")
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(&pets, broken).unwrap();
    out
}

/// Uploads `body` as the object, by hand; returns the new version's id (versioned buckets).
fn put_raw(moto: &Moto, body: &str) -> Option<String> {
    let resp = reqwest::blocking::Client::new()
        .put(format!("{}/{BUCKET}/{KEY}", moto.endpoint()))
        // moto checks no signatures, but a request without credentials is anonymous, and an
        // anonymous overwrite of an account's object is refused (403): name the test account.
        .header(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .unwrap();
    let status = resp.status();
    let version = resp
        .headers()
        .get("x-amz-version-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert!(
        status.is_success(),
        "{status}: {}",
        resp.text().unwrap_or_default()
    );
    version
}

#[test]
fn a_new_bundle_is_picked_up_through_the_lambda_runtime() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    let env = env(&moto);
    let to = format!("s3://{BUCKET}/{KEY}");
    let dir = bundle_copy("s3-lambda");
    let first = publish(&dir, &to, &env).unwrap();

    let lambda = LambdaEmulator::start(&env);
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] }));
    let ev = token_event(&reader, "GET/pets");
    let resp = lambda.invoke(&ev).unwrap();
    assert!(
        allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], first["revision"]);

    edit(
        &dir,
        "policies/pets.cedar",
        "principal in Role::\"reader\"",
        "principal in Role::\"editor\"",
    );
    let second = publish(&dir, &to, &env).unwrap();
    wait_past_refresh();
    let resp = lambda.invoke(&ev).unwrap();
    assert!(
        !allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], second["revision"]);
}

/// Runs a cedargate subcommand; returns its exit code, stdout and stderr.
fn cedargate(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cedargate"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `env` with the policy source pinned to `version`.
fn pinned(env: &[(String, String)], version: &str) -> Vec<(String, String)> {
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "CEDARGATE_POLICY_SOURCE");
    env.push((
        "CEDARGATE_POLICY_SOURCE".into(),
        format!("s3://{BUCKET}/{KEY}?versionId={version}"),
    ));
    env
}

fn versions(env: &[(String, String)]) -> Vec<serde_json::Value> {
    let (code, out, err) = cedargate(
        &["versions", &format!("s3://{BUCKET}/{KEY}"), "--json"],
        env,
    );
    assert_eq!(code, 0, "{err}");
    let listing: serde_json::Value = serde_json::from_str(&out).unwrap();
    listing["versions"].as_array().unwrap().clone()
}

#[test]
fn pinned_version_versions_and_rollback() {
    let moto = Moto::start();
    moto.create_bucket(BUCKET);
    moto.enable_versioning(BUCKET);
    let env = env(&moto);
    let to = format!("s3://{BUCKET}/{KEY}");
    let reader = mint(json!({ "sub": "auth0|rita", ROLES: ["reader"] }));
    let get_pets = token_event(&reader, "GET/pets");

    // Two publishes: readers may list pets in the first bundle, not in the second.
    let dir = bundle_copy("s3-versions");
    let first = publish(&dir, &to, &env).unwrap();
    edit(
        &dir,
        "policies/pets.cedar",
        "principal in Role::\"reader\"",
        "principal in Role::\"editor\"",
    );
    let second = publish(&dir, &to, &env).unwrap();
    let v1 = first["versionId"]
        .as_str()
        .expect("a version id")
        .to_owned();
    let v2 = second["versionId"].as_str().unwrap().to_owned();
    assert_ne!(v1, v2);

    // `versions` lists both, newest first, with what each says about itself.
    let listed = versions(&env);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["versionId"], v2.as_str());
    assert_eq!(listed[0]["latest"], true);
    assert_eq!(listed[0]["revision"], second["revision"]);
    assert_eq!(listed[1]["versionId"], v1.as_str());
    assert_eq!(listed[1]["latest"], false);
    assert_eq!(listed[1]["revision"], first["revision"]);
    assert_eq!(listed[1]["digest"], first["digest"]);
    assert!(listed[1]["built"]["at"].as_str().unwrap().ends_with('Z'));
    let (code, table, _) = cedargate(&["versions", &to], &env);
    assert_eq!(code, 0);
    assert!(
        table.contains(&v1) && table.contains(first["revision"].as_str().unwrap()),
        "{table}"
    );

    // Pinned to the first version: its decisions, although the second is current.
    let mut pin = InvokePipe::start(&pinned(&env, &v1));
    let resp = pin.send(&get_pets);
    assert!(
        allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "{resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], first["revision"]);
    // An object version never changes: once loaded, it is not asked for again.
    let asked = moto.gets(BUCKET, KEY, 200) + moto.gets(BUCKET, KEY, 304);
    wait_past_refresh();
    pin.send(&get_pets);
    wait_past_refresh();
    let resp = pin.send(&get_pets);
    assert_eq!(resp["context"]["policyRevision"], first["revision"]);
    assert_eq!(
        moto.gets(BUCKET, KEY, 200) + moto.gets(BUCKET, KEY, 304),
        asked,
        "no request for a pinned version already loaded"
    );
    drop(pin);

    // Unpinned: the current (second) bundle.
    let mut pipe = InvokePipe::start(&env);
    let resp = pipe.send(&get_pets);
    assert!(!allows(&resp["policyDocument"], &demo_arn("GET/pets")));
    assert_eq!(resp["context"]["policyRevision"], second["revision"]);

    // A version that does not exist: a clear error, and nothing changes.
    let (code, _, err) = cedargate(&["rollback", "no-such-version", "--to", &to], &env);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("no-such-version") && err.contains("nothing rolled back"),
        "{err}"
    );
    // An invalid object uploaded by hand is a version too; rolling back to it is refused.
    let mut broken: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(write_object(&dir)).unwrap()).unwrap();
    broken["files"]["policies/pets.cedar"] = "permit ((principal, action, resource);".into();
    // The digest matches (it is recomputed like publish does): only the compile can refuse it.
    let files: std::collections::BTreeMap<String, String> =
        serde_json::from_value(broken["files"].clone()).unwrap();
    broken["digest"] = format!("sha256:{}", digest_of(&files)).into();
    let bad = put_raw(&moto, &broken.to_string()).expect("a version id");
    let good_again = publish(&dir, &to, &env).unwrap();
    assert_eq!(good_again["revision"], second["revision"]);
    let (code, _, err) = cedargate(&["rollback", &bad, "--to", &to], &env);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("would be refused"), "{err}");
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert_eq!(
        resp["context"]["policyRevision"], second["revision"],
        "the last good bundle keeps serving"
    );

    // Roll back to the first version: re-checked, uploaded on top, and picked up.
    let (code, out, err) = cedargate(&["rollback", &v1, "--to", &to], &env);
    assert_eq!(code, 0, "{err}");
    let rolled: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rolled["from"], v1.as_str());
    assert_eq!(rolled["revision"], first["revision"]);
    assert_eq!(rolled["digest"], first["digest"]);
    assert_ne!(rolled["versionId"], v1.as_str(), "a new version on top");
    wait_past_refresh();
    let resp = pipe.send(&get_pets);
    assert!(
        allows(&resp["policyDocument"], &demo_arn("GET/pets")),
        "the first bundle's decisions are current again: {resp}"
    );
    assert_eq!(resp["context"]["policyRevision"], first["revision"]);
    let listed = versions(&env);
    assert_eq!(listed[0]["latest"], true);
    assert_eq!(listed[0]["revision"], first["revision"]);
    assert!(
        listed
            .iter()
            .any(|v| v["versionId"] == bad.as_str() && v["error"].is_null()),
        "the refused version decodes (its digest matches); only compiling refuses it"
    );
    // Rolling back to what is current already uploads nothing.
    let (code, out, _) = cedargate(&["rollback", &v1, "--to", &to], &env);
    assert_eq!(code, 0);
    assert!(out.contains("\"unchanged\""), "{out}");
    assert_eq!(versions(&env).len(), listed.len());

    // A pin to a version that does not exist: nothing to allow, and the logs say why.
    let mut nowhere = InvokePipe::start(&pinned(&env, "no-such-version"));
    let resp = nowhere.send(&get_pets);
    assert!(!allows(&resp["policyDocument"], &demo_arn("GET/pets")));
    assert!(
        nowhere.logged("pins version `no-such-version`"),
        "{:?}",
        nowhere.log.lock().unwrap()
    );
    // A malformed pin is refused at start, naming the variable.
    for bad in ["", "a%2Bb", "a b"] {
        let (code, _, err) = cedargate(&["invoke"], &pinned(&env, bad));
        assert_eq!(code, 1, "{bad:?}: {err}");
        assert!(
            err.contains("CEDARGATE_POLICY_SOURCE") && err.contains("versionId"),
            "{bad:?}: {err}"
        );
    }
}

/// The content digest of a bundle's files, as `BundleFiles::digest` computes it.
fn digest_of(files: &std::collections::BTreeMap<String, String>) -> String {
    cedargate::bundle::BundleFiles {
        files: files.clone(),
    }
    .digest()
}
