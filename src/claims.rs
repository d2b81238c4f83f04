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
//! configured issuer, and an `exp` that had not passed (within the leeway) at verification time;
//! its `aud` names an audience or client id configured for its issuer (for every issuer, or
//! for that one), or (no `aud`) its `client_id` is such a client id; and a `token_use` it carries (required when only a client id made it
//! ours) is `CEDARGATE_TOKEN_USE`'s.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::Value;

use crate::config::{JwtConfig, TokenUse};
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
    #[error("claim `aud` or `client_id` is required")]
    MissingAudienceOrClientId,
    #[error("client id `{0}` is not accepted")]
    ClientId(String),
    #[error("claim `token_use` is `{found}`, but `CEDARGATE_TOKEN_USE` accepts `{expected}`")]
    TokenUse {
        found: String,
        expected: &'static str,
    },
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

/// What one issuer's tokens may name to be for this API.
#[derive(Debug)]
struct Accepted {
    audiences: Vec<String>,
    client_ids: Vec<String>,
}

/// Verifies tokens against the configured issuers, audiences, algorithms and keys.
#[derive(Debug)]
pub struct Verifier {
    keys: Arc<KeyStore>,
    /// Each configured issuer with the audiences and client ids its tokens may carry: those
    /// for every issuer and its own (`ISSUER=VALUE`), so that one issuer's audience never
    /// makes another issuer's token ours.
    issuers: Vec<(String, Accepted)>,
    token_use: TokenUse,
    algorithms: Vec<Algorithm>,
    leeway: u64,
}

impl Verifier {
    pub fn new(cfg: &JwtConfig, keys: Arc<KeyStore>) -> Self {
        Self {
            keys,
            issuers: cfg
                .issuers
                .iter()
                .map(|iss| {
                    let (audiences, client_ids) = cfg.accepted(iss);
                    (
                        iss.clone(),
                        Accepted {
                            audiences,
                            client_ids,
                        },
                    )
                })
                .collect(),
            token_use: cfg.token_use,
            algorithms: cfg.algorithms.clone(),
            leeway: cfg.leeway.as_secs(),
        }
    }

    /// The key store tokens are verified against.
    pub fn keys(&self) -> &KeyStore {
        &self.keys
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

        let (iss, accepted) = self.issuer(&claims)?;
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
        self.audience(&claims, accepted)?;

        Ok(VerifiedClaims {
            claims,
            sub,
            iss,
            exp,
        })
    }

    /// `iss` must be one string equal to a configured issuer. jsonwebtoken accepts an array
    /// that merely contains one; an issuer is a single identity (RFC 7519 §4.1.1). Returns it
    /// with what its tokens may name to be for this API.
    fn issuer(&self, claims: &JsonObject) -> Result<(String, &Accepted), ClaimsError> {
        match claims.get("iss") {
            None => Err(ClaimsError::Missing("iss")),
            Some(Value::String(iss)) => match self.issuers.iter().find(|(i, _)| i == iss) {
                Some((_, accepted)) => Ok((iss.clone(), accepted)),
                None => Err(ClaimsError::Issuer(shown(iss))),
            },
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

    /// Whether the token is for this API: by its `aud`, or, when it has none, by its
    /// `client_id` (Cognito access tokens); and whether it is the configured kind of token
    /// (`token_use`). A token for some other API, or an ID token sent where access tokens are
    /// expected, must not be accepted here. `accepted` is the token's issuer's: an audience
    /// configured for another issuer names another issuer's client, not ours.
    fn audience(&self, claims: &JsonObject, accepted: &Accepted) -> Result<(), ClaimsError> {
        let token_use = self.token_use(claims)?;
        let by_client_id_only = match claims.get("aud") {
            Some(aud) => aud_matches(aud, accepted)?,
            None => client_id_matches(claims, accepted)?,
        };
        // A client id says which application asked for the token, not which kind of token it
        // is: Cognito issues ID tokens (`aud` = client id) and access tokens (`client_id` =
        // client id) for the same client. Only `token_use` tells them apart, so a token that
        // is ours through a client id alone must say what it is; one that is ours through a
        // configured audience was minted for this API by name and needs no such claim.
        if by_client_id_only && token_use.is_none() {
            return Err(ClaimsError::Missing("token_use"));
        }
        Ok(())
    }

    /// `token_use`, when present, must be a string equal to `CEDARGATE_TOKEN_USE`, whatever made
    /// the token ours: an ID token is not a grant to call an API even when its `aud` names the
    /// API. Exactly one value is accepted, never both.
    fn token_use<'c>(&self, claims: &'c JsonObject) -> Result<Option<&'c str>, ClaimsError> {
        match claims.get("token_use") {
            None => Ok(None),
            Some(Value::String(found)) if found == self.token_use.as_str() => {
                Ok(Some(found.as_str()))
            }
            Some(Value::String(found)) => Err(ClaimsError::TokenUse {
                found: shown(found),
                expected: self.token_use.as_str(),
            }),
            Some(_) => Err(ClaimsError::Invalid {
                claim: "token_use",
                reason: "it is not a string",
            }),
        }
    }
}

