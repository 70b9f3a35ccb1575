//! Settings of the process: read once at start (listener sockets, worker
//! threads, the log format, the tracer), so a reload that changes one is
//! refused and a restart applies it (docs/design.md §3.8). One table, read
//! by reload and by the configuration reference (docs/configuration.md).

use super::{Config, ConfigError};

/// What a change of a restart-only entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The key itself.
    Key,
    /// The section and every key in it (`traces`).
    Section,
    /// Adding or removing the section; its keys reload
    /// (`gateway.listeners.tls`).
    Presence,
}

/// One setting a reload refuses to change.
pub struct RestartOnly {
    /// Its key path, as errors name it.
    pub path: &'static str,
    pub scope: Scope,
    changed: fn(&Config, &Config) -> bool,
}

/// Every setting a reload refuses to change.
pub const RESTART_ONLY: &[RestartOnly] = &[
    RestartOnly {
        path: "gateway.listeners.http",
        scope: Scope::Key,
        changed: |o, n| o.listeners.http != n.listeners.http,
    },
    RestartOnly {
        path: "gateway.listeners.admin",
        scope: Scope::Key,
        changed: |o, n| o.listeners.admin != n.listeners.admin,
    },
    RestartOnly {
        path: "gateway.listeners.tls",
        scope: Scope::Presence,
        changed: |o, n| o.listeners.tls.is_some() != n.listeners.tls.is_some(),
    },
    RestartOnly {
        path: "gateway.listeners.tls.addr",
        scope: Scope::Key,
        changed: |o, n| match (&o.listeners.tls, &n.listeners.tls) {
            (Some(o), Some(n)) => o.addr != n.addr,
            _ => false,
        },
    },
    RestartOnly {
        path: "gateway.listeners.tls.http2",
        scope: Scope::Key,
        changed: |o, n| match (&o.listeners.tls, &n.listeners.tls) {
            (Some(o), Some(n)) => o.http2 != n.http2,
            _ => false,
        },
    },
    // Pingora takes HTTP/2 settings once, when the proxy is built.
    RestartOnly {
        path: "gateway.limits.h2_idle_timeout_seconds",
        scope: Scope::Key,
        changed: |o, n| o.limits.h2_idle_timeout != n.limits.h2_idle_timeout,
    },
    RestartOnly {
        path: "gateway.limits.h2_max_concurrent_streams",
        scope: Scope::Key,
        changed: |o, n| o.limits.h2_max_concurrent_streams != n.limits.h2_max_concurrent_streams,
    },
    RestartOnly {
        path: "gateway.limits.h2_max_header_list_bytes",
        scope: Scope::Key,
        changed: |o, n| o.limits.h2_max_header_list_bytes != n.limits.h2_max_header_list_bytes,
    },
    // The front reads the PROXY header, or not, from how it was built.
    RestartOnly {
        path: "gateway.listeners.http_proxy_protocol",
        scope: Scope::Key,
        changed: |o, n| {
            o.listeners.http_proxy.proxy_protocol != n.listeners.http_proxy.proxy_protocol
        },
    },
    RestartOnly {
        path: "gateway.listeners.tls.proxy_protocol",
        scope: Scope::Key,
        changed: |o, n| match (&o.listeners.tls, &n.listeners.tls) {
            (Some(o), Some(n)) => o.proxy.proxy_protocol != n.proxy.proxy_protocol,
            _ => false,
        },
    },
    RestartOnly {
        path: "gateway.threads",
        scope: Scope::Key,
        changed: |o, n| o.threads != n.threads,
    },
    RestartOnly {
        path: "gateway.work_stealing",
        scope: Scope::Key,
        changed: |o, n| o.work_stealing != n.work_stealing,
    },
    RestartOnly {
        path: "gateway.shutdown_grace_seconds",
        scope: Scope::Key,
        changed: |o, n| o.shutdown_grace != n.shutdown_grace,
    },
    // The file watcher is started, or not, once at start.
    RestartOnly {
        path: "gateway.watch_config",
        scope: Scope::Key,
        changed: |o, n| o.watch_config != n.watch_config,
    },
    RestartOnly {
        path: "logging.format",
        scope: Scope::Key,
        changed: |o, n| o.logging.json != n.logging.json,
    },
    // The tracer and its exporter are installed once, at start.
    RestartOnly {
        path: "traces",
        scope: Scope::Section,
        changed: |o, n| o.traces != n.traces,
    },
    // The revocation list's state file is read once, at start.
    RestartOnly {
        path: "gateway.revocation",
        scope: Scope::Section,
        changed: |o, n| o.revocation != n.revocation,
    },
];

/// One error per restart-only setting `new` changes.
pub fn refused_changes(old: &Config, new: &Config) -> Vec<ConfigError> {
    RESTART_ONLY
        .iter()
        .filter(|r| (r.changed)(old, new))
        .map(|r| {
            ConfigError::new(
                r.path,
                "cannot change while the gateway runs; restart to apply it",
            )
        })
        .collect()
}

/// How a change of the key at `path` (list entries as `[]`) is applied.
pub fn applied_by(path: &str) -> Applied {
    for r in RESTART_ONLY {
        if path == r.path {
            return match r.scope {
                Scope::Presence => Applied::RestartToAddOrRemove,
                Scope::Key | Scope::Section => Applied::Restart,
            };
        }
        let within = path
            .strip_prefix(r.path)
            .is_some_and(|rest| rest.starts_with('.'));
        if r.scope == Scope::Section && within {
            return Applied::Restart;
        }
    }
    Applied::Reload
}

/// What applies a change of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Reload,
    Restart,
    /// A section whose keys reload, but adding or removing it needs a restart.
    RestartToAddOrRemove,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::reference::{resolve_tree, tree, MINIMAL};
    use std::path::Path;

    fn with(extra: &str) -> Config {
        let text = MINIMAL.replacen("gateway:\n", &format!("gateway:\n{extra}"), 1);
        resolve_tree(&tree(&text), Path::new(".")).unwrap()
    }

    #[test]
    fn turning_the_file_watcher_on_or_off_is_refused_as_needing_a_restart() {
        let errors = refused_changes(&with(""), &with("  watch_config: false\n"));
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["gateway.watch_config"]);
        assert!(refused_changes(&with(""), &with("  watch_config: true\n")).is_empty());
    }

    #[test]
    fn a_key_inside_a_restart_only_section_needs_a_restart_and_a_tls_file_does_not() {
        assert_eq!(applied_by("traces.sampler"), Applied::Restart);
        assert_eq!(applied_by("gateway.threads"), Applied::Restart);
        assert_eq!(
            applied_by("gateway.listeners.tls"),
            Applied::RestartToAddOrRemove
        );
        assert_eq!(
            applied_by("gateway.listeners.tls.cert_file"),
            Applied::Reload
        );
        assert_eq!(applied_by("gateway.listeners.tls.addr"), Applied::Restart);
        assert_eq!(applied_by("gateway.threads_x"), Applied::Reload);
        // The PROXY protocol is the listener's wire format; whom it trusts
        // for forwarding headers is read per request.
        assert_eq!(
            applied_by("gateway.listeners.http_proxy_protocol"),
            Applied::Restart
        );
        assert_eq!(
            applied_by("gateway.listeners.tls.proxy_protocol"),
            Applied::Restart
        );
        assert_eq!(
            applied_by("gateway.listeners.http_trusted_proxies"),
            Applied::Reload
        );
        assert_eq!(
            applied_by("gateway.listeners.tls.trusted_proxies"),
            Applied::Reload
        );
    }
}
