//! [`UnverifiedJwt`] + keys → [`VerifiedClaims`].
//!
//! Stage: after `token` and `jwks`, before the Cedar entities are built. Input: a structurally
//! sound token and the key store. Output: the claims of a token whose signature verified with a
//! configured key and whose registered claims passed every check below; or a [`ClaimsError`]
//! that says which check failed (the handler turns every one into `Unauthorized`).
//!
//! Order matters: the `alg` allow-list is applied before any key is looked up (a refused
//! algorithm cannot trigger a JWKS fetch), and the signature is checked before any claim is
//! read. The signature is verified once, by jsonwebtoken's `crypto::verify` on the aws-lc-rs
//! backend, with the key the key store picked for the token's `alg` and `kid`; the claim
//! checks are this module's, stricter than jsonwebtoken's `Validation` on every claim it
//! covers (`iss` a string, not an array; `sub` non-empty; `iat` not in the future; fractional
//! dates rounded against the token), so running that as well would only verify the signature
//! a second time.
//!
//! Invariants: a [`VerifiedClaims`] has a non-empty string `sub`, a string `iss` equal to a
//! configured issuer, and an `exp` that had not passed (within the leeway) at verification time.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::JwtConfig;
use crate::jwks::{JwksError, KeyStore, VerifyingKey};
use crate::token::{alg_name, parse_object, shown, JsonObject, ObjectError, UnverifiedJwt};

