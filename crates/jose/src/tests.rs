//! Published vectors (testdata/rfc-vectors.json) and sign/verify round trips
//! across the whole JOSE layer. Keys for round trips are generated with ring
//! per test, except RSA: ring cannot generate RSA keys, so
//! testdata/rsa2048-test-key.pk8 is a PKCS#8 DER key made once with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER`
//! (OpenSSL 3.0 wrote PKCS#1, so it went through
//! `openssl pkcs8 -topk8 -nocrypt -inform DER -outform DER`) and committed.
//! It signs nothing but these tests.

use super::*;
use proptest::prelude::*;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents,
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Value};
use stella_envelope::encoding::{b64url_decode, b64url_encode};

const VECTORS: &str = include_str!("testdata/rfc-vectors.json");
const RSA_TEST_KEY: &[u8] = include_bytes!("testdata/rsa2048-test-key.pk8");
const MAX_LEN: usize = 8192;

fn vectors() -> Value {
    serde_json::from_str(VECTORS).unwrap()
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer}"))
}

fn object(v: &Value) -> JsonObject {
    v.as_object().cloned().expect("a json object")
}

fn jwk_at(v: &Value, pointer: &str) -> Result<PublicJwk, JoseError> {
    PublicJwk::from_json(&object(v.pointer(pointer).expect("vector present")))
}

/// `header.payload.signature` with `sign` applied to the signing input.
fn signed_token(header: &Value, payload: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string()),
        b64url_encode(payload.to_string())
    );
    let signature = sign(input.as_bytes());
    format!("{input}.{}", b64url_encode(signature))
}

fn claims() -> Value {
    json!({"iss": "https://authority.example", "sub": "alice", "exp": 1_700_000_000})
}

struct Ec {
    pair: EcdsaKeyPair,
    jwk: PublicJwk,
}

fn ec_key(alg: &'static ring::signature::EcdsaSigningAlgorithm, crv: &str) -> Ec {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let len = (point.len() - 1) / 2;
    let jwk = PublicJwk::from_json(&object(&json!({
        "kty": "EC",
        "crv": crv,
        "x": b64url_encode(&point[1..=len]),
        "y": b64url_encode(&point[1 + len..]),
    })))
    .unwrap();
    Ec { pair, jwk }
}

fn ed25519_key() -> (Ed25519KeyPair, PublicJwk) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwk = PublicJwk::from_json(&object(&json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": b64url_encode(pair.public_key().as_ref()),
    })))
    .unwrap();
    (pair, jwk)
}

/// The committed test key and its public JWK members (`kty`, `n`, `e`).
fn rsa_key_json() -> (RsaKeyPair, Value) {
    let pair = RsaKeyPair::from_pkcs8(RSA_TEST_KEY).unwrap();
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let jwk = json!({
        "kty": "RSA",
        "n": b64url_encode(&public.n),
        "e": b64url_encode(&public.e),
    });
    (pair, jwk)
}

fn rsa_key() -> (RsaKeyPair, PublicJwk) {
    let (pair, jwk) = rsa_key_json();
    (pair, PublicJwk::from_json(&object(&jwk)).unwrap())
}

fn rsa_sign(
    pair: &RsaKeyPair,
    padding: &'static dyn ring::signature::RsaEncoding,
    input: &[u8],
) -> Vec<u8> {
    let mut signature = vec![0; pair.public().modulus_len()];
    pair.sign(padding, &SystemRandom::new(), input, &mut signature)
        .unwrap();
    signature
}

fn parse_and_verify(token: &str, jwk: &PublicJwk) -> Result<CompactJws, JoseError> {
    let jws = CompactJws::parse(token, MAX_LEN)?;
    jws.verify(&VerifyingKey::new(jwk))?;
    Ok(jws)
}

// --- Published vectors -------------------------------------------------

