//! [`UnverifiedJwt`] + keys → `VerifiedClaims` (stub: to be implemented).
