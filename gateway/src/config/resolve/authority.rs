//! `gateway.auth.authority` and `gateway.auth.authorities`: the Authorities, their clients, introspection and claims.

use super::*;

/// One Authority section: `path` is where it is (for error messages),
/// `effective` its copy with defaults filled in.
pub(super) fn resolve_authority(
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
    let token_claims = token_claims(e, path, a, effective);
    // RFC 9068's client_id and jti, unless a token profile says where the
    // client is and whether jti is required.
    let required_claims = a.required_claims.clone().unwrap_or_else(|| {
        if token_claims.is_some() {
            Vec::new()
        } else {
            vec!["client_id".into(), "jti".into()]
        }
    });
    let leeway = setting(
        e,
        &at("leeway_seconds"),
        a.leeway_seconds,
        30,
        (0, 300),
        &mut effective.leeway_seconds,
    );
    let refresh = setting(
        e,
        &at("jwks_refresh_seconds"),
        a.jwks_refresh_seconds,
        300,
        (10, 86_400),
        &mut effective.jwks_refresh_seconds,
    );
    let cooldown = setting(
        e,
        &at("jwks_cooldown_seconds"),
        a.jwks_cooldown_seconds,
        10,
        (1, 3_600),
        &mut effective.jwks_cooldown_seconds,
    );
    let max_stale = setting(
        e,
        &at("jwks_max_stale_seconds"),
        a.jwks_max_stale_seconds,
        3_600,
        (0, 604_800),
        &mut effective.jwks_max_stale_seconds,
    );
    let timeout_ms = setting(
        e,
        &at("http_timeout_ms"),
        a.http_timeout_ms,
        2_000,
        (100, 60_000),
        &mut effective.http_timeout_ms,
    );
    let ca = a.ca_file.as_deref().map(str::trim).and_then(|file| {
        if file.is_empty() {
            e.add(&at("ca_file"), "must not be empty");
            return None;
        }
        let path = base.join(file);
        sources.push(path.clone());
        let problem = match std::fs::read(&path) {
            Ok(pem) => match CaRoots::from_pem(&pem) {
                Ok(roots) => return Some(roots),
                Err(problem) => problem,
            },
            Err(err) => format!("cannot be read: {}", err.kind()),
        };
        e.add(&at("ca_file"), format!("{}: {problem}", path.display()));
        None
    });
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
            persist_max_entries: seconds(
                e,
                &at("introspection.persist_max_entries"),
                i.persist_max_entries,
                10_000,
                (0, 1_000_000),
            ) as usize,
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
        let persist = seconds(
            e,
            &at("claims.persist_max_entries"),
            c.persist_max_entries,
            10_000,
            (0, 1_000_000),
        ) as usize;
        (!endpoint.is_empty()).then(|| ClaimsConfig {
            endpoint: endpoint.to_owned(),
            cache: Duration::from_secs(cache),
            refresh_ahead: Duration::from_secs(ahead),
            max_stale: Duration::from_secs(stale),
            persist_max_entries: persist,
        })
    });
    effective.require_https_metadata = Some(require_https_metadata);
    effective.algorithms = algorithms.clone();
    effective.required_claims = Some(required_claims.clone());
    if let (Some(i), Some(ei)) = (&introspection, effective.introspection.as_mut()) {
        ei.cache_seconds = Some(i.cache.as_secs());
        ei.inactive_cache_seconds = Some(i.inactive_cache.as_secs());
        ei.max_stale_seconds = Some(i.max_stale.as_secs());
        ei.persist_max_entries = Some(i.persist_max_entries as u64);
    }
    if let (Some(c), Some(ec)) = (&claims, effective.claims.as_mut()) {
        ec.cache_seconds = Some(c.cache.as_secs());
        ec.refresh_ahead_seconds = Some(c.refresh_ahead.as_secs());
        ec.max_stale_seconds = Some(c.max_stale.as_secs());
        ec.persist_max_entries = Some(c.persist_max_entries as u64);
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
        ca,
        state_dir,
        tenants,
        client,
        introspection,
        claims,
        token_claims,
    }
}

