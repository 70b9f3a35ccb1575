//! The Authority going away and coming back (docs/design.md §3.4, §3.7, §3.8):
//! cached keys keep verifying tokens, readiness reflects whether keys are
//! loaded, and requests that need keys the gateway cannot get are 503 with
//! `Retry-After`, never 401.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;

#[track_caller]
fn assert_unavailable(r: &Response) {
    assert_problem(r, 503, "temporarily_unavailable");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric Retry-After: {r:?}"));
    assert!(retry > 0);
}

#[test]
fn cached_keys_keep_verifying_new_tokens_after_the_authority_goes_down() {
    let mut stack = Stack::start("authority-down");
    let narrow = TokenRequest::scope("echo.read");
    stack.authority.prefetch_with(&[
        (BEARER, TokenRequest::default()),
        (READONLY, TokenRequest::default()),
        (BEARER, narrow.clone()),
    ]);
    let first = stack.authority.token(BEARER);
    let second = stack.authority.token(READONLY);
    let third = stack.authority.token_with(BEARER, narrow);
    let issuer_claims = jwt_claims(&first);
    let gw = &stack.gateway;
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &first));

    stack.authority.kill();
    let gw = &stack.gateway;

    // A token the gateway has never seen: its signature is checked with
    // the keys loaded before the outage.
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/2", &second));
    assert_eq!(body["identity"]["subject"], "svc-readonly");
    assert_eq!(gw.admin_get("/readyz").status, 200);

    // An unknown kid makes the gateway look for new keys, which fails:
    // "could not look" is 503, not 401.
    let failures_before = gw
        .metrics()
        .get("stella_gateway_jwks_refresh_failures_total");
    let forged = AttackerKey::generate().sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "rotated-while-down"}),
        &issuer_claims,
    );
    let r = gw.get_with_token("/items/3", &forged);
    assert_unavailable(&r);
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    assert!(r.header("www-authenticate").is_none(), "{r:?}");
    assert_eq!(
        gw.metrics()
            .get("stella_gateway_jwks_refresh_failures_total"),
        failures_before + 1.0
    );

    // The failed refresh kept the old keys: still ready, still verifying.
    let readyz = gw.admin_get("/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.text());
    assert_eq!(readyz.json()["ready"], true);
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/4", &third));
    assert_eq!(body["identity"]["scopes"], json!(["echo.read"]));
    assert_reached_via_envelope(&gw.get_with_token("/items/5", &first));
    assert_eq!(stack.echo.requests(), 4);
}

#[test]
fn gateway_started_without_its_authority_is_not_ready_and_answers_503_until_keys_load() {
    let dir = TempDir::new("authority-absent");
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let echo = Echo::gateway_enforced();
    let gw = GatewaySetup::new(&issuer)
        .service("echo", echo.addr())
        .start(&dir);
    assert!(!gw.keys_loaded_at_start(), "{}", gw.process.ready);

    let readyz = gw.admin_get("/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.text());
    assert_eq!(readyz.json()["authority_keys_loaded"], false);
    assert_eq!(gw.admin_get("/healthz").status, 200);

    // A token needs keys: 503 with Retry-After, no challenge.
    let claims = json!({
        "iss": issuer, "aud": API_AUDIENCE, "sub": "svc-bearer", "client_id": "svc-bearer",
        "jti": "j1", "scope": "echo.read", "iat": now(), "exp": now() + 300,
    });
    let token = AttackerKey::generate().sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "k1"}),
        &claims,
    );
    let r = gw.get_with_token("/items/1", &token);
    assert_unavailable(&r);
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    assert!(r.header("www-authenticate").is_none(), "{r:?}");
    assert_eq!(echo.requests(), 0);

    // What needs no keys still works: the challenge, the anonymous route.
    assert_problem(&gw.get("/items/1", &[]), 401, "authentication_required");
    let body = assert_reached_via_envelope(&gw.get("/public/x", &[]));
    assert_eq!(body["identity"]["auth_method"], "anonymous");

    // The Authority comes up where the gateway expects it: the retry loop
    // loads the keys, the gateway turns ready and accepts its tokens.
    let authority = Authority::start_with(AuthorityOptions {
        port: Some(port),
        ..AuthorityOptions::default()
    });
    assert!(
        wait_until(Duration::from_secs(40), || gw.admin_get("/readyz").status
            == 200),
        "gateway did not become ready after the authority came up"
    );
    let body =
        assert_reached_via_envelope(&gw.get_with_token("/items/1", &authority.token(BEARER)));
    assert_eq!(body["identity"]["subject"], "svc-bearer");
}

