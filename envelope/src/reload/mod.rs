//! The service configuration as it changes at runtime (docs/design.md §3.6,
//! SPEC.md 7.1): one checked [`ServiceConfig`] behind an atomic pointer,
//! replaced whole by [`ServiceConfigHandle::reload`].
//!
//! A request loads the pointer once and decides with that snapshot from
//! start to end, so a reload never changes the rules under a request in
//! flight and never blocks one: readers take no lock. A reload re-reads the
//! environment and the file `Router__ConfigFile` names, checks everything,
//! and either swaps the pointer or keeps the old configuration and reports
//! every problem by variable name. The `reload` feature adds the triggers
//! (SIGHUP, file changes) in `reload::triggers`.

use crate::config::{config_file_path, read_config_file, ConfigError, EnvSource, ProcessEnv};
use crate::ServiceConfig;
use arc_swap::ArcSwap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

#[cfg(feature = "reload")]
pub mod triggers;
#[cfg(feature = "reload")]
pub use triggers::{
    spawn_reload_triggers, spawn_reload_triggers_with, ReloadTriggers, TriggerOptions,
};

/// What a successful [`ServiceConfigHandle::reload`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is in use from the next request on.
    Applied { generation: u64 },
    /// The settings read are the ones in use; nothing was swapped.
    Unchanged { generation: u64 },
}

/// The configuration in use and the history of reloads, read together.
#[derive(Clone, Debug)]
pub struct ReloadStatus {
    pub config: Arc<ServiceConfig>,
    /// 1 for the configuration loaded at start, plus one per applied reload.
    pub generation: u64,
    /// When a reload last changed the configuration.
    pub last_applied: Option<SystemTime>,
    /// When a reload was last refused.
    pub last_rejected: Option<SystemTime>,
    /// The problems of the latest reload if it was refused; `None` once a
    /// later reload succeeds (applied or unchanged).
    pub last_errors: Option<Vec<ConfigError>>,
}

/// The reloadable service configuration. Share it in an `Arc`: the envelope
/// layer reads it per request, the triggers reload it.
pub struct ServiceConfigHandle {
    current: ArcSwap<ServiceConfig>,
    env: Box<dyn EnvSource + Send + Sync>,
    config_file: Option<PathBuf>,
    /// Held for a whole reload, so reloads apply in the order they read.
    reloading: Mutex<()>,
    /// Held only to swap and record, so `status` never waits on file I/O.
    state: Mutex<State>,
}

struct State {
    generation: u64,
    last_applied: Option<SystemTime>,
    last_rejected: Option<SystemTime>,
    last_errors: Option<Vec<ConfigError>>,
}

impl std::fmt::Debug for ServiceConfigHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceConfigHandle")
            .field("config_file", &self.config_file)
            .field("generation", &lock(&self.state).generation)
            .finish_non_exhaustive()
    }
}

/// A poisoned lock only means a panic elsewhere while it was held; the data
/// it guards is replaced whole, never left half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ServiceConfigHandle {
    /// Loads the configuration from the process environment and the file
    /// `Router__ConfigFile` names. The errors are those of
    /// [`ServiceConfig::load`]; a service reports them and exits 2.
    pub fn from_process_env() -> Result<ServiceConfigHandle, Vec<ConfigError>> {
        ServiceConfigHandle::load(ProcessEnv)
    }

    /// Loads the configuration from `env` and the file it names; `env` is
    /// read again on every reload.
    pub fn load(
        env: impl EnvSource + Send + Sync + 'static,
    ) -> Result<ServiceConfigHandle, Vec<ConfigError>> {
        let config = ServiceConfig::load(&env)?;
        Ok(ServiceConfigHandle {
            config_file: config_file_path(&env),
            current: ArcSwap::from_pointee(config),
            env: Box::new(env),
            reloading: Mutex::new(()),
            state: Mutex::new(State {
                generation: 1,
                last_applied: None,
                last_rejected: None,
                last_errors: None,
            }),
        })
    }

    /// The configuration in use now. A request calls this once and keeps
    /// the snapshot until it is answered.
    pub fn current(&self) -> Arc<ServiceConfig> {
        self.current.load_full()
    }

    /// The file `Router__ConfigFile` named at load, watched by the triggers.
    pub fn config_file(&self) -> Option<&std::path::Path> {
        self.config_file.as_deref()
    }

    /// The configuration in use with its generation and the last reloads,
    /// consistent with each other.
    pub fn status(&self) -> ReloadStatus {
        let state = lock(&self.state);
        ReloadStatus {
            config: self.current(),
            generation: state.generation,
            last_applied: state.last_applied,
            last_rejected: state.last_rejected,
            last_errors: state.last_errors.clone(),
        }
    }

    /// Re-reads the environment and the config file and, if every setting
    /// checks, swaps the new configuration in for the next request. On any
    /// problem the configuration in use stays and every problem is returned
    /// and logged as `VARIABLE: problem`, never with a value. Settings equal
    /// to those in use change nothing ([`ReloadOutcome::Unchanged`]).
    ///
    /// Blocking (reads a file): from async code, call it on a blocking
    /// thread as the triggers do.
    pub fn reload(&self) -> Result<ReloadOutcome, Vec<ConfigError>> {
        let _one_at_a_time = lock(&self.reloading);
        let loaded = read_config_file(&*self.env)
            .and_then(|text| ServiceConfig::from_env_and_file(&*self.env, text.as_deref()));
        let now = SystemTime::now();
        match loaded {
            Err(errors) => {
                let mut state = lock(&self.state);
                state.last_rejected = Some(now);
                state.last_errors = Some(errors.clone());
                let current = self.current();
                for e in &errors {
                    tracing::error!(
                        variable = e.variable,
                        generation = state.generation,
                        mode = %current.mode,
                        "envelope configuration reload refused, the configuration in use stays: {e}"
                    );
                }
                Err(errors)
            }
            Ok(config) => {
                let mut state = lock(&self.state);
                state.last_errors = None;
                if config.same_settings(&self.current()) {
                    tracing::info!(
                        generation = state.generation,
                        mode = %config.mode,
                        "envelope configuration reloaded: unchanged"
                    );
                    return Ok(ReloadOutcome::Unchanged {
                        generation: state.generation,
                    });
                }
                state.generation = state.generation.saturating_add(1);
                state.last_applied = Some(now);
                tracing::info!(
                    generation = state.generation,
                    enabled = config.enabled,
                    mode = %config.mode,
                    accepted_kids = %kid_list(&config),
                    "envelope configuration reloaded: applied"
                );
                self.current.store(Arc::new(config));
                Ok(ReloadOutcome::Applied {
                    generation: state.generation,
                })
            }
        }
    }
}

/// `kid1,kid2`: key ids only, never material.
fn kid_list(config: &ServiceConfig) -> String {
    config
        .accepted_kids()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
