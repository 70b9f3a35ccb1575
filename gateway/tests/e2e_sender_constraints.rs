//! Sender constraints per route (docs/design.md §3.3,
//! runbooks/dpop-mtls-rollout.md) end to end: the shipped policies' `/dpop/**`
//! (DPoP), `/mtls/**` (certificate-bound, RFC 8705), `/bound/**` (either,
//! emergency bypass allowed) and `/svc/**` (a SPIFFE workload certificate
//! alone), with real tokens from the Authority, DPoP proofs from `DpopKey`, and
//! client certificates presented with `curl` over the TLS listener.
//!
//! Asserted: status, challenge and body `error`, whether the service was
//! called and the `auth_method` / confirmation it received, and the counters
//! an operator watches during a rollout (`stella_gateway_mtls_mismatch_total{reason}`,
//! `stella_gateway_dpop_bypass_total`).

mod common;

use common::*;
use serde_json::json;
use std::path::Path;

fn answered(c: Curl) -> Response {
    assert_eq!(c.exit_code, Some(0), "curl failed: {}", c.stderr);
    c.response.expect("a response")
}

/// `GET path` over the TLS listener with `Authorization: Bearer token` (if
/// given) and the client certificate `cert` (if given).
fn https(
    gw: &Gateway,
    pki: &Pki,
    path: &str,
    cert: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    answered(curl_https(
        gw.tls.expect("tls listener"),
        path,
        &pki.ca,
        cert,
        &headers,
    ))
}

/// A 401 `invalid_token` because the route needs a constraint the token
/// does not prove: both challenges name the error.
#[track_caller]
fn assert_constraint_required(r: &Response) {
    assert_invalid_token(r);
    let challenges = r.header_all("www-authenticate");
    assert_eq!(challenges.len(), 2, "{challenges:?}");
    assert!(
        challenges[1].starts_with("DPoP realm=\"stella-gateway\"")
            && challenges[1].contains("error=\"invalid_token\"")
            && challenges[1].contains("algs=\""),
        "{challenges:?}"
    );
}

fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gw.metrics().value(name, labels).unwrap_or(0.0)
}

/// A DPoP key written for `token.mjs` and a token bound to it.
fn dpop_token(stack: &Stack) -> (DpopKey, String) {
    let key = DpopKey::generate();
    let file = stack.dir.join("dpop-key.json");
    key.write_private_jwk(&file);
    let token = stack.authority.dpop_token(DPOP, &file);
    assert_eq!(jwt_claims(&token)["cnf"]["jkt"], key.thumbprint());
    (key, token)
}

/// `GET path` on the plain listener with a fresh proof for it.
fn get_with_proof(gw: &Gateway, key: &DpopKey, token: &str, path: &str) -> Response {
    let proof = key.proof(
        "GET",
        &format!("{}{path}", gw.origin()),
        Some(token),
        None,
        now(),
        &unique_jti("sc"),
    );
    let auth = format!("DPoP {token}");
    gw.get(path, &[("Authorization", &auth), ("DPoP", &proof)])
}

#[test]
fn routes_that_require_a_sender_constraint_refuse_tokens_that_do_not_prove_it() {
    let stack = Stack::start_with("sc-routes", |s| s.public_origin("http://127.0.0.1:{http}"));
    let gw = &stack.gateway;
    let bearer = stack.authority.token(BEARER);
    let (key, dpop) = dpop_token(&stack);

    // An unbound token is fine where no constraint is asked for ...
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/1", &bearer));
    assert_eq!(body["identity"]["auth_method"], "bearer");
    // ... and refused on every constrained route.
    for path in ["/dpop/1", "/mtls/1", "/bound/1"] {
        let r = gw.get_with_token(path, &bearer);
        assert_constraint_required(&r);
    }
    assert_eq!(stack.echo.requests(), 1);

    // A proven DPoP token passes `dpop` and `any_bound`, not `mtls`.
    for path in ["/dpop/2", "/bound/2"] {
        let body = assert_reached_via_envelope(&get_with_proof(gw, &key, &dpop, path));
        assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    }
    let r = get_with_proof(gw, &key, &dpop, "/mtls/2");
    assert_constraint_required(&r);
    assert_eq!(stack.echo.requests(), 3);

    // With the bypass switch off (the default), a DPoP-bound token as
    // Bearer is refused even on the route that allows bypass.
    for path in ["/bound/3", "/dpop/3", "/items/3"] {
        let r = gw.get_with_token(path, &dpop);
        assert_invalid_token(&r);
        assert_eq!(r.json()["token_error"], "dpop_bound_token_as_bearer");
    }
    assert_eq!(stack.echo.requests(), 3);
    assert_eq!(metric(gw, "stella_gateway_dpop_bypass_total", &[]), 0.0);
}

