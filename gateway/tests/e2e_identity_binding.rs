//! The confused-deputy guard end to end: routes whose path parameter is
//! bound to the caller's identity (`identity_binding`), called by SPIFFE
//! workloads over mTLS, by certificate-bound tokens, by Bearer tokens and
//! by DPoP-bound tokens from the real Authority. A caller reaches its own
//! resource; another's is 403 `identity_mismatch`, the service is not
//! called, and the decision log says `identity_mismatch`. The path is
//! compared after normalization, so percent-encoding changes nothing.

mod common;

use common::*;
use std::path::Path;

const TRUST_DOMAIN: &str = "spiffe://stella.test";

/// Routes appended to the shipped `echo` policy.
const BOUND_ROUTES: &str = "  # Added by e2e_identity_binding.
  - id: executor-heartbeat
    path: /executors/{eid}/heartbeat
    identity_binding: {eid: spiffe_path_last}
    policy:
      spiffe_ids: [spiffe://stella.test/executors/e1, spiffe://stella.test/executors/e2]
  - id: executor-bound-token
    path: /bound-executors/{eid}/**
    identity_binding: {eid: spiffe_path_last}
    policy: {sender_constraint: mtls}
  - id: agent-by-sub
    path: /agents/{agent}/**
    identity_binding: {agent: sub}
    policy: {authenticated: true}
  - id: client-by-client-id
    path: /clients/{client}/**
    identity_binding: {client: client_id}
    policy: {sender_constraint: dpop}
";

fn bound_stack(label: &str, configure: impl FnOnce(GatewaySetup) -> GatewaySetup) -> Stack {
    let policies_dir = TempDir::new(&format!("{label}-policies"));
    let policies = policies_with_echo_routes(&policies_dir, BOUND_ROUTES);
    let stack = Stack::start_with(label, |s| configure(s.policies(&policies)));
    // The gateway read the copy at start; the folder may go.
    drop(policies_dir);
    stack
}

fn answered(c: Curl) -> Response {
    assert_eq!(c.exit_code, Some(0), "curl failed: {}", c.stderr);
    c.response.expect("a response")
}

/// A refusal by the binding: 403 problem `identity_mismatch`, and the
/// decision log says why.
#[track_caller]
fn assert_identity_mismatch(gw: &Gateway, r: &Response) {
    assert_problem(r, 403, "identity_mismatch");
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(gw.reason_for(r), "identity_mismatch");
}

#[test]
fn a_spiffe_executor_reaches_its_own_heartbeat_and_no_other() {
    let pki_dir = TempDir::new("bind-spiffe-pki");
    let pki = Pki::generate(&pki_dir);
    let (e1_cert, e1_key) = pki.issue_client("e1", Some(&format!("{TRUST_DOMAIN}/executors/e1")));
    let (e2_cert, e2_key) = pki.issue_client("e2", Some(&format!("{TRUST_DOMAIN}/executors/e2")));
    let stack = bound_stack("bind-spiffe", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    let tls = gw.tls.expect("tls listener");
    let call = |path: &str, cert: &Path, key: &Path| {
        answered(curl_https(tls, path, &pki.ca, Some((cert, key)), &[]))
    };

    let r = call("/executors/e1/heartbeat", &e1_cert, &e1_key);
    let body = assert_reached_via_envelope(&r);
    assert_eq!(body["identity"]["auth_method"], "spiffe", "{body}");
    assert_eq!(
        body["identity"]["subject"],
        format!("{TRUST_DOMAIN}/executors/e1"),
        "{body}"
    );
    assert_eq!(stack.echo.requests(), 1);

    // e1 naming e2's heartbeat, plainly or percent-encoded (`%32` is `2`).
    for path in ["/executors/e2/heartbeat", "/executors/e%32/heartbeat"] {
        let r = call(path, &e1_cert, &e1_key);
        assert_identity_mismatch(gw, &r);
    }
    assert_eq!(
        stack.echo.requests(),
        1,
        "a refused request never reaches the service"
    );

    // Encoded letters of its own id are its own id.
    let r = call("/executors/%65%31/heartbeat", &e1_cert, &e1_key);
    assert_reached_via_envelope(&r);
    assert_eq!(stack.echo.requests(), 2);

    // `e1%2Fx` would put a slash inside the bound segment: the normalizer
    // refuses every encoded slash before any route is chosen.
    let r = call("/executors/e1%2Fx/heartbeat", &e1_cert, &e1_key);
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(r.json()["path_error"], "encoded_slash");
    assert_eq!(stack.echo.requests(), 2);

    // e2 gets its own, not e1's.
    assert_reached_via_envelope(&call("/executors/e2/heartbeat", &e2_cert, &e2_key));
    let r = call("/executors/e1/heartbeat", &e2_cert, &e2_key);
    assert_identity_mismatch(gw, &r);
    assert_eq!(stack.echo.requests(), 3);

    // Without a certificate there is no identity to compare: 401.
    let r = gw.get("/executors/e1/heartbeat", &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(stack.echo.requests(), 3);
}

#[test]
fn a_certificate_bound_token_is_bound_through_the_spiffe_id_of_its_certificate() {
    let pki_dir = TempDir::new("bind-mtls-pki");
    let pki = Pki::generate(&pki_dir);
    let (e1_cert, e1_key) = pki.issue_client("e1", Some(&format!("{TRUST_DOMAIN}/executors/e1")));
    let stack = bound_stack("bind-mtls", |s| s.tls(pki.listener("optional")));
    let gw = &stack.gateway;
    let token = stack
        .authority
        .token_with(MTLS, TokenRequest::bound_to(&e1_cert));
    let auth = format!("Bearer {token}");
    let call = |path: &str| {
        answered(curl_https(
            gw.tls.expect("tls listener"),
            path,
            &pki.ca,
            Some((&e1_cert, &e1_key)),
            &[("Authorization", &auth)],
        ))
    };

    let body = assert_reached_via_envelope(&call("/bound-executors/e1/jobs"));
    assert_eq!(body["identity"]["auth_method"], "mtls", "{body}");
    assert_eq!(stack.echo.requests(), 1);
    for path in ["/bound-executors/e2/jobs", "/bound-executors/e%32/jobs"] {
        assert_identity_mismatch(gw, &call(path));
    }
    assert_eq!(stack.echo.requests(), 1);
}

#[test]
fn a_bearer_token_is_bound_by_its_subject() {
    let stack = bound_stack("bind-sub", |s| s);
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    // Client-credentials tokens of the Authority name the client as subject.
    assert_eq!(jwt_claims(&token)["sub"], BEARER.id);
    let own = format!("/agents/{}/tasks", BEARER.id);

    assert_reached_via_envelope(&gw.get_with_token(&own, &token));
    // `%2D` is `-`: decoded before routing, so still the caller's own id.
    assert_reached_via_envelope(&gw.get_with_token("/agents/svc%2Dbearer/tasks", &token));
    assert_eq!(stack.echo.requests(), 2);

    for path in [
        "/agents/svc-readonly/tasks",
        "/agents/SVC-BEARER/tasks",
        "/agents/svc-bearerx/tasks",
        "/agents/x/../svc-readonly/tasks",
    ] {
        let r = gw.get_with_token(path, &token);
        assert_identity_mismatch(gw, &r);
    }
    let r = gw.get_with_token("/agents/svc-bearer%2Fx/tasks", &token);
    assert_problem(&r, 400, "invalid_request");
    assert_eq!(stack.echo.requests(), 2);

    // Anonymous: asked to authenticate, not told whose resource it is.
    let r = gw.get(&own, &[]);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(gw.reason_for(&r), "authentication_required");
    assert_eq!(stack.echo.requests(), 2);
}

#[test]
fn a_dpop_bound_token_is_bound_by_its_client_id() {
    let stack = bound_stack("bind-dpop", |s| s.public_origin("http://127.0.0.1:{http}"));
    let gw = &stack.gateway;
    let key = DpopKey::generate();
    let file = stack.dir.join("dpop-key.json");
    key.write_private_jwk(&file);
    let token = stack.authority.dpop_token(DPOP, &file);
    assert_eq!(jwt_claims(&token)["client_id"], DPOP.id);
    let call = |path: &str| {
        let proof = key.proof(
            "GET",
            &format!("{}{path}", gw.origin()),
            Some(&token),
            None,
            now(),
            &unique_jti("bind"),
        );
        let auth = format!("DPoP {token}");
        gw.get(path, &[("Authorization", &auth), ("DPoP", &proof)])
    };

    let body = assert_reached_via_envelope(&call(&format!("/clients/{}/keys", DPOP.id)));
    assert_eq!(body["identity"]["auth_method"], "dpop", "{body}");
    assert_eq!(body["identity"]["client_id"], DPOP.id, "{body}");
    assert_eq!(stack.echo.requests(), 1);

    for path in ["/clients/svc-bearer/keys", "/clients/svc-dpop2/keys"] {
        assert_identity_mismatch(gw, &call(path));
    }
    assert_eq!(stack.echo.requests(), 1);
}

#[test]
fn a_reload_with_a_bad_binding_is_refused_whole_and_the_old_policies_keep_serving() {
    let policies_dir = TempDir::new("bind-reload-policies");
    let policies = policies_with_echo_routes(&policies_dir, BOUND_ROUTES);
    let stack = Stack::start_with("bind-reload", |s| {
        s.policies(&policies)
            .gateway("watch_config", serde_json::json!(false))
    });
    let gw = &stack.gateway;
    let token = stack.authority.token(BEARER);
    let file = policies.join("echo.yaml");
    let before = std::fs::read_to_string(&file).expect("read echo.yaml");
    let extra = "  - id: echo-extra\n    path: /extra/**\n    policy: {anonymous: true}\n";
    let bad = "  - id: bad-binding\n    path: /tasks/{tid}\n    identity_binding: {agent: sub}\n";
    std::fs::write(&file, format!("{before}{extra}{bad}")).expect("write echo.yaml");

    let r = gw.reload();
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    assert_eq!(body["result"], "rejected");
    let errors = body["errors"].to_string();
    assert!(
        errors.contains("identity_binding.agent: names no parameter of the path pattern"),
        "{errors}"
    );
    // Nothing of the refused set applies: not the good route next to it...
    assert_eq!(gw.get("/extra/x", &[]).status, 404);
    // ... and the bindings that were serving still hold.
    assert_identity_mismatch(gw, &gw.get_with_token("/agents/svc-readonly/tasks", &token));
    assert_reached_via_envelope(&gw.get_with_token("/agents/svc-bearer/tasks", &token));

    std::fs::write(&file, format!("{before}{extra}")).expect("write echo.yaml");
    let r = gw.reload();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["result"], "applied");
    assert_eq!(gw.get("/extra/x", &[]).status, 200);
    assert_identity_mismatch(gw, &gw.get_with_token("/agents/svc-readonly/tasks", &token));
}
