//! The YAML formats of `policies/*.yaml` (route policies) and
//! `policies/tests/*.yaml` (decision tests): serde structs that describe the
//! files and nothing else. Every struct refuses unknown keys; checking and
//! conversion into [`super::Policies`] happen in [`super::compile`] and
//! [`super::testing`].
//!
//! A file is read so that one run reports as much as it can: a key that is
//! unknown or holds a refused value is reported and dropped, and reading
//! goes on ([`read_value`]); list entries are read one by one
//! ([`Checked`]), so a typo in `routes[0]` does not hide one in
//! `routes[3]`. Problems are worded without the offending value: serde's
//! messages quote it, so they are rewritten here.

use std::collections::{BTreeMap, HashMap};

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_yaml::Value;

use super::SenderConstraint;

/// One policy file: the routes of one service, and tenant rules.
///
/// ```yaml
/// service: echo
/// routes:
///   - id: echo-items-read
///     host: api.example.com      # optional
///     path: /items/**
///     methods: [GET]             # optional: any method
///     policy:                    # optional: Router__OnMissingAuthorization
///       scopes_any: [echo.read, echo.write]
///   - id: executor-heartbeat
///     path: /executors/{eid}/heartbeat
///     identity_binding: {eid: spiffe_path_last}   # optional
/// tenants:
///   high-assurance: {sender_constraint: mtls}
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    /// The service the routes forward to (`services[].name` in the gateway
    /// config). Required with `routes`; a file without it holds global
    /// tenant rules only.
    pub service: Option<String>,
    pub routes: Option<Vec<Checked<FileRoute>>>,
    pub tenants: Option<BTreeMap<String, Checked<FileTenantRule>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRoute {
    /// Unique across all files; 1 to 64 of `A-Z a-z 0-9 . _ -`.
    pub id: String,
    /// Exact host or `*.domain`; absent: any host.
    pub host: Option<String>,
    /// A [`stella_routing::PathPattern`]: `/exact`, `/prefix/**`, globs with
    /// `*` and `**`, named parameters `{name}`.
    pub path: String,
    /// Absent: any method. GET also serves HEAD.
    pub methods: Option<Vec<String>>,
    /// Absent: `Router__OnMissingAuthorization` decides.
    pub policy: Option<FilePolicy>,
    /// A policy evaluated beside `policy` and never enforced: its decision
    /// is only counted and logged, to see what it would deny first.
    pub shadow: Option<FilePolicy>,
    /// `{param: source}`: each `{param}` of `path` must equal the caller's
    /// identity value from `source` (`sub`, `client_id`, `tenant`,
    /// `spiffe_path_last`); see [`super::binding`].
    pub identity_binding: Option<BTreeMap<String, String>>,
    /// What `stella-gateway smoke` sends to this route and expects; the
    /// gateway itself ignores it.
    pub smoke: Option<FileSmoke>,
}

/// A route's `smoke:` block (all optional).
///
/// ```yaml
/// smoke: {path: /items/1, method: GET, profile: reader, status: 200, anonymous_status: 401}
/// ```
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSmoke {
    /// Default: derived from the route's pattern.
    pub path: Option<String>,
    /// Default: the route's first method, else GET.
    pub method: Option<String>,
    /// The credential profile of the credentialed probe.
    pub profile: Option<String>,
    /// Expected with the profile's credentials; default any 2xx.
    pub status: Option<u16>,
    /// Expected without credentials; default 401 (any 2xx on anonymous
    /// routes).
    pub anonymous_status: Option<u16>,
}

/// A route's policy block: `anonymous: true`, or requirements that must all
/// hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePolicy {
    pub anonymous: Option<bool>,
    pub authenticated: Option<bool>,
    pub scopes_all: Option<Vec<String>>,
    pub scopes_any: Option<Vec<String>>,
    pub audiences_any: Option<Vec<String>>,
    pub tenants: Option<Vec<String>>,
    pub roles_any: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
    pub spiffe_ids: Option<Vec<String>>,
    pub sender_constraint: Option<SenderConstraint>,
    pub allow_bypass: Option<bool>,
    /// DPoP proofs on this route must carry a fresh server nonce.
    pub dpop_nonce: Option<bool>,
}

