//! Upstreams as data. A service's configured `host:port` targets become a
//! pool of resolved endpoints, each with a prebuilt Pingora peer and its
//! health. Names are resolved off the request path (at build time and then
//! every `resolve_interval` by a background task), and the last good
//! addresses are kept when a lookup fails. The request path only picks:
//! round robin over healthy endpoints, skipping the ones a request already
//! tried, so a connect failure is retried on another address.
//!
//! Health is passive (consecutive connect failures eject an endpoint for a
//! while) and optionally active (a GET of a configured path).
//!
//! A service with `tls` gets peers that speak TLS with its material
//! ([`tls`]), and its health checks go through the same peers, so they
//! check the handshake too.
//!
//! A pool lives as long as its service's configuration is unchanged: a
//! reload that keeps the service and its TLS files' contents keeps the
//! pool, its addresses and health.

pub mod tls;

use crate::config::resolve::Service;
use crate::config::ConfigError;
use arc_swap::ArcSwap;
use pingora::upstreams::peer::HttpPeer;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tls::UpstreamTls;

/// One resolved address of a service.
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `addr`'s IP as text, made once (the upstream span's
    /// `server.address`).
    pub ip_text: std::sync::Arc<str>,
    /// Index of the configured target this address came from.
    target: usize,
    /// Built once; the request path clones it.
    pub peer: HttpPeer,
    consecutive_failures: AtomicU32,
    /// Milliseconds since the Unix epoch until which the endpoint is out
    /// of rotation (0: in rotation).
    ejected_until_ms: AtomicU64,
    /// Set by the active health check.
    down: AtomicBool,
}

impl Endpoint {
    fn new(
        addr: SocketAddr,
        target: usize,
        host: &str,
        service: &Service,
        tls: Option<&UpstreamTls>,
    ) -> Endpoint {
        let mut peer = match tls {
            Some(tls) => tls.peer(addr, host),
            None => HttpPeer::new(addr, false, String::new()),
        };
        // Bounds the TCP connect and, over TLS, the handshake as well.
        peer.options.connection_timeout = Some(service.connect_timeout);
        peer.options.read_timeout = Some(service.read_timeout);
        Endpoint {
            addr,
            ip_text: addr.ip().to_string().into(),
            target,
            peer,
            consecutive_failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            down: AtomicBool::new(false),
        }
    }

    fn available(&self, now_ms: u64) -> bool {
        !self.down.load(Ordering::Relaxed)
            && self.ejected_until_ms.load(Ordering::Relaxed) <= now_ms
    }
}

/// A configured target: a host name or an IP literal, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    /// An IP literal needs no resolution.
    ip: Option<IpAddr>,
}

fn parse_target(text: &str) -> Option<Target> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some(Target {
        host: host.to_owned(),
        port,
        ip: host.parse().ok(),
    })
}

/// The endpoints of one service.
pub struct UpstreamPool {
    pub service: Service,
    /// The service's name as trace attributes take it: shared, not copied
    /// per request.
    pub trace_name: Arc<str>,
    /// The service's TLS material, shared by its peers.
    tls: Option<Arc<UpstreamTls>>,
    targets: Vec<Target>,
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    next: AtomicUsize,
    /// Milliseconds since the epoch of the last active check.
    last_check_ms: AtomicU64,
    resolve_failures: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a lookup of the pool found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ResolveReport {
    /// Targets whose lookup failed this time (their last good addresses,
    /// if any, were kept).
    pub failed: Vec<String>,
    pub endpoints: usize,
}

/// The pools of `services`, as a snapshot is built: the TLS material of
/// each TLS service is loaded and checked (every problem reported with its
/// key path), and a pool of `previous` is kept when its service's settings
/// and TLS material are both unchanged.
pub fn pools(
    services: &[Service],
    previous: Option<&[Arc<UpstreamPool>]>,
) -> Result<Vec<Arc<UpstreamPool>>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut pools = Vec::with_capacity(services.len());
    for (i, service) in services.iter().enumerate() {
        let tls = match service.tls.as_ref().map(|t| tls::load(i, t)).transpose() {
            Ok(tls) => tls,
            Err(mut e) => {
                errors.append(&mut e);
                continue;
            }
        };
        let kept = previous.into_iter().flatten().find(|p| {
            p.service == *service
                && match (&p.tls, &tls) {
                    (Some(a), Some(b)) => a.same_as(b),
                    (None, None) => true,
                    _ => false,
                }
        });
        pools.push(match kept {
            Some(pool) => pool.clone(),
            None => Arc::new(UpstreamPool::new(service, tls.map(Arc::new))),
        });
    }
    if errors.is_empty() {
        Ok(pools)
    } else {
        Err(errors)
    }
}

