//! Bearer token → [`UnverifiedJwt`].
//!
//! Stage: the first step after the event. Input: the `Authorization` value the client sent
//! (`Bearer <jwt>`, scheme case-insensitive, or a bare JWT) and the size cap. Output: an
//! [`UnverifiedJwt`]: a compact JWS whose structure and protected header have been checked, and
//! nothing else. Its payload is not read here: claims are looked at only after the signature
//! verifies (`claims`), so nothing an attacker writes into a payload can steer key selection.
//!
//! Invariants: the size cap is applied before any decoding; every segment is strict base64url
//! (no padding, no stray bits, no other characters); the header is a JSON object with unique
//! member names, a supported asymmetric `alg`, no `crit`, and a `typ` (when present) that names a
//! JWT. A token is never printed: [`UnverifiedJwt`]'s `Debug` shows its [`fingerprint`], and no
//! error carries token text beyond short, escaped header values.
//!
//! [`fingerprint`]: UnverifiedJwt::fingerprint

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::SUPPORTED_ALGORITHMS;

/// Why a bearer token was refused before any key was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was sent")]
    Missing,
    #[error("the authorization scheme is not `Bearer`")]
    Scheme,
    #[error("the token is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    #[error("the token is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("the token header is invalid: {0}")]
    Header(String),
    #[error("tokens with `alg` `none` are never accepted")]
    AlgNone,
    #[error("`{0}` is a shared-secret algorithm; cedargate never accepts it")]
    SharedSecret(String),
    #[error("algorithm `{0}` is not supported")]
    UnsupportedAlgorithm(String),
    #[error("the token header marks extensions as critical (`crit`); none are supported")]
    Critical,
    #[error("token type `{0}` is not a JWT access or ID token")]
    Type(String),
}

/// A compact JWS that passed the structural checks above. Holding one proves nothing about who
/// made it; `claims::Verifier` turns it into `VerifiedClaims`.
pub struct UnverifiedJwt {
    token: String,
    alg: Algorithm,
    kid: Option<String>,
    /// The payload, base64url-decoded (still unverified: only claims read it, after the
    /// signature check).
    payload: Vec<u8>,
}

/// The `typ` values that mean "a JWT": plain JWTs and OAuth access tokens (RFC 9068). Anything
/// else (`dpop+jwt`, `logout+jwt`, `secevent+jwt`, …) is a different kind of token signed by
/// the same keys, and accepting it as a bearer token is token confusion (RFC 8725 §3.11).
const ACCEPTED_TYPES: &[&str] = &["JWT", "at+jwt", "application/at+jwt"];

/// A bearer token needs no more than this much room for its scheme and spacing.
const SCHEME_ALLOWANCE: usize = 64;

impl UnverifiedJwt {
    /// `authorization` is what the client sent: `Bearer <jwt>` (scheme case-insensitive) or a
    /// bare JWT. Tokens longer than `max_bytes` are refused before anything is decoded.
    pub fn parse(authorization: &str, max_bytes: usize) -> Result<Self, TokenError> {
        Self::from_compact(bearer(authorization, max_bytes)?)
    }

