//! The sample service `stella-echo-service` in one trust mode: it binds
//! `127.0.0.1:0` and reports the address in its `ECHO_READY` line.
//!
//! The binary is found in [`binary_dir`](crate::binary_dir), next to the
//! gateway binary. If it is missing, or
//! older than a source file cargo's dep-info (`stella-echo-service.d`)
//! lists for it, the harness runs `cargo build -p stella-echo-service` once
//! per test process, with the same profile as the gateway binary. When it is
//! current, cargo is never called, so tests do not queue on the cargo lock.
//! If the build fails the test panics naming the command to run by hand.

use crate::http::request;
use crate::process::Process;
use crate::{repo_root, ENVELOPE_KEY, ENVELOPE_KID, GATEWAY_ID, START_TIMEOUT};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

/// Whether `binary` is missing or older than a file cargo compiled it
/// from, as listed in cargo's dep-info file next to it (`<binary>.d`).
/// Without dep-info the binary is taken as current.
fn is_stale(binary: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return true;
    };
    let Ok(dep_info) = std::fs::read_to_string(binary.with_extension("d")) else {
        return false;
    };
    let deps = dep_info
        .split_once(": ")
        .map(|(_, deps)| deps)
        .unwrap_or_default();
    // Paths are separated by spaces; a space inside a path is `\ `.
    let deps = deps.replace("\\ ", "\u{0}");
    deps.split_whitespace()
        .map(|p| PathBuf::from(p.replace('\u{0}', " ")))
        .any(|dep| {
            std::fs::metadata(&dep)
                .and_then(|m| m.modified())
                .is_ok_and(|changed| changed > built)
        })
}

/// `target/<profile>/stella-echo-service`, built if missing or stale.
pub fn echo_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let folder = crate::binary_dir();
    let echo = folder.join(format!(
        "stella-echo-service{}",
        std::env::consts::EXE_SUFFIX
    ));
    BUILD.call_once(|| {
        if !is_stale(&echo) {
            return;
        }
        let root = repo_root();
        let cargo = std::env::var("CARGO")
            .ok()
            .or(option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "-p", "stella-echo-service"]);
        match folder
            .file_name()
            .and_then(|n| n.to_str())
        {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let status = cmd.status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "building the sample service failed ({status:?}): run `cargo build -p stella-echo-service` first"
        );
    });
    assert!(
        echo.is_file(),
        "{} not found: run `cargo build -p stella-echo-service` first",
        echo.display()
    );
    echo
}

/// `stella-echo-service` in one trust mode.
pub struct Echo {
    process: Process,
    pub name: String,
}

impl Echo {
    /// `echo`: GatewayEnforced, audience `echo`.
    pub fn gateway_enforced() -> Echo {
        Echo::start("echo", "GatewayEnforced", &[])
    }

    /// `echo-hybrid`: Hybrid, audience `echo-hybrid`.
    pub fn hybrid() -> Echo {
        Echo::start("echo-hybrid", "Hybrid", &[])
    }

    /// `echo-legacy`: ServiceEnforced; it authenticates callers itself with
    /// `service_token` as the one bearer token it accepts.
    pub fn legacy(service_token: &str) -> Echo {
        Echo::start(
            "echo-legacy",
            "ServiceEnforced",
            &[("ECHO_SERVICE_TOKEN", service_token)],
        )
    }

    pub fn start(name: &str, mode: &str, extra: &[(&str, &str)]) -> Echo {
        let mut cmd = Command::new(echo_binary());
        cmd.env_clear()
            .env("ECHO_LISTEN", "127.0.0.1:0")
            .env("Router__Enabled", "true")
            .env("Router__AuthorizationTrustMode", mode)
            .env("Router__IdentityEnvelopeSigningKey", ENVELOPE_KEY)
            .env("Router__IdentityEnvelopeSigningKeyId", ENVELOPE_KID)
            .env("Router__IdentityEnvelopeAudience", name)
            .env("Router__IdentityEnvelopeIssuer", GATEWAY_ID);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let process = Process::start(name, cmd, "ECHO_READY", START_TIMEOUT);
        Echo {
            process,
            name: name.to_owned(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// Kills the service now (SIGKILL: its port refuses connections).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// How many requests reached the service so far.
    pub fn requests(&self) -> u64 {
        let r = request(self.addr(), "GET", "/__echo/requests", &[], b"");
        r.json()["requests"].as_u64().expect("requests count")
    }
}
