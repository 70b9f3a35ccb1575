//! Child processes that announce readiness with one stdout line
//! (`<MARKER> {json}`), free loopback ports for the programs that cannot
//! bind port 0 and report back, and polling with a deadline.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
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
    /// Its stdout and stderr files, when started with [`Process::start_logged`].
    logs: Option<(PathBuf, PathBuf)>,
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
                    logs: None,
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

    /// Spawns `command` with its stdout in `<dir>/<name>.out` and its
    /// stderr in `<dir>/<name>.err` (the files of an earlier process of the
    /// same name move to `<name>.<n>.out` and `.err`), and waits up to
    /// `timeout` for the stdout line `<marker> <json>`. For long runs whose
    /// logs are read afterwards (the operations drills). `stdin` is
    /// [`Stdio::null`] or [`Stdio::piped`] (then see [`Process::take_stdin`]).
    pub fn start_logged(
        name: &str,
        mut command: Command,
        marker: &str,
        timeout: Duration,
        dir: &Path,
        stdin: Stdio,
    ) -> Result<Process, String> {
        let out_path = dir.join(format!("{name}.out"));
        let err_path = dir.join(format!("{name}.err"));
        if out_path.exists() {
            let n = (1..)
                .find(|n| !dir.join(format!("{name}.{n}.out")).exists())
                .unwrap_or(1);
            let _ = std::fs::rename(&out_path, dir.join(format!("{name}.{n}.out")));
            let _ = std::fs::rename(&err_path, dir.join(format!("{name}.{n}.err")));
        }
        let create = |p: &Path| {
            std::fs::File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))
        };
        command
            .stdout(create(&out_path)?)
            .stderr(create(&err_path)?)
            .stdin(stdin);
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut process = Process {
            child,
            ready: Value::Null,
            name: name.to_owned(),
            stderr: None,
            logs: Some((out_path.clone(), err_path.clone())),
        };
        let prefix = format!("{marker} ");
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let text = std::fs::read_to_string(&out_path).unwrap_or_default();
            if let Some(json) = text.lines().find_map(|l| l.strip_prefix(&prefix)) {
                process.ready = serde_json::from_str(json)
                    .map_err(|e| format!("{name} ready line is not json ({e}): {json}"))?;
                return Ok(process);
            }
            let exited = process.try_exit_code();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let errors = std::fs::read_to_string(&err_path).unwrap_or_default();
                let tail: Vec<&str> = errors.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                let how = match exited {
                    Some(code) => format!("exited ({code:?}) before {marker}"),
                    None => format!("printed no {marker} within {timeout:?}"),
                };
                return Err(format!(
                    "{name} {how}; last lines of {}:\n{}",
                    err_path.display(),
                    tail.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The stdout and stderr files of a process started with
    /// [`Process::start_logged`].
    pub fn log_files(&self) -> Option<(&Path, &Path)> {
        self.logs.as_ref().map(|(o, e)| (o.as_path(), e.as_path()))
    }

    /// The process's stdin, when started with a piped one (once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Stops the process: sends `signal` (`TERM`, `INT`, ...), waits up to
    /// `grace` for it to exit, then kills it. Its exit code (None for a
    /// signal, or when it had to be killed).
    pub fn stop(&mut self, signal: &str, grace: Duration) -> Option<i32> {
        if let Some(code) = self.try_exit_code() {
            return code;
        }
        let _ = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .status();
        match self.wait_exit(grace) {
            Ok(code) => code,
            Err(_) => {
                eprintln!(
                    "{} did not exit on {signal} within {grace:?}; killing it",
                    self.name
                );
                self.kill();
                None
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
    fn a_logged_process_writes_its_files_and_a_restart_keeps_the_earlier_ones() {
        let dir = crate::temp::TempDir::new("logged");
        let start = |text: &str| {
            Process::start_logged(
                "unit",
                sh(&format!(
                    r#"echo {text}; echo 'UNIT_READY {{"n":1}}'; echo oops >&2; exec sleep 60"#
                )),
                "UNIT_READY",
                Duration::from_secs(10),
                dir.path(),
                Stdio::null(),
            )
        };
        let mut first = start("first").expect("starts");
        assert_eq!(first.ready["n"], 1);
        assert_eq!(
            first.stop("TERM", Duration::from_secs(5)),
            None,
            "ended by the signal"
        );
        let _second = start("second").expect("starts again");
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        assert!(
            read("unit.1.out").starts_with("first"),
            "{}",
            read("unit.1.out")
        );
        assert!(
            read("unit.out").starts_with("second"),
            "{}",
            read("unit.out")
        );
        assert!(wait_until(Duration::from_secs(5), || read("unit.err") == "oops\n"));

        let failed = Process::start_logged(
            "dies",
            sh("echo 'bad config' >&2; exit 2"),
            "UNIT_READY",
            Duration::from_secs(10),
            dir.path(),
            Stdio::null(),
        );
        let error = failed.err().expect("an exit before the marker is an error");
        assert!(
            error.contains("exited (Some(2))") && error.contains("bad config"),
            "{error}"
        );
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
