//! `stella-gateway run`: load and check everything before binding a port,
//! then start Pingora with the proxy listeners (plain and TLS), the admin
//! listener, the JWKS refresh loop, and a task that announces readiness.

use crate::admin::Admin;
use crate::config::{self, ConfigError};
use crate::gateway::Gateway;
use crate::proxy::Proxy;
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;
use serde_json::json;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stella_envelope::config::ProcessEnv;

/// Everything `run` needs, checked: the exit code is 2 for any error here.
pub fn prepare(
    path: &Path,
) -> Result<(Arc<Gateway>, Option<pingora::listeners::tls::TlsSettings>), Vec<ConfigError>> {
    let config = config::load(path, &ProcessEnv)?;
    let tls = match &config.listeners.tls {
        Some(listener) => Some(crate::tls::settings(listener)?),
        None => None,
    };
    let gateway = Gateway::new(config)?;
    Ok((Arc::new(gateway), tls))
}

/// Serves until SIGTERM / SIGINT. Returns only on a startup error.
pub fn run(path: &Path) -> i32 {
    let started = Instant::now();
    let (gateway, tls) = match prepare(path) {
        Ok(ready) => ready,
        Err(errors) => {
            crate::cli::report(&errors);
            return 2;
        }
    };
    let cfg = gateway.config.clone();
    crate::telemetry::init_logging(cfg.logging.json, &cfg.logging.level);
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();

    let conf = ServerConf {
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(5),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Proxy {
            gateway: gateway.clone(),
        },
        "stella-gateway",
    );
    let mut announce = Vec::new();
    if let Some(addr) = cfg.listeners.http {
        proxy.add_tcp(&addr.to_string());
        announce.push(("http", addr));
    }
    if let (Some(listener), Some(settings)) = (&cfg.listeners.tls, tls) {
        proxy.add_tls_with_settings(&listener.addr.to_string(), None, settings);
        announce.push(("tls", listener.addr));
    }
    server.add_service(proxy);

    if let Some(addr) = cfg.listeners.admin {
        let mut admin = Service::new(
            "stella-gateway admin".into(),
            Admin {
                gateway: gateway.clone(),
            },
        );
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
        announce.push(("admin", addr));
    }
    server.add_service(background_service(
        "jwks refresh",
        JwksRefresh {
            gateway: gateway.clone(),
        },
    ));
    server.add_service(background_service(
        "ready announcement",
        Announce {
            gateway: gateway.clone(),
            listeners: announce,
            started,
        },
    ));
    tracing::info!(
        config_version = %gateway.config_version,
        envelope_kid = gateway.signer.key().kid().as_str(),
        routes = gateway.policies.routes().len(),
        "starting"
    );
    server.run_forever()
}

struct JwksRefresh {
    gateway: Arc<Gateway>,
}

#[async_trait]
impl BackgroundService for JwksRefresh {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let jwks = self.gateway.jwks.clone();
        tokio::select! {
            _ = jwks.run_refresh_loop() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Prints `GATEWAY_READY {json}` on stdout once every listener accepts
/// connections and the first JWKS fetch has been tried (or 3 s passed).
struct Announce {
    gateway: Arc<Gateway>,
    listeners: Vec<(&'static str, SocketAddr)>,
    started: Instant,
}

#[async_trait]
impl BackgroundService for Announce {
    async fn start(&self, _shutdown: ShutdownWatch) {
        for (_, addr) in &self.listeners {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let jwks = &self.gateway.jwks;
        let deadline = Instant::now() + Duration::from_secs(3);
        while jwks.refreshes() + jwks.refresh_failures() == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut line = json!({
            "keys_loaded": jwks.is_ready(),
            "startup_ms": self.started.elapsed().as_millis() as u64,
            "config_version": self.gateway.config_version,
        });
        for (name, addr) in &self.listeners {
            line[*name] = json!(addr.to_string());
        }
        tracing::info!(ready = %line, "gateway ready");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "GATEWAY_READY {line}");
        let _ = out.flush();
    }
}
