//! The admin listener's operator credential (`gateway.admin`) and where the
//! revocation list is kept (`gateway.revocation`).

use super::*;

/// Shortest operator token, in characters.
pub const MIN_OPERATOR_TOKEN_CHARS: usize = 32;

/// `gateway.admin`, checked.
#[derive(Debug, Default)]
pub struct AdminConfig {
    /// `None`: state-changing admin calls need no credential.
    pub operators: Option<OperatorTokens>,
}

/// The operator tokens of `gateway.admin.operator_token_file`. Only their
/// SHA-256 digests are kept; a presented token is hashed and compared with
/// every one in constant time.
pub struct OperatorTokens {
    tokens: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for OperatorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorTokens")
            .field("count", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl OperatorTokens {
    /// The tokens of a file's text: one a line, optionally after a name and
    /// a space; blank lines and lines starting with `#` are skipped. Errors
    /// name the line, never its content.
    pub fn parse(text: &str) -> Result<OperatorTokens, String> {
        let mut tokens = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, token) = match line.split_once(char::is_whitespace) {
                Some((name, token)) => (name, token.trim()),
                None => ("operator", line),
            };
            if !stella_authn::revocation::valid_operator(name) {
                return Err(format!(
                    "line {}: the name must be letters, digits or . _ @ - (at most 64)",
                    n + 1
                ));
            }
            if token.chars().count() < MIN_OPERATOR_TOKEN_CHARS
                || !token.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(format!(
                    "line {}: a token must be at least {MIN_OPERATOR_TOKEN_CHARS} visible ascii characters (openssl rand -hex 32)",
                    n + 1
                ));
            }
            tokens.push((name.to_owned(), digest(token.as_bytes())));
        }
        if tokens.is_empty() {
            return Err("holds no token".into());
        }
        Ok(OperatorTokens { tokens })
    }

    /// The name of the operator whose token `presented` is, compared in
    /// constant time with every configured token.
    pub fn operator(&self, presented: &[u8]) -> Option<&str> {
        use subtle::ConstantTimeEq;
        let presented = digest(presented);
        let mut found = None;
        for (name, token) in &self.tokens {
            if bool::from(token.ct_eq(&presented)) && found.is_none() {
                found = Some(name.as_str());
            }
        }
        found
    }

    /// Feeds the configuration's secret digest (a new token is a new
    /// configuration version).
    pub(super) fn digest_into(&self, d: &mut ring::digest::Context) {
        for (name, token) in &self.tokens {
            d.update(name.as_bytes());
            d.update(token);
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref());
    out
}

/// `gateway.revocation`, checked. A process setting: a reload that changes
/// it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationConfig {
    /// Where the list is persisted; `None`: memory only.
    pub state_file: Option<PathBuf>,
    /// Where the nodes share it; `None`: this node only.
    pub store: Option<RevocationStoreConfig>,
    /// The Shared Signals receiver; `None`: none.
    pub ssf: Option<SsfConfig>,
    /// What a node does with a copy of the shared list older than
    /// `stale_after`.
    pub when_stale: WhenStale,
    /// How old a copy of the shared list may get before it is stale.
    pub stale_after: Duration,
}

impl Default for RevocationConfig {
    fn default() -> RevocationConfig {
        RevocationConfig {
            state_file: None,
            store: None,
            ssf: None,
            when_stale: WhenStale::KeepLastCopy,
            stale_after: Duration::from_secs(DEFAULT_STALE_AFTER_SECONDS),
        }
    }
}

/// `gateway.revocation.when_stale`: the choice between failing open and
/// failing closed for a node cut off from the shared list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WhenStale {
    /// Check requests against the list the node has (fail open for the
    /// revocations made meanwhile elsewhere).
    #[default]
    KeepLastCopy,
    /// Refuse every request that presents a credential (fail closed).
    Refuse,
}

impl WhenStale {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenStale::KeepLastCopy => "keep_last_copy",
            WhenStale::Refuse => "refuse",
        }
    }
}

/// The default of `gateway.revocation.stale_after_seconds`.
pub const DEFAULT_STALE_AFTER_SECONDS: u64 = 60;

/// `gateway.revocation.ssf`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsfConfig {
    /// The admin listener's path that takes pushed SETs.
    pub path: String,
    pub window: stella_authn::revocation::ssf::Window,
    pub transmitters: Vec<SsfTransmitterConfig>,
}

/// One transmitter: what its SETs must say, and where its keys are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SsfTransmitterConfig {
    pub settings: stella_authn::revocation::ssf::Transmitter,
    pub keys: SsfKeys,
}

