//! The Authority's last-known-good documents (docs/design.md §3.7): with
//! `gateway.auth.authority.state_dir`, a gateway restarted while its
//! Authority is down serves with the discovery and JWKS it had fetched,
//! and counts their age from that fetch; a state file that is not this
//! issuer's is ignored, and without state the gateway answers 503.

mod common;

use common::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use stella_authority::lkg::{LkgStore, What};

/// The Authority (killed), the echo service, a token fetched while the
/// Authority was up, and a state folder the first gateway wrote into.
struct AfterOutage {
    dir: TempDir,
    state: PathBuf,
    issuer: String,
    echo: Echo,
    token: String,
    /// Just before the first gateway started: its fetch is later.
    before_fetch: Instant,
    _authority: Authority,
}

fn setup(issuer: &str, echo: &Echo, state: &Path) -> GatewaySetup {
    GatewaySetup::new(issuer)
        .service("echo", echo.addr())
        .authority("state_dir", json!(state.to_str().expect("utf-8 path")))
}

/// Runs a gateway against a live Authority, then stops both.
fn serve_then_lose_the_authority(label: &str) -> AfterOutage {
    let dir = TempDir::new(label);
    let state = dir.join("authority-state");
    let mut authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let issuer = authority.issuer.clone();
    let token = authority.token(BEARER);
    let before_fetch = Instant::now();
    let gw = setup(&issuer, &echo, &state).start(&dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);
    assert_reached_via_envelope(&gw.get_with_token("/items/1", &token));
    let store = LkgStore::new(&state, &issuer);
    assert!(store.path(What::Jwks).is_file(), "no persisted jwks");
    assert!(
        store.path(What::Discovery).is_file(),
        "no persisted discovery"
    );
    authority.kill();
    drop(gw);
    AfterOutage {
        dir,
        state,
        issuer,
        echo,
        token,
        before_fetch,
        _authority: authority,
    }
}

#[test]
fn gateway_restarted_during_an_outage_serves_with_the_persisted_keys_and_their_age() {
    let o = serve_then_lose_the_authority("lkg-restart");
    // Let the fetch age a little so its age cannot be mistaken for the
    // restart's.
    wait_until(Duration::from_secs(10), || {
        o.before_fetch.elapsed() >= Duration::from_secs(3)
    });
    let before_restart = o.before_fetch.elapsed().as_secs();
    let gw = setup(&o.issuer, &o.echo, &o.state).start(&o.dir);
    assert!(gw.keys_loaded_at_start(), "{}", gw.process.ready);
    assert_eq!(gw.admin_get("/readyz").status, 200);

    let upstream_before = o.echo.requests();
    let body = assert_reached_via_envelope(&gw.get_with_token("/items/2", &o.token));
    assert_eq!(body["identity"]["subject"], "svc-bearer");
    assert_eq!(o.echo.requests(), upstream_before + 1);

    let metrics = gw.metrics();
    let age = metrics.get("stella_gateway_jwks_age_seconds");
    // The fetch happened after `before_fetch` and at least a few seconds
    // before this restart. Ages are whole unix seconds (fetch and now each
    // truncated), so one may read a second more than the elapsed time.
    assert!(
        age >= (before_restart - 1) as f64
            && age <= (o.before_fetch.elapsed().as_secs() + 1) as f64,
        "age {age}, {before_restart} s between the first start and the restart"
    );
    let loads = |what, result| {
        metrics
            .value(
                "stella_gateway_authority_lkg_loads_total",
                &[("what", what), ("result", result)],
            )
            .unwrap_or(-1.0)
    };
    assert_eq!(loads("jwks", "loaded"), 1.0);
    assert_eq!(loads("discovery", "loaded"), 1.0);
    assert_eq!(loads("jwks", "ignored"), 0.0);
}

#[test]
fn gateway_started_during_an_outage_without_state_answers_503() {
    let o = serve_then_lose_the_authority("lkg-none");
    for entry in std::fs::read_dir(&o.state).expect("state folder") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove state file");
    }
    let gw = setup(&o.issuer, &o.echo, &o.state).start(&o.dir);
    assert!(!gw.keys_loaded_at_start(), "{}", gw.process.ready);
    let upstream_before = o.echo.requests();
    let r = gw.get_with_token("/items/3", &o.token);
    assert_problem(&r, 503, "temporarily_unavailable");
    assert!(
        r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "{r:?}"
    );
    assert_eq!(gw.reason_for(&r), "authority_unavailable");
    assert_eq!(o.echo.requests(), upstream_before);
}

#[test]
fn persisted_jwks_from_another_issuer_is_ignored_and_tokens_get_503() {
    let o = serve_then_lose_the_authority("lkg-foreign");
    // The same keys, recorded as another issuer's: never trusted for this
    // one, even under this issuer's file name.
    let path = LkgStore::new(&o.state, &o.issuer).path(What::Jwks);
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("state file")).expect("json");
    record["issuer"] = json!("https://another-authority.example");
    std::fs::write(&path, serde_json::to_vec(&record).expect("json")).expect("write");

    let gw = setup(&o.issuer, &o.echo, &o.state).start(&o.dir);
    assert!(!gw.keys_loaded_at_start(), "{}", gw.process.ready);
    let upstream_before = o.echo.requests();
    let r = gw.get_with_token("/items/4", &o.token);
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_eq!(o.echo.requests(), upstream_before);

    gw.wait_for_log(|line| {
        line.to_string()
            .contains("persisted authority jwks ignored")
    });
    let ignored = gw.log_lines().into_iter().find(|line| {
        line.to_string()
            .contains("persisted authority jwks ignored")
    });
    let line = ignored.unwrap_or_else(|| panic!("no log line says the file was ignored"));
    let text = line.to_string();
    assert!(text.contains("another issuer"), "{text}");
    assert!(
        text.contains(path.file_name().unwrap().to_str().unwrap()),
        "{text}"
    );
    assert!(!text.contains("another-authority.example"), "{text}");
    assert_eq!(
        gw.metrics().value(
            "stella_gateway_authority_lkg_loads_total",
            &[("what", "jwks"), ("result", "ignored")]
        ),
        Some(1.0)
    );
}
