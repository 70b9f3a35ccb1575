//! Slow clients cannot hold the gateway. Under constant load, N connections
//! (3000; 300 with --short) trickle a request head one header line every
//! 2 s and never finish it. With the default
//! `gateway.limits.request_head_timeout_ms` (10 s) every one of them must
//! be answered 408 and closed within the timeout plus a margin, while the
//! load's requests keep succeeding (0 failed).

use crate::harness::{Abort, Outcome};
use crate::Drill;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

pub fn run(d: &mut Drill) -> Outcome {
    d.stack_up()?;
    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;

    let n = if d.run.short { 300 } else { 3000 };
    d.step(&format!("slowloris-{n}"));
    let out = d.command_output(Command::new("python3").args([
        "scripts/drills/slowloris.py",
        "127.0.0.1",
        &d.stack.http_port.to_string(),
        &n.to_string(),
        "2",
        "30",
    ]))?;
    let result: Value = serde_json::from_str(out.trim())
        .map_err(|e| Abort(format!("slowloris.py printed {out:?}: {e}")))?;
    d.run.say(format!("  {result}"));
    let (open, answered) = (
        result["still_open"].as_u64(),
        result["answered_408"].as_u64(),
    );
    d.run.check(
        open == Some(0) && answered == Some(n),
        format!(
            "all {n} slow heads answered 408 and closed; the last after {}s",
            result["last_closed_after_seconds"]
        ),
        format!("slow heads: {open:?} of {n} still open after 30 s, {answered:?} answered 408"),
    );
    let closed = d.metric(
        "stella_gateway_connections_closed_total",
        &[("reason", "request_head_timeout")],
    );
    d.run.say(format!(
        "  stella_gateway_connections_closed_total{{reason=\"request_head_timeout\"}} {closed}"
    ));
    d.hold_for(Duration::from_secs(2))?;

    d.step("after");
    d.hold()
}