/// Where a transmitter's signing keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SsfKeys {
    /// Fetched, and refreshed every five minutes and on an unknown `kid`.
    Uri { url: String, require_https: bool },
    /// Read at start (a JWKS document, checked).
    File { path: PathBuf, jwks: String },
}

/// The default path of the receiver on the admin listener.
pub const DEFAULT_SSF_PATH: &str = "/ssf/push";
/// How far a SET's `iat` may lie in the future, in seconds.
pub const SSF_LEEWAY_SECONDS: u64 = 60;

/// The Redis the nodes share the list in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevocationStoreConfig {
    pub url: RedisUrl,
    pub tls: stella_authn::replay::RedisTls,
    /// The deadline of one operation.
    pub timeout: Duration,
    /// The whole list is read again this often.
    pub refresh: Duration,
}

pub(super) fn admin(
    e: &mut Errors,
    file: Option<&AdminSection>,
    base: &Path,
    sources: &mut Vec<PathBuf>,
) -> AdminConfig {
    let Some(path) = file.and_then(|a| a.operator_token_file.as_ref()) else {
        return AdminConfig::default();
    };
    let key = "gateway.admin.operator_token_file";
    let Some(path) = existing_file(e, key, base, &Some(path.clone())) else {
        return AdminConfig::default();
    };
    sources.push(path.clone());
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => zeroize::Zeroizing::new(text),
        Err(err) => {
            e.add(
                key,
                format!("cannot read {}: {}", path.display(), err.kind()),
            );
            return AdminConfig::default();
        }
    };
    match OperatorTokens::parse(&text) {
        Ok(tokens) => AdminConfig {
            operators: Some(tokens),
        },
        Err(problem) => {
            e.add(key, format!("{}: {problem}", path.display()));
            AdminConfig::default()
        }
    }
}

pub(super) fn revocation(
    e: &mut Errors,
    file: Option<&RevocationSection>,
    authorities: &[AuthorityConfig],
    replay_store: &ReplayStoreConfig,
    admin_listener: bool,
    base: &Path,
    sources: &mut Vec<PathBuf>,
) -> RevocationConfig {
    let ssf = file
        .and_then(|r| r.ssf.as_ref())
        .and_then(|section| ssf(e, section, authorities, admin_listener, base, sources));
    let refresh = seconds(
        e,
        "gateway.revocation.store_refresh_seconds",
        file.and_then(|r| r.store_refresh_seconds),
        30,
        (1, 3_600),
    );
    let refresh = Duration::from_secs(refresh);
    let stale_after = Duration::from_secs(seconds(
        e,
        "gateway.revocation.stale_after_seconds",
        file.and_then(|r| r.stale_after_seconds),
        DEFAULT_STALE_AFTER_SECONDS,
        (5, 86_400),
    ));
    let when_stale = match file.and_then(|r| r.when_stale.as_deref()).map(str::trim) {
        None | Some("keep_last_copy") => WhenStale::KeepLastCopy,
        Some("refuse") => WhenStale::Refuse,
        Some(_) => {
            e.add(
                "gateway.revocation.when_stale",
                "must be keep_last_copy or refuse",
            );
            WhenStale::KeepLastCopy
        }
    };
    // The replay store's Redis (its TLS files and timeout too): the
    // default, and what a `store` naming the same URL means.
    let replay_redis = match replay_store {
        ReplayStoreConfig::Redis { url, tls, timeout } => Some(RevocationStoreConfig {
            url: url.clone(),
            tls: tls.clone(),
            timeout: *timeout,
            refresh,
        }),
        ReplayStoreConfig::Memory { .. } => None,
    };
    let store = match file.and_then(|r| r.store.as_deref()).map(str::trim) {
        None => replay_redis,
        Some("none") => None,
        // (Compared as configured: the replay store's password file counts.)
        Some(url)
            if replay_redis
                .as_ref()
                .is_some_and(|r| r.url.configured() == url) =>
        {
            replay_redis
        }
        Some(url) => {
            let tls = stella_authn::replay::RedisTls::default();
            match stella_authn::redis::RedisConnection::check(url, &tls) {
                Ok(()) => Some(RevocationStoreConfig {
                    url: RedisUrl::new(url),
                    tls,
                    timeout: Duration::from_millis(500),
                    refresh,
                }),
                Err(why) => {
                    e.add(
                        "gateway.revocation.store",
                        format!("must be none or a redis url: {why}"),
                    );
                    None
                }
            }
        }
    };
    if when_stale == WhenStale::Refuse && store.is_none() {
        e.add(
            "gateway.revocation.when_stale",
            "refuse needs a shared store (gateway.revocation.store, or a redis replay store): a node's own list is never stale",
        );
    }
    let configured = file
        .and_then(|r| r.state_file.as_deref())
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let state_file = match configured {
        Some(path) => {
            let path = base.join(path);
            if path.is_dir() {
                e.add(
                    "gateway.revocation.state_file",
                    format!("{} is a folder", path.display()),
                );
                return RevocationConfig {
                    ssf,
                    when_stale,
                    stale_after,
                    ..RevocationConfig::default()
                };
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                if let Err(problem) = stella_authority::lkg::inspect_state_dir(parent) {
                    e.add("gateway.revocation.state_file", problem);
                }
            }
            Some(path)
        }
        None => authorities
            .iter()
            .find_map(|a| a.state_dir.as_ref())
            .map(|dir| dir.join(DEFAULT_STATE_FILE)),
    };
    RevocationConfig {
        state_file,
        store,
        ssf,
        when_stale,
        stale_after,
    }
}

