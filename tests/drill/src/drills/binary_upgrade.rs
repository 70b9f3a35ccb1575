//! Replace the gateway's process three times under constant load
//! (`stella-gateway upgrade`: the new process takes the listening sockets
//! over from the running one, which drains), with zero failed requests and
//! no refused connection. After each: the new process answers (its pid on
//! `/readyz`'s node is the pid file's), the old one has exited, and the
//! configuration version is unchanged.

use crate::harness::Outcome;
use crate::stack::alive;
use crate::Drill;
use std::time::Duration;

pub fn run(d: &mut Drill) -> Outcome {
    d.stack_up()?;
    let version = d.admin_json("/config")["config_version"].clone();
    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;
    let config = d.run.conf.join("gateway.yaml");
    for round in 1..=3 {
        d.step(&format!("upgrade-{round}"));
        let up = d.upgrade_gateway(&config, &format!("upgrade-{round}.log"))?;
        d.run
            .ok(format!("{} (command took {} ms)", up.line, up.millis));
        d.stack.adopted = Some(up.new);
        let gone = d.run.wait_for(Duration::from_secs(30), || !alive(up.old));
        d.run.check(
            gone.is_some(),
            format!(
                "the old process (pid {}) drained and exited {} ms after the command",
                up.old,
                gone.unwrap_or(0)
            ),
            format!(
                "the old process (pid {}) still runs 30 s after the handover",
                up.old
            ),
        );
        let ready = d.admin_get("/readyz").map_or(0, |r| r.status);
        let now = d.admin_json("/config")["config_version"].clone();
        d.run.check(
            ready == 200 && now == version,
            format!("/readyz 200, config_version {now}"),
            format!("/readyz {ready}, config_version {now} (wanted 200, {version})"),
        );
        d.hold()?;
    }
    Ok(())
}
