//! JWK parsing: a JWKS document → the [`VerifyingKey`]s it offers for signatures.
//!
//! Stage: after `fetch` (or a key file) has produced the document, before `material` checks
//! each key itself. Inputs: the JSON document, where it came from (for messages and logs), and
//! the issuer whose discovery found it, if any. Output: the usable keys, tagged with that
//! issuer.
//!
//! Invariants: a JWK is used only to verify signatures (`use` is `sig` or absent, `key_ops`
//! includes `verify` when present), only with a supported `kty` and `crv`, and only for the
//! `alg` it names, if it names one. Private and symmetric keys never are: whoever can verify
//! with a symmetric key can mint tokens, and a published private key is logged as compromised.
//! Each key is judged alone, so a bad key is skipped and logged without spoiling the set, but a
//! document with no usable key is an error.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

use super::material::{verifying_key, Curve, Material};
use super::{JwksError, VerifyingKey};
use crate::token::shown;

/// The usable keys of a JWKS document; unusable ones are logged and skipped.
pub(super) fn keys_from_jwks(
    doc: &Value,
    origin: &str,
    issuer: Option<&str>,
) -> Result<Vec<Arc<VerifyingKey>>, JwksError> {
    let jwks = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| JwksError::Invalid {
            origin: origin.to_owned(),
            reason: "it is not an object with a `keys` array".to_owned(),
        })?;
    let mut keys: Vec<Arc<VerifyingKey>> = Vec::new();
    let mut skipped = Vec::new();
    for jwk in jwks {
        let kid = jwk
            .get("kid")
            .and_then(Value::as_str)
            .map_or_else(|| "-".to_owned(), shown);
        match key_from_jwk(jwk, issuer) {
            Ok(key) => {
                if keys.iter().any(|k| k.kid.is_some() && k.kid == key.kid) {
                    tracing::warn!(
                        source = origin,
                        kid,
                        "two keys share a kid; both will be tried"
                    );
                }
                keys.push(Arc::new(key));
            }
            Err(Skip::Private) => {
                // Not just unusable: whoever publishes a private key has leaked it.
                tracing::error!(
                    source = origin,
                    kid,
                    "the JWKS publishes private key material; the key is skipped and must be considered compromised"
                );
                skipped.push(format!("`{kid}`: {}", Skip::Private));
            }
            Err(skip) => {
                tracing::warn!(source = origin, kid, reason = %skip, "skipping a key that cannot verify tokens");
                skipped.push(format!("`{kid}`: {skip}"));
            }
        }
    }
    if keys.is_empty() {
        let reason = if skipped.is_empty() {
            "the `keys` array is empty".to_owned()
        } else {
            skipped.into_iter().take(3).collect::<Vec<_>>().join("; ")
        };
        return Err(JwksError::NoUsableKey {
            origin: origin.to_owned(),
            reason,
        });
    }
    Ok(keys)
}

/// Why a JWK is not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Skip {
    #[error("it contains private key material")]
    Private,
    #[error("{0}")]
    Unusable(String),
}

impl From<String> for Skip {
    fn from(reason: String) -> Self {
        Self::Unusable(reason)
    }
}

impl From<&str> for Skip {
    fn from(reason: &str) -> Self {
        Self::Unusable(reason.to_owned())
    }
}

