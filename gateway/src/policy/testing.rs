//! Table-driven decision tests (`policies/tests/*.yaml`): each names a
//! request, a caller and the expected outcome; running one goes through the
//! same steps as the proxy (split the query, [`normalize_path`], route
//! lookup, [`super::decide`]). Pure: files in, [`TestReport`] out; the CLI
//! shell is [`super::command`].
//!
//! An outcome is (decision, status, route, reason):
//! - a path `normalize_path` refuses: deny, 400, no route, the path error
//!   code (`encoded_slash`, ...);
//! - no route: deny, 404, `not_found`; a route for the path but not the
//!   method: deny, 405, `method_not_allowed`;
//! - otherwise the route's id and the decision's status and
//!   [`Decision::reason`](super::Decision::reason).
//!
//! `expect.decision` is required; `status`, `route` and `reason` are
//! compared when given. A test file that cannot be right (an allow with a
//! status other than 200, a route or reason that does not exist) is invalid,
//! not failing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use serde_yaml::Value;
use stella_envelope::AuthMethod;

use super::compile::{at, field_errors, SourceFile};
use super::file::{
    self, Checked, FileAuthMethod, FileDecision, FileSpiffeCaller, FileTestCase, FileTokenCaller,
};
use super::{decide, Evaluation, Policies};
use crate::config::{ConfigError, MissingAuthorization};
use crate::identity::{Binding, Caller, TokenClaims};
use crate::routing::{normalize_path, split_path_query, Method, PathError};

/// One decision test, checked.
#[derive(Debug, Clone)]
pub struct DecisionTest {
    pub name: String,
    /// `policies/tests/echo.yaml [3]`
    pub source: String,
    pub host: Option<String>,
    pub method: String,
    /// As written: raw path, optionally with a query.
    pub path: String,
    pub caller: Caller,
    pub on_missing: MissingAuthorization,
    pub expect: Expectation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub allow: bool,
    pub status: Option<u16>,
    pub route: Option<String>,
    pub reason: Option<String>,
}

/// What a request got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allow: bool,
    pub status: u16,
    pub route: Option<String>,
    pub reason: String,
}

impl Expectation {
    pub fn matches(&self, got: &Outcome) -> bool {
        self.allow == got.allow
            && self.status.is_none_or(|s| s == got.status)
            && self
                .route
                .as_ref()
                .is_none_or(|r| got.route.as_ref() == Some(r))
            && self.reason.as_ref().is_none_or(|r| *r == got.reason)
    }

    /// `deny 401 echo-admin (authentication_required)`, with only the parts
    /// the test states.
    pub fn describe(&self) -> String {
        let mut out = decision_word(self.allow).to_owned();
        if let Some(s) = self.status {
            let _ = write!(out, " {s}");
        }
        if let Some(r) = &self.route {
            let _ = write!(out, " {r}");
        }
        if let Some(r) = &self.reason {
            let _ = write!(out, " ({r})");
        }
        out
    }
}

impl Outcome {
    pub fn describe(&self) -> String {
        format!(
            "{} {} {} ({})",
            decision_word(self.allow),
            self.status,
            self.route.as_deref().unwrap_or("-"),
            self.reason
        )
    }
}

fn decision_word(allow: bool) -> &'static str {
    if allow {
        "allow"
    } else {
        "deny"
    }
}

/// Runs one request through normalization, lookup and decision.
pub fn outcome(
    policies: &Policies,
    host: Option<&str>,
    method: &str,
    raw_path: &str,
    caller: &Caller,
    on_missing: MissingAuthorization,
) -> Outcome {
    let (path, _query) = split_path_query(raw_path.as_bytes());
    let path = match normalize_path(path) {
        Ok(p) => p,
        Err(e) => {
            return Outcome {
                allow: false,
                status: 400,
                route: None,
                reason: e.code().to_owned(),
            }
        }
    };
    let evaluation = policies.evaluate(host, method, &path, caller, on_missing);
    let (allow, route) = match &evaluation {
        Evaluation::Routed { route, decision } => {
            (decision.is_allow(), Some(route.id().to_owned()))
        }
        Evaluation::MethodNotAllowed { .. } | Evaluation::NotFound => (false, None),
    };
    Outcome {
        allow,
        status: evaluation.status(),
        route,
        reason: evaluation.reason().to_owned(),
    }
}

/// Every reason an outcome can carry.
pub fn known_reasons() -> Vec<&'static str> {
    let mut reasons = decide::reason_labels();
    reasons.extend(["not_found", "method_not_allowed"]);
    reasons.extend(
        [
            PathError::NotOriginForm,
            PathError::TooLong { max: 0 },
            PathError::TooManySegments { max: 0 },
            PathError::BadEscape,
            PathError::EncodedSlash,
            PathError::EncodedBackslash,
            PathError::Backslash,
            PathError::NulByte,
            PathError::ControlChar,
            PathError::Space,
            PathError::NonAscii,
            PathError::Fragment,
            PathError::QueryInPath,
            PathError::Semicolon,
        ]
        .iter()
        .map(PathError::code),
    );
    reasons.sort_unstable();
    reasons.dedup();
    reasons
}

