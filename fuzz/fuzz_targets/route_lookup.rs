//! Route patterns, route tables and lookup (`routing::PathPattern::parse`,
//! `routing::RouteTable`, `policy::Policies::evaluate`).
//!
//! Input: a mode byte, then LF-separated lines `host`, `method`, `target`
//! (an empty host line means no `Host`). The target goes through
//! `split_path_query` and `normalize_path` as a request's would.
//!
//! - Mode byte even: looked up in, and decided by, the shipped policies
//!   (`policies/*.yaml`) for an anonymous caller.
//! - Mode byte odd: every further line is a route pattern; route `i` takes
//!   any method when `i` is even and `GET`/`POST` otherwise, and the host
//!   `api.example.test` when `i % 3 == 2`. The table built from the patterns
//!   that parse is looked up.
//!
//! Besides "never panics": a parsed pattern prints as text that parses to
//! the same pattern, and a wildcard-free one matches its own path; a
//! matched route matches the path and allows the method; "not found" means
//! no host-free route matches the path; "method not allowed" lists a sorted,
//! non-empty set without the method.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use stella_gateway::config::MissingAuthorization;
use stella_core::identity::Caller;
use stella_policy::{Policies, SourceFile};
use stella_routing::{
    normalize_path, split_path_query, Lookup, Method, NormalizedPath, PathPattern, PatternKind,
    Route, RouteSpec, RouteTable,
};

fn shipped() -> &'static Policies {
    static POLICIES: OnceLock<Policies> = OnceLock::new();
    POLICIES.get_or_init(|| {
        let files = [
            ("echo.yaml", include_str!("../../policies/echo.yaml")),
            (
                "echo-hybrid.yaml",
                include_str!("../../policies/echo-hybrid.yaml"),
            ),
            (
                "echo-legacy.yaml",
                include_str!("../../policies/echo-legacy.yaml"),
            ),
            ("tenants.yaml", include_str!("../../policies/tenants.yaml")),
        ]
        .map(|(name, text)| SourceFile::new(name, text));
        Policies::from_files(&files, None).expect("the shipped policies compile")
    })
}

fn allows<T>(route: &Route<T>, method: &str) -> bool {
    match route.methods() {
        None => true,
        Some(list) => list
            .iter()
            .any(|m| m.as_str() == method || (method == "HEAD" && m.as_str() == "GET")),
    }
}

fn check<T>(table: &RouteTable<T>, host: Option<&str>, method: &str, path: &NormalizedPath) {
    match table.lookup(host, method, path) {
        Lookup::Matched(route) => {
            assert!(
                route.pattern().matches(path),
                "matched a route whose pattern does not"
            );
            assert!(
                allows(route, method),
                "matched a route that does not allow {method:?}"
            );
        }
        Lookup::NotFound => {
            for route in table.iter() {
                assert!(
                    route.host().is_some() || !route.pattern().matches(path),
                    "not found, but {} matches",
                    route.id()
                );
            }
        }
        Lookup::MethodNotAllowed { allowed } => {
            assert!(!allowed.is_empty());
            assert!(allowed.windows(2).all(|w| w[0] < w[1]), "{allowed:?}");
            assert!(!allowed.contains(&method), "{method:?} in {allowed:?}");
        }
    }
}

fn check_pattern(text: &str) -> Option<PathPattern> {
    let pattern = PathPattern::parse(text).ok()?;
    let again = PathPattern::parse(pattern.as_str()).expect("a pattern's text parses");
    assert_eq!(again, pattern);
    let _ = pattern.specificity();
    if pattern.kind() == PatternKind::Exact {
        let path = normalize_path(pattern.as_str().as_bytes()).expect("an exact pattern is a path");
        assert!(
            pattern.matches(&path),
            "{text:?} does not match its own path"
        );
    }
    Some(pattern)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut lines = text.split('\n');
    let host = lines.next().filter(|h| !h.is_empty());
    let method = lines.next().unwrap_or("GET");
    let target = lines.next().unwrap_or("/");
    let (raw_path, _) = split_path_query(target.as_bytes());
    let path = normalize_path(raw_path).ok();

    if mode % 2 == 0 {
        let Some(path) = path else {
            return;
        };
        let policies = shipped();
        check(policies.routes(), host, method, &path);
        for on_missing in [
            MissingAuthorization::Deny,
            MissingAuthorization::RequireAuthenticated,
            MissingAuthorization::AllowAnonymous,
        ] {
            let evaluation = policies.evaluate(host, method, &path, &Caller::Anonymous, on_missing);
            let _ = (evaluation.status(), evaluation.reason());
        }
        return;
    }

    let get_post = vec![
        Method::parse("GET").expect("GET"),
        Method::parse("POST").expect("POST"),
    ];
    let specs: Vec<RouteSpec<usize>> = lines
        .enumerate()
        .filter_map(|(i, line)| {
            let pattern = check_pattern(line)?;
            Some(RouteSpec {
                id: format!("r{i}"),
                host: (i % 3 == 2).then(|| "api.example.test".to_owned()),
                pattern,
                methods: (i % 2 == 1).then(|| get_post.clone()),
                value: i,
            })
        })
        .collect();
    let _ = Method::parse(method);
    let Ok(table) = RouteTable::build(specs) else {
        return;
    };
    if let Some(path) = path {
        check(&table, host, method, &path);
    }
});
