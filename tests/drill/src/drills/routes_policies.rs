//! Change routes and policies under constant load. Each change must be seen
//! within 1 s of the file being written, and no request may fail that was
//! valid under both the old and the new configuration:
//! 1. add a route (/drill/**): the policy file changes, nothing else (the
//!    gateway's file watcher);
//! 2. tighten a scope (GET /items/** needs echo.write, so the read-only
//!    client gets 403): the file, then `stella-gateway reload`;
//! 3. a bad change (an unknown policy key): POST /reload is refused with
//!    422, the old policies keep serving, then the file is restored;
//! 4. remove the route again: the file, then SIGHUP.
//!
//! A kind whose answer changes is told on the load generator's stdin to
//! accept both answers while the change is under way, and only the new one
//! once it has been seen.

use crate::harness::{write_atomic, Abort, Outcome};
use crate::load::kind_expecting;
use crate::Drill;
use serde_json::Value;
use std::time::Duration;
use stella_test_support::try_request;

const ROUTE: &str = "
  # Added by the routes-policies drill.
  - id: echo-drill
    path: /drill/**
    policy:
      scopes_any: [echo.read]
";
const READ_SCOPES: &str = "      scopes_any: [echo.read, echo.write]\n";
const WRITE_SCOPE: &str = "      scopes_any: [echo.write]\n";
const REJECTED: [(&str, &str); 1] = [("result", "rejected")];

pub fn run(d: &mut Drill) -> Outcome {
    d.stack_up()?;
    let policy = d.run.conf.join("policies/echo.yaml");
    let original = std::fs::read_to_string(&policy)
        .map_err(|e| Abort(format!("{}: {e}", policy.display())))?;
    if !original.contains(READ_SCOPES) {
        return d
            .run
            .abort("policies/echo.yaml no longer has the items-read scopes this drill tightens");
    }
    let with_route = format!("{original}{ROUTE}");
    let tightened = |text: &str| text.replacen(READ_SCOPES, WRITE_SCOPE, 1);
    let bearer = d.stack.bearer_token.clone();
    let readonly = d.stack.readonly_token.clone();

    let mut kinds = d.default_kinds();
    let drill_url = format!("{}/drill/1", d.stack.gw());
    kinds.push(kind_expecting(
        "drill-route",
        "GET",
        drill_url,
        "bearer:svc-bearer",
        "404",
        2,
    ));
    d.load_start(kinds)?;
    d.step("baseline");
    d.hold()?;

    d.step("add-route");
    d.expect("drill-route", "404,2xx");
    write_atomic(&policy, &with_route)?;
    seen_within(
        d,
        "route /drill/** added (file watcher)",
        200,
        "/drill/1",
        &bearer,
    )?;
    d.expect("drill-route", "2xx");
    d.hold()?;

    d.step("tighten-scope");
    d.expect("items-readonly", "2xx,403");
    write_atomic(&policy, &tightened(&with_route))?;
    d.reload_command()?;
    seen_within(
        d,
        "GET /items/** needs echo.write (reload command)",
        403,
        "/items/2",
        &readonly,
    )?;
    d.expect("items-readonly", "403");
    let s = d.status_with("/items/1", &bearer);
    d.run.check(
        s == 200,
        "a token with echo.write still reads: 200",
        format!("a token with echo.write reads: {s}"),
    );
    d.hold()?;

    d.step("bad-change-refused");
    let good = d.admin_json("/config")["config_version"].clone();
    let rejected_before = d.metric("stella_gateway_config_reloads_total", &REJECTED);
    let good_text = tightened(&with_route);
    write_atomic(
        &policy,
        &format!("{good_text}  - id: echo-broken\n    path: /broken/**\n    polcy: {{anonymous: true}}\n"),
    )?;
    let admin = std::net::SocketAddr::from(([127, 0, 0, 1], d.stack.admin_port));
    let answer = try_request(admin, "POST", "/reload", &[], b"", Duration::from_secs(10));
    let (status, body) = match &answer {
        Ok(r) => (
            r.status,
            serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null),
        ),
        Err(e) => (0, Value::String(e.clone())),
    };
    d.run.check(
        status == 422 && body["result"] == "rejected",
        format!(
            "POST /reload refused the bad policy: 422 {}",
            body["errors"]
        ),
        format!("POST /reload of a bad policy: {status} {body} (wanted 422 rejected)"),
    );
    let config = d.admin_json("/config");
    d.run.check(
        config["config_version"] == good,
        format!("config_version still {good}"),
        format!(
            "config_version changed to {} after a refused reload",
            config["config_version"]
        ),
    );
    d.run.check(
        config["last_rejected"].is_object(),
        format!("/config last_rejected: {}", config["last_rejected"]),
        format!("/config has no last_rejected: {config}"),
    );
    let rejected = d.metric("stella_gateway_config_reloads_total", &REJECTED);
    d.run.check(
        rejected > rejected_before,
        format!("stella_gateway_config_reloads_total{{result=\"rejected\"}}: {rejected_before} -> {rejected}"),
        format!("stella_gateway_config_reloads_total{{result=\"rejected\"}} stayed {rejected}"),
    );
    let s = d.status("GET", "/broken/1", &[]);
    d.run.check(
        s == 404,
        "the refused route does not exist: 404",
        format!("GET /broken/1: {s} (wanted 404)"),
    );
    write_atomic(&policy, &good_text)?;
    d.gateway_reload()?;
    d.hold()?;

    d.step("remove-route");
    d.expect("drill-route", "2xx,404");
    write_atomic(&policy, &tightened(&original))?;
    d.signal_gateway("HUP");
    seen_within(
        d,
        "route /drill/** removed (SIGHUP)",
        404,
        "/drill/1",
        &bearer,
    )?;
    d.expect("drill-route", "404");
    let alive = d
        .stack
        .gateway
        .as_mut()
        .is_some_and(|p| p.try_exit_code().is_none());
    if !alive {
        return d.run.abort("the gateway exited on SIGHUP");
    }
    d.run.ok("the gateway is still running after SIGHUP");
    d.hold()
}

/// Waits for `want` on GET `path` with the token; fails the drill unless
/// it came within 1 s of the file write.
fn seen_within(d: &Drill, what: &str, want: u16, path: &str, token: &str) -> Outcome {
    match d.run.wait_for(Duration::from_secs(10), || {
        d.status_with(path, token) == want
    }) {
        Some(ms) if ms <= 1000 => d.run.ok(format!("{what}: seen after {ms} ms")),
        Some(ms) => d
            .run
            .fail(format!("{what}: seen after {ms} ms (more than 1 s)")),
        None => {
            let s = d.status_with(path, token);
            return d
                .run
                .abort(format!("{what}: not seen within 10 s (status {s})"));
        }
    }
    Ok(())
}
