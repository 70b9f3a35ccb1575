//! Checks every vector in testdata/vectors.json through the public API only,
//! as an implementer in another language would.

use serde_json::Value;
use stella_envelope::*;

fn load() -> Value {
    serde_json::from_str(include_str!("../testdata/vectors.json")).expect("vectors.json parses")
}

fn verifier(v: &Value) -> Verifier {
    let mut ring = Keyring::new();
    for key in v["keys"].as_array().unwrap() {
        let kid = KeyId::new(key["kid"].as_str().unwrap()).unwrap();
        ring.insert(Key::parse(kid, key["verify"].as_str().unwrap()).unwrap())
            .unwrap();
    }
    let s = &v["verifier"];
    Verifier::new(
        ring,
        VerifierSettings {
            audience: s["audience"].as_str().unwrap().into(),
            issuer: s["issuer"].as_str().map(Into::into),
            clock_skew_secs: s["clock_skew_seconds"].as_u64().unwrap(),
            max_lifetime_secs: s["max_lifetime_seconds"].as_u64().unwrap(),
        },
    )
}

fn check(verifier: &Verifier, v: &Value, vector: &Value) -> EnvelopeCheck {
    let request = vector.get("request").unwrap_or(&v["request"]);
    let fields: Vec<(String, String)> = serde_json::from_value(vector["headers"].clone()).unwrap();
    check_request(
        Some(verifier),
        fields.iter().map(|(n, val)| (n.as_str(), val.as_bytes())),
        &RequestBinding {
            method: request["method"].as_str().unwrap(),
            path: request["path"].as_str().unwrap(),
        },
        v["now"].as_u64().unwrap(),
    )
}

#[test]
fn every_valid_vector_verifies_to_its_payload() {
    let v = load();
    let verifier = verifier(&v);
    let valid = v["valid"].as_array().unwrap();
    assert!(valid.len() >= 4);
    for vector in valid {
        let name = vector["name"].as_str().unwrap();
        let EnvelopeCheck::Valid(ok) = check(&verifier, &v, vector) else {
            panic!("{name}: {:?}", check(&verifier, &v, vector));
        };
        let want = &vector["expect_payload"];
        let id = ok.identity();
        assert_eq!(id.subject.as_deref(), want["sub"].as_str(), "{name}");
        assert_eq!(id.tenant.as_deref(), want["tenant"].as_str(), "{name}");
        assert_eq!(
            id.client_id.as_deref(),
            want["client_id"].as_str(),
            "{name}"
        );
        assert_eq!(id.auth_method.as_str(), want["auth_method"], "{name}");
        assert_eq!(
            serde_json::to_value(&id.scopes).unwrap(),
            want["scopes"],
            "{name}"
        );
        assert_eq!(
            serde_json::to_value(&id.roles).unwrap(),
            want["roles"],
            "{name}"
        );
        assert_eq!(
            serde_json::to_value(&id.confirmation).unwrap(),
            want["cnf"],
            "{name}"
        );
        assert_eq!(ok.request_id(), want["request_id"], "{name}");
        assert_eq!(ok.issued_at(), want["iat"].as_u64().unwrap(), "{name}");
        assert_eq!(ok.expires_at(), want["exp"].as_u64().unwrap(), "{name}");
    }
}

#[test]
fn every_invalid_vector_fails_with_its_error() {
    let v = load();
    let verifier = verifier(&v);
    let invalid = v["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 15);
    for vector in invalid {
        let name = vector["name"].as_str().unwrap();
        match check(&verifier, &v, vector) {
            EnvelopeCheck::Invalid(e) => {
                assert_eq!(e.code(), vector["expect_error"], "{name}: {e}")
            }
            other => panic!(
                "{name}: expected {} but got {other:?}",
                vector["expect_error"]
            ),
        }
    }
}

#[test]
fn ed25519_vector_signing_key_reproduces_the_signature() {
    // The published private key signs the same bytes (Ed25519 is deterministic).
    let v = load();
    let ed = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == "ed-1")
        .unwrap();
    let key = Key::parse(KeyId::new("ed-1").unwrap(), ed["sign"].as_str().unwrap()).unwrap();
    assert_eq!(key.public_spec().as_str(), ed["verify"].as_str().unwrap());
}
