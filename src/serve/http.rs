//! Small HTTP helpers for `serve`: responses, CORS, bodies, query strings and forms.
//!
//! Every builder here is infallible: header values that cannot be represented are left out
//! rather than unwrapped, so no request can make the server panic.

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::{Response, StatusCode};
use serde_json::Value;

pub type Body = Full<Bytes>;
pub type Reply = Response<Body>;

/// API Gateway's payload limit for REST APIs.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub fn json(status: StatusCode, value: &Value) -> Reply {
    reply(status, "application/json", value.to_string())
}

pub fn html(status: StatusCode, page: String) -> Reply {
    let mut r = reply(status, "text/html; charset=utf-8", page);
    set(&mut r, "cache-control", "no-store");
    r
}

/// Sets a header; a value that is not a valid header value is left out.
pub fn set(reply: &mut Reply, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        reply.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

/// A redirect (303: the browser follows with GET, whatever the method was).
pub fn see_other(location: &str) -> Reply {
    let mut r = reply(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    set(&mut r, "location", location);
    set(&mut r, "cache-control", "no-store");
    r
}

/// CORS as the demo API (and the original example's gateway responses) configure it: any
/// origin, bearer tokens in `Authorization`, no cookies.
pub fn cors(mut reply: Reply) -> Reply {
    set(&mut reply, "access-control-allow-origin", "*");
    set(
        &mut reply,
        "access-control-allow-headers",
        "Authorization,Content-Type,X-Amz-Date,X-Api-Key",
    );
    set(
        &mut reply,
        "access-control-allow-methods",
        "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS",
    );
    set(&mut reply, "access-control-max-age", "600");
    reply
}

/// The development endpoints (`/status`, `/_cedargate/…`) answer their own origin only: no CORS
/// headers (a page elsewhere cannot read them: they name bundle paths, the issuer, the upstream
/// and the last policy error), and `Cross-Origin-Resource-Policy: same-origin`, so that not
/// even a no-CORS load from another page receives the bytes.
pub fn same_origin(mut reply: Reply) -> Reply {
    for name in [
        "access-control-allow-origin",
        "access-control-allow-headers",
        "access-control-allow-methods",
        "access-control-max-age",
    ] {
        reply.headers_mut().remove(name);
    }
    set(&mut reply, "cross-origin-resource-policy", "same-origin");
    set(&mut reply, "cache-control", "no-store");
    reply
}

/// The answer to a CORS preflight.
pub fn preflight() -> Reply {
    cors(reply(
        StatusCode::NO_CONTENT,
        "text/plain; charset=utf-8",
        "",
    ))
}

/// The request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    TooLarge,
    Broken,
}

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Broken),
    }
}

/// `a=1&b=2` → pairs, percent-decoded. Later duplicates are kept after earlier ones.
pub fn form(text: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(text).into_owned().collect()
}

/// The first value of `name` in decoded pairs.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// HTML-escapes text for element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_fields_take_the_first_value() {
        let pairs = form(b"a=1&b=x%20y&a=2&c=%2B+");
        assert_eq!(field(&pairs, "a"), Some("1"));
        assert_eq!(field(&pairs, "b"), Some("x y"));
        assert_eq!(field(&pairs, "c"), Some("+ "));
        assert_eq!(field(&pairs, "d"), None);
    }

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn invalid_header_values_are_left_out() {
        let mut r = reply(StatusCode::OK, "text/plain", "");
        set(&mut r, "location", "bad\nvalue");
        assert!(r.headers().get("location").is_none());
    }
}
