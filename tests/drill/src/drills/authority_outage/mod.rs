//! The Authority goes away and comes back, under constant mixed load
//! (runbooks/authority-outage.md). Stages:
//! 1. authority-down: the Authority is stopped; requests with known keys,
//!    opaque tokens introspected before and claims read before keep
//!    succeeding, the gateway's staleness rises;
//! 2. flip-hybrid: the operator flips `echo` GatewayEnforced -> Hybrid (its
//!    `Router__` file, then POST /reload), no restart;
//! 3. gateway-upgrade: the gateway process is replaced during the outage
//!    (`stella-gateway upgrade`, the zero-downtime handover: the new
//!    process loads its configuration and everything persisted in the
//!    state folder, last-known-good JWKS, introspection results and
//!    effective claims, then takes the listening sockets over while the old
//!    one drains). Nothing is refused: the new process serves the same
//!    JWTs, opaque tokens and claims-dependent routes without the
//!    Authority;
//! 4. past-max-stale: the keys' age passes jwks_refresh + jwks_max_stale: a
//!    token the gateway has not verified yet gets 503 with Retry-After,
//!    never 401 (so do opaque tokens and claims past their own max-stale);
//!    anonymous and SPIFFE-only requests keep working, and the gateway
//!    stays ready (`/readyz` 200) with its keys shown as degraded;
//! 5. authority-back: the Authority returns on the same port with the same
//!    keys and the tokens it issued: staleness back to ~0 without a
//!    gateway restart (at the gateway's next retry, at most
//!    jwks_refresh_seconds later), new tokens served again (5-recovered);
//!    then `echo` is flipped back to GatewayEnforced (5-flip-back).
//!
//! Load, each class its own stella-load (so each has its own table per
//! stage), all started before the outage with long-lived tokens: `bearer`
//! (GatewayEnforced, Hybrid and ServiceEnforced routes), `dpop`, `opaque`
//! (an opaque token, checked by introspection, on `/items/**` and the
//! claims-dependent `/audit/**`), `claims` (a JWT on `/audit/**`: role and
//! claim from the Authority's claims endpoint), `anon`, and `refused` (401
//! without a token, 403 without the scope); and two probes, a few requests
//! per second each: `fresh`, each request with a token the gateway has
//! never seen (minted before the outage, so its verification needs the
//! Authority's keys), and `spiffe`, a SPIFFE client certificate alone on
//! the TLS listener (/svc). The only refusals the design promises are the
//! 503s past max-stale (stage 4, and until the gateway's first fetch after
//! the Authority's return); every other non-2xx answer or connection
//! failure fails the drill, the upgrade included.

mod probes;
mod verdict;

use probes::{start_probes, Probes};
use verdict::verdict;

use crate::harness::{Abort, Outcome};
use crate::load::{kind, Load};
use crate::stack::alive;
use crate::Drill;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use stella_gateway::config::file::TlsSection;
use stella_test_support::{curl_https, try_request, Pki, TempDir, OPAQUE_AUDIENCE};

/// Keys are fresh for this long after the last fetch (the smallest allowed).
const REFRESH: u64 = 10;
/// Introspection results and effective claims are fresh this long.
const CACHE: u64 = 5;
const CLASSES: [&str; 6] = ["bearer", "dpop", "opaque", "claims", "anon", "refused"];
/// The stage in which the gateway process is replaced.
const UPGRADE: &str = "3-gateway-upgrade";

/// What the operator saw at the end of a stage.
#[derive(Default, Clone)]
struct Stage {
    name: String,
    seconds: u64,
    stale: Option<f64>,
    ready: Option<u16>,
}

