//! The shell of `stella-gateway policy test` and `policy explain`: reads
//! files and arguments, calls the pure parts, prints. Exit codes as the rest
//! of the CLI: 0 success, 1 a decision test failed, 2 invalid files or
//! arguments.

use std::path::Path;

use super::binding::CallerIdentity;
use super::compile::{self, SourceFile};
use super::testing::{self, parse_caller, parse_missing_authorization};
use super::{Decision, Denial, Evaluation, Policies, Requirements};
use crate::{ConfigError, MissingAuthorization};
use stella_core::identity::Caller;
use stella_routing::{normalize_path, split_path_query, Method};

fn report(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
}

/// `policy test DIR`: policies from `DIR/*.yaml`, tests from
/// `DIR/tests/*.yaml`.
pub fn test_dir(dir: &Path) -> i32 {
    let policies = match Policies::load_dir(dir, None) {
        Ok(p) => p,
        Err(errors) => {
            report(&errors);
            return 2;
        }
    };
    let tests_dir = dir.join("tests");
    let files: Vec<SourceFile> = match compile::read_yaml_files(&tests_dir) {
        Ok(files) => files,
        Err(errors) => {
            report(&errors);
            return 2;
        }
    };
    if files.is_empty() {
        eprintln!(
            "{}: has no decision test files (*.yaml)",
            tests_dir.display()
        );
        return 2;
    }
    let tests = match testing::parse_tests(&files, &policies) {
        Ok(tests) => tests,
        Err(errors) => {
            report(&errors);
            return 2;
        }
    };
    let outcome = testing::run(&policies, &tests);
    print!("{}", outcome.render());
    if outcome.failed() > 0 {
        1
    } else {
        0
    }
}

/// Arguments of `policy explain`.
#[derive(Debug, Clone)]
pub struct ExplainArgs<'a> {
    pub policies: &'a Path,
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    /// A caller as in decision tests, in JSON: `"anonymous"`,
    /// `{"token": {...}, "method": "dpop"}`, `{"spiffe": "spiffe://..."}`.
    pub caller_json: Option<&'a str>,
    pub on_missing_authorization: &'a str,
}

/// `policy explain`: prints the route a request matches, its requirement
/// and the decision with its reason.
pub fn explain(args: &ExplainArgs<'_>) -> i32 {
    let mut errors = Vec::new();
    if let Err(e) = Method::parse(args.method) {
        errors.push(ConfigError::new("--method", e.to_string()));
    }
    let on_missing = parse_missing_authorization(args.on_missing_authorization);
    if on_missing.is_none() {
        errors.push(ConfigError::new(
            "--on-missing-authorization",
            "must be Deny, RequireAuthenticated or AllowAnonymous",
        ));
    }
    let caller = match args.caller_json {
        None => Some(Caller::Anonymous),
        Some(json) => match serde_json::from_str::<serde_yaml::Value>(json) {
            Ok(value) => parse_caller(value, "--caller-json", "", &mut errors),
            Err(e) => {
                errors.push(ConfigError::new(
                    "--caller-json",
                    format!(
                        "is not valid json (line {} column {})",
                        e.line(),
                        e.column()
                    ),
                ));
                None
            }
        },
    };
    let policies = match Policies::load_dir(args.policies, None) {
        Ok(p) => Some(p),
        Err(more) => {
            errors.extend(more);
            None
        }
    };
    let (Some(policies), Some(caller), Some(on_missing), true) =
        (policies, caller, on_missing, errors.is_empty())
    else {
        report(&errors);
        return 2;
    };
    print!(
        "{}",
        explanation(
            &policies,
            args.host,
            args.method,
            args.path,
            &caller,
            on_missing
        )
    );
    0
}

