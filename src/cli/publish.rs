//! `cedargate publish --to s3://bucket/key`: validates the bundle with the same code the
//! authorizer loads it with, then uploads it as one object (see `store::published`), so that
//! readers see the old bundle or the new one, never half of an update.

use std::path::Path;
use std::process::{Command, ExitCode};

use crate::bundle::Snapshot;
use crate::config::PolicySource;
use crate::store::published::{Built, Git, Published, Summary};
use crate::time::rfc3339_now;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    bundle: super::BundleArgs,
    /// Where to publish: s3://bucket/key
    #[arg(long, value_name = "S3_URL", required_unless_present = "out")]
    to: Option<String>,
    /// Also (or only) write the object to this file, e.g. to inspect it
    #[arg(long, value_name = "FILE")]
    out: Option<std::path::PathBuf>,
}

/// `s3://bucket/key` given as `flag`: the object a bundle is published to (or listed, or
/// rolled back). A version id has no place here: uploads always make a new version.
pub(super) fn object_url(flag: &'static str, raw: &str) -> Result<(String, String), ExitCode> {
    match PolicySource::parse(flag, raw) {
        Ok(PolicySource::S3 {
            bucket,
            key,
            version: None,
        }) => Ok((bucket, key)),
        Ok(PolicySource::S3 {
            version: Some(_), ..
        }) => {
            eprintln!(
                "cedargate: `{flag}` names the object, without ?versionId= (an upload makes a new version)"
            );
            Err(ExitCode::from(1))
        }
        Ok(PolicySource::Dir(_)) => {
            eprintln!("cedargate: `{flag}` must be s3://bucket/key");
            Err(ExitCode::from(1))
        }
        Err(e) => Err(super::config_failure(&e)),
    }
}

/// The git revision of the bundle directory, when it is in a git work tree.
fn git(dir: &Path) -> Option<Git> {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let rev = run(&["rev-parse", "HEAD"])?;
    let revision = String::from_utf8_lossy(&rev.stdout).trim().to_owned();
    let dirty = run(&["status", "--porcelain", "--", "."]).is_some_and(|o| !o.stdout.is_empty());
    Some(Git { revision, dirty })
}

pub fn run(args: &Args) -> ExitCode {
    let dir = match args.bundle.dir() {
        Ok(d) => d,
        Err(e) => return super::config_failure(&e),
    };
    let target = match args.to.as_deref().map(|t| object_url("--to", t)) {
        None => None,
        Some(Ok(target)) => Some(target),
        Some(Err(code)) => return code,
    };
    let files = match super::read_bundle(&dir) {
        Ok(f) => f,
        Err(code) => return code,
    };
    // The same compile the authorizer does: what is published is what will load.
    let snapshot = match Snapshot::compile(files.clone(), dir.display().to_string()) {
        Ok((s, problems)) => {
            for w in &problems.warnings {
                eprintln!("{w:?}");
            }
            s
        }
        Err(problems) => {
            for e in &problems.errors {
                eprintln!("{e:?}");
            }
            eprintln!(
                "cedargate: invalid bundle ({} error(s)): nothing published",
                problems.errors.len()
            );
            return ExitCode::from(3);
        }
    };
    let absolute = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
    let built = Built {
        at: rfc3339_now(),
        by: format!("cedargate {}", env!("CARGO_PKG_VERSION")),
        git: git(&dir),
        from: absolute
            .file_name()
            .map(|n| n.to_string_lossy().into_owned()),
    };
    let summary = Summary {
        routes: snapshot.routes().len(),
        policies: snapshot.policies.num_of_policies(),
        files: files.files.len(),
    };
    let object = Published::new(&files, built, summary);
    let body = object.to_json();
    if let Some(out) = &args.out {
        if let Err(e) = std::fs::write(out, &body) {
            eprintln!("cedargate: cannot write `{}`: {e}", out.display());
            return ExitCode::from(1);
        }
    }
    let Some((bucket, key)) = target else {
        println!(
            "{}",
            serde_json::json!({ "written": args.out, "digest": object.digest, "revision": snapshot.revision() })
        );
        return ExitCode::SUCCESS;
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let client = crate::store::s3::client(std::time::Duration::from_secs(60)).await;
        let put = crate::store::s3::put_bundle(
            &client,
            &bucket,
            &key,
            &object.digest,
            &[],
            body.into_bytes(),
        )
        .await;
        match put {
            Ok(out) => {
                println!(
                    "{}",
                    serde_json::json!({
                        "published": format!("s3://{bucket}/{key}"),
                        "etag": out.e_tag(),
                        "versionId": out.version_id(),
                        "digest": object.digest,
                        "revision": snapshot.revision(),
                        "routes": object.summary.routes,
                        "policies": object.summary.policies,
                    })
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!(
                    "cedargate: {}",
                    crate::store::s3::describe(&format!("s3://{bucket}/{key}"), &e)
                );
                ExitCode::from(1)
            }
        }
    })
}
