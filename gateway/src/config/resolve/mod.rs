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

mod authority;
mod dpop;
mod envelope;
mod listeners;
mod process;
mod resources;
mod revocation;
mod services;

pub use dpop::*;
pub use envelope::*;
pub use listeners::*;
pub use process::*;
pub use resources::*;
pub use revocation::*;
pub use services::*;

/// Access-token and proof algorithms the gateway can ever accept.
pub const SUPPORTED_ALGORITHMS: &[&str] = &["ES256", "ES384", "EdDSA", "PS256", "RS256"];

pub use stella_policy::MissingAuthorization;

pub use stella_authority::settings::{
    AuthorityConfig, CaRoots, ClaimMapping, ClaimPath, ClaimsConfig, ClientCredentials,
    IntrospectionConfig, RequiredValue, ScopeFormat, Secret, TokenProfile,
};

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
    /// The audited emergency bypass (docs/design.md §3.3): off unless configured.
    pub allow_temporary_bypass: bool,
    pub policies_dir: Option<PathBuf>,
    pub threads: usize,
    pub work_stealing: bool,
    pub on_missing_authorization: MissingAuthorization,
    /// The keyring's active key, as configured (data: the signer is built
    /// from it with the snapshot, `EnvelopeSigner::from_config`).
    pub envelope_key: EnvelopeKeyText,
    /// The keys that sign for services with their own `envelope_kid`.
    pub service_keys: Vec<EnvelopeKeyText>,
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
    /// The admin listener's operator credential (reloadable).
    pub admin: AdminConfig,
    /// Where the revocation list is kept (restart only).
    pub revocation: RevocationConfig,
    /// RFC 9728 protected resources (`gateway.protected_resources`).
    pub protected_resources: Vec<ProtectedResource>,
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

/// A whole-number setting: [`seconds`], and what it settled on written into
/// the effective configuration in the same step, so each default is named
/// once.
fn setting(
    errors: &mut Errors,
    path: &str,
    value: Option<u64>,
    default: u64,
    range: (u64, u64),
    effective: &mut Option<u64>,
) -> u64 {
    let v = seconds(errors, path, value, default, range);
    *effective = Some(v);
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

    let listeners = listeners::listeners(&mut e, &file.gateway.listeners, base, &mut sources);

    let (authorities, token_cache_max_entries) =
        authority::authorities(&mut e, file, &mut effective, base, env, &mut sources);

    let mut dpop = dpop::dpop(
        &mut e,
        &file.gateway.auth.dpop,
        base,
        &mut sources,
        &mut effective.gateway.auth.dpop,
    );
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
    replay_capacity(
        &mut e,
        &file.gateway.auth.dpop,
        threads,
        &mut dpop,
        &mut effective.gateway.auth.dpop,
    );
    effective.gateway.work_stealing = Some(work_stealing);
    let shutdown_grace = setting(
        &mut e,
        "gateway.shutdown_grace_seconds",
        file.gateway.shutdown_grace_seconds,
        10,
        (0, 3_600),
        &mut effective.gateway.shutdown_grace_seconds,
    );
    let watch_config = file.gateway.watch_config.unwrap_or(true);
    effective.gateway.watch_config = Some(watch_config);
    let resolve_interval = setting(
        &mut e,
        "gateway.upstreams.resolve_interval_seconds",
        file.gateway.upstreams.resolve_interval_seconds,
        30,
        (1, 86_400),
        &mut effective.gateway.upstreams.resolve_interval_seconds,
    );
    let limits = resolve_limits(&mut e, &file.gateway.limits);
    effective.gateway.limits = LimitsSection {
        request_head_timeout_ms: Some(limits.request_head_timeout.as_millis() as u64),
        idle_timeout_seconds: Some(limits.idle_timeout.as_secs()),
        max_request_header_bytes: Some(limits.max_request_header_bytes as u64),
        max_request_headers: Some(limits.max_request_headers as u64),
        max_connections: Some(limits.max_connections as u64),
        tls_handshake_timeout_ms: Some(limits.tls_handshake_timeout.as_millis() as u64),
        h2_idle_timeout_seconds: Some(limits.h2_idle_timeout.as_secs()),
        h2_max_concurrent_streams: Some(u64::from(limits.h2_max_concurrent_streams)),
        h2_max_header_list_bytes: Some(u64::from(limits.h2_max_header_list_bytes)),
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
    let lifetime = setting(
        &mut e,
        "router.identity_envelope_lifetime_seconds",
        r.identity_envelope_lifetime_seconds,
        60,
        (1, 300),
        &mut effective.router.identity_envelope_lifetime_seconds,
    );
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
    let admin = revocation::admin(&mut e, file.gateway.admin.as_ref(), base, &mut sources);
    if let Some(operators) = &admin.operators {
        operators.digest_into(&mut secret_digest);
    }
    let revocation = revocation::revocation(
        &mut e,
        file.gateway.revocation.as_ref(),
        &authorities,
        &dpop.replay_store,
        listeners.admin.is_some(),
        base,
        &mut sources,
    );
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
    let active_kid = keyring.active.as_ref().map(|k| k.kid().as_str().to_owned());
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

    let services = services::services(
        &mut e,
        file,
        &mut effective,
        base,
        &keyring.infos,
        active_kid.as_deref(),
    );
    sources.extend(services.iter().flat_map(Service::tls_files).cloned());
    let protected_resources = {
        let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
        resources::protected_resources(&mut e, &file.gateway.protected_resources, &names)
    };
    // The texts of the keys services sign with (the active key's is
    // `envelope_key`); the signers are built with the snapshot.
    let service_keys: Vec<EnvelopeKeyText> = keyring
        .texts
        .iter()
        .filter(|(kid, _)| {
            services
                .iter()
                .any(|s| s.envelope_kid.as_deref() == Some(kid.as_str()))
        })
        .filter_map(|(kid, text)| {
            Some(EnvelopeKeyText {
                kid: KeyId::new(kid).ok()?,
                text: text.clone(),
            })
        })
        .collect();

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
            listeners,
            authorities,
            token_cache_max_entries,
            dpop,
            allow_temporary_bypass,
            policies_dir,
            threads,
            work_stealing,
            on_missing_authorization,
            envelope_key,
            service_keys,
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
            admin,
            revocation,
            protected_resources,
            effective,
        }),
        _ => Err(e.0),
    }
}
