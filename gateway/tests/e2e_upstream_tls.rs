//! HTTPS and mutual-TLS upstreams (`services[].tls`, docs/design.md §3.2,
//! §3.8): the sample service behind a real TLS terminator (HAProxy, with
//! certificates made by openssl), reached only through a verified
//! handshake. A certificate from another CA or for another name, or a
//! service that wants a client certificate the gateway does not have, is a
//! prompt 502 `upstream_unavailable` whose decision line and metric say
//! `tls`, and the service never sees the request; a handshake nobody
//! answers ends at the connect timeout. A CA file fixed in place is picked
//! up by the reload its change triggers; health checks and retries speak
//! TLS too.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

/// The Authority, the sample service behind a TLS terminator with the
/// PKI's server certificate (127.0.0.1 and localhost), and a gateway whose
/// `echo` service has the `tls` section `tls` (file paths filled in by the
/// caller) and the upstreams `upstreams` (the terminator when empty).
struct TlsStack {
    gateway: Gateway,
    terminator: TlsTerminator,
    echo: Echo,
    _authority: Authority,
    pki: Pki,
    dir: TempDir,
}

fn start(
    label: &str,
    require_client_certificate: bool,
    tls: impl FnOnce(&Pki, &TempDir) -> Value,
    configure: impl FnOnce(GatewaySetup, &TlsTerminator, &Echo) -> GatewaySetup,
) -> TlsStack {
    let dir = TempDir::new(label);
    let pki = Pki::generate(&dir);
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start();
        (authority, echo.join().expect("echo started"))
    });
    let terminator = TlsTerminator::start(
        &dir,
        echo.addr(),
        &pki.server_cert,
        &pki.server_key,
        require_client_certificate.then_some(pki.ca.as_path()),
    );
    let setup = GatewaySetup::new(&authority.issuer)
        .service("echo", terminator.addr)
        .service_setting("echo", "tls", tls(&pki, &dir));
    let gateway = configure(setup, &terminator, &echo).start(&dir);
    TlsStack {
        gateway,
        terminator,
        echo,
        _authority: authority,
        pki,
        dir,
    }
}

fn path(p: &Path) -> Value {
    json!(p.display().to_string())
}

/// The value of the header the terminator added for the service, as the
/// service received it ("" when empty or absent).
fn seen(body: &Value, name: &str) -> String {
    received_values(body, name).pop().unwrap_or_default()
}

fn tls_errors(gw: &Gateway) -> f64 {
    gw.metrics()
        .value(
            "stella_gateway_upstream_errors_total",
            &[("service", "echo"), ("kind", "tls")],
        )
        .unwrap_or(0.0)
}

/// A refused handshake: 502 `upstream_unavailable`, answered at once, with
/// `upstream_error: tls` in its decision line, counted, and the service
/// not reached. Returns the operator's log line about it.
#[track_caller]
fn assert_refused_for_tls(stack: &TlsStack, expected_errors: f64) -> Value {
    let gw = &stack.gateway;
    let before = stack.echo.requests();
    let started = Instant::now();
    let r = gw.get("/public/x", &[]);
    let took = started.elapsed();
    assert_problem(&r, 502, "upstream_unavailable");
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    let line = gw.decision_for(&r);
    assert_eq!(line["reason"], "upstream_unavailable", "{line}");
    assert_eq!(line["upstream_error"], "tls", "{line}");
    assert_eq!(
        gw.wait_for_metric(
            "stella_gateway_upstream_errors_total",
            &[("service", "echo"), ("kind", "tls")],
            expected_errors
        ),
        expected_errors
    );
    assert_eq!(stack.echo.requests(), before, "the service was reached");
    let request_id = r.header("x-request-id").unwrap().to_owned();
    gw.wait_for_log(|l| {
        l["message"] == "tls with the upstream failed" && l["request_id"] == request_id.as_str()
    });
    gw.log_lines()
        .into_iter()
        .find(|l| {
            l["message"] == "tls with the upstream failed" && l["request_id"] == request_id.as_str()
        })
        .unwrap_or_else(|| panic!("no tls warning for {request_id}"))
}

#[test]
fn a_service_is_reached_through_a_verified_handshake_with_its_server_name() {
    let stack = start(
        "upstream-tls-verified",
        false,
        |pki, _| json!({"ca_file": path(&pki.ca), "server_name": "localhost"}),
        |s, _, _| s,
    );
    let gw = &stack.gateway;
    for _ in 0..3 {
        let body = assert_reached_via_envelope(&gw.get("/public/x", &[]));
        assert_eq!(seen(&body, "x-upstream-tls-sni"), "localhost", "{body}");
        assert_ne!(seen(&body, "x-upstream-tls-alpn"), "h2", "{body}");
    }
    assert_eq!(stack.echo.requests(), 3);
    assert_eq!(tls_errors(gw), 0.0);
}

