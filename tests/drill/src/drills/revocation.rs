//! Emergency revocation under load (runbooks/emergency-revocation.md): two
//! gateway replicas (A on the stack's ports, B beside it) share one real
//! `redis-server` (the DPoP replay store, through which the revocation list
//! is shared). Constant load from several clients on both replicas (an
//! anonymous one, `svc-bearer`, `svc-readonly`, `svc-dpop` with the load's
//! own key). Both replicas also have a TLS listener that takes client
//! certificates from the drill's CA (made with `openssl`,
//! `stella_test_support::Pki`), where `/svc/**` admits the SPIFFE
//! X.509-SVID of `spiffe://stella.test/ns/default/sa/orders` alone. Then,
//! one after another:
//! 1. a DPoP key (`jkt`) of `svc-dpop` that only the probes use, revoked
//!    on A's admin listener;
//! 2. the client `svc-readonly` (`client_id`), revoked on A;
//! 3. the workload's SPIFFE ID (`spiffe_id`), revoked on A;
//! 4. the subject of `svc-bearer`, by a CAEP `session-revoked` event the
//!    drill signs as a Shared Signals transmitter and pushes to A's
//!    receiver.
//!
//! For each, a probe per replica sends the revoked identity's request every
//! few milliseconds (the SPIFFE probe: one `curl` with the SVID per request,
//! a new TLS handshake each, so every 20 to 40 ms) and records when each
//! was sent and how it was answered. Measured per replica: from the revoke
//! call's return to the last request still let through, and to the first
//! refused; every request sent 1 s or more after the return must be
//! refused. With `--runs N` each identity is revoked N times: every run but
//! the last removes the entry again (on B) and waits until both replicas
//! let the identity through, and the drill prints p50, p99 and max of the
//! time to the last accepted request per identity and replica, and per
//! replica over every identity. The load checks that no other client got a
//! refusal (its kinds expect 2xx; the revoked identity's kind expects 2xx
//! or 401 while its runs go on, 401 after). Then replica B is restarted:
//! every revocation still holds on it, other clients still pass.

use crate::harness::{write_atomic, Abort, Outcome};
use crate::load::{kind, kind_expecting};
use crate::stack::token_command;
use crate::Drill;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stella_gateway::config::file::{
    RevocationSection, SsfSection, SsfTransmitterSection, TlsSection,
};
use stella_test_support::{
    curl_https, free_ports, now, try_request, unique_jti, AttackerKey, DpopKey, Pki, Process,
    RedisServer, TempDir, SPIFFE_ID,
};

const TRANSMITTER: &str = "https://transmitter.drill.example";
const TRANSMITTER_KID: &str = "drill-tx";
const AUDIENCE: &str = "https://gateway.drill.example/ssf";
const SESSION_REVOKED: &str = "https://schemas.openid.net/secevent/caep/event-type/session-revoked";
/// Requests sent this long after the revoke call returned must be refused.
const BOUND: Duration = Duration::from_secs(1);

/// A replica's addresses.
#[derive(Clone)]
struct Replica {
    name: &'static str,
    origin: String,
    http: SocketAddr,
    /// The TLS listener (client certificates from the drill's CA).
    tls: SocketAddr,
}

/// What a probe sends: a Bearer token, a DPoP-bound token and its key, or
/// a client certificate alone over TLS (curl: the CA, the certificate and
/// its key).
#[derive(Clone)]
enum Credential {
    Bearer(String),
    Dpop(String, Arc<DpopKey>),
    Certificate(Arc<(PathBuf, PathBuf, PathBuf)>),
}

/// One identity to revoke.
struct Target {
    name: &'static str,
    /// The kind in `/revocations`, and the value (for `sub`, its issuer too).
    kind: &'static str,
    value: String,
    issuer: Option<String>,
    path: &'static str,
    credential: Credential,
    /// The load's kind (per replica: `<kind>@a`, `<kind>@b`) that carries
    /// it, if the load sends it.
    load_kind: Option<&'static str>,
}

/// What a probe saw: (sent, status; 0 for no answer).
type Seen = Vec<(Instant, u16)>;

