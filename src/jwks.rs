//! Verification keys (interim minimal version: JWKS file only).

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};

use crate::config::JwtConfig;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("{0}")]
    Keys(String),
}

#[derive(Debug)]
pub struct VerifyingKey {
    pub(crate) kid: Option<String>,
    pub(crate) key: DecodingKey,
}

#[derive(Debug, Default)]
pub struct KeyStore {
    keys: Vec<Arc<VerifyingKey>>,
}

impl KeyStore {
    pub async fn new(cfg: &JwtConfig) -> Result<Self, JwksError> {
        match &cfg.jwks_file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| JwksError::Keys(e.to_string()))?;
                Self::from_jwks_json(&text)
            }
            None => Ok(Self::default()),
        }
    }
    pub fn from_jwks_json(json: &str) -> Result<Self, JwksError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| JwksError::Keys(e.to_string()))?;
        let keys = set
            .keys
            .iter()
            .filter_map(|k| {
                DecodingKey::from_jwk(k).ok().map(|d| {
                    Arc::new(VerifyingKey {
                        kid: k.common.key_id.clone(),
                        key: d,
                    })
                })
            })
            .collect();
        Ok(Self { keys })
    }
    pub async fn key_for(
        &self,
        _alg: Algorithm,
        kid: Option<&str>,
    ) -> Result<Arc<VerifyingKey>, JwksError> {
        self.keys
            .iter()
            .find(|k| kid.is_none() || k.kid.as_deref() == kid)
            .cloned()
            .ok_or_else(|| JwksError::Keys("unknown kid".into()))
    }
}