#[test]
fn a_certificate_bound_token_is_accepted_only_over_mtls_with_its_own_certificate() {
    let pki_dir = TempDir::new("sc-mtls-pki");
    let pki = Pki::generate(&pki_dir);
    // Another certificate for the same SPIFFE workload: same ID, other key.
    let (twin_cert, twin_key) = pki.issue_client("orders-twin", Some(SPIFFE_ID));
    let stack = Stack::start_with("sc-mtls", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    stack.authority.prefetch_with(&[
        (MTLS, TokenRequest::bound_to(&pki.client_cert)),
        (MTLS, TokenRequest::bound_to(&pki.spiffe_cert)),
    ]);
    let client_token = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.client_cert));
    let spiffe_token = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.spiffe_cert));
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let spiffe = Some((pki.spiffe_cert.as_path(), pki.spiffe_key.as_path()));
    let twin = Some((twin_cert.as_path(), twin_key.as_path()));
    let mismatches = |reason: &str| {
        metric(
            gw,
            "stella_gateway_mtls_mismatch_total",
            &[("reason", reason)],
        )
    };

    // Each token with its own certificate: auth_method mtls, and the
    // service sees the thumbprint it was bound to.
    for (token, cert) in [(&client_token, client), (&spiffe_token, spiffe)] {
        let body = assert_reached_via_envelope(&https(gw, &pki, "/mtls/1", cert, Some(token)));
        assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
        assert_eq!(
            body["identity"]["confirmation"]["x5t#S256"],
            jwt_claims(token)["cnf"]["x5t#S256"],
            "{body}"
        );
    }
    // Bound tokens work on routes that do not require the binding too.
    let body =
        assert_reached_via_envelope(&https(gw, &pki, "/items/1", client, Some(&client_token)));
    assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
    assert_eq!(stack.echo.requests(), 3);

    // Another certificate from the same CA, or the same SPIFFE ID with
    // another key: the thumbprint differs.
    for (token, cert) in [
        (&client_token, spiffe),
        (&spiffe_token, twin),
        (&spiffe_token, client),
    ] {
        let r = https(gw, &pki, "/mtls/2", cert, Some(token));
        assert_invalid_token(&r);
        assert_eq!(
            r.json()["token_error"],
            "certificate_mismatch",
            "{}",
            r.text()
        );
    }
    assert_eq!(mismatches("thumbprint-mismatch"), 3.0);

    // TLS without a client certificate, and plain HTTP.
    let r = https(gw, &pki, "/mtls/3", None, Some(&client_token));
    assert_invalid_token(&r);
    assert_eq!(
        r.json()["token_error"],
        "certificate_missing",
        "{}",
        r.text()
    );
    assert_eq!(gw.reason_for(&r), "certificate_missing");
    assert_eq!(mismatches("missing-certificate"), 1.0);
    let r = gw.get_with_token("/mtls/3", &client_token);
    assert_invalid_token(&r);
    assert_eq!(
        r.json()["token_error"],
        "certificate_missing",
        "{}",
        r.text()
    );
    assert_eq!(gw.reason_for(&r), "certificate_missing");
    assert_eq!(mismatches("context-missing"), 1.0);
    assert_eq!(stack.echo.requests(), 3);
}

