//! Compact JWS parsing (`jose::CompactJws::parse`) and verification with
//! whatever key the header embeds.
//!
//! Input: either the token text itself, or — when the first byte is NUL —
//! `header_json LF payload_json LF signature_bytes`, which the target encodes
//! as a compact JWS first, so the fuzzer can work on the JSON directly
//! instead of through base64url.
//!
//! Besides "never panics", a parsed token must be the canonical encoding of
//! its parts (one spelling per value), keep the signing input byte for byte,
//! carry an accepted `alg` and a payload that is a JSON object, and be
//! refused as too long under a smaller cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use stella_envelope::encoding::b64url_encode;
use stella_jose::{
    typ_matches, CompactJws, JoseError, JsonObject, JwsAlg, PublicJwk, VerifyingKey,
};

/// The access-token cap the gateway uses by default.
const MAX_LEN: usize = 8192;

fn token_from(data: &[u8]) -> Option<String> {
    match data.split_first() {
        Some((0, rest)) => {
            let mut parts = rest.splitn(3, |&b| b == b'\n');
            let header = parts.next().unwrap_or_default();
            let payload = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            Some(format!(
                "{}.{}.{}",
                b64url_encode(header),
                b64url_encode(payload),
                b64url_encode(signature)
            ))
        }
        _ => std::str::from_utf8(data).ok().map(str::to_owned),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(token) = token_from(data) else {
        return;
    };
    let jws = match CompactJws::parse(&token, MAX_LEN) {
        Ok(jws) => jws,
        Err(e) => {
            let _ = e.to_string();
            if token.len() > MAX_LEN {
                assert!(matches!(e, JoseError::TooLong { .. }));
            }
            return;
        }
    };
    assert!(token.len() <= MAX_LEN);

    // One spelling per value: re-encoding the parts gives the token back.
    let signing_input = std::str::from_utf8(jws.signing_input()).expect("ascii signing input");
    assert_eq!(
        format!("{signing_input}.{}", b64url_encode(jws.signature())),
        token,
        "the token is not the canonical encoding of its parts"
    );
    let (header_b64, payload_b64) = signing_input.split_once('.').expect("two parts");
    assert_eq!(b64url_encode(jws.payload()), payload_b64);
    assert!(!header_b64.is_empty() && !payload_b64.is_empty() && !jws.signature().is_empty());

    let header = jws.header();
    assert!(JwsAlg::ALL.contains(&header.alg()));
    assert!(!jws.header_json().contains_key("crit"));
    let _: JsonObject = serde_json::from_slice(jws.payload()).expect("payload is a json object");
    if let Some(typ) = header.typ() {
        let _ = (typ_matches(typ, "dpop+jwt"), typ_matches(typ, "at+jwt"));
    }
    let _ = (
        header.kid(),
        header.references_external_key(),
        header.has_b64(),
    );

    // Verification with the embedded key, whatever its members say.
    if let Some(jwk) = header.jwk() {
        if let Ok(jwk) = PublicJwk::from_json(jwk) {
            let _ = jwk.check_alg(header.alg());
            let _ = jws.verify(&VerifyingKey::new(&jwk));
        }
    }

    // A cap below the length refuses before any decoding.
    assert!(matches!(
        CompactJws::parse(&token, token.len() - 1),
        Err(JoseError::TooLong { .. })
    ));
});
