//! Keys and tokens for tests: ES256 and Ed25519 key pairs generated with
//! ring, their public JWKs, JWKS documents, and compact JWS signing.

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use stella_envelope::encoding::b64url_encode;

/// A signing key with its public JWK.
pub enum TestKey {
    Es256(EcdsaKeyPair, Value),
    Ed25519(Ed25519KeyPair, Value),
}

impl TestKey {
    /// A fresh P-256 key with `kid` (no kid member when `None`).
    pub fn es256(kid: Option<&str>) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let mut jwk = json!({"kty": "EC", "crv": "P-256",
            "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..65])});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey::Es256(pair, jwk)
    }

    /// A fresh Ed25519 key with `kid`.
    pub fn ed25519(kid: Option<&str>) -> TestKey {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut jwk = json!({"kty": "OKP", "crv": "Ed25519",
            "x": b64url_encode(pair.public_key().as_ref())});
        if let Some(kid) = kid {
            jwk["kid"] = json!(kid);
        }
        TestKey::Ed25519(pair, jwk)
    }

    pub fn jwk(&self) -> &Value {
        match self {
            TestKey::Es256(_, jwk) | TestKey::Ed25519(_, jwk) => jwk,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self {
            TestKey::Es256(..) => "ES256",
            TestKey::Ed25519(..) => "EdDSA",
        }
    }

    pub fn kid(&self) -> Option<&str> {
        self.jwk().get("kid").and_then(Value::as_str)
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        match self {
            TestKey::Es256(pair, _) => pair
                .sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec(),
            TestKey::Ed25519(pair, _) => pair.sign(input).as_ref().to_vec(),
        }
    }

    /// The usual header: this key's alg and kid, `typ: at+jwt`.
    pub fn header(&self) -> Value {
        let mut header = json!({"alg": self.alg(), "typ": "at+jwt"});
        if let Some(kid) = self.kid() {
            header["kid"] = json!(kid);
        }
        header
    }

    /// `claims` signed under the usual header.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with_header(&self.header(), claims)
    }

    /// `claims` signed under `header` as given.
    pub fn token_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims.to_string())
        );
        let signature = self.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(signature))
    }
}

/// A JWKS document holding `keys`' public JWKs.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk().clone()).collect::<Vec<_>>()}).to_string()
}
