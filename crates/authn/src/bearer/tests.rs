//! Bearer token rules with a frozen clock and keys generated per test.

use super::*;
use ring::hmac;
use serde_json::json;
use stella_authority::test_server::{authority_server, test_config, Reply, JWKS_PATH};
use stella_authority::TokenProfile;
use stella_core::ManualClock;
use stella_envelope::encoding::b64url_encode;
use stella_jose::testing::{jwks, TestKey};
use stella_jose::{KeyKind, PublicJwk};

const ISSUER: &str = "https://authority.example";
const AUDIENCE: &str = "http://gateway.local/api";
const NOW: u64 = 1_700_000_000;
const LEEWAY: u64 = 30;

fn config() -> AuthorityConfig {
    test_config(ISSUER, AUDIENCE)
}

fn rules() -> TokenRules {
    TokenRules::from_config(&config()).unwrap()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "sub": "svc-bearer",
        "aud": AUDIENCE,
        "client_id": "svc-bearer",
        "jti": "j-1",
        "iat": NOW - 10,
        "exp": NOW + 300,
        "scope": "echo.read echo.write",
        "tenant": "acme",
    })
}

/// `claims()` with `name` set to `value`.
fn with(name: &str, value: Value) -> Value {
    let mut c = claims();
    c[name] = value;
    c
}

fn without(name: &str) -> Value {
    let mut c = claims();
    c.as_object_mut().unwrap().remove(name);
    c
}

fn verifying_key(key: &TestKey) -> VerifyingKey {
    VerifyingKey::new(&PublicJwk::from_json(key.jwk().as_object().unwrap()).unwrap())
}

fn check_with(
    key: &TestKey,
    token: &str,
    rules: &TokenRules,
    now: u64,
) -> Result<TokenClaims, TokenError> {
    let parsed = parse_token(token, rules)?;
    verify_claims(&parsed, &verifying_key(key), rules, now)
}

fn check(key: &TestKey, claims: &Value) -> Result<TokenClaims, TokenError> {
    check_with(key, &key.token(claims), &rules(), NOW)
}

fn es256() -> TestKey {
    TestKey::es256(Some("k1"))
}

fn claim_error(claim: &'static str, problem: ClaimProblem) -> TokenError {
    TokenError::Claim {
        claim: Cow::Borrowed(claim),
        problem,
    }
}

#[test]
fn valid_es256_token_yields_its_claims() {
    let key = es256();
    let c = check(&key, &with("roles", json!(["ops", "dev"]))).unwrap();
    assert_eq!(c.issuer(), ISSUER);
    assert_eq!(c.subject(), Some("svc-bearer"));
    assert_eq!(c.audiences(), &*stella_core::identity::names([AUDIENCE]));
    assert_eq!(c.client_id(), Some("svc-bearer"));
    assert_eq!(c.jti(), Some("j-1"));
    assert_eq!(
        c.scopes(),
        &*stella_core::identity::names(["echo.read", "echo.write"])
    );
    assert_eq!(c.tenant(), Some("acme"));
    assert_eq!(c.roles(), &*stella_core::identity::names(["ops", "dev"]));
    assert_eq!(c.expires_at(), NOW + 300);
    assert_eq!(c.binding(), &Binding::Unbound);
    assert_eq!(c.claim("tenant").as_deref(), Some(&json!("acme")));
}

#[test]
fn valid_eddsa_token_verifies() {
    let key = TestKey::ed25519(Some("ed"));
    assert!(check(&key, &claims()).is_ok());
}

#[test]
fn unknown_claims_are_kept_as_received() {
    let c = check(&es256(), &with("department", json!({"id": 7}))).unwrap();
    assert_eq!(c.claim("department").as_deref(), Some(&json!({"id": 7})));
}

#[test]
fn token_expired_beyond_leeway_is_refused() {
    let key = es256();
    for exp in [NOW - LEEWAY, NOW - LEEWAY - 1, NOW - 3600, 0] {
        let err = check(&key, &with("exp", json!(exp))).unwrap_err();
        assert_eq!(
            err,
            TokenError::Expired {
                ago: NOW - exp,
                leeway: LEEWAY
            },
            "{exp}"
        );
        assert_eq!(err.code(), "expired");
    }
}

#[test]
fn token_expired_within_leeway_is_accepted() {
    let key = es256();
    for exp in [NOW - LEEWAY + 1, NOW - 1, NOW] {
        assert!(check(&key, &with("exp", json!(exp))).is_ok(), "{exp}");
    }
}

#[test]
fn token_not_yet_valid_beyond_leeway_is_refused() {
    let key = es256();
    let err = check(&key, &with("nbf", json!(NOW + LEEWAY + 1))).unwrap_err();
    assert_eq!(
        err,
        TokenError::NotYetValid {
            wait: LEEWAY + 1,
            leeway: LEEWAY
        }
    );
    assert_eq!(err.code(), "not_yet_valid");
    assert!(check(&key, &with("nbf", json!(NOW + LEEWAY))).is_ok());
    assert!(check(&key, &with("nbf", json!(NOW - 100))).is_ok());
}

