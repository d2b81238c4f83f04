//! `cedargate versions s3://bucket/key`: the published versions of a bundle object, newest
//! first, each downloaded and checked (digest, format) and described by what it says about
//! itself (`built`: when, by what, from which git revision), so that a rollback target can be
//! chosen by what it is rather than by an opaque version id.

use std::process::ExitCode;
use std::time::Duration;

use aws_sdk_s3::primitives::DateTimeFormat;
use aws_sdk_s3::Client;
use serde::Serialize;
use serde_json::json;

use crate::store::published::{Built, Published, Summary};
use crate::store::s3::{Location, S3Source};

/// The largest object read (the authorizer's default `CEDARGATE_MAX_BUNDLE_BYTES`).
pub(super) const MAX_OBJECT_BYTES: usize = 64 * 1024 * 1024;
/// The most one S3 request may take, body included.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);
/// Listing pages read at most: other keys under the same prefix also fill pages.
const MAX_PAGES: usize = 50;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The published object: s3://bucket/key (its bucket must have versioning enabled)
    #[arg(value_name = "S3_URL")]
    object: String,
    /// How many versions to show, newest first
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// Print one JSON document instead of a table
    #[arg(long)]
    json: bool,
}

/// One entry of the object's version list, before it is read.
struct Listed {
    version: String,
    latest: bool,
    modified: Option<String>,
    /// `modified` as (seconds, nanoseconds), to sort by.
    at: (i64, u32),
    size: Option<i64>,
    delete_marker: bool,
}

/// The object's versions and delete markers, newest first, at most `limit`.
async fn list(
    client: &Client,
    bucket: &str,
    key: &str,
    limit: usize,
) -> Result<Vec<Listed>, String> {
    let location = format!("s3://{bucket}/{key}");
    let mut out: Vec<Listed> = Vec::new();
    let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
    for _ in 0..MAX_PAGES {
        let page = client
            .list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await
            .map_err(|e| crate::store::s3::describe(&location, &e))?;
        let when = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.and_then(|t| t.fmt(DateTimeFormat::DateTime).ok())
        };
        let at = |t: Option<&aws_sdk_s3::primitives::DateTime>| {
            t.map_or((0, 0), |t| (t.secs(), t.subsec_nanos()))
        };
        // The prefix also matches longer keys; only this one counts.
        for v in page.versions().iter().filter(|v| v.key() == Some(key)) {
            out.push(Listed {
                version: v.version_id().unwrap_or("null").to_owned(),
                latest: v.is_latest().unwrap_or(false),
                modified: when(v.last_modified()),
                at: at(v.last_modified()),
                size: v.size(),
                delete_marker: false,
            });
        }
        for m in page
            .delete_markers()
            .iter()
            .filter(|m| m.key() == Some(key))
        {
            out.push(Listed {
                version: m.version_id().unwrap_or("null").to_owned(),
                latest: m.is_latest().unwrap_or(false),
                modified: when(m.last_modified()),
                at: at(m.last_modified()),
                size: None,
                delete_marker: true,
            });
        }
        let past_key = page.next_key_marker().is_some_and(|k| k != key);
        if !page.is_truncated().unwrap_or(false) || out.len() >= limit || past_key {
            break;
        }
        key_marker = page.next_key_marker().map(str::to_owned);
        version_marker = page.next_version_id_marker().map(str::to_owned);
    }
    // S3 lists versions and delete markers apart, each newest first: merge the two (stable, so
    // S3's own order stands between equal times).
    out.sort_by_key(|v| std::cmp::Reverse(v.at));
    out.truncate(limit);
    Ok(out)
}

/// One version as `versions` reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Version {
    version_id: String,
    latest: bool,
    last_modified: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    delete_marker: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    built: Option<Built>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
    /// Why the authorizer would refuse this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// What a version says about itself, read and checked as the authorizer would read it.
async fn describe_version(client: &Client, bucket: &str, key: &str, listed: Listed) -> Version {
    let mut entry = Version {
        version_id: listed.version,
        latest: listed.latest,
        last_modified: listed.modified,
        delete_marker: listed.delete_marker,
        size: listed.size,
        revision: None,
        digest: None,
        built: None,
        summary: None,
        error: None,
    };
    if entry.delete_marker {
        return entry;
    }
    let source = S3Source::new(
        client.clone(),
        Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            version: Some(entry.version_id.clone()),
        },
        MAX_OBJECT_BYTES,
        TIMEOUT,
    );
    let decoded = source
        .read()
        .await
        .and_then(|o| Published::decode(&o.bytes).map_err(|e| e.to_string()));
    match decoded {
        Ok((published, _)) => {
            let hex = published
                .digest
                .strip_prefix("sha256:")
                .unwrap_or(&published.digest);
            entry.revision = Some(hex.get(..12).unwrap_or(hex).to_owned());
            entry.digest = Some(published.digest.clone());
            entry.built = Some(published.built);
            entry.summary = Some(published.summary);
        }
        Err(e) => entry.error = Some(e),
    }
    entry
}

fn table(object: &str, versions: &[Version]) -> String {
    let row = |cells: [&str; 6]| {
        let [id, current, revision, built, git, uploaded] = cells;
        format!("{id:<34} {current:<7} {revision:<12} {built:<20} {git:<14} {uploaded}\n")
    };
    let mut out = format!("versions of {object}, newest first:\n");
    out.push_str(&row([
        "VERSION_ID",
        "CURRENT",
        "REVISION",
        "BUILT_AT",
        "GIT",
        "UPLOADED",
    ]));
    for v in versions {
        let git = v.built.as_ref().and_then(|b| b.git.as_ref()).map_or_else(
            || "-".to_owned(),
            |g| {
                let short = g.revision.get(..12).unwrap_or(&g.revision);
                format!("{short}{}", if g.dirty { "+dirty" } else { "" })
            },
        );
        let revision = if v.delete_marker {
            "(deleted)".to_owned()
        } else if v.error.is_some() {
            "(invalid)".to_owned()
        } else {
            v.revision.clone().unwrap_or_default()
        };
        out.push_str(&row([
            &v.version_id,
            if v.latest { "yes" } else { "" },
            &revision,
            v.built.as_ref().map_or("-", |b| b.at.as_str()),
            &git,
            v.last_modified.as_deref().unwrap_or("-"),
        ]));
        if let Some(e) = &v.error {
            out.push_str(&format!("    refused: {e}\n"));
        }
    }
    out
}

pub fn run(args: &Args) -> ExitCode {
    let (bucket, key) = match super::publish::object_url("S3_URL", &args.object) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let rt = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    rt.block_on(async {
        let client = crate::store::s3::client(TIMEOUT).await;
        let listed = match list(&client, &bucket, &key, usize::from(args.limit)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cedargate: {e}");
                return ExitCode::from(1);
            }
        };
        let mut versions = Vec::with_capacity(listed.len());
        for l in listed {
            versions.push(describe_version(&client, &bucket, &key, l).await);
        }
        let object = format!("s3://{bucket}/{key}");
        if args.json {
            println!("{}", json!({ "object": object, "versions": versions }));
        } else if versions.is_empty() {
            println!("no versions of {object}");
        } else {
            print!("{}", table(&object, &versions));
        }
        ExitCode::SUCCESS
    })
}
