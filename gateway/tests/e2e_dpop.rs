//! DPoP-bound access tokens (RFC 9449) end to end, one gateway node with the
//! memory replay store: the Authority binds a token to the test's own key
//! (`token.mjs --dpop-key-file`), proofs come from the project's client code
//! (`DpopKey`) and, at least once, from the npm `dpop` library
//! (`tests/authority/proof.mjs`). Every gateway here checks `htu` against
//! `gateway.public_origin` = its plain listener's origin.
//!
//! What a user sees is asserted: status, the `WWW-Authenticate` challenge,
//! the problem+json `error`, `DPoP-Nonce`, whether the service was called
//! and the identity it received; and the rejection counters an operator
//! watches.

mod common;

use common::*;
use serde_json::{json, Value};
use std::path::PathBuf;

/// A stack whose gateway checks proofs against its plain listener, a DPoP
/// key (also written as a private JWK for the node tools) and a token the
/// Authority bound to it.
struct DpopStack {
    stack: Stack,
    key: DpopKey,
    key_file: PathBuf,
    token: String,
}

impl DpopStack {
    fn start(label: &str) -> DpopStack {
        DpopStack::start_with(label, |s| s)
    }

    fn start_with(label: &str, configure: impl FnOnce(GatewaySetup) -> GatewaySetup) -> DpopStack {
        let stack = Stack::start_with(label, |s| {
            configure(s.public_origin("http://127.0.0.1:{http}"))
        });
        let key = DpopKey::generate();
        let key_file = stack.dir.join("dpop-key.json");
        key.write_private_jwk(&key_file);
        let token = stack.authority.dpop_token(DPOP, &key_file);
        // The Authority bound the token to this very key.
        assert_eq!(
            jwt_claims(&token)["cnf"]["jkt"],
            key.thumbprint(),
            "{}",
            jwt_claims(&token)
        );
        DpopStack {
            stack,
            key,
            key_file,
            token,
        }
    }

    fn gw(&self) -> &Gateway {
        &self.stack.gateway
    }

    /// `origin + path`: the `htu` of a request to `path`.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gw().origin())
    }

    /// A valid proof for `method path` with this stack's token.
    fn proof(&self, method: &str, path: &str) -> String {
        self.key.proof(
            method,
            &self.url(path),
            Some(&self.token),
            None,
            now(),
            &unique_jti("ok"),
        )
    }

    /// Sends `Authorization: DPoP <token>` and `DPoP: <proof>`.
    fn send(&self, method: &str, path: &str, proof: &str) -> Response {
        send_dpop(self.gw(), method, path, &self.token, proof, &[])
    }
}

fn send_dpop(
    gw: &Gateway,
    method: &str,
    path: &str,
    token: &str,
    proof: &str,
    extra: &[(&str, &str)],
) -> Response {
    let auth = format!("DPoP {token}");
    let mut headers = vec![("Authorization", auth.as_str()), ("DPoP", proof)];
    headers.extend_from_slice(extra);
    gw.send(method, path, &headers)
}

/// The service answered a request that authenticated with DPoP using `key`.
#[track_caller]
fn assert_reached_with_dpop(r: &Response, key: &DpopKey) -> Value {
    let body = assert_reached_via_envelope(r);
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert_eq!(
        body["identity"]["confirmation"]["jkt"],
        key.thumbprint(),
        "{body}"
    );
    assert_eq!(body["identity"]["subject"], "svc-dpop", "{body}");
    body
}

fn rejected(gw: &Gateway, reason: &str) -> f64 {
    gw.metrics()
        .value(
            "stella_gateway_dpop_proof_rejected_total",
            &[("reason", reason)],
        )
        .unwrap_or(0.0)
}

