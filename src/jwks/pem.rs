//! PEM key files: the bytes of `CEDARGATE_PUBLIC_KEY_FILE` → one [`VerifyingKey`].
//!
//! Stage: beside `jwk`, for a key configured as a PEM file instead of a JWKS; `material` checks
//! the key itself. Input: the file's bytes (decoded by `crate::pem`). Output: the key, with no
//! `kid` (so it stands for any kid) and every algorithm its type allows.
//!
//! Invariants: exactly one PEM block, holding a public key (SubjectPublicKeyInfo or PKCS#1) or
//! an X.509 certificate, with no trailing data; a private key is refused with a message that
//! says so. A certificate is only a container for its key: the configuration is what makes the
//! key trusted, so the certificate's dates and signature are not checked.

use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::{PublicKey, RSAPublicKey};
use x509_parser::x509::SubjectPublicKeyInfo;

use super::material::{verifying_key, Curve, Material};
use super::VerifyingKey;
use crate::token::shown;

/// The key in a PEM file: `PUBLIC KEY` (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) or
/// an X.509 `CERTIFICATE`, whose key is used as is (the original Auth0 example verified with
/// the tenant's signing certificate; its validity dates and signature are not what makes the
/// key trustworthy, the configuration is).
pub(super) fn key_from_pem(bytes: &[u8]) -> Result<VerifyingKey, String> {
    let blocks = crate::pem::decode(bytes)?;
    // One block only: the second certificate of a chain is a CA, whose key must not verify
    // tokens.
    let [block] = blocks.as_slice() else {
        return Err(format!(
            "it holds {} PEM blocks; exactly one is expected",
            blocks.len()
        ));
    };
    let der = block.der.as_slice();
    let material = match block.label.as_str() {
        "CERTIFICATE" => {
            let (rest, cert) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| format!("the certificate does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the certificate has trailing data".to_owned());
            }
            spki_material(cert.public_key())?
        }
        "PUBLIC KEY" => {
            let (rest, spki) = SubjectPublicKeyInfo::from_der(der)
                .map_err(|e| format!("the public key does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the public key has trailing data".to_owned());
            }
            spki_material(&spki)?
        }
        "RSA PUBLIC KEY" => {
            let (rest, rsa) = RSAPublicKey::from_der(der)
                .map_err(|e| format!("the RSA public key does not parse: {e}"))?;
            if !rest.is_empty() {
                return Err("the RSA public key has trailing data".to_owned());
            }
            Material::Rsa {
                n: rsa.modulus.to_vec(),
                e: rsa.exponent.to_vec(),
            }
        }
        label if label.contains("PRIVATE KEY") => {
            return Err("it holds a private key; give the public key or the certificate".to_owned())
        }
        label => {
            return Err(format!(
                "PEM label `{}` is not a public key or certificate",
                shown(label)
            ))
        }
    };
    verifying_key(material, None, None, None)
}

fn spki_material(spki: &SubjectPublicKeyInfo<'_>) -> Result<Material, String> {
    let oid = &spki.algorithm.algorithm;
    let data = spki.subject_public_key.data.to_vec();
    if *oid == OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Ok(Material::Rsa {
                n: rsa.modulus.to_vec(),
                e: rsa.exponent.to_vec(),
            }),
            _ => Err("the RSA public key does not parse".to_owned()),
        }
    } else if *oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let curve = match curve {
            Some(c) if c == OID_EC_P256 => Curve::P256,
            Some(c) if c == OID_NIST_EC_P384 => Curve::P384,
            Some(c) => return Err(format!("curve `{c}` is not supported")),
            None => return Err("the EC key names no curve".to_owned()),
        };
        Ok(Material::Ec { curve, point: data })
    } else if *oid == OID_SIG_ED25519 {
        Ok(Material::Ed25519 { x: data })
    } else {
        Err(format!("key algorithm `{oid}` is not supported"))
    }
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use jsonwebtoken::Algorithm;

    use super::*;
    use crate::jwks::material::RSA_ALGORITHMS;
    use crate::jwks::test_support::*;

    #[test]
    fn pem_public_keys_and_certificates() {
        let rsa = rsa();
        for text in [
            pem("PUBLIC KEY", &rsa.spki),
            pem("RSA PUBLIC KEY", rsa.pkcs1.as_ref().unwrap()),
            pem("CERTIFICATE", &certificate(&rsa.spki)),
        ] {
            let key = key_from_pem(text.as_bytes()).unwrap();
            assert_eq!(key.algorithms(), RSA_ALGORITHMS);
            assert_eq!(key.kid(), None);
        }
        let p384 = ec(Algorithm::ES384);
        assert_eq!(
            key_from_pem(pem("PUBLIC KEY", &p384.spki).as_bytes())
                .unwrap()
                .algorithms(),
            [Algorithm::ES384]
        );
        let ed = ed25519();
        assert_eq!(
            key_from_pem(pem("CERTIFICATE", &certificate(&ed.spki)).as_bytes())
                .unwrap()
                .algorithms(),
            [Algorithm::EdDSA]
        );
    }

    #[test]
    fn pem_files_that_are_not_one_public_key_are_refused() {
        let rsa = rsa();
        let private = key_from_pem(pem("PRIVATE KEY", &rsa.pkcs8).as_bytes())
            .err()
            .unwrap();
        assert!(private.contains("private key"), "{private}");
        let chain = format!(
            "{}{}",
            pem("CERTIFICATE", &certificate(&rsa.spki)),
            pem("CERTIFICATE", &certificate(&rsa_other().spki))
        );
        assert!(key_from_pem(chain.as_bytes())
            .err()
            .unwrap()
            .contains("2 PEM blocks"));
        assert!(key_from_pem(b"no pem here").is_err());
        assert!(key_from_pem(pem("PUBLIC KEY", b"\x30\x00").as_bytes()).is_err());
        // The same size rules as JWKS: a 1024-bit RSA key in a certificate is refused.
        let small = {
            let n = URL_SAFE_NO_PAD
                .decode(rsa.public["n"].as_str().unwrap())
                .unwrap();
            let mut pkcs1 = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00];
            pkcs1.extend_from_slice(&n[..128]);
            pkcs1.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
            pkcs1
        };
        let err = key_from_pem(pem("RSA PUBLIC KEY", &small).as_bytes())
            .err()
            .unwrap();
        assert!(err.contains("1024 bits"), "{err}");
    }
}
