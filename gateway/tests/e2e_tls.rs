//! The TLS listener end to end, driven with `curl`: server certificate,
//! client certificates `required` and `optional`, SPIFFE X.509-SVIDs for
//! service-to-service calls, and certificate-bound (RFC 8705) tokens. The
//! certificates are made with the `openssl` CLI for each test.

mod common;

use common::*;
use std::path::Path;

fn https(
    gw: &Gateway,
    pki: &Pki,
    path: &str,
    cert: Option<(&Path, &Path)>,
    headers: &[(&str, &str)],
) -> Curl {
    curl_https(gw.tls.expect("tls listener"), path, &pki.ca, cert, headers)
}

/// curl got an answer; returns it.
#[track_caller]
fn answered(c: Curl) -> Response {
    assert_eq!(c.exit_code, Some(0), "curl failed: {}", c.stderr);
    c.response.expect("a response")
}

#[test]
fn https_listener_serves_requests_with_the_gateway_certificate() {
    let pki_dir = TempDir::new("tls-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("tls", |s| s.tls(pki.listener("none")));
    let gw = &stack.gateway;

    let body = assert_reached_via_envelope(&answered(https(gw, &pki, "/public/x", None, &[])));
    assert_eq!(body["identity"]["auth_method"], "anonymous");
    assert_eq!(received_values(&body, "x-forwarded-proto"), vec!["https"]);

    let auth = format!("Bearer {}", stack.authority.token(BEARER));
    let r = answered(https(
        gw,
        &pki,
        "/items/1",
        None,
        &[("Authorization", &auth)],
    ));
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "bearer");
    assert_eq!(body["identity"]["subject"], "svc-bearer");

    // HTTP/2 (ALPN) on the same listener, with the same hygiene.
    let c = curl_https_version(
        gw.tls.unwrap(),
        "/items/2",
        &pki.ca,
        None,
        &[("Authorization", &auth), ("X-Stella-Tenant", "globex")],
        "--http2",
    );
    assert_eq!(c.status_line, "HTTP/2 200", "{c:?}");
    let r = answered(c);
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["tenant"], "acme");
    assert!(
        received_values(&body, "x-stella-tenant").is_empty(),
        "{body}"
    );

    // A client that does not trust the gateway's CA stops at the handshake.
    let c = curl_https(gw.tls.unwrap(), "/public/x", &pki.other_ca, None, &[]);
    c.assert_server_untrusted();
    assert_eq!(stack.echo.requests(), 3);
}

#[test]
fn required_client_certificates_refuse_clients_without_one_or_from_another_ca() {
    let pki_dir = TempDir::new("mtls-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("mtls-required", |s| s.tls(pki.listener("required")));
    let gw = &stack.gateway;
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let other = Some((
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    ));
    let spiffe = Some((pki.spiffe_cert.as_path(), pki.spiffe_key.as_path()));

    https(gw, &pki, "/public/x", None, &[]).assert_refused_by_gateway("certificate required");
    https(gw, &pki, "/public/x", other, &[]).assert_refused_by_gateway("unknown ca");
    assert_eq!(stack.echo.requests(), 0);

    let body = assert_reached_via_envelope(&answered(https(gw, &pki, "/public/x", client, &[])));
    assert_eq!(body["identity"]["auth_method"], "anonymous");

    // The SPIFFE workload certificate alone opens the service-to-service
    // route; a certificate without a SPIFFE ID does not.
    let body = assert_reached_via_envelope(&answered(https(gw, &pki, "/svc/orders", spiffe, &[])));
    assert_eq!(body["identity"]["auth_method"], "spiffe", "{body}");
    assert_eq!(body["identity"]["subject"], SPIFFE_ID);
    assert_eq!(body["identity"]["confirmation"]["spiffe_id"], SPIFFE_ID);
    assert!(body["identity"]["confirmation"]["x5t#S256"].is_string());

    let r = answered(https(gw, &pki, "/svc/orders", client, &[]));
    assert_problem(&r, 401, "authentication_required");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn optional_client_certificates_accept_clients_with_and_without_one() {
    let pki_dir = TempDir::new("mtls-optional-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("mtls-optional", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let other = Some((
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    ));

    assert_reached_via_envelope(&answered(https(gw, &pki, "/public/x", None, &[])));
    assert_reached_via_envelope(&answered(https(gw, &pki, "/public/x", client, &[])));
    // Optional is not "anything goes": a certificate that is presented
    // must chain to the configured CA.
    https(gw, &pki, "/public/x", other, &[]).assert_refused_by_gateway("unknown ca");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn certificate_bound_token_is_accepted_only_with_its_certificate() {
    let pki_dir = TempDir::new("bound-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("bound", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    let token = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.client_cert));
    let x5t = jwt_claims(&token)["cnf"]["x5t#S256"].clone();
    assert!(x5t.is_string(), "{}", jwt_claims(&token));
    let auth = format!("Bearer {token}");
    let headers = [("Authorization", auth.as_str())];
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let spiffe = Some((pki.spiffe_cert.as_path(), pki.spiffe_key.as_path()));

    let r = answered(https(gw, &pki, "/mtls/1", client, &headers));
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
    assert_eq!(body["identity"]["confirmation"]["x5t#S256"], x5t);
    assert_eq!(stack.echo.requests(), 1);

    // Another certificate (same CA), no certificate, or plain http: refused.
    for (r, code, counted) in [
        (
            answered(https(gw, &pki, "/mtls/1", spiffe, &headers)),
            "certificate_mismatch",
            "thumbprint-mismatch",
        ),
        (
            answered(https(gw, &pki, "/mtls/1", None, &headers)),
            "certificate_missing",
            "missing-certificate",
        ),
        (
            gw.get("/mtls/1", &headers),
            "certificate_missing",
            "context-missing",
        ),
    ] {
        assert_invalid_token(&r);
        assert_eq!(r.json()["token_error"], code, "{}", r.text());
        assert_eq!(gw.reason_for(&r), code);
        let label = [("reason", counted)];
        assert_eq!(
            gw.wait_for_metric("stella_gateway_mtls_mismatch_total", &label, 1.0),
            1.0,
            "{counted}"
        );
    }
    assert_eq!(stack.echo.requests(), 1);
}

/// The refusal check itself: a listener that accepts the connection and
/// never answers makes curl time out (exit 28), which must not count as a
/// refused handshake.
#[test]
fn a_silent_listener_is_a_timeout_not_a_refused_handshake() {
    let pki_dir = TempDir::new("tls-silent");
    let pki = Pki::generate(&pki_dir);
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let c = curl_https(silent.local_addr().unwrap(), "/", &pki.ca, None, &[]);
    assert_eq!(c.exit_code, Some(28), "{}", c.stderr);
    let checked = std::panic::catch_unwind(|| c.assert_refused_by_gateway("alert"));
    assert!(checked.is_err(), "a timeout passed for a refused handshake");
}
