//! Access tokens end to end (docs/design.md §3.3, §3.4): real tokens from the
//! test Authority, forged ones made here, through the gateway binary to the
//! sample service. Each case checks what a caller sees (status, challenge,
//! `error` code) and whether the service was called at all.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

#[track_caller]
fn assert_identity(body: &Value, subject: &str, tenant: &str, scopes: &[&str]) {
    let id = &body["identity"];
    assert_eq!(id["subject"], subject, "{body}");
    assert_eq!(id["client_id"], subject, "{body}");
    assert_eq!(id["tenant"], tenant, "{body}");
    assert_eq!(id["scopes"], json!(scopes), "{body}");
    assert_eq!(id["auth_method"], "bearer", "{body}");
}

#[test]
fn valid_token_reaches_the_gateway_enforced_service_with_the_callers_identity() {
    let stack = Stack::start("valid-token");
    stack.authority.prefetch(&[BEARER, READONLY]);
    let gw = &stack.gateway;

    let r = gw.get_with_token("/items/42?colour=blue", &stack.authority.token(BEARER));
    let body = assert_reached_via_envelope(&r);
    assert_identity(
        &body,
        "svc-bearer",
        "acme",
        &["echo.read", "echo.write", "admin"],
    );
    assert_eq!(body["service"], "echo");
    assert_eq!(body["path"], "/items/42");
    assert_eq!(body["query"], "colour=blue");
    assert_eq!(body["envelope"]["audience"], "echo");
    assert_eq!(body["envelope"]["issuer"], GATEWAY_ID);
    assert_eq!(body["envelope"]["kid"], ENVELOPE_KID);
    // The request id in the envelope is the one the service sees.
    assert_eq!(
        received_values(&body, "x-request-id"),
        vec![body["envelope"]["request_id"].as_str().unwrap().to_owned()]
    );

    let r = gw.get_with_token("/items/7", &stack.authority.token(READONLY));
    let body = assert_reached_via_envelope(&r);
    assert_identity(&body, "svc-readonly", "globex", &["echo.read"]);
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn valid_token_reaches_the_hybrid_service_with_the_callers_identity() {
    let dir = TempDir::new("hybrid");
    let authority = Authority::start();
    let hybrid = Echo::hybrid();
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo-hybrid", hybrid.addr())
        .start(&dir);

    let r = gw.get_with_token("/hybrid/orders/1", &authority.token(BEARER));
    let body = assert_reached_via_envelope(&r);
    assert_identity(
        &body,
        "svc-bearer",
        "acme",
        &["echo.read", "echo.write", "admin"],
    );
    assert_eq!(body["mode"], "Hybrid");
    assert_eq!(body["path"], "/hybrid/orders/1");
    assert_eq!(body["envelope"]["audience"], "echo-hybrid");
    assert!(received_values(&body, "authorization").is_empty(), "{body}");

    // Without a token the gateway refuses; the service is never asked.
    assert_problem(
        &gw.get("/hybrid/orders/1", &[]),
        401,
        "authentication_required",
    );
    assert_eq!(hybrid.requests(), 1);
}

/// A connection remembers its last token's cache key (docs/design.md,
/// "Verified-token cache"): on one keep-alive connection each request is
/// still answered for its own token, a forged token of the same length
/// right after the genuine one included.
#[test]
fn each_token_on_a_keep_alive_connection_is_answered_as_its_own() {
    let stack = Stack::start("keep-alive-tokens");
    stack.authority.prefetch(&[BEARER, READONLY]);
    let gw = &stack.gateway;
    let bearer = stack.authority.token(BEARER);
    let readonly = stack.authority.token(READONLY);
    // One signature character changed (not the last, whose low bits may
    // be unused): the same length, a signature that does not verify.
    let mut forged = bearer.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(forged.len(), bearer.len());

    let mut conn = KeepAlive::open(gw.http);
    let mut send = |token: &str| {
        let auth = format!("Bearer {token}");
        conn.send("GET", "/items/1", &[("Authorization", &auth)])
    };
    let subject = |r: &Response| assert_reached_via_envelope(r)["identity"]["subject"].clone();
    assert_eq!(subject(&send(&bearer)), "svc-bearer");
    assert_eq!(subject(&send(&bearer)), "svc-bearer");
    let r = send(&forged);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "bad_signature", "{}", r.text());
    assert_eq!(subject(&send(&readonly)), "svc-readonly");
    assert_eq!(subject(&send(&bearer)), "svc-bearer");
    let r = send(&forged);
    assert_invalid_token(&r);
    assert_eq!(subject(&send(&readonly)), "svc-readonly");
    // Only the genuine tokens reached the service.
    assert_eq!(stack.echo.requests(), 5);
}

