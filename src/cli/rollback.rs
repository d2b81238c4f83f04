//! `cedargate rollback VERSION_ID --to s3://bucket/key`: makes an earlier published version
//! of the bundle object current again, by uploading its exact bytes as a new version.
//!
//! Invariants:
//! - The old version is checked as the authorizer would load it (digest, format, and a full
//!   compile with strict validation by this cedargate) before anything is uploaded: a version
//!   that would be refused is never made current, so a rollback cannot leave the authorizers
//!   on "keep the last good bundle".
//! - The bytes uploaded are the bytes checked: the object's digest and `built` record stay
//!   those of the old bundle, so decisions and logs name the same revision as when it was
//!   first published; the new version's metadata records what it is a copy of.
//! - Re-uploading, not deleting: every version stays in the history, the rollback included,
//!   and a rollback is undone by another one.

use std::process::ExitCode;

use crate::bundle::Snapshot;
use crate::config::PolicySource;
use crate::store::published::Published;
use crate::store::s3::{Location, S3Source};

use super::versions::{MAX_OBJECT_BYTES, TIMEOUT};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version to make current again (`cedargate versions` lists them)
    #[arg(value_name = "VERSION_ID")]
    version: String,
    /// The published object: s3://bucket/key
    #[arg(long, value_name = "S3_URL")]
    to: String,
}

pub fn run(args: &Args) -> ExitCode {
    let (bucket, key) = match super::publish::object_url("--to", &args.to) {
        Ok(t) => t,
        Err(code) => return code,
    };
    // The same checks as a pinned CEDARGATE_POLICY_SOURCE, so that a bad id is named as such.
    let pinned = format!("s3://{bucket}/{key}?versionId={}", args.version);
    let version = match PolicySource::parse("VERSION_ID", &pinned) {
        Ok(PolicySource::S3 {
            version: Some(v), ..
        }) => v,
        Ok(_) => {
            eprintln!("cedargate: `VERSION_ID` is not a version id");
            return ExitCode::from(1);
        }
        Err(e) => return super::config_failure(&e),
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(rollback(bucket, key, version))
}

async fn rollback(bucket: String, key: String, version: String) -> ExitCode {
    let client = crate::store::s3::client(TIMEOUT).await;
    let source = |version: Option<String>| {
        S3Source::new(
            client.clone(),
            Location {
                bucket: bucket.clone(),
                key: key.clone(),
                version,
            },
            MAX_OBJECT_BYTES,
            TIMEOUT,
        )
    };
    let old = match source(Some(version.clone())).read().await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cedargate: {e}; nothing rolled back");
            return ExitCode::from(1);
        }
    };
    let (published, files) = match Published::decode(&old.bytes) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cedargate: version `{version}` is not a valid bundle object: {e}; nothing rolled back");
            return ExitCode::from(3);
        }
    };
    // What the authorizer will do with it the moment it is current: compile and validate.
    let origin = Location {
        bucket: bucket.clone(),
        key: key.clone(),
        version: Some(version.clone()),
    };
    let snapshot = match Snapshot::compile(files, origin.to_string()) {
        Ok((s, _)) => s,
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            eprintln!(
                "cedargate: version `{version}` would be refused by the authorizer ({}): nothing rolled back",
                problems.summary()
            );
            return ExitCode::from(3);
        }
    };
    let object = format!("s3://{bucket}/{key}");
    // Already current: a new version of the same bytes would only lengthen the history.
    if let Ok(current) = source(None).read().await {
        if let Ok((now, _)) = Published::decode(&current.bytes) {
            if now.digest == published.digest {
                println!(
                    "{}",
                    serde_json::json!({
                        "unchanged": object,
                        "reason": "the current version already holds this bundle",
                        "versionId": current.version,
                        "digest": published.digest,
                        "revision": snapshot.revision(),
                    })
                );
                return ExitCode::SUCCESS;
            }
        }
    }
    let put = crate::store::s3::put_bundle(
        &client,
        &bucket,
        &key,
        &published.digest,
        &[("cedargate-rollback-of", &version)],
        old.bytes,
    )
    .await;
    match put {
        Ok(out) => {
            println!(
                "{}",
                serde_json::json!({
                    "rolledBack": object,
                    "from": version,
                    "versionId": out.version_id(),
                    "etag": out.e_tag(),
                    "digest": published.digest,
                    "revision": snapshot.revision(),
                    "built": published.built,
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "cedargate: {}; nothing rolled back",
                crate::store::s3::describe(&object, &e)
            );
            ExitCode::from(1)
        }
    }
}
