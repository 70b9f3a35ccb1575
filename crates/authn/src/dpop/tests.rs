//! DPoP proof checks with a frozen clock: the RFC 9449 Figure 13 proof and
//! its published failure cases (testdata/rfc-vectors.json, a verbatim copy
//! of the project's shared reference vectors), then proofs signed here with
//! ring for every other rule. RSA proofs reuse the jose test key.

use super::*;
use crate::nonce::NonceIssuer;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, ECDSA_P256_SHA256_ASN1_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Value};
use stella_envelope::encoding::{b64url_encode, DecodeError};
use stella_jose::testing::TestKey;
use stella_jose::{thumbprint_sha256, JwsPart, KeyProblem};

const VECTORS: &str = include_str!("testdata/rfc-vectors.json");
const RSA_TEST_KEY: &[u8] =
    include_bytes!("../../../../crates/jose/src/testdata/rsa2048-test-key.pk8");

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
        .to_owned()
}

/// The Figure 13 request, as published.
struct Fig13 {
    proof: String,
    token: String,
    jkt: String,
    now: u64,
    method: String,
    url: String,
}

fn fig13() -> Fig13 {
    let v = vectors();
    let base = "/rfc9449/resource_request_proof";
    let token = text(&v, &format!("{base}/authorization"))
        .strip_prefix("DPoP ")
        .unwrap()
        .to_owned();
    assert_eq!(token, text(&v, "/rfc9449/access_token"));
    Fig13 {
        proof: text(&v, &format!("{base}/proof")),
        token,
        jkt: text(&v, &format!("{base}/cnf_jkt")),
        now: v.pointer(&format!("{base}/now")).unwrap().as_u64().unwrap(),
        method: text(&v, &format!("{base}/method")),
        url: text(&v, &format!("{base}/url")),
    }
}

fn check(
    method: &str,
    target_uri: &str,
    proof: &str,
    access_token: &str,
    binding: &Binding,
    now: u64,
) -> Result<CheckedProof, DpopError> {
    let input = ProofInput {
        method,
        target_uri,
        proof,
        access_token,
        access_token_hash: None,
        binding,
        nonce: None,
    };
    check_proof(&input, &DpopRules::default(), now)
}

fn check_fig13(f: &Fig13, method: &str, url: &str, now: u64) -> Result<CheckedProof, DpopError> {
    check(
        method,
        url,
        &f.proof,
        &f.token,
        &Binding::Jkt(f.jkt.clone()),
        now,
    )
}

// --- RFC 9449 Figure 13 ------------------------------------------------

#[test]
fn rfc9449_figure_13_proof_passes_with_its_token_and_jkt() {
    let f = fig13();
    let checked = check_fig13(&f, &f.method, &f.url, f.now).unwrap();
    assert_eq!(checked.jkt(), f.jkt);
    assert_eq!(checked.jti(), "e1j3V_bKic8-LAEB");
    assert_eq!(checked.iat(), f.now);
    let mut input = f.jkt.as_bytes().to_vec();
    input.push(0);
    input.extend_from_slice(b"e1j3V_bKic8-LAEB");
    assert_eq!(
        checked.replay_key().as_slice(),
        ring::digest::digest(&ring::digest::SHA256, &input).as_ref()
    );
}

#[test]
fn rfc9449_figure_13_ath_is_the_published_token_hash() {
    let v = vectors();
    let hash = ring::digest::digest(
        &ring::digest::SHA256,
        text(&v, "/rfc9449/access_token").as_bytes(),
    );
    assert_eq!(b64url_encode(hash), text(&v, "/rfc9449/ath"));
}

#[test]
fn rfc9449_figure_13_passes_at_every_url_that_normalizes_to_its_htu() {
    let v = vectors();
    let f = fig13();
    let urls = v
        .pointer("/rfc9449/resource_request_proof/must_pass_after_normalization")
        .and_then(Value::as_array)
        .unwrap();
    assert!(!urls.is_empty());
    for url in urls {
        let url = url.as_str().unwrap();
        assert!(check_fig13(&f, &f.method, url, f.now).is_ok(), "{url}");
    }
}

