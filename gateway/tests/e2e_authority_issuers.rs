//! The Authority beyond self-contained JWTs, with the real test Authority:
//! opaque tokens checked by introspection (RFC 7662), effective claims
//! from the Authority's claims endpoint, and several issuers whose keys,
//! results and tenants never serve one another.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The gateway's client and introspection at the test Authority; both
/// audiences (the JWT one and the opaque one) accepted.
fn introspecting(issuer: &str, introspection: Value) -> GatewaySetup {
    GatewaySetup::new(issuer)
        .authority("audiences", json!([API_AUDIENCE, OPAQUE_AUDIENCE]))
        .authority("client_id", json!(GATEWAY_CLIENT.id))
        .authority("client_secret", json!(GATEWAY_CLIENT.secret))
        .authority("introspection", introspection)
}

fn introspections(authority: &Authority) -> u64 {
    authority.counts()["introspections"].as_u64().unwrap_or(0)
}

fn opaque(authority: &Authority, client: Client) -> String {
    let token = authority.fresh_token(client, &TokenRequest::resource(OPAQUE_AUDIENCE));
    assert!(
        !token.contains('.'),
        "the Authority issued a JWT, not an opaque token: {token}"
    );
    token
}

fn assert_retry_after(r: &Response) {
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "no Retry-After: {r:?}"
    );
}

#[test]
fn an_opaque_token_is_introspected_once_cached_and_refused_once_revoked_and_expired() {
    let dir = TempDir::new("introspection");
    let authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let gw = introspecting(
        &authority.issuer,
        json!({"cache_seconds": 3, "inactive_cache_seconds": 30}),
    )
    .service("echo", echo.addr())
    .start(&dir);
    let token = opaque(&authority, BEARER);

    let before = introspections(&authority);
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    // No `sub` in an introspection answer for client credentials: the
    // client is the subject. The tenant comes from the answer.
    assert_eq!(body["identity"]["subject"], "svc-bearer");
    assert_eq!(body["identity"]["tenant"], "acme");
    assert_eq!(introspections(&authority), before + 1);
    // Cached: no second introspection.
    assert_reached_via_envelope(&gw.get_with_token("/items/2", &token));
    assert_eq!(introspections(&authority), before + 1);
    let hits = gw.metrics().value(
        "stella_gateway_introspection_total",
        &[("issuer", &authority.issuer), ("result", "hit")],
    );
    assert!(hits.is_some_and(|h| h >= 1.0), "{hits:?}");

    // Revoked at the Authority: refused once the cached result expires.
    authority.revoke(BEARER, &token);
    let upstream = echo.requests();
    let deadline = Instant::now() + Duration::from_secs(15);
    let refused = loop {
        let r = gw.get_with_token("/items/3", &token);
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_invalid_token(&refused);
    assert_eq!(gw.reason_for(&refused), "inactive");
    // At most the cache time after revocation (3 s, with slack for a slow
    // machine), and the inactive answer is remembered: no new lookup.
    let after = introspections(&authority);
    let r = gw.get_with_token("/items/4", &token);
    assert_invalid_token(&r);
    assert_eq!(introspections(&authority), after);
    assert!(
        echo.requests() <= upstream + 12,
        "upstream called after revocation"
    );

    // A made-up opaque token is inactive too, never forwarded.
    let upstream = echo.requests();
    let r = gw.get_with_token("/items/5", "made-up-opaque-token-value");
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "inactive");
    assert_eq!(echo.requests(), upstream);

    // An opaque token may contain two dots (several providers' formats do):
    // its first part is no JWS header, so it goes to introspection too,
    // never refused as a malformed JWS.
    let r = gw.get_with_token("/items/6", "opaque.with-two.dots-inside");
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "inactive");
    assert_eq!(echo.requests(), upstream);
}

