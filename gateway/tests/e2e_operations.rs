//! What an operator sees (docs/design.md §3.4, §3.8): upstream failures
//! answered by the gateway, request metrics by route, decision and status, and
//! the admin endpoints.

mod common;

use common::*;
use serde_json::json;

#[test]
fn unreachable_upstream_is_answered_with_502_upstream_unavailable() {
    let dir = TempDir::new("upstream-down");
    let authority = Authority::start();
    // Every service points at a port nobody listens on.
    let setup = GatewaySetup::new(&authority.issuer);
    let gw = setup.start(&dir);
    let token = authority.token(BEARER);

    for r in [
        gw.get("/public/x", &[]),
        gw.get_with_token("/items/1", &token),
        gw.get_with_token("/hybrid/1", &token),
    ] {
        assert_problem(&r, 502, "upstream_unavailable");
        assert!(!r.text().contains("127.0.0.1"), "{}", r.text());
    }
    let errors = gw.wait_for_metric(
        "stella_gateway_upstream_errors_total",
        &[("service", "echo"), ("kind", "unavailable")],
        2.0,
    );
    assert_eq!(errors, 2.0);
    let decided = gw.wait_for_metric(
        "stella_gateway_requests_total",
        &[
            ("route", "echo-items-read"),
            ("decision", "allow"),
            ("status", "502"),
        ],
        1.0,
    );
    assert_eq!(decided, 1.0);
}

#[test]
fn metrics_count_requests_by_route_decision_and_status() {
    let stack = Stack::start("metrics");
    stack.authority.prefetch(&[BEARER, READONLY]);
    let gw = &stack.gateway;
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &stack.authority.token(BEARER)));
    assert_reached_via_envelope(&gw.get_with_token("/items/2", &stack.authority.token(BEARER)));
    assert_problem(&gw.get("/admin/x", &[]), 401, "authentication_required");
    assert_problem(
        &gw.get_with_token("/admin/x", &stack.authority.token(READONLY)),
        403,
        "insufficient_scope",
    );

    for (route, decision, status, expected) in [
        ("echo-items-read", "allow", "200", 2.0),
        ("echo-admin", "deny", "401", 1.0),
        ("echo-admin", "deny", "403", 1.0),
    ] {
        let labels = [("route", route), ("decision", decision), ("status", status)];
        let seen = gw.wait_for_metric("stella_gateway_requests_total", &labels, expected);
        assert_eq!(seen, expected, "{labels:?}");
    }
    let metrics = gw.metrics();
    assert_eq!(
        metrics.value(
            "stella_gateway_requests_total",
            &[("route", "echo-admin"), ("decision", "allow")]
        ),
        None
    );
    assert_eq!(
        metrics.value(
            "stella_gateway_request_duration_seconds_count",
            &[("route", "echo-items-read")]
        ),
        Some(2.0)
    );
    assert_eq!(metrics.get("stella_gateway_ready"), 1.0);
}

#[test]
fn admin_listener_reports_health_readiness_and_the_active_config() {
    let stack = Stack::start("admin");
    let gw = &stack.gateway;
    let health = gw.admin_get("/healthz");
    assert_eq!(health.status, 200);

    let ready = gw.admin_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["ready"], true);

    let config = gw.admin_get("/config");
    assert_eq!(config.status, 200);
    let body = config.json();
    assert_eq!(body["gateway_id"], GATEWAY_ID);
    assert_eq!(body["envelope"]["kid"], ENVELOPE_KID);
    assert_eq!(body["envelope"]["alg"], "HS256");
    assert_eq!(body["authority"]["issuer"], json!(stack.authority.issuer));
    let mut published: Vec<String> = stack.authority.jwks()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    published.sort();
    assert_eq!(body["authority"]["key_ids"], json!(published));
    assert_eq!(body["on_missing_authorization"], "RequireAuthenticated");
    // The envelope key is a secret: never shown.
    let secret = ENVELOPE_KEY.trim_start_matches("hs256:");
    assert!(!config.text().contains(secret), "{}", config.text());
    assert!(!gw.admin_get("/metrics").text().contains(secret));
}

#[test]
fn w3c_trace_context_is_continued_to_the_service() {
    let stack = Stack::start("trace");
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = stack.gateway.get(
        "/public/x",
        &[
            ("traceparent", incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    );
    let body = assert_reached_via_envelope(&r);
    let sent = received_values(&body, "traceparent");
    assert_eq!(sent.len(), 1, "{body}");
    let parts: Vec<&str> = sent[0].split('-').collect();
    assert_eq!(parts.len(), 4, "{}", sent[0]);
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736", "same trace");
    assert_ne!(parts[2], "00f067aa0ba902b7", "a new span");
    assert_eq!(
        received_values(&body, "tracestate"),
        vec!["congo=t61rcWkgMzE"]
    );

    // Without one (or with garbage) the gateway starts a trace.
    let r = stack
        .gateway
        .get("/public/x", &[("traceparent", "garbage")]);
    let body = assert_reached_via_envelope(&r);
    let sent = received_values(&body, "traceparent");
    assert_eq!(sent.len(), 1, "{body}");
    assert_ne!(sent[0], "garbage");
    assert_eq!(sent[0].split('-').count(), 4, "{}", sent[0]);
}
