//! The state one gateway process shares across requests: checked
//! configuration, compiled policies, upstream pools, authentication
//! (`stella_authn::Authenticator`: the Authorities' keys, the verified-token
//! cache, the replay store), the envelope signer and the metrics.

use crate::config::resolve::ReplayStoreConfig;
use crate::config::{Config, ConfigError};
use crate::signing::EnvelopeSigner;
use crate::telemetry::Metrics;
use crate::upstream::UpstreamPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use stella_authn::dpop::DpopRules;
use stella_authn::issuers::Issuers;
use stella_authn::nonce::NonceIssuer;
use stella_authn::replay::{MemoryReplayStore, RedisReplayStore, ReplayStore};
use stella_authn::{Authenticator, AuthnEvents, TokenCache};
use stella_core::{Clock, SystemClock};
use stella_jose::JwsAlg;
use stella_policy::Policies;

/// State that outlives every configuration: metrics, the clock, the
/// request id generator and the revocation list. Snapshots share it.
pub struct Shared {
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
    /// Emergency revocation: the list every snapshot checks, and its
    /// state file. A reload never changes it.
    pub revocations: crate::revocation::Revocations,
    request_prefix: String,
    request_counter: AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Client connections open on the proxy listeners.
    connections: std::sync::atomic::AtomicUsize,
    draining: std::sync::atomic::AtomicBool,
    /// Set once SIGHUP is handled (before that, SIGHUP would end the
    /// process); readiness is announced only after it.
    pub signals_installed: std::sync::atomic::AtomicBool,
}