    /// Parses a compact JWS already taken out of its `Authorization` value by [`bearer`] (and
    /// so already within the size cap).
    pub fn from_compact(token: &str) -> Result<Self, TokenError> {
        // Only base64url and dots: no whitespace, padding or JSON serialization can slip
        // through to a parser that would read them differently.
        if !is_compact_jws(token) {
            return Err(TokenError::Malformed(
                "it contains characters outside base64url",
            ));
        }
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(if token.split('.').count() == 5 {
                TokenError::Encrypted
            } else {
                TokenError::Malformed("it does not have exactly three segments")
            });
        };
        if header.is_empty() {
            return Err(TokenError::Malformed("the header is empty"));
        }
        // The header first, so that an `alg: none` token (empty signature) is named as such.
        let header_bytes = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenError::Malformed("the header is not base64url"))?;
        let (alg, kid) = check_header(&read_header(&header_bytes)?)?;
        // An empty payload is a valid JWS (the claims stage refuses it as claims); a payload
        // that is not strict base64url is refused here, before any key is fetched for it.
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed("the payload is not base64url"))?;
        if signature.is_empty() {
            return Err(TokenError::Malformed("the signature is empty"));
        }
        // Decoded only to be checked (the verifier decodes it again): into a buffer on the
        // stack, as long as it fits one (RSA-8192 signatures are 1,024 bytes).
        let mut buf = [0u8; 1024];
        let decoded = if signature.len() <= 1360 {
            URL_SAFE_NO_PAD.decode_slice(signature, &mut buf).is_ok()
        } else {
            URL_SAFE_NO_PAD.decode(signature).is_ok()
        };
        if !decoded {
            return Err(TokenError::Malformed("the signature is not base64url"));
        }
        Ok(Self {
            token: token.to_owned(),
            alg,
            kid,
            payload,
        })
    }

    /// The signature algorithm the token claims; the key decides whether it may be used.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The key id from the header, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The compact JWT, without the scheme.
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// A short hex digest of the token (the first 8 bytes of its SHA-256), to correlate log
    /// lines without logging the token.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.token)
    }

    /// `header.payload`: the bytes the signature covers.
    pub(crate) fn signing_input(&self) -> &str {
        self.token.rsplit_once('.').map_or("", |(input, _)| input)
    }

    /// The signature segment, base64url.
    pub(crate) fn signature_b64(&self) -> &str {
        self.token
            .rsplit_once('.')
            .map_or("", |(_, signature)| signature)
    }

    /// The payload, decoded from base64url (unverified until the signature is checked).
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }
}

impl fmt::Debug for UnverifiedJwt {
    // Never the token itself: Debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnverifiedJwt")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

pub(crate) fn fingerprint(token: &str) -> String {
    fingerprint_of(&Sha256::digest(token.as_bytes()).into())
}

/// The fingerprint of a token from its SHA-256: the first 8 bytes, in hex.
pub fn fingerprint_of(digest: &[u8; 32]) -> String {
    hex::encode(digest.get(..8).unwrap_or_default())
}

/// The token of an `Authorization` value (`Bearer <jwt>`, scheme case-insensitive, or a bare
/// JWT), refused when longer than `max_bytes`: the first, cheap step of [`UnverifiedJwt::parse`]
/// (the handler looks up verified tokens by these bytes before parsing them again).
pub fn bearer(authorization: &str, max_bytes: usize) -> Result<&str, TokenError> {
    // Cap first: everything after this line is linear in the input, and the input is
    // attacker-sized.
    if authorization.len() > max_bytes.saturating_add(SCHEME_ALLOWANCE) {
        return Err(TokenError::TooLarge {
            len: authorization.len(),
            max: max_bytes,
        });
    }
    let token = strip_scheme(authorization)?;
    if token.len() > max_bytes {
        return Err(TokenError::TooLarge {
            len: token.len(),
            max: max_bytes,
        });
    }
    Ok(token)
}

fn strip_scheme(authorization: &str) -> Result<&str, TokenError> {
    // Byte scans, not `char` patterns: the value is a kilobyte of ASCII, searched on every
    // request, and the separators are ASCII.
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let bytes = authorization.as_bytes();
    let start = bytes.iter().position(|b| !blank(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !blank(b))
        .map_or(start, |i| i + 1);
    let value = authorization.get(start..end).unwrap_or_default();
    if value.is_empty() {
        return Err(TokenError::Missing);
    }
    match value.bytes().position(|b| blank(&b)) {
        Some(at) => {
            let (scheme, rest) = value.split_at(at);
            if !scheme.eq_ignore_ascii_case("bearer") {
                // `Basic …`, `Digest …`: a credential cedargate does not verify.
                return Err(TokenError::Scheme);
            }
            let token = rest.trim_start_matches([' ', '\t']);
            if token.is_empty() {
                Err(TokenError::Missing)
            } else {
                Ok(token)
            }
        }
        None if value.eq_ignore_ascii_case("bearer") => Err(TokenError::Missing),
        None => Ok(value),
    }
}

/// Whether `token` holds only the bytes a compact JWS may: the base64url alphabet and dots.
fn is_compact_jws(token: &str) -> bool {
    // In blocks, each folded without an early exit, so that the compiler can check many bytes
    // at once (a token is a kilobyte, checked on every never-seen token).
    token.as_bytes().chunks(32).all(|block| {
        block.iter().fold(true, |ok, &b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.'))
        })
    })
}

/// The header members cedargate reads (every other member is skipped, but counted for
/// duplicates).
#[derive(Debug, Default)]
struct Header {
    alg: Option<Value>,
    kid: Option<Value>,
    typ: Option<Value>,
    crit: bool,
}

/// Reads the header object: one pass, no map of every member, duplicate names refused (as
/// [`parse_object`] does for the payload).
fn read_header(bytes: &[u8]) -> Result<Header, TokenError> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Header;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object with unique member names")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Header, A::Error> {
            let mut h = Header::default();
            // A set, not a list: the number of members is the sender's to choose.
            let mut seen = std::collections::BTreeSet::<std::borrow::Cow<'de, str>>::new();
            while let Some(Key(key)) = access.next_key::<Key<'de>>()? {
                if seen.contains(&key) {
                    return Err(serde::de::Error::custom("duplicate member name"));
                }
                match key.as_ref() {
                    "alg" => h.alg = Some(access.next_value()?),
                    "kid" => h.kid = Some(access.next_value()?),
                    "typ" => h.typ = Some(access.next_value()?),
                    other => {
                        h.crit |= other == "crit";
                        access.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                seen.insert(key);
            }
            Ok(h)
        }
    }
    /// A member name, borrowed from the input where it has no escapes.
    struct Key<'a>(std::borrow::Cow<'a, str>);
    impl<'de: 'a, 'a> Deserialize<'de> for Key<'a> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct K;
            impl<'de> Visitor<'de> for K {
                type Value = std::borrow::Cow<'de, str>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a member name")
                }
                fn visit_borrowed_str<E: serde::de::Error>(
                    self,
                    v: &'de str,
                ) -> Result<Self::Value, E> {
                    Ok(std::borrow::Cow::Borrowed(v))
                }
                fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                    Ok(std::borrow::Cow::Owned(v.to_owned()))
                }
            }
            d.deserialize_str(K).map(Key)
        }
    }
    // A JOSE header is UTF-8 JSON (RFC 7515 §4). serde_json skips the members it ignores
    // without checking their UTF-8, so the whole header is checked first: a header that other
    // JOSE readers refuse must not pass here (found by the `bearer` fuzz target).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(TokenError::Header(ObjectError::NotJson.to_string()));
    };
    let mut de = serde_json::Deserializer::from_str(text);
    match de.deserialize_map(V).and_then(|h| de.end().map(|()| h)) {
        Ok(h) => Ok(h),
        Err(_) => Err(TokenError::Header(
            match serde_json::from_slice::<Value>(bytes) {
                Err(_) => ObjectError::NotJson,
                Ok(v) if !v.is_object() => ObjectError::NotObject,
                Ok(_) => ObjectError::Duplicate,
            }
            .to_string(),
        )),
    }
}

