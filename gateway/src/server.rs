//! `stella-gateway run`: load and check everything before binding a port,
//! then start Pingora with the proxy listeners (plain and TLS), the admin
//! listener, the background tasks of `reload` (file watcher, upstream and
//! JWKS upkeep, drain), and a task that announces readiness.

use crate::admin::Admin;
use crate::config::{self, ConfigError};
use crate::front::Front;
use crate::gateway::{Gateway, Shared, Snapshot};
use crate::proxy::Proxy;
use crate::reload::{ConfigWatcher, Drain, Signals, Upkeep};
use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
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
/// The same steps as a reload (see `reload`), so `check`, `run` and a
/// reload accept exactly the same configurations.
pub fn prepare(path: &Path) -> Result<Prepared, Vec<ConfigError>> {
    // Reloads read the same file wherever the process's folder is: the path
    // is made absolute, but its links are kept. A file that is a link into
    // a folder swapped as a whole (a Kubernetes ConfigMap or Secret volume:
    // `gateway.yaml -> ..data/gateway.yaml`, `..data -> ..<timestamp>`) is
    // read through the link each time, so a reload sees the new folder and
    // not the deleted one; relative paths in the file (policies, keys)
    // resolve against the folder the link is in. The watcher resolves links
    // to see changes on both sides (reload/watch.rs).
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let config = config::load(&path, &ProcessEnv)?;
    let tls = match &config.listeners.tls {
        Some(listener) => Some(crate::tls::material(listener)?),
        None => None,
    };
    let snapshot = Snapshot::build(config, None, Arc::new(Shared::new()))?;
    Ok(Prepared {
        snapshot,
        tls,
        path,
    })
}

/// A checked configuration, ready to serve.
pub struct Prepared {
    pub snapshot: Snapshot,
    pub tls: Option<crate::tls::TlsMaterial>,
    pub path: std::path::PathBuf,
}

