//! S3 source: a published bundle object (`s3://bucket/key`), fetched conditionally.
//!
//! Stage: policy store I/O. Input: bucket, key and the standard AWS SDK configuration
//! (credentials chain, region, `AWS_ENDPOINT_URL_S3`). Output: [`Fetched`].
//!
//! Invariants:
//! - Conditional GET: the ETag of the last object seen goes into `If-None-Match`, so an
//!   unchanged bundle costs one `304 Not Modified` and no parsing.
//! - The object is size-capped (declared length checked before reading, body read with a
//!   limit) and its digest verified before any parsing of the files.
//! - One deadline bounds a whole fetch: the request, the SDK's retries and the body.
//! - The ETag of an object that was refused is remembered too: the same bad object is not
//!   downloaded again every refresh; a new upload has a new ETag and is fetched.
//! - A pinned version (`s3://bucket/key?versionId=ID`) is fetched by its id. An S3 object
//!   version never changes, so once one has been downloaded it is not asked for again: no
//!   conditional GET, no request at all. A download that failed (no such version, S3 down)
//!   is retried at the next refresh like any other.
//! - A custom endpoint (moto, MinIO, LocalStack) gets path-style addressing.

use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::Client;

use super::published::Published;
use super::Fetched;
use crate::text::error_chain;

/// An object: `s3://bucket/key`, or one version of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub key: String,
    pub version: Option<String>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)?;
        match &self.version {
            Some(v) => write!(f, "?versionId={v}"),
            None => Ok(()),
        }
    }
}

/// One downloaded object, not yet decoded.
#[derive(Debug)]
pub struct Object {
    pub bytes: Vec<u8>,
    pub etag: Option<String>,
    pub version: Option<String>,
}

#[derive(Debug)]
pub struct S3Source {
    client: Client,
    object: Location,
    max_bytes: usize,
    /// The most one fetch may take, body included.
    timeout: Duration,
    /// The ETag of the last object downloaded (installed or refused).
    seen: Mutex<Option<String>>,
}

/// Whether the SDK will talk to a custom endpoint (then path-style addressing is needed).
fn custom_endpoint() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// What an upload of a bundle object answered: its ETag and version id.
pub type Uploaded = aws_sdk_s3::operation::put_object::PutObjectOutput;

/// Uploads a bundle object (`publish`, `rollback`): JSON, with its digest as object metadata so
/// that `versions` and people reading the bucket see which bundle a version holds without
/// downloading it. `extra` is more metadata (a rollback names the version it restores).
pub async fn put_bundle(
    client: &Client,
    bucket: &str,
    key: &str,
    digest: &str,
    extra: &[(&str, &str)],
    bytes: Vec<u8>,
) -> Result<Uploaded, SdkError<aws_sdk_s3::operation::put_object::PutObjectError>> {
    let mut put = client
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .metadata("cedargate-digest", digest);
    for (k, v) in extra {
        put = put.metadata(*k, *v);
    }
    put.body(bytes.into()).send().await
}

/// An S3 client from the standard AWS configuration chain.
pub async fn client(timeout: Duration) -> Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(timeout.min(Duration::from_secs(5)))
                .operation_attempt_timeout(timeout)
                .build(),
        )
        .load()
        .await;
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(custom_endpoint())
        .build();
    Client::from_conf(conf)
}

impl S3Source {
    /// A source of `s3://bucket/key`: objects over `max_bytes` are refused, and a fetch that
    /// takes longer than `timeout` (body included) is given up.
    pub fn new(client: Client, object: Location, max_bytes: usize, timeout: Duration) -> Self {
        S3Source {
            client,
            object,
            max_bytes,
            timeout,
            seen: Mutex::new(None),
        }
    }

    fn location(&self) -> String {
        self.object.to_string()
    }

    pub async fn fetch(&self, have_snapshot: bool) -> Result<Fetched, String> {
        // The SDK's timeouts bound each attempt up to the response head only: its retries
        // multiply them, and the body is a stream read here, which they do not cover at all. A
        // server that answers and then trickles the body would hold this fetch for as long as
        // it likes, and with it every later refresh (they never overlap), so the authorizer
        // would serve an old bundle forever. One deadline bounds all of it.
        match tokio::time::timeout(self.timeout, self.fetch_unbounded(have_snapshot)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "S3 request for {} timed out after {} ms (body included)",
                self.location(),
                self.timeout.as_millis()
            )),
        }
    }

    async fn fetch_unbounded(&self, have_snapshot: bool) -> Result<Fetched, String> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if self.object.version.is_some() && seen.is_some() && have_snapshot {
            // A pinned version is immutable and was downloaded already: whatever is serving
            // came from it (or it was refused, and would be refused again).
            return Ok(Fetched::Unchanged);
        }
        // Without a snapshot, always download: there is nothing to keep serving.
        let condition = seen.as_deref().filter(|_| have_snapshot);
        let Some(object) = self.download(condition).await? else {
            return Ok(Fetched::Unchanged);
        };
        // Remember this object, good or bad, so that it is not downloaded again unchanged.
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = object.etag.clone();
        let bytes = object.bytes;
        let version = object.version;
        let (published, files) =
            Published::decode(&bytes).map_err(|e| format!("{}: {e}", self.location()))?;
        let origin = Location {
            version: version.or_else(|| self.object.version.clone()),
            ..self.object.clone()
        };
        let mut origin = origin.to_string();
        if let Some(git) = &published.built.git {
            origin.push_str(&format!(
                " (git {}{})",
                git.revision,
                if git.dirty { ", dirty" } else { "" }
            ));
        }
        Ok(Fetched::New { files, origin })
    }
}

