//! Bearer token → [`UnverifiedJwt`] (interim minimal version).

use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
}

#[derive(Debug, Clone)]
pub struct UnverifiedJwt {
    raw: String,
    alg: Algorithm,
    kid: Option<String>,
}

impl UnverifiedJwt {
    pub fn parse(authorization: &str, max_bytes: usize) -> Result<Self, TokenError> {
        if authorization.len() > max_bytes {
            return Err(TokenError::Malformed("too long".into()));
        }
        let t = authorization.trim();
        let t = match t.split_once(' ') {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
            _ => t,
        };
        let header =
            jsonwebtoken::decode_header(t).map_err(|e| TokenError::Malformed(e.to_string()))?;
        Ok(Self {
            raw: t.to_owned(),
            alg: header.alg,
            kid: header.kid,
        })
    }
    pub fn alg(&self) -> Algorithm {
        self.alg
    }
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
    pub fn as_str(&self) -> &str {
        &self.raw
    }
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(self.raw.as_bytes()))
            .chars()
            .take(12)
            .collect()
    }
}
