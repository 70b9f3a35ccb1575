//! Two gateway nodes sharing one real `redis-server` as the DPoP replay store
//! (docs/design.md §3.3, §3.9): a proof accepted by one node is a replay on the
//! other, concurrent submissions of one proof across both succeed exactly once,
//! a store outage fails closed (503 with `Retry-After`) for DPoP while Bearer
//! requests carry on, a restart under load gives 503 only while the store is
//! down, and a store behind TLS and a password is shared the same way.
//!
//! Both nodes have the same configuration apart from their ports, and the
//! same `public_origin`, as behind one load-balanced address: clients make
//! proofs for that origin whichever node they reach.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::Duration;

/// The origin clients use to reach the cluster (nobody resolves it: `htu`
/// is checked against it, never against `Host`).
const PUBLIC_ORIGIN: &str = "http://api.stella.test";

struct Cluster {
    a: Gateway,
    b: Gateway,
    redis: RedisServer,
    echo: Echo,
    authority: Authority,
    key: DpopKey,
    token: String,
    _dir: TempDir,
}

impl Cluster {
    fn start(label: &str) -> Cluster {
        Cluster::start_with(
            label,
            |_| RedisServer::start(),
            |redis, _| json!({"replay_store": redis.url()}),
        )
    }

    /// Two nodes whose `auth.dpop` section is `dpop(redis, dir)`.
    fn start_with(
        label: &str,
        redis: impl FnOnce(&TempDir) -> RedisServer + Send,
        dpop: impl Fn(&RedisServer, &TempDir) -> Value + Sync,
    ) -> Cluster {
        let dir = TempDir::new(label);
        let (authority, echo, redis) = std::thread::scope(|s| {
            let echo = s.spawn(Echo::gateway_enforced);
            let redis = s.spawn(|| redis(&dir));
            let authority = Authority::start();
            (
                authority,
                echo.join().expect("echo started"),
                redis.join().expect("redis started"),
            )
        });
        let node = || {
            GatewaySetup::new(&authority.issuer)
                .service("echo", echo.addr())
                .public_origin(PUBLIC_ORIGIN)
                .auth("dpop", dpop(&redis, &dir))
                .start(&dir)
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(node);
            let b = node();
            (a.join().expect("gateway a started"), b)
        });
        assert!(a.keys_loaded_at_start() && b.keys_loaded_at_start());
        let key = DpopKey::generate();
        let key_file = dir.join("dpop-key.json");
        key.write_private_jwk(&key_file);
        let token = authority.dpop_token(DPOP, &key_file);
        assert_eq!(jwt_claims(&token)["cnf"]["jkt"], key.thumbprint());
        Cluster {
            a,
            b,
            redis,
            echo,
            authority,
            key,
            token,
            _dir: dir,
        }
    }

    fn proof(&self, path: &str) -> String {
        proof(&self.key, &self.token, path)
    }

    fn send(&self, node: &Gateway, path: &str, proof: &str) -> Response {
        send(&self.token, node, path, proof)
    }
}

fn proof(key: &DpopKey, token: &str, path: &str) -> String {
    key.proof(
        "GET",
        &format!("{PUBLIC_ORIGIN}{path}"),
        Some(token),
        None,
        now(),
        &unique_jti("cluster"),
    )
}

fn send(token: &str, node: &Gateway, path: &str, proof: &str) -> Response {
    let auth = format!("DPoP {token}");
    node.get(path, &[("Authorization", &auth), ("DPoP", proof)])
}

#[track_caller]
fn assert_dpop_reached(r: &Response) {
    let body = assert_reached_via_envelope(r);
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
}

#[test]
fn a_proof_accepted_by_one_gateway_is_refused_as_a_replay_by_the_other() {
    let c = Cluster::start("cluster-replay");

    // A first, then B; and the other way round with another proof.
    for (first, second) in [(&c.a, &c.b), (&c.b, &c.a)] {
        let before = c.echo.requests();
        let proof = c.proof("/dpop/1");
        assert_dpop_reached(&c.send(first, "/dpop/1", &proof));
        let r = c.send(second, "/dpop/1", &proof);
        assert_invalid_dpop_proof(&r);
        assert_eq!(r.json()["proof_error"], "replayed", "{}", r.text());
        assert_eq!(c.echo.requests(), before + 1);
    }
    for node in [&c.a, &c.b] {
        assert_eq!(
            node.metrics().value(
                "stella_gateway_dpop_proof_rejected_total",
                &[("reason", "replayed")]
            ),
            Some(1.0)
        );
    }
}

