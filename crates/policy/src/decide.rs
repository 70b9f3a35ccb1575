//! The decision: one pure function from (route policy, tenant rules, caller,
//! `Router__OnMissingAuthorization`) to allow or deny. No I/O, no clock.
//!
//! Checks run in a fixed order and the first failure is the answer, so a
//! caller always gets the same denial for the same request:
//!
//! 1. an anonymous caller on a route that needs identity:
//!    [`Denial::AuthenticationRequired`];
//! 2. `spiffe_ids`: the caller must be a SPIFFE workload with one of them,
//!    else [`DenyReason::SpiffeId`];
//! 3. a route with token requirements (scopes, audiences, tenants, roles,
//!    claims, sender constraint) called with a client certificate alone:
//!    [`Denial::AuthenticationRequired`] (the caller has no credential the
//!    route can use; a token is what it must present);
//! 4. the route's `sender_constraint`, then every tenant rule for the
//!    caller's tenant: [`Denial::SenderConstraintRequired`];
//! 5. `audiences_any` ([`DenyReason::Audience`]), `scopes_all` and
//!    `scopes_any` ([`Denial::InsufficientScope`]), `tenants`
//!    ([`DenyReason::Tenant`]), `roles_any` ([`DenyReason::Role`]), `claims`
//!    ([`DenyReason::Claim`]);
//! 6. the route's `identity_binding` ([`decide_route`]): an anonymous
//!    caller gets [`Denial::AuthenticationRequired`], a caller whose
//!    identity is not the bound path segment [`Denial::IdentityMismatch`].
//!
//! Authentication problems (401) come before authorization problems (403):
//! a client told to authenticate differently may then pass, a client told it
//! lacks a permission will not.

use std::fmt;

use stella_envelope::AuthMethod;

use super::binding::CallerIdentity;
use super::{CallerRequirements, Requirements, RouteTarget, SenderConstraint, TenantRules};
use crate::MissingAuthorization;
pub use stella_core::identity::AuthenticatedCaller;
use stella_core::identity::{Caller, TokenClaims};
use stella_routing::NormalizedPath;

/// The answer of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(Allowed),
    Deny(Denial),
}

/// Proof that [`decide`] allowed a request. Its fields are private, so only
/// this module can build one: code that must not run for an unchecked
/// request (the envelope signer, the forwarder) can ask for an `&Allowed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    basis: AllowBasis,
    used_bypass: bool,
}

/// What let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowBasis {
    /// The route is `anonymous: true`.
    AnonymousRoute,
    /// The route's requirements (and the caller's tenant rules) hold.
    RequirementsMet,
    /// The route has no policy and `Router__OnMissingAuthorization` is
    /// `RequireAuthenticated` (the caller is authenticated) or
    /// `AllowAnonymous`.
    NoPolicy(MissingAuthorization),
}

impl AllowBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            AllowBasis::AnonymousRoute => "anonymous",
            AllowBasis::RequirementsMet => "requirements_met",
            AllowBasis::NoPolicy(_) => "no_policy",
        }
    }
}

impl Allowed {
    pub fn basis(&self) -> AllowBasis {
        self.basis
    }

    /// True when a sender constraint was satisfied only by the audited
    /// emergency bypass (`AuthMethod::Bypass` on an `allow_bypass` route or
    /// tenant rule). Feeds `stella_gateway_dpop_bypass_total` and the decision log.
    pub fn used_bypass(&self) -> bool {
        self.used_bypass
    }

    /// Stable label for logs and metrics: the basis, or `bypass` when the
    /// bypass was needed.
    pub fn reason(&self) -> &'static str {
        if self.used_bypass {
            "bypass"
        } else {
            self.basis.as_str()
        }
    }
}

/// An authenticated caller the policy allowed: what the envelope signer
/// signs for. Only [`authorize`] makes one (its fields are private to this
/// module), from an authenticated caller `A`. The signer asks for an
/// `Authorized<A>` of the one proof type only the authentication stage can
/// make, so an identity that skipped either check cannot be signed for.
#[derive(Debug)]
pub struct Authorized<A> {
    allowed: Allowed,
    caller: A,
}

impl<A: AuthenticatedCaller> Authorized<A> {
    pub fn allowed(&self) -> &Allowed {
        &self.allowed
    }

    pub fn caller(&self) -> &Caller {
        self.caller.caller()
    }

    /// The authentication stage's proof, as it was handed in.
    pub fn authenticated(&self) -> &A {
        &self.caller
    }
}

/// [`decide_route`] for an authenticated caller on the route `target`
/// matched for `path`: the proof the envelope signer asks for, or the
/// denial. The SPIFFE ID of a certificate-bound token's client certificate
/// counts for `identity_binding`.
pub fn authorize<A: AuthenticatedCaller>(
    target: &RouteTarget,
    path: &NormalizedPath,
    caller: A,
    on_missing: MissingAuthorization,
) -> Result<Authorized<A>, Denial> {
    let who = CallerIdentity::of(caller.caller())
        .with_certificate_spiffe_id(caller.certificate_spiffe_id());
    match decide_route(target, path, caller.caller(), who, on_missing) {
        Decision::Allow(allowed) => Ok(Authorized { allowed, caller }),
        Decision::Deny(denial) => Err(denial),
    }
}