impl S3Source {
    /// Downloads the object once, bounded like [`S3Source::fetch`], without decoding it
    /// (`versions` and `rollback` read old versions this way).
    pub async fn read(&self) -> Result<Object, String> {
        match tokio::time::timeout(self.timeout, self.download(None)).await {
            Ok(Ok(Some(object))) => Ok(object),
            Ok(Ok(None)) => Err(format!(
                "{} answered 304 to an unconditional GET",
                self.location()
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(format!(
                "S3 request for {} timed out after {} ms (body included)",
                self.location(),
                self.timeout.as_millis()
            )),
        }
    }

    /// One GET, size-capped; `None` when `if_none_match` matched (304).
    async fn download(&self, if_none_match: Option<&str>) -> Result<Option<Object>, String> {
        let mut req = self
            .client
            .get_object()
            .bucket(&self.object.bucket)
            .key(&self.object.key)
            .set_version_id(self.object.version.clone());
        if let Some(etag) = if_none_match {
            req = req.if_none_match(etag);
        }
        let out = match req.send().await {
            Ok(o) => o,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 304 => return Ok(None),
            Err(e) => return Err(self.explain_failure(&e)),
        };
        if let Some(len) = out.content_length() {
            if usize::try_from(len).map_or(true, |l| l > self.max_bytes) {
                return Err(format!(
                    "{} is {len} bytes, over the limit of {} (CEDARGATE_MAX_BUNDLE_BYTES)",
                    self.location(),
                    self.max_bytes
                ));
            }
        }
        let etag = out.e_tag().map(str::to_owned);
        let version = out.version_id().map(str::to_owned);
        // A pin is a promise about which bytes decide: an answer for another version (a
        // server ignoring the parameter) must not be taken for it.
        if let (Some(pinned), Some(got)) = (&self.object.version, &version) {
            if pinned != got {
                return Err(format!(
                    "{} answered with version `{got}` instead",
                    self.location()
                ));
            }
        }
        let mut body = out.body;
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| format!("reading {} failed: {}", self.location(), error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > self.max_bytes {
                return Err(format!(
                    "{} is over the limit of {} bytes",
                    self.location(),
                    self.max_bytes
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Some(Object {
            bytes,
            etag,
            version,
        }))
    }

    /// [`describe`], plus what a failure of a pinned version most likely means.
    fn explain_failure<E, R>(&self, e: &SdkError<E, R>) -> String
    where
        E: std::fmt::Display + aws_sdk_s3::error::ProvideErrorMetadata,
        R: std::fmt::Debug,
    {
        let reason = describe(&self.location(), e);
        match (&self.object.version, e) {
            (Some(v), SdkError::ServiceError(_)) => format!(
                "{reason} (CEDARGATE_POLICY_SOURCE pins version `{v}`: does it exist? \
                 `cedargate versions s3://{}/{}` lists them)",
                self.object.bucket, self.object.key
            ),
            _ => reason,
        }
    }
}

/// A one-line reason for an S3 failure: the HTTP status and error code when there is one.
pub fn describe<
    E: std::fmt::Display + aws_sdk_s3::error::ProvideErrorMetadata,
    R: std::fmt::Debug,
>(
    location: &str,
    e: &SdkError<E, R>,
) -> String {
    match e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("no code");
            let msg = se.err().message().unwrap_or("");
            format!("S3 refused {location}: {code} {msg}")
                .trim_end()
                .to_owned()
        }
        SdkError::TimeoutError(_) => format!("S3 request for {location} timed out"),
        SdkError::DispatchFailure(d) => {
            format!(
                "S3 unreachable for {location}: {}",
                d.as_connector_error()
                    .map_or_else(|| format!("{d:?}"), ToString::to_string)
            )
        }
        other => format!("S3 request for {location} failed: {other}"),
    }
}