pub fn run(d: &mut Drill) -> Outcome {
    let redis = RedisServer::start();
    let tx_key = AttackerKey::generate();
    write_atomic(
        &d.run.conf.join("transmitter-jwks.json"),
        &json!({"keys": [tx_key.jwk(TRANSMITTER_KID)]}).to_string(),
    )?;
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
    d.stack.replay_store = Some(redis.url());
    d.stack.revocation = Some(RevocationSection {
        ssf: Some(SsfSection {
            transmitters: vec![SsfTransmitterSection {
                issuer: Some(TRANSMITTER.into()),
                jwks_file: Some("transmitter-jwks.json".into()),
                audience: Some(AUDIENCE.into()),
                revoke_for_seconds: Some(3_600),
                ..SsfTransmitterSection::default()
            }],
            ..SsfSection::default()
        }),
        ..RevocationSection::default()
    });
    d.stack_up()?;
    let tls_a = d.stack.tls_port().unwrap_or_default();
    let a = Replica {
        name: "A",
        origin: d.stack.gw(),
        http: addr(d.stack.http_port),
        tls: addr(tls_a),
    };
    let admin_a = addr(d.stack.admin_port);
    let (mut b_process, b, admin_b) = start_replica_b(d, None)?;
    d.run.ok(format!(
        "two replicas sharing redis {}: A {} (tls {}) and B {} (tls {})",
        redis.url(),
        a.origin,
        a.tls,
        b.origin,
        b.tls
    ));
    for admin in [admin_a, admin_b] {
        if d.run
            .wait_for(Duration::from_secs(10), || {
                metric(admin, "stella_gateway_revocation_store_up") == Some(1.0)
            })
            .is_none()
        {
            return d
                .run
                .abort(format!("replica on admin {admin}: store not up"));
        }
    }

    // The probes' identities.
    let probe_key = Arc::new(DpopKey::generate());
    let key_file = d.run.dir.join("probe-dpop-key.json");
    probe_key.write_private_jwk(&key_file);
    let dpop_token = d.command_output(
        token_command(&d.run.root, &d.stack.issuer, "svc-dpop")
            .arg("--dpop-key-file")
            .arg(&key_file),
    )?;
    let readonly = d.token("svc-readonly")?;
    let bearer = d.token("svc-bearer")?;
    let bearer_sub = claims(&bearer)["sub"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let svid = Credential::Certificate(Arc::new((
        pki.ca.clone(),
        pki.spiffe_cert.clone(),
        pki.spiffe_key.clone(),
    )));
    for r in [&a, &b] {
        let status = send(r, "/svc/x", &svid);
        if status != 200 {
            return d.run.abort(format!(
                "the SPIFFE SVID on replica {}'s TLS listener: {status}, wanted 200",
                r.name
            ));
        }
    }
    let targets = vec![
        Target {
            name: "jkt",
            kind: "jkt",
            value: probe_key.thumbprint(),
            issuer: None,
            path: "/dpop/1",
            credential: Credential::Dpop(dpop_token.trim().to_owned(), probe_key.clone()),
            load_kind: None,
        },
        Target {
            name: "client_id",
            kind: "client_id",
            value: "svc-readonly".into(),
            issuer: None,
            path: "/items/2",
            credential: Credential::Bearer(readonly),
            load_kind: Some("readonly"),
        },
        Target {
            name: "spiffe_id",
            kind: "spiffe_id",
            value: SPIFFE_ID.into(),
            issuer: None,
            path: "/svc/x",
            credential: svid,
            load_kind: None,
        },
        Target {
            name: "sub (caep)",
            kind: "sub",
            value: bearer_sub.clone(),
            issuer: Some(d.stack.issuer.clone()),
            path: "/items/1",
            credential: Credential::Bearer(bearer),
            load_kind: Some("bearer"),
        },
    ];

    let mut kinds = Vec::new();
    for r in [&a, &b] {
        let at = |k: &str| format!("{k}@{}", r.name.to_lowercase());
        let gw = &r.origin;
        kinds.push(kind(
            &at("public"),
            "GET",
            format!("{gw}/public/hello"),
            "none",
            1,
        ));
        kinds.push(kind(
            &at("bearer"),
            "GET",
            format!("{gw}/items/1"),
            "bearer:svc-bearer",
            2,
        ));
        kinds.push(kind(
            &at("readonly"),
            "GET",
            format!("{gw}/items/2"),
            "bearer:svc-readonly",
            2,
        ));
        kinds.push(kind(
            &at("dpop"),
            "GET",
            format!("{gw}/dpop/1?x=1"),
            "dpop:svc-dpop",
            2,
        ));
        kinds.push(kind_expecting(
            &at("anon"),
            "GET",
            format!("{gw}/items/3"),
            "none",
            "401",
            1,
        ));
    }
    d.load_start(kinds)?;
    d.step("baseline");
    d.hold()?;

    let runs = d.run.runs;
    if runs > 1 {
        d.run.say(format!(
            "{runs} runs per identity: revoke on A, measure, remove on B, wait until both let it through again"
        ));
    }
    let mut rows = Vec::new();
    for target in &targets {
        d.step(&format!(
            "revoke-{}",
            target.name.split(' ').next().unwrap_or("x")
        ));
        if let Some(k) = target.load_kind {
            for r in ["a", "b"] {
                d.expect(&format!("{k}@{r}"), "2xx,401");
            }
        }
        for run in 1..=runs {
            for row in measure(d, target, run, [&a, &b], admin_a, &tx_key)? {
                let label = if runs > 1 {
                    format!("{} on {} (run {run})", target.name, row.replica)
                } else {
                    format!("{} on {}", target.name, row.replica)
                };
                d.run.check(
                    row.late == 0 && row.other == 0,
                    format!(
                        "{label}: last accepted {} after the revoke returned, refused from {}",
                        ms(row.last_accepted),
                        ms(row.first_refused)
                    ),
                    format!(
                        "{label}: {} requests accepted 1 s or more after the revoke returned, {} neither 200 nor 401",
                        row.late, row.other
                    ),
                );
                rows.push(row);
            }
            if run < runs {
                // Removed on the other replica, so both directions of the
                // store's notices are exercised; both must let it back in.
                let removed = unrevoke(admin_b, target);
                if removed != 200 {
                    return d
                        .run
                        .abort(format!("removing {} again: status {removed}", target.name));
                }
                for r in [&a, &b] {
                    let back = d.run.wait_for(Duration::from_secs(5), || {
                        send(r, target.path, &target.credential) == 200
                    });
                    if back.is_none() {
                        return d.run.abort(format!(
                            "{} not let through on {} within 5 s of its removal",
                            target.name, r.name
                        ));
                    }
                }
            }
        }
        if let Some(k) = target.load_kind {
            for r in ["a", "b"] {
                d.expect(&format!("{k}@{r}"), "401");
            }
        }
        d.hold()?;
    }
    d.load_end();

    // Restart replica B: the list comes back from the store.
    d.run.say("== restart replica B");
    let ports = (b.http.port(), admin_b.port(), b.tls.port());
    b_process.stop("TERM", Duration::from_secs(15));
    let restarted = Instant::now();
    let (process, b2, admin_b2) = start_replica_b(d, Some(ports))?;
    b_process = process;
    d.run.ok(format!(
        "replica B back on {} after {} ms",
        b2.origin,
        restarted.elapsed().as_millis()
    ));
    let listed = get(admin_b2, "/revocations");
    d.run.check(
        listed["count"] == targets.len(),
        format!(
            "replica B lists the {} revocations after its restart",
            targets.len()
        ),
        format!(
            "replica B lists {} revocations after its restart",
            listed["count"]
        ),
    );
    for target in &targets {
        let status = send(&b2, target.path, &target.credential);
        d.run.check(
            status == 401,
            format!("{} still refused on the restarted replica B", target.name),
            format!(
                "{} answered {status} on the restarted replica B",
                target.name
            ),
        );
    }
    let public = status_of(try_request(
        b2.http,
        "GET",
        "/public/hello",
        &[],
        b"",
        Duration::from_secs(5),
    ));
    // Another DPoP key of the same client as the revoked key.
    let other_key = Arc::new(DpopKey::generate());
    let other_file = d.run.dir.join("other-dpop-key.json");
    other_key.write_private_jwk(&other_file);
    let other_token = d.command_output(
        token_command(&d.run.root, &d.stack.issuer, "svc-dpop")
            .arg("--dpop-key-file")
            .arg(&other_file),
    )?;
    let other = send(
        &b2,
        "/dpop/1",
        &Credential::Dpop(other_token.trim().to_owned(), other_key),
    );
    d.run.check(
        public == 200 && other == 200,
        "other callers pass on the restarted replica B (anonymous, svc-dpop with another key)",
        format!(
            "on the restarted replica B: GET /public/hello {public}, svc-dpop with another key {other}"
        ),
    );
    // One row per revocation; with several runs, the percentiles instead
    // (each run's figures are in its check line above).
    if runs == 1 {
        print_table(d, &rows);
    } else {
        print_percentiles(d, &targets, &rows);
    }
    b_process.stop("TERM", Duration::from_secs(15));
    drop(redis);
    Ok(())
}

/// Starts replica B: the stack's configuration with B's own listeners and
/// public origin (DPoP proofs name the replica they are sent to), in
/// `config/gateway-b.yaml`. `ports`: (http, admin, tls) to reuse.
fn start_replica_b(
    d: &Drill,
    ports: Option<(u16, u16, u16)>,
) -> Result<(Process, Replica, SocketAddr), Abort> {
    if ports.is_some() {
        return start_replica_b_on(d, ports);
    }
    // Free ports: a lost race for one is retried with others.
    let mut last = Abort(String::new());
    for _ in 0..3 {
        match start_replica_b_on(d, None) {
            Ok(started) => return Ok(started),
            Err(e) => {
                eprintln!("{}; retrying on other ports", e.0);
                last = e;
            }
        }
    }
    Err(last)
}

fn start_replica_b_on(
    d: &Drill,
    ports: Option<(u16, u16, u16)>,
) -> Result<(Process, Replica, SocketAddr), Abort> {
    let (http, admin, tls) = ports.unwrap_or_else(|| {
        let p = free_ports(3);
        (p[0], p[1], p[2])
    });
    let mut config = d.gateway_config();
    let origin = format!("http://127.0.0.1:{http}");
    config.gateway.public_origin = Some(origin.clone());
    config.gateway.listeners.http = Some(format!("127.0.0.1:{http}"));
    config.gateway.listeners.admin = Some(format!("127.0.0.1:{admin}"));
    if let Some(section) = config.gateway.listeners.tls.as_mut() {
        section.addr = Some(format!("127.0.0.1:{tls}"));
    }
    let text = crate::stack::yaml_without_nulls(&config)?;
    let file = d.run.conf.join("gateway-b.yaml");
    write_atomic(
        &file,
        &format!("# Written by stella-drill: replica B.\n{text}"),
    )?;
    let mut cmd = Command::new(d.run.binary("stella-gateway"));
    cmd.args(["run", "--config"]).arg(&file);
    let process = Process::start_logged(
        "gateway-b",
        cmd,
        "GATEWAY_READY",
        Duration::from_secs(60),
        &d.run.logs,
        Stdio::null(),
    )
    .map_err(|e| Abort(format!("replica B did not start: {e}")))?;
    Ok((
        process,
        Replica {
            name: "B",
            origin,
            http: addr(http),
            tls: addr(tls),
        },
        addr(admin),
    ))
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn claims(token: &str) -> Value {
    stella_test_support::jwt_claims(token)
}

/// One request of `credential` to `path` on `replica`: its status (0: no
/// answer).
fn send(replica: &Replica, path: &str, credential: &Credential) -> u16 {
    let (auth, proof) = match credential {
        Credential::Certificate(files) => {
            let (ca, cert, key) = &**files;
            return curl_https(replica.tls, path, ca, Some((cert, key)), &[])
                .response
                .map_or(0, |r| r.status);
        }
        Credential::Bearer(token) => (format!("Bearer {token}"), None),
        Credential::Dpop(token, key) => (
            format!("DPoP {token}"),
            Some(key.proof(
                "GET",
                &format!("{}{path}", replica.origin),
                Some(token),
                None,
                now(),
                &unique_jti("probe"),
            )),
        ),
    };
    let mut headers = vec![("Authorization", auth.as_str())];
    if let Some(proof) = &proof {
        headers.push(("DPoP", proof.as_str()));
    }
    status_of(try_request(
        replica.http,
        "GET",
        path,
        &headers,
        b"",
        Duration::from_secs(5),
    ))
}

/// Sends `credential`'s request to `replica` until `stop`, a few
/// milliseconds apart; what it saw.
fn probe(
    replica: Replica,
    path: &'static str,
    credential: Credential,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let sent = Instant::now();
            seen.push((sent, send(&replica, path, &credential)));
            if !matches!(credential, Credential::Certificate(_)) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        seen
    })
}