/// [`decide`] plus the route's `identity_binding`: the whole decision for a
/// request that matched `target` with `path`. `who` are the caller's
/// identity values ([`CallerIdentity::of`], plus what the TLS connection
/// proved).
pub fn decide_route(
    target: &RouteTarget,
    path: &NormalizedPath,
    caller: &Caller,
    who: CallerIdentity<'_>,
    on_missing: MissingAuthorization,
) -> Decision {
    decide_with(
        target.policy.as_ref(),
        target,
        path,
        caller,
        who,
        on_missing,
    )
}

/// What the route's `shadow` policy would decide for the same request (with
/// the route's tenant rules and identity binding), if it has one. Never
/// enforced: for counting and logging beside the real decision.
pub fn decide_shadow(
    target: &RouteTarget,
    path: &NormalizedPath,
    caller: &Caller,
    who: CallerIdentity<'_>,
    on_missing: MissingAuthorization,
) -> Option<Decision> {
    let shadow = target.shadow.as_ref()?;
    Some(decide_with(
        Some(shadow),
        target,
        path,
        caller,
        who,
        on_missing,
    ))
}

fn decide_with(
    policy: Option<&Requirements>,
    target: &RouteTarget,
    path: &NormalizedPath,
    caller: &Caller,
    who: CallerIdentity<'_>,
    on_missing: MissingAuthorization,
) -> Decision {
    let decision = decide(policy, &target.tenant_rules, caller, on_missing);
    let Some(binding) = &target.identity_binding else {
        return decision;
    };
    if !decision.is_allow() {
        return decision;
    }
    if !caller.is_authenticated() {
        return Decision::Deny(Denial::AuthenticationRequired);
    }
    if binding.holds(path, &who) {
        decision
    } else {
        Decision::Deny(Denial::IdentityMismatch)
    }
}

/// Why a request was denied. See the module docs of [`super`] for the HTTP
/// mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// 401: no credential the route can use (no credentials at all, or a
    /// client certificate alone on a route that needs a token).
    AuthenticationRequired,
    /// 403 `insufficient_scope`: the token lacks the scopes in `required`
    /// (the failed `scopes_all` list, then the failed `scopes_any` list).
    InsufficientScope { required: Vec<String> },
    /// 403: identity known but not permitted.
    Forbidden { reason: DenyReason },
    /// 401: the route or the caller's tenant requires a sender-constrained
    /// token and the caller did not prove one.
    SenderConstraintRequired { needed: SenderConstraint },
    /// 403 `identity_mismatch`: a path parameter the route binds to the
    /// caller's identity names someone else (or the caller has no such
    /// identity value).
    IdentityMismatch,
}

/// Why a [`Denial::Forbidden`] was given. A fixed set, so it can label
/// metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// The route has no policy and `Router__OnMissingAuthorization` is
    /// `Deny`.
    NoPolicy,
    /// None of the token's audiences is in `audiences_any`.
    Audience,
    /// The token's tenant is missing or not in `tenants`.
    Tenant,
    /// None of the token's roles is in `roles_any`.
    Role,
    /// A claim in `claims` is missing or has another value.
    Claim,
    /// The caller is not a SPIFFE workload listed in `spiffe_ids`.
    SpiffeId,
}

impl DenyReason {
    pub const ALL: [DenyReason; 6] = [
        DenyReason::NoPolicy,
        DenyReason::Audience,
        DenyReason::Tenant,
        DenyReason::Role,
        DenyReason::Claim,
        DenyReason::SpiffeId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NoPolicy => "no_policy",
            DenyReason::Audience => "audience",
            DenyReason::Tenant => "tenant",
            DenyReason::Role => "role",
            DenyReason::Claim => "claim",
            DenyReason::SpiffeId => "spiffe_id",
        }
    }
}

impl DenyReason {
    /// One sentence for `policy explain` and logs.
    pub fn describe(self) -> &'static str {
        match self {
            DenyReason::NoPolicy => {
                "the route has no policy and Router__OnMissingAuthorization is Deny"
            }
            DenyReason::Audience => "none of the token's audiences is accepted",
            DenyReason::Tenant => "the token's tenant is missing or not accepted",
            DenyReason::Role => "the token has none of the accepted roles",
            DenyReason::Claim => "a required claim is missing or has another value",
            DenyReason::SpiffeId => "the caller is not one of the accepted spiffe workloads",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Denial {
    /// The HTTP status the gateway answers with.
    pub fn status(&self) -> u16 {
        match self {
            Denial::AuthenticationRequired | Denial::SenderConstraintRequired { .. } => 401,
            Denial::InsufficientScope { .. }
            | Denial::Forbidden { .. }
            | Denial::IdentityMismatch => 403,
        }
    }

    /// Stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::AuthenticationRequired => "authentication_required",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::Forbidden { reason } => reason.as_str(),
            Denial::SenderConstraintRequired { needed } => needed.required_label(),
            Denial::IdentityMismatch => "identity_mismatch",
        }
    }
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    /// 200 for an allow (the upstream answers), the denial's status
    /// otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Decision::Allow(_) => 200,
            Decision::Deny(d) => d.status(),
        }
    }

    /// Stable label for logs, metrics and decision tests.
    pub fn reason(&self) -> &'static str {
        match self {
            Decision::Allow(a) => a.reason(),
            Decision::Deny(d) => d.reason(),
        }
    }
}