/// Reads `Deny`, `RequireAuthenticated`, `AllowAnonymous` as the config
/// does: case-insensitive, `_` and `-` ignored.
pub fn parse_missing_authorization(text: &str) -> Option<MissingAuthorization> {
    match text
        .trim()
        .to_ascii_lowercase()
        .replace(['_', '-'], "")
        .as_str()
    {
        "deny" => Some(MissingAuthorization::Deny),
        "requireauthenticated" => Some(MissingAuthorization::RequireAuthenticated),
        "allowanonymous" => Some(MissingAuthorization::AllowAnonymous),
        _ => None,
    }
}

const CALLER_SHAPES: &str =
    "must be anonymous, {token: {...}, method: bearer|dpop|mtls|bypass} or {spiffe: spiffe://...}";

/// Reads a caller: `anonymous`, `{token: {sub, scopes, tenant, roles, aud,
/// claims}, method}` or `{spiffe: id}`. Problems are reported at
/// `file: key...`.
pub fn parse_caller(
    value: Value,
    file_name: &str,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<Caller> {
    let has = |name: &str| matches!(&value, Value::Mapping(m) if m.contains_key(name));
    if value.as_str() == Some("anonymous") {
        return Some(Caller::Anonymous);
    }
    if has("token") {
        let (spec, problems) = file::read_value::<FileTokenCaller>(value);
        errors.extend(field_errors(file_name, key, problems));
        let spec = spec?;
        let token = spec.token;
        let scopes: Vec<&str> = token.scopes.iter().flatten().map(String::as_str).collect();
        let mut claims =
            TokenClaims::for_tests(token.sub.as_deref().unwrap_or("test-subject"), &scopes);
        if let Some(tenant) = &token.tenant {
            claims = claims.with_tenant(tenant);
        }
        if let Some(roles) = &token.roles {
            let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
            claims = claims.with_roles(&roles);
        }
        if let Some(aud) = &token.aud {
            let aud: Vec<&str> = aud.iter().map(String::as_str).collect();
            claims = claims.with_audiences(&aud);
        }
        for (name, v) in token.claims.into_iter().flatten() {
            claims = claims.with_claim(&name, v);
        }
        // Placeholder thumbprints: the decision looks at how the binding was
        // proven (the method), not at its value.
        let (method, binding) = match spec.method.unwrap_or(FileAuthMethod::Bearer) {
            FileAuthMethod::Bearer => (AuthMethod::Bearer, Binding::Unbound),
            FileAuthMethod::Dpop => (AuthMethod::Dpop, Binding::Jkt("test-jkt".into())),
            FileAuthMethod::Mtls => (AuthMethod::Mtls, Binding::X5tS256("test-x5t".into())),
            FileAuthMethod::Bypass => (AuthMethod::Bypass, Binding::Jkt("test-jkt".into())),
        };
        return Some(Caller::Token {
            claims: Arc::new(claims.with_binding(binding)),
            method,
        });
    }
    if has("spiffe") {
        let (spec, problems) = file::read_value::<FileSpiffeCaller>(value);
        errors.extend(field_errors(file_name, key, problems));
        return spec.map(|s| Caller::Spiffe {
            spiffe_id: s.spiffe,
        });
    }
    errors.push(ConfigError::new(at(file_name, key), CALLER_SHAPES));
    None
}

/// Reads and checks decision test files against `policies`.
pub fn parse_tests(
    files: &[SourceFile],
    policies: &Policies,
) -> Result<Vec<DecisionTest>, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut tests = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let reasons = known_reasons();
    for source in files {
        let name = source.name.as_str();
        let value = match file::parse_yaml(&source.text) {
            Ok(Value::Mapping(m)) if m.is_empty() => {
                errors.push(ConfigError::new(name, "has no tests"));
                continue;
            }
            Ok(v) => v,
            Err(problem) => {
                errors.push(ConfigError::new(name, problem));
                continue;
            }
        };
        let (cases, problems) = file::read_value::<Vec<Checked<FileTestCase>>>(value);
        errors.extend(field_errors(name, "", problems));
        let Some(cases) = cases else { continue };
        if cases.is_empty() {
            errors.push(ConfigError::new(name, "has no tests"));
        }
        for (i, case) in cases.into_iter().enumerate() {
            let prefix = format!("[{i}]");
            let case = match case {
                Checked::Valid(c) => c,
                Checked::Invalid(problems) => {
                    errors.extend(field_errors(name, &prefix, problems));
                    continue;
                }
            };
            let source_label = format!("{name} {prefix}");
            if let Some(test) = check_case(case, name, &prefix, policies, &reasons, &mut errors) {
                if let Some(first) = names.get(&test.name) {
                    errors.push(ConfigError::new(
                        at(name, &format!("{prefix}.name")),
                        format!("is also the name of {first}"),
                    ));
                    continue;
                }
                names.insert(test.name.clone(), source_label.clone());
                tests.push(DecisionTest {
                    source: source_label,
                    ..test
                });
            }
        }
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(errors)
    }
}