impl Shared {
    pub fn new() -> Shared {
        Shared {
            metrics: Metrics::new(),
            clock: Arc::new(SystemClock),
            revocations: crate::revocation::Revocations::new(),
            request_prefix: crate::forward::random_hex(4),
            request_counter: AtomicU64::new(0),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            connections: std::sync::atomic::AtomicUsize::new(0),
            draining: std::sync::atomic::AtomicBool::new(false),
            signals_installed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A request's context was made (`Ctx` calls [`Shared::leave`] when it
    /// is dropped).
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Requests whose context exists (received, not yet logged).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// A client connection was accepted on a proxy listener (`front.rs`
    /// calls [`Shared::connection_closed`] when it ends).
    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Client connections open on the proxy listeners, idle ones included:
    /// a draining process exits once there are none, so it never resets a
    /// connection a client may be sending on.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }

    /// Set on SIGTERM/SIGINT/SIGQUIT: `/readyz` answers 503 from then on,
    /// and every response closes its connection.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// A request id unique to this process: a random prefix per process and
    /// a counter (no system call per request).
    pub fn next_request_id(&self) -> String {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        request_id(&self.request_prefix, n)
    }
}

/// `<prefix>-<n in lowercase hex>` (`format!("{prefix}-{n:x}")`), without
/// `fmt`: one is made for every request.
fn request_id(prefix: &str, n: u64) -> String {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
    // Exactly its length: a trace attribute takes it as it is.
    let mut id = String::with_capacity(prefix.len() + 1 + digits as usize);
    id.push_str(prefix);
    id.push('-');
    for shift in (0..digits).rev() {
        let nibble = ((n >> (shift * 4)) & 0xf) as usize;
        id.push(char::from(b"0123456789abcdef"[nibble]));
    }
    id
}

/// Authentication's events, counted in the gateway's metrics.
impl AuthnEvents for Shared {
    fn dpop_request(&self) {
        self.metrics.dpop_requests.inc();
    }

    fn dpop_proof_rejected(&self, code: &'static str) {
        self.metrics
            .dpop_proof_rejected
            .with_label_values(&[code])
            .inc();
    }

    fn dpop_nonce_miss(&self) {
        self.metrics.dpop_nonce_miss.inc();
    }

    fn mtls_mismatch(&self, reason: &'static str) {
        self.metrics
            .mtls_mismatch
            .with_label_values(&[reason])
            .inc();
    }

    fn replay_store_seconds(&self, seconds: f64) {
        self.metrics.replay_store_seconds.observe(seconds);
    }

    fn replay_share_refusal(&self) {
        self.metrics.replay_share_refusals.inc();
    }

    fn replay_store_error(&self) {
        self.metrics.replay_store_errors.inc();
    }

    fn revoked(&self, kind: stella_authn::revocation::Kind) {
        self.metrics
            .revocation_hits
            .with_label_values(&[kind.as_str()])
            .inc();
    }
}

impl Default for Shared {
    fn default() -> Self {
        Shared::new()
    }
}

/// Everything derived from one configuration, immutable once built. A
/// request holds the snapshot it started with until it ends, so nothing it
/// indexes (a service slot, a route) can move under it; a reload builds a
/// new snapshot and swaps the pointer (see `reload`).
///
/// Long-lived parts are shared with the previous snapshot when their
/// configuration is unchanged, and rebuilt (flushed) only when it changed:
/// the JWKS cache and the verified-token cache (Authority settings), the
/// replay store (its settings) and each service's upstream pool (the
/// service's settings).
pub struct Snapshot {
    pub config: Arc<Config>,
    pub policies: Policies,
    pub upstreams: Vec<Arc<UpstreamPool>>,
    by_name: HashMap<String, usize>,
    pub signer: Arc<EnvelopeSigner>,
    /// The public envelope keys as a JWKS document (`keyset`).
    pub keyset: bytes::Bytes,
    /// Authentication: every configured Authority, the verified-token
    /// cache, DPoP rules, the replay store and the nonce issuer.
    pub authn: Authenticator,
    /// The proof algorithms for DPoP challenges, as configured.
    pub dpop_algs: String,
    /// RFC 9728 documents and the challenges' `resource_metadata` urls.
    pub resource_metadata: crate::resource_metadata::ResourceMetadata,
    pub shared: Arc<Shared>,
    /// Short hash of the effective configuration and of every file it
    /// reads, shown on the admin port.
    pub config_version: String,
}

/// Creates each Authority's state folder (last-known-good documents) and
/// the revocation list's, and checks they are writable: when the gateway
/// starts and before a reload is applied, never by `check`, which only
/// looks. Errors name the key path.
pub fn prepare_state_dirs(config: &Config) -> Result<(), Vec<ConfigError>> {
    let mut errors: Vec<ConfigError> = config
        .authorities
        .iter()
        .filter_map(|a| {
            let dir = a.state_dir.as_ref()?;
            stella_authority::lkg::check_state_dir(dir)
                .err()
                .map(|message| ConfigError::new(format!("{}.state_dir", a.path), message))
        })
        .collect();
    let revocation_dir = config
        .revocation
        .state_file
        .as_deref()
        .and_then(std::path::Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty());
    if let Some(dir) = revocation_dir {
        if let Err(message) = stella_authority::lkg::check_state_dir(dir) {
            errors.push(ConfigError::new("gateway.revocation.state_file", message));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

impl Snapshot {
    /// Builds the state from a checked configuration; loads the policies.
    /// No network traffic: the Authority's keys and upstream names are
    /// fetched later. Parts of `previous` whose settings are unchanged are
    /// kept (with their cached contents).
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        shared: Arc<Shared>,
    ) -> Result<Snapshot, Vec<ConfigError>> {
        let names: Vec<String> = config.services.iter().map(|s| s.name.clone()).collect();
        let policies = match &config.policies_dir {
            Some(dir) => Policies::load_dir(dir, Some(&names))?,
            None => Policies::from_files(&[], Some(&names))?,
        };
        let issuers = Issuers::build(
            &config.authorities,
            previous.map(|p| &p.authn.issuers),
            &shared.clock,
        )?;
        // Cached verdicts hold only while every Authority is the same.
        let tokens = match previous.filter(|p| {
            p.authn.issuers.same_as(&issuers)
                && p.config.token_cache_max_entries == config.token_cache_max_entries
        }) {
            Some(p) => p.authn.tokens.clone(),
            None => Arc::new(TokenCache::new(config.token_cache_max_entries)),
        };
        // Loads each TLS service's material; keeps unchanged pools.
        let upstreams: Vec<Arc<UpstreamPool>> =
            crate::upstream::pools(&config.services, previous.map(|p| p.upstreams.as_slice()))?;
        let by_name = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i))
            .collect();
        let kept_replay = previous
            .filter(|p| p.config.dpop.replay_store == config.dpop.replay_store)
            .map(|p| p.authn.replay.clone());
        let (dpop_rules, replay, nonces) = dpop_parts(&config, &policies, kept_replay)?;
        let config_version = config_version(&config);
        let signer = Arc::new(EnvelopeSigner::from_config(&config).map_err(|e| vec![e])?);
        let events: Arc<dyn AuthnEvents> = shared.clone();
        let authn = Authenticator {
            issuers,
            tokens,
            dpop_rules,
            replay,
            nonces,
            public_origin: config.public_origin.clone(),
            allow_temporary_bypass: config.allow_temporary_bypass,
            revocations: shared.revocations.list.clone(),
            clock: shared.clock.clone(),
            events,
        };
        let dpop_algs = authn.dpop_rules.algs_challenge();
        let resource_metadata = crate::resource_metadata::ResourceMetadata::build(
            &config.protected_resources,
            &crate::resource_metadata::Known {
                issuers: config
                    .authorities
                    .iter()
                    .map(|a| a.issuer.as_str())
                    .collect(),
                services: names.iter().map(String::as_str).collect(),
                policies: &policies,
                dpop_algs: &dpop_algs,
            },
        );
        Ok(Snapshot {
            signer,
            keyset: crate::keyset::document(&config.envelope_keys),
            dpop_algs,
            resource_metadata,
            authn,
            config: Arc::new(config),
            policies,
            upstreams,
            by_name,
            shared,
            config_version,
        })
    }

    pub fn service_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }
}

/// The version of a configuration: a short SHA-256 over the effective
/// settings (secrets redacted), the secrets' own digest, and the contents of
/// every file it reads (policies, keys, TLS material). Any change that can
/// change behaviour changes it; anything else (comments, order of keys in
/// the file) does not.
pub fn config_version(config: &Config) -> String {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    d.update(crate::config::redacted_yaml(&config.effective).as_bytes());
    d.update(&config.secret_digest);
    let mut files: Vec<std::path::PathBuf> = config.sources.clone();
    if let Some(dir) = &config.policies_dir {
        if let Ok(entries) = std::fs::read_dir(dir) {
            files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    files.sort();
    for file in files {
        d.update(file.to_string_lossy().as_bytes());
        d.update(&[0]);
        match std::fs::read(&file) {
            Ok(bytes) => d.update(&bytes),
            Err(_) => d.update(b"<unreadable>"),
        }
        d.update(&[0]);
    }
    d.finish().as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What DPoP checking needs: proof rules, the replay store, the nonce issuer.
type DpopParts = (DpopRules, Arc<dyn ReplayStore>, Option<NonceIssuer>);

/// DPoP proof rules, the replay store and the nonce issuer from the
/// configuration; refuses policies that need nonces without a secret.
fn dpop_parts(
    config: &Config,
    policies: &Policies,
    kept_replay: Option<Arc<dyn ReplayStore>>,
) -> Result<DpopParts, Vec<ConfigError>> {
    let d = &config.dpop;
    let mut errors = Vec::new();
    let algs: Vec<JwsAlg> = d
        .algorithms
        .iter()
        .filter_map(|a| JwsAlg::from_header(a).ok())
        .collect();
    let rules = DpopRules::new(&algs, d.proof_max_age, d.proof_future_skew)
        .map_err(|e| errors.push(ConfigError::new("gateway.auth.dpop", e.to_string())))
        .ok();
    let replay: Option<Arc<dyn ReplayStore>> = match &d.replay_store {
        _ if kept_replay.is_some() => kept_replay,
        ReplayStoreConfig::Memory {
            max_entries,
            max_share_percent,
        } => Some(Arc::new(
            MemoryReplayStore::new(usize::try_from(*max_entries).unwrap_or(usize::MAX))
                .with_max_share_percent(*max_share_percent),
        )),
        ReplayStoreConfig::Redis { url, tls, timeout } => {
            match RedisReplayStore::with_tls(url.as_str(), tls) {
                Ok(store) => Some(Arc::new(store.with_timeout(*timeout))),
                Err(e) => {
                    errors.push(ConfigError::new(
                        "gateway.auth.dpop.replay_store",
                        e.to_string(),
                    ));
                    None
                }
            }
        }
    };
    let nonces = match &d.nonce_secret {
        Some(secret) => NonceIssuer::new(secret, d.nonce_step)
            .map_err(|e| {
                errors.push(ConfigError::new(
                    "gateway.auth.dpop.nonce_secret",
                    e.to_string(),
                ))
            })
            .ok(),
        None => None,
    };
    let wants_nonces = policies.routes().iter().any(|route| {
        let target = route.value();
        target.requires_dpop_nonce(None)
            || target
                .tenant_rules
                .iter()
                .any(|(_, rules)| rules.iter().any(|r| r.dpop_nonce))
    });
    if wants_nonces && d.nonce_secret.is_none() {
        errors.push(ConfigError::new(
            "gateway.auth.dpop.nonce_secret",
            "is required: a policy sets dpop_nonce (set nonce_secret or nonce_secret_file, the same on every node)",
        ));
    }
    match (rules, replay, errors.is_empty()) {
        (Some(rules), Some(replay), true) => Ok((rules, replay, nonces)),
        _ => Err(errors),
    }
}

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
    pub(crate) gate: tokio::sync::Mutex<()>,
    pub(crate) status: Mutex<Status>,
    /// The generation, for the tasks that follow the current snapshot.
    pub(crate) changed: tokio::sync::watch::Sender<u64>,
}

impl ReloadState {
    pub fn new(_first: &Snapshot) -> ReloadState {
        ReloadState {
            gate: tokio::sync::Mutex::new(()),
            status: Mutex::new(Status {
                applied_at: stella_core::unix_now(),
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

/// The running gateway: the current snapshot behind an atomic pointer, and
/// what outlives every snapshot. Requests take the current snapshot once
/// ([`Gateway::current`]) and keep it; `reload` swaps it.
pub struct Gateway {
    pub shared: Arc<Shared>,
    current: arc_swap::ArcSwap<Snapshot>,
    /// The configuration file `run` was started with; reloads read it again.
    pub config_path: std::path::PathBuf,
    /// The TLS listener's live material, when there is a TLS listener.
    pub tls: Option<Arc<crate::tls::LiveTls>>,
    pub(crate) reload: ReloadState,
}

impl Gateway {
    pub fn new(
        snapshot: Snapshot,
        config_path: std::path::PathBuf,
        tls: Option<Arc<crate::tls::LiveTls>>,
    ) -> Gateway {
        Gateway {
            shared: snapshot.shared.clone(),
            reload: ReloadState::new(&snapshot),
            current: arc_swap::ArcSwap::from_pointee(snapshot),
            config_path,
            tls,
        }
    }

    /// The snapshot a new request runs with.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub(crate) fn swap(&self, snapshot: Arc<Snapshot>) {
        self.current.store(snapshot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn request_ids_are_the_prefix_and_the_counter_in_lowercase_hex() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            0xabc_def,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(request_id("3f2a9c1e", n), format!("3f2a9c1e-{n:x}"));
        }
    }

    fn config(extra_audience: &str, upstream: &str) -> Config {
        let text = format!(
            "gateway:\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    authority:\n      \
             issuer: https://authority.example\n      audiences: [api{extra_audience}]\n\
             router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n\
             services:\n  - {{name: orders, upstreams: [\"{upstream}\"]}}\n  - {{name: billing, upstreams: [\"127.0.0.1:9\"]}}\n"
        );
        let (file, errors) = crate::config::parse(&text, "test.yaml", &HashMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        crate::config::resolve::resolve(&file.unwrap(), std::path::Path::new("."), &HashMap::new())
            .unwrap()
    }

    #[test]
    fn a_reload_keeps_caches_and_pools_whose_settings_did_not_change() {
        let shared = Arc::new(Shared::new());
        let first = Snapshot::build(config("", "127.0.0.1:1"), None, shared.clone()).unwrap();
        // Same Authority, one service's upstreams changed.
        let second =
            Snapshot::build(config("", "127.0.0.1:2"), Some(&first), shared.clone()).unwrap();
        assert!(
            Arc::ptr_eq(
                &first.authn.issuers.first().jwks,
                &second.authn.issuers.first().jwks
            ),
            "jwks cache flushed"
        );
        assert!(
            Arc::ptr_eq(&first.authn.tokens, &second.authn.tokens),
            "token cache flushed"
        );
        assert!(
            Arc::ptr_eq(&first.authn.replay, &second.authn.replay),
            "replay store replaced"
        );
        assert!(
            !Arc::ptr_eq(&first.upstreams[0], &second.upstreams[0]),
            "changed pool kept"
        );
        assert!(
            Arc::ptr_eq(&first.upstreams[1], &second.upstreams[1]),
            "unchanged pool rebuilt"
        );
        assert_ne!(first.config_version, second.config_version);

        // Other token rules: verdicts cached under the old rules go.
        let third =
            Snapshot::build(config(", other", "127.0.0.1:2"), Some(&second), shared).unwrap();
        assert!(
            !Arc::ptr_eq(&second.authn.tokens, &third.authn.tokens),
            "token cache kept across new rules"
        );
        assert!(!Arc::ptr_eq(
            &second.authn.issuers.first().jwks,
            &third.authn.issuers.first().jwks
        ));
        assert!(Arc::ptr_eq(&second.upstreams[0], &third.upstreams[0]));
    }

    #[test]
    fn the_same_configuration_has_the_same_version() {
        assert_eq!(
            config_version(&config("", "127.0.0.1:1")),
            config_version(&config("", "127.0.0.1:1"))
        );
        assert_ne!(
            config_version(&config("", "127.0.0.1:1")),
            config_version(&config("", "127.0.0.1:3"))
        );
    }
}
