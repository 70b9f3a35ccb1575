//! JWK parsing (`jose::PublicJwk::from_json`), RFC 7638 thumbprints, and
//! JWKS documents (`authority::KeySet::from_jwks`).
//!
//! Input: a JSON document. As an object it is read as one JWK and as a JWKS
//! document; every object in its `keys` array is read as a JWK too.
//!
//! Besides "never panics": a parsed key's thumbprint is 43 characters of
//! canonical base64url, matches itself and nothing else (not a changed
//! spelling), and depends only on the RFC 7638 members — adding `kid`,
//! `alg`, `use` or an unknown member leaves it as it was. An algorithm the
//! key accepts needs the key's kind.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use stella_authority::KeySet;
use stella_jose::{
    thumbprint_matches, thumbprint_sha256, JsonObject, JwsAlg, PublicJwk, VerifyingKey,
};

fn check_jwk(object: &JsonObject) {
    let Ok(jwk) = PublicJwk::from_json(object) else {
        return;
    };
    let thumbprint = thumbprint_sha256(&jwk);
    assert_eq!(thumbprint.len(), 43);
    assert!(thumbprint
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert!(thumbprint_matches(&jwk, &thumbprint));
    assert!(!thumbprint_matches(&jwk, &format!("{thumbprint}=")));
    assert!(!thumbprint_matches(&jwk, &thumbprint[1..]));
    let mut flipped = thumbprint.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    assert!(!thumbprint_matches(
        &jwk,
        std::str::from_utf8(&flipped).expect("ascii")
    ));

    // Members outside RFC 7638's set do not change the thumbprint.
    let mut decorated = object.clone();
    decorated.insert("kid".into(), Value::String("fuzz-kid".into()));
    decorated.insert("use".into(), Value::String("sig".into()));
    decorated.insert("x-fuzz".into(), Value::Bool(true));
    decorated.remove("alg");
    decorated.remove("key_ops");
    let decorated = PublicJwk::from_json(&decorated).expect("extra members are ignored");
    assert_eq!(thumbprint_sha256(&decorated), thumbprint);

    for alg in JwsAlg::ALL {
        if jwk.check_alg(alg).is_ok() {
            assert_eq!(
                alg.key_kind(),
                jwk.kind(),
                "{alg:?} accepted for {:?}",
                jwk.kind()
            );
        }
    }
    let _ = (jwk.kid(), jwk.alg(), jwk.key_use(), jwk.key_ops());
    let key = VerifyingKey::new(&jwk);
    for alg in JwsAlg::ALL {
        let _ = key.verify(alg, b"e30.e30", &[0u8; 64]);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_jwk(&doc);
    if let Some(Value::Array(keys)) = doc.get("keys") {
        for key in keys {
            if let Value::Object(key) = key {
                check_jwk(key);
            }
        }
    }
    if let Ok(set) = KeySet::from_jwks(&doc) {
        assert!(!set.is_empty());
        let kids = set.kids();
        for alg in JwsAlg::ALL {
            let _ = set.select(None, alg);
            for kid in &kids {
                let _ = set.select(Some(kid), alg);
            }
        }
    }
});
