//! Transaction tokens end to end (docs/design.md §3.6, envelope/SPEC.md
//! section 9): a service with `identity_format: txn-token` gets one
//! `Txn-Token` header, a JWT that verifies against the JWKS the gateway
//! publishes (admin listener, and the public ones with
//! `gateway.listeners.public_jwks`), for that service, that request and that
//! caller; `both` adds it to the envelope; a client never gets one through;
//! `check` refuses a transaction-token service without an EdDSA key; and
//! two generic JWT libraries (PyJWT, `jose`) verify what the gateway sent
//! (samples/txn-token).

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use stella_envelope::{Key, KeyId};
use stella_jose::{CompactJws, PublicJwk, VerifyingKey};

const KEYS: &str = "/.well-known/stella/keys.json";

fn ed_key(kid: &str, seed: u8) -> Key {
    Key::ed25519_from_seed(KeyId::new(kid).unwrap(), [seed; 32]).unwrap()
}

/// `router.identity_envelope_keys` entries for `keys`.
fn keyring(keys: &[&Key]) -> Value {
    keys.iter()
        .map(|k| json!({"kid": k.kid().as_str(), "key": k.to_spec().as_str()}))
        .collect()
}

/// Verifies `token` the way a service does: the key by `kid` from `jwks`,
/// EdDSA only, then the signature. Returns the header and the claims.
#[track_caller]
fn verify(token: &str, jwks: &Value) -> (Value, Value) {
    let jws = CompactJws::parse(token, 16 * 1024).expect("a compact jws");
    let kid = jws.header().kid().expect("a kid").to_owned();
    let jwk = jwks["keys"]
        .as_array()
        .expect("a jwks")
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} is not published: {jwks}"));
    assert_eq!(jwk["alg"], jws.header().alg().as_str(), "{jwk}");
    let key = PublicJwk::from_json(jwk.as_object().unwrap()).expect("a public jwk");
    jws.verify(&VerifyingKey::new(&key))
        .expect("the signature verifies with the published key");
    (
        Value::Object(jws.header_json().clone()),
        serde_json::from_slice(jws.payload()).expect("json claims"),
    )
}

/// The kids of a JWKS, in order.
fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("a jwks")
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// No envelope header reached the service.
#[track_caller]
fn assert_no_envelope(body: &Value) {
    for (name, value) in received(body) {
        assert!(
            !name.starts_with("x-stellaops-identity-envelope"),
            "{name}: {value} reached a txn-token service"
        );
    }
}

/// The one `Txn-Token` the service received (and no client spelling).
#[track_caller]
fn the_txn_token(body: &Value) -> String {
    let values = received_values(body, "txn-token");
    assert_eq!(values.len(), 1, "{body}");
    assert!(
        received(body).iter().all(|(name, _)| name != "txn_token"),
        "{body}"
    );
    values[0].clone()
}

