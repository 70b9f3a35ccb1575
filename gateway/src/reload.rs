//! Reload: rebuild the configuration while serving, all or nothing.
//!
//! Triggers: SIGHUP, a change to the configuration file or any file it
//! references (debounced), `POST /reload` on the admin listener, and
//! `stella-gateway reload --admin URL`. Each runs [`Gateway::reload`], which
//! does exactly what `check` and `run` do (load, resolve, load policies and
//! TLS material) and then either swaps the whole snapshot or changes
//! nothing. Reloads never overlap.
//!
//! Also here, the other processes that run beside the proxy and follow the
//! current snapshot: signals (SIGHUP reloads; SIGTERM and SIGINT drain),
//! the file watcher, upstream resolution and health checks, the JWKS
//! refresh loop, and the drain that ends the process once no request is in
//! flight.

use crate::config::{self, Config, ConfigError};
use crate::gateway::{config_version, Gateway, Snapshot};
use crate::upstream::{resolve_all, UpstreamPool, FIRST_RESOLVE_TIMEOUT};
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use stella_envelope::config::ProcessEnv;

/// What asked for a reload (a label of `stella_gateway_config_reloads_total`
/// is the result only; the trigger is logged and shown on `/config`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Signal,
    FileChange,
    Admin,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "sighup",
            Trigger::FileChange => "file_change",
            Trigger::Admin => "admin",
        }
    }
}

/// How a reload ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The new snapshot serves every request that starts from now on.
    Applied { version: String },
    /// The configuration and its files are the same: nothing was done.
    Unchanged { version: String },
    /// Nothing was changed; the old snapshot keeps serving.
    Rejected { errors: Vec<ConfigError> },
}

impl Outcome {
    pub fn result(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Unchanged { .. } => "unchanged",
            Outcome::Rejected { .. } => "rejected",
        }
    }
}

/// A rejected attempt, kept for `/config`.
#[derive(Clone, Debug)]
pub struct Rejected {
    pub at: u64,
    pub trigger: Trigger,
    pub errors: Vec<String>,
}

/// What `/config` shows about reloads.
#[derive(Clone, Debug)]
pub struct Status {
    /// Unix seconds when the active configuration was applied.
    pub applied_at: u64,
    pub applied_by: &'static str,
    /// Counts applied configurations; 1 for the one `run` started with.
    pub generation: u64,
    pub last_rejected: Option<Rejected>,
}

pub struct ReloadState {
    /// Reloads run one at a time.
    gate: tokio::sync::Mutex<()>,
    status: Mutex<Status>,
    /// The generation, for the tasks that follow the current snapshot.
    changed: tokio::sync::watch::Sender<u64>,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl ReloadState {
    pub fn new(_first: &Snapshot) -> ReloadState {
        ReloadState {
            gate: tokio::sync::Mutex::new(()),
            status: Mutex::new(Status {
                applied_at: unix_now(),
                applied_by: "start",
                generation: 1,
                last_rejected: None,
            }),
            changed: tokio::sync::watch::channel(1).0,
        }
    }

    pub fn status(&self) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// Settings that belong to the process, not the snapshot: a reload that
/// changes one is refused (restart to apply it).
fn restart_only(old: &Config, new: &Config) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    let mut differ = |path: &str, changed: bool| {
        if changed {
            errors.push(ConfigError::new(
                path,
                "cannot change while the gateway runs; restart to apply it",
            ));
        }
    };
    let (o, n) = (&old.listeners, &new.listeners);
    differ("gateway.listeners.http", o.http != n.http);
    differ("gateway.listeners.admin", o.admin != n.admin);
    differ("gateway.listeners.tls", o.tls.is_some() != n.tls.is_some());
    if let (Some(o), Some(n)) = (&o.tls, &n.tls) {
        differ("gateway.listeners.tls.addr", o.addr != n.addr);
        differ("gateway.listeners.tls.http2", o.http2 != n.http2);
    }
    differ("gateway.threads", old.threads != new.threads);
    differ(
        "gateway.work_stealing",
        old.work_stealing != new.work_stealing,
    );
    differ(
        "gateway.shutdown_grace_seconds",
        old.shutdown_grace != new.shutdown_grace,
    );
    differ("logging.format", old.logging.json != new.logging.json);
    // The tracer and its exporter are installed once, at start.
    differ("traces", old.traces != new.traces);
    errors
}

impl Gateway {
    /// Reads the configuration again and applies it whole, or not at all.
    pub async fn reload(&self, trigger: Trigger) -> Outcome {
        let _one_at_a_time = self.reload.gate.lock().await;
        let current = self.current();
        let outcome = match self.prepare(&current) {
            Err(errors) => Outcome::Rejected { errors },
            Ok(None) => Outcome::Unchanged {
                version: current.config_version.clone(),
            },
            Ok(Some((snapshot, tls))) => {
                // New upstream pools get their first lookup before they
                // serve, so a new service's names are ready at once.
                let new_pools: Vec<Arc<UpstreamPool>> = snapshot
                    .upstreams
                    .iter()
                    .filter(|p| !current.upstreams.iter().any(|c| Arc::ptr_eq(c, p)))
                    .cloned()
                    .collect();
                resolve_all(&new_pools, FIRST_RESOLVE_TIMEOUT).await;
                if let (Some(live), Some(material)) = (&self.tls, tls) {
                    live.apply(material);
                }
                if snapshot.config.logging.level != current.config.logging.level {
                    crate::telemetry::set_log_level(&snapshot.config.logging.level);
                }
                let version = snapshot.config_version.clone();
                self.swap(Arc::new(snapshot));
                Outcome::Applied { version }
            }
        };
        self.shared
            .metrics
            .config_reloads
            .with_label_values(&[match outcome {
                Outcome::Rejected { .. } => "rejected",
                _ => "applied",
            }])
            .inc();
        let mut status = self.reload.status.lock().unwrap_or_else(|p| p.into_inner());
        match &outcome {
            Outcome::Applied { version } => {
                status.applied_at = unix_now();
                status.applied_by = trigger.as_str();
                status.generation += 1;
                self.reload.changed.send_replace(status.generation);
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_version = %version,
                    "configuration reloaded"
                );
            }
            Outcome::Unchanged { version } => {
                tracing::info!(
                    trigger = trigger.as_str(),
                    config_version = %version,
                    "configuration unchanged; nothing to reload"
                );
            }
            Outcome::Rejected { errors } => {
                for e in errors {
                    tracing::error!(trigger = trigger.as_str(), "reload refused: {e}");
                }
                status.last_rejected = Some(Rejected {
                    at: unix_now(),
                    trigger,
                    errors: errors.iter().map(ToString::to_string).collect(),
                });
            }
        }
        outcome
    }

