//! Introspection results and effective claims survive a restart
//! (docs/design.md §3.7): with the Authority's `state_dir`, a gateway
//! restarted while its Authority is down still serves opaque tokens and
//! claims-dependent routes from what it had learned, within max-stale; a
//! file that fails its integrity check is ignored (the route answers as
//! with no cache: 503), an entry past max-stale is not served, the files
//! are 0600 and hold no token.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stella_authority::stale::file::StaleFile;

/// A route that needs an effective role and an effective claim.
const AUDIT_ROUTE: &str = "  - id: echo-audit\n    path: /audit/**\n    policy:\n      roles_any: [auditor]\n      claims: {clearance: high}\n";

const MAX_STALE: u64 = 14;

fn setup(dir: &TempDir, authority: &Authority, echo: &Echo, state: &Path) -> GatewaySetup {
    GatewaySetup::new(&authority.issuer)
        .authority("audiences", json!([API_AUDIENCE, OPAQUE_AUDIENCE]))
        .authority("client_id", json!(GATEWAY_CLIENT.id))
        .authority("client_secret", json!(GATEWAY_CLIENT.secret))
        .authority("state_dir", json!(state.to_str().expect("utf-8 path")))
        .authority(
            "claims",
            json!({
                "endpoint": format!("{}/claims", authority.issuer),
                "cache_seconds": 2,
                "refresh_ahead_seconds": 1,
                "max_stale_seconds": MAX_STALE,
            }),
        )
        .authority(
            "introspection",
            json!({"cache_seconds": 2, "max_stale_seconds": MAX_STALE}),
        )
        .policies(&policies_with_echo_routes(dir, AUDIT_ROUTE))
        .service("echo", echo.addr())
}

fn cache_file(state: &Path, issuer: &str, what: &'static str) -> PathBuf {
    StaleFile::new(state, issuer, what, GATEWAY_CLIENT.secret.as_bytes(), 1)
        .path()
        .to_path_buf()
}

/// Stops a gateway with SIGTERM (it writes its caches on the way out).
fn stop(mut gw: Gateway) {
    gw.process.signal("TERM");
    let exit = gw.process.wait_exit(Duration::from_secs(10));
    assert_eq!(exit, Ok(Some(0)), "the gateway did not drain and exit");
}

