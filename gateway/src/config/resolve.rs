//! Conversion of the file structs into checked internal values. Everything
//! that can be wrong with a configuration is found here, all at once, and
//! reported with its key path; the rest of the gateway never sees an
//! unchecked value.

use super::file::*;
use super::ConfigError;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use stella_envelope::config::EnvSource;
use stella_envelope::{Alg, Key, KeyId, Signer, TrustMode};

/// Access-token and proof algorithms the gateway can ever accept.
pub const SUPPORTED_ALGORITHMS: &[&str] = &["ES256", "ES384", "EdDSA", "PS256", "RS256"];

pub use stella_policy::MissingAuthorization;

/// Client certificate handling on the TLS listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCertMode {
    None,
    Optional,
    Required,
}

impl ClientCertMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCertMode::None => "none",
            ClientCertMode::Optional => "optional",
            ClientCertMode::Required => "required",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsListener {
    pub addr: SocketAddr,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_certificates: ClientCertMode,
    pub client_ca_file: Option<PathBuf>,
    /// (trust domain, CA file) pairs.
    pub spiffe_roots: Vec<(String, PathBuf)>,
    pub http2: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    pub http: Option<SocketAddr>,
    pub tls: Option<TlsListener>,
    pub admin: Option<SocketAddr>,
}

pub use stella_authority::settings::{
    AuthorityConfig, ClaimsConfig, ClientCredentials, IntrospectionConfig, Secret,
};

/// Where DPoP proof identifiers are remembered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayStoreConfig {
    /// In this process (one gateway node); one proof key may hold at most
    /// `max_share_percent` of `max_entries`.
    Memory {
        max_entries: u64,
        max_share_percent: u8,
    },
    /// A redis server shared by every node (`SET NX PX`); the URL may carry
    /// a password, and `Debug` never shows it.
    Redis {
        url: RedisUrl,
        tls: stella_authn::replay::RedisTls,
        timeout: Duration,
    },
}

/// A checked Redis URL (it parsed as the replay store accepts it).
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_redis_url(&self.0))
    }
}

/// `scheme://<redacted>@hosts/path` when the URL has credentials.
pub fn redact_redis_url(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, hosts))) => format!("{scheme}://<redacted>@{hosts}"),
        _ => url.to_owned(),
    }
}

/// Reports a replay store URL or TLS material the store would refuse,
/// under the key that holds it; the URL itself is never echoed.
fn check_redis_store(e: &mut Errors, url: &str, tls: &stella_authn::replay::RedisTls) {
    use stella_authn::replay::{RedisReplayStore, RedisTls};
    if let Err(why) = RedisReplayStore::check(url, &RedisTls::default()) {
        e.add(
            "gateway.auth.dpop.replay_store",
            format!("must be memory or a redis url: {why}"),
        );
        return;
    }
    let ca = RedisTls {
        ca_pem: tls.ca_pem.clone(),
        ..RedisTls::default()
    };
    let client = RedisTls {
        client_cert_pem: tls.client_cert_pem.clone(),
        client_key_pem: tls.client_key_pem.clone(),
        ..RedisTls::default()
    };
    for (key, part) in [
        ("replay_store_ca_file", ca),
        ("replay_store_client_cert_file", client),
    ] {
        if part == RedisTls::default() {
            continue;
        }
        if let Err(why) = RedisReplayStore::check(url, &part) {
            e.add(&format!("gateway.auth.dpop.{key}"), why.to_string());
        }
    }
}

/// DPoP (RFC 9449) settings.
#[derive(Clone, Debug)]
pub struct DpopConfig {
    pub proof_max_age: Duration,
    pub proof_future_skew: Duration,
    pub algorithms: Vec<String>,
    pub replay_store: ReplayStoreConfig,
    /// Secret for stateless nonces; `None` when no route requires nonces.
    pub nonce_secret: Option<zeroize::Zeroizing<Vec<u8>>>,
    pub nonce_step: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// `host:port` addresses, used round-robin.
    pub upstreams: Vec<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub forward_credentials: bool,
    pub trust_mode: Option<TrustMode>,
    pub eject_after_failures: u32,
    pub eject: Duration,
    pub health_check: Option<HealthCheck>,
    /// The service's own OpenAPI document, for `stella-gateway openapi`.
    pub openapi: Option<OpenApiSource>,
}

/// Where a service publishes its OpenAPI document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenApiSource {
    File(PathBuf),
    Url(String),
}

/// Where an envelope key came from (`keys list`; never the key itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    Inline,
    File(PathBuf),
    Env(String),
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Inline => "inline".into(),
            KeySource::File(path) => format!("file {}", path.display()),
            KeySource::Env(name) => format!("env {name}"),
        }
    }
}

/// The text of an envelope key, in a form `Key::parse_compat` reads;
/// zeroed when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvelopeKeyText {
    pub kid: KeyId,
    text: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for EnvelopeKeyText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKeyText")
            .field("kid", &self.kid)
            .field("text", &"<redacted>")
            .finish()
    }
}

impl EnvelopeKeyText {
    /// The key as configured: for building the signer, never for printing.
    pub(crate) fn expose(&self) -> &str {
        &self.text
    }
}

/// One key of the gateway's envelope keyring, without its material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeKeyInfo {
    pub kid: String,
    pub alg: Alg,
    pub source: KeySource,
}

/// Which traces are recorded (the `OTEL_TRACES_SAMPLER` names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    TraceIdRatio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedTraceIdRatio(f64),
}

/// OpenTelemetry traces (`traces`); read once at start.
#[derive(Clone, Debug, PartialEq)]
pub struct Traces {
    pub enabled: bool,
    /// OTLP/HTTP base url (`/v1/traces` is appended); the exporter's
    /// default (`http://localhost:4318`) when unset.
    pub endpoint: Option<String>,
    pub service_name: String,
    pub sampler: TraceSampler,
    pub max_queue_size: usize,
    pub export_timeout: Duration,
}