fn check_header(header: &Header) -> Result<(Algorithm, Option<String>), TokenError> {
    let alg = match &header.alg {
        Some(Value::String(alg)) => alg,
        Some(_) => return Err(TokenError::Header("`alg` is not a string".to_owned())),
        None => return Err(TokenError::Header("`alg` is missing".to_owned())),
    };
    let alg = algorithm(alg)?;
    // RFC 7515 §4.1.11: a recipient must refuse a token whose critical extensions it does not
    // understand. cedargate understands none (not even `b64`, RFC 7797), so any `crit` is fatal.
    if header.crit {
        return Err(TokenError::Critical);
    }
    match &header.typ {
        None => {}
        Some(Value::String(typ)) if ACCEPTED_TYPES.iter().any(|t| t.eq_ignore_ascii_case(typ)) => {}
        Some(Value::String(typ)) => return Err(TokenError::Type(shown(typ))),
        Some(_) => return Err(TokenError::Header("`typ` is not a string".to_owned())),
    }
    let kid = match &header.kid {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(TokenError::Header("`kid` is not a string".to_owned())),
    };
    // `jku`, `x5u`, `jwk` and `x5c` are deliberately not read: keys come only from the
    // configured sources. A key (or a URL to one) supplied by the token proves nothing, and
    // fetching a URL named by a token would let any caller make the authorizer call out.
    Ok((alg, kid))
}