#[test]
fn token_issued_in_the_future_beyond_leeway_is_refused() {
    let key = es256();
    let err = check(&key, &with("iat", json!(NOW + 120))).unwrap_err();
    assert_eq!(
        err,
        TokenError::IssuedInFuture {
            ahead: 120,
            leeway: LEEWAY
        }
    );
    assert!(check(&key, &with("iat", json!(NOW + LEEWAY))).is_ok());
    assert!(check(&key, &without("iat")).is_ok());
}

#[test]
fn issuer_must_equal_the_configured_one_exactly() {
    let key = es256();
    for iss in [
        "https://authority.example/",
        "https://Authority.example",
        "http://authority.example",
        "https://evil.example",
        "",
    ] {
        let err = check(&key, &with("iss", json!(iss))).unwrap_err();
        assert_eq!(err, TokenError::WrongIssuer, "{iss:?}");
        assert_eq!(err.code(), "wrong_issuer");
    }
    assert_eq!(
        check(&key, &without("iss")).err(),
        Some(claim_error("iss", ClaimProblem::Missing))
    );
    assert_eq!(
        check(&key, &with("iss", json!([ISSUER]))).err(),
        Some(claim_error("iss", ClaimProblem::WrongType))
    );
}

#[test]
fn audience_must_name_a_configured_audience() {
    let key = es256();
    for aud in [
        json!("http://gateway.local/other"),
        json!(["http://gateway.local/other"]),
        json!([]),
        json!("HTTP://gateway.local/api"),
    ] {
        let err = check(&key, &with("aud", aud.clone())).unwrap_err();
        assert_eq!(err, TokenError::WrongAudience, "{aud}");
        assert_eq!(err.code(), "wrong_audience");
    }
}

#[test]
fn audience_array_containing_a_configured_audience_is_accepted() {
    let key = es256();
    let c = check(
        &key,
        &with("aud", json!(["https://other.example", AUDIENCE])),
    )
    .unwrap();
    assert_eq!(
        c.audiences(),
        &*stella_core::identity::names(["https://other.example", AUDIENCE])
    );
}

#[test]
fn audience_of_the_wrong_type_or_missing_is_refused() {
    let key = es256();
    for aud in [
        json!(7),
        json!([AUDIENCE, 7]),
        json!({"aud": AUDIENCE}),
        json!(null),
    ] {
        assert_eq!(
            check(&key, &with("aud", aud.clone())).err(),
            Some(claim_error("aud", ClaimProblem::WrongType)),
            "{aud}"
        );
    }
    let err = check(&key, &without("aud")).unwrap_err();
    assert_eq!(err, claim_error("aud", ClaimProblem::Missing));
    assert_eq!(err.code(), "missing_claim");
}

#[test]
fn alg_none_token_is_refused_before_any_key_is_used() {
    let input = format!(
        "{}.{}",
        b64url_encode(json!({"alg": "none", "typ": "at+jwt"}).to_string()),
        b64url_encode(claims().to_string())
    );
    for token in [format!("{input}."), format!("{input}.AAAA")] {
        let err = parse_token(&token, &rules()).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Jose(JoseError::Malformed | JoseError::UnsupportedAlg)
            ),
            "{err:?}"
        );
    }
    let err = parse_token(&format!("{input}.AAAA"), &rules()).unwrap_err();
    assert_eq!(err, TokenError::Jose(JoseError::UnsupportedAlg));
    assert_eq!(err.code(), "unsupported_alg");
}

#[test]
fn hs256_token_signed_with_the_public_key_is_refused_as_unsupported_alg() {
    // The classic confusion attack: HMAC keyed with the public key bytes
    // (the JWK as published, and the raw point).
    let key = es256();
    let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
    let input = format!(
        "{}.{}",
        b64url_encode(header.to_string()),
        b64url_encode(claims().to_string())
    );
    for secret in [
        key.jwk().to_string().into_bytes(),
        jwks(&[&key]).into_bytes(),
    ] {
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &secret),
            input.as_bytes(),
        );
        let token = format!("{input}.{}", b64url_encode(tag.as_ref()));
        let err = parse_token(&token, &rules()).unwrap_err();
        assert_eq!(err, TokenError::Jose(JoseError::UnsupportedAlg));
    }
}

#[test]
fn missing_typ_is_refused() {
    let key = es256();
    let token = key.token_with_header(&json!({"alg": "ES256", "kid": "k1"}), &claims());
    let err = check_with(&key, &token, &rules(), NOW).unwrap_err();
    assert_eq!(err, TokenError::MissingTyp);
    assert_eq!(err.code(), "missing_typ");
}

