//! `stella-gateway policy test` and `policy explain` as an operator runs
//! them: the real binary, an empty environment, the shipped `policies/` and
//! throwaway directories with failing tests and invalid files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

use stella_policy::Policies;

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stella-gateway"))
        .env_clear()
        .args(args)
        .output()
        .expect("run stella-gateway")
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh policies directory: `files` are (relative path, text).
fn policy_dir(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stella-policy-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("tests")).unwrap();
    for (path, text) in files {
        std::fs::write(dir.join(path), text).unwrap();
    }
    dir
}

const ORDERS_POLICY: &str = r#"
service: orders
routes:
  - id: orders-public
    path: /orders/catalog/**
    policy: {anonymous: true}
  - id: orders-read
    path: /orders/**
    methods: [GET]
    policy: {scopes_any: [orders.read]}
"#;

#[test]
fn shipped_policy_tests_all_pass_and_print_a_table() {
    let dir = repo("policies");
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let header = text.lines().next().unwrap_or_default();
    for column in ["NAME", "EXPECTED", "GOT", "RESULT"] {
        assert!(header.contains(column), "{header}");
    }
    let traversal = text
        .lines()
        .find(|l| l.starts_with("dot dot from the public prefix reaches the admin route"))
        .unwrap_or_default();
    assert!(
        traversal.contains("deny 401 echo-admin (authentication_required)")
            && traversal.ends_with("PASS"),
        "{traversal}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    assert!(text.contains(" passed, 0 failed"), "{text}");
    assert!(
        !text.contains("routes no test reached"),
        "every shipped route has a decision test: {text}"
    );
}

#[test]
fn shipped_policies_name_only_services_of_the_local_config() {
    let config = stella_gateway::config::load(&repo("config/local.yaml"), &HashMap::new())
        .unwrap_or_else(|e| panic!("config/local.yaml refused: {e:?}"));
    let services: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
    let policies = Policies::load_dir(&repo("policies"), Some(&services))
        .unwrap_or_else(|e| panic!("shipped policies refused: {e:?}"));
    let mut served: Vec<&str> = policies
        .routes()
        .iter()
        .map(|r| r.value().service.as_str())
        .collect();
    served.sort_unstable();
    served.dedup();
    assert_eq!(served, vec!["echo", "echo-hybrid", "echo-legacy"]);
}

#[test]
fn a_failing_decision_test_exits_1_and_is_marked_fail() {
    let dir = policy_dir(
        "failing",
        &[
            ("orders.yaml", ORDERS_POLICY),
            (
                "tests/orders.yaml",
                r#"
- name: catalog is public
  request: {method: GET, path: /orders/catalog/1}
  caller: anonymous
  expect: {decision: allow, status: 200, route: orders-public}
- name: anonymous caller reads an order
  request: {method: GET, path: /orders/1}
  caller: anonymous
  expect: {decision: allow, status: 200, route: orders-read}
"#,
            ),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let row = text
        .lines()
        .find(|l| l.starts_with("anonymous caller reads an order"))
        .unwrap_or_default();
    assert!(
        row.contains("allow 200 orders-read")
            && row.contains("deny 401 orders-read (authentication_required)")
            && row.ends_with("FAIL"),
        "{row}"
    );
    let passing = text
        .lines()
        .find(|l| l.starts_with("catalog is public"))
        .unwrap_or_default();
    assert!(passing.ends_with("PASS"), "{passing}");
    assert!(text.contains("2 tests: 1 passed, 1 failed"), "{text}");
}

#[test]
fn an_invalid_policy_file_exits_2_with_file_and_key_path_and_no_echo() {
    let dir = policy_dir(
        "invalid",
        &[
            (
                "bad.yaml",
                r#"
service: orders
routes:
  - id: ok
    path: /ok
    policy: {anonymous: true}
  - id: broken
    path: /SECRET-PATH/%2e/x
    methods: [get-secret]
    policy: {sender_constraint: SECRET-CONSTRAINT, colour: blue}
"#,
            ),
            ("tests/t.yaml", "- {name: n, request: {method: GET, path: /ok}, caller: anonymous, expect: {decision: allow}}\n"),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}{err}", stdout(&out));
    let file = dir.join("bad.yaml").display().to_string();
    assert!(
        err.contains(&format!("{file}: routes[1].policy.colour: unknown key")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}: routes[1].policy.sender_constraint: unknown value, expected one of"
        )),
        "{err}"
    );
    assert!(!err.contains("SECRET"), "values are never echoed: {err}");
    assert!(stdout(&out).is_empty(), "no table for invalid files");

    // Once the file parses, the remaining problems are reported together.
    let dir = policy_dir(
        "invalid-checks",
        &[(
            "bad.yaml",
            "service: orders\nroutes:\n  - {id: broken, path: /SECRET-PATH/%2e/x, methods: [get-secret]}\n",
        )],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let file = dir.join("bad.yaml").display().to_string();
    assert!(
        err.contains(&format!("{file}: routes[0].path: path pattern has '%'")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{file}: routes[0].methods[0]: method name must be an uppercase token"
        )),
        "{err}"
    );
    assert!(
        !err.contains("SECRET") && !err.contains("get-secret"),
        "{err}"
    );
}

#[test]
fn an_invalid_decision_test_file_exits_2_naming_the_test_key() {
    let dir = policy_dir(
        "invalid-test",
        &[
            ("orders.yaml", ORDERS_POLICY),
            (
                "tests/orders.yaml",
                r#"
- name: names a route that does not exist
  request: {method: GET, path: /orders/1}
  caller: {token: {sub: alice, scopes: [orders.read]}, method: carrier-pigeon}
  expect: {decision: allow, status: 403, route: orders-write}
"#,
            ),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let file = dir.join("tests").join("orders.yaml").display().to_string();
    for want in [
        format!("{file}: [0].caller.method: unknown value"),
        format!("{file}: [0].expect.status: must be 200 for decision allow"),
        format!("{file}: [0].expect.route: names no route of the policies"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in {err}");
    }
    assert!(!err.contains("carrier-pigeon"), "{err}");
}

#[test]
fn explain_shows_route_requirement_and_decision_for_a_traversal() {
    let dir = repo("policies");
    let out = gateway(&[
        "policy",
        "explain",
        "--policies",
        dir.to_str().unwrap(),
        "--method",
        "GET",
        "--path",
        "/public/../admin/x",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(text.contains("normalized: /admin/x"), "{text}");
    assert!(
        text.contains("route:      echo-admin (service echo;"),
        "{text}"
    );
    assert!(
        text.contains("policy:     authenticated; scopes_all [admin]"),
        "{text}"
    );
    assert!(
        text.contains("decision:   deny 401 (authentication_required)"),
        "{text}"
    );

    let out = gateway(&[
        "policy",
        "explain",
        "--policies",
        dir.to_str().unwrap(),
        "--path",
        "/admin/x",
        "--caller-json",
        r#"{"token": {"sub": "alice", "scopes": ["echo.read"]}, "method": "dpop"}"#,
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("decision:   deny 403 (insufficient_scope): required scopes admin"),
        "{text}"
    );
}

#[test]
fn explain_refuses_a_malformed_caller_with_exit_2() {
    let dir = repo("policies");
    let out = gateway(&[
        "policy",
        "explain",
        "--policies",
        dir.to_str().unwrap(),
        "--path",
        "/admin/x",
        "--caller-json",
        r#"{"token": {"sub": "alice", "password": "hunter2"}}"#,
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--caller-json: token.password: unknown key"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    assert!(stdout(&out).is_empty());
}

const EXECUTORS_POLICY: &str = r#"
service: executors
routes:
  - id: executor-heartbeat
    path: /executors/{eid}/heartbeat
    methods: [POST]
    identity_binding: {eid: spiffe_path_last}
    policy: {spiffe_ids: [spiffe://stella.test/executors/e1, spiffe://stella.test/executors/e2]}
  - id: agent-secrets
    path: /agents/{agent}/secrets/**
    identity_binding: {agent: client_id}
    policy: {sender_constraint: dpop}
"#;

const EXECUTORS_TESTS: &str = r#"
- name: e1 posts its own heartbeat
  request: {method: POST, path: /executors/e1/heartbeat}
  caller: {spiffe: spiffe://stella.test/executors/e1}
  expect: {decision: allow, status: 200, route: executor-heartbeat}
- name: e1 cannot post e2's heartbeat
  request: {method: POST, path: /executors/e2/heartbeat}
  caller: {spiffe: spiffe://stella.test/executors/e1}
  expect: {decision: deny, status: 403, route: executor-heartbeat, reason: identity_mismatch}
- name: an encoded e2 is still e2
  request: {method: POST, path: /executors/e%32/heartbeat}
  caller: {spiffe: spiffe://stella.test/executors/e1}
  expect: {decision: deny, status: 403, reason: identity_mismatch}
- name: an agent reads its own secrets
  request: {method: GET, path: /agents/agent-7/secrets/db}
  caller: {token: {sub: someone, client_id: agent-7}, method: dpop}
  expect: {decision: allow, status: 200, route: agent-secrets}
- name: an agent cannot read another agent's secrets
  request: {method: GET, path: /agents/agent-8/secrets/db}
  caller: {token: {sub: agent-8, client_id: agent-7}, method: dpop}
  expect: {decision: deny, status: 403, reason: identity_mismatch}
"#;

#[test]
fn identity_binding_decision_tests_pass_and_a_wrong_expectation_fails() {
    let dir = policy_dir(
        "binding",
        &[
            ("executors.yaml", EXECUTORS_POLICY),
            ("tests/executors.yaml", EXECUTORS_TESTS),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    let row = text
        .lines()
        .find(|l| l.starts_with("e1 cannot post e2's heartbeat"))
        .unwrap_or_default();
    assert!(
        row.contains("deny 403 executor-heartbeat (identity_mismatch)") && row.ends_with("PASS"),
        "{row}"
    );
    assert!(text.contains("5 tests: 5 passed, 0 failed"), "{text}");

    // Someone who believes e1 may post e2's heartbeat is told otherwise.
    let wrong = r#"
- name: e1 posts e2's heartbeat
  request: {method: POST, path: /executors/e2/heartbeat}
  caller: {spiffe: spiffe://stella.test/executors/e1}
  expect: {decision: allow, status: 200}
"#;
    let dir = policy_dir(
        "binding-wrong",
        &[
            ("executors.yaml", EXECUTORS_POLICY),
            ("tests/executors.yaml", wrong),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let row = text
        .lines()
        .find(|l| l.starts_with("e1 posts e2's heartbeat"))
        .unwrap_or_default();
    assert!(
        row.contains("deny 403 executor-heartbeat (identity_mismatch)") && row.ends_with("FAIL"),
        "{row}"
    );
}

#[test]
fn a_bad_identity_binding_refuses_the_whole_policy_set_with_exit_2() {
    let bad = r#"
service: executors
routes:
  - id: fine
    path: /fine/{eid}
    identity_binding: {eid: spiffe_path_last}
  - id: unknown-source
    path: /a/{eid}
    identity_binding: {eid: SECRET-SOURCE}
  - id: no-such-param
    path: /b/{eid}
    identity_binding: {executor: sub}
  - id: after-double-star
    path: /c/**/{eid}
    identity_binding: {eid: sub}
  - id: anonymous
    path: /d/{eid}
    identity_binding: {eid: sub}
    policy: {anonymous: true}
