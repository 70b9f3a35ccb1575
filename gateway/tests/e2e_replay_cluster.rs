//! Two gateway nodes sharing one real `redis-server` as the DPoP replay
//! store (DESIGN 3.3, 3.9): a proof accepted by one node is a replay on the
//! other, concurrent submissions of one proof across both succeed exactly
//! once, and a store outage fails closed (503 with `Retry-After`) for DPoP
//! while Bearer requests carry on.
//!
//! Both nodes have the same configuration apart from their ports, and the
//! same `public_origin`, as behind one load-balanced address: clients make
//! proofs for that origin whichever node they reach.

mod common;

use common::*;
use serde_json::json;
use std::sync::Barrier;

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
        let dir = TempDir::new(label);
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
        let node = || {
            GatewaySetup::new(&authority.issuer)
                .service("echo", echo.addr())
                .public_origin(PUBLIC_ORIGIN)
                .auth("dpop", json!({"replay_store": redis.url()}))
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
        self.key.proof(
            "GET",
            &format!("{PUBLIC_ORIGIN}{path}"),
            Some(&self.token),
            None,
            now(),
            &unique_jti("cluster"),
        )
    }

    fn send(&self, node: &Gateway, path: &str, proof: &str) -> Response {
        let auth = format!("DPoP {}", self.token);
        node.get(path, &[("Authorization", &auth), ("DPoP", proof)])
    }
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
            node.metrics()
                .value("dpop_proof_rejected_total", &[("reason", "replayed")]),
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

/// DESIGN 3.8: `/readyz` reports "Authority keys loaded, replay store
/// reachable". A node whose shared replay store is down answers every DPoP
/// request with 503, so a load balancer should be told it is not ready.
#[test]
fn readiness_reports_an_unreachable_replay_store() {
    let mut c = Cluster::start("cluster-readyz");
    for node in [&c.a, &c.b] {
        assert_eq!(node.admin_get("/readyz").status, 200);
    }
    c.redis.kill();
    for node in [&c.a, &c.b] {
        let r = node.admin_get("/readyz");
        assert_eq!(r.status, 503, "{}", r.text());
    }
}