#[test]
fn an_opaque_dpop_bound_token_is_refused_without_the_right_proof() {
    let dir = TempDir::new("introspection-dpop");
    let authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let gw = introspecting(&authority.issuer, json!({}))
        .public_origin("http://127.0.0.1:{http}")
        .service("echo", echo.addr())
        .start(&dir);
    let key = DpopKey::generate();
    let key_file = dir.join("dpop-key.json");
    key.write_private_jwk(&key_file);
    let token = authority.dpop_token_for(DPOP, &key_file, Some(OPAQUE_AUDIENCE));
    assert!(!token.contains('.'), "not opaque: {token}");
    let url = format!("{}/dpop/orders/1", gw.origin());
    let send = |proof: &str, scheme: &str| {
        gw.get(
            "/dpop/orders/1",
            &[
                ("authorization", &format!("{scheme} {token}")),
                ("dpop", proof),
            ],
        )
    };

    // The right key: the introspection's cnf.jkt is enforced and met.
    let proof = key.proof("GET", &url, Some(&token), None, now(), &unique_jti("ok"));
    let body = assert_reached_via_envelope(&send(&proof, "DPoP"));
    assert_eq!(body["identity"]["auth_method"], "dpop");
    assert_eq!(
        body["identity"]["confirmation"]["jkt"],
        json!(key.thumbprint())
    );

    let upstream = echo.requests();
    // Another key's proof.
    let other = DpopKey::generate();
    let proof = other.proof("GET", &url, Some(&token), None, now(), &unique_jti("other"));
    let r = send(&proof, "DPoP");
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "jkt_mismatch");
    // No proof at all: the bound token presented as Bearer.
    let r = gw.get_with_token("/dpop/orders/1", &token);
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "dpop_bound_token_as_bearer");
    assert_eq!(echo.requests(), upstream);
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec(value).expect("json")).expect("write");
}

/// A route that needs an effective role and an effective claim.
const AUDIT_ROUTE: &str = "  - id: echo-audit\n    path: /audit/**\n    policy:\n      roles_any: [auditor]\n      claims: {clearance: high}\n";

fn with_claims(dir: &TempDir, authority: &Authority, claims: Value) -> GatewaySetup {
    GatewaySetup::new(&authority.issuer)
        .authority("audiences", json!([API_AUDIENCE, OPAQUE_AUDIENCE]))
        .authority("client_id", json!(GATEWAY_CLIENT.id))
        .authority("client_secret_env", json!("GATEWAY_CLIENT_SECRET"))
        .env("GATEWAY_CLIENT_SECRET", GATEWAY_CLIENT.secret)
        .authority("claims", claims)
        .policies(&policies_with_echo_routes(dir, AUDIT_ROUTE))
}

