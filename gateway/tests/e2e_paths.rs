//! Path normalization end to end: the route is chosen on the normalized
//! path, and that same path is what the service receives. Dot segments
//! (plain or percent-encoded) cannot carry a request from the anonymous
//! `/public/**` route to `/admin/**`; encoded slashes are refused outright.

mod common;

use common::*;
use stella_test_support::{parse_response, send_raw};

const TRAVERSALS: [&str; 5] = [
    "/public/../admin/x",
    "/public/%2e%2e/admin/x",
    "/public/%2E%2E/admin/x",
    "/public/./../admin/x",
    "/public/.%2e/admin/x",
];

#[test]
fn dot_segments_cannot_carry_a_request_from_the_public_route_to_admin() {
    let stack = Stack::start("traversal");
    stack.authority.prefetch(&[BEARER, READONLY]);
    let gw = &stack.gateway;

    for path in TRAVERSALS {
        // Decided as /admin/x: no token, no entry.
        let r = gw.get(path, &[]);
        assert_problem(&r, 401, "authentication_required");
        // A token without the admin scope: still the admin policy.
        let r = gw.get_with_token(path, &stack.authority.token(READONLY));
        assert_problem(&r, 403, "insufficient_scope");
    }
    assert_eq!(stack.echo.requests(), 0, "a traversal reached the service");

    for path in TRAVERSALS {
        let r = gw.get_with_token(path, &stack.authority.token(BEARER));
        let body = assert_reached_via_envelope(&r);
        assert_eq!(body["path"], "/admin/x", "{path}");
    }
    assert_eq!(stack.echo.requests(), TRAVERSALS.len() as u64);
}

#[test]
fn encoded_slashes_in_the_path_are_a_bad_request() {
    let stack = Stack::start("encoded-slash");
    let token = stack.authority.token(BEARER);
    for path in [
        "/public%2F..%2Fadmin",
        "/public%2f..%2fadmin/x",
        "/public/..%2Fadmin/x",
        "/public/%2e%2e%2fadmin/x",
        "/admin%2Fx",
    ] {
        assert_problem(&stack.gateway.get(path, &[]), 400, "invalid_request");
        // A valid admin token does not make such a path acceptable.
        assert_problem(
            &stack.gateway.get_with_token(path, &token),
            400,
            "invalid_request",
        );
    }
    assert_eq!(stack.echo.requests(), 0);
}

/// Requests Pingora's parser refuses, and heads it accepts but a gateway
/// must not forward, get the gateway's problem+json 400 with a request id
/// (and, for the ones the gateway refuses itself, the specific reason in
/// the decision log); none reaches the service.
#[test]
fn requests_refused_before_routing_still_get_a_problem_json_400() {
    let stack = Stack::start("parser-400");
    let cases: [(&[u8], &str); 7] = [
        (
            b"GET /public/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n",
            // Pingora's parser refuses it first; `request_shape` would too.
            "",
        ),
        (
            b"GET http://evil.example/public/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            // Also refused by Pingora's parser first.
            "",
        ),
        (
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            "ambiguous_framing",
        ),
        (
            b"POST /public/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\ncontent-length: 4\r\nConnection: close\r\n\r\n0\r\n\r\n",
            "ambiguous_framing",
        ),
        // Refused by Pingora's own parser: a space in a header name, a
        // request line with no version, a header line with no colon.
        (
            b"GET /public/x HTTP/1.1\r\nHost: a\r\nBad Name: x\r\nConnection: close\r\n\r\n",
            "",
        ),
        (b"GET /public/x\r\nHost: a\r\n\r\n", ""),
        (
            b"GET /public/x HTTP/1.1\r\nHost: a\r\nno-colon-here\r\nConnection: close\r\n\r\n",
            "",
        ),
    ];
    for (raw, reason) in cases {
        let bytes = send_raw(stack.gateway.http, raw);
        let r = parse_response(&bytes);
        let shown = String::from_utf8_lossy(raw);
        assert_problem(&r, 400, "invalid_request");
        assert!(
            r.header("server").is_none_or(|s| !s.contains("Pingora")),
            "{shown}: {r:?}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("problem json");
        assert!(
            body["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{shown}: {body}"
        );
        if !reason.is_empty() {
            assert_eq!(stack.gateway.reason_for(&r), reason, "{shown}");
        }
    }
    assert_eq!(stack.echo.requests(), 0);
}

/// `CONNECT`, which Pingora refuses before any route is known, gets the
/// gateway's 405 problem, not Pingora's bare page.
#[test]
fn connect_is_refused_with_a_problem_json_405() {
    let stack = Stack::start("connect-405");
    let raw = b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n";
    let r = parse_response(&send_raw(stack.gateway.http, raw));
    assert_problem(&r, 405, "method_not_allowed");
    assert_eq!(stack.echo.requests(), 0);
}