/// `token_profile` and `token_claims`: the profile's mapping with every key
/// `token_claims` sets put in its place; `None` when neither is set (the
/// strict RFC 9068 default, printed as before). The effective configuration
/// gets the whole mapping in effect, so `check` shows it.
fn token_claims(
    e: &mut Errors,
    path: &str,
    a: &AuthoritySection,
    effective: &mut AuthoritySection,
) -> Option<ClaimMapping> {
    let at = |k: &str| format!("{path}.{k}");
    if a.token_profile.is_none() && a.token_claims.is_none() {
        return None;
    }
    let profile = match a.token_profile.as_deref().map(str::trim) {
        None => TokenProfile::Rfc9068,
        Some(name) => TokenProfile::parse(name).unwrap_or_else(|| {
            let names: Vec<&str> = TokenProfile::ALL.iter().map(|p| p.name()).collect();
            e.add(
                &at("token_profile"),
                format!("must be one of {}", names.join(", ")),
            );
            TokenProfile::Rfc9068
        }),
    };
    let mut m = profile.mapping();
    let given = a.token_claims.clone().unwrap_or_default();
    let at = |k: &str| format!("{path}.token_claims.{k}");
    let paths = |e: &mut Errors, key: &str, texts: &[String]| -> Vec<ClaimPath> {
        let mut out: Vec<ClaimPath> = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match ClaimPath::parse(text.trim()) {
                Ok(p) if out.contains(&p) => {
                    e.add(&at(&format!("{key}[{i}]")), "is listed twice");
                }
                Ok(p) => out.push(p),
                Err(problem) => e.add(&at(&format!("{key}[{i}]")), problem.to_string()),
            }
        }
        out
    };
    if let Some(typ) = &given.typ {
        m.typ = Vec::new();
        for (i, t) in typ.iter().enumerate() {
            let t = t.trim();
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                e.add(&at(&format!("typ[{i}]")), "must be non-empty visible ascii");
            } else if m.typ.iter().any(|x| x.eq_ignore_ascii_case(t)) {
                e.add(&at(&format!("typ[{i}]")), "is listed twice");
            } else {
                m.typ.push(t.to_owned());
            }
        }
    }
    if let Some(require) = given.require_typ {
        m.require_typ = require;
    }
    if m.require_typ && m.typ.is_empty() {
        e.add(
            &at("typ"),
            "lists no value while require_typ is true: no token could pass",
        );
    }
    if let Some(scope) = &given.scope {
        m.scope = paths(e, "scope", scope);
    }
    if let Some(format) = &given.scope_format {
        match ScopeFormat::parse(format.trim()) {
            Some(f) => m.scope_format = f,
            None => e.add(&at("scope_format"), "must be string or array"),
        }
    }
    if let Some(roles) = &given.roles {
        m.roles = paths(e, "roles", roles);
    }
    if let Some(tenant) = &given.tenant {
        m.tenant = paths(e, "tenant", tenant);
    }
    if let Some(client_id) = &given.client_id {
        m.client_id = paths(e, "client_id", client_id);
        for (i, p) in m.client_id.iter().enumerate() {
            if p.uses_client_id() {
                e.add(
                    &at(&format!("client_id[{i}]")),
                    "cannot use {client_id}: it is what the path finds",
                );
            }
        }
        if client_id.is_empty() {
            e.add(
                &at("client_id"),
                "must name at least one claim: a token profile always needs the client",
            );
        }
    }
    if let Some(require) = given.require_jti {
        m.require_jti = require;
    }
    if let Some(require) = given.require_aud {
        m.require_aud = require;
    }
    if let Some(values) = &given.required_values {
        m.required_values = Vec::new();
        for (i, v) in values.iter().enumerate() {
            let claim = v.claim.as_deref().map(str::trim).unwrap_or_default();
            let value = v.value.as_deref().unwrap_or_default();
            let claim = match ClaimPath::parse(claim) {
                Ok(c) => Some(c),
                Err(problem) => {
                    e.add(
                        &at(&format!("required_values[{i}].claim")),
                        problem.to_string(),
                    );
                    None
                }
            };
            if value.is_empty() {
                e.add(&at(&format!("required_values[{i}].value")), "is required");
            }
            if let (Some(claim), false) = (claim, value.is_empty()) {
                m.required_values.push(RequiredValue {
                    claim,
                    value: value.to_owned(),
                });
            }
        }
    }
    let texts = |paths: &[ClaimPath]| paths.iter().map(|p| p.to_string()).collect();
    effective.token_profile = Some(profile.name().to_owned());
    effective.token_claims = Some(TokenClaimsSection {
        typ: Some(m.typ.clone()),
        require_typ: Some(m.require_typ),
        scope: Some(texts(&m.scope)),
        scope_format: Some(m.scope_format.name().to_owned()),
        roles: Some(texts(&m.roles)),
        tenant: Some(texts(&m.tenant)),
        client_id: Some(texts(&m.client_id)),
        require_jti: Some(m.require_jti),
        require_aud: Some(m.require_aud),
        required_values: Some(
            m.required_values
                .iter()
                .map(|v| RequiredValueSection {
                    claim: Some(v.claim.to_string()),
                    value: Some(v.value.clone()),
                })
                .collect(),
        ),
    });
    Some(m)
}

