//! The trust-mode table row by row, and service configuration from the
//! environment names of docs/design.md §3.6.

use std::collections::HashMap;
use stella_envelope::config::*;
use stella_envelope::*;

const NOW: u64 = 1_800_000_000;

fn hs_key(kid: &str) -> Key {
    Key::hmac(KeyId::new(kid).unwrap(), &[7u8; 32]).unwrap()
}

fn valid_envelope() -> VerifiedEnvelope {
    let signer = Signer::new(hs_key("k1"), "gw", 60).unwrap();
    let target = Target {
        audience: "svc",
        method: "GET",
        path: "/x",
        request_id: "r1",
    };
    let headers = signer.sign(&Identity::anonymous(), &target, NOW).unwrap();
    let mut ring = Keyring::new();
    ring.insert(hs_key("k1")).unwrap();
    Verifier::new(ring, VerifierSettings::new("svc"))
        .verify(
            &headers,
            &RequestBinding {
                method: "GET",
                path: "/x",
            },
            NOW,
        )
        .unwrap()
}

fn bad_sig() -> EnvelopeError {
    EnvelopeError::BadSignature { kid: "k1".into() }
}

fn wrong_aud() -> EnvelopeError {
    EnvelopeError::AudienceMismatch {
        expected: "svc".into(),
        seen: "other".into(),
    }
}

fn reject(status: u16, code: &'static str, cause: Option<EnvelopeError>) -> Action {
    Action::Reject(Rejection {
        status,
        code,
        cause,
    })
}

#[test]
fn trust_mode_table_row_by_row() {
    use EnvelopeCheck::*;
    use TrustMode::*;
    let v = Box::new(valid_envelope());
    let cases = [
        (
            ServiceEnforced,
            Valid(v.clone()),
            Action::ServiceAuth { ignored: None },
        ),
        (
            ServiceEnforced,
            Absent,
            Action::ServiceAuth { ignored: None },
        ),
        (
            ServiceEnforced,
            Invalid(bad_sig()),
            Action::ServiceAuth {
                ignored: Some(bad_sig()),
            },
        ),
        (
            ServiceEnforced,
            Invalid(wrong_aud()),
            Action::ServiceAuth {
                ignored: Some(wrong_aud()),
            },
        ),
        (Hybrid, Valid(v.clone()), Action::UseEnvelope(v.clone())),
        (Hybrid, Absent, Action::ServiceAuth { ignored: None }),
        (
            Hybrid,
            Invalid(bad_sig()),
            reject(401, "envelope_invalid", Some(bad_sig())),
        ),
        (
            Hybrid,
            Invalid(wrong_aud()),
            reject(401, "envelope_invalid", Some(wrong_aud())),
        ),
        (
            GatewayEnforced,
            Valid(v.clone()),
            Action::UseEnvelope(v.clone()),
        ),
        (
            GatewayEnforced,
            Absent,
            reject(401, "envelope_required", None),
        ),
        (
            GatewayEnforced,
            Invalid(bad_sig()),
            reject(401, "envelope_invalid", Some(bad_sig())),
        ),
        (
            GatewayEnforced,
            Invalid(wrong_aud()),
            reject(403, "envelope_audience_mismatch", Some(wrong_aud())),
        ),
    ];
    for (mode, check, want) in cases {
        let label = format!("{mode} / {check:?}");
        assert_eq!(decide(mode, check), want, "{label}");
    }
}

#[test]
fn trust_mode_parses_case_insensitively() {
    for (text, mode) in [
        ("ServiceEnforced", TrustMode::ServiceEnforced),
        ("serviceenforced", TrustMode::ServiceEnforced),
        ("HYBRID", TrustMode::Hybrid),
        ("gateway_enforced", TrustMode::GatewayEnforced),
        (" GatewayEnforced ", TrustMode::GatewayEnforced),
    ] {
        assert_eq!(text.parse::<TrustMode>(), Ok(mode), "{text}");
    }
    assert!("Gateway".parse::<TrustMode>().is_err());
    assert!("".parse::<TrustMode>().is_err());
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

#[test]
fn legacy_variable_names_configure_a_gateway_enforced_service() {
    let cfg = ServiceConfig::from_env(&env(&[
        ("Router__Enabled", "true"),
        ("Router__AuthorizationTrustMode", "GatewayEnforced"),
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeClockSkewSeconds", "5"),
        ("Router__IdentityEnvelopeAudience", "orders"),
    ]))
    .unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.mode, TrustMode::GatewayEnforced);
    let verifier = cfg.verifier.unwrap();
    assert_eq!(verifier.settings().clock_skew_secs, 5);
    assert_eq!(verifier.settings().audience, "orders");
    assert_eq!(verifier.keyring().get("default").unwrap().alg(), Alg::Hs256);
}