#[test]
fn expired_token_is_refused_even_after_it_was_accepted_and_cached() {
    let dir = TempDir::new("expired");
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start_with(AuthorityOptions {
            access_token_ttl: Some(5),
            ..AuthorityOptions::default()
        });
        (authority, echo.join().unwrap())
    });
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .authority("leeway_seconds", json!(0))
        .start(&dir);
    let token = authority.token(BEARER);
    let exp = jwt_claims(&token)["exp"].as_u64().expect("exp");
    assert!(
        now() + 1 < exp,
        "the 5 s token is already about to expire; the machine is too slow for this test"
    );
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));

    // No leeway: once the clock passes exp the same (cached) token is refused.
    assert!(wait_until(Duration::from_secs(15), || now() > exp));
    let r = gw.get_with_token("/items/1", &token);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "expired", "{}", r.text());
    assert_eq!(echo.requests(), 1);
}

#[test]
fn token_issued_for_another_audience_is_refused() {
    let stack = Stack::start("audience");
    let token = stack
        .authority
        .token_with(BEARER, TokenRequest::resource("http://other.local/api"));
    assert_eq!(jwt_claims(&token)["aud"], "http://other.local/api");

    let r = stack.gateway.get_with_token("/items/1", &token);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "wrong_audience", "{}", r.text());
    assert_eq!(stack.echo.requests(), 0);
}

#[test]
fn token_from_another_issuer_signed_with_the_same_key_is_refused() {
    let dir = TempDir::new("issuer");
    let keys = dir.join("authority-keys.json");
    // The second Authority reuses the first one's signing keys: its tokens
    // carry a valid signature and a known kid, and differ only in `iss`.
    let trusted = Authority::start_with(AuthorityOptions {
        keys_file: Some(keys.clone()),
        ..AuthorityOptions::default()
    });
    let (other, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let other = Authority::start_with(AuthorityOptions {
            keys_file: Some(keys),
            ..AuthorityOptions::default()
        });
        (other, echo.join().unwrap())
    });
    let gw = GatewaySetup::new(&trusted.issuer)
        .service("echo", echo.addr())
        .start(&dir);

    let foreign = other.token(BEARER);
    assert_ne!(jwt_claims(&foreign)["iss"], json!(trusted.issuer));
    let trusted_kids: Vec<Value> = trusted.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();
    assert!(trusted_kids.contains(&jwt_header(&foreign)["kid"]));

    let r = gw.get_with_token("/items/1", &foreign);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "wrong_issuer", "{}", r.text());
    assert_eq!(echo.requests(), 0);

    // The trusted issuer's token passes the same gateway.
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &trusted.token(BEARER)));
}

#[test]
fn unsigned_alg_none_token_is_refused() {
    let stack = Stack::start("alg-none");
    let real = stack.authority.token(BEARER);
    let claims = jwt_claims(&real);
    let kid = jwt_header(&real)["kid"].clone();

    let (unsigned, signature) = real.rsplit_once('.').unwrap();
    // Each forgery with the check that must refuse it: an empty signature
    // never gets past the JWS syntax; with a signature attached, `none` is
    // refused as an algorithm.
    let mut forged = Vec::new();
    for alg in ["none", "None", "NONE"] {
        for header in [
            json!({"alg": alg, "typ": "at+jwt"}),
            json!({"alg": alg, "typ": "at+jwt", "kid": kid}),
        ] {
            let input = signing_input(&header, &claims);
            forged.push((format!("{input}."), "malformed_jws"));
            forged.push((format!("{input}.{signature}"), "unsupported_alg"));
        }
    }
    // The real token with its signature cut off.
    forged.push((format!("{unsigned}."), "malformed_jws"));

    for (token, code) in &forged {
        let r = stack.gateway.get_with_token("/items/1", token);
        assert_invalid_token(&r);
        assert_eq!(r.json()["token_error"], *code, "{token}: {}", r.text());
        assert_eq!(stack.gateway.reason_for(&r), *code, "{token}");
    }
    assert_eq!(stack.echo.requests(), 0);
    // Control: the real token passes.
    assert_reached_via_envelope(&stack.gateway.get_with_token("/items/1", &real));
}