/// `tenants.<name>`: what callers of that tenant must prove.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTenantRule {
    pub sender_constraint: SenderConstraint,
    pub allow_bypass: Option<bool>,
    /// DPoP proofs of this tenant's callers must carry a server nonce.
    pub dpop_nonce: Option<bool>,
}

/// One decision test; a test file is a list of them.
///
/// ```yaml
/// - name: anonymous caller cannot reach admin through a public prefix
///   request: {method: GET, path: /public/../admin/x}
///   caller: anonymous
///   on_missing_authorization: RequireAuthenticated   # optional
///   expect: {decision: deny, status: 401, route: echo-admin, reason: authentication_required}
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTestCase {
    pub name: String,
    pub request: FileRequest,
    /// `anonymous`, `{token: {...}, method: ...}` or `{spiffe: ...}`; read
    /// by [`super::testing::parse_caller`].
    pub caller: Value,
    pub on_missing_authorization: Option<String>,
    pub expect: FileExpect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRequest {
    pub method: String,
    /// Raw request target path (a query is split off); normalized by
    /// [`stella_routing::normalize_path`] as the proxy does.
    pub path: String,
    pub host: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileExpect {
    pub decision: FileDecision,
    pub status: Option<u16>,
    pub route: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileDecision {
    Allow,
    Deny,
}

/// `caller: {token: {...}, method: dpop}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileTokenCaller {
    pub token: FileToken,
    /// Default `bearer`.
    pub method: Option<FileAuthMethod>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileToken {
    pub sub: Option<String>,
    /// Default `client`.
    pub client_id: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub tenant: Option<String>,
    pub roles: Option<Vec<String>>,
    pub aud: Option<Vec<String>>,
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
}

/// How the token's sender constraint was proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileAuthMethod {
    Bearer,
    Dpop,
    Mtls,
    Bypass,
}

/// `caller: {spiffe: spiffe://trust.domain/path}`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpiffeCaller {
    pub spiffe: String,
}

/// One problem, at a key path relative to the value being read (empty for
/// the value itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub problem: String,
}

/// A list entry or map value read on its own: a problem in it is recorded
/// here instead of failing the whole file.
#[derive(Debug)]
pub enum Checked<T> {
    Valid(T),
    Invalid(Vec<FieldError>),
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Checked<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(match read_value(value) {
            (Some(v), errors) if errors.is_empty() => Checked::Valid(v),
            (_, errors) => Checked::Invalid(errors),
        })
    }
}

/// `prefix.rel`, `prefix[0]`, or either alone.
pub fn join_path(prefix: &str, rel: &str) -> String {
    match (prefix.is_empty(), rel.is_empty()) {
        (_, true) => prefix.to_owned(),
        (true, false) => rel.to_owned(),
        (false, false) if rel.starts_with('[') => format!("{prefix}{rel}"),
        (false, false) => format!("{prefix}.{rel}"),
    }
}

/// Parses YAML text into a tree. An empty document is an empty mapping. The
/// error names only the position: the parser's own message can quote the
/// file.
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    stella_core::yaml::parse(text).map_err(|e| match e.at {
        Some((line, column)) => format!("is not valid yaml (line {line} column {column})"),
        None => "is not valid yaml".to_owned(),
    })
}

/// Upper bound on keys dropped from one value before giving up.
const MAX_DROPPED_KEYS: usize = 256;

/// Reads `value` as `T`, reporting as many problems as it can: a key that
/// is unknown, or whose value is refused, is reported, dropped, and reading
/// is retried. A missing required key ends the attempt.
///
/// Returns every problem found and the value read once the bad keys were
/// dropped. With any problem that value is incomplete (a dropped key reads
/// as absent): callers use it only to look for further problems.
///
/// Problems come in document order, whatever order serde met them in.
pub fn read_value<T: DeserializeOwned>(value: Value) -> (Option<T>, Vec<FieldError>) {
    let mut order = HashMap::new();
    document_order(&value, "", &mut order);
    let (read, mut errors) = read_dropping::<T>(value);
    errors.sort_by_key(|e| position(&order, &e.path));
    (read, errors)
}

/// Numbers every key path of `value` in document order.
fn document_order(value: &Value, path: &str, order: &mut HashMap<String, usize>) {
    let next = order.len();
    order.entry(path.to_owned()).or_insert(next);
    match value {
        Value::Mapping(map) => {
            for (k, v) in map {
                if let Some(k) = k.as_str() {
                    document_order(v, &join_path(path, k), order);
                }
            }
        }
        Value::Sequence(items) => {
            for (i, v) in items.iter().enumerate() {
                document_order(v, &join_path(path, &format!("[{i}]")), order);
            }
        }
        _ => {}
    }
}