/// The text `policy explain` prints. Pure, for tests.
pub fn explanation(
    policies: &Policies,
    host: Option<&str>,
    method: &str,
    raw_path: &str,
    caller: &Caller,
    on_missing: MissingAuthorization,
) -> String {
    let mut out = String::new();
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<12}{v}\n"));
    line(
        "request:",
        &format!("{method} {raw_path} (host {})", host.unwrap_or("-")),
    );
    line("caller:", &describe_caller(caller));
    let (path, _query) = split_path_query(raw_path.as_bytes());
    let path = match normalize_path(path) {
        Ok(p) => p,
        Err(e) => {
            line("path:", &format!("refused: {e}"));
            line("decision:", &format!("deny 400 ({})", e.code()));
            return out;
        }
    };
    line("normalized:", path.as_str());
    match policies.evaluate(host, method, &path, caller, on_missing) {
        Evaluation::NotFound => {
            line("route:", "none");
            line("decision:", "deny 404 (not_found)");
        }
        Evaluation::MethodNotAllowed { allowed } => {
            line(
                "route:",
                &format!("none for this method; allowed: {}", allowed.join(", ")),
            );
            line("decision:", "deny 405 (method_not_allowed)");
        }
        Evaluation::Routed { route, decision } => {
            let target = route.value();
            let methods = route.methods().map_or_else(
                || "any".to_owned(),
                |m| m.iter().map(Method::as_str).collect::<Vec<_>>().join(", "),
            );
            line(
                "route:",
                &format!(
                    "{} (service {}; {}; host {}; path {}; methods {})",
                    route.id(),
                    target.service,
                    target.source,
                    route.host().as_deref().unwrap_or("any"),
                    route.pattern().as_str(),
                    methods
                ),
            );
            match &target.policy {
                Some(req) => line("policy:", &req.to_string()),
                None => line(
                    "policy:",
                    &format!(
                        "none; Router__OnMissingAuthorization={} decides",
                        on_missing.as_str()
                    ),
                ),
            }
            let tenant = caller.claims().and_then(|c| c.tenant());
            let anonymous_route = matches!(target.policy, Some(Requirements::Anonymous));
            if let Some(tenant) = tenant {
                let rules = target.tenant_rules.for_tenant(tenant);
                if !rules.is_empty() && !anonymous_route {
                    let shown: Vec<String> = rules
                        .iter()
                        .map(|r| {
                            format!(
                                "sender_constraint {}{}",
                                r.sender_constraint,
                                if r.allow_bypass {
                                    " (bypass allowed)"
                                } else {
                                    ""
                                }
                            )
                        })
                        .collect();
                    line("tenant:", &format!("{tenant}: {}", shown.join("; ")));
                }
            }
            if let Some(binding) = &target.identity_binding {
                line("binding:", &binding.to_string());
                let who = CallerIdentity::of(caller);
                for check in binding.explain(&path, &who) {
                    line(
                        "",
                        &format!(
                            "{{{}}} = {}: path segment {}, caller {} {}: {}",
                            check.param.name,
                            check.param.source,
                            shown(check.segment),
                            check.param.source,
                            shown(check.value),
                            if check.matched { "match" } else { "mismatch" }
                        ),
                    );
                }
            }
            line("decision:", &describe_decision(&decision));
            if let Some(shadow) = &target.shadow {
                line("shadow:", &format!("{shadow} (not enforced)"));
                let who = CallerIdentity::of(caller);
                if let Some(d) =
                    super::decide::decide_shadow(target, &path, caller, who, on_missing)
                {
                    let differs = if d.is_allow() == decision.is_allow() {
                        "same as enforced"
                    } else {
                        "differs from enforced"
                    };
                    line(
                        "shadow decision:",
                        &format!("{} ({differs})", describe_decision(&d)),
                    );
                }
            }
        }
    }
    out
}

/// A value in quotes (Rust escaping keeps control characters visible), or
/// `none`.
fn shown(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"))
}

fn describe_caller(caller: &Caller) -> String {
    match caller {
        Caller::Anonymous => "anonymous".to_owned(),
        Caller::Spiffe { spiffe_id } => format!("spiffe {spiffe_id}"),
        Caller::Token { claims, method } => format!(
            "token ({}) sub {}; client_id {}; tenant {}; scopes [{}]; roles [{}]; aud [{}]",
            method.as_str(),
            claims.subject().unwrap_or("-"),
            claims.client_id().unwrap_or("-"),
            claims.tenant().unwrap_or("-"),
            claims.scopes().join(", "),
            claims.roles().join(", "),
            claims.audiences().join(", ")
        ),
    }
}