#[test]
fn fifty_concurrent_submissions_of_one_proof_across_both_gateways_succeed_exactly_once() {
    let c = Cluster::start("cluster-race");
    let proof = c.proof("/dpop/race");
    const N: usize = 50;
    let barrier = Barrier::new(N);
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..N)
            .map(|i| {
                let node = if i % 2 == 0 { &c.a } else { &c.b };
                let (c, proof, barrier) = (&c, &proof, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let r = c.send(node, "/dpop/race", proof);
                    let error = if r.status == 200 {
                        String::new()
                    } else {
                        r.json()["proof_error"].as_str().unwrap_or("?").to_owned()
                    };
                    (r.status, error)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("request thread"))
            .collect()
    });
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let replayed = statuses
        .iter()
        .filter(|(s, e)| *s == 401 && e == "replayed")
        .count();
    assert_eq!((ok, replayed), (1, N - 1), "{statuses:?}");
    assert_eq!(c.echo.requests(), 1);
}

#[test]
fn with_redis_down_dpop_requests_fail_closed_with_503_while_bearer_requests_pass() {
    let mut c = Cluster::start("cluster-outage");
    let bearer = c.authority.token(BEARER);
    assert_dpop_reached(&c.send(&c.a, "/dpop/1", &c.proof("/dpop/1")));

    c.redis.kill();
    for node in [&c.a, &c.b] {
        let r = c.send(node, "/dpop/2", &c.proof("/dpop/2"));
        assert_problem(&r, 503, "temporarily_unavailable");
        let retry_after = r.header("retry-after").unwrap_or_default();
        assert!(
            retry_after.parse::<u32>().is_ok_and(|s| s > 0),
            "{:?}",
            r.headers
        );
        assert!(r.header("www-authenticate").is_none(), "{:?}", r.headers);
        assert!(
            node.metrics()
                .value("stella_gateway_replay_store_errors_total", &[])
                .unwrap_or(0.0)
                >= 1.0
        );
        // Bearer tokens do not need the replay store.
        let body = assert_reached_via_envelope(&node.get_with_token("/items/1", &bearer));
        assert_eq!(body["identity"]["auth_method"], "bearer");
    }
    assert_eq!(c.echo.requests(), 3);

    // The store comes back (empty, on the same address): both nodes use it
    // again without a restart, and still share it.
    c.redis.restart();
    let proof = c.proof("/dpop/3");
    assert_dpop_reached(&c.send(&c.b, "/dpop/3", &proof));
    assert_invalid_dpop_proof(&c.send(&c.a, "/dpop/3", &proof));
    assert_eq!(c.echo.requests(), 4);
}

/// A shared replay store that goes down must not take every node out of
/// readiness: a load balancer following `/readyz` would then drop Bearer,
/// anonymous and SPIFFE traffic too. Readiness stays 200; the outage shows
/// as `degraded` on `/readyz?verbose` and in `stella_gateway_degraded`, and
/// only the requests that need the store (DPoP) get 503 with Retry-After.
#[test]
fn a_replay_store_outage_keeps_every_node_ready_and_refuses_only_dpop() {
    let mut c = Cluster::start("cluster-readyz");
    let bearer = c.authority.token(BEARER);
    for node in [&c.a, &c.b] {
        assert_eq!(node.admin_get("/readyz").status, 200);
        let verbose = node.admin_get("/readyz?verbose").json();
        assert_eq!(verbose["replay_store_reachable"], true, "{verbose}");
        assert_eq!(verbose["degraded"], json!([]), "{verbose}");
    }
    c.redis.kill();
    for (i, node) in [&c.a, &c.b].into_iter().enumerate() {
        let r = node.admin_get("/readyz");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["ready"], true);
        let verbose = node.admin_get("/readyz?verbose");
        assert_eq!(verbose.status, 200);
        let verbose = verbose.json();
        assert_eq!(verbose["replay_store_reachable"], false, "{verbose}");
        assert_eq!(verbose["degraded"], json!(["replay_store"]), "{verbose}");
        let metrics = node.metrics();
        assert_eq!(metrics.get("stella_gateway_ready"), 1.0);
        assert_eq!(
            metrics.value("stella_gateway_degraded", &[("dependency", "replay_store")]),
            Some(1.0)
        );
        assert_eq!(
            metrics.value(
                "stella_gateway_degraded",
                &[("dependency", "authority_keys")]
            ),
            Some(0.0)
        );

        let before = c.echo.requests();
        let path = format!("/dpop/down-{i}");
        let r = c.send(node, &path, &c.proof(&path));
        assert_problem(&r, 503, "temporarily_unavailable");
        assert!(
            r.header("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some(),
            "{r:?}"
        );
        assert_eq!(
            c.echo.requests(),
            before,
            "a DPoP request passed without the store"
        );
        let r = node.get_with_token(&format!("/items/{i}"), &bearer);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(c.echo.requests(), before + 1);
    }
}

