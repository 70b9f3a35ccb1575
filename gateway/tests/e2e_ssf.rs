//! The Shared Signals receiver end to end (docs/design.md §3.3;
//! runbooks/emergency-revocation.md): the real gateway, Authority and echo
//! service, and a transmitter the test runs (SETs signed with a
//! `stella_jose::testing` key, its JWKS served over HTTP by a loopback
//! server, or read from a file). A CAEP `session-revoked`,
//! `credential-change` or RISC `account-disabled` event pushed to the admin
//! listener (RFC 8935, no operator token) refuses the subject's tokens at
//! once (401 `invalid_token`, reason `revoked`), also tokens already in
//! the verified-token cache; SETs that fail a check are refused with 400
//! and their RFC 8935 `err`, and revoke nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_authority::test_server::{Reply, TestServer};
use stella_jose::testing::{jwks, TestKey};

const AUDIENCE: &str = "https://gateway.example/ssf";
const PUSH: &str = "/ssf/push";
const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789abcdef0123456789";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
const CREDENTIAL_CHANGE: &str =
    "https://schemas.openid.net/secevent/caep/event-type/credential-change";
const ACCOUNT_DISABLED: &str =
    "https://schemas.openid.net/secevent/risc/event-type/account-disabled";

/// A transmitter: its signing key, and a server publishing its JWKS at
/// `/jwks`; its issuer is the server's base url.
struct Transmitter {
    key: TestKey,
    server: TestServer,
}

impl Transmitter {
    fn start() -> Transmitter {
        let key = TestKey::es256(Some("tx-1"));
        let server = TestServer::start();
        server.set("/jwks", Reply::json(&jwks(&[&key])));
        Transmitter { key, server }
    }

    fn issuer(&self) -> String {
        self.server.base()
    }

    /// A SET of `event` about `subject`, as this transmitter signs it.
    fn set(&self, jti: &str, event: &str, payload: Value, subject: Value) -> String {
        self.sign(&self.key, self.claims(jti, event, payload, subject))
    }

    fn claims(&self, jti: &str, event: &str, payload: Value, subject: Value) -> Value {
        json!({
            "iss": self.issuer(),
            "aud": AUDIENCE,
            "iat": now(),
            "jti": jti,
            "sub_id": subject,
            "events": {event: payload},
        })
    }

    fn sign(&self, key: &TestKey, claims: Value) -> String {
        let header = json!({"alg": key.alg(), "typ": "secevent+jwt", "kid": key.kid()});
        key.token_with_header(&header, &claims)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The gateway, its Authority and service, a transmitter, and the files.
struct Setup {
    gw: Gateway,
    echo: Echo,
    authority: Authority,
    tx: Transmitter,
    _dir: TempDir,
}

/// A stack whose gateway takes `tx`'s SETs (keys by `jwks_uri`, or from a
/// file with `keys_in_file`); its admin listener wants an operator token
/// for everything else.
fn start(label: &str, keys_in_file: bool) -> Setup {
    let dir = TempDir::new(label);
    let operators = dir.join("operators");
    std::fs::write(&operators, format!("alice {OPERATOR_TOKEN}\n")).unwrap();
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start();
        (authority, echo.join().expect("echo started"))
    });
    let tx = Transmitter::start();
    let mut transmitter = json!({
        "issuer": tx.issuer(),
        "audience": AUDIENCE,
        "require_https": false,
        "opaque_subjects_of": authority.issuer,
        "revoke_for_seconds": 600,
    });
    if keys_in_file {
        let file = dir.join("transmitter-jwks.json");
        std::fs::write(&file, jwks(&[&tx.key])).unwrap();
        transmitter["jwks_file"] = json!(file);
    } else {
        transmitter["jwks_uri"] = json!(tx.server.url("/jwks"));
    }
    let gw = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .gateway("admin", json!({"operator_token_file": operators}))
        .gateway(
            "revocation",
            json!({"ssf": {"transmitters": [transmitter]}}),
        )
        .start(&dir);
    Setup {
        gw,
        echo,
        authority,
        tx,
        _dir: dir,
    }
}

/// Pushes `body` as a SET, without any credential.
fn push(gw: &Gateway, body: &str) -> Response {
    push_as(gw, "application/secevent+jwt", body)
}