#[test]
fn effective_claims_from_the_authority_decide_reach_the_envelope_and_follow_changes() {
    let dir = TempDir::new("claims");
    let claims_file = dir.join("claims.json");
    write_json(
        &claims_file,
        &json!({"svc-readonly": {"roles": ["auditor"], "clearance": "high", "tenant": "acme"}}),
    );
    let authority = Authority::start_with(AuthorityOptions {
        claims_file: Some(claims_file.clone()),
        ..AuthorityOptions::default()
    });
    let echo = Echo::gateway_enforced();
    let gw = with_claims(
        &dir,
        &authority,
        json!({
            "endpoint": format!("{}/claims", authority.issuer),
            "cache_seconds": 3,
            "refresh_ahead_seconds": 1,
        }),
    )
    .service("echo", echo.addr())
    .start(&dir);
    let token = authority.token(READONLY);

    // The token alone has neither the role nor the claim; the Authority
    // supplies both.
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/1", &token));
    assert_eq!(body["identity"]["roles"], json!(["auditor"]));
    // The token's own tenant wins over the Authority's.
    assert_eq!(body["identity"]["tenant"], "globex");
    let r = gw.get_with_token("/tenant/acme/1", &token);
    assert_problem(&r, 403, "access_denied");

    // The Authority withdraws the role: refused once the claims are
    // refreshed (cache 3 s).
    write_json(
        &claims_file,
        &json!({"svc-readonly": {"clearance": "high"}}),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let r = gw.get_with_token("/audit/2", &token);
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_problem(&refused, 403, "access_denied");
    let refreshes = gw.metrics().value(
        "stella_gateway_claims_refreshes_total",
        &[("issuer", &authority.issuer), ("result", "ok")],
    );
    assert!(refreshes.is_some_and(|n| n >= 2.0), "{refreshes:?}");

    // The client secret never reaches the logs.
    let logs = gw.process.stderr_lines().join("\n");
    assert!(!logs.is_empty());
    assert!(!logs.contains(GATEWAY_CLIENT.secret));
}

#[test]
fn with_the_authority_down_cached_results_serve_until_max_stale_then_503_never_401() {
    let dir = TempDir::new("authority-down");
    let claims_file = dir.join("claims.json");
    write_json(
        &claims_file,
        &json!({"svc-bearer": {"roles": ["auditor"], "clearance": "high"}}),
    );
    let mut authority = Authority::start_with(AuthorityOptions {
        claims_file: Some(claims_file),
        ..AuthorityOptions::default()
    });
    let echo = Echo::gateway_enforced();
    let gw = with_claims(
        &dir,
        &authority,
        json!({
            "endpoint": format!("{}/claims", authority.issuer),
            "cache_seconds": 2,
            "refresh_ahead_seconds": 1,
            "max_stale_seconds": 8,
        }),
    )
    .authority(
        "introspection",
        json!({"cache_seconds": 2, "max_stale_seconds": 8}),
    )
    .service("echo", echo.addr())
    .start(&dir);
    let jwt = authority.token(BEARER);
    let opaque_token = opaque(&authority, BEARER);
    let unseen = opaque(&authority, BEARER);
    assert_reached_via_envelope(&gw.get_with_token("/audit/1", &jwt));
    assert_reached_via_envelope(&gw.get_with_token("/audit/2", &opaque_token));
    let fetched = Instant::now();

    authority.kill();
    // Past the cache time (2 s), within max-stale: both still served from
    // what was cached.
    wait_until(Duration::from_secs(10), || {
        fetched.elapsed() >= Duration::from_secs(3)
    });
    assert_reached_via_envelope(&gw.get_with_token("/audit/3", &jwt));
    assert_reached_via_envelope(&gw.get_with_token("/audit/4", &opaque_token));
    // A token never seen cannot be checked: 503, not 401.
    let r = gw.get_with_token("/items/1", &unseen);
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_retry_after(&r);
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    let metrics = gw.metrics();
    let staleness = metrics.value(
        "stella_gateway_authority_staleness_seconds",
        &[("issuer", &authority.issuer), ("what", "claims")],
    );
    assert!(staleness.is_some(), "no claims staleness gauge");

    // Past cache + max-stale (2 + 8 s): 503 with Retry-After, never 401.
    wait_until(Duration::from_secs(30), || {
        fetched.elapsed() >= Duration::from_secs(12)
    });
    let upstream = echo.requests();
    for (path, token) in [("/audit/5", &jwt), ("/audit/6", &opaque_token)] {
        let r = gw.get_with_token(path, token);
        assert_problem(&r, 503, "temporarily_unavailable");
        assert_retry_after(&r);
        assert_eq!(gw.reason_for(&r), "authority_unavailable");
    }
    assert_eq!(echo.requests(), upstream);
    // What needs no Authority keeps working.
    assert_eq!(gw.get("/public/1", &[]).status, 200);
    let stale = gw.metrics().value(
        "stella_gateway_introspection_total",
        &[("issuer", &authority.issuer), ("result", "stale")],
    );
    assert!(stale.is_some_and(|n| n >= 1.0), "{stale:?}");
}

/// Two Authorities whose ES256 keys have the same kid: issuer B's keys
/// file is a copy of its own keys with A's ES256 kid.
fn two_authorities(dir: &TempDir) -> (Authority, Authority, PathBuf) {
    let a = Authority::start();
    let b_keys = dir.join("b-keys.json");
    let b = Authority::start_with(AuthorityOptions {
        keys_file: Some(b_keys.clone()),
        ..AuthorityOptions::default()
    });
    drop(b);
    let a_kid = AuthorityKeys::load(&a.keys_file).ec_kid;
    let mut keys: Value =
        serde_json::from_slice(&std::fs::read(&b_keys).expect("b keys")).expect("json");
    for k in keys["keys"].as_array_mut().expect("keys") {
        if k["kty"] == "EC" {
            k["kid"] = json!(a_kid);
        }
    }
    write_json(&b_keys, &keys);
    let b = Authority::start_with(AuthorityOptions {
        keys_file: Some(b_keys.clone()),
        ..AuthorityOptions::default()
    });
    (a, b, b_keys)
}

#[test]
fn each_issuers_tokens_are_verified_with_its_own_keys_and_tenants_stay_with_their_issuer() {
    let dir = TempDir::new("issuers");
    let (a, b, b_keys) = two_authorities(&dir);
    let echo = Echo::gateway_enforced();
    let gw = GatewaySetup::new(&a.issuer)
        .authority("tenants", json!(["acme"]))
        .auth(
            "authorities",
            json!([{
                "issuer": b.issuer,
                "require_https_metadata": false,
                "audiences": [API_AUDIENCE],
                "tenants": ["globex"],
            }]),
        )
        .service("echo", echo.addr())
        .start(&dir);
    let a_keys = AuthorityKeys::load(&a.keys_file);
    assert_eq!(AuthorityKeys::load(&b_keys).ec_kid, a_keys.ec_kid);

    // Each issuer's own tokens pass: A's acme token, B's globex token
    // (signed by B's key under the kid A uses too).
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/1", &a.token(BEARER)));
    assert_eq!(body["identity"]["tenant"], "acme");
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/2", &b.token(READONLY)));
    assert_eq!(body["identity"]["tenant"], "globex");

    let upstream = echo.requests();
    // A token claiming issuer B, signed with A's key under the shared kid:
    // B's keys verify it, and fail.
    let b_token = b.token(READONLY);
    let mut claims = jwt_claims(&b_token);
    claims["jti"] = json!(unique_jti("forged"));
    let forged = a_keys.es256(&jwt_header(&b_token), &claims);
    let r = gw.get_with_token("/items/3", &forged);
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "bad_signature");

    // B's token for tenant acme, which is bound to A.
    let r = gw.get_with_token("/items/4", &b.token(BEARER));
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "tenant_issuer_mismatch");

    // An issuer nobody configured.
    let mut claims = jwt_claims(&b_token);
    claims["iss"] = json!("http://127.0.0.1:1");
    let stranger = a_keys.es256(&jwt_header(&b_token), &claims);
    let r = gw.get_with_token("/items/5", &stranger);
    assert_invalid_token(&r);
    assert_eq!(gw.reason_for(&r), "unknown_issuer");
    assert_eq!(echo.requests(), upstream);

    // Per-issuer gauges.
    let metrics = gw.metrics();
    for issuer in [&a.issuer, &b.issuer] {
        assert!(
            metrics
                .value(
                    "stella_gateway_authority_staleness_seconds",
                    &[("issuer", issuer), ("what", "jwks")],
                )
                .is_some(),
            "no jwks staleness for {issuer}"
        );
    }
}

