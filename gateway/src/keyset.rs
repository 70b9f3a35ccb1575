//! The gateway's published keys (docs/design.md §3.6): the public half of
//! every asymmetric key of the envelope keyring as a JWKS (RFC 7517; Ed25519
//! as `OKP`, RFC 8037; P-256 as `EC`, RFC 7518), at
//! `/.well-known/stella/keys.json` on the admin listener and, with
//! `gateway.listeners.public_jwks`, on the public ones. Services that verify
//! transaction tokens (or EdDSA envelopes) fetch it and so follow rotations.
//! HS256 keys are secrets and are never listed.
//!
//! The keyring is exactly the configured keys: a key is retired by removing
//! it from the configuration, and the next snapshot's document leaves it
//! out. The document is built once per snapshot, off the request path.

use crate::config::resolve::EnvelopeKeyInfo;
use bytes::Bytes;
use serde_json::json;

/// Where the document is served.
pub const PATH: &str = "/.well-known/stella/keys.json";
/// Its media type (RFC 7517 section 8.5).
pub const CONTENT_TYPE: &str = "application/jwk-set+json";
/// Caching on the public listeners: services and caches in between refetch
/// within five minutes, which is what the rotation runbook waits for after
/// adding a key and before signing with it.
pub const CACHE_CONTROL: &str = "public, max-age=300";

/// The JWKS of `keys`, in keyring order.
pub fn document(keys: &[EnvelopeKeyInfo]) -> Bytes {
    let keys: Vec<_> = keys
        .iter()
        .filter_map(|k| {
            let mut jwk = k.public_jwk.clone()?;
            jwk["kid"] = json!(k.kid);
            jwk["use"] = json!("sig");
            Some(jwk)
        })
        .collect();
    Bytes::from(json!({ "keys": keys }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::resolve::KeySource;
    use stella_envelope::{Key, KeyId};

    fn info(key: &Key) -> EnvelopeKeyInfo {
        EnvelopeKeyInfo {
            kid: key.kid().to_string(),
            alg: key.alg(),
            source: KeySource::Inline,
            path: "router.identity_envelope_keys[0].key".into(),
            public_jwk: key.public_jwk(),
        }
    }

    #[test]
    fn every_asymmetric_key_is_listed_with_its_public_half_and_hs256_keys_never() {
        let kid = |k: &str| KeyId::new(k).unwrap();
        let hs = Key::hmac(kid("hs-1"), &[1; 32]).unwrap();
        let ed = Key::ed25519_from_seed(kid("ed-1"), [2; 32]).unwrap();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let es = Key::p256_from_pkcs8(kid("es-1"), pkcs8.as_ref()).unwrap();
        let text = document(&[info(&hs), info(&ed), info(&es)]);
        let doc: serde_json::Value = serde_json::from_slice(&text).unwrap();
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "{doc}");
        let x = ed
            .public_spec()
            .strip_prefix("ed25519-public:")
            .unwrap()
            .to_owned();
        assert_eq!(
            keys[0],
            json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ed-1", "alg": "EdDSA", "use": "sig"})
        );
        let point = es.public_jwk().unwrap();
        assert_eq!(
            keys[1],
            json!({"kty": "EC", "crv": "P-256", "x": point["x"], "y": point["y"], "kid": "es-1", "alg": "ES256", "use": "sig"})
        );
        for private in [&ed, &es] {
            let secret = private.to_spec();
            let secret = secret.split_once(':').unwrap().1;
            assert!(!String::from_utf8_lossy(&text).contains(secret));
        }
        let empty: serde_json::Value = serde_json::from_slice(&document(&[info(&hs)])).unwrap();
        assert_eq!(empty, json!({"keys": []}));
    }
}