/// `aud` may be a string or an array of strings (Auth0 sends an array when the userinfo
/// audience is included); one of them must be a configured audience or client id (Cognito
/// ID tokens carry the client id in `aud`). Returns whether only a client id matched.
///
/// When `aud` is present it decides alone: a `client_id` beside it is not consulted, even
/// when it is ours. `aud` is the issuer's statement of who the token is for (RFC 7519
/// §4.1.3: a recipient not named in it must reject the token); `client_id` only names the
/// application that asked for it, which may well hold tokens for other APIs.
fn aud_matches(aud: &Value, accepted: &Accepted) -> Result<bool, ClaimsError> {
    let invalid = ClaimsError::Invalid {
        claim: "aud",
        reason: "it is not a string or an array of strings",
    };
    let audiences: Vec<&str> = match aud {
        Value::String(aud) => vec![aud.as_str()],
        Value::Array(items) => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<Vec<&str>>>()
            .ok_or(invalid)?,
        _ => return Err(invalid),
    };
    let named = |accepted: &[String]| {
        audiences
            .iter()
            .any(|aud| accepted.iter().any(|a| a == aud))
    };
    if named(&accepted.audiences) {
        return Ok(false);
    }
    if named(&accepted.client_ids) {
        return Ok(true);
    }
    Err(ClaimsError::Audience(
        audiences.first().map_or_else(String::new, |a| shown(a)),
    ))
}