/// The token's `alg`, if it is one cedargate can verify at all (the configured allow-list is
/// applied later, by the verifier).
fn algorithm(name: &str) -> Result<Algorithm, TokenError> {
    if name.eq_ignore_ascii_case("none") {
        return Err(TokenError::AlgNone);
    }
    // HMAC keys are shared secrets: whoever can verify can also mint. Naming them separately
    // makes `alg` confusion attempts (an RSA public key used as an HMAC secret) obvious in logs.
    if ["HS256", "HS384", "HS512"]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
    {
        return Err(TokenError::SharedSecret(shown(name)));
    }
    SUPPORTED_ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, alg)| *alg)
        .ok_or_else(|| TokenError::UnsupportedAlgorithm(shown(name)))
}

/// The JOSE name of an algorithm, for messages.
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    SUPPORTED_ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("unsupported", |(n, _)| n)
}

/// User input as it may appear in a message: at most 40 characters, control characters
/// escaped, so a value can neither flood a log line nor break it.
pub(crate) fn shown(value: &str) -> String {
    const MAX: usize = 40;
    let mut out: String = value
        .chars()
        .take(MAX)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

/// Why a JSON document is not an object with unique member names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("it is not JSON")]
    NotJson,
    #[error("it is not a JSON object")]
    NotObject,
    #[error("a member name appears twice")]
    Duplicate,
}

/// Parses a JSON object, refusing duplicate member names at the top level. RFC 7519 §4 lets a
/// parser either refuse duplicates or keep the last one; two parsers that choose differently
/// (ours and jsonwebtoken's) could then check different values, so duplicates are refused.
///
/// The object is read once, into an ordered map (no hashing); only when that fails is the
/// input looked at again, to say why.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<JsonObject, ObjectError> {
    match serde_json::from_slice::<UniqueObject>(bytes) {
        Ok(o) => Ok(o.0),
        Err(_) => Err(match serde_json::from_slice::<Value>(bytes) {
            Err(_) => ObjectError::NotJson,
            Ok(v) if !v.is_object() => ObjectError::NotObject,
            Ok(_) => ObjectError::Duplicate,
        }),
    }
}

/// A JSON object's members by name.
pub type JsonObject = BTreeMap<String, Value>;

struct UniqueObject(JsonObject);