    /// Everything `check` and `run` do, off to the side: `Ok(None)` when
    /// nothing changed.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &self,
        current: &Snapshot,
    ) -> Result<Option<(Snapshot, Option<crate::tls::TlsMaterial>)>, Vec<ConfigError>> {
        let config = config::load(&self.config_path, &ProcessEnv)?;
        let refused = restart_only(&current.config, &config);
        if !refused.is_empty() {
            return Err(refused);
        }
        let tls = match &config.listeners.tls {
            Some(listener) => Some(crate::tls::material(listener)?),
            None => None,
        };
        if config_version(&config) == current.config_version {
            return Ok(None);
        }
        let snapshot = Snapshot::build(config, Some(current), self.shared.clone())?;
        Ok(Some((snapshot, tls)))
    }
}

/// Pingora's signal handling, with SIGHUP added: SIGHUP reloads (and never
/// ends the process); SIGTERM and SIGINT both drain gracefully (stop
/// accepting, finish requests in flight within the grace period).
pub struct Signals {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers; shutting down");
            return ShutdownSignal::FastShutdown;
        };
        self.gateway
            .shared
            .signals_installed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    let gateway = self.gateway.clone();
                    // A reload never holds up signal handling.
                    tokio::spawn(async move { gateway.reload(Trigger::Signal).await });
                }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        self.gateway.shared.start_draining();
        tracing::info!(
            in_flight = self.gateway.shared.in_flight(),
            "shutting down: no new connections; waiting for requests in flight"
        );
        ShutdownSignal::GracefulTerminate
    }
}

