//! Runtime reload of the service configuration (SPEC.md 7.1): the
//! `Router__ConfigFile` format and overlay, the reloadable handle (a bad
//! reload keeps the configuration in use), and the log lines it writes.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};
use stella_envelope::config::*;
use stella_envelope::*;

const SECRET: &str = "a-shared-secret-of-at-least-32-bytes!";

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn hs_spec(fill: u8) -> String {
    Key::hmac(KeyId::new("x").unwrap(), &[fill; 32])
        .unwrap()
        .to_spec()
        .to_string()
}

fn kids(config: &ServiceConfig) -> Vec<String> {
    config.accepted_kids().map(|k| k.to_string()).collect()
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "stella-envelope-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `text` to `path` the way editors do: a new file renamed over it.
fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// ---------------------------------------------------------------------------
// The file format

#[test]
fn config_file_lines_follow_the_env_file_format() {
    let text = "\u{feff}# envelope settings\r\n\
                \r\n\
                Router__AuthorizationTrustMode=Hybrid\r\n\
                export ROUTER__IDENTITYENVELOPEAUDIENCE = \"orders\"\n\
                  router_identity_envelope_issuer='gw-1'\n\
                Router__IdentityEnvelopeAcceptedKeys=a=hs256:AAAA;b=hs256:BBBB\n\
                \t# indented comment\n\
                Router__IdentityEnvelopeSigningKey=\n\
                Router__IdentityEnvelopeSigningKeyId=\"\"\n";
    let entries = parse_config_file(text).unwrap();
    let got: Vec<(&str, &str, usize)> = entries
        .iter()
        .map(|e| (e.name, e.value.as_str(), e.line))
        .collect();
    assert_eq!(
        got,
        [
            (ENV_TRUST_MODE, "Hybrid", 3),
            (ENV_AUDIENCE, "orders", 4),
            (ENV_ISSUER, "gw-1", 5),
            (ENV_ACCEPTED_KEYS, "a=hs256:AAAA;b=hs256:BBBB", 6),
            (ENV_SIGNING_KEY, "", 8),
            (ENV_SIGNING_KEY_ID, "", 9),
        ]
    );
    assert_eq!(parse_config_file("").unwrap(), []);
    assert_eq!(parse_config_file("# only a comment\n\n").unwrap(), []);
}

#[test]
fn bad_config_file_lines_are_all_reported_by_line_without_values() {
    let text = "Router__AuthorizationTrustMode=Hybrid\n\
                hs256:c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw\n\
                Router__AuthorisationTrustMode=GatewayEnforced\n\
                s3cr3t-pasted-alone=\n\
                Router__ConfigFile=/etc/other.env\n\
                ROUTER__AUTHORIZATIONTRUSTMODE=GatewayEnforced\n\
                Router__IdentityEnvelopeSigningKey=\"unterminated-secret-value\n\
                =no-name-secret\n";
    let errors = parse_config_file(text).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        [
            "Router__ConfigFile: line 2: expected Name=value",
            "Router__ConfigFile: line 3: Router__AuthorisationTrustMode is not a service envelope variable (SPEC.md section 7)",
            "Router__ConfigFile: line 4: the name is not a service envelope variable (SPEC.md section 7)",
            "Router__ConfigFile: line 5: Router__ConfigFile cannot be set in the file it names",
            "Router__ConfigFile: line 6: Router__AuthorizationTrustMode is already set on line 1",
            "Router__ConfigFile: line 7: the value of Router__IdentityEnvelopeSigningKey has an unmatched quote",
            "Router__ConfigFile: line 8: the name is not a service envelope variable (SPEC.md section 7)",
        ]
    );
    let all = shown.join("\n");
    for secret in [
        "c2VjcmV0",
        "s3cr3t",
        "unterminated-secret",
        "no-name-secret",
    ] {
        assert!(!all.contains(secret), "{secret} shown in:\n{all}");
    }
}

// ---------------------------------------------------------------------------
// The overlay: process environment, then the file

#[test]
fn file_settings_override_every_spelling_in_the_environment() {
    let base = env(&[
        ("ROUTER__AUTHORIZATIONTRUSTMODE", "GatewayEnforced"),
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeAudience", "orders"),
        ("Router__ConfigFile", "/run/envelope.env"),
    ]);
    let cfg =
        ServiceConfig::from_env_and_file(&base, Some("Router__AuthorizationTrustMode=Hybrid\n"))
            .unwrap();
    assert_eq!(cfg.mode, TrustMode::Hybrid);
    // What the file does not set still comes from the environment.
    assert_eq!(cfg.verifier.as_ref().unwrap().settings().audience, "orders");
    assert_eq!(kids(&cfg), ["default"]);
    // Without the file the environment alone decides.
    let cfg = ServiceConfig::from_env_and_file(&base, None).unwrap();
    assert_eq!(cfg.mode, TrustMode::GatewayEnforced);
}