#[test]
fn a_txn_token_service_gets_one_token_that_verifies_against_the_published_keys_and_no_envelope() {
    let dir = TempDir::new("txn-token");
    let authority = Authority::start();
    let token = authority.token(BEARER);
    let access = jwt_claims(&token);
    let legacy_key = ed_key("ed-legacy", 11);
    let echo_key = ed_key("ed-echo", 12);
    let echo_public = echo_key.public_spec().to_string();
    // echo-legacy (txn-token) authenticates callers on its own with exactly
    // this token, so it answers with what it received; echo (both) accepts
    // its EdDSA envelope; echo-hybrid keeps the default envelope.
    let (echo, hybrid, legacy) = std::thread::scope(|s| {
        let echo = s.spawn(|| {
            Echo::start(
                "echo",
                "GatewayEnforced",
                &[
                    ("Router__IdentityEnvelopeSigningKey", echo_public.as_str()),
                    ("Router__IdentityEnvelopeSigningKeyId", "ed-echo"),
                ],
            )
        });
        let hybrid = s.spawn(Echo::hybrid);
        let legacy = Echo::legacy(&token);
        (echo.join().unwrap(), hybrid.join().unwrap(), legacy)
    });
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .service("echo-hybrid", hybrid.addr())
        .service("echo-legacy", legacy.addr())
        .router("identity_envelope_keys", keyring(&[&legacy_key, &echo_key]))
        .service_setting("echo-legacy", "envelope_kid", json!("ed-legacy"))
        .service_setting("echo-legacy", "identity_format", json!("txn-token"))
        .service_setting("echo", "envelope_kid", json!("ed-echo"))
        .service_setting("echo", "identity_format", json!("both"))
        .env("Gateway__Listeners__PublicJwks", "true")
        .start(&dir);
    let auth = format!("Bearer {token}");
    // What a client might send to pose as the gateway.
    let forged = "eyJhbGciOiJub25lIiwidHlwIjoidHhudG9rZW4rand0In0.eyJzdWIiOiJhZG1pbiJ9.";
    let spoof = [
        ("Authorization", auth.as_str()),
        ("Txn-Token", forged),
        ("txn_token", forged),
    ];

    // The published keys: the same document on both listeners, the EdDSA
    // keys only (the active HS256 key is a secret).
    let admin_keys = gw.admin_get(KEYS);
    assert_eq!(admin_keys.status, 200, "{}", admin_keys.text());
    let public_keys = gw.get(KEYS, &[]);
    assert_eq!(public_keys.status, 200, "{}", public_keys.text());
    assert_eq!(
        public_keys.header("content-type"),
        Some("application/jwk-set+json")
    );
    assert_eq!(
        public_keys.header("cache-control"),
        Some("public, max-age=300")
    );
    let jwks = public_keys.json();
    assert_eq!(jwks, admin_keys.json());
    assert_eq!(kids(&jwks), ["ed-legacy", "ed-echo"]);

    // txn-token: one Txn-Token, the gateway's, and no envelope.
    let r = gw.get("/legacy/1?page=2", &spoof);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["source"], "service", "{body}");
    assert_no_envelope(&body);
    let txn_token = the_txn_token(&body);
    assert_ne!(txn_token, forged);
    let (header, claims) = verify(&txn_token, &jwks);
    assert_eq!(
        header,
        json!({"alg": "EdDSA", "kid": "ed-legacy", "typ": "txntoken+jwt"})
    );
    let request_id = r.header("x-request-id").expect("a request id").to_owned();
    assert_eq!(claims["txn"], request_id.as_str());
    assert_eq!(gw.decision_for(&r)["request_id"], request_id.as_str());
    assert_eq!(claims["aud"], "echo-legacy");
    assert_eq!(claims["iss"], GATEWAY_ID);
    assert_eq!(claims["req_wl"], GATEWAY_ID);
    assert_eq!(claims["sub"], access["sub"]);
    assert_eq!(claims["scope"], access["scope"]);
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 60, "the envelope lifetime");
    assert!(iat.abs_diff(now()) <= 5, "iat {iat}");
    assert_eq!(
        claims["tctx"],
        json!({
            "route": "echo-legacy-read",
            "tenant": access["tenant"],
            "roles": access.get("roles").cloned().unwrap_or(json!([])),
            "decision": "requirements_met",
        })
    );
    assert_eq!(
        claims["rctx"],
        json!({
            "req_ip": "127.0.0.1",
            "authn": "bearer",
            "client_id": access["client_id"],
            "req_method": "GET",
            "req_path": "/legacy/1",
        })
    );

    // both: the envelope (echo verified it: source envelope) and a token
    // for the same request, signed with the service's key.
    let body = assert_reached_via_envelope(&gw.get("/items/1", &spoof));
    assert_eq!(body["envelope"]["kid"], "ed-echo");
    let (header, claims) = verify(&the_txn_token(&body), &jwks);
    assert_eq!(header["kid"], "ed-echo");
    assert_eq!(claims["aud"], "echo");
    assert_eq!(claims["txn"], body["envelope"]["request_id"]);
    assert_eq!(claims["rctx"]["req_path"], "/items/1");
    assert_eq!(claims["tctx"]["route"], "echo-items-read");

    // envelope (the default): no token, and the client's never passes.
    let body = assert_reached_via_envelope(&gw.get("/hybrid/1", &spoof));
    assert!(received_values(&body, "txn-token").is_empty(), "{body}");
    assert!(
        received(&body).iter().all(|(n, _)| n != "txn_token"),
        "{body}"
    );

    // The admin port shows each service's format.
    let config = gw.active_config();
    let format_of = |name: &str| {
        config["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["identity_format"].clone())
    };
    assert_eq!(format_of("echo-legacy"), Some(json!("txn-token")));
    assert_eq!(format_of("echo"), Some(json!("both")));
    assert_eq!(format_of("echo-hybrid"), Some(json!("envelope")));
    assert_eq!(config["envelope"]["public_jwks"], true);
}

