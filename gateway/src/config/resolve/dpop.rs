//! `gateway.auth.dpop`: proof rules, the replay store, server nonces.

use super::*;

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
pub struct RedisUrl(pub(super) String);

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
pub(super) fn check_redis_store(e: &mut Errors, url: &str, tls: &stella_authn::replay::RedisTls) {
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

/// The DPoP section but the memory replay store's capacity, which waits for
/// the worker threads ([`replay_capacity`]).
pub(super) fn dpop(
    e: &mut Errors,
    d: &DpopSection,
    base: &Path,
    sources: &mut Vec<PathBuf>,
    effective: &mut DpopSection,
) -> DpopConfig {
    let max_age = setting(
        e,
        "gateway.auth.dpop.proof_max_age_seconds",
        d.proof_max_age_seconds,
        60,
        (1, 3_600),
        &mut effective.proof_max_age_seconds,
    );
    let skew = setting(
        e,
        "gateway.auth.dpop.proof_future_skew_seconds",
        d.proof_future_skew_seconds,
        5,
        (0, 300),
        &mut effective.proof_future_skew_seconds,
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
    let replay_max_share = setting(
        e,
        "gateway.auth.dpop.replay_max_share_percent",
        d.replay_max_share_percent,
        u64::from(stella_authn::replay::DEFAULT_MAX_SHARE_PERCENT),
        (1, 100),
        &mut effective.replay_max_share_percent,
    );
    let replay_memory = |max_entries: u64| ReplayStoreConfig::Memory {
        max_entries,
        max_share_percent: u8::try_from(replay_max_share).unwrap_or(100),
    };
    let replay_store = match d.replay_store.as_deref().map(str::trim) {
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
            check_redis_store(e, url, &tls);
            let timeout_ms = seconds(
                e,
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
    let nonce_step = setting(
        e,
        "gateway.auth.dpop.nonce_step_seconds",
        d.nonce_step_seconds,
        60,
        (5, 3_600),
        &mut effective.nonce_step_seconds,
    );
    let ed = &mut *effective;
    ed.algorithms = proof_algorithms.clone();
    ed.replay_store = Some(match &replay_store {
        ReplayStoreConfig::Memory { .. } => "memory".into(),
        ReplayStoreConfig::Redis { url, .. } => url.as_str().to_owned(),
    });
    if let ReplayStoreConfig::Redis { timeout, .. } = &replay_store {
        ed.replay_store_timeout_ms = u64::try_from(timeout.as_millis()).ok();
    }
    DpopConfig {
        proof_max_age: Duration::from_secs(max_age),
        proof_future_skew: Duration::from_secs(skew),
        algorithms: proof_algorithms,
        replay_store,
        nonce_secret,
        nonce_step: Duration::from_secs(nonce_step),
    }
}

/// The memory replay store's capacity, for `threads` workers.
pub(super) fn replay_capacity(
    e: &mut Errors,
    d: &DpopSection,
    threads: usize,
    dpop: &mut DpopConfig,
    effective: &mut DpopSection,
) {
    // Replay capacity: every worker verifying proofs flat out for the whole
    // window a proof's entry lives (max age + skew + 1 s), with a margin.
    let replay_window = Duration::from_secs(
        dpop.proof_max_age
            .as_secs()
            .saturating_add(dpop.proof_future_skew.as_secs())
            .saturating_add(1),
    );
    let replay_max = setting(
        e,
        "gateway.auth.dpop.replay_max_entries",
        d.replay_max_entries,
        stella_authn::replay::default_max_entries(threads, replay_window),
        (1, stella_authn::replay::MAX_ENTRIES_LIMIT),
        &mut effective.replay_max_entries,
    );
    if let ReplayStoreConfig::Memory { max_entries, .. } = &mut dpop.replay_store {
        *max_entries = replay_max;
    }
}
