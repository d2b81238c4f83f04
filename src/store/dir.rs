//! Directory source: a bundle directory (the policy repository itself), for local work and
//! `serve`.
//!
//! Stage: policy store I/O. Input: a directory. Output: [`Fetched`]: `Unchanged` when the
//! content digest equals the loaded snapshot's, else the files. A half-saved file simply fails
//! to compile and the last good snapshot stays (the store's rule), so no locking is needed.

use std::path::Path;

use super::Fetched;
use crate::bundle::BundleFiles;

pub async fn fetch(path: &Path, loaded_digest: Option<&str>) -> Result<Fetched, String> {
    let dir = path.to_path_buf();
    let files = tokio::task::spawn_blocking(move || BundleFiles::read_dir(&dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot read bundle directory `{}`: {e}", path.display()))?;
    if files.files.is_empty() {
        return Err(format!(
            "`{}` holds no bundle (no schema/ or policies/)",
            path.display()
        ));
    }
    if loaded_digest == Some(files.digest().as_str()) {
        return Ok(Fetched::Unchanged);
    }
    Ok(Fetched::New {
        files,
        origin: path.display().to_string(),
    })
}
