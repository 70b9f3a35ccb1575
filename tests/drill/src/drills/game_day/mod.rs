//! Game day: the faults the other drills inject one at a time, overlapping,
//! under one constant mixed load (runbooks/game-day.md). Two gateway replicas
//! (A, the stack's, and B beside it) share one `redis-server` (the DPoP
//! replay store); `echo` runs as two instances. Load, each class its own
//! stella-load sending to both replicas: `bearer` (GatewayEnforced, Hybrid,
//! ServiceEnforced routes and the claims-dependent `/audit/**`), `dpop`,
//! `opaque` (an opaque token, introspected), `anon` (anonymous, and the
//! 401 and 403 that must stay refused); and an `mtls` probe on each
//! replica's TLS listener (a SPIFFE client certificate alone on `/svc/**`,
//! and a certificate-bound token on `/mtls/**`). Meanwhile a scheduler
//! injects, at fixed times (full length; `--short` scales them to about
//! 45 s):
//!
//! - the Authority down for 90 s, twice (stop; start on the same port with
//!   the same keys and the tokens it issued);
//! - a Redis restart (SIGKILL, then an empty server on the same port),
//!   during the first outage;
//! - an upstream replica (`echo-2`) killed with SIGKILL and started again
//!   15 s later;
//! - a configuration reload every 20 s on both replicas (a route added or
//!   removed in the policies, then POST /reload);
//! - a binary upgrade of replica B (`stella-gateway upgrade`);
//! - 1000 slow clients (100 with `--short`), half on each replica, that
//!   trickle a request head and never finish it;
//! - a burst of tokens naming key ids the Authority never published
//!   (4000 in 10 s; 400 in 3 s), during the second outage.
//!
//! Pass: no failed request, that is every answer one the design promises:
//! the load's kinds 2xx (the refused kinds their 401 or 403), DPoP 503
//! `temporarily_unavailable` with Retry-After while the replay store is
//! restarting, the slow clients 408, the unknown kids 401 `unknown_kid` or
//! 503 (the Authority unreachable or a refetch cooling down). Every refusal
//! the gateways logged is counted by status and reason. The resident set of
//! each replica at the end is within 10 % of its size after the warm-up
//! (replica B's new process against the old one's; 25 % with `--short`,
//! whose 6 s warm-up ends before the allocator and caches settle). p99 per
//! phase and load class is printed.

mod faults;
mod report;

use crate::harness::{write_atomic, Abort, Outcome};
use crate::load::{kind, kind_expecting, Load};
use crate::stack::{alive, rss_kib, token_command};
use crate::Drill;
use faults::{KidBurst, MtlsProbe, SlowClients};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use stella_gateway::config::file::TlsSection;
use stella_test_support::{
    try_request, Metrics, Pki, Process, RedisServer, TempDir, OPAQUE_AUDIENCE,
};