/// How many log lines of `node` have `message`.
fn logged(node: &Gateway, message: &str) -> usize {
    node.log_lines()
        .iter()
        .filter(|l| l["message"] == message)
        .count()
}

/// The replay store's connection is made when the gateway starts, not by
/// the first DPoP request (which would otherwise pay for the name lookup,
/// TCP and AUTH within its own deadline), and remade after the store
/// restarts with no request in between; the upkeep's pings log when the
/// store is lost and when it answers again. One node, its revocation list
/// kept off Redis, so that the replay store's is the only connection.
#[test]
fn the_replay_store_connection_is_made_at_start_and_remade_after_a_restart() {
    let dir = TempDir::new("replay-warm");
    let mut redis = RedisServer::start();
    let authority = Authority::start();
    let echo = Echo::gateway_enforced();
    let node = GatewaySetup::new(&authority.issuer)
        .service("echo", echo.addr())
        .public_origin(PUBLIC_ORIGIN)
        .auth("dpop", json!({"replay_store": redis.url()}))
        .gateway("revocation", json!({"store": "none"}))
        .start(&dir);
    assert!(
        wait_until(Duration::from_secs(10), || redis.connected_clients()
            == Some(1)),
        "no DPoP request yet, yet the node should hold one connection: {:?}",
        redis.connected_clients()
    );
    assert_eq!(logged(&node, "dpop replay store reachable"), 1);

    redis.kill();
    const UNREACHABLE: &str =
        "dpop replay store unreachable; DPoP requests get 503 until it answers";
    assert!(
        wait_until(Duration::from_secs(15), || logged(&node, UNREACHABLE) == 1),
        "the loss should be logged once"
    );
    let line = node
        .log_lines()
        .into_iter()
        .find(|l| l["message"] == UNREACHABLE)
        .unwrap();
    assert_eq!(line["level"], "WARN");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot connect")),
        "{line}"
    );

    redis.restart();
    assert!(
        wait_until(Duration::from_secs(15), || redis.connected_clients()
            == Some(1)
            && logged(&node, "dpop replay store reachable") == 2),
        "the node should reconnect without a request: {:?}",
        redis.connected_clients()
    );
    assert!(node.decision_lines().is_empty());

    let key = DpopKey::generate();
    let key_file = dir.join("dpop-key.json");
    key.write_private_jwk(&key_file);
    let token = authority.dpop_token(DPOP, &key_file);
    let r = send(
        &token,
        &node,
        "/dpop/warm",
        &proof(&key, &token, "/dpop/warm"),
    );
    assert_dpop_reached(&r);
    assert_eq!(logged(&node, UNREACHABLE), 1);
}

/// One request of the load: phase at its start and at its end, status,
/// error code (empty for 200) and node.
type Outcome = (u8, u8, u16, String, char);