/// 20 requests with `token` to `prefix/0` .. `prefix/19`, released at
/// once; their statuses.
fn at_once(gw: &Gateway, prefix: &str, token: &str) -> Vec<u16> {
    let barrier = std::sync::Barrier::new(20);
    std::thread::scope(|s| {
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    gw.get_with_token(&format!("{prefix}/{i}"), token).status
                })
            })
            .collect();
        tasks
            .into_iter()
            .map(|t| t.join().expect("request"))
            .collect()
    })
}

/// Concurrent first requests for one opaque token make one introspection,
/// and for one subject one claims request: the others wait for that answer
/// instead of each asking the Authority (the Authority answers 300 ms late
/// here, so all of them arrive while the first call is pending).
#[test]
fn concurrent_first_requests_share_one_introspection_and_one_claims_request() {
    let dir = TempDir::new("single-flight");
    let claims_file = dir.join("claims.json");
    write_json(
        &claims_file,
        &json!({"svc-readonly": {"roles": ["auditor"], "clearance": "high", "tenant": "acme"}}),
    );
    let authority = Authority::start_with(AuthorityOptions {
        claims_file: Some(claims_file),
        slow_ms: Some(300),
        ..AuthorityOptions::default()
    });
    let echo = Echo::gateway_enforced();
    let gw = introspecting(&authority.issuer, json!({"cache_seconds": 30}))
        .service("echo", echo.addr())
        .start(&dir);
    let token = opaque(&authority, BEARER);
    let before = introspections(&authority);
    let statuses = at_once(&gw, "/items", &token);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        introspections(&authority),
        before + 1,
        "one introspection for 20 requests"
    );

    let dir2 = TempDir::new("single-flight-claims");
    let gw = with_claims(
        &dir2,
        &authority,
        json!({"endpoint": format!("{}/claims", authority.issuer), "cache_seconds": 120}),
    )
    .service("echo", echo.addr())
    .start(&dir2);
    let token = authority.token(READONLY);
    let claims_before = authority.counts()["claims_requests"].as_u64().unwrap_or(0);
    let statuses = at_once(&gw, "/audit", &token);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let claims_after = authority.counts()["claims_requests"].as_u64().unwrap_or(0);
    assert_eq!(
        claims_after,
        claims_before + 1,
        "one claims request for 20 requests"
    );
}

/// Introspection requests to one Authority reuse their connections: five
/// tokens checked one after the other come on one connection, not five.
#[test]
fn introspection_requests_reuse_the_connection_to_the_authority() {
    let dir = TempDir::new("introspection-pool");
    let authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let gw = introspecting(&authority.issuer, json!({"cache_seconds": 30}))
        .service("echo", echo.addr())
        .gateway("threads", json!(1))
        .start(&dir);
    let tokens: Vec<String> = (0..5).map(|_| opaque(&authority, BEARER)).collect();
    for (i, token) in tokens.iter().enumerate() {
        assert_reached_via_envelope(&gw.get_with_token(&format!("/items/{i}"), token));
    }
    let counts = authority.counts();
    assert_eq!(counts["introspections"], 5, "{counts}");
    assert_eq!(counts["introspection_connections"], 1, "{counts}");
}