#[test]
fn typ_other_than_at_jwt_is_refused() {
    let key = es256();
    for typ in ["JWT", "jwt", "application/jwt", "dpop+jwt", "at+jwt+x", ""] {
        let token =
            key.token_with_header(&json!({"alg": "ES256", "kid": "k1", "typ": typ}), &claims());
        assert_eq!(
            check_with(&key, &token, &rules(), NOW).err(),
            Some(TokenError::WrongTyp),
            "{typ:?}"
        );
    }
}

#[test]
fn typ_at_jwt_in_any_case_with_optional_application_prefix_is_accepted() {
    let key = es256();
    for typ in [
        "at+jwt",
        "AT+JWT",
        "application/at+jwt",
        "Application/At+Jwt",
    ] {
        let token =
            key.token_with_header(&json!({"alg": "ES256", "kid": "k1", "typ": typ}), &claims());
        assert!(check_with(&key, &token, &rules(), NOW).is_ok(), "{typ}");
    }
}

#[test]
fn key_material_or_key_references_in_the_header_are_refused() {
    let key = es256();
    for (member, value) in [
        ("jku", json!("https://evil.example/jwks")),
        ("x5u", json!("https://evil.example/cert")),
        ("x5c", json!(["MIIB"])),
        ("jwk", key.jwk().clone()),
    ] {
        let mut header = key.header();
        header[member] = value;
        let token = key.token_with_header(&header, &claims());
        let err = parse_token(&token, &rules()).unwrap_err();
        assert_eq!(err, TokenError::KeyInHeader(member));
        assert_eq!(err.code(), "key_in_header");
    }
}

#[test]
fn alg_outside_the_configured_allowlist_is_refused() {
    let key = TestKey::ed25519(Some("ed"));
    let mut config = config();
    config.algorithms = vec!["ES256".into()];
    let rules = TokenRules::from_config(&config).unwrap();
    let err = parse_token(&key.token(&claims()), &rules).unwrap_err();
    assert_eq!(err, TokenError::AlgNotAllowed(JwsAlg::EdDsa));
    assert_eq!(err.code(), "alg_not_allowed");
}

#[test]
fn eddsa_header_with_an_ec_key_is_a_key_kind_mismatch() {
    let ed = TestKey::ed25519(Some("k1"));
    let ec = es256();
    let token = ed.token(&claims());
    let err = check_with(&ec, &token, &rules(), NOW).unwrap_err();
    assert_eq!(
        err,
        TokenError::Jose(JoseError::AlgKeyMismatch {
            alg: JwsAlg::EdDsa,
            key: KeyKind::EcP256
        })
    );
    assert_eq!(err.code(), "alg_key_mismatch");
    // And the other way round.
    let err = check_with(&ed, &ec.token(&claims()), &rules(), NOW).unwrap_err();
    assert!(matches!(
        err,
        TokenError::Jose(JoseError::AlgKeyMismatch { .. })
    ));
}