/// `stella-gateway check --config FILE`: exit code and everything printed.
fn check(config: &Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(gateway_binary())
        .env_clear()
        .arg("check")
        .arg("--config")
        .arg(config)
        .output()
        .expect("run stella-gateway check");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

#[test]
fn a_service_certificate_from_another_ca_is_a_prompt_502_of_kind_tls() {
    let stack = start(
        "upstream-tls-wrong-ca",
        false,
        |pki, _| json!({"ca_file": path(&pki.other_ca), "server_name": "localhost"}),
        |s, _, _| s,
    );
    let warning = assert_refused_for_tls(&stack, 1.0);
    let error = warning["error"].as_str().unwrap_or_default();
    assert!(error.contains("UnknownIssuer"), "{warning}");
    assert_refused_for_tls(&stack, 2.0);
}

#[test]
fn a_service_certificate_for_another_name_is_a_prompt_502_of_kind_tls() {
    let stack = start(
        "upstream-tls-wrong-name",
        false,
        |pki, _| json!({"ca_file": path(&pki.ca), "server_name": "orders.internal"}),
        |s, _, _| s,
    );
    let warning = assert_refused_for_tls(&stack, 1.0);
    let error = warning["error"].as_str().unwrap_or_default();
    assert!(error.contains("orders.internal"), "{warning}");
}

#[test]
fn a_service_that_requires_a_client_certificate_accepts_the_gateways_and_refuses_none() {
    let stack = start(
        "upstream-tls-mtls",
        true,
        |pki, _| json!({"ca_file": path(&pki.ca)}),
        |s, _, _| s.gateway("watch_config", json!(false)),
    );
    // Without a certificate of its own, the gateway is turned away.
    assert_refused_for_tls(&stack, 1.0);

    let (cert, key) = (&stack.pki.client_cert, &stack.pki.client_key);
    stack.gateway.edit_config(|c| {
        c["services"][0]["tls"]["client_certificate"] = path(cert);
        c["services"][0]["tls"]["client_key"] = path(key);
    });
    assert_eq!(stack.gateway.reload().json()["result"], "applied");
    let body = assert_reached_via_envelope(&stack.gateway.get("/public/x", &[]));
    assert_eq!(seen(&body, "x-upstream-tls-client-cn"), "client", "{body}");
    // No SNI for an address: the certificate's IP SAN is what is verified.
    assert_eq!(seen(&body, "x-upstream-tls-sni"), "", "{body}");

    // The key's content is a secret: not in `check`'s output (which shows
    // the section with its defaults), not on /config, not in the log.
    let key_pem = std::fs::read_to_string(key).unwrap();
    let key_line = key_pem.lines().nth(1).unwrap();
    let (code, printed) = check(&stack.gateway.config);
    assert_eq!(code, Some(0), "{printed}");
    assert!(
        printed.contains("client_key:") && printed.contains("http2: false"),
        "{printed}"
    );
    assert!(!printed.contains(key_line), "{printed}");
    // A key that is not the certificate's is refused by `check` and by a
    // reload, which changes nothing.
    let server_key = stack.pki.server_key.clone();
    stack
        .gateway
        .edit_config(|c| c["services"][0]["tls"]["client_key"] = path(&server_key));
    let (code, printed) = check(&stack.gateway.config);
    assert_eq!(code, Some(2), "{printed}");
    assert!(
        printed.contains(
            "services[0].tls.client_key: does not match the certificate in client_certificate"
        ),
        "{printed}"
    );
    assert_eq!(stack.gateway.reload().json()["result"], "rejected");
    assert_reached_via_envelope(&stack.gateway.get("/public/x", &[]));
    assert!(!stack.gateway.admin_get("/config").text().contains(key_line));
    assert!(!stack
        .gateway
        .process
        .stderr_lines()
        .iter()
        .any(|l| l.contains(key_line)));
}

#[test]
fn a_ca_file_fixed_in_place_is_picked_up_by_the_reload_its_change_triggers() {
    let stack = start(
        "upstream-tls-ca-reload",
        false,
        |pki, dir| {
            // Starts out trusting the wrong CA.
            let roots = dir.join("upstream-roots.pem");
            std::fs::copy(&pki.other_ca, &roots).unwrap();
            json!({"ca_file": path(&roots), "server_name": "localhost"})
        },
        |s, _, _| s,
    );
    let gw = &stack.gateway;
    let pid = gw.process.pid();
    let version = gw.active_config()["config_version"].clone();
    assert_refused_for_tls(&stack, 1.0);

    // Fixed in place, replaced by rename as editors and volume mounts do.
    let roots = stack.dir.join("upstream-roots.pem");
    let tmp = stack.dir.join("upstream-roots.tmp");
    std::fs::copy(&stack.pki.ca, &tmp).unwrap();
    std::fs::rename(&tmp, &roots).unwrap();
    let mut last = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = gw.get("/public/x", &[]).status;
            last == 200
        }),
        "still {last} after the CA file was fixed"
    );
    assert_eq!(gw.process.pid(), pid);
    assert_ne!(gw.active_config()["config_version"], version);
    assert_eq!(
        gw.metrics().value(
            "stella_gateway_config_reloads_total",
            &[("result", "applied")]
        ),
        Some(1.0)
    );
    assert_eq!(stack.echo.requests(), 1);
}

