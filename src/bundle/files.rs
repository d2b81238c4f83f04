//! Bundle files: a bundle directory (or a published object's file map) → [`BundleFiles`].
//!
//! Stage: first step of bundle load. Input: a directory. Output: the bundle's files by
//! bundle-relative path, and their content digest (the bundle's revision).
//!
//! Invariants: only bundle paths are read (`schema/`, `policies/`, `entities/`,
//! `policy-tests/` with their extensions); hidden files, editor backups and anything deeper
//! than 16 directories are skipped; the digest covers every path and every byte, length-prefixed
//! so that no two different file sets share one.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The files of a bundle, by path relative to the bundle root (`/`-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BundleFiles {
    pub files: BTreeMap<String, String>,
}

/// Whether a bundle-relative path is part of the bundle.
pub fn is_bundle_path(path: &str) -> bool {
    let ext = |e: &str| path.ends_with(e);
    (path.starts_with("schema/") && (ext(".cedarschema") || ext(".cedarschema.json")))
        || (path.starts_with("policies/") && ext(".cedar"))
        || (path.starts_with("entities/") && ext(".json"))
        || (path.starts_with("policy-tests/") && (ext(".yaml") || ext(".yml")))
}

impl BundleFiles {
    /// Reads the bundle files under `dir`. Hidden files and directories are skipped (editors'
    /// swap files, `.git`).
    pub fn read_dir(dir: &Path) -> std::io::Result<Self> {
        let mut files = BTreeMap::new();
        for top in ["schema", "policies", "entities", "policy-tests"] {
            let root = dir.join(top);
            if root.is_dir() {
                walk(dir, &root, &mut files, 0)?;
            }
        }
        Ok(Self { files })
    }

    /// SHA-256 over the sorted paths and contents: the bundle's content revision.
    pub fn digest(&self) -> String {
        let mut h = Sha256::new();
        for (path, content) in &self.files {
            h.update((path.len() as u64).to_be_bytes());
            h.update(path.as_bytes());
            h.update((content.len() as u64).to_be_bytes());
            h.update(content.as_bytes());
        }
        hex::encode(h.finalize())
    }

    pub(crate) fn with_prefix<'a>(
        &'a self,
        prefix: &'a str,
        suffix: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a String)> {
        self.files
            .iter()
            .filter(move |(p, _)| p.starts_with(prefix) && p.ends_with(suffix))
    }
}

fn walk(
    base: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    depth: usize,
) -> std::io::Result<()> {
    if depth > 16 {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = entry.path();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(base, &path, out, depth + 1)?;
        } else if ft.is_file() || ft.is_symlink() {
            let rel = path.strip_prefix(base).unwrap_or(&path);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let rel = rel.join("/");
            if is_bundle_path(&rel) {
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
                })?;
                out.insert(rel, text);
            }
        }
    }
    Ok(())
}