#[test]
fn an_empty_value_in_the_file_removes_a_key_the_environment_sets() {
    let base = env(&[
        ("Router__AuthorizationTrustMode", "GatewayEnforced"),
        ("Router__IdentityEnvelopeSigningKey", SECRET),
        ("Router__IdentityEnvelopeSigningKeyId", "old"),
        ("Router__IdentityEnvelopeAudience", "orders"),
    ]);
    let both = format!("Router__IdentityEnvelopeAcceptedKeys=new={}\n", hs_spec(9));
    let cfg = ServiceConfig::from_env_and_file(&base, Some(&both)).unwrap();
    assert_eq!(kids(&cfg), ["new", "old"]);
    let new_only = format!("{both}Router__IdentityEnvelopeSigningKey=\n");
    let cfg = ServiceConfig::from_env_and_file(&base, Some(&new_only)).unwrap();
    assert_eq!(kids(&cfg), ["new"]);
}

#[test]
fn problems_of_settings_from_the_file_name_the_variable_and_the_line() {
    let base = env(&[("Router__IdentityEnvelopeAudience", "orders")]);
    let text = "# wave 2\nRouter__AuthorizationTrustMode=Permissive\nbroken line\n";
    let errors = ServiceConfig::from_env_and_file(&base, Some(text)).unwrap_err();
    let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        shown,
        [
            "Router__ConfigFile: line 3: expected Name=value",
            "Router__AuthorizationTrustMode: trust mode must be ServiceEnforced, Hybrid or \
             GatewayEnforced (set in Router__ConfigFile line 2)",
        ]
    );
    assert!(!shown.join("\n").contains("Permissive"));
}

#[test]
fn from_env_refuses_a_config_file_it_would_not_read() {
    let errors =
        ServiceConfig::from_env(&env(&[("Router__ConfigFile", "/etc/envelope.env")])).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, ENV_CONFIG_FILE);
    assert!(
        errors[0].problem.contains("ServiceConfig::load"),
        "{}",
        errors[0]
    );
    // A blank value names no file.
    assert!(ServiceConfig::from_env(&env(&[("Router__ConfigFile", " ")])).is_ok());
}

#[test]
fn an_unreadable_config_file_is_an_error_naming_the_variable_and_the_path() {
    let dir = TempDir::new("unreadable");
    let missing = dir.path("missing.env");
    let errors = ServiceConfig::load(&env(&[("router_config_file", missing.to_str().unwrap())]))
        .unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].variable, ENV_CONFIG_FILE);
    assert_eq!(
        errors[0].problem,
        format!("cannot read {}: entity not found", missing.display())
    );
}

// ---------------------------------------------------------------------------
// The handle

/// A handle over `dir/envelope.env`, written with `text` first.
fn handle_over(dir: &TempDir, text: &str) -> ServiceConfigHandle {
    let file = dir.path("envelope.env");
    replace_file(&file, text);
    ServiceConfigHandle::load(env(&[
        ("Router__IdentityEnvelopeAudience", "orders"),
        ("Router__ConfigFile", file.to_str().unwrap()),
    ]))
    .unwrap()
}

fn file_text(mode: &str, keys: &[(&str, u8)]) -> String {
    let list: Vec<String> = keys
        .iter()
        .map(|(kid, fill)| format!("{kid}={}", hs_spec(*fill)))
        .collect();
    format!(
        "Router__AuthorizationTrustMode={mode}\nRouter__IdentityEnvelopeAcceptedKeys={}\n",
        list.join(";")
    )
}

#[test]
fn reload_applies_a_changed_file_and_counts_generations() {
    let dir = TempDir::new("applies");
    let handle = handle_over(&dir, &file_text("GatewayEnforced", &[("a", 1)]));
    let first = handle.current();
    assert_eq!(first.mode, TrustMode::GatewayEnforced);
    let status = handle.status();
    assert_eq!(status.generation, 1);
    assert!(status.last_applied.is_none() && status.last_errors.is_none());

    replace_file(
        &dir.path("envelope.env"),
        &file_text("Hybrid", &[("a", 1), ("b", 2)]),
    );
    assert_eq!(
        handle.reload(),
        Ok(ReloadOutcome::Applied { generation: 2 })
    );
    let now = handle.current();
    assert_eq!(now.mode, TrustMode::Hybrid);
    assert_eq!(kids(&now), ["a", "b"]);
    let status = handle.status();
    assert_eq!(status.generation, 2);
    assert!(status.last_applied.is_some());
    // A snapshot taken before the reload is untouched by it.
    assert_eq!(first.mode, TrustMode::GatewayEnforced);
    assert_eq!(kids(&first), ["a"]);
}