#[test]
fn signature_by_another_key_of_the_same_kind_is_refused() {
    let signer = es256();
    let other = es256();
    let err = check_with(&other, &signer.token(&claims()), &rules(), NOW).unwrap_err();
    assert_eq!(err, TokenError::Jose(JoseError::BadSignature));
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn claims_are_not_read_before_the_signature_verifies() {
    // An expired token with a bad signature reports the signature.
    let signer = es256();
    let other = es256();
    let token = signer.token(&with("exp", json!(1)));
    assert_eq!(
        check_with(&other, &token, &rules(), NOW).err(),
        Some(TokenError::Jose(JoseError::BadSignature))
    );
}

#[test]
fn string_exp_is_invalid_not_absent() {
    let key = es256();
    let err = check(&key, &with("exp", json!((NOW + 300).to_string()))).unwrap_err();
    assert_eq!(err, claim_error("exp", ClaimProblem::WrongType));
    assert_eq!(err.code(), "malformed_claim");
}

#[test]
fn exp_must_be_a_whole_non_negative_number() {
    let key = es256();
    for exp in [json!(-1), json!(1.7e9 + 0.5), json!(1_700_000_300.0)] {
        assert_eq!(
            check(&key, &with("exp", exp.clone())).err(),
            Some(claim_error("exp", ClaimProblem::NotNumericDate)),
            "{exp}"
        );
    }
    for (exp, problem) in [
        (json!(null), ClaimProblem::WrongType),
        (json!(true), ClaimProblem::WrongType),
    ] {
        assert_eq!(
            check(&key, &with("exp", exp)).err(),
            Some(claim_error("exp", problem))
        );
    }
    assert_eq!(
        check(&key, &without("exp")).err(),
        Some(claim_error("exp", ClaimProblem::Missing))
    );
}

#[test]
fn nbf_and_iat_of_the_wrong_type_are_refused() {
    let key = es256();
    assert_eq!(
        check(&key, &with("nbf", json!("0"))).err(),
        Some(claim_error("nbf", ClaimProblem::WrongType))
    );
    assert_eq!(
        check(&key, &with("iat", json!(-5))).err(),
        Some(claim_error("iat", ClaimProblem::NotNumericDate))
    );
}

#[test]
fn huge_exp_saturates_instead_of_overflowing() {
    let key = es256();
    let c = check(&key, &with("exp", json!(u64::MAX))).unwrap();
    assert_eq!(c.expires_at(), u64::MAX);
}

#[test]
fn missing_client_id_or_jti_is_refused_by_default() {
    let key = es256();
    for name in ["client_id", "jti"] {
        let err = check(&key, &without(name)).unwrap_err();
        assert_eq!(
            err,
            TokenError::Claim {
                claim: Cow::Owned(name.to_owned()),
                problem: ClaimProblem::Missing
            }
        );
        assert_eq!(err.code(), "missing_claim");
        assert_eq!(err.to_string(), format!("claim `{name}` is missing"));
        // An empty string identifies nothing either.
        assert!(check(&key, &with(name, json!(""))).is_err());
    }
}

#[test]
fn missing_client_id_and_jti_are_allowed_when_required_claims_are_relaxed() {
    let key = es256();
    let mut config = config();
    config.required_claims = Vec::new();
    let rules = TokenRules::from_config(&config).unwrap();
    let mut c = without("client_id");
    c.as_object_mut().unwrap().remove("jti");
    let claims = check_with(&key, &key.token(&c), &rules, NOW).unwrap();
    assert_eq!((claims.client_id(), claims.jti()), (None, None));
}

#[test]
fn client_id_and_jti_must_be_strings_even_when_not_required() {
    let key = es256();
    let mut config = config();
    config.required_claims = Vec::new();
    let rules = TokenRules::from_config(&config).unwrap();
    for name in ["client_id", "jti", "sub", "tenant"] {
        let err = check_with(&key, &key.token(&with(name, json!(7))), &rules, NOW).unwrap_err();
        assert_eq!(err, claim_error(name, ClaimProblem::WrongType), "{name}");
    }
}

#[test]
fn other_required_claims_must_be_present_strings() {
    let key = es256();
    let mut config = config();
    config.required_claims = vec!["department".into(), "roles".into()];
    let rules = TokenRules::from_config(&config).unwrap();
    let owned = |problem| TokenError::Claim {
        claim: Cow::Owned("department".to_owned()),
        problem,
    };
    let base = with("roles", json!(["a"]));
    let mut c = base.clone();
    assert_eq!(
        check_with(&key, &key.token(&c), &rules, NOW).err(),
        Some(owned(ClaimProblem::Missing))
    );
    c["department"] = json!(5);
    assert_eq!(
        check_with(&key, &key.token(&c), &rules, NOW).err(),
        Some(owned(ClaimProblem::WrongType))
    );
    c["department"] = json!("sales");
    assert!(check_with(&key, &key.token(&c), &rules, NOW).is_ok());
    // `roles` is typed by the verifier: required means present.
    c.as_object_mut().unwrap().remove("roles");
    assert_eq!(
        check_with(&key, &key.token(&c), &rules, NOW).err(),
        Some(TokenError::Claim {
            claim: Cow::Owned("roles".to_owned()),
            problem: ClaimProblem::Missing
        })
    );
}

#[test]
fn scope_is_split_on_spaces_and_absent_scope_is_empty() {
    let key = es256();
    let c = check(&key, &with("scope", json!(" a  b c "))).unwrap();
    assert_eq!(c.scopes(), &*stella_core::identity::names(["a", "b", "c"]));
    assert!(check(&key, &without("scope")).unwrap().scopes().is_empty());
    assert_eq!(
        check(&key, &with("scope", json!(["a", "b"]))).err(),
        Some(claim_error("scope", ClaimProblem::WrongType))
    );
}

#[test]
fn roles_must_be_an_array_of_strings() {
    let key = es256();
    for roles in [json!("admin"), json!(["admin", 1]), json!({"admin": true})] {
        assert_eq!(
            check(&key, &with("roles", roles.clone())).err(),
            Some(claim_error("roles", ClaimProblem::WrongType)),
            "{roles}"
        );
    }
    assert!(check(&key, &with("roles", json!([])))
        .unwrap()
        .roles()
        .is_empty());
}

#[test]
fn cnf_becomes_a_binding_and_anything_unenforceable_fails_closed() {
    let key = es256();
    let thumb = b64url_encode([7u8; 32]);
    let padded = format!("{thumb}=");
    let short = b64url_encode([7u8; 31]);
    let long = b64url_encode([7u8; 33]);
    let std_alphabet = b64url_encode([0xfbu8; 32]).replace('-', "+");
    let non_canonical_bits = format!("{}{}", &thumb[..42], "9");
    let cases = [
        (json!({"jkt": thumb}), Binding::Jkt(thumb.clone())),
        (json!({"x5t#S256": thumb}), Binding::X5tS256(thumb.clone())),
        (
            json!({"jkt": thumb, "x5t#S256": thumb}),
            Binding::Unenforceable,
        ),
        (json!({"jwk": key.jwk()}), Binding::Unenforceable),
        (json!({"jkt": thumb, "extra": 1}), Binding::Unenforceable),
        (json!({"kid": "k"}), Binding::Unenforceable),
        (json!({"JKT": thumb}), Binding::Unenforceable),
        (json!({"jkt": padded}), Binding::Unenforceable),
        (json!({"jkt": short}), Binding::Unenforceable),
        (json!({"x5t#S256": long}), Binding::Unenforceable),
        (json!({"jkt": std_alphabet}), Binding::Unenforceable),
        (json!({"jkt": non_canonical_bits}), Binding::Unenforceable),
        (json!({"jkt": 5}), Binding::Unenforceable),
        (json!({}), Binding::Unenforceable),
        (json!("jkt"), Binding::Unenforceable),
        (json!(null), Binding::Unenforceable),
    ];
    for (cnf, expected) in cases {
        let c = check(&key, &with("cnf", cnf.clone())).unwrap();
        assert_eq!(c.binding(), &expected, "{cnf}");
    }
    assert_eq!(
        check(&key, &without("cnf")).unwrap().binding(),
        &Binding::Unbound
    );
}

#[test]
fn token_over_the_length_cap_is_refused() {
    let key = es256();
    let token = key.token(&with("pad", json!("x".repeat(DEFAULT_MAX_TOKEN_LEN))));
    let err = parse_token(&token, &rules()).unwrap_err();
    assert_eq!(
        err,
        TokenError::Jose(JoseError::TooLong {
            max: DEFAULT_MAX_TOKEN_LEN
        })
    );
    let rules = rules().with_max_token_len(64 * 1024);
    assert!(parse_token(&token, &rules).is_ok());
}

#[test]
fn error_messages_never_echo_token_values() {
    let key = es256();
    let marker = "ZZmarkerZZ";
    for c in [
        with("iss", json!(marker)),
        with("aud", json!(marker)),
        with("exp", json!(marker)),
        with("cnf", json!({"jkt": marker})),
        with("roles", json!([marker, 1])),
        with(marker, json!(1)),
    ] {
        if let Err(err) = check(&key, &c) {
            assert!(!err.to_string().contains(marker), "{err}");
        }
    }
    let token = key.token_with_header(
        &json!({"alg": "ES256", "typ": marker, "kid": marker}),
        &claims(),
    );
    let err = parse_token(&token, &rules()).unwrap_err();
    assert!(!err.to_string().contains(marker));
}

#[test]
fn error_codes_are_lowercase_labels_and_only_unavailable_keys_are_503() {
    use stella_authority::jwks::Unavailable;
    let errors = [
        TokenError::Jose(JoseError::BadSignature),
        TokenError::MissingTyp,
        TokenError::WrongTyp,
        TokenError::AlgNotAllowed(JwsAlg::Rs256),
        TokenError::KeyInHeader("jku"),
        TokenError::Key(KeyLookupError::UnknownKid),
        TokenError::Key(KeyLookupError::MissingKid),
        TokenError::Key(KeyLookupError::Unavailable(Unavailable::NeverLoaded)),
        claim_error("exp", ClaimProblem::Missing),
        claim_error("exp", ClaimProblem::WrongType),
        claim_error("token_use", ClaimProblem::UnexpectedValue),
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::Expired { ago: 1, leeway: 0 },
        TokenError::NotYetValid { wait: 1, leeway: 0 },
        TokenError::IssuedInFuture {
            ahead: 1,
            leeway: 0,
        },
    ];
    for err in &errors {
        let code = err.code();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{code}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(|c: char| c.is_ascii_lowercase()),
            "{message}"
        );
        assert_eq!(
            err.is_unavailable(),
            matches!(err, TokenError::Key(KeyLookupError::Unavailable(_))),
            "{err:?}"
        );
    }
}