#[test]
fn keys_older_than_refresh_plus_max_stale_refuse_unseen_tokens_with_503_while_the_gateway_stays_ready(
) {
    // Keys are fresh for jwks_refresh_seconds (10, the minimum) and then
    // served stale for jwks_max_stale_seconds (0): ten seconds in all.
    let mut stack = Stack::start_with("max-stale", |s| {
        s.authority("jwks_refresh_seconds", json!(10))
            .authority("jwks_max_stale_seconds", json!(0))
    });
    stack.authority.prefetch(&[BEARER, READONLY]);
    let seen = stack.authority.token(BEARER);
    let unseen = stack.authority.token(READONLY);
    assert_reached_via_envelope(&stack.gateway.get_with_token("/items/1", &seen));
    stack.authority.kill();
    let gw = &stack.gateway;

    // Past the max age the keys are degraded, not the gateway: every
    // replica reaches this at once, and a load balancer following /readyz
    // would drop the anonymous and cached-token traffic too.
    assert!(
        wait_until(Duration::from_secs(30), || gw
            .admin_get("/readyz?verbose")
            .json()["authority_keys_fresh"]
            == false),
        "the keys never went past their max age"
    );
    let readyz = gw.admin_get("/readyz?verbose");
    assert_eq!(readyz.status, 200, "{}", readyz.text());
    assert_eq!(readyz.json()["ready"], true);
    assert_eq!(readyz.json()["degraded"], json!(["authority_keys"]));
    let metrics = gw.metrics();
    assert_eq!(metrics.get("stella_gateway_ready"), 1.0);
    assert_eq!(
        metrics.value(
            "stella_gateway_degraded",
            &[("dependency", "authority_keys")]
        ),
        Some(1.0)
    );
    let anonymous = gw.get("/public/x", &[]);
    assert_eq!(anonymous.status, 200, "{}", anonymous.text());
    assert_eq!(stack.echo.requests(), 2);
    let r = gw.get_with_token("/items/2", &unseen);
    assert_unavailable(&r);
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    assert!(r.header("www-authenticate").is_none(), "{r:?}");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn rotated_authority_keys_are_picked_up_on_the_first_token_that_uses_them() {
    let mut stack = Stack::start("rotation");
    let gw = &stack.gateway;
    let before = stack.authority.token(BEARER);
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &before));
    let old_kid = jwt_header(&before)["kid"].clone();

    // The Authority restarts on the same address with new keys.
    let port = stack.authority.port;
    stack.authority.kill();
    stack.authority = Authority::start_with(AuthorityOptions {
        port: Some(port),
        ..AuthorityOptions::default()
    });
    let after = stack.authority.token(BEARER);
    assert_ne!(jwt_header(&after)["kid"], old_kid);

    let gw = &stack.gateway;
    let refetches = gw
        .metrics()
        .get("stella_gateway_jwks_unknown_kid_refetches_total");
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/2", &after));
    assert_eq!(body["identity"]["subject"], "svc-bearer");
    assert_eq!(
        gw.metrics()
            .get("stella_gateway_jwks_unknown_kid_refetches_total"),
        refetches + 1.0
    );
    let config = gw.admin_get("/config").json();
    assert!(
        config["authority"]["key_ids"]
            .as_array()
            .unwrap()
            .contains(&jwt_header(&after)["kid"]),
        "{config}"
    );
}