/// `available` of the `echo` service on `/config`.
fn available(gw: &Gateway) -> u64 {
    let config = gw.admin_get("/config").json();
    config["services"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "echo"))
        .and_then(|s| s["available"].as_u64())
        .unwrap_or(u64::MAX)
}

#[test]
fn health_checks_speak_tls_and_follow_the_service_down_and_up() {
    let mut stack = start(
        "upstream-tls-health",
        false,
        |pki, _| json!({"ca_file": path(&pki.ca), "server_name": "localhost"}),
        |s, terminator, echo| {
            // The sample service itself, in plain HTTP, beside its TLS
            // terminator: a plain check would find both healthy.
            s.upstreams(
                "echo",
                &[&echo.addr().to_string(), &terminator.addr.to_string()],
            )
            .service_setting(
                "echo",
                "health_check",
                json!({"path": "/__echo/health", "interval_ms": 200, "timeout_ms": 1000}),
            )
        },
    );
    let gw = &stack.gateway;
    assert!(wait_until(Duration::from_secs(10), || available(gw) == 1));
    for _ in 0..4 {
        let body = assert_reached_via_envelope(&gw.get("/public/x", &[]));
        assert_eq!(seen(&body, "x-upstream-tls-sni"), "localhost", "{body}");
    }
    assert_eq!(
        gw.metrics().value(
            "stella_gateway_upstream_retries_total",
            &[("service", "echo")]
        ),
        None,
        "the plain address was never tried"
    );

    stack.terminator.kill();
    assert!(wait_until(Duration::from_secs(10), || available(
        &stack.gateway
    ) == 0));
    stack.terminator.restart();
    assert!(wait_until(Duration::from_secs(10), || available(
        &stack.gateway
    ) == 1));
    assert_reached_via_envelope(&stack.gateway.get("/public/x", &[]));
}

#[test]
fn a_failed_address_is_retried_on_another_over_http2() {
    let stack = start(
        "upstream-tls-h2-retry",
        false,
        // No server_name: each address is verified against the IP SAN.
        |pki, _| json!({"ca_file": path(&pki.ca), "http2": true}),
        |s, terminator, _| {
            let dead = format!("127.0.0.1:{}", free_port());
            s.upstreams("echo", &[&dead, &terminator.addr.to_string()])
        },
    );
    let gw = &stack.gateway;
    for _ in 0..4 {
        let body = assert_reached_via_envelope(&gw.get("/public/x", &[]));
        assert_eq!(seen(&body, "x-upstream-tls-alpn"), "h2", "{body}");
    }
    let retries = gw.wait_for_metric(
        "stella_gateway_upstream_retries_total",
        &[("service", "echo")],
        1.0,
    );
    assert!(retries >= 1.0, "{retries}");
    assert_eq!(tls_errors(gw), 0.0);
}

#[test]
fn a_handshake_the_service_never_answers_ends_at_the_connect_timeout() {
    // Accepts connections (the kernel completes them) and never says a
    // word: the ClientHello goes unanswered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let stack = Stack::start_with("upstream-tls-silent", |s| {
        s.service("echo", addr)
            .service_setting("echo", "tls", json!({}))
            .service_setting("echo", "connect_timeout_ms", json!(500))
    });
    let gw = &stack.gateway;
    let started = Instant::now();
    let r = gw.get("/public/x", &[]);
    let took = started.elapsed();
    assert_problem(&r, 504, "gateway_timeout");
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    assert_eq!(gw.decision_for(&r)["upstream_error"], "timeout");
    assert_eq!(stack.echo.requests(), 0);
    drop(silent);
}
