//! The DPoP replay store (memory, one node) under load.
//! 1. sustained: DPoP requests only, at the drill's rate, for longer than
//!    the proof window, with the default replay settings: zero failed
//!    requests, no replay store error (no 503), no share refusal.
//! 2. flood: one DPoP key (client svc-dpop) sends most of the traffic
//!    against a store sized so that its share (10 % of
//!    `replay_max_entries`) runs out within the step; it gets 429 beyond its
//!    share, while another DPoP key (client svc-dpop2) and Bearer callers
//!    see no failure at all.
//!
//! --short (CI): a 10 s proof window (`proof_max_age_seconds`) and 25 s of
//! sustained load, so the window still passes within the step; full: the
//! default 60 s window and 90 s of load.

use crate::harness::{write_atomic, Outcome};
use crate::load::{kind, kind_expecting, kind_with_body, summary};
use crate::Drill;
use std::process::Command;
use std::time::Duration;

const FLOOD_SECONDS: u64 = 12;

pub fn run(d: &mut Drill) -> Outcome {
    // A second DPoP client, so two proof keys can be told apart.
    let clients = d.run.conf.join("clients.json");
    write_atomic(
        &clients,
        r#"[{"client_id": "svc-dpop2", "client_secret": "svc-dpop2-secret",
  "scope": "echo.read echo.write admin", "tenant": "acme",
  "dpop_bound_access_tokens": true}]"#,
    )?;
    d.stack.authority_env.push((
        "AUTHORITY_CLIENTS_FILE".into(),
        clients.display().to_string(),
    ));
    let window = if d.run.short {
        d.stack.gateway_env.push((
            "Gateway__Auth__Dpop__ProofMaxAgeSeconds".into(),
            "10".into(),
        ));
        16
    } else {
        66
    };
    d.stack_up()?;
    let check = d.command_output(
        Command::new(d.run.binary("stella-gateway"))
            .arg("check")
            .arg("--config")
            .arg(d.run.conf.join("gateway.yaml"))
            .envs(d.stack.gateway_env.iter().map(|(k, v)| (k, v))),
    )?;
    let capacity = check
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay_max_entries:"))
        .map(|v| v.trim().to_owned())
        .unwrap_or_else(|| "?".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    d.run.ok(format!(
        "default replay_max_entries: {capacity} (proof window {window}s, {cores} cores)"
    ));

    // 1. Sustained load at the drill's rate, longer than the window.
    let gw = d.stack.gw();
    d.load_start(vec![
        kind(
            "dpop-get",
            "GET",
            format!("{gw}/dpop/1?x=1"),
            "dpop:svc-dpop",
            3,
        ),
        kind_with_body(
            "dpop-post",
            "POST",
            format!("{gw}/items/7"),
            "dpop:svc-dpop2",
            r#"{"n":1}"#,
            1,
        ),
    ])?;
    d.step("sustained");
    d.hold()?;
    let errors = d.metric("stella_gateway_replay_store_errors_total", &[]);
    let refusals = d.metric("stella_gateway_replay_share_refusals_total", &[]);
    d.load_end();
    let sustained = load_summary(d);
    d.run.check(
        errors == 0.0,
        "replay store errors (503): 0",
        format!("replay store errors (503): {errors}"),
    );
    d.run.check(
        refusals == 0.0,
        "share refusals (429): 0",
        format!("share refusals (429) under even load: {refusals}"),
    );
    if d.run.step.as_secs() <= window {
        d.run.fail(format!(
            "the step ({}s) is not longer than the proof window ({window}s)",
            d.run.step.as_secs()
        ));
    }

    // 2. One key floods a store sized for the step: room for ten seconds
    // of the whole rate; one key may hold a tenth. The flooding key (4/5 of
    // the rate) runs out of its share within 2 s, the other DPoP key (1/20
    // of the rate, 0.6 s worth in 12 s) never does.
    d.stop_gateway();
    let entries = d.run.rate * 10;
    d.stack.gateway_env.push((
        "Gateway__Auth__Dpop__ReplayMaxEntries".into(),
        entries.to_string(),
    ));
    d.stack.gateway_env.push((
        "Gateway__Auth__Dpop__ReplayMaxSharePercent".into(),
        "10".into(),
    ));
    d.start_gateway()?;
    let gw = d.stack.gw();
    d.load_start(vec![
        kind_expecting(
            "flood",
            "GET",
            format!("{gw}/dpop/flood"),
            "dpop:svc-dpop",
            "2xx,429",
            16,
        ),
        kind(
            "other-dpop",
            "GET",
            format!("{gw}/dpop/other"),
            "dpop:svc-dpop2",
            1,
        ),
        kind(
            "bearer",
            "GET",
            format!("{gw}/items/1"),
            "bearer:svc-bearer",
            3,
        ),
    ])?;
    d.step("flood");
    d.hold_for(Duration::from_secs(FLOOD_SECONDS))?;
    let refusals = d.metric("stella_gateway_replay_share_refusals_total", &[]);
    let errors = d.metric("stella_gateway_replay_store_errors_total", &[]);
    d.load_end();
    let flood = load_summary(d);
    let share = d.run.rate;
    d.run.check(
        refusals > 0.0,
        format!(
            "flooding key refused with 429 beyond its share of {share} entries: {refusals} times"
        ),
        format!("the flooding key was never refused (share {share} entries)"),
    );
    d.run.check(
        errors == 0.0,
        "replay store errors (503): 0",
        format!("replay store errors (503): {errors}"),
    );

    let (rate, step) = (d.run.rate, d.run.step.as_secs());
    d.run.say("");
    d.run.say(format!(
        "{:<10} | {:<8} | {:<7} | {:<26} | result",
        "run", "seconds", "rate", "replay_max_entries"
    ));
    d.run.say("-----------|----------|---------|----------------------------|------------------------------");
    d.run.say(format!(
        "{:<10} | {step:<8} | {rate:<7} | {:<26} | {sustained}",
        "sustained",
        format!("{capacity} (default)")
    ));
    d.run.say(format!(
        "{:<10} | {FLOOD_SECONDS:<8} | {rate:<7} | {:<26} | {flood}; 429s: {refusals}",
        "flood",
        format!("{entries} (share {share})")
    ));
    d.run
        .say(format!("machine: {cores} cores; proof window {window}s"));
    Ok(())
}

/// "N requests, M failed" of the load that just ended.
fn load_summary(d: &Drill) -> String {
    let err = std::fs::read_to_string(d.run.logs.join("load.err")).unwrap_or_default();
    summary(&err).unwrap_or_else(|| "?".into())
}