fn key_from_jwk(jwk: &Value, issuer: Option<&str>) -> Result<VerifyingKey, Skip> {
    let jwk = jwk.as_object().ok_or("it is not a JSON object")?;
    // RFC 7518 §6.2.2 and §6.3.2: these members exist only in private keys (`k` is handled
    // below with the other symmetric-key reasons).
    if ["d", "p", "q", "dp", "dq", "qi", "oth"]
        .iter()
        .any(|m| jwk.contains_key(*m))
    {
        return Err(Skip::Private);
    }
    let kid = match jwk.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err("`kid` is not a string".into()),
    };
    // RFC 7517 §4.2–4.3: a key published for encryption must not verify signatures.
    match jwk.get("use") {
        None => {}
        Some(Value::String(u)) if u == "sig" => {}
        Some(Value::String(u)) => return Err(format!("`use` is `{}`, not `sig`", shown(u)).into()),
        Some(_) => return Err("`use` is not a string".into()),
    }
    if let Some(ops) = jwk.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` is not an array")?;
        if !ops.iter().any(|op| op.as_str() == Some("verify")) {
            return Err("`key_ops` does not include `verify`".into());
        }
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(Value::String(alg)) => Some(alg.as_str()),
        Some(_) => return Err("`alg` is not a string".into()),
    };
    let material = match str_member(jwk, "kty")? {
        "RSA" => Material::Rsa {
            n: b64_member(jwk, "n")?,
            e: b64_member(jwk, "e")?,
        },
        "EC" => {
            let curve = match str_member(jwk, "crv")? {
                "P-256" => Curve::P256,
                "P-384" => Curve::P384,
                other => return Err(format!("curve `{}` is not supported", shown(other)).into()),
            };
            let (x, y) = (b64_member(jwk, "x")?, b64_member(jwk, "y")?);
            // Fixed-size coordinates (RFC 7518 §6.2.1.2): a P-256 point with 48-byte
            // coordinates is a mislabeled key, not a P-384 one.
            if x.len() != curve.coordinate_len() || y.len() != curve.coordinate_len() {
                return Err(format!(
                    "the coordinates are not {} bytes long",
                    curve.coordinate_len()
                )
                .into());
            }
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Material::Ec { curve, point }
        }
        "OKP" => match str_member(jwk, "crv")? {
            "Ed25519" => Material::Ed25519 {
                x: b64_member(jwk, "x")?,
            },
            other => return Err(format!("curve `{}` is not supported", shown(other)).into()),
        },
        "oct" => {
            return Err(
                "it is a symmetric (`oct`) key: whoever can verify with it can also mint tokens"
                    .into(),
            )
        }
        other => return Err(format!("key type `{}` is not supported", shown(other)).into()),
    };
    verifying_key(material, alg, kid, issuer).map_err(Skip::Unusable)
}

fn str_member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{name}` is missing or not a string"))
}

