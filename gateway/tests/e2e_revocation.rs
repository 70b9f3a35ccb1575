//! Emergency revocation end to end (docs/design.md §3.3, §3.8;
//! runbooks/emergency-revocation.md): the real gateway, Authority and echo
//! service. For each kind of identity, a request carrying it is refused
//! (401 `invalid_token`, decision-log reason `revoked`, the service not
//! called) right after the revoke call returns, also when its token is
//! already in the verified-token cache; other callers pass; removing the
//! entry, or its expiry, lets the identity back in. The admin calls need
//! the operator token when one is configured (`POST /reload` too), the CLI
//! commands answer with their exit codes, and the list survives a restart
//! through its state file. Values never reach a log line or a listing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The operator token the gateways under test accept, for `alice`.
const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789abcdef0123456789";

/// Writes the gateway's operator token file (and an operator's own token
/// file, the token alone) into `dir`.
fn token_files(dir: &TempDir) -> (PathBuf, PathBuf) {
    let gateway = dir.join("operators");
    std::fs::write(&gateway, format!("# operators\nalice {OPERATOR_TOKEN}\n")).unwrap();
    let own = dir.join("my-token");
    std::fs::write(&own, format!("{OPERATOR_TOKEN}\n")).unwrap();
    (gateway, own)
}

/// A stack whose admin listener wants the operator token. The returned
/// dir holds the token files; keep it.
fn stack(label: &str, configure: impl FnOnce(GatewaySetup) -> GatewaySetup) -> (Stack, TempDir) {
    let admin_dir = TempDir::new(&format!("{label}-admin"));
    let (operators, _) = token_files(&admin_dir);
    let stack = Stack::start_with(label, |setup| {
        configure(setup.gateway("admin", json!({"operator_token_file": operators})))
    });
    (stack, admin_dir)
}

/// An admin call, with `token` as the operator's bearer token.
fn admin(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(auth) = &auth {
        headers.push(("Authorization", auth));
    }
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let body = body.map(Value::to_string).unwrap_or_default();
    request(gw.admin, method, path, &headers, body.as_bytes())
}

