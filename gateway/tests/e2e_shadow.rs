//! Shadow policies: evaluated beside the enforced policy on every request
//! of their route, counted and (when they decide otherwise) logged, never
//! enforced.

mod common;

use common::*;

const SHADOW_ROUTE: &str = "  - id: echo-reports\n    path: /reports/**\n    policy:\n      scopes_any: [echo.read]\n    shadow:\n      scopes_all: [admin]\n";

#[test]
fn a_shadow_policy_is_counted_and_logged_but_never_enforced() {
    let policies = TempDir::new("shadow-policies");
    let dir = policies_with_echo_routes(&policies, SHADOW_ROUTE);
    let s = Stack::start_with("shadow", |setup| setup.policies(&dir));
    let gw = &s.gateway;
    let shadow = |enforced: &str, shadow: &str| {
        gw.metrics()
            .value(
                "stella_gateway_shadow_decisions_total",
                &[
                    ("route", "echo-reports"),
                    ("enforced", enforced),
                    ("shadow", shadow),
                ],
            )
            .unwrap_or(0.0)
    };

    // The shadow policy would deny the read-only caller: the request still
    // reaches the service, and the difference is counted and logged.
    let upstream = s.echo.requests();
    let r = gw.get_with_token("/reports/1", &s.authority.token(READONLY));
    assert_reached_via_envelope(&r);
    assert_eq!(s.echo.requests(), upstream + 1);
    assert_eq!(shadow("allow", "deny"), 1.0);
    let request_id = r.header("x-request-id").unwrap_or_default().to_owned();
    let logged = gw.wait_for_log(|line| {
        line["message"] == "shadow policy decides otherwise"
            && line["request_id"] == request_id.as_str()
            && line["shadow_reason"] == "insufficient_scope"
    });
    assert!(logged, "no shadow log line for {request_id}");

    // Both agree for a caller with admin.
    assert_reached_via_envelope(&gw.get_with_token("/reports/2", &s.authority.token(BEARER)));
    assert_eq!(shadow("allow", "allow"), 1.0);

    // Routes without a shadow policy count nothing.
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &s.authority.token(BEARER)));
    let total = gw
        .metrics()
        .value("stella_gateway_shadow_decisions_total", &[])
        .unwrap_or(0.0);
    assert_eq!(total, 2.0);
}
