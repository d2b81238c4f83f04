//! [`UnverifiedJwt`] + keys → [`VerifiedClaims`] (interim minimal version).

use std::sync::Arc;

use jsonwebtoken::Validation;
use serde_json::{Map, Value};

use crate::config::JwtConfig;
use crate::jwks::KeyStore;
use crate::token::UnverifiedJwt;

#[derive(Debug, thiserror::Error)]
pub enum ClaimsError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    claims: Map<String, Value>,
    sub: String,
    iss: String,
    exp: u64,
}

impl VerifiedClaims {
    pub fn sub(&self) -> &str {
        &self.sub
    }
    pub fn issuer(&self) -> &str {
        &self.iss
    }
    pub fn expires_at(&self) -> u64 {
        self.exp
    }
    pub fn get(&self, claim: &str) -> Option<&Value> {
        self.claims.get(claim)
    }
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.claims
    }
    pub fn from_trusted_json(claims: Value) -> Result<Self, ClaimsError> {
        let Value::Object(claims) = claims else {
            return Err(ClaimsError::Invalid("not an object".into()));
        };
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or_else(|| ClaimsError::Invalid("no sub".into()))?
            .to_owned();
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let exp = claims
            .get("exp")
            .and_then(Value::as_u64)
            .unwrap_or(u64::MAX);
        Ok(Self {
            claims,
            sub,
            iss,
            exp,
        })
    }
}

#[derive(Debug)]
pub struct Verifier {
    keys: Arc<KeyStore>,
    validation: Validation,
}

impl Verifier {
    pub fn new(cfg: &JwtConfig, keys: Arc<KeyStore>) -> Self {
        let mut validation = Validation::new(
            cfg.algorithms
                .first()
                .copied()
                .unwrap_or(jsonwebtoken::Algorithm::RS256),
        );
        validation.algorithms = cfg.algorithms.clone();
        validation.set_issuer(&cfg.issuers);
        validation.set_audience(&cfg.audiences);
        validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        Self { keys, validation }
    }
    pub async fn verify(&self, token: &UnverifiedJwt) -> Result<VerifiedClaims, ClaimsError> {
        let key = self
            .keys
            .key_for(token.alg(), token.kid())
            .await
            .map_err(|e| ClaimsError::Invalid(e.to_string()))?;
        let data = jsonwebtoken::decode::<Value>(token.as_str(), &key.key, &self.validation)
            .map_err(|e| ClaimsError::Invalid(e.to_string()))?;
        VerifiedClaims::from_trusted_json(data.claims)
    }
}
