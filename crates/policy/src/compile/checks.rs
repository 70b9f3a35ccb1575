//! The checks of one policy file's parts (service, tenant rules, routes,
//! identity bindings, requirements), each reporting every problem with its
//! key path.

use super::*;

/// Checks `service:`; returns the name routes should carry (also when it
/// is refused, so the routes are still checked).
pub(super) fn check_service(
    parsed: &PolicyFile,
    name: &str,
    fi: usize,
    files: &[SourceFile],
    services: Option<&[String]>,
    service_file: &mut BTreeMap<String, usize>,
    errors: &mut Vec<ConfigError>,
) -> Option<String> {
    let Some(service) = &parsed.service else {
        let service_key = at(name, "service");
        if errors.iter().any(|e| e.path == service_key) {
            // Present but refused; already reported.
        } else if parsed.routes.is_some() {
            errors.push(ConfigError::new(
                at(name, "service"),
                "is required in a file with routes",
            ));
        } else if parsed.tenants.is_none() {
            errors.push(ConfigError::new(
                name,
                "states no service, routes or tenants",
            ));
        }
        return None;
    };
    if service.trim().is_empty() {
        errors.push(ConfigError::new(at(name, "service"), "must not be empty"));
        return Some(service.clone());
    }
    if let Some(known) = services {
        if !known.iter().any(|s| s == service) {
            errors.push(ConfigError::new(
                at(name, "service"),
                "names no service of the gateway configuration (services[].name)",
            ));
        }
    }
    if let Some(&first) = service_file.get(service) {
        errors.push(ConfigError::new(
            at(name, "service"),
            format!(
                "is also the service of {}; keep one file per service",
                files[first].name
            ),
        ));
    } else {
        service_file.insert(service.clone(), fi);
    }
    Some(service.clone())
}

pub(super) fn check_tenant_rule(
    name: &str,
    key: &str,
    tenant: &str,
    rule: &Checked<file::FileTenantRule>,
    errors: &mut Vec<ConfigError>,
) -> Option<TenantRule> {
    let rule = match rule {
        Checked::Valid(r) => r,
        Checked::Invalid(problems) => {
            errors.extend(field_errors(name, key, problems.clone()));
            return None;
        }
    };
    if tenant.trim().is_empty() {
        errors.push(ConfigError::new(
            at(name, "tenants"),
            "has an empty tenant name",
        ));
        return None;
    }
    if rule.sender_constraint == SenderConstraint::None {
        errors.push(ConfigError::new(
            at(name, &format!("{key}.sender_constraint")),
            "must be dpop, mtls or any_bound (a tenant rule with none enforces nothing)",
        ));
        return None;
    }
    Some(TenantRule {
        sender_constraint: rule.sender_constraint,
        allow_bypass: rule.allow_bypass.unwrap_or(false),
        dpop_nonce: rule.dpop_nonce.unwrap_or(false),
    })
}

pub(super) fn check_route(
    route: &FileRoute,
    name: &str,
    prefix: &str,
    service: Option<&str>,
    errors: &mut Vec<ConfigError>,
) -> Option<RouteSpec<RouteTarget>> {
    let before = errors.len();
    let pattern = match PathPattern::parse(&route.path) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(ConfigError::new(
                at(name, &format!("{prefix}.path")),
                e.to_string(),
            ));
            None
        }
    };
    let methods = match &route.methods {
        None => None,
        Some(list) if list.is_empty() => {
            errors.push(ConfigError::new(
                at(name, &format!("{prefix}.methods")),
                "must not be empty; omit the key to allow any method",
            ));
            None
        }
        Some(list) => {
            let mut methods = Vec::with_capacity(list.len());
            for (mi, m) in list.iter().enumerate() {
                match Method::parse(m) {
                    Ok(m) => methods.push(m),
                    Err(e) => errors.push(ConfigError::new(
                        at(name, &format!("{prefix}.methods[{mi}]")),
                        e.to_string(),
                    )),
                }
            }
            Some(methods)
        }
    };
    let policy = match &route.policy {
        None => None,
        Some(p) => check_policy(p, name, &format!("{prefix}.policy"), errors),
    };
    let shadow = match &route.shadow {
        None => None,
        Some(p) => check_policy(p, name, &format!("{prefix}.shadow"), errors),
    };
    let identity_binding = match &route.identity_binding {
        None => None,
        Some(map) => check_binding(map, route, pattern.as_ref(), name, prefix, errors),
    };
    let (Some(pattern), Some(service)) = (pattern, service) else {
        return None;
    };
    if errors.len() > before {
        return None;
    }
    Some(RouteSpec {
        id: route.id.clone(),
        host: route.host.clone(),
        pattern,
        methods,
        value: RouteTarget {
            service: service.to_owned(),
            route_id: route.id.as_str().into(),
            policy,
            tenant_rules: Arc::new(TenantRules::new()),
            source: format!("{name} {prefix}"),
            identity_binding,
            shadow,
        },
    })
}