/// The Authority's public keys as the byte strings an algorithm-confusion
/// attacker would use as an HMAC secret: SPKI PEM, SPKI DER, the JWK JSON.
fn public_key_encodings(jwks: &Value) -> Vec<(String, Vec<u8>)> {
    let script = r#"
        const c = require('node:crypto');
        const jwks = JSON.parse(process.argv[1]);
        console.log(JSON.stringify(jwks.keys.map((k) => {
            const p = c.createPublicKey({ key: k, format: 'jwk' });
            return { kid: k.kid,
                     pem: p.export({ type: 'spki', format: 'pem' }),
                     der: p.export({ type: 'spki', format: 'der' }).toString('base64') };
        })));
    "#;
    let out = Command::new("node")
        .args(["-e", script, &jwks.to_string()])
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut secrets = Vec::new();
    for (key, jwk) in keys
        .as_array()
        .unwrap()
        .iter()
        .zip(jwks["keys"].as_array().unwrap())
    {
        let kid = key["kid"].as_str().unwrap().to_owned();
        let pem = key["pem"].as_str().unwrap();
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(key["der"].as_str().unwrap())
            .unwrap();
        secrets.push((kid.clone(), pem.as_bytes().to_vec()));
        secrets.push((kid.clone(), pem.trim_end().as_bytes().to_vec()));
        secrets.push((kid.clone(), der));
        secrets.push((kid, jwk.to_string().into_bytes()));
    }
    secrets
}

#[test]
fn hs256_token_keyed_with_the_authoritys_public_key_is_refused() {
    let stack = Stack::start("hs256");
    let real = stack.authority.token(BEARER);
    let claims = jwt_claims(&real);
    let secrets = public_key_encodings(&stack.authority.jwks());
    assert!(secrets.len() >= 8, "both the ES256 and the RS256 key");

    for (kid, secret) in &secrets {
        for alg in ["HS256", "hs256"] {
            let header = json!({"alg": alg, "typ": "at+jwt", "kid": kid});
            let token = hs256(&header, &claims, secret);
            let r = stack.gateway.get_with_token("/items/1", &token);
            assert_invalid_token(&r);
            // Refused for its algorithm, before any key is looked at.
            assert_eq!(r.json()["token_error"], "unsupported_alg", "{}", r.text());
            assert_eq!(stack.gateway.reason_for(&r), "unsupported_alg");
        }
    }
    assert_eq!(stack.echo.requests(), 0);
}