#[test]
fn rules_refuse_unknown_algorithms_and_empty_lists() {
    let mut c = config();
    c.algorithms = vec!["ES256".into(), "HS256".into()];
    assert_eq!(
        TokenRules::from_config(&c),
        Err(RulesError::UnsupportedAlgorithm { index: 1 })
    );
    c.algorithms = Vec::new();
    assert_eq!(TokenRules::from_config(&c), Err(RulesError::NoAlgorithm));
    let mut c = config();
    c.audiences = vec![String::new()];
    assert_eq!(TokenRules::from_config(&c), Err(RulesError::NoAudience));
    let r = rules();
    assert_eq!(r.issuer(), ISSUER);
    assert_eq!(r.leeway(), LEEWAY);
    assert_eq!(r.algorithms().len(), 5);
    assert_eq!(r.max_token_len(), DEFAULT_MAX_TOKEN_LEN);
}

// authenticate_bearer: the orchestration with a JWKS served over loopback.

struct Setup {
    server: stella_authority::test_server::TestServer,
    jwks: Arc<JwksCache>,
    cache: TokenCache,
    rules: TokenRules,
    clock: Arc<ManualClock>,
}

async fn setup(keys: &[&TestKey]) -> Setup {
    let server = authority_server(&jwks(keys));
    let config = test_config(&server.base(), AUDIENCE);
    let clock = Arc::new(ManualClock::new(NOW));
    let jwks = Arc::new(JwksCache::new(&config, clock.clone()).unwrap());
    jwks.refresh().await.unwrap();
    Setup {
        server,
        jwks,
        cache: TokenCache::new(100),
        rules: TokenRules::from_config(&config).unwrap(),
        clock,
    }
}

