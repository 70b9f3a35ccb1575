//! A key per service (`services[].envelope_kid`): the gateway signs each
//! service's envelopes with that service's own key, so a service holding its
//! HS256 key can mint envelopes for itself only, never ones another service
//! accepts.

mod common;

use common::*;
use serde_json::json;
use stella_envelope::{AuthMethod, Identity, Key, KeyId, Signer, Target};

const ECHO_KEY: &str = "hs256:c3RlbGxhLWUyZS1lY2hvLXNlcnZpY2Uta2V5LW5vdC1mb3ItcHJvZHVjdGlvbg";
const HYBRID_KEY: &str = "hs256:c3RlbGxhLWUyZS1oeWJyaWQtc2VydmljZS1rZXktbm90LWZvci1wcm9kdWN0aW9u";

#[test]
fn each_service_gets_envelopes_signed_with_its_own_key_and_one_key_cannot_serve_another() {
    let dir = TempDir::new("service-keys");
    let authority = Authority::start();
    // Each service accepts its own key only (not the gateway's active key).
    let echo = Echo::start(
        "echo",
        "GatewayEnforced",
        &[
            ("Router__IdentityEnvelopeSigningKey", ECHO_KEY),
            ("Router__IdentityEnvelopeSigningKeyId", "k-echo"),
        ],
    );
    let hybrid = Echo::start(
        "echo-hybrid",
        "GatewayEnforced",
        &[
            ("Router__IdentityEnvelopeSigningKey", HYBRID_KEY),
            ("Router__IdentityEnvelopeSigningKeyId", "k-hybrid"),
        ],
    );
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .service("echo-hybrid", hybrid.addr())
        .router(
            "identity_envelope_keys",
            json!([{"kid": "k-echo", "key": ECHO_KEY}, {"kid": "k-hybrid", "key": HYBRID_KEY}]),
        )
        .service_setting("echo", "envelope_kid", json!("k-echo"))
        .service_setting("echo-hybrid", "envelope_kid", json!("k-hybrid"))
        .start(&dir);
    let token = authority.token(BEARER);
    let kid = |r: &Response| received_values(&r.json(), "x-stellaops-identity-envelope-kid");

    // Each service verified an envelope signed with its own key.
    let r = gw.get_with_token("/items/1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(kid(&r), vec!["k-echo".to_string()]);
    let r = gw.get_with_token("/hybrid/1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(kid(&r), vec!["k-hybrid".to_string()]);

    // The admin port says which service signs with which key, never a key.
    let config = gw.active_config();
    let services = &config["envelope"]["services"];
    assert!(
        services
            .as_array()
            .unwrap()
            .contains(&json!({"service": "echo-hybrid", "kid": "k-hybrid"})),
        "{services}"
    );
    assert!(
        !config.to_string().contains("c3RlbGxh"),
        "key material on /config"
    );

    // `echo` holds k-echo: an envelope it mints for echo-hybrid, well formed
    // in every other way, is refused there (unknown_kid): 401, no identity.
    let forged = Signer::new(
        Key::parse(KeyId::new("k-echo").unwrap(), ECHO_KEY).unwrap(),
        GATEWAY_ID,
        60,
    )
    .unwrap();
    let mut identity = Identity::anonymous();
    identity.auth_method = AuthMethod::Bearer;
    identity.subject = Some("admin".into());
    let headers = forged
        .sign(
            &identity,
            &Target {
                audience: "echo-hybrid",
                method: "GET",
                path: "/hybrid/1",
                request_id: "forged-1",
            },
            now(),
        )
        .unwrap();
    let r = request(hybrid.addr(), "GET", "/hybrid/1", &headers.pairs(), b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["error"], "envelope_invalid");
    assert_eq!(r.json()["envelope_error"], "unknown_kid");
    assert!(!r.text().contains("admin"), "{}", r.text());
}

#[test]
fn an_envelope_kid_that_names_no_configured_key_is_refused_with_its_key_path() {
    let dir = TempDir::new("service-keys-unknown");
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        "gateway:\n  listeners: {http: \"127.0.0.1:8080\"}\n  auth:\n    authority:\n      \
         issuer: https://authority.example\n      audiences: [api]\n\
         router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n\
         services:\n  - {name: orders, upstreams: [\"orders:8080\"], envelope_kid: k-orders}\n",
    )
    .unwrap();
    let out = std::process::Command::new(gateway_binary())
        .env_clear()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "services[0].envelope_kid: names k-orders, which is not a configured envelope key"
        ),
        "{err}"
    );
}

#[test]
fn the_admin_listener_publishes_the_public_envelope_keys_as_a_jwks_and_never_a_secret() {
    let ed = Key::ed25519_from_seed(KeyId::new("ed-1").unwrap(), [7; 32]).unwrap();
    let public = ed.public_spec().to_string();
    let echo = Echo::start(
        "echo",
        "GatewayEnforced",
        &[
            ("Router__IdentityEnvelopeSigningKey", public.as_str()),
            ("Router__IdentityEnvelopeSigningKeyId", "ed-1"),
        ],
    );
    let addr = echo.addr();
    let stack = Stack::start_with("published-keys", move |s| {
        s.service("echo", addr)
            .router(
                "identity_envelope_keys",
                json!([{"kid": "ed-1", "key": ed.to_spec().to_string()}]),
            )
            .router("identity_envelope_active_kid", json!("ed-1"))
    });
    let r = stack.gateway.admin_get("/.well-known/stella/keys.json");
    assert_eq!(r.status, 200, "{}", r.text());
    let keys = r.json()["keys"].as_array().unwrap().clone();
    // The EdDSA key, public half only; the HS256 key of the default setup
    // (e2e-1) is a secret and is not listed.
    assert_eq!(keys.len(), 1, "{keys:?}");
    let jwk = &keys[0];
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    assert_eq!(jwk["kid"], "ed-1");
    assert_eq!(jwk["alg"], "EdDSA");
    assert!(jwk.get("d").is_none(), "private member published: {jwk}");
    assert_eq!(
        format!("ed25519-public:{}", jwk["x"].as_str().unwrap()),
        public
    );
    assert!(!r.text().contains("c3RlbGxh"), "HS256 material published");

    // The service, holding only that public key, verified the envelope.
    let got = stack.gateway.get("/public/x", &[]);
    assert_eq!(got.status, 200, "{}", got.text());
    let body = got.json();
    let kid = received_values(&body, "x-stellaops-identity-envelope-kid");
    assert_eq!(kid, vec!["ed-1".to_string()]);
}
