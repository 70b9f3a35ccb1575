//! Policy files to [`Policies`]: reads every file, checks every route and
//! rule, and builds one route table over all services. Every problem is
//! reported at once as a [`ConfigError`] whose path is the file name and the
//! key path: `policies/echo.yaml: routes[2].path`. Values are never echoed.
//!
//! Rules beyond the file format:
//! - one file per service; a file with `routes` names its `service`, which
//!   must be a configured service when the service list is known;
//! - route ids are unique across files; two routes with the same host, path
//!   pattern and an overlapping method are ambiguous (see
//!   [`stella_routing::RouteTable::build`]);
//! - a policy block is `anonymous: true` alone, or at least one requirement;
//!   lists are never empty (an empty list would read as "no check"), and
//!   `allow_bypass` needs a `sender_constraint`;
//! - `spiffe_ids` excludes token requirements (a caller is a SPIFFE
//!   workload or a token holder, never both, so such a route could never
//!   be passed);
//! - a tenant rule's `sender_constraint` is not `none`; a tenant has at most
//!   one global rule;
//! - `identity_binding` names parameters of the route's path that no `**`
//!   precedes, with a known source, on a route that is not anonymous; a
//!   token source (`sub`, `client_id`, `tenant`) is not used with
//!   `spiffe_ids` (such a route could never be passed).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::binding::{BoundParam, IdentityBinding, IdentitySource};
use super::file::{self, Checked, FieldError, FilePolicy, FileRoute, PolicyFile};
use super::{
    CallerRequirements, Policies, Requirements, RouteTarget, SenderConstraint, TenantRule,
    TenantRules,
};
use crate::ConfigError;
use stella_routing::{
    Method, ParamPosition, PathPattern, RouteError, RouteSpec, RouteTable, RouteTableError,
};

/// A file to compile: the name used in messages, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> SourceFile {
        SourceFile {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// `file: key.path`, or the file alone.
pub(crate) fn at(file: &str, key: &str) -> String {
    if key.is_empty() {
        file.to_owned()
    } else {
        format!("{file}: {key}")
    }
}

pub(crate) fn field_errors(file: &str, prefix: &str, errors: Vec<FieldError>) -> Vec<ConfigError> {
    errors
        .into_iter()
        .map(|e| ConfigError::new(at(file, &file::join_path(prefix, &e.path)), e.problem))
        .collect()
}

/// Every `*.yaml` / `*.yml` file directly in `dir`, in name order.
pub fn read_yaml_files(dir: &Path) -> Result<Vec<SourceFile>, Vec<ConfigError>> {
    let shown = dir.display().to_string();
    let entries = std::fs::read_dir(dir).map_err(|e| {
        vec![ConfigError::new(
            &shown,
            format!("cannot read: {}", e.kind()),
        )]
    })?;
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                let yaml = path
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| e == "yaml" || e == "yml");
                if yaml && path.is_file() {
                    paths.push(path);
                }
            }
            Err(e) => errors.push(ConfigError::new(
                &shown,
                format!("cannot list: {}", e.kind()),
            )),
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(SourceFile::new(name, text)),
            Err(e) => errors.push(ConfigError::new(name, format!("cannot read: {}", e.kind()))),
        }
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

pub fn load_dir(dir: &Path, services: Option<&[String]>) -> Result<Policies, Vec<ConfigError>> {
    let files = read_yaml_files(dir)?;
    if files.is_empty() {
        return Err(vec![ConfigError::new(
            dir.display().to_string(),
            "has no policy files (*.yaml)",
        )]);
    }
    compile(&files, services)
}

/// A route that passed its own checks, waiting for the table build.
struct PendingRoute {
    file: usize,
    index: usize,
    spec: RouteSpec<RouteTarget>,
}

