//! The command line as an operator uses it: `check`, `keys generate`,
//! `envelope mint`, run as the real binary with a controlled environment.

use std::path::PathBuf;
use std::process::{Command, Output};

fn gateway(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stella-gateway"));
    cmd.env_clear().args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run stella-gateway")
}

fn repo(path: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
        .display()
        .to_string()
}

fn temp_config(name: &str, yaml: &str) -> String {
    let dir = std::env::temp_dir().join(format!("stella-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("gateway.yaml");
    std::fs::write(&path, yaml).unwrap();
    path.display().to_string()
}

const MINIMAL: &str = r#"
gateway:
  listeners: {http: "127.0.0.1:8080"}
  auth:
    authority:
      issuer: https://authority.example
      audiences: [api]
router:
  identity_envelope_signing_key: "a-secret-value-that-is-at-least-32-bytes"
services:
  - {name: orders, upstreams: ["orders:8080"]}
"#;

const MINIMAL_WITHOUT_KEY: &str = r#"
gateway:
  listeners: {http: "127.0.0.1:8080"}
  auth:
    authority:
      issuer: https://authority.example
      audiences: [api]
services:
  - {name: orders, upstreams: ["orders:8080"]}
"#;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn local_config_is_valid_and_printed_with_the_key_redacted() {
    let out = gateway(&["check", "--config", &repo("config/local.yaml")], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("identity_envelope_signing_key: <redacted>"),
        "{text}"
    );
    assert!(!text.contains("hs256:"), "{text}");
    assert!(text.contains("on_missing_authorization: RequireAuthenticated"));
}

#[test]
fn every_error_is_reported_with_its_key_path_and_exit_code_2() {
    let path = temp_config(
        "errors",
        r#"
gateway:
  listenerz: {}
  auth:
    authority:
      issuer: http://authority.example
      algorithms: [ES256, none, HS256]
router:
  on_missing_authorization: Sometimes
  identity_envelope_signing_key: "tiny-secret"
services:
  - {name: Orders, upstreams: ["no-port"], colour: blue}
"#,
    );
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "gateway.listenerz: unknown key",
        "services[0].colour: unknown key",
        "gateway.listeners: needs an http or a tls listener",
        "gateway.auth.authority.issuer: must use https",
        "gateway.auth.authority.audiences: must list at least one",
        "gateway.auth.authority.algorithms[1]: is not accepted",
        "gateway.auth.authority.algorithms[2]: is not accepted",
        "router.on_missing_authorization: must be Deny, RequireAuthenticated or AllowAnonymous",
        "router.identity_envelope_signing_key: hs256 secret is 11 bytes",
        "services[0].name: must be 1 to 64 characters",
        "services[0].upstreams[0]: must be host:port",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("tiny-secret"), "{err}");
    assert!(stdout(&out).is_empty());
}

