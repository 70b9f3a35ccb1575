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
pub struct RedisUrl {
    /// What the connection uses: as configured, with the password of
    /// `replay_store_password_file` when there is one.
    url: String,
    /// As configured (without a password from a file).
    configured: String,
}

impl RedisUrl {
    pub(super) fn new(url: &str) -> RedisUrl {
        RedisUrl {
            url: url.to_owned(),
            configured: url.to_owned(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The URL as the configuration wrote it.
    pub(super) fn configured(&self) -> &str {
        &self.configured
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_redis_url(&self.url))
    }
}

/// `url` with `password` (percent-encoded) as the password of its user
/// information, keeping a user name it has; an error when the URL has a
/// password already. The result is parsed again by [`check_redis_store`].
fn with_password(url: &str, password: &str) -> Result<String, &'static str> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("is set but replay_store is not a redis url")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, hosts) = match authority.rfind('@') {
        Some(i) if authority[..i].contains(':') => {
            return Err("is set but the replay_store url has a password already; set one");
        }
        Some(i) => (&authority[..i], &authority[i + 1..]),
        None => ("", authority),
    };
    let mut encoded = String::with_capacity(password.len() * 3);
    for b in password.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{encoded}@{hosts}{path}"))
}

/// The password in `replay_store_password_file`: its text without the
/// line ending; one line, not empty.
fn read_password(path: &Path) -> Result<zeroize::Zeroizing<String>, String> {
    let bytes = zeroize::Zeroizing::new(
        std::fs::read(path).map_err(|err| format!("cannot be read: {}", err.kind()))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    let password = text.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err("is empty".into());
    }
    if password.contains(['\r', '\n']) {
        return Err("holds more than one line".into());
    }
    Ok(zeroize::Zeroizing::new(password.to_owned()))
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
            if d.replay_store_password_file.is_some() {
                e.add(
                    "gateway.auth.dpop.replay_store_password_file",
                    "is set but replay_store is not a redis url",
                );
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
            let mut redis_url = RedisUrl::new(url);
            if let Some(file) = d.replay_store_password_file.as_deref().map(str::trim) {
                const KEY: &str = "gateway.auth.dpop.replay_store_password_file";
                let path = base.join(file);
                sources.push(path.clone());
                match read_password(&path)
                    .and_then(|pw| with_password(url, &pw).map_err(Into::into))
                {
                    Ok(with) => redis_url.url = with,
                    Err(problem) => e.add(KEY, problem),
                }
            }
            check_redis_store(e, redis_url.as_str(), &tls);
            let timeout_ms = seconds(
                e,
                "gateway.auth.dpop.replay_store_timeout_ms",
                d.replay_store_timeout_ms,
                500,
                (10, 10_000),
            );
            ReplayStoreConfig::Redis {
                url: redis_url,
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
        // As configured: never the password of replay_store_password_file.
        ReplayStoreConfig::Redis { url, .. } => url.configured().to_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_from_a_file_joins_the_url_percent_encoded_and_keeps_its_user() {
        for (url, want) in [
            (
                "redis://redis:6379",
                "redis://:p%40ss%3Aw%2Fo%25rd@redis:6379",
            ),
            (
                "redis://stella@redis:6379/2",
                "redis://stella:p%40ss%3Aw%2Fo%25rd@redis:6379/2",
            ),
            (
                "rediss+sentinel://s1,s2:26379/main/1",
                "rediss+sentinel://:p%40ss%3Aw%2Fo%25rd@s1,s2:26379/main/1",
            ),
        ] {
            let got = with_password(url, "p@ss:w/o%rd").unwrap();
            assert_eq!(got, want);
            // The store reads it back as this password (no error).
            stella_authn::replay::RedisReplayStore::check(&got, &Default::default()).unwrap();
        }
        assert!(with_password("redis://:x@redis", "p").is_err());
        assert!(with_password("redis://u:x@redis", "p").is_err());
    }

    #[test]
    fn the_password_file_is_one_line_and_its_line_ending_is_dropped() {
        let dir = std::env::temp_dir().join(format!("stella-redis-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        for (content, want) in [
            (&b"s3cret\n"[..], Ok("s3cret")),
            (b"s3cret\r\n", Ok("s3cret")),
            (b"s3cret", Ok("s3cret")),
            (b"\n", Err("is empty")),
            (b"a\nb\n", Err("holds more than one line")),
            (b"\xff\xfe", Err("is not UTF-8 text")),
        ] {
            std::fs::write(&file, content).unwrap();
            let got = read_password(&file);
            assert_eq!(
                got.as_ref().map(|p| p.as_str()).map_err(String::as_str),
                want
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
