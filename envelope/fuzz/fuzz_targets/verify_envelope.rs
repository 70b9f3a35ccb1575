//! Envelope parsing and verification on untrusted header fields.
//!
//! The input is read as up to `MAX_LINES` LF-separated lines, each
//! `name: value` (split at the first `:`, one optional space dropped; any
//! bytes allowed, a name that is not UTF-8 is read lossily). The fields go
//! through `check_request` with a verifier holding the keys of
//! `envelope/testdata/vectors.json` (two HS256 secrets and an Ed25519 public
//! key), at the vectors' `now` and request, so the seeds built from the
//! vectors reach every check after the signature. The raw input and every
//! field value also go through the strict decoders of `encoding`.
//!
//! Besides "never panics", the target asserts a few documented properties:
//! a strict base64url or integer decode only accepts the canonical
//! encoding of what it returns, and without a verifier nothing is valid.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::borrow::Cow;
use std::sync::OnceLock;
use stella_envelope::encoding::{
    b64url_decode, b64url_encode, check_json_object, parse_canonical_u64,
};
use stella_envelope::{
    check_request, decide, EnvelopeCheck, Key, KeyId, Keyring, RequestBinding, TrustMode, Verifier,
    VerifierSettings,
};

/// More lines than an envelope has headers (6), so duplicates and unrelated
/// fields fit too.
const MAX_LINES: usize = 8;
/// `now` of envelope/testdata/vectors.json.
const NOW: u64 = 1_767_225_600;
const REQUEST: RequestBinding<'static> = RequestBinding {
    method: "GET",
    path: "/orders/42",
};

fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let kid = |s: &str| KeyId::new(s).expect("valid kid");
        let mut ring = Keyring::new();
        for (id, secret) in [
            ("hs-1", "vector-secret-hs-1-do-not-use-in-production"),
            ("hs-2", "vector-secret-hs-2-do-not-use-in-production"),
        ] {
            ring.insert(Key::hmac(kid(id), secret.as_bytes()).expect("hs256 key"))
                .expect("unique kid");
        }
        // The vectors' ed-1 key ("ed25519-private:QkJC..." is 32 bytes of 0x42);
        // the verifier holds only its public half.
        let signing = Key::ed25519_from_seed(kid("ed-1"), [0x42; 32]).expect("ed25519 seed");
        let public = Key::parse(kid("ed-1"), &signing.public_spec()).expect("public spec");
        assert!(!public.can_sign());
        ring.insert(public).expect("unique kid");
        Verifier::new(
            ring,
            VerifierSettings {
                audience: "orders".into(),
                issuer: Some("stella-gateway-local".into()),
                clock_skew_secs: 30,
                max_lifetime_secs: 300,
            },
        )
    })
}

/// Splits the input into `(name, value)` header fields.
fn fields(data: &[u8]) -> Vec<(Cow<'_, str>, &[u8])> {
    data.split(|&b| b == b'\n')
        .take(MAX_LINES)
        .map(|line| {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => (line, &line[line.len()..]),
            };
            let value = value.strip_prefix(b" ").unwrap_or(value);
            (String::from_utf8_lossy(name), value)
        })
        .collect()
}

/// Strict base64url: whatever decodes must be the canonical encoding of the
/// result. Returns the decoded bytes.
fn b64url(text: &str) -> Option<Vec<u8>> {
    let bytes = b64url_decode(text).ok()?;
    assert_eq!(
        b64url_encode(&bytes),
        text,
        "b64url_decode accepted a non-canonical encoding"
    );
    Some(bytes)
}

fn check(verifier: Option<&Verifier>, fields: &[(Cow<'_, str>, &[u8])]) -> EnvelopeCheck {
    check_request(
        verifier,
        fields.iter().map(|(name, value)| (name.as_ref(), *value)),
        &REQUEST,
        NOW,
    )
}

fuzz_target!(|data: &[u8]| {
    // The strict decoders on the raw input.
    let _ = check_json_object(data);
    let _ = b64url(&String::from_utf8_lossy(data));

    let fields = fields(data);

    // Each value as a possible payload or timestamp, without the signature
    // in the way.
    for (_, value) in &fields {
        let text = String::from_utf8_lossy(value);
        if let Some(json) = b64url(&text) {
            let _ = check_json_object(&json);
        }
        if let Ok(n) = parse_canonical_u64(&text) {
            assert_eq!(n.to_string(), text, "parse_canonical_u64 accepted {text:?}");
        }
    }

    let result = check(Some(verifier()), &fields);
    match &result {
        EnvelopeCheck::Absent | EnvelopeCheck::Invalid(_) => {}
        EnvelopeCheck::Valid(ok) => {
            // Only the vectors' keys can have signed this.
            assert!(["hs-1", "hs-2", "ed-1"].contains(&ok.kid().as_str()));
            assert!(ok.issued_at() < ok.expires_at());
            let _ = format!("{ok:?}");
        }
    }
    if let EnvelopeCheck::Invalid(e) = &result {
        let _ = (e.code(), e.to_string());
    }
    for mode in [
        TrustMode::ServiceEnforced,
        TrustMode::Hybrid,
        TrustMode::GatewayEnforced,
    ] {
        let _ = decide(mode, result.clone());
    }

    // With no keys configured an envelope can never be valid.
    let unkeyed = check(None, &fields);
    assert!(
        !matches!(unkeyed, EnvelopeCheck::Valid(_)),
        "valid without a verifier"
    );
    assert_eq!(
        matches!(unkeyed, EnvelopeCheck::Absent),
        matches!(result, EnvelopeCheck::Absent),
        "presence must not depend on the verifier"
    );
});