fn check_case(
    case: FileTestCase,
    name: &str,
    prefix: &str,
    policies: &Policies,
    reasons: &[&str],
    errors: &mut Vec<ConfigError>,
) -> Option<DecisionTest> {
    let before = errors.len();
    let key = |k: &str| at(name, &format!("{prefix}.{k}"));
    if case.name.trim().is_empty() {
        errors.push(ConfigError::new(key("name"), "must not be empty"));
    }
    if let Err(e) = Method::parse(&case.request.method) {
        errors.push(ConfigError::new(key("request.method"), e.to_string()));
    }
    let caller = parse_caller(case.caller, name, &format!("{prefix}.caller"), errors);
    let on_missing = match case.on_missing_authorization.as_deref() {
        None => MissingAuthorization::RequireAuthenticated,
        Some(text) => parse_missing_authorization(text).unwrap_or_else(|| {
            errors.push(ConfigError::new(
                key("on_missing_authorization"),
                "must be Deny, RequireAuthenticated or AllowAnonymous",
            ));
            MissingAuthorization::RequireAuthenticated
        }),
    };
    let expect = Expectation {
        allow: case.expect.decision == FileDecision::Allow,
        status: case.expect.status,
        route: case.expect.route,
        reason: case.expect.reason,
    };
    if let Some(status) = expect.status {
        let fits = if expect.allow {
            status == 200
        } else {
            matches!(status, 400 | 401 | 403 | 404 | 405)
        };
        if !fits {
            errors.push(ConfigError::new(
                key("expect.status"),
                if expect.allow {
                    "must be 200 for decision allow"
                } else {
                    "must be 400, 401, 403, 404 or 405 for decision deny"
                },
            ));
        }
        if expect.route.is_some() && matches!(status, 400 | 404 | 405) {
            errors.push(ConfigError::new(
                key("expect.route"),
                "cannot be given with status 400, 404 or 405: no route is matched",
            ));
        }
    }
    if let Some(route) = &expect.route {
        if !policies.routes().iter().any(|r| r.id() == route) {
            errors.push(ConfigError::new(
                key("expect.route"),
                "names no route of the policies",
            ));
        }
    }
    if let Some(reason) = &expect.reason {
        if !reasons.contains(&reason.as_str()) {
            errors.push(ConfigError::new(
                key("expect.reason"),
                format!("is not a reason; one of: {}", reasons.join(", ")),
            ));
        }
    }
    let caller = caller?;
    if errors.len() > before {
        return None;
    }
    Some(DecisionTest {
        name: case.name,
        source: String::new(),
        host: case.request.host,
        method: case.request.method,
        path: case.request.path,
        caller,
        on_missing,
        expect,
    })
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct TestRow {
    pub name: String,
    pub source: String,
    pub expected: String,
    pub got: String,
    pub passed: bool,
}

#[derive(Debug, Clone)]
pub struct TestReport {
    pub rows: Vec<TestRow>,
    /// Ids of routes no test reached (a hint, not a failure).
    pub uncovered_routes: Vec<String>,
}

impl TestReport {
    pub fn failed(&self) -> usize {
        self.rows.iter().filter(|r| !r.passed).count()
    }

    pub fn passed(&self) -> usize {
        self.rows.len() - self.failed()
    }

    /// The table: NAME, EXPECTED, GOT, RESULT, then a summary line.
    pub fn render(&self) -> String {
        let header = ["NAME", "EXPECTED", "GOT", "RESULT"];
        let cells: Vec<[String; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    printable(&r.name),
                    r.expected.clone(),
                    r.got.clone(),
                    if r.passed { "PASS" } else { "FAIL" }.to_owned(),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |row: [&str; 4]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {}\n",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        };
        let mut out = line(header);
        for row in &cells {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
        }
        for r in self.rows.iter().filter(|r| !r.passed) {
            let _ = writeln!(out, "FAIL {}: {}", r.source, printable(&r.name));
        }
        let _ = writeln!(
            out,
            "{} tests: {} passed, {} failed",
            self.rows.len(),
            self.passed(),
            self.failed()
        );
        if !self.uncovered_routes.is_empty() {
            let _ = writeln!(
                out,
                "routes no test reached: {}",
                self.uncovered_routes.join(", ")
            );
        }
        out
    }
}

/// Test names come from files; keep control characters off the terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

pub fn run(policies: &Policies, tests: &[DecisionTest]) -> TestReport {
    let mut reached: Vec<String> = Vec::new();
    let rows = tests
        .iter()
        .map(|t| {
            let got = outcome(
                policies,
                t.host.as_deref(),
                &t.method,
                &t.path,
                &t.caller,
                t.on_missing,
            );
            if let Some(r) = &got.route {
                reached.push(r.clone());
            }
            TestRow {
                name: t.name.clone(),
                source: t.source.clone(),
                expected: t.expect.describe(),
                got: got.describe(),
                passed: t.expect.matches(&got),
            }
        })
        .collect();
    let uncovered_routes = policies
        .routes()
        .iter()
        .map(|r| r.id().to_owned())
        .filter(|id| !reached.contains(id))
        .collect();
    TestReport {
        rows,
        uncovered_routes,
    }
}