/// Paths of the admin listener's own calls, which the receiver cannot take
/// (the last is `crate::keyset::PATH`, spelled out: `keyset` reads the
/// configuration, so the configuration cannot import it).
const ADMIN_PATHS: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/config",
    "/reload",
    "/revocations",
    "/.well-known/stella/keys.json",
];

fn ssf(
    e: &mut Errors,
    section: &SsfSection,
    authorities: &[AuthorityConfig],
    admin_listener: bool,
    base: &Path,
    sources: &mut Vec<PathBuf>,
) -> Option<SsfConfig> {
    use stella_authn::revocation::ssf::{Transmitter, Window};
    let errors_before = e.0.len();
    if !admin_listener {
        e.add(
            "gateway.revocation.ssf",
            "needs the admin listener (gateway.listeners.admin): transmitters push to it",
        );
    }
    let path = section
        .path
        .as_deref()
        .map(str::trim)
        .unwrap_or(DEFAULT_SSF_PATH)
        .to_owned();
    if !path.starts_with('/')
        || path.len() < 2
        || !path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    {
        e.add(
            "gateway.revocation.ssf.path",
            "must be a path such as /ssf/push: a / and visible ascii, no ? or #",
        );
    } else if ADMIN_PATHS
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        e.add(
            "gateway.revocation.ssf.path",
            format!("{path} is one of the admin listener's own calls"),
        );
    }
    let max_age = seconds(
        e,
        "gateway.revocation.ssf.max_age_seconds",
        section.max_age_seconds,
        600,
        (60, 86_400),
    );
    if section.transmitters.is_empty() {
        e.add(
            "gateway.revocation.ssf.transmitters",
            "name one transmitter at least",
        );
    }
    let authority = |key: &str, e: &mut Errors, value: &Option<String>| -> Option<String> {
        let value = value.as_deref().map(str::trim).filter(|v| !v.is_empty())?;
        if authorities.iter().any(|a| a.issuer == value) {
            Some(value.to_owned())
        } else {
            e.add(key, "must be the issuer of a configured Authority");
            None
        }
    };
    let mut transmitters: Vec<SsfTransmitterConfig> = Vec::new();
    for (i, t) in section.transmitters.iter().enumerate() {
        let key = |name: &str| format!("gateway.revocation.ssf.transmitters[{i}].{name}");
        let require_https = t.require_https.unwrap_or(true);
        let issuer = match t.issuer.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
            Some(issuer) => {
                if let Err(why) =
                    stella_authority::discovery::check_url("issuer", issuer, require_https)
                {
                    e.add(&key("issuer"), why.to_string());
                }
                if transmitters.iter().any(|o| o.settings.issuer == issuer) {
                    e.add(&key("issuer"), "names a transmitter already listed");
                }
                issuer.to_owned()
            }
            None => {
                e.add(&key("issuer"), "is required");
                String::new()
            }
        };
        let audience = match t
            .audience
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
        {
            Some(audience) => audience.to_owned(),
            None => {
                e.add(&key("audience"), "is required");
                String::new()
            }
        };
        let name = match t.name.as_deref().map(str::trim) {
            Some(name) => name.to_owned(),
            None => default_operator(&issuer),
        };
        if !stella_authn::revocation::valid_operator(&name) {
            e.add(
                &key("name"),
                "must be 1 to 64 letters, digits or . _ @ - (the default, ssf@<issuer host>, does not fit: set one)",
            );
        }
        let revoke_for = seconds(
            e,
            &key("revoke_for_seconds"),
            t.revoke_for_seconds,
            3_600,
            (60, stella_authn::revocation::MAX_LIFETIME_SECONDS),
        );
        let keys = match (&t.jwks_uri, &t.jwks_file) {
            (Some(url), None) => {
                let url = url.trim().to_owned();
                if let Err(why) =
                    stella_authority::discovery::check_url("jwks_uri", &url, require_https)
                {
                    e.add(&key("jwks_uri"), why.to_string());
                }
                Some(SsfKeys::Uri { url, require_https })
            }
            (None, Some(_)) => {
                existing_file(e, &key("jwks_file"), base, &t.jwks_file).and_then(|path| {
                    sources.push(path.clone());
                    let text = match std::fs::read_to_string(&path) {
                        Ok(text) => text,
                        Err(err) => {
                            e.add(
                                &key("jwks_file"),
                                format!("cannot read {}: {}", path.display(), err.kind()),
                            );
                            return None;
                        }
                    };
                    let parsed = stella_authority::http::parse_json_object(text.as_bytes())
                        .map_err(|why| why.to_string())
                        .and_then(|doc| {
                            stella_authority::KeySet::from_jwks(&doc).map_err(|why| why.to_string())
                        });
                    match parsed {
                        Ok(_) => Some(SsfKeys::File { path, jwks: text }),
                        Err(why) => {
                            e.add(&key("jwks_file"), format!("{}: {why}", path.display()));
                            None
                        }
                    }
                })
            }
            _ => {
                e.add(
                    &key("jwks_uri"),
                    "give exactly one of jwks_uri and jwks_file",
                );
                None
            }
        };
        let settings = Transmitter {
            issuer,
            audience,
            operator: name,
            revoke_for,
            opaque_subjects_of: authority(&key("opaque_subjects_of"), e, &t.opaque_subjects_of),
            email_subjects_of: authority(&key("email_subjects_of"), e, &t.email_subjects_of),
        };
        if let Some(keys) = keys {
            transmitters.push(SsfTransmitterConfig { settings, keys });
        }
    }
    (e.0.len() == errors_before).then_some(SsfConfig {
        path,
        window: Window {
            max_age,
            leeway: SSF_LEEWAY_SECONDS,
        },
        transmitters,
    })
}

