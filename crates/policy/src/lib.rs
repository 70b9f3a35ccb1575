//! Route authorization policy: the policy files under `policies/`, compiled
//! into one route table, and the pure decision each request gets.
//!
//! - [`file`]: the YAML format of policy files (serde structs only);
//! - [`compile`]: checks files and builds [`Policies`], reporting every
//!   problem at once as `policies/echo.yaml: routes[2].path: problem`;
//! - [`decide`]: `decide(policy, tenant rules, caller, on_missing) ->
//!   Decision`, no I/O;
//! - [`testing`]: table-driven decision tests (`policies/tests/*.yaml`) run
//!   by `stella-gateway policy test DIR`; [`command`] is the CLI shell.
//!
//! # HTTP mapping
//!
//! | decision | status | notes for the response layer |
//! |---|---|---|
//! | [`Decision::Allow`] | forwarded upstream | |
//! | [`Denial::AuthenticationRequired`] | 401 | challenge without `error` when no credentials were sent |
//! | [`Denial::SenderConstraintRequired`] | 401 | `DPoP` challenge for `dpop`/`any_bound`, `Bearer` for `mtls` |
//! | [`Denial::InsufficientScope`] | 403 | `error="insufficient_scope"`, `scope=` the `required` list |
//! | [`Denial::Forbidden`] | 403 | reason from [`DenyReason`] (`no_policy` for `OnMissingAuthorization: Deny`) |
//! | [`Denial::IdentityMismatch`] | 403 | `identity_mismatch`: a path parameter bound by `identity_binding` is not the caller's identity |
//!
//! Requests that never reach a decision: a path [`stella_routing::normalize_path`]
//! refuses is 400, no route is 404, a route for the path but not the method
//! is 405.
//!
//! # Routes without a policy block
//!
//! `Router__OnMissingAuthorization` decides them: `Deny` answers 403 to
//! everyone, `RequireAuthenticated` (the default) allows any authenticated
//! caller (token or SPIFFE certificate; tenant rules still apply),
//! `AllowAnonymous` allows everyone.
//!
//! # Tenant rules
//!
//! `tenants:` in a file with a `service` applies to that service's routes; in
//! a file with neither `service` nor `routes` (say `policies/tenants.yaml`)
//! it applies to every route. When both name a tenant, both rules must hold.
//! A rule binds the callers whose token carries that tenant to a sender
//! constraint on every route that relies on identity: routes with
//! requirements, and routes without a policy under `RequireAuthenticated`.
//! Anonymous routes ignore them (the caller could drop its token and pass).
//!
//! # Sender constraints
//!
//! `dpop` needs [`AuthMethod::Dpop`](stella_envelope::AuthMethod::Dpop),
//! `mtls` needs `Mtls`, `any_bound` either. `Bypass` (a bound token whose
//! proof was waived by the emergency bypass) satisfies a constraint only
//! where `allow_bypass: true` is set; [`Allowed::used_bypass`] records it. A
//! SPIFFE caller (certificate alone) holds no token, so it never satisfies a
//! sender constraint: routes meant for workloads use `spiffe_ids`.
//!
//! # Identity binding
//!
//! `identity_binding` on a route ties `{name}` parameters of its path to the
//! caller's identity (see [`binding`]). It is checked after the policy
//! allowed the request: an anonymous caller gets 401, any other caller whose
//! identity does not equal the parameter 403 `identity_mismatch`.

pub mod binding;
pub mod command;
pub mod compile;
pub mod decide;
pub mod file;
pub mod missing;
pub mod testing;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

pub use binding::{CallerIdentity, IdentityBinding, IdentitySource};
pub use compile::SourceFile;
pub use decide::{
    authorize, decide, decide_route, AllowBasis, Allowed, AuthenticatedCaller, Authorized,
    Decision, Denial, DenyReason,
};
pub use missing::MissingAuthorization;
pub use stella_core::ConfigError;

use stella_core::identity::Caller;
use stella_routing::{Lookup, NormalizedPath, Route, RouteTable};

/// How a token must be bound to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SenderConstraint {
    /// No constraint: a plain bearer token is enough.
    #[default]
    None,
    /// A DPoP-bound token with a valid proof (RFC 9449).
    Dpop,
    /// A certificate-bound token on a matching TLS connection (RFC 8705).
    Mtls,
    /// Either of the above.
    AnyBound,
}