/// A token without `aud` is ours only when `CEDARGATE_CLIENT_ID` is set and its `client_id`
/// is one of the configured ones (a Cognito access token). Without configured client ids,
/// `aud` stays required: `client_id` alone is not trusted by default. Returns `true`: such a
/// token is always ours through a client id alone.
fn client_id_matches(claims: &JsonObject, accepted: &Accepted) -> Result<bool, ClaimsError> {
    if accepted.client_ids.is_empty() {
        return Err(ClaimsError::Missing("aud"));
    }
    match claims.get("client_id") {
        None => Err(ClaimsError::MissingAudienceOrClientId),
        Some(Value::String(id)) if accepted.client_ids.iter().any(|c| c == id) => Ok(true),
        Some(Value::String(id)) => Err(ClaimsError::ClientId(shown(id))),
        Some(_) => Err(ClaimsError::Invalid {
            claim: "client_id",
            reason: "it is not a string",
        }),
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
    async fn each_issuer_accepts_its_own_audiences_and_client_ids_only() {
        const A: &str = "https://a.example/";
        const B: &str = "https://b.example/";
        let env: BTreeMap<&str, &str> = [
            ("CEDARGATE_ISSUER", "https://a.example/,https://b.example/"),
            (
                "CEDARGATE_AUDIENCE",
                "shared-api, https://a.example/=api-a, https://b.example/=api-b",
            ),
            ("CEDARGATE_CLIENT_ID", "https://b.example/=client-b"),
            ("CEDARGATE_JWKS_FILE", "/unused"),
        ]
        .into_iter()
        .collect();
        let keys = Arc::new(
            KeyStore::from_jwks_json(&jwks(&[jwk(rsa(), json!({"kid": "rsa-1"}))])).unwrap(),
        );
        let setup = Setup {
            verifier: Verifier::new(&JwtConfig::from_env(&env).unwrap(), keys),
        };
        let mint = |c: Value| mint(rsa(), Algorithm::RS256, Some("rsa-1"), &c);
        let token = |iss: &str, aud: Value| mint(with(json!({"iss": iss, "aud": aud})));
        // Each issuer's own audience, and the one for every issuer.
        for (iss, aud) in [
            (A, "api-a"),
            (B, "api-b"),
            (A, "shared-api"),
            (B, "shared-api"),
        ] {
            let ok = setup.check(&token(iss, json!(aud))).await;
            assert_eq!(ok.unwrap().issuer(), iss, "{iss} {aud}");
        }
        // Issuer A's token naming issuer B's audience (or client id) is for B's client, not
        // for anything A may call.
        for aud in [json!("api-b"), json!(["api-b"]), json!("client-b")] {
            let err = setup.check(&token(A, aud.clone())).await.unwrap_err();
            assert!(
                err.contains("no audience of the token is accepted"),
                "{aud}: {err}"
            );
        }
        let err = setup.check(&token(B, json!("api-a"))).await.unwrap_err();
        assert!(err.contains("no audience"), "{err}");
        // A Cognito-style access token (no `aud`) with B's client id: only from B.
        let access = |iss: &str| {
            mint(with(json!({
                "iss": iss, "aud": null, "client_id": "client-b", "token_use": "access"
            })))
        };
        assert!(setup.check(&access(B)).await.is_ok());
        let err = setup.check(&access(A)).await.unwrap_err();
        assert!(err.contains("claim `aud` is required"), "{err}");
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

    #[tokio::test]
    async fn keys_from_an_issuer_s_own_jwks_url_vouch_only_for_that_issuer() {
        let a = JsonServer::start().await;
        let b = JsonServer::start().await;
        a.set("/jwks", 200, jwks(&[jwk(rsa(), json!({"kid": "ka"}))]));
        b.set(
            "/jwks",
            200,
            jwks(&[jwk(rsa_other(), json!({"kid": "kb"}))]),
        );
        // Issuers that are not URLs: no discovery is possible, each has its own JWKS URL.
        let urls = format!("issuer-a={}/jwks, issuer-b={}/jwks", a.base, b.base);
        let env: BTreeMap<&str, &str> = [
            ("CEDARGATE_ISSUER", "issuer-a, issuer-b"),
            ("CEDARGATE_AUDIENCE", AUD),
            ("CEDARGATE_JWKS_URL", urls.as_str()),
        ]
        .into_iter()
        .collect();
        let cfg = JwtConfig::from_env(&env).unwrap();
        let verifier = Verifier::new(&cfg, Arc::new(KeyStore::new(&cfg).await.unwrap()));
        let check = |token: String| {
            let jwt = UnverifiedJwt::parse(&token, 16_384).unwrap();
            let verifier = &verifier;
            async move { verifier.verify_at(&jwt, NOW).await }
        };
        let own = mint(
            rsa(),
            Algorithm::RS256,
            Some("ka"),
            &with(json!({"iss": "issuer-a"})),
        );
        assert_eq!(check(own).await.unwrap().issuer(), "issuer-a");
        let own = mint(
            rsa_other(),
            Algorithm::RS256,
            Some("kb"),
            &with(json!({"iss": "issuer-b"})),
        );
        assert_eq!(check(own).await.unwrap().issuer(), "issuer-b");
        // Issuer B's key signing a token in A's name.
        let impersonation = mint(
            rsa_other(),
            Algorithm::RS256,
            Some("kb"),
            &with(json!({"iss": "issuer-a"})),
        );
        assert!(matches!(
            check(impersonation).await,
            Err(ClaimsError::KeyOfOtherIssuer { .. })
        ));
    }

    // --- Other issuers' token shapes: Microsoft Entra ID v2 and Keycloak ------------------

    /// A verifier for one issuer with `CEDARGATE_AUDIENCE` (and whatever else `extra` sets).
    fn issuer_setup(issuer: &'static str, audience: &'static str) -> Setup {
        let env: BTreeMap<&str, &str> = [
            ("CEDARGATE_ISSUER", issuer),
            ("CEDARGATE_AUDIENCE", audience),
            ("CEDARGATE_JWKS_FILE", "/unused"),
        ]
        .into_iter()
        .collect();
        let keys = jwks(&[jwk(rsa(), json!({"kid": "rsa-1", "use": "sig"}))]);
        Setup {
            verifier: Verifier::new(
                &JwtConfig::from_env(&env).unwrap(),
                Arc::new(KeyStore::from_jwks_json(&keys).unwrap()),
            ),
        }
    }

    const ENTRA_V2: &str =
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0";
    const ENTRA_API: &str = "6e74172b-be56-4843-9ff4-e66a39bb12e3";

    /// The claims of an Entra ID v2 access token for an API: `aud` the API's client id, app
    /// roles in `roles`, delegated scopes in `scp`, `azp` the calling client.
    fn entra_access() -> Value {
        json!({
            "aud": ENTRA_API,
            "iss": ENTRA_V2,
            "iat": NOW - 60, "nbf": NOW - 60, "exp": NOW + 3600,
            "aio": "AWQAm/8TAAAA",
            "azp": "2d4d11a2-f814-46a7-890a-274a72a7309e",
            "azpacr": "0",
            "name": "Alice", "oid": "00000000-0000-0000-66f3-3332eca7ea81",
            "preferred_username": "alice@contoso.example",
            "rh": "0.AAAA",
            "roles": ["editor"],
            "scp": "pets.read pets.write",
            "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "uti": "fqiBqXLPj0eQa82S-IYFAA",
            "ver": "2.0",
        })
    }

    #[tokio::test]
    async fn an_entra_id_v2_access_token_is_accepted_by_its_api_client_id() {
        let verified = issuer_setup(ENTRA_V2, ENTRA_API)
            .check(&signed(&entra_access()))
            .await
            .unwrap();
        assert_eq!(verified.issuer(), ENTRA_V2);
        assert_eq!(verified.get("roles"), Some(&json!(["editor"])));
        assert_eq!(verified.get("scp"), Some(&json!("pets.read pets.write")));
    }

    #[tokio::test]
    async fn an_entra_id_token_of_the_wrong_version_or_for_another_api_is_refused() {
        let setup = issuer_setup(ENTRA_V2, ENTRA_API);
        // v1 tokens name the tenant under sts.windows.net: another issuer string.
        let v1 = changed(
            entra_access(),
            json!({"iss": "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/", "ver": "1.0"}),
        );
        assert!(setup
            .check(&signed(&v1))
            .await
            .unwrap_err()
            .contains("issuer"));
        // A token for Microsoft Graph from the same tenant is not for this API; `azp` (the
        // calling client) never stands in for an audience.
        let graph = changed(
            entra_access(),
            json!({"aud": "00000003-0000-0000-c000-000000000000"}),
        );
        assert!(setup
            .check(&signed(&graph))
            .await
            .unwrap_err()
            .contains("audience"));
        let no_aud = changed(entra_access(), json!({"aud": null}));
        assert_eq!(
            setup.check(&signed(&no_aud)).await.unwrap_err(),
            "claim `aud` is required"
        );
    }

    const KEYCLOAK: &str = "https://sso.example.com/realms/pets";

    /// The claims of a Keycloak access token with an Audience mapper (`aud` holds the API and
    /// `account`) and a flat `roles` claim from a realm role mapper, beside Keycloak's own
    /// nested `realm_access` and its payload `typ` of `Bearer`.
    fn keycloak_access() -> Value {
        json!({
            "exp": NOW + 300, "iat": NOW - 10, "auth_time": NOW - 10,
            "jti": "onrtac:6b0b8c1e-5d3a-4a52-b1a1-8a2a3f0e9c11",
            "iss": KEYCLOAK,
            "aud": ["pets-api", "account"],
            "sub": "f4a1c2d3-0000-4000-8000-00000000c10a",
            "typ": "Bearer",
            "azp": "pets-web",
            "sid": "3c1f2e4d-0000-4000-8000-000000000005",
            "acr": "1",
            "allowed-origins": ["https://pets.example.com"],
            "realm_access": {"roles": ["editor", "offline_access", "uma_authorization"]},
            "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
            "roles": ["editor"],
            "scope": "openid profile email",
            "email_verified": true,
            "preferred_username": "alice",
        })
    }

    #[tokio::test]
    async fn a_keycloak_access_token_is_accepted_by_its_audience_mapper() {
        let verified = issuer_setup(KEYCLOAK, "pets-api")
            .check(&signed(&keycloak_access()))
            .await
            .unwrap();
        assert_eq!(verified.get("roles"), Some(&json!(["editor"])));
        assert_eq!(verified.get("typ"), Some(&json!("Bearer")));
    }

    #[tokio::test]
    async fn a_keycloak_token_without_the_audience_mapper_is_refused() {
        let setup = issuer_setup(KEYCLOAK, "pets-api");
        // Without an Audience mapper Keycloak's access tokens name only `account`; `azp` is
        // the client that asked for the token, not the API it is for.
        let plain = changed(
            keycloak_access(),
            json!({"aud": "account", "azp": "pets-api"}),
        );
        assert!(setup
            .check(&signed(&plain))
            .await
            .unwrap_err()
            .contains("audience"));
        // Another realm of the same server is another issuer.
        let other_realm = changed(
            keycloak_access(),
            json!({"iss": "https://sso.example.com/realms/master"}),
        );
        assert!(setup
            .check(&signed(&other_realm))
            .await
            .unwrap_err()
            .contains("issuer"));
    }

    // --- Amazon Cognito: `client_id` and `token_use` ------------------------------------

    const POOL: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab12Cd34E";
    const CLIENT: &str = "4tc0ab2kv1example7q3a1mhq1m";

    /// A verifier for a Cognito pool: `CEDARGATE_CLIENT_ID` and whatever else `extra` sets.
    fn cognito_setup(extra: &[(&'static str, &'static str)]) -> Setup {
        let mut env: BTreeMap<&str, &str> = [
            ("CEDARGATE_ISSUER", POOL),
            (
                "CEDARGATE_CLIENT_ID",
                "someone-else, 4tc0ab2kv1example7q3a1mhq1m",
            ),
            ("CEDARGATE_JWKS_FILE", "/unused"),
        ]
        .into_iter()
        .collect();
        env.extend(extra.iter().copied());
        let keys = jwks(&[jwk(rsa(), json!({"kid": "rsa-1", "use": "sig"}))]);
        Setup {
            verifier: Verifier::new(
                &JwtConfig::from_env(&env).unwrap(),
                Arc::new(KeyStore::from_jwks_json(&keys).unwrap()),
            ),
        }
    }

    /// The claims of a Cognito access token: `client_id` and no `aud`.
    fn cognito_access() -> Value {
        json!({
            "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "iss": POOL,
            "client_id": CLIENT,
            "origin_jti": "f1c2d3e4-0000-4000-8000-000000000001",
            "event_id": "e1c2d3e4-0000-4000-8000-000000000002",
            "token_use": "access",
            "scope": "pets/read pets/write openid email",
            "auth_time": NOW - 60,
            "cognito:groups": ["editor"],
            "exp": NOW + 3600,
            "iat": NOW - 60,
            "jti": "a1c2d3e4-0000-4000-8000-000000000003",
            "username": "alice",
        })
    }

    /// The claims of a Cognito ID token: `aud` = the client id.
    fn cognito_id() -> Value {
        json!({
            "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
            "iss": POOL,
            "aud": CLIENT,
            "token_use": "id",
            "cognito:groups": ["editor"],
            "cognito:username": "alice",
            "email": "alice@example.com",
            "email_verified": true,
            "auth_time": NOW - 60,
            "exp": NOW + 3600,
            "iat": NOW - 60,
            "jti": "b1c2d3e4-0000-4000-8000-000000000004",
        })
    }

    fn changed(mut claims: Value, changes: Value) -> Value {
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                claims.as_object_mut().unwrap().remove(k);
            } else {
                claims[k] = v.clone();
            }
        }
        claims
    }

    fn signed(claims: &Value) -> String {
        mint(rsa(), Algorithm::RS256, Some("rsa-1"), claims)
    }

    #[tokio::test]
    async fn a_cognito_access_token_is_accepted_by_its_client_id() {
        let verified = cognito_setup(&[])
            .check(&signed(&cognito_access()))
            .await
            .unwrap();
        assert_eq!(verified.sub(), "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee");
        assert_eq!(verified.get("cognito:groups"), Some(&json!(["editor"])));
        assert_eq!(
            verified.get("scope"),
            Some(&json!("pets/read pets/write openid email"))
        );
    }

    #[tokio::test]
    async fn a_client_id_that_is_not_configured_is_refused() {
        let err = cognito_setup(&[])
            .check(&signed(&changed(
                cognito_access(),
                json!({"client_id": "7other0client0of0the0pool"}),
            )))
            .await
            .unwrap_err();
        assert_eq!(err, "client id `7other0client0of0the0pool` is not accepted");
    }

    #[tokio::test]
    async fn a_client_id_that_is_not_a_string_is_refused() {
        let setup = cognito_setup(&[]);
        for client_id in [
            json!([CLIENT]),
            json!(7),
            json!({"id": CLIENT}),
            json!(true),
        ] {
            let err = setup
                .check(&signed(&changed(
                    cognito_access(),
                    json!({ "client_id": client_id }),
                )))
                .await
                .unwrap_err();
            assert_eq!(err, "claim `client_id` is invalid: it is not a string");
        }
    }

    #[tokio::test]
    async fn a_token_with_neither_aud_nor_client_id_is_refused() {
        let err = cognito_setup(&[])
            .check(&signed(&changed(
                cognito_access(),
                json!({"client_id": null}),
            )))
            .await
            .unwrap_err();
        assert_eq!(err, "claim `aud` or `client_id` is required");
    }

    #[tokio::test]
    async fn a_client_id_only_token_without_token_use_is_refused() {
        let err = cognito_setup(&[])
            .check(&signed(&changed(
                cognito_access(),
                json!({"token_use": null}),
            )))
            .await
            .unwrap_err();
        assert_eq!(err, "claim `token_use` is required");
    }

    #[tokio::test]
    async fn a_token_use_that_is_not_a_string_is_refused() {
        let setup = cognito_setup(&[]);
        for token_use in [json!(["access"]), json!(1), json!(true), json!({})] {
            let err = setup
                .check(&signed(&changed(
                    cognito_access(),
                    json!({ "token_use": token_use }),
                )))
                .await
                .unwrap_err();
            assert_eq!(err, "claim `token_use` is invalid: it is not a string");
        }
    }

    #[tokio::test]
    async fn an_id_token_is_refused_where_access_tokens_are_expected_even_with_our_aud() {
        // The ID token names the client in `aud`, which matches: `token_use` still refuses it.
        let err = cognito_setup(&[])
            .check(&signed(&cognito_id()))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "claim `token_use` is `id`, but `CEDARGATE_TOKEN_USE` accepts `access`"
        );
        // Also when the ID token's client id is configured as an audience.
        let err = cognito_setup(&[("CEDARGATE_AUDIENCE", CLIENT)])
            .check(&signed(&cognito_id()))
            .await
            .unwrap_err();
        assert!(
            err.contains("`CEDARGATE_TOKEN_USE` accepts `access`"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_id_token_is_accepted_by_its_aud_when_token_use_is_id() {
        let setup = cognito_setup(&[("CEDARGATE_TOKEN_USE", "id")]);
        let verified = setup.check(&signed(&cognito_id())).await.unwrap();
        assert_eq!(verified.get("email"), Some(&json!("alice@example.com")));
        // `aud` may be an array that contains the client id.
        let listed = changed(cognito_id(), json!({"aud": ["x", CLIENT]}));
        assert!(setup.check(&signed(&listed)).await.is_ok());
    }

    #[tokio::test]
    async fn an_access_token_is_refused_when_token_use_is_id() {
        // Never both at once: configuring ID tokens turns access tokens away.
        let err = cognito_setup(&[("CEDARGATE_TOKEN_USE", "id")])
            .check(&signed(&cognito_access()))
            .await
            .unwrap_err();
        assert_eq!(
            err,
            "claim `token_use` is `access`, but `CEDARGATE_TOKEN_USE` accepts `id`"
        );
    }

    #[tokio::test]
    async fn an_id_token_matched_by_client_id_in_aud_must_carry_token_use() {
        // An ID token of an issuer without `token_use` (aud = the client id) is not mistaken
        // for an access token: only `token_use` says which kind a client's token is.
        let setup = cognito_setup(&[("CEDARGATE_TOKEN_USE", "id")]);
        let err = setup
            .check(&signed(&changed(cognito_id(), json!({"token_use": null}))))
            .await
            .unwrap_err();
        assert_eq!(err, "claim `token_use` is required");
        let err = cognito_setup(&[])
            .check(&signed(&changed(cognito_id(), json!({"token_use": null}))))
            .await
            .unwrap_err();
        assert_eq!(err, "claim `token_use` is required");
    }

    #[tokio::test]
    async fn an_aud_that_is_not_ours_decides_even_beside_our_client_id() {
        // `aud` names who the token is for; `client_id` only who asked for it.
        let setup = cognito_setup(&[("CEDARGATE_AUDIENCE", AUD)]);
        for aud in [
            json!("https://other-api.example"),
            json!([]),
            json!(["x", "y"]),
        ] {
            let token = signed(&changed(cognito_access(), json!({ "aud": aud })));
            let err = setup.check(&token).await.unwrap_err();
            assert!(
                err.starts_with("no audience of the token is accepted"),
                "{err}"
            );
        }
        // A malformed `aud` is not passed over for `client_id` either.
        let token = signed(&changed(cognito_access(), json!({"aud": 7})));
        let err = setup.check(&token).await.unwrap_err();
        assert!(err.contains("claim `aud` is invalid"), "{err}");
    }

    #[tokio::test]
    async fn a_token_with_our_aud_and_our_client_id_is_accepted_by_its_aud() {
        // Accepted through the configured audience: `token_use` may be absent, as for Auth0.
        let setup = cognito_setup(&[("CEDARGATE_AUDIENCE", AUD)]);
        let both = changed(cognito_access(), json!({"aud": AUD, "token_use": null}));
        assert!(setup.check(&signed(&both)).await.is_ok());
        // When present, it must still be the configured kind.
        let id = changed(cognito_access(), json!({"aud": AUD, "token_use": "id"}));
        let err = setup.check(&signed(&id)).await.unwrap_err();
        assert!(err.contains("`CEDARGATE_TOKEN_USE`"), "{err}");
    }

    #[tokio::test]
    async fn without_configured_client_ids_a_client_id_alone_is_not_enough() {
        // Only `CEDARGATE_AUDIENCE`: a Cognito access token whose client id happens to equal
        // a configured audience is still refused, `aud` stays required.
        let setup = Setup {
            verifier: Verifier::new(
                &{
                    let mut c = cfg("RS256");
                    c.issuers = vec![POOL.to_owned()];
                    c.audiences = vec![CLIENT.to_owned()];
                    c
                },
                Arc::new(
                    KeyStore::from_jwks_json(&jwks(&[jwk(rsa(), json!({"kid": "rsa-1"}))]))
                        .unwrap(),
                ),
            ),
        };
        let err = setup.check(&signed(&cognito_access())).await.unwrap_err();
        assert_eq!(err, "claim `aud` is required");
    }

    #[tokio::test]
    async fn with_audience_only_tokens_without_token_use_are_unchanged_but_a_token_use_must_match()
    {
        let setup = rsa_setup();
        // The Auth0-shaped token of the other tests carries no `token_use`.
        assert!(setup.check(&signed(&claims())).await.is_ok());
        assert!(setup
            .check(&signed(&with(json!({"token_use": "access"}))))
            .await
            .is_ok());
        for (token_use, want) in [
            (json!("id"), "claim `token_use` is `id`, but"),
            (json!("refresh"), "claim `token_use` is `refresh`, but"),
            (json!(["access"]), "claim `token_use` is invalid"),
        ] {
            let err = setup
                .check(&signed(&with(json!({ "token_use": token_use }))))
                .await
                .unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[tokio::test]
    async fn cognito_errors_show_token_values_escaped_and_bounded() {
        let setup = cognito_setup(&[]);
        let long = "c".repeat(100);
        for value in ["a\nb\u{202e}", long.as_str()] {
            for claims in [
                changed(cognito_access(), json!({ "client_id": value })),
                changed(cognito_access(), json!({ "token_use": value })),
            ] {
                let token = signed(&claims);
                let err = setup.check(&token).await.unwrap_err();
                assert!(!err.contains('\n') && !err.contains(value), "{err}");
                assert!(!err.contains(token.rsplit_once('.').unwrap().1), "{err}");
            }
        }
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
