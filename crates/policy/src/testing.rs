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
use crate::{ConfigError, MissingAuthorization};
use stella_core::identity::{Binding, Caller, DescribedToken, TokenClaims};
use stella_routing::{normalize_path, split_path_query, Method, PathError};

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
    reasons.extend(PathError::ALL.iter().map(PathError::code));
    reasons.sort_unstable();
    reasons.dedup();
    reasons
}

/// Reads `Deny`, `RequireAuthenticated`, `AllowAnonymous` as the config
/// does: case-insensitive, `_` and `-` ignored.
pub fn parse_missing_authorization(text: &str) -> Option<MissingAuthorization> {
    MissingAuthorization::parse(text)
}

const CALLER_SHAPES: &str =
    "must be anonymous, {token: {...}, method: bearer|dpop|mtls|bypass} or {spiffe: spiffe://...}";

/// Reads a caller: `anonymous`, `{token: {sub, client_id, scopes, tenant, roles, aud,
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
        // Placeholder thumbprints: the decision looks at how the binding was
        // proven (the method), not at its value.
        let (method, binding) = match spec.method.unwrap_or(FileAuthMethod::Bearer) {
            FileAuthMethod::Bearer => (AuthMethod::Bearer, Binding::Unbound),
            FileAuthMethod::Dpop => (AuthMethod::Dpop, Binding::Jkt("test-jkt".into())),
            FileAuthMethod::Mtls => (AuthMethod::Mtls, Binding::X5tS256("test-x5t".into())),
            FileAuthMethod::Bypass => (AuthMethod::Bypass, Binding::Jkt("test-jkt".into())),
        };
        let claims = TokenClaims::described(DescribedToken {
            subject: token.sub.unwrap_or_else(|| "test-subject".into()),
            client_id: token.client_id,
            scopes: token.scopes.unwrap_or_default(),
            tenant: token.tenant,
            roles: token.roles.unwrap_or_default(),
            audiences: token.aud,
            claims: token.claims.into_iter().flatten().collect(),
            binding,
        });
        return Some(Caller::Token {
            claims: Arc::new(claims),
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

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
service: echo
routes:
  - {id: pub, path: /public/**, policy: {anonymous: true}}
  - {id: read, path: /items/**, methods: [GET], policy: {scopes_any: [r]}}
  - {id: untested, path: /other}
"#;

    fn policies() -> Policies {
        match Policies::from_files(&[SourceFile::new("p/echo.yaml", POLICY)], None) {
            Ok(p) => p,
            Err(e) => panic!("policy refused: {e:?}"),
        }
    }

    fn tests_of(text: &str) -> Result<Vec<DecisionTest>, Vec<String>> {
        parse_tests(&[SourceFile::new("t.yaml", text)], &policies())
            .map_err(|errors| errors.iter().map(ToString::to_string).collect())
    }

    fn get(path: &str, method: &str, caller: &Caller) -> (bool, u16, Option<String>, String) {
        let o = outcome(
            &policies(),
            None,
            method,
            path,
            caller,
            MissingAuthorization::RequireAuthenticated,
        );
        (o.allow, o.status, o.route, o.reason)
    }

    #[test]
    fn outcomes_cover_bad_paths_missing_routes_and_wrong_methods() {
        let anon = Caller::Anonymous;
        let s = |x: &str| x.to_owned();
        assert_eq!(
            get("/public/a?q=1", "GET", &anon),
            (true, 200, Some(s("pub")), s("anonymous"))
        );
        assert_eq!(
            get("/public/../items/1", "GET", &anon),
            (false, 401, Some(s("read")), s("authentication_required"))
        );
        assert_eq!(
            get("/items/%2f", "GET", &anon),
            (false, 400, None, s("encoded_slash"))
        );
        assert_eq!(
            get("items", "GET", &anon),
            (false, 400, None, s("not_origin_form"))
        );
        assert_eq!(
            get("/nothing", "GET", &anon),
            (false, 404, None, s("not_found"))
        );
        assert_eq!(
            get("/items/1", "POST", &anon),
            (false, 405, None, s("method_not_allowed"))
        );
    }

    #[test]
    fn an_expectation_compares_only_the_parts_it_states() {
        let got = Outcome {
            allow: false,
            status: 403,
            route: Some("read".into()),
            reason: "insufficient_scope".into(),
        };
        let base = Expectation {
            allow: false,
            status: None,
            route: None,
            reason: None,
        };
        assert!(base.matches(&got));
        assert!(!Expectation {
            allow: true,
            ..base.clone()
        }
        .matches(&got));
        assert!(Expectation {
            status: Some(403),
            ..base.clone()
        }
        .matches(&got));
        assert!(!Expectation {
            status: Some(401),
            ..base.clone()
        }
        .matches(&got));
        assert!(!Expectation {
            route: Some("pub".into()),
            ..base.clone()
        }
        .matches(&got));
        assert!(!Expectation {
            reason: Some("tenant".into()),
            ..base.clone()
        }
        .matches(&got));
        assert_eq!(
            Expectation {
                status: Some(403),
                route: Some("read".into()),
                ..base
            }
            .describe(),
            "deny 403 read"
        );
        assert_eq!(got.describe(), "deny 403 read (insufficient_scope)");
    }

    #[test]
    fn callers_are_read_from_each_of_their_three_shapes() {
        let text = r#"
- name: token
  request: {method: GET, path: /items/1}
  caller:
    token: {sub: ann, scopes: [r, w], tenant: acme, roles: [clerk], aud: [orders], claims: {level: 3}}
    method: dpop
  expect: {decision: allow}
- name: workload
  request: {method: GET, path: /items/1}
  caller: {spiffe: spiffe://t.test/sa/x}
  expect: {decision: deny}
- name: nobody
  request: {method: GET, path: /items/1}
  caller: anonymous
  on_missing_authorization: allow_anonymous
  expect: {decision: deny}
"#;
        let tests = match tests_of(text) {
            Ok(t) => t,
            Err(e) => panic!("{e:?}"),
        };
        let Caller::Token { claims, method } = &tests[0].caller else {
            panic!("a token caller")
        };
        assert_eq!(*method, AuthMethod::Dpop);
        assert_eq!(claims.subject(), Some("ann"));
        assert_eq!(claims.scopes(), &*stella_core::identity::names(["r", "w"]));
        assert_eq!(claims.tenant(), Some("acme"));
        assert_eq!(claims.roles(), &*stella_core::identity::names(["clerk"]));
        assert_eq!(
            claims.audiences(),
            &*stella_core::identity::names(["orders"])
        );
        assert_eq!(
            claims.claim("level").as_deref(),
            Some(&serde_json::json!(3))
        );
        assert!(
            matches!(&tests[1].caller, Caller::Spiffe { spiffe_id } if spiffe_id == "spiffe://t.test/sa/x")
        );
        assert!(matches!(tests[2].caller, Caller::Anonymous));
        assert_eq!(tests[2].on_missing, MissingAuthorization::AllowAnonymous);
        assert_eq!(
            tests[0].on_missing,
            MissingAuthorization::RequireAuthenticated
        );
        assert_eq!(tests[1].source, "t.yaml [1]");
    }

    #[test]
    fn a_test_file_that_cannot_be_right_is_refused_with_every_problem() {
        let text = r#"
- name: same
  request: {method: get, path: /items/1}
  caller: somebody
  on_missing_authorization: Sometimes
  expect: {decision: allow, status: 401, reason: nope}
- name: same
  request: {method: GET, path: /nothing}
  caller: anonymous
  expect: {decision: deny, status: 404, route: read}
- name: same
  request: {method: GET, path: /items/1}
  caller: anonymous
  expect: {decision: deny, route: missing}
- name: typo
  request: {method: GET, path: /x, hots: h}
  caller: anonymous
  expect: {decision: maybe}
"#;
        let Err(errors) = tests_of(text) else {
            panic!("the file must be refused")
        };
        let reasons = known_reasons().join(", ");
        assert_eq!(
            errors,
            vec![
                "t.yaml: [0].request.method: method name must be an uppercase token (for example get is written GET)".to_owned(),
                format!("t.yaml: [0].caller: {CALLER_SHAPES}"),
                "t.yaml: [0].on_missing_authorization: must be Deny, RequireAuthenticated or AllowAnonymous".to_owned(),
                "t.yaml: [0].expect.status: must be 200 for decision allow".to_owned(),
                format!("t.yaml: [0].expect.reason: is not a reason; one of: {reasons}"),
                "t.yaml: [1].expect.route: cannot be given with status 400, 404 or 405: no route is matched".to_owned(),
                "t.yaml: [2].expect.route: names no route of the policies".to_owned(),
                "t.yaml: [3].request.hots: unknown key".to_owned(),
                "t.yaml: [3].expect.decision: unknown value, expected `allow` or `deny`".to_owned(),
            ]
        );
    }

    #[test]
    fn duplicate_test_names_are_refused() {
        let one = "- {name: same, request: {method: GET, path: /x}, caller: anonymous, expect: {decision: deny}}\n";
        let result = parse_tests(
            &[
                SourceFile::new("a.yaml", one),
                SourceFile::new("b.yaml", one),
            ],
            &policies(),
        );
        let errors: Vec<String> = result
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            vec!["b.yaml: [0].name: is also the name of a.yaml [0]"]
        );
        let empty = parse_tests(&[SourceFile::new("e.yaml", "")], &policies());
        let errors: Vec<String> = empty
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors, vec!["e.yaml: has no tests"]);
    }

    #[test]
    fn the_report_marks_failures_and_names_routes_no_test_reached() {
        let text = r#"
- name: public page is open
  request: {method: GET, path: /public/x}
  caller: anonymous
  expect: {decision: allow, route: pub}
- name: "items are open \u001b[31m"
  request: {method: GET, path: /items/1}
  caller: anonymous
  expect: {decision: allow}
"#;
        let tests = match tests_of(text) {
            Ok(t) => t,
            Err(e) => panic!("{e:?}"),
        };
        let report = run(&policies(), &tests);
        assert_eq!((report.passed(), report.failed()), (1, 1));
        assert_eq!(report.uncovered_routes, vec!["untested"]);
        let shown = report.render();
        let lines: Vec<&str> = shown.lines().collect();
        assert!(
            lines[0].starts_with("NAME") && lines[0].ends_with("RESULT"),
            "{shown}"
        );
        assert!(
            lines[1].starts_with("public page is open") && lines[1].ends_with("PASS"),
            "{shown}"
        );
        assert!(
            lines[2].contains("allow")
                && lines[2].contains("deny 401 read (authentication_required)")
                && lines[2].ends_with("FAIL"),
            "{shown}"
        );
        assert!(
            !shown.contains('\u{1b}'),
            "control characters are not printed: {shown}"
        );
        assert!(
            shown.contains("FAIL t.yaml [1]: items are open ?[31m"),
            "{shown}"
        );
        assert!(shown.contains("2 tests: 1 passed, 1 failed"), "{shown}");
        assert!(
            shown.contains("routes no test reached: untested"),
            "{shown}"
        );
    }
}
