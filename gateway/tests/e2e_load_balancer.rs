//! Behind a load balancer (docs/design.md §3.10): HAProxy in front of the
//! gateway, passing the client with the PROXY protocol (`send-proxy-v2`,
//! `send-proxy`) or with `option forwardfor`. The client's address is
//! what the service gets in `X-Forwarded-For` and what the decision line
//! says in `client`; forwarding headers from anyone but a trusted proxy are
//! replaced; a `proxy_protocol` listener closes connections without a valid
//! PROXY header; a PROXY header sent to a listener without it is a 400.
//!
//! Every process is on loopback: clients connect from `127.0.0.5` (curl
//! `--interface`) or `127.0.0.1`, HAProxy connects to the gateway from
//! `127.0.0.3`, the one trusted proxy.

mod common;

use common::*;
use serde_json::{json, Value};
use stella_test_support::{curl_from, send_raw, ClientPassing, LoadBalancer};

const CLIENT: &str = "127.0.0.5";
const BALANCER: &str = "127.0.0.3";

/// The gateway with these keys added to `gateway.listeners`.
fn stack(label: &str, listeners: Value) -> Stack {
    Stack::start_with(label, |mut setup| {
        for (k, v) in listeners.as_object().expect("keys") {
            setup = setup.listener(k, v.clone());
        }
        setup
    })
}