/// An absolute http(s) url; plain http only with require_https_metadata off.
pub(super) fn check_url(e: &mut Errors, path: &str, url: &str, require_https: bool) {
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
pub(super) fn client_credentials(
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
pub(super) fn check_authorities(e: &mut Errors, authorities: &[AuthorityConfig]) {
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

/// Every Authority (`authority`, the single-issuer case, and
/// `authorities`), and the verified-token cache's size.
pub(super) fn authorities(
    e: &mut Errors,
    file: &FileConfig,
    effective: &mut FileConfig,
    base: &Path,
    env: &dyn EnvSource,
    sources: &mut Vec<PathBuf>,
) -> (Vec<AuthorityConfig>, u64) {
    let mut authorities = Vec::new();
    let primary_set = file.gateway.auth.authority.issuer.is_some();
    if primary_set || file.gateway.auth.authorities.is_empty() {
        authorities.push(resolve_authority(
            e,
            "gateway.auth.authority",
            &file.gateway.auth.authority,
            &mut effective.gateway.auth.authority,
            base,
            env,
            sources,
        ));
    }
    for (i, a) in file.gateway.auth.authorities.iter().enumerate() {
        let path = format!("gateway.auth.authorities[{i}]");
        let resolved = resolve_authority(
            e,
            &path,
            a,
            &mut effective.gateway.auth.authorities[i],
            base,
            env,
            sources,
        );
        authorities.push(resolved);
    }
    check_authorities(e, &authorities);
    let token_cache_max_entries = setting(
        e,
        "gateway.auth.token_cache_max_entries",
        file.gateway.auth.token_cache_max_entries,
        100_000,
        (0, 10_000_000),
        &mut effective.gateway.auth.token_cache_max_entries,
    );

    (authorities, token_cache_max_entries)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::Path;

    fn resolve_in(dir: &Path, text: &str) -> Result<crate::config::Config, Vec<String>> {
        let (file, errors) = crate::config::parse(text, "test.yaml", &HashMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        super::super::resolve(&file.unwrap(), dir, &HashMap::new())
            .map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    fn yaml(ca_file: &str, second_ca_file: &str) -> String {
        format!(
            "gateway:\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    authority:\n      \
             issuer: https://authority.example\n      audiences: [api]\n      ca_file: {ca_file}\n    \
             authorities:\n      - {{issuer: https://other.example, audiences: [api], ca_file: {second_ca_file}}}\n\
             router:\n  identity_envelope_signing_key: a-secret-value-that-is-at-least-32-bytes\n"
        )
    }

    #[test]
    fn an_authority_ca_file_is_read_checked_by_key_path_and_watched() {
        let dir = std::env::temp_dir().join(format!("stella-authority-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=private authority ca"])
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .current_dir(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is installed");
        assert!(status.success());
        let pem = std::fs::read_to_string(dir.join("ca.pem")).unwrap();
        std::fs::write(dir.join("two.pem"), format!("{pem}{pem}")).unwrap();

        let resolved = resolve_in(&dir, &yaml("ca.pem", "two.pem")).unwrap();
        let counts: Vec<usize> = resolved
            .authorities
            .iter()
            .map(|a| a.ca.as_ref().map_or(0, |ca| ca.len()))
            .collect();
        assert_eq!(counts, [1, 2]);
        assert!(resolved.sources.contains(&dir.join("ca.pem")));
        assert!(resolved.sources.contains(&dir.join("two.pem")));
        let printed = crate::config::redacted_yaml(&resolved.effective);
        assert!(printed.contains("ca_file: ca.pem"), "{printed}");

        // Missing, not pem, a pem block that is no certificate: each said
        // under its key path, the content never quoted.
        std::fs::write(dir.join("text.pem"), "hello").unwrap();
        std::fs::write(
            dir.join("bad.pem"),
            "-----BEGIN CERTIFICATE-----\nc2VjcmV0\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let at = |f: &str| dir.join(f).display().to_string();
        let e = resolve_in(&dir, &yaml("missing.pem", "text.pem")).unwrap_err();
        assert_eq!(
            e,
            [
                format!(
                    "gateway.auth.authority.ca_file: {}: cannot be read: entity not found",
                    at("missing.pem")
                ),
                format!(
                    "gateway.auth.authorities[0].ca_file: {}: holds no pem certificate",
                    at("text.pem")
                ),
            ]
        );
        let e = resolve_in(&dir, &yaml("bad.pem", "\"\"")).unwrap_err();
        assert_eq!(
            e,
            [
                format!(
                    "gateway.auth.authority.ca_file: {}: certificate 1 is not usable as a root (not valid x.509)",
                    at("bad.pem")
                ),
                "gateway.auth.authorities[0].ca_file: must not be empty".to_owned(),
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