#[test]
fn a_gateway_restarted_during_an_outage_serves_persisted_opaque_tokens_and_claims() {
    let dir = TempDir::new("cache-persist");
    let state = dir.join("state");
    let claims_file = dir.join("claims.json");
    std::fs::write(
        &claims_file,
        serde_json::to_vec(&json!({"svc-bearer": {"roles": ["auditor"], "clearance": "high"}}))
            .unwrap(),
    )
    .unwrap();
    let mut authority = Authority::start_with(AuthorityOptions {
        claims_file: Some(claims_file),
        ..AuthorityOptions::default()
    });
    let echo = Echo::gateway_enforced();
    let gw = setup(&dir, &authority, &echo, &state).start(&dir);
    let jwt = authority.token(BEARER);
    let opaque = authority.fresh_token(BEARER, &TokenRequest::resource(OPAQUE_AUDIENCE));
    assert!(!opaque.contains('.'), "not opaque: {opaque}");
    let unseen = authority.fresh_token(BEARER, &TokenRequest::resource(OPAQUE_AUDIENCE));

    // Warm: a claims-dependent route with a JWT and with the opaque token.
    assert_reached_via_envelope(&gw.get_with_token("/audit/1", &jwt));
    assert_reached_via_envelope(&gw.get_with_token("/audit/2", &opaque));
    let fetched = Instant::now();
    let introspection = cache_file(&state, &authority.issuer, "introspection");
    let claims = cache_file(&state, &authority.issuer, "claims");
    // Written in the background, without a restart.
    wait_until(Duration::from_secs(10), || {
        introspection.is_file() && claims.is_file()
    });
    assert!(
        introspection.is_file() && claims.is_file(),
        "no cache files"
    );

    // The Authority goes down, then the gateway restarts.
    authority.kill();
    stop(gw);
    let gw = setup(&dir, &authority, &echo, &state).start(&dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);
    assert!(
        fetched.elapsed() < Duration::from_secs(MAX_STALE - 4),
        "too slow to test within max-stale: {:?}",
        fetched.elapsed()
    );
    let upstream = echo.requests();
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/3", &jwt));
    assert_eq!(body["identity"]["roles"], json!(["auditor"]), "{body}");
    let body = assert_reached_via_envelope(&gw.get_with_token("/audit/4", &opaque));
    assert_eq!(body["identity"]["roles"], json!(["auditor"]), "{body}");
    assert_eq!(echo.requests(), upstream + 2);
    // A token never seen cannot be checked: 503, as without the files.
    let r = gw.get_with_token("/items/1", &unseen);
    assert_problem(&r, 503, "temporarily_unavailable");
    let logs = gw.process.stderr_lines().join("\n");
    assert!(
        logs.contains("persisted introspection results loaded"),
        "{logs}"
    );
    assert!(logs.contains("persisted authority claims loaded"), "{logs}");

    // The files: 0600, no token in them.
    for file in [&introspection, &claims] {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
        let text = String::from_utf8_lossy(&std::fs::read(file).unwrap()).into_owned();
        assert!(
            !text.contains(&opaque),
            "the opaque token is in {}",
            file.display()
        );
        assert!(!text.contains(&jwt), "the jwt is in {}", file.display());
        assert!(!text.contains(GATEWAY_CLIENT.secret), "{}", file.display());
    }
    stop(gw);

    // One byte changed in each file: both ignored, with a warning; the
    // routes answer as with no cache at all.
    let originals: Vec<(PathBuf, Vec<u8>)> = [&introspection, &claims]
        .iter()
        .map(|f| (f.to_path_buf(), std::fs::read(f).unwrap()))
        .collect();
    for (file, bytes) in &originals {
        let mut tampered = bytes.clone();
        let text = String::from_utf8_lossy(bytes);
        // A role or an expiry changed: exactly what a forger would do.
        let at = text
            .find("auditor")
            .or_else(|| text.find("\"exp\""))
            .expect("something to change");
        tampered[at] ^= 0x01;
        std::fs::write(file, tampered).unwrap();
    }
    let gw = setup(&dir, &authority, &echo, &state).start(&dir);
    let upstream = echo.requests();
    for (path, token) in [("/audit/5", &jwt), ("/audit/6", &opaque)] {
        let r = gw.get_with_token(path, token);
        assert_problem(&r, 503, "temporarily_unavailable");
        assert_eq!(gw.reason_for(&r), "authority_unavailable");
    }
    assert_eq!(echo.requests(), upstream, "nothing forwarded");
    let logs = gw.process.stderr_lines().join("\n");
    assert!(
        logs.contains("persisted introspection cache ignored")
            && logs.contains("persisted claims cache ignored")
            && logs.contains("integrity"),
        "{logs}"
    );
    drop(gw);

    // The untouched files again, once max-stale has passed: nothing served.
    for (file, bytes) in &originals {
        std::fs::write(file, bytes).unwrap();
    }
    wait_until(Duration::from_secs(30), || {
        fetched.elapsed() >= Duration::from_secs(2 + MAX_STALE + 1)
    });
    let gw = setup(&dir, &authority, &echo, &state).start(&dir);
    for (path, token) in [("/audit/7", &jwt), ("/audit/8", &opaque)] {
        let r = gw.get_with_token(path, token);
        assert_problem(&r, 503, "temporarily_unavailable");
    }
    assert_eq!(echo.requests(), upstream, "nothing forwarded");
    let loaded: Vec<Value> = gw
        .process
        .stderr_lines()
        .iter()
        .filter(|l| {
            l.contains("persisted")
                && l.contains("loaded")
                && !l.contains("signing keys")
                && !l.contains("discovery")
        })
        .map(|l| json!(l))
        .collect();
    assert!(
        loaded.is_empty(),
        "entries past max-stale were loaded: {loaded:?}"
    );
}