/// Why a token's claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error(transparent)]
    Key(#[from] JwksError),
    #[error("algorithm `{0}` is not allowed by `CEDARGATE_ALGORITHMS`")]
    AlgorithmNotAllowed(&'static str),
    #[error("the signature does not verify with any of {tried} candidate key(s)")]
    BadSignature { tried: usize },
    #[error("the payload is invalid: {0}")]
    Payload(ObjectError),
    #[error("claim `{0}` is required")]
    Missing(&'static str),
    #[error("claim `{claim}` is invalid: {reason}")]
    Invalid {
        claim: &'static str,
        reason: &'static str,
    },
    #[error("the token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired { exp: u64, now: u64, leeway: u64 },
    #[error("the token is not valid before {nbf} (now {now}, leeway {leeway}s)")]
    NotYetValid { nbf: u64, now: u64, leeway: u64 },
    #[error("the token was issued in the future, at {iat} (now {now}, leeway {leeway}s)")]
    IssuedInFuture { iat: u64, now: u64, leeway: u64 },
    #[error("issuer `{0}` is not accepted")]
    Issuer(String),
    #[error("the key that verified the token belongs to issuer `{key_issuer}`, but the token names `{token_issuer}`")]
    KeyOfOtherIssuer {
        key_issuer: String,
        token_issuer: String,
    },
    #[error("no audience of the token is accepted (first: `{0}`)")]
    Audience(String),
}

/// Claims of a token that passed every check, or claims given by a trusted caller
/// ([`VerifiedClaims::from_trusted_json`]). Private fields: this type is the proof.
#[derive(Debug, Clone)]
pub struct VerifiedClaims {
    claims: JsonObject,
    sub: String,
    iss: String,
    exp: u64,
}

impl VerifiedClaims {
    pub fn sub(&self) -> &str {
        &self.sub
    }

    /// The `iss` claim; empty for trusted claims that name none.
    pub fn issuer(&self) -> &str {
        &self.iss
    }

    /// The `exp` claim (unix seconds); `u64::MAX` for trusted claims that name none.
    pub fn expires_at(&self) -> u64 {
        self.exp
    }

    /// A claim by its exact name, namespaced URL claims (`https://example.com/roles`) included.
    pub fn get(&self, claim: &str) -> Option<&Value> {
        self.claims.get(claim)
    }

    pub fn as_map(&self) -> &JsonObject {
        &self.claims
    }

    /// Claims that did not come from a token: policy tests and `explain --claims`. Never used
    /// on the request path. Requires an object with a non-empty string `sub`; `iss` and `exp`,
    /// when present, must be a string and a number.
    pub fn from_trusted_json(claims: Value) -> Result<Self, ClaimsError> {
        let Value::Object(claims) = claims else {
            return Err(ClaimsError::Payload(ObjectError::NotObject));
        };
        let claims: JsonObject = claims.into_iter().collect();
        let sub = subject(&claims)?;
        let iss = match claims.get("iss") {
            None => String::new(),
            Some(Value::String(iss)) => iss.clone(),
            Some(_) => {
                return Err(ClaimsError::Invalid {
                    claim: "iss",
                    reason: "it is not a string",
                })
            }
        };
        let exp = match claims.get("exp") {
            None => u64::MAX,
            Some(value) => numeric_date("exp", value, Rounding::Down)?,
        };
        Ok(Self {
            claims,
            sub,
            iss,
            exp,
        })
    }
}

/// Verifies tokens against the configured issuers, audiences, algorithms and keys.
#[derive(Debug)]
pub struct Verifier {
    keys: Arc<KeyStore>,
    issuers: Vec<String>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl Verifier {
    pub fn new(cfg: &JwtConfig, keys: Arc<KeyStore>) -> Self {
        Self {
            keys,
            issuers: cfg.issuers.clone(),
            audiences: cfg.audiences.clone(),
            algorithms: cfg.algorithms.clone(),
            leeway: cfg.leeway.as_secs(),
        }
    }

    pub async fn verify(&self, token: &UnverifiedJwt) -> Result<VerifiedClaims, ClaimsError> {
        // A clock before 1970 is treated as 1970: every real token is then "issued in the
        // future" or fine, never wrongly unexpired by an underflow.
        let now = crate::time::unix_now();
        self.verify_at(token, now).await
    }

    /// The same checks at a given time (unix seconds): every check of this module takes "now"
    /// from here, so tests can fix the clock.
    pub async fn verify_at(
        &self,
        token: &UnverifiedJwt,
        now: u64,
    ) -> Result<VerifiedClaims, ClaimsError> {
        self.check(token, now).await
    }

    async fn check(&self, token: &UnverifiedJwt, now: u64) -> Result<VerifiedClaims, ClaimsError> {
        // Before any key lookup: an algorithm the operator did not allow must not even cause a
        // JWKS fetch.
        if !self.algorithms.contains(&token.alg()) {
            return Err(ClaimsError::AlgorithmNotAllowed(alg_name(token.alg())));
        }
        let key = verify_signature(&self.keys, token).await?;

        // The signature holds, so the payload is the issuer's: now it may be read.
        let claims = parse_object(token.payload()).map_err(ClaimsError::Payload)?;

        let iss = self.issuer(&claims)?;
        // A key found through one issuer's discovery vouches only for that issuer: otherwise any
        // configured issuer could mint tokens in another's name.
        if let Some(key_issuer) = key.issuer() {
            if key_issuer != iss {
                return Err(ClaimsError::KeyOfOtherIssuer {
                    key_issuer: shown(key_issuer),
                    token_issuer: shown(&iss),
                });
            }
        }
        let sub = subject(&claims)?;
        let exp = self.times(&claims, now)?;
        self.audience(&claims)?;

        Ok(VerifiedClaims {
            claims,
            sub,
            iss,
            exp,
        })
    }

    /// `iss` must be one string equal to a configured issuer. jsonwebtoken accepts an array
    /// that merely contains one; an issuer is a single identity (RFC 7519 §4.1.1).
    fn issuer(&self, claims: &JsonObject) -> Result<String, ClaimsError> {
        match claims.get("iss") {
            None => Err(ClaimsError::Missing("iss")),
            Some(Value::String(iss)) if self.issuers.iter().any(|i| i == iss) => Ok(iss.clone()),
            Some(Value::String(iss)) => Err(ClaimsError::Issuer(shown(iss))),
            Some(_) => Err(ClaimsError::Invalid {
                claim: "iss",
                reason: "it is not a string",
            }),
        }
    }

    /// `exp` required and not passed; `nbf` and `iat`, when present, not in the future. The
    /// leeway absorbs clock skew between the issuer and us, in both directions. Returns `exp`.
    fn times(&self, claims: &JsonObject, now: u64) -> Result<u64, ClaimsError> {
        let leeway = self.leeway;
        // Fractional dates are rounded against the token: an earlier expiry, a later start.
        let exp = match claims.get("exp") {
            None => return Err(ClaimsError::Missing("exp")),
            Some(value) => numeric_date("exp", value, Rounding::Down)?,
        };
        if now >= exp.saturating_add(leeway) {
            return Err(ClaimsError::Expired { exp, now, leeway });
        }
        if let Some(value) = claims.get("nbf") {
            let nbf = numeric_date("nbf", value, Rounding::Up)?;
            if nbf > now.saturating_add(leeway) {
                return Err(ClaimsError::NotYetValid { nbf, now, leeway });
            }
        }
        // A token "issued" later than now was minted with a wrong clock or for later replay;
        // either way it is not what the issuer meant to hand out now.
        if let Some(value) = claims.get("iat") {
            let iat = numeric_date("iat", value, Rounding::Up)?;
            if iat > now.saturating_add(leeway) {
                return Err(ClaimsError::IssuedInFuture { iat, now, leeway });
            }
        }
        Ok(exp)
    }

    /// `aud` is required (a token for some other API must not be accepted here) and may be a
    /// string or an array of strings (Auth0 sends an array when the userinfo audience is
    /// included); one of them must be configured.
    fn audience(&self, claims: &JsonObject) -> Result<(), ClaimsError> {
        let invalid = ClaimsError::Invalid {
            claim: "aud",
            reason: "it is not a string or an array of strings",
        };
        let audiences: Vec<&str> = match claims.get("aud") {
            None => return Err(ClaimsError::Missing("aud")),
            Some(Value::String(aud)) => vec![aud.as_str()],
            Some(Value::Array(items)) => items
                .iter()
                .map(Value::as_str)
                .collect::<Option<Vec<&str>>>()
                .ok_or(invalid)?,
            Some(_) => return Err(invalid),
        };
        if audiences
            .iter()
            .any(|aud| self.audiences.iter().any(|a| a == aud))
        {
            return Ok(());
        }
        Err(ClaimsError::Audience(
            audiences.first().map_or_else(String::new, |a| shown(a)),
        ))
    }
}

/// The signature check of the key layer: the first candidate key for the token's `alg` and
/// `kid` that verifies its signature. [`Verifier`] runs it before reading any claim, and the
/// Wycheproof vectors (`tests/jwt_wycheproof.rs`) run it on raw JWS payloads.
#[doc(hidden)]
pub async fn verify_signature(
    keys: &KeyStore,
    token: &UnverifiedJwt,
) -> Result<Arc<VerifyingKey>, ClaimsError> {
    let candidates = keys.keys_for(token.alg(), token.kid()).await?;
    let tried = candidates.len();
    candidates
        .into_iter()
        .find(|key| key.verifies(token))
        .ok_or(ClaimsError::BadSignature { tried })
}

fn subject(claims: &JsonObject) -> Result<String, ClaimsError> {
    // `sub` is who the policies talk about; an empty one would be an anonymous principal.
    match claims.get("sub") {
        None => Err(ClaimsError::Missing("sub")),
        Some(Value::String(sub)) if !sub.is_empty() => Ok(sub.clone()),
        Some(Value::String(_)) => Err(ClaimsError::Invalid {
            claim: "sub",
            reason: "it is empty",
        }),
        Some(_) => Err(ClaimsError::Invalid {
            claim: "sub",
            reason: "it is not a string",
        }),
    }
}

#[derive(Debug, Clone, Copy)]
enum Rounding {
    Down,
    Up,
}

/// A NumericDate (RFC 7519 §2): a non-negative JSON number of seconds, possibly fractional.
fn numeric_date(
    claim: &'static str,
    value: &Value,
    rounding: Rounding,
) -> Result<u64, ClaimsError> {
    let invalid = ClaimsError::Invalid {
        claim,
        reason: "it is not a non-negative number of seconds",
    };
    let Value::Number(number) = value else {
        return Err(invalid);
    };
    if let Some(seconds) = number.as_u64() {
        return Ok(seconds);
    }
    match number.as_f64() {
        Some(f) if f.is_finite() && f >= 0.0 && f < u64::MAX as f64 => Ok(match rounding {
            Rounding::Down => f.floor() as u64,
            Rounding::Up => f.ceil() as u64,
        }),
        _ => Err(invalid),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::jwks::test_support::*;

    const ISS: &str = "https://tenant.auth0.example/";
    const AUD: &str = "https://api.example";
    const NOW: u64 = 1_750_000_000;

    fn cfg(algorithms: &str) -> JwtConfig {
        let env: BTreeMap<&str, &str> = [
            ("CEDARGATE_ISSUER", ISS),
            ("CEDARGATE_AUDIENCE", "other-api, https://api.example"),
            ("CEDARGATE_ALGORITHMS", algorithms),
            ("CEDARGATE_CLOCK_SKEW_SECONDS", "5"),
            ("CEDARGATE_JWKS_FILE", "/unused"),
        ]
        .into_iter()
        .collect();
        JwtConfig::from_env(&env).unwrap()
    }

    fn claims() -> Value {
        json!({
            "iss": ISS,
            "sub": "auth0|alice",
            "aud": [AUD, "https://tenant.auth0.example/userinfo"],
            "iat": NOW - 10,
            "nbf": NOW - 10,
            "exp": NOW + 3600,
            "scope": "openid read:pets write:pets",
            "permissions": ["read:pets", "write:pets"],
            "https://cedargate.example/roles": ["admin", "vet"],
        })
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    struct Setup {
        verifier: Verifier,
    }

    impl Setup {
        fn new(algorithms: &str, jwks_keys: &[Value]) -> Self {
            let keys = Arc::new(KeyStore::from_jwks_json(&jwks(jwks_keys)).unwrap());
            Self {
                verifier: Verifier::new(&cfg(algorithms), keys),
            }
        }

        async fn check(&self, token: &str) -> Result<VerifiedClaims, String> {
            let jwt = UnverifiedJwt::parse(&format!("Bearer {token}"), 16 * 1024)
                .map_err(|e| e.to_string())?;
            self.verifier
                .verify_at(&jwt, NOW)
                .await
                .map_err(|e| e.to_string())
        }
    }

    fn rsa_setup() -> Setup {
        Setup::new(
            "RS256,PS256",
            &[jwk(rsa(), json!({"kid": "rsa-1", "use": "sig"}))],
        )
    }

    #[tokio::test]
    async fn good_tokens_pass_for_each_algorithm_family() {
        let p256 = ec(Algorithm::ES256);
        let ed = ed25519();
        let setup = Setup::new(
            "RS256,PS256,ES256,EdDSA",
            &[
                jwk(rsa(), json!({"kid": "rsa"})),
                jwk(&p256, json!({"kid": "ec", "alg": "ES256"})),
                jwk(&ed, json!({"kid": "ed"})),
            ],
        );
        for (key, alg, kid) in [
            (rsa(), Algorithm::RS256, "rsa"),
            (rsa(), Algorithm::PS256, "rsa"),
            (&p256, Algorithm::ES256, "ec"),
            (&ed, Algorithm::EdDSA, "ed"),
        ] {
            let token = mint(key, alg, Some(kid), &claims());
            let verified = setup
                .check(&token)
                .await
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(verified.sub(), "auth0|alice");
            assert_eq!(verified.issuer(), ISS);
            assert_eq!(verified.expires_at(), NOW + 3600);
        }
    }

    #[tokio::test]
    async fn auth0_shaped_claims_are_kept_as_sent() {
        let setup = rsa_setup();
        let verified = setup
            .check(&mint(rsa(), Algorithm::RS256, Some("rsa-1"), &claims()))
            .await
            .unwrap();
        assert_eq!(
            verified.get("scope"),
            Some(&json!("openid read:pets write:pets"))
        );
        assert_eq!(
            verified.get("permissions"),
            Some(&json!(["read:pets", "write:pets"]))
        );
        assert_eq!(
            verified.get("https://cedargate.example/roles"),
            Some(&json!(["admin", "vet"]))
        );
        assert_eq!(verified.as_map().len(), claims().as_object().unwrap().len());
        // A single-string audience is fine too.
        let token = mint(
            rsa(),
            Algorithm::RS256,
            Some("rsa-1"),
            &with(json!({"aud": AUD})),
        );
        assert!(setup.check(&token).await.is_ok());
    }

    #[tokio::test]
    async fn time_claims() {
        let setup = rsa_setup();
        let mint = |c: Value| mint(rsa(), Algorithm::RS256, Some("rsa-1"), &c);
        for (claims, want) in [
            (with(json!({"exp": NOW - 6})), "expired"),
            (with(json!({"exp": NOW - 5})), "expired"),
            (with(json!({"exp": null})), "claim `exp` is required"),
            (with(json!({"exp": "soon"})), "claim `exp` is invalid"),
            (with(json!({"exp": -1})), "claim `exp` is invalid"),
            (with(json!({"nbf": NOW + 6})), "not valid before"),
            (with(json!({"nbf": "now"})), "claim `nbf` is invalid"),
            (with(json!({"iat": NOW + 6})), "issued in the future"),
            (with(json!({"iat": [NOW]})), "claim `iat` is invalid"),
        ] {
            let err = setup.check(&mint(claims)).await.unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        // Inside the leeway, and fractional dates.
        for claims in [
            with(json!({"exp": NOW - 4})),
            with(json!({"nbf": NOW + 5, "iat": NOW + 5})),
            with(json!({"exp": (NOW + 60) as f64 + 0.5, "iat": (NOW - 1) as f64 + 0.25})),
            with(json!({"nbf": null, "iat": null})),
        ] {
            assert!(setup.check(&mint(claims.clone())).await.is_ok(), "{claims}");
        }
    }

    #[tokio::test]
    async fn issuer_audience_and_subject() {
        let setup = rsa_setup();
        let mint = |c: Value| mint(rsa(), Algorithm::RS256, Some("rsa-1"), &c);
        for (claims, want) in [
            (
                with(json!({"iss": "https://tenant.auth0.example"})),
                "issuer `https://tenant.auth0.example` is not accepted",
            ),
            (with(json!({"iss": [ISS]})), "claim `iss` is invalid"),
            (
                with(json!({"iss": [ISS, "https://evil.example/"]})),
                "claim `iss` is invalid",
            ),
            (with(json!({"iss": null})), "claim `iss` is required"),
            (with(json!({"aud": "https://evil.example"})), "no audience"),
            (with(json!({"aud": []})), "no audience"),
            (with(json!({"aud": [1]})), "claim `aud` is invalid"),
            (with(json!({"aud": null})), "claim `aud` is required"),
            (with(json!({"sub": null})), "claim `sub` is required"),
            (with(json!({"sub": ""})), "claim `sub` is invalid"),
            (with(json!({"sub": 42})), "claim `sub` is invalid"),
        ] {
            let err = setup.check(&mint(claims)).await.unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[tokio::test]
    async fn header_attacks() {
        let setup = rsa_setup();
        let rs =
            |header: Header| jsonwebtoken::encode(&header, &claims(), &rsa().encoding).unwrap();
        // alg none: header + payload + empty signature.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert!(setup.check(&none).await.unwrap_err().contains("none"));
        // HS256 keyed with the RSA public key: the classic confusion attack.
        let public_pem = pem("PUBLIC KEY", &rsa().spki);
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("rsa-1".into());
        let forged = jsonwebtoken::encode(
            &hs,
            &claims(),
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap();
        assert!(setup
            .check(&forged)
            .await
            .unwrap_err()
            .contains("shared-secret"));
        // crit, bad typ, unknown kid, algorithm not allowed by configuration.
        let mut crit = Header::new(Algorithm::RS256);
        crit.kid = Some("rsa-1".into());
        crit.crit = Some(vec!["exp".into()]);
        assert!(setup.check(&rs(crit)).await.unwrap_err().contains("crit"));
        let mut dpop = Header::new(Algorithm::RS256);
        dpop.kid = Some("rsa-1".into());
        dpop.typ = Some("dpop+jwt".into());
        assert!(setup
            .check(&rs(dpop))
            .await
            .unwrap_err()
            .contains("token type"));
        let mut unknown = Header::new(Algorithm::RS256);
        unknown.kid = Some("rsa-2".into());
        assert!(setup
            .check(&rs(unknown))
            .await
            .unwrap_err()
            .contains("no key has kid `rsa-2`"));
        let mut ps512 = Header::new(Algorithm::PS512);
        ps512.kid = Some("rsa-1".into());
        assert!(setup
            .check(&rs(ps512))
            .await
            .unwrap_err()
            .contains("not allowed by `CEDARGATE_ALGORITHMS`"));
    }

    #[tokio::test]
    async fn wrong_key_and_tampering() {
        let setup = rsa_setup();
        // Same kid, someone else's key.
        let forged = mint(rsa_other(), Algorithm::RS256, Some("rsa-1"), &claims());
        assert!(setup
            .check(&forged)
            .await
            .unwrap_err()
            .contains("signature does not verify"));
        // Payload swapped under a valid signature.
        let good = mint(rsa(), Algorithm::RS256, Some("rsa-1"), &claims());
        let (head, rest) = good.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let evil = URL_SAFE_NO_PAD.encode(with(json!({"sub": "auth0|mallory"})).to_string());
        assert!(setup
            .check(&format!("{head}.{evil}.{sig}"))
            .await
            .unwrap_err()
            .contains("signature"));
        // Bad base64 anywhere.
        assert!(setup
            .check(&format!("{head}.{rest}="))
            .await
            .unwrap_err()
            .contains("not a compact JWS"));
        assert!(setup
            .check(&good.replacen('.', ".*", 1))
            .await
            .unwrap_err()
            .contains("not a compact JWS"));
    }

    #[tokio::test]
    async fn oversize_and_non_object_payloads() {
        let setup = rsa_setup();
        let big = mint(
            rsa(),
            Algorithm::RS256,
            Some("rsa-1"),
            &with(json!({"pad": "x".repeat(20_000)})),
        );
        assert!(setup
            .check(&big)
            .await
            .unwrap_err()
            .contains("more than the limit"));
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("rsa-1".into());
        for payload in [json!(["not", "an", "object"]), json!("sub"), json!(42)] {
            let token = jsonwebtoken::encode(&header, &payload, &rsa().encoding).unwrap();
            let err = setup.check(&token).await.unwrap_err();
            assert!(err.contains("not a JSON object"), "{err}");
        }
        // Duplicate claims under a valid signature: refused rather than guessed.
        let body = format!(
            r#"{{"iss":"{ISS}","sub":"auth0|alice","sub":"auth0|admin","aud":"{AUD}","exp":{}}}"#,
            NOW + 60
        );
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"rsa-1"}"#),
            URL_SAFE_NO_PAD.encode(body)
        );
        let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &rsa().encoding, Algorithm::RS256)
            .unwrap();
        let err = setup.check(&format!("{input}.{sig}")).await.unwrap_err();
        assert!(err.contains("appears twice"), "{err}");
    }

    #[tokio::test]
    async fn errors_never_contain_the_token() {
        let setup = rsa_setup();
        let token = mint(
            rsa(),
            Algorithm::RS256,
            Some("rsa-1"),
            &with(json!({"exp": NOW - 100})),
        );
        let err = setup.check(&token).await.unwrap_err();
        let sig = token.rsplit_once('.').unwrap().1;
        assert!(
            !err.contains(&token) && !err.contains(sig) && !err.contains('\n'),
            "{err}"
        );
    }

    #[tokio::test]
    async fn verify_uses_the_system_clock() {
        let setup = rsa_setup();
        let now = crate::time::unix_now();
        let fresh = with(json!({"iat": now, "nbf": now, "exp": now + 60}));
        let jwt = UnverifiedJwt::parse(
            &mint(rsa(), Algorithm::RS256, Some("rsa-1"), &fresh),
            16_384,
        )
        .unwrap();
        assert!(setup.verifier.verify(&jwt).await.is_ok());
        // The fixed-time token of the other tests is long expired by the real clock.
        let old = UnverifiedJwt::parse(
            &mint(
                rsa(),
                Algorithm::RS256,
                Some("rsa-1"),
                &with(json!({"exp": 1_000_000_000 })),
            ),
            16_384,
        )
        .unwrap();
        assert!(matches!(
            setup.verifier.verify(&old).await,
            Err(ClaimsError::Expired { .. })
        ));
    }

    #[tokio::test]
    async fn keys_from_discovery_vouch_only_for_their_issuer() {
        let a = JsonServer::start().await;
        let b = JsonServer::start().await;
        let (iss_a, iss_b) = (a.base.clone(), b.base.clone());
        for (server, iss, key, kid) in [(&a, &iss_a, rsa(), "ka"), (&b, &iss_b, rsa_other(), "kb")]
        {
            server.set(
                "/.well-known/openid-configuration",
                200,
                json!({"issuer": iss, "jwks_uri": format!("{iss}/jwks")}).to_string(),
            );
            server.set("/jwks", 200, jwks(&[jwk(key, json!({"kid": kid}))]));
        }
        let mut cfg = cfg("RS256");
        cfg.issuers = vec![iss_a.clone(), iss_b.clone()];
        cfg.jwks_file = None;
        let verifier = Verifier::new(&cfg, Arc::new(KeyStore::new(&cfg).await.unwrap()));
        let check = |token: String| {
            let jwt = UnverifiedJwt::parse(&token, 16_384).unwrap();
            let verifier = &verifier;
            async move { verifier.verify_at(&jwt, NOW).await }
        };
        let own = mint(
            rsa_other(),
            Algorithm::RS256,
            Some("kb"),
            &with(json!({"iss": iss_b})),
        );
        assert_eq!(check(own).await.unwrap().issuer(), iss_b);
        // Issuer B's key signing a token in A's name.
        let impersonation = mint(
            rsa_other(),
            Algorithm::RS256,
            Some("kb"),
            &with(json!({"iss": iss_a})),
        );
        assert!(matches!(
            check(impersonation).await,
            Err(ClaimsError::KeyOfOtherIssuer { .. })
        ));
    }

    #[test]
    fn trusted_claims() {
        let claims =
            VerifiedClaims::from_trusted_json(json!({"sub": "alice", "roles": ["a"]})).unwrap();
        assert_eq!(
            (claims.sub(), claims.issuer(), claims.expires_at()),
            ("alice", "", u64::MAX)
        );
        assert_eq!(claims.get("roles"), Some(&json!(["a"])));
        assert!(VerifiedClaims::from_trusted_json(json!({"sub": ""})).is_err());
        assert!(VerifiedClaims::from_trusted_json(json!({"name": "alice"})).is_err());
        assert!(VerifiedClaims::from_trusted_json(json!({"sub": "a", "iss": 1})).is_err());
        assert!(VerifiedClaims::from_trusted_json(json!({"sub": "a", "exp": "x"})).is_err());
        assert!(VerifiedClaims::from_trusted_json(json!(["sub"])).is_err());
    }
}