/// A restart of the store while DPoP traffic flows: every request that
/// starts and ends while Redis is down is a 503 `temporarily_unavailable`
/// with `Retry-After`, every request before the kill and after the restart
/// passes, and neither gateway is restarted.
#[test]
fn a_redis_restart_under_load_fails_closed_only_while_it_is_down() {
    // A generous deadline: on a busy machine a slow answer from a running
    // Redis must not count as an outage. A stopped one refuses at once.
    let mut c = Cluster::start_with(
        "cluster-restart",
        |_| RedisServer::start(),
        |redis, _| json!({"replay_store": redis.url(), "replay_store_timeout_ms": 5000}),
    );
    // Phases: 0 up, 1 killing (Redis may be gone before the kill returns),
    // 2 down (after the kill returned), 3 restarting (Redis may already
    // answer; until a second after the restart returned), 4 back. Between
    // them a request may straddle a change.
    let phase = AtomicU8::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let count = |from: u8| {
        results
            .lock()
            .unwrap()
            .iter()
            .filter(|(start, end, ..)| *start == from && *end == from)
            .count()
    };
    let wait_for = |from: u8, n: usize| {
        assert!(
            wait_until(Duration::from_secs(60), || count(from) >= n),
            "fewer than {n} requests completed in phase {from}"
        );
    };
    std::thread::scope(|s| {
        for worker in 0..4 {
            let (a, b, key, token) = (&c.a, &c.b, &c.key, c.token.as_str());
            let (phase, stop, results) = (&phase, &stop, &results);
            s.spawn(move || {
                let mut i = 0u32;
                // Bounded: stops when told, or after this many at most.
                while !stop.load(Ordering::SeqCst) && i < 20_000 {
                    i += 1;
                    let (node, name) = if (worker + i).is_multiple_of(2) {
                        (a, 'a')
                    } else {
                        (b, 'b')
                    };
                    let path = format!("/dpop/load/{worker}/{i}");
                    let proof = proof(key, token, &path);
                    let start = phase.load(Ordering::SeqCst);
                    let r = send(token, node, &path, &proof);
                    let end = phase.load(Ordering::SeqCst);
                    let code = match r.status {
                        200 => String::new(),
                        503 => {
                            let retry_after = r.header("retry-after").unwrap_or_default();
                            assert!(
                                retry_after.parse::<u32>().is_ok_and(|s| s > 0),
                                "{:?}",
                                r.headers
                            );
                            r.json()["error"].as_str().unwrap_or("?").to_owned()
                        }
                        _ => r.text(),
                    };
                    results
                        .lock()
                        .unwrap()
                        .push((start, end, r.status, code, name));
                }
            });
        }
        wait_for(0, 40);
        phase.store(1, Ordering::SeqCst);
        c.redis.kill();
        phase.store(2, Ordering::SeqCst);
        wait_for(2, 40);
        phase.store(3, Ordering::SeqCst);
        c.redis.restart();
        // A second for the nodes' connections to the new process to settle
        // (either answer is right meanwhile); from then on only 200.
        std::thread::sleep(Duration::from_secs(1));
        phase.store(4, Ordering::SeqCst);
        wait_for(4, 80);
        stop.store(true, Ordering::SeqCst);
    });

    let results = results.into_inner().unwrap();
    let mut seen = [[0usize; 2]; 5];
    for (start, end, status, code, node) in &results {
        if start != end || *start == 1 || *start == 3 {
            // Straddled a change, or ran while Redis was being killed or
            // coming back: either answer is right, but nothing else is.
            assert!(
                *status == 200 || (*status == 503 && code == "temporarily_unavailable"),
                "{status} {code} on {node}"
            );
            continue;
        }
        match start {
            0 | 4 => assert_eq!(
                (*status, code.as_str()),
                (200, ""),
                "phase {start} on {node}"
            ),
            _ => assert_eq!(
                (*status, code.as_str()),
                (503, "temporarily_unavailable"),
                "while down, on {node}"
            ),
        }
        seen[usize::from(*start)][usize::from(*node == 'b')] += 1;
    }
    // Both nodes saw each phase (the short killing and restarting ones
    // aside).
    for phase in [0, 2, 4] {
        let nodes = seen[phase];
        assert!(nodes[0] > 0 && nodes[1] > 0, "phase {phase}: {nodes:?}");
    }
    // The two nodes still share the restarted store.
    let proof = c.proof("/dpop/after");
    assert_dpop_reached(&c.send(&c.a, "/dpop/after", &proof));
    assert_invalid_dpop_proof(&c.send(&c.b, "/dpop/after", &proof));

    // A restart while no request is in flight: the connections the nodes
    // kept from the load are closed under them, and still the very first
    // request after it passes.
    c.redis.restart();
    for node in [&c.a, &c.b] {
        for i in 0..3 {
            let path = format!("/dpop/quiet/{i}");
            assert_dpop_reached(&c.send(node, &path, &c.proof(&path)));
        }
    }
}