/// Checks `identity_binding` against the route's path pattern (`None` when
/// the pattern itself was refused: only the binding's own problems are
/// reported then) and policy.
pub(super) fn check_binding(
    map: &BTreeMap<String, String>,
    route: &FileRoute,
    pattern: Option<&PathPattern>,
    name: &str,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<IdentityBinding> {
    let before = errors.len();
    let key = format!("{prefix}.identity_binding");
    if map.is_empty() {
        errors.push(ConfigError::new(
            at(name, &key),
            "must not be empty; omit the key",
        ));
        return None;
    }
    if route
        .policy
        .as_ref()
        .is_some_and(|p| p.anonymous == Some(true))
    {
        errors.push(ConfigError::new(
            at(name, &key),
            "cannot be used on an anonymous route (policy.anonymous: true): a binding compares the path with the caller's identity, so the route needs an authenticated caller",
        ));
    }
    let spiffe_only = route
        .policy
        .as_ref()
        .is_some_and(|p| p.spiffe_ids.is_some());
    let mut params = Vec::with_capacity(map.len());
    for (param, source_text) in map {
        let param_key = file::join_path(&key, param);
        let source = IdentitySource::parse(source_text);
        if source.is_none() {
            errors.push(ConfigError::new(
                at(name, &param_key),
                format!(
                    "unknown identity source; expected one of {}",
                    IdentitySource::list()
                ),
            ));
        }
        if let Some(s) = source.filter(|s| s.from_token() && spiffe_only) {
            errors.push(ConfigError::new(
                at(name, &param_key),
                format!(
                    "{s} comes from an access token, but policy.spiffe_ids admits only spiffe workloads (certificate alone); use spiffe_path_last"
                ),
            ));
        }
        let Some(pattern) = pattern else { continue };
        let segment = match pattern.param_position(param) {
            Some(ParamPosition::Fixed(i)) => i,
            Some(ParamPosition::AfterDoubleStar) => {
                errors.push(ConfigError::new(
                    at(name, &param_key),
                    "is a parameter after '**' in the path pattern, so the segment it names is ambiguous; bind only parameters that come before any '**'",
                ));
                continue;
            }
            None => {
                let known: Vec<String> = pattern.params().map(|p| format!("{{{p}}}")).collect();
                errors.push(ConfigError::new(
                    at(name, &param_key),
                    if known.is_empty() {
                        "names no parameter of the path pattern, which has none (write one as {name})".to_owned()
                    } else {
                        format!(
                            "names no parameter of the path pattern (its parameters: {})",
                            known.join(", ")
                        )
                    },
                ));
                continue;
            }
        };
        if let Some(source) = source {
            params.push(BoundParam {
                name: param.as_str().into(),
                segment,
                source,
            });
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(IdentityBinding::new(params))
}

/// A checked, deduplicated list; `None` when absent or refused.
pub(super) fn check_list(
    list: &Option<Vec<String>>,
    name: &str,
    key: &str,
    check: fn(&str) -> Option<&'static str>,
    errors: &mut Vec<ConfigError>,
) -> Vec<String> {
    let Some(list) = list else {
        return Vec::new();
    };
    if list.is_empty() {
        errors.push(ConfigError::new(
            at(name, key),
            "must not be empty; omit the key instead",
        ));
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let problem = if entry.is_empty() {
            Some("must not be empty")
        } else {
            check(entry)
        };
        match problem {
            Some(problem) => {
                errors.push(ConfigError::new(at(name, &format!("{key}[{i}]")), problem))
            }
            None if !out.contains(entry) => out.push(entry.clone()),
            None => {}
        }
    }
    out
}

pub(super) fn any_text(_: &str) -> Option<&'static str> {
    None
}

pub(super) fn scope_text(s: &str) -> Option<&'static str> {
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must be one scope, without spaces")
    } else {
        None
    }
}

/// `spiffe://trust-domain/path`: a lowercase trust domain and a non-root
/// path, as the mTLS stage accepts them.
pub(super) fn spiffe_text(s: &str) -> Option<&'static str> {
    let ok = s.strip_prefix("spiffe://").is_some_and(|rest| {
        let (domain, path) = rest.split_once('/').unwrap_or((rest, ""));
        !domain.is_empty()
            && domain.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_')
            })
            && !path.is_empty()
            && path
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    });
    if ok {
        None
    } else {
        Some("must be a spiffe id: spiffe://trust-domain/path with a lowercase trust domain and a non-root path")
    }
}

