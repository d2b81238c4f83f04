//! Keys, JWKs, tokens, settings and a tiny JWKS server for the tests of `jwks` and `claims`.
//!
//! Stage: tests only. Inputs: none beyond randomness and a free port on 127.0.0.1. Outputs:
//! generated key pairs in every form a key source uses (JWK members, SubjectPublicKeyInfo,
//! PKCS#1, PKCS#8, a certificate), signed tokens, JWT settings, and an HTTP server whose
//! answers a test sets and whose requests it counts.
//!
//! Invariants: nothing leaves loopback; the two RSA keys are generated once per test binary
//! (slow in debug builds) and shared; the certificate is built by hand and never signed,
//! because cedargate uses a certificate only as a container for its key.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::JwtConfig;

/// A generated key pair: what signs tokens, and the public half in the forms sources use.
pub struct TestKey {
    pub encoding: EncodingKey,
    /// The public JWK members (kty, crv/n/e/x/y), without kid, alg or use.
    pub public: Value,
    /// DER SubjectPublicKeyInfo.
    pub spki: Vec<u8>,
    /// PKCS#1 RSAPublicKey for RSA keys.
    pub pkcs1: Option<Vec<u8>>,
    /// PKCS#8 private key, for tests that must refuse private material.
    pub pkcs8: Vec<u8>,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn pem(label: &str, der: &[u8]) -> String {
    crate::pem::encode(label, der)
}

fn rsa_new() -> TestKey {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
    let pkcs8 = AsDer::<Pkcs8V1Der>::as_der(&pair)
        .unwrap()
        .as_ref()
        .to_vec();
    let public = pair.public_key();
    let n = public.modulus().big_endian_without_leading_zero().to_vec();
    let e = public.exponent().big_endian_without_leading_zero().to_vec();
    let spki = AsDer::<PublicKeyX509Der>::as_der(public)
        .unwrap()
        .as_ref()
        .to_vec();
    TestKey {
        encoding: EncodingKey::from_rsa_pem(pem("PRIVATE KEY", &pkcs8).as_bytes()).unwrap(),
        public: json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)}),
        spki,
        pkcs1: Some(public.as_ref().to_vec()),
        pkcs8,
    }
}

/// RSA key generation is slow in debug builds: each test binary makes two and shares them.
pub fn rsa() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(rsa_new)
}

pub fn rsa_other() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(rsa_new)
}

pub fn ec(alg: Algorithm) -> TestKey {
    let (signing, crv, len) = match alg {
        Algorithm::ES256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", 32),
        Algorithm::ES384 => (&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", 48),
        _ => panic!("not an EC algorithm"),
    };
    let pair = EcdsaKeyPair::generate(signing).unwrap();
    let pkcs8 = pair.to_pkcs8v1().unwrap().as_ref().to_vec();
    let point = pair.public_key().as_ref().to_vec();
    let (x, y) = point[1..].split_at(len);
    TestKey {
        encoding: EncodingKey::from_ec_der(&pkcs8),
        public: json!({"kty": "EC", "crv": crv, "x": b64(x), "y": b64(y)}),
        spki: AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec(),
        pkcs1: None,
        pkcs8,
    }
}

pub fn ed25519() -> TestKey {
    let pair = Ed25519KeyPair::generate().unwrap();
    let pkcs8 = pair.to_pkcs8().unwrap().as_ref().to_vec();
    let x = pair.public_key().as_ref().to_vec();
    TestKey {
        encoding: EncodingKey::from_ed_der(&pkcs8),
        public: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)}),
        spki: AsDer::<PublicKeyX509Der>::as_der(pair.public_key())
            .unwrap()
            .as_ref()
            .to_vec(),
        pkcs1: None,
        pkcs8,
    }
}

/// The public JWK with extra members (kid, alg, use, …) merged in.
pub fn jwk(key: &TestKey, extra: Value) -> Value {
    let mut jwk = key.public.clone();
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

pub fn jwks(keys: &[Value]) -> String {
    json!({ "keys": keys }).to_string()
}

pub fn mint(key: &TestKey, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

/// A hand-built X.509 certificate around `spki`. Only the structure matters: cedargate uses
/// the certificate as a key container and never checks its signature.
pub fn certificate(spki: &[u8]) -> Vec<u8> {
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        let len = content.len();
        if len < 128 {
            out.push(len as u8);
        } else if len < 256 {
            out.extend([0x81, len as u8]);
        } else {
            out.extend([0x82, (len >> 8) as u8, len as u8]);
        }
        out.extend_from_slice(content);
        out
    }
    let sha256_rsa = der(
        0x30,
        &[
            der(
                0x06,
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b],
            ),
            der(0x05, &[]),
        ]
        .concat(),
    );
    let name = der(
        0x30,
        &der(
            0x31,
            &der(
                0x30,
                &[der(0x06, &[0x55, 0x04, 0x03]), der(0x0c, b"cedargate test")].concat(),
            ),
        ),
    );
    let validity = der(
        0x30,
        &[der(0x17, b"250101000000Z"), der(0x17, b"350101000000Z")].concat(),
    );
    let tbs = der(
        0x30,
        &[
            der(0xa0, &der(0x02, &[2])),
            der(0x02, &[1]),
            sha256_rsa.clone(),
            name.clone(),
            validity,
            name,
            spki.to_vec(),
        ]
        .concat(),
    );
    der(0x30, &[tbs, sha256_rsa, der(0x03, &[0, 1, 2, 3])].concat())
}

/// JWT settings for issuer `https://issuer.example/` and audience `api`, plus `pairs`.
pub fn cfg(pairs: &[(&str, &str)]) -> JwtConfig {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    env.insert("CEDARGATE_ISSUER".into(), "https://issuer.example/".into());
    env.insert("CEDARGATE_AUDIENCE".into(), "api".into());
    for (k, v) in pairs {
        env.insert((*k).into(), (*v).into());
    }
    JwtConfig::from_env(&env).unwrap()
}

/// JWT settings for one remote JWKS at `url`, with the given cooldown and maximum key age.
pub fn remote_cfg(url: &str, cooldown_ms: u64, max_age_ms: u64) -> JwtConfig {
    let mut cfg = cfg(&[("CEDARGATE_JWKS_URL", url)]);
    cfg.jwks_cooldown = Duration::from_millis(cooldown_ms);
    cfg.jwks_max_age = Duration::from_millis(max_age_ms);
    cfg
}

/// A minimal HTTP/1.1 server on 127.0.0.1 serving fixed JSON bodies by path, counting
/// requests per path. Bodies can be replaced while it runs.
pub struct JsonServer {
    pub base: String,
    routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    total: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JsonServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let total = Arc::new(AtomicUsize::new(0));
        let (r, h, t) = (routes.clone(), hits.clone(), total.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (r, h, t) = (r.clone(), h.clone(), t.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&request)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_owned();
                    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
                    t.fetch_add(1, Ordering::SeqCst);
                    *h.lock().unwrap().entry(path.clone()).or_default() += 1;
                    let route = r.lock().unwrap().get(&path).cloned();
                    let (status, body) = route.unwrap_or((404, "{}".to_owned()));
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(body.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            base,
            routes,
            hits,
            total,
            task,
        }
    }

    pub fn set(&self, path: &str, status: u16, body: impl Into<String>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body.into()));
    }

    pub fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }
}

impl Drop for JsonServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