/// The position of `path`, or of its longest prefix in the document (a
/// missing key sorts with its parent).
fn position(order: &HashMap<String, usize>, path: &str) -> usize {
    let mut p = path;
    loop {
        if let Some(&n) = order.get(p) {
            return n;
        }
        match p.rfind(['.', '[']) {
            Some(i) => p = &p[..i],
            None => return order.get("").copied().unwrap_or(0),
        }
    }
}

fn read_dropping<T: DeserializeOwned>(mut value: Value) -> (Option<T>, Vec<FieldError>) {
    use serde_path_to_error::Segment;
    let mut errors: Vec<FieldError> = Vec::new();
    for _ in 0..MAX_DROPPED_KEYS {
        let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(v) => return (Some(v), errors),
            Err(e) => e,
        };
        let mut segments: Vec<Segment> = e.path().iter().cloned().collect();
        let message = e.into_inner().to_string();
        if let Some(field) = quoted_name(&message, "unknown field `") {
            // The path may or may not already end with the unknown key.
            if !matches!(segments.last(), Some(Segment::Map { key }) if *key == field) {
                segments.push(Segment::Map { key: field });
            }
            errors.push(FieldError {
                path: display_path(&segments),
                problem: "unknown key".to_owned(),
            });
        } else {
            let problem = describe(&display_path(&segments), &message);
            let missing = message.starts_with("missing field `");
            // A key dropped earlier for a bad value now reads as missing:
            // already reported.
            if !(missing && errors.iter().any(|e| e.path == problem.path)) {
                errors.push(problem);
            }
            if missing {
                return (None, errors);
            }
        }
        // Drop the innermost key on the path (never a list entry: that
        // would shift the indexes of the ones after it).
        let Some(at) = segments
            .iter()
            .rposition(|s| matches!(s, Segment::Map { .. }))
        else {
            return (None, errors);
        };
        let Some(Segment::Map { key }) = segments.get(at) else {
            return (None, errors);
        };
        let key = key.clone();
        if !remove_key(&mut value, &segments[..at], &key) {
            return (None, errors);
        }
    }
    errors.push(FieldError {
        path: String::new(),
        problem: format!("has more than {MAX_DROPPED_KEYS} bad keys"),
    });
    (None, errors)
}

fn display_path(segments: &[serde_path_to_error::Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        match s {
            serde_path_to_error::Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                out = join_path(&out, key);
            }
            serde_path_to_error::Segment::Unknown => out = join_path(&out, "?"),
        }
    }
    out
}

/// The name between `prefix` and the next backtick.
fn quoted_name(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    Some(rest[..end].to_owned())
}