impl<'de> Deserialize<'de> for UniqueObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor;

        impl<'de> Visitor<'de> for UniqueVisitor {
            type Value = UniqueObject;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object with unique member names")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueObject, A::Error> {
                let mut map = JsonObject::new();
                while let Some(key) = access.next_key::<String>()? {
                    let value: Value = access.next_value()?;
                    if map.insert(key, value).is_some() {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                }
                Ok(UniqueObject(map))
            }
        }

        deserializer.deserialize_map(UniqueVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn jws(header: &str, payload: &str) -> String {
        format!("{}.{}.c2ln", b64(header), b64(payload))
    }

    const RS256: &str = r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_optional() {
        let token = jws(RS256, "{}");
        for auth in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("BEARER \t {token} "),
            token.clone(),
        ] {
            let jwt = UnverifiedJwt::parse(&auth, 4096).unwrap();
            assert_eq!(jwt.as_str(), token);
            assert_eq!(jwt.alg(), Algorithm::RS256);
            assert_eq!(jwt.kid(), Some("k1"));
        }
    }

    #[test]
    fn missing_and_foreign_schemes_are_refused() {
        assert_eq!(
            UnverifiedJwt::parse("", 4096).unwrap_err(),
            TokenError::Missing
        );
        assert_eq!(
            UnverifiedJwt::parse("  ", 4096).unwrap_err(),
            TokenError::Missing
        );
        assert_eq!(
            UnverifiedJwt::parse("Bearer", 4096).unwrap_err(),
            TokenError::Missing
        );
        assert_eq!(
            UnverifiedJwt::parse("Bearer   ", 4096).unwrap_err(),
            TokenError::Missing
        );
        assert_eq!(
            UnverifiedJwt::parse("Basic dXNlcjpwYXNz", 4096).unwrap_err(),
            TokenError::Scheme
        );
    }

    #[test]
    fn oversize_tokens_are_refused_before_decoding() {
        // Not even valid base64: the size check must come first.
        let huge = format!("Bearer {}", "!".repeat(5000));
        assert!(matches!(
            UnverifiedJwt::parse(&huge, 4096),
            Err(TokenError::TooLarge { .. })
        ));
        let token = jws(RS256, &format!("{{\"x\":\"{}\"}}", "a".repeat(600)));
        assert!(matches!(
            UnverifiedJwt::parse(&token, token.len() - 1),
            Err(TokenError::TooLarge { .. })
        ));
        assert!(UnverifiedJwt::parse(&token, token.len()).is_ok());
    }

    #[test]
    fn structure_is_strict() {
        let good = jws(RS256, "{}");
        let (head, rest) = good.split_once('.').unwrap();
        let unsigned = good.rsplit_once('.').unwrap().0;
        let cases = [
            (format!("{good}.x"), false, "four segments"),
            (head.to_owned(), false, "one segment"),
            (format!(".{rest}"), false, "empty header"),
            (format!("{unsigned}."), false, "empty signature"),
            (format!("{head}=.{rest}"), false, "padding"),
            (format!("{head}. {rest}"), false, "whitespace inside"),
            (
                format!("{head}.+{rest}"),
                false,
                "standard-alphabet character",
            ),
            (
                format!("{{\"payload\":\"{rest}\"}}"),
                false,
                "JSON serialization",
            ),
            (
                format!("{head}.Zm9vYh.c2ln"),
                false,
                "stray bits in the last character",
            ),
            (format!("{head}.Zm9vYg.c2ln"), true, "canonical base64url"),
            (
                format!(" {good}\t"),
                true,
                "surrounding whitespace is trimmed",
            ),
        ];
        for (token, ok, why) in cases {
            assert_eq!(UnverifiedJwt::parse(&token, 4096).is_ok(), ok, "{why}");
        }
        assert_eq!(
            UnverifiedJwt::parse(&format!("{head}.{rest}.x.y"), 4096).unwrap_err(),
            TokenError::Encrypted
        );
    }

    #[test]
    fn empty_payload_is_structurally_fine() {
        // A JWS may have an empty payload; the claims stage refuses it as claims.
        let token = format!("{}..c2ln", b64(RS256));
        assert!(UnverifiedJwt::parse(&token, 4096).is_ok());
    }

    #[test]
    fn header_must_be_a_unique_object_with_a_string_alg() {
        for header in [
            "[]",
            "\"RS256\"",
            "not json",
            r#"{"kid":"k"}"#,
            r#"{"alg":256}"#,
            r#"{"alg":"RS256","alg":"RS256"}"#,
            r#"{"alg":"RS256","kid":7}"#,
            r#"{"alg":"RS256","typ":1}"#,
        ] {
            let err = UnverifiedJwt::parse(&jws(header, "{}"), 4096).unwrap_err();
            assert!(matches!(err, TokenError::Header(_)), "{header}: {err:?}");
        }
    }

    #[test]
    fn dangerous_algorithms_are_refused_by_name() {
        for (alg, want) in [
            ("none", TokenError::AlgNone),
            ("NONE", TokenError::AlgNone),
            ("HS256", TokenError::SharedSecret("HS256".into())),
            ("hs512", TokenError::SharedSecret("hs512".into())),
            ("ES512", TokenError::UnsupportedAlgorithm("ES512".into())),
            ("rs256", TokenError::UnsupportedAlgorithm("rs256".into())),
        ] {
            let header = format!(r#"{{"alg":"{alg}"}}"#);
            assert_eq!(
                UnverifiedJwt::parse(&jws(&header, "{}"), 4096).unwrap_err(),
                want
            );
        }
        for (name, alg) in SUPPORTED_ALGORITHMS {
            let header = format!(r#"{{"alg":"{name}"}}"#);
            assert_eq!(
                UnverifiedJwt::parse(&jws(&header, "{}"), 4096)
                    .unwrap()
                    .alg(),
                *alg
            );
        }
    }

    #[test]
    fn crit_is_refused_whatever_it_names() {
        for crit in [r#"["exp"]"#, "[]", r#"["b64"]"#, "true"] {
            let header = format!(r#"{{"alg":"RS256","crit":{crit}}}"#);
            assert_eq!(
                UnverifiedJwt::parse(&jws(&header, "{}"), 4096).unwrap_err(),
                TokenError::Critical
            );
        }
    }

    #[test]
    fn typ_must_name_a_jwt() {
        for typ in ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"] {
            let header = format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#);
            assert!(
                UnverifiedJwt::parse(&jws(&header, "{}"), 4096).is_ok(),
                "{typ}"
            );
        }
        for typ in ["dpop+jwt", "logout+jwt", "JOSE", ""] {
            let header = format!(r#"{{"alg":"RS256","typ":"{typ}"}}"#);
            assert!(
                matches!(
                    UnverifiedJwt::parse(&jws(&header, "{}"), 4096),
                    Err(TokenError::Type(_))
                ),
                "{typ}"
            );
        }
    }

    #[test]
    fn embedded_keys_and_urls_are_ignored_not_trusted() {
        let header = r#"{"alg":"RS256","jku":"https://evil.example/jwks","x5u":"https://evil.example/c","jwk":{"kty":"oct","k":"AA"}}"#;
        let jwt = UnverifiedJwt::parse(&jws(header, "{}"), 4096).unwrap();
        assert_eq!(jwt.kid(), None);
    }

    #[test]
    fn segments_and_fingerprint() {
        let token = jws(RS256, r#"{"sub":"a"}"#);
        let jwt = UnverifiedJwt::parse(&token, 4096).unwrap();
        assert_eq!(jwt.signature_b64(), "c2ln");
        assert_eq!(jwt.payload(), br#"{"sub":"a"}"#);
        assert_eq!(
            format!("{}.{}", jwt.signing_input(), jwt.signature_b64()),
            token
        );
        let fp = jwt.fingerprint();
        assert_eq!(fp.len(), 16);
        assert!(fp.bytes().all(|b| b.is_ascii_hexdigit()));
        let debug = format!("{jwt:?}");
        assert!(
            !debug.contains(&token) && !debug.contains(jwt.signature_b64()) && debug.contains(&fp)
        );
    }

    #[test]
    fn errors_never_echo_the_token_and_stay_on_one_line() {
        let long_typ = format!("x\n{}", "y".repeat(200));
        let header = format!(
            r#"{{"alg":"RS256","typ":{}}}"#,
            serde_json::to_string(&long_typ).unwrap()
        );
        let token = jws(&header, "{}");
        let message = UnverifiedJwt::parse(&token, 4096).unwrap_err().to_string();
        assert!(!message.contains('\n') && message.len() < 120, "{message}");
        assert!(!message.contains(&token));
    }

    #[test]
    fn fuzz_header_with_invalid_utf8_in_an_ignored_member_is_refused() {
        // `{"alg":"RS256","x":"<0xed>"}`: a member cedargate does not read, not UTF-8.
        let mut header = br#"{"alg":"RS256","x":"?"}"#.to_vec();
        let at = header.iter().position(|b| *b == b'?').unwrap();
        header[at] = 0xed;
        let token = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert!(matches!(
            UnverifiedJwt::from_compact(&token),
            Err(TokenError::Header(_))
        ));
        // The same header with a UTF-8 value is read.
        header[at] = b'y';
        let token = format!(
            "{}.{}.c2ln",
            URL_SAFE_NO_PAD.encode(&header),
            URL_SAFE_NO_PAD.encode("{}")
        );
        assert!(UnverifiedJwt::from_compact(&token).is_ok());
    }

    #[test]
    fn parse_object_refuses_duplicates() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(ObjectError::Duplicate)
        );
        assert_eq!(parse_object(b"[1]"), Err(ObjectError::NotObject));
        assert_eq!(parse_object(b""), Err(ObjectError::NotJson));
        // Nested objects keep serde_json's last-wins; only top-level names are security-relevant.
        assert!(parse_object(br#"{"a":{"b":1},"c":2}"#).is_ok());
    }

    #[test]
    fn a_byte_outside_base64url_is_refused_wherever_it_falls() {
        let good = jws(RS256, &format!("{{\"x\":\"{}\"}}", "a".repeat(90)));
        assert!(is_compact_jws(&good));
        for at in 0..good.len() {
            for bad in [b'+', b'/', b'=', b' ', b'\t', 0x7f, b'\0'] {
                let mut bytes = good.clone().into_bytes();
                bytes[at] = bad;
                let token = String::from_utf8(bytes).unwrap();
                assert!(!is_compact_jws(&token), "{at} {bad}");
            }
        }
        assert!(!is_compact_jws("abc\u{e9}"));
    }
}