#[test]
fn a_fresh_proof_with_its_bound_token_reaches_the_service_as_dpop_and_its_replay_is_refused() {
    let s = DpopStack::start("dpop-ok");
    let gw = s.gw();

    let proof = s.proof("GET", "/dpop/orders/1");
    let body = assert_reached_with_dpop(&s.send("GET", "/dpop/orders/1", &proof), &s.key);
    assert_eq!(body["identity"]["client_id"], "svc-dpop", "{body}");
    assert_eq!(body["identity"]["tenant"], "acme", "{body}");
    // A GatewayEnforced service does not ask for credentials: neither the
    // token nor the proof is forwarded.
    assert!(received_values(&body, "authorization").is_empty(), "{body}");
    assert!(received_values(&body, "dpop").is_empty(), "{body}");
    assert_eq!(s.stack.echo.requests(), 1);

    // The same proof again: a replay, refused before the service.
    let r = s.send("GET", "/dpop/orders/1", &proof);
    assert_invalid_dpop_proof(&r);
    assert_eq!(r.json()["proof_error"], "replayed", "{}", r.text());
    assert_eq!(s.stack.echo.requests(), 1);
    assert_eq!(rejected(gw, "replayed"), 1.0);

    // The token is reusable; each request just needs its own proof.
    let r = s.send("GET", "/dpop/orders/1", &s.proof("GET", "/dpop/orders/1"));
    assert_reached_with_dpop(&r, &s.key);
    // A query is not part of htu (RFC 9449 section 4.3).
    let r = s.send(
        "GET",
        "/dpop/orders?page=2",
        &s.proof("GET", "/dpop/orders"),
    );
    assert_reached_with_dpop(&r, &s.key);
    // The scheme name is case-insensitive (RFC 9110 section 11.1).
    let auth = format!("dpop {}", s.token);
    let proof = s.proof("GET", "/dpop/orders/2");
    let r = gw.get(
        "/dpop/orders/2",
        &[("Authorization", &auth), ("DPoP", &proof)],
    );
    assert_reached_with_dpop(&r, &s.key);
    assert_eq!(s.stack.echo.requests(), 4);
}

#[test]
fn proofs_made_by_the_npm_dpop_library_are_accepted() {
    let s = DpopStack::start("dpop-npm");
    let gw = s.gw();

    for (method, path) in [("GET", "/dpop/npm/1"), ("POST", "/dpop/npm/2")] {
        let proof = npm_dpop_proof(&s.key_file, method, &s.url(path), Some(&s.token), None);
        let body = assert_reached_with_dpop(&s.send(method, path, &proof), &s.key);
        assert_eq!(body["method"], method, "{body}");
        // And the library's proofs are single-use too.
        assert_invalid_dpop_proof(&s.send(method, path, &proof));
    }
    assert_eq!(s.stack.echo.requests(), 2);
    assert_eq!(rejected(gw, "replayed"), 2.0);
}