#[test]
fn environment_names_from_the_design_override_the_file() {
    let path = temp_config("env", MINIMAL);
    let out = gateway(
        &["check", "--config", &path],
        &[
            ("Gateway__Auth__Authority__Issuer", "http://127.0.0.1:7100"),
            ("Gateway__Auth__Authority__RequireHttpsMetadata", "false"),
            ("Router__OnMissingAuthorization", "AllowAnonymous"),
            (
                "Router__IdentityEnvelopeSigningKey",
                "another-secret-that-is-at-least-32-bytes",
            ),
            // Service-side names in a shared environment file are ignored.
            ("Router__AuthorizationTrustMode", "GatewayEnforced"),
            ("ROUTER__IDENTITYENVELOPEAUDIENCE", "orders"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("issuer: http://127.0.0.1:7100"), "{text}");
    assert!(text.contains("require_https_metadata: false"), "{text}");
    assert!(
        text.contains("on_missing_authorization: AllowAnonymous"),
        "{text}"
    );
    assert!(!text.contains("another-secret"), "{text}");
}

#[test]
fn an_override_can_create_a_key_and_index_a_list() {
    let path = temp_config("env-create", MINIMAL);
    let out = gateway(
        &["check", "--config", &path],
        &[
            ("GATEWAY__LISTENERS__ADMIN", "127.0.0.1:9999"),
            ("Services__0__Upstreams__1", "orders-2:8080"),
            ("Services__0__Forward_Credentials", "true"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("admin: 127.0.0.1:9999"), "{text}");
    assert!(text.contains("- orders-2:8080"), "{text}");
    assert!(text.contains("forward_credentials: true"), "{text}");
}

#[test]
fn an_override_naming_no_key_is_an_error() {
    let path = temp_config("env-bad", MINIMAL);
    let out = gateway(
        &["check", "--config", &path],
        &[("Gateway__Auth__Authority__Isuer", "https://typo.example")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Gateway__Auth__Authority__Isuer: names no configuration key"));
}

#[test]
fn invalid_yaml_reports_the_position_but_not_the_content() {
    let path = temp_config("yaml", "gateway: [unclosed\nrouter: secret-looking-value\n");
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("is not valid yaml at line"), "{err}");
    assert!(!err.contains("secret-looking-value"), "{err}");
}

#[test]
fn missing_config_file_is_exit_2() {
    let out = gateway(&["check", "--config", "/nonexistent/gateway.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("cannot read"));
}

fn setting<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("{name} missing in {text}"))
}

#[test]
fn generated_eddsa_key_gives_services_only_the_public_half_and_mints_verifiable_envelopes() {
    let out = gateway(
        &["keys", "generate", "--alg", "EdDSA", "--kid", "gw-2026"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let signing = setting(&text, "Router__IdentityEnvelopeSigningKey");
    let accepted = setting(&text, "Router__IdentityEnvelopeAcceptedKeys");
    assert!(signing.starts_with("ed25519-private:"));
    assert!(accepted.starts_with("gw-2026=ed25519-public:"));

    let minted = gateway(
        &[
            "envelope",
            "mint",
            "--kid",
            "gw-2026",
            "--audience",
            "orders",
            "--path",
            "/orders/1",
            "--subject",
            "alice",
            "--scope",
            "orders.read",
        ],
        &[("Router__IdentityEnvelopeSigningKey", signing)],
    );
    assert_eq!(minted.status.code(), Some(0), "{}", stderr(&minted));
    let lines = stdout(&minted);
    let headers: Vec<(String, String)> = lines
        .lines()
        .map(|l| {
            let inner = l.strip_prefix("-H '").unwrap().strip_suffix('\'').unwrap();
            let (n, v) = inner.split_once(": ").unwrap();
            (n.to_owned(), v.to_owned())
        })
        .collect();
    assert_eq!(headers.len(), 6);

    use stella_envelope::*;
    let ring = Keyring::parse_list(accepted).unwrap();
    let verifier = Verifier::new(ring, VerifierSettings::new("orders"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let check = check_request(
        Some(&verifier),
        headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        &RequestBinding {
            method: "GET",
            path: "/orders/1",
        },
        now,
    );
    let EnvelopeCheck::Valid(v) = check else {
        panic!("{check:?}")
    };
    assert_eq!(v.identity().subject.as_deref(), Some("alice"));
    assert_eq!(v.identity().scopes, ["orders.read"]);
}

#[test]
fn mint_without_the_key_variable_is_exit_2() {
    let out = gateway(&["envelope", "mint", "--audience", "a", "--path", "/"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Router__IdentityEnvelopeSigningKey: is not set"));
}

#[test]
fn production_example_is_valid_once_its_files_exist() {
    let dir = std::env::temp_dir().join(format!("stella-cli-{}-prod", std::process::id()));
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=api.example.com",
        "-days",
        "1",
        "-keyout",
        "server.key",
        "-out",
        "server.crt",
    ]);
    std::fs::write(
        dir.join("envelope.key"),
        "hs256:cHJvZHVjdGlvbi1leGFtcGxlLXRlc3Qta2V5LTAxMjM0NTY3",
    )
    .unwrap();
    std::fs::write(
        policies.join("orders.yaml"),
        "service: orders\nroutes:\n  - {id: orders, path: /orders/**, policy: {scopes_any: [orders.read]}}\n",
    )
    .unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    let out = gateway(
        &["check", "--config", &repo("config/production.example.yaml")],
        &[
            ("Gateway__Listeners__Tls__Cert_File", &path("server.crt")),
            ("Gateway__Listeners__Tls__Key_File", &path("server.key")),
            (
                "Gateway__Listeners__Tls__Client_Ca_File",
                &path("server.crt"),
            ),
            ("Gateway__Policies_Dir", &path("policies")),
            (
                "Router__IdentityEnvelopeKeys__0__KeyFile",
                &path("envelope.key"),
            ),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("client_certificates: optional"), "{text}");
    assert!(!text.contains("cHJvZHVjdGlvbi1leGFtcGxl"), "{text}");
}

#[test]
fn keys_list_shows_kids_algorithms_sources_and_the_active_key_never_the_material() {
    let dir = std::env::temp_dir().join(format!("stella-cli-{}-keys", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("new.key"),
        "hs256:bmV3LWVudmVsb3BlLWtleS1mb3ItdGhlLWtleXMtbGlzdC10ZXN0",
    )
    .unwrap();
    let config = dir.join("gateway.yaml");
    std::fs::write(
        &config,
        format!(
            "{MINIMAL_WITHOUT_KEY}router:\n  identity_envelope_keys:\n    - {{kid: old-1, key: \"hs256:b2xkLWVudmVsb3BlLWtleS1mb3ItdGhlLWtleXMtbGlzdC10ZXN0\"}}\n    - {{kid: new-2, key_file: new.key}}\n    - {{kid: env-3, key_env: STELLA_TEST_KEY}}\n  identity_envelope_active_kid: new-2\n"
        ),
    )
    .unwrap();
    let out = gateway(
        &["keys", "list", "--config", &config.display().to_string()],
        &[(
            "STELLA_TEST_KEY",
            "hs256:ZW52LWVudmVsb3BlLWtleS1mb3ItdGhlLWtleXMtbGlzdC10ZXN0",
        )],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let row = |kid: &str| {
        text.lines()
            .find(|l| l.starts_with(kid))
            .unwrap_or_else(|| panic!("no row for {kid}: {text}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row("old-1"), "old-1 HS256 no inline");
    assert!(row("new-2").starts_with("new-2 HS256 yes file "), "{text}");
    assert_eq!(row("env-3"), "env-3 HS256 no env STELLA_TEST_KEY");
    for secret in ["b2xkLWVu", "bmV3LWVu", "ZW52LWVu"] {
        assert!(!text.contains(secret), "{text}");
    }

    // An active kid that names no key is a configuration error.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("active_kid: new-2", "active_kid: gone-9");
    std::fs::write(&config, text).unwrap();
    let out = gateway(
        &["keys", "list", "--config", &config.display().to_string()],
        &[(
            "STELLA_TEST_KEY",
            "hs256:ZW52LWVudmVsb3BlLWtleS1mb3ItdGhlLWtleXMtbGlzdC10ZXN0",
        )],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("router.identity_envelope_active_kid: names gone-9"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_also_refuses_invalid_policies_with_file_and_key_path() {
    let config = temp_config("bad-policy", MINIMAL);
    let dir = std::path::Path::new(&config)
        .parent()
        .unwrap()
        .join("policies");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("orders.yaml"),
        "service: shipping\nroutes:\n  - {id: a, path: /a/**, policy: {scopes_all: [x]}, colour: red}\n",
    )
    .unwrap();
    let yaml = MINIMAL.replacen("gateway:\n", "gateway:\n  policies_dir: policies\n", 1);
    std::fs::write(&config, yaml).unwrap();
    let out = gateway(&["check", "--config", &config], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("orders.yaml"), "{err}");
    assert!(err.contains("routes[0].colour: unknown key"), "{err}");
    assert!(err.contains("service"), "{err}");
}

#[test]
fn redis_replay_store_urls_and_tls_files_are_checked_without_echoing_the_password() {
    let with_dpop = |name: &str, dpop: &str| {
        temp_config(
            name,
            &MINIMAL.replace(
                "      audiences: [api]\n",
                &format!("      audiences: [api]\n    dpop:\n{dpop}"),
            ),
        )
    };
    // A good sentinel URL: valid, printed with the password redacted.
    let path = with_dpop(
        "redis-ok",
        "      replay_store: \"rediss+sentinel://:hunter2-marker@s1:26379,s2/replay/1\"\n",
    );
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("rediss+sentinel://<redacted>@s1:26379,s2/replay/1"),
        "{text}"
    );
    assert!(!text.contains("hunter2-marker"), "{text}");

    let cases = [
        (
            "redis-hosts",
            "      replay_store: \"redis://:hunter2-marker@a,b\"\n",
            "gateway.auth.dpop.replay_store: must be memory or a redis url: redis url lists several hosts",
        ),
        (
            "redis-scheme",
            "      replay_store: \"http://:hunter2-marker@a\"\n",
            "gateway.auth.dpop.replay_store: must be memory or a redis url: redis url must start with",
        ),
        (
            "redis-master",
            "      replay_store: \"redis+sentinel://:hunter2-marker@s1\"\n",
            "gateway.auth.dpop.replay_store: must be memory or a redis url: redis sentinel url must name the master",
        ),
        (
            "redis-plain-with-ca",
            "      replay_store: \"redis://:hunter2-marker@a\"\n      replay_store_ca_file: ca.pem\n",
            "gateway.auth.dpop.replay_store_ca_file: redis tls files are set but the url is not rediss://",
        ),
        (
            "redis-bad-ca",
            "      replay_store: \"rediss://:hunter2-marker@a\"\n      replay_store_ca_file: ca.pem\n",
            "gateway.auth.dpop.replay_store_ca_file: redis tls certificate or key is not usable pem",
        ),
        (
            "redis-cert-without-key",
            "      replay_store: \"rediss://a\"\n      replay_store_client_cert_file: ca.pem\n",
            "gateway.auth.dpop.replay_store_client_cert_file: redis tls certificate or key is not usable pem",
        ),
        (
            "redis-missing-ca",
            "      replay_store: \"rediss://a\"\n      replay_store_ca_file: nowhere.pem\n",
            "gateway.auth.dpop.replay_store_ca_file: cannot be read",
        ),
        (
            "redis-timeout",
            "      replay_store: \"redis://a\"\n      replay_store_timeout_ms: 0\n",
            "gateway.auth.dpop.replay_store_timeout_ms: must be between 10 and 10000",
        ),
        (
            "memory-with-ca",
            "      replay_store: memory\n      replay_store_ca_file: ca.pem\n",
            "gateway.auth.dpop.replay_store_ca_file: is set but replay_store is not a rediss:// url",
        ),
    ];
    for (name, dpop, expected) in cases {
        let path = with_dpop(name, dpop);
        let dir = std::path::Path::new(&path).parent().unwrap().to_path_buf();
        std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
        let out = gateway(&["check", "--config", &path], &[]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(expected),
            "{name}: missing {expected:?} in:\n{err}"
        );
        assert!(!err.contains("hunter2-marker"), "{name}: {err}");
    }
}

/// `replay_store_password_file`: the password joins the URL's user (if
/// any) without showing anywhere in `check`'s output; a URL that has a
/// password already, an empty or missing file, or a memory store are
/// refused under the key.
#[test]
fn the_replay_store_password_comes_from_a_file_and_is_never_printed() {
    let with_dpop = |name: &str, dpop: &str, password: Option<&str>| {
        let path = temp_config(
            name,
            &MINIMAL.replace(
                "      audiences: [api]\n",
                &format!("      audiences: [api]\n    dpop:\n{dpop}"),
            ),
        );
        if let Some(password) = password {
            let dir = std::path::Path::new(&path).parent().unwrap();
            std::fs::write(dir.join("redis-password"), password).unwrap();
        }
        path
    };
    for (name, url, printed) in [
        (
            "redis-password-file",
            "redis://redis:6379/2",
            "redis://redis:6379/2",
        ),
        // (User information is always redacted.)
        (
            "redis-password-file-user",
            "redis://stella@redis:6379/2",
            "redis://<redacted>@redis:6379/2",
        ),
    ] {
        let path = with_dpop(
            name,
            &format!(
                "      replay_store: \"{url}\"\n      replay_store_password_file: redis-password\n"
            ),
            Some("hunter2-marker/@:%\n"),
        );
        let out = gateway(&["check", "--config", &path], &[]);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let text = stdout(&out);
        // Printed as configured, with the file's name, never its content.
        assert!(
            text.contains(&format!("replay_store: {printed}")),
            "{name}: {text}"
        );
        assert!(
            text.contains("replay_store_password_file: redis-password"),
            "{name}: {text}"
        );
        assert!(!text.contains("hunter2-marker"), "{name}: {text}");
        assert!(!stderr(&out).contains("hunter2-marker"), "{name}");
    }

    let key = "gateway.auth.dpop.replay_store_password_file";
    let cases = [
        (
            "redis-password-twice",
            "      replay_store: \"redis://:hunter2-marker@a\"\n      replay_store_password_file: redis-password\n",
            Some("other"),
            format!("{key}: is set but the replay_store url has a password already; set one"),
        ),
        (
            "redis-password-empty",
            "      replay_store: \"redis://a\"\n      replay_store_password_file: redis-password\n",
            Some("\n"),
            format!("{key}: is empty"),
        ),
        (
            "redis-password-two-lines",
            "      replay_store: \"redis://a\"\n      replay_store_password_file: redis-password\n",
            Some("hunter2-marker\nsecond\n"),
            format!("{key}: holds more than one line"),
        ),
        (
            "redis-password-missing",
            "      replay_store: \"redis://a\"\n      replay_store_password_file: nowhere\n",
            None,
            format!("{key}: cannot be read"),
        ),
        (
            "memory-with-password",
            "      replay_store: memory\n      replay_store_password_file: redis-password\n",
            Some("hunter2-marker"),
            format!("{key}: is set but replay_store is not a redis url"),
        ),
    ];
    for (name, dpop, password, expected) in cases {
        let path = with_dpop(name, dpop, password);
        let out = gateway(&["check", "--config", &path], &[]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&expected),
            "{name}: missing {expected:?} in:\n{err}"
        );
        assert!(!err.contains("hunter2-marker"), "{name}: {err}");
    }
}

#[test]
fn authority_state_dir_is_not_created_by_check_and_one_that_is_a_file_is_refused_with_its_key_path()
{
    let with_state = |name: &str, state: &str| {
        temp_config(
            name,
            &MINIMAL.replace(
                "      audiences: [api]\n",
                &format!("      audiences: [api]\n      state_dir: {state}\n"),
            ),
        )
    };
    // Absent: fine, and left alone (relative to the configuration's folder):
    // `check` only reads; `run` creates it (e2e_authority_lkg).
    let path = with_state("state-ok", "authority-state");
    let absent = std::path::Path::new(&path)
        .parent()
        .unwrap()
        .join("authority-state");
    let _ = std::fs::remove_dir_all(&absent);
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!absent.exists(), "check created {}", absent.display());

    // A file where the folder should be: exit 2, the key path named.
    let path = with_state("state-file", "plain");
    let file = std::path::Path::new(&path).parent().unwrap().join("plain");
    std::fs::write(&file, b"x").unwrap();
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("gateway.auth.authority.state_dir") && err.contains("is not a folder"),
        "{err}"
    );
}

#[test]
fn several_authorities_introspection_and_claims_are_checked_and_secrets_redacted() {
    let good = MINIMAL.replace(
        "      audiences: [api]\n",
        "      audiences: [api]\n      tenants: [acme]\n      client_id: gateway\n      \
         client_secret: very-secret-client-value\n      introspection: {cache_seconds: 30}\n      \
         claims: {endpoint: https://authority.example/claims}\n    authorities:\n      \
         - {issuer: https://second.example, audiences: [api], tenants: [globex]}\n",
    );
    let out = gateway(
        &["check", "--config", &temp_config("authorities", &good)],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("client_secret: <redacted>"), "{text}");
    assert!(!text.contains("very-secret-client-value"), "{text}");
    assert!(text.contains("https://second.example"), "{text}");
    // Defaults filled in.
    assert!(text.contains("inactive_cache_seconds: 10"), "{text}");
    assert!(text.contains("refresh_ahead_seconds: 60"), "{text}");

    let bad = MINIMAL.replace(
        "      audiences: [api]\n",
        "      audiences: [api]\n      tenants: [acme, acme]\n      introspection: {}\n      \
         claims: {cache_seconds: 10, refresh_ahead_seconds: 10}\n      \
         client_secret: leaked-if-printed\n    authorities:\n      \
         - {issuer: https://authority.example, audiences: [api], tenants: [acme]}\n      \
         - {issuer: https://third.example, audiences: [api], client_id: gw, \
         client_secret_env: NOT_SET_ANYWHERE, introspection: {endpoint: \"ftp://x\"}}\n",
    );
    let out = gateway(
        &["check", "--config", &temp_config("authorities-bad", &bad)],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    for expected in [
        "gateway.auth.authority.tenants[1]: is listed twice",
        "gateway.auth.authority.client_id: is required with a client secret",
        "gateway.auth.authority.introspection: needs the gateway's client credentials",
        "gateway.auth.authority.claims.endpoint: is required",
        "gateway.auth.authority.claims.refresh_ahead_seconds: must be smaller",
        "gateway.auth.authorities[0].issuer: is configured twice",
        "gateway.auth.authorities[0].tenants: binds tenant acme",
        "gateway.auth.authorities[1].client_secret_env: names NOT_SET_ANYWHERE",
        "gateway.auth.authorities[1].introspection.endpoint: must be an absolute http(s) url",
        "gateway.auth.authorities[1].introspection: is configured for a second Authority",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(!err.contains("leaked-if-printed"), "{err}");
}

#[test]
fn token_profiles_are_shown_in_effect_checked_with_key_paths_and_settable_from_the_environment() {
    // Without a profile nothing new is printed, and RFC 9068's claims stay
    // required.
    let out = gateway(
        &["check", "--config", &temp_config("profile-none", MINIMAL)],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("token_profile"), "{text}");
    assert!(!text.contains("token_claims"), "{text}");
    assert!(
        text.contains("required_claims:\n      - client_id\n      - jti\n"),
        "{text}"
    );

    // A profile, with one key of its mapping replaced: the whole mapping in
    // effect is printed, paths as the file writes them.
    let good = MINIMAL.replace(
        "      audiences: [api]\n",
        "      audiences: [api]\n      token_profile: keycloak\n      token_claims:\n        \
         roles:\n          - realm_access.roles\n          - resource_access.{client_id}.roles\n        \
         \x20 - '\"https://example.com/roles\"'\n",
    );
    let out = gateway(
        &["check", "--config", &temp_config("profile-keycloak", &good)],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "token_profile: keycloak\n",
        "typ:\n        - JWT\n        - at+jwt\n        require_typ: false\n",
        "roles:\n        - realm_access.roles\n        - resource_access.{client_id}.roles\n        - '\"https://example.com/roles\"'\n",
        "client_id:\n        - azp\n",
        "require_jti: true\n        require_aud: true\n",
        "required_values:\n        - claim: typ\n          value: Bearer\n",
        // The profile says what is required; RFC 9068's list is not added.
        "required_claims: []\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    // From the environment, as every key.
    let out = gateway(
        &["check", "--config", &temp_config("profile-env", MINIMAL)],
        &[
            ("Gateway__Auth__Authority__TokenProfile", "cognito"),
            (
                "Gateway__Auth__Authority__TokenClaims__Roles__0",
                "custom:groups",
            ),
            ("Gateway__Auth__Authority__TokenClaims__RequireJti", "false"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "token_profile: cognito\n",
        "roles:\n        - custom:groups\n",
        "require_jti: false\n        require_aud: false\n",
        "- claim: token_use\n          value: access\n",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    let bad = MINIMAL.replace(
        "      audiences: [api]\n",
        "      audiences: [api]\n      token_profile: azure\n    authorities:\n      \
         - issuer: https://second.example\n        audiences: [api]\n        \
         token_profile: entra\n        token_claims:\n          typ: []\n          \
         scope_format: list\n          roles: [realm_access..roles, \"a.{tenant}.b\", \"\\\"open\"]\n          \
         client_id: [\"x.{client_id}\"]\n          required_values: [{claim: token_use}]\n          \
         colour: blue\n",
    );
    let out = gateway(
        &["check", "--config", &temp_config("profile-bad", &bad)],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    for expected in [
        "gateway.auth.authorities[0].token_claims.colour: unknown key",
        "gateway.auth.authority.token_profile: must be one of rfc9068, keycloak, entra, auth0, okta, cognito",
        "gateway.auth.authorities[0].token_claims.typ: lists no value while require_typ is true",
        "gateway.auth.authorities[0].token_claims.scope_format: must be string or array",
        "gateway.auth.authorities[0].token_claims.roles[0]: has an empty segment",
        "gateway.auth.authorities[0].token_claims.roles[1]: has a placeholder other than {client_id}",
        "gateway.auth.authorities[0].token_claims.roles[2]: has a quoted segment that is not closed",
        "gateway.auth.authorities[0].token_claims.client_id[0]: cannot use {client_id}",
        "gateway.auth.authorities[0].token_claims.required_values[0].value: is required",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn traces_block_is_off_by_default_checked_and_settable_from_the_environment() {
    let path = temp_config("traces-default", MINIMAL);
    let out = gateway(&["check", "--config", &path], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("traces:\n  enabled: false"), "{text}");
    assert!(text.contains("sampler: parentbased_always_on"), "{text}");

    let out = gateway(
        &["check", "--config", &path],
        &[
            ("TRACES__ENABLED", "true"),
            ("TRACES__ENDPOINT", "http://collector:4318"),
            ("TRACES__SAMPLER", "traceidratio"),
            ("TRACES__SAMPLER_ARG", "0.25"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("enabled: true"), "{text}");
    assert!(text.contains("endpoint: http://collector:4318"), "{text}");
    assert!(text.contains("sampler_arg: 0.25"), "{text}");

    let bad = temp_config(
        "traces-bad",
        &format!(
            "{MINIMAL}traces:\n  enabled: true\n  endpoint: collector\n  sampler: sometimes\n  \
             sampler_arg: 2\n  max_queue_size: 0\n  colour: blue\n"
        ),
    );
    let out = gateway(&["check", "--config", &bad], &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    for expected in [
        "traces.colour: unknown key",
        "traces.endpoint: must be an http(s) url",
        "traces.sampler: must be always_on",
        "traces.sampler_arg: must be between 0 and 1",
        "traces.max_queue_size: must be between 1 and 1000000",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

/// Runs `stella-gateway run` until it exits or `limit` passes (then kills
/// it): the exit code (`None` when it had to be killed), stdout, stderr.
fn run_until_exit(config: &str, limit: std::time::Duration) -> (Option<i32>, String, String) {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
        .env_clear()
        .args(["run", "--config", config])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run stella-gateway");
    let started = std::time::Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status.code();
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().unwrap().read_to_string(&mut out);
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    (code, out, err)
}

#[test]
fn a_listener_address_in_use_ends_run_with_the_address_and_the_os_error_never_ready() {
    // Another process listens on the port the gateway is told to use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let path = temp_config(
        "port-taken",
        &MINIMAL.replace("127.0.0.1:8080", &addr.to_string()),
    );
    let (code, out, err) = run_until_exit(&path, std::time::Duration::from_secs(20));
    assert_eq!(code, Some(1), "exit code; stderr:\n{err}");
    assert!(!out.contains("GATEWAY_READY"), "announced ready:\n{out}");
    assert!(
        err.contains(&format!("gateway.listeners.http: {addr}"))
            && err.contains("cannot listen")
            && err.to_ascii_lowercase().contains("address already in use"),
        "{err}"
    );
    drop(taken);
}

#[test]
fn version_names_the_release_and_the_commit_it_was_built_from() {
    for flag in ["--version", "-V"] {
        let out = gateway(&[flag], &[]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let expected = format!("stella-gateway {} (commit ", env!("CARGO_PKG_VERSION"));
        let commit = line
            .strip_prefix(&expected)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{flag}: {line:?} is not `{expected}<commit>)`"));
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        assert!(
            commit == "unknown" || (commit.len() == 12 && commit.bytes().all(lower_hex)),
            "{flag}: commit {commit:?} is neither 12 lowercase hex digits nor unknown"
        );
    }
}

#[test]
fn upgrade_refuses_a_bad_configuration_with_2_and_finds_no_gateway_with_1() {
    let bad = temp_config("upgrade-bad", "gateway: {listenerz: {}}\n");
    let socket =
        std::env::temp_dir().join(format!("stella-cli-{}-upgrade.sock", std::process::id()));
    let socket = socket.display().to_string();
    let out = gateway(
        &["upgrade", "--config", &bad, "--upgrade-socket", &socket],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("gateway.listenerz: unknown key"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("the running gateway is unchanged"),
        "{}",
        stderr(&out)
    );

    // A valid configuration, but nothing runs from it: no pid file.
    let good = temp_config("upgrade-none", MINIMAL);
    let out = gateway(
        &["upgrade", "--config", &good, "--upgrade-socket", &socket],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("{socket}.pid names none")),
        "{}",
        stderr(&out)
    );
    // A pid file naming a process that is gone is no running gateway either.
    std::fs::write(format!("{socket}.pid"), "999999999\n").unwrap();
    let out = gateway(
        &["upgrade", "--config", &good, "--upgrade-socket", &socket],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let _ = std::fs::remove_file(format!("{socket}.pid"));
}
