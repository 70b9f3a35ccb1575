//! Replacing a running gateway with another process (a new binary, or the
//! same one) without refusing a connection: Pingora's socket handover.
//!
//! `stella-gateway upgrade --config FILE` (gateway/src/cli/upgrade.rs)
//! checks the configuration, starts
//! `stella-gateway run --config FILE --upgrade`, which waits on the upgrade
//! socket for the listening sockets, then sends SIGQUIT to the running
//! process. That process hands its listening sockets over through the
//! socket, keeps accepting for a few seconds beside the new one, then stops
//! accepting and drains like on SIGTERM. No listening socket is ever
//! closed, so no connection is refused.
//!
//! The running process is found by its pid file, `<upgrade socket>.pid`,
//! which `run` writes once it is ready and removes when it exits. The
//! socket defaults to a name derived from the configuration file's path, so
//! both processes agree on it without a setting; `--upgrade-socket` names
//! another (both commands must be given the same one).
//!
//! Under systemd (`Type=notify`, `NotifyAccess=all`), a ready process sends
//! `READY=1` and `MAINPID=<its pid>` to `$NOTIFY_SOCKET`, so the unit
//! follows the new process (deploy/systemd/stella-gateway.service).

use std::path::{Path, PathBuf};

/// This process's handover, set once by `run`.
static HANDOVER: std::sync::OnceLock<Handover> = std::sync::OnceLock::new();

/// Sets this process's handover (`run`, before serving).
pub fn install(handover: Handover) {
    let _ = HANDOVER.set(handover);
}

/// This process is ready: its pid file names it, and systemd is told.
pub fn announce_ready() {
    if let Some(h) = HANDOVER.get() {
        h.write_pid();
    }
    notify_ready();
}

/// This process exits: its pid file goes, unless it names a successor.
pub fn exiting() {
    if let Some(h) = HANDOVER.get() {
        h.remove_pid();
    }
}

/// The upgrade socket and the pid file of a gateway run from `config`.
#[derive(Clone, Debug)]
pub struct Handover {
    pub socket: PathBuf,
}

impl Handover {
    /// `socket`, or `<temp dir>/stella-gateway-<hash of the absolute
    /// configuration path>.sock`.
    pub fn new(config: &Path, socket: Option<&Path>) -> Handover {
        let socket = match socket {
            Some(s) => std::path::absolute(s).unwrap_or_else(|_| s.to_path_buf()),
            None => {
                let path = std::path::absolute(config).unwrap_or_else(|_| config.to_path_buf());
                let digest = ring::digest::digest(
                    &ring::digest::SHA256,
                    path.as_os_str().as_encoded_bytes(),
                );
                let hex: String = digest.as_ref()[..6]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                std::env::temp_dir().join(format!("stella-gateway-{hex}.sock"))
            }
        };
        Handover { socket }
    }

    pub fn pid_file(&self) -> PathBuf {
        let mut name = self.socket.as_os_str().to_owned();
        name.push(".pid");
        PathBuf::from(name)
    }

    /// The pid in the pid file, if it names a live process.
    pub fn running_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        alive(pid).then_some(pid)
    }

    /// Records this process as the one serving (written by rename, so a
    /// reader never sees half a pid).
    pub fn write_pid(&self) {
        let file = self.pid_file();
        let tmp = file.with_extension(format!("pid.{}", std::process::id()));
        let written = std::fs::write(&tmp, format!("{}\n", std::process::id()))
            .and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            tracing::warn!(file = %file.display(), error = %e, "cannot write the pid file; `stella-gateway upgrade` will need --pid");
        }
    }

    /// Removes the pid file if it still names this process (after an
    /// upgrade it names the new one).
    pub fn remove_pid(&self) {
        let file = self.pid_file();
        let ours = std::fs::read_to_string(&file)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            == Some(std::process::id());
        if ours {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Whether a process with this pid exists (signal 0).
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks that the pid exists and may be
    // signalled; it sends nothing.
    pid > 0 && unsafe { libc::kill(pid as libc::pid_t, 0) } == 0
}

/// Sends SIGQUIT: the running gateway hands its sockets over.
pub fn quit(pid: u32) -> std::io::Result<()> {
    // SAFETY: sends SIGQUIT to a pid read from the pid file and checked
    // alive; no memory is involved.
    if unsafe { libc::kill(pid as libc::pid_t, libc::SIGQUIT) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Tells systemd (`$NOTIFY_SOCKET`, when set) that this process is ready
/// and is the service's main process.
pub fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify systemd");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt as _;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
    } else {
        socket.send_to(message.as_bytes(), Path::new(&path))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_socket_follows_the_configuration_path() {
        let a = Handover::new(Path::new("/etc/stella/gateway.yaml"), None);
        let b = Handover::new(Path::new("/etc/stella/gateway.yaml"), None);
        let other = Handover::new(Path::new("/etc/stella/other.yaml"), None);
        assert_eq!(a.socket, b.socket);
        assert_ne!(a.socket, other.socket);
        assert!(a.socket.starts_with(std::env::temp_dir()));
        assert_eq!(
            a.pid_file().to_string_lossy(),
            format!("{}.pid", a.socket.display())
        );
        let named = Handover::new(Path::new("x.yaml"), Some(Path::new("/run/gw.sock")));
        assert_eq!(named.socket, Path::new("/run/gw.sock"));
    }

    #[test]
    fn the_pid_file_names_this_process_until_it_is_removed() {
        let dir = std::env::temp_dir().join(format!("stella-upgrade-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = Handover::new(Path::new("x.yaml"), Some(&dir.join("u.sock")));
        assert_eq!(h.running_pid(), None);
        h.write_pid();
        assert_eq!(h.running_pid(), Some(std::process::id()));
        std::fs::write(h.pid_file(), "1\n").unwrap();
        h.remove_pid();
        assert!(h.pid_file().exists(), "another process's pid file is kept");
        h.write_pid();
        h.remove_pid();
        assert!(!h.pid_file().exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
