//! The `echo` service runs as two replicas behind the gateway. Under
//! constant load, stop one (SIGTERM: it drains and exits), start it again
//! on the same address, then the same with the other: zero failed requests,
//! and each restarted replica takes traffic again (once the gateway's
//! passive health lets it back: after the ejection period, 10 s by default,
//! `services[].eject_seconds`).

use crate::harness::Outcome;
use crate::stack::get_json;
use crate::Drill;
use std::time::Duration;

pub fn run(d: &mut Drill) -> Outcome {
    d.stack.echo_replicas = 2;
    d.stack_up()?;
    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;
    for r in ["echo-1", "echo-2"] {
        let n = served(d, r);
        d.run.check(
            n > 0,
            format!("{r} serves ({n} requests)"),
            format!("{r} served nothing"),
        );
    }
    restart(d, "echo-2")?;
    restart(d, "echo-1")
}

/// Requests the instance has served.
fn served(d: &Drill, instance: &str) -> u64 {
    let addr = d.stack.service(instance).addr;
    get_json(addr, "/__echo/requests", &[])["requests"]
        .as_u64()
        .unwrap_or(0)
}

fn restart(d: &mut Drill, r: &str) -> Outcome {
    let addr = d.stack.service(r).addr;
    d.step(&format!("stop-{r}"));
    d.stop_service(r);
    d.run.ok(format!("{r} stopped (SIGTERM)"));
    d.hold()?;
    d.step(&format!("start-{r}"));
    d.start_service(r, "echo", "GatewayEnforced", addr.port())?;
    let now = d.stack.service(r).addr;
    if now != addr {
        return d.run.abort(format!("{r} came back on {now}, not {addr}"));
    }
    match d.run.wait_for(Duration::from_secs(20), || served(d, r) > 0) {
        Some(ms) => d.run.ok(format!(
            "{r} is back on {addr} and took traffic within {ms} ms"
        )),
        None => {
            return d
                .run
                .abort(format!("{r} took no traffic within 20 s of its restart"))
        }
    }
    d.hold()
}
