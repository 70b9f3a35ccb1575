//! The route table: compiled once from config (and again on reload), then
//! asked per request which route a (host, method, normalized path) belongs
//! to.
//!
//! Choice rule, in order:
//! 1. host tier: routes for the exact request host, then routes with a
//!    `*.domain` wildcard host, then routes without a host; a tier with no
//!    route for the request falls through to the next;
//! 2. within a tier, pattern [`Specificity`] (most specific first), then
//!    pattern text, then route id, so the result never depends on config
//!    order;
//! 3. the first route in that order whose host, pattern and method all match
//!    wins. If some route matched host and path but none the method, the
//!    answer is "method not allowed" with the union of their methods.
//!
//! Lookup is a linear scan over the routes pre-sorted in that order. It does
//! not allocate (except to build the `allowed` list of a 405) and at ~1000
//! routes costs a few microseconds in the worst case (no match), which is
//! well inside the per-request budget; an index by host or first segment can
//! be added behind the same API if route counts grow by orders of magnitude.

use std::collections::BTreeMap;
use std::fmt;

use super::normalize::NormalizedPath;
use super::pattern::{PathPattern, Specificity};

/// Longest accepted route id. Ids end up in logs and metric labels.
pub const MAX_ROUTE_ID_LEN: usize = 64;

/// Longest accepted method name.
pub const MAX_METHOD_LEN: usize = 32;

/// An HTTP method name as written in config: a token of uppercase letters,
/// digits and `!#$%&'*+-.^_`|~` (RFC 9110 token without lowercase letters;
/// method names are case-sensitive and the registered ones are uppercase).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Method(Box<str>);

/// Why a method name from config was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    #[error("method name is empty")]
    Empty,
    #[error("method name is longer than {max} characters")]
    TooLong { max: usize },
    #[error("method name must be an uppercase token (for example get is written GET)")]
    NotUppercaseToken,
}