fn b64_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(str_member(jwk, name)?)
        .map_err(|_| format!("`{name}` is not base64url"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    use super::*;
    use crate::jwks::material::RSA_ALGORITHMS;
    use crate::jwks::test_support::*;

    fn one_key(jwk: Value) -> Result<VerifyingKey, Skip> {
        key_from_jwk(&jwk, None)
    }

    fn skipped(jwk: Value) -> String {
        match one_key(jwk) {
            Ok(key) => panic!("key was accepted: {key:?}"),
            Err(skip) => skip.to_string(),
        }
    }

    #[test]
    fn key_algorithms_follow_type_and_pinned_alg() {
        let rsa = rsa();
        assert_eq!(
            one_key(rsa.public.clone()).unwrap().algorithms(),
            RSA_ALGORITHMS
        );
        assert_eq!(
            one_key(jwk(rsa, json!({"alg": "PS384"})))
                .unwrap()
                .algorithms(),
            [Algorithm::PS384]
        );
        assert_eq!(
            one_key(ec(Algorithm::ES256).public).unwrap().algorithms(),
            [Algorithm::ES256]
        );
        assert_eq!(
            one_key(ec(Algorithm::ES384).public).unwrap().algorithms(),
            [Algorithm::ES384]
        );
        assert_eq!(
            one_key(ed25519().public).unwrap().algorithms(),
            [Algorithm::EdDSA]
        );
        let key = one_key(jwk(
            rsa,
            json!({"kid": "k1", "use": "sig", "key_ops": ["verify"]}),
        ))
        .unwrap();
        assert_eq!(key.kid(), Some("k1"));
    }

    #[test]
    fn keys_for_other_uses_are_skipped() {
        let rsa = rsa();
        assert!(skipped(jwk(rsa, json!({"use": "enc"}))).contains("`use`"));
        assert!(skipped(jwk(rsa, json!({"use": 1}))).contains("`use`"));
        assert!(skipped(jwk(rsa, json!({"key_ops": ["encrypt"]}))).contains("key_ops"));
        assert!(skipped(jwk(rsa, json!({"key_ops": []}))).contains("key_ops"));
        assert!(skipped(jwk(rsa, json!({"key_ops": "verify"}))).contains("key_ops"));
    }

    #[test]
    fn alg_must_match_kty_and_curve() {
        let rsa = rsa();
        let p256 = ec(Algorithm::ES256);
        for (jwk, what) in [
            (jwk(rsa, json!({"alg": "ES256"})), "RSA key pinned to ES256"),
            (jwk(rsa, json!({"alg": "RSA-OAEP"})), "RSA encryption alg"),
            (jwk(rsa, json!({"alg": "HS256"})), "RSA key pinned to HS256"),
            (
                jwk(&p256, json!({"alg": "ES384"})),
                "P-256 key pinned to ES384",
            ),
            (jwk(&p256, json!({"alg": "ES521"})), "unknown alg"),
            (
                jwk(&p256, json!({"alg": "RS256"})),
                "EC key pinned to RS256",
            ),
            (
                jwk(&ed25519(), json!({"alg": "ES256"})),
                "OKP key pinned to ES256",
            ),
            (
                jwk(&p256, json!({"crv": "P-384"})),
                "P-256 coordinates labeled P-384",
            ),
            (jwk(&p256, json!({"kty": "RSA"})), "EC members labeled RSA"),
        ] {
            assert!(one_key(jwk).is_err(), "{what} was accepted");
        }
    }

    #[test]
    fn weak_or_broken_rsa_keys_are_skipped() {
        let rsa = rsa();
        let n = URL_SAFE_NO_PAD
            .decode(rsa.public["n"].as_str().unwrap())
            .unwrap();
        let short = URL_SAFE_NO_PAD.encode(&n[..128]); // 1024 bits
        assert!(skipped(jwk(rsa, json!({"n": short}))).contains("1024 bits"));
        assert!(skipped(jwk(rsa, json!({"e": "AQ"}))).contains("exponent 1"));
        assert!(skipped(jwk(rsa, json!({"e": "Ag"}))).contains("exponent 2"));
        let mut even = n.clone();
        *even.last_mut().unwrap() &= 0xfe;
        assert!(skipped(jwk(rsa, json!({"n": URL_SAFE_NO_PAD.encode(&even)}))).contains("even"));
        // A leading zero octet (seen in real JWKS) is tolerated, and does not count as a bit.
        let padded = [&[0u8][..], &n].concat();
        assert!(one_key(jwk(rsa, json!({"n": URL_SAFE_NO_PAD.encode(&padded)}))).is_ok());
    }

    #[test]
    fn symmetric_private_and_unsupported_keys_are_skipped() {
        assert!(
            skipped(json!({"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"})).contains("symmetric")
        );
        let mut private = rsa().public.clone();
        private["d"] = json!("AQAB");
        assert!(matches!(one_key(private), Err(Skip::Private)));
        let mut private = ec(Algorithm::ES256).public;
        private["d"] = json!("AQAB");
        assert!(matches!(one_key(private), Err(Skip::Private)));
        assert!(
            skipped(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})).contains("P-521")
        );
        assert!(
            skipped(json!({"kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"}))
                .contains("secp256k1")
        );
        assert!(skipped(json!({"kty": "OKP", "crv": "Ed448", "x": "AA"})).contains("Ed448"));
        assert!(skipped(json!({"kty": "OKP", "crv": "X25519", "x": "AA"})).contains("X25519"));
        assert!(skipped(json!({"kty": "DSA"})).contains("DSA"));
        assert!(skipped(json!("RSA")).contains("object"));
    }

    #[test]
    fn off_curve_points_are_skipped() {
        let mut key = ec(Algorithm::ES256).public;
        let mut y = URL_SAFE_NO_PAD.decode(key["y"].as_str().unwrap()).unwrap();
        y[31] ^= 1;
        key["y"] = json!(URL_SAFE_NO_PAD.encode(&y));
        assert!(skipped(key).contains("not on the curve"));
    }
}