#[test]
fn rfc9449_example_jwk_thumbprint_is_the_published_jkt() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc9449/example_public_jwk").unwrap();
    assert_eq!(
        thumbprint::canonical_json(&jwk),
        text(&v, "/rfc9449/thumbprint_canonical_input")
    );
    assert_eq!(thumbprint_sha256(&jwk), text(&v, "/rfc9449/jkt"));
    assert!(thumbprint_matches(&jwk, text(&v, "/rfc9449/jkt")));
}

#[test]
fn hashing_the_rfc9449_jwk_as_received_gives_the_wrong_thumbprint() {
    let v = vectors();
    let as_received = text(&v, "/rfc9449/example_public_jwk_as_received");
    let naive = b64url_encode(digest(&SHA256, as_received.as_bytes()));
    assert_eq!(
        naive,
        text(&v, "/rfc9449/wrong_jkt_if_jwk_hashed_as_received")
    );

    // Parsing the same bytes (member order kty, x, y, crv) still gives the
    // canonical thumbprint, and the naive value does not match it.
    let map: JsonObject = serde_json::from_str(as_received).unwrap();
    let jwk = PublicJwk::from_json(&map).unwrap();
    assert_eq!(thumbprint_sha256(&jwk), text(&v, "/rfc9449/jkt"));
    assert!(!thumbprint_matches(&jwk, &naive));
}

#[test]
fn rfc9449_figure_13_proof_verifies_with_its_embedded_jwk() {
    let v = vectors();
    let proof = text(&v, "/rfc9449/resource_request_proof/proof");
    let jws = CompactJws::parse(proof, MAX_LEN).unwrap();
    let header = jws.header();
    assert_eq!(header.alg(), JwsAlg::Es256);
    assert!(typ_matches(header.typ().unwrap(), "dpop+jwt"));
    let jwk = PublicJwk::from_json(header.jwk().unwrap()).unwrap();
    assert_eq!(
        verify(header.alg(), &jwk, jws.signing_input(), jws.signature()),
        Ok(())
    );
    assert_eq!(thumbprint_sha256(&jwk), text(&v, "/rfc9449/jkt"));
    let payload: Value = serde_json::from_slice(jws.payload()).unwrap();
    assert_eq!(payload["htm"], "GET");
    assert_eq!(payload["ath"], text(&v, "/rfc9449/ath"));
}

#[test]
fn rfc9449_figure_2_proof_verifies_with_its_embedded_jwk() {
    let v = vectors();
    let proof = text(&v, "/rfc9449/token_request_proof/proof");
    let jws = CompactJws::parse(proof, MAX_LEN).unwrap();
    let jwk = PublicJwk::from_json(jws.header().jwk().unwrap()).unwrap();
    assert_eq!(jws.verify(&VerifyingKey::new(&jwk)), Ok(()));
}

#[test]
fn rfc9449_signature_moved_to_another_proof_fails() {
    let v = vectors();
    let fig13 =
        CompactJws::parse(text(&v, "/rfc9449/resource_request_proof/proof"), MAX_LEN).unwrap();
    let fig2 = CompactJws::parse(text(&v, "/rfc9449/token_request_proof/proof"), MAX_LEN).unwrap();
    let jwk = PublicJwk::from_json(fig13.header().jwk().unwrap()).unwrap();
    assert_eq!(
        verify(JwsAlg::Es256, &jwk, fig2.signing_input(), fig13.signature()),
        Err(JoseError::BadSignature)
    );
}

#[test]
fn rfc8037_ed25519_thumbprint_is_the_published_value() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc7638/ed25519_rfc8037_jwk").unwrap();
    assert_eq!(
        thumbprint_sha256(&jwk),
        text(&v, "/rfc7638/ed25519_rfc8037_thumbprint")
    );
}

#[test]
fn rfc8037_ed25519_example_signature_verifies() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc7638/ed25519_rfc8037_jwk").unwrap();
    let jws = text(&v, "/rfc8037/jws");
    let (input, signature) = jws.rsplit_once('.').unwrap();
    let signature = b64url_decode(signature).unwrap();
    assert_eq!(
        verify(JwsAlg::EdDsa, &jwk, input.as_bytes(), &signature),
        Ok(())
    );
    // The payload ("Example of Ed25519 signing") is not a JSON object, so
    // it is not a token the gateway would ever parse.
    assert!(matches!(
        CompactJws::parse(jws, MAX_LEN),
        Err(JoseError::Json {
            part: JwsPart::Payload,
            ..
        })
    ));
}

