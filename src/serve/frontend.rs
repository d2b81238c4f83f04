//! Frontend: the demo page's static files, served at `/`.
//!
//! Input: a request path. Output: a file from the `frontend/` directory (so edits show on
//! reload, no build step), or the copy compiled into the binary when there is no such directory
//! (so a release binary works from anywhere).
//!
//! Only plain file names directly in the directory are served (`[A-Za-z0-9._-]`, not starting
//! with `.`): no path from a request ever reaches the file system unchecked.

use std::path::PathBuf;

use hyper::StatusCode;

use super::http::{self, Reply};

/// The files compiled into the binary.
const EMBEDDED: [(&str, &str); 5] = [
    ("index.html", include_str!("../../frontend/index.html")),
    ("app.js", include_str!("../../frontend/app.js")),
    ("config.js", include_str!("../../frontend/config.js")),
    ("style.css", include_str!("../../frontend/style.css")),
    ("favicon.svg", include_str!("../../frontend/favicon.svg")),
];

/// Where the frontend comes from.
#[derive(Debug, Clone)]
pub enum Frontend {
    Dir(PathBuf),
    Embedded,
}

impl Frontend {
    /// `dir` when it holds an `index.html`, else the embedded copy.
    pub fn new(dir: Option<PathBuf>) -> Self {
        match dir {
            Some(d) if d.join("index.html").is_file() => Self::Dir(d),
            _ => Self::Embedded,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Dir(d) => d.display().to_string(),
            Self::Embedded => "built in".to_owned(),
        }
    }

    /// The file for a request path, or `None` (then the caller answers 404).
    pub fn get(&self, path: &str) -> Option<Reply> {
        let name = match path.strip_prefix('/')? {
            "" => "index.html",
            n => n,
        };
        let ok = !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        if !ok {
            return None;
        }
        let content_type = match name.rsplit_once('.').map(|(_, e)| e) {
            Some("html") => "text/html; charset=utf-8",
            Some("js" | "mjs") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("ico") => "image/x-icon",
            Some("json") => "application/json",
            _ => return None,
        };
        let bytes: Vec<u8> = match self {
            Self::Dir(d) => std::fs::read(d.join(name)).ok()?,
            Self::Embedded => EMBEDDED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, c)| c.as_bytes().to_vec())?,
        };
        let mut r = http::reply(StatusCode::OK, content_type, bytes);
        // Development: always the file as it is on disk now.
        http::set(&mut r, "cache-control", "no-cache");
        http::set(&mut r, "x-content-type-options", "nosniff");
        if content_type.starts_with("text/html") {
            http::set(&mut r, "content-security-policy", "default-src 'self'; connect-src *; img-src 'self' data:; style-src 'self'; script-src 'self'; base-uri 'none'; frame-ancestors 'none'");
            http::set(&mut r, "referrer-policy", "no-referrer");
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_are_served() {
        let f = Frontend::Embedded;
        assert!(f.get("/").is_some());
        assert!(f.get("/app.js").is_some());
        for bad in [
            "/../Cargo.toml",
            "/.git",
            "/a/b.js",
            "/%2e%2e/x.js",
            "/nothing.js",
            "/index.exe",
        ] {
            assert!(f.get(bad).is_none(), "{bad}");
        }
    }
}