/// Serves until SIGTERM / SIGINT (or SIGQUIT: a handover to a process run
/// with `upgrade`, see crate::upgrade). Returns only on a startup error.
pub fn run(path: &Path, upgrade: bool, upgrade_socket: Option<&Path>) -> i32 {
    let started = Instant::now();
    let prepared = match prepare(path) {
        Ok(ready) => ready,
        Err(errors) => {
            crate::config::report(&errors);
            return 2;
        }
    };
    let cfg = prepared.snapshot.config.clone();
    if let Err(errors) = crate::gateway::prepare_state_dirs(&cfg) {
        crate::config::report(&errors);
        return 2;
    }
    // Before Pingora binds: a port another process listens on would
    // otherwise leave this process running unbound, and the readiness
    // probe would reach the other process.
    // (With `upgrade` the running gateway holds them and hands them over.)
    let problems = if upgrade {
        Vec::new()
    } else {
        unusable_listeners(&cfg.listeners)
    };
    if !problems.is_empty() {
        for problem in problems {
            eprintln!("{problem}");
        }
        return 1;
    }
    crate::telemetry::init_logging(cfg.logging.json, &cfg.logging.level);
    // The persisted Authority documents serve from the first request on:
    // loaded before the listeners accept anything (and after logging is up,
    // so the load is reported), not only once the refresh loop runs.
    for issuer in prepared.snapshot.authn.issuers.list() {
        issuer.jwks.load_persisted();
        issuer.load_persisted_caches();
    }
    // The revocation list is in force before the first request.
    if let Some(path) = &cfg.revocation.state_file {
        let shared = &prepared.snapshot.shared;
        let file = stella_authn::revocation::StateFile::new(path);
        match shared.revocations.attach_file(file, shared.clock.now()) {
            Ok(loaded) => tracing::info!(
                file = %path.display(),
                entries = loaded.kept,
                expired = loaded.expired,
                invalid = loaded.invalid,
                "revocation list loaded"
            ),
            // Fail closed: serving without the list would let every
            // revoked identity back in. Move the file away to start empty.
            Err(e) => {
                eprintln!(
                    "gateway.revocation.state_file: {}: {e}; refusing to start without the revocation list",
                    path.display()
                );
                return 1;
            }
        }
    }
    if let Some(store) = &cfg.revocation.store {
        let connection =
            match stella_authn::redis::RedisConnection::with_tls(store.url.as_str(), &store.tls) {
                Ok(connection) => connection.with_timeout(store.timeout),
                Err(e) => {
                    crate::config::report(&[ConfigError::new(
                        "gateway.revocation.store",
                        e.to_string(),
                    )]);
                    return 2;
                }
            };
        prepared.snapshot.shared.revocations.attach_store(
            stella_authn::revocation::RevocationStore::new(connection),
            store.refresh,
            crate::revocation::Staleness {
                refuse: cfg.revocation.when_stale == crate::config::resolve::WhenStale::Refuse,
                after: cfg.revocation.stale_after,
            },
        );
        tracing::info!(
            store = ?store.url,
            when_stale = cfg.revocation.when_stale.as_str(),
            stale_after_seconds = cfg.revocation.stale_after.as_secs(),
            "revocation list shared through redis"
        );
    }
    if cfg.listeners.admin.is_some() && cfg.admin.operators.is_none() {
        tracing::warn!(
            "the admin listener takes state-changing calls (POST /reload, /revocations) without a credential: set gateway.admin.operator_token_file, and keep the listener off the public network"
        );
    }
    match crate::otel::init(&cfg.traces) {
        Ok(true) => tracing::info!(
            sampler = ?cfg.traces.sampler,
            "traces exported over otlp/http"
        ),
        Ok(false) => {}
        Err(e) => {
            crate::config::report(&[ConfigError::new("traces", e.to_string())]);
            return 2;
        }
    }
    rustls::crypto::ring::default_provider()
        .install_default()
        .ok();
    let (tls, live_tls) = match (&cfg.listeners.tls, prepared.tls) {
        (Some(listener), Some(material)) => match crate::tls::settings(listener, material) {
            Ok((settings, live)) => (Some(settings), Some(live)),
            Err(errors) => {
                crate::config::report(&errors);
                return 2;
            }
        },
        _ => (None, None),
    };
    let gateway = Arc::new(Gateway::new(prepared.snapshot, prepared.path, live_tls));

    let conf = ServerConf {
        threads: cfg.threads,
        work_stealing: cfg.work_stealing,
        // SIGTERM: listeners stop at once; requests in flight get up to the
        // grace period (`reload::Drain` exits as soon as none is left).
        grace_period_seconds: Some(cfg.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    if upgrade {
        // The running gateway serves until this process asks for its
        // sockets, so this one is warm before it takes the first request:
        // every Authority's keys fetched (or loaded from the last known
        // good, above) and upstream names resolved.
        warm_up(&gateway);
    }
    let handover = crate::upgrade::Handover::new(path, upgrade_socket);
    let conf = ServerConf {
        upgrade_sock: handover.socket.to_string_lossy().into_owned(),
        ..conf
    };
    crate::upgrade::install(handover);
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    // With `upgrade`: waits (5 s at most) for the running gateway's
    // listening sockets; exits 1 if they do not come.
    server.bootstrap();

    // One Pingora proxy behind one front per listener (gateway/src/front.rs):
    // connection limits and request-head deadlines are per listener.
    let mut proxy = pingora::proxy::http_proxy(
        &server.configuration,
        Proxy {
            gateway: gateway.clone(),
        },
    );
    crate::front::h2_settings(&mut proxy, &cfg.limits);
    let proxy = Arc::new(proxy);
    let mut announce = Vec::new();
    if let Some(addr) = cfg.listeners.http {
        let mut service = Service::new(
            "stella-gateway http".into(),
            Front::new(proxy.clone(), gateway.clone(), "http")
                .with_proxy_protocol(cfg.listeners.http_proxy.proxy_protocol),
        );
        service.add_listener(public_listener(addr));
        server.add_service(service);
        announce.push(("http", addr));
    }
    if let (Some(listener), Some(settings)) = (&cfg.listeners.tls, tls) {
        // Plain TCP to Pingora: the front runs the handshake under the
        // gateway's deadline (front/handshake.rs).
        let mut service = Service::new(
            "stella-gateway tls".into(),
            Front::new(proxy.clone(), gateway.clone(), "tls")
                .with_tls(settings)
                .with_proxy_protocol(listener.proxy.proxy_protocol),
        );
        service.add_listener(public_listener(listener.addr));
        server.add_service(service);
        announce.push(("tls", listener.addr));
    }

    // The Shared Signals receiver, on the admin listener (check refuses
    // one without it).
    let ssf = match &cfg.revocation.ssf {
        Some(config) => match crate::ssf::Receiver::build(config, gateway.shared.clock.clone()) {
            Ok(receiver) => {
                tracing::info!(
                    path = receiver.path(),
                    transmitters = config.transmitters.len(),
                    "shared signals receiver on the admin listener"
                );
                Some(Arc::new(receiver))
            }
            Err(e) => {
                crate::config::report(&[ConfigError::new("gateway.revocation.ssf", e)]);
                return 2;
            }
        },
        None => None,
    };
    if let Some(receiver) = &ssf {
        if !receiver.caches().is_empty() {
            server.add_service(background_service(
                "ssf transmitter keys",
                crate::ssf::KeyRefresh {
                    receiver: receiver.clone(),
                },
            ));
        }
    }
    if let Some(addr) = cfg.listeners.admin {
        let mut admin = Service::new(
            "stella-gateway admin".into(),
            Admin {
                gateway: gateway.clone(),
                ssf: ssf.clone(),
            },
        );
        admin.add_tcp(&addr.to_string());
        server.add_service(admin);
        announce.push(("admin", addr));
    }
    server.add_service(background_service(
        "upkeep",
        Upkeep {
            gateway: gateway.clone(),
        },
    ));
    if cfg.watch_config {
        server.add_service(background_service(
            "config watcher",
            ConfigWatcher {
                gateway: gateway.clone(),
            },
        ));
    }
    if cfg.revocation.store.is_some() {
        server.add_service(background_service(
            "revocation sync",
            crate::reload::RevocationSync {
                gateway: gateway.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "drain",
        Drain {
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
    let current = gateway.current();
    tracing::info!(
        config_version = %current.config_version,
        envelope_kid = current.signer.key().kid().as_str(),
        routes = current.policies.routes().len(),
        "starting"
    );
    drop(current);
    server.run(RunArgs {
        shutdown_signal: Box::new(Signals { gateway }),
    });
    0
}

/// The read buffer of a public listener's connections: one TLS record
/// (16 KiB). Pingora's default is 64 KiB, allocated zeroed for every
/// connection; once a request has been read, or on memory that held an
/// earlier connection, all of it is resident: 93 KiB of RSS per open
/// connection against 48 KiB with 16 KiB, for no measurable difference in
/// CPU per request (docs/sizing.md, "Memory"). Request bodies are read
/// into Pingora's own 64 KiB body buffer, and a read that large goes past
/// this one.
const L4_READ_BUFFER: usize = 16 * 1024;

/// A public listener on `addr`, with [`L4_READ_BUFFER`].
fn public_listener(addr: SocketAddr) -> pingora::listeners::ListenerConfig {
    pingora::listeners::ListenerConfig::tcp(addr.to_string())
        .l4_buffer(pingora::listeners::L4BufferSettings::default().read(L4_READ_BUFFER))
}

/// Before a handover: fetches every Authority's keys that are not loaded
/// or not fresh (each bounded by 10 s; a failure is logged and the refresh
/// loop goes on retrying) and resolves the upstream names, on a runtime of
/// its own (Pingora's start after this).
fn warm_up(gateway: &Gateway) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot warm up before the handover");
            return;
        }
    };
    let snapshot = gateway.current();
    runtime.block_on(async {
        for issuer in snapshot.authn.issuers.list() {
            if issuer.jwks.is_ready() {
                continue;
            }
            match tokio::time::timeout(Duration::from_secs(10), issuer.jwks.refresh()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(issuer = issuer.issuer(), error = %e, "keys not fetched before the handover"),
                Err(_) => tracing::warn!(issuer = issuer.issuer(), "keys not fetched before the handover: timeout"),
            }
        }
        crate::upstream::resolve_all(&snapshot.upstreams, crate::upstream::FIRST_RESOLVE_TIMEOUT).await;
    });
}

/// The listeners this process cannot bind, each as `key: address: cannot
/// listen: OS error`. Each address is bound once with `SO_REUSEADDR` (as
/// Pingora binds) and released at once: a socket listening there, or no
/// permission for the port, is found; connections in TIME_WAIT from a
/// previous run are not in the way.
fn unusable_listeners(listeners: &crate::config::resolve::Listeners) -> Vec<String> {
    let mut all = Vec::new();
    if let Some(addr) = listeners.http {
        all.push(("gateway.listeners.http", addr));
    }
    if let Some(tls) = &listeners.tls {
        all.push(("gateway.listeners.tls.addr", tls.addr));
    }
    if let Some(addr) = listeners.admin {
        all.push(("gateway.listeners.admin", addr));
    }
    all.into_iter()
        .filter_map(|(key, addr)| {
            let socket = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            };
            socket
                .and_then(|s| {
                    s.set_reuseaddr(true)?;
                    s.bind(addr)
                })
                .err()
                .map(|e| format!("{key}: {addr}: cannot listen: {e}"))
        })
        .collect()
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
        // SIGHUP must not end a process that said it is ready.
        let shared = &self.gateway.shared;
        while !shared
            .signals_installed
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let snapshot = self.gateway.current();
        let issuers = snapshot.authn.issuers.list();
        let deadline = Instant::now() + Duration::from_secs(3);
        while issuers
            .iter()
            .any(|i| i.jwks.refreshes() + i.jwks.refresh_failures() == 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Upkeep resolves upstream names first thing; wait for it briefly
        // so the first requests do not see an empty pool.
        while snapshot
            .upstreams
            .iter()
            .any(|p| p.has_names() && p.endpoints().is_empty() && p.resolve_failures() == 0)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut line = json!({
            "keys_loaded": issuers.iter().all(|i| i.jwks.is_ready()),
            "startup_ms": self.started.elapsed().as_millis() as u64,
            "config_version": snapshot.config_version,
            "pid": std::process::id(),
        });
        for (name, addr) in &self.listeners {
            line[*name] = json!(addr.to_string());
        }
        tracing::info!(ready = %line, "gateway ready");
        crate::upgrade::announce_ready();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "GATEWAY_READY {line}");
        let _ = out.flush();
    }
}