#[test]
fn key_urls_and_keys_embedded_in_the_token_header_are_never_used() {
    let stack = RealKeys::start("jku");
    let claims = &stack.claims;
    let real_kid = stack.keys.ec_kid.clone();
    // A listener standing in for an attacker's key server: it must never
    // see a connection.
    let trap = TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let trap_url = format!("http://{}", trap.local_addr().unwrap());
    let attacker = AttackerKey::generate();
    let with = |member: &str, value: Value| {
        let mut header = stack.header.clone();
        header[member] = value;
        header
    };

    // Signed with the Authority's own key: without the rule these would
    // pass, so only the key-in-header check can refuse them.
    let mut tokens: Vec<(String, String)> = [
        with("jku", json!(format!("{trap_url}/jwks.json"))),
        with("x5u", json!(format!("{trap_url}/cert.pem"))),
        with("x5c", json!(["MIIB"])),
        with("jwk", attacker.jwk(&real_kid)),
    ]
    .iter()
    .map(|h| (h.to_string(), stack.keys.es256(h, claims)))
    .collect();
    // Signed with the attacker's key, naming it in the header.
    for header in [
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "attacker-1",
               "jku": format!("{trap_url}/jwks.json")}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": real_kid,
               "jku": format!("{trap_url}/jwks.json")}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "attacker-1",
               "x5u": format!("{trap_url}/cert.pem")}),
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "attacker-1",
               "jwk": attacker.jwk("attacker-1")}),
        json!({"alg": "ES256", "typ": "at+jwt", "jwk": attacker.jwk("attacker-1")}),
    ] {
        tokens.push((header.to_string(), attacker.sign(&header, claims)));
    }
    for (header, token) in &tokens {
        let r = stack.gateway.get_with_token("/items/1", token);
        assert_invalid_token(&r);
        assert_eq!(
            r.json()["token_error"],
            "key_in_header",
            "{header}: {}",
            r.text()
        );
        assert_eq!(stack.gateway.reason_for(&r), "key_in_header", "{header}");
    }
    assert_eq!(stack.echo.requests(), 0);
    match trap.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the gateway connected to the jku/x5u url: {other:?}"),
    }
    // Control: the same claims with the plain header pass.
    let plain = stack.keys.es256(&stack.header, claims);
    assert_reached_via_envelope(&stack.gateway.get_with_token("/items/1", &plain));
}

#[test]
fn unknown_kid_refetches_the_jwks_at_most_once_per_cooldown() {
    let stack = Stack::start_with("unknown-kid", |s| {
        s.authority("jwks_cooldown_seconds", json!(3600))
    });
    let gw = &stack.gateway;
    let real = stack.authority.token(BEARER);
    let claims = jwt_claims(&real);
    let attacker = AttackerKey::generate();
    let before = gw.metrics();

    let forged: Vec<String> = (0..9)
        .map(|i| {
            let header =
                json!({"alg": "ES256", "typ": "at+jwt", "kid": format!("rotated-{}", i % 3)});
            attacker.sign(&header, &claims)
        })
        .collect();
    // A burst of concurrent requests (single flight), then more one by one
    // (cooldown).
    let burst: Vec<Response> = std::thread::scope(|s| {
        let handles: Vec<_> = forged[..6]
            .iter()
            .map(|token| s.spawn(move || gw.get_with_token("/items/1", token)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let one_by_one = forged[6..]
        .iter()
        .map(|token| gw.get_with_token("/items/1", token));
    for r in burst.into_iter().chain(one_by_one) {
        assert_invalid_token(&r);
        assert_eq!(r.json()["token_error"], "unknown_kid", "{}", r.text());
    }

    let after = gw.metrics();
    let refetches = "stella_gateway_jwks_unknown_kid_refetches_total";
    assert_eq!(after.get(refetches), before.get(refetches) + 1.0);
    // The Authority's JWKS was fetched exactly once more, and it worked.
    let fetches = |m: &Metrics| {
        m.get("stella_gateway_jwks_refreshes_total")
            + m.get("stella_gateway_jwks_refresh_failures_total")
    };
    assert_eq!(fetches(&after), fetches(&before) + 1.0);
    assert_eq!(
        after.get("stella_gateway_jwks_refresh_failures_total"),
        before.get("stella_gateway_jwks_refresh_failures_total")
    );
    assert_eq!(stack.echo.requests(), 0);
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &real));
}

#[test]
fn token_without_the_required_scope_is_forbidden_with_insufficient_scope() {
    let stack = Stack::start("scope");
    let read_only_bearer = TokenRequest::scope("echo.read");
    stack.authority.prefetch_with(&[
        (READONLY, TokenRequest::default()),
        (BEARER, read_only_bearer.clone()),
    ]);
    let gw = &stack.gateway;

    for token in [
        stack.authority.token(READONLY),
        stack.authority.token_with(BEARER, read_only_bearer),
    ] {
        assert_eq!(jwt_claims(&token)["scope"], "echo.read");
        let r = gw.get_with_token("/admin/users", &token);
        assert_problem(&r, 403, "insufficient_scope");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.starts_with("Bearer realm=\"stella-gateway\"")
                && challenge.contains("error=\"insufficient_scope\"")
                && challenge.contains("scope=\"admin\""),
            "{challenge}"
        );

        let auth = format!("Bearer {token}");
        let r = gw.send("POST", "/items/1", &[("Authorization", &auth)]);
        assert_problem(&r, 403, "insufficient_scope");
        assert!(r
            .header("www-authenticate")
            .unwrap_or_default()
            .contains("error=\"insufficient_scope\""));
    }
    assert_eq!(stack.echo.requests(), 0);
    // Control: reading needs only echo.read.
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &stack.authority.token(READONLY)));
}