impl Method {
    pub fn parse(name: &str) -> Result<Self, MethodError> {
        if name.is_empty() {
            return Err(MethodError::Empty);
        }
        if name.len() > MAX_METHOD_LEN {
            return Err(MethodError::TooLong {
                max: MAX_METHOD_LEN,
            });
        }
        let ok = name.bytes().all(|b| {
            b.is_ascii_uppercase()
                || b.is_ascii_digit()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        });
        if !ok {
            return Err(MethodError::NotUppercaseToken);
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Method {
    type Err = MethodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A route as config describes it, before compilation.
#[derive(Debug, Clone)]
pub struct RouteSpec<T> {
    /// Unique, 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Exact host (case-insensitive, no port; the request's port is
    /// ignored) or `*.example.com` (exactly one label in place of `*`).
    /// `None` matches any host.
    pub host: Option<String>,
    pub pattern: PathPattern,
    /// `None` allows any method. A route allowing GET also serves HEAD.
    pub methods: Option<Vec<Method>>,
    pub value: T,
}

/// Why a route host from config was refused. Never echoes the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host is empty")]
    Empty,
    #[error("host must not carry a port (request ports are ignored when matching)")]
    HasPort,
    #[error("host must not end with '.'")]
    TrailingDot,
    #[error("host is longer than 253 characters")]
    TooLong,
    #[error("host must be dns labels of letters, digits, '-' and '_', an ipv4 address, or a bracketed ipv6 address")]
    Invalid,
    #[error("wildcard host must be '*.' followed by a domain ('*' stands for exactly one label)")]
    BadWildcard,
}

/// A compiled host matcher. Text is stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum HostMatch {
    /// `api.example.com`
    Exact(Box<str>),
    /// `*.example.com`, stored as `example.com`.
    Wildcard(Box<str>),
}

impl HostMatch {
    fn parse(text: &str) -> Result<Self, HostError> {
        if let Some(suffix) = text.strip_prefix("*.") {
            return match Self::parse_plain(suffix) {
                Ok(s) if !s.starts_with('[') => Ok(HostMatch::Wildcard(s)),
                Ok(_) => Err(HostError::BadWildcard),
                Err(HostError::Empty) => Err(HostError::BadWildcard),
                Err(e) => Err(e),
            };
        }
        if text.contains('*') {
            return Err(HostError::BadWildcard);
        }
        Self::parse_plain(text).map(HostMatch::Exact)
    }

    fn parse_plain(text: &str) -> Result<Box<str>, HostError> {
        if text.is_empty() {
            return Err(HostError::Empty);
        }
        if text.len() > 253 {
            return Err(HostError::TooLong);
        }
        if let Some(inner) = text.strip_prefix('[') {
            let Some(addr) = inner.strip_suffix(']') else {
                return if inner.contains("]:") {
                    Err(HostError::HasPort)
                } else {
                    Err(HostError::Invalid)
                };
            };
            let ok = !addr.is_empty()
                && addr.contains(':')
                && addr
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            return if ok {
                Ok(text.to_ascii_lowercase().into())
            } else {
                Err(HostError::Invalid)
            };
        }
        if text.contains(':') {
            return Err(HostError::HasPort);
        }
        if text.ends_with('.') {
            return Err(HostError::TrailingDot);
        }
        let labels_ok = text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !labels_ok {
            return Err(HostError::Invalid);
        }
        Ok(text.to_ascii_lowercase().into())
    }

    fn tier(&self) -> u8 {
        match self {
            HostMatch::Exact(_) => 0,
            HostMatch::Wildcard(_) => 1,
        }
    }

    /// `host` is already stripped of port and trailing dot; compared without
    /// allocating.
    fn matches(&self, host: &str) -> bool {
        match self {
            HostMatch::Exact(want) => host.eq_ignore_ascii_case(want),
            HostMatch::Wildcard(suffix) => {
                let Some(split) = host.len().checked_sub(suffix.len() + 1) else {
                    return false;
                };
                // `get` keeps a non-ASCII request host from panicking on a
                // char boundary; such a host matches nothing.
                match (
                    host.get(..split),
                    host.get(split..split + 1),
                    host.get(split + 1..),
                ) {
                    (Some(label), Some("."), Some(rest)) => {
                        !label.is_empty()
                            && !label.contains('.')
                            && rest.eq_ignore_ascii_case(suffix)
                    }
                    _ => false,
                }
            }
        }
    }
}

/// Strips the port and one trailing dot from a request `Host` /
/// `:authority` value. A value that is not a plausible host yields `None`,
/// so only host-less routes can match it.
fn request_host(raw: &str) -> Option<&str> {
    let (host, port) = if raw.starts_with('[') {
        let end = raw.find(']')?;
        (raw.get(..=end)?, raw.get(end + 1..)?)
    } else {
        match raw.find(':') {
            Some(i) => (raw.get(..i)?, raw.get(i..)?),
            None => (raw, ""),
        }
    };
    if let Some(digits) = port.strip_prefix(':') {
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    } else if !port.is_empty() {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    // Only the characters a route host can hold; anything else (userinfo,
    // non-ASCII, spaces) can match no host route anyway.
    let plausible = if host.starts_with('[') {
        host.bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'[' | b']' | b':' | b'.'))
    } else {
        host.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if host.is_empty() || !plausible {
        None
    } else {
        Some(host)
    }
}

/// A compiled route, handed back by [`RouteTable::lookup`].
#[derive(Debug)]
pub struct Route<T> {
    id: Box<str>,
    host: Option<HostMatch>,
    pattern: PathPattern,
    methods: Option<Box<[Method]>>,
    value: T,
}

impl<T> Route<T> {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The host as configured, lowercased (`*.example.com` for a wildcard).
    pub fn host(&self) -> Option<String> {
        self.host.as_ref().map(|h| match h {
            HostMatch::Exact(h) => h.to_string(),
            HostMatch::Wildcard(s) => format!("*.{s}"),
        })
    }

    pub fn pattern(&self) -> &PathPattern {
        &self.pattern
    }

    /// `None` means any method.
    pub fn methods(&self) -> Option<&[Method]> {
        self.methods.as_deref()
    }

    pub fn value(&self) -> &T {
        &self.value
    }

    fn tier(&self) -> u8 {
        self.host.as_ref().map_or(2, HostMatch::tier)
    }

    fn host_matches(&self, request_host: Option<&str>) -> bool {
        match (&self.host, request_host) {
            (None, _) => true,
            (Some(want), Some(host)) => want.matches(host),
            (Some(_), None) => false,
        }
    }

    /// Host and path match (the method is checked separately).
    fn serves(&self, request_host: Option<&str>, path: &NormalizedPath) -> bool {
        self.host_matches(request_host) && self.pattern.matches(path)
    }

    /// Method names are case-sensitive (RFC 9110 9.1); HEAD is served by a
    /// route that allows GET.
    fn allows(&self, method: &str) -> bool {
        match &self.methods {
            None => true,
            Some(allowed) => method_allowed(allowed, method),
        }
    }
}

/// The answer of [`RouteTable::lookup`].
#[derive(Debug)]
pub enum Lookup<'a, T> {
    Matched(&'a Route<T>),
    /// Some route matched host and path, none the method. `allowed` is
    /// sorted and deduplicated, includes HEAD when GET is allowed, and is
    /// ready for an `Allow` header.
    MethodNotAllowed {
        allowed: Vec<&'a str>,
    },
    NotFound,
}

/// Why one route was refused when building a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route id must be 1 to {max} characters of letters, digits, '.', '_' and '-'")]
    InvalidId { index: usize, max: usize },
    #[error("route id {id} is also used by route {first}")]
    DuplicateId {
        index: usize,
        id: String,
        first: usize,
    },
    #[error("route {id} host: {error}")]
    InvalidHost {
        index: usize,
        id: String,
        error: HostError,
    },
    #[error("route {id} has an empty method list; omit it to allow any method")]
    EmptyMethods { index: usize, id: String },
    #[error("route {id} lists method {method} twice")]
    DuplicateMethod {
        index: usize,
        id: String,
        method: String,
    },
    #[error(
        "route {id} has the same host, path pattern and an overlapping method as route {other}"
    )]
    Ambiguous {
        index: usize,
        id: String,
        other: String,
    },
}

