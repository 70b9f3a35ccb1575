//! Generator of `testdata/vectors.json`. The file is committed; the test here
//! fails when the generator and the file disagree, and rewrites the file
//! when run with `STELLA_WRITE_VECTORS=1`. Keys are fixed so every run (and
//! every language) sees the same bytes: HMAC and Ed25519 are deterministic.

use crate::encoding::b64url_encode;
use crate::format::*;
use crate::keys::{Key, KeyId};
use crate::sign::seal;
use serde_json::{json, Value};

const NOW: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z
const AUDIENCE: &str = "orders";
const ISSUER: &str = "stella-gateway-local";
const METHOD: &str = "GET";
const PATH: &str = "/orders/42";

fn kid(s: &str) -> KeyId {
    KeyId::new(s).unwrap()
}

fn hs1() -> Key {
    Key::hmac(kid("hs-1"), b"vector-secret-hs-1-do-not-use-in-production").unwrap()
}
fn hs2() -> Key {
    Key::hmac(kid("hs-2"), b"vector-secret-hs-2-do-not-use-in-production").unwrap()
}
fn ed1() -> Key {
    Key::ed25519_from_seed(kid("ed-1"), [0x42; 32]).unwrap()
}
/// Not in the accepted keyring.
fn ed_other(as_kid: &str) -> Key {
    Key::ed25519_from_seed(kid(as_kid), [0x17; 32]).unwrap()
}