/// One run for `target`: probes on both replicas, the revocation on A
/// (`POST /revocations`, or a CAEP event for `sub`), then the probes'
/// verdict per replica.
fn measure(
    d: &Drill,
    target: &Target,
    run: u32,
    replicas: [&Replica; 2],
    admin_a: SocketAddr,
    tx_key: &AttackerKey,
) -> Result<Vec<Row>, Abort> {
    let stop = Arc::new(AtomicBool::new(false));
    let probes: Vec<_> = replicas
        .into_iter()
        .map(|r| {
            probe(
                r.clone(),
                target.path,
                target.credential.clone(),
                stop.clone(),
            )
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let (status, wanted) = match (target.kind, &target.issuer) {
        ("sub", Some(issuer)) => (push_set(admin_a, tx_key, &target.value, issuer), 202),
        (kind, _) => (revoke(admin_a, kind, &target.value), 201),
    };
    let returned = Instant::now();
    if status != wanted {
        stop.store(true, Ordering::Relaxed);
        return d.run.abort(format!(
            "revoking {} (run {run}): status {status}, wanted {wanted}",
            target.name
        ));
    }
    std::thread::sleep(BOUND + Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    Ok(replicas
        .into_iter()
        .zip(probes)
        .map(|(r, handle)| {
            let seen = handle.join().unwrap_or_default();
            judge(target.name, r.name, &seen, started, returned)
        })
        .collect())
}

/// `DELETE /revocations/{kind}/{value}` on `admin` (`?issuer=` for a
/// `sub`): its status.
fn unrevoke(admin: SocketAddr, target: &Target) -> u16 {
    let mut path = format!(
        "/revocations/{}/{}",
        encode(target.kind),
        encode(&target.value)
    );
    if let Some(issuer) = &target.issuer {
        path.push_str(&format!("?issuer={}", encode(issuer)));
    }
    status_of(try_request(
        admin,
        "DELETE",
        &path,
        &[],
        b"",
        Duration::from_secs(5),
    ))
}

/// Percent-encodes a path segment or query value.
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

/// `POST /revocations` on `admin`: its status.
fn revoke(admin: SocketAddr, kind: &str, value: &str) -> u16 {
    let body = json!({"kind": kind, "value": value, "for_seconds": 3600,
        "reason": "revocation drill"})
    .to_string();
    status_of(try_request(
        admin,
        "POST",
        "/revocations",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
        Duration::from_secs(5),
    ))
}

/// A CAEP `session-revoked` SET about `sub` of `issuer`, signed by the
/// drill's transmitter key and pushed to `admin`'s receiver: its status.
fn push_set(admin: SocketAddr, key: &AttackerKey, sub: &str, issuer: &str) -> u16 {
    let header = json!({"alg": "ES256", "typ": "secevent+jwt", "kid": TRANSMITTER_KID});
    let claims = json!({
        "iss": TRANSMITTER,
        "aud": AUDIENCE,
        "iat": now(),
        "jti": unique_jti("set"),
        "sub_id": {"format": "iss_sub", "iss": issuer, "sub": sub},
        "events": {SESSION_REVOKED: {"event_timestamp": now()}},
    });
    let set = key.sign(&header, &claims);
    status_of(try_request(
        admin,
        "POST",
        "/ssf/push",
        &[("Content-Type", "application/secevent+jwt")],
        set.as_bytes(),
        Duration::from_secs(5),
    ))
}

fn get(admin: SocketAddr, path: &str) -> Value {
    try_request(admin, "GET", path, &[], b"", Duration::from_secs(5))
        .map(|r| r.json())
        .unwrap_or(Value::Null)
}

fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    let r = try_request(admin, "GET", "/metrics", &[], b"", Duration::from_secs(5)).ok()?;
    stella_test_support::Metrics::parse(&r.text()).value(name, &[])
}

/// One replica's figures for one revocation.
struct Row {
    target: &'static str,
    replica: &'static str,
    /// How long the revoke call took.
    call: Duration,
    /// From the return to the send of the last request let through, in
    /// milliseconds; negative: it was sent before the return.
    last_accepted: f64,
    /// From the return to the send of the first request refused, in
    /// milliseconds; negative: sent before the return.
    first_refused: f64,
    accepted: usize,
    refused: usize,
    /// Let through though sent [`BOUND`] or more after the return.
    late: usize,
    /// Answered neither 200 nor 401.
    other: usize,
}

fn judge(
    target: &'static str,
    replica: &'static str,
    seen: &Seen,
    started: Instant,
    returned: Instant,
) -> Row {
    let after = |t: Instant| t.saturating_duration_since(returned);
    let signed = |t: Instant| {
        if t >= returned {
            (t - returned).as_secs_f64() * 1000.0
        } else {
            -((returned - t).as_secs_f64() * 1000.0)
        }
    };
    let accepted: Vec<Instant> = seen.iter().filter(|s| s.1 == 200).map(|s| s.0).collect();
    let refused: Vec<Instant> = seen.iter().filter(|s| s.1 == 401).map(|s| s.0).collect();
    Row {
        target,
        replica,
        call: returned - started,
        last_accepted: accepted
            .iter()
            .max()
            .map(|t| signed(*t))
            .unwrap_or(f64::NAN),
        first_refused: refused.iter().min().map(|t| signed(*t)).unwrap_or(f64::NAN),
        accepted: accepted.len(),
        refused: refused.len(),
        late: accepted.iter().filter(|t| after(**t) >= BOUND).count(),
        other: seen.iter().filter(|s| s.1 != 200 && s.1 != 401).count(),
    }
}

fn ms(millis: f64) -> String {
    format!("{millis:+.1} ms")
}

fn print_table(d: &Drill, rows: &[Row]) {
    d.run.say("");
    d.run.say(format!(
        "{:<11} | {:<7} | {:>12} | {:>22} | {:>20} | {:>8} | {:>7}",
        "revoked",
        "replica",
        "revoke call",
        "last accepted after",
        "first refused after",
        "accepted",
        "refused"
    ));
    d.run.say(format!(
        "{:-<12}|{:-<9}|{:-<14}|{:-<24}|{:-<22}|{:-<10}|{:-<8}",
        "", "", "", "", "", "", ""
    ));
    for r in rows {
        d.run.say(format!(
            "{:<11} | {:<7} | {:>12} | {:>22} | {:>20} | {:>8} | {:>7}",
            r.target,
            r.replica,
            format!("{:.1} ms", r.call.as_secs_f64() * 1000.0),
            ms(r.last_accepted),
            ms(r.first_refused),
            r.accepted,
            r.refused
        ));
    }
    let worst = rows
        .iter()
        .map(|r| r.last_accepted)
        .filter(|v| !v.is_nan())
        .fold(f64::NEG_INFINITY, f64::max);
    d.run.say(format!(
        "worst: the last request let through was sent {} after the revoke call returned (bound: {} ms; negative: before it returned)",
        ms(worst),
        BOUND.as_millis()
    ));
}

/// The value at quantile `q` (0 to 1) of `sorted` (ascending), by the
/// nearest rank: with fewer than 100 values, p99 is the largest.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// p50, p99 and max of the time from the revoke call's return to the last
/// accepted request, per identity and replica over the runs, and per
/// replica over every identity and run; and the p99 of the first refusal.
fn print_percentiles(d: &Drill, targets: &[Target], rows: &[Row]) {
    d.run.say("");
    d.run.say(format!(
        "time from the revoke call's return to the last accepted request, over {} runs per identity (nearest rank; negative: sent before the return)",
        d.run.runs
    ));
    d.run.say(format!(
        "{:<11} | {:<7} | {:>5} | {:>11} | {:>11} | {:>11} | {:>18}",
        "revoked", "replica", "runs", "p50", "p99", "max", "first refused p99"
    ));
    d.run.say(format!(
        "{:-<12}|{:-<9}|{:-<7}|{:-<13}|{:-<13}|{:-<13}|{:-<19}",
        "", "", "", "", "", "", ""
    ));
    let line = |name: &str, replica: &str, of: &[&Row]| {
        let sorted = |f: fn(&Row) -> f64| {
            let mut v: Vec<f64> = of.iter().map(|r| f(r)).filter(|v| !v.is_nan()).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let last = sorted(|r| r.last_accepted);
        let first = sorted(|r| r.first_refused);
        format!(
            "{:<11} | {:<7} | {:>5} | {:>11} | {:>11} | {:>11} | {:>18}",
            name,
            replica,
            of.len(),
            ms(quantile(&last, 0.5)),
            ms(quantile(&last, 0.99)),
            ms(last.last().copied().unwrap_or(f64::NAN)),
            ms(quantile(&first, 0.99)),
        )
    };
    for target in targets {
        for replica in ["A", "B"] {
            let of: Vec<&Row> = rows
                .iter()
                .filter(|r| r.target == target.name && r.replica == replica)
                .collect();
            d.run.say(line(target.name, replica, &of));
        }
    }
    for replica in ["A", "B"] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.replica == replica).collect();
        d.run.say(line("(all)", replica, &of));
    }
}

/// The status of an answer; 0 for none.
fn status_of(answer: Result<stella_test_support::Response, String>) -> u16 {
    answer.map(|r| r.status).unwrap_or(0)
}