#[test]
fn anonymous_route_admits_callers_without_a_token_as_anonymous() {
    let stack = Stack::start("anonymous");
    let r = stack.gateway.get("/public/status", &[]);
    let body = assert_reached_via_envelope(&r);
    let id = &body["identity"];
    assert_eq!(id["auth_method"], "anonymous", "{body}");
    assert_eq!(id["subject"], Value::Null, "{body}");
    assert_eq!(id["tenant"], Value::Null, "{body}");
    assert_eq!(id["scopes"], json!([]), "{body}");
    assert_eq!(body["envelope"]["audience"], "echo");
    assert_eq!(body["path"], "/public/status");

    // A caller who does send a valid token is identified on the same route.
    let r = stack
        .gateway
        .get_with_token("/public/status", &stack.authority.token(BEARER));
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "bearer");
    assert_eq!(body["identity"]["subject"], "svc-bearer");
}

#[test]
fn router_on_missing_authorization_from_the_environment_decides_routes_without_a_policy() {
    let dir = TempDir::new("on-missing");
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        (Authority::start(), echo.join().unwrap())
    });
    // The file says one thing, the environment another: the environment wins.
    let start = |env: &str, file: &str| {
        GatewaySetup::new(&authority.issuer)
            .service("echo", echo.addr())
            .router("on_missing_authorization", json!(file))
            .env("Router__OnMissingAuthorization", env)
            .start(&dir)
    };
    let (deny, require, allow) = std::thread::scope(|s| {
        let deny = s.spawn(|| start("Deny", "AllowAnonymous"));
        let require = s.spawn(|| start("RequireAuthenticated", "AllowAnonymous"));
        let allow = start("AllowAnonymous", "Deny");
        (deny.join().unwrap(), require.join().unwrap(), allow)
    });
    let token = authority.token(BEARER);
    for (gw, value) in [
        (&deny, "Deny"),
        (&require, "RequireAuthenticated"),
        (&allow, "AllowAnonymous"),
    ] {
        let config = gw.admin_get("/config").json();
        assert_eq!(config["on_missing_authorization"], value, "{config}");
    }

    // Deny: 403 for everyone, token or not.
    assert_problem(&deny.get("/nopolicy/x", &[]), 403, "access_denied");
    assert_problem(
        &deny.get_with_token("/nopolicy/x", &token),
        403,
        "access_denied",
    );
    assert_eq!(echo.requests(), 0);

    // RequireAuthenticated: 401 with a bare challenge, 200 with a token.
    let r = require.get("/nopolicy/x", &[]);
    assert_problem(&r, 401, "authentication_required");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"stella-gateway\"")
    );
    let body = assert_reached_via_envelope(&require.get_with_token("/nopolicy/x", &token));
    assert_eq!(body["identity"]["auth_method"], "bearer");
    assert_eq!(echo.requests(), 1);

    // AllowAnonymous: 200 either way.
    let body = assert_reached_via_envelope(&allow.get("/nopolicy/x", &[]));
    assert_eq!(body["identity"]["auth_method"], "anonymous");
    let body = assert_reached_via_envelope(&allow.get_with_token("/nopolicy/x", &token));
    assert_eq!(body["identity"]["auth_method"], "bearer");
    assert_eq!(echo.requests(), 3);
}