#[test]
fn reload_of_the_same_settings_is_unchanged() {
    let dir = TempDir::new("unchanged");
    let handle = handle_over(&dir, &file_text("GatewayEnforced", &[("a", 1), ("b", 2)]));
    let before = handle.current();
    // Same settings, written differently: other spelling, order, comments.
    let same = format!(
        "# rewritten\nrouter_identity_envelope_accepted_keys=\"b={};a={}\"\nROUTER__AUTHORIZATIONTRUSTMODE=gateway_enforced\n",
        hs_spec(2),
        hs_spec(1)
    );
    replace_file(&dir.path("envelope.env"), &same);
    assert_eq!(
        handle.reload(),
        Ok(ReloadOutcome::Unchanged { generation: 1 })
    );
    assert!(Arc::ptr_eq(&before, &handle.current()));
    assert!(handle.status().last_applied.is_none());
    // The same kid with other material is a change.
    replace_file(
        &dir.path("envelope.env"),
        &file_text("GatewayEnforced", &[("a", 1), ("b", 3)]),
    );
    assert_eq!(
        handle.reload(),
        Ok(ReloadOutcome::Applied { generation: 2 })
    );
}

#[test]
fn bad_reload_keeps_the_old_config_and_names_the_variables() {
    let dir = TempDir::new("bad");
    let good = file_text("GatewayEnforced", &[("a", 1)]);
    let handle = handle_over(&dir, &good);
    let bad = "Router__AuthorizationTrustMode=Permissive\n\
               Router__IdentityEnvelopeAcceptedKeys=a=hs256:c2hvcnQtc2VjcmV0\n";
    replace_file(&dir.path("envelope.env"), bad);
    let errors = handle.reload().unwrap_err();
    let variables: Vec<&str> = errors.iter().map(|e| e.variable).collect();
    assert_eq!(variables, [ENV_TRUST_MODE, ENV_ACCEPTED_KEYS]);

    let cfg = handle.current();
    assert_eq!(cfg.mode, TrustMode::GatewayEnforced);
    assert_eq!(kids(&cfg), ["a"]);
    let status = handle.status();
    assert_eq!(status.generation, 1);
    assert!(status.last_rejected.is_some());
    assert_eq!(status.last_errors.as_deref(), Some(&errors[..]));
    let shown: String = errors.iter().map(|e| format!("{e}\n")).collect();
    assert!(!shown.contains("Permissive"), "{shown}");
    assert!(!shown.contains("c2hvcnQtc2VjcmV0"), "{shown}");

    // A file that disappears is refused the same way.
    std::fs::remove_file(dir.path("envelope.env")).unwrap();
    let errors = handle.reload().unwrap_err();
    assert_eq!(errors[0].variable, ENV_CONFIG_FILE);
    assert_eq!(handle.current().mode, TrustMode::GatewayEnforced);

    // The next good reload clears the errors.
    replace_file(&dir.path("envelope.env"), &good);
    assert_eq!(
        handle.reload(),
        Ok(ReloadOutcome::Unchanged { generation: 1 })
    );
    assert!(handle.status().last_errors.is_none());
}

/// Log lines written while `run` runs.
fn logs_of<T>(run: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let out = tracing::subscriber::with_default(subscriber, run);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn reloads_are_logged_with_mode_and_kids_never_values() {
    let dir = TempDir::new("logs");
    let handle = handle_over(&dir, &file_text("GatewayEnforced", &[("a", 1)]));
    let bad = "Router__AuthorizationTrustMode=Permissive\n";
    replace_file(&dir.path("envelope.env"), bad);
    let (result, logs) = logs_of(|| handle.reload());
    assert!(result.is_err());
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(
        logs.contains("Router__AuthorizationTrustMode: trust mode must be"),
        "{logs}"
    );
    assert!(!logs.contains("Permissive"), "{logs}");

    let good = file_text("Hybrid", &[("a", 1), ("b", 2)]);
    replace_file(&dir.path("envelope.env"), &good);
    let (result, logs) = logs_of(|| handle.reload());
    assert_eq!(result, Ok(ReloadOutcome::Applied { generation: 2 }));
    assert!(logs.contains("applied"), "{logs}");
    assert!(logs.contains("mode=Hybrid"), "{logs}");
    assert!(logs.contains("accepted_kids=a,b"), "{logs}");
    for fill in [1, 2] {
        let spec = hs_spec(fill);
        let material = spec.split_once(':').unwrap().1;
        assert!(!logs.contains(material), "key material logged: {logs}");
    }
}
