//! The trust-mode table of docs/design.md §3.6, row by row, through the sample
//! service over real HTTP: the service binary is started in each mode with
//! the `Router__*` variables and sent real requests.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_envelope::*;
use stella_test_support::{request, Process, Response};

const SECRET: &str = "echo-test-secret-at-least-32-bytes-long";
const SERVICE_TOKEN: &str = "service-own-token";

fn start(mode: &str) -> Process {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stella-echo-service"));
    cmd.env_clear()
        .env("Router__Enabled", "true")
        .env("Router__AuthorizationTrustMode", mode)
        .env("Router__IdentityEnvelopeSigningKey", SECRET)
        .env("Router__IdentityEnvelopeSigningKeyId", "k1")
        .env("Router__IdentityEnvelopeClockSkewSeconds", "5")
        .env("Router__IdentityEnvelopeAudience", "orders")
        .env("ECHO_SERVICE_TOKEN", SERVICE_TOKEN);
    Process::start(
        &format!("echo {mode}"),
        cmd,
        "ECHO_READY",
        Duration::from_secs(20),
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

enum Env {
    Valid,
    Absent,
    BadSignature,
    WrongAudience,
}

fn envelope(kind: &Env, path: &str) -> Vec<(String, String)> {
    let (secret, audience) = match kind {
        Env::Absent => return Vec::new(),
        Env::Valid => (SECRET, "orders"),
        Env::BadSignature => ("another-secret-also-at-least-32-bytes", "orders"),
        Env::WrongAudience => (SECRET, "billing"),
    };
    let key = Key::hmac(KeyId::new("k1").unwrap(), secret.as_bytes()).unwrap();
    let signer = Signer::new(key, "stella-gateway-test", 60).unwrap();
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
        audience,
        method: "GET",
        path,
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

fn call(service: &Process, kind: Env, with_service_token: bool) -> Response {
    let headers = envelope(&kind, "/orders/1");
    let bearer = format!("Bearer {SERVICE_TOKEN}");
    let mut fields: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if with_service_token {
        fields.push(("Authorization", &bearer));
    }
    request(service.addr(), "GET", "/orders/1?x=1", &fields, b"")
}

fn requests_seen(service: &Process) -> u64 {
    request(service.addr(), "GET", "/__echo/requests", &[], b"").json()["requests"]
        .as_u64()
        .unwrap()
}

#[track_caller]
fn assert_envelope_identity(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["source"], "envelope");
    assert_eq!(body["identity"]["subject"], "alice");
    assert_eq!(body["identity"]["tenant"], "acme");
    assert_eq!(body["envelope"]["kid"], "k1");
}

#[track_caller]
fn assert_service_auth_used(r: &Response, ignored: Option<&str>) {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["source"], "service");
    assert_eq!(r.json()["ignored_envelope_error"].as_str(), ignored);
}

#[track_caller]
fn assert_problem(r: &Response, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json()["error"], code);
}

#[test]
fn service_enforced_ignores_envelopes_for_authorization() {
    let s = start("ServiceEnforced");
    // Valid envelope, no own credentials: the envelope grants nothing.
    assert_problem(&call(&s, Env::Valid, false), 401, "service_auth_required");
    assert_service_auth_used(&call(&s, Env::Valid, true), None);
    // No envelope: the service's own auth decides.
    assert_problem(&call(&s, Env::Absent, false), 401, "service_auth_required");
    assert_service_auth_used(&call(&s, Env::Absent, true), None);
    // Invalid envelope: ignored, and the failure is reported.
    assert_service_auth_used(&call(&s, Env::BadSignature, true), Some("bad_signature"));
    assert_service_auth_used(
        &call(&s, Env::WrongAudience, true),
        Some("audience_mismatch"),
    );
}

#[test]
fn hybrid_trusts_valid_envelopes_and_refuses_invalid_ones() {
    let s = start("Hybrid");
    assert_envelope_identity(&call(&s, Env::Valid, false));
    assert_problem(&call(&s, Env::Absent, false), 401, "service_auth_required");
    assert_service_auth_used(&call(&s, Env::Absent, true), None);
    // An invalid envelope is refused even with valid own credentials.
    let before = requests_seen(&s);
    assert_problem(&call(&s, Env::BadSignature, true), 401, "envelope_invalid");
    assert_problem(&call(&s, Env::WrongAudience, true), 401, "envelope_invalid");
    assert_eq!(requests_seen(&s), before + 2);
}

#[test]
fn gateway_enforced_requires_a_valid_envelope() {
    let s = start("GatewayEnforced");
    assert_envelope_identity(&call(&s, Env::Valid, false));
    assert_problem(&call(&s, Env::Absent, true), 401, "envelope_required");
    let r = call(&s, Env::BadSignature, true);
    assert_problem(&r, 401, "envelope_invalid");
    assert_eq!(r.json()["envelope_error"], "bad_signature");
    let r = call(&s, Env::WrongAudience, false);
    assert_problem(&r, 403, "envelope_audience_mismatch");
    assert_eq!(r.json()["envelope_error"], "audience_mismatch");
}

#[test]
fn envelope_for_another_path_is_refused() {
    let s = start("GatewayEnforced");
    let headers = envelope(&Env::Valid, "/orders/1");
    let fields: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let r = request(s.addr(), "GET", "/orders/2", &fields, b"");
    assert_problem(&r, 401, "envelope_invalid");
    assert_eq!(r.json()["envelope_error"], "request_mismatch");
}

#[test]
fn bad_configuration_exits_2_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_stella-echo-service"))
        .env_clear()
        .env("Router__AuthorizationTrustMode", "GatewayEnforced")
        .env("Router__IdentityEnvelopeSigningKey", "too-short")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Router__IdentityEnvelopeSigningKey: hs256 secret is 9 bytes"),
        "{stderr}"
    );
    assert!(!stderr.contains("too-short"), "{stderr}");
}