impl SenderConstraint {
    pub fn as_str(self) -> &'static str {
        match self {
            SenderConstraint::None => "none",
            SenderConstraint::Dpop => "dpop",
            SenderConstraint::Mtls => "mtls",
            SenderConstraint::AnyBound => "any_bound",
        }
    }

    /// Reason label of a denial for this constraint.
    pub fn required_label(self) -> &'static str {
        match self {
            SenderConstraint::None => "none",
            SenderConstraint::Dpop => "dpop_required",
            SenderConstraint::Mtls => "mtls_required",
            SenderConstraint::AnyBound => "any_bound_required",
        }
    }
}

impl fmt::Display for SenderConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route's compiled policy block.
#[derive(Debug, Clone, PartialEq)]
pub enum Requirements {
    /// `anonymous: true`: anyone, with credentials or without.
    Anonymous,
    /// An authenticated caller meeting every check.
    Caller(CallerRequirements),
}

/// Checks on an authenticated caller; all must hold. An empty list is "no
/// check" here: the file format refuses empty lists, so an empty list only
/// comes from an absent key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CallerRequirements {
    /// The token holds every one of these scopes.
    pub scopes_all: Vec<String>,
    /// The token holds at least one of these scopes.
    pub scopes_any: Vec<String>,
    /// At least one of the token's audiences is one of these.
    pub audiences_any: Vec<String>,
    /// The token's tenant is one of these.
    pub tenants: Vec<String>,
    /// The token holds at least one of these roles.
    pub roles_any: Vec<String>,
    /// Each claim equals this value (JSON equality with the claim as
    /// received).
    pub claims: BTreeMap<String, serde_json::Value>,
    /// The caller is a SPIFFE workload with one of these ids (exact match).
    pub spiffe_ids: Vec<String>,
    pub sender_constraint: SenderConstraint,
    /// `AuthMethod::Bypass` satisfies `sender_constraint`.
    pub allow_bypass: bool,
    /// DPoP proofs must carry a server nonce.
    pub dpop_nonce: bool,
}

impl CallerRequirements {
    /// Whether any check needs an access token (a SPIFFE caller cannot meet
    /// it).
    pub fn needs_token(&self) -> bool {
        !self.scopes_all.is_empty()
            || !self.scopes_any.is_empty()
            || !self.audiences_any.is_empty()
            || !self.tenants.is_empty()
            || !self.roles_any.is_empty()
            || !self.claims.is_empty()
            || self.sender_constraint != SenderConstraint::None
    }
}

impl fmt::Display for Requirements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let req = match self {
            Requirements::Anonymous => return f.write_str("anonymous (anyone)"),
            Requirements::Caller(req) => req,
        };
        let mut parts = vec!["authenticated".to_owned()];
        for (name, list) in [
            ("scopes_all", &req.scopes_all),
            ("scopes_any", &req.scopes_any),
            ("audiences_any", &req.audiences_any),
            ("tenants", &req.tenants),
            ("roles_any", &req.roles_any),
            ("spiffe_ids", &req.spiffe_ids),
        ] {
            if !list.is_empty() {
                parts.push(format!("{name} [{}]", list.join(", ")));
            }
        }
        if !req.claims.is_empty() {
            let claims: Vec<String> = req.claims.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(format!("claims {{{}}}", claims.join(", ")));
        }
        if req.sender_constraint != SenderConstraint::None {
            parts.push(format!("sender_constraint {}", req.sender_constraint));
        }
        if req.allow_bypass {
            parts.push("allow_bypass".to_owned());
        }
        f.write_str(&parts.join("; "))
    }
}

/// A sender constraint that callers of one tenant must meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantRule {
    pub sender_constraint: SenderConstraint,
    pub allow_bypass: bool,
    pub dpop_nonce: bool,
}

/// Tenant rules that apply to one service: the global rules plus the
/// service's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantRules {
    rules: BTreeMap<String, Vec<TenantRule>>,
}

impl TenantRules {
    pub fn new() -> TenantRules {
        TenantRules::default()
    }

    pub fn add(&mut self, tenant: impl Into<String>, rule: TenantRule) {
        self.rules.entry(tenant.into()).or_default().push(rule);
    }

