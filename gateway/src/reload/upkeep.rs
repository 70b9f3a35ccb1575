//! Upkeep beside the proxy, following reloads: upstream resolution and
//! active health checks, the JWKS refresh loop, the token cache sweep, the
//! sweep of expired revocations, the DPoP replay store's connection kept
//! warm; and [`RevocationSync`], which follows the shared revocation store.

use crate::gateway::Gateway;
use crate::upstream::{resolve_all, FIRST_RESOLVE_TIMEOUT};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

/// How often the upkeep drops expired tokens from the token cache.
const TOKEN_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// How often expired revocations leave the list (and its state file). An
/// expired entry refuses nothing already; this only tidies up.
const REVOCATION_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How often the introspection and claims caches are written to
/// `state_dir` when they changed (and once more on shutdown).
pub const CACHE_PERSIST_INTERVAL: Duration = Duration::from_secs(5);

/// How often the upkeep pings a Redis replay store. The connection (name
/// lookup, TCP, TLS, AUTH) is made when the gateway starts and remade after
/// a loss by these pings, so a DPoP request finds it open instead of paying
/// for it within its own deadline.
pub const REPLAY_PING_INTERVAL: Duration = Duration::from_secs(5);

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
                    .authn
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
                    let list = current.authn.issuers.list();
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
        let replay = tokio::spawn(keep_replay_store_warm(self.gateway.clone()));
        let mut last_resolve = std::time::Instant::now();
        let mut last_sweep = std::time::Instant::now();
        let mut last_revocation_sweep = std::time::Instant::now();
        let mut last_persist = std::time::Instant::now();
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
                snapshot
                    .authn
                    .tokens
                    .remove_expired(snapshot.shared.clock.now());
                last_sweep = std::time::Instant::now();
            }
            if last_revocation_sweep.elapsed() >= REVOCATION_SWEEP_INTERVAL {
                let shared = &snapshot.shared;
                shared.revocations.sweep(shared.clock.now()).await;
                last_revocation_sweep = std::time::Instant::now();
            }
            for pool in &snapshot.upstreams {
                pool.check_health_if_due().await;
            }
            if last_persist.elapsed() >= CACHE_PERSIST_INTERVAL {
                persist_caches(&snapshot);
                last_persist = std::time::Instant::now();
            }
            drop(snapshot);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
        jwks.abort();
        replay.abort();
    }
}

/// Pings the current Redis replay store at start and every
/// [`REPLAY_PING_INTERVAL`], logging when it becomes unreachable (with the
/// failure's class) and when it answers again. A memory store needs none.
async fn keep_replay_store_warm(gateway: Arc<Gateway>) {
    use crate::config::resolve::ReplayStoreConfig;
    let mut reachable: Option<bool> = None;
    loop {
        let snapshot = gateway.current();
        if matches!(
            snapshot.config.dpop.replay_store,
            ReplayStoreConfig::Redis { .. }
        ) {
            let store = snapshot.authn.replay.clone();
            drop(snapshot);
            match store.ping().await {
                Ok(()) if reachable != Some(true) => {
                    tracing::info!("dpop replay store reachable");
                    reachable = Some(true);
                }
                Err(e) if reachable != Some(false) => {
                    tracing::warn!(
                        error = %e,
                        "dpop replay store unreachable; DPoP requests get 503 until it answers"
                    );
                    reachable = Some(false);
                }
                _ => {}
            }
        } else {
            reachable = None;
        }
        tokio::time::sleep(REPLAY_PING_INTERVAL).await;
    }
}

/// Writes every Authority's changed introspection and claims caches (small
/// files, written atomically; off the request path).
pub fn persist_caches(snapshot: &crate::gateway::Snapshot) {
    for issuer in snapshot.authn.issuers.list() {
        issuer.persist_caches();
    }
}

/// Follows the shared revocation store (`Revocations::follow_store`), when
/// there is one, until the process ends.
pub struct RevocationSync {
    pub gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for RevocationSync {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let shared = self.gateway.shared.clone();
        shared
            .revocations
            .follow_store(shared.clock.as_ref(), &mut shutdown)
            .await;
    }
}