#[test]
fn rfc7638_rsa_example_thumbprint_is_the_published_value() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc7638/rsa_example_jwk").unwrap();
    assert_eq!(jwk.kind(), KeyKind::Rsa);
    assert_eq!(jwk.kid(), Some("2011-04-29"));
    assert_eq!(jwk.alg(), Some("RS256"));
    assert_eq!(
        thumbprint_sha256(&jwk),
        text(&v, "/rfc7638/rsa_example_thumbprint")
    );
}

#[test]
fn leading_zero_p256_key_thumbprint_hashes_the_full_32_octet_x() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc7638/leading_zero_x_p256/jwk").unwrap();
    let x = b64url_decode(text(&v, "/rfc7638/leading_zero_x_p256/jwk/x")).unwrap();
    assert_eq!((x.len(), x[0]), (32, 0));
    assert_eq!(
        thumbprint_sha256(&jwk),
        text(&v, "/rfc7638/leading_zero_x_p256/thumbprint")
    );
}

#[test]
fn leading_zero_p256_key_with_short_x_is_refused_not_hashed() {
    let v = vectors();
    let mut jwk = object(v.pointer("/rfc7638/leading_zero_x_p256/jwk").unwrap());
    let short = text(&v, "/rfc7638/leading_zero_x_p256/invalid_short_x");
    assert_eq!(b64url_decode(short).unwrap().len(), 31);
    jwk.insert("x".to_owned(), Value::String(short.to_owned()));
    assert_eq!(
        PublicJwk::from_json(&jwk),
        Err(JoseError::BadKey(KeyProblem::Length {
            member: "x",
            expected: 32
        }))
    );
}

