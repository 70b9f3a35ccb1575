//! Property tests: signing then verifying round-trips; any single-byte change
//! in any envelope header makes verification fail.

use proptest::prelude::*;
use stella_envelope::*;

const NOW: u64 = 1_800_000_000;

/// The verifier holds the HS256 secret and only the Ed25519 public key.
fn keyring() -> Keyring {
    let ed = Key::ed25519_from_seed(KeyId::new("ed").unwrap(), [5; 32]).unwrap();
    let mut ring = Keyring::new();
    ring.insert(Key::hmac(KeyId::new("hs").unwrap(), &[9u8; 40]).unwrap())
        .unwrap();
    ring.insert(Key::parse(KeyId::new("ed").unwrap(), &ed.public_spec()).unwrap())
        .unwrap();
    ring
}

fn signer(use_ed: bool) -> Signer {
    let key = if use_ed {
        Key::ed25519_from_seed(KeyId::new("ed").unwrap(), [5; 32]).unwrap()
    } else {
        Key::hmac(KeyId::new("hs").unwrap(), &[9u8; 40]).unwrap()
    };
    Signer::new(key, "gw", 60).unwrap()
}

fn verifier() -> Verifier {
    Verifier::new(keyring(), VerifierSettings::new("svc"))
}

fn identity_strategy() -> impl Strategy<Value = Identity> {
    (
        proptest::option::of("[ -~]{0,40}"),
        proptest::option::of("[a-z0-9-]{1,20}"),
        proptest::option::of("\\PC{0,20}"),
        proptest::collection::vec("[a-z.:]{1,12}", 0..5),
        proptest::collection::vec("\\PC{1,12}", 0..3),
        prop_oneof![
            Just(AuthMethod::Bearer),
            Just(AuthMethod::Dpop),
            Just(AuthMethod::Mtls),
            Just(AuthMethod::Spiffe),
            Just(AuthMethod::Anonymous),
            Just(AuthMethod::Bypass),
        ],
        proptest::option::of("[A-Za-z0-9_-]{43}"),
    )
        .prop_map(
            |(subject, tenant, client_id, scopes, roles, auth_method, jkt)| Identity {
                subject,
                tenant,
                client_id,
                scopes,
                roles,
                auth_method,
                confirmation: Confirmation {
                    jkt,
                    ..Confirmation::default()
                },
            },
        )
}

fn verify(headers: &EnvelopeHeaders, path: &str) -> EnvelopeCheck {
    let fields: Vec<(&str, &[u8])> = headers
        .pairs()
        .iter()
        .map(|(n, v)| (*n, v.as_bytes()))
        .collect();
    check_request(
        Some(&verifier()),
        fields,
        &RequestBinding {
            method: "POST",
            path,
        },
        NOW + 1,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn sign_then_verify_round_trips(
        identity in identity_strategy(),
        use_ed in any::<bool>(),
        path in "/[a-zA-Z0-9/._~-]{0,60}",
        rid in "[a-f0-9]{32}",
    ) {
        let target = Target { audience: "svc", method: "POST", path: &path, request_id: &rid };
        let headers = signer(use_ed).sign(&identity, &target, NOW).unwrap();
        match verify(&headers, &path) {
            EnvelopeCheck::Valid(v) => {
                prop_assert_eq!(v.identity(), &identity);
                prop_assert_eq!(v.request_id(), rid.as_str());
                prop_assert_eq!(v.issuer(), "gw");
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    #[test]
    fn any_single_byte_change_in_any_header_fails(
        identity in identity_strategy(),
        use_ed in any::<bool>(),
        which in 0usize..6,
        position in any::<prop::sample::Index>(),
        replacement in 0x21u8..0x7f,
    ) {
        let target = Target { audience: "svc", method: "POST", path: "/p", request_id: "r" };
        let headers = signer(use_ed).sign(&identity, &target, NOW).unwrap();
        let mut values: Vec<Vec<u8>> = headers.pairs().iter().map(|(_, v)| v.as_bytes().to_vec()).collect();
        let value = &mut values[which];
        let at = position.index(value.len());
        prop_assume!(value[at] != replacement);
        value[at] = replacement;
        let names = headers.pairs().map(|(n, _)| n);
        let fields: Vec<(&str, &[u8])> = names.iter().zip(values.iter()).map(|(n, v)| (*n, v.as_slice())).collect();
        let check = check_request(Some(&verifier()), fields, &RequestBinding { method: "POST", path: "/p" }, NOW + 1);
        prop_assert!(matches!(check, EnvelopeCheck::Invalid(_)), "{:?}", check);
    }
}