pub(super) fn check_policy(
    p: &FilePolicy,
    name: &str,
    prefix: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Requirements> {
    let before = errors.len();
    let key = |k: &str| format!("{prefix}.{k}");
    let req = CallerRequirements {
        scopes_all: check_list(&p.scopes_all, name, &key("scopes_all"), scope_text, errors),
        scopes_any: check_list(&p.scopes_any, name, &key("scopes_any"), scope_text, errors),
        audiences_any: check_list(
            &p.audiences_any,
            name,
            &key("audiences_any"),
            any_text,
            errors,
        ),
        tenants: check_list(&p.tenants, name, &key("tenants"), any_text, errors),
        roles_any: check_list(&p.roles_any, name, &key("roles_any"), any_text, errors),
        claims: match &p.claims {
            None => BTreeMap::new(),
            Some(claims) if claims.is_empty() => {
                errors.push(ConfigError::new(
                    at(name, &key("claims")),
                    "must not be empty; omit the key instead",
                ));
                BTreeMap::new()
            }
            Some(claims) => {
                if claims.keys().any(String::is_empty) {
                    errors.push(ConfigError::new(
                        at(name, &key("claims")),
                        "has an empty claim name",
                    ));
                }
                claims.clone()
            }
        },
        spiffe_ids: check_list(&p.spiffe_ids, name, &key("spiffe_ids"), spiffe_text, errors),
        sender_constraint: p.sender_constraint.unwrap_or_default(),
        allow_bypass: p.allow_bypass.unwrap_or(false),
        dpop_nonce: p.dpop_nonce.unwrap_or(false),
    };

    // Which requirement keys are present, in file order, for messages.
    let mut present: Vec<&str> = Vec::new();
    if p.authenticated.is_some() {
        present.push("authenticated");
    }
    for (k, set) in [
        ("scopes_all", p.scopes_all.is_some()),
        ("scopes_any", p.scopes_any.is_some()),
        ("audiences_any", p.audiences_any.is_some()),
        ("tenants", p.tenants.is_some()),
        ("roles_any", p.roles_any.is_some()),
        ("claims", p.claims.is_some()),
        ("spiffe_ids", p.spiffe_ids.is_some()),
        (
            "sender_constraint",
            p.sender_constraint
                .is_some_and(|c| c != SenderConstraint::None),
        ),
    ] {
        if set {
            present.push(k);
        }
    }

    let anonymous = p.anonymous == Some(true);
    if anonymous && !present.is_empty() {
        errors.push(ConfigError::new(
            at(name, &key("anonymous")),
            format!(
                "cannot be combined with requirements (here: {}); a route is either open to anyone or has requirements",
                present.join(", ")
            ),
        ));
    }
    if p.authenticated == Some(false) {
        errors.push(ConfigError::new(
            at(name, &key("authenticated")),
            "false is not a requirement; write anonymous: true for a route open to anyone, or omit the key",
        ));
    }
    if req.allow_bypass && req.sender_constraint == SenderConstraint::None {
        errors.push(ConfigError::new(
            at(name, &key("allow_bypass")),
            "has no effect without a sender_constraint",
        ));
    }
    if !req.spiffe_ids.is_empty() && req.needs_token() {
        let token_keys: Vec<&str> = present
            .iter()
            .copied()
            .filter(|k| !matches!(*k, "authenticated" | "spiffe_ids"))
            .collect();
        errors.push(ConfigError::new(
            at(name, &key("spiffe_ids")),
            format!(
                "cannot be combined with token requirements (here: {}): a caller presents a spiffe certificate alone or an access token, never both",
                token_keys.join(", ")
            ),
        ));
    }
    if !anonymous && present.is_empty() && p.authenticated != Some(false) {
        errors.push(ConfigError::new(
            at(name, prefix),
            "states no requirement; write anonymous: true, authenticated: true or a requirement, or omit the block to let Router__OnMissingAuthorization decide",
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(if anonymous {
        Requirements::Anonymous
    } else {
        Requirements::Caller(req)
    })
}

/// Maps a table build error back to the file and route it came from.
pub(super) fn route_error(
    e: &RouteError,
    files: &[SourceFile],
    locations: &[(usize, usize)],
    ids: &HashMap<String, (usize, usize)>,
) -> ConfigError {
    let Some(&(fi, ri)) = locations.get(e.index()) else {
        return ConfigError::new("policies", e.to_string());
    };
    let name = files[fi].name.as_str();
    let route = format!("routes[{ri}]");
    match e {
        RouteError::InvalidId { .. } => {
            ConfigError::new(at(name, &format!("{route}.id")), e.to_string())
        }
        RouteError::DuplicateId { .. } => ConfigError::new(
            at(name, &format!("{route}.id")),
            "is also the id of another route",
        ),
        RouteError::InvalidHost { error, .. } => {
            ConfigError::new(at(name, &format!("{route}.host")), error.to_string())
        }
        RouteError::EmptyMethods { .. } | RouteError::DuplicateMethod { .. } => {
            ConfigError::new(at(name, &format!("{route}.methods")), e.to_string())
        }
        RouteError::Ambiguous { other, .. } => {
            let where_other = ids
                .get(other)
                .map(|&(of, or)| format!(" ({} routes[{or}])", files[of].name))
                .unwrap_or_default();
            ConfigError::new(
                at(name, &route),
                format!(
                    "has the same host, path pattern and an overlapping method as route {other}{where_other}"
                ),
            )
        }
    }
}
