//! Child processes that announce readiness with one stdout line
//! (`<MARKER> {json}`), free loopback ports for the programs that cannot
//! bind port 0 and report back, and polling with a deadline.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Process {
    child: Child,
    /// The JSON that followed the ready marker.
    pub ready: Value,
    name: String,
    /// Stderr lines so far, when started with [`Process::try_start_capturing`].
    stderr: Option<Arc<Mutex<Vec<String>>>>,
}

impl Process {
    /// Spawns `command` and waits up to `timeout` for a stdout line
    /// `<marker> <json>`. Stderr is inherited so failures show in test output.
    pub fn start(name: &str, command: Command, marker: &str, timeout: Duration) -> Process {
        Process::try_start(name, command, marker, timeout).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Process::start`] that reports a process which exits or stays silent
    /// instead of panicking, so a caller can retry (for example with other
    /// ports after losing a race for one).
    pub fn try_start(
        name: &str,
        command: Command,
        marker: &str,
        timeout: Duration,
    ) -> Result<Process, String> {
        Process::spawn(name, command, marker, timeout, false)
    }

    /// [`Process::try_start`] that also keeps every stderr line for
    /// [`Process::stderr_lines`] (they are still copied to the test's
    /// stderr, so failures show them).
    pub fn try_start_capturing(
        name: &str,
        command: Command,
        marker: &str,
        timeout: Duration,
    ) -> Result<Process, String> {
        Process::spawn(name, command, marker, timeout, true)
    }

    fn spawn(
        name: &str,
        mut command: Command,
        marker: &str,
        timeout: Duration,
        capture: bool,
    ) -> Result<Process, String> {
        command
            .stdout(Stdio::piped())
            .stderr(if capture {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .stdin(Stdio::null());
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stderr = child.stderr.take().map(|pipe| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let kept = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    if let Ok(mut kept) = kept.lock() {
                        kept.push(line);
                    }
                }
            });
            lines
        });
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let marker = format!("{marker} ");
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(rest) = line.strip_prefix(&marker) {
                        let _ = tx.send(rest.to_owned());
                        sent = true;
                        continue;
                    }
                }
                // Keep draining so the child never blocks on a full pipe.
                println!("[child] {line}");
            }
        });
        match rx.recv_timeout(timeout) {
            Ok(json) => match serde_json::from_str(&json) {
                Ok(ready) => Ok(Process {
                    child,
                    ready,
                    name: name.to_owned(),
                    stderr,
                }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    Err(format!("{name} ready line is not json ({e}): {json}"))
                }
            },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(format!(
                    "{name} did not become ready within {timeout:?} (exit: {status:?})"
                ))
            }
        }
    }

    /// Kills the process now and waits for it to be gone (SIGKILL: an
    /// abrupt outage, not a graceful stop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The `addr` member of the ready line as a socket address.
    pub fn addr(&self) -> SocketAddr {
        self.ready["addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{} ready line has no addr: {}", self.name, self.ready))
    }

    /// The stderr lines written so far (none unless started with
    /// [`Process::try_start_capturing`]).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr
            .as_ref()
            .and_then(|lines| lines.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `INT`) with `kill -s`.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -s {name} {} failed", self.name);
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None
    /// for a signal), or `Err` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_exit_code() {
                return Ok(code);
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("{} still running after {timeout:?}", self.name));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process has exited, with its code.
    pub fn try_exit_code(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().ok().flatten().map(|s| s.code())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago: bound to port 0 and
/// released. For programs that cannot bind port 0 and report back (Pingora);
/// another process may take it in between, so callers retry on a failed
/// start with a fresh port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// `n` distinct free ports (all held until every one is chosen, so they
/// differ from each other). Same caveat as [`free_port`].
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn the_ready_line_is_read_and_the_process_dies_on_drop() {
        let mut p = Process::start(
            "unit",
            sh(r#"echo noise; echo 'UNIT_READY {"addr":"127.0.0.1:9"}'; exec sleep 60"#),
            "UNIT_READY",
            Duration::from_secs(10),
        );
        assert_eq!(p.addr(), "127.0.0.1:9".parse::<SocketAddr>().unwrap());
        assert_eq!(p.try_exit_code(), None, "still running");
        p.kill();
        assert_eq!(
            p.wait_exit(Duration::from_secs(5)),
            Ok(None),
            "killed by a signal"
        );
    }

    #[test]
    fn a_process_that_exits_or_lies_is_reported_not_hung_on() {
        let exited =
            Process::try_start("unit", sh("exit 3"), "UNIT_READY", Duration::from_secs(10));
        assert!(exited.is_err_and(|e| e.contains("did not become ready")));
        let bad = Process::try_start(
            "unit",
            sh("echo 'UNIT_READY {nope'; exec sleep 60"),
            "UNIT_READY",
            Duration::from_secs(10),
        );
        assert!(bad.is_err_and(|e| e.contains("not json")));
    }

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(8);
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 8, "{ports:?}");
        let _held = std::net::TcpListener::bind(("127.0.0.1", ports[0])).expect("free port");
    }
}