/// `ssf@<host of the issuer>`: the operator name of a transmitter's
/// changes when none is configured.
fn default_operator(issuer: &str) -> String {
    let host = issuer
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_default();
    format!("ssf@{host}")
}

/// The list's file name in an Authority's `state_dir`.
pub const DEFAULT_STATE_FILE: &str = "revocations.json";

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn operator_tokens_are_found_by_value_with_their_names() {
        let text = format!("# operators\n\n{TOKEN}\nalice {TOKEN}-alice\n");
        let tokens = OperatorTokens::parse(&text).unwrap();
        assert_eq!(tokens.operator(TOKEN.as_bytes()), Some("operator"));
        assert_eq!(
            tokens.operator(format!("{TOKEN}-alice").as_bytes()),
            Some("alice")
        );
        assert_eq!(tokens.operator(b"wrong"), None);
        assert_eq!(tokens.operator(&TOKEN.as_bytes()[1..]), None);
        assert!(!format!("{tokens:?}").contains(TOKEN));
    }

    fn resolved(revocation: &str, dpop: &str) -> Result<RevocationConfig, Vec<ConfigError>> {
        let text = format!(
            "gateway:\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    authority:\n      \
             issuer: https://authority.example\n      audiences: [api]\n      state_dir: /tmp/stella-state\n    \
             dpop: {dpop}\n  revocation: {revocation}\n\
             router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n"
        );
        let env = std::collections::HashMap::new();
        let (file, errors) = crate::config::parse(&text, "test.yaml", &env);
        assert!(errors.is_empty(), "{errors:?}");
        super::super::resolve(&file.unwrap(), Path::new("."), &env).map(|c| c.revocation)
    }

    #[test]
    fn the_list_is_shared_through_the_replay_stores_redis_unless_told_otherwise() {
        let redis = "{replay_store: \"redis://:pw@cache:6379/2\"}";
        let shared = resolved("{}", redis).unwrap();
        let store = shared.store.expect("the replay store's redis");
        assert_eq!(store.url.as_str(), "redis://:pw@cache:6379/2");
        assert_eq!(store.refresh, Duration::from_secs(30));
        assert!(!format!("{store:?}").contains("pw"));
        assert_eq!(
            shared.state_file.as_deref(),
            Some(Path::new("/tmp/stella-state/revocations.json"))
        );
        assert!(resolved("{store: none}", redis).unwrap().store.is_none());
        assert!(
            resolved("{}", "{}").unwrap().store.is_none(),
            "memory replay store"
        );
        let other = resolved(
            "{store: \"redis://other:6380\", store_refresh_seconds: 5}",
            "{}",
        )
        .unwrap()
        .store
        .unwrap();
        assert_eq!(other.url.as_str(), "redis://other:6380");
        assert_eq!(other.refresh, Duration::from_secs(5));
        let errors =
            resolved("{store: \"http://nope\", store_refresh_seconds: 0}", "{}").unwrap_err();
        let paths: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            paths
                .iter()
                .any(|e| e.starts_with("gateway.revocation.store:")),
            "{paths:?}"
        );
        assert!(
            paths
                .iter()
                .any(|e| e.starts_with("gateway.revocation.store_refresh_seconds:")),
            "{paths:?}"
        );
    }

    #[test]
    fn a_node_keeps_its_last_copy_when_stale_unless_told_to_refuse_which_needs_a_shared_store() {
        let redis = "{replay_store: \"redis://cache:6379\"}";
        let default = resolved("{}", redis).unwrap();
        assert_eq!(default.when_stale, WhenStale::KeepLastCopy);
        assert_eq!(default.stale_after, Duration::from_secs(60));
        let refuse = resolved("{when_stale: refuse, stale_after_seconds: 10}", redis).unwrap();
        assert_eq!(refuse.when_stale, WhenStale::Refuse);
        assert_eq!(refuse.stale_after, Duration::from_secs(10));
        for (section, replay, key) in [
            (
                "{when_stale: refuse}",
                "{}",
                "gateway.revocation.when_stale:",
            ),
            (
                "{when_stale: refuse, store: none}",
                redis,
                "gateway.revocation.when_stale:",
            ),
            (
                "{when_stale: fail_open}",
                redis,
                "gateway.revocation.when_stale:",
            ),
            (
                "{stale_after_seconds: 1}",
                redis,
                "gateway.revocation.stale_after_seconds:",
            ),
        ] {
            let errors = resolved(section, replay).unwrap_err();
            assert!(
                errors.iter().any(|e| e.to_string().starts_with(key)),
                "{section}: {errors:?}"
            );
        }
    }

    #[test]
    fn a_shared_signals_receiver_resolves_with_its_defaults() {
        let text = "gateway:\n  listeners: {http: \"127.0.0.1:8080\", admin: \"127.0.0.1:9090\"}\n  \
             auth:\n    authority:\n      issuer: https://authority.example\n      audiences: [api]\n  \
             revocation:\n    ssf:\n      transmitters:\n        - issuer: https://authority.example\n          \
             jwks_uri: https://authority.example/ssf/jwks\n          audience: https://gw.example/ssf\n          \
             opaque_subjects_of: https://authority.example\n\
             router:\n  identity_envelope_signing_key: \"a-secret-value-that-is-at-least-32-bytes\"\n";
        let env = std::collections::HashMap::new();
        let (file, errors) = crate::config::parse(text, "test.yaml", &env);
        assert!(errors.is_empty(), "{errors:?}");
        let config = super::super::resolve(&file.unwrap(), Path::new("."), &env).unwrap();
        let ssf = config.revocation.ssf.expect("a receiver");
        assert_eq!(ssf.path, DEFAULT_SSF_PATH);
        assert_eq!(ssf.window.max_age, 600);
        let t = &ssf.transmitters[0];
        assert_eq!(t.settings.operator, "ssf@authority.example");
        assert_eq!(t.settings.revoke_for, 3600);
        assert_eq!(
            t.settings.opaque_subjects_of.as_deref(),
            Some("https://authority.example")
        );
        assert_eq!(t.settings.email_subjects_of, None);
        assert_eq!(
            t.keys,
            SsfKeys::Uri {
                url: "https://authority.example/ssf/jwks".into(),
                require_https: true
            }
        );
    }

    #[test]
    fn weak_or_malformed_token_files_are_refused_by_line_without_their_content() {
        for (text, line) in [
            ("short-token\n", "line 1"),
            (&format!("{TOKEN}\nbad!name {TOKEN}\n") as &str, "line 2"),
            (&format!("alice {}\u{7f}", &TOKEN[..31]) as &str, "line 1"),
        ] {
            let err = OperatorTokens::parse(text).unwrap_err();
            assert!(err.starts_with(line), "{err}");
            assert!(
                !err.contains("short-token") && !err.contains(TOKEN),
                "{err}"
            );
        }
        assert_eq!(
            OperatorTokens::parse("# nothing\n\n").unwrap_err(),
            "holds no token"
        );
    }
}
