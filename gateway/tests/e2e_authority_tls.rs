//! An Authority served over https with a certificate from a private CA
//! (docs/authority.md, "An Authority on a private CA"): with the CA in the
//! Authority's `ca_file`, discovery, JWKS and claims requests trust it; without
//! it the platform's roots do not, and the gateway treats the Authority as
//! unreachable (not ready, 503 for tokens); a reload that adds `ca_file` makes
//! it ready.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

/// A route that needs a role only the Authority's claims endpoint gives.
const AUDIT_ROUTE: &str =
    "  - id: echo-audit\n    path: /audit/**\n    policy:\n      roles_any: [auditor]\n";

/// The test Authority over https, its certificate from `pki`'s CA.
fn https_authority(dir: &TempDir, pki: &Pki) -> Authority {
    let (cert, key) = pki.issue_server("authority");
    let claims_file = dir.join("claims.json");
    std::fs::write(
        &claims_file,
        json!({"svc-readonly": {"roles": ["auditor"]}}).to_string(),
    )
    .expect("write claims");
    let authority = Authority::start_with(AuthorityOptions {
        tls: Some(AuthorityTls {
            cert,
            key,
            ca: pki.ca.clone(),
        }),
        claims_file: Some(claims_file),
        ..AuthorityOptions::default()
    });
    assert!(
        authority.issuer.starts_with("https://127.0.0.1:"),
        "{}",
        authority.issuer
    );
    authority
}

fn setup(dir: &TempDir, authority: &Authority) -> GatewaySetup {
    GatewaySetup::new(&authority.issuer)
        .authority("require_https_metadata", json!(true))
        .authority("client_id", json!(GATEWAY_CLIENT.id))
        .authority("client_secret_env", json!("GATEWAY_CLIENT_SECRET"))
        .env("GATEWAY_CLIENT_SECRET", GATEWAY_CLIENT.secret)
        .authority(
            "claims",
            json!({"endpoint": format!("{}/claims", authority.issuer)}),
        )
        .policies(&policies_with_echo_routes(dir, AUDIT_ROUTE))
}

#[test]
fn authority_on_a_private_ca_is_trusted_through_its_ca_file() {
    let dir = TempDir::new("authority-tls-ca");
    let pki = Pki::generate(&dir);
    let authority = https_authority(&dir, &pki);
    let echo = Echo::gateway_enforced();
    let gw = setup(&dir, &authority)
        .authority("ca_file", json!(pki.ca))
        .service("echo", echo.addr())
        .start(&dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);
    let readyz = gw.admin_get("/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.text());

    // The token's signature checked with keys fetched over https, and the
    // role from the claims endpoint (the pooled client) over https too.
    let token = authority.token(READONLY);
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/1", &token));
    assert_eq!(body["identity"]["subject"], "svc-readonly");
    assert_eq!(body["identity"]["roles"], json!(["auditor"]));
    assert_eq!(echo.requests(), 1);
}

#[test]
fn authority_on_a_private_ca_is_refused_without_its_ca_file_until_a_reload_adds_it() {
    let dir = TempDir::new("authority-tls-noca");
    let pki = Pki::generate(&dir);
    let authority = https_authority(&dir, &pki);
    let echo = Echo::gateway_enforced();
    let gw = setup(&dir, &authority)
        .service("echo", echo.addr())
        .start(&dir);

    // The platform's roots do not hold the private CA: the Authority is as
    // good as unreachable.
    assert!(!gw.keys_loaded_at_start(), "{}", gw.process.ready);
    let readyz = gw.admin_get("/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.text());
    assert_eq!(readyz.json()["authority_keys_loaded"], false);
    let token = authority.token(READONLY);
    let r = gw.get_with_token("/items/1", &token);
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    assert!(r.header("www-authenticate").is_none(), "{r:?}");
    assert_eq!(echo.requests(), 0);
    let failures = gw
        .metrics()
        .get("stella_gateway_jwks_refresh_failures_total");
    assert!(failures >= 1.0, "{failures}");

    // The CA file added by a reload: ready, and the same token passes.
    gw.edit_config(|c| {
        c["gateway"]["auth"]["authority"]["ca_file"] = json!(pki.ca);
    });
    let reload = gw.reload();
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(
        wait_until(Duration::from_secs(20), || gw.admin_get("/readyz").status
            == 200),
        "not ready after ca_file was added: {}",
        gw.admin_get("/readyz?verbose").text()
    );
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/1", &token));
    assert_eq!(body["identity"]["roles"], json!(["auditor"]));
}