#[test]
fn a_spiffe_workload_certificate_alone_opens_its_service_route_and_no_other_workload_does() {
    let pki_dir = TempDir::new("sc-spiffe-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("sc-spiffe", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    let issue = |name: &str, id: &str| pki.issue_client(name, Some(id));
    let twin = issue("orders-twin", SPIFFE_ID);
    let spiffe = (pki.spiffe_cert.clone(), pki.spiffe_key.clone());

    // The listed workload, with either of its certificates.
    for (cert, key) in [&spiffe, &twin] {
        let r = https(
            gw,
            &pki,
            "/svc/orders",
            Some((cert.as_path(), key.as_path())),
            None,
        );
        let body = assert_reached_via_envelope(&r);
        assert_eq!(body["identity"]["auth_method"], "spiffe", "{body}");
        assert_eq!(body["identity"]["subject"], SPIFFE_ID, "{body}");
        assert_eq!(body["identity"]["confirmation"]["spiffe_id"], SPIFFE_ID);
    }
    assert_eq!(stack.echo.requests(), 2);

    // Other workloads of the same trust domain, including IDs that only
    // start like the listed one: 403.
    for (name, id) in [
        ("payments", "spiffe://stella.test/ns/default/sa/payments"),
        (
            "orders-evil",
            "spiffe://stella.test/ns/default/sa/orders-evil",
        ),
        (
            "orders-sub",
            "spiffe://stella.test/ns/default/sa/orders/admin",
        ),
        ("other-domain", "spiffe://evil.test/ns/default/sa/orders"),
    ] {
        let (cert, key) = issue(name, id);
        let r = https(
            gw,
            &pki,
            "/svc/orders",
            Some((cert.as_path(), key.as_path())),
            None,
        );
        assert_problem(&r, 403, "access_denied");
        assert_eq!(r.json()["reason"], "spiffe_id", "{id}: {}", r.text());
    }
    // Not a SPIFFE ID at all (an uppercase trust domain breaks the SVID
    // rules), or no URI SAN: no identity.
    let (cert, key) = issue("upper", "spiffe://STELLA.test/ns/default/sa/orders");
    let r = https(
        gw,
        &pki,
        "/svc/orders",
        Some((cert.as_path(), key.as_path())),
        None,
    );
    assert_problem(&r, 401, "authentication_required");
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    assert_problem(
        &https(gw, &pki, "/svc/orders", client, None),
        401,
        "authentication_required",
    );
    // Without TLS there is no certificate.
    assert_problem(&gw.get("/svc/orders", &[]), 401, "authentication_required");
    // A workload certificate is not a token: other routes still want one.
    let r = https(
        gw,
        &pki,
        "/items/1",
        Some((spiffe.0.as_path(), spiffe.1.as_path())),
        None,
    );
    assert_problem(&r, 401, "authentication_required");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn the_emergency_bypass_lets_unproven_bound_tokens_through_only_where_a_route_allows_it() {
    let pki_dir = TempDir::new("sc-bypass-pki");
    let pki = Pki::generate(&pki_dir);
    let stack = Stack::start_with("sc-bypass", |s| {
        s.public_origin("http://127.0.0.1:{http}")
            .auth("allow_temporary_bypass", json!(true))
    });
    let gw = &stack.gateway;
    let (key, dpop) = dpop_token(&stack);
    let mtls = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.client_cert));
    let bypassed = || metric(gw, "stella_gateway_dpop_bypass_total", &[]);

    // `/bound/**` allows bypass: a DPoP-bound token as Bearer passes, and
    // the service is told it was not proven.
    let body = assert_reached_via_envelope(&gw.get_with_token("/bound/1", &dpop));
    assert_eq!(body["identity"]["auth_method"], "bypass", "{body}");
    assert_eq!(body["identity"]["subject"], "svc-dpop", "{body}");
    assert_eq!(bypassed(), 1.0);

    // Routes without allow_bypass refuse it as if the switch were off.
    for (path, reason) in [
        ("/dpop/1", "dpop_required"),
        // No constraint of its own: an unproven bound token needs proof.
        ("/items/1", "any_bound_required"),
        ("/mtls/1", "mtls_required"),
    ] {
        let r = gw.get_with_token(path, &dpop);
        assert_invalid_token(&r);
        assert_eq!(gw.reason_for(&r), reason, "{path}");
    }
    assert_eq!(bypassed(), 1.0);
    assert_eq!(stack.echo.requests(), 1);

    // A certificate-bound token without its certificate (plain HTTP, as
    // behind a TLS terminator) is let through the same way, and counted
    // both as a bypass and as an mTLS mismatch.
    let body = assert_reached_via_envelope(&gw.get_with_token("/bound/2", &mtls));
    assert_eq!(body["identity"]["auth_method"], "bypass", "{body}");
    assert_eq!(bypassed(), 2.0);
    assert_eq!(
        metric(
            gw,
            "stella_gateway_mtls_mismatch_total",
            &[("reason", "context-missing")]
        ),
        1.0
    );
    assert_invalid_token(&gw.get_with_token("/mtls/2", &mtls));

    // Proven tokens are not bypasses.
    let body = assert_reached_via_envelope(&get_with_proof(gw, &key, &dpop, "/bound/3"));
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert_eq!(bypassed(), 2.0);
    // Unbound tokens are not let through by the bypass either.
    assert_constraint_required(&gw.get_with_token("/bound/4", &stack.authority.token(BEARER)));
    assert_eq!(stack.echo.requests(), 3);
}

