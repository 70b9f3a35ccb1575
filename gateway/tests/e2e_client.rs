//! The client commands end to end: `stella-gateway token`, `call` and
//! `smoke` run as processes against the real Authority, the real gateway
//! binary and the real echo services.
//!
//! Asserted: what the commands print and their exit codes, the token the
//! Authority issued (its `cnf.jkt`), the cache and key files (contents,
//! mode 0600, reuse while the Authority is down), what the echo service
//! received (envelope, `auth_method`, confirmation), the gateway's nonce
//! counter, and smoke's rows and summary.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The output of one run of the gateway binary.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(args: &[&str]) -> Run {
    let out = Command::new(gateway_binary())
        .args(args)
        .env_remove("STELLA_GATEWAY_PROFILES")
        .output()
        .expect("run stella-gateway");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Writes a profiles file with `profiles` (name, client, mode) and each
/// client's secret file next to it.
fn write_profiles(dir: &Path, issuer: &str, profiles: &[(&str, Client, &str)]) -> PathBuf {
    let mut doc = serde_json::Map::new();
    for (name, client, mode) in profiles {
        let secret = format!("{}.secret", client.id);
        std::fs::write(dir.join(&secret), format!("{}\n", client.secret)).unwrap();
        doc.insert(
            (*name).to_owned(),
            json!({"issuer": issuer, "client_id": client.id, "secret_file": secret, "mode": mode}),
        );
    }
    let path = dir.join("profiles.yaml");
    let text = serde_yaml::to_string(&json!({ "profiles": doc })).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `curl -i` output: status and body as JSON.
fn parse_call(out: &Run) -> (u16, Value) {
    assert_eq!(
        out.code,
        Some(0),
        "stdout {} stderr {}",
        out.stdout,
        out.stderr
    );
    let status: u16 = out
        .stdout
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {}", out.stdout));
    let body = out
        .stdout
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn token_issues_bearer_and_dpop_tokens_caches_them_0600_and_reuses_them_without_the_authority() {
    let dir = TempDir::new("client-token");
    let mut authority = Authority::start();
    let profiles = write_profiles(
        dir.path(),
        &authority.issuer,
        &[("bearer", BEARER, "bearer"), ("dpop", DPOP, "dpop")],
    );
    let p = profiles.to_str().unwrap();

    // Bearer: a new token, summarized without the token itself.
    let first = run(&["token", "--profiles", p, "--profile", "bearer"]);
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    assert!(
        first
            .stdout
            .starts_with("Bearer token for svc-bearer (unbound)")
            && first.stdout.contains("new, cached in"),
        "{}",
        first.stdout
    );
    let cache: Value =
        serde_json::from_slice(&std::fs::read(dir.join("bearer.token.json")).unwrap()).unwrap();
    let bearer_token = cache["access_token"].as_str().unwrap().to_owned();
    assert_eq!(cache["token_type"], "Bearer");
    assert_eq!(jwt_claims(&bearer_token)["client_id"], "svc-bearer");
    assert!(jwt_claims(&bearer_token).get("cnf").is_none());
    for out in [&first.stdout, &first.stderr] {
        assert!(
            !out.contains(&bearer_token) && !out.contains(BEARER.secret),
            "{out}"
        );
    }

    // DPoP: a key is generated (0600), the token is bound to it.
    let dpop = run(&["token", "--profiles", p, "--profile", "dpop"]);
    assert_eq!(dpop.code, Some(0), "{}", dpop.stderr);
    let key_file = dir.join("dpop.dpop-key.json");
    let key = DpopKey::from_private_jwk(
        &serde_json::from_slice(&std::fs::read(&key_file).unwrap()).unwrap(),
    );
    assert!(
        dpop.stdout.starts_with(&format!(
            "DPoP-bound token for svc-dpop (bound to {})",
            key.thumbprint()
        )),
        "{}",
        dpop.stdout
    );
    let cache_file = dir.join("dpop.token.json");
    let cached = std::fs::read(&cache_file).unwrap();
    let cache: Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(cache["token_type"], "DPoP");
    let dpop_token = cache["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_claims(&dpop_token)["cnf"]["jkt"], key.thumbprint());
    #[cfg(unix)]
    for file in [&key_file, &cache_file, &dir.join("bearer.token.json")] {
        assert_eq!(mode_of(file), 0o600, "{}", file.display());
    }

    // With the Authority gone, the cached tokens still serve: no request
    // is made for them. `--print` prints exactly the cached token.
    authority.kill();
    let again = run(&["token", "--profiles", p, "--profile", "dpop", "--print"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert_eq!(again.stdout.trim(), dpop_token);
    assert_eq!(
        std::fs::read(&cache_file).unwrap(),
        cached,
        "cache rewritten"
    );
    let again = run(&["token", "--profiles", p, "--profile", "bearer"]);
    assert_eq!(again.code, Some(0), "{}", again.stderr);
    assert!(again.stdout.contains("from the cache"), "{}", again.stdout);
    // A new token needs the Authority: --force fails, and says where.
    let forced = run(&["token", "--profiles", p, "--profile", "bearer", "--force"]);
    assert_eq!(forced.code, Some(1), "{}", forced.stdout);
    assert!(
        forced.stderr.contains("/.well-known/openid-configuration"),
        "{}",
        forced.stderr
    );
    assert!(!forced.stderr.contains(BEARER.secret), "{}", forced.stderr);
}

const NONCE_ROUTE: &str = "  # Added by e2e_client: DPoP with server nonces.
  - id: echo-nonce
    path: /nonce/**
    policy:
      sender_constraint: dpop
      dpop_nonce: true
";

#[test]
fn call_reaches_dpop_routes_with_fresh_proofs_retries_with_the_nonce_and_switches_to_bearer() {
    let policies_dir = TempDir::new("client-call-policies");
    let policies = policies_with_echo_routes(&policies_dir, NONCE_ROUTE);
    let s = Stack::start_with("client-call", |setup| {
        setup
            .public_origin("http://127.0.0.1:{http}")
            .policies(&policies)
            .auth(
                "dpop",
                json!({"nonce_secret": "e2e-dpop-nonce-secret-0123456789abcdef"}),
            )
    });
    let gw = &s.gateway;
    let profiles = write_profiles(s.dir.path(), &s.authority.issuer, &[("api", DPOP, "dpop")]);
    let p = profiles.to_str().unwrap();
    let key = || {
        DpopKey::from_private_jwk(
            &serde_json::from_slice(&std::fs::read(s.dir.join("api.dpop-key.json")).unwrap())
                .unwrap(),
        )
    };

    // A DPoP route: the service is reached through the envelope, as the
    // holder of the key; the query is not part of `htu`.
    let url = format!("{}/dpop/1?x=1", gw.origin());
    let out = run(&["call", "--profiles", p, "--profile", "api", "GET", &url]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}", out.stdout);
    assert_eq!(body["source"], "envelope", "{body}");
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert_eq!(
        body["identity"]["confirmation"]["jkt"],
        key().thumbprint(),
        "{body}"
    );
    assert!(!out.stderr.contains("nonce"), "{}", out.stderr);
    // A second call reuses the token with a new proof (a replayed proof
    // would be refused).
    let cache_file = s.dir.join("api.token.json");
    let cached = std::fs::read(&cache_file).unwrap();
    let out = run(&["call", "--profiles", p, "--profile", "api", "GET", &url]);
    assert_eq!(parse_call(&out).0, 200, "{}", out.stdout);
    assert_eq!(std::fs::read(&cache_file).unwrap(), cached, "token renewed");
    // A cached token the gateway refuses (here: its signature broken) is
    // replaced once by a new one.
    let mut cache: Value = serde_json::from_slice(&cached).unwrap();
    let broken = format!("{}AAAA", cache["access_token"].as_str().unwrap());
    cache["access_token"] = json!(broken);
    std::fs::write(&cache_file, cache.to_string()).unwrap();
    let out = run(&["call", "--profiles", p, "--profile", "api", "GET", &url]);
    assert_eq!(parse_call(&out).0, 200, "{}", out.stdout);
    assert!(
        out.stderr.contains("cached token was refused"),
        "{}",
        out.stderr
    );
    let renewed: Value = serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    assert_ne!(renewed["access_token"], json!(broken));

    // A route that demands a server nonce: the first answer is 401
    // use_dpop_nonce, the retry with the nonce passes.
    let url = format!("{}/nonce/1", gw.origin());
    let out = run(&["call", "--profiles", p, "--profile", "api", "GET", &url]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}", out.stdout);
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert!(
        out.stderr.contains("asked for a DPoP nonce"),
        "{}",
        out.stderr
    );
    assert_eq!(
        gw.metrics().get("stella_gateway_dpop_nonce_miss_total"),
        1.0
    );

    // The same profile switched to Bearer (another client): a new token,
    // sent as Bearer; the DPoP route now refuses it.
    write_profiles(
        s.dir.path(),
        &s.authority.issuer,
        &[("api", BEARER, "bearer")],
    );
    let url = format!("{}/items/1", gw.origin());
    let out = run(&["call", "--profiles", p, "--profile", "api", "GET", &url]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}", out.stdout);
    assert_eq!(body["source"], "envelope", "{body}");
    assert_eq!(body["identity"]["auth_method"], "bearer", "{body}");
    assert_eq!(body["identity"]["client_id"], "svc-bearer", "{body}");
    let url = format!("{}/dpop/1", gw.origin());
    let out = run(&[
        "call",
        "--profiles",
        p,
        "--profile",
        "api",
        "--fail",
        "GET",
        &url,
    ]);
    assert_eq!(out.code, Some(22), "{}", out.stdout);
    assert!(out.stdout.starts_with("HTTP/1.1 401 "), "{}", out.stdout);
}

const SMOKE_ECHO: &str = "service: echo
routes:
  - id: echo-public
    path: /public/**
    policy: {anonymous: true}
  - id: echo-items-read
    path: /items/**
    methods: [GET]
    policy: {scopes_any: [echo.read]}
    smoke: {profile: reader}
  - id: echo-items-write
    path: /items/**
    methods: [POST]
    policy: {scopes_all: [echo.write]}
    smoke: {path: /items/42, profile: writer, status: 200}
  - id: echo-admin
    path: /admin/**
    policy: {scopes_all: [admin]}
    smoke: {profile: reader, status: 403}
  - id: echo-dpop
    path: /dpop/**
    policy: {sender_constraint: dpop}
    smoke: {profile: dpop}
";

const SMOKE_HYBRID: &str = "service: echo-hybrid
routes:
  - id: hybrid-read
    path: /hybrid/**
    policy: {scopes_any: [echo.read]}
    smoke: {profile: reader}
";

#[test]
fn smoke_passes_on_a_green_stack_and_fails_the_row_of_a_service_whose_upstream_is_down() {
    let policies_dir = TempDir::new("client-smoke-policies");
    std::fs::write(policies_dir.join("echo.yaml"), SMOKE_ECHO).unwrap();
    std::fs::write(policies_dir.join("echo-hybrid.yaml"), SMOKE_HYBRID).unwrap();
    let mut hybrid = Echo::hybrid();
    let s = Stack::start_with("client-smoke", |setup| {
        setup
            .public_origin("http://127.0.0.1:{http}")
            .policies(policies_dir.path())
            .service("echo-hybrid", hybrid.addr())
    });
    let profiles = write_profiles(
        s.dir.path(),
        &s.authority.issuer,
        &[
            ("reader", READONLY, "bearer"),
            ("writer", BEARER, "bearer"),
            ("dpop", DPOP, "dpop"),
        ],
    );
    let p = profiles.to_str().unwrap();
    let config = s.gateway.config.to_str().unwrap().to_owned();

    // All green: one row per probe, the summary, exit 0.
    let out = run(&["smoke", "--config", &config, "--profiles", p]);
    eprintln!("{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let last = out.stdout.lines().last().unwrap_or_default();
    assert_eq!(
        last, "PASS 11 rows: ok=11 failed=0 2xx=5 3xx=0 4xx=6 5xx=0 error=0",
        "{}",
        out.stdout
    );
    assert!(out.stdout.starts_with("route "), "{}", out.stdout);

    // Smoke reads the configuration as `run` does: a Gateway__ environment
    // override of policies_dir is the folder it probes.
    let empty = TempDir::new("client-smoke-empty");
    let text = std::fs::read_to_string(&config).unwrap();
    let moved = s.dir.join("gateway-other-policies.yaml");
    let dir_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("policies_dir:"))
        .expect("policies_dir in the written configuration");
    let indent = &dir_line[..dir_line.len() - dir_line.trim_start().len()];
    std::fs::write(
        &moved,
        text.replace(
            dir_line,
            &format!("{indent}policies_dir: {}", empty.path().display()),
        ),
    )
    .unwrap();
    let moved = moved.to_str().unwrap();
    let without = run(&["smoke", "--config", moved, "--profiles", p]);
    assert!(
        !without.stdout.contains("echo-items-read"),
        "{}",
        without.stdout
    );
    let overridden = Command::new(gateway_binary())
        .args(["smoke", "--config", moved, "--profiles", p])
        .env_remove("STELLA_GATEWAY_PROFILES")
        .env("Gateway__Policies_Dir", policies_dir.path())
        .output()
        .expect("run stella-gateway");
    let stdout = String::from_utf8_lossy(&overridden.stdout);
    assert_eq!(overridden.status.code(), Some(0), "{stdout}");
    assert_eq!(
        stdout.lines().last().unwrap_or_default(),
        "PASS 11 rows: ok=11 failed=0 2xx=5 3xx=0 4xx=6 5xx=0 error=0",
        "{stdout}"
    );
    let dpop_row = out
        .stdout
        .lines()
        .find(|l| l.starts_with("echo-dpop ") && l.contains(" dpop "))
        .unwrap_or_else(|| panic!("{}", out.stdout));
    assert!(dpop_row.ends_with(" ok"), "{dpop_row}");

    // JSON, only the routes a glob names.
    let out = run(&[
        "smoke",
        "--config",
        &config,
        "--profiles",
        p,
        "--format",
        "json",
        "--routes",
        "echo-items-*",
    ]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).expect("json output");
    let rows = doc["rows"].as_array().unwrap();
    let seen: Vec<(String, String, String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["route"].as_str().unwrap().to_owned(),
                r["path"].as_str().unwrap().to_owned(),
                r["credential"].as_str().unwrap().to_owned(),
                r["got"].as_u64().unwrap(),
            )
        })
        .collect();
    let row = |r: &str, p: &str, c: &str, g: u64| (r.to_owned(), p.to_owned(), c.to_owned(), g);
    assert_eq!(
        seen,
        vec![
            row("echo-items-read", "/items/smoke", "none", 401),
            row("echo-items-read", "/items/smoke", "reader", 200),
            row("echo-items-write", "/items/42", "none", 401),
            row("echo-items-write", "/items/42", "writer", 200),
        ]
    );
    assert!(rows.iter().all(|r| r["ok"] == true), "{doc:#}");
    assert_eq!(doc["summary"]["5xx"], 0, "{doc:#}");

    // The hybrid service's upstream goes down: its credentialed row gets
    // the gateway's 5xx and fails, the others still pass; exit 1.
    hybrid.kill();
    eprintln!(
        "{}",
        run(&["smoke", "--config", &config, "--profiles", p]).stdout
    );
    let out = run(&[
        "smoke",
        "--config",
        &config,
        "--profiles",
        p,
        "--format",
        "json",
    ]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    let doc: Value = serde_json::from_str(&out.stdout).expect("json output");
    let failed: Vec<&Value> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ok"] == false)
        .collect();
    assert_eq!(failed.len(), 1, "{doc:#}");
    assert_eq!(failed[0]["route"], "hybrid-read");
    assert_eq!(failed[0]["credential"], "reader");
    let got = failed[0]["got"].as_u64().unwrap();
    assert!((500..600).contains(&got), "{doc:#}");
    assert_eq!(doc["summary"]["5xx"], 1, "{doc:#}");
    assert_eq!(doc["summary"]["failed"], 1, "{doc:#}");
    let out = run(&[
        "smoke",
        "--config",
        &config,
        "--profiles",
        p,
        "--format",
        "csv",
    ]);
    assert_eq!(out.code, Some(1));
    assert!(
        out.stdout.lines().any(
            |l| l.starts_with("hybrid-read,GET,/hybrid/smoke,reader,2xx,5")
                && l.contains(",false,")
        ),
        "{}",
        out.stdout
    );
}

#[test]
fn call_presents_the_profile_certificate_with_its_certificate_bound_token_over_tls() {
    let pki_dir = TempDir::new("client-mtls-pki");
    let pki = Pki::generate(&pki_dir);
    let s = Stack::start_with("client-mtls", |setup| setup.tls(pki.listener("optional")));
    // The test Authority reads the client certificate from a test-only
    // header, not from TLS, so the test gets the bound token and seeds the
    // profile's cache with it; `call` must find it (same issuer, client,
    // mode and certificate thumbprint) instead of asking for another.
    let token = s
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&pki.client_cert));
    let x5t = jwt_claims(&token)["cnf"]["x5t#S256"].clone();
    assert!(x5t.is_string(), "{}", jwt_claims(&token));
    std::fs::write(s.dir.join("svc-mtls.secret"), MTLS.secret).unwrap();
    let profile = |cert: &Path, key: &Path| {
        json!({
            "issuer": s.authority.issuer, "client_id": MTLS.id, "secret_file": "svc-mtls.secret",
            "mode": "mtls", "ca_file": pki.ca, "cert_file": cert, "cert_key_file": key,
        })
    };
    let profiles = s.dir.join("profiles.yaml");
    let text = json!({"profiles": {"mtls": profile(&pki.client_cert, &pki.client_key)}});
    std::fs::write(&profiles, serde_yaml::to_string(&text).unwrap()).unwrap();
    let cache = json!({
        "issuer": s.authority.issuer, "client_id": MTLS.id, "mode": "mtls", "scope": null,
        "resource": null, "binding": x5t, "token_type": "Bearer", "expires_at": now() + 200,
        "access_token": token,
    });
    std::fs::write(s.dir.join("mtls.token.json"), cache.to_string()).unwrap();
    let p = profiles.to_str().unwrap();
    let url = format!("https://{}/mtls/1", s.gateway.tls.expect("tls listener"));

    let out = run(&["call", "--profiles", p, "--profile", "mtls", "GET", &url]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(body["source"], "envelope", "{body}");
    assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
    assert_eq!(body["identity"]["confirmation"]["x5t#S256"], x5t, "{body}");

    // Another certificate: the cached token is bound to the first, so it is
    // not reused; a new one is asked for (and refused by the test
    // Authority, which sees no certificate in its header).
    let text =
        json!({"profiles": {"mtls": profile(&pki.other_client_cert, &pki.other_client_key)}});
    std::fs::write(&profiles, serde_yaml::to_string(&text).unwrap()).unwrap();
    let out = run(&["call", "--profiles", p, "--profile", "mtls", "GET", &url]);
    assert_eq!(out.code, Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.starts_with("token: http://"), "{}", out.stderr);
    assert!(!out.stderr.contains(MTLS.secret), "{}", out.stderr);
}

#[test]
fn token_retries_a_dpop_token_request_with_the_nonce_the_authority_demands() {
    let dir = TempDir::new("client-token-nonce");
    let authority = Authority::start_with(AuthorityOptions {
        dpop_nonce: true,
        ..AuthorityOptions::default()
    });
    let profiles = write_profiles(dir.path(), &authority.issuer, &[("dpop", DPOP, "dpop")]);
    let out = run(&[
        "token",
        "--profiles",
        profiles.to_str().unwrap(),
        "--profile",
        "dpop",
    ]);
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("the Authority asked for a DPoP nonce"),
        "{}",
        out.stderr
    );
    let key = DpopKey::from_private_jwk(
        &serde_json::from_slice(&std::fs::read(dir.join("dpop.dpop-key.json")).unwrap()).unwrap(),
    );
    let cache: Value =
        serde_json::from_slice(&std::fs::read(dir.join("dpop.token.json")).unwrap()).unwrap();
    assert_eq!(cache["token_type"], "DPoP");
    let token = cache["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(token)["cnf"]["jkt"], key.thumbprint());
}

const SMOKE_TLS: &str = "service: echo
routes:
  - id: echo-dpop
    path: /dpop/**
    policy: {sender_constraint: dpop}
  - id: echo-mtls
    path: /mtls/**
    policy: {sender_constraint: mtls}
    smoke: {profile: workload}
  - id: echo-svc
    path: /svc/**
    policy: {spiffe_ids: [spiffe://stella.test/ns/default/sa/orders]}
    smoke: {profile: svid}
";

/// The local stack's smoke run in small (scripts/dev-up.sh and
/// config/smoke/profiles.yaml): DPoP probes on the plain listener, and the
/// certificate routes over TLS with the profiles' own `base_url`: a token
/// bound at the Authority's mTLS listener to the certificate presented
/// there (`mode: mtls`), and the SPIFFE certificate alone (`mode:
/// certificate`). A stale cached token is replaced once.
#[test]
fn smoke_probes_certificate_routes_over_tls_with_a_token_bound_at_the_authority_mtls_listener() {
    let pki_dir = TempDir::new("client-smoke-tls-pki");
    let pki = Pki::generate(&pki_dir);
    let policies_dir = TempDir::new("client-smoke-tls-policies");
    std::fs::write(policies_dir.join("echo.yaml"), SMOKE_TLS).unwrap();
    let dir = TempDir::new("client-smoke-tls");
    let echo = Echo::gateway_enforced();
    let authority = Authority::start_with(AuthorityOptions {
        mtls_listener: Some(AuthorityTls {
            cert: pki.server_cert.clone(),
            key: pki.server_key.clone(),
            ca: pki.ca.clone(),
        }),
        ..Default::default()
    });
    let alias = authority.mtls.clone().expect("mtls listener origin");
    let gateway = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .public_origin("http://127.0.0.1:{http}")
        .policies(policies_dir.path())
        .tls(pki.listener("optional"))
        .start(&dir);
    let tls = format!("https://{}", gateway.tls.expect("tls listener"));
    for client in [DPOP, MTLS] {
        std::fs::write(
            dir.join(&format!("{}.secret", client.id)),
            format!("{}\n", client.secret),
        )
        .unwrap();
    }
    let profiles = dir.join("profiles.yaml");
    let text = json!({"profiles": {
        "dpop": {"issuer": authority.issuer, "client_id": DPOP.id,
                 "secret_file": format!("{}.secret", DPOP.id), "mode": "dpop"},
        "workload": {"issuer": authority.issuer, "client_id": MTLS.id,
                     "secret_file": format!("{}.secret", MTLS.id), "mode": "mtls",
                     "cert_file": pki.spiffe_cert, "cert_key_file": pki.spiffe_key,
                     "ca_file": pki.ca, "base_url": tls},
        "svid": {"mode": "certificate", "cert_file": pki.spiffe_cert,
                 "cert_key_file": pki.spiffe_key, "ca_file": pki.ca, "base_url": tls},
    }});
    std::fs::write(&profiles, serde_yaml::to_string(&text).unwrap()).unwrap();
    let p = profiles.to_str().unwrap();
    let config = gateway.config.to_str().unwrap().to_owned();
    let smoke = || {
        run(&[
            "smoke",
            "--config",
            &config,
            "--profiles",
            p,
            "--profile",
            "dpop",
        ])
    };

    let out = smoke();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout.lines().last().unwrap_or_default(),
        "PASS 6 rows: ok=6 failed=0 2xx=3 3xx=0 4xx=3 5xx=0 error=0",
        "{}",
        out.stdout
    );
    let row = |route: &str, credential: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{route} ")) && l.contains(&format!(" {credential} ")))
            .unwrap_or_else(|| panic!("no {route} {credential} row: {}", out.stdout))
            .to_owned()
    };
    assert!(
        row("echo-mtls", "workload").ends_with(" ok"),
        "{}",
        out.stdout
    );
    assert!(row("echo-svc", "svid").ends_with(" ok"), "{}", out.stdout);
    // What the service receives with the same profiles (`call`): a
    // certificate-bound token (bound at the Authority's mTLS listener; the
    // test-only header is never sent), and the certificate alone.
    let out = run(&[
        "call",
        "--profiles",
        p,
        "--profile",
        "workload",
        "GET",
        &format!("{tls}/mtls/1"),
    ]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}", out.stdout);
    let mtls = &body["identity"];
    assert_eq!(mtls["auth_method"], "mtls", "{body}");
    assert_eq!(mtls["client_id"], MTLS.id, "{body}");
    assert!(mtls["confirmation"]["x5t#S256"].is_string(), "{body}");
    let out = run(&[
        "call",
        "--profiles",
        p,
        "--profile",
        "svid",
        "GET",
        &format!("{tls}/svc/1"),
    ]);
    let (status, body) = parse_call(&out);
    assert_eq!(status, 200, "{}", out.stdout);
    assert_eq!(body["identity"]["auth_method"], "spiffe", "{body}");
    assert_eq!(body["identity"]["subject"], SPIFFE_ID, "{body}");
    assert!(alias.starts_with("https://127.0.0.1:"), "{alias}");

    // `token` on a certificate profile: no token, a clear refusal.
    let out = run(&["token", "--profiles", p, "--profile", "svid"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.stderr.contains("mode certificate"), "{}", out.stderr);

    // A cached token the gateway refuses (here: no longer valid for the
    // Authority's keys, simulated by a token of another client's binding
    // written over the cache) is replaced once, and the row passes.
    let cache = dir.join("dpop.token.json");
    let mut cached: Value =
        serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    let token = cached["access_token"].as_str().unwrap().to_owned();
    let (head, rest) = token.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let forged = format!("{head}.{}.{sig}", b64url(br#"{"sub":"nobody"}"#));
    cached["access_token"] = Value::String(forged);
    std::fs::write(&cache, cached.to_string()).unwrap();
    let out = smoke();
    assert_eq!(out.code, Some(0), "{}\n{}", out.stdout, out.stderr);
    let renewed: Value = serde_json::from_str(&std::fs::read_to_string(&cache).unwrap()).unwrap();
    assert_ne!(renewed["access_token"], cached["access_token"]);
}