/// Ends the process once shutdown began and no request is in flight
/// (Pingora alone would wait out the whole grace period).
pub struct Drain {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Drain {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        loop {
            if self.gateway.shared.in_flight() == 0 {
                // Let the last responses leave the socket buffers.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if self.gateway.shared.in_flight() == 0 {
                    tracing::info!("no request in flight; exiting");
                    crate::otel::shutdown();
                    crate::telemetry::flush_logs();
                    std::process::exit(0);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The files whose change triggers a reload: the configuration file, every
/// file it references, and the policies folder.
fn watched(config_path: &Path, snapshot: &Snapshot) -> Vec<PathBuf> {
    let mut paths = vec![config_path.to_path_buf()];
    paths.extend(snapshot.config.sources.iter().cloned());
    if let Some(dir) = &snapshot.config.policies_dir {
        paths.push(dir.clone());
    }
    paths
        .into_iter()
        .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
        .collect()
}

/// Whether an event on `path` concerns one of `watched` (a watched file, or
/// anything inside a watched folder).
fn concerns(path: &Path, watched: &[PathBuf]) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    watched
        .iter()
        .any(|w| path == *w || path.parent() == Some(w.as_path()) || path.starts_with(w))
}

/// Reloads when a watched file changes. Watches the parent folders (editors
/// and volume mounts replace files by rename), filters by path, and waits
/// for the changes to settle before reloading.
pub struct ConfigWatcher {
    pub gateway: Arc<Gateway>,
}

/// Changes closer together than this are one change.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// A file that keeps changing is reloaded at least this often.
const SETTLE_AT_MOST: Duration = Duration::from_secs(2);

#[async_trait]
impl BackgroundService for ConfigWatcher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = match notify::recommended_watcher(
            move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    if !matches!(event.kind, notify::EventKind::Access(_)) {
                        for path in event.paths {
                            let _ = tx.send(path);
                        }
                    }
                }
            },
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the configuration files; SIGHUP and POST /reload still work");
                return;
            }
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut generation = self.gateway.reload.subscribe();
        loop {
            // Watch what the current snapshot reads.
            let snapshot = self.gateway.current();
            let files = watched(&self.gateway.config_path, &snapshot);
            let mut want: Vec<PathBuf> = files
                .iter()
                .flat_map(|f| {
                    let parent = f.parent().map(Path::to_path_buf);
                    [Some(f.clone()).filter(|f| f.is_dir()), parent]
                })
                .flatten()
                .collect();
            want.sort();
            want.dedup();
            for dir in dirs.iter().filter(|d| !want.contains(d)) {
                let _ = watcher.unwatch(dir);
            }
            for dir in want.iter().filter(|d| !dirs.contains(d)) {
                if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch folder");
                }
            }
            dirs = want;
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = generation.changed() => continue,
                Some(path) = rx.recv() => {
                    if !concerns(&path, &files) {
                        continue;
                    }
                    // Settle: wait until DEBOUNCE passes without another
                    // change to a watched file (other files in the same
                    // folders, such as a busy log, do not count), and never
                    // longer than SETTLE_AT_MOST.
                    let started = tokio::time::Instant::now();
                    let mut quiet_since = started;
                    while started.elapsed() < SETTLE_AT_MOST {
                        let left = DEBOUNCE.saturating_sub(quiet_since.elapsed());
                        if left.is_zero() {
                            break;
                        }
                        match tokio::time::timeout(left, rx.recv()).await {
                            Ok(Some(path)) if concerns(&path, &files) => {
                                quiet_since = tokio::time::Instant::now();
                            }
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => break,
                        }
                    }
                    self.gateway.reload(Trigger::FileChange).await;
                }
            }
        }
    }
}

/// How often the upkeep drops expired tokens from the token cache.
const TOKEN_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Keeps upstream addresses fresh (a lookup every `resolve_interval`, off
/// the request path), runs active health checks, and keeps the current
/// Authority's JWKS refreshed, following reloads.
pub struct Upkeep {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for Upkeep {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let gateway = self.gateway.clone();
        let jwks = tokio::spawn(async move {
            let mut generation = gateway.reload.subscribe();
            loop {
                // One refresh loop per Authority, until a reload replaces
                // any of them.
                let caches: Vec<Arc<stella_authority::JwksCache>> = gateway
                    .current()
                    .issuers
                    .list()
                    .iter()
                    .map(|i| i.jwks.clone())
                    .collect();
                let loops: Vec<_> = caches
                    .iter()
                    .map(|c| tokio::spawn(c.clone().run_refresh_loop()))
                    .collect();
                loop {
                    if generation.changed().await.is_err() {
                        loops.iter().for_each(|l| l.abort());
                        return;
                    }
                    let current = gateway.current();
                    let list = current.issuers.list();
                    let same = list.len() == caches.len()
                        && list
                            .iter()
                            .zip(&caches)
                            .all(|(i, c)| Arc::ptr_eq(&i.jwks, c));
                    if !same {
                        break;
                    }
                }
                loops.iter().for_each(|l| l.abort());
            }
        });
        let mut last_resolve = std::time::Instant::now();
        let mut last_sweep = std::time::Instant::now();
        let mut first = true;
        loop {
            let snapshot = self.gateway.current();
            if first || last_resolve.elapsed() >= snapshot.config.resolve_interval {
                resolve_all(&snapshot.upstreams, FIRST_RESOLVE_TIMEOUT).await;
                last_resolve = std::time::Instant::now();
                first = false;
            }
            // Tokens that expired and were not presented again give their
            // memory back (a lookup alone would drop them only when asked).
            if last_sweep.elapsed() >= TOKEN_SWEEP_INTERVAL {
                snapshot.tokens.remove_expired(snapshot.shared.clock.now());
                last_sweep = std::time::Instant::now();
            }
            for pool in &snapshot.upstreams {
                pool.check_health_if_due().await;
            }
            drop(snapshot);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        jwks.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_inside_watched_folders_and_on_watched_files_concern_us() {
        let dir = std::env::temp_dir();
        let watched = vec![dir.join("gateway.yaml"), dir.join("policies")];
        assert!(concerns(&dir.join("gateway.yaml"), &watched));
        assert!(concerns(&dir.join("policies").join("a.yaml"), &watched));
        assert!(!concerns(&dir.join("other.yaml"), &watched));
    }
}
