//! The published bundle: one self-describing JSON object, so that a reader never sees half of
//! an update, and so that someone debugging at 3 a.m. can download it and read it.
//!
//! ```json
//! {
//!   "format": "cedargate-bundle/1",
//!   "digest": "sha256:9f2c…",
//!   "built": { "at": "2026-11-26T07:00:00Z", "by": "cedargate 0.1.0",
//!              "git": { "revision": "4e1d…", "dirty": false }, "from": "policy-repo" },
//!   "summary": { "routes": 11, "policies": 7, "files": 8 },
//!   "files": { "schema/api.cedarschema": "…", "policies/pets.cedar": "…" }
//! }
//! ```
//!
//! Invariants: the digest covers every file path and content ([`BundleFiles::digest`]) and is
//! checked before anything is parsed; only bundle paths are accepted (no `..`, nothing outside
//! `schema/`, `policies/`, `entities/`, `policy-tests/`); an unknown format is refused rather
//! than guessed at.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bundle::{is_bundle_path, BundleFiles};

pub const FORMAT: &str = "cedargate-bundle/1";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Git {
    pub revision: String,
    pub dirty: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Built {
    /// RFC 3339 UTC.
    pub at: String,
    /// The tool and version that built the object.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<Git>,
    /// The directory (its name) the bundle was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Summary {
    pub routes: usize,
    pub policies: usize,
    pub files: usize,
}

/// The object as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Published {
    pub format: String,
    pub digest: String,
    pub built: Built,
    #[serde(default)]
    pub summary: Summary,
    pub files: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishedError {
    #[error("the object is not a cedargate bundle (not JSON of the expected shape): {0}")]
    NotABundle(String),
    #[error("unknown bundle format `{0}` (this cedargate reads `{FORMAT}`)")]
    Format(String),
    #[error("the object's digest `{declared}` does not match its content `{actual}`: truncated or corrupted")]
    Digest { declared: String, actual: String },
    #[error("the object contains `{0}`, which is not a bundle path")]
    Path(String),
}

impl Published {
    pub fn new(files: &BundleFiles, built: Built, summary: Summary) -> Self {
        Published {
            format: FORMAT.to_owned(),
            digest: format!("sha256:{}", files.digest()),
            built,
            summary,
            files: files.files.clone(),
        }
    }

    /// Pretty JSON: readable when downloaded.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses and checks an object; the files come back only if the digest matches.
    pub fn decode(bytes: &[u8]) -> Result<(Published, BundleFiles), PublishedError> {
        // The object is UTF-8 JSON throughout: serde_json would skip an unknown member without
        // checking its UTF-8, and a reader of the object (a reviewer's tool) must see what was
        // enforced.
        let text = std::str::from_utf8(bytes)
            .map_err(|e| PublishedError::NotABundle(format!("it is not UTF-8: {e}")))?;
        let p: Published =
            serde_json::from_str(text).map_err(|e| PublishedError::NotABundle(e.to_string()))?;
        if p.format != FORMAT {
            return Err(PublishedError::Format(p.format.chars().take(64).collect()));
        }
        for path in p.files.keys() {
            // Only known bundle paths: nothing that could name a file elsewhere.
            let clean = !path
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..");
            if !clean || !is_bundle_path(path) {
                return Err(PublishedError::Path(path.chars().take(200).collect()));
            }
        }
        let files = BundleFiles {
            files: p.files.clone(),
        };
        let actual = format!("sha256:{}", files.digest());
        if actual != p.digest {
            return Err(PublishedError::Digest {
                declared: p.digest.chars().take(80).collect(),
                actual,
            });
        }
        Ok((p, files))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BundleFiles {
        let mut f = BundleFiles::default();
        f.files
            .insert("schema/a.cedarschema".into(), "entity A;".into());
        f.files.insert(
            "policies/p.cedar".into(),
            "permit(principal, action, resource);".into(),
        );
        f
    }

    fn built() -> Built {
        Built {
            at: "2026-11-26T07:00:00Z".into(),
            by: "cedargate test".into(),
            git: None,
            from: None,
        }
    }

    #[test]
    fn round_trip() {
        let p = Published::new(&files(), built(), Summary::default());
        let (back, f) = Published::decode(p.to_json().as_bytes()).unwrap();
        assert_eq!(back, p);
        assert_eq!(f, files());
    }

    #[test]
    fn tampering_and_truncation_are_refused() {
        let p = Published::new(&files(), built(), Summary::default());
        let mut changed = p.clone();
        changed.files.insert(
            "policies/p.cedar".into(),
            "forbid(principal, action, resource);".into(),
        );
        assert!(matches!(
            Published::decode(changed.to_json().as_bytes()),
            Err(PublishedError::Digest { .. })
        ));
        let text = p.to_json();
        let cut = &text.as_bytes()[..text.len() / 2];
        assert!(matches!(
            Published::decode(cut),
            Err(PublishedError::NotABundle(_))
        ));
        let mut other = p.clone();
        other.format = "cedargate-bundle/9".into();
        assert!(matches!(
            Published::decode(other.to_json().as_bytes()),
            Err(PublishedError::Format(_))
        ));
    }

    #[test]
    fn fuzz_object_with_invalid_utf8_in_an_unknown_member_is_refused() {
        let text = Published::new(&files(), built(), Summary::default()).to_json();
        // `{"note":"<0xff>",` and then the object's own members.
        let mut bytes = b"{\"note\":\"\xff\",".to_vec();
        bytes.extend_from_slice(text.strip_prefix('{').unwrap().as_bytes());
        assert!(matches!(
            Published::decode(&bytes),
            Err(PublishedError::NotABundle(_))
        ));
        // The same object with a valid unknown member reads.
        bytes[9] = b'x';
        assert!(Published::decode(&bytes).is_ok());
    }

    #[test]
    fn paths_outside_the_bundle_are_refused() {
        for bad in [
            "../etc/passwd",
            "policies/../../x.cedar",
            "README.md",
            "policies//p.cedar",
        ] {
            let mut p = Published::new(&files(), built(), Summary::default());
            p.files.insert(bad.into(), String::new());
            let f = BundleFiles {
                files: p.files.clone(),
            };
            p.digest = format!("sha256:{}", f.digest());
            assert!(
                matches!(
                    Published::decode(p.to_json().as_bytes()),
                    Err(PublishedError::Path(_))
                ),
                "{bad}"
            );
        }
    }
}