/// What a refused request must get.
#[derive(Clone, Copy, Debug)]
enum Refused {
    /// 401 `invalid_dpop_proof`, DPoP challenge; `proof_error` and the
    /// `stella_gateway_dpop_proof_rejected_total` reason when the proof itself was checked.
    Proof(&'static str),
    /// 401 `invalid_token`, Bearer and DPoP challenges; `token_error`.
    Token(&'static str),
    /// 400 `invalid_request`.
    Request,
}

#[test]
fn every_defective_credential_header_or_proof_is_refused_and_never_reaches_the_service() {
    let s = DpopStack::start("dpop-defects");
    let gw = s.gw();
    let bearer = s.stack.authority.token(BEARER);
    assert!(jwt_claims(&bearer)["cnf"].is_null());
    let other = DpopKey::generate();
    let path = "/dpop/defects";
    let url = s.url(path);
    let token = s.token.as_str();
    // A valid proof for this request, to be spoiled in one way.
    let good = |label: &str| {
        s.key
            .proof_builder("GET", &url, now(), &unique_jti(label))
            .access_token(Some(token))
    };
    let dpop_auth = format!("DPoP {token}");
    let bearer_auth = format!("Bearer {bearer}");

    type Case = (&'static str, Vec<(String, String)>, Refused);
    let h = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    };
    let with_proof = |proof: String| h(&[("Authorization", &dpop_auth), ("DPoP", &proof)]);
    let mut cases: Vec<Case> = vec![
        (
            "the DPoP scheme without a DPoP header",
            h(&[("Authorization", &dpop_auth)]),
            Refused::Proof("dpop_proof_missing"),
        ),
        (
            "two DPoP headers",
            h(&[
                ("Authorization", &dpop_auth),
                ("DPoP", &good("two-a").build()),
                ("DPoP", &good("two-b").build()),
            ]),
            Refused::Proof("dpop_proof_missing"),
        ),
        (
            "two proofs folded into one DPoP header",
            h(&[
                ("Authorization", &dpop_auth),
                (
                    "DPoP",
                    &format!("{}, {}", good("fold-a").build(), good("fold-b").build()),
                ),
            ]),
            Refused::Proof("dpop_proof_missing"),
        ),
        (
            "a DPoP header without an Authorization header",
            h(&[("DPoP", &good("no-auth").build())]),
            Refused::Proof("dpop_without_token"),
        ),
        (
            "a DPoP header with the Bearer scheme",
            h(&[
                ("Authorization", &bearer_auth),
                (
                    "DPoP",
                    &s.key
                        .proof("GET", &url, Some(&bearer), None, now(), "bearer-scheme"),
                ),
            ]),
            Refused::Request,
        ),
        (
            "an unbound token with the DPoP scheme and a valid proof",
            h(&[
                ("Authorization", &format!("DPoP {bearer}")),
                (
                    "DPoP",
                    &s.key
                        .proof("GET", &url, Some(&bearer), None, now(), "unbound"),
                ),
            ]),
            Refused::Token("token_not_dpop_bound"),
        ),
        (
            "a proof by another key than the token's cnf.jkt",
            with_proof(other.proof("GET", &url, Some(token), None, now(), "other-key")),
            Refused::Token("jkt_mismatch"),
        ),
        (
            "htm of another method",
            with_proof(good("htm").claim("htm", json!("POST")).build()),
            Refused::Proof("htm_mismatch"),
        ),
        (
            "htm in lowercase",
            with_proof(good("htm-case").claim("htm", json!("get")).build()),
            Refused::Proof("htm_mismatch"),
        ),
        (
            "htu of another path",
            with_proof(
                good("htu-path")
                    .claim("htu", json!(s.url("/dpop/other")))
                    .build(),
            ),
            Refused::Proof("htu_mismatch"),
        ),
        (
            "htu of another scheme",
            with_proof(
                good("htu-scheme")
                    .claim("htu", json!(format!("https://{}{path}", gw.http)))
                    .build(),
            ),
            Refused::Proof("htu_mismatch"),
        ),
        (
            "htu of another host",
            with_proof(
                good("htu-host")
                    .claim(
                        "htu",
                        json!(format!("http://localhost:{}{path}", gw.http.port())),
                    )
                    .build(),
            ),
            Refused::Proof("htu_mismatch"),
        ),
        (
            "iat two minutes old",
            with_proof(good("stale").claim("iat", json!(now() - 120)).build()),
            Refused::Proof("iat_too_old"),
        ),
        (
            "iat a minute in the future",
            with_proof(good("future").claim("iat", json!(now() + 60)).build()),
            Refused::Proof("iat_in_future"),
        ),
        (
            "iat as a string",
            with_proof(
                good("iat-type")
                    .claim("iat", json!(now().to_string()))
                    .build(),
            ),
            Refused::Proof("claim_wrong_type"),
        ),
        (
            "no ath",
            with_proof(good("no-ath").without_claim("ath").build()),
            Refused::Proof("missing_ath"),
        ),
        (
            "the ath of another token",
            with_proof(
                good("wrong-ath")
                    .claim("ath", json!(dpop_ath(&bearer)))
                    .build(),
            ),
            Refused::Proof("ath_mismatch"),
        ),
        (
            "a proof longer than 8 KiB",
            with_proof(good("huge").claim("pad", json!("p".repeat(9000))).build()),
            Refused::Proof("proof_too_long"),
        ),
        (
            "no jti",
            with_proof(good("no-jti").without_claim("jti").build()),
            Refused::Proof("missing_jti"),
        ),
        (
            "a jti longer than 256 bytes",
            with_proof(good("long").claim("jti", json!("j".repeat(257))).build()),
            Refused::Proof("jti_too_long"),
        ),
        (
            // An unsecured JWS has an empty signature: not even well-formed.
            "alg none",
            with_proof(good("none").alg_none().build()),
            Refused::Proof("malformed_proof"),
        ),
        (
            "alg none with a signature",
            with_proof(good("none-signed").header("alg", json!("none")).build()),
            Refused::Proof("alg_not_allowed"),
        ),
        (
            "alg HS256",
            with_proof(
                good("hs256")
                    .hs256(b"a-shared-secret-the-gateway-never-accepts")
                    .build(),
            ),
            Refused::Proof("alg_not_allowed"),
        ),
        (
            "typ jwt",
            with_proof(good("typ").typ("jwt").build()),
            Refused::Proof("bad_typ"),
        ),
        (
            "no typ",
            with_proof(good("no-typ").without_header("typ").build()),
            Refused::Proof("bad_typ"),
        ),
        (
            "no jwk",
            with_proof(good("no-jwk").without_header("jwk").build()),
            Refused::Proof("jwk_missing"),
        ),
        (
            "a jwk with the private key",
            with_proof(good("private").private_jwk_in_header().build()),
            Refused::Proof("bad_jwk"),
        ),
        (
            "a jku next to the jwk",
            with_proof(
                good("jku")
                    .header("jku", json!("http://evil.example/jwks"))
                    .build(),
            ),
            Refused::Proof("external_key_reference"),
        ),
        (
            "an ES256 signature in DER form",
            with_proof(good("der").der_signature().build()),
            Refused::Proof("bad_signature"),
        ),
        (
            "a signature by another key than the jwk",
            with_proof(good("forged").signed_by(&other).build()),
            Refused::Proof("bad_signature"),
        ),
    ];
    // A DPoP-bound token presented as Bearer, in any casing, without a proof.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        cases.push((
            "a DPoP-bound token as Bearer",
            h(&[("Authorization", &format!("{scheme} {token}"))]),
            Refused::Token("dpop_bound_token_as_bearer"),
        ));
    }

    let mut expected_reasons: std::collections::BTreeMap<&str, f64> = Default::default();
    // Codes that differ are collected, so one run reports all of them.
    let mut wrong_codes = Vec::new();
    for (name, headers, want) in &cases {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let r = gw.get(path, &headers);
        let context = format!("{name}: {} {}", r.status, r.text());
        let mut check_code = |member: &str, code: &str| {
            if r.json()[member] != code {
                wrong_codes.push(format!(
                    "{name}: want {member} {code}, got {}",
                    r.json()[member]
                ));
            }
        };
        match want {
            Refused::Proof(code) => {
                assert_eq!(r.status, 401, "{context}");
                assert_invalid_dpop_proof(&r);
                check_code("proof_error", code);
                // Header-level defects are refused before a proof is read.
                if !code.starts_with("dpop_") {
                    *expected_reasons.entry(code).or_default() += 1.0;
                }
            }
            Refused::Token(code) => {
                assert_eq!(r.status, 401, "{context}");
                assert_invalid_token(&r);
                check_code("token_error", code);
                let challenges = r.header_all("www-authenticate");
                assert!(
                    challenges
                        .iter()
                        .any(|c| c.starts_with("DPoP ") && c.contains("algs=\"")),
                    "{name}: {challenges:?}"
                );
                if *code == "jkt_mismatch" || *code == "token_not_dpop_bound" {
                    *expected_reasons.entry(code).or_default() += 1.0;
                }
            }
            Refused::Request => assert_problem(&r, 400, "invalid_request"),
        }
        assert_eq!(r.header("cache-control"), Some("no-store"), "{context}");
        assert_eq!(s.stack.echo.requests(), 0, "{context}");
    }
    assert!(wrong_codes.is_empty(), "{wrong_codes:#?}");

    // Each refused proof counts under its own bounded reason.
    let metrics = gw.metrics();
    for (reason, count) in &expected_reasons {
        assert_eq!(
            metrics.value(
                "stella_gateway_dpop_proof_rejected_total",
                &[("reason", reason)]
            ),
            Some(*count),
            "stella_gateway_dpop_proof_rejected_total{{reason=\"{reason}\"}}"
        );
    }
    assert_eq!(
        metrics.value("stella_gateway_dpop_proof_rejected_total", &[]),
        Some(expected_reasons.values().sum()),
        "no other rejection was counted"
    );

    // After all that the key and token still work.
    assert_reached_with_dpop(&s.send("GET", path, &s.proof("GET", path)), &s.key);
}