#[test]
fn request_without_a_token_gets_a_bearer_challenge_without_an_error() {
    let stack = Stack::start("no-token");
    let r = stack.gateway.get("/items/1", &[]);
    assert_problem(&r, 401, "authentication_required");
    // One challenge per scheme, neither with an `error` (RFC 6750 3.1),
    // the DPoP one with `algs` (RFC 9449 7.1).
    assert_eq!(
        r.header_all("www-authenticate"),
        vec![
            "Bearer realm=\"stella-gateway\"",
            "DPoP realm=\"stella-gateway\", algs=\"ES256 ES384 EdDSA PS256\""
        ]
    );
    assert!(!r.text().contains("stack"), "{}", r.text());
    assert_eq!(stack.echo.requests(), 0);
}

#[test]
fn several_authorization_headers_are_a_bad_request() {
    let stack = Stack::start("several-auth");
    let token = stack.authority.token(BEARER);
    let auth = format!("Bearer {token}");
    for headers in [
        vec![
            ("Authorization", auth.as_str()),
            ("Authorization", auth.as_str()),
        ],
        vec![
            ("Authorization", auth.as_str()),
            ("authorization", "Bearer abc.def.ghi"),
        ],
        vec![
            ("AUTHORIZATION", "Basic dXNlcjpwYXNz"),
            ("Authorization", auth.as_str()),
        ],
    ] {
        let r = stack.gateway.get("/items/1", &headers);
        assert_problem(&r, 400, "invalid_request");
    }
    assert_eq!(stack.echo.requests(), 0);
}