#[test]
fn rfc9449_figure_13_must_fail_cases_fail_for_the_published_reason() {
    let v = vectors();
    let f = fig13();
    let must_fail = v
        .pointer("/rfc9449/resource_request_proof/must_fail")
        .and_then(Value::as_object)
        .unwrap();
    let mut seen = 0;
    for (case, reason) in must_fail {
        let reason = reason.as_str().unwrap();
        let result = match case.as_str() {
            "method POST" => check_fig13(&f, "POST", &f.url, f.now),
            "now + 3600" => check_fig13(&f, &f.method, &f.url, f.now + 3600),
            // Replay needs the store: replay.rs tests the second use.
            "second use" => continue,
            url => check_fig13(&f, &f.method, url, f.now),
        };
        let want = if reason.starts_with("htm") {
            DpopError::HtmMismatch
        } else if reason.starts_with("htu") {
            DpopError::HtuMismatch
        } else if reason.starts_with("stale iat") {
            DpopError::IatTooOld { max_age: 60 }
        } else {
            panic!("unexpected reason {reason:?}");
        };
        assert_eq!(result, Err(want), "{case}");
        seen += 1;
    }
    assert_eq!(seen, 4);
}

#[test]
fn rfc9449_figure_13_with_another_jkt_is_a_binding_mismatch() {
    let v = vectors();
    let f = fig13();
    for jkt in [
        text(&v, "/rfc9449/wrong_jkt_if_jwk_hashed_as_received"),
        // The right digest with a non-canonical last character.
        format!("{}J", &f.jkt[..f.jkt.len() - 1]),
        format!("{}=", f.jkt),
    ] {
        let err = check(
            &f.method,
            &f.url,
            &f.proof,
            &f.token,
            &Binding::Jkt(jkt.clone()),
            f.now,
        )
        .unwrap_err();
        assert_eq!(err, DpopError::JktMismatch, "{jkt}");
        assert!(err.is_binding_mismatch());
    }
}

#[test]
fn rfc9449_figure_13_with_another_token_is_an_ath_mismatch() {
    let f = fig13();
    let err = check(
        &f.method,
        &f.url,
        &f.proof,
        &format!("{}x", f.token),
        &Binding::Jkt(f.jkt.clone()),
        f.now,
    )
    .unwrap_err();
    assert_eq!(err, DpopError::AthMismatch);
    // A defect of the proof, not of the token (response.rs maps it).
    assert!(!err.is_binding_mismatch());
}

#[test]
fn rfc9449_figure_2_token_request_proof_has_no_ath_and_fails_at_a_resource() {
    let v = vectors();
    let base = "/rfc9449/token_request_proof";
    let err = check(
        &text(&v, &format!("{base}/method")),
        &text(&v, &format!("{base}/url")),
        &text(&v, &format!("{base}/proof")),
        &text(&v, "/rfc9449/access_token"),
        &Binding::Jkt(text(&v, "/rfc9449/jkt")),
        v.pointer(&format!("{base}/now")).unwrap().as_u64().unwrap(),
    )
    .unwrap_err();
    assert_eq!(err, DpopError::MissingClaim(ProofClaim::Ath));
}

#[test]
fn token_not_bound_to_a_dpop_key_is_refused_as_invalid_token() {
    let f = fig13();
    for binding in [
        Binding::Unbound,
        Binding::X5tS256(f.jkt.clone()),
        Binding::Unenforceable,
    ] {
        let err = check(&f.method, &f.url, &f.proof, &f.token, &binding, f.now).unwrap_err();
        assert_eq!(err, DpopError::TokenNotDpopBound, "{binding:?}");
        assert!(err.is_binding_mismatch());
    }
}

// --- Proofs signed here ------------------------------------------------

const NOW: u64 = 1_800_000_000;
const TARGET: &str = "https://api.example.com/orders/7";
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";

fn ath(token: &str) -> String {
    b64url_encode(ring::digest::digest(
        &ring::digest::SHA256,
        token.as_bytes(),
    ))
}

fn header(key: &TestKey) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()})
}

fn claims() -> Value {
    json!({"jti": "proof-1", "htm": "GET", "htu": TARGET, "iat": NOW, "ath": ath(TOKEN)})
}

fn jkt(key: &TestKey) -> String {
    thumbprint_sha256(&PublicJwk::from_json(key.jwk().as_object().unwrap()).unwrap())
}

fn both_keys() -> [TestKey; 2] {
    [TestKey::es256(None), TestKey::ed25519(None)]
}

/// Checks `proof` as a GET of [`TARGET`] with [`TOKEN`] bound to `key`.
fn check_with(key: &TestKey, proof: &str) -> Result<CheckedProof, DpopError> {
    check("GET", TARGET, proof, TOKEN, &Binding::Jkt(jkt(key)), NOW)
}

/// Signs `header` and `claims` with `key` and checks the result.
fn check_signed(key: &TestKey, header: &Value, claims: &Value) -> Result<CheckedProof, DpopError> {
    check_with(key, &key.token_with_header(header, claims))
}

/// Signs raw JSON texts (for inputs `json!` cannot express).
fn sign_raw(key: &TestKey, header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64url_encode(header), b64url_encode(payload));
    let signature = key.sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(signature))
}