/// docs/design.md §3.3: "A DPoP-bound token presented as `Bearer` (any casing,
/// with or without a proof): 401 `invalid_token`." The proof does not turn
/// the request into "several credentials" (400): the token is the defect.
#[test]
fn a_dpop_bound_token_presented_as_bearer_with_a_proof_is_an_invalid_token() {
    let s = DpopStack::start("dpop-bearer-proof");
    let gw = s.gw();
    for scheme in ["Bearer", "bearer"] {
        let auth = format!("{scheme} {}", s.token);
        let proof = s.proof("GET", "/dpop/x");
        let r = gw.get("/dpop/x", &[("Authorization", &auth), ("DPoP", &proof)]);
        assert_invalid_token(&r);
    }
    assert_eq!(s.stack.echo.requests(), 0);
}

#[test]
fn htu_is_checked_against_the_public_origin_never_the_host_header() {
    let s = DpopStack::start("dpop-host");
    let gw = s.gw();
    let path = "/dpop/host";
    let spoofed = [
        ("Host", "evil.example"),
        ("X-Forwarded-Host", "evil.example"),
        ("X-Forwarded-Proto", "https"),
    ];

    // A proof for the origin the client claims in Host is not a proof for
    // this gateway.
    for htu in [
        "http://evil.example/dpop/host",
        "https://evil.example/dpop/host",
    ] {
        let proof = s
            .key
            .proof("GET", htu, Some(&s.token), None, now(), &unique_jti("evil"));
        let r = send_dpop(gw, "GET", path, &s.token, &proof, &spoofed);
        assert_invalid_dpop_proof(&r);
        assert_eq!(r.json()["proof_error"], "htu_mismatch", "{}", r.text());
    }
    assert_eq!(s.stack.echo.requests(), 0);

    // A proof for the public origin is accepted whatever Host says.
    let proof = s.proof("GET", path);
    let r = send_dpop(gw, "GET", path, &s.token, &proof, &spoofed[..1]);
    assert_reached_with_dpop(&r, &s.key);
    assert_eq!(s.stack.echo.requests(), 1);
    assert_eq!(rejected(gw, "htu_mismatch"), 2.0);
}