    /// Every rule for `tenant` (all must hold); empty if none.
    pub fn for_tenant(&self, tenant: &str) -> &[TenantRule] {
        self.rules.get(tenant).map_or(&[], Vec::as_slice)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[TenantRule])> {
        self.rules.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// What a route of the table carries.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// The service name, as in the gateway config's `services[].name`.
    pub service: String,
    /// Shared: every request of the route holds it (decision line, traces).
    pub route_id: Arc<str>,
    /// `None`: no policy block, `Router__OnMissingAuthorization` decides.
    pub policy: Option<Requirements>,
    /// Tenant rules for this route's service (shared by its routes).
    pub tenant_rules: Arc<TenantRules>,
    /// Where the route is defined: `policies/echo.yaml routes[1]`.
    pub source: String,
    /// Path parameters that must equal the caller's identity.
    pub identity_binding: Option<IdentityBinding>,
    /// A policy decided beside `policy` and never enforced (counted in
    /// `stella_gateway_shadow_decisions_total`, logged when it differs).
    pub shadow: Option<Requirements>,
}

impl RouteTarget {
    /// A route of service `echo` with this policy and nothing else, for
    /// tests of the later stages.
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(policy: Option<Requirements>) -> RouteTarget {
        RouteTarget {
            service: "echo".into(),
            route_id: "test".into(),
            policy,
            tenant_rules: Arc::new(TenantRules::new()),
            source: "test".into(),
            identity_binding: None,
            shadow: None,
        }
    }

    fn caller_requirements(&self) -> Option<&CallerRequirements> {
        match &self.policy {
            Some(Requirements::Caller(req)) => Some(req),
            _ => None,
        }
    }

    /// Whether DPoP proofs need a server nonce here: the route asks for it,
    /// or a rule of the caller's tenant does.
    pub fn requires_dpop_nonce(&self, tenant: Option<&str>) -> bool {
        self.caller_requirements().is_some_and(|r| r.dpop_nonce)
            || tenant.is_some_and(|t| self.tenant_rules.for_tenant(t).iter().any(|r| r.dpop_nonce))
    }
}

/// Every route of every policy file, ready for lookups. Immutable; a reload
/// builds a new one.
#[derive(Debug)]
pub struct Policies {
    table: RouteTable<RouteTarget>,
    global_tenant_rules: TenantRules,
}

/// The answer of [`Policies::evaluate`]: route lookup and decision.
#[derive(Debug)]
pub enum Evaluation<'a> {
    Routed {
        route: &'a Route<RouteTarget>,
        decision: Decision,
    },
    /// 405; `allowed` is ready for an `Allow` header.
    MethodNotAllowed { allowed: Vec<&'a str> },
    /// 404.
    NotFound,
}

impl Evaluation<'_> {
    pub fn status(&self) -> u16 {
        match self {
            Evaluation::Routed { decision, .. } => decision.status(),
            Evaluation::MethodNotAllowed { .. } => 405,
            Evaluation::NotFound => 404,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Evaluation::Routed { decision, .. } => decision.reason(),
            Evaluation::MethodNotAllowed { .. } => "method_not_allowed",
            Evaluation::NotFound => "not_found",
        }
    }
}

impl Policies {
    pub(crate) fn new(
        table: RouteTable<RouteTarget>,
        global_tenant_rules: TenantRules,
    ) -> Policies {
        Policies {
            table,
            global_tenant_rules,
        }
    }

    /// Loads every `*.yaml` file directly in `dir` (not `dir/tests/`), in
    /// name order. With `services`, every file's `service` must be one of
    /// them.
    pub fn load_dir(
        dir: &std::path::Path,
        services: Option<&[String]>,
    ) -> Result<Policies, Vec<ConfigError>> {
        compile::load_dir(dir, services)
    }

    /// Compiles policy files given as (display name, YAML text).
    pub fn from_files(
        files: &[SourceFile],
        services: Option<&[String]>,
    ) -> Result<Policies, Vec<ConfigError>> {
        compile::compile(files, services)
    }

    pub fn routes(&self) -> &RouteTable<RouteTarget> {
        &self.table
    }

    /// Tenant rules from files without a `service` (already merged into
    /// every route's [`RouteTarget::tenant_rules`]).
    pub fn global_tenant_rules(&self) -> &TenantRules {
        &self.global_tenant_rules
    }

    pub fn lookup(
        &self,
        host: Option<&str>,
        method: &str,
        path: &NormalizedPath,
    ) -> Lookup<'_, RouteTarget> {
        self.table.lookup(host, method, path)
    }

    /// Looks the request up and decides it.
    pub fn evaluate(
        &self,
        host: Option<&str>,
        method: &str,
        path: &NormalizedPath,
        caller: &Caller,
        on_missing: MissingAuthorization,
    ) -> Evaluation<'_> {
        match self.table.lookup(host, method, path) {
            Lookup::Matched(route) => {
                let target = route.value();
                Evaluation::Routed {
                    route,
                    decision: decide_route(
                        target,
                        path,
                        caller,
                        CallerIdentity::of(caller),
                        on_missing,
                    ),
                }
            }
            Lookup::MethodNotAllowed { allowed } => Evaluation::MethodNotAllowed { allowed },
            Lookup::NotFound => Evaluation::NotFound,
        }
    }
}