"#;
    let dir = policy_dir(
        "binding-bad",
        &[
            ("executors.yaml", bad),
            ("tests/t.yaml", "- {name: n, request: {method: GET, path: /fine/e1}, caller: {spiffe: spiffe://stella.test/executors/e1}, expect: {decision: allow}}\n"),
        ],
    );
    let out = gateway(&["policy", "test", dir.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{}{err}", stdout(&out));
    assert!(stdout(&out).is_empty(), "no table when a file is refused");
    let file = dir.join("executors.yaml").display().to_string();
    for want in [
        format!("{file}: routes[1].identity_binding.eid: unknown identity source; expected one of sub, client_id, tenant, spiffe_path_last"),
        format!("{file}: routes[2].identity_binding.executor: names no parameter of the path pattern (its parameters: {{eid}})"),
        format!("{file}: routes[3].identity_binding.eid: is a parameter after '**'"),
        format!("{file}: routes[4].identity_binding: cannot be used on an anonymous route"),
    ] {
        assert!(err.contains(&want), "missing {want:?} in {err}");
    }
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(!err.contains("SECRET"), "values are never echoed: {err}");
}

#[test]
fn explain_shows_the_binding_and_the_values_it_compared() {
    let dir = policy_dir(
        "binding-explain",
        &[
            ("executors.yaml", EXECUTORS_POLICY),
            ("tests/executors.yaml", EXECUTORS_TESTS),
        ],
    );
    let out = gateway(&[
        "policy",
        "explain",
        "--policies",
        dir.to_str().unwrap(),
        "--method",
        "GET",
        "--path",
        "/agents/agent-%38/secrets/db",
        "--caller-json",
        r#"{"token": {"sub": "agent-8", "client_id": "agent-7"}, "method": "dpop"}"#,
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("normalized: /agents/agent-8/secrets/db\n"),
        "{text}"
    );
    assert!(text.contains("binding:    {agent} = client_id\n"), "{text}");
    assert!(
        text.contains("{agent} = client_id: path segment \"agent-8\", caller client_id \"agent-7\": mismatch\n"),
        "{text}"
    );
    assert!(
        text.contains("decision:   deny 403 (identity_mismatch)"),
        "{text}"
    );
}

const SHADOW_POLICY: &str = "service: echo
routes:
  - id: reports
    path: /reports/**
    policy: {scopes_any: [echo.read]}
    shadow: {scopes_all: [admin]}
";

#[test]
fn explain_shows_the_shadow_policy_and_what_it_would_decide() {
    let dir = policy_dir("shadow-explain", &[("echo.yaml", SHADOW_POLICY)]);
    let explain = |caller: &str| {
        let out = gateway(&[
            "policy",
            "explain",
            "--policies",
            dir.to_str().unwrap(),
            "--method",
            "GET",
            "--path",
            "/reports/1",
            "--caller-json",
            caller,
        ]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
        text
    };
    let text = explain(r#"{"token": {"sub": "reader", "scopes": ["echo.read"]}}"#);
    assert!(text.contains("decision:   allow 200"), "{text}");
    assert!(
        text.contains("shadow:") && text.contains("(not enforced)"),
        "{text}"
    );
    assert!(
        text.contains("deny 403 (insufficient_scope)") && text.contains("differs from enforced"),
        "{text}"
    );
    let text = explain(r#"{"token": {"sub": "boss", "scopes": ["echo.read", "admin"]}}"#);
    assert!(text.contains("same as enforced"), "{text}");

    // A shadow policy is checked like an enforced one.
    let bad = policy_dir(
        "shadow-bad",
        &[(
            "echo.yaml",
            "service: echo\nroutes:\n  - {id: r, path: /r, shadow: {scopes_all: [\"a b\"]}}\n",
        )],
    );
    let out = gateway(&["policy", "test", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("routes[0].shadow.scopes_all[0]"),
        "{}",
        stderr(&out)
    );
}