const NONCE_ROUTE: &str = "  # Added by e2e_dpop: DPoP with server nonces.
  - id: echo-nonce
    path: /nonce/**
    policy:
      sender_constraint: dpop
      dpop_nonce: true
";

#[test]
fn a_nonce_route_demands_the_server_nonce_and_hands_out_a_fresh_one_with_each_success() {
    let policies_dir = TempDir::new("dpop-nonce-policies");
    let policies = policies_with_echo_routes(&policies_dir, NONCE_ROUTE);
    let s = DpopStack::start_with("dpop-nonce", |setup| {
        setup.policies(&policies).auth(
            "dpop",
            json!({"nonce_secret": "e2e-dpop-nonce-secret-0123456789abcdef"}),
        )
    });
    let gw = s.gw();
    let path = "/nonce/1";
    let url = s.url(path);
    let proof = |nonce: Option<&str>| {
        s.key
            .proof("GET", &url, Some(&s.token), nonce, now(), &unique_jti("n"))
    };

    // Without a nonce: 401 use_dpop_nonce, one nonce to retry with.
    let use_nonce = |r: &Response| -> String {
        assert_problem(r, 401, "use_dpop_nonce");
        let challenges = r.header_all("www-authenticate");
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert!(
            challenges[0].starts_with("DPoP realm=\"stella-gateway\"")
                && challenges[0].contains("error=\"use_dpop_nonce\"")
                && challenges[0].contains("algs=\""),
            "{challenges:?}"
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        let nonces = r.header_all("dpop-nonce");
        assert_eq!(nonces.len(), 1, "{:?}", r.headers);
        nonces[0].to_owned()
    };
    let nonce = use_nonce(&s.send("GET", path, &proof(None)));
    assert_eq!(s.stack.echo.requests(), 0);

    // The retry with it passes, and the answer carries a nonce for the next.
    let r = s.send("GET", path, &proof(Some(&nonce)));
    assert_reached_with_dpop(&r, &s.key);
    let next = r.header_all("dpop-nonce");
    assert_eq!(next.len(), 1, "{:?}", r.headers);
    let r = s.send("GET", path, &proof(Some(next[0])));
    assert_reached_with_dpop(&r, &s.key);
    assert_eq!(s.stack.echo.requests(), 2);

    // A proof without a nonce keeps being refused, and so are nonces the
    // client made up (well-formed or not).
    let made_up = b64url(&[7u8; 24]);
    assert_eq!(made_up.len(), nonce.len());
    use_nonce(&s.send("GET", path, &proof(None)));
    for fake in [made_up.as_str(), "not-a-nonce"] {
        use_nonce(&s.send("GET", path, &proof(Some(fake))));
    }
    // Someone without the bound key gets no nonce to work with.
    let other = DpopKey::generate();
    let r = s.send(
        "GET",
        path,
        &other.proof("GET", &url, Some(&s.token), None, now(), "other"),
    );
    assert_invalid_token(&r);
    assert!(r.header_all("dpop-nonce").is_empty(), "{:?}", r.headers);
    assert_eq!(s.stack.echo.requests(), 2);
    assert_eq!(
        gw.metrics().get("stella_gateway_dpop_nonce_miss_total"),
        4.0
    );

    // Routes without nonces neither require one nor hand one out.
    let r = s.send("GET", "/dpop/1", &s.proof("GET", "/dpop/1"));
    assert_reached_with_dpop(&r, &s.key);
    assert!(r.header_all("dpop-nonce").is_empty(), "{:?}", r.headers);
}

/// RFC 9449 section 7.1: `algs` lists the algorithms the resource server
/// supports; with `gateway.auth.dpop.algorithms: [ES256]` a client that
/// reads the challenge must not be told ES384, EdDSA or PS256 would do.
#[test]
fn dpop_challenges_advertise_only_the_configured_proof_algorithms() {
    let dir = TempDir::new("dpop-algs");
    // No Authority is needed: the credential headers are refused before
    // the token is looked at.
    let gateway = GatewaySetup::new(&format!("http://127.0.0.1:{}", free_port()))
        .public_origin("http://127.0.0.1:{http}")
        .auth("dpop", json!({"algorithms": ["ES256"]}))
        .start(&dir);
    let r = gateway.get("/dpop/x", &[("Authorization", "DPoP abc.def.ghi")]);
    assert_invalid_dpop_proof(&r);
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains("algs=\"ES256\""), "{challenge}");
}

#[test]
fn the_configured_proof_age_window_and_future_skew_are_enforced() {
    let s = DpopStack::start_with("dpop-window", |setup| {
        setup.auth(
            "dpop",
            json!({"proof_max_age_seconds": 10, "proof_future_skew_seconds": 0}),
        )
    });
    let gw = s.gw();
    let path = "/dpop/window";
    let url = s.url(path);
    let at = |iat: u64| {
        s.key
            .proof("GET", &url, Some(&s.token), None, iat, &unique_jti("w"))
    };

    assert_reached_with_dpop(&s.send("GET", path, &at(now() - 4)), &s.key);
    for (iat, code) in [(now() - 30, "iat_too_old"), (now() + 3, "iat_in_future")] {
        let r = s.send("GET", path, &at(iat));
        assert_invalid_dpop_proof(&r);
        assert_eq!(r.json()["proof_error"], code, "{}", r.text());
    }
    assert_eq!(s.stack.echo.requests(), 1);
    assert_eq!(rejected(gw, "iat_too_old"), 1.0);
    assert_eq!(rejected(gw, "iat_in_future"), 1.0);
}

#[test]
fn a_full_memory_replay_store_refuses_new_proofs_with_503_instead_of_forgetting_old_ones() {
    let s = DpopStack::start_with("dpop-full", |setup| {
        setup.auth(
            "dpop",
            json!({"replay_max_entries": 1, "replay_max_share_percent": 100}),
        )
    });
    let gw = s.gw();
    let first = s.proof("GET", "/dpop/full");
    assert_reached_with_dpop(&s.send("GET", "/dpop/full", &first), &s.key);

    // The one entry is live: a new proof cannot be recorded, so it is not
    // accepted (fail closed) ...
    let r = s.send("GET", "/dpop/full", &s.proof("GET", "/dpop/full"));
    assert_problem(&r, 503, "temporarily_unavailable");
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    // ... and the recorded one is still a replay.
    assert_invalid_dpop_proof(&s.send("GET", "/dpop/full", &first));
    assert_eq!(s.stack.echo.requests(), 1);

    // Requests without DPoP do not need the store.
    let r = gw.get_with_token("/items/1", &s.stack.authority.token(BEARER));
    assert_reached_via_envelope(&r);
}

/// docs/design.md §5: on the DPoP hot path exactly one signature verification
/// per request (the proof's); the access token's signature is checked once and
/// then served from the verified-token cache.
#[test]
fn a_warm_dpop_request_costs_exactly_one_signature_verification() {
    let s = DpopStack::start("dpop-one-verification");
    let gw = s.gw();
    let verifications = || {
        gw.metrics()
            .value("stella_gateway_signature_verifications_total", &[])
            .unwrap_or(0.0)
    };
    // The first request verifies the token and the proof.
    let before = verifications();
    assert_reached_with_dpop(
        &s.send("GET", "/dpop/a", &s.proof("GET", "/dpop/a")),
        &s.key,
    );
    assert_eq!(verifications() - before, 2.0);
    // Every later request: the proof only.
    let before = verifications();
    for i in 0..10 {
        let path = format!("/dpop/n{i}");
        assert_reached_with_dpop(&s.send("GET", &path, &s.proof("GET", &path)), &s.key);
    }
    assert_eq!(verifications() - before, 10.0);
}
