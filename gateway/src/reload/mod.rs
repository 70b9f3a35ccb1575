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
//! current snapshot: [`signals`] (SIGHUP reloads; SIGTERM and SIGINT drain,
//! and the drain that ends the process once no request is in flight),
//! [`watch`] (the configuration file watcher) and [`upkeep`] (upstream
//! resolution and health checks, the JWKS refresh loop, the token sweep,
//! the revocation sweep, and the shared revocation store's sync).
//! The reload state itself ([`Trigger`], [`Outcome`], the status `/config`
//! shows) belongs to the running [`Gateway`].

mod signals;
mod upkeep;
mod watch;

pub use crate::gateway::{Outcome, Rejected, Status, Trigger};
pub use signals::{Drain, Signals};
pub use upkeep::{RevocationSync, Upkeep};
pub use watch::ConfigWatcher;

use crate::config::{self, ConfigError};
use crate::gateway::{config_version, Gateway, Snapshot};
use crate::upstream::{resolve_all, UpstreamPool, FIRST_RESOLVE_TIMEOUT};
use std::sync::Arc;
use stella_envelope::config::ProcessEnv;

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
                status.applied_at = stella_core::unix_now();
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
                    at: stella_core::unix_now(),
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
        let refused = config::restart::refused_changes(&current.config, &config);
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
        crate::gateway::prepare_state_dirs(&config)?;
        let snapshot = Snapshot::build(config, Some(current), self.shared.clone())?;
        Ok(Some((snapshot, tls)))
    }
}