/// `POST /revocations` as alice; asserts it was added.
#[track_caller]
fn revoke(gw: &Gateway, kind: &str, value: &str, seconds: u64) -> Value {
    let r = admin(
        gw,
        "POST",
        "/revocations",
        Some(OPERATOR_TOKEN),
        Some(
            &json!({"kind": kind, "value": value, "for_seconds": seconds, "reason": "e2e incident 7"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["result"], "added", "{}", r.text());
    r.json()
}

/// `DELETE /revocations/{kind}/{selector}` as alice; asserts one entry went.
#[track_caller]
fn unrevoke(gw: &Gateway, kind: &str, selector: &str) {
    let path = format!("/revocations/{}/{}", encode(kind), encode(selector));
    let r = admin(gw, "DELETE", &path, Some(OPERATOR_TOKEN), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"].as_array().map(Vec::len), Some(1));
}

/// Percent-encodes a path segment.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The request was refused as revoked, and the service not called.
#[track_caller]
fn assert_revoked(gw: &Gateway, echo: &Echo, send: impl FnOnce() -> Response) {
    let before = echo.requests();
    let r = send();
    assert_invalid_token(&r);
    assert_eq!(r.json()["token_error"], "revoked", "{}", r.text());
    assert_eq!(gw.reason_for(&r), "revoked");
    assert_eq!(echo.requests(), before, "the service was called");
}

/// SHA-256 of `value`, lowercase hex (through the harness's `ath` helper,
/// which is base64url of a SHA-256).
fn sha256_hex(value: &str) -> String {
    b64url_decode(&dpop_ath(value))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// No log line about revocation holds `value`: the audit lines hold its
/// hash, and so does the warning of each refused request. (The decision
/// lines of allowed requests carry the caller's client id and `cnf` by
/// design; a refused request's decision line carries neither.)
#[track_caller]
fn assert_logged_by_hash_only(gw: &Gateway, value: &str) {
    let hash = sha256_hex(value);
    let mut audit = None;
    wait_until(Duration::from_secs(5), || {
        audit = gw
            .log_lines()
            .into_iter()
            .find(|l| l["target"] == "stella_gateway::audit" && l["value_sha256"] == hash);
        audit.is_some()
    });
    let audit = audit.unwrap_or_else(|| panic!("no audit line with the value's hash"));
    assert_eq!(audit["operator"], "alice", "{audit}");
    assert_eq!(audit["reason"], "e2e incident 7", "{audit}");
    for line in gw.log_lines() {
        let text = line.to_string();
        if line["target"] == "stella_gateway::decision" && line["decision"] == "allow" {
            continue;
        }
        assert!(!text.contains(value), "a log line holds the value: {text}");
    }
    assert!(gw.wait_for_log(|l| l["message"]
        == "request refused: the caller's identity is revoked"
        && l["value_sha256"] == hash[..12]));
}

fn metric(gw: &Gateway, name: &str, labels: &[(&str, &str)]) -> f64 {
    gw.metrics().value(name, labels).unwrap_or(0.0)
}

#[test]
fn a_revoked_jti_sub_client_id_or_tenant_is_refused_at_once_even_from_the_token_cache() {
    let (stack, _admin) = stack("revoke-bearer", |s| s);
    let gw = &stack.gateway;
    stack.authority.prefetch(&[BEARER, READONLY]);
    let token = stack.authority.token(BEARER);
    let other = stack.authority.token(READONLY);
    let claims = jwt_claims(&token);
    let jti = claims["jti"].as_str().expect("jti").to_owned();
    let sub = claims["sub"].as_str().expect("sub").to_owned();
    assert_eq!(claims["tenant"], "acme");
    assert_eq!(jwt_claims(&other)["tenant"], "globex");

    for (kind, value) in [
        ("jti", jti.as_str()),
        ("sub", sub.as_str()),
        ("client_id", "svc-bearer"),
        ("tenant", "acme"),
    ] {
        // In the verified-token cache before the revocation.
        assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
        let hits = metric(gw, "stella_gateway_token_cache_hits_total", &[]);
        let added = revoke(gw, kind, value, 3600);
        assert_eq!(added["revocation"]["kind"], kind);
        assert_eq!(
            added["revocation"]["value_sha256_prefix"],
            sha256_hex(value)[..12],
            "{added}"
        );
        assert_revoked(gw, &stack.echo, || gw.get_with_token("/items/1", &token));
        assert!(
            metric(gw, "stella_gateway_token_cache_hits_total", &[]) > hits,
            "{kind}: the refused token was not a cache hit"
        );
        // Another client, another tenant: unaffected.
        assert_reached_via_envelope(&gw.get_with_token("/items/2", &other));
        unrevoke(gw, kind, value);
        assert_reached_via_envelope(&gw.get_with_token("/items/3", &token));
        assert_eq!(
            gw.wait_for_metric(
                "stella_gateway_revocation_hits_total",
                &[("kind", kind)],
                1.0
            ),
            1.0,
            "{kind}"
        );
    }
    assert_eq!(
        metric(
            gw,
            "stella_gateway_revocation_hits_total",
            &[("kind", "jkt")]
        ),
        0.0
    );
    assert_logged_by_hash_only(gw, &jti);

    // A subject of an issuer the gateway does not know is refused.
    let r = admin(
        gw,
        "POST",
        "/revocations",
        Some(OPERATOR_TOKEN),
        Some(
            &json!({"kind": "sub", "value": sub, "issuer": "https://elsewhere.example",
                     "for_seconds": 60, "reason": "typo"}),
        ),
    );
    assert_problem(&r, 400, "invalid_request");
}

#[test]
fn a_revoked_dpop_key_refuses_its_tokens_and_not_another_keys() {
    let (stack, _admin) = stack("revoke-jkt", |s| s.public_origin("http://127.0.0.1:{http}"));
    let gw = &stack.gateway;
    let key = DpopKey::generate();
    let other_key = DpopKey::generate();
    let (file, other_file) = (stack.dir.join("k1.json"), stack.dir.join("k2.json"));
    key.write_private_jwk(&file);
    other_key.write_private_jwk(&other_file);
    let token = stack.authority.dpop_token(DPOP, &file);
    let other = stack.authority.dpop_token(DPOP, &other_file);
    let send = |key: &DpopKey, token: &str, path: &str| {
        let proof = key.proof(
            "GET",
            &format!("{}{path}", gw.origin()),
            Some(token),
            None,
            now(),
            &unique_jti("revoke"),
        );
        let auth = format!("DPoP {token}");
        gw.get(path, &[("Authorization", &auth), ("DPoP", &proof)])
    };

    assert_reached_via_envelope(&send(&key, &token, "/dpop/1"));
    let added = revoke(gw, "jkt", &key.thumbprint(), 3600);
    assert_revoked(gw, &stack.echo, || send(&key, &token, "/dpop/2"));
    // Presented as a Bearer token it is refused too (bound, unproven).
    assert_invalid_token(&gw.get_with_token("/items/1", &token));
    assert_reached_via_envelope(&send(&other_key, &other, "/dpop/3"));

    // The listing shows the hash prefix, never the thumbprint; removing
    // by that prefix lets the key back in.
    let listed = admin(gw, "GET", "/revocations", Some(OPERATOR_TOKEN), None);
    assert_eq!(listed.status, 200, "{}", listed.text());
    assert!(
        !listed.text().contains(&key.thumbprint()),
        "{}",
        listed.text()
    );
    let prefix = listed.json()["revocations"][0]["value_sha256_prefix"]
        .as_str()
        .expect("a hash prefix")
        .to_owned();
    assert_eq!(prefix, added["revocation"]["value_sha256_prefix"]);
    assert_eq!(listed.json()["revocations"][0]["hits"], 1);
    unrevoke(gw, "jkt", &prefix);
    assert_reached_via_envelope(&send(&key, &token, "/dpop/4"));
    assert_logged_by_hash_only(gw, &key.thumbprint());
}

#[test]
fn a_revoked_certificate_or_spiffe_id_refuses_every_request_over_it() {
    let pki_dir = TempDir::new("revoke-pki");
    let pki = Pki::generate(&pki_dir);
    let (stack, _admin) = stack("revoke-mtls", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    stack.authority.prefetch_with(&[
        (MTLS, TokenRequest::bound_to(&pki.client_cert)),
        (BEARER, TokenRequest::default()),
    ]);
    let bound = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.client_cert));
    let bearer = stack.authority.token(BEARER);
    let thumbprint = jwt_claims(&bound)["cnf"]["x5t#S256"]
        .as_str()
        .expect("a certificate-bound token")
        .to_owned();
    let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
    let spiffe = Some((pki.spiffe_cert.as_path(), pki.spiffe_key.as_path()));
    let https = |path: &str, cert: Option<(&Path, &Path)>, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        let c = curl_https(gw.tls.expect("tls listener"), path, &pki.ca, cert, &headers);
        assert_eq!(c.exit_code, Some(0), "curl failed: {}", c.stderr);
        c.response.expect("a response")
    };

    assert_reached_via_envelope(&https("/mtls/1", client, Some(&bound)));
    revoke(gw, "x5t#S256", &thumbprint, 3600);
    assert_revoked(gw, &stack.echo, || https("/mtls/2", client, Some(&bound)));
    // An unbound token over a connection with that certificate: refused.
    assert_revoked(gw, &stack.echo, || https("/items/1", client, Some(&bearer)));
    // The same token without the certificate, another workload: pass.
    assert_reached_via_envelope(&https("/items/2", None, Some(&bearer)));
    assert_reached_via_envelope(&https("/svc/orders", spiffe, None));
    // `x5t_s256` names the kind in a path without escaping.
    unrevoke(gw, "x5t_s256", &thumbprint);
    assert_reached_via_envelope(&https("/mtls/3", client, Some(&bound)));

    revoke(gw, "spiffe_id", SPIFFE_ID, 3600);
    assert_revoked(gw, &stack.echo, || https("/svc/orders", spiffe, None));
    assert_reached_via_envelope(&https("/mtls/4", client, Some(&bound)));
    unrevoke(gw, "spiffe_id", SPIFFE_ID);
    assert_reached_via_envelope(&https("/svc/orders", spiffe, None));
    assert_eq!(
        metric(
            gw,
            "stella_gateway_revocation_hits_total",
            &[("kind", "x5t#S256")]
        ),
        2.0
    );
}

#[test]
fn a_revoked_session_refuses_the_tokens_of_that_session_only() {
    let dir = TempDir::new("revoke-sid");
    let admin_dir = TempDir::new("revoke-sid-admin");
    let (operators, _) = token_files(&admin_dir);
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        let authority = Authority::start_with(AuthorityOptions {
            test_mint: true,
            ..AuthorityOptions::default()
        });
        (authority, echo.join().expect("echo started"))
    });
    let issuer = authority.shape_issuer("keycloak");
    let gw = GatewaySetup::new(&issuer)
        .authority("audiences", json!(["stella-api"]))
        .authority("token_profile", json!("keycloak"))
        .gateway("admin", json!({"operator_token_file": operators}))
        .service("echo", echo.addr())
        .start(&dir);
    let shaped = || {
        authority.shaped_token(
            "keycloak",
            &Shaped {
                resource: Some("stella-api".into()),
                ..Shaped::default()
            },
        )
    };
    let (token, other) = (shaped(), shaped());
    let sid = jwt_claims(&token)["sid"].as_str().expect("sid").to_owned();
    assert_ne!(jwt_claims(&other)["sid"], sid);

    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    revoke(&gw, "sid", &sid, 3600);
    assert_revoked(&gw, &echo, || gw.get_with_token("/items/2", &token));
    assert_reached_via_envelope(&gw.get_with_token("/items/3", &other));
    unrevoke(&gw, "sid", &sid);
    assert_reached_via_envelope(&gw.get_with_token("/items/4", &token));
}

#[test]
fn an_opaque_token_with_a_cached_introspection_answer_is_refused_once_its_client_is_revoked() {
    let (stack, _admin) = stack("revoke-opaque", |s| {
        s.authority("audiences", json!([API_AUDIENCE, OPAQUE_AUDIENCE]))
            .authority("client_id", json!(GATEWAY_CLIENT.id))
            .authority("client_secret", json!(GATEWAY_CLIENT.secret))
            .authority("introspection", json!({"cache_seconds": 300}))
    });
    let gw = &stack.gateway;
    let token = stack
        .authority
        .fresh_token(BEARER, &TokenRequest::resource(OPAQUE_AUDIENCE));
    assert!(!token.contains('.'), "not an opaque token");
    let introspections = || {
        stack.authority.counts()["introspections"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    let asked = introspections();
    revoke(gw, "client_id", "svc-bearer", 3600);
    // The answer is still cached (no new introspection), the identity in it
    // is revoked.
    assert_revoked(gw, &stack.echo, || gw.get_with_token("/items/2", &token));
    assert_eq!(introspections(), asked);
    unrevoke(gw, "client_id", "svc-bearer");
    assert_reached_via_envelope(&gw.get_with_token("/items/3", &token));
}

#[test]
fn a_revocation_lets_the_identity_back_in_once_it_expires() {
    let (stack, _admin) = stack("revoke-expiry", |s| s);
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    let added = revoke(gw, "client_id", "svc-bearer", 2);
    let expires_at = added["revocation"]["expires_at"]
        .as_u64()
        .expect("expires_at");
    assert_revoked(gw, &stack.echo, || gw.get_with_token("/items/2", &token));
    assert!(
        wait_until(Duration::from_secs(10), || {
            gw.get_with_token("/items/3", &token).status == 200
        }),
        "still refused after the expiry"
    );
    assert!(now() >= expires_at);
    // The sweep drops it from the list, with an audit line.
    assert!(wait_until(Duration::from_secs(15), || {
        admin(gw, "GET", "/revocations", Some(OPERATOR_TOKEN), None).json()["count"] == 0
    }));
    assert!(gw.wait_for_log(|l| l["target"] == "stella_gateway::audit" && l["action"] == "expire"));
}

#[test]
fn state_changing_admin_calls_need_the_operator_token_when_one_is_configured() {
    let (stack, admin_dir) = stack("revoke-operator", |s| s);
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    let body =
        json!({"kind": "client_id", "value": "svc-bearer", "for_seconds": 60, "reason": "x"});

    for (method, path, body) in [
        ("POST", "/revocations", Some(&body)),
        ("GET", "/revocations", None),
        ("DELETE", "/revocations/client_id/svc-bearer", None),
        ("POST", "/reload", None),
    ] {
        let r = admin(gw, method, path, None, body);
        assert_problem(&r, 401, "operator_token_required");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"stella-gateway-admin\""),
            "{method} {path}"
        );
        let r = admin(
            gw,
            method,
            path,
            Some("not-the-operator-token-0123456789abcdef"),
            body,
        );
        assert_problem(&r, 403, "operator_token_refused");
    }
    // Nothing was revoked; reads need no token.
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    for path in ["/metrics", "/readyz", "/healthz", "/config"] {
        assert_eq!(admin(gw, "GET", path, None, None).status, 200, "{path}");
    }
    let r = admin(gw, "POST", "/reload", Some(OPERATOR_TOKEN), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!gw
        .process
        .stderr_lines()
        .iter()
        .any(|l| l.contains("without a credential")));

    // A new token file is a reload away (here, the file watcher's): the
    // new token works, the old one is refused.
    const NEXT: &str = "e2e-operator-token-next-0123456789abcdef0123";
    std::fs::write(admin_dir.join("operators"), format!("bob {NEXT}\n")).unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || {
            admin(gw, "GET", "/revocations", Some(NEXT), None).status == 200
        }),
        "the new operator token was not taken"
    );
    assert_problem(
        &admin(gw, "GET", "/revocations", Some(OPERATOR_TOKEN), None),
        403,
        "operator_token_refused",
    );
    for line in gw.process.stderr_lines() {
        assert!(
            !line.contains(OPERATOR_TOKEN) && !line.contains(NEXT),
            "{line}"
        );
    }
}