#[test]
fn the_public_listener_serves_the_keys_only_when_configured_and_a_reload_changes_them() {
    let first = ed_key("ed-1", 21);
    let second = ed_key("ed-2", 22);
    let ring = keyring(&[&first]);
    let stack = Stack::start_with("txn-token-public-keys", move |s| {
        s.router("identity_envelope_keys", ring)
    });
    let gw = &stack.gateway;

    // Off by default: the public listener routes the path like any other.
    assert_problem(&gw.get(KEYS, &[]), 404, "not_found");
    assert_eq!(kids(&gw.admin_get(KEYS).json()), ["ed-1"]);

    // Turned on, and a key added, by one reload.
    let added = keyring(&[&first, &second]);
    gw.edit_config(|c| {
        c["gateway"]["listeners"]["public_jwks"] = json!(true);
        c["router"]["identity_envelope_keys"] = added;
    });
    let r = gw.reload();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "applied");
    let r = gw.get(KEYS, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("cache-control"), Some("public, max-age=300"));
    assert_eq!(kids(&r.json()), ["ed-1", "ed-2"]);
    let line = gw.decision_for(&r);
    assert_eq!(
        (line["decision"].as_str(), line["reason"].as_str()),
        (Some("allow"), Some("public_jwks")),
        "{line}"
    );
    let head = gw.send("HEAD", KEYS, &[]);
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("application/jwk-set+json")
    );
    let post = gw.send("POST", KEYS, &[]);
    assert_problem(&post, 405, "method_not_allowed");
    assert_eq!(post.header("allow"), Some("GET, HEAD"));

    // A key removed from the keyring (retired) leaves the document.
    let retired = keyring(&[&second]);
    gw.edit_config(|c| c["router"]["identity_envelope_keys"] = retired);
    assert_eq!(gw.reload().json()["result"], "applied");
    assert_eq!(kids(&gw.get(KEYS, &[]).json()), ["ed-2"]);
    assert_eq!(kids(&gw.admin_get(KEYS).json()), ["ed-2"]);
}

#[test]
fn check_refuses_a_txn_token_service_signed_with_an_hs256_key_and_prints_each_format() {
    let dir = TempDir::new("txn-token-check");
    let check = |yaml: &str| {
        let path = dir.join(&format!("gateway-{}.yaml", free_port()));
        std::fs::write(&path, yaml).unwrap();
        Command::new(gateway_binary())
            .env_clear()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    let head = "gateway:\n  listeners: {http: \"127.0.0.1:8080\"}\n  auth:\n    authority:\n      \
                issuer: https://authority.example\n      audiences: [api]\n";
    let out = check(&format!(
        "{head}router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n\
         services:\n  - {{name: orders, upstreams: [\"orders:8080\"], identity_format: txn-token}}\n"
    ));
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "services[0].identity_format: txn-token needs an EdDSA or ES256 key, but the service signs with \
             default, an HS256 key (router.identity_envelope_signing_key); set services[0].envelope_kid to an \
             EdDSA or ES256 key"
        ),
        "{err}"
    );
    assert!(!err.contains("a-secret-value"), "the key was echoed: {err}");

    let ed = ed_key("ed-1", 31);
    let out = check(&format!(
        "{head}router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n  \
         identity_envelope_keys:\n    - {{kid: ed-1, key: \"{}\"}}\n\
         services:\n  - {{name: orders, upstreams: [\"orders:8080\"], envelope_kid: ed-1, identity_format: txn-token}}\n\
         \x20 - {{name: billing, upstreams: [\"billing:8080\"]}}\n",
        ed.to_spec().as_str()
    ));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("# service orders: identity txn-token, key ed-1\n"),
        "{text}"
    );
    assert!(
        text.contains("# service billing: identity envelope, key default\n"),
        "{text}"
    );
    assert!(text.contains("identity_format: txn-token"), "{text}");
}