fn payload(iat: u64, exp: u64) -> Value {
    json!({
        "ver": 1,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-7",
        "tenant": "acme",
        "client_id": "svc-bearer",
        "scopes": ["orders.read"],
        "roles": ["clerk"],
        "auth_method": "bearer",
        "cnf": {"jkt": null, "x5t#S256": null, "spiffe_id": null},
        "method": METHOD,
        "path": PATH,
        "request_id": "req-0001",
        "iat": iat,
        "exp": exp
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn without(mut v: Value, key: &str) -> Value {
    if let Some(object) = v.as_object_mut() {
        object.remove(key);
    }
    v
}

fn encode(v: &Value) -> String {
    b64url_encode(serde_json::to_vec(v).unwrap())
}

fn sealed(key: &Key, v: &Value) -> EnvelopeHeaders {
    seal(
        key,
        encode(v),
        v["iat"].as_u64().unwrap(),
        v["exp"].as_u64().unwrap(),
    )
    .unwrap()
}

fn pairs(h: &EnvelopeHeaders) -> Vec<(String, String)> {
    h.pairs()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

fn set(mut p: Vec<(String, String)>, name: &str, value: String) -> Vec<(String, String)> {
    for (n, v) in p.iter_mut() {
        if n == name {
            *v = value.clone();
        }
    }
    p
}

/// Changes the last base64url character so only its unused low bits differ.
fn stray_bits(text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let last = chars.last_mut().unwrap();
    *last = match *last {
        'A' => 'B',
        'Q' => 'R',
        'g' => 'h',
        'w' => 'x',
        c => {
            let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let i = alphabet.find(c).unwrap();
            alphabet.as_bytes()[i ^ 1] as char
        }
    };
    chars.into_iter().collect()
}

/// Flips one character of a base64url string to another valid character,
/// keeping it canonical (never touches the last character).
fn flip(text: &str, at: usize) -> String {
    let mut bytes = text.as_bytes().to_vec();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

fn invalid(name: &str, about: &str, headers: Vec<(String, String)>, error: &str) -> Value {
    json!({"name": name, "about": about, "headers": headers, "expect_error": error})
}

fn invalid_for(
    name: &str,
    about: &str,
    headers: Vec<(String, String)>,
    method: &str,
    path: &str,
    error: &str,
) -> Value {
    json!({"name": name, "about": about, "headers": headers,
           "request": {"method": method, "path": path}, "expect_error": error})
}

pub(crate) fn generate() -> Value {
    let base = payload(NOW - 10, NOW + 50);
    let good_hs = sealed(&hs1(), &base);
    let dpop = with(
        with(base.clone(), "auth_method", json!("dpop")),
        "cnf",
        json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", "x5t#S256": null, "spiffe_id": null}),
    );
    let good_ed = sealed(&ed1(), &dpop);
    let anonymous = json!({
        "ver": 1, "iss": ISSUER, "aud": AUDIENCE, "sub": null, "tenant": null,
        "client_id": null, "scopes": [], "roles": [], "auth_method": "anonymous",
        "cnf": {"jkt": null, "x5t#S256": null, "spiffe_id": null},
        "method": METHOD, "path": PATH, "request_id": "req-0002",
        "iat": NOW, "exp": NOW + 60
    });
    let within_skew = payload(NOW - 80, NOW - 20);

    let valid = vec![
        json!({"name": "hs256_bearer", "headers": pairs(&good_hs), "expect_payload": base}),
        json!({"name": "eddsa_dpop", "headers": pairs(&good_ed), "expect_payload": dpop}),
        json!({"name": "hs256_anonymous", "headers": pairs(&sealed(&hs1(), &anonymous)),
               "expect_payload": anonymous}),
        json!({"name": "expired_20s_ago_within_30s_skew",
               "headers": pairs(&sealed(&hs2(), &within_skew)), "expect_payload": within_skew}),
    ];

    let good = pairs(&good_hs);
    let sig_len = good_hs.signature.len();
    // `sub` written twice; serde_json never produces that itself.
    let duplicate_member = b64url_encode(serde_json::to_string(&base).unwrap().replacen(
        "\"sub\":\"user-7\"",
        "\"sub\":\"user-7\",\"sub\":\"admin\"",
        1,
    ));
    let mut oversized = good.clone();
    oversized[0].1 = "A".repeat(MAX_ENVELOPE_LEN + 1);
    let mut duplicate_alg = good.clone();
    duplicate_alg.push((HEADER_ALG.to_ascii_lowercase(), "HS256".into()));
    let missing_signature: Vec<_> = good
        .iter()
        .filter(|(n, _)| n != HEADER_SIGNATURE)
        .cloned()
        .collect();
    let non_canonical_payload = stray_bits(&encode(&base));
    let reseal_raw = |key: &Key, envelope: &str, iat: u64, exp: u64| {
        pairs(&seal(key, envelope.to_owned(), iat, exp).unwrap())
    };

    let invalid = vec![
        invalid(
            "bad_signature",
            "one signature character changed",
            set(
                good.clone(),
                HEADER_SIGNATURE,
                flip(&good_hs.signature, sig_len / 2),
            ),
            "bad_signature",
        ),
        invalid(
            "swapped_kid_header",
            "kid header changed to another accepted HS256 key",
            set(good.clone(), HEADER_KID, "hs-2".into()),
            "bad_signature",
        ),
        invalid(
            "unknown_kid",
            "kid not in the keyring",
            set(good.clone(), HEADER_KID, "hs-9".into()),
            "unknown_kid",
        ),
        invalid(
            "expired",
            "exp 100 s before now, skew 30 s",
            pairs(&sealed(&hs1(), &payload(NOW - 200, NOW - 100))),
            "expired",
        ),
        invalid(
            "issued_in_future",
            "iat 100 s after now, skew 30 s",
            pairs(&sealed(&hs1(), &payload(NOW + 100, NOW + 160))),
            "issued_in_future",
        ),
        invalid(
            "wrong_audience",
            "aud names another service",
            pairs(&sealed(
                &hs1(),
                &with(base.clone(), "aud", json!("billing")),
            )),
            "audience_mismatch",
        ),
        invalid(
            "wrong_issuer",
            "iss is not the configured gateway",
            pairs(&sealed(
                &hs1(),
                &with(base.clone(), "iss", json!("rogue-gateway")),
            )),
            "issuer_mismatch",
        ),
        invalid_for(
            "wrong_method",
            "envelope for GET presented on DELETE",
            good.clone(),
            "DELETE",
            PATH,
            "request_mismatch",
        ),
        invalid_for(
            "wrong_path",
            "envelope for /orders/42 presented on /orders/43",
            good.clone(),
            METHOD,
            "/orders/43",
            "request_mismatch",
        ),
        invalid(
            "tampered_payload_byte",
            "one payload character changed",
            set(good.clone(), HEADER_ENVELOPE, flip(&good_hs.envelope, 20)),
            "bad_signature",
        ),
        invalid(
            "tampered_iat_header",
            "iat header changed, payload untouched",
            set(good.clone(), HEADER_IAT, (NOW - 9).to_string()),
            "bad_signature",
        ),
        invalid(
            "non_canonical_base64url_payload",
            "payload with non-zero trailing bits, signed",
            reseal_raw(&hs1(), &non_canonical_payload, NOW - 10, NOW + 50),
            "malformed_payload",
        ),
        invalid(
            "non_canonical_base64url_signature",
            "signature with non-zero trailing bits",
            set(
                good.clone(),
                HEADER_SIGNATURE,
                stray_bits(&good_hs.signature),
            ),
            "malformed_signature",
        ),
        invalid(
            "duplicate_json_member",
            "payload repeats sub, signed",
            reseal_raw(&hs1(), &duplicate_member, NOW - 10, NOW + 50),
            "malformed_payload",
        ),
        invalid(
            "unknown_payload_member",
            "payload has a member SPEC.md does not define, signed",
            pairs(&sealed(&hs1(), &with(base.clone(), "admin", json!(true)))),
            "malformed_payload",
        ),
        invalid(
            "missing_nullable_member",
            "payload without sub (a nullable member must still be present), signed",
            pairs(&sealed(&hs1(), &without(base.clone(), "sub"))),
            "malformed_payload",
        ),
        invalid(
            "missing_cnf_member",
            "cnf without spiffe_id, signed",
            pairs(&sealed(
                &hs1(),
                &with(base.clone(), "cnf", json!({"jkt": null, "x5t#S256": null})),
            )),
            "malformed_payload",
        ),
        invalid(
            "string_exp_in_payload",
            "payload exp is a string, signed",
            reseal_raw(
                &hs1(),
                &encode(&with(base.clone(), "exp", json!("1767225650"))),
                NOW - 10,
                NOW + 50,
            ),
            "malformed_payload",
        ),
        invalid(
            "unsupported_version",
            "ver 2, signed",
            pairs(&sealed(&hs1(), &with(base.clone(), "ver", json!(2)))),
            "unsupported_version",
        ),
        invalid(
            "payload_iat_differs_from_header",
            "headers say iat now-9, payload now-10; signed",
            reseal_raw(&hs1(), &encode(&base), NOW - 9, NOW + 50),
            "timestamp_mismatch",
        ),
        invalid(
            "lifetime_too_long",
            "exp - iat is 3600 s, limit 300 s",
            pairs(&sealed(&hs1(), &payload(NOW - 10, NOW + 3590))),
            "bad_lifetime",
        ),
        invalid(
            "alg_none",
            "alg header none",
            set(good.clone(), HEADER_ALG, "none".into()),
            "unsupported_alg",
        ),
        invalid(
            "alg_lowercase",
            "alg header spelled hs256",
            set(good.clone(), HEADER_ALG, "hs256".into()),
            "unsupported_alg",
        ),
        invalid(
            "alg_not_allowed_for_key",
            "EdDSA claimed for an HS256 key",
            set(good.clone(), HEADER_ALG, "EdDSA".into()),
            "alg_not_allowed_for_key",
        ),
        invalid(
            "hs256_claimed_for_ed25519_key",
            "HS256 claimed for an Ed25519 key (key confusion)",
            set(pairs(&good_ed), HEADER_ALG, "HS256".into()),
            "alg_not_allowed_for_key",
        ),
        invalid(
            "eddsa_signed_by_another_key",
            "valid Ed25519 signature by a key that is not ed-1",
            pairs(&sealed(&ed_other("ed-1"), &dpop)),
            "bad_signature",
        ),
        invalid(
            "oversized_header",
            "envelope header over 16 KiB",
            oversized,
            "header_too_large",
        ),
        invalid(
            "missing_signature_header",
            "signature header absent",
            missing_signature,
            "missing_header",
        ),
        invalid(
            "duplicate_alg_header",
            "alg header sent twice",
            duplicate_alg,
            "duplicate_header",
        ),
        invalid(
            "timestamp_leading_zero",
            "iat header 0-prefixed",
            set(good.clone(), HEADER_IAT, format!("0{}", NOW - 10)),
            "malformed_timestamp",
        ),
        invalid(
            "header_with_space",
            "kid header with an embedded space",
            set(good.clone(), HEADER_KID, "hs 1".into()),
            "malformed_header",
        ),
    ];

    json!({
        "about": "Test vectors for the Stella identity envelope (SPEC.md). Verify each at `now` with the verifier settings and keyring below; every `valid` vector must verify and yield `expect_payload`, every `invalid` one must fail with `expect_error`. The keys are published test keys: never use them anywhere else.",
        "now": NOW,
        "verifier": {"audience": AUDIENCE, "issuer": ISSUER, "clock_skew_seconds": 30, "max_lifetime_seconds": 300},
        "request": {"method": METHOD, "path": PATH},
        "keys": [
            {"kid": "hs-1", "alg": "HS256", "verify": hs1().to_spec().as_str(), "secret_utf8": "vector-secret-hs-1-do-not-use-in-production"},
            {"kid": "hs-2", "alg": "HS256", "verify": hs2().to_spec().as_str(), "secret_utf8": "vector-secret-hs-2-do-not-use-in-production"},
            {"kid": "ed-1", "alg": "EdDSA", "verify": ed1().public_spec().as_str(), "sign": ed1().to_spec().as_str()}
        ],
        "valid": valid,
        "invalid": invalid
    })
}

#[test]
fn vectors_file_matches_generator() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");
    let generated = serde_json::to_string_pretty(&generate()).unwrap() + "\n";
    if std::env::var_os("STELLA_WRITE_VECTORS").is_some() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "testdata/vectors.json is out of date: run STELLA_WRITE_VECTORS=1 cargo test -p stella-envelope vectors_file"
    );
}

#[test]
fn duplicate_member_vector_really_repeats_sub() {
    let v = generate();
    let vector = v["invalid"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "duplicate_json_member")
        .unwrap();
    let envelope = vector["headers"][0][1].as_str().unwrap();
    let json = String::from_utf8(crate::encoding::b64url_decode(envelope).unwrap()).unwrap();
    assert_eq!(json.matches("\"sub\":").count(), 2, "{json}");
}