/// Keys are fresh this long after a fetch.
const REFRESH: u64 = 10;
/// Introspection results and effective claims are fresh this long.
const CACHE: u64 = 5;
const CLASSES: [&str; 4] = ["bearer", "dpop", "opaque", "anon"];
/// Added to and removed from the echo policies by the reloads.
const ROUTE: &str = "
  # Added and removed by the game-day drill's reloads.
  - id: echo-gameday
    path: /gameday/**
    policy:
      scopes_any: [echo.read]
";

/// When each fault happens, in seconds from the start of the load.
struct Timing {
    warmup: u64,
    outage: u64,
    authority_down: [u64; 2],
    redis_restart: u64,
    kill_upstream: u64,
    start_upstream: u64,
    slow_clients: u64,
    upgrade: u64,
    kid_burst: u64,
    end: u64,
    reload_every: u64,
    slow_count: usize,
    kid_count: usize,
    kid_seconds: f64,
}

impl Timing {
    fn new(short: bool) -> Timing {
        if short {
            Timing {
                warmup: 6,
                outage: 10,
                authority_down: [6, 26],
                redis_restart: 9,
                kill_upstream: 12,
                start_upstream: 14,
                slow_clients: 17,
                upgrade: 20,
                kid_burst: 29,
                end: 44,
                reload_every: 4,
                slow_count: 100,
                kid_count: 400,
                kid_seconds: 3.0,
            }
        } else {
            Timing {
                warmup: 60,
                outage: 90,
                authority_down: [60, 330],
                redis_restart: 90,
                kill_upstream: 120,
                start_upstream: 135,
                slow_clients: 210,
                upgrade: 220,
                kid_burst: 360,
                end: 600,
                reload_every: 20,
                slow_count: 1000,
                kid_count: 4000,
                kid_seconds: 10.0,
            }
        }
    }

    /// Every event, in order of time (reloads after the others at the same
    /// second).
    fn events(&self) -> Vec<(u64, Event)> {
        let mut events = vec![
            (self.warmup, Event::Baseline),
            (self.authority_down[0], Event::AuthorityDown(1)),
            (
                self.authority_down[0] + self.outage,
                Event::AuthorityBack(1),
            ),
            (self.authority_down[1], Event::AuthorityDown(2)),
            (
                self.authority_down[1] + self.outage,
                Event::AuthorityBack(2),
            ),
            (self.redis_restart, Event::RedisRestart),
            (self.kill_upstream, Event::KillUpstream),
            (self.start_upstream, Event::StartUpstream),
            (self.slow_clients, Event::SlowClients),
            (self.upgrade, Event::Upgrade),
            (self.kid_burst, Event::KidBurst),
            (self.end, Event::End),
        ];
        let mut at = self.reload_every;
        while at < self.end {
            events.push((at, Event::Reload));
            at += self.reload_every;
        }
        events.sort_by_key(|(at, e)| (*at, matches!(e, Event::Reload)));
        events
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Event {
    Baseline,
    AuthorityDown(u8),
    AuthorityBack(u8),
    RedisRestart,
    KillUpstream,
    StartUpstream,
    SlowClients,
    Upgrade,
    KidBurst,
    Reload,
    End,
}

/// A phase: from one event to the next (reloads do not start one).
struct Phase {
    name: String,
    seconds: u64,
    /// The faults under way when it began.
    active: String,
    /// Each replica's resident set when it began, KiB.
    rss: Vec<Option<u64>>,
}

/// A gateway replica: its addresses, the pid serving it, its config file.
struct Replica {
    name: &'static str,
    origin: String,
    http: SocketAddr,
    admin: SocketAddr,
    tls: SocketAddr,
    pid: u32,
    config: std::path::PathBuf,
    /// The logs holding its decision lines.
    logs: Vec<String>,
}

/// Everything the game day runs and measures.
struct GameDay {
    loads: Vec<(&'static str, Load)>,
    phases: Vec<Phase>,
    replicas: Vec<Replica>,
    started: Instant,
    probe: MtlsProbe,
    slow: Option<SlowClients>,
    kids: Option<KidBurst>,
    /// (replica, RSS KiB after the warm-up, at the end).
    rss: Vec<(&'static str, Option<u64>, Option<u64>)>,
    reloads: (u32, u32),
    /// Milliseconds DPoP was refused while the replay store restarted.
    redis_gap_ms: Option<u64>,
}

pub fn run(d: &mut Drill) -> Outcome {
    let t = Timing::new(d.run.short);
    let mut redis = RedisServer::start();
    d.stack.replay_store = Some(redis.url());
    d.stack.echo_replicas = 2;
    // Keys survive the longest outage with a margin: the keys' age at its
    // start is at most REFRESH, and a fetch between the outages may wait
    // for the gateway's next retry.
    let max_stale = t.outage + if d.run.short { 35 } else { 30 };
    d.stack.authority_env = vec![(
        "AUTHORITY_KEYS_FILE".into(),
        d.run.dir.join("authority-keys.json").display().to_string(),
    )];
    d.outage_ready_authority(REFRESH, max_stale, CACHE)?;
    let pki_dir = TempDir::new("drill-pki");
    let pki = Pki::generate(&pki_dir);
    // The listeners' ports are chosen when each replica starts (retried
    // with others when a port was taken meanwhile).
    let tls_section = TlsSection {
        cert_file: Some(pki.server_cert.display().to_string()),
        key_file: Some(pki.server_key.display().to_string()),
        client_certificates: Some("optional".into()),
        client_ca_file: Some(pki.ca.display().to_string()),
        http2: Some(false),
        ..TlsSection::default()
    };
    d.stack.tls = Some(tls_section);
    d.stack_up()?;
    let tls_a = d.stack.tls_port().unwrap_or_default();
    let (mut b_process, config_b, ports) = d.start_replica_on_free_ports("gateway-b")?;
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let replicas = vec![
        Replica {
            name: "a",
            origin: d.stack.gw(),
            http: at(d.stack.http_port),
            admin: at(d.stack.admin_port),
            tls: at(tls_a),
            pid: d.stack.gateway.as_ref().map_or(0, Process::pid),
            config: d.run.conf.join("gateway.yaml"),
            logs: vec!["gateway.out".into(), "gateway.err".into()],
        },
        Replica {
            name: "b",
            origin: format!("http://127.0.0.1:{}", ports[0]),
            http: at(ports[0]),
            admin: at(ports[1]),
            tls: at(ports[2]),
            pid: b_process.pid(),
            config: config_b,
            logs: vec!["gateway-b.out".into(), "gateway-b.err".into()],
        },
    ];
    d.run.ok(format!(
        "two replicas sharing redis {}: a {} (tls {}), b {} (tls {}); echo on echo-1 and echo-2; keys stale for at most {max_stale}s",
        redis.url(),
        replicas[0].origin,
        replicas[0].tls,
        replicas[1].origin,
        replicas[1].tls
    ));

    // What the faults send, prepared before the load starts.
    let mtls_token = d
        .command_output(
            token_command(&d.run.root, &d.stack.issuer, "svc-mtls")
                .arg("--cert-pem")
                .arg(&pki.client_cert),
        )?
        .trim()
        .to_owned();
    let kid_tokens = faults::unknown_kid_tokens(&d.stack.bearer_token, t.kid_count);
    let policy = d.run.conf.join("policies/echo.yaml");
    let original = std::fs::read_to_string(&policy)
        .map_err(|e| Abort(format!("{}: {e}", policy.display())))?;

    let mut loads = Vec::new();
    for class in CLASSES {
        let (kinds, share) = class_kinds(d, &replicas, class);
        let args: &[&str] = match class {
            "opaque" => &["--resource", OPAQUE_AUDIENCE],
            _ => &[],
        };
        let rate = (d.run.rate * share / 100).max(1);
        loads.push((
            class,
            d.start_load_with(&format!("load-{class}"), kinds, rate, args)?,
        ));
    }
    let probe = MtlsProbe::start(&replicas, &pki, mtls_token);
    d.run.say(format!(
        "  load: {} req/s over {} on both replicas ({}/load-*.yaml), mtls probe on both TLS listeners",
        d.run.rate,
        CLASSES.join(" "),
        d.run.relative(&d.run.logs)
    ));
    let mut g = GameDay {
        loads,
        phases: vec![Phase {
            name: "warmup".into(),
            seconds: 0,
            active: String::new(),
            rss: Vec::new(),
        }],
        replicas,
        started: Instant::now(),
        probe,
        slow: None,
        kids: None,
        rss: Vec::new(),
        reloads: (0, 0),
        redis_gap_ms: None,
    };
    let result = schedule(
        d,
        &mut g,
        &t,
        &mut redis,
        &mut b_process,
        &policy,
        &original,
        kid_tokens,
    );
    report::verdict(d, g, &t, b_process);
    drop(redis);
    drop(pki_dir);
    result
}

/// Runs the events at their times.
#[allow(clippy::too_many_arguments)]
fn schedule(
    d: &mut Drill,
    g: &mut GameDay,
    t: &Timing,
    redis: &mut RedisServer,
    b_process: &mut Process,
    policy: &std::path::Path,
    original: &str,
    mut kid_tokens: Vec<String>,
) -> Outcome {
    let mut authority_down = false;
    let mut upstream_down = false;
    let mut with_route = false;
    for (at, event) in t.events() {
        let due = g.started + Duration::from_secs(at);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let exited = g.loads.iter_mut().any(|(_, l)| l.process_exited());
        if exited {
            return d.run.abort("a load generator exited early");
        }
        let label = match event {
            // The resident sets are read; the warm-up phase goes on.
            Event::Baseline => String::new(),
            Event::AuthorityDown(n) => format!("authority-down-{n}"),
            Event::AuthorityBack(n) => format!("authority-back-{n}"),
            Event::RedisRestart => "redis-restart".into(),
            Event::KillUpstream => "echo-2-killed".into(),
            Event::StartUpstream => "echo-2-started".into(),
            Event::SlowClients => format!("slow-clients-{}", t.slow_count),
            Event::Upgrade => "upgrade-b".into(),
            Event::KidBurst => format!("unknown-kids-{}", t.kid_count),
            Event::Reload | Event::End => String::new(),
        };
        if !label.is_empty() {
            let mut active = Vec::new();
            if authority_down && !matches!(event, Event::AuthorityBack(_)) {
                active.push("authority-down");
            }
            if upstream_down && event != Event::StartUpstream {
                active.push("echo-2-down");
            }
            if g.slow.as_ref().is_some_and(|s| !s.finished()) {
                active.push("slow-clients");
            }
            if g.kids.as_ref().is_some_and(|k| !k.finished()) {
                active.push("unknown-kids");
            }
            phase(d, g, &format!("{at:03}-{label}"), active.join("+"));
        }
        match event {
            Event::Baseline => {
                g.rss = g
                    .replicas
                    .iter()
                    .map(|r| (r.name, rss_kib(r.pid), None))
                    .collect();
                d.run.ok(format!(
                    "RSS after the warm-up: {}",
                    g.rss
                        .iter()
                        .map(|(n, kib, _)| format!("{n} {} KiB", kib.unwrap_or(0)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            Event::AuthorityDown(_) => {
                d.stop_authority();
                authority_down = true;
                d.run.ok(format!("Authority stopped ({})", d.stack.issuer));
            }
            Event::AuthorityBack(_) => {
                d.start_authority(d.stack.authority_port)?;
                authority_down = false;
                d.run.ok(format!(
                    "Authority back on {} (same port, keys and issued tokens)",
                    d.stack.issuer
                ));
            }
            Event::RedisRestart => redis_restart(d, g, redis),
            Event::KillUpstream => {
                if let Some(mut p) = d
                    .stack
                    .services
                    .get_mut("echo-2")
                    .and_then(|s| s.process.take())
                {
                    p.stop("KILL", Duration::from_secs(5));
                }
                upstream_down = true;
                d.run.ok("echo-2 killed (SIGKILL)");
            }
            Event::StartUpstream => {
                let port = d.stack.service("echo-2").addr.port();
                d.start_service("echo-2", "echo", "GatewayEnforced", port)?;
                upstream_down = false;
                d.run.ok(format!("echo-2 started again on port {port}"));
            }
            Event::SlowClients => {
                g.slow = Some(SlowClients::start(d, &g.replicas, t.slow_count));
                d.run.ok(format!(
                    "{} slow clients connecting, half on each replica",
                    t.slow_count
                ));
            }
            Event::Upgrade => {
                let b = &g.replicas[1];
                let up = d.upgrade_gateway(&b.config, "gateway-b-upgraded.log")?;
                d.stack.adopted = Some(up.new);
                d.run.ok(format!(
                    "replica b: {} (command took {} ms)",
                    up.line, up.millis
                ));
                let gone = d.run.wait_for(Duration::from_secs(30), || !alive(up.old));
                d.run.check(
                    gone.is_some(),
                    format!(
                        "the old process of b (pid {}) drained and exited {} ms after the handover",
                        up.old,
                        gone.unwrap_or(0)
                    ),
                    format!(
                        "the old process of b (pid {}) still runs 30 s after the handover",
                        up.old
                    ),
                );
                let _ = b_process.wait_exit(Duration::from_secs(1));
                let b = &mut g.replicas[1];
                b.pid = up.new;
                b.logs.push("gateway-b-upgraded.log".into());
            }
            Event::KidBurst => {
                let tokens = std::mem::take(&mut kid_tokens);
                g.kids = Some(KidBurst::start(&g.replicas, tokens, t.kid_seconds));
                d.run.ok(format!(
                    "{} unknown-kid tokens over {}s, both replicas",
                    t.kid_count, t.kid_seconds
                ));
            }
            Event::Reload => {
                with_route = !with_route;
                let text = if with_route {
                    format!("{original}{ROUTE}")
                } else {
                    original.to_owned()
                };
                write_atomic(policy, &text)?;
                for r in &g.replicas {
                    let applied = reload(d, r.admin);
                    g.reloads.0 += u32::from(applied);
                    g.reloads.1 += 1;
                }
            }
            Event::End => {}
        }
    }
    // The last slow clients and unknown kids have been answered before the
    // resident sets are read again.
    if let Some(slow) = &g.slow {
        d.run.wait_for(Duration::from_secs(40), || slow.finished());
    }
    std::thread::sleep(Duration::from_secs(1));
    for (i, r) in g.replicas.iter().enumerate() {
        if let Some(row) = g.rss.get_mut(i) {
            row.2 = rss_kib(r.pid);
        }
    }
    Ok(())
}

/// Restarts Redis (SIGKILL, an empty server on the same port); DPoP may be
/// refused with 503 until both replicas use the new server again.
fn redis_restart(d: &mut Drill, g: &mut GameDay, redis: &mut RedisServer) {
    set_dpop_expectation(d, g, "2xx,503");
    let started = Instant::now();
    redis.restart();
    let restarted = started.elapsed().as_millis();
    // Both replicas see the store again (their ping every second), then a
    // second more for connections the pool reopens.
    let up = |r: &Replica| {
        try_request(r.admin, "GET", "/metrics", &[], b"", Duration::from_secs(5))
            .ok()
            .and_then(|resp| {
                Metrics::parse(&resp.text())
                    .value("stella_gateway_degraded", &[("dependency", "replay_store")])
            })
            == Some(0.0)
    };
    std::thread::sleep(Duration::from_millis(1500));
    let back = d
        .run
        .wait_for(Duration::from_secs(30), || g.replicas.iter().all(up));
    std::thread::sleep(Duration::from_secs(1));
    g.redis_gap_ms = back.map(|ms| ms + 2500 + restarted as u64);
    d.run.check(
        back.is_some(),
        format!("redis restarted in {restarted} ms; both replicas use it again"),
        "the replay store is still degraded on a replica 30 s after the restart",
    );
    set_dpop_expectation(d, g, "2xx");
}

fn set_dpop_expectation(d: &Drill, g: &mut GameDay, statuses: &str) {
    for (class, load) in &mut g.loads {
        if *class == "dpop" {
            for kind in ["dpop", "write-dpop", "hybrid-dpop"] {
                for r in ["a", "b"] {
                    d.command(load, &format!("expect {kind}@{r} {statuses}"));
                }
            }
        }
    }
}

/// POST /reload on a replica's admin listener; whether it was applied (or
/// found unchanged: the file watcher got there first). A refusal fails the
/// drill.
fn reload(d: &Drill, admin: SocketAddr) -> bool {
    let answer = try_request(admin, "POST", "/reload", &[], b"", Duration::from_secs(10));
    let body = answer
        .as_ref()
        .map(|r| r.text())
        .unwrap_or_else(|e| e.clone());
    let result = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["result"].as_str().map(str::to_owned));
    match result.as_deref() {
        Some("applied" | "unchanged") => true,
        _ => {
            d.run.fail(format!("POST /reload on {admin}: {body}"));
            false
        }
    }
}

/// Starts a phase: its name goes to every load generator and the probe.
fn phase(d: &mut Drill, g: &mut GameDay, name: &str, active: String) {
    let elapsed = g.started.elapsed().as_secs();
    if let Some(last) = g.phases.last_mut() {
        last.seconds = elapsed.saturating_sub(last.seconds);
    }
    let during = if active.is_empty() {
        String::new()
    } else {
        format!(" (during {active})")
    };
    d.run.say(format!("== {elapsed:>3}s phase {name}{during}"));
    for (_, load) in &mut g.loads {
        d.command(load, &format!("step {name}"));
    }
    g.probe.set_phase(name);
    let rss = g.replicas.iter().map(|r| rss_kib(r.pid)).collect();
    g.phases.push(Phase {
        name: name.into(),
        seconds: elapsed,
        active,
        rss,
    });
}

/// The kinds of a load class on both replicas (`<kind>@a`, `<kind>@b`) and
/// its share of the rate, percent.
fn class_kinds(d: &Drill, replicas: &[Replica], class: &str) -> (Vec<Value>, u32) {
    let gw = d.stack.gw();
    let all = d.default_kinds();
    let pick = |name: &str, weight: u32| {
        all.iter().find(|k| k["name"] == name).map(|k| {
            let mut k = k.clone();
            k["weight"] = serde_json::json!(weight);
            k
        })
    };
    let (kinds, share): (Vec<Value>, u32) = match class {
        "bearer" => (
            [
                pick("items-bearer", 3),
                pick("hybrid-bearer", 1),
                pick("legacy", 1),
                Some(kind(
                    "audit-jwt",
                    "GET",
                    format!("{gw}/audit/2"),
                    "bearer:svc-bearer",
                    1,
                )),
            ]
            .into_iter()
            .flatten()
            .collect(),
            35,
        ),
        "dpop" => (
            [
                pick("dpop", 2),
                pick("write-dpop", 1),
                pick("hybrid-dpop", 1),
            ]
            .into_iter()
            .flatten()
            .collect(),
            25,
        ),
        "opaque" => (
            vec![
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
            15,
        ),
        _ => (
            [
                pick("public", 3),
                Some(kind_expecting(
                    "anon-refused",
                    "GET",
                    format!("{gw}/items/3"),
                    "none",
                    "401",
                    1,
                )),
                pick("admin-refused", 1),
            ]
            .into_iter()
            .flatten()
            .collect(),
            25,
        ),
    };
    let mut out = Vec::new();
    for r in replicas {
        for k in &kinds {
            let mut k = k.clone();
            let url = k["url"]
                .as_str()
                .unwrap_or_default()
                .replacen(&gw, &r.origin, 1);
            k["url"] = Value::String(url);
            k["name"] = Value::String(format!(
                "{}@{}",
                k["name"].as_str().unwrap_or_default(),
                r.name
            ));
            out.push(k);
        }
    }
    (out, share)
}