/// A verifier of samples/txn-token, or a panic naming the script that
/// installs its library.
fn sample_verifier(language: &str) -> Command {
    let folder = repo_root().join("samples/txn-token");
    let (program, script, installed): (PathBuf, &str, PathBuf) = match language {
        "python" => (
            folder.join("python/.venv/bin/python"),
            "python/verify_txn_token.py",
            folder.join("python/.venv/requirements.installed"),
        ),
        _ => (
            "node".into(),
            "node/verify-txn-token.mjs",
            folder.join("node/node_modules/jose/package.json"),
        ),
    };
    assert!(
        installed.is_file(),
        "the {language} verifier's JWT library is not installed ({} is missing): run samples/txn-token/prepare.sh",
        installed.display()
    );
    let mut command = Command::new(program);
    command.arg(folder.join(script));
    command
}

/// Runs a sample verifier with `args`, the token on stdin; exit code, stdout
/// and stderr.
fn run_verifier(language: &str, args: &[&str], token: &str) -> (Option<i32>, String, String) {
    let mut child = sample_verifier(language)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{language} verifier does not start: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{token}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `token` with its header replaced and signed again with `key`: a token
/// the key's holder could make, for checks other than the signature.
fn resigned(token: &str, key: &Key, header: &Value) -> String {
    let claims = token.split('.').nth(1).unwrap();
    let input = format!("{}.{claims}", b64url(header.to_string().as_bytes()));
    let seed = key.to_spec();
    let seed = b64url_decode(seed.strip_prefix("ed25519-private:").unwrap());
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).unwrap();
    format!("{input}.{}", b64url(pair.sign(input.as_bytes()).as_ref()))
}

/// An ES256 key of the keyring (PKCS#8, as `keys generate --alg ES256`
/// writes it).
fn es_key(kid: &str) -> Key {
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    Key::p256_from_pkcs8(KeyId::new(kid).unwrap(), pkcs8.as_ref()).unwrap()
}