/// A Bearer value that is not a token68 is a 400 `invalid_request`
/// (`malformed_authorization`) whether or not a good token was cached
/// before; the check is skipped only for a token the cache knows, which is
/// that token byte for byte.
#[test]
fn a_bearer_value_that_is_not_a_token68_is_a_bad_request_before_and_after_a_cached_token() {
    let stack = Stack::start("malformed-bearer");
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    let malformed = [
        format!("Bearer {token}\"x"),
        format!("Bearer {}", &token[..20]) + " tail",
        "Bearer ==".to_owned(),
        "Bearer a=b".to_owned(),
        format!("Bearer {token},{token}"),
    ];
    let refused = |label: &str| {
        for value in &malformed {
            let r = gw.get("/items/1", &[("Authorization", value)]);
            assert_problem(&r, 400, "invalid_request");
            assert_eq!(gw.reason_for(&r), "malformed_authorization", "{label}");
        }
    };
    refused("nothing cached");
    let r = gw.get_with_token("/items/1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    refused("the token cached");
    let r = gw.get_with_token("/items/1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stack.echo.requests(), 2);
    // Non-ASCII bytes after the scheme: refused the same way.
    let r = parse_response(&send_raw(
        gw.http,
        b"GET /items/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xc3\xa9t\xc3\xa9\r\nConnection: close\r\n\r\n",
    ));
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(gw.reason_for(&r), "malformed_authorization");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn refusals_never_echo_what_the_client_sent() {
    let stack = Stack::start("no-echo");
    let gw = &stack.gateway;
    const MARKER: &str = "zqMARKER7x";
    let real = stack.authority.token(BEARER);
    let mut claims = jwt_claims(&real);
    claims["sub"] = json!(MARKER);
    let forged = AttackerKey::generate().sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": MARKER}),
        &claims,
    );
    let garbage = format!("Bearer eyJ{MARKER}.{MARKER}.{MARKER}");
    let forged_auth = format!("Bearer {forged}");
    let responses = [
        (gw.get("/items/1", &[("Authorization", &garbage)]), 401),
        (gw.get("/items/1", &[("Authorization", &forged_auth)]), 401),
        (
            gw.get(
                "/items/1",
                &[("Authorization", &garbage), ("Authorization", &forged_auth)],
            ),
            400,
        ),
        (
            gw.get("/items/1", &[("Authorization", &format!("{MARKER} abc"))]),
            400,
        ),
        (gw.get(&format!("/nowhere/{MARKER}"), &[]), 404),
        (gw.get(&format!("/public%2F{MARKER}"), &[]), 400),
        (gw.send("PATCH", &format!("/items/{MARKER}"), &[]), 405),
    ];
    for (r, status) in &responses {
        assert_eq!(r.status, *status, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert!(r.json()["error"].is_string(), "{}", r.text());
        assert!(
            !r.text().contains(MARKER),
            "body echoes input: {}",
            r.text()
        );
        for (name, value) in &r.headers {
            assert!(
                !value.contains(MARKER),
                "header {name} echoes input: {value}"
            );
        }
    }
    assert_eq!(stack.echo.requests(), 0);
}

/// What the gateway should do with one crafted token.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Forwarded to the service.
    Pass,
    /// 401 `invalid_token` with this `token_error`, which is also the
    /// decision log's reason.
    Refused(&'static str),
}

/// Merges `patch` into `base`; a `null` member removes the key.
fn patched(base: &Value, patch: Value) -> Value {
    let mut out = base.clone();
    for (k, v) in patch.as_object().expect("patch is an object") {
        if v.is_null() {
            out.as_object_mut().unwrap().remove(k);
        } else {
            out[k] = v.clone();
        }
    }
    out
}

/// A gateway and echo behind an Authority whose private keys the test
/// holds, with a valid claim set and header to vary.
struct RealKeys {
    gateway: Gateway,
    echo: Echo,
    keys: AuthorityKeys,
    claims: Value,
    header: Value,
    issuer: String,
    _authority: Authority,
    _dir: TempDir,
}

impl RealKeys {
    fn start(label: &str) -> RealKeys {
        let dir = TempDir::new(label);
        let (authority, echo) = std::thread::scope(|s| {
            let echo = s.spawn(Echo::gateway_enforced);
            (Authority::start(), echo.join().unwrap())
        });
        let gateway = GatewaySetup::new(&authority.issuer)
            .service("echo", echo.addr())
            .start(&dir);
        let keys = AuthorityKeys::load(&authority.keys_file);
        let t = now();
        let claims = json!({
            "iss": authority.issuer, "aud": API_AUDIENCE, "sub": "svc-bearer",
            "client_id": "svc-bearer", "jti": "jti-base", "iat": t, "exp": t + 300,
            "scope": "echo.read", "tenant": "acme",
        });
        let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.ec_kid});
        RealKeys {
            gateway,
            echo,
            keys,
            claims,
            header,
            issuer: authority.issuer.clone(),
            _authority: authority,
            _dir: dir,
        }
    }
}

#[test]
fn tokens_signed_with_the_authoritys_real_key_are_still_checked_claim_by_claim() {
    let RealKeys {
        gateway: gw,
        echo,
        keys,
        claims,
        header,
        issuer,
        _authority,
        _dir,
    } = RealKeys::start("claims");
    let t = claims["iat"].as_u64().unwrap();
    // A token with the valid header and patched claims, or the reverse.
    let claim = |patch: Value| keys.es256(&header, &patched(&claims, patch));
    let head = |patch: Value| keys.es256(&patched(&header, patch), &claims);
    let rsa = |pss: bool, alg: &str, kid: &str| {
        keys.rsa(
            pss,
            &json!({"alg": alg, "typ": "at+jwt", "kid": kid}),
            &claims,
        )
    };
    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    const X5T: &str = "bwcK0esc3ACC3DB2Y5_lESsXE8o9ltc05O89jdN-dg2";
    let other_aud = "http://other.local/api";
    use Expect::*;

    let cases: Vec<(&str, String, Expect)> = vec![
        ("the valid token itself", claim(json!({})), Pass),
        (
            "RS256 with the RSA key",
            rsa(false, "RS256", &keys.rsa_kid),
            Pass,
        ),
        (
            "typ application/at+jwt",
            head(json!({"typ": "application/at+jwt"})),
            Pass,
        ),
        (
            "typ in upper case",
            head(json!({"typ": "Application/AT+JWT"})),
            Pass,
        ),
        (
            "aud array holding the audience",
            claim(json!({"aud": [other_aud, API_AUDIENCE]})),
            Pass,
        ),
        (
            "expired within the leeway",
            claim(json!({"iat": t - 300, "exp": t - 5})),
            Pass,
        ),
        ("typ JWT", head(json!({"typ": "JWT"})), Refused("wrong_typ")),
        ("no typ", head(json!({"typ": null})), Refused("missing_typ")),
        (
            "aud array without the audience",
            claim(json!({"aud": [other_aud]})),
            Refused("wrong_audience"),
        ),
        (
            "iss with a trailing slash",
            claim(json!({"iss": format!("{issuer}/")})),
            Refused("wrong_issuer"),
        ),
        (
            "expired past the leeway",
            claim(json!({"iat": t - 400, "exp": t - 60})),
            Refused("expired"),
        ),
        (
            "no exp",
            claim(json!({"exp": null})),
            Refused("missing_claim"),
        ),
        (
            "exp as a string",
            claim(json!({"exp": (t + 300).to_string()})),
            Refused("malformed_claim"),
        ),
        (
            "nbf in the future",
            claim(json!({"nbf": t + 120})),
            Refused("not_yet_valid"),
        ),
        (
            "iat in the future",
            claim(json!({"iat": t + 120, "exp": t + 400})),
            Refused("issued_in_future"),
        ),
        (
            "no client_id",
            claim(json!({"client_id": null})),
            Refused("missing_claim"),
        ),
        (
            "no jti",
            claim(json!({"jti": null})),
            Refused("missing_claim"),
        ),
        (
            "scope as an array",
            claim(json!({"scope": ["echo.read"]})),
            Refused("malformed_claim"),
        ),
        (
            "tenant as a number",
            claim(json!({"tenant": 7})),
            Refused("malformed_claim"),
        ),
        (
            "DPoP-bound token sent as Bearer",
            claim(json!({"cnf": {"jkt": JKT}})),
            Refused("dpop_bound_token_as_bearer"),
        ),
        (
            "cnf with jkt and x5t#S256",
            claim(json!({"cnf": {"jkt": JKT, "x5t#S256": X5T}})),
            Refused("unenforceable_cnf"),
        ),
        (
            "cnf with an embedded jwk",
            claim(json!({"cnf": {"jwk": {"kty": "EC"}}})),
            Refused("unenforceable_cnf"),
        ),
        (
            "crit naming an unknown extension",
            head(json!({"crit": ["exp"], "exp": t + 300})),
            Refused("unsupported_header"),
        ),
        (
            "ES256 signature in DER form",
            keys.es256_der(&header, &claims),
            Refused("malformed_signature"),
        ),
        (
            "PS256 with the key published for RS256",
            rsa(true, "PS256", &keys.rsa_kid),
            Refused("key_use_mismatch"),
        ),
        (
            "RS256 naming the EC key",
            rsa(false, "RS256", &keys.ec_kid),
            Refused("alg_key_mismatch"),
        ),
        (
            "ES384 with the P-256 key",
            head(json!({"alg": "ES384"})),
            Refused("alg_key_mismatch"),
        ),
        (
            "no kid while the Authority publishes two keys",
            head(json!({"kid": null})),
            Refused("missing_kid"),
        ),
    ];

    let mut wrong = Vec::new();
    let mut passed = 0;
    for (name, token, expect) in &cases {
        let r = gw.get_with_token("/items/1", token);
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let ok = match expect {
            Pass => r.status == 200 && body["source"] == "envelope",
            Refused(code) => {
                r.status == 401 && body["error"] == "invalid_token" && body["token_error"] == *code
            }
        };
        // The decision log names the same check.
        let reason = gw.reason_for(&r);
        let logged = match expect {
            Pass => "requirements_met",
            Refused(code) => code,
        };
        if reason != logged {
            wrong.push(format!(
                "{name}: decision log reason {reason}, expected {logged}"
            ));
        }
        if matches!(expect, Pass) {
            passed += 1;
        }
        if !ok {
            wrong.push(format!(
                "{name}: expected {expect:?}, got {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(echo.requests(), passed);
}

#[test]
fn token_without_a_subject_is_refused() {
    // RFC 9068 section 2.2 makes `sub` required; the gateway's own config
    // docs say required_claims come "besides iss, exp, aud, sub".
    let stack = RealKeys::start("no-sub");
    let mut claims = stack.claims.clone();
    claims.as_object_mut().unwrap().remove("sub");
    let token = stack.keys.es256(&stack.header, &claims);
    let r = stack.gateway.get_with_token("/items/1", &token);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "missing_claim", "{}", r.text());
    assert_eq!(stack.echo.requests(), 0);
}