fn with(mut value: Value, member: &str, new: Value) -> Value {
    value[member] = new;
    value
}

fn without(mut value: Value, member: &str) -> Value {
    value.as_object_mut().unwrap().remove(member);
    value
}

#[test]
fn es256_and_eddsa_proofs_made_with_ring_pass() {
    for key in both_keys() {
        let checked = check_signed(&key, &header(&key), &claims()).unwrap();
        assert_eq!(checked.jkt(), jkt(&key));
        assert_eq!(checked.jti(), "proof-1");
        assert_eq!(checked.iat(), NOW);
    }
}

#[test]
fn ps256_proof_passes_and_rs256_is_not_a_default_proof_alg() {
    let pair = RsaKeyPair::from_pkcs8(RSA_TEST_KEY).unwrap();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = json!({"kty": "RSA", "n": b64url_encode(&public.n), "e": b64url_encode(&public.e)});
    let jkt = thumbprint_sha256(&PublicJwk::from_json(jwk.as_object().unwrap()).unwrap());
    let sign = |alg: &str, padding: &'static dyn ring::signature::RsaEncoding| {
        let header = json!({"typ": "dpop+jwt", "alg": alg, "jwk": jwk});
        let input = format!(
            "{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims().to_string())
        );
        let mut signature = vec![0; pair.public().modulus_len()];
        pair.sign(
            padding,
            &SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .unwrap();
        format!("{input}.{}", b64url_encode(signature))
    };
    let binding = Binding::Jkt(jkt);
    let ps256 = sign("PS256", &RSA_PSS_SHA256);
    assert!(check("GET", TARGET, &ps256, TOKEN, &binding, NOW).is_ok());
    let rs256 = sign("RS256", &RSA_PKCS1_SHA256);
    assert_eq!(
        check("GET", TARGET, &rs256, TOKEN, &binding, NOW),
        Err(DpopError::AlgNotAllowed)
    );
}

#[test]
fn alg_outside_the_configured_list_is_refused() {
    let key = TestKey::ed25519(None);
    let proof = key.token_with_header(&header(&key), &claims());
    let rules = DpopRules::new(&[JwsAlg::Es256], DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW).unwrap();
    let binding = Binding::Jkt(jkt(&key));
    let input = ProofInput {
        method: "GET",
        target_uri: TARGET,
        proof: &proof,
        access_token: TOKEN,
        access_token_hash: None,
        binding: &binding,
        nonce: None,
    };
    assert_eq!(
        check_proof(&input, &rules, NOW),
        Err(DpopError::AlgNotAllowed)
    );
    assert!(check_proof(&input, &DpopRules::default(), NOW).is_ok());
}

#[test]
fn typ_other_than_dpop_jwt_is_refused_and_spelling_variants_pass() {
    for key in both_keys() {
        for typ in [
            json!("jwt"),
            json!("at+jwt"),
            json!("dpop"),
            json!(""),
            json!(1),
        ] {
            let result = check_signed(&key, &with(header(&key), "typ", typ.clone()), &claims());
            match typ {
                // A non-string typ is a malformed header, not a wrong one.
                Value::Number(_) => {
                    assert!(matches!(result, Err(DpopError::MalformedProof(_))), "{typ}")
                }
                _ => assert_eq!(result, Err(DpopError::TypMismatch), "{typ}"),
            }
        }
        assert_eq!(
            check_signed(&key, &without(header(&key), "typ"), &claims()),
            Err(DpopError::TypMismatch)
        );
        for typ in ["application/dpop+jwt", "DPoP+JWT", "Application/DPOP+jwt"] {
            assert!(
                check_signed(&key, &with(header(&key), "typ", json!(typ)), &claims()).is_ok(),
                "{typ}"
            );
        }
    }
}

#[test]
fn alg_none_and_symmetric_algs_are_refused() {
    let key = TestKey::es256(None);
    for alg in ["none", "HS256", "HS384", "HS512", "ES512", "es256"] {
        let proof = key.token_with_header(&with(header(&key), "alg", json!(alg)), &claims());
        assert_eq!(
            check_with(&key, &proof),
            Err(DpopError::AlgNotAllowed),
            "{alg}"
        );
    }
    // `none` with the empty signature it would really carry.
    let unsigned = format!(
        "{}.{}.",
        b64url_encode(with(header(&key), "alg", json!("none")).to_string()),
        b64url_encode(claims().to_string())
    );
    assert_eq!(
        check_with(&key, &unsigned),
        Err(DpopError::MalformedProof(JoseError::Malformed))
    );
}