#[test]
fn leading_zero_p256_key_verifies_signatures_made_with_scalar_379() {
    let v = vectors();
    let jwk = jwk_at(&v, "/rfc7638/leading_zero_x_p256/jwk").unwrap();
    let mut scalar = [0u8; 32];
    scalar[30..].copy_from_slice(&379u16.to_be_bytes());
    let mut point = vec![0x04];
    point.extend(b64url_decode(text(&v, "/rfc7638/leading_zero_x_p256/jwk/x")).unwrap());
    point.extend(b64url_decode(text(&v, "/rfc7638/leading_zero_x_p256/jwk/y")).unwrap());
    // ring refuses a public key that does not belong to the scalar, so this
    // also checks the vector itself.
    let pair = EcdsaKeyPair::from_private_key_and_public_key(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &scalar,
        &point,
        &SystemRandom::new(),
    )
    .unwrap();
    let token = signed_token(&json!({"alg": "ES256"}), &claims(), |input| {
        pair.sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    assert!(parse_and_verify(&token, &jwk).is_ok());
}

#[test]
fn off_curve_point_fails_verification() {
    let v = vectors();
    let proof = text(&v, "/rfc9449/resource_request_proof/proof");
    let jws = CompactJws::parse(proof, MAX_LEN).unwrap();
    let mut jwk = jws.header().jwk().unwrap().clone();
    let mut y = b64url_decode(jwk["y"].as_str().unwrap()).unwrap();
    y[31] ^= 0x01;
    jwk.insert("y".to_owned(), Value::String(b64url_encode(&y)));
    // (x, y ^ 1) does not satisfy y^2 = x^3 - 3x + b mod p (checked
    // offline). Parsing does not check the curve equation; ring does, on
    // every verify. This cannot tell ring's point check from an ordinary
    // mismatch, but it pins the outcome: such a key verifies nothing.
    let off_curve = PublicJwk::from_json(&jwk).unwrap();
    assert_eq!(
        jws.verify(&VerifyingKey::new(&off_curve)),
        Err(JoseError::BadSignature)
    );
    // The all-zero "point" is refused the same way.
    let zero = PublicJwk::from_json(&object(&json!({"kty": "EC", "crv": "P-256",
        "x": b64url_encode([0; 32]), "y": b64url_encode([0; 32])})))
    .unwrap();
    assert_eq!(
        jws.verify(&VerifyingKey::new(&zero)),
        Err(JoseError::BadSignature)
    );
}

// --- Round trips with generated keys -------------------------------------

#[test]
fn es256_token_signed_with_a_generated_key_verifies() {
    let key = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"});
    let token = signed_token(&header, &claims(), |input| {
        key.pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    let jws = parse_and_verify(&token, &key.jwk).unwrap();
    assert_eq!(jws.header().kid(), Some("k1"));
    let payload: Value = serde_json::from_slice(jws.payload()).unwrap();
    assert_eq!(payload, claims());
}

#[test]
fn es384_token_signed_with_a_generated_key_verifies() {
    let key = ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384");
    assert_eq!(key.jwk.kind(), KeyKind::EcP384);
    let token = signed_token(&json!({"alg": "ES384"}), &claims(), |input| {
        key.pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    assert!(parse_and_verify(&token, &key.jwk).is_ok());
}

#[test]
fn eddsa_token_signed_with_a_generated_key_verifies() {
    let (pair, jwk) = ed25519_key();
    let token = signed_token(&json!({"alg": "EdDSA"}), &claims(), |input| {
        pair.sign(input).as_ref().to_vec()
    });
    assert!(parse_and_verify(&token, &jwk).is_ok());
}

#[test]
fn rs256_and_ps256_tokens_signed_with_the_test_rsa_key_verify() {
    let (pair, jwk) = rsa_key();
    for (alg, padding) in [
        (
            "RS256",
            &RSA_PKCS1_SHA256 as &'static dyn ring::signature::RsaEncoding,
        ),
        ("PS256", &RSA_PSS_SHA256),
    ] {
        let token = signed_token(&json!({"alg": alg}), &claims(), |input| {
            rsa_sign(&pair, padding, input)
        });
        assert!(parse_and_verify(&token, &jwk).is_ok(), "{alg}");
    }
}

#[test]
fn rsa_signature_under_the_other_padding_fails() {
    let (pair, jwk) = rsa_key();
    let input = b"header.payload";
    let pkcs1 = rsa_sign(&pair, &RSA_PKCS1_SHA256, input);
    let pss = rsa_sign(&pair, &RSA_PSS_SHA256, input);
    assert_eq!(verify(JwsAlg::Rs256, &jwk, input, &pkcs1), Ok(()));
    assert_eq!(verify(JwsAlg::Ps256, &jwk, input, &pss), Ok(()));
    assert_eq!(
        verify(JwsAlg::Ps256, &jwk, input, &pkcs1),
        Err(JoseError::BadSignature)
    );
    assert_eq!(
        verify(JwsAlg::Rs256, &jwk, input, &pss),
        Err(JoseError::BadSignature)
    );
}

#[test]
fn rsa_signature_not_the_modulus_length_is_malformed() {
    let (pair, jwk) = rsa_key();
    let mut signature = rsa_sign(&pair, &RSA_PKCS1_SHA256, b"a.b");
    signature.insert(0, 0);
    assert_eq!(
        verify(JwsAlg::Rs256, &jwk, b"a.b", &signature),
        Err(JoseError::MalformedSignature { alg: JwsAlg::Rs256 })
    );
    assert_eq!(
        verify(JwsAlg::Rs256, &jwk, b"a.b", &signature[2..]),
        Err(JoseError::MalformedSignature { alg: JwsAlg::Rs256 })
    );
}

#[test]
fn signature_from_another_key_of_the_same_kind_fails() {
    let signer = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let other = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let token = signed_token(&json!({"alg": "ES256"}), &claims(), |input| {
        signer
            .pair
            .sign(&SystemRandom::new(), input)
            .unwrap()
            .as_ref()
            .to_vec()
    });
    assert_eq!(
        parse_and_verify(&token, &other.jwk).unwrap_err(),
        JoseError::BadSignature
    );
}

#[test]
fn changed_payload_under_a_valid_signature_fails() {
    let (pair, jwk) = ed25519_key();
    let token = signed_token(&json!({"alg": "EdDSA"}), &claims(), |input| {
        pair.sign(input).as_ref().to_vec()
    });
    let (header, rest) = token.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged = format!(
        "{header}.{}.{signature}",
        b64url_encode(json!({"sub": "mallory"}).to_string())
    );
    let err = parse_and_verify(&forged, &jwk).unwrap_err();
    assert_eq!(err, JoseError::BadSignature);
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn der_encoded_es256_signature_is_refused() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = PublicJwk::from_json(&object(&json!({"kty": "EC", "crv": "P-256",
        "x": b64url_encode(&point[1..33]), "y": b64url_encode(&point[33..])})))
    .unwrap();
    let token = signed_token(&json!({"alg": "ES256"}), &claims(), |input| {
        pair.sign(&rng, input).unwrap().as_ref().to_vec()
    });
    let jws = CompactJws::parse(&token, MAX_LEN).unwrap();
    assert_eq!(jws.signature()[0], 0x30, "a der sequence");
    let err = jws.verify(&VerifyingKey::new(&jwk)).unwrap_err();
    assert_eq!(err, JoseError::MalformedSignature { alg: JwsAlg::Es256 });
    assert_eq!(err.code(), "malformed_signature");
}

#[test]
fn ecdsa_and_eddsa_signatures_must_have_their_fixed_length() {
    let p256 = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let p384 = ec_key(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384");
    let (_, ed) = ed25519_key();
    for (alg, jwk, good_len) in [
        (JwsAlg::Es256, &p256.jwk, 64),
        (JwsAlg::Es384, &p384.jwk, 96),
        (JwsAlg::EdDsa, &ed, 64),
    ] {
        for len in [0, 1, good_len - 1, good_len + 1, 2 * good_len] {
            assert_eq!(
                verify(alg, jwk, b"a.b", &vec![1; len]),
                Err(JoseError::MalformedSignature { alg }),
                "{alg} {len}"
            );
        }
        assert_eq!(
            verify(alg, jwk, b"a.b", &vec![1; good_len]),
            Err(JoseError::BadSignature)
        );
    }
}

#[test]
fn ec_p256_key_with_es384_alg_is_refused_as_a_mismatch() {
    let key = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let token = signed_token(&json!({"alg": "ES384"}), &claims(), |_| vec![1; 96]);
    assert_eq!(
        parse_and_verify(&token, &key.jwk).unwrap_err(),
        JoseError::AlgKeyMismatch {
            alg: JwsAlg::Es384,
            key: KeyKind::EcP256
        }
    );
}

#[test]
fn rsa_key_cannot_verify_an_ecdsa_or_eddsa_alg_and_vice_versa() {
    let (_, rsa) = rsa_key();
    let (_, ed) = ed25519_key();
    for alg in [JwsAlg::Es256, JwsAlg::Es384, JwsAlg::EdDsa] {
        assert_eq!(
            verify(alg, &rsa, b"a.b", &[1; 256]),
            Err(JoseError::AlgKeyMismatch {
                alg,
                key: KeyKind::Rsa
            })
        );
    }
    for alg in [JwsAlg::Rs256, JwsAlg::Ps256, JwsAlg::Es256] {
        assert_eq!(
            verify(alg, &ed, b"a.b", &[1; 64]),
            Err(JoseError::AlgKeyMismatch {
                alg,
                key: KeyKind::Ed25519
            })
        );
    }
}

#[test]
fn key_declared_for_rs256_does_not_verify_a_valid_ps256_signature() {
    let (pair, mut members) = rsa_key_json();
    let open = PublicJwk::from_json(&object(&members)).unwrap();
    members["alg"] = json!("RS256");
    members["use"] = json!("sig");
    let restricted = PublicJwk::from_json(&object(&members)).unwrap();
    let pss = rsa_sign(&pair, &RSA_PSS_SHA256, b"a.b");
    assert_eq!(verify(JwsAlg::Ps256, &open, b"a.b", &pss), Ok(()));
    assert_eq!(
        verify(JwsAlg::Ps256, &restricted, b"a.b", &pss),
        Err(JoseError::KeyUseMismatch { alg: JwsAlg::Ps256 })
    );
    let key = VerifyingKey::new(&restricted);
    assert!(key.allows(JwsAlg::Rs256) && !key.allows(JwsAlg::Ps256));
}

#[test]
fn alg_none_token_is_refused_before_any_key_is_used() {
    for alg in ["none", "HS256"] {
        let token = signed_token(&json!({"alg": alg}), &claims(), |_| vec![1; 32]);
        assert_eq!(
            CompactJws::parse(&token, MAX_LEN),
            Err(JoseError::UnsupportedAlg),
            "{alg}"
        );
    }
    // An unsigned JWS (empty signature part) is not even well formed.
    let unsigned = format!(
        "{}.{}.",
        b64url_encode(r#"{"alg":"none"}"#),
        b64url_encode(claims().to_string())
    );
    assert_eq!(
        CompactJws::parse(&unsigned, MAX_LEN),
        Err(JoseError::Malformed)
    );
}

#[test]
fn one_verifying_key_verifies_many_tokens() {
    let key = ec_key(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256");
    let prepared = VerifyingKey::from(&key.jwk);
    assert_eq!(prepared.kind(), KeyKind::EcP256);
    for i in 0..5 {
        let token = signed_token(&json!({"alg": "ES256"}), &json!({"n": i}), |input| {
            key.pair
                .sign(&SystemRandom::new(), input)
                .unwrap()
                .as_ref()
                .to_vec()
        });
        let jws = CompactJws::parse(&token, MAX_LEN).unwrap();
        assert_eq!(jws.verify(&prepared), Ok(()), "token {i}");
    }
}

#[test]
fn every_error_code_is_a_lowercase_label() {
    let errors = [
        JoseError::TooLong { max: 1 },
        JoseError::Malformed,
        JoseError::Encoding(JwsPart::Header),
        JoseError::HeaderMember("alg", MemberProblem::Missing),
        JoseError::UnsupportedHeader("crit"),
        JoseError::UnsupportedAlg,
        JoseError::AlgKeyMismatch {
            alg: JwsAlg::Es256,
            key: KeyKind::Rsa,
        },
        JoseError::KeyUseMismatch { alg: JwsAlg::Es256 },
        JoseError::PrivateKeyInJwk,
        JoseError::SymmetricJwk,
        JoseError::BadKey(KeyProblem::UnsupportedKty),
        JoseError::MalformedSignature { alg: JwsAlg::Es256 },
        JoseError::BadSignature,
    ];
    for e in errors {
        let code = e.code();
        assert!(
            code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
        let first = e.to_string().chars().next().unwrap();
        assert!(!first.is_ascii_uppercase(), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// With one encoding per value and the signing input kept as received,
    /// no other spelling of a signed token is accepted.
    #[test]
    fn any_single_character_change_to_a_signed_token_is_refused(
        sub in "[a-zA-Z0-9]{0,24}",
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(
            "AQgw_-Zz09azBRSf.=+/ ".chars().collect::<Vec<_>>()
        ),
    ) {
        let (pair, jwk) = ed25519_key();
        let token = signed_token(&json!({"alg": "EdDSA"}), &json!({"sub": sub}), |input| {
            pair.sign(input).as_ref().to_vec()
        });
        prop_assert!(parse_and_verify(&token, &jwk).is_ok());
        let i = position.index(token.len());
        let original = token.as_bytes()[i] as char;
        prop_assume!(original != replacement);
        let mut changed = token.clone();
        changed.replace_range(i..=i, &replacement.to_string());
        prop_assert!(parse_and_verify(&changed, &jwk).is_err());
    }
}