fn remove_key(value: &mut Value, parent: &[serde_path_to_error::Segment], key: &str) -> bool {
    let mut node = value;
    for s in parent {
        node = match (s, node) {
            (serde_path_to_error::Segment::Seq { index }, Value::Sequence(items)) => {
                match items.get_mut(*index) {
                    Some(n) => n,
                    None => return false,
                }
            }
            (serde_path_to_error::Segment::Map { key }, Value::Mapping(map)) => {
                match map.get_mut(key.as_str()) {
                    Some(n) => n,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match node {
        Value::Mapping(map) => map.remove(key).is_some(),
        _ => false,
    }
}

/// Rewrites a serde message without the value it quotes.
fn describe(path: &str, message: &str) -> FieldError {
    let expected = |rest: &str| {
        rest.split_once(", expected ")
            .map(|(_, e)| plain_expected(e))
            .unwrap_or_default()
    };
    if let Some(field) = quoted_name(message, "missing field `") {
        return FieldError {
            path: join_path(path, &field),
            problem: "is required".to_owned(),
        };
    }
    if let Some(field) = quoted_name(message, "duplicate field `") {
        return FieldError {
            path: join_path(path, &field),
            problem: "appears twice".to_owned(),
        };
    }
    let problem = if let Some(rest) = message.strip_prefix("invalid type: ") {
        format!("wrong type{}", expected(rest))
    } else if let Some(rest) = message.strip_prefix("invalid value: ") {
        format!("invalid value{}", expected(rest))
    } else if let Some(rest) = message.strip_prefix("unknown variant `") {
        format!("unknown value{}", expected(rest))
    } else if let Some(rest) = message.strip_prefix("invalid length ") {
        format!("wrong number of entries{}", expected(rest))
    } else {
        "invalid value".to_owned()
    };
    FieldError {
        path: path.to_owned(),
        problem,
    }
}

/// `, expected a mapping` style suffix; Rust type names become "a mapping".
fn plain_expected(expected: &str) -> String {
    if expected.starts_with("struct ") || expected.starts_with("a map") {
        ", expected a mapping".to_owned()
    } else {
        format!(", expected {expected}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<T: DeserializeOwned>(yaml: &str) -> (Option<T>, Vec<String>) {
        let value = match parse_yaml(yaml) {
            Ok(v) => v,
            Err(e) => panic!("test yaml refused: {e}"),
        };
        let (v, errors) = read_value::<T>(value);
        (
            v,
            errors
                .into_iter()
                .map(|e| format!("{}: {}", e.path, e.problem))
                .collect(),
        )
    }

    #[test]
    fn every_unknown_key_is_reported_with_its_path_and_reading_goes_on() {
        let (file, errors) = read::<PolicyFile>(
            "service: echo\ncolour: blue\nroutes:\n  - {id: a, path: /a, shade: x, policy: {anonymous: true, scope: y}}\n",
        );
        // Route problems stay with the route; the file itself has one.
        assert_eq!(errors, vec!["colour: unknown key"]);
        let Some(file) = file else {
            panic!("the file is read once the unknown key is dropped")
        };
        let routes = file.routes.unwrap_or_default();
        match &routes[0] {
            Checked::Invalid(errors) => {
                let shown: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{}: {}", e.path, e.problem))
                    .collect();
                assert_eq!(
                    shown,
                    vec!["shade: unknown key", "policy.scope: unknown key"]
                );
            }
            Checked::Valid(_) => panic!("a route with unknown keys is not valid"),
        }
    }

    #[test]
    fn wrong_types_are_described_without_the_value() {
        let (_, errors) = read::<FileRoute>("{id: a, path: /a, methods: secret-looking-value}");
        assert_eq!(errors, vec!["methods: wrong type, expected a sequence"]);
        let (_, errors) = read::<FilePolicy>("{sender_constraint: tls-please}");
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("sender_constraint: unknown value, expected one of"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("tls-please"), "{errors:?}");
    }

    #[test]
    fn a_refused_value_does_not_hide_the_problems_after_it() {
        let (_, errors) = read::<FileRoute>(
            "{id: a, path: [x], methods: [GET, 7, {a: b}], policy: {sender_constraint: tls, colour: blue}, shade: x}",
        );
        assert_eq!(
            errors,
            vec![
                "path: wrong type, expected a string",
                "methods[1]: wrong type, expected a string",
                "policy.sender_constraint: unknown value, expected one of `none`, `dpop`, `mtls`, `any_bound`",
                "policy.colour: unknown key",
                "shade: unknown key",
            ]
        );
    }

    #[test]
    fn a_missing_required_key_is_reported_at_its_own_path() {
        let (_, errors) = read::<FileRoute>("{id: a}");
        assert_eq!(errors, vec!["path: is required"]);
    }

    #[test]
    fn a_wrong_top_level_type_names_a_mapping_not_a_rust_type() {
        let (_, errors) = read::<PolicyFile>("[1, 2]");
        assert_eq!(errors, vec![": wrong type, expected a mapping"]);
    }

    #[test]
    fn invalid_yaml_is_reported_by_position_only() {
        let Err(problem) = parse_yaml("service: [secret-value\n") else {
            panic!("unterminated flow sequence must be refused")
        };
        assert!(problem.starts_with("is not valid yaml"), "{problem}");
        assert!(!problem.contains("secret-value"), "{problem}");
    }

    #[test]
    fn paths_join_keys_with_dots_and_indexes_without() {
        assert_eq!(join_path("routes[2]", "path"), "routes[2].path");
        assert_eq!(join_path("routes", "[2]"), "routes[2]");
        assert_eq!(join_path("", "path"), "path");
        assert_eq!(join_path("routes[2]", ""), "routes[2]");
    }
}
