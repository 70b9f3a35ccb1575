//! `stella-gateway upgrade`: replaces the running gateway with a new
//! process of this binary through the socket handover (crate::upgrade).

use crate::upgrade::{alive, quit, Handover};
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `stella-gateway upgrade`: exit 0 once the new process is ready and the
/// old one has been told to hand over; 1 when the handover failed (the old
/// process keeps serving); 2 for a configuration the new process would
/// refuse.
pub fn command(config: &Path, socket: Option<&Path>, pid: Option<u32>, timeout: Duration) -> i32 {
    let handover = Handover::new(config, socket);
    if let Err(errors) = crate::server::prepare(config) {
        crate::config::report(&errors);
        eprintln!("upgrade: the configuration is refused; the running gateway is unchanged");
        return 2;
    }
    let old = match pid.filter(|p| alive(*p)).or_else(|| handover.running_pid()) {
        Some(old) => old,
        None => {
            eprintln!(
                "upgrade: no running gateway found ({} names none; pass --pid)",
                handover.pid_file().display()
            );
            return 1;
        }
    };
    let _ = std::fs::remove_file(&handover.socket);
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("upgrade: cannot find this program: {e}");
            return 1;
        }
    };
    let mut run = Command::new(exe);
    run.arg("run")
        .arg("--config")
        .arg(config)
        .arg("--upgrade")
        .arg("--upgrade-socket")
        .arg(&handover.socket)
        .stdin(Stdio::null());
    // Its own process group: a terminal's Ctrl-C or the end of this command
    // does not reach it.
    std::os::unix::process::CommandExt::process_group(&mut run, 0);
    let mut child = match run.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!("upgrade: cannot start the new process: {e}");
            return 1;
        }
    };
    let new = child.id();
    let started = Instant::now();
    // The new process listens on the upgrade socket (it waits 5 s there for
    // the sockets); then the old one is asked to send them.
    while !handover.socket.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("upgrade: the new process exited before taking over ({status}); pid {old} keeps serving");
            return 1;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            eprintln!("upgrade: the new process did not open {} within {timeout:?}; pid {old} keeps serving", handover.socket.display());
            return 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Err(e) = quit(old) {
        let _ = child.kill();
        eprintln!("upgrade: cannot signal pid {old}: {e}; it keeps serving");
        return 1;
    }
    // Ready: the new process has written its pid.
    loop {
        if handover.running_pid() == Some(new) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "upgraded: pid {old} -> {new} ({:?})",
                started.elapsed()
            );
            return 0;
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!(
                "upgrade: the new process exited ({status}) after pid {old} was asked to hand over"
            );
            return 1;
        }
        if started.elapsed() > timeout {
            eprintln!("upgrade: the new process (pid {new}) was not ready within {timeout:?}");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