fn claims_for(s: &Setup) -> Value {
    with("iss", json!(s.rules.issuer()))
}

#[tokio::test]
async fn second_presentation_of_a_token_is_served_from_the_cache() {
    let key = es256();
    let s = setup(&[&key]).await;
    let token = key.token(&claims_for(&s));
    let first = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, NOW)
        .await
        .unwrap();
    assert_eq!(first.client_id(), Some("svc-bearer"));
    let second = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, NOW + 1)
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!((s.cache.hits(), s.cache.misses()), (1, 1));
    assert_eq!(s.server.count(JWKS_PATH), 1);
}

#[tokio::test]
async fn cached_token_past_its_expiry_is_verified_again_and_refused() {
    let key = es256();
    let s = setup(&[&key]).await;
    let token = key.token(&claims_for(&s));
    authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, NOW)
        .await
        .unwrap();
    let later = NOW + 300 + LEEWAY;
    s.clock.set(later);
    let err = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, later)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "expired");
    assert_eq!(s.cache.hits(), 0);
}

#[tokio::test]
async fn refused_tokens_are_not_cached() {
    let key = es256();
    let s = setup(&[&key]).await;
    let token = key.token(&with("iss", json!("https://other.example")));
    for _ in 0..2 {
        let err = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, NOW)
            .await
            .unwrap_err();
        assert_eq!(err, TokenError::WrongIssuer);
    }
    assert_eq!(s.cache.hits(), 0);
}

#[tokio::test]
async fn token_with_an_unknown_kid_is_invalid_not_unavailable() {
    let key = es256();
    let s = setup(&[&key]).await;
    let stranger = TestKey::es256(Some("k-unknown"));
    let err = authenticate_bearer(
        &stranger.token(&claims_for(&s)),
        &s.rules,
        &s.jwks,
        &s.cache,
        NOW,
    )
    .await
    .unwrap_err();
    assert_eq!(err, TokenError::Key(KeyLookupError::UnknownKid));
    assert!(!err.is_unavailable());
}

#[tokio::test]
async fn stale_keys_make_uncached_tokens_unavailable() {
    let key = es256();
    let s = setup(&[&key]).await;
    s.server.set(JWKS_PATH, Reply::status(500, "{}"));
    let later = NOW + s.jwks.max_age() + 1;
    s.clock.set(later);
    let mut c = claims_for(&s);
    c["exp"] = json!(later + 300);
    let token = key.token(&c);
    let err = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, later)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(err.code(), "keys_unavailable");
}

#[tokio::test]
async fn oversize_token_is_refused_before_hashing_or_lookup() {
    let key = es256();
    let s = setup(&[&key]).await;
    let token = "a".repeat(DEFAULT_MAX_TOKEN_LEN + 1);
    let err = authenticate_bearer(&token, &s.rules, &s.jwks, &s.cache, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "jws_too_long");
    assert_eq!((s.cache.hits(), s.cache.misses()), (0, 0));
}

// Token profiles: the same verifier, with claims read where the Authority's
// tokens carry them (bearer::mapping has the path-by-path tables).

fn profiled(profile: TokenProfile) -> TokenRules {
    let mut c = config();
    c.token_claims = Some(profile.mapping());
    c.required_claims = Vec::new();
    TokenRules::from_config(&c).unwrap()
}