struct Outage {
    loads: Vec<(&'static str, Load)>,
    stages: Vec<Stage>,
    started: Instant,
    probes: Probes,
}

pub fn run(d: &mut Drill) -> Outcome {
    // Stages 1-3 must fit in the time the keys are served stale; stage 4
    // starts when it has passed.
    let max_stale = 3 * d.run.step.as_secs() + 15;
    let max_age = REFRESH + max_stale;
    // The Authority keeps its signing keys in a file, so it comes back with
    // the same kids; /__test/mint makes the fresh tokens of the probe.
    let keys = d.run.dir.join("authority-keys.json");
    d.stack.authority_env = vec![
        ("AUTHORITY_KEYS_FILE".into(), keys.display().to_string()),
        ("AUTHORITY_TEST_MINT".into(), "1".into()),
    ];
    d.outage_ready_authority(REFRESH, max_stale, CACHE)?;
    // The TLS listener with client certificates: a CA, the gateway's
    // certificate and the SPIFFE X.509-SVID of the workload /svc/** admits.
    let pki_dir = TempDir::new("drill-pki");
    let pki = Pki::generate(&pki_dir);
    d.stack.tls = Some(TlsSection {
        cert_file: Some(pki.server_cert.display().to_string()),
        key_file: Some(pki.server_key.display().to_string()),
        client_certificates: Some("optional".into()),
        client_ca_file: Some(pki.ca.display().to_string()),
        http2: Some(false),
        ..TlsSection::default()
    });
    d.stack_up()?;
    let tls_port = d.stack.tls_port().unwrap_or_default();
    let tls = SocketAddr::from(([127, 0, 0, 1], tls_port));
    d.run.ok(format!(
        "keys fresh for {REFRESH}s after a fetch, then stale for at most {max_stale}s (max age {max_age}s); state folder {}",
        d.run.relative(&d.run.dir.join("state"))
    ));

    // Tokens for the fresh probe, minted now: the Authority will be gone.
    let needed = d.run.step.as_secs() as usize * 30 + 4000;
    let tokens = mint(d, needed)?;
    d.run.ok(format!("{needed} tokens minted for the fresh probe (TTL {}s; the load's own tokens have the same TTL)", d.stack.token_ttl));
    let spiffe = |with_cert: bool| {
        let cert = with_cert.then_some((pki.spiffe_cert.as_path(), pki.spiffe_key.as_path()));
        curl_https(tls, "/svc/x", &pki.ca, cert, &[])
            .response
            .map_or(0, |r| r.status)
    };
    let s = spiffe(true);
    if s != 200 {
        return d.run.abort(format!(
            "SPIFFE-only request to /svc/x on the TLS listener: {s}, wanted 200"
        ));
    }
    let s = spiffe(false);
    d.run.check(
        s == 401,
        "/svc/x: 200 with the SPIFFE certificate, 401 without",
        format!("/svc/x without a certificate: {s}, wanted 401"),
    );

    let mut loads = Vec::new();
    for class in CLASSES {
        let (kinds, share) = class_kinds(d, class);
        // The opaque class's tokens are for the opaque tokens' audience.
        let args: &[&str] = match class {
            "opaque" => &["--resource", OPAQUE_AUDIENCE],
            _ => &[],
        };
        let rate = (d.run.rate * share / 100).max(1);
        let load = d.start_load_with(&format!("load-{class}"), kinds, rate, args)?;
        loads.push((class, load));
    }
    let probes = start_probes(d, tokens, tls, &pki);
    d.run.say(format!(
        "  load: {} req/s over {} ({}/load-*.yaml), probes fresh and spiffe",
        d.run.rate,
        CLASSES.join(" "),
        d.run.relative(&d.run.logs)
    ));
    let mut o = Outage {
        loads,
        stages: Vec::new(),
        started: Instant::now(),
        probes,
    };
    o.stages.push(Stage {
        name: "warmup".into(),
        ..Stage::default()
    });
    let result = stages(d, &mut o, max_age);
    verdict(d, o);
    drop(pki_dir);
    result
}

/// The stages, from baseline to the flip back.
fn stages(d: &mut Drill, o: &mut Outage, max_age: u64) -> Outcome {
    let step = d.run.step;
    stage(d, o, "baseline");
    std::thread::sleep(step);
    // Stop the Authority right after a fetch, so the stages below have the
    // whole REFRESH + max-stale before the keys are too old.
    if d.run
        .wait_for(Duration::from_secs(REFRESH + 10), || {
            staleness(d).is_some_and(|s| s <= 0.0)
        })
        .is_none()
    {
        return d.run.abort(format!(
            "no JWKS fetch within {}s (staleness {:?})",
            REFRESH + 10,
            staleness(d)
        ));
    }
    let refreshes_before = d.metric("stella_gateway_jwks_refreshes_total", &[]);
    stage_end(d, o);

    stage(d, o, "1-authority-down");
    d.stop_authority();
    let outage_at = unix_now();
    d.run.ok(format!(
        "Authority stopped ({} now refuses connections)",
        d.stack.issuer
    ));
    let stale_start = staleness(d).unwrap_or(0.0);
    std::thread::sleep(step);
    // The next scheduled refresh is at most jwks_refresh_seconds after the
    // last fetch; its failure is the operator's first signal.
    let failures = |d: &Drill| d.metric("stella_gateway_jwks_refresh_failures_total", &[]);
    d.run
        .wait_for(Duration::from_secs(REFRESH + 5), || failures(d) > 0.0);
    let (fails, refreshes, stale_now) = (
        failures(d),
        d.metric("stella_gateway_jwks_refreshes_total", &[]),
        staleness(d),
    );
    d.run.check(
        stale_now.is_some_and(|s| s > stale_start) && fails > 0.0,
        format!("staleness rises: {stale_start}s -> {stale_now:?}s; stella_gateway_jwks_refresh_failures_total {fails}, stella_gateway_jwks_refreshes_total {refreshes_before} -> {refreshes}"),
        format!("staleness {stale_start}s -> {stale_now:?}s, stella_gateway_jwks_refresh_failures_total {fails} (wanted both to rise)"),
    );
    let r = readyz(d);
    d.run.check(
        r == 200,
        "/readyz 200: keys within max-stale",
        format!("/readyz {r} within max-stale, wanted 200"),
    );
    stage_end(d, o);

    stage(d, o, "2-flip-hybrid");
    set_echo_mode(d, "Hybrid");
    d.reconfigure_service("echo", false)?;
    d.write_gateway_config()?;
    d.gateway_reload()?;
    std::thread::sleep(step);
    stage_end(d, o);

    // The gateway process is replaced through the socket handover, on the
    // same addresses with the same configuration (now recording echo as
    // Hybrid). The new process reads the state folder before it takes the
    // sockets over: nothing is refused, and the opaque and claims-dependent
    // requests are served from what the old process persisted (it writes
    // its caches every few seconds and on its way out).
    stage(d, o, UPGRADE);
    let loads_before = lkg_loads(d);
    let config = d.run.conf.join("gateway.yaml");
    let up = d.upgrade_gateway(&config, "gateway-upgraded.log")?;
    d.stack.adopted = Some(up.new);
    d.run.ok(format!(
        "{} (command took {} ms; the old process drains)",
        up.line, up.millis
    ));
    let gone = d.run.wait_for(Duration::from_secs(30), || !alive(up.old));
    d.run.check(
        gone.is_some(),
        format!("the old process (pid {}) drained and exited", up.old),
        format!(
            "the old process (pid {}) still runs 30 s after the handover",
            up.old
        ),
    );
    if gone.is_some() {
        // Already gone: nothing left for stop_all to stop.
        if let Some(mut old) = d.stack.gateway.take() {
            let _ = old.wait_exit(Duration::from_secs(1));
        }
    }
    std::thread::sleep(step);
    stage_end(d, o);
    let pid_after = up.new;

    stage(d, o, "3-after-upgrade");
    let loaded = lkg_loads(d);
    d.run.check(
        loaded >= 1.0,
        format!("stella_gateway_authority_lkg_loads_total{{what=\"jwks\",result=\"loaded\"}} {loaded} in the new process (was {loads_before} in the old one)"),
        format!("the new gateway process loaded no persisted JWKS (lkg_loads jwks loaded: {loaded})"),
    );
    let log = std::fs::read_to_string(d.run.logs.join("gateway-upgraded.log")).unwrap_or_default();
    for line in [
        "persisted authority signing keys loaded",
        "persisted introspection results loaded",
        "persisted authority claims loaded",
    ] {
        let found = log.lines().find(|l| l.contains(line));
        d.run.check(
            found.is_some(),
            format!("new process: {}", found.unwrap_or_default().trim()),
            format!(
                "the new process did not log '{line}' ({}/gateway-upgraded.log)",
                d.run.relative(&d.run.logs)
            ),
        );
    }
    let since = unix_now() - outage_at;
    let s = staleness(d);
    d.run.check(
        s.is_some_and(|s| s >= since as f64),
        format!("staleness after the restart: {s:?}s (counted from the last fetch, not from the restart)"),
        format!("staleness after the restart: {s:?}s, wanted at least the {since}s since the outage began"),
    );
    std::thread::sleep(step);
    stage_end(d, o);

    // Wait (under load) until the keys are older than refresh + max-stale.
    stage(d, o, "3-until-max-stale");
    let left = max_age as f64 - staleness(d).unwrap_or(0.0) + 1.0;
    d.run.say(format!(
        "  waiting ~{left}s until the keys' age passes {max_age}s"
    ));
    let limit = Duration::from_secs_f64(left.max(0.0) + 15.0);
    if d.run
        .wait_for(limit, || staleness(d).is_some_and(|s| s > max_age as f64))
        .is_none()
    {
        return d.run.abort(format!(
            "staleness {:?}s never passed {max_age}s",
            staleness(d)
        ));
    }
    stage_end(d, o);

    stage(d, o, "4-past-max-stale");
    expect_tokens(d, o, "2xx,503");
    std::thread::sleep(step);
    // Every replica is past max-stale at the same moment: readiness stays
    // (a load balancer following it would drop the anonymous and
    // cached-token traffic too); the keys show as degraded.
    let r = readyz(d);
    let verbose = d.admin_json("/readyz?verbose");
    let degraded = verbose["degraded"]
        .as_array()
        .is_some_and(|v| v.iter().any(|x| x == "authority_keys"));
    d.run.check(
        r == 200 && degraded,
        format!("/readyz 200, keys degraded: {verbose}"),
        format!("/readyz {r} past max-stale (wanted 200 with authority_keys degraded): {verbose}"),
    );
    let gauge = d.metric(
        "stella_gateway_degraded",
        &[("dependency", "authority_keys")],
    );
    d.run.check(
        gauge == 1.0,
        "stella_gateway_degraded{dependency=\"authority_keys\"} 1",
        format!("stella_gateway_degraded{{dependency=\"authority_keys\"}} {gauge}, wanted 1"),
    );
    stage_end(d, o);

    stage(d, o, "5-authority-back");
    d.start_authority(d.stack.authority_port)?;
    d.run.ok(format!(
        "Authority back on {} (same port, same keys)",
        d.stack.issuer
    ));
    match d.run.wait_for(Duration::from_secs(REFRESH + 20), || {
        staleness(d).is_some_and(|s| s <= 3.0)
    }) {
        Some(ms) => d.run.ok(format!(
            "staleness back to {:?}s after {ms} ms, without a gateway restart",
            staleness(d)
        )),
        None => {
            return d.run.abort(format!(
                "staleness still {:?}s {}s after the Authority came back",
                staleness(d),
                REFRESH + 20
            ))
        }
    }
    if !alive(pid_after) || d.stack.adopted != Some(pid_after) {
        d.run
            .fail("the gateway is not the process that ran before the Authority came back");
    }
    let fresh = || d.admin_json("/readyz?verbose")["degraded"] == serde_json::json!([]);
    let back = d.run.wait_for(Duration::from_secs(10), fresh).is_some() && readyz(d) == 200;
    d.run.check(
        back,
        "/readyz 200, nothing degraded",
        format!(
            "/readyz after recovery: {}",
            d.admin_json("/readyz?verbose")
        ),
    );
    stage_end(d, o);

    stage(d, o, "5-recovered");
    expect_tokens(d, o, "2xx");
    std::thread::sleep(step);
    stage_end(d, o);

    stage(d, o, "5-flip-back");
    set_echo_mode(d, "GatewayEnforced");
    d.reconfigure_service("echo", true)?;
    d.write_gateway_config()?;
    d.reload_command()?;
    std::thread::sleep(step);
    stage_end(d, o);
    Ok(())
}

/// The request kinds of a load class (kinds of the default mix, with
/// their weights within the class) and its share of the rate, percent.
fn class_kinds(d: &Drill, class: &str) -> (Vec<serde_json::Value>, u32) {
    let (kinds, share): (&[(&str, u32)], u32) = match class {
        "bearer" => (
            &[("items-bearer", 3), ("hybrid-bearer", 1), ("legacy", 1)],
            30,
        ),
        "dpop" => (&[("dpop", 2), ("write-dpop", 1), ("hybrid-dpop", 1)], 20),
        "opaque" | "claims" => return (cached_kinds(d, class), 15),
        "anon" => (&[("public", 1)], 10),
        _ => (&[("anon-refused", 1), ("admin-refused", 1)], 10),
    };
    let all = d.default_kinds();
    let picked = kinds
        .iter()
        .filter_map(|(name, weight)| {
            let mut kind = all.iter().find(|k| k["name"] == *name)?.clone();
            kind["weight"] = serde_json::json!(weight);
            Some(kind)
        })
        .collect();
    (picked, share)
}

/// The kinds of the `opaque` class (an opaque token on `/items/**` and on
/// the claims-dependent `/audit/**`) and of the `claims` class (a JWT on
/// `/audit/**`).
fn cached_kinds(d: &Drill, class: &str) -> Vec<serde_json::Value> {
    let gw = d.stack.gw();
    match class {
        "opaque" => vec![
            kind(
                "items-opaque",
                "GET",
                format!("{gw}/items/4"),
                "bearer:svc-bearer",
                2,
            ),
            kind(
                "audit-opaque",
                "GET",
                format!("{gw}/audit/1"),
                "bearer:svc-bearer",
                1,
            ),
        ],
        _ => vec![kind(
            "audit-jwt",
            "GET",
            format!("{gw}/audit/2"),
            "bearer:svc-bearer",
            1,
        )],
    }
}

/// Tokens the gateway has never seen, from the Authority's test endpoint.
fn mint(d: &Drill, count: usize) -> Result<Vec<String>, Abort> {
    let authority = SocketAddr::from(([127, 0, 0, 1], d.stack.authority_port));
    let path = format!("/__test/mint?count={count}");
    let r = try_request(authority, "POST", &path, &[], b"", Duration::from_secs(60))
        .map_err(|e| Abort(format!("could not mint the fresh probe's tokens: {e}")))?;
    let tokens: Vec<String> = r
        .text()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if tokens.len() < count {
        return d.run.abort(format!(
            "the Authority minted {} tokens, wanted {count}",
            tokens.len()
        ));
    }
    Ok(tokens)
}

/// Starts a stage: its name goes to every load generator and the probes.
fn stage(d: &mut Drill, o: &mut Outage, name: &str) {
    let elapsed = o.started.elapsed().as_secs();
    if let Some(last) = o.stages.last_mut() {
        last.seconds = elapsed - last.seconds;
    }
    d.run
        .say(format!("== stage {name} (staleness {:?}s)", staleness(d)));
    for (_, load) in &mut o.loads {
        d.command(load, &format!("step {name}"));
    }
    if let Ok(mut s) = o.probes.stage.lock() {
        *s = name.to_owned();
    }
    // `seconds` holds the start until the stage ends.
    o.stages.push(Stage {
        name: name.into(),
        seconds: elapsed,
        ..Stage::default()
    });
}

/// What the operator sees at the end of the stage.
fn stage_end(d: &Drill, o: &mut Outage) {
    let (stale, ready) = (staleness(d), readyz(d));
    if let Some(s) = o.stages.last_mut() {
        s.stale = stale;
        s.ready = Some(ready);
        d.run.say(format!(
            "  end of {}: staleness {stale:?}s, /readyz {ready}",
            s.name
        ));
    }
}

/// The statuses the token kinds must answer from now on (the refused ones
/// keep theirs).
fn expect_tokens(d: &Drill, o: &mut Outage, statuses: &str) {
    for (class, load) in &mut o.loads {
        let kinds: &[&str] = match *class {
            "bearer" => &["items-bearer", "hybrid-bearer", "legacy"],
            "dpop" => &["dpop", "write-dpop", "hybrid-dpop"],
            "opaque" => &["items-opaque", "audit-opaque"],
            "claims" => &["audit-jwt"],
            _ => &[],
        };
        for k in kinds {
            d.command(load, &format!("expect {k} {statuses}"));
        }
        if *class == "refused" {
            let admin = if statuses == "2xx" { "403" } else { "403,503" };
            d.command(load, &format!("expect admin-refused {admin}"));
        }
    }
}

fn set_echo_mode(d: &mut Drill, mode: &str) {
    if let Some(s) = d.stack.services.get_mut("echo") {
        s.mode = mode.into();
    }
    if let Some(r) = d.stack.routes.iter_mut().find(|r| r.name == "echo") {
        r.mode = mode.into();
    }
}

/// Seconds since the gateway's last successful JWKS fetch, from /metrics
/// (None: no JWKS loaded yet, or the admin listener is down).
fn staleness(d: &Drill) -> Option<f64> {
    let m = d.metrics()?;
    m.value(
        "stella_gateway_authority_staleness_seconds",
        &[("what", "jwks")],
    )
    .or_else(|| m.value("stella_gateway_jwks_age_seconds", &[]))
}

fn readyz(d: &Drill) -> u16 {
    d.admin_get("/readyz").map_or(0, |r| r.status)
}

fn lkg_loads(d: &Drill) -> f64 {
    d.metric(
        "stella_gateway_authority_lkg_loads_total",
        &[("what", "jwks"), ("result", "loaded")],
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_secs())
}