#[test]
fn jwk_with_private_members_is_refused() {
    for key in both_keys() {
        let mut jwk = key.jwk().clone();
        jwk["d"] = json!(b64url_encode([7u8; 32]));
        assert_eq!(
            check_signed(&key, &with(header(&key), "jwk", jwk), &claims()),
            Err(DpopError::BadJwk(JoseError::PrivateKeyInJwk))
        );
    }
    let key = TestKey::es256(None);
    let oct = json!({"kty": "oct", "k": b64url_encode([1u8; 32])});
    assert_eq!(
        check_signed(&key, &with(header(&key), "jwk", oct), &claims()),
        Err(DpopError::BadJwk(JoseError::SymmetricJwk))
    );
}

#[test]
fn jwk_with_a_short_coordinate_is_refused() {
    let key = TestKey::es256(None);
    let mut jwk = key.jwk().clone();
    jwk["x"] = json!(b64url_encode([9u8; 31]));
    assert_eq!(
        check_signed(&key, &with(header(&key), "jwk", jwk), &claims()),
        Err(DpopError::BadJwk(JoseError::BadKey(KeyProblem::Length {
            member: "x",
            expected: 32
        })))
    );
}

#[test]
fn jwk_that_does_not_fit_the_alg_is_refused() {
    let es = TestKey::es256(None);
    let ed = TestKey::ed25519(None);
    // An Ed25519 key under ES256.
    let proof = es.token_with_header(&with(header(&es), "jwk", ed.jwk().clone()), &claims());
    assert!(matches!(
        check_with(&ed, &proof),
        Err(DpopError::BadJwk(JoseError::AlgKeyMismatch { .. }))
    ));
    // A key whose own metadata is for something else.
    let mut jwk = es.jwk().clone();
    jwk["use"] = json!("enc");
    assert!(matches!(
        check_signed(&es, &with(header(&es), "jwk", jwk), &claims()),
        Err(DpopError::BadJwk(JoseError::KeyUseMismatch { .. }))
    ));
}

#[test]
fn kid_without_jwk_is_refused() {
    for key in both_keys() {
        let header = with(without(header(&key), "jwk"), "kid", json!("k1"));
        assert_eq!(
            check_signed(&key, &header, &claims()),
            Err(DpopError::JwkMissing)
        );
    }
}

#[test]
fn external_key_references_are_refused_even_with_a_jwk() {
    let key = TestKey::es256(None);
    for (member, value) in [
        ("jku", json!("https://attacker.example/jwks")),
        ("x5u", json!("https://attacker.example/cert")),
        ("x5c", json!(["MIIB"])),
    ] {
        assert_eq!(
            check_signed(&key, &with(header(&key), member, value), &claims()),
            Err(DpopError::ExternalKeyReference),
            "{member}"
        );
    }
}

#[test]
fn der_encoded_ecdsa_signature_is_refused() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256",
        "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..65])});
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string()),
        b64url_encode(claims().to_string())
    );
    let der = pair.sign(&rng, input.as_bytes()).unwrap();
    let proof = format!("{input}.{}", b64url_encode(der.as_ref()));
    let jkt = thumbprint_sha256(&PublicJwk::from_json(jwk.as_object().unwrap()).unwrap());
    assert_eq!(
        check("GET", TARGET, &proof, TOKEN, &Binding::Jkt(jkt), NOW),
        Err(DpopError::BadSignature(JoseError::MalformedSignature {
            alg: JwsAlg::Es256
        }))
    );
}

#[test]
fn proof_signed_by_another_key_than_its_jwk_is_refused() {
    for key in both_keys() {
        let other = match key {
            TestKey::Es256(..) => TestKey::es256(None),
            TestKey::Ed25519(..) => TestKey::ed25519(None),
        };
        let proof = other.token_with_header(&header(&key), &claims());
        assert_eq!(
            check_with(&key, &proof),
            Err(DpopError::BadSignature(JoseError::BadSignature))
        );
    }
}

#[test]
fn tampered_payload_breaks_the_signature() {
    let key = TestKey::es256(None);
    let proof = key.token_with_header(&header(&key), &claims());
    let mut parts: Vec<String> = proof.split('.').map(str::to_owned).collect();
    parts[1] = b64url_encode(with(claims(), "htm", json!("POST")).to_string());
    assert_eq!(
        check(
            "POST",
            TARGET,
            &parts.join("."),
            TOKEN,
            &Binding::Jkt(jkt(&key)),
            NOW
        ),
        Err(DpopError::BadSignature(JoseError::BadSignature))
    );
}