/// What the echo service received, from a response it answered.
fn echoed(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[track_caller]
fn ok(curl: &Curl) -> &Response {
    curl.response
        .as_ref()
        .unwrap_or_else(|| panic!("no response: {curl:?}"))
}

#[test]
fn send_proxy_v2_gives_the_gateway_the_client_and_a_spoofed_header_is_replaced() {
    let s = stack("lb-proxy-v2", json!({"http_proxy_protocol": true}));
    let lb = LoadBalancer::start(&s.dir, s.gateway.http, ClientPassing::ProxyV2, BALANCER);
    let url = format!("http://{}/public/hello", lb.addr);
    let curl = curl_from(
        CLIENT,
        &url,
        None,
        &[("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=7.7.7.7")],
    );
    let r = ok(&curl);
    let body = echoed(r);
    assert_eq!(received_values(&body, "x-forwarded-for"), vec![CLIENT]);
    assert!(received_values(&body, "forwarded").is_empty(), "{body}");
    assert_eq!(received_values(&body, "x-forwarded-proto"), vec!["http"]);
    let line = s.gateway.decision_for(r);
    assert_eq!(line["client"], CLIENT, "{line}");
    assert_eq!(line["reason"], "anonymous", "{line}");
}

#[test]
fn send_proxy_v1_works_too_and_a_connection_without_a_header_is_closed() {
    // A short head deadline: the cut header below waits for it.
    let s = Stack::start_with("lb-proxy-v1", |setup| {
        setup
            .listener("http_proxy_protocol", json!(true))
            .gateway("limits", json!({"request_head_timeout_ms": 1000}))
    });
    let lb = LoadBalancer::start(&s.dir, s.gateway.http, ClientPassing::ProxyV1, BALANCER);
    let curl = curl_from(CLIENT, &format!("http://{}/public/v1", lb.addr), None, &[]);
    let r = ok(&curl);
    assert_eq!(received_values(&echoed(r), "x-forwarded-for"), vec![CLIENT]);
    assert_eq!(s.gateway.decision_for(r)["client"], CLIENT);

    let calls = s.echo.requests();
    let closed = |m: &Gateway| {
        m.metrics()
            .value(
                "stella_gateway_connections_closed_total",
                &[("listener", "http"), ("reason", "proxy_protocol")],
            )
            .unwrap_or(0.0)
    };
    // The gateway's own readiness probe connected without a header too.
    let before = closed(&s.gateway);
    // Straight to the listener, no PROXY header: closed, no answer.
    let answer = send_raw(
        s.gateway.http,
        b"GET /public/direct HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // A malformed v1 line: closed.
    let answer = send_raw(
        s.gateway.http,
        b"PROXY TCP4 not-an-address 127.0.0.1 1 2\r\nGET /public/x HTTP/1.1\r\nHost: gw\r\n\r\n",
    );
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    // A v2 header cut short: closed.
    let mut cut = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    cut.extend_from_slice(&[198, 51, 100]);
    assert!(send_raw(s.gateway.http, &cut).is_empty());
    assert_eq!(
        s.echo.requests(),
        calls,
        "no refused connection reached the service"
    );
    let after = s.gateway.wait_for_metric(
        "stella_gateway_connections_closed_total",
        &[("listener", "http"), ("reason", "proxy_protocol")],
        before + 3.0,
    );
    assert_eq!(after, before + 3.0);

    // Hand-written headers from the test client: v1 with a client, and a
    // v2 LOCAL (a balancer's health check), which keeps the socket's peer.
    let answer = send_raw(
        s.gateway.http,
        b"PROXY TCP4 198.51.100.7 127.0.0.1 5555 80\r\nGET /public/v1 HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    let r = parse_response(&answer);
    assert_eq!(
        received_values(&echoed(&r), "x-forwarded-for"),
        vec!["198.51.100.7"]
    );
    assert_eq!(s.gateway.decision_for(&r)["client"], "198.51.100.7");
    let mut local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
    local.extend_from_slice(b"GET /public/local HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n");
    let r = parse_response(&send_raw(s.gateway.http, &local));
    assert_eq!(
        received_values(&echoed(&r), "x-forwarded-for"),
        vec!["127.0.0.1"]
    );
}

#[test]
fn option_forwardfor_from_a_trusted_proxy_names_the_client_and_a_direct_spoofer_is_replaced() {
    let s = stack(
        "lb-forwardfor",
        json!({"http_trusted_proxies": [format!("{BALANCER}/32"), "2001:db8::/32"]}),
    );
    let lb = LoadBalancer::start(&s.dir, s.gateway.http, ClientPassing::ForwardFor, BALANCER);
    // Through HAProxy, with a made-up address in front: HAProxy adds the
    // real one after it, and the walk from the right stops there.
    let curl = curl_from(
        CLIENT,
        &format!("http://{}/public/lb", lb.addr),
        None,
        &[("X-Forwarded-For", "6.6.6.6")],
    );
    let r = ok(&curl);
    assert_eq!(received_values(&echoed(r), "x-forwarded-for"), vec![CLIENT]);
    assert_eq!(s.gateway.decision_for(r)["client"], CLIENT);

    // Straight to the gateway from an untrusted address: its forwarding
    // headers are replaced with what the gateway saw.
    let direct = format!("http://{}/public/direct", s.gateway.http);
    let curl = curl_from(
        "127.0.0.1",
        &direct,
        None,
        &[
            ("X-Forwarded-For", "6.6.6.6"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "for=7.7.7.7;proto=https"),
        ],
    );
    let r = ok(&curl);
    let body = echoed(r);
    assert_eq!(received_values(&body, "x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(received_values(&body, "x-forwarded-proto"), vec!["http"]);
    assert!(received_values(&body, "forwarded").is_empty(), "{body}");
    assert_eq!(s.gateway.decision_for(r)["client"], "127.0.0.1");

    // From the trusted address, RFC 7239 `Forwarded` is believed (and
    // preferred to X-Forwarded-For), scheme included.
    let curl = curl_from(
        BALANCER,
        &direct,
        None,
        &[
            (
                "Forwarded",
                "for=198.51.100.9;proto=https, for=\"[2001:db8::1]\"",
            ),
            ("X-Forwarded-For", "5.5.5.5"),
        ],
    );
    let r = ok(&curl);
    let body = echoed(r);
    assert_eq!(
        received_values(&body, "x-forwarded-for"),
        vec!["198.51.100.9"]
    );
    assert_eq!(received_values(&body, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(s.gateway.decision_for(r)["client"], "198.51.100.9");
}

#[test]
fn a_proxy_header_sent_to_a_listener_without_proxy_protocol_is_a_bad_request() {
    let s = Stack::start("lb-no-proxy-protocol");
    let calls = s.echo.requests();
    let answer = send_raw(
        s.gateway.http,
        b"PROXY TCP4 6.6.6.6 127.0.0.1 5555 80\r\nGET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    );
    let r = parse_response(&answer);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid_request");
    assert_eq!(s.echo.requests(), calls, "the service was not called");
}

#[test]
fn the_tls_listener_reads_the_proxy_header_before_the_client_hello() {
    let dir = TempDir::new("lb-tls-pki");
    let pki = Pki::generate(&dir);
    let s = Stack::start_with("lb-tls", |setup| {
        setup
            .tls(TlsSetup {
                cert_file: pki.server_cert.clone(),
                key_file: pki.server_key.clone(),
                client_certificates: "none",
                client_ca_file: None,
            })
            .tls_listener("proxy_protocol", json!(true))
    });
    let tls = s.gateway.tls.expect("tls listener");
    let lb = LoadBalancer::start(&s.dir, tls, ClientPassing::ProxyV2, BALANCER);
    let curl = curl_from(
        CLIENT,
        &format!("https://{}/public/tls", lb.addr),
        Some(&pki.ca),
        &[("X-Forwarded-For", "6.6.6.6")],
    );
    let r = ok(&curl);
    let body = echoed(r);
    assert_eq!(received_values(&body, "x-forwarded-for"), vec![CLIENT]);
    assert_eq!(received_values(&body, "x-forwarded-proto"), vec!["https"]);
    assert_eq!(s.gateway.decision_for(r)["client"], CLIENT);

    // TLS straight to the listener, without the header: no handshake.
    let direct = curl_from(
        "127.0.0.1",
        &format!("https://{tls}/public/tls"),
        Some(&pki.ca),
        &[],
    );
    assert!(direct.response.is_none(), "{direct:?}");
    let closed = s.gateway.wait_for_metric(
        "stella_gateway_connections_closed_total",
        &[("listener", "tls"), ("reason", "proxy_protocol")],
        1.0,
    );
    assert!(closed >= 1.0, "{closed}");
}