impl RouteError {
    /// Position of the offending spec in the list given to
    /// [`RouteTable::build`], for the config layer's key path.
    pub fn index(&self) -> usize {
        match self {
            RouteError::InvalidId { index, .. }
            | RouteError::DuplicateId { index, .. }
            | RouteError::InvalidHost { index, .. }
            | RouteError::EmptyMethods { index, .. }
            | RouteError::DuplicateMethod { index, .. }
            | RouteError::Ambiguous { index, .. } => *index,
        }
    }
}

/// Every problem found while building a table, in spec order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_all(.0))]
pub struct RouteTableError(pub Vec<RouteError>);

fn display_all(errors: &[RouteError]) -> String {
    errors
        .iter()
        .map(|e| format!("routes[{}]: {e}", e.index()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Routes compiled for lookup. Immutable; a reload builds a new one.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// Sorted by (host tier, specificity descending, pattern text, id).
    routes: Vec<Route<T>>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ROUTE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `methods` lets `name` through: listed, or HEAD with GET listed.
fn method_allowed(methods: &[Method], name: &str) -> bool {
    methods
        .iter()
        .any(|m| m.as_str() == name || (name == "HEAD" && m.as_str() == "GET"))
}

/// Whether some request method would be allowed by both method lists
/// (`None` allows every method). HEAD implied by GET counts.
fn methods_overlap(a: Option<&[Method]>, b: Option<&[Method]>) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    a.iter().any(|m| method_allowed(b, m.as_str()))
        || (method_allowed(a, "HEAD") && method_allowed(b, "HEAD"))
}

/// Routes with the same host and pattern and an overlapping method: no
/// order between them would be anything but arbitrary.
fn ambiguities<T>(compiled: &[(usize, Route<T>)]) -> Vec<RouteError> {
    type Key<'a> = (Option<&'a HostMatch>, &'a str);
    let mut groups: BTreeMap<Key<'_>, Vec<(usize, &Route<T>)>> = BTreeMap::new();
    for (index, route) in compiled {
        groups
            .entry((route.host.as_ref(), route.pattern.shape()))
            .or_default()
            .push((*index, route));
    }
    let mut errors = Vec::new();
    for group in groups.values() {
        for (i, (index, route)) in group.iter().enumerate() {
            if let Some((_, other)) = group[..i]
                .iter()
                .find(|(_, other)| methods_overlap(route.methods(), other.methods()))
            {
                errors.push(RouteError::Ambiguous {
                    index: *index,
                    id: route.id.to_string(),
                    other: other.id.to_string(),
                });
            }
        }
    }
    errors
}

impl<T> RouteTable<T> {
    /// Compiles and checks `specs`, reporting every problem at once.
    pub fn build(specs: Vec<RouteSpec<T>>) -> Result<Self, RouteTableError> {
        let mut errors = Vec::new();
        let mut first_by_id: BTreeMap<String, usize> = BTreeMap::new();
        let mut compiled: Vec<(usize, Route<T>)> = Vec::with_capacity(specs.len());

        for (index, spec) in specs.into_iter().enumerate() {
            let RouteSpec {
                id,
                host,
                pattern,
                methods,
                value,
            } = spec;
            if !valid_id(&id) {
                errors.push(RouteError::InvalidId {
                    index,
                    max: MAX_ROUTE_ID_LEN,
                });
                continue;
            }
            if let Some(&first) = first_by_id.get(&id) {
                errors.push(RouteError::DuplicateId { index, id, first });
                continue;
            }
            first_by_id.insert(id.clone(), index);

            let host = match host.as_deref().map(HostMatch::parse).transpose() {
                Ok(h) => h,
                Err(error) => {
                    errors.push(RouteError::InvalidHost { index, id, error });
                    continue;
                }
            };
            if let Some(ms) = &methods {
                if ms.is_empty() {
                    errors.push(RouteError::EmptyMethods { index, id });
                    continue;
                }
                let mut sorted: Vec<&Method> = ms.iter().collect();
                sorted.sort();
                if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
                    let method = w[0].to_string();
                    errors.push(RouteError::DuplicateMethod { index, id, method });
                    continue;
                }
            }
            compiled.push((
                index,
                Route {
                    id: id.into_boxed_str(),
                    host,
                    pattern,
                    methods: methods.map(Vec::into_boxed_slice),
                    value,
                },
            ));
        }

        errors.extend(ambiguities(&compiled));

        if !errors.is_empty() {
            errors.sort_by_key(RouteError::index);
            return Err(RouteTableError(errors));
        }

        let mut keyed: Vec<(Specificity, Route<T>)> = compiled
            .into_iter()
            .map(|(_, r)| (r.pattern.specificity(), r))
            .collect();
        keyed.sort_by(|(sa, a), (sb, b)| {
            a.tier()
                .cmp(&b.tier())
                .then_with(|| sb.cmp(sa))
                .then_with(|| a.pattern.as_str().cmp(b.pattern.as_str()))
                .then_with(|| a.id.cmp(&b.id))
        });
        Ok(Self {
            routes: keyed.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// Finds the route for a request. `host` is the raw `Host` /
    /// `:authority` value (port allowed); `method` is compared
    /// case-sensitively. Allocation-free unless the answer is
    /// `MethodNotAllowed`.
    pub fn lookup(&self, host: Option<&str>, method: &str, path: &NormalizedPath) -> Lookup<'_, T> {
        let host = host.and_then(request_host);
        // A route whose pattern starts with another literal segment is
        // skipped after one comparison (most routes, in a table of many).
        let first = path.segments().next();
        let candidate = |r: &&Route<T>| {
            r.pattern.first_literal().is_none_or(|l| Some(l) == first) && r.serves(host, path)
        };
        let mut path_matched = false;
        for route in self.routes.iter().filter(candidate) {
            if route.allows(method) {
                return Lookup::Matched(route);
            }
            path_matched = true;
        }
        if !path_matched {
            return Lookup::NotFound;
        }
        let mut allowed: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(candidate) {
            // Every candidate has a method list here, or it would have matched.
            for m in route.methods().unwrap_or(&[]) {
                allowed.push(m.as_str());
                if m.as_str() == "GET" {
                    allowed.push("HEAD");
                }
            }
        }
        allowed.sort_unstable();
        allowed.dedup();
        Lookup::MethodNotAllowed { allowed }
    }

    /// Routes in lookup priority order.
    pub fn iter(&self) -> impl Iterator<Item = &Route<T>> {
        self.routes.iter()
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::normalize_path;

    use crate::normalize::path_for_tests as path;

    fn spec(id: &str, host: Option<&str>, pattern: &str, methods: &[&str]) -> RouteSpec<()> {
        let pattern = match PathPattern::parse(pattern) {
            Ok(p) => p,
            Err(e) => panic!("pattern {pattern:?} refused: {e}"),
        };
        let methods = if methods.is_empty() {
            None
        } else {
            let parsed: Result<Vec<Method>, _> = methods.iter().map(|m| Method::parse(m)).collect();
            match parsed {
                Ok(ms) => Some(ms),
                Err(e) => panic!("methods {methods:?} refused: {e}"),
            }
        };
        RouteSpec {
            id: id.to_owned(),
            host: host.map(str::to_owned),
            pattern,
            methods,
            value: (),
        }
    }

    fn table(specs: Vec<RouteSpec<()>>) -> RouteTable<()> {
        match RouteTable::build(specs) {
            Ok(t) => t,
            Err(e) => panic!("table refused: {e}"),
        }
    }

    /// The id of the matched route, or `404` / `405 GET,HEAD` for misses.
    fn route_for(t: &RouteTable<()>, host: Option<&str>, method: &str, raw: &str) -> String {
        match t.lookup(host, method, &path(raw)) {
            Lookup::Matched(r) => r.id().to_owned(),
            Lookup::MethodNotAllowed { allowed } => format!("405 {}", allowed.join(",")),
            Lookup::NotFound => "404".to_owned(),
        }
    }

    fn build_errors(specs: Vec<RouteSpec<()>>) -> Vec<RouteError> {
        match RouteTable::build(specs) {
            Ok(_) => Vec::new(),
            Err(RouteTableError(errors)) => errors,
        }
    }

    #[test]
    fn dot_dot_from_a_public_prefix_reaches_the_admin_route_never_the_public_one() {
        let t = table(vec![
            spec("admin", None, "/admin", &[]),
            spec("public", None, "/public/**", &[]),
        ]);
        for raw in [
            "/public/../admin",
            "/public/%2e%2e/admin",
            "/public/%2E./admin",
        ] {
            assert_eq!(path(raw).as_str(), "/admin");
            assert_eq!(route_for(&t, None, "GET", raw), "admin", "{raw:?}");
        }
        assert_eq!(route_for(&t, None, "GET", "/public/x"), "public");
        assert_eq!(
            normalize_path(b"/public%2F..%2Fadmin")
                .err()
                .map(|e| e.code()),
            Some("encoded_slash")
        );
    }

    #[test]
    fn path_matching_is_case_sensitive() {
        let t = table(vec![spec("admin", None, "/admin", &[])]);
        assert_eq!(route_for(&t, None, "GET", "/Admin"), "404");
        assert_eq!(route_for(&t, None, "GET", "/admin"), "admin");
    }

    #[test]
    fn most_specific_matching_route_wins_whatever_the_config_order() {
        let specs = || {
            vec![
                spec("catch-all", None, "/**", &[]),
                spec("api", None, "/api/**", &[]),
                spec("api-v1", None, "/api/v1/**", &[]),
                spec("api-star-items", None, "/api/*/items", &[]),
                spec("api-any-items", None, "/api/**/items", &[]),
                spec("api-v1-items", None, "/api/v1/items", &[]),
                spec("root", None, "/", &[]),
            ]
        };
        let cases: &[(&str, &str)] = &[
            ("/", "root"),
            ("/x", "catch-all"),
            ("/api", "api"),
            ("/apix", "catch-all"),
            ("/api/v2", "api"),
            ("/api/v1/items", "api-v1-items"),
            ("/api/v1/items/", "api-v1-items"),
            ("/api/v1/other", "api-v1"),
            ("/api/v2/items", "api-star-items"),
            ("/api/v2/x/items", "api-any-items"),
        ];
        let forward = table(specs());
        let mut reversed_specs = specs();
        reversed_specs.reverse();
        let reversed = table(reversed_specs);
        for (raw, want) in cases {
            assert_eq!(route_for(&forward, None, "GET", raw), *want, "{raw:?}");
            assert_eq!(route_for(&reversed, None, "GET", raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn routes_with_a_host_beat_host_less_routes() {
        let t = table(vec![
            spec("any-host", None, "/admin", &[]),
            spec("wildcard", Some("*.example.com"), "/**", &[]),
            spec("exact", Some("api.example.com"), "/**", &[]),
            spec("exact-admin-only", Some("admin.example.com"), "/admin", &[]),
        ]);
        let cases: &[(Option<&str>, &str, &str)] = &[
            (Some("api.example.com"), "/admin", "exact"),
            (Some("API.Example.COM:8443"), "/admin", "exact"),
            (Some("api.example.com."), "/admin", "exact"),
            (Some("www.example.com"), "/admin", "wildcard"),
            (Some("other.test"), "/admin", "any-host"),
            (None, "/admin", "any-host"),
            (Some("admin.example.com"), "/admin", "exact-admin-only"),
            // The exact-host tier has no route for this path: falls through.
            (Some("admin.example.com"), "/x", "wildcard"),
            (Some("other.test"), "/x", "404"),
        ];
        for (host, raw, want) in cases {
            assert_eq!(route_for(&t, *host, "GET", raw), *want, "{host:?} {raw:?}");
        }
    }

    #[test]
    fn wildcard_host_stands_for_exactly_one_label() {
        let t = table(vec![spec("w", Some("*.example.com"), "/**", &[])]);
        let cases: &[(&str, &str)] = &[
            ("a.example.com", "w"),
            ("A.EXAMPLE.COM:80", "w"),
            ("a.b.example.com", "404"),
            ("example.com", "404"),
            (".example.com", "404"),
            ("aexample.com", "404"),
            ("a.example.com.evil", "404"),
            ("\u{e9}.example.com", "404"),
            ("user@a.example.com", "404"),
            ("\u{e9}xample.com", "404"),
        ];
        for (host, want) in cases {
            assert_eq!(route_for(&t, Some(host), "GET", "/"), *want, "{host:?}");
        }
    }

    #[test]
    fn request_host_is_stripped_of_port_and_trailing_dot() {
        let cases: &[(&str, Option<&str>)] = &[
            ("example.com", Some("example.com")),
            ("example.com:8080", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("example.com.:443", Some("example.com")),
            ("[::1]:8080", Some("[::1]")),
            ("[::1]", Some("[::1]")),
            ("example.com:", None),
            ("example.com:http", None),
            ("example.com:123456", None),
            ("[::1]x", None),
            ("[::1", None),
            (":80", None),
            ("", None),
            ("user@example.com", None),
            ("exa mple.com", None),
        ];
        for (raw, want) in cases {
            assert_eq!(request_host(raw), *want, "{raw:?}");
        }
    }

    #[test]
    fn head_is_served_by_a_route_that_allows_get() {
        let t = table(vec![spec("read", None, "/items/**", &["GET"])]);
        assert_eq!(route_for(&t, None, "HEAD", "/items/1"), "read");
        assert_eq!(route_for(&t, None, "GET", "/items/1"), "read");
    }

    #[test]
    fn path_match_without_a_method_match_is_method_not_allowed() {
        let t = table(vec![
            spec("read", None, "/items/**", &["GET"]),
            spec("write", None, "/items/*", &["PUT", "DELETE"]),
            spec("other", None, "/other", &["POST"]),
        ]);
        assert_eq!(
            route_for(&t, None, "PATCH", "/items/1"),
            "405 DELETE,GET,HEAD,PUT"
        );
        assert_eq!(route_for(&t, None, "PATCH", "/items"), "405 GET,HEAD");
        assert_eq!(route_for(&t, None, "PATCH", "/nothing"), "404");
        // Method names are case-sensitive.
        assert_eq!(route_for(&t, None, "get", "/items"), "405 GET,HEAD");
    }

    #[test]
    fn most_specific_route_allowing_the_method_wins() {
        let t = table(vec![
            spec("users-read", None, "/users/**", &["GET"]),
            spec("users-admin-write", None, "/users/admin", &["POST"]),
        ]);
        assert_eq!(
            route_for(&t, None, "POST", "/users/admin"),
            "users-admin-write"
        );
        assert_eq!(route_for(&t, None, "GET", "/users/admin"), "users-read");
        assert_eq!(route_for(&t, None, "POST", "/users/bob"), "405 GET,HEAD");
    }

    #[test]
    fn same_pattern_with_disjoint_methods_is_accepted() {
        let t = table(vec![
            spec("read", None, "/items", &["GET"]),
            spec("write", None, "/items/", &["POST", "PUT"]),
        ]);
        assert_eq!(route_for(&t, None, "GET", "/items"), "read");
        assert_eq!(route_for(&t, None, "PUT", "/items"), "write");
    }

    #[test]
    fn duplicate_route_ids_are_refused() {
        let errors = build_errors(vec![spec("a", None, "/a", &[]), spec("a", None, "/b", &[])]);
        assert_eq!(
            errors,
            vec![RouteError::DuplicateId {
                index: 1,
                id: "a".into(),
                first: 0
            }]
        );
    }

    #[test]
    fn identical_host_pattern_and_overlapping_methods_are_ambiguous() {
        let ambiguous_pairs: &[(RouteSpec<()>, RouteSpec<()>)] = &[
            (spec("x", None, "/a", &[]), spec("y", None, "/a/", &[])),
            (
                spec("x", None, "/a/{id}", &[]),
                spec("y", None, "/a/*", &[]),
            ),
            (
                spec("x", None, "/a/{id}/b", &[]),
                spec("y", None, "/a/{other}/b", &[]),
            ),
            (spec("x", None, "/a", &["GET"]), spec("y", None, "/a", &[])),
            (
                spec("x", None, "/a", &["GET", "PUT"]),
                spec("y", None, "/a", &["PUT"]),
            ),
            (
                spec("x", None, "/a", &["GET"]),
                spec("y", None, "/a", &["HEAD"]),
            ),
            (
                spec("x", Some("API.example.com"), "/a/**", &[]),
                spec("y", Some("api.example.com"), "/a/**", &[]),
            ),
            (
                spec("x", Some("*.example.com"), "/a", &[]),
                spec("y", Some("*.EXAMPLE.com"), "/a", &[]),
            ),
        ];
        for (a, b) in ambiguous_pairs {
            let errors = build_errors(vec![a.clone(), b.clone()]);
            assert_eq!(
                errors,
                vec![RouteError::Ambiguous {
                    index: 1,
                    id: "y".into(),
                    other: "x".into()
                }],
                "{a:?} / {b:?}"
            );
        }
        let distinct_pairs: &[(RouteSpec<()>, RouteSpec<()>)] = &[
            (
                spec("x", None, "/a", &["GET"]),
                spec("y", None, "/a", &["POST"]),
            ),
            (
                spec("x", None, "/a", &[]),
                spec("y", Some("h.test"), "/a", &[]),
            ),
            (
                spec("x", Some("h.test"), "/a", &[]),
                spec("y", Some("*.h.test"), "/a", &[]),
            ),
            (spec("x", None, "/a", &[]), spec("y", None, "/a/**", &[])),
        ];
        for (a, b) in distinct_pairs {
            assert_eq!(
                build_errors(vec![a.clone(), b.clone()]),
                vec![],
                "{a:?} / {b:?}"
            );
        }
    }

    #[test]
    fn every_build_error_is_reported_at_once_in_spec_order() {
        let mut empty_methods = spec("empty-methods", None, "/e", &[]);
        empty_methods.methods = Some(Vec::new());
        let errors = build_errors(vec![
            spec("ok", None, "/ok", &[]),
            spec("bad id!", None, "/x", &[]),
            spec("bad-host", Some("h.test:8080"), "/x", &[]),
            empty_methods,
            spec("twice", None, "/t", &["GET", "GET"]),
            spec("ok", None, "/ok2", &[]),
            spec("clash", None, "/ok", &[]),
        ]);
        let indices: Vec<usize> = errors.iter().map(RouteError::index).collect();
        assert_eq!(indices, vec![1, 2, 3, 4, 5, 6]);
        assert!(matches!(
            errors[1],
            RouteError::InvalidHost {
                error: HostError::HasPort,
                ..
            }
        ));
        let shown = RouteTableError(errors).to_string();
        assert!(shown.starts_with("routes[1]: route id must be"), "{shown}");
        assert!(
            !shown.contains("bad id!"),
            "invalid ids are not echoed: {shown}"
        );
    }

    #[test]
    fn malformed_route_hosts_are_refused() {
        let cases: &[(&str, HostError)] = &[
            ("", HostError::Empty),
            ("h.test:80", HostError::HasPort),
            ("[::1]:80", HostError::HasPort),
            ("h.test.", HostError::TrailingDot),
            ("h..test", HostError::Invalid),
            ("h test", HostError::Invalid),
            ("h/test", HostError::Invalid),
            ("[zz]", HostError::Invalid),
            ("*", HostError::BadWildcard),
            ("*.", HostError::BadWildcard),
            ("a.*.test", HostError::BadWildcard),
            ("*a.test", HostError::BadWildcard),
            ("*.[::1]", HostError::BadWildcard),
        ];
        for (host, want) in cases {
            assert_eq!(HostMatch::parse(host), Err(*want), "{host:?}");
        }
        assert_eq!(
            HostMatch::parse("Api.Example.COM"),
            Ok(HostMatch::Exact("api.example.com".into()))
        );
        assert_eq!(
            HostMatch::parse("[::1]"),
            Ok(HostMatch::Exact("[::1]".into()))
        );
    }

    #[test]
    fn method_names_must_be_uppercase_tokens() {
        for ok in ["GET", "PROPFIND", "M-SEARCH", "X_CUSTOM2"] {
            assert_eq!(Method::parse(ok).as_ref().map(Method::as_str), Ok(ok));
        }
        let cases: &[(&str, MethodError)] = &[
            ("", MethodError::Empty),
            ("get", MethodError::NotUppercaseToken),
            ("Get", MethodError::NotUppercaseToken),
            ("GE T", MethodError::NotUppercaseToken),
            ("GET/", MethodError::NotUppercaseToken),
        ];
        for (name, want) in cases {
            assert_eq!(Method::parse(name), Err(*want), "{name:?}");
        }
        assert_eq!(
            Method::parse(&"A".repeat(MAX_METHOD_LEN + 1)),
            Err(MethodError::TooLong {
                max: MAX_METHOD_LEN
            })
        );
    }

    #[test]
    fn a_thousand_routes_resolve_to_the_right_one() {
        let specs: Vec<RouteSpec<()>> = (0..1000)
            .map(|i| spec(&format!("r{i}"), None, &format!("/svc{i}/**"), &["GET"]))
            .collect();
        let t = table(specs);
        assert_eq!(t.len(), 1000);
        assert_eq!(route_for(&t, None, "GET", "/svc999/x"), "r999");
        assert_eq!(route_for(&t, None, "GET", "/svc500"), "r500");
        assert_eq!(route_for(&t, None, "GET", "/svc1000"), "404");
        assert_eq!(route_for(&t, None, "POST", "/svc7/x"), "405 GET,HEAD");
    }

    #[test]
    fn routes_are_listed_in_lookup_priority_order() {
        let t = table(vec![
            spec("any", None, "/**", &[]),
            spec("hosted", Some("h.test"), "/**", &[]),
            spec("exact", None, "/a", &[]),
        ]);
        let ids: Vec<&str> = t.iter().map(Route::id).collect();
        assert_eq!(ids, vec!["hosted", "exact", "any"]);
        let hosted = t.iter().next().and_then(Route::host);
        assert_eq!(hosted.as_deref(), Some("h.test"));
    }
}