#[test]
fn duplicate_claim_is_refused_even_when_signed() {
    let key = TestKey::es256(None);
    let header = header(&key).to_string();
    let good = format!(
        r#"{{"jti":"proof-1","htm":"GET","htu":"{TARGET}","iat":{NOW},"ath":"{}""#,
        ath(TOKEN)
    );
    for payload in [
        format!(r#"{good},"htm":"POST"}}"#),
        format!(r#"{good},"jti":"proof-2"}}"#),
        format!(r#"{good},"\u0068tm":"GET"}}"#),
    ] {
        assert_eq!(
            check_with(&key, &sign_raw(&key, &header, &payload)),
            Err(DpopError::MalformedProof(JoseError::Json {
                part: JwsPart::Payload,
                reason: DecodeError::DuplicateMember
            })),
            "{payload}"
        );
    }
    assert!(check_with(&key, &sign_raw(&key, &header, &format!("{good}}}"))).is_ok());
}

#[test]
fn duplicate_header_member_is_refused() {
    let key = TestKey::es256(None);
    let jwk = key.jwk().to_string();
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"alg":"ES256"}}"#);
    assert!(matches!(
        check_with(&key, &sign_raw(&key, &header, &claims().to_string())),
        Err(DpopError::MalformedProof(JoseError::Json {
            part: JwsPart::Header,
            ..
        }))
    ));
}

#[test]
fn iat_must_be_integer_seconds() {
    for key in both_keys() {
        for iat in [
            json!(NOW.to_string()),
            json!(NOW as f64 + 0.5),
            json!(-1),
            json!(null),
            json!([NOW]),
        ] {
            assert_eq!(
                check_signed(&key, &header(&key), &with(claims(), "iat", iat.clone())),
                Err(DpopError::ClaimType(ProofClaim::Iat)),
                "{iat}"
            );
        }
        assert_eq!(
            check_signed(&key, &header(&key), &without(claims(), "iat")),
            Err(DpopError::MissingClaim(ProofClaim::Iat))
        );
    }
}

#[test]
fn iat_window_is_sixty_seconds_back_and_five_forward_by_default() {
    let key = TestKey::es256(None);
    let at = |iat: u64| check_signed(&key, &header(&key), &with(claims(), "iat", json!(iat)));
    assert!(at(NOW - 60).is_ok());
    assert!(at(NOW + 5).is_ok());
    assert_eq!(at(NOW - 61), Err(DpopError::IatTooOld { max_age: 60 }));
    assert_eq!(at(NOW + 6), Err(DpopError::IatInFuture { skew: 5 }));
    assert_eq!(at(NOW + 3600), Err(DpopError::IatInFuture { skew: 5 }));
    assert_eq!(at(0), Err(DpopError::IatTooOld { max_age: 60 }));
    assert_eq!(at(u64::MAX), Err(DpopError::IatInFuture { skew: 5 }));
}

#[test]
fn configured_window_is_applied() {
    let key = TestKey::ed25519(None);
    let rules = DpopRules::new(
        &DEFAULT_PROOF_ALGS,
        Duration::from_secs(10),
        Duration::from_secs(0),
    )
    .unwrap();
    let binding = Binding::Jkt(jkt(&key));
    let at = |iat: u64| {
        let proof = key.token_with_header(&header(&key), &with(claims(), "iat", json!(iat)));
        let input = ProofInput {
            method: "GET",
            target_uri: TARGET,
            proof: &proof,
            access_token: TOKEN,
            access_token_hash: None,
            binding: &binding,
            nonce: None,
        };
        check_proof(&input, &rules, NOW)
    };
    assert!(at(NOW - 10).is_ok());
    assert!(at(NOW).is_ok());
    assert_eq!(at(NOW - 11), Err(DpopError::IatTooOld { max_age: 10 }));
    assert_eq!(at(NOW + 1), Err(DpopError::IatInFuture { skew: 0 }));
}

#[test]
fn jti_longer_than_256_bytes_is_refused() {
    for key in both_keys() {
        let jti = |j: Value| check_signed(&key, &header(&key), &with(claims(), "jti", j));
        assert!(jti(json!("a".repeat(256))).is_ok());
        assert_eq!(
            jti(json!("a".repeat(257))),
            Err(DpopError::JtiTooLong { max: 256 })
        );
        // Bytes, not characters: 129 two-byte characters are 258 bytes.
        assert_eq!(
            jti(json!("\u{e9}".repeat(129))),
            Err(DpopError::JtiTooLong { max: 256 })
        );
        assert_eq!(jti(json!("")), Err(DpopError::JtiEmpty));
        assert_eq!(jti(json!(7)), Err(DpopError::ClaimType(ProofClaim::Jti)));
        assert_eq!(
            check_signed(&key, &header(&key), &without(claims(), "jti")),
            Err(DpopError::MissingClaim(ProofClaim::Jti))
        );
    }
}

#[test]
fn ath_is_required_and_must_hash_the_token_as_sent() {
    for key in both_keys() {
        assert_eq!(
            check_signed(&key, &header(&key), &without(claims(), "ath")),
            Err(DpopError::MissingClaim(ProofClaim::Ath))
        );
        let padded = format!("{}=", ath(TOKEN));
        let non_canonical = {
            let a = ath(TOKEN);
            // 43 chars: the last carries 2 unused bits; flip one of them.
            let last = a.as_bytes()[42];
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let index = alphabet.iter().position(|c| *c == last).unwrap();
            let flipped = alphabet[index ^ 1] as char;
            format!("{}{flipped}", &a[..42])
        };
        for bad in [
            json!(ath("another token")),
            json!(ath(&format!("{TOKEN} "))),
            json!(padded),
            json!(non_canonical),
            json!(b64url_encode(TOKEN)),
            json!(""),
        ] {
            assert_eq!(
                check_signed(&key, &header(&key), &with(claims(), "ath", bad.clone())),
                Err(DpopError::AthMismatch),
                "{bad}"
            );
        }
        assert_eq!(
            check_signed(&key, &header(&key), &with(claims(), "ath", json!(1))),
            Err(DpopError::ClaimType(ProofClaim::Ath))
        );
    }
}

#[test]
fn proof_key_other_than_the_tokens_cnf_jkt_is_a_binding_mismatch() {
    for key in both_keys() {
        let other = TestKey::es256(None);
        let proof = key.token_with_header(&header(&key), &claims());
        let err = check(
            "GET",
            TARGET,
            &proof,
            TOKEN,
            &Binding::Jkt(jkt(&other)),
            NOW,
        )
        .unwrap_err();
        assert_eq!(err, DpopError::JktMismatch);
        assert!(err.is_binding_mismatch());
    }
}

#[test]
fn htm_must_equal_the_method_exactly() {
    let key = TestKey::es256(None);
    for htm in ["POST", "get", "Get", "GET ", ""] {
        assert_eq!(
            check_signed(&key, &header(&key), &with(claims(), "htm", json!(htm))),
            Err(DpopError::HtmMismatch),
            "{htm:?}"
        );
    }
    assert_eq!(
        check_signed(&key, &header(&key), &without(claims(), "htm")),
        Err(DpopError::MissingClaim(ProofClaim::Htm))
    );
}

#[test]
fn htu_with_another_host_scheme_or_port_is_refused() {
    let key = TestKey::es256(None);
    for htu in [
        "https://attacker.example/orders/7",
        "https://api.example.com.attacker.example/orders/7",
        "http://api.example.com/orders/7",
        "https://api.example.com:8443/orders/7",
        "https://api.example.com/orders/8",
        "https://api.example.com/Orders/7",
        "https://api.example.com/orders/7/",
        "https://api.example.com",
        "/orders/7",
        "api.example.com/orders/7",
        "",
    ] {
        assert_eq!(
            check_signed(&key, &header(&key), &with(claims(), "htu", json!(htu))),
            Err(DpopError::HtuMismatch),
            "{htu:?}"
        );
    }
    assert_eq!(
        check_signed(&key, &header(&key), &without(claims(), "htu")),
        Err(DpopError::MissingClaim(ProofClaim::Htu))
    );
}

#[test]
fn htu_with_an_encoded_slash_never_matches_a_slash() {
    let key = TestKey::es256(None);
    let proof =
        |htu: &str| key.token_with_header(&header(&key), &with(claims(), "htu", json!(htu)));
    let binding = Binding::Jkt(jkt(&key));
    // Proof says %2F, request path has /.
    assert_eq!(
        check(
            "GET",
            "https://api.example.com/a/b",
            &proof("https://api.example.com/a%2Fb"),
            TOKEN,
            &binding,
            NOW
        ),
        Err(DpopError::HtuMismatch)
    );
    // Proof says /, target carries %2F (the router refuses such paths; the
    // check fails closed all the same).
    assert_eq!(
        check(
            "GET",
            "https://api.example.com/a%2Fb",
            &proof("https://api.example.com/a/b"),
            TOKEN,
            &binding,
            NOW
        ),
        Err(DpopError::TargetInvalid)
    );
}

#[test]
fn htu_differing_only_in_query_fragment_case_of_host_or_default_port_passes() {
    let key = TestKey::ed25519(None);
    for (htu, target) in [
        ("https://api.example.com/orders/7?a=1", TARGET),
        ("https://api.example.com/orders/7#top", TARGET),
        (
            "https://api.example.com/orders/7",
            "https://api.example.com/orders/7?a=1&b=2",
        ),
        (
            "https://api.example.com/orders/7?b=2",
            "https://api.example.com/orders/7?a=1",
        ),
        ("HTTPS://API.Example.COM:443/orders/7", TARGET),
        ("https://api.example.com/orders/./x/../7", TARGET),
        ("https://api.example.com/%6Frders/7", TARGET),
        (
            "http://api.example.com:80/orders/7",
            "http://api.example.com/orders/7",
        ),
    ] {
        let proof = key.token_with_header(&header(&key), &with(claims(), "htu", json!(htu)));
        assert!(
            check("GET", target, &proof, TOKEN, &Binding::Jkt(jkt(&key)), NOW).is_ok(),
            "{htu} vs {target}"
        );
    }
}

#[test]
fn proof_over_the_length_cap_is_refused_before_parsing() {
    let key = TestKey::es256(None);
    let big = with(claims(), "pad", json!("x".repeat(DEFAULT_MAX_PROOF_LEN)));
    assert_eq!(
        check_signed(&key, &header(&key), &big),
        Err(DpopError::ProofTooLong {
            max: DEFAULT_MAX_PROOF_LEN
        })
    );
    assert_eq!(
        check_with(&key, "not a jws"),
        Err(DpopError::MalformedProof(JoseError::Malformed))
    );
}

#[test]
fn unknown_claims_are_ignored() {
    let key = TestKey::es256(None);
    let extra = with(claims(), "extra", json!({"nested": [1, 2]}));
    assert!(check_signed(&key, &header(&key), &extra).is_ok());
}

#[test]
fn replay_key_depends_on_key_and_jti_not_on_proof_bytes() {
    let key = TestKey::es256(None);
    // Two different proofs (ECDSA is randomized, and iat differs) with one jti.
    let a = check_signed(&key, &header(&key), &claims()).unwrap();
    let b = check_signed(&key, &header(&key), &with(claims(), "iat", json!(NOW - 1))).unwrap();
    assert_eq!(a.replay_key(), b.replay_key());
    let c = check_signed(
        &key,
        &header(&key),
        &with(claims(), "jti", json!("proof-2")),
    )
    .unwrap();
    assert_ne!(a.replay_key(), c.replay_key());
    let other = TestKey::es256(None);
    let d = check_signed(&other, &header(&other), &claims()).unwrap();
    assert_ne!(a.replay_key(), d.replay_key());
}

#[test]
fn route_with_nonces_requires_a_valid_nonce() {
    let key = TestKey::es256(None);
    let issuer = NonceIssuer::new(&[3u8; 32], Duration::from_secs(60)).unwrap();
    let authority = NonceIssuer::new(&[4u8; 32], Duration::from_secs(60)).unwrap();
    let binding = Binding::Jkt(jkt(&key));
    let run = |claims: &Value| {
        let proof = key.token_with_header(&header(&key), claims);
        let input = ProofInput {
            method: "GET",
            target_uri: TARGET,
            proof: &proof,
            access_token: TOKEN,
            access_token_hash: None,
            binding: &binding,
            nonce: Some(&issuer),
        };
        check_proof(&input, &DpopRules::default(), NOW)
    };
    let missing = run(&claims()).unwrap_err();
    assert_eq!(missing, DpopError::NonceMissing);
    assert!(missing.wants_nonce());
    assert!(!missing.is_binding_mismatch());
    assert!(run(&with(claims(), "nonce", json!(issuer.issue(NOW)))).is_ok());
    assert!(run(&with(claims(), "nonce", json!(issuer.issue(NOW - 60)))).is_ok());
    for (nonce, why) in [
        (json!(authority.issue(NOW)), NonceError::BadTag),
        (json!(issuer.issue(NOW - 120)), NonceError::Expired),
        (json!("abc"), NonceError::Malformed),
        (json!(5), NonceError::Malformed),
    ] {
        let err = run(&with(claims(), "nonce", nonce.clone())).unwrap_err();
        assert_eq!(err, DpopError::NonceInvalid(why), "{nonce}");
        assert!(err.wants_nonce());
    }
}

#[test]
fn nonce_is_checked_only_after_the_binding() {
    let key = TestKey::es256(None);
    let other = TestKey::es256(None);
    let issuer = NonceIssuer::new(&[3u8; 32], Duration::from_secs(60)).unwrap();
    let proof = key.token_with_header(&header(&key), &claims());
    let binding = Binding::Jkt(jkt(&other));
    let input = ProofInput {
        method: "GET",
        target_uri: TARGET,
        proof: &proof,
        access_token: TOKEN,
        access_token_hash: None,
        binding: &binding,
        nonce: Some(&issuer),
    };
    assert_eq!(
        check_proof(&input, &DpopRules::default(), NOW),
        Err(DpopError::JktMismatch)
    );
}

#[test]
fn every_error_code_is_listed_and_messages_never_echo_input() {
    let marker = "SECRET-MARKER-9f3a";
    let errors = [
        DpopError::TokenNotDpopBound,
        DpopError::ProofTooLong { max: 1 },
        DpopError::MalformedProof(JoseError::Malformed),
        DpopError::TypMismatch,
        DpopError::AlgNotAllowed,
        DpopError::ExternalKeyReference,
        DpopError::JwkMissing,
        DpopError::BadJwk(JoseError::PrivateKeyInJwk),
        DpopError::BadSignature(JoseError::BadSignature),
        DpopError::MissingClaim(ProofClaim::Jti),
        DpopError::MissingClaim(ProofClaim::Htm),
        DpopError::MissingClaim(ProofClaim::Htu),
        DpopError::MissingClaim(ProofClaim::Iat),
        DpopError::MissingClaim(ProofClaim::Ath),
        DpopError::MissingClaim(ProofClaim::Nonce),
        DpopError::ClaimType(ProofClaim::Iat),
        DpopError::JtiEmpty,
        DpopError::JtiTooLong { max: 256 },
        DpopError::HtmMismatch,
        DpopError::HtuMismatch,
        DpopError::TargetInvalid,
        DpopError::IatTooOld { max_age: 60 },
        DpopError::IatInFuture { skew: 5 },
        DpopError::AthMismatch,
        DpopError::NonceMissing,
        DpopError::NonceInvalid(NonceError::BadTag),
        DpopError::JktMismatch,
    ];
    let mut codes = std::collections::HashSet::new();
    for err in errors {
        assert!(DpopError::CODES.contains(&err.code()), "{err:?}");
        codes.insert(err.code());
        let message = err.to_string();
        assert_eq!(message, message.to_lowercase(), "{err:?}");
    }
    assert_eq!(codes.len(), DpopError::CODES.len());

    // A refused proof full of the marker: the error text has none of it.
    let key = TestKey::es256(None);
    let claims = json!({"jti": marker, "htm": marker, "htu": marker, "iat": NOW, "ath": marker});
    let err = check_signed(&key, &header(&key), &claims).unwrap_err();
    assert!(!err.to_string().contains(marker));
    assert!(!format!("{err:?}").contains(marker));
}

#[test]
fn proof_input_debug_hides_token_and_proof() {
    let binding = Binding::Jkt("jkt".into());
    let input = ProofInput {
        method: "GET",
        target_uri: TARGET,
        proof: "PROOF-MARKER",
        access_token: "TOKEN-MARKER",
        access_token_hash: None,
        binding: &binding,
        nonce: None,
    };
    let text = format!("{input:?}");
    assert!(!text.contains("PROOF-MARKER") && !text.contains("TOKEN-MARKER"));
}

#[test]
fn rules_are_validated_and_give_the_replay_ttl() {
    let rules = DpopRules::default();
    assert_eq!(rules.algs(), &DEFAULT_PROOF_ALGS);
    assert_eq!(rules.algs_challenge(), "ES256 ES384 EdDSA PS256");
    assert_eq!(rules.replay_ttl(), Duration::from_secs(66));
    assert_eq!(
        DpopRules::new(&[], DEFAULT_MAX_AGE, DEFAULT_MAX_FUTURE_SKEW),
        Err(DpopRulesError::NoAlgs)
    );
    assert_eq!(
        DpopRules::new(&DEFAULT_PROOF_ALGS, Duration::ZERO, DEFAULT_MAX_FUTURE_SKEW),
        Err(DpopRulesError::MaxAge)
    );
    assert_eq!(
        DpopRules::new(
            &DEFAULT_PROOF_ALGS,
            DEFAULT_MAX_AGE,
            Duration::from_secs(301)
        ),
        Err(DpopRulesError::FutureSkew)
    );
    let deduped = DpopRules::new(
        &[JwsAlg::Es256, JwsAlg::Es256, JwsAlg::EdDsa],
        DEFAULT_MAX_AGE,
        DEFAULT_MAX_FUTURE_SKEW,
    )
    .unwrap();
    assert_eq!(deduped.algs(), &[JwsAlg::Es256, JwsAlg::EdDsa]);
    assert_eq!(
        DpopRules::default().with_max_proof_len(10),
        Err(DpopRulesError::MaxProofLen)
    );
}