impl UpstreamPool {
    /// A pool for `service` (with its loaded TLS material when it has
    /// `tls`); IP literals are usable at once, host names after the first
    /// [`resolve`](Self::resolve).
    pub fn new(service: &Service, tls: Option<Arc<UpstreamTls>>) -> UpstreamPool {
        // `config` checked every upstream as host:port.
        let targets: Vec<Target> = service
            .upstreams
            .iter()
            .filter_map(|u| parse_target(u))
            .collect();
        let endpoints = targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let addr = SocketAddr::new(t.ip?, t.port);
                Some(Arc::new(Endpoint::new(
                    addr,
                    i,
                    &t.host,
                    service,
                    tls.as_deref(),
                )))
            })
            .collect();
        UpstreamPool {
            service: service.clone(),
            trace_name: service.name.as_str().into(),
            tls,
            targets,
            endpoints: ArcSwap::from_pointee(endpoints),
            next: AtomicUsize::new(0),
            last_check_ms: AtomicU64::new(0),
            resolve_failures: AtomicU64::new(0),
        }
    }

    /// Whether some target is a host name (needs periodic resolution).
    pub fn has_names(&self) -> bool {
        self.targets.iter().any(|t| t.ip.is_none())
    }

    pub fn endpoints(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    pub fn resolve_failures(&self) -> u64 {
        self.resolve_failures.load(Ordering::Relaxed)
    }

    /// Looks every host name up again (each lookup bounded by `timeout`).
    /// Addresses that stay keep their endpoint and its health; a target
    /// whose lookup fails keeps its previous addresses.
    pub async fn resolve(&self, timeout: Duration) -> ResolveReport {
        let mut report = ResolveReport::default();
        if !self.has_names() {
            report.endpoints = self.endpoints.load().len();
            return report;
        }
        let current = self.endpoints.load_full();
        let mut next: Vec<Arc<Endpoint>> = Vec::new();
        for (i, target) in self.targets.iter().enumerate() {
            let found: Option<Vec<SocketAddr>> = match target.ip {
                Some(ip) => Some(vec![SocketAddr::new(ip, target.port)]),
                None => {
                    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
                    match tokio::time::timeout(timeout, lookup).await {
                        Ok(Ok(addrs)) => {
                            let mut addrs: Vec<SocketAddr> = addrs.collect();
                            addrs.sort();
                            addrs.dedup();
                            Some(addrs).filter(|a| !a.is_empty())
                        }
                        _ => None,
                    }
                }
            };
            match found {
                Some(addrs) => {
                    for addr in addrs {
                        let kept = current.iter().find(|e| e.target == i && e.addr == addr);
                        next.push(match kept {
                            Some(e) => e.clone(),
                            None => Arc::new(Endpoint::new(
                                addr,
                                i,
                                &target.host,
                                &self.service,
                                self.tls.as_deref(),
                            )),
                        });
                    }
                }
                None => {
                    report
                        .failed
                        .push(format!("{}:{}", target.host, target.port));
                    self.resolve_failures.fetch_add(1, Ordering::Relaxed);
                    next.extend(current.iter().filter(|e| e.target == i).cloned());
                }
            }
        }
        report.endpoints = next.len();
        let changed = next.len() != current.len()
            || next
                .iter()
                .zip(current.iter())
                .any(|(a, b)| !Arc::ptr_eq(a, b));
        if changed {
            self.endpoints.store(Arc::new(next));
        }
        report
    }

    /// The next endpoint in rotation that `tried` does not contain. Ejected
    /// or unhealthy endpoints are skipped while others are available; when
    /// none is, any untried endpoint is better than no answer.
    pub fn select(&self, tried: &[SocketAddr]) -> Option<Arc<Endpoint>> {
        let endpoints = self.endpoints.load();
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let mut fallback = None;
        for k in 0..n {
            let e = &endpoints[(start + k) % n];
            if tried.contains(&e.addr) {
                continue;
            }
            if e.available(now) {
                return Some(e.clone());
            }
            if fallback.is_none() {
                fallback = Some(e.clone());
            }
        }
        fallback
    }

    /// Whether an endpoint not in `tried` is left to try.
    pub fn untried_left(&self, tried: &[SocketAddr]) -> bool {
        self.endpoints
            .load()
            .iter()
            .any(|e| !tried.contains(&e.addr))
    }

    /// A connect attempt to `addr` failed.
    pub fn report_failure(&self, addr: SocketAddr) {
        if let Some(e) = self.endpoints.load().iter().find(|e| e.addr == addr) {
            let failures = e.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
            if failures >= self.service.eject_after_failures {
                let until = now_ms().saturating_add(self.service.eject.as_millis() as u64);
                e.ejected_until_ms.store(until, Ordering::Relaxed);
            }
        }
    }

    /// A connection to `addr` was made.
    pub fn report_success(&self, addr: SocketAddr) {
        if let Some(e) = self.endpoints.load().iter().find(|e| e.addr == addr) {
            if e.consecutive_failures.load(Ordering::Relaxed) != 0 {
                e.consecutive_failures.store(0, Ordering::Relaxed);
                e.ejected_until_ms.store(0, Ordering::Relaxed);
            }
        }
    }

    /// Endpoints in rotation now.
    pub fn available(&self) -> usize {
        let now = now_ms();
        self.endpoints
            .load()
            .iter()
            .filter(|e| e.available(now))
            .count()
    }

    /// Runs the active health check when its interval has passed.
    pub async fn check_health_if_due(&self) {
        let Some(check) = &self.service.health_check else {
            return;
        };
        let now = now_ms();
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < check.interval.as_millis() as u64 {
            return;
        }
        self.last_check_ms.store(now, Ordering::Relaxed);
        let endpoints = self.endpoints.load_full();
        for e in endpoints.iter() {
            // Over TLS the Host is the name the certificate holds.
            let host = match (&self.tls, self.targets.get(e.target)) {
                (Some(tls), Some(t)) => tls.server_name(&t.host).to_owned(),
                _ => e.addr.to_string(),
            };
            let healthy = probe(&e.peer, &host, &check.path, check.timeout).await;
            if healthy {
                // A passing check also ends a passive ejection.
                e.consecutive_failures.store(0, Ordering::Relaxed);
                e.ejected_until_ms.store(0, Ordering::Relaxed);
            }
            let was_down = e.down.swap(!healthy, Ordering::Relaxed);
            if was_down == healthy {
                tracing::info!(
                    service = %self.service.name,
                    addr = %e.addr,
                    healthy,
                    "upstream health changed"
                );
            }
        }
    }
}