pub fn compile(
    files: &[SourceFile],
    services: Option<&[String]>,
) -> Result<Policies, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut global = TenantRules::new();
    let mut global_source: BTreeMap<String, usize> = BTreeMap::new();
    let mut service_rules: BTreeMap<String, TenantRules> = BTreeMap::new();
    let mut service_file: BTreeMap<String, usize> = BTreeMap::new();
    let mut ids: HashMap<String, (usize, usize)> = HashMap::new();
    let mut pending: Vec<PendingRoute> = Vec::new();

    for (fi, source) in files.iter().enumerate() {
        let name = source.name.as_str();
        let value = match file::parse_yaml(&source.text) {
            Ok(v) => v,
            Err(problem) => {
                errors.push(ConfigError::new(name, problem));
                continue;
            }
        };
        let (parsed, problems) = file::read_value::<PolicyFile>(value);
        errors.extend(field_errors(name, "", problems));
        let Some(parsed) = parsed else { continue };

        let service = check_service(
            &parsed,
            name,
            fi,
            files,
            services,
            &mut service_file,
            &mut errors,
        );

        if let Some(tenants) = &parsed.tenants {
            if tenants.is_empty() {
                errors.push(ConfigError::new(
                    at(name, "tenants"),
                    "must not be empty; omit the key",
                ));
            }
            for (tenant, rule) in tenants {
                let key = file::join_path("tenants", tenant);
                let Some(rule) = check_tenant_rule(name, &key, tenant, rule, &mut errors) else {
                    continue;
                };
                match &parsed.service {
                    Some(s) => service_rules
                        .entry(s.clone())
                        .or_default()
                        .add(tenant, rule),
                    None => {
                        if let Some(&first) = global_source.get(tenant) {
                            errors.push(ConfigError::new(
                                at(name, &key),
                                format!("is also a global tenant rule in {}", files[first].name),
                            ));
                            continue;
                        }
                        global_source.insert(tenant.clone(), fi);
                        global.add(tenant, rule);
                    }
                }
            }
        }

        let Some(routes) = &parsed.routes else {
            continue;
        };
        if routes.is_empty() {
            errors.push(ConfigError::new(
                at(name, "routes"),
                "must not be empty; omit the key",
            ));
        }
        for (ri, route) in routes.iter().enumerate() {
            let prefix = format!("routes[{ri}]");
            let route = match route {
                Checked::Valid(r) => r,
                Checked::Invalid(problems) => {
                    errors.extend(field_errors(name, &prefix, problems.clone()));
                    continue;
                }
            };
            // A duplicate is still checked, so its other problems show too.
            let duplicate = ids.get(&route.id).copied();
            if let Some((ff, fr)) = duplicate {
                errors.push(ConfigError::new(
                    at(name, &format!("{prefix}.id")),
                    format!("is also the id of {} routes[{fr}]", files[ff].name),
                ));
            } else {
                ids.insert(route.id.clone(), (fi, ri));
            }
            let spec = check_route(route, name, &prefix, service.as_deref(), &mut errors);
            if let (Some(spec), None) = (spec, duplicate) {
                pending.push(PendingRoute {
                    file: fi,
                    index: ri,
                    spec,
                });
            }
        }
    }

    // Tenant rules per service: the global ones plus the service's own.
    let mut shared: BTreeMap<String, Arc<TenantRules>> = BTreeMap::new();
    for p in &mut pending {
        let service = p.spec.value.service.clone();
        let rules = shared.entry(service.clone()).or_insert_with(|| {
            let mut rules = global.clone();
            if let Some(own) = service_rules.get(&service) {
                for (tenant, list) in own.iter() {
                    for rule in list {
                        rules.add(tenant, *rule);
                    }
                }
            }
            Arc::new(rules)
        });
        p.spec.value.tenant_rules = Arc::clone(rules);
    }

    let locations: Vec<(usize, usize)> = pending.iter().map(|p| (p.file, p.index)).collect();
    let specs: Vec<RouteSpec<RouteTarget>> = pending.into_iter().map(|p| p.spec).collect();
    let table = match RouteTable::build(specs) {
        Ok(table) => Some(table),
        Err(RouteTableError(route_errors)) => {
            for e in route_errors {
                errors.push(route_error(&e, files, &locations, &ids));
            }
            None
        }
    };
    match table {
        Some(table) if errors.is_empty() => Ok(Policies::new(table, global)),
        _ => Err(errors),
    }
}

mod checks;

