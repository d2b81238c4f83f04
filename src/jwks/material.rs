//! Key material: the public numbers of a key → a checked [`VerifyingKey`].
//!
//! Stage: the last step of loading any key, whether it came from a JWK (`jwk`) or a PEM file
//! (`pem`). Inputs: [`Material`] (an RSA modulus and exponent, an EC point, an Ed25519 key),
//! the `alg` the source names, if any, its `kid` and the issuer it was discovered for. Output:
//! a [`VerifyingKey`] holding jsonwebtoken's key and the algorithms it may verify.
//!
//! Invariants: the key is checked once, here, so a broken key is skipped at load instead of
//! failing every token: RSA moduli have 2048–8192 bits, are odd and lack the ROCA fingerprint,
//! and the exponent is odd and at least 3; EC points lie on their curve; Ed25519 keys are 32
//! valid bytes. A key verifies only its type's algorithms (one per curve), and only the `alg`
//! its source names when it names one.

use aws_lc_rs::signature::{
    EcdsaVerificationAlgorithm, ParsedPublicKey, ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED,
    ED25519,
};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::VerifyingKey;
use crate::config::SUPPORTED_ALGORITHMS;
use crate::token::shown;

/// RSA below 2048 bits is factorable with enough money (NIST SP 800-131A); above 8192 the
/// verifier (aws-lc) refuses it anyway, so such a key could never verify anything.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// Algorithms an RSA key verifies when its JWK does not name one.
pub(super) const RSA_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// Public key material from a JWK, a SubjectPublicKeyInfo or a PKCS#1 key, not yet checked.
pub(super) enum Material {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    Ec { curve: Curve, point: Vec<u8> },
    Ed25519 { x: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Curve {
    P256,
    P384,
}

impl Curve {
    pub(super) fn coordinate_len(self) -> usize {
        match self {
            Self::P256 => 32,
            Self::P384 => 48,
        }
    }

    fn verification(self) -> &'static EcdsaVerificationAlgorithm {
        match self {
            Self::P256 => &ECDSA_P256_SHA256_FIXED,
            Self::P384 => &ECDSA_P384_SHA384_FIXED,
        }
    }

    fn algorithm(self) -> Algorithm {
        match self {
            Self::P256 => Algorithm::ES256,
            Self::P384 => Algorithm::ES384,
        }
    }
}

impl Material {
    /// What a key of this type may verify when nothing narrows it: each curve has exactly one
    /// ECDSA algorithm (RFC 7518 §3.4), RSA keys any RSA algorithm.
    fn family(&self) -> Vec<Algorithm> {
        match self {
            Self::Rsa { .. } => RSA_ALGORITHMS.to_vec(),
            Self::Ec { curve, .. } => vec![curve.algorithm()],
            Self::Ed25519 { .. } => vec![Algorithm::EdDSA],
        }
    }

    /// Checks the key itself and builds jsonwebtoken's key.
    fn into_decoding_key(self) -> Result<DecodingKey, String> {
        match self {
            Self::Rsa { n, e } => {
                let (n, e) = (without_leading_zeros(&n), without_leading_zeros(&e));
                check_rsa(n, e)?;
                Ok(DecodingKey::from_rsa_raw_components(n, e))
            }
            Self::Ec { curve, point } => {
                // Off-curve points enable invalid-curve attacks; aws-lc checks the point here
                // so a broken key is skipped at load instead of failing every token.
                ParsedPublicKey::new(curve.verification(), &point)
                    .map_err(|_| "the point is not on the curve".to_owned())?;
                // jsonwebtoken keeps EC public keys as the uncompressed SEC1 point, whichever
                // constructor builds them.
                Ok(DecodingKey::from_ec_der(&point))
            }
            Self::Ed25519 { x } => {
                if x.len() != 32 {
                    return Err("the Ed25519 key is not 32 bytes long".to_owned());
                }
                ParsedPublicKey::new(&ED25519, &x)
                    .map_err(|_| "the Ed25519 key is not valid".to_owned())?;
                Ok(DecodingKey::from_ed_der(&x))
            }
        }
    }
}

pub(super) fn verifying_key(
    material: Material,
    alg: Option<&str>,
    kid: Option<String>,
    issuer: Option<&str>,
) -> Result<VerifyingKey, String> {
    let family = material.family();
    // RFC 7517 §4.4: a key that names its `alg` is meant for that algorithm only; using it for
    // another (even of the same family) is exactly the cross-algorithm reuse JWK `alg` exists
    // to prevent.
    let algorithms = match alg {
        None => family,
        Some(name) => {
            let alg = SUPPORTED_ALGORITHMS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| *a)
                .ok_or_else(|| {
                    format!(
                        "`alg` `{}` is not a signature algorithm cedargate supports",
                        shown(name)
                    )
                })?;
            if !family.contains(&alg) {
                return Err(format!(
                    "`alg` `{name}` does not match the key type and curve"
                ));
            }
            vec![alg]
        }
    };
    Ok(VerifyingKey {
        kid,
        algorithms,
        key: material.into_decoding_key()?,
        issuer: issuer.map(str::to_owned),
    })
}

