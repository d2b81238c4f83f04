//! Fetching: key files, discovery documents and remote JWKS → bytes and JSON for the key store.
//!
//! Stage: the I/O of `jwks`. [`KeyStore`] reads its key files here at start, and comes here
//! when it has decided that a remote source must be fetched (when, and how often, is its
//! business, not this file's). Inputs: a file path; a JWKS URL, or an issuer to run OIDC
//! discovery for. Outputs: the file's bytes; the usable keys of the source's JWKS (parsed by
//! `jwk`, tagged with the issuer when discovery found them).
//!
//! Invariants: every document (key file, discovery document, JWKS) is capped at
//! [`MAX_DOCUMENT_BYTES`] before it is parsed, so a broken or hostile server cannot make us
//! buffer without bound; only status 200 counts; redirects keep the URL rules the
//! configuration enforces (https, or http on loopback) and the scheme they started with; a
//! discovery document must name exactly the configured issuer. Errors are one line, with
//! their causes, for logs and for the error a token gets when no keys are available.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::jwk::keys_from_jwks;
use super::{FetchState, JwksError, KeyStore, Remote, RemoteSource, VerifyingKey};
use crate::config;
use crate::text::error_chain;
use crate::token::shown;

/// Discovery documents, JWKS and key files larger than this are refused.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Redirects followed when fetching discovery documents and JWKS.
const MAX_REDIRECTS: usize = 3;

impl KeyStore {
    /// One fetch of `remote`'s keys, from its JWKS URL or from the `jwks_uri` its discovery
    /// found (discovery runs again after a failed fetch: `refresh` forgets the `jwks_uri`).
    pub(super) async fn fetch(
        &self,
        remote: &Remote,
        state: &mut FetchState,
    ) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
        let (url, issuer) = match &remote.source {
            RemoteSource::Jwks { url, issuer } => (url.clone(), issuer.as_deref()),
            RemoteSource::Discovery { issuer } => {
                let url = match &state.jwks_uri {
                    Some(url) => url.clone(),
                    None => self.discover(issuer).await?,
                };
                state.jwks_uri = Some(url.clone());
                (url, Some(issuer.as_str()))
            }
        };
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let doc = self
            .get_json(&url)
            .await
            .map_err(|reason| JwksError::Fetch {
                url: url.to_string(),
                reason,
            })?;
        keys_from_jwks(&doc, &format!("`{url}`"), issuer)
    }

    /// OIDC Discovery 1.0 §4: the configuration lives under the issuer, and the document must
    /// name exactly that issuer (§4.3), or a document served elsewhere could hand us another
    /// issuer's keys.
    async fn discover(&self, issuer: &str) -> Result<reqwest::Url, JwksError> {
        let fail = |reason: String| JwksError::Discovery {
            issuer: shown(issuer),
            reason,
        };
        let raw = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let url =
            config::parse_fetch_url("CEDARGATE_ISSUER", &raw).map_err(|e| fail(e.to_string()))?;
        let doc = self
            .get_json(&url)
            .await
            .map_err(|reason| fail(format!("`{url}`: {reason}")))?;
        match doc.get("issuer") {
            Some(Value::String(named)) if named == issuer => {}
            Some(Value::String(named)) => {
                return Err(fail(format!(
                    "the document names issuer `{}`, not the configured one",
                    shown(named)
                )))
            }
            _ => return Err(fail("the document has no string `issuer`".to_owned())),
        }
        let jwks_uri = doc
            .get("jwks_uri")
            .and_then(Value::as_str)
            .ok_or_else(|| fail("the document has no string `jwks_uri`".to_owned()))?;
        config::parse_fetch_url("jwks_uri", jwks_uri).map_err(|e| fail(e.to_string()))
    }

    /// GET a JSON document: status 200, at most [`MAX_DOCUMENT_BYTES`], within the timeout.
    async fn get_json(&self, url: &reqwest::Url) -> Result<Value, String> {
        let client = self
            .http
            .as_ref()
            .ok_or_else(|| "no HTTP client is configured".to_owned())?;
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!("the server answered {status}"));
        }
        let too_large = || format!("the response is larger than {MAX_DOCUMENT_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|len| len > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
            if body.len().saturating_add(chunk.len()) > MAX_DOCUMENT_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|_| "the response is not JSON".to_owned())
    }
}

impl std::fmt::Display for RemoteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwks { url, .. } => write!(f, "{url}"),
            Self::Discovery { issuer } => write!(f, "discovery of {issuer}"),
        }
    }
}