/// A token shaped as `profile`'s provider issues it: its header `typ` (or
/// none), its claim names and nesting.
fn provider_token(profile: TokenProfile) -> (Value, Value) {
    let header = |typ: Option<&str>| match typ {
        Some(typ) => json!({"alg": "ES256", "kid": "k1", "typ": typ}),
        None => json!({"alg": "ES256", "kid": "k1"}),
    };
    let mut payload = json!({"iss": ISSUER, "sub": "user-1", "iat": NOW - 10, "exp": NOW + 300});
    let extra = match profile {
        TokenProfile::Rfc9068 => return (header(Some("at+jwt")), claims()),
        TokenProfile::Keycloak => json!({
            "aud": [AUDIENCE, "account"], "jti": "k-1", "typ": "Bearer", "azp": "app",
            "scope": "profile echo.read", "realm_access": {"roles": ["auditor"]},
            "resource_access": {"app": {"roles": ["app-admin"]}},
        }),
        TokenProfile::Entra => json!({
            "aud": AUDIENCE, "azp": "app", "scp": "echo.read", "roles": ["auditor"],
            "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47", "uti": "u", "ver": "2.0",
        }),
        TokenProfile::Auth0 => json!({
            "aud": [AUDIENCE, format!("{ISSUER}/userinfo")], "azp": "app",
            "scope": "openid echo.read", "permissions": ["auditor"], "org_id": "org_1",
        }),
        TokenProfile::Okta => json!({
            "aud": AUDIENCE, "ver": 1, "jti": "AT.1", "cid": "app", "uid": "00u1",
            "scp": ["echo.read"], "groups": ["auditor"],
        }),
        TokenProfile::Cognito => json!({
            "jti": "c-1", "client_id": "app", "token_use": "access", "scope": "echo.read",
            "cognito:groups": ["auditor"], "username": "user-1",
        }),
    };
    for (k, v) in extra.as_object().unwrap() {
        payload[k] = v.clone();
    }
    let typ = match profile {
        TokenProfile::Okta | TokenProfile::Cognito => None,
        _ => Some("JWT"),
    };
    (header(typ), payload)
}

#[test]
fn each_profile_accepts_its_providers_token_and_the_strict_default_refuses_it() {
    let key = es256();
    for profile in TokenProfile::ALL.into_iter().skip(1) {
        let (header, claims) = provider_token(profile);
        let mut rules = profiled(profile);
        if profile == TokenProfile::Cognito {
            // Cognito names the app client, not an audience.
            let mut c = config();
            c.audiences = vec!["app".into()];
            c.token_claims = Some(profile.mapping());
            c.required_claims = Vec::new();
            rules = TokenRules::from_config(&c).unwrap();
        }
        let token = key.token_with_header(&header, &claims);
        let verified =
            check_with(&key, &token, &rules, NOW).unwrap_or_else(|e| panic!("{profile}: {e}"));
        assert_eq!(verified.client_id(), Some("app"), "{profile}");
        assert_eq!(verified.subject(), Some("user-1"), "{profile}");
        assert!(
            verified.scopes().iter().any(|s| &**s == "echo.read"),
            "{profile}"
        );
        assert_eq!(
            verified.roles().iter().map(|r| &**r).collect::<Vec<_>>(),
            ["auditor"],
            "{profile}"
        );
        let tenant = match profile {
            TokenProfile::Entra => Some("72f988bf-86f1-41af-91ab-2d7cd011db47"),
            TokenProfile::Auth0 => Some("org_1"),
            _ => None,
        };
        assert_eq!(verified.tenant(), tenant, "{profile}");
        // Policies see the mapped vocabulary through claim() too.
        assert_eq!(
            verified.claim("client_id").as_deref(),
            Some(&json!("app")),
            "{profile}"
        );
        // The strict default refuses it at its header.
        let strict = check_with(&key, &token, &self::rules(), NOW).unwrap_err();
        let expected = match profile {
            TokenProfile::Okta | TokenProfile::Cognito => TokenError::MissingTyp,
            _ => TokenError::WrongTyp,
        };
        assert_eq!(strict, expected, "{profile}");
    }
}

#[test]
fn an_explicit_rfc9068_profile_accepts_and_refuses_as_the_default_does() {
    let key = es256();
    let rules = profiled(TokenProfile::Rfc9068);
    let verified = check(&key, &claims()).unwrap();
    let mapped = check_with(&key, &key.token(&claims()), &rules, NOW).unwrap();
    assert_eq!(format!("{verified:?}"), format!("{mapped:?}"));
    for (name, expected) in [
        ("client_id", claim_error("client_id", ClaimProblem::Missing)),
        ("jti", claim_error("jti", ClaimProblem::Missing)),
        ("aud", claim_error("aud", ClaimProblem::Missing)),
    ] {
        let token = key.token(&without(name));
        assert_eq!(
            check_with(&key, &token, &rules, NOW).unwrap_err(),
            expected,
            "{name}"
        );
    }
}