#[test]
fn without_an_operator_token_admin_calls_work_as_before_and_the_start_warns() {
    let stack = Stack::start("revoke-open-admin");
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    assert_eq!(gw.reload().status, 200);
    let r = admin(
        gw,
        "POST",
        "/revocations",
        None,
        Some(
            &json!({"kind": "client_id", "value": "svc-bearer", "for_seconds": 60, "reason": "e2e"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["revocation"]["operator"], "operator");
    assert_revoked(gw, &stack.echo, || gw.get_with_token("/items/1", &token));
    assert!(gw.wait_for_log(|l| l["level"] == "WARN"
        && l["message"]
            .as_str()
            .is_some_and(|m| m.contains("without a credential"))));
}

/// `stella-gateway ARGS`: (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(gateway_binary())
        .args(args)
        .output()
        .expect("run stella-gateway");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_revoke_unrevoke_and_list_commands_work_and_exit_with_their_codes() {
    let (stack, admin_dir) = stack("revoke-cli", |s| s);
    let gw = &stack.gateway;
    let (_, own) = token_files(&admin_dir);
    let wrong = admin_dir.join("wrong-token");
    std::fs::write(&wrong, "not-the-operator-token-0123456789abcdef\n").unwrap();
    let url = format!("http://{}", gw.admin);
    let own = own.to_str().unwrap();
    let token = stack.authority.token(BEARER);
    let value_file = admin_dir.join("value");
    std::fs::write(&value_file, "svc-bearer\n").unwrap();

    let revoke = |extra: &[&str]| {
        let mut args = vec![
            "revoke",
            "--admin",
            &url,
            "--token-file",
            own,
            "--kind",
            "client_id",
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let (code, out, err) = revoke(&[
        "--value-file",
        value_file.to_str().unwrap(),
        "--for",
        "1h",
        "--reason",
        "leaked secret",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("added: client_id "), "{out}");
    assert!(!out.contains("svc-bearer"), "{out}");
    assert_revoked(gw, &stack.echo, || gw.get_with_token("/items/1", &token));
    let (code, out, _) = revoke(&["--value", "svc-bearer", "--for", "2h", "--reason", "still"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("replaced: "), "{out}");

    let (code, out, err) = cli(&["revocations", "list", "--admin", &url, "--token-file", own]);
    assert_eq!(code, Some(0), "{err}");
    let prefix = &sha256_hex("svc-bearer")[..12];
    assert!(
        out.contains(prefix) && out.contains("alice") && out.contains("still"),
        "{out}"
    );
    assert!(!out.contains("svc-bearer"), "{out}");
    assert!(out.contains("1 revocations"), "{out}");
    let (code, out, _) = cli(&[
        "revocations",
        "list",
        "--admin",
        &url,
        "--token-file",
        own,
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["count"], 1);

    // Refused by the gateway: 1. Not even sent: 2.
    let wrong = wrong.to_str().unwrap();
    let (code, _, err) = cli(&[
        "revocations",
        "list",
        "--admin",
        &url,
        "--token-file",
        wrong,
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("403"), "{err}");
    let (code, _, err) = cli(&["revocations", "list", "--admin", &url]);
    assert_eq!(code, Some(1));
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = revoke(&["--value", "x", "--for", "soon", "--reason", "r"]);
    assert_eq!(code, Some(2), "{err}");
    let mut bad_kind = vec!["revoke", "--admin", &url, "--token-file", own];
    bad_kind.extend_from_slice(&[
        "--kind", "email", "--value", "x", "--for", "1m", "--reason", "r",
    ]);
    assert_eq!(cli(&bad_kind).0, Some(1));
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let (code, _, err) = cli(&[
        "revocations",
        "list",
        "--admin",
        &nobody,
        "--token-file",
        own,
    ]);
    assert_eq!(code, Some(2), "{err}");
    let (code, _, _) = cli(&[
        "revocations",
        "list",
        "--admin",
        &url,
        "--token-file",
        "/nonexistent/token",
    ]);
    assert_eq!(code, Some(2));

    // Removed by the hash prefix the list showed; a second time: nothing.
    let unrevoke = || {
        cli(&[
            "unrevoke",
            "--admin",
            &url,
            "--token-file",
            own,
            "--kind",
            "client_id",
            "--hash",
            prefix,
        ])
    };
    let (code, out, err) = unrevoke();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("removed: client_id"), "{out}");
    assert_reached_via_envelope(&gw.get_with_token("/items/2", &token));
    let (code, _, err) = unrevoke();
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");

    // `reload` takes the token file too; without it the gateway says no.
    let (code, out, err) = cli(&["reload", "--admin", &url, "--token-file", own]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("unchanged"), "{out}");
    let (code, _, err) = cli(&["reload", "--admin", &url]);
    assert_eq!(code, Some(1));
    assert!(err.contains("401"), "{err}");
}

#[test]
fn revocations_survive_a_restart_through_the_state_file_and_expired_ones_do_not() {
    let dir = TempDir::new("revoke-restart");
    let (operators, _) = token_files(&dir);
    let state_file = dir.join("state/revocations.json");
    let (authority, echo) = std::thread::scope(|s| {
        let echo = s.spawn(Echo::gateway_enforced);
        (Authority::start(), echo.join().expect("echo started"))
    });
    let start = || {
        GatewaySetup::new(&authority.issuer)
            .service("echo", echo.addr())
            .gateway("admin", json!({"operator_token_file": operators}))
            .gateway("revocation", json!({"state_file": state_file}))
            .start(&dir)
    };
    let token = authority.token(BEARER);
    let mut first = start();
    assert_reached_via_envelope(&first.get_with_token("/items/1", &token));
    revoke(&first, "client_id", "svc-bearer", 3600);
    let short = revoke(&first, "tenant", "globex", 2);
    assert_revoked(&first, &echo, || first.get_with_token("/items/2", &token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(first.process.stop("TERM", Duration::from_secs(10)), Some(0));

    // The short one expires while the gateway is down.
    let expires_at = short["revocation"]["expires_at"].as_u64().unwrap();
    assert!(wait_until(Duration::from_secs(10), || now() >= expires_at));
    let second = start();
    assert_revoked(&second, &echo, || second.get_with_token("/items/3", &token));
    let listed = admin(&second, "GET", "/revocations", Some(OPERATOR_TOKEN), None).json();
    assert_eq!(listed["count"], 1, "{listed}");
    assert_eq!(listed["persistent"], true);
    assert_eq!(listed["revocations"][0]["kind"], "client_id");
    assert_reached_via_envelope(&second.get_with_token("/items/4", &authority.token(READONLY)));
}

/// Two gateways sharing one `redis-server` (the DPoP replay store, which
/// the revocation list shares by default), behind one address.
struct Pair {
    a: Gateway,
    b: Gateway,
    redis: RedisServer,
    echo: Echo,
    authority: Authority,
    _dir: TempDir,
}

impl Pair {
    fn start(label: &str) -> Pair {
        Pair::start_with(label, json!({}), json!({}))
    }

    /// Two nodes with their own `gateway.revocation` sections.
    fn start_with(label: &str, revocation_a: Value, revocation_b: Value) -> Pair {
        let dir = TempDir::new(label);
        let (operators, _) = token_files(&dir);
        let (authority, echo, redis) = std::thread::scope(|s| {
            let echo = s.spawn(Echo::gateway_enforced);
            let redis = s.spawn(RedisServer::start);
            let authority = Authority::start();
            (
                authority,
                echo.join().expect("echo started"),
                redis.join().expect("redis started"),
            )
        });
        let node = |revocation: Value| {
            GatewaySetup::new(&authority.issuer)
                .service("echo", echo.addr())
                .auth("dpop", json!({"replay_store": redis.url()}))
                .gateway("admin", json!({"operator_token_file": operators}))
                .gateway("revocation", revocation)
                .start(&dir)
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| node(revocation_a));
            let b = node(revocation_b);
            (a.join().expect("gateway a started"), b)
        });
        for node in [&a, &b] {
            node.wait_for_metric("stella_gateway_revocation_store_up", &[], 1.0);
        }
        Pair {
            a,
            b,
            redis,
            echo,
            authority,
            _dir: dir,
        }
    }
}

/// How long `node` takes to refuse (`refused`) or let through `token`,
/// polled; panics past `limit`.
#[track_caller]
fn time_until(node: &Gateway, token: &str, refused: bool, limit: Duration) -> Duration {
    let started = std::time::Instant::now();
    let ok = wait_until(limit, || {
        let status = node.get_with_token("/items/1", token).status;
        if refused {
            status == 401
        } else {
            status == 200
        }
    });
    let took = started.elapsed();
    assert!(
        ok,
        "not {} within {limit:?}",
        if refused { "refused" } else { "let through" }
    );
    took
}

#[test]
fn two_gateways_sharing_redis_both_refuse_a_revocation_made_on_one_within_a_second() {
    let p = Pair::start("revoke-pair");
    let token = p.authority.token(BEARER);
    let other = p.authority.token(READONLY);
    // Both verified the token already (cached).
    for node in [&p.a, &p.b] {
        assert_reached_via_envelope(&node.get_with_token("/items/1", &token));
    }
    let added = revoke(&p.a, "client_id", "svc-bearer", 3600);
    assert_eq!(added["shared"], true, "{added}");
    assert_revoked(&p.a, &p.echo, || p.a.get_with_token("/items/2", &token));
    let took = time_until(&p.b, &token, true, Duration::from_secs(1));
    eprintln!("the other node refused after {took:?}");
    assert_revoked(&p.b, &p.echo, || p.b.get_with_token("/items/3", &token));
    assert_reached_via_envelope(&p.b.get_with_token("/items/4", &other));
    let listed = admin(&p.b, "GET", "/revocations", Some(OPERATOR_TOKEN), None).json();
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["shared_store_up"], true);
    assert_eq!(listed["revocations"][0]["operator"], "alice");

    // Removed on the other node: back on both within a second.
    unrevoke(&p.b, "client_id", "svc-bearer");
    assert_reached_via_envelope(&p.b.get_with_token("/items/5", &token));
    time_until(&p.a, &token, false, Duration::from_secs(1));
}

#[test]
fn a_gateway_cut_off_from_the_store_keeps_its_list_and_catches_up_when_it_returns() {
    let mut p = Pair::start("revoke-pair-outage");
    let token = p.authority.token(BEARER);
    let other = p.authority.token(READONLY);
    revoke(&p.a, "client_id", "svc-bearer", 3600);
    time_until(&p.b, &token, true, Duration::from_secs(1));

    p.redis.kill();
    for node in [&p.a, &p.b] {
        assert!(
            wait_until(Duration::from_secs(10), || {
                node.metrics()
                    .value("stella_gateway_revocation_store_up", &[])
                    == Some(0.0)
            }),
            "store still up"
        );
        // The last copy keeps refusing.
        assert_revoked(node, &p.echo, || node.get_with_token("/items/1", &token));
    }
    // A change while the store is down: this node only, pending.
    let r = admin(
        &p.a,
        "POST",
        "/revocations",
        Some(OPERATOR_TOKEN),
        Some(
            &json!({"kind": "tenant", "value": "globex", "for_seconds": 3600, "reason": "outage"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["shared"], false);
    assert_revoked(&p.a, &p.echo, || p.a.get_with_token("/items/2", &other));
    assert_reached_via_envelope(&p.b.get_with_token("/items/3", &other));

    // The store comes back empty (no persistence): the nodes write their
    // lists back, the pending change included, and agree again.
    p.redis.restart();
    for node in [&p.a, &p.b] {
        node.wait_for_metric("stella_gateway_revocation_store_up", &[], 1.0);
    }
    time_until(&p.b, &other, true, Duration::from_secs(10));
    for node in [&p.a, &p.b] {
        assert_revoked(node, &p.echo, || node.get_with_token("/items/4", &token));
        assert_revoked(node, &p.echo, || node.get_with_token("/items/5", &other));
        let listed = admin(node, "GET", "/revocations", Some(OPERATOR_TOKEN), None).json();
        assert_eq!(listed["count"], 2, "{listed}");
    }
}

/// `gateway.revocation.when_stale`: a node whose copy of the shared list is
/// older than `stale_after_seconds` refuses every request with a credential
/// under `refuse` (503, `Retry-After`, reason `revocation_list_stale`, the
/// service not called) and still serves anonymous ones; under the default
/// it keeps checking against its last copy. Both recover by themselves
/// when the store is back.
#[test]
fn past_its_bound_a_node_cut_off_from_the_store_refuses_credentials_only_when_told_to() {
    let mut p = Pair::start_with(
        "revoke-stale",
        json!({"when_stale": "refuse", "stale_after_seconds": 5}),
        json!({"stale_after_seconds": 5}),
    );
    let (refusing, keeping) = (&p.a, &p.b);
    let token = p.authority.token(BEARER);
    let revoked = p.authority.token(READONLY);
    revoke(refusing, "client_id", "svc-readonly", 3600);
    time_until(keeping, &revoked, true, Duration::from_secs(1));
    for node in [refusing, keeping] {
        assert_reached_via_envelope(&node.get_with_token("/items/1", &token));
        assert_eq!(metric(node, "stella_gateway_revocation_stale", &[]), 0.0);
    }

    p.redis.kill();
    let killed = std::time::Instant::now();
    for node in [refusing, keeping] {
        assert!(
            wait_until(Duration::from_secs(15), || {
                metric(node, "stella_gateway_revocation_stale", &[]) == 1.0
            }),
            "not stale"
        );
    }
    let waited = killed.elapsed();
    assert!(waited >= Duration::from_secs(4), "stale after {waited:?}");
    assert!(metric(refusing, "stella_gateway_revocation_store_age_seconds", &[]) >= 5.0);

    // refuse: a credential gets 503, whatever it is; no credential passes.
    let before = p.echo.requests();
    for r in [
        refusing.get_with_token("/items/2", &token),
        refusing.get_with_token("/items/3", &revoked),
    ] {
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("5"), "{r:?}");
        assert_eq!(r.json()["error"], "temporarily_unavailable", "{}", r.text());
        assert_eq!(refusing.reason_for(&r), "revocation_list_stale");
    }
    assert_eq!(p.echo.requests(), before, "the service was called");
    assert_eq!(refusing.get("/public/x", &[]).status, 200);
    assert!(refusing.wait_for_log(|l| l["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("revocation list stale"))
        && l["when_stale"] == "refuse"));

    // keep_last_copy (the default): the last copy keeps deciding.
    assert_reached_via_envelope(&keeping.get_with_token("/items/4", &token));
    assert_revoked(keeping, &p.echo, || {
        keeping.get_with_token("/items/5", &revoked)
    });
    assert_eq!(keeping.get("/public/x", &[]).status, 200);

    // The store is back (empty: the nodes write their lists back): the
    // refusing node serves again by itself, and the revocation holds.
    p.redis.restart();
    let back = std::time::Instant::now();
    time_until(refusing, &token, false, Duration::from_secs(10));
    eprintln!(
        "serving again {:?} after the store came back",
        back.elapsed()
    );
    for node in [refusing, keeping] {
        assert_eq!(metric(node, "stella_gateway_revocation_stale", &[]), 0.0);
        assert_reached_via_envelope(&node.get_with_token("/items/6", &token));
        assert_revoked(node, &p.echo, || node.get_with_token("/items/7", &revoked));
    }
}

/// `jti`, `client_id` and `sid` are each Authority's own names: an entry
/// may name the issuer (`"issuer"` in `POST /revocations`, `--issuer` of
/// the CLI) and then leaves the same name at another Authority alone;
/// without one it refuses every issuer's. Two real Authorities issue
/// tokens for a client of the same id.
#[test]
fn a_client_id_revoked_for_one_issuer_leaves_the_same_client_of_another_issuer_alone() {
    let dir = TempDir::new("revoke-per-issuer");
    let (operators, _) = token_files(&dir);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Authority::start);
        let b = Authority::start();
        (a.join().expect("authority a started"), b)
    });
    let echo = Echo::gateway_enforced();
    let gw = GatewaySetup::new(&a.issuer)
        .auth(
            "authorities",
            json!([{
                "issuer": b.issuer,
                "require_https_metadata": false,
                "audiences": [API_AUDIENCE],
            }]),
        )
        .gateway("admin", json!({"operator_token_file": operators}))
        .service("echo", echo.addr())
        .start(&dir);
    let (from_a, from_b) = (a.token(BEARER), b.token(BEARER));
    for token in [&from_a, &from_b] {
        assert_reached_via_envelope(&gw.get_with_token("/items/1", token));
    }
    let body = |issuer: &str, kind: &str, value: &str| {
        json!({"kind": kind, "value": value, "issuer": issuer, "for_seconds": 3600,
            "reason": "e2e incident 7"})
    };

    // B's svc-bearer only.
    let r = admin(
        &gw,
        "POST",
        "/revocations",
        Some(OPERATOR_TOKEN),
        Some(&body(&b.issuer, "client_id", "svc-bearer")),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["revocation"]["issuer"], json!(b.issuer));
    assert_revoked(&gw, &echo, || gw.get_with_token("/items/2", &from_b));
    assert_reached_via_envelope(&gw.get_with_token("/items/3", &from_a));

    // An issuer that is not a configured Authority, and an issuer on a
    // kind that has none: refused, nothing added.
    for (request, says) in [
        (
            body("https://stranger.example", "client_id", "svc-bearer"),
            "issuer is not one of the configured Authorities",
        ),
        (
            body(&a.issuer, "tenant", "acme"),
            "issuer is only for kinds sub, jti, client_id and sid",
        ),
    ] {
        let r = admin(
            &gw,
            "POST",
            "/revocations",
            Some(OPERATOR_TOKEN),
            Some(&request),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(r.text().contains(says), "{}", r.text());
    }

    // Without an issuer: every issuer's svc-bearer. Removing B's entry
    // (`?issuer=`) leaves that one in force for both.
    revoke(&gw, "client_id", "svc-bearer", 3600);
    assert_revoked(&gw, &echo, || gw.get_with_token("/items/4", &from_a));
    let path = format!(
        "/revocations/client_id/svc-bearer?issuer={}",
        encode(&b.issuer)
    );
    let r = admin(&gw, "DELETE", &path, Some(OPERATOR_TOKEN), None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["removed"].as_array().map(Vec::len), Some(1));
    assert_revoked(&gw, &echo, || gw.get_with_token("/items/5", &from_b));
    unrevoke(&gw, "client_id", "svc-bearer");
    assert_reached_via_envelope(&gw.get_with_token("/items/6", &from_b));

    // A jti of A's, for A only (the token's own jti).
    let jti = jwt_claims(&from_a)["jti"].as_str().unwrap().to_owned();
    let r = admin(
        &gw,
        "POST",
        "/revocations",
        Some(OPERATOR_TOKEN),
        Some(&body(&a.issuer, "jti", &jti)),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_revoked(&gw, &echo, || gw.get_with_token("/items/7", &from_a));
    assert_reached_via_envelope(&gw.get_with_token("/items/8", &from_b));
}