fn describe_decision(decision: &Decision) -> String {
    let head = format!(
        "{} {} ({})",
        if decision.is_allow() { "allow" } else { "deny" },
        decision.status(),
        decision.reason()
    );
    match decision {
        Decision::Allow(a) if a.used_bypass() => {
            format!("{head}: the sender constraint was met only through the emergency bypass")
        }
        Decision::Allow(_) => head,
        Decision::Deny(Denial::InsufficientScope { required }) => {
            format!("{head}: required scopes {}", required.join(" "))
        }
        Decision::Deny(Denial::SenderConstraintRequired { needed }) => {
            format!("{head}: needs a sender-constrained token ({needed})")
        }
        Decision::Deny(Denial::AuthenticationRequired) => {
            format!("{head}: the route needs credentials the caller did not present")
        }
        Decision::Deny(Denial::Forbidden { reason }) => format!("{head}: {}", reason.describe()),
        Decision::Deny(Denial::IdentityMismatch) => format!(
            "{head}: a path parameter bound to the caller's identity names another identity"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use stella_core::identity::TokenClaims;

    fn policies() -> Policies {
        let text = r#"
service: echo
routes:
  - {id: admin, path: /admin/**, policy: {scopes_all: [admin]}}
  - {id: open, host: api.example.com, path: /open, methods: [GET], policy: {anonymous: true}}
  - {id: bare, path: /bare}
  - id: heartbeat
    path: /executors/{eid}/heartbeat
    identity_binding: {eid: spiffe_path_last}
    policy: {spiffe_ids: ["spiffe://stella.test/executors/e1"]}
tenants:
  acme: {sender_constraint: dpop}
"#;
        match Policies::from_files(&[SourceFile::new("p/echo.yaml", text)], None) {
            Ok(p) => p,
            Err(e) => panic!("policy refused: {e:?}"),
        }
    }

    fn explain(host: Option<&str>, method: &str, path: &str, caller: &Caller) -> String {
        explanation(
            &policies(),
            host,
            method,
            path,
            caller,
            MissingAuthorization::Deny,
        )
    }

    #[test]
    fn explanation_names_route_policy_tenant_rule_and_decision() {
        let acme = Caller::Token {
            claims: Arc::new(TokenClaims::for_tests("ann", &["admin"]).with_tenant("acme")),
            method: stella_envelope::AuthMethod::Bearer,
        };
        let text = explain(None, "GET", "/admin/./x", &acme);
        assert_eq!(
            text,
            "request:    GET /admin/./x (host -)\n\
             caller:     token (bearer) sub ann; client_id client; tenant acme; scopes [admin]; roles []; aud [api]\n\
             normalized: /admin/x\n\
             route:      admin (service echo; p/echo.yaml routes[0]; host any; path /admin/**; methods any)\n\
             policy:     authenticated; scopes_all [admin]\n\
             tenant:     acme: sender_constraint dpop\n\
             decision:   deny 401 (dpop_required): needs a sender-constrained token (dpop)\n"
        );
        let text = explain(None, "GET", "/bare", &Caller::Anonymous);
        assert!(
            text.contains("policy:     none; Router__OnMissingAuthorization=Deny decides\n"),
            "{text}"
        );
        assert!(
            text.contains("decision:   deny 403 (no_policy): the route has no policy and Router__OnMissingAuthorization is Deny\n"),
            "{text}"
        );
    }

    #[test]
    fn explanation_shows_the_binding_and_which_value_failed() {
        let e1 = Caller::Spiffe {
            spiffe_id: "spiffe://stella.test/executors/e1".into(),
        };
        let text = explain(None, "POST", "/executors/e%32/heartbeat", &e1);
        assert!(
            text.contains("normalized: /executors/e2/heartbeat\n"),
            "{text}"
        );
        assert!(
            text.contains("binding:    {eid} = spiffe_path_last\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "            {eid} = spiffe_path_last: path segment \"e2\", caller spiffe_path_last \"e1\": mismatch\n"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("decision:   deny 403 (identity_mismatch): a path parameter bound to the caller's identity names another identity\n"),
            "{text}"
        );
        let text = explain(None, "POST", "/executors/e1/heartbeat", &e1);
        assert!(text.contains("\"e1\": match\n"), "{text}");
        assert!(
            text.ends_with("decision:   allow 200 (requirements_met)\n"),
            "{text}"
        );
    }

    #[test]
    fn explanation_of_requests_that_reach_no_decision() {
        let anon = Caller::Anonymous;
        let text = explain(Some("api.example.com"), "POST", "/open", &anon);
        assert!(
            text.contains("route:      none for this method; allowed: GET, HEAD\n"),
            "{text}"
        );
        assert!(
            text.ends_with("decision:   deny 405 (method_not_allowed)\n"),
            "{text}"
        );
        let text = explain(Some("other.example.com"), "GET", "/open", &anon);
        assert!(
            text.ends_with("route:      none\ndecision:   deny 404 (not_found)\n"),
            "{text}"
        );
        let text = explain(None, "GET", "/a%2fb", &anon);
        assert!(
            text.contains("path:       refused: request path has an encoded slash\n"),
            "{text}"
        );
        assert!(
            text.ends_with("decision:   deny 400 (encoded_slash)\n"),
            "{text}"
        );
    }
}