/// Every reason label [`Decision::reason`] can return.
pub fn reason_labels() -> Vec<&'static str> {
    let mut labels = vec![
        AllowBasis::AnonymousRoute.as_str(),
        AllowBasis::RequirementsMet.as_str(),
        AllowBasis::NoPolicy(MissingAuthorization::AllowAnonymous).as_str(),
        "bypass",
        Denial::AuthenticationRequired.reason(),
        Denial::InsufficientScope {
            required: Vec::new(),
        }
        .reason(),
        Denial::IdentityMismatch.reason(),
    ];
    labels.extend(DenyReason::ALL.iter().map(|r| r.as_str()));
    labels.extend(
        [
            SenderConstraint::Dpop,
            SenderConstraint::Mtls,
            SenderConstraint::AnyBound,
        ]
        .iter()
        .map(|c| c.required_label()),
    );
    labels.sort_unstable();
    labels.dedup();
    labels
}

fn allow(basis: AllowBasis, used_bypass: bool) -> Decision {
    Decision::Allow(Allowed { basis, used_bypass })
}

fn deny(reason: DenyReason) -> Decision {
    Decision::Deny(Denial::Forbidden { reason })
}

/// Decides one request. `route_policy` is the matched route's policy
/// (`None`: the route has no policy block), `tenant_rules` the rules that
/// apply to the route's service.
pub fn decide(
    route_policy: Option<&Requirements>,
    tenant_rules: &TenantRules,
    caller: &Caller,
    on_missing: MissingAuthorization,
) -> Decision {
    // A bound token whose sender constraint was not proven passes only
    // where the route or the caller's tenant allows the emergency bypass;
    // everywhere else it is refused as it would be without the bypass.
    if caller.auth_method() == AuthMethod::Bypass {
        let route_allows = matches!(route_policy, Some(Requirements::Caller(r)) if r.allow_bypass);
        let tenant_allows = caller
            .claims()
            .and_then(TokenClaims::tenant)
            .is_some_and(|t| tenant_rules.for_tenant(t).iter().any(|r| r.allow_bypass));
        if !route_allows && !tenant_allows {
            let route_needs = match route_policy {
                Some(Requirements::Caller(r)) if r.sender_constraint != SenderConstraint::None => {
                    Some(r.sender_constraint)
                }
                _ => None,
            };
            let tenant_needs = caller.claims().and_then(TokenClaims::tenant).and_then(|t| {
                tenant_rules
                    .for_tenant(t)
                    .first()
                    .map(|r| r.sender_constraint)
            });
            return Decision::Deny(Denial::SenderConstraintRequired {
                needed: route_needs
                    .or(tenant_needs)
                    .unwrap_or(SenderConstraint::AnyBound),
            });
        }
    }
    match route_policy {
        Some(Requirements::Anonymous) => allow(AllowBasis::AnonymousRoute, false),
        Some(Requirements::Caller(req)) => decide_requirements(req, tenant_rules, caller),
        None => match on_missing {
            MissingAuthorization::Deny => deny(DenyReason::NoPolicy),
            MissingAuthorization::AllowAnonymous => allow(
                AllowBasis::NoPolicy(MissingAuthorization::AllowAnonymous),
                false,
            ),
            MissingAuthorization::RequireAuthenticated => {
                if !caller.is_authenticated() {
                    return Decision::Deny(Denial::AuthenticationRequired);
                }
                match tenant_constraints(tenant_rules, caller) {
                    Ok(used_bypass) => allow(
                        AllowBasis::NoPolicy(MissingAuthorization::RequireAuthenticated),
                        used_bypass,
                    ),
                    Err(denial) => Decision::Deny(denial),
                }
            }
        },
    }
}

fn decide_requirements(
    req: &CallerRequirements,
    tenant_rules: &TenantRules,
    caller: &Caller,
) -> Decision {
    let claims = match caller {
        Caller::Anonymous => return Decision::Deny(Denial::AuthenticationRequired),
        Caller::Spiffe { spiffe_id } => {
            if !req.spiffe_ids.is_empty() && !req.spiffe_ids.iter().any(|id| id == spiffe_id) {
                return deny(DenyReason::SpiffeId);
            }
            if req.needs_token() {
                return Decision::Deny(Denial::AuthenticationRequired);
            }
            None
        }
        Caller::Token { claims, .. } => {
            if !req.spiffe_ids.is_empty() {
                return deny(DenyReason::SpiffeId);
            }
            Some(claims.as_ref())
        }
    };
    let method = caller.auth_method();
    let mut used_bypass = false;
    if req.sender_constraint != SenderConstraint::None {
        match constraint_met(req.sender_constraint, req.allow_bypass, method) {
            Some(bypass) => used_bypass |= bypass,
            None => {
                return Decision::Deny(Denial::SenderConstraintRequired {
                    needed: req.sender_constraint,
                })
            }
        }
    }
    match tenant_constraints(tenant_rules, caller) {
        Ok(bypass) => used_bypass |= bypass,
        Err(denial) => return Decision::Deny(denial),
    }
    if let Some(claims) = claims {
        if let Err(denial) = token_requirements(req, claims) {
            return Decision::Deny(denial);
        }
    }
    allow(AllowBasis::RequirementsMet, used_bypass)
}

