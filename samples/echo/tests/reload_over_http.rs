//! Runtime reload of the envelope configuration (SPEC.md 7.1) through the
//! sample service over real HTTP: the binary is started with
//! `Router__ConfigFile` naming a file in a temp dir, the file is rewritten,
//! and `/__echo/config` and real requests show the change without a
//! restart. Also: a bad file keeps the old configuration, SIGHUP never
//! kills, and SIGTERM drains and exits 0.

use serde_json::Value;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_envelope::*;
use stella_test_support::{request, wait_until, Process, Response};

const SERVICE_TOKEN: &str = "service-own-token";
const WAIT: Duration = Duration::from_secs(10);

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("stella-echo-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self) -> PathBuf {
        self.0.join("envelope.env")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Replaces the file whole, as editors and deployment tools do.
fn write_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Test key `kid`: an HS256 secret of more than 32 bytes made from the kid.
fn key(kid: &str) -> Key {
    let secret = format!("echo-reload-test-secret-for-key-{kid}");
    Key::hmac(KeyId::new(kid).unwrap(), secret.as_bytes()).unwrap()
}

/// A config file: `mode`, and the keys `kids` accepted.
fn config_text(mode: &str, kids: &[&str]) -> String {
    let keys: Vec<String> = kids
        .iter()
        .map(|kid| format!("{kid}={}", key(kid).to_spec().as_str()))
        .collect();
    format!(
        "# written by the test\n\
         Router__AuthorizationTrustMode={mode}\n\
         Router__IdentityEnvelopeAcceptedKeys=\"{}\"\n",
        keys.join(";")
    )
}

fn start_with(dir: &TempDir, text: &str, extra: &[(&str, &str)]) -> Process {
    write_file(&dir.file(), text);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stella-echo-service"));
    cmd.env_clear()
        .env("Router__IdentityEnvelopeAudience", "orders")
        .env("Router__IdentityEnvelopeClockSkewSeconds", "5")
        .env("Router__ConfigFile", dir.file())
        .env("ECHO_SERVICE_TOKEN", SERVICE_TOKEN);
    for (name, value) in extra {
        cmd.env(name, value);
    }
    Process::start("echo (reloadable)", cmd, "ECHO_READY", WAIT)
}

fn start(dir: &TempDir, text: &str) -> Process {
    start_with(dir, text, &[])
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Envelope headers for `GET /orders/1`, signed with key `kid`.
fn envelope(kid: &str) -> Vec<(String, String)> {
    let signer = Signer::new(key(kid), "stella-gateway-test", 60).unwrap();
    let identity = Identity {
        subject: Some("alice".into()),
        tenant: Some("acme".into()),
        client_id: Some("svc-bearer".into()),
        scopes: vec!["orders.read".into()],
        roles: vec![],
        auth_method: AuthMethod::Bearer,
        confirmation: Confirmation::default(),
    };
    let target = Target {
        audience: "orders",
        method: "GET",
        path: "/orders/1",
        request_id: "req-1",
    };
    signer
        .sign(&identity, &target, now())
        .expect("sign")
        .pairs()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// `GET /orders/1` with an envelope signed by `kid` (none for `None`), the
/// service's own token if asked, and any `extra` headers.
fn call(service: &Process, kid: Option<&str>, own_token: bool, extra: &[(&str, &str)]) -> Response {
    let headers = kid.map(envelope).unwrap_or_default();
    let bearer = format!("Bearer {SERVICE_TOKEN}");
    let mut fields: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if own_token {
        fields.push(("Authorization", &bearer));
    }
    fields.extend_from_slice(extra);
    request(service.addr(), "GET", "/orders/1", &fields, b"")
}

fn active_config(service: &Process) -> Value {
    let r = request(service.addr(), "GET", "/__echo/config", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls `/__echo/config` until `check` holds; panics with the last one.
#[track_caller]
fn wait_for_config(service: &Process, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let seen = wait_until(WAIT, || {
        last = active_config(service);
        check(&last)
    });
    assert!(seen, "{what} not seen within {WAIT:?}; last: {last}");
    last
}

fn requests_seen(service: &Process) -> u64 {
    request(service.addr(), "GET", "/__echo/requests", &[], b"").json()["requests"]
        .as_u64()
        .unwrap()
}

fn signal(service: &Process, name: &str) {
    let status = Command::new("kill")
        .args([format!("-{name}"), service.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

#[track_caller]
fn assert_problem(r: &Response, status: u16, code: &str, envelope_error: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["error"], code);
    assert_eq!(r.json()["envelope_error"].as_str(), envelope_error);
}

#[track_caller]
fn assert_served(r: &Response, source: &str, mode: &str) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["source"], source);
    assert_eq!(r.json()["mode"], mode);
}

#[test]
fn file_change_flips_gateway_enforced_to_hybrid_without_restart() {
    let dir = TempDir::new("flip");
    let mut s = start(&dir, &config_text("GatewayEnforced", &["a"]));
    assert_eq!(s.ready["mode"], "GatewayEnforced");
    assert_eq!(s.ready["generation"], 1);
    let config = active_config(&s);
    assert_eq!(config["mode"], "GatewayEnforced");
    assert_eq!(config["accepted_kids"], serde_json::json!(["a"]));
    assert_eq!(config["last_error"], Value::Null);
    assert_problem(&call(&s, None, true, &[]), 401, "envelope_required", None);

    write_file(&dir.file(), &config_text("Hybrid", &["a"]));
    let config = wait_for_config(&s, "Hybrid", |c| c["mode"] == "Hybrid");
    assert_eq!(config["generation"], 2);
    // Without an envelope the service's own auth now decides...
    assert_served(&call(&s, None, true, &[]), "service", "Hybrid");
    // ...and a valid envelope is still trusted.
    assert_served(&call(&s, Some("a"), false, &[]), "envelope", "Hybrid");

    // And back, as the drill does.
    write_file(&dir.file(), &config_text("GatewayEnforced", &["a"]));
    wait_for_config(&s, "GatewayEnforced", |c| c["mode"] == "GatewayEnforced");
    assert_problem(&call(&s, None, true, &[]), 401, "envelope_required", None);
    assert_eq!(s.try_exit_code(), None, "the service restarted or died");
}

#[test]
fn sighup_reloads_and_never_kills() {
    let dir = TempDir::new("sighup");
    // File changes are not watched: only SIGHUP can reload.
    let mut s = start_with(
        &dir,
        &config_text("GatewayEnforced", &["a"]),
        &[("ECHO_WATCH_CONFIG_FILE", "false")],
    );
    write_file(&dir.file(), &config_text("Hybrid", &["a"]));
    assert_eq!(active_config(&s)["mode"], "GatewayEnforced");

    signal(&s, "HUP");
    let config = wait_for_config(&s, "Hybrid after SIGHUP", |c| c["mode"] == "Hybrid");
    assert_eq!(config["generation"], 2);
    assert_served(&call(&s, None, true, &[]), "service", "Hybrid");

    // A SIGHUP with nothing changed changes nothing, and the process lives.
    signal(&s, "HUP");
    signal(&s, "HUP");
    assert_served(&call(&s, None, true, &[]), "service", "Hybrid");
    assert_eq!(active_config(&s)["generation"], 2);
    assert_eq!(s.try_exit_code(), None, "SIGHUP ended the service");
}

#[test]
fn keys_rotate_in_three_waves_without_restart() {
    let dir = TempDir::new("rotate");
    let mut s = start(&dir, &config_text("GatewayEnforced", &["a"]));
    assert_served(
        &call(&s, Some("a"), false, &[]),
        "envelope",
        "GatewayEnforced",
    );
    assert_problem(
        &call(&s, Some("b"), false, &[]),
        401,
        "envelope_invalid",
        Some("unknown_kid"),
    );

    // Wave 1: every service accepts the old and the new key.
    write_file(&dir.file(), &config_text("GatewayEnforced", &["a", "b"]));
    wait_for_config(&s, "kids a, b", |c| {
        c["accepted_kids"] == serde_json::json!(["a", "b"])
    });
    assert_served(
        &call(&s, Some("a"), false, &[]),
        "envelope",
        "GatewayEnforced",
    );
    // Wave 2 (the gateway signs with b) needs nothing here.
    let r = call(&s, Some("b"), false, &[]);
    assert_served(&r, "envelope", "GatewayEnforced");
    assert_eq!(r.json()["envelope"]["kid"], "b");

    // Wave 3: the old key is dropped; envelopes signed with it are refused.
    write_file(&dir.file(), &config_text("GatewayEnforced", &["b"]));
    let config = wait_for_config(&s, "kid b only", |c| {
        c["accepted_kids"] == serde_json::json!(["b"])
    });
    assert_eq!(config["generation"], 3);
    assert_problem(
        &call(&s, Some("a"), false, &[]),
        401,
        "envelope_invalid",
        Some("unknown_kid"),
    );
    assert_served(
        &call(&s, Some("b"), false, &[]),
        "envelope",
        "GatewayEnforced",
    );
    assert_eq!(s.try_exit_code(), None, "the service restarted or died");
}

#[test]
fn bad_config_file_keeps_the_old_mode_and_reports_the_variable() {
    let dir = TempDir::new("bad");
    let mut s = start(&dir, &config_text("GatewayEnforced", &["a"]));
    let bad = config_text("Permissive-Nonsense", &["a"]);
    write_file(&dir.file(), &bad);
    let config = wait_for_config(&s, "the reload error", |c| !c["last_error"].is_null());
    let errors: Vec<&str> = config["last_error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("Router__AuthorizationTrustMode: "),
        "{errors:?}"
    );
    assert!(!errors[0].contains("Permissive-Nonsense"), "{errors:?}");
    assert_eq!(config["mode"], "GatewayEnforced");
    assert_eq!(config["generation"], 1);
    assert!(config["last_rejected_unix"].is_u64());
    // Still enforcing, still alive.
    assert_problem(&call(&s, None, true, &[]), 401, "envelope_required", None);
    assert_served(
        &call(&s, Some("a"), false, &[]),
        "envelope",
        "GatewayEnforced",
    );
    assert_eq!(s.try_exit_code(), None);

    // Fixed: applied, and the error is gone.
    write_file(&dir.file(), &config_text("Hybrid", &["a"]));
    let config = wait_for_config(&s, "Hybrid", |c| c["mode"] == "Hybrid");
    assert_eq!(config["last_error"], Value::Null);
    assert_eq!(config["generation"], 2);
}

#[test]
fn bad_config_file_at_start_exits_2_naming_the_variable() {
    let dir = TempDir::new("bad-start");
    write_file(
        &dir.file(),
        "Router__AuthorizationTrustMode=GatewayEnforced\nRouter__IdentityEnvelopeSigningKey=too-short\n",
    );
    let output = Command::new(env!("CARGO_BIN_EXE_stella-echo-service"))
        .env_clear()
        .env("Router__IdentityEnvelopeAudience", "orders")
        .env("Router__ConfigFile", dir.file())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "Router__IdentityEnvelopeSigningKey: hs256 secret is 9 bytes; at least 32 are required (set in Router__ConfigFile line 2)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short"), "{stderr}");
}

#[test]
fn a_request_in_flight_across_a_reload_reports_the_mode_it_started_with() {
    let dir = TempDir::new("in-flight");
    let s = start(&dir, &config_text("Hybrid", &["a"]));
    let before = requests_seen(&s);
    let addr = s.addr();
    let slow = std::thread::spawn(move || {
        let bearer = format!("Bearer {SERVICE_TOKEN}");
        request(
            addr,
            "GET",
            "/orders/1",
            &[("Authorization", &bearer), ("X-Echo-Delay-Ms", "1500")],
            b"",
        )
    });
    assert!(wait_until(WAIT, || requests_seen(&s) > before));

    write_file(&dir.file(), &config_text("GatewayEnforced", &["a"]));
    wait_for_config(&s, "GatewayEnforced", |c| c["mode"] == "GatewayEnforced");
    // New requests get the new rules...
    assert_problem(&call(&s, None, true, &[]), 401, "envelope_required", None);
    // ...the one admitted before the reload finishes under the old ones.
    assert_served(&slow.join().unwrap(), "service", "Hybrid");
}

#[test]
fn sigterm_finishes_requests_in_flight_and_exits_0() {
    let dir = TempDir::new("sigterm");
    let mut s = start(&dir, &config_text("GatewayEnforced", &["a"]));
    let addr = s.addr();
    let before = requests_seen(&s);
    let slow = std::thread::spawn(move || {
        let headers = envelope("a");
        let mut fields: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        fields.push(("X-Echo-Delay-Ms", "2000"));
        request(addr, "GET", "/orders/1", &fields, b"")
    });
    assert!(wait_until(WAIT, || requests_seen(&s) > before));

    signal(&s, "TERM");
    // New connections are refused while the request in flight goes on.
    assert!(
        wait_until(WAIT, || TcpStream::connect(addr).is_err()),
        "still accepting after SIGTERM"
    );
    assert_eq!(
        s.try_exit_code(),
        None,
        "exited before finishing the request"
    );
    assert_served(&slow.join().unwrap(), "envelope", "GatewayEnforced");
    let mut code = None;
    assert!(
        wait_until(WAIT, || {
            code = s.try_exit_code();
            code.is_some()
        }),
        "did not exit after SIGTERM"
    );
    assert_eq!(code, Some(Some(0)));
}