/// Clients of the tenant `policies/tenants.yaml` holds to mTLS.
const HA_BEARER: Client = Client {
    id: "ha-bearer",
    secret: "ha-bearer-secret",
};
const HA_MTLS: Client = Client {
    id: "ha-mtls",
    secret: "ha-mtls-secret",
};
const HA_DPOP: Client = Client {
    id: "ha-dpop",
    secret: "ha-dpop-secret",
};

#[test]
fn the_high_assurance_tenant_must_prove_a_client_certificate_on_every_route() {
    let dir = TempDir::new("sc-tenant");
    let pki = Pki::generate(&dir);
    let clients = dir.join("clients.json");
    let client = |c: &Client, binding: Option<&str>| {
        let mut meta = json!({
            "client_id": c.id,
            "client_secret": c.secret,
            "scope": "echo.read echo.write admin",
            "tenant": "high-assurance",
        });
        if let Some(binding) = binding {
            meta[binding] = json!(true);
        }
        meta
    };
    let list = json!([
        client(&HA_BEARER, None),
        client(&HA_MTLS, Some("tls_client_certificate_bound_access_tokens")),
        client(&HA_DPOP, Some("dpop_bound_access_tokens")),
    ]);
    std::fs::write(&clients, list.to_string()).expect("write clients file");
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start_with(AuthorityOptions {
            clients_file: Some(clients.clone()),
            ..AuthorityOptions::default()
        });
        (authority, echo.join().expect("echo started"))
    });
    let gateway = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .tls(pki.listener("optional"))
        .public_origin("http://127.0.0.1:{http}")
        .start(&dir);
    let stack = Stack {
        gateway,
        echo,
        authority,
        dir,
    };
    let gw = &stack.gateway;
    let bearer = stack.authority.token(HA_BEARER);
    let mtls = stack
        .authority
        .token_with(HA_MTLS, TokenRequest::bound_to(&pki.client_cert));
    let key = DpopKey::generate();
    let key_file = stack.dir.join("ha-dpop-key.json");
    key.write_private_jwk(&key_file);
    let dpop = stack.authority.dpop_token(HA_DPOP, &key_file);
    assert_eq!(jwt_claims(&bearer)["tenant"], "high-assurance");
    let cert = Some((pki.client_cert.as_path(), pki.client_key.as_path()));

    // A route with no constraint of its own: the tenant rule applies.
    let r = https(gw, &pki, "/items/1", cert, Some(&mtls));
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
    assert_eq!(body["identity"]["tenant"], "high-assurance", "{body}");

    assert_constraint_required(&https(gw, &pki, "/items/1", cert, Some(&bearer)));
    assert_constraint_required(&get_with_proof(gw, &key, &dpop, "/items/1"));
    // A route that asks for DPoP cannot be met by this tenant's DPoP token
    // either: both rules must hold.
    assert_constraint_required(&get_with_proof(gw, &key, &dpop, "/dpop/1"));
    assert_eq!(stack.echo.requests(), 1);

    // Anonymous routes do not rely on identity; tenant rules stay out (the
    // token's identity is still passed on).
    let body = assert_reached_via_envelope(&gw.get_with_token("/public/1", &bearer));
    assert_eq!(body["identity"]["auth_method"], "bearer", "{body}");
    assert_eq!(stack.echo.requests(), 2);
}