fn without_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = match n.first() {
        Some(top) => n
            .len()
            .saturating_mul(8)
            .saturating_sub(top.leading_zeros() as usize),
        None => 0,
    };
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "the RSA modulus has {bits} bits; at least {MIN_RSA_BITS} are required"
        ));
    }
    if bits > MAX_RSA_BITS {
        return Err(format!(
            "the RSA modulus has {bits} bits; at most {MAX_RSA_BITS} are supported"
        ));
    }
    if n.last().is_none_or(|low| low % 2 == 0) {
        return Err("the RSA modulus is even".to_owned());
    }
    // e = 1 makes "signatures" trivial to forge; even exponents are not RSA.
    if e.len() > 8 {
        return Err("the RSA public exponent is implausibly large".to_owned());
    }
    let exponent = e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    if exponent < 3 || exponent % 2 == 0 {
        return Err(format!(
            "the RSA public exponent {exponent} is not an odd number of at least 3"
        ));
    }
    if has_roca_fingerprint(n) {
        return Err("the RSA modulus has the ROCA fingerprint (CVE-2017-15361): its private key can be computed".to_owned());
    }
    Ok(())
}

/// Small primes of the ROCA fingerprint test (Nemec et al., CCS 2017).
const ROCA_PRIMES: [u64; 38] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167,
];

/// Whether `n` looks generated by the Infineon library that builds primes as
/// `k·M + (65537^a mod M)`: then `n mod p` lies in the subgroup generated by 65537 for every
/// small prime `p` of `M`, which a random modulus does with negligible probability.
fn has_roca_fingerprint(n: &[u8]) -> bool {
    ROCA_PRIMES.iter().all(|&p| {
        let residue = n
            .iter()
            .fold(0u64, |acc, b| (acc * 256 + u64::from(*b)) % p);
        let generator = 65537 % p;
        let mut power = 1u64;
        loop {
            if power == residue {
                return true;
            }
            power = power * generator % p;
            if power == 1 {
                return false;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    use super::*;
    use crate::jwks::test_support::*;

    #[test]
    fn roca_fingerprint() {
        // A modulus of the shape the Infineon library produced, n = p·q with p, q ≡ 65537^a
        // (mod every small prime), versus our generated keys.
        let generated = URL_SAFE_NO_PAD
            .decode(rsa().public["n"].as_str().unwrap())
            .unwrap();
        assert!(!has_roca_fingerprint(&generated));
        // Build n mod p = 65537^k mod p for every ROCA prime via the CRT-free trick: any number
        // of the form 65537^k has the fingerprint.
        let mut n = vec![1u8];
        for _ in 0..7 {
            // n *= 65537 (big-endian byte vector)
            let mut carry = 0u64;
            for byte in n.iter_mut().rev() {
                let v = u64::from(*byte) * 65537 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            while carry > 0 {
                n.insert(0, (carry & 0xff) as u8);
                carry >>= 8;
            }
        }
        assert!(has_roca_fingerprint(&n));
    }
}