pub(super) fn http_client(timeout: Duration) -> Result<reqwest::Client, JwksError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            // A redirect may not leave the URL rules the configuration enforces (https, or
            // http on loopback), nor switch scheme.
            let same_scheme = attempt
                .previous()
                .last()
                .is_none_or(|prev| prev.scheme() == attempt.url().scheme());
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if same_scheme
                && config::parse_fetch_url("redirect", attempt.url().as_str()).is_ok()
            {
                attempt.follow()
            } else {
                attempt.error("redirect to another scheme or to plain http off loopback")
            }
        }))
        .user_agent(concat!("cedargate/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| JwksError::Client(error_chain(&e)))
}

pub(super) async fn read_file(path: &std::path::Path) -> Result<Vec<u8>, JwksError> {
    let fail = |reason: String| JwksError::Read {
        path: path.display().to_string(),
        reason,
    };
    let meta = tokio::fs::metadata(path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    if meta.len() > MAX_DOCUMENT_BYTES as u64 {
        return Err(fail(format!(
            "it is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    tokio::fs::read(path).await.map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::jwks::test_support::*;

    #[tokio::test]
    async fn unreachable_keys_say_why() {
        let server = JsonServer::start().await;
        server.set("/jwks", 200, "not json");
        let store = KeyStore::new(&remote_cfg(&format!("{}/jwks", server.base), 0, 3_600_000))
            .await
            .unwrap();
        let err = store
            .key_for(Algorithm::RS256, Some("a"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, JwksError::Unavailable(why) if why.contains("not JSON")),
            "{err}"
        );
        server.set("/jwks", 200, "x".repeat(MAX_DOCUMENT_BYTES + 1));
        let err = store
            .key_for(Algorithm::RS256, Some("a"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    fn discovery(issuer: &str, jwks_uri: &str) -> String {
        json!({"issuer": issuer, "jwks_uri": jwks_uri}).to_string()
    }

    #[tokio::test]
    async fn discovery_finds_each_issuers_keys_and_tags_them() {
        let a = JsonServer::start().await;
        let b = JsonServer::start().await;
        let (iss_a, iss_b) = (format!("{}/", a.base), b.base.clone());
        a.set(
            "/.well-known/openid-configuration",
            200,
            discovery(&iss_a, &format!("{}/keys", a.base)),
        );
        a.set("/keys", 200, jwks(&[jwk(rsa(), json!({"kid": "ka"}))]));
        b.set(
            "/.well-known/openid-configuration",
            200,
            discovery(&iss_b, &format!("{}/keys", b.base)),
        );
        b.set(
            "/keys",
            200,
            jwks(&[jwk(rsa_other(), json!({"kid": "kb"}))]),
        );
        let mut cfg = cfg(&[]);
        cfg.issuers = vec![iss_a.clone(), iss_b.clone()];
        let store = KeyStore::new(&cfg).await.unwrap();
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("ka"))
                .await
                .unwrap()
                .issuer(),
            Some(iss_a.as_str())
        );
        assert_eq!(
            store
                .key_for(Algorithm::RS256, Some("kb"))
                .await
                .unwrap()
                .issuer(),
            Some(iss_b.as_str())
        );
        assert_eq!(store.fetch_count(), 2);
        assert_eq!(a.hits("/.well-known/openid-configuration"), 1);
    }

    #[tokio::test]
    async fn discovery_documents_must_name_the_issuer_and_a_safe_jwks_uri() {
        let server = JsonServer::start().await;
        let issuer = server.base.clone();
        let mut cfg = cfg(&[]);
        cfg.issuers = vec![issuer.clone()];
        cfg.jwks_cooldown = Duration::ZERO;
        server.set("/keys", 200, jwks(&[jwk(rsa(), json!({"kid": "k"}))]));
        for (doc, want) in [
            (
                discovery(&format!("{issuer}/"), &format!("{issuer}/keys")),
                "names issuer",
            ),
            (
                discovery("https://evil.example", &format!("{issuer}/keys")),
                "names issuer",
            ),
            (discovery(&issuer, "http://keys.example/jwks"), "plain http"),
            (discovery(&issuer, "file:///etc/passwd"), "scheme"),
            (json!({"issuer": issuer}).to_string(), "jwks_uri"),
        ] {
            server.set("/.well-known/openid-configuration", 200, doc);
            let store = KeyStore::new(&cfg).await.unwrap();
            let err = store
                .key_for(Algorithm::RS256, Some("k"))
                .await
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
        }
        assert_eq!(server.hits("/keys"), 0);
    }

    #[tokio::test]
    async fn redirects_may_not_leave_loopback_http() {
        let server = JsonServer::start().await;
        let store = KeyStore::new(&remote_cfg(&format!("{}/jwks", server.base), 0, 3_600_000))
            .await
            .unwrap();
        // Served by hand: our tiny server only does 200/404-style bodies, so test the policy on
        // a real redirect response.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 302 Found\r\nlocation: http://keys.example/jwks\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            }
        });
        let url = reqwest::Url::parse(&format!("http://{addr}/jwks")).unwrap();
        let err = store.get_json(&url).await.unwrap_err();
        assert!(err.contains("redirect"), "{err}");
    }
}
