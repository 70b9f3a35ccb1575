//! The decision log end to end: the real gateway writes one JSON line per
//! request (target `stella_gateway::decision`) on stderr, and its `reason`
//! is the specific check that decided (`expired`, `unknown_kid`,
//! `ath_mismatch`, `replayed`, ...), from a fixed set, never only the
//! generic `invalid_token`. Secrets (tokens, proofs) never appear in it.

mod common;

use common::*;
use serde_json::json;

#[test]
fn each_refusal_is_logged_with_its_specific_reason_and_an_allow_with_its_basis() {
    let stack = Stack::start_with("decision-log", |s| {
        s.public_origin("http://127.0.0.1:{http}")
    });
    let gw = &stack.gateway;
    let real = stack.authority.token(BEARER);
    let keys = AuthorityKeys::load(&stack.authority.keys_file);
    let t = now();
    let mut claims = jwt_claims(&real);
    claims["iat"] = json!(t - 400);
    claims["exp"] = json!(t - 60);
    let header = json!({"alg": "ES256", "typ": "at+jwt", "kid": keys.ec_kid});
    let expired = keys.es256(&header, &claims);
    let unknown_kid = AttackerKey::generate().sign(
        &json!({"alg": "ES256", "typ": "at+jwt", "kid": "rotated-away"}),
        &jwt_claims(&real),
    );
    let read_only = stack.authority.token(READONLY);

    // DPoP: a proof for another token (ath), and the same proof twice.
    let key = DpopKey::generate();
    let key_file = stack.dir.join("dpop-key.json");
    key.write_private_jwk(&key_file);
    let bound = stack.authority.dpop_token(DPOP, &key_file);
    let url = format!("{}/dpop/1", gw.origin());
    let dpop = |proof: &str| {
        let auth = format!("DPoP {bound}");
        gw.get("/dpop/1", &[("Authorization", &auth), ("DPoP", proof)])
    };
    let other_ath = key.proof("GET", &url, Some(&real), None, now(), &unique_jti("ath"));
    let once = key.proof("GET", &url, Some(&bound), None, now(), &unique_jti("once"));

    let cases: Vec<(&str, Response, u16, &str)> = vec![
        (
            "valid token",
            gw.get_with_token("/items/1", &real),
            200,
            "requirements_met",
        ),
        (
            "expired token",
            gw.get_with_token("/items/1", &expired),
            401,
            "expired",
        ),
        (
            "unknown kid",
            gw.get_with_token("/items/1", &unknown_kid),
            401,
            "unknown_kid",
        ),
        (
            "missing scope",
            gw.get_with_token("/admin/users", &read_only),
            403,
            "insufficient_scope",
        ),
        (
            "no token",
            gw.get("/items/1", &[]),
            401,
            "authentication_required",
        ),
        (
            "proof for another token",
            dpop(&other_ath),
            401,
            "ath_mismatch",
        ),
        ("fresh proof", dpop(&once), 200, "requirements_met"),
        ("replayed proof", dpop(&once), 401, "replayed"),
    ];
    let mut wrong = Vec::new();
    for (name, r, status, reason) in &cases {
        let line = gw.decision_for(r);
        let decision = if *status == 200 { "allow" } else { "deny" };
        if r.status != *status
            || line["reason"] != *reason
            || line["status"] != *status
            || line["decision"] != decision
        {
            wrong.push(format!(
                "{name}: expected {status} {decision} {reason}, got {} {line}",
                r.status
            ));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    assert_eq!(stack.echo.requests(), 2);

    // Nothing secret in any log line.
    let log = gw.process.stderr_lines().join("\n");
    for secret in [&real, &expired, &bound, &other_ath, &once] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!log.contains(signature), "a token or proof reached the log");
    }
}