use checks::*;

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(files: &[(&str, &str)], services: Option<&[&str]>) -> Vec<String> {
        let files: Vec<SourceFile> = files.iter().map(|(n, t)| SourceFile::new(*n, *t)).collect();
        let services: Option<Vec<String>> =
            services.map(|s| s.iter().map(|x| x.to_string()).collect());
        match compile(&files, services.as_deref()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    fn compiled(files: &[(&str, &str)]) -> Policies {
        let files: Vec<SourceFile> = files.iter().map(|(n, t)| SourceFile::new(*n, *t)).collect();
        match compile(&files, None) {
            Ok(p) => p,
            Err(errors) => panic!("policies refused: {errors:?}"),
        }
    }

    #[test]
    fn every_problem_of_every_file_is_reported_at_once_with_file_and_key_path() {
        let echo = r#"
service: echo
routes:
  - {id: ok, path: /ok}
  - {id: bad-path, path: "/a/%2e/b"}
  - {id: bad-method, path: /m, methods: [GET, post]}
  - {id: ok, path: /dup}
  - {id: both, path: /both, policy: {anonymous: true, scopes_all: [admin]}}
  - {id: empty-list, path: /e, policy: {scopes_any: []}}
  - {id: typo, path: /t, polcy: {}}
"#;
        let orders = r#"
service: orders
routes:
  - {id: clash, path: /ok}
"#;
        let errors = errors_of(
            &[
                ("policies/echo.yaml", echo),
                ("policies/orders.yaml", orders),
            ],
            Some(&["echo"]),
        );
        assert_eq!(
            errors,
            vec![
                "policies/echo.yaml: routes[1].path: path pattern has '%' at segment 2; patterns match decoded paths, write the character itself",
                "policies/echo.yaml: routes[2].methods[1]: method name must be an uppercase token (for example get is written GET)",
                "policies/echo.yaml: routes[3].id: is also the id of policies/echo.yaml routes[0]",
                "policies/echo.yaml: routes[4].policy.anonymous: cannot be combined with requirements (here: scopes_all); a route is either open to anyone or has requirements",
                "policies/echo.yaml: routes[5].policy.scopes_any: must not be empty; omit the key instead",
                "policies/echo.yaml: routes[6].polcy: unknown key",
                "policies/orders.yaml: service: names no service of the gateway configuration (services[].name)",
                "policies/orders.yaml: routes[0]: has the same host, path pattern and an overlapping method as route ok (policies/echo.yaml routes[0])",
            ]
        );
    }

    #[test]
    fn refused_values_are_never_echoed() {
        let secretish = "s3cr3t-looking-value";
        let text = format!(
            "service: {secretish}\nroutes:\n  - {{id: {secretish}!, host: \"{secretish}:1\", path: \"{secretish}\", methods: [\"{secretish}\"], policy: {{sender_constraint: {secretish}}}}}\n"
        );
        let errors = errors_of(&[("policies/x.yaml", &text)], Some(&["echo"]));
        assert!(errors.len() >= 2, "{errors:?}");
        for e in &errors {
            assert!(!e.contains(secretish), "{e}");
        }
    }

    #[test]
    fn a_policy_block_must_say_something_and_mean_it() {
        let text = r#"
service: echo
routes:
  - {id: empty, path: /a, policy: {}}
  - {id: not-auth, path: /b, policy: {authenticated: false}}
  - {id: bypass-alone, path: /c, policy: {authenticated: true, allow_bypass: true}}
  - {id: spiffe-and-scope, path: /d, policy: {spiffe_ids: ["spiffe://t.test/sa/x"], scopes_any: [a]}}
  - {id: bad-spiffe, path: /e, policy: {spiffe_ids: ["spiffe://Upper.test/sa/x", "spiffe://t.test"]}}
  - {id: spaced-scope, path: /f, policy: {scopes_all: ["a b", ""]}}
  - {id: empty-claims, path: /g, policy: {claims: {}}}
"#;
        let errors = errors_of(&[("p.yaml", text)], None);
        assert_eq!(
            errors,
            vec![
                "p.yaml: routes[0].policy: states no requirement; write anonymous: true, authenticated: true or a requirement, or omit the block to let Router__OnMissingAuthorization decide",
                "p.yaml: routes[1].policy.authenticated: false is not a requirement; write anonymous: true for a route open to anyone, or omit the key",
                "p.yaml: routes[2].policy.allow_bypass: has no effect without a sender_constraint",
                "p.yaml: routes[3].policy.spiffe_ids: cannot be combined with token requirements (here: scopes_any): a caller presents a spiffe certificate alone or an access token, never both",
                "p.yaml: routes[4].policy.spiffe_ids[0]: must be a spiffe id: spiffe://trust-domain/path with a lowercase trust domain and a non-root path",
                "p.yaml: routes[4].policy.spiffe_ids[1]: must be a spiffe id: spiffe://trust-domain/path with a lowercase trust domain and a non-root path",
                "p.yaml: routes[5].policy.scopes_all[0]: must be one scope, without spaces",
                "p.yaml: routes[5].policy.scopes_all[1]: must not be empty",
                "p.yaml: routes[6].policy.claims: must not be empty; omit the key instead",
            ]
        );
    }

    #[test]
    fn files_without_a_service_hold_only_tenant_rules() {
        let errors = errors_of(
            &[
                ("a.yaml", "routes:\n  - {id: x, path: /x}\n"),
                ("b.yaml", "# nothing\n"),
                ("c.yaml", "tenants:\n  t1: {sender_constraint: none}\n"),
                ("d.yaml", "tenants:\n  t2: {sender_constraint: dpop}\n"),
                ("e.yaml", "tenants:\n  t2: {sender_constraint: mtls}\n"),
                ("f.yaml", "service: echo\nroutes: []\n"),
                ("g.yaml", "service: echo\n"),
            ],
            None,
        );
        assert_eq!(
            errors,
            vec![
                "a.yaml: service: is required in a file with routes",
                "b.yaml: states no service, routes or tenants",
                "c.yaml: tenants.t1.sender_constraint: must be dpop, mtls or any_bound (a tenant rule with none enforces nothing)",
                "e.yaml: tenants.t2: is also a global tenant rule in d.yaml",
                "f.yaml: routes: must not be empty; omit the key",
                "g.yaml: service: is also the service of f.yaml; keep one file per service",
            ]
        );
    }

    #[test]
    fn invalid_yaml_and_wrong_types_name_the_file() {
        let errors = errors_of(
            &[
                ("a.yaml", "service: [unclosed\n"),
                ("b.yaml", "- a list\n"),
                (
                    "c.yaml",
                    "service: echo\nroutes:\n  - {id: x, path: /x, methods: GET}\n  - {id: y}\n",
                ),
            ],
            None,
        );
        assert_eq!(
            errors,
            vec![
                "a.yaml: is not valid yaml (line 2 column 1)",
                "b.yaml: wrong type, expected a mapping",
                "c.yaml: routes[0].methods: wrong type, expected a sequence",
                "c.yaml: routes[1].path: is required",
            ]
        );
    }

    #[test]
    fn route_table_problems_point_at_the_route_key() {
        let text = r#"
service: echo
routes:
  - {id: "bad id", path: /a}
  - {id: h, host: "h.test:80", path: /h}
  - {id: twice, path: /t, methods: [GET, GET]}
"#;
        let errors = errors_of(&[("p.yaml", text)], None);
        assert_eq!(
            errors,
            vec![
                "p.yaml: routes[0].id: route id must be 1 to 64 characters of letters, digits, '.', '_' and '-'",
                "p.yaml: routes[1].host: host must not carry a port (request ports are ignored when matching)",
                "p.yaml: routes[2].methods: route twice lists method GET twice",
            ]
        );
    }

    #[test]
    fn service_tenant_rules_add_to_global_ones_for_that_service_only() {
        let policies = compiled(&[
            (
                "echo.yaml",
                "service: echo\nroutes:\n  - {id: e, path: /e}\ntenants:\n  acme: {sender_constraint: dpop}\n",
            ),
            ("other.yaml", "service: other\nroutes:\n  - {id: o, path: /o}\n"),
            (
                "tenants.yaml",
                "tenants:\n  acme: {sender_constraint: any_bound, allow_bypass: true}\n",
            ),
        ]);
        let rules = |id: &str| -> Vec<TenantRule> {
            let route = policies.routes().iter().find(|r| r.id() == id);
            route.map_or_else(Vec::new, |r| {
                r.value().tenant_rules.for_tenant("acme").to_vec()
            })
        };
        let global = TenantRule {
            sender_constraint: SenderConstraint::AnyBound,
            allow_bypass: true,
            dpop_nonce: false,
        };
        let own = TenantRule {
            sender_constraint: SenderConstraint::Dpop,
            allow_bypass: false,
            dpop_nonce: false,
        };
        assert_eq!(rules("e"), vec![global, own]);
        assert_eq!(rules("o"), vec![global]);
        assert_eq!(policies.global_tenant_rules().for_tenant("acme"), &[global]);
    }

    #[test]
    fn a_compiled_route_carries_its_service_policy_and_source() {
        let policies = compiled(&[(
            "policies/echo.yaml",
            "service: echo\nroutes:\n  - {id: a, path: /a}\n  - {id: b, path: /b/**, methods: [GET], policy: {scopes_any: [r, w, r], claims: {level: 3}}}\n",
        )]);
        let b = policies.routes().iter().find(|r| r.id() == "b");
        let Some(b) = b else {
            panic!("route b missing")
        };
        let target = b.value();
        assert_eq!(target.service, "echo");
        assert_eq!(&*target.route_id, "b");
        assert_eq!(target.source, "policies/echo.yaml routes[1]");
        let Some(Requirements::Caller(req)) = &target.policy else {
            panic!("route b has requirements")
        };
        assert_eq!(req.scopes_any, vec!["r", "w"], "duplicates are dropped");
        assert_eq!(req.claims.get("level"), Some(&serde_json::json!(3)));
        let a = policies.routes().iter().find(|r| r.id() == "a");
        assert!(a.is_some_and(|a| a.value().policy.is_none()));
    }

    #[test]
    fn identity_bindings_are_checked_against_the_path_and_the_policy() {
        let text = r#"
service: echo
routes:
  - {id: empty, path: "/a/{eid}", identity_binding: {}}
  - {id: unknown-source, path: "/b/{eid}", identity_binding: {eid: spiffe_id}}
  - {id: no-param, path: /c/*, identity_binding: {eid: sub}}
  - {id: other-param, path: "/d/{eid}/{tid}", identity_binding: {agent: sub}}
  - {id: after-many, path: "/e/**/{eid}", identity_binding: {eid: sub}}
  - {id: anonymous, path: "/f/{eid}", identity_binding: {eid: sub}, policy: {anonymous: true}}
  - {id: token-with-spiffe, path: "/g/{eid}", identity_binding: {eid: client_id}, policy: {spiffe_ids: ["spiffe://t.test/x"]}}
  - {id: bad-path, path: "/h/{Eid}", identity_binding: {eid: nope}}
"#;
        let errors = errors_of(&[("p.yaml", text)], None);
        assert_eq!(
            errors,
            vec![
                "p.yaml: routes[0].identity_binding: must not be empty; omit the key",
                "p.yaml: routes[1].identity_binding.eid: unknown identity source; expected one of sub, client_id, tenant, spiffe_path_last",
                "p.yaml: routes[2].identity_binding.eid: names no parameter of the path pattern, which has none (write one as {name})",
                "p.yaml: routes[3].identity_binding.agent: names no parameter of the path pattern (its parameters: {eid}, {tid})",
                "p.yaml: routes[4].identity_binding.eid: is a parameter after '**' in the path pattern, so the segment it names is ambiguous; bind only parameters that come before any '**'",
                "p.yaml: routes[5].identity_binding: cannot be used on an anonymous route (policy.anonymous: true): a binding compares the path with the caller's identity, so the route needs an authenticated caller",
                "p.yaml: routes[6].identity_binding.eid: client_id comes from an access token, but policy.spiffe_ids admits only spiffe workloads (certificate alone); use spiffe_path_last",
                "p.yaml: routes[7].path: path pattern segment 2 is a parameter with an invalid name; write {name} with a name of lowercase letters, digits and '_', starting with a letter",
                "p.yaml: routes[7].identity_binding.eid: unknown identity source; expected one of sub, client_id, tenant, spiffe_path_last",
            ]
        );
    }

    #[test]
    fn a_compiled_binding_knows_the_segment_of_each_parameter() {
        let policies = compiled(&[(
            "echo.yaml",
            "service: echo\nroutes:\n  - {id: b, path: \"/t/{tenant}/agents/{agent}/**\", identity_binding: {agent: sub, tenant: tenant}}\n  - {id: plain, path: \"/p/{id}\"}\n",
        )]);
        let route = |id: &str| policies.routes().iter().find(|r| r.id() == id);
        let Some(binding) = route("b").and_then(|r| r.value().identity_binding.clone()) else {
            panic!("route b has a binding")
        };
        let got: Vec<(&str, usize, IdentitySource)> = binding
            .params()
            .iter()
            .map(|p| (&*p.name, p.segment, p.source))
            .collect();
        assert_eq!(
            got,
            vec![
                ("agent", 3, IdentitySource::Sub),
                ("tenant", 1, IdentitySource::Tenant)
            ]
        );
        assert!(route("plain").is_some_and(|r| r.value().identity_binding.is_none()));
    }
}