fn push_as(gw: &Gateway, content_type: &str, body: &str) -> Response {
    request(
        gw.admin,
        "POST",
        PUSH,
        &[
            ("Content-Type", content_type),
            ("Accept", "application/json"),
        ],
        body.as_bytes(),
    )
}

#[track_caller]
fn assert_accepted(r: &Response) {
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(r.body.is_empty(), "{}", r.text());
}

/// 400 with the RFC 8935 error `err`.
#[track_caller]
fn assert_set_refused(r: &Response, err: &str) {
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["err"], err, "{body}");
    assert!(
        body["description"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

/// The request was refused as revoked, and the service not called.
#[track_caller]
fn assert_revoked(s: &Setup, token: &str) {
    let before = s.echo.requests();
    let r = s.gw.get_with_token("/items/9", token);
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "revoked", "{}", r.text());
    assert_eq!(s.gw.reason_for(&r), "revoked");
    assert_eq!(s.echo.requests(), before, "the service was called");
}

fn listed(gw: &Gateway) -> Value {
    let auth = format!("Bearer {OPERATOR_TOKEN}");
    let r = request(
        gw.admin,
        "GET",
        "/revocations",
        &[("Authorization", &auth)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gw.metrics().value(name, labels).unwrap_or(0.0)
}

fn iss_sub(iss: &str, sub: &str) -> Value {
    json!({"format": "iss_sub", "iss": iss, "sub": sub})
}

#[test]
fn a_session_revoked_event_refuses_the_subjects_cached_token_at_once() {
    let s = start("ssf-session", false);
    let token = s.authority.token(BEARER);
    let other = s.authority.token(READONLY);
    let sub = jwt_claims(&token)["sub"].as_str().expect("sub").to_owned();
    assert_ne!(jwt_claims(&other)["sub"], sub);
    // Accepted, and in the verified-token cache.
    assert_reached_via_envelope(&s.gw.get_with_token("/items/1", &token));
    assert_reached_via_envelope(&s.gw.get_with_token("/items/2", &token));

    let set = s.tx.set(
        "set-session-1",
        SESSION_REVOKED,
        json!({"event_timestamp": now(), "initiating_entity": "policy"}),
        iss_sub(&s.authority.issuer, &sub),
    );
    // No operator token: the signature authenticates the transmitter.
    assert_accepted(&push(&s.gw, &set));
    assert_revoked(&s, &token);
    assert_reached_via_envelope(&s.gw.get_with_token("/items/3", &other));

    let list = listed(&s.gw);
    assert_eq!(list["count"], 1, "{list}");
    let entry = &list["revocations"][0];
    assert_eq!(entry["kind"], "sub");
    assert_eq!(entry["issuer"], s.authority.issuer.as_str());
    assert_eq!(entry["operator"], "ssf@127.0.0.1", "{entry}");
    assert_eq!(entry["reason"], "ssf: caep session-revoked");
    let lifetime = entry["expires_in_seconds"].as_u64().unwrap();
    assert!((590..=600).contains(&lifetime), "{entry}");
    // The audit line names the transmitter, never the subject.
    s.gw.wait_for_log(|l| l["target"] == "stella_gateway::audit" && l["action"] == "revoke");
    let audit =
        s.gw.log_lines()
            .into_iter()
            .find(|l| l["target"] == "stella_gateway::audit" && l["action"] == "revoke")
            .expect("an audit line");
    assert_eq!(audit["operator"], "ssf@127.0.0.1", "{audit}");
    assert!(!audit.to_string().contains(&sub), "{audit}");
    assert_eq!(
        metric(
            &s.gw,
            "stella_gateway_ssf_sets_total",
            &[("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &s.gw,
            "stella_gateway_ssf_events_total",
            &[("event", "session_revoked"), ("result", "revoked")]
        ),
        1.0
    );
    // Keys fetched from the transmitter's jwks_uri, without discovery.
    assert!(s.tx.server.count("/jwks") >= 1);
    assert_eq!(s.tx.server.count("/.well-known/openid-configuration"), 0);
}

#[test]
fn credential_change_and_account_disabled_events_revoke_their_subjects() {
    let s = start("ssf-credential", true);
    let bearer = s.authority.token(BEARER);
    let readonly = s.authority.token(READONLY);
    let sub_of = |t: &str| jwt_claims(t)["sub"].as_str().expect("sub").to_owned();
    assert_reached_via_envelope(&s.gw.get_with_token("/items/1", &bearer));
    assert_reached_via_envelope(&s.gw.get_with_token("/items/2", &readonly));

    // A new credential is no reason to distrust the tokens: ignored.
    let created = s.tx.set(
        "set-cred-create",
        CREDENTIAL_CHANGE,
        json!({"credential_type": "fido2-roaming", "change_type": "create"}),
        json!({"format": "opaque", "id": sub_of(&bearer)}),
    );
    assert_accepted(&push(&s.gw, &created));
    assert_reached_via_envelope(&s.gw.get_with_token("/items/3", &bearer));
    assert_eq!(
        metric(
            &s.gw,
            "stella_gateway_ssf_events_total",
            &[("event", "credential_change"), ("result", "ignored")]
        ),
        1.0
    );

    // A changed password, the subject as an opaque id of the Authority.
    let changed = s.tx.set(
        "set-cred-update",
        CREDENTIAL_CHANGE,
        json!({"credential_type": "password", "change_type": "update"}),
        json!({"format": "opaque", "id": sub_of(&bearer)}),
    );
    assert_accepted(&push(&s.gw, &changed));
    assert_revoked(&s, &bearer);
    assert_reached_via_envelope(&s.gw.get_with_token("/items/4", &readonly));

    // A disabled account, as the user of a complex subject.
    let disabled = s.tx.set(
        "set-disabled",
        ACCOUNT_DISABLED,
        json!({"reason": "hijacking"}),
        json!({"format": "complex", "user": iss_sub(&s.authority.issuer, &sub_of(&readonly))}),
    );
    assert_accepted(&push(&s.gw, &disabled));
    assert_revoked(&s, &readonly);
    let list = listed(&s.gw);
    assert_eq!(list["count"], 2, "{list}");
    let reasons: Vec<&str> = list["revocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"ssf: caep credential-change"), "{list}");
    assert!(reasons.contains(&"ssf: risc account-disabled"), "{list}");
}

#[test]
fn sets_that_fail_a_check_are_refused_with_their_rfc_8935_error_and_revoke_nothing() {
    let s = start("ssf-refused", false);
    let token = s.authority.token(BEARER);
    let sub = jwt_claims(&token)["sub"].as_str().expect("sub").to_owned();
    let subject = iss_sub(&s.authority.issuer, &sub);
    let claims = |jti: &str| {
        s.tx.claims(jti, SESSION_REVOKED, json!({}), subject.clone())
    };

    // Signed by a key that is not the transmitter's (same kid).
    let impostor = TestKey::es256(Some("tx-1"));
    let r = push(&s.gw, &s.tx.sign(&impostor, claims("bad-signature")));
    assert_set_refused(&r, "invalid_key");
    // A kid the transmitter does not publish.
    let unknown = TestKey::es256(Some("tx-unknown"));
    assert_set_refused(
        &push(&s.gw, &s.tx.sign(&unknown, claims("unknown-kid"))),
        "invalid_key",
    );
    // For another receiver.
    let mut other_aud = claims("wrong-aud");
    other_aud["aud"] = json!("https://another-receiver.example");
    assert_set_refused(
        &push(&s.gw, &s.tx.sign(&s.tx.key, other_aud)),
        "invalid_audience",
    );
    // From a transmitter that is not configured.
    let mut other_iss = claims("wrong-iss");
    other_iss["iss"] = json!("https://rogue-transmitter.example");
    assert_set_refused(
        &push(&s.gw, &s.tx.sign(&s.tx.key, other_iss)),
        "invalid_issuer",
    );
    // Too old.
    let mut old = claims("too-old");
    old["iat"] = json!(now() - 3_600);
    assert_set_refused(&push(&s.gw, &s.tx.sign(&s.tx.key, old)), "invalid_request");
    // Not a SET at all, or not sent as one.
    for body in ["", "not-a-jwt", "a.b.c", &s.tx.key.token(&claims("at-jwt"))] {
        assert_set_refused(&push(&s.gw, body), "invalid_request");
    }
    let good = s.tx.sign(&s.tx.key, claims("sent-as-json"));
    assert_set_refused(
        &push_as(&s.gw, "application/json", &good),
        "invalid_request",
    );

    // Nothing of this revoked anything.
    assert_reached_via_envelope(&s.gw.get_with_token("/items/1", &token));
    assert_eq!(listed(&s.gw)["count"], 0);
    for (result, n) in [
        ("invalid_key", 2.0),
        ("invalid_audience", 1.0),
        ("invalid_issuer", 1.0),
        ("invalid_request", 6.0),
        ("accepted", 0.0),
    ] {
        assert_eq!(
            metric(
                &s.gw,
                "stella_gateway_ssf_sets_total",
                &[("result", result)]
            ),
            n,
            "{result}"
        );
    }
    // Refusals are logged with their code, never with the SET.
    let refused = |l: &Value| l["message"] == "security event token refused";
    wait_until(Duration::from_secs(10), || {
        s.gw.log_lines().iter().filter(|l| refused(l)).count() >= 10
    });
    let refusals: Vec<Value> =
        s.gw.log_lines()
            .into_iter()
            .filter(|l| l["message"] == "security event token refused")
            .collect();
    assert_eq!(refusals.len(), 10, "{refusals:?}");
    assert!(refusals.iter().all(|l| !l.to_string().contains(&sub)));
}

#[test]
fn a_replayed_set_is_refused_and_unknown_event_types_are_accepted_and_ignored() {
    let s = start("ssf-replay", false);
    let token = s.authority.token(BEARER);
    let sub = jwt_claims(&token)["sub"].as_str().expect("sub").to_owned();
    let subject = iss_sub(&s.authority.issuer, &sub);

    // An event type the receiver does not act on (an SSF stream
    // verification here): 202, nothing revoked.
    let verification = s.tx.set(
        "set-verify",
        "https://schemas.openid.net/secevent/ssf/event-type/verification",
        json!({"state": "VGhpcyBpcyBhbiBleGFtcGxlIHN0YXRlIHZhbHVlLgo="}),
        subject.clone(),
    );
    assert_accepted(&push(&s.gw, &verification));
    assert_reached_via_envelope(&s.gw.get_with_token("/items/1", &token));
    assert_eq!(
        metric(
            &s.gw,
            "stella_gateway_ssf_events_total",
            &[("event", "other"), ("result", "ignored")]
        ),
        1.0
    );

    let set = s.tx.set("set-once", SESSION_REVOKED, json!({}), subject);
    assert_accepted(&push(&s.gw, &set));
    assert_revoked(&s, &token);
    let r = push(&s.gw, &set);
    assert_set_refused(&r, "invalid_request");
    assert!(
        r.json()["description"]
            .as_str()
            .is_some_and(|d| d.contains("replay")),
        "{}",
        r.text()
    );
    assert_eq!(
        metric(
            &s.gw,
            "stella_gateway_ssf_sets_total",
            &[("result", "replayed")]
        ),
        1.0
    );
    // Other admin calls still want the operator token.
    let r = request(s.gw.admin, "POST", "/revocations", &[], b"{}");
    assert_eq!(r.status, 401, "{}", r.text());
    // The push endpoint takes POST only.
    let r = request(s.gw.admin, "GET", PUSH, &[], b"");
    assert_eq!(r.status, 405, "{}", r.text());
}

#[test]
fn check_refuses_a_receiver_without_the_admin_listener_or_with_bad_transmitters() {
    let dir = TempDir::new("ssf-check");
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        "gateway:\n  listeners: {http: \"127.0.0.1:8080\"}\n  auth:\n    authority:\n      \
         issuer: https://authority.example\n      audiences: [api]\n  revocation:\n    ssf:\n      \
         path: /reload\n      transmitters:\n        - issuer: https://tx.example\n          \
         jwks_uri: http://tx.example/jwks\n          audience: gw\n          \
         opaque_subjects_of: https://not-an-authority.example\n        - issuer: https://tx2.example\n\
         router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(gateway_binary())
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let errors = String::from_utf8_lossy(&out.stderr);
    for key in [
        "gateway.revocation.ssf:",
        "gateway.revocation.ssf.path:",
        "gateway.revocation.ssf.transmitters[0].jwks_uri:",
        "gateway.revocation.ssf.transmitters[0].opaque_subjects_of:",
        "gateway.revocation.ssf.transmitters[1].audience:",
        "gateway.revocation.ssf.transmitters[1].jwks_uri:",
    ] {
        assert!(errors.contains(key), "{key} missing from:\n{errors}");
    }
}