#[test]
fn variable_names_match_case_insensitively_ignoring_underscores() {
    let cfg = ServiceConfig::from_env(&env(&[
        ("ROUTER__AUTHORIZATIONTRUSTMODE", "hybrid"),
        ("router_identity_envelope_signing_key", SECRET),
        ("ROUTER__IDENTITYENVELOPEAUDIENCE", "orders"),
    ]))
    .unwrap();
    assert_eq!(cfg.mode, TrustMode::Hybrid);
    assert!(cfg.verifier.is_some());
}

#[test]
fn defaults_are_enabled_service_enforced_without_keys() {
    let cfg = ServiceConfig::from_env(&env(&[])).unwrap();
    assert!(cfg.enabled);
    assert_eq!(cfg.mode, TrustMode::ServiceEnforced);
    assert!(cfg.verifier.is_none());
}

#[test]
fn accepted_keys_extend_the_keyring_for_rotation() {
    let next = Key::ed25519_from_seed(KeyId::new("ed-2").unwrap(), [3; 32]).unwrap();
    let list = format!("ed-2={}", next.public_spec().as_str());
    let cfg = ServiceConfig::from_env(&env(&[
        ("Router__AuthorizationTrustMode", "GatewayEnforced"),
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeSigningKeyId", "hs-1"),
        ("Router__IdentityEnvelopeAcceptedKeys", &list),
        ("Router__IdentityEnvelopeAudience", "orders"),
    ]))
    .unwrap();
    let kids: Vec<_> = cfg
        .verifier
        .unwrap()
        .keyring()
        .kids()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(kids, ["ed-2", "hs-1"]);
}

#[test]
fn every_problem_is_reported_at_once_by_variable_and_never_with_values() {
    let errors = ServiceConfig::from_env(&env(&[
        ("Router__Enabled", "maybe"),
        ("Router__AuthorizationTrustMode", "Trusting"),
        ("Router__IdentityEnvelopeSigningKey", "short-secret-value"),
        ("Router__IdentityEnvelopeClockSkewSeconds", "-3"),
        ("Router__IdentityEnvelopeAcceptedKeys", "nonsense"),
    ]))
    .unwrap_err();
    let variables: Vec<_> = errors.iter().map(|e| e.variable).collect();
    assert_eq!(
        variables,
        [
            ENV_ENABLED,
            ENV_TRUST_MODE,
            ENV_CLOCK_SKEW,
            ENV_ACCEPTED_KEYS,
            ENV_SIGNING_KEY,
        ]
    );
    let text: String = errors.iter().map(|e| format!("{e}\n")).collect();
    assert!(!text.contains("short-secret-value"), "{text}");
    assert!(
        text.contains("Router__IdentityEnvelopeSigningKey: hs256 secret is 18 bytes"),
        "{text}"
    );
}

#[test]
fn enforcing_modes_require_a_key_and_an_audience() {
    let errors =
        ServiceConfig::from_env(&env(&[("Router__AuthorizationTrustMode", "Hybrid")])).unwrap_err();
    assert_eq!(errors[0].variable, ENV_SIGNING_KEY);
    let errors = ServiceConfig::from_env(&env(&[
        ("Router__AuthorizationTrustMode", "Hybrid"),
        ("Router__IdentityEnvelopeSigningKey", SECRET),
    ]))
    .unwrap_err();
    assert_eq!(errors[0].variable, ENV_AUDIENCE);
}