fn resolve_traces(e: &mut Errors, file: &TracesSection, effective: &mut TracesSection) -> Traces {
    let endpoint = file
        .endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if let Some(url) = endpoint {
        let ok = url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if !ok {
            e.add("traces.endpoint", "must be an http(s) url");
        }
    }
    let arg = file.sampler_arg.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&arg) {
        e.add("traces.sampler_arg", "must be between 0 and 1");
    }
    let sampler = match file.sampler.as_deref().map(str::trim) {
        None | Some("parentbased_always_on") => TraceSampler::ParentBasedAlwaysOn,
        Some("always_on") => TraceSampler::AlwaysOn,
        Some("always_off") => TraceSampler::AlwaysOff,
        Some("traceidratio") => TraceSampler::TraceIdRatio(arg),
        Some("parentbased_always_off") => TraceSampler::ParentBasedAlwaysOff,
        Some("parentbased_traceidratio") => TraceSampler::ParentBasedTraceIdRatio(arg),
        Some(_) => {
            e.add(
                "traces.sampler",
                "must be always_on, always_off, traceidratio, parentbased_always_on, \
                 parentbased_always_off or parentbased_traceidratio",
            );
            TraceSampler::ParentBasedAlwaysOn
        }
    };
    let traces = Traces {
        enabled: file.enabled.unwrap_or(false),
        endpoint: endpoint.map(str::to_owned),
        service_name: file
            .service_name
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("stella-gateway")
            .to_owned(),
        sampler,
        max_queue_size: seconds(
            e,
            "traces.max_queue_size",
            file.max_queue_size,
            2_048,
            (1, 1_000_000),
        ) as usize,
        export_timeout: Duration::from_millis(seconds(
            e,
            "traces.export_timeout_ms",
            file.export_timeout_ms,
            10_000,
            (100, 60_000),
        )),
    };
    effective.enabled = Some(traces.enabled);
    effective.service_name = Some(traces.service_name.clone());
    effective.sampler = Some(
        file.sampler
            .clone()
            .unwrap_or_else(|| "parentbased_always_on".into()),
    );
    effective.max_queue_size = Some(traces.max_queue_size as u64);
    effective.export_timeout_ms = Some(traces.export_timeout.as_millis() as u64);
    traces
}

#[derive(Clone, Debug)]
pub struct Logging {
    pub json: bool,
    pub level: String,
}

/// The checked configuration.
#[derive(Debug)]
pub struct Config {
    pub gateway_id: String,
    /// `scheme://host[:port]` in lowercase without a default port.
    pub public_origin: Option<String>,
    pub listeners: Listeners,
    /// At least one; a token's `iss` selects exactly one (issuers are
    /// unique). The first is `gateway.auth.authority` when it is set.
    pub authorities: Vec<AuthorityConfig>,
    pub token_cache_max_entries: u64,
    pub dpop: DpopConfig,
    /// The audited emergency bypass (DESIGN.md 1): off unless configured.
    pub allow_temporary_bypass: bool,
    pub policies_dir: Option<PathBuf>,
    pub threads: usize,
    pub work_stealing: bool,
    pub on_missing_authorization: MissingAuthorization,
    /// The keyring's active key, as configured (data: the signer is built
    /// from it with the snapshot, `EnvelopeSigner::from_config`).
    pub envelope_key: EnvelopeKeyText,
    /// Every key of the keyring (the active one included).
    pub envelope_keys: Vec<EnvelopeKeyInfo>,
    pub envelope_lifetime: Duration,
    pub shutdown_grace: Duration,
    pub watch_config: bool,
    pub resolve_interval: Duration,
    pub limits: Limits,
    /// Files read besides the configuration file itself (keys, TLS
    /// material, secrets); the policies folder is `policies_dir`.
    pub sources: Vec<PathBuf>,
    /// SHA-256 over every secret value, for the configuration version.
    pub secret_digest: [u8; 32],
    pub services: Vec<Service>,
    pub logging: Logging,
    pub traces: Traces,
    /// The file structs with every default filled in, for `check` to print
    /// (through `redacted_yaml`).
    pub effective: FileConfig,
}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: &str, problem: impl Into<String>) {
        self.0.push(ConfigError::new(path, problem));
    }
}

fn socket_addr(errors: &mut Errors, path: &str, text: &Option<String>) -> Option<SocketAddr> {
    let text = text.as_deref()?;
    match text.trim().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.add(path, "must be an ip:port address such as 127.0.0.1:8080");
            None
        }
    }
}

fn existing_file(
    errors: &mut Errors,
    path: &str,
    base: &Path,
    text: &Option<String>,
) -> Option<PathBuf> {
    let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else {
        errors.add(path, "is required");
        return None;
    };
    let file = base.join(text.trim());
    if !file.is_file() {
        errors.add(path, format!("file {} does not exist", file.display()));
        return None;
    }
    Some(file)
}

/// Limits on one client connection (gateway/src/front.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub request_head_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_header_bytes: usize,
    pub max_request_headers: usize,
    /// Per listener.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_request_header_bytes: 65_536,
            max_request_headers: 100,
            max_connections: 10_000,
        }
    }
}

fn resolve_limits(e: &mut Errors, file: &LimitsSection) -> Limits {
    let d = Limits::default();
    let path = |name: &str| format!("gateway.limits.{name}");
    Limits {
        request_head_timeout: Duration::from_millis(seconds(
            e,
            &path("request_head_timeout_ms"),
            file.request_head_timeout_ms,
            d.request_head_timeout.as_millis() as u64,
            (100, 600_000),
        )),
        idle_timeout: Duration::from_secs(seconds(
            e,
            &path("idle_timeout_seconds"),
            file.idle_timeout_seconds,
            d.idle_timeout.as_secs(),
            (1, 3_600),
        )),
        max_request_header_bytes: seconds(
            e,
            &path("max_request_header_bytes"),
            file.max_request_header_bytes,
            d.max_request_header_bytes as u64,
            (1_024, 1_048_576),
        ) as usize,
        max_request_headers: seconds(
            e,
            &path("max_request_headers"),
            file.max_request_headers,
            d.max_request_headers as u64,
            (8, 256),
        ) as usize,
        max_connections: seconds(
            e,
            &path("max_connections"),
            file.max_connections,
            d.max_connections as u64,
            (1, 1_000_000),
        ) as usize,
    }
}

fn seconds(
    errors: &mut Errors,
    path: &str,
    value: Option<u64>,
    default: u64,
    range: (u64, u64),
) -> u64 {
    let v = value.unwrap_or(default);
    if v < range.0 || v > range.1 {
        errors.add(path, format!("must be between {} and {}", range.0, range.1));
        return default;
    }
    v
}

/// Validates `scheme://host[:port]` and returns it in canonical form:
/// lowercase, default port removed, no trailing slash.
pub fn canonical_origin(text: &str) -> Option<String> {
    let uri: http::Uri = text.trim().parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return None;
    }
    let host = authority.host().to_ascii_lowercase();
    let default_port = if scheme == "https" { 443 } else { 80 };
    Some(match authority.port_u16() {
        Some(p) if p != default_port => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    })
}