#[test]
fn a_profile_token_without_its_client_id_or_required_jti_is_refused() {
    let key = es256();
    let (header, claims) = provider_token(TokenProfile::Entra);
    let mut no_client = claims.clone();
    no_client.as_object_mut().unwrap().remove("azp");
    let err = check_with(
        &key,
        &key.token_with_header(&header, &no_client),
        &profiled(TokenProfile::Entra),
        NOW,
    )
    .unwrap_err();
    assert_eq!(
        err,
        TokenError::Claim {
            claim: Cow::Owned("azp or appid".into()),
            problem: ClaimProblem::Missing
        }
    );
    // Entra's v1.0 name for the client.
    let mut v1 = no_client.clone();
    v1["appid"] = json!("app");
    let verified = check_with(
        &key,
        &key.token_with_header(&header, &v1),
        &profiled(TokenProfile::Entra),
        NOW,
    )
    .unwrap();
    assert_eq!(verified.client_id(), Some("app"));

    let (header, mut claims) = provider_token(TokenProfile::Keycloak);
    claims.as_object_mut().unwrap().remove("jti");
    let err = check_with(
        &key,
        &key.token_with_header(&header, &claims),
        &profiled(TokenProfile::Keycloak),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err, claim_error("jti", ClaimProblem::Missing));
}

#[test]
fn a_keycloak_id_token_is_refused_as_an_access_token() {
    let key = es256();
    let (header, mut claims) = provider_token(TokenProfile::Keycloak);
    claims["typ"] = json!("ID");
    let err = check_with(
        &key,
        &key.token_with_header(&header, &claims),
        &profiled(TokenProfile::Keycloak),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "unexpected_claim_value");
}

#[test]
fn without_aud_only_a_configured_client_id_passes_and_an_aud_is_still_checked() {
    let key = es256();
    let (header, claims) = provider_token(TokenProfile::Cognito);
    let rules_for = |audiences: &[&str]| {
        let mut c = config();
        c.audiences = audiences.iter().map(|a| a.to_string()).collect();
        c.token_claims = Some(TokenProfile::Cognito.mapping());
        c.required_claims = Vec::new();
        TokenRules::from_config(&c).unwrap()
    };
    let token = key.token_with_header(&header, &claims);
    let verified = check_with(&key, &token, &rules_for(&["app"]), NOW).unwrap();
    assert!(verified.audiences().is_empty());
    // Another app client of the same pool.
    assert_eq!(
        check_with(&key, &token, &rules_for(&["other-app"]), NOW).unwrap_err(),
        TokenError::WrongAudience
    );
    // No client id at all: no audience to check, refused.
    let mut anonymous = claims.clone();
    anonymous.as_object_mut().unwrap().remove("client_id");
    assert_eq!(
        check_with(
            &key,
            &key.token_with_header(&header, &anonymous),
            &rules_for(&["app"]),
            NOW
        )
        .unwrap_err(),
        TokenError::WrongAudience
    );
    // An aud present is checked as ever, whatever the client id.
    let mut with_aud = claims.clone();
    with_aud["aud"] = json!("https://elsewhere.example");
    assert_eq!(
        check_with(
            &key,
            &key.token_with_header(&header, &with_aud),
            &rules_for(&["app"]),
            NOW
        )
        .unwrap_err(),
        TokenError::WrongAudience
    );
    // A Cognito ID token names the app client in aud, and token_use: id.
    let id_token = json!({
        "iss": ISSUER, "sub": "user-1", "aud": "app", "token_use": "id", "jti": "i-1",
        "iat": NOW - 10, "exp": NOW + 300, "cognito:groups": ["auditor"],
    });
    let err = check_with(
        &key,
        &key.token_with_header(&header, &id_token),
        &rules_for(&["app"]),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err, claim_error("client_id", ClaimProblem::Missing));
    let mut id_token = id_token;
    id_token["client_id"] = json!("app");
    let err = check_with(
        &key,
        &key.token_with_header(&header, &id_token),
        &rules_for(&["app"]),
        NOW,
    )
    .unwrap_err();
    assert_eq!(err.code(), "unexpected_claim_value", "{err}");
}

#[test]
fn introspection_answers_are_read_by_their_rfc_7662_names_whatever_the_profile() {
    let rules = profiled(TokenProfile::Okta);
    let answer = json!({
        "iss": ISSUER, "aud": AUDIENCE, "exp": NOW + 300, "client_id": "app",
        "scope": "echo.read echo.write", "cid": "ignored", "scp": ["ignored"],
    });
    let Value::Object(answer) = answer else {
        unreachable!()
    };
    let verified = check_claims(answer, &rules, NOW, ClaimsSource::Introspection).unwrap();
    assert_eq!(verified.client_id(), Some("app"));
    assert_eq!(verified.subject(), Some("app"));
    assert_eq!(
        verified.scopes().iter().map(|s| &**s).collect::<Vec<_>>(),
        ["echo.read", "echo.write"]
    );
}
