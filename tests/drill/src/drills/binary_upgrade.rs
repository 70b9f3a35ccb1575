//! Replace the gateway's process three times under constant load
//! (`stella-gateway upgrade`: the new process takes the listening sockets
//! over from the running one, which drains), with zero failed requests and
//! no refused connection. After each: the new process answers (its pid on
//! `/readyz`'s node is the pid file's), the old one has exited, and the
//! configuration version is unchanged.

use crate::harness::{Abort, Outcome};
use crate::Drill;
use std::process::Command;
use std::time::{Duration, Instant};

pub fn run(d: &mut Drill) -> Outcome {
    d.stack_up()?;
    let version = d.admin_json("/config")["config_version"].clone();
    d.load_start(d.default_kinds())?;
    d.step("baseline");
    d.hold()?;
    let mut old = d.stack.gateway.as_ref().map(|p| p.pid());
    for round in 1..=3 {
        d.step(&format!("upgrade-{round}"));
        let log = d.run.logs.join(format!("upgrade-{round}.log"));
        let file =
            std::fs::File::create(&log).map_err(|e| Abort(format!("{}: {e}", log.display())))?;
        let started = Instant::now();
        // The new gateway inherits the command's stdout and stderr: a file,
        // never a pipe this drill would wait on.
        let status = Command::new(d.run.binary("stella-gateway"))
            .args(["upgrade", "--config"])
            .arg(d.run.conf.join("gateway.yaml"))
            .stdout(file.try_clone().map_err(|e| Abort(e.to_string()))?)
            .stderr(file)
            .status()
            .map_err(|e| Abort(format!("cannot run stella-gateway upgrade: {e}")))?;
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        let line = said
            .lines()
            .find(|l| l.starts_with("upgraded:"))
            .unwrap_or_default()
            .to_owned();
        if !status.success() {
            return d
                .run
                .abort(format!("stella-gateway upgrade: {status}: {said}"));
        }
        let new = line
            .split_whitespace()
            .nth(4)
            .and_then(|p| p.parse::<u32>().ok());
        d.run.ok(format!(
            "{line} (command took {} ms)",
            started.elapsed().as_millis()
        ));
        match (old, new) {
            (Some(o), Some(n)) if o != n => {}
            _ => {
                return d.run.abort(format!(
                    "upgrade did not name a new pid: {line:?} (old {old:?})"
                ))
            }
        }
        d.stack.adopted = new;
        let gone = d
            .run
            .wait_for(Duration::from_secs(30), || !alive(old.unwrap_or(0)));
        d.run.check(
            gone.is_some(),
            format!(
                "the old process (pid {old:?}) drained and exited {} ms after the command",
                gone.unwrap_or(0)
            ),
            format!("the old process (pid {old:?}) still runs 30 s after the handover"),
        );
        let ready = d.admin_get("/readyz").map_or(0, |r| r.status);
        let now = d.admin_json("/config")["config_version"].clone();
        d.run.check(
            ready == 200 && now == version,
            format!("/readyz 200, config_version {now}"),
            format!("/readyz {ready}, config_version {now} (wanted 200, {version})"),
        );
        old = new;
        d.hold()?;
    }
    Ok(())
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z'))
}