fn host_port(text: &str) -> bool {
    match text.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && port.parse::<u16>().is_ok_and(|p| p > 0)
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
                })
        }
        None => false,
    }
}

/// Step 3 of loading. `base` is the folder relative paths start from.
pub fn resolve(
    file: &FileConfig,
    base: &Path,
    env: &dyn EnvSource,
) -> Result<Config, Vec<ConfigError>> {
    let mut e = Errors(Vec::new());
    let mut effective = file.clone();
    // Every file the configuration reads besides itself: watched for
    // changes, and part of the configuration's version.
    let mut sources: Vec<PathBuf> = Vec::new();

    let gateway_id = file
        .gateway
        .id
        .clone()
        .unwrap_or_else(|| "stella-gateway".into());
    if gateway_id.is_empty() || !gateway_id.bytes().all(|b| b.is_ascii_graphic()) {
        e.add("gateway.id", "must be non-empty visible ascii");
    }
    effective.gateway.id = Some(gateway_id.clone());

    let public_origin = match &file.gateway.public_origin {
        None => None,
        Some(text) => {
            let origin = canonical_origin(text);
            if origin.is_none() {
                e.add(
                    "gateway.public_origin",
                    "must be scheme://host[:port] with scheme http or https and no path",
                );
            }
            origin
        }
    };

    // Listeners.
    let l = &file.gateway.listeners;
    let http = socket_addr(&mut e, "gateway.listeners.http", &l.http);
    let admin = socket_addr(&mut e, "gateway.listeners.admin", &l.admin);
    let tls = l.tls.as_ref().and_then(|t| {
        let addr = match socket_addr(&mut e, "gateway.listeners.tls.addr", &t.addr) {
            Some(a) => Some(a),
            None if t.addr.is_none() => {
                e.add("gateway.listeners.tls.addr", "is required");
                None
            }
            None => None,
        };
        let cert_file = existing_file(
            &mut e,
            "gateway.listeners.tls.cert_file",
            base,
            &t.cert_file,
        );
        let key_file = existing_file(&mut e, "gateway.listeners.tls.key_file", base, &t.key_file);
        let mode = match t
            .client_certificates
            .as_deref()
            .map(|m| m.trim().to_ascii_lowercase())
        {
            None => ClientCertMode::None,
            Some(m) if m == "none" => ClientCertMode::None,
            Some(m) if m == "optional" => ClientCertMode::Optional,
            Some(m) if m == "required" => ClientCertMode::Required,
            Some(_) => {
                e.add(
                    "gateway.listeners.tls.client_certificates",
                    "must be none, optional or required",
                );
                ClientCertMode::None
            }
        };
        let mut spiffe_roots = Vec::new();
        for (i, r) in t.spiffe_roots.iter().enumerate() {
            let at = |k: &str| format!("gateway.listeners.tls.spiffe_roots[{i}].{k}");
            let domain = r.trust_domain.clone().unwrap_or_default();
            if stella_authn::spiffe::parse_spiffe_uri(&format!("spiffe://{domain}/x")).is_err() {
                e.add(
                    &at("trust_domain"),
                    "must be a lowercase spiffe trust domain such as example.org",
                );
            } else if spiffe_roots.iter().any(|(d, _)| d == &domain) {
                e.add(&at("trust_domain"), "is listed twice");
            }
            if let Some(file) = existing_file(&mut e, &at("ca_file"), base, &r.ca_file) {
                spiffe_roots.push((domain, file));
            }
        }
        if !t.spiffe_roots.is_empty() && mode == ClientCertMode::None {
            e.add(
                "gateway.listeners.tls.spiffe_roots",
                "needs client_certificates optional or required",
            );
        }
        // With per-domain roots alone, certificates without a SPIFFE ID have
        // no roots, so client_ca_file becomes optional.
        let client_ca_file = match mode {
            ClientCertMode::None => None,
            _ if !t.spiffe_roots.is_empty() && t.client_ca_file.is_none() => None,
            _ => existing_file(
                &mut e,
                "gateway.listeners.tls.client_ca_file",
                base,
                &t.client_ca_file,
            ),
        };
        sources.extend(cert_file.iter().cloned());
        sources.extend(key_file.iter().cloned());
        sources.extend(client_ca_file.iter().cloned());
        sources.extend(spiffe_roots.iter().map(|(_, f)| f.clone()));
        Some(TlsListener {
            addr: addr?,
            cert_file: cert_file?,
            key_file: key_file?,
            client_certificates: mode,
            client_ca_file,
            spiffe_roots,
            http2: t.http2.unwrap_or(true),
        })
    });
    if l.http.is_none() && l.tls.is_none() {
        e.add("gateway.listeners", "needs an http or a tls listener");
    }

    // Authorities: `authority` (the single-issuer case) and `authorities`.
    let mut authorities = Vec::new();
    let primary_set = file.gateway.auth.authority.issuer.is_some();
    if primary_set || file.gateway.auth.authorities.is_empty() {
        authorities.push(resolve_authority(
            &mut e,
            "gateway.auth.authority",
            &file.gateway.auth.authority,
            &mut effective.gateway.auth.authority,
            base,
            env,
            &mut sources,
        ));
    }
    for (i, a) in file.gateway.auth.authorities.iter().enumerate() {
        let path = format!("gateway.auth.authorities[{i}]");
        let resolved = resolve_authority(
            &mut e,
            &path,
            a,
            &mut effective.gateway.auth.authorities[i],
            base,
            env,
            &mut sources,
        );
        authorities.push(resolved);
    }
    check_authorities(&mut e, &authorities);
    let token_cache_max_entries = seconds(
        &mut e,
        "gateway.auth.token_cache_max_entries",
        file.gateway.auth.token_cache_max_entries,
        100_000,
        (0, 10_000_000),
    );
    effective.gateway.auth.token_cache_max_entries = Some(token_cache_max_entries);

    // DPoP.
    let d = &file.gateway.auth.dpop;
    let max_age = seconds(
        &mut e,
        "gateway.auth.dpop.proof_max_age_seconds",
        d.proof_max_age_seconds,
        60,
        (1, 3_600),
    );
    let skew = seconds(
        &mut e,
        "gateway.auth.dpop.proof_future_skew_seconds",
        d.proof_future_skew_seconds,
        5,
        (0, 300),
    );
    let proof_algorithms: Vec<String> = if d.algorithms.is_empty() {
        ["ES256", "ES384", "EdDSA", "PS256"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        for (i, alg) in d.algorithms.iter().enumerate() {
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                e.add(
                    &format!("gateway.auth.dpop.algorithms[{i}]"),
                    format!(
                        "is not accepted; choose from {}",
                        SUPPORTED_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        d.algorithms.clone()
    };
    // The memory store's capacity is settled once the worker threads are
    // known (below); this is the configured value, if any.
    let replay_max_share = seconds(
        &mut e,
        "gateway.auth.dpop.replay_max_share_percent",
        d.replay_max_share_percent,
        u64::from(stella_authn::replay::DEFAULT_MAX_SHARE_PERCENT),
        (1, 100),
    );
    let replay_memory = |max_entries: u64| ReplayStoreConfig::Memory {
        max_entries,
        max_share_percent: u8::try_from(replay_max_share).unwrap_or(100),
    };
    let mut replay_store = match d.replay_store.as_deref().map(str::trim) {
        None | Some("memory") => {
            for (key, set) in [
                ("replay_store_ca_file", &d.replay_store_ca_file),
                (
                    "replay_store_client_cert_file",
                    &d.replay_store_client_cert_file,
                ),
                (
                    "replay_store_client_key_file",
                    &d.replay_store_client_key_file,
                ),
            ] {
                if set.is_some() {
                    e.add(
                        &format!("gateway.auth.dpop.{key}"),
                        "is set but replay_store is not a rediss:// url",
                    );
                }
            }
            replay_memory(0)
        }
        Some(url) => {
            let mut pem = |key: &str, file: &Option<String>| {
                let file = file.as_deref().map(str::trim)?;
                let path = base.join(file);
                sources.push(path.clone());
                match std::fs::read(&path) {
                    Ok(bytes) => Some(bytes),
                    Err(err) => {
                        e.add(
                            &format!("gateway.auth.dpop.{key}"),
                            format!("cannot be read: {}", err.kind()),
                        );
                        None
                    }
                }
            };
            let tls = stella_authn::replay::RedisTls {
                ca_pem: pem("replay_store_ca_file", &d.replay_store_ca_file),
                client_cert_pem: pem(
                    "replay_store_client_cert_file",
                    &d.replay_store_client_cert_file,
                ),
                client_key_pem: pem(
                    "replay_store_client_key_file",
                    &d.replay_store_client_key_file,
                )
                .map(zeroize::Zeroizing::new),
            };
            check_redis_store(&mut e, url, &tls);
            let timeout_ms = seconds(
                &mut e,
                "gateway.auth.dpop.replay_store_timeout_ms",
                d.replay_store_timeout_ms,
                500,
                (10, 10_000),
            );
            ReplayStoreConfig::Redis {
                url: RedisUrl(url.to_owned()),
                tls,
                timeout: Duration::from_millis(timeout_ms),
            }
        }
    };
    let nonce_secret = match (&d.nonce_secret, &d.nonce_secret_file) {
        (Some(_), Some(_)) => {
            e.add(
                "gateway.auth.dpop.nonce_secret",
                "is set together with nonce_secret_file; set one",
            );
            None
        }
        (Some(text), None) => Some(zeroize::Zeroizing::new(text.trim().as_bytes().to_vec())),
        (None, Some(f)) => {
            let path = base.join(f.trim());
            sources.push(path.clone());
            match std::fs::read(&path) {
                Ok(bytes) => Some(zeroize::Zeroizing::new(bytes.trim_ascii().to_vec())),
                Err(err) => {
                    e.add(
                        "gateway.auth.dpop.nonce_secret_file",
                        format!("cannot be read: {}", err.kind()),
                    );
                    None
                }
            }
        }
        (None, None) => None,
    };
    if let Some(secret) = &nonce_secret {
        if secret.len() < 32 {
            e.add(
                "gateway.auth.dpop.nonce_secret",
                format!("is {} bytes; at least 32 are required", secret.len()),
            );
        }
    }
    let nonce_step = seconds(
        &mut e,
        "gateway.auth.dpop.nonce_step_seconds",
        d.nonce_step_seconds,
        60,
        (5, 3_600),
    );
    let ed = &mut effective.gateway.auth.dpop;
    ed.proof_max_age_seconds = Some(max_age);
    ed.proof_future_skew_seconds = Some(skew);
    ed.algorithms = proof_algorithms.clone();
    ed.replay_store = Some(match &replay_store {
        ReplayStoreConfig::Memory { .. } => "memory".into(),
        ReplayStoreConfig::Redis { url, .. } => url.as_str().to_owned(),
    });
    if let ReplayStoreConfig::Redis { timeout, .. } = &replay_store {
        ed.replay_store_timeout_ms = u64::try_from(timeout.as_millis()).ok();
    }
    ed.nonce_step_seconds = Some(nonce_step);
    let mut dpop = DpopConfig {
        proof_max_age: Duration::from_secs(max_age),
        proof_future_skew: Duration::from_secs(skew),
        algorithms: proof_algorithms,
        replay_store: replay_store.clone(),
        nonce_secret,
        nonce_step: Duration::from_secs(nonce_step),
    };
    let allow_temporary_bypass = file.gateway.auth.allow_temporary_bypass.unwrap_or(false);
    effective.gateway.auth.allow_temporary_bypass = Some(allow_temporary_bypass);

    let policies_dir = file.gateway.policies_dir.as_ref().and_then(|d| {
        let dir = base.join(d.trim());
        if dir.is_dir() {
            Some(dir)
        } else {
            e.add(
                "gateway.policies_dir",
                format!("folder {} does not exist", dir.display()),
            );
            None
        }
    });

    let cores = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(2);
    let threads = seconds(
        &mut e,
        "gateway.threads",
        file.gateway.threads,
        cores,
        (1, 256),
    ) as usize;
    let work_stealing = file.gateway.work_stealing.unwrap_or(false);
    effective.gateway.threads = Some(threads as u64);
    // Replay capacity: every worker verifying proofs flat out for the whole
    // window a proof's entry lives (max age + skew + 1 s), with a margin.
    let replay_window = Duration::from_secs(max_age.saturating_add(skew).saturating_add(1));
    let replay_max = seconds(
        &mut e,
        "gateway.auth.dpop.replay_max_entries",
        d.replay_max_entries,
        stella_authn::replay::default_max_entries(threads, replay_window),
        (1, stella_authn::replay::MAX_ENTRIES_LIMIT),
    );
    if let ReplayStoreConfig::Memory { max_entries, .. } = &mut replay_store {
        *max_entries = replay_max;
    }
    dpop.replay_store = replay_store;
    effective.gateway.auth.dpop.replay_max_entries = Some(replay_max);
    effective.gateway.auth.dpop.replay_max_share_percent = Some(replay_max_share);
    effective.gateway.work_stealing = Some(work_stealing);
    let shutdown_grace = seconds(
        &mut e,
        "gateway.shutdown_grace_seconds",
        file.gateway.shutdown_grace_seconds,
        10,
        (0, 3_600),
    );
    effective.gateway.shutdown_grace_seconds = Some(shutdown_grace);
    let watch_config = file.gateway.watch_config.unwrap_or(true);
    effective.gateway.watch_config = Some(watch_config);
    let resolve_interval = seconds(
        &mut e,
        "gateway.upstreams.resolve_interval_seconds",
        file.gateway.upstreams.resolve_interval_seconds,
        30,
        (1, 86_400),
    );
    effective.gateway.upstreams.resolve_interval_seconds = Some(resolve_interval);
    let limits = resolve_limits(&mut e, &file.gateway.limits);
    effective.gateway.limits = LimitsSection {
        request_head_timeout_ms: Some(limits.request_head_timeout.as_millis() as u64),
        idle_timeout_seconds: Some(limits.idle_timeout.as_secs()),
        max_request_header_bytes: Some(limits.max_request_header_bytes as u64),
        max_request_headers: Some(limits.max_request_headers as u64),
        max_connections: Some(limits.max_connections as u64),
    };

    // Router.
    let r = &file.router;
    let on_missing_authorization = match &r.on_missing_authorization {
        None => MissingAuthorization::RequireAuthenticated,
        Some(text) => MissingAuthorization::parse(text).unwrap_or_else(|| {
            e.add(
                "router.on_missing_authorization",
                "must be Deny, RequireAuthenticated or AllowAnonymous",
            );
            MissingAuthorization::RequireAuthenticated
        }),
    };
    effective.router.on_missing_authorization = Some(on_missing_authorization.as_str().into());
    let lifetime = seconds(
        &mut e,
        "router.identity_envelope_lifetime_seconds",
        r.identity_envelope_lifetime_seconds,
        60,
        (1, 300),
    );
    effective.router.identity_envelope_lifetime_seconds = Some(lifetime);
    let mut secret_digest = ring::digest::Context::new(&ring::digest::SHA256);
    if let Some(secret) = &dpop.nonce_secret {
        secret_digest.update(secret);
    }
    for a in &authorities {
        if let Some(client) = &a.client {
            secret_digest.update(client.secret.expose().as_bytes());
            secret_digest.update(b"\n");
        }
    }
    let keyring = envelope_keyring(&mut e, r, base, env, &mut sources);
    for (_, text) in &keyring.texts {
        secret_digest.update(text.as_bytes());
        secret_digest.update(b"\n");
    }
    if let Some(active) = &keyring.active {
        effective.router.identity_envelope_active_kid = Some(active.kid().as_str().to_owned());
    }
    effective.router.identity_envelope_signing_key_id =
        r.identity_envelope_signing_key_id.clone().or_else(|| {
            r.identity_envelope_signing_key
                .as_ref()
                .or(r.identity_envelope_signing_key_file.as_ref())
                .map(|_| "default".into())
        });
    // The signer itself is built with the snapshot; here only its key's
    // text is kept, once it is known to make a signer.
    let envelope_key = keyring.active.and_then(|key| {
        let kid = key.kid().clone();
        let text = keyring
            .texts
            .iter()
            .find(|(k, _)| *k == kid.as_str())?
            .1
            .clone();
        Signer::new(key, gateway_id.clone(), lifetime)
            .ok()
            .map(|_| EnvelopeKeyText { kid, text })
    });

    // Services.
    let mut services = Vec::new();
    for (i, s) in file.services.iter().enumerate() {
        let at = |k: &str| format!("services[{i}].{k}");
        let name = s.name.clone().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !name_ok {
            e.add(&at("name"), "must be 1 to 64 characters from a-z 0-9 - _ .");
        } else if file.services[..i]
            .iter()
            .any(|o| o.name.as_deref() == Some(name.as_str()))
        {
            e.add(&at("name"), "is used by another service");
        }
        if s.upstreams.is_empty() {
            e.add(&at("upstreams"), "must list at least one host:port");
        }
        for (j, u) in s.upstreams.iter().enumerate() {
            if !host_port(u.trim()) {
                e.add(
                    &format!("services[{i}].upstreams[{j}]"),
                    "must be host:port",
                );
            }
        }
        let connect = seconds(
            &mut e,
            &at("connect_timeout_ms"),
            s.connect_timeout_ms,
            2_000,
            (1, 600_000),
        );
        let read = seconds(
            &mut e,
            &at("read_timeout_ms"),
            s.read_timeout_ms,
            30_000,
            (1, 3_600_000),
        );
        let trust_mode = s.trust_mode.as_ref().and_then(|m| {
            m.parse::<TrustMode>()
                .map_err(|err| e.add(&at("trust_mode"), err.to_string()))
                .ok()
        });
        let eject_after = seconds(
            &mut e,
            &at("eject_after_failures"),
            s.eject_after_failures,
            2,
            (1, 1_000),
        );
        let eject = seconds(
            &mut e,
            &at("eject_seconds"),
            s.eject_seconds,
            10,
            (1, 3_600),
        );
        let health_check = s.health_check.as_ref().map(|h| {
            let path = h.path.clone().unwrap_or_default();
            if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
                e.add(
                    &at("health_check.path"),
                    "must be an absolute path such as /healthz",
                );
            }
            let interval = seconds(
                &mut e,
                &at("health_check.interval_ms"),
                h.interval_ms,
                5_000,
                (100, 3_600_000),
            );
            let timeout = seconds(
                &mut e,
                &at("health_check.timeout_ms"),
                h.timeout_ms,
                1_000,
                (10, 60_000),
            );
            HealthCheck {
                path,
                interval: Duration::from_millis(interval),
                timeout: Duration::from_millis(timeout),
            }
        });
        let openapi = s.openapi.as_deref().map(str::trim).and_then(|text| {
            if text.starts_with("http://") || text.starts_with("https://") {
                check_url(&mut e, &at("openapi"), text, false);
                Some(OpenApiSource::Url(text.to_owned()))
            } else {
                existing_file(&mut e, &at("openapi"), base, &Some(text.to_owned()))
                    .map(OpenApiSource::File)
            }
        });
        let es = &mut effective.services[i];
        es.connect_timeout_ms = Some(connect);
        es.read_timeout_ms = Some(read);
        es.forward_credentials = Some(s.forward_credentials.unwrap_or(false));
        es.eject_after_failures = Some(eject_after);
        es.eject_seconds = Some(eject);
        services.push(Service {
            name,
            upstreams: s.upstreams.iter().map(|u| u.trim().to_owned()).collect(),
            connect_timeout: Duration::from_millis(connect),
            read_timeout: Duration::from_millis(read),
            forward_credentials: s.forward_credentials.unwrap_or(false),
            trust_mode,
            eject_after_failures: eject_after as u32,
            eject: Duration::from_secs(eject),
            health_check,
            openapi,
        });
    }

    let logging = Logging {
        json: match file.logging.format.as_deref().map(str::trim) {
            None | Some("text") => false,
            Some("json") => true,
            Some(_) => {
                e.add("logging.format", "must be text or json");
                false
            }
        },
        level: file.logging.level.clone().unwrap_or_else(|| "info".into()),
    };
    effective.logging.format = Some(if logging.json { "json" } else { "text" }.into());
    if tracing_subscriber::EnvFilter::try_new(&logging.level).is_err() {
        e.add(
            "logging.level",
            "is not a log filter (such as info, or stella_gateway=debug,info)",
        );
    }
    effective.logging.level = Some(logging.level.clone());
    let traces = resolve_traces(&mut e, &file.traces, &mut effective.traces);

    match (e.0.is_empty(), envelope_key) {
        (true, Some(envelope_key)) => Ok(Config {
            gateway_id,
            public_origin,
            listeners: Listeners { http, tls, admin },
            authorities,
            token_cache_max_entries,
            dpop,
            allow_temporary_bypass,
            policies_dir,
            threads,
            work_stealing,
            on_missing_authorization,
            envelope_key,
            envelope_keys: keyring.infos,
            envelope_lifetime: Duration::from_secs(lifetime),
            shutdown_grace: Duration::from_secs(shutdown_grace),
            watch_config,
            resolve_interval: Duration::from_secs(resolve_interval),
            limits,
            sources,
            secret_digest: {
                let mut out = [0u8; 32];
                out.copy_from_slice(secret_digest.finish().as_ref());
                out
            },
            services,
            logging,
            traces,
            effective,
        }),
        _ => Err(e.0),
    }
}

/// The envelope keyring as configured: every key, which one signs, and the
/// key texts (for the version digest only).
struct Keyring {
    infos: Vec<EnvelopeKeyInfo>,
    active: Option<Key>,
    texts: Vec<(String, zeroize::Zeroizing<String>)>,
}

/// Reads `identity_envelope_signing_key[_file]` (one key, the form existing
/// deployments use) and `identity_envelope_keys` (the keyring), and picks
/// the active kid.
fn envelope_keyring(
    e: &mut Errors,
    r: &RouterSection,
    base: &Path,
    env: &dyn EnvSource,
    sources: &mut Vec<PathBuf>,
) -> Keyring {
    let mut read_file = |e: &mut Errors, path: &str, f: &str| {
        let file = base.join(f.trim());
        sources.push(file.clone());
        match std::fs::read_to_string(&file) {
            Ok(text) => Some((zeroize::Zeroizing::new(text.trim().to_owned()), file)),
            Err(err) => {
                e.add(
                    path,
                    format!("cannot read {}: {}", file.display(), err.kind()),
                );
                None
            }
        }
    };
    // (path for errors, kid, text, source)
    let mut entries: Vec<(String, String, zeroize::Zeroizing<String>, KeySource)> = Vec::new();
    let single_kid = r
        .identity_envelope_signing_key_id
        .clone()
        .unwrap_or_else(|| "default".into());
    match (
        &r.identity_envelope_signing_key,
        &r.identity_envelope_signing_key_file,
    ) {
        (Some(_), Some(_)) => e.add(
            "router.identity_envelope_signing_key",
            "is set together with identity_envelope_signing_key_file; set one",
        ),
        (Some(k), None) => entries.push((
            "router.identity_envelope_signing_key".into(),
            single_kid.clone(),
            zeroize::Zeroizing::new(k.trim().to_owned()),
            KeySource::Inline,
        )),
        (None, Some(f)) => {
            let path = "router.identity_envelope_signing_key_file";
            if let Some((text, file)) = read_file(e, path, f) {
                entries.push((path.into(), single_kid.clone(), text, KeySource::File(file)));
            }
        }
        (None, None) => {}
    }
    let single = !entries.is_empty();
    for (i, k) in r.identity_envelope_keys.iter().enumerate() {
        let at = |key: &str| format!("router.identity_envelope_keys[{i}].{key}");
        let kid = k.kid.clone().unwrap_or_default();
        if kid.trim().is_empty() {
            e.add(&at("kid"), "is required");
            continue;
        }
        let given = [k.key.is_some(), k.key_file.is_some(), k.key_env.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            e.add(&at("key"), "set exactly one of key, key_file and key_env");
            continue;
        }
        if let Some(text) = &k.key {
            entries.push((
                at("key"),
                kid,
                zeroize::Zeroizing::new(text.trim().to_owned()),
                KeySource::Inline,
            ));
        } else if let Some(f) = &k.key_file {
            if let Some((text, file)) = read_file(e, &at("key_file"), f) {
                entries.push((at("key_file"), kid, text, KeySource::File(file)));
            }
        } else if let Some(name) = &k.key_env {
            match env.get(name.trim()) {
                Some(text) if !text.trim().is_empty() => entries.push((
                    at("key_env"),
                    kid,
                    zeroize::Zeroizing::new(text.trim().to_owned()),
                    KeySource::Env(name.trim().to_owned()),
                )),
                _ => e.add(
                    &at("key_env"),
                    format!("names {} which is not set", name.trim()),
                ),
            }
        }
    }
    let mut keys: Vec<(Key, KeySource)> = Vec::new();
    let mut texts = Vec::new();
    for (path, kid, text, source) in entries {
        let kid_path = if path.starts_with("router.identity_envelope_keys") {
            path.rsplit_once('.')
                .map(|(p, _)| format!("{p}.kid"))
                .unwrap_or_default()
        } else {
            "router.identity_envelope_signing_key_id".into()
        };
        let Ok(kid) = KeyId::new(kid.trim()).map_err(|err| e.add(&kid_path, err.to_string()))
        else {
            continue;
        };
        if keys.iter().any(|(k, _)| k.kid() == &kid) {
            e.add(
                &kid_path,
                format!("kid {} is configured twice", kid.as_str()),
            );
            continue;
        }
        match Key::parse_compat(kid.clone(), &text) {
            Ok(key) if key.can_sign() => {
                texts.push((kid.as_str().to_owned(), text));
                keys.push((key, source));
            }
            Ok(_) => e.add(&path, "is a public key; the gateway needs a signing key"),
            Err(err) => e.add(&path, err.to_string()),
        }
    }
    if keys.is_empty()
        && !e
            .0
            .iter()
            .any(|x| x.path.starts_with("router.identity_envelope"))
    {
        e.add(
            "router.identity_envelope_signing_key",
            "is required (or identity_envelope_signing_key_file, identity_envelope_keys, or Router__IdentityEnvelopeSigningKey)",
        );
    }
    let active_kid = match &r.identity_envelope_active_kid {
        Some(kid) => Some(kid.trim().to_owned()),
        None if single => Some(single_kid.trim().to_owned()),
        None if keys.len() == 1 => Some(keys[0].0.kid().as_str().to_owned()),
        None if keys.is_empty() => None,
        None => {
            e.add(
                "router.identity_envelope_active_kid",
                "is required when several envelope keys are configured",
            );
            None
        }
    };
    let infos: Vec<EnvelopeKeyInfo> = keys
        .iter()
        .map(|(k, source)| EnvelopeKeyInfo {
            kid: k.kid().as_str().to_owned(),
            alg: k.alg(),
            source: source.clone(),
        })
        .collect();
    let active = active_kid.and_then(|kid| {
        let found = keys.iter().position(|(k, _)| k.kid().as_str() == kid);
        if found.is_none() && !keys.is_empty() {
            e.add(
                "router.identity_envelope_active_kid",
                format!("names {kid}, which is not a configured envelope key"),
            );
        }
        found.map(|i| keys.swap_remove(i).0)
    });
    Keyring {
        infos,
        active,
        texts,
    }
}

/// One Authority section: `path` is where it is (for error messages),
/// `effective` its copy with defaults filled in.
fn resolve_authority(
    e: &mut Errors,
    path: &str,
    a: &AuthoritySection,
    effective: &mut AuthoritySection,
    base: &Path,
    env: &dyn EnvSource,
    sources: &mut Vec<PathBuf>,
) -> AuthorityConfig {
    let at = |k: &str| format!("{path}.{k}");
    let require_https_metadata = a.require_https_metadata.unwrap_or(true);
    let issuer = a.issuer.clone().unwrap_or_default();
    if issuer.trim().is_empty() {
        e.add(&at("issuer"), "is required");
    } else {
        check_url(e, &at("issuer"), &issuer, require_https_metadata);
    }
    if a.audiences.is_empty() || a.audiences.iter().any(|x| x.trim().is_empty()) {
        e.add(
            &at("audiences"),
            "must list at least one non-empty audience",
        );
    }
    let algorithms = if a.algorithms.is_empty() {
        SUPPORTED_ALGORITHMS.iter().map(|s| s.to_string()).collect()
    } else {
        for (i, alg) in a.algorithms.iter().enumerate() {
            if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
                e.add(
                    &at(&format!("algorithms[{i}]")),
                    format!(
                        "is not accepted; choose from {}",
                        SUPPORTED_ALGORITHMS.join(", ")
                    ),
                );
            }
        }
        a.algorithms.clone()
    };
    let required_claims = a
        .required_claims
        .clone()
        .unwrap_or_else(|| vec!["client_id".into(), "jti".into()]);
    let leeway = seconds(e, &at("leeway_seconds"), a.leeway_seconds, 30, (0, 300));
    let refresh = seconds(
        e,
        &at("jwks_refresh_seconds"),
        a.jwks_refresh_seconds,
        300,
        (10, 86_400),
    );
    let cooldown = seconds(
        e,
        &at("jwks_cooldown_seconds"),
        a.jwks_cooldown_seconds,
        10,
        (1, 3_600),
    );
    let max_stale = seconds(
        e,
        &at("jwks_max_stale_seconds"),
        a.jwks_max_stale_seconds,
        3_600,
        (0, 604_800),
    );
    let timeout_ms = seconds(
        e,
        &at("http_timeout_ms"),
        a.http_timeout_ms,
        2_000,
        (100, 60_000),
    );
    let state_dir = a.state_dir.as_ref().and_then(|d| {
        let dir = base.join(d.trim());
        match stella_authority::lkg::inspect_state_dir(&dir) {
            Ok(()) => Some(dir),
            Err(message) => {
                e.add(&at("state_dir"), message);
                None
            }
        }
    });
    let mut tenants = Vec::new();
    for (i, t) in a.tenants.iter().enumerate() {
        let t = t.trim();
        if t.is_empty() {
            e.add(&at(&format!("tenants[{i}]")), "must not be empty");
        } else if tenants.iter().any(|x| x == t) {
            e.add(&at(&format!("tenants[{i}]")), "is listed twice");
        } else {
            tenants.push(t.to_owned());
        }
    }
    let client = client_credentials(e, path, a, base, env, sources);
    let introspection = a.introspection.as_ref().map(|i| {
        if client.is_none() {
            e.add(
                &at("introspection"),
                "needs the gateway's client credentials (client_id and a client_secret)",
            );
        }
        if let Some(url) = &i.endpoint {
            check_url(
                e,
                &at("introspection.endpoint"),
                url,
                require_https_metadata,
            );
        }
        IntrospectionConfig {
            endpoint: i.endpoint.as_ref().map(|u| u.trim().to_owned()),
            cache: Duration::from_secs(seconds(
                e,
                &at("introspection.cache_seconds"),
                i.cache_seconds,
                60,
                (1, 86_400),
            )),
            inactive_cache: Duration::from_secs(seconds(
                e,
                &at("introspection.inactive_cache_seconds"),
                i.inactive_cache_seconds,
                10,
                (0, 3_600),
            )),
            max_stale: Duration::from_secs(seconds(
                e,
                &at("introspection.max_stale_seconds"),
                i.max_stale_seconds,
                0,
                (0, 86_400),
            )),
        }
    });
    let claims = a.claims.as_ref().and_then(|c| {
        if client.is_none() {
            e.add(
                &at("claims"),
                "needs the gateway's client credentials (client_id and a client_secret)",
            );
        }
        let endpoint = c.endpoint.as_deref().map(str::trim).unwrap_or_default();
        if endpoint.is_empty() {
            e.add(&at("claims.endpoint"), "is required");
        } else {
            check_url(e, &at("claims.endpoint"), endpoint, require_https_metadata);
        }
        let cache = seconds(
            e,
            &at("claims.cache_seconds"),
            c.cache_seconds,
            300,
            (1, 86_400),
        );
        let ahead = seconds(
            e,
            &at("claims.refresh_ahead_seconds"),
            c.refresh_ahead_seconds,
            60,
            (0, 86_400),
        );
        if ahead >= cache {
            e.add(
                &at("claims.refresh_ahead_seconds"),
                "must be smaller than claims.cache_seconds",
            );
        }
        let stale = seconds(
            e,
            &at("claims.max_stale_seconds"),
            c.max_stale_seconds,
            300,
            (0, 604_800),
        );
        (!endpoint.is_empty()).then(|| ClaimsConfig {
            endpoint: endpoint.to_owned(),
            cache: Duration::from_secs(cache),
            refresh_ahead: Duration::from_secs(ahead),
            max_stale: Duration::from_secs(stale),
        })
    });
    effective.require_https_metadata = Some(require_https_metadata);
    effective.algorithms = algorithms.clone();
    effective.required_claims = Some(required_claims.clone());
    effective.leeway_seconds = Some(leeway);
    effective.jwks_refresh_seconds = Some(refresh);
    effective.jwks_cooldown_seconds = Some(cooldown);
    effective.jwks_max_stale_seconds = Some(max_stale);
    effective.http_timeout_ms = Some(timeout_ms);
    if let (Some(i), Some(ei)) = (&introspection, effective.introspection.as_mut()) {
        ei.cache_seconds = Some(i.cache.as_secs());
        ei.inactive_cache_seconds = Some(i.inactive_cache.as_secs());
        ei.max_stale_seconds = Some(i.max_stale.as_secs());
    }
    if let (Some(c), Some(ec)) = (&claims, effective.claims.as_mut()) {
        ec.cache_seconds = Some(c.cache.as_secs());
        ec.refresh_ahead_seconds = Some(c.refresh_ahead.as_secs());
        ec.max_stale_seconds = Some(c.max_stale.as_secs());
    }
    AuthorityConfig {
        path: path.to_owned(),
        issuer: issuer.trim().to_owned(),
        require_https_metadata,
        audiences: a.audiences.clone(),
        algorithms,
        leeway: Duration::from_secs(leeway),
        required_claims,
        jwks_refresh: Duration::from_secs(refresh),
        jwks_cooldown: Duration::from_secs(cooldown),
        jwks_max_stale: Duration::from_secs(max_stale),
        http_timeout: Duration::from_millis(timeout_ms),
        state_dir,
        tenants,
        client,
        introspection,
        claims,
    }
}

/// An absolute http(s) url; plain http only with require_https_metadata off.
fn check_url(e: &mut Errors, path: &str, url: &str, require_https: bool) {
    match url
        .trim()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| u.authority().is_some())
        .and_then(|u| u.scheme_str().map(str::to_owned))
    {
        Some(s) if s == "https" => {}
        Some(s) if s == "http" && !require_https => {}
        Some(s) if s == "http" => e.add(
            path,
            "must use https (set require_https_metadata: false only for local development)",
        ),
        _ => e.add(path, "must be an absolute http(s) url"),
    }
}

/// `client_id` with exactly one of `client_secret`, `client_secret_file`
/// and `client_secret_env`; neither: no credentials.
fn client_credentials(
    e: &mut Errors,
    path: &str,
    a: &AuthoritySection,
    base: &Path,
    env: &dyn EnvSource,
    sources: &mut Vec<PathBuf>,
) -> Option<ClientCredentials> {
    let at = |k: &str| format!("{path}.{k}");
    let given = [
        a.client_secret.is_some(),
        a.client_secret_file.is_some(),
        a.client_secret_env.is_some(),
    ];
    let count = given.iter().filter(|g| **g).count();
    let id = a.client_id.as_deref().map(str::trim).unwrap_or_default();
    if count == 0 && id.is_empty() {
        return None;
    }
    if id.is_empty() {
        e.add(&at("client_id"), "is required with a client secret");
        return None;
    }
    if count != 1 {
        e.add(
            &at("client_secret"),
            "set exactly one of client_secret, client_secret_file and client_secret_env",
        );
        return None;
    }
    let secret = if let Some(text) = &a.client_secret {
        text.trim().to_owned()
    } else if let Some(file) = &a.client_secret_file {
        let file = base.join(file.trim());
        sources.push(file.clone());
        match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().to_owned(),
            Err(err) => {
                e.add(
                    &at("client_secret_file"),
                    format!("cannot be read: {}", err.kind()),
                );
                return None;
            }
        }
    } else {
        let name = a.client_secret_env.as_deref().unwrap_or_default().trim();
        match env.get(name) {
            Some(v) => v.trim().to_owned(),
            None => {
                e.add(
                    &at("client_secret_env"),
                    format!("names {name}, which is not set"),
                );
                return None;
            }
        }
    };
    if secret.is_empty() {
        e.add(&at("client_secret"), "is empty");
        return None;
    }
    Some(ClientCredentials {
        id: id.to_owned(),
        secret: Secret::new(secret),
    })
}

/// Issuers are unique, a tenant is bound to at most one of them, and at
/// most one Authority takes opaque tokens (an opaque token names no issuer:
/// it is sent to that Authority's introspection endpoint and no other).
fn check_authorities(e: &mut Errors, authorities: &[AuthorityConfig]) {
    for (i, a) in authorities.iter().enumerate() {
        if authorities[..i].iter().any(|b| b.issuer == a.issuer) && !a.issuer.is_empty() {
            e.add(&format!("{}.issuer", a.path), "is configured twice");
        }
        for t in &a.tenants {
            if authorities[..i].iter().any(|b| b.tenants.contains(t)) {
                e.add(
                    &format!("{}.tenants", a.path),
                    format!("binds tenant {t}, which another Authority binds already"),
                );
            }
        }
    }
    let introspecting: Vec<&AuthorityConfig> = authorities
        .iter()
        .filter(|a| a.introspection.is_some())
        .collect();
    if introspecting.len() > 1 {
        e.add(
            &format!("{}.introspection", introspecting[1].path),
            "is configured for a second Authority; opaque tokens go to exactly one",
        );
    }
}
