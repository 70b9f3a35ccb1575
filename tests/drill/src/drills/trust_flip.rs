//! Flip services from GatewayEnforced to Hybrid and back under constant
//! load, without restarting anything, with zero failed requests
//! (runbooks/trust-mode-flip.md): `echo` (Rust, stella-envelope) and
//! `sample-python` (Python, the SDK of sdk/python; samples/python).
//! 1. to Hybrid: each service's `Router__` file changes (the service notices
//!    by itself), then the gateway's record of the mode (POST /reload);
//! 2. back to GatewayEnforced: the files again, this time with SIGHUP, then
//!    the gateway (`stella-gateway reload`).
//!
//! After each flip, a request straight to the service with no envelope
//! behaves as the mode says. `echo`: /__echo/config shows the mode; with
//! its own token it is let in under Hybrid, refused under GatewayEnforced.
//! `sample-python` (no authentication of its own): 401
//! `envelope_required` under GatewayEnforced, its own 401
//! `service_auth_required` under Hybrid.

use crate::harness::Outcome;
use crate::load::kind;
use crate::stack::status_at;
use crate::Drill;
use std::time::Duration;
use stella_test_support::try_request;

const SAMPLE: &str = "sample-python";

pub fn run(d: &mut Drill) -> Outcome {
    d.stack.samples = vec!["python".into()];
    d.stack_up()?;
    let pids: Vec<Option<u32>> = ["echo", SAMPLE].map(|s| pid(d, s)).to_vec();
    expect_direct(d, 401, 401);
    expect_sample(d, "envelope_required")?;
    let mut kinds = d.default_kinds();
    let url = format!("{}/python/whoami", d.stack.gw());
    kinds.push(kind("sample-python", "GET", url, "bearer:svc-bearer", 2));
    d.load_start(kinds)?;
    d.step("baseline");
    d.hold()?;

    d.step("flip-to-hybrid");
    for service in ["echo", SAMPLE] {
        set_mode(d, service, "Hybrid");
        if service == "echo" {
            d.reconfigure_service(service, false)?;
        } else {
            d.write_service_file(service)?;
        }
    }
    expect_direct(d, 200, 401);
    expect_sample(d, "service_auth_required")?;
    d.write_gateway_config()?;
    d.gateway_reload()?;
    d.hold()?;

    d.step("flip-back-to-gateway-enforced");
    for service in ["echo", SAMPLE] {
        set_mode(d, service, "GatewayEnforced");
        if service == "echo" {
            d.reconfigure_service(service, true)?;
        } else {
            d.write_service_file(service)?;
            if let Some(p) = &d.stack.service(service).process {
                p.signal("HUP");
            }
        }
    }
    expect_direct(d, 401, 401);
    expect_sample(d, "envelope_required")?;
    d.write_gateway_config()?;
    d.reload_command()?;
    d.hold()?;

    for (service, before) in ["echo", SAMPLE].into_iter().zip(pids) {
        let now = pid(d, service);
        let running = d
            .stack
            .services
            .get_mut(service)
            .and_then(|s| s.process.as_mut())
            .is_some_and(|p| p.try_exit_code().is_none());
        d.run.check(
            running && now == before,
            format!("{service} was never restarted (pid {before:?})"),
            format!("{service} is not the process it was at the start"),
        );
    }
    Ok(())
}

fn pid(d: &Drill, service: &str) -> Option<u32> {
    d.stack.service(service).process.as_ref().map(|p| p.pid())
}

/// The service's mode in its `Router__` file and in the gateway's record
/// (the gateway reports it; the service enforces it).
fn set_mode(d: &mut Drill, service: &str, mode: &str) {
    if let Some(s) = d.stack.services.get_mut(service) {
        s.mode = mode.into();
    }
    if let Some(r) = d.stack.routes.iter_mut().find(|r| r.name == service) {
        r.mode = mode.into();
    }
}

/// Straight to `echo`, no envelope: with the service's own token, and
/// with nothing.
fn expect_direct(d: &Drill, own_wanted: u16, none_wanted: u16) {
    let addr = d.stack.service("echo").addr;
    let auth = format!("Bearer {}", d.stack.legacy_token);
    let own = status_at(addr, "GET", "/items/1", &[("Authorization", &auth)]);
    let none = status_at(addr, "GET", "/items/1", &[]);
    d.run.check(
        own == own_wanted && none == none_wanted,
        format!("straight to echo without an envelope: own token {own}, nothing {none}"),
        format!("straight to echo without an envelope: own token {own} (wanted {own_wanted}), nothing {none} (wanted {none_wanted})"),
    );
}

/// Waits until a request straight to the sample, with no envelope, is
/// refused with `code` (which tells its mode), at most 10 s after its file
/// was written.
fn expect_sample(d: &Drill, code: &str) -> Outcome {
    let addr = d.stack.service(SAMPLE).addr;
    let refusal = || {
        try_request(
            addr,
            "GET",
            "/python/whoami",
            &[],
            b"",
            Duration::from_secs(5),
        )
        .ok()
        .filter(|r| r.status == 401)
        .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
        .and_then(|b| b["error"].as_str().map(str::to_owned))
    };
    match d.run.wait_for(Duration::from_secs(10), || {
        refusal().as_deref() == Some(code)
    }) {
        Some(ms) => {
            d.run.ok(format!(
                "{SAMPLE} straight, no envelope: 401 {code} (after {ms} ms)"
            ));
            Ok(())
        }
        None => d.run.abort(format!(
            "{SAMPLE} straight, no envelope: {:?}, wanted 401 {code}",
            refusal()
        )),
    }
}