/// `Some(used_bypass)` when `method` satisfies `constraint`, `None` when not.
fn constraint_met(
    constraint: SenderConstraint,
    allow_bypass: bool,
    method: AuthMethod,
) -> Option<bool> {
    let proven = match constraint {
        SenderConstraint::None => true,
        SenderConstraint::Dpop => method == AuthMethod::Dpop,
        SenderConstraint::Mtls => method == AuthMethod::Mtls,
        SenderConstraint::AnyBound => matches!(method, AuthMethod::Dpop | AuthMethod::Mtls),
    };
    if proven {
        Some(false)
    } else if allow_bypass && method == AuthMethod::Bypass {
        Some(true)
    } else {
        None
    }
}

/// Applies every tenant rule for the caller's tenant. Only token callers
/// carry a tenant; the others have no rule to meet.
fn tenant_constraints(rules: &TenantRules, caller: &Caller) -> Result<bool, Denial> {
    let Some(tenant) = caller.claims().and_then(TokenClaims::tenant) else {
        return Ok(false);
    };
    let method = caller.auth_method();
    let mut used_bypass = false;
    for rule in rules.for_tenant(tenant) {
        match constraint_met(rule.sender_constraint, rule.allow_bypass, method) {
            Some(bypass) => used_bypass |= bypass,
            None => {
                return Err(Denial::SenderConstraintRequired {
                    needed: rule.sender_constraint,
                })
            }
        }
    }
    Ok(used_bypass)
}

