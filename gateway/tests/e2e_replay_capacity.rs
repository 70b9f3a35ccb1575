//! The memory replay store under pressure, end to end: refused requests do
//! not take entries, one flooding proof key gets 429 beyond its share while
//! other keys go on, and the default capacity follows the worker threads
//! and the proof window.

mod common;

use common::*;
use serde_json::json;

/// A DPoP key and a token the Authority bound to it.
struct Caller {
    key: DpopKey,
    token: String,
}

impl Caller {
    fn new(stack: &Stack, name: &str) -> Caller {
        let key = DpopKey::generate();
        let file = stack.dir.join(&format!("{name}.json"));
        key.write_private_jwk(&file);
        let token = stack.authority.dpop_token(DPOP, &file);
        assert_eq!(jwt_claims(&token)["cnf"]["jkt"], key.thumbprint());
        Caller { key, token }
    }

    fn proof(&self, gw: &Gateway, method: &str, path: &str) -> String {
        self.key.proof(
            method,
            &format!("{}{path}", gw.origin()),
            Some(&self.token),
            None,
            now(),
            &unique_jti("cap"),
        )
    }

    fn send_with(&self, gw: &Gateway, path: &str, proof: &str) -> Response {
        let auth = format!("DPoP {}", self.token);
        gw.send("GET", path, &[("Authorization", &auth), ("DPoP", proof)])
    }

    fn send(&self, gw: &Gateway, path: &str) -> Response {
        self.send_with(gw, path, &self.proof(gw, "GET", path))
    }
}

fn dpop_stack(label: &str, dpop: serde_json::Value) -> Stack {
    Stack::start_with(label, |s| {
        s.public_origin("http://127.0.0.1:{http}")
            .auth("dpop", dpop)
    })
}

#[test]
fn requests_the_policy_refuses_take_no_replay_entries() {
    // Room for two proofs; no per-key share.
    let stack = dpop_stack(
        "replay-refused",
        json!({"replay_max_entries": 2, "replay_max_share_percent": 100}),
    );
    let gw = &stack.gateway;
    let caller = Caller::new(&stack, "caller");
    // /mtls/** needs a certificate-bound token: a valid DPoP request is
    // refused by the policy. Twenty of them ...
    for _ in 0..20 {
        let r = caller.send(gw, "/mtls/x");
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.json()["error"], "invalid_token", "{}", r.text());
    }
    // ... and a replayed proof on that route is still refused.
    let proof = caller.proof(gw, "GET", "/mtls/y");
    for _ in 0..2 {
        assert_eq!(caller.send_with(gw, "/mtls/y", &proof).status, 401);
    }
    // The store's two entries are still free for allowed requests.
    for i in 0..2 {
        let r = caller.send(gw, &format!("/dpop/{i}"));
        assert_reached_via_envelope(&r);
    }
    // Now it is full: the next proof cannot be recorded (fail closed).
    let r = caller.send(gw, "/dpop/3");
    assert_problem(&r, 503, "temporarily_unavailable");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn a_flooding_key_gets_429_beyond_its_share_while_other_keys_go_on() {
    // 100 entries, 10 % each: a key may hold 10 live proofs.
    let stack = dpop_stack(
        "replay-flood",
        json!({"replay_max_entries": 100, "replay_max_share_percent": 10}),
    );
    let gw = &stack.gateway;
    let flood = Caller::new(&stack, "flood");
    let others: Vec<Caller> = (0..3)
        .map(|i| Caller::new(&stack, &format!("other-{i}")))
        .collect();
    for i in 0..10 {
        assert_reached_via_envelope(&flood.send(gw, &format!("/dpop/f{i}")));
    }
    for i in 0..15 {
        let r = flood.send(gw, &format!("/dpop/g{i}"));
        assert_problem(&r, 429, "too_many_requests");
        assert_eq!(r.header("retry-after"), Some("5"));
    }
    // A replay of one of the flooder's recorded proofs is still a replay.
    let proof = flood.proof(gw, "GET", "/dpop/r");
    let _ = flood.send_with(gw, "/dpop/r", &proof);
    let r = flood.send_with(gw, "/dpop/r", &proof);
    assert!(r.status == 401 || r.status == 429, "{}", r.text());
    // Every other key still has its full share.
    for (n, other) in others.iter().enumerate() {
        for i in 0..10 {
            let r = other.send(gw, &format!("/dpop/o{n}-{i}"));
            assert_reached_via_envelope(&r);
        }
    }
    assert_eq!(stack.echo.requests(), 10 + 30);
    let m = gw.metrics();
    assert!(m.get("stella_gateway_replay_share_refusals_total") >= 15.0);
    assert_eq!(m.get("stella_gateway_replay_store_errors_total"), 0.0);
}

#[test]
fn the_default_capacity_follows_the_worker_threads_and_the_proof_window() {
    let dir = TempDir::new("replay-default");
    let path = dir.join("gateway.yaml");
    let check = |threads: u64, max_age: u64| {
        std::fs::write(
            &path,
            format!(
                "gateway:\n  threads: {threads}\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    \
                 authority: {{issuer: \"https://authority.example\", audiences: [api]}}\n    \
                 dpop: {{proof_max_age_seconds: {max_age}, proof_future_skew_seconds: 9}}\n\
                 router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n\
                 services:\n  - {{name: orders, upstreams: [\"orders:8080\"]}}\n"
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
            .env_clear()
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    // 10,000 proofs/s per thread * threads * (120 + 9 + 1) s * margin 2.
    let three = check(3, 120);
    assert!(three.contains("replay_max_entries: 7800000"), "{three}");
    assert!(three.contains("replay_max_share_percent: 10"), "{three}");
    let six = check(6, 120);
    assert!(six.contains("replay_max_entries: 15600000"), "{six}");
    // A wide proof window: the default stops at the largest accepted value
    // instead of making the configuration invalid.
    let wide = check(8, 3600);
    assert!(wide.contains("replay_max_entries: 100000000"), "{wide}");
}