/// `rediss://` with a password and the deployment's CA: both nodes share
/// the store over TLS; a node that does not trust the server's certificate
/// fails closed instead of falling back to anything.
#[test]
fn two_gateways_share_a_tls_redis_with_a_password() {
    let c = Cluster::start_with(
        "cluster-tls",
        |dir| {
            let pki = Pki::generate(dir);
            RedisServer::start_tls(&pki, false, &["--requirepass", "tls-s3cret"])
        },
        |redis, dir| {
            json!({
                "replay_store": redis.tls_url(":tls-s3cret"),
                "replay_store_ca_file": dir.join("ca.pem"),
            })
        },
    );
    for (first, second) in [(&c.a, &c.b), (&c.b, &c.a)] {
        let proof = c.proof("/dpop/tls");
        assert_dpop_reached(&c.send(first, "/dpop/tls", &proof));
        let r = c.send(second, "/dpop/tls", &proof);
        assert_invalid_dpop_proof(&r);
        assert_eq!(r.json()["proof_error"], "replayed", "{}", r.text());
    }
    for node in [&c.a, &c.b] {
        assert_eq!(node.admin_get("/readyz").status, 200);
    }

    // A third node trusting another CA: 503, never a pass.
    let dir = TempDir::new("cluster-tls-wrong-ca");
    let other = TempDir::new("cluster-tls-other-pki");
    let other_pki = Pki::generate(&other);
    let wrong = GatewaySetup::new(&c.authority.issuer)
        .service("echo", c.echo.addr())
        .public_origin(PUBLIC_ORIGIN)
        .auth(
            "dpop",
            json!({
                "replay_store": c.redis.tls_url(":tls-s3cret"),
                "replay_store_ca_file": other_pki.other_ca,
            }),
        )
        .start(&dir);
    let before = c.echo.requests();
    let r = c.send(&wrong, "/dpop/tls-2", &c.proof("/dpop/tls-2"));
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_eq!(c.echo.requests(), before);
    // Ready (it can serve everything else), with the store degraded.
    assert_eq!(wrong.admin_get("/readyz").status, 200);
    let verbose = wrong.admin_get("/readyz?verbose").json();
    assert_eq!(verbose["degraded"], json!(["replay_store"]), "{verbose}");
}

/// `replay_store_password_file`: a Redis with `requirepass`, a URL without
/// the password, the password in a file (as a compose or Kubernetes secret
/// mounts it). Both nodes share the store; a node whose file holds a wrong
/// password fails closed (503, store degraded, the service not called), and
/// a reload after the file changes is refused: a new password needs a
/// restart.
#[test]
fn two_gateways_share_a_redis_whose_password_comes_from_a_file() {
    const PASSWORD: &str = "f1le/p@ss:w%rd";
    let dpop = |redis: &RedisServer, dir: &TempDir| {
        json!({
            "replay_store": redis.url(),
            "replay_store_password_file": dir.join("redis-password"),
        })
    };
    let c = Cluster::start_with(
        "cluster-password-file",
        |dir| {
            std::fs::write(dir.join("redis-password"), format!("{PASSWORD}\n")).unwrap();
            RedisServer::start_with(&["--requirepass", PASSWORD])
        },
        dpop,
    );
    for (first, second) in [(&c.a, &c.b), (&c.b, &c.a)] {
        let proof = c.proof("/dpop/pw");
        assert_dpop_reached(&c.send(first, "/dpop/pw", &proof));
        let r = c.send(second, "/dpop/pw", &proof);
        assert_invalid_dpop_proof(&r);
        assert_eq!(r.json()["proof_error"], "replayed", "{}", r.text());
    }
    let config = c.a.active_config().to_string();
    assert!(!config.contains(PASSWORD), "{config}");

    // A third node with a wrong password in its file: 503, never a pass.
    let dir = TempDir::new("cluster-password-file-wrong");
    std::fs::write(dir.join("redis-password"), "not-the-password\n").unwrap();
    let wrong = GatewaySetup::new(&c.authority.issuer)
        .service("echo", c.echo.addr())
        .public_origin(PUBLIC_ORIGIN)
        .auth("dpop", dpop(&c.redis, &dir))
        .start(&dir);
    let before = c.echo.requests();
    let r = c.send(&wrong, "/dpop/pw-1", &c.proof("/dpop/pw-1"));
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_eq!(c.echo.requests(), before);
    let verbose = wrong.admin_get("/readyz?verbose").json();
    assert_eq!(verbose["degraded"], json!(["replay_store"]), "{verbose}");

    // A new password is applied by a restart: the revocation list shares
    // the store's connection, which cannot change while the gateway runs.
    std::fs::write(dir.join("redis-password"), format!("{PASSWORD}\n")).unwrap();
    let r = wrong.reload();
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("restart to apply it"), "{}", r.text());
    assert!(!r.text().contains(PASSWORD), "{}", r.text());
}