fn token_requirements(req: &CallerRequirements, claims: &TokenClaims) -> Result<(), Denial> {
    if !req.audiences_any.is_empty()
        && !claims
            .audiences()
            .iter()
            .any(|aud| req.audiences_any.iter().any(|want| **want == **aud))
    {
        return Err(Denial::Forbidden {
            reason: DenyReason::Audience,
        });
    }
    let has = |scope: &String| claims.scopes().iter().any(|s| **s == **scope);
    let mut required = Vec::new();
    if !req.scopes_all.iter().all(has) {
        required.extend(req.scopes_all.iter().cloned());
    }
    if !req.scopes_any.is_empty() && !req.scopes_any.iter().any(has) {
        for scope in &req.scopes_any {
            if !required.contains(scope) {
                required.push(scope.clone());
            }
        }
    }
    if !required.is_empty() {
        return Err(Denial::InsufficientScope { required });
    }
    if !req.tenants.is_empty()
        && !claims
            .tenant()
            .is_some_and(|t| req.tenants.iter().any(|want| want == t))
    {
        return Err(Denial::Forbidden {
            reason: DenyReason::Tenant,
        });
    }
    if !req.roles_any.is_empty()
        && !claims
            .roles()
            .iter()
            .any(|r| req.roles_any.iter().any(|want| **want == **r))
    {
        return Err(Denial::Forbidden {
            reason: DenyReason::Role,
        });
    }
    if !req
        .claims
        .iter()
        .all(|(name, want)| claims.claim(name).as_deref() == Some(want))
    {
        return Err(Denial::Forbidden {
            reason: DenyReason::Claim,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::{BoundParam, IdentityBinding, IdentitySource};
    use crate::TenantRule;
    use std::sync::Arc;

    use MissingAuthorization::{AllowAnonymous, Deny, RequireAuthenticated};

    fn token(claims: TokenClaims, method: AuthMethod) -> Caller {
        Caller::Token {
            claims: Arc::new(claims),
            method,
        }
    }

    fn bearer(scopes: &[&str]) -> Caller {
        token(TokenClaims::for_tests("alice", scopes), AuthMethod::Bearer)
    }

    fn spiffe(id: &str) -> Caller {
        Caller::Spiffe {
            spiffe_id: id.to_owned(),
        }
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn with(f: impl FnOnce(&mut CallerRequirements)) -> Requirements {
        let mut req = CallerRequirements::default();
        f(&mut req);
        Requirements::Caller(req)
    }

    fn no_rules() -> TenantRules {
        TenantRules::new()
    }

    /// (allow?, status, reason) for compact tables.
    fn verdict(d: &Decision) -> (bool, u16, &'static str) {
        (d.is_allow(), d.status(), d.reason())
    }

    const ALLOW_REQ: (bool, u16, &str) = (true, 200, "requirements_met");

    #[test]
    fn an_anonymous_route_allows_every_caller_whatever_on_missing_authorization_says() {
        for on_missing in [Deny, RequireAuthenticated, AllowAnonymous] {
            for caller in [
                Caller::Anonymous,
                bearer(&[]),
                spiffe("spiffe://t.test/sa/a"),
            ] {
                let d = decide(
                    Some(&Requirements::Anonymous),
                    &no_rules(),
                    &caller,
                    on_missing,
                );
                assert_eq!(
                    verdict(&d),
                    (true, 200, "anonymous"),
                    "{caller:?} {on_missing:?}"
                );
            }
        }
    }

    #[test]
    fn a_route_without_policy_follows_on_missing_authorization() {
        let callers = [
            ("anonymous", Caller::Anonymous),
            ("token", bearer(&[])),
            ("spiffe", spiffe("spiffe://t.test/sa/a")),
        ];
        let cases: &[(MissingAuthorization, &str, (bool, u16, &str))] = &[
            (Deny, "anonymous", (false, 403, "no_policy")),
            (Deny, "token", (false, 403, "no_policy")),
            (Deny, "spiffe", (false, 403, "no_policy")),
            (
                RequireAuthenticated,
                "anonymous",
                (false, 401, "authentication_required"),
            ),
            (RequireAuthenticated, "token", (true, 200, "no_policy")),
            (RequireAuthenticated, "spiffe", (true, 200, "no_policy")),
            (AllowAnonymous, "anonymous", (true, 200, "no_policy")),
            (AllowAnonymous, "token", (true, 200, "no_policy")),
            (AllowAnonymous, "spiffe", (true, 200, "no_policy")),
        ];
        for (on_missing, who, want) in cases {
            let caller = callers
                .iter()
                .find(|(name, _)| name == who)
                .map(|(_, c)| c.clone())
                .unwrap_or(Caller::Anonymous);
            let d = decide(None, &no_rules(), &caller, *on_missing);
            assert_eq!(verdict(&d), *want, "{on_missing:?} {who}");
            if let Decision::Allow(a) = &d {
                assert_eq!(a.basis(), AllowBasis::NoPolicy(*on_missing));
            }
        }
    }

    #[test]
    fn every_denial_variant_is_produced_with_its_status() {
        let acme = || TokenClaims::for_tests("alice", &["echo.read"]).with_tenant("acme");
        let cases: Vec<(&str, Requirements, Caller, Denial)> = vec![
            (
                "anonymous caller on a route needing identity",
                with(|r| r.scopes_any = strings(&["echo.read"])),
                Caller::Anonymous,
                Denial::AuthenticationRequired,
            ),
            (
                "token without the scope",
                with(|r| r.scopes_all = strings(&["admin"])),
                bearer(&["echo.read"]),
                Denial::InsufficientScope {
                    required: strings(&["admin"]),
                },
            ),
            (
                "token of another tenant",
                with(|r| r.tenants = strings(&["globex"])),
                token(acme(), AuthMethod::Bearer),
                Denial::Forbidden {
                    reason: DenyReason::Tenant,
                },
            ),
            (
                "token without a tenant",
                with(|r| r.tenants = strings(&["acme"])),
                bearer(&[]),
                Denial::Forbidden {
                    reason: DenyReason::Tenant,
                },
            ),
            (
                "token without the role",
                with(|r| r.roles_any = strings(&["auditor"])),
                token(acme().with_roles(&["clerk"]), AuthMethod::Bearer),
                Denial::Forbidden {
                    reason: DenyReason::Role,
                },
            ),
            (
                "token with another claim value",
                with(|r| {
                    r.claims
                        .insert("department".into(), serde_json::json!("sales"));
                }),
                token(
                    acme().with_claim("department", serde_json::json!("support")),
                    AuthMethod::Bearer,
                ),
                Denial::Forbidden {
                    reason: DenyReason::Claim,
                },
            ),
            (
                "token for another audience",
                with(|r| r.audiences_any = strings(&["orders"])),
                token(acme().with_audiences(&["billing"]), AuthMethod::Bearer),
                Denial::Forbidden {
                    reason: DenyReason::Audience,
                },
            ),
            (
                "workload not listed",
                with(|r| r.spiffe_ids = strings(&["spiffe://t.test/sa/orders"])),
                spiffe("spiffe://t.test/sa/billing"),
                Denial::Forbidden {
                    reason: DenyReason::SpiffeId,
                },
            ),
            (
                "token on a workload-only route",
                with(|r| r.spiffe_ids = strings(&["spiffe://t.test/sa/orders"])),
                bearer(&["echo.read"]),
                Denial::Forbidden {
                    reason: DenyReason::SpiffeId,
                },
            ),
            (
                "plain bearer token on a dpop route",
                with(|r| r.sender_constraint = SenderConstraint::Dpop),
                bearer(&[]),
                Denial::SenderConstraintRequired {
                    needed: SenderConstraint::Dpop,
                },
            ),
        ];
        for (name, req, caller, want) in cases {
            let d = decide(Some(&req), &no_rules(), &caller, RequireAuthenticated);
            let status = want.status();
            assert_eq!(d, Decision::Deny(want), "{name}");
            assert_eq!(d.status(), status, "{name}");
        }
        assert_eq!(Denial::AuthenticationRequired.status(), 401);
        assert_eq!(
            Denial::SenderConstraintRequired {
                needed: SenderConstraint::Mtls
            }
            .status(),
            401
        );
        assert_eq!(Denial::InsufficientScope { required: vec![] }.status(), 403);
        assert_eq!(
            Denial::Forbidden {
                reason: DenyReason::NoPolicy
            }
            .status(),
            403
        );
    }

    #[test]
    fn scopes_all_needs_every_scope_and_scopes_any_needs_one() {
        let both = with(|r| {
            r.scopes_all = strings(&["a", "b"]);
            r.scopes_any = strings(&["x", "y"]);
        });
        let cases: &[(&[&str], Option<&[&str]>)] = &[
            (&["a", "b", "x"], None),
            (&["a", "b", "y", "z"], None),
            (&["a", "x"], Some(&["a", "b"])),
            (&["a", "b"], Some(&["x", "y"])),
            (&["b"], Some(&["a", "b", "x", "y"])),
            (&[], Some(&["a", "b", "x", "y"])),
        ];
        for (held, missing) in cases {
            let d = decide(
                Some(&both),
                &no_rules(),
                &bearer(held),
                RequireAuthenticated,
            );
            match missing {
                None => assert_eq!(verdict(&d), ALLOW_REQ, "{held:?}"),
                Some(required) => assert_eq!(
                    d,
                    Decision::Deny(Denial::InsufficientScope {
                        required: strings(required)
                    }),
                    "{held:?}"
                ),
            }
        }
    }

    #[test]
    fn sender_constraints_accept_only_the_method_that_proves_them() {
        use AuthMethod::{Bearer, Bypass, Dpop, Mtls};
        use SenderConstraint::{AnyBound, Mtls as NeedMtls};
        let need_dpop = SenderConstraint::Dpop;
        // (constraint, allow_bypass, method, allowed, used_bypass)
        let cases = [
            (need_dpop, false, Bearer, false, false),
            (need_dpop, false, Dpop, true, false),
            (need_dpop, false, Mtls, false, false),
            (need_dpop, false, Bypass, false, false),
            (need_dpop, true, Bypass, true, true),
            (need_dpop, true, Bearer, false, false),
            (NeedMtls, false, Mtls, true, false),
            (NeedMtls, false, Dpop, false, false),
            (NeedMtls, false, Bypass, false, false),
            (NeedMtls, true, Bypass, true, true),
            (AnyBound, false, Dpop, true, false),
            (AnyBound, false, Mtls, true, false),
            (AnyBound, false, Bearer, false, false),
            (AnyBound, false, Bypass, false, false),
            (AnyBound, true, Bypass, true, true),
            (AnyBound, true, Dpop, true, false),
        ];
        for (constraint, allow_bypass, method, allowed, bypass) in cases {
            let req = with(|r| {
                r.sender_constraint = constraint;
                r.allow_bypass = allow_bypass;
            });
            let caller = token(TokenClaims::for_tests("alice", &[]), method);
            let d = decide(Some(&req), &no_rules(), &caller, RequireAuthenticated);
            let label = format!("{constraint} bypass={allow_bypass} {method:?}");
            match d {
                Decision::Allow(a) => {
                    assert!(allowed, "{label} must be denied");
                    assert_eq!(a.used_bypass(), bypass, "{label}");
                    assert_eq!(
                        a.reason(),
                        if bypass { "bypass" } else { "requirements_met" }
                    );
                }
                Decision::Deny(denial) => {
                    assert!(!allowed, "{label} must be allowed");
                    assert_eq!(
                        denial,
                        Denial::SenderConstraintRequired { needed: constraint },
                        "{label}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_spiffe_caller_meets_identity_and_spiffe_checks_but_never_token_ones() {
        let id = "spiffe://stella.test/ns/default/sa/orders";
        let cases: Vec<(Requirements, (bool, u16, &str))> = vec![
            (with(|_| {}), ALLOW_REQ),
            (with(|r| r.spiffe_ids = strings(&[id])), ALLOW_REQ),
            (
                with(|r| r.scopes_any = strings(&["echo.read"])),
                (false, 401, "authentication_required"),
            ),
            (
                with(|r| r.sender_constraint = SenderConstraint::Mtls),
                (false, 401, "authentication_required"),
            ),
        ];
        for (req, want) in cases {
            let d = decide(Some(&req), &no_rules(), &spiffe(id), RequireAuthenticated);
            assert_eq!(verdict(&d), want, "{req}");
        }
    }

    #[test]
    fn tenant_rules_bind_their_tenant_wherever_identity_decides() {
        let mut rules = TenantRules::new();
        rules.add(
            "high-assurance",
            TenantRule {
                sender_constraint: SenderConstraint::Mtls,
                allow_bypass: false,
                dpop_nonce: false,
            },
        );
        let tenant_token = |method| {
            token(
                TokenClaims::for_tests("alice", &["echo.read"]).with_tenant("high-assurance"),
                method,
            )
        };
        let other_tenant = token(
            TokenClaims::for_tests("bob", &["echo.read"]).with_tenant("acme"),
            AuthMethod::Bearer,
        );
        let reads = with(|r| r.scopes_any = strings(&["echo.read"]));
        let mtls_required = (false, 401, "mtls_required");
        type Case<'a> = (
            &'a str,
            Option<&'a Requirements>,
            MissingAuthorization,
            Caller,
            (bool, u16, &'a str),
        );
        let cases: Vec<Case<'_>> = vec![
            (
                "bearer on a route with requirements",
                Some(&reads),
                RequireAuthenticated,
                tenant_token(AuthMethod::Bearer),
                mtls_required,
            ),
            (
                "mtls on a route with requirements",
                Some(&reads),
                RequireAuthenticated,
                tenant_token(AuthMethod::Mtls),
                ALLOW_REQ,
            ),
            (
                "bypass without allow_bypass",
                Some(&reads),
                RequireAuthenticated,
                tenant_token(AuthMethod::Bypass),
                mtls_required,
            ),
            (
                "another tenant",
                Some(&reads),
                RequireAuthenticated,
                other_tenant.clone(),
                ALLOW_REQ,
            ),
            (
                "no policy, authenticated required",
                None,
                RequireAuthenticated,
                tenant_token(AuthMethod::Bearer),
                mtls_required,
            ),
            (
                "no policy, anonymous allowed",
                None,
                AllowAnonymous,
                tenant_token(AuthMethod::Bearer),
                (true, 200, "no_policy"),
            ),
            (
                "anonymous route",
                Some(&Requirements::Anonymous),
                RequireAuthenticated,
                tenant_token(AuthMethod::Bearer),
                (true, 200, "anonymous"),
            ),
        ];
        for (name, req, on_missing, caller, want) in cases {
            let d = decide(req, &rules, &caller, on_missing);
            assert_eq!(verdict(&d), want, "{name}");
        }
        // Two rules for one tenant (global and service): both must hold.
        rules.add(
            "high-assurance",
            TenantRule {
                sender_constraint: SenderConstraint::AnyBound,
                allow_bypass: true,
                dpop_nonce: false,
            },
        );
        let d = decide(
            Some(&reads),
            &rules,
            &tenant_token(AuthMethod::Mtls),
            RequireAuthenticated,
        );
        assert_eq!(verdict(&d), ALLOW_REQ);
        let d = decide(
            Some(&reads),
            &rules,
            &tenant_token(AuthMethod::Dpop),
            RequireAuthenticated,
        );
        assert_eq!(verdict(&d), mtls_required);
    }

    #[test]
    fn claim_requirements_compare_json_values_exactly() {
        let req = with(|r| {
            r.claims.insert("level".into(), serde_json::json!(3));
            r.claims.insert(
                "org".into(),
                serde_json::json!({"id": "acme", "tier": ["gold"]}),
            );
        });
        let org = serde_json::json!({"tier": ["gold"], "id": "acme"});
        let cases: &[(serde_json::Value, serde_json::Value, bool)] = &[
            (serde_json::json!(3), org.clone(), true),
            (serde_json::json!("3"), org.clone(), false),
            (serde_json::json!(3.5), org.clone(), false),
            (
                serde_json::json!(3),
                serde_json::json!({"id": "acme"}),
                false,
            ),
            (
                serde_json::json!(3),
                serde_json::json!({"id": "acme", "tier": "gold"}),
                false,
            ),
        ];
        for (level, org, allowed) in cases {
            let claims = TokenClaims::for_tests("alice", &[])
                .with_claim("level", level.clone())
                .with_claim("org", org.clone());
            let d = decide(
                Some(&req),
                &no_rules(),
                &token(claims, AuthMethod::Bearer),
                RequireAuthenticated,
            );
            assert_eq!(d.is_allow(), *allowed, "{level} {org}");
        }
        let missing = decide(Some(&req), &no_rules(), &bearer(&[]), RequireAuthenticated);
        assert_eq!(verdict(&missing), (false, 403, "claim"));
    }

    #[test]
    fn authentication_problems_are_answered_before_permission_problems() {
        let req = with(|r| {
            r.sender_constraint = SenderConstraint::Dpop;
            r.audiences_any = strings(&["orders"]);
            r.scopes_all = strings(&["admin"]);
            r.tenants = strings(&["acme"]);
        });
        let wrong_everything = |method| {
            token(
                TokenClaims::for_tests("mallory", &[])
                    .with_audiences(&["billing"])
                    .with_tenant("globex"),
                method,
            )
        };
        let steps: Vec<(Caller, (bool, u16, &str))> = vec![
            (Caller::Anonymous, (false, 401, "authentication_required")),
            (
                wrong_everything(AuthMethod::Bearer),
                (false, 401, "dpop_required"),
            ),
            (wrong_everything(AuthMethod::Dpop), (false, 403, "audience")),
            (
                token(
                    TokenClaims::for_tests("mallory", &[])
                        .with_audiences(&["orders"])
                        .with_tenant("globex"),
                    AuthMethod::Dpop,
                ),
                (false, 403, "insufficient_scope"),
            ),
            (
                token(
                    TokenClaims::for_tests("mallory", &["admin"])
                        .with_audiences(&["orders"])
                        .with_tenant("globex"),
                    AuthMethod::Dpop,
                ),
                (false, 403, "tenant"),
            ),
        ];
        for (caller, want) in steps {
            let d = decide(Some(&req), &no_rules(), &caller, RequireAuthenticated);
            assert_eq!(verdict(&d), want, "{caller:?}");
        }
    }

    #[test]
    fn a_bypass_caller_is_refused_wherever_bypass_is_not_allowed() {
        let bypass = Caller::Token {
            claims: Arc::new(TokenClaims::for_tests("svc", &["echo.read"]).with_tenant("acme")),
            method: AuthMethod::Bypass,
        };
        let none = TenantRules::new();
        let plain = Requirements::Caller(CallerRequirements {
            scopes_any: vec!["echo.read".into()],
            ..CallerRequirements::default()
        });
        let refused = Decision::Deny(Denial::SenderConstraintRequired {
            needed: SenderConstraint::AnyBound,
        });
        for policy in [Some(&Requirements::Anonymous), Some(&plain), None] {
            for on_missing in [
                MissingAuthorization::AllowAnonymous,
                MissingAuthorization::RequireAuthenticated,
            ] {
                assert_eq!(
                    decide(policy, &none, &bypass, on_missing),
                    refused,
                    "{policy:?}"
                );
            }
        }
        let allowing = Requirements::Caller(CallerRequirements {
            sender_constraint: SenderConstraint::Dpop,
            allow_bypass: true,
            ..CallerRequirements::default()
        });
        let Decision::Allow(allowed) =
            decide(Some(&allowing), &none, &bypass, MissingAuthorization::Deny)
        else {
            panic!("bypass route refused a bypass caller");
        };
        assert!(allowed.used_bypass());
        let mut tenant = TenantRules::new();
        tenant.add(
            "acme",
            TenantRule {
                sender_constraint: SenderConstraint::Mtls,
                allow_bypass: true,
                dpop_nonce: false,
            },
        );
        assert!(decide(Some(&plain), &tenant, &bypass, MissingAuthorization::Deny).is_allow());
    }

    #[test]
    fn reason_labels_are_lowercase_snake_case_words() {
        let labels = reason_labels();
        assert!(labels.len() >= 14, "{labels:?}");
        for l in labels {
            assert!(
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{l}"
            );
        }
    }

    fn bound_route(policy: Option<Requirements>, source: IdentitySource) -> RouteTarget {
        let mut target = RouteTarget::for_tests(policy);
        target.identity_binding = Some(IdentityBinding::new(vec![BoundParam {
            name: "eid".into(),
            segment: 1,
            source,
        }]));
        target
    }

    use stella_routing::normalize::path_for_tests as path;

    fn decide_on(target: &RouteTarget, raw: &str, caller: &Caller) -> (bool, u16, &'static str) {
        let d = decide_route(
            target,
            &path(raw),
            caller,
            CallerIdentity::of(caller),
            RequireAuthenticated,
        );
        verdict(&d)
    }

    const MISMATCH: (bool, u16, &str) = (false, 403, "identity_mismatch");

    #[test]
    fn a_bound_route_lets_a_spiffe_executor_reach_only_its_own_path() {
        let route = bound_route(
            Some(with(|r| {
                r.spiffe_ids = strings(&[
                    "spiffe://stella.test/executors/e1",
                    "spiffe://stella.test/executors/e2",
                ])
            })),
            IdentitySource::SpiffePathLast,
        );
        let e1 = spiffe("spiffe://stella.test/executors/e1");
        assert_eq!(decide_on(&route, "/executors/e1/heartbeat", &e1), ALLOW_REQ);
        assert_eq!(decide_on(&route, "/executors/e2/heartbeat", &e1), MISMATCH);
        assert_eq!(
            decide_on(&route, "/executors/e%32/heartbeat", &e1),
            MISMATCH
        );
        // The policy's own answer comes first.
        let e3 = spiffe("spiffe://stella.test/executors/e3");
        assert_eq!(
            decide_on(&route, "/executors/e3/heartbeat", &e3),
            (false, 403, "spiffe_id")
        );
    }

    #[test]
    fn a_bound_route_compares_sub_and_client_id_of_token_callers() {
        let sub_route = bound_route(
            Some(with(|r| r.scopes_any = strings(&["agent"]))),
            IdentitySource::Sub,
        );
        let alice = bearer(&["agent"]);
        assert_eq!(decide_on(&sub_route, "/agents/alice/x", &alice), ALLOW_REQ);
        assert_eq!(decide_on(&sub_route, "/agents/bob/x", &alice), MISMATCH);
        assert_eq!(decide_on(&sub_route, "/agents/Alice/x", &alice), MISMATCH);
        // Scope before identity: the 403 the caller can act on.
        assert_eq!(
            decide_on(&sub_route, "/agents/bob/x", &bearer(&[])),
            (false, 403, "insufficient_scope")
        );
        let client_route = bound_route(None, IdentitySource::ClientId);
        let dpop = token(TokenClaims::for_tests("alice", &[]), AuthMethod::Dpop);
        assert_eq!(
            decide_on(&client_route, "/clients/client/x", &dpop),
            (true, 200, "no_policy")
        );
        assert_eq!(
            decide_on(&client_route, "/clients/alice/x", &dpop),
            MISMATCH
        );
        // A SPIFFE caller has no token: no sub, no client id.
        let svid = spiffe("spiffe://stella.test/executors/client");
        assert_eq!(
            decide_on(&client_route, "/clients/client/x", &svid),
            MISMATCH
        );
    }

    #[test]
    fn an_anonymous_caller_on_a_bound_route_must_authenticate() {
        let route = bound_route(None, IdentitySource::Sub);
        let d = decide_route(
            &route,
            &path("/agents/alice"),
            &Caller::Anonymous,
            CallerIdentity::default(),
            AllowAnonymous,
        );
        assert_eq!(verdict(&d), (false, 401, "authentication_required"));
        assert_eq!(
            decide_on(&route, "/agents/alice", &Caller::Anonymous),
            (false, 401, "authentication_required")
        );
    }

    #[test]
    fn a_route_without_binding_decides_as_before() {
        let route = RouteTarget::for_tests(None);
        let alice = bearer(&[]);
        assert_eq!(
            decide_on(&route, "/agents/bob", &alice),
            (true, 200, "no_policy")
        );
        assert!(reason_labels().contains(&"identity_mismatch"));
    }
}
