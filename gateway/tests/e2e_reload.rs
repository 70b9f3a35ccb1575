//! Runtime state, end to end: every reload trigger applies a change; a bad
//! configuration through each trigger leaves the old one serving; a request
//! in flight survives a reload that removes its route; TLS certificates
//! rotate for new handshakes while an old connection keeps working;
//! upstreams by name (and names that never resolve); a replica restart with
//! several upstreams; SIGHUP with nothing changed; SIGTERM drains.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Policies with the shipped routes plus `extra` appended to echo.yaml.
fn stack_with_policies(label: &str, extra: &str, watch: bool) -> (Stack, std::path::PathBuf) {
    let dir = TempDir::new(label);
    let policies = policies_with_echo_routes(&dir, extra);
    let p = policies.clone();
    let stack = Stack::start_with(label, move |setup| {
        setup.policies(&p).gateway("watch_config", json!(watch))
    });
    // Keep the policies folder alive with the stack.
    std::mem::forget(dir);
    (stack, policies)
}

const EXTRA_ROUTE: &str = "
  - id: echo-extra
    path: /extra/**
    policy:
      anonymous: true
";

fn add_route(policies: &std::path::Path) {
    let file = policies.join("echo.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(EXTRA_ROUTE);
    std::fs::write(&file, text).unwrap();
}

fn reloads(gateway: &Gateway, result: &str) -> f64 {
    gateway
        .metrics()
        .value("stella_gateway_config_reloads_total", &[("result", result)])
        .unwrap_or(0.0)
}

fn wait_status(gateway: &Gateway, path: &str, status: u16) -> u16 {
    let mut last = 0;
    wait_until(Duration::from_secs(5), || {
        last = gateway.get(path, &[]).status;
        last == status
    });
    last
}

#[test]
fn sighup_applies_a_changed_policy_and_the_process_stays_alive() {
    let (mut stack, policies) = stack_with_policies("reload-hup", "", false);
    let gw = &stack.gateway;
    assert_eq!(gw.get("/extra/x", &[]).status, 404);
    let before = gw.active_config();
    add_route(&policies);
    // File watching is off in this test: only the signal can apply it.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        gw.get("/extra/x", &[]).status,
        404,
        "applied without a trigger"
    );
    gw.process.signal("HUP");
    assert_eq!(wait_status(gw, "/extra/x", 200), 200);
    let after = gw.active_config();
    assert_ne!(after["config_version"], before["config_version"]);
    assert_eq!(after["applied_by"], "sighup");
    assert_eq!(
        after["generation"],
        before["generation"].as_u64().unwrap() + 1
    );
    assert!(
        stack.gateway.process.try_exit_code().is_none(),
        "SIGHUP ended the gateway"
    );
    assert_eq!(reloads(&stack.gateway, "applied"), 1.0);
}

#[test]
fn a_change_to_a_policy_file_is_applied_without_any_signal() {
    let (stack, policies) = stack_with_policies("reload-watch", "", true);
    let gw = &stack.gateway;
    assert_eq!(gw.get("/extra/x", &[]).status, 404);
    // A busy file beside the configuration (a log, say) must not keep the
    // watcher from settling.
    let busy = gw.config.with_file_name("busy.log");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0u64;
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let _ = std::fs::write(&busy, n.to_string());
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    add_route(&policies);
    assert_eq!(wait_status(gw, "/extra/x", 200), 200);
    assert_eq!(gw.active_config()["applied_by"], "file_change");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    // And a change to the configuration file itself (replaced by rename).
    gw.edit_config(|c| c["router"]["on_missing_authorization"] = json!("AllowAnonymous"));
    assert_eq!(wait_status(gw, "/nopolicy/x", 200), 200);
}

#[test]
fn post_reload_and_the_reload_command_apply_a_change() {
    let (stack, policies) = stack_with_policies("reload-admin", "", false);
    let gw = &stack.gateway;
    add_route(&policies);
    let r = gw.reload();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "applied");
    assert_eq!(
        gw.get("/extra/x", &[]).status,
        200,
        "applied before the answer"
    );
    assert_eq!(gw.active_config()["applied_by"], "admin");

    // Nothing changed since: unchanged, same version.
    let again = gw.reload().json();
    assert_eq!(again["result"], "unchanged");
    assert_eq!(again["config_version"], r.json()["config_version"]);

    gw.edit_config(|c| c["router"]["on_missing_authorization"] = json!("Deny"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
        .args(["reload", "--admin", &format!("http://{}", gw.admin)])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("applied"));
    let token = stack.authority.token(BEARER);
    assert_eq!(gw.get_with_token("/nopolicy/x", &token).status, 403);
}

/// Breaks the configuration file, fires `trigger`, and checks the old
/// configuration still serves and `/config` names the problem.
fn bad_reload_keeps_the_old_configuration(trigger: &str) {
    let (mut stack, _) =
        stack_with_policies(&format!("reload-bad-{trigger}"), "", trigger == "file");
    let token = stack.authority.token(BEARER);
    let version = stack.gateway.active_config()["config_version"].clone();
    stack.gateway.edit_config(|c| {
        c["router"]["on_missing_authorization"] = json!("Sometimes");
        c["services"][0]["upstreams"] = json!([]);
    });
    match trigger {
        "hup" => stack.gateway.process.signal("HUP"),
        "file" => {}
        "admin" => {
            let r = stack.gateway.reload();
            assert_eq!(r.status, 422, "{}", r.text());
            let body = r.json();
            assert_eq!(body["result"], "rejected");
            let errors = body["errors"].to_string();
            assert!(
                errors.contains("router.on_missing_authorization"),
                "{errors}"
            );
            assert!(errors.contains("services[0].upstreams"), "{errors}");
        }
        "cli" => {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
                .args([
                    "reload",
                    "--admin",
                    &format!("http://{}", stack.gateway.admin),
                ])
                .output()
                .unwrap();
            assert_eq!(out.status.code(), Some(1));
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("router.on_missing_authorization")
            );
        }
        other => panic!("{other}"),
    }
    let mut seen = Value::Null;
    assert!(
        wait_until(Duration::from_secs(5), || {
            seen = stack.gateway.active_config();
            !seen["last_rejected"].is_null()
        }),
        "no rejection recorded: {seen}"
    );
    let errors = seen["last_rejected"]["errors"].to_string();
    assert!(
        errors.contains("router.on_missing_authorization: must be"),
        "{errors}"
    );
    assert!(
        !errors.contains("Sometimes"),
        "the raw value is echoed: {errors}"
    );
    assert_eq!(
        seen["config_version"], version,
        "the old configuration must stay"
    );
    assert_eq!(reloads(&stack.gateway, "rejected"), 1.0);
    assert_eq!(reloads(&stack.gateway, "applied"), 0.0);
    // Still serving, with the old settings.
    assert_eq!(stack.gateway.get_with_token("/items/1", &token).status, 200);
    assert!(stack.gateway.process.try_exit_code().is_none());
}

#[test]
fn a_bad_configuration_by_sighup_keeps_the_old_one_serving() {
    bad_reload_keeps_the_old_configuration("hup");
}

#[test]
fn a_bad_configuration_by_file_change_keeps_the_old_one_serving() {
    bad_reload_keeps_the_old_configuration("file");
}

#[test]
fn a_bad_configuration_by_post_reload_keeps_the_old_one_serving() {
    bad_reload_keeps_the_old_configuration("admin");
}

#[test]
fn a_bad_configuration_by_the_reload_command_keeps_the_old_one_serving() {
    bad_reload_keeps_the_old_configuration("cli");
}

#[test]
fn a_listener_address_change_is_refused_as_needing_a_restart() {
    let (stack, _) = stack_with_policies("reload-restart-only", "", false);
    stack.gateway.edit_config(|c| {
        c["gateway"]["listeners"]["admin"] = json!(format!("127.0.0.1:{}", free_port()))
    });
    let r = stack.gateway.reload();
    assert_eq!(r.status, 422);
    assert!(r
        .text()
        .contains("gateway.listeners.admin: cannot change while the gateway runs"));
}

#[test]
fn turning_traces_on_by_reload_is_refused_as_needing_a_restart() {
    let (stack, _) = stack_with_policies("reload-traces", "", false);
    stack
        .gateway
        .edit_config(|c| c["traces"] = json!({"enabled": true}));
    let r = stack.gateway.reload();
    assert_eq!(r.status, 422);
    assert!(
        r.text()
            .contains("traces: cannot change while the gateway runs"),
        "{}",
        r.text()
    );
}

/// An upstream that answers every request after `delay`, and says on
/// `arrived` when a request head has been read.
fn slow_upstream(delay: Duration) -> (SocketAddr, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        let _ = tx.send(());
                        std::thread::sleep(delay);
                        let mut s = &stream;
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4\r\n\r\nslow",
                        );
                    }
                    line.clear();
                }
            });
        }
    });
    (addr, rx)
}

const SLOW_ROUTE: &str = "
  - id: slow
    path: /slow/**
    policy:
      anonymous: true
";

#[test]
fn a_slow_request_in_flight_completes_across_a_reload_that_removes_its_route() {
    let (upstream, arrived) = slow_upstream(Duration::from_secs(2));
    let dir = TempDir::new("reload-inflight");
    let policies = policies_with_echo_routes(&dir, "");
    let hybrid = policies.join("echo-hybrid.yaml");
    let original = std::fs::read_to_string(&hybrid).unwrap();
    std::fs::write(&hybrid, format!("{original}{SLOW_ROUTE}")).unwrap();
    let p = policies.clone();
    let stack = Stack::start_with("reload-inflight", move |s| {
        s.policies(&p)
            .service("echo-hybrid", upstream)
            .gateway("watch_config", json!(false))
    });
    let http = stack.gateway.http;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        (request(http, "GET", "/slow/x", &[], b""), started.elapsed())
    });
    arrived
        .recv_timeout(Duration::from_secs(5))
        .expect("request reached the upstream");
    std::fs::write(&hybrid, &original).unwrap();
    let r = stack.gateway.reload();
    assert_eq!(r.json()["result"], "applied", "{}", r.text());
    assert_eq!(
        stack.gateway.get("/slow/y", &[]).status,
        404,
        "route still there"
    );
    let (response, took) = slow.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "slow");
    assert!(took >= Duration::from_secs(2));
}

#[test]
fn sighup_with_an_unchanged_configuration_changes_nothing_and_drops_nothing() {
    let (stack, _) = stack_with_policies("reload-noop", "", true);
    let before = stack.gateway.active_config();
    let http = stack.gateway.http;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let load = std::thread::spawn(move || {
        let mut statuses = Vec::new();
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            statuses.push(request(http, "GET", "/public/x", &[], b"").status);
        }
        statuses
    });
    for _ in 0..5 {
        stack.gateway.process.signal("HUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = load.join().unwrap();
    assert!(statuses.len() > 10, "{}", statuses.len());
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = stack.gateway.active_config();
    assert_eq!(after["config_version"], before["config_version"]);
    assert_eq!(after["generation"], before["generation"]);
    assert_eq!(after["applied_at"], before["applied_at"]);
}

#[test]
fn an_upstream_named_localhost_works_and_a_name_that_never_resolves_answers_502() {
    let echo = Echo::hybrid();
    let port = echo.addr().port();
    let stack = Stack::start_with("reload-dns", move |s| {
        s.upstreams("echo-hybrid", &[&format!("localhost:{port}")])
            .upstreams("echo-legacy", &["no-such-host.invalid:80"])
    });
    let token = stack.authority.token(BEARER);
    let r = stack.gateway.get_with_token("/hybrid/items/1", &token);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = stack.gateway.get_with_token("/legacy/anything", &token);
    assert_problem(&r, 502, "upstream_unavailable");
    assert!(r.header("x-request-id").is_some());
    // Alive, and still serving.
    assert_eq!(stack.gateway.get("/public/x", &[]).status, 200);
    let services = stack.gateway.active_config()["services"].clone();
    let legacy = services
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "echo-legacy")
        .unwrap()
        .clone();
    assert_eq!(legacy["addresses"], json!([]));
}

#[test]
fn restarting_one_of_two_replicas_fails_no_request() {
    let mut replica_a = Echo::gateway_enforced();
    let replica_b = Echo::gateway_enforced();
    let (a, b) = (replica_a.addr(), replica_b.addr());
    let stack = Stack::start_with("reload-replicas", move |s| {
        s.upstreams("echo", &[&a.to_string(), &b.to_string()])
    });
    let token = stack.authority.token(BEARER);
    for _ in 0..4 {
        assert_eq!(stack.gateway.get_with_token("/items/1", &token).status, 200);
    }
    assert!(
        replica_a.requests() > 0 && replica_b.requests() > 0,
        "round robin"
    );
    // Kill one replica outright: connections to it are refused.
    replica_a.kill();
    for i in 0..20 {
        let r = stack.gateway.get_with_token("/items/1", &token);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        // POST is retried too: nothing reached the upstream yet.
        let r = stack.gateway.send(
            "POST",
            "/items/1",
            &[("Authorization", &format!("Bearer {token}"))],
        );
        assert_eq!(r.status, 200, "post {i}: {}", r.text());
    }
    let m = stack.gateway.metrics();
    assert!(
        m.value(
            "stella_gateway_upstream_retries_total",
            &[("service", "echo")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    let config = stack.gateway.active_config();
    let echo = &config["services"][0];
    assert_eq!(echo["available"], 1, "the dead replica is ejected: {echo}");
}

#[test]
fn switching_the_active_envelope_kid_is_a_reload() {
    const NEW_KEY: &str =
        "hs256:c3RlbGxhLWUyZS1zZWNvbmQtZW52ZWxvcGUta2V5LW5vdC1mb3ItcHJvZHVjdGlvbg";
    let echo = Echo::start(
        "echo",
        "GatewayEnforced",
        &[(
            "Router__IdentityEnvelopeAcceptedKeys",
            &format!("e2e-2={NEW_KEY}"),
        )],
    );
    let addr = echo.addr();
    let stack = Stack::start_with("reload-kid", move |s| {
        s.service("echo", addr)
            .router(
                "identity_envelope_keys",
                json!([{"kid": "e2e-2", "key": NEW_KEY}]),
            )
            .gateway("watch_config", json!(false))
    });
    let kid = |r: &Response| received_values(&r.json(), "x-stellaops-identity-envelope-kid");
    let r = stack.gateway.get("/public/x", &[]);
    assert_eq!(kid(&r), vec![ENVELOPE_KID.to_string()]);
    let config = stack.gateway.active_config();
    assert_eq!(config["envelope"]["active_kid"], ENVELOPE_KID);
    assert_eq!(config["envelope"]["kids"].as_array().unwrap().len(), 2);
    assert!(
        !config.to_string().contains("c3RlbGxh"),
        "key material on /config"
    );

    stack
        .gateway
        .edit_config(|c| c["router"]["identity_envelope_active_kid"] = json!("e2e-2"));
    assert_eq!(stack.gateway.reload().json()["result"], "applied");
    let r = stack.gateway.get("/public/x", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(kid(&r), vec!["e2e-2".to_string()]);
    assert_eq!(
        stack.gateway.active_config()["envelope"]["active_kid"],
        "e2e-2"
    );

    // A kid that is not in the keyring is refused; e2e-2 keeps signing.
    stack
        .gateway
        .edit_config(|c| c["router"]["identity_envelope_active_kid"] = json!("e2e-9"));
    let r = stack.gateway.reload();
    assert_eq!(r.status, 422);
    assert!(r.text().contains("router.identity_envelope_active_kid"));
    assert_eq!(
        kid(&stack.gateway.get("/public/x", &[])),
        vec!["e2e-2".to_string()]
    );
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_then_exits_zero() {
    let (upstream, arrived) = slow_upstream(Duration::from_millis(1500));
    let dir = TempDir::new("reload-drain");
    let policies = policies_with_echo_routes(&dir, "");
    let hybrid = policies.join("echo-hybrid.yaml");
    let original = std::fs::read_to_string(&hybrid).unwrap();
    std::fs::write(&hybrid, format!("{original}{SLOW_ROUTE}")).unwrap();
    let p = policies.clone();
    let mut stack = Stack::start_with("reload-drain", move |s| {
        s.policies(&p).service("echo-hybrid", upstream)
    });
    let http = stack.gateway.http;
    let slow = std::thread::spawn(move || request(http, "GET", "/slow/x", &[], b""));
    arrived.recv_timeout(Duration::from_secs(5)).unwrap();
    let signalled = Instant::now();
    stack.gateway.process.signal("TERM");
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(
        stack.gateway.process.wait_exit(Duration::from_secs(5)),
        Ok(Some(0))
    );
    // It exits once the last request is done, not after the grace period.
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "{:?}",
        signalled.elapsed()
    );
    assert!(
        TcpStream::connect(http).is_err(),
        "still accepting after exit"
    );
}

/// The serial number of the certificate a TLS server presents, and a
/// connection that stays open for more requests.
struct TlsConn {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    serial: String,
}

fn tls_connect(addr: SocketAddr, ca: &std::path::Path) -> TlsConn {
    use rustls::pki_types::pem::PemObject;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    let der = stream.conn.peer_certificates().unwrap()[0].clone();
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
    TlsConn {
        serial: cert.raw_serial_as_string(),
        stream,
    }
}

impl TlsConn {
    /// One keep-alive request; the status.
    fn get(&mut self, path: &str) -> u16 {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n"
        )
        .unwrap();
        self.stream.flush().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            self.stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).unwrap();
        head[9..12].parse().unwrap()
    }
}

#[test]
fn a_new_server_certificate_is_used_by_new_handshakes_while_an_old_connection_keeps_working() {
    let dir = TempDir::new("reload-tls");
    let pki = Pki::generate(&dir);
    // The listener reads these two paths; rotation replaces their contents.
    let cert = dir.join("live.pem");
    let key = dir.join("live.key");
    std::fs::copy(&pki.server_cert, &cert).unwrap();
    std::fs::copy(&pki.server_key, &key).unwrap();
    let (c, k) = (cert.clone(), key.clone());
    let stack = Stack::start_with("reload-tls", move |s| {
        s.tls(TlsSetup {
            cert_file: c,
            key_file: k,
            client_certificates: "none",
            client_ca_file: None,
        })
    });
    let tls = stack.gateway.tls.expect("tls listener");
    let mut old = tls_connect(tls, &pki.ca);
    assert_eq!(old.get("/public/x"), 200);

    let (new_cert, new_key) = pki.issue_server("server-2");
    // Key first, then certificate: the watcher may see the pair half
    // written; a mismatched pair is refused and the next event applies it.
    std::fs::copy(&new_key, &key).unwrap();
    std::fs::copy(&new_cert, &cert).unwrap();
    let r = stack.gateway.reload();
    assert_eq!(r.status, 200, "{}", r.text());

    let mut new = tls_connect(tls, &pki.ca);
    assert_ne!(
        new.serial, old.serial,
        "a new handshake still sees the old certificate"
    );
    assert_eq!(new.get("/public/x"), 200);
    // The connection made before the swap keeps working.
    assert_eq!(old.get("/public/y"), 200);
    assert_eq!(old.get("/public/z"), 200);
}

#[test]
fn a_new_client_ca_bundle_decides_new_handshakes_after_a_reload() {
    let dir = TempDir::new("reload-client-ca");
    let pki = Pki::generate(&dir);
    let mut listener = pki.listener("required");
    listener.client_ca_file = Some(pki.ca.clone());
    let stack = Stack::start_with("reload-client-ca", move |s| {
        s.tls(listener).gateway("watch_config", json!(false))
    });
    let tls = stack.gateway.tls.expect("tls listener");
    let ours = (pki.client_cert.as_path(), pki.client_key.as_path());
    let theirs = (
        pki.other_client_cert.as_path(),
        pki.other_client_key.as_path(),
    );
    let curl = |cert: (&std::path::Path, &std::path::Path)| {
        curl_https(tls, "/public/x", &pki.ca, Some(cert), &[])
    };
    let status = |cert| curl(cert).response.map(|r| r.status);
    assert_eq!(status(ours), Some(200));
    // A client of another CA is refused at the handshake.
    curl(theirs).assert_refused_by_gateway("unknown ca");

    // Trust the other CA instead.
    let other_ca = pki.other_ca.clone();
    stack
        .gateway
        .edit_config(|c| c["gateway"]["listeners"]["tls"]["client_ca_file"] = json!(other_ca));
    assert_eq!(stack.gateway.reload().json()["result"], "applied");
    assert_eq!(status(theirs), Some(200));
    // The old CA no longer vouches after the reload.
    curl(ours).assert_refused_by_gateway("unknown ca");

    // Client certificates off: a client without one gets in.
    stack
        .gateway
        .edit_config(|c| c["gateway"]["listeners"]["tls"]["client_certificates"] = json!("none"));
    assert_eq!(stack.gateway.reload().json()["result"], "applied");
    let anonymous = curl_https(tls, "/public/x", &pki.ca, None, &[]);
    assert_eq!(
        anonymous.response.map(|r| r.status),
        Some(200),
        "{}",
        anonymous.stderr
    );
}