/// The connector of the active health checks: Pingora's, as the proxy
/// uses, so a check connects exactly as a request would (TLS, roots, name,
/// client certificate, ALPN all come from the endpoint's peer). Sessions
/// are never handed back, so each check of an HTTP/1.1 service opens a new
/// connection (and does a new handshake).
fn health_connector() -> &'static pingora::connectors::http::Connector {
    static CONNECTOR: std::sync::OnceLock<pingora::connectors::http::Connector> =
        std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| pingora::connectors::http::Connector::new(None))
}

/// One active health check: GET `path` from the endpoint's peer; healthy
/// on a 2xx or 3xx within `timeout`.
async fn probe(peer: &HttpPeer, host: &str, path: &str, timeout: Duration) -> bool {
    let attempt = async {
        let (mut session, _) = health_connector().get_http_session(peer).await.ok()?;
        let mut request = pingora::http::RequestHeader::build("GET", path.as_bytes(), None).ok()?;
        request.insert_header("host", host).ok()?;
        request
            .insert_header("user-agent", "stella-gateway-health-check")
            .ok()?;
        session.write_request_header(Box::new(request)).await.ok()?;
        session.finish_request_body().await.ok()?;
        session.read_response_header().await.ok()?;
        let status = session.response_header()?.status;
        Some(status.is_success() || status.is_redirection())
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// How long a reload or start waits for a new pool's first lookup.
pub const FIRST_RESOLVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Resolves every pool in `pools` that has names, at most `timeout` each.
pub async fn resolve_all(pools: &[Arc<UpstreamPool>], timeout: Duration) {
    let started = Instant::now();
    for pool in pools.iter().filter(|p| p.has_names()) {
        let report = pool.resolve(timeout).await;
        if !report.failed.is_empty() {
            tracing::warn!(
                service = %pool.service.name,
                failed = ?report.failed,
                endpoints = report.endpoints,
                "upstream names did not resolve; keeping the last good addresses"
            );
        }
    }
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "upstreams resolved"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(upstreams: &[&str]) -> Service {
        Service {
            name: "svc".into(),
            upstreams: upstreams.iter().map(|s| s.to_string()).collect(),
            connect_timeout: Duration::from_millis(100),
            read_timeout: Duration::from_millis(100),
            forward_credentials: false,
            trust_mode: None,
            eject_after_failures: 2,
            eject: Duration::from_secs(10),
            health_check: None,
            openapi: None,
            envelope_kid: None,
            identity_format: Default::default(),
            tls: None,
        }
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn ip_literals_are_usable_without_resolution_and_rotate() {
        let pool = UpstreamPool::new(&service(&["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"]), None);
        assert!(!pool.has_names());
        let picks: Vec<SocketAddr> = (0..6).map(|_| pool.select(&[]).unwrap().addr).collect();
        for a in ["127.0.0.1:1", "127.0.0.1:2", "[::1]:3"] {
            assert_eq!(picks.iter().filter(|p| **p == addr(a)).count(), 2, "{a}");
        }
    }

    #[test]
    fn a_request_never_gets_an_address_it_already_tried() {
        let pool = UpstreamPool::new(&service(&["127.0.0.1:1", "127.0.0.1:2"]), None);
        for _ in 0..4 {
            assert_eq!(
                pool.select(&[addr("127.0.0.1:1")]).unwrap().addr,
                addr("127.0.0.1:2")
            );
        }
        assert!(pool
            .select(&[addr("127.0.0.1:1"), addr("127.0.0.1:2")])
            .is_none());
        assert!(pool.untried_left(&[addr("127.0.0.1:1")]));
        assert!(!pool.untried_left(&[addr("127.0.0.1:1"), addr("127.0.0.1:2")]));
    }

    #[test]
    fn consecutive_connect_failures_eject_an_address_and_success_restores_it() {
        let pool = UpstreamPool::new(&service(&["127.0.0.1:1", "127.0.0.1:2"]), None);
        pool.report_failure(addr("127.0.0.1:1"));
        assert_eq!(pool.available(), 2, "one failure is not enough");
        pool.report_failure(addr("127.0.0.1:1"));
        assert_eq!(pool.available(), 1);
        for _ in 0..4 {
            assert_eq!(pool.select(&[]).unwrap().addr, addr("127.0.0.1:2"));
        }
        // With every other address tried, an ejected one is still offered.
        assert_eq!(
            pool.select(&[addr("127.0.0.1:2")]).unwrap().addr,
            addr("127.0.0.1:1")
        );
        pool.report_success(addr("127.0.0.1:1"));
        assert_eq!(pool.available(), 2);
    }

    #[tokio::test]
    async fn localhost_resolves_and_an_unresolvable_name_leaves_the_pool_empty() {
        let pool = UpstreamPool::new(&service(&["localhost:9"]), None);
        assert!(pool.has_names());
        assert!(
            pool.select(&[]).is_none(),
            "nothing before the first lookup"
        );
        let report = pool.resolve(Duration::from_secs(5)).await;
        assert!(report.failed.is_empty(), "{report:?}");
        let picked = pool.select(&[]).unwrap().addr;
        assert!(picked.ip().is_loopback() && picked.port() == 9, "{picked}");

        let pool = UpstreamPool::new(&service(&["no-such-host.invalid:80"]), None);
        let report = pool.resolve(Duration::from_secs(5)).await;
        assert_eq!(report.failed, vec!["no-such-host.invalid:80".to_string()]);
        assert!(pool.select(&[]).is_none());
        assert_eq!(pool.resolve_failures(), 1);
    }

    #[tokio::test]
    async fn a_failed_lookup_keeps_the_last_good_addresses_and_their_health() {
        let pool = UpstreamPool::new(&service(&["localhost:9"]), None);
        pool.resolve(Duration::from_secs(5)).await;
        let before = pool.endpoints();
        assert!(!before.is_empty());
        // Same answer again: the same endpoint objects (health kept).
        pool.resolve(Duration::from_secs(5)).await;
        let after = pool.endpoints();
        assert!(Arc::ptr_eq(&before[0], &after[0]));
    }

    #[tokio::test]
    async fn active_check_takes_an_address_without_a_listener_out_of_rotation() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                });
            }
        });
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut svc = service(&[&live.to_string(), &dead.to_string()]);
        svc.health_check = Some(crate::config::resolve::HealthCheck {
            path: "/healthz".into(),
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
        });
        let pool = UpstreamPool::new(&svc, None);
        pool.check_health_if_due().await;
        assert_eq!(pool.available(), 1);
        for _ in 0..4 {
            assert_eq!(pool.select(&[]).unwrap().addr, live);
        }
    }
}