#[test]
fn generic_jwt_libraries_in_python_and_node_verify_the_tokens_the_gateway_forwarded() {
    // Before any process starts: a missing install fails at once.
    sample_verifier("python");
    sample_verifier("node");
    let dir = TempDir::new("txn-token-libraries");
    let authority = Authority::start();
    let token = authority.token(BEARER);
    // Both services authenticate callers on their own with exactly this
    // token (forwarded to them), so they answer with what they received.
    let (legacy, hybrid) = std::thread::scope(|s| {
        let hybrid =
            s.spawn(|| Echo::start("echo-hybrid", "Hybrid", &[("ECHO_SERVICE_TOKEN", &token)]));
        (Echo::legacy(&token), hybrid.join().unwrap())
    });
    let ed = ed_key("ed-legacy", 41);
    let es = es_key("es-hybrid");
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo-legacy", legacy.addr())
        .service("echo-hybrid", hybrid.addr())
        .router("identity_envelope_keys", keyring(&[&ed, &es]))
        .service_setting("echo-legacy", "envelope_kid", json!("ed-legacy"))
        .service_setting("echo-legacy", "identity_format", json!("txn-token"))
        .service_setting("echo-hybrid", "envelope_kid", json!("es-hybrid"))
        .service_setting("echo-hybrid", "identity_format", json!("txn-token"))
        .service_setting("echo-hybrid", "forward_credentials", json!(true))
        .env("Gateway__Listeners__PublicJwks", "true")
        .start(&dir);
    let jwks = gw.get(KEYS, &[]).json();
    assert_eq!(kids(&jwks), ["ed-legacy", "es-hybrid"]);
    assert_eq!(jwks["keys"][1]["kty"], "EC");
    let forwarded = |path: &str| {
        let r = gw.get_with_token(path, &token);
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_no_envelope(&body);
        (
            the_txn_token(&body),
            r.header("x-request-id").unwrap().to_owned(),
        )
    };
    let (eddsa, eddsa_request) = forwarded("/legacy/orders/7?expand=1");
    let (es256, es256_request) = forwarded("/hybrid/orders/7");
    assert_eq!(verify(&es256, &jwks).0["alg"], "ES256");

    let access_sub = jwt_claims(&token)["sub"].clone();
    // Python fetches the keys from the public listener, Node from the admin
    // one: the same document.
    let public = format!("http://{}{KEYS}", gw.http);
    let admin = format!("http://{}{KEYS}", gw.admin);
    for (language, jwks) in [("python", &public), ("node", &admin)] {
        let args = |audience: &str, path: &str| {
            vec![
                "--jwks".to_string(),
                jwks.clone(),
                "--audience".into(),
                audience.into(),
                "--issuer".into(),
                GATEWAY_ID.into(),
                "--method".into(),
                "GET".into(),
                "--path".into(),
                path.into(),
            ]
        };
        let run = |args: &[String], token: &str| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_verifier(language, &args, token)
        };
        let verified = |args: &[String], token: &str, request_id: &str| {
            let (code, stdout, stderr) = run(args, token);
            assert_eq!(code, Some(0), "{language}: {stderr}");
            let claims: Value = serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("{language} printed no claims ({e}): {stdout}"));
            assert_eq!(claims["txn"], request_id, "{language}");
            assert_eq!(claims["sub"], access_sub, "{language}");
            claims
        };
        let good = args("echo-legacy", "/legacy/orders/7");
        assert_eq!(
            verified(&good, &eddsa, &eddsa_request)["aud"],
            "echo-legacy"
        );
        let good_es = args("echo-hybrid", "/hybrid/orders/7");
        assert_eq!(
            verified(&good_es, &es256, &es256_request)["aud"],
            "echo-hybrid"
        );

        // Refused: another service's audience, another path, a changed
        // claim, and a token the key's holder signed with another typ.
        let refusals = [
            ("audience", args("echo", "/legacy/orders/7"), eddsa.clone()),
            (
                "path",
                args("echo-legacy", "/legacy/orders/8"),
                eddsa.clone(),
            ),
            (
                "es256 audience",
                args("echo-legacy", "/hybrid/orders/7"),
                es256.clone(),
            ),
            ("signature", good.clone(), {
                let parts: Vec<&str> = eddsa.split('.').collect();
                let mut claims: Value = serde_json::from_slice(&b64url_decode(parts[1])).unwrap();
                claims["sub"] = json!("admin");
                format!(
                    "{}.{}.{}",
                    parts[0],
                    b64url(claims.to_string().as_bytes()),
                    parts[2]
                )
            }),
            (
                "typ",
                good.clone(),
                resigned(
                    &eddsa,
                    &ed,
                    &json!({"alg": "EdDSA", "kid": "ed-legacy", "typ": "JWT"}),
                ),
            ),
        ];
        for (what, args, token) in refusals {
            let (code, stdout, stderr) = run(&args, &token);
            assert_eq!(
                code,
                Some(1),
                "{language} accepted a bad {what}: {stdout}{stderr}"
            );
            assert!(stderr.contains("refused"), "{language}, {what}: {stderr}");
        }
        // The re-signed token with the right typ is accepted: the refusal
        // above was the typ's.
        let same = resigned(
            &eddsa,
            &ed,
            &json!({"alg": "EdDSA", "kid": "ed-legacy", "typ": "txntoken+jwt"}),
        );
        assert_eq!(run(&good, &same).0, Some(0), "{language}");
    }
}
