//! DPoP proof checking at a resource (`authn::dpop::check_proof`).
//!
//! Input: a mode byte, then the mode's text.
//!
//! - Mode byte even: the rest is the `DPoP` header value, checked against
//!   the request of RFC 9449 figure 13 (its access token, `cnf.jkt`,
//!   method, URL and time). The RFC's proof passes; mutations exercise
//!   every parsing and refusal path before the signature.
//! - Mode byte odd: the rest is `header_json LF payload_json`, signed here
//!   with a fixed Ed25519 key, so the fuzzer gets past the signature and
//!   reaches the claim checks. Before signing, the placeholders `"$JWK"`
//!   (the key's public JWK), `$ATH` (the token hash), `$NONCE` (a current
//!   server nonce) and `$NOW` are replaced. The request is `POST
//!   https://api.example.test/orders/7?x=1` with a token bound to that
//!   key; bit 1 of the mode byte asks for a server nonce, bit 2 binds the
//!   token to another key.
//!
//! Besides "never panics": an accepted proof names the bound key and a
//! `jti` of 1 to 256 bytes, has an `iat` inside the window, gives the same
//! replay key for the same proof, and is refused for another method, for
//! another URL, for another token, for an unbound token and, when nonces
//! are on, without the nonce check being satisfiable by a stale nonce.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;
use std::sync::OnceLock;
use std::time::Duration;
use stella_envelope::encoding::b64url_encode;
use stella_authn::dpop::{check_proof, DpopError, DpopRules, ProofInput, MAX_JTI_LEN};
use stella_authn::nonce::{NonceCheck, NonceIssuer};
use stella_core::identity::Binding;
use stella_jose::{thumbprint_sha256, JsonObject, PublicJwk};

// RFC 9449 figure 13 (crates/authn/src/dpop/testdata/rfc-vectors.json).
const RFC_NOW: u64 = 1_562_262_618;
const RFC_METHOD: &str = "GET";
const RFC_URL: &str = "https://resource.example.org/protectedresource";
const RFC_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

const NOW: u64 = 1_767_225_600;
const METHOD: &str = "POST";
const URL: &str = "https://api.example.test/orders/7?x=1";
const TOKEN: &str = "fuzz-access-token.bound-to-the-ed25519-key";
const NONCE_SECRET: &[u8; 32] = b"fuzz-nonce-secret-0123456789abcd";
const NONCE_STEP: u64 = 60;

struct Fixture {
    key: Ed25519KeyPair,
    jwk: String,
    jkt: String,
    ath: String,
    nonces: NonceIssuer,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let key = Ed25519KeyPair::from_seed_unchecked(&[7u8; 32]).expect("ed25519 seed");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519",
            "x": b64url_encode(key.public_key().as_ref())});
        let object: JsonObject = jwk.as_object().cloned().expect("object");
        let jkt = thumbprint_sha256(&PublicJwk::from_json(&object).expect("jwk"));
        Fixture {
            key,
            jwk: jwk.to_string(),
            jkt,
            ath: b64url_encode(digest(&SHA256, TOKEN.as_bytes())),
            nonces: NonceIssuer::new(NONCE_SECRET, Duration::from_secs(NONCE_STEP))
                .expect("nonce issuer"),
        }
    })
}

fn sign(f: &Fixture, text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text)
        .replace("\"$JWK\"", &f.jwk)
        .replace("$ATH", &f.ath)
        .replace("$NONCE", &f.nonces.issue(NOW))
        .replace("$NOW", &NOW.to_string());
    let (header, payload) = text.split_once('\n').unwrap_or((&text, ""));
    let input = format!("{}.{}", b64url_encode(header), b64url_encode(payload));
    let signature = f.key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(signature.as_ref()))
}

/// A nonce check that accepts nothing: with it, no proof passes.
struct NoNonce;
impl NonceCheck for NoNonce {
    fn check(&self, _: &str, _: u64) -> Result<(), stella_authn::nonce::NonceError> {
        Err(stella_authn::nonce::NonceError::BadTag)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let rules = DpopRules::default();
    let f = fixture();
    let (proof, method, url, token, binding, nonce, now);
    let signed;
    if mode % 2 == 0 {
        let Ok(text) = std::str::from_utf8(rest) else {
            return;
        };
        proof = text;
        (method, url, token, now) = (RFC_METHOD, RFC_URL, RFC_TOKEN, RFC_NOW);
        binding = Binding::Jkt(RFC_JKT.into());
        nonce = None;
    } else {
        signed = sign(f, rest);
        proof = &signed;
        (method, url, token, now) = (METHOD, URL, TOKEN, NOW);
        binding = if mode & 4 == 0 {
            Binding::Jkt(f.jkt.clone())
        } else {
            Binding::Jkt(RFC_JKT.into())
        };
        nonce = (mode & 2 != 0).then_some(&f.nonces as &dyn NonceCheck);
    }
    let input = ProofInput {
        method,
        target_uri: url,
        proof,
        access_token: token,
        access_token_hash: None,
        binding: &binding,
        nonce,
    };
    let checked = match check_proof(&input, &rules, now) {
        Ok(checked) => checked,
        Err(e) => {
            let _ = (
                e.code(),
                e.to_string(),
                stella_gateway::response::Refusal::from(&e),
                e.wants_nonce(),
            );
            return;
        }
    };

    let Binding::Jkt(jkt) = &binding else {
        unreachable!("only jkt bindings are built")
    };
    assert_eq!(checked.jkt(), jkt);
    assert!(!checked.jti().is_empty() && checked.jti().len() <= MAX_JTI_LEN);
    let window = now - rules.max_age().as_secs()..=now + rules.max_future_skew().as_secs();
    assert!(
        window.contains(&checked.iat()),
        "iat {} outside the window",
        checked.iat()
    );
    assert_eq!(
        check_proof(&input, &rules, now).map(|c| c.replay_key()),
        Ok(checked.replay_key())
    );

    let refused = |changed: ProofInput<'_>| check_proof(&changed, &rules, now).is_err();
    let other_method = if method == "GET" { "PUT" } else { "GET" };
    assert!(
        refused(ProofInput {
            method: other_method,
            ..input
        }),
        "another method passed"
    );
    assert!(refused(ProofInput {
        target_uri: "https://api.example.test/admin",
        ..input
    }));
    assert!(refused(ProofInput {
        access_token: "another-token",
        access_token_hash: None,
        ..input
    }));
    assert!(matches!(
        check_proof(
            &ProofInput {
                binding: &Binding::Unbound,
                ..input
            },
            &rules,
            now
        ),
        Err(DpopError::TokenNotDpopBound)
    ));
    if nonce.is_some() {
        assert!(refused(ProofInput {
            nonce: Some(&NoNonce as &dyn NonceCheck),
            ..input
        }));
        // Two steps later the nonce the proof carries has expired.
        assert!(check_proof(&input, &rules, now + 2 * NONCE_STEP).is_err());
    }
});
