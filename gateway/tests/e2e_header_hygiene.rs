//! Header hygiene end to end (docs/design.md §3.5, §3.6): identity and
//! forwarding headers a client sends never reach a service, in any case,
//! duplicated or not; the service sees exactly the gateway's own envelope, and
//! it verifies (the echo service answers 200 with `source: envelope` only after
//! checking the signature, audience, issuer and expiry).

mod common;

use common::*;
use serde_json::Value;
use stella_test_support::{parse_response, send_raw};

/// What a client might send to impersonate someone or spoof its origin.
fn spoofed_headers() -> Vec<(&'static str, &'static str)> {
    vec![
        ("X-StellaOps-Identity-Envelope", "eyJzdWIiOiJtYWxsb3J5In0"),
        ("x-stellaops-identity-envelope", "eyJzdWIiOiJldmUifQ"),
        ("X-STELLAOPS-IDENTITY-ENVELOPE-SIGNATURE", "AAAA"),
        ("X-StellaOps-Identity-Envelope-Alg", "none"),
        ("X-StellaOps-Identity-Envelope-Kid", "attacker"),
        ("X-StellaOps-Identity-Envelope-Exp", "99999999999"),
        ("x-stellaops-anything", "1"),
        ("X-StellaOps-Anything", "2"),
        ("X-STELLA-Tenant", "globex"),
        ("x-stella-tenant", "initech"),
        ("X-Stella-Tenant", "umbrella, hooli"),
        ("X-Stella-Roles", "admin"),
        ("X-Stella-Scopes", "admin"),
        ("Forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
        ("X-Forwarded-For", "6.6.6.6"),
        ("X-Forwarded-For", "7.7.7.7"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
        ("X-Real-IP", "6.6.6.6"),
        ("Client-Cert", ":MIIB:"),
        ("X-SSL-Client-Cert", "-----BEGIN CERTIFICATE-----"),
        // Headers that would change the method or path after the decision.
        ("X-HTTP-Method-Override", "DELETE"),
        ("x-http-method-override", "PUT"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
        ("X-Original-URL", "/admin/x"),
        ("X-Rewrite-URL", "/admin/x"),
        ("X_Original_URL", "/admin/y"),
        // A transaction token (docs/design.md §3.6): only the gateway's.
        ("Txn-Token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJtYWxsb3J5In0."),
        ("txn_token", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJldmUifQ."),
    ]
}

/// Headers that change what a service does after the policy decided.
const INTENT_HEADERS: [&str; 5] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
];

#[track_caller]
fn assert_no_intent_headers(body: &Value) {
    for (name, value) in received(body) {
        let folded = name.replace('_', "-");
        assert!(
            !INTENT_HEADERS.contains(&folded.as_str()),
            "{name}: {value} reached the service"
        );
    }
}

/// The service received only the gateway's identity and forwarding
/// headers: one of each envelope header, forwarding headers describing the
/// real client, nothing the client made up.
#[track_caller]
fn assert_only_the_gateways_headers(body: &Value, gateway: &Gateway) {
    for (name, value) in received(body) {
        if name.starts_with("x-stella") {
            assert!(
                ENVELOPE_HEADERS.contains(&name.as_str()),
                "client header {name}: {value} reached the service"
            );
        }
        for bad in [
            "forwarded",
            "x-real-ip",
            "client-cert",
            "x-ssl-client-cert",
            "authorization",
            "txn-token",
            "txn_token",
        ] {
            assert_ne!(name, bad, "{name}: {value} reached the service");
        }
    }
    assert_no_intent_headers(body);
    for name in ENVELOPE_HEADERS {
        assert_eq!(received_values(body, name).len(), 1, "{name}: {body}");
    }
    assert_eq!(
        received_values(body, "x-stellaops-identity-envelope-kid"),
        vec![ENVELOPE_KID]
    );
    assert_eq!(
        received_values(body, "x-stellaops-identity-envelope-alg"),
        vec!["HS256"]
    );
    assert_eq!(received_values(body, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(received_values(body, "x-forwarded-proto"), vec!["http"]);
    assert_eq!(
        received_values(body, "x-forwarded-host"),
        vec![gateway.http.to_string()]
    );
    assert_eq!(body["envelope"]["issuer"], GATEWAY_ID);
}

#[test]
fn client_identity_headers_never_reach_the_service_on_an_authorized_route() {
    let stack = Stack::start("hygiene-authorized");
    let auth = format!("Bearer {}", stack.authority.token(READONLY));
    let mut headers = spoofed_headers();
    headers.push(("Authorization", &auth));

    let r = stack.gateway.get("/items/1", &headers);
    let body = assert_reached_via_envelope(&r);
    assert_only_the_gateways_headers(&body, &stack.gateway);
    let id = &body["identity"];
    assert_eq!(id["subject"], "svc-readonly");
    assert_eq!(id["tenant"], "globex");
    assert_eq!(id["scopes"], serde_json::json!(["echo.read"]));
}

#[test]
fn client_identity_headers_never_reach_the_service_on_an_anonymous_route() {
    let stack = Stack::start("hygiene-anonymous");
    let r = stack.gateway.get("/public/x", &spoofed_headers());
    let body = assert_reached_via_envelope(&r);
    assert_only_the_gateways_headers(&body, &stack.gateway);
    let id = &body["identity"];
    assert_eq!(id["auth_method"], "anonymous");
    assert_eq!(id["subject"], Value::Null);
    assert_eq!(id["tenant"], Value::Null);
    assert_eq!(id["roles"], serde_json::json!([]));
}

#[test]
fn authorization_is_forwarded_only_to_the_service_that_validates_tokens_itself() {
    let dir = TempDir::new("hygiene-credentials");
    let authority = Authority::start();
    let token = authority.token(BEARER);
    let auth = format!("Bearer {token}");
    // echo-legacy (ServiceEnforced) accepts exactly this token on its own:
    // a 200 from it with `source: service` proves the token arrived intact.
    let (echo, hybrid, legacy) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let hybrid = s.spawn(Echo::hybrid);
        let legacy = Echo::legacy(&token);
        (echo.join().unwrap(), hybrid.join().unwrap(), legacy)
    });
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .service("echo-hybrid", hybrid.addr())
        .service("echo-legacy", legacy.addr())
        .start(&dir);
    let mut headers = spoofed_headers();
    headers.push(("Authorization", &auth));

    let body = assert_reached_via_envelope(&gw.get("/items/1", &headers));
    assert_only_the_gateways_headers(&body, &gw);

    let body = assert_reached_via_envelope(&gw.get("/hybrid/1", &headers));
    assert_only_the_gateways_headers(&body, &gw);
    assert_eq!(body["envelope"]["audience"], "echo-hybrid");

    let r = gw.get("/legacy/1", &headers);
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["source"], "service", "{body}");
    assert_eq!(received_values(&body, "authorization"), vec![auth.clone()]);
    // It also got the gateway's envelope, addressed to it and valid (the
    // service reports any envelope it had to ignore).
    assert_eq!(body["ignored_envelope_error"], Value::Null, "{body}");
    for name in ENVELOPE_HEADERS {
        assert_eq!(received_values(&body, name).len(), 1, "{name}: {body}");
    }
    for (name, value) in received(&body) {
        if name.starts_with("x-stella") {
            assert!(ENVELOPE_HEADERS.contains(&name.as_str()), "{name}: {value}");
        }
    }
    assert_eq!(received_values(&body, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert!(received_values(&body, "forwarded").is_empty());
    assert_no_intent_headers(&body);
    assert_eq!(
        (echo.requests(), hybrid.requests(), legacy.requests()),
        (1, 1, 1)
    );
}

#[test]
fn connection_header_cannot_remove_the_gateways_envelope_or_request_id() {
    let stack = Stack::start("hygiene-connection");
    let raw = send_raw(
        stack.gateway.http,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close, \
          X-StellaOps-Identity-Envelope, X-StellaOps-Identity-Envelope-Signature, \
          X-Request-Id\r\n\r\n",
    );
    assert!(
        !raw.is_empty(),
        "the gateway closed the connection without answering"
    );
    let r = parse_response(&raw);
    let body = assert_reached_via_envelope(&r);
    for name in ENVELOPE_HEADERS {
        assert_eq!(received_values(&body, name).len(), 1, "{name}: {body}");
    }
    assert_eq!(received_values(&body, "x-request-id").len(), 1, "{body}");
}

#[test]
fn connection_header_naming_a_forwarding_header_is_a_bad_request() {
    let stack = Stack::start("hygiene-connection-xff");
    let raw = send_raw(
        stack.gateway.http,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close, X-Forwarded-For\r\n\r\n",
    );
    assert!(
        !raw.is_empty(),
        "the gateway closed the connection without answering"
    );
    let r = parse_response(&raw);
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(stack.echo.requests(), 0);
}

#[test]
fn an_access_token_in_the_query_is_refused_on_every_route_before_any_upstream_call() {
    let stack = Stack::start("hygiene-query-token");
    let token = stack.authority.token(BEARER);
    let auth = format!("Bearer {token}");
    for (path, headers) in [
        (format!("/public/x?access_token={token}"), vec![]),
        (format!("/items/1?a=1&access_token={token}"), vec![]),
        (
            format!("/items/1?access_token={token}"),
            vec![("Authorization", auth.as_str())],
        ),
        ("/public/x?access%5Ftoken=abc".to_string(), vec![]),
        ("/no/such/route?access_token=abc".to_string(), vec![]),
    ] {
        let r = stack.gateway.get(&path, &headers);
        assert_problem(&r, 400, "invalid_request");
        assert!(
            !r.text().contains(&token),
            "the token is echoed: {}",
            r.text()
        );
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{path}: {challenge}"
        );
    }
    assert_eq!(
        stack.echo.requests(),
        0,
        "a request with a token in the url was forwarded"
    );
    // Other query parameters are forwarded untouched.
    let r = stack
        .gateway
        .get("/public/x?token_hint=1&a=access_token", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stack.echo.requests(), 1);
}

#[test]
fn a_denied_request_with_intent_headers_never_reaches_the_service() {
    let stack = Stack::start("hygiene-intent-denied");
    let r = stack.gateway.send(
        "GET",
        "/items/1",
        &[
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Original-URL", "/public/x"),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(stack.echo.requests(), 0);
}
