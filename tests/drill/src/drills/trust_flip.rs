//! Flip the `echo` service from GatewayEnforced to Hybrid and back under
//! constant load, without restarting anything, with zero failed requests
//! (runbooks/trust-mode-flip.md):
//! 1. to Hybrid: the service's `Router__` file changes (the service notices
//!    by itself), then the gateway's record of the mode (POST /reload);
//! 2. back to GatewayEnforced: the file again, this time with SIGHUP, then
//!    the gateway (`stella-gateway reload`).
//!
//! After each flip: /__echo/config shows the mode, and a request straight
//! to the service with no envelope behaves as the mode says (Hybrid: the
//! service's own authentication decides; GatewayEnforced: 401).

use crate::harness::Outcome;
use crate::stack::status_at;
use crate::Drill;

pub fn run(d: &mut Drill) -> Outcome {
    d.stack_up()?;
    let pid_before = d.stack.service("echo").process.as_ref().map(|p| p.pid());
    expect_direct(d, 401, 401);
    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;

    d.step("flip-to-hybrid");
    set_mode(d, "Hybrid");
    d.reconfigure_service("echo", false)?;
    expect_direct(d, 200, 401);
    d.write_gateway_config()?;
    d.gateway_reload()?;
    d.hold()?;

    d.step("flip-back-to-gateway-enforced");
    set_mode(d, "GatewayEnforced");
    d.reconfigure_service("echo", true)?;
    expect_direct(d, 401, 401);
    d.write_gateway_config()?;
    d.reload_command()?;
    d.hold()?;

    let echo = d
        .stack
        .services
        .get_mut("echo")
        .and_then(|s| s.process.as_mut());
    let same = echo.is_some_and(|p| Some(p.pid()) == pid_before && p.try_exit_code().is_none());
    d.run.check(
        same,
        format!("echo was never restarted (pid {pid_before:?})"),
        "echo is not the process it was at the start",
    );
    Ok(())
}

/// The service's mode in its `Router__` file and in the gateway's record
/// (the gateway reports it; the service enforces it).
fn set_mode(d: &mut Drill, mode: &str) {
    if let Some(s) = d.stack.services.get_mut("echo") {
        s.mode = mode.into();
    }
    if let Some(r) = d.stack.routes.iter_mut().find(|r| r.name == "echo") {
        r.mode = mode.into();
    }
}

/// Straight to the service, no envelope: with the service's own token, and
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
