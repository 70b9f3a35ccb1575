//! Signals: SIGHUP reloads, SIGTERM and SIGINT drain; the drain ends the
//! process once no request is in flight or the grace period is over.

use crate::gateway::{Gateway, Trigger};
use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch, ShutdownWatch};
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

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
        let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut quit)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
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
                // A handover (crate::upgrade): Pingora sends the listening
                // sockets to the new process, accepts beside it for a few
                // seconds, then drains as on SIGTERM.
                _ = quit.recv() => {
                    self.gateway.shared.start_draining();
                    tracing::info!(
                        in_flight = self.gateway.shared.in_flight(),
                        "handing the listening sockets over to the new process, then draining"
                    );
                    return ShutdownSignal::GracefulUpgrade;
                }
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
        // Pingora has stopped accepting and closes idle keep-alive
        // connections; a request in flight answers with `Connection:
        // close`. Exiting before a connection is closed would reset it
        // (a client may be sending on it), so wait for both; Pingora's
        // grace period bounds the wait.
        let shared = &self.gateway.shared;
        let done = || shared.in_flight() == 0 && shared.connections() == 0;
        loop {
            if done() {
                // Let the last responses leave the socket buffers.
                tokio::time::sleep(Duration::from_millis(100)).await;
                if done() {
                    tracing::info!("no request in flight; exiting");
                    // What the caches learned survives the restart.
                    super::upkeep::persist_caches(&self.gateway.current());
                    crate::upgrade::exiting();
                    crate::otel::shutdown();
                    crate::telemetry::flush_logs();
                    std::process::exit(0);
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
