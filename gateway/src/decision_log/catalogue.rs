//! Every `reason` a decision-log line can carry and every problem+json
//! `error` code the gateway answers with, each explained for the operator
//! who meets it: what it means, the usual causes, what to do. The page
//! `docs/troubleshooting.md` is [`markdown`].
//!
//! The lists here are the registry; the code that makes reasons is their
//! source. [`answers`] runs every value each stage can refuse with (the
//! crates' error enums, the policy's denials, the gateway's own refusals)
//! through the real mapping ([`Refusal::from`], [`Refusal::reason`],
//! [`Refusal::reply`]), and the tests hold the registry equal to what that
//! yields: a reason without an entry, or an entry no code makes, fails.
//! The tests also read the sources for reasons written as literals, and
//! list every variant of each enum, so a new one cannot be left out.

use crate::response::Refusal;
use std::collections::BTreeMap;
use stella_authn::dpop::{DpopError, ProofClaim};
use stella_authn::nonce::NonceError;
use stella_authn::presented::PresentedError;
use stella_authn::revocation::Kind as RevokedKind;
use stella_authn::{AuthnError, ClaimProblem, Revoked, TokenError};
use stella_authority::jwks::Unavailable;
use stella_authority::KeyLookupError;
use stella_jose::{JoseError, JwsAlg, KeyKind, MemberProblem};
use stella_policy::SenderConstraint;
use stella_policy::{AllowBasis, Denial, DenyReason, MissingAuthorization};
use stella_routing::PathError;

/// One code, explained.
#[derive(Clone, Copy, Debug)]
pub struct Entry {
    pub code: &'static str,
    /// What it means, in one or two sentences.
    pub meaning: &'static str,
    /// The usual causes, most likely first.
    pub causes: &'static str,
    /// What to do about it.
    pub action: &'static str,
}

const fn e(
    code: &'static str,
    meaning: &'static str,
    causes: &'static str,
    action: &'static str,
) -> Entry {
    Entry {
        code,
        meaning,
        causes,
        action,
    }
}

/// The reasons the literals of the authentication pipeline name
/// (`AuthnError::InvalidToken("...")`): token refusals of its own.
pub const PIPELINE_TOKEN_REASONS: &[&str] = &[
    "dpop_bound_token_as_bearer",
    "certificate_mismatch",
    "certificate_missing",
    "unenforceable_cnf",
];

/// `AuthnError::InvalidProof("...")`: proof refusals of the pipeline.
pub const PIPELINE_PROOF_REASONS: &[&str] = &["dpop_not_configured", "replayed"];

/// The reasons of `Refusal::MalformedRequestShape` (gateway/src/proxy/shape.rs).
pub const SHAPE_REASONS: &[&str] = &[
    "duplicate_host",
    "absolute_form_target",
    "ambiguous_framing",
];

/// The request for the published keys on a public listener
/// (`gateway.listeners.public_jwks`), answered by the gateway itself.
pub const PUBLIC_JWKS: &str = "public_jwks";

/// A request for a protected resource's metadata (RFC 9728,
/// `gateway.protected_resources`), answered by the gateway itself.
pub const RESOURCE_METADATA: &str = "resource_metadata";

/// The client went away before an answer; nothing was written.
pub const DOWNSTREAM_CLOSED: &str = "downstream_closed";

/// What the gateway answered for a reason.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    /// The policy allowed the request; the service's answer went back.
    Forwarded,
    /// The gateway's published key set, 200.
    KeySet,
    /// A protected resource's metadata document (RFC 9728), 200.
    ResourceMetadata,
    /// A refusal, as its problem+json response shows it.
    Refused(Refused),
    /// No answer: the client had gone.
    Nothing,
}

/// A refusal's response, as a client sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Refused {
    pub status: u16,
    pub error: String,
    /// The body member that names the reason (`token_error`,
    /// `proof_error`, `path_error`, `reason`) and its value, if any.
    pub member: Option<(String, String)>,
    /// Each `WWW-Authenticate` challenge's scheme and `error`.
    pub challenges: Vec<String>,
    pub retry_after: bool,
}

impl Refused {
    fn of(refusal: &Refusal) -> Refused {
        let reply = refusal.reply("catalogue");
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let member = ["token_error", "proof_error", "path_error", "reason"]
            .into_iter()
            .find_map(|m| Some((m.to_owned(), body.get(m)?.as_str()?.to_owned())));
        let challenges = reply
            .headers
            .iter()
            .filter(|(name, _)| *name == "www-authenticate")
            .map(|(_, value)| {
                let scheme = value.split(' ').next().unwrap_or_default();
                match value.split_once("error=\"") {
                    Some((_, rest)) => format!(
                        "{scheme} error=\"{}\"",
                        rest.split('"').next().unwrap_or_default()
                    ),
                    None => scheme.to_owned(),
                }
            })
            .collect();
        Refused {
            status: reply.status,
            error: refusal.code().to_owned(),
            member,
            challenges,
            retry_after: reply.headers.iter().any(|(name, _)| *name == "retry-after"),
        }
    }
}

/// One value of every access-token refusal the token checks make. JWK
/// problems (`private_key_in_jwk`, `symmetric_jwk`, `bad_key`) are found
/// when a JWKS is loaded, never for a token, so they are not here.
pub fn token_errors() -> Vec<TokenError> {
    let jose = [
        JoseError::TooLong { max: 0 },
        JoseError::Malformed,
        JoseError::HeaderMember("alg", MemberProblem::Missing),
        JoseError::UnsupportedHeader("crit"),
        JoseError::UnsupportedAlg,
        JoseError::AlgKeyMismatch {
            alg: JwsAlg::Es256,
            key: KeyKind::Rsa,
        },
        JoseError::KeyUseMismatch { alg: JwsAlg::Es256 },
        JoseError::MalformedSignature { alg: JwsAlg::Es256 },
        JoseError::BadSignature,
    ];
    let claim = |problem| TokenError::Claim {
        claim: "sub".into(),
        problem,
    };
    let mut all: Vec<TokenError> = jose.into_iter().map(TokenError::Jose).collect();
    all.extend([
        TokenError::MissingTyp,
        TokenError::WrongTyp,
        TokenError::AlgNotAllowed(JwsAlg::Rs256),
        TokenError::KeyInHeader("jwk"),
        TokenError::Key(KeyLookupError::Unavailable(Unavailable::NeverLoaded)),
        TokenError::Key(KeyLookupError::UnknownKid),
        TokenError::Key(KeyLookupError::MissingKid),
        claim(ClaimProblem::Missing),
        claim(ClaimProblem::WrongType),
        claim(ClaimProblem::NotNumericDate),
        claim(ClaimProblem::UnexpectedValue),
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::Expired { ago: 0, leeway: 0 },
        TokenError::NotYetValid { wait: 0, leeway: 0 },
        TokenError::IssuedInFuture {
            ahead: 0,
            leeway: 0,
        },
        TokenError::UnknownIssuer,
        TokenError::TenantIssuerMismatch,
        TokenError::Inactive,
        TokenError::Unavailable {
            what: "introspection",
        },
    ]);
    all
}

/// One value of every DPoP proof refusal.
pub fn dpop_errors() -> Vec<DpopError> {
    let mut all = vec![
        DpopError::TokenNotDpopBound,
        DpopError::ProofTooLong { max: 0 },
        DpopError::MalformedProof(JoseError::Malformed),
        DpopError::TypMismatch,
        DpopError::AlgNotAllowed,
        DpopError::ExternalKeyReference,
        DpopError::JwkMissing,
        DpopError::BadJwk(JoseError::SymmetricJwk),
        DpopError::BadSignature(JoseError::BadSignature),
        DpopError::ClaimType(ProofClaim::Jti),
        DpopError::JtiEmpty,
        DpopError::JtiTooLong { max: 0 },
        DpopError::HtmMismatch,
        DpopError::HtuMismatch,
        DpopError::TargetInvalid,
        DpopError::IatTooOld { max_age: 0 },
        DpopError::IatInFuture { skew: 0 },
        DpopError::AthMismatch,
        DpopError::NonceMissing,
        DpopError::NonceInvalid(NonceError::Expired),
        DpopError::JktMismatch,
    ];
    all.extend(
        [
            ProofClaim::Jti,
            ProofClaim::Htm,
            ProofClaim::Htu,
            ProofClaim::Iat,
            ProofClaim::Ath,
        ]
        .map(DpopError::MissingClaim),
    );
    all
}

pub fn presented_errors() -> [PresentedError; 4] {
    [
        PresentedError::SeveralCredentials,
        PresentedError::Malformed,
        PresentedError::DpopProofMissing,
        PresentedError::DpopWithoutToken,
    ]
}

/// The authentication pipeline's refusals besides the token's and the
/// proof's own.
pub fn authn_errors() -> Vec<AuthnError> {
    let mut all: Vec<AuthnError> = PIPELINE_TOKEN_REASONS
        .iter()
        .map(|code| AuthnError::InvalidToken(code))
        .collect();
    all.extend(
        PIPELINE_PROOF_REASONS
            .iter()
            .map(|code| AuthnError::InvalidProof(code)),
    );
    all.extend([
        AuthnError::UseNonce("nonce".into()),
        AuthnError::MultipleCredentials,
        AuthnError::ReplayShareExceeded,
        AuthnError::ReplayStoreUnavailable,
        AuthnError::Revoked(Revoked {
            kind: RevokedKind::Jti,
            value_sha256: String::new(),
        }),
        AuthnError::RevocationListStale,
    ]);
    all
}

/// One value of every policy denial.
pub fn denials() -> Vec<Denial> {
    let mut all = vec![
        Denial::AuthenticationRequired,
        Denial::InsufficientScope {
            required: Vec::new(),
        },
        Denial::IdentityMismatch,
    ];
    all.extend(
        DenyReason::ALL
            .iter()
            .map(|&reason| Denial::Forbidden { reason }),
    );
    all.extend(
        [
            SenderConstraint::Dpop,
            SenderConstraint::Mtls,
            SenderConstraint::AnyBound,
        ]
        .map(|needed| Denial::SenderConstraintRequired { needed }),
    );
    all
}

/// The refusals the gateway makes besides those of authentication and the
/// policy: the request's shape, path and route, the replay store, the
/// envelope, the upstream, the connection.
pub fn own_refusals() -> Vec<Refusal> {
    let mut all: Vec<Refusal> = PathError::ALL
        .iter()
        .map(|e| Refusal::BadPath { code: e.code() })
        .collect();
    all.extend(
        SHAPE_REASONS
            .iter()
            .map(|&reason| Refusal::MalformedRequestShape { reason }),
    );
    all.extend([
        Refusal::TokenInQuery,
        Refusal::MalformedRequest,
        Refusal::UnparsableRequest,
        Refusal::NoRoute,
        Refusal::MethodNotAllowed {
            allowed: vec!["GET".into()],
        },
        Refusal::ReplayStoreUnavailable,
        Refusal::ReplayShareExceeded,
        Refusal::EnvelopeUnavailable,
        Refusal::UpstreamUnavailable,
        Refusal::UpstreamTimeout,
        Refusal::Internal,
        Refusal::RequestTimeout,
        Refusal::RequestHeaderFieldsTooLarge,
        Refusal::TooManyConnections,
    ]);
    all
}

/// Every reason, with every answer it goes with.
pub fn answers() -> BTreeMap<&'static str, Vec<Answer>> {
    let mut out: BTreeMap<&'static str, Vec<Answer>> = BTreeMap::new();
    let mut add = |reason: &'static str, answer: Answer| {
        let list = out.entry(reason).or_default();
        if !list.contains(&answer) {
            list.push(answer);
            list.sort();
        }
    };
    let mut refusals: Vec<Refusal> = token_errors().into_iter().map(Refusal::from).collect();
    refusals.extend(dpop_errors().iter().map(Refusal::from));
    refusals.extend(presented_errors().map(Refusal::from));
    refusals.extend(authn_errors().into_iter().map(Refusal::from));
    refusals.extend(own_refusals());
    for refusal in &refusals {
        add(refusal.reason(), Answer::Refused(Refused::of(refusal)));
    }
    // A denial is logged with its own label, and answered as its refusal.
    for denial in denials() {
        let reason = denial.reason();
        add(reason, Answer::Refused(Refused::of(&Refusal::from(denial))));
    }
    for basis in [
        AllowBasis::AnonymousRoute,
        AllowBasis::RequirementsMet,
        AllowBasis::NoPolicy(MissingAuthorization::AllowAnonymous),
    ] {
        add(basis.as_str(), Answer::Forwarded);
    }
    // `Allowed::reason` when the emergency bypass let the request through.
    add("bypass", Answer::Forwarded);
    add(PUBLIC_JWKS, Answer::KeySet);
    add(RESOURCE_METADATA, Answer::ResourceMetadata);
    add(DOWNSTREAM_CLOSED, Answer::Nothing);
    out
}

/// Every `error` code, with the statuses it is answered with.
pub fn error_statuses() -> BTreeMap<String, Vec<u16>> {
    let mut out: BTreeMap<String, Vec<u16>> = BTreeMap::new();
    for answer in answers().into_values().flatten() {
        if let Answer::Refused(r) = answer {
            let list = out.entry(r.error).or_default();
            if !list.contains(&r.status) {
                list.push(r.status);
                list.sort_unstable();
            }
        }
    }
    out
}

/// The problem+json `error` codes.
pub const ERRORS: &[Entry] = &[
    e(
        "invalid_request",
        "The request is malformed or ambiguous in a way the gateway refuses before it looks at any credential or policy. The body's `path_error`, or the decision log's `reason`, names the defect.",
        "A client or library that builds paths, headers or credentials by hand; a proxy in front of the gateway that rewrites requests; a scanner or an attack probe.",
        "Read the decision log line by the body's `request_id` and look its `reason` up below. Fix the client; the gateway does not relax these checks.",
    ),
    e(
        "request_timeout",
        "The request head did not arrive completely within `gateway.limits.request_head_timeout_ms`; the connection is closed.",
        "A slow or stalled client, a very slow network path, or a client that opens connections and sends nothing (a slow-loris pattern).",
        "If real clients are slow, raise `gateway.limits.request_head_timeout_ms`; otherwise nothing: the gateway is protecting itself. `stella_gateway_connections_closed_total{reason=\"request_head_timeout\"}` counts them.",
    ),
    e(
        "request_header_fields_too_large",
        "The request head is larger than `gateway.limits.max_request_header_bytes`, or has more fields than `gateway.limits.max_request_headers`.",
        "Oversized cookies, a client that piles up headers, very large tokens, or an attack probe.",
        "Find what makes the head large (often cookies or a token with many claims). Raise the limit only if the size is legitimate.",
    ),
    e(
        "temporarily_unavailable",
        "Something the request needs cannot answer now: the Authority (keys, introspection, claims), the DPoP replay store, a current copy of the shared revocation list (with `when_stale: refuse`), the envelope signer, or the listener is at its connection limit. The gateway could not check, so it does not guess: 503 with `Retry-After`, never 401.",
        "An Authority outage longer than the configured max-stale; an unreachable Redis replay store or revocation store; a listener at `gateway.limits.max_connections`.",
        "Look up the decision log's `reason` below (`authority_unavailable`, `replay_store_unavailable`, `revocation_list_stale`, `envelope_signing_failed`, `connection_limit`). Clients should retry after `Retry-After` seconds.",
    ),
    e(
        "not_found",
        "No route matches the request's host and path.",
        "A typo in the client's URL; a route that is not in the policies the gateway loaded; a policy file that failed to load on the last reload (the old routes still serve).",
        "Check the route with `stella-gateway policy explain --policies DIR --method GET --path /the/path`, and `/config` on the admin listener for a rejected reload.",
    ),
    e(
        "method_not_allowed",
        "A route matches the path, but not the method; the `Allow` header lists the methods it takes.",
        "A client using the wrong method; a route written for fewer methods than the service offers; `CONNECT`, which the gateway never proxies.",
        "Use a method from `Allow`, or add the method to the route's `methods` in its policy file.",
    ),
    e(
        "authentication_required",
        "The route needs an identity and the request carried no credential the route can use. The answer has a `Bearer` and a `DPoP` challenge without an `error`.",
        "A client that did not send its token; a token dropped by a proxy or a redirect; a client certificate alone on a route that requires a token.",
        "Send an access token (`Authorization: Bearer` or `DPoP`). To check the route's requirement, run `stella-gateway policy explain`.",
    ),
    e(
        "invalid_token",
        "The access token was checked and is not acceptable, or does not fit how it was presented. The body's `token_error` names the check that failed.",
        "An expired token; a token from another issuer or for another audience; a sender-constrained token without its proof or certificate; a revoked identity.",
        "Look the `token_error` (or the decision log's `reason`) up below. Clients should get a new token; do not retry the same one.",
    ),
    e(
        "invalid_dpop_proof",
        "The DPoP proof is missing or fails a check of RFC 9449. The body's `proof_error` names the check.",
        "A client that reuses a proof, signs the wrong method or URL, has a wrong clock, or does not send the `DPoP` header.",
        "Look the `proof_error` up below. A client must make a fresh proof for every request.",
    ),
    e(
        "use_dpop_nonce",
        "The route or tenant requires a server nonce (`dpop_nonce: true`) and the proof had none, or a stale one. The answer carries a fresh nonce in `DPoP-Nonce`.",
        "The client's first request on such a route, or a nonce older than two `gateway.auth.dpop.nonce_step_seconds`: this is the normal handshake, not a failure.",
        "Nothing, if clients retry once with the nonce (RFC 9449 section 8; `stella-gateway call` does). A high share of misses fires `StellaGatewayDpopNonceMissRatioHigh`: clients that never retry, or nodes with different `nonce_secret`s.",
    ),
    e(
        "too_many_requests",
        "One DPoP key is sending proofs faster than its share of the memory replay store allows; its requests are slowed down, everyone else's go on.",
        "One client flooding (a loop, a misbehaving batch job, an attack with one stolen key).",
        "Find the client by `client_id` in the decision log. If the rate is legitimate, size the store ([replay-store.md](replay-store.md)) or raise `gateway.auth.dpop.replay_max_share_percent`.",
    ),
    e(
        "insufficient_scope",
        "The token is valid, but lacks a scope the route requires (`scopes_all` or `scopes_any`); the challenge's `scope` lists them.",
        "A client that asked the Authority for too few scopes; a route whose policy was tightened.",
        "Give the client the scope at the Authority, or check the route's policy with `stella-gateway policy explain`.",
    ),
    e(
        "access_denied",
        "The caller is authenticated, but the route's policy refuses it; the body's `reason` names the rule: `audience`, `tenant`, `role`, `claim`, `spiffe_id` or `no_policy`.",
        "A token for another audience or tenant, a missing role or claim, a workload that is not on the route's list, or a route without a policy under `on_missing_authorization: Deny`.",
        "Look the body's `reason` up below, and run `stella-gateway policy explain` with the caller's claims.",
    ),
    e(
        "identity_mismatch",
        "The route binds a path parameter to the caller's identity (`identity_binding`), and the path names someone else: the confused-deputy guard.",
        "A service calling for another workload's or tenant's resource; a client building the path from the wrong identity.",
        "Check which identity the route binds and what the caller's is (decision log: `client_id`, `tenant`). This refusal is the guard working: fix the caller, not the policy.",
    ),
    e(
        "upstream_unavailable",
        "The request was allowed, but no address of the service could be reached.",
        "The service is down or not listening; every address is ejected after connect failures; its host name never resolved; a replica closed the connection while the request was on it.",
        "Check the service and `stella_gateway_upstream_errors_total{service,kind=\"unavailable\"}`. Give the service a `health_check` so failing addresses leave rotation early.",
    ),
    e(
        "gateway_timeout",
        "The request was allowed, but the service did not connect within `services[].connect_timeout_ms` or answer within `services[].read_timeout_ms`.",
        "A slow or overloaded service; a network path dropping packets; a timeout shorter than the service's slowest legitimate answer.",
        "Check the service's latency; raise the service's timeouts only if its answers are legitimately slow.",
    ),
    e(
        "internal_error",
        "A fault inside the gateway: never caused by the client's input.",
        "A bug, or a failure the gateway did not expect.",
        "Find the request's log lines by its `request_id` and report them with the gateway's version (`stella-gateway --version`).",
    ),
];

/// The decision-log reasons, in the order of the request pipeline.
pub const REASONS: &[Entry] = &[
    // Allowed.
    e(
        "requirements_met",
        "The caller was authenticated and met every requirement of the route's policy and its tenant's rules; the request was forwarded.",
        "A request that passed.",
        "Nothing.",
    ),
    e(
        "anonymous",
        "The route is `anonymous: true`; the request was forwarded without an identity check.",
        "A request to a public route.",
        "Nothing. If the route should not be public, remove `anonymous: true` from its policy.",
    ),
    e(
        "no_policy",
        "The route has no `policy` block, so `router.on_missing_authorization` decided: forwarded with `AllowAnonymous`, or with `RequireAuthenticated` for an authenticated caller; refused with 403 under `Deny`.",
        "A route written without a policy.",
        "Give every route an explicit policy; rely on `on_missing_authorization` only as a safety net.",
    ),
    e(
        "bypass",
        "The emergency bypass let the request through: a bound token whose binding was not proven, on a route or tenant with `allow_bypass: true`, while `gateway.auth.allow_temporary_bypass` is on. It is logged as a warning and counted in `stella_gateway_dpop_bypass_total`.",
        "The bypass was turned on during an incident (a DPoP or mTLS rollout problem) and clients without proofs are calling.",
        "Turn `gateway.auth.allow_temporary_bypass` off as soon as the incident is over ([dpop-mtls-rollout](../runbooks/dpop-mtls-rollout.md)); `StellaGatewayEmergencyBypassInUse` fires while it is used.",
    ),
    e(
        RESOURCE_METADATA,
        "A request for `/.well-known/oauth-protected-resource` (or that path followed by a resource's path) on a public listener, answered by the gateway with the protected resource's metadata (RFC 9728, `gateway.protected_resources`). A path under that prefix that names no configured resource is 404 `not_found`.",
        "OAuth clients that got a 401 whose challenge names `resource_metadata`, and look up which Authority and scopes the resource wants.",
        "Nothing.",
    ),
    e(
        PUBLIC_JWKS,
        "A request for `/.well-known/stella/keys.json` on a public listener, answered by the gateway with its public envelope keys (`gateway.listeners.public_jwks: true`).",
        "Services or their SDKs fetching the gateway's keys.",
        "Nothing.",
    ),
    // The connection and the request's shape.
    e(
        "connection_limit",
        "The listener already holds `gateway.limits.max_connections` connections; the new one got 503 and was closed. It never became a request, so there is no decision-log line: `stella_gateway_connections_refused_total{listener}` counts it.",
        "A traffic peak, clients that do not reuse connections, or a flood of idle connections.",
        "Check `stella_gateway_connections_open`. Raise the limit if the load is legitimate and the host can hold it; otherwise find the clients holding connections.",
    ),
    e(
        "request_timeout",
        "The request head did not arrive within `gateway.limits.request_head_timeout_ms`; 408 and the connection closed. No decision-log line: `stella_gateway_connections_closed_total{reason=\"request_head_timeout\"}` counts it.",
        "Slow or stalled clients, or a slow-loris attempt.",
        "Nothing if it is an attack; raise the timeout if real clients are that slow.",
    ),
    e(
        "request_header_fields_too_large",
        "The request head is larger than `gateway.limits.max_request_header_bytes`, or has more than `gateway.limits.max_request_headers` fields: 431. A head cut off while it arrives has no decision-log line (`stella_gateway_connections_closed_total{reason=\"request_header_too_large\"}`); one with too many fields has.",
        "Large cookies, very large tokens, clients adding headers in a loop.",
        "Find the large header; raise the limit only if it is legitimate (at most 256 fields).",
    ),
    e(
        "unparsable_request",
        "Pingora's HTTP parser refused the request head; the gateway answered 400 with its own problem body.",
        "A malformed request line or header field, a non-HTTP client on the port, a scanner.",
        "Nothing for scanners; for a real client, capture the raw request and fix the client.",
    ),
    e(
        "invalid_request",
        "The request could not be forwarded as sent, for example a `Connection` header that names a header the gateway sets itself.",
        "An unusual client or proxy adding hop-by-hop headers; a smuggling probe.",
        "Fix the client to send standard headers.",
    ),
    e(
        "duplicate_host",
        "The request has more than one `Host` field (RFC 9112 section 3.2); routing would depend on which one is read.",
        "A broken client or proxy, or a request-smuggling attempt.",
        "Nothing for probes; fix a client that sends it.",
    ),
    e(
        "absolute_form_target",
        "An HTTP/1 request line with an absolute URL (`GET http://host/path`); the gateway routes on the origin-form path and `Host` only.",
        "A client configured to use the gateway as a forward proxy.",
        "Send requests to the gateway as to a server (`GET /path` with `Host`), not as to a proxy.",
    ),
    e(
        "ambiguous_framing",
        "The request has both `Content-Length` and `Transfer-Encoding` (RFC 9112 section 6.1): the body's length is ambiguous, a classic request-smuggling shape.",
        "A smuggling attempt, or a broken client or proxy.",
        "Fix a client that sends both; block the source of probes.",
    ),
    // The path and the route.
    e(
        "not_origin_form",
        "The request target does not start with `/`.",
        "A malformed client, a scanner.",
        "Fix the client to send an origin-form path.",
    ),
    e(
        "path_too_long",
        "The request path is longer than 8 KiB.",
        "A client putting data in the path, a runaway URL builder, a probe.",
        "Put large data in the body or the query; the limit is fixed.",
    ),
    e(
        "too_many_segments",
        "The normalized path has more than 128 segments.",
        "A runaway URL builder or a probe.",
        "Fix the client; the limit is fixed.",
    ),
    e(
        "bad_escape",
        "The path has a malformed percent-escape (`%` not followed by two hex digits).",
        "A client that does not encode `%` itself, or double-decodes.",
        "Percent-encode the path correctly in the client.",
    ),
    e(
        "encoded_slash",
        "The path has `%2F`: frameworks disagree on whether it separates segments, so the gateway and the service could see different paths.",
        "An identifier with `/` in it put into one path segment; a path-confusion probe.",
        "Do not put `/` in identifiers in the path; send them in the query or the body.",
    ),
    e(
        "encoded_backslash",
        "The path has `%5C`, which some servers treat as `/`.",
        "A path-confusion probe, or an identifier with `\\` in it.",
        "Fix the client; never needed for real resources.",
    ),
    e(
        "backslash",
        "The path has a raw `\\`, which some servers treat as `/`.",
        "A Windows-style path built by a client, or a probe.",
        "Use `/` in paths.",
    ),
    e(
        "nul_byte",
        "The path has a NUL byte (raw or `%00`).",
        "An attack probe.",
        "Nothing; block the source if it repeats.",
    ),
    e(
        "control_char",
        "The path has a control character.",
        "A client that does not encode the path, or a probe.",
        "Percent-encoding does not help here: control characters are refused in any form. Fix the client.",
    ),
    e(
        "space",
        "The path has a space.",
        "A client that does not percent-encode spaces.",
        "Encode spaces as `%20`.",
    ),
    e(
        "non_ascii",
        "The path has a raw byte outside ASCII.",
        "A client sending UTF-8 without percent-encoding it.",
        "Percent-encode non-ASCII characters (`%C3%A9`).",
    ),
    e(
        "fragment",
        "The path has a `#`; fragments are never sent to servers.",
        "A client passing a browser URL through unchanged.",
        "Strip the fragment, or encode `#` as `%23` if it is data.",
    ),
    e(
        "query_in_path",
        "The path still held a `?` after the query was split off.",
        "A malformed request line.",
        "Fix the client.",
    ),
    e(
        "semicolon",
        "The path has a `;`: matrix parameters mean different things to different frameworks.",
        "A Java-style `;jsessionid=`, or a path-confusion probe.",
        "Send such parameters in the query.",
    ),
    e(
        "not_found",
        "No route matches the request's host and path: 404.",
        "A wrong URL; a route missing from the loaded policies; a rejected reload that kept the old routes.",
        "Check with `stella-gateway policy explain`; see `/config` for a rejected reload.",
    ),
    e(
        "method_not_allowed",
        "The path matches a route but the method does not: 405 with `Allow`.",
        "A wrong method, a route with too few `methods`, or `CONNECT`.",
        "Use a listed method or add it to the route.",
    ),
    // The credential as presented.
    e(
        "token_in_query",
        "The URL carries `access_token=`: tokens in URLs end up in logs, so the gateway refuses them on every route, anonymous ones too.",
        "A client using RFC 6750's query form, or a link with a token in it.",
        "Send the token in the `Authorization` header.",
    ),
    e(
        "multiple_credentials",
        "The request carries more than one credential: several `Authorization` fields, or a `DPoP` header beside `Authorization: Bearer` with a token that is not DPoP-bound.",
        "A client or a proxy adding its own `Authorization`; a client sending a proof with a plain Bearer token.",
        "Send exactly one credential; send the `DPoP` header only with `Authorization: DPoP`.",
    ),
    e(
        "malformed_authorization",
        "The `Authorization` header is not `<scheme> <token>` with a scheme the gateway takes (`Bearer`, `DPoP`).",
        "`Basic` credentials, a missing space, a token with characters a token cannot have, an empty header.",
        "Send `Authorization: Bearer <token>` or `Authorization: DPoP <token>`.",
    ),
    e(
        "dpop_proof_missing",
        "`Authorization: DPoP` without exactly one well-formed `DPoP` header.",
        "A client that forgot the proof, sent two, or a proxy that dropped the `DPoP` header.",
        "Send one fresh proof in one `DPoP` header with every request; check that proxies forward `DPoP`.",
    ),
    e(
        "dpop_without_token",
        "A `DPoP` header with no `Authorization`.",
        "A client that sends proofs but lost its token.",
        "Send the token in `Authorization: DPoP <token>` with the proof.",
    ),
    // The access token.
    e(
        "jws_too_long",
        "The token is longer than 16 KiB.",
        "A token stuffed with claims or groups, or garbage in the header.",
        "Trim the token's claims at the Authority (groups often grow without bound).",
    ),
    e(
        "malformed_jws",
        "The token is not a compact JWS: three base64url parts, JSON objects, no duplicate members.",
        "An opaque token sent to an Authority without introspection configured, a truncated token, an ID token's encrypted form, or garbage.",
        "Check the client sends the access token itself; for opaque tokens configure `introspection` for the Authority.",
    ),
    e(
        "malformed_header",
        "A member of the token's header is missing or of the wrong type (for example no `alg`).",
        "A token not made by a conforming library, or a forged one.",
        "Check which Authority issued it; a real Authority's tokens never fail this.",
    ),
    e(
        "unsupported_header",
        "The token's header has `crit` or `b64: false`, which the gateway refuses.",
        "An Authority using JWS extensions, or a crafted token.",
        "Configure the Authority to issue plain JWS access tokens.",
    ),
    e(
        "unsupported_alg",
        "The token's `alg` is none of ES256, ES384, EdDSA, PS256 and RS256 (`none` and symmetric algorithms never pass).",
        "An Authority signing with HS256 or RS384/RS512; a forged `alg: none` token.",
        "Configure the Authority to sign access tokens with one of the five algorithms.",
    ),
    e(
        "alg_not_allowed",
        "The algorithm is not in the configured list: for a token, this Authority's `algorithms`; for a DPoP proof, `gateway.auth.dpop.algorithms`.",
        "The Authority changed its signing algorithm; a client library making proofs with an algorithm the gateway was told not to take.",
        "Add the algorithm to the list if it should be accepted, or configure the Authority or client to use a listed one.",
    ),
    e(
        "key_in_header",
        "The token's header carries key material (`jwk`, `jku`, `x5u`, `x5c`): keys only ever come from the Authority's JWKS.",
        "A forged token trying to supply its own key, or an Authority embedding its certificate.",
        "Nothing for forgeries; configure a real Authority not to embed keys.",
    ),
    e(
        "unknown_kid",
        "No key of the Authority's JWKS has the token's `kid`, even after the one refetch the cooldown allows.",
        "A token signed by a key the Authority no longer publishes; a token from another environment with the same issuer URL; a new key fetched within `jwks_cooldown_seconds` of the last fetch.",
        "Compare the token's `kid` with the Authority's JWKS. If the Authority just rotated, the next refetch after `jwks_cooldown_seconds` picks the key up.",
    ),
    e(
        "missing_kid",
        "The token has no `kid` and the Authority's JWKS has more than one key, so the key cannot be chosen.",
        "An Authority that omits `kid` after adding a second key.",
        "Configure the Authority to put `kid` in its tokens.",
    ),
    e(
        "alg_key_mismatch",
        "The token's `alg` does not fit the key its `kid` names (an RS256 token for an EC key).",
        "A forged or mis-issued token, or an Authority that reuses a kid across key types.",
        "Check the Authority's JWKS and signing configuration.",
    ),
    e(
        "key_use_mismatch",
        "The JWK the token's `kid` names is not for verifying signatures (`use` or `key_ops` say otherwise).",
        "An Authority publishing an encryption key under the kid it signs with.",
        "Fix the Authority's JWKS.",
    ),
    e(
        "malformed_signature",
        "The signature does not have the length its algorithm requires.",
        "A truncated or altered token.",
        "Get a fresh token; check for proxies or loggers that truncate headers.",
    ),
    e(
        "bad_signature",
        "A signature does not verify: the access token's against the Authority's key, or a DPoP proof's against the proof's own `jwk`.",
        "An altered or forged token; a token signed by another Authority whose kid collides; a client library signing proofs incorrectly.",
        "Get a fresh token; if it persists for one Authority, compare its JWKS with the key that signs. For proofs, check the client's DPoP library.",
    ),
    e(
        "missing_typ",
        "The token's header has no `typ`, and the Authority's profile requires one (`at+jwt` without a profile).",
        "An Authority that issues plain JWTs (Keycloak, Entra, Auth0, Okta, Cognito) without its `token_profile` set.",
        "Set the Authority's `token_profile` ([authorities.md](authorities.md)), or `token_claims.require_typ: false`.",
    ),
    e(
        "wrong_typ",
        "The token's `typ` is not `at+jwt`, nor one the Authority's token profile accepts.",
        "An ID token sent as an access token; an Authority whose tokens carry `typ: JWT` without its `token_profile` set.",
        "Send the access token, not the ID token; or set the Authority's `token_profile` or `token_claims.typ`.",
    ),
    e(
        "missing_claim",
        "A required claim is absent: `iss`, `exp`, `aud`, `sub`, or what `required_claims` or the token profile require (`client_id` and `jti` by default).",
        "An Authority that does not issue RFC 9068 tokens (no `client_id` or `jti`); a token for a user flow missing `sub`.",
        "Set the Authority's `token_profile`, or relax `required_claims` for it.",
    ),
    e(
        "malformed_claim",
        "A claim has the wrong JSON type (`aud` a number, `exp` a string, a time with a fraction), which is an error, never treated as absent.",
        "A non-conforming Authority, or a forged token.",
        "Check the token's claims (decode it) against RFC 9068; fix the Authority's mapper.",
    ),
    e(
        "unexpected_claim_value",
        "A claim the token profile pins to one value has another (`token_use: id` where `access` is required, Keycloak's `typ: ID`).",
        "An ID token sent where the access token belongs.",
        "Send the access token.",
    ),
    e(
        "wrong_issuer",
        "The token's `iss` is not the configured Authority's issuer.",
        "A token from another Authority or environment; an issuer URL written differently (a trailing slash).",
        "Compare `iss` with `gateway.auth.authority.issuer`, character for character.",
    ),
    e(
        "unknown_issuer",
        "With several Authorities configured, the token's `iss` names none of them.",
        "A token from an Authority the gateway does not trust, or an issuer written differently.",
        "Add the Authority to `gateway.auth.authorities`, or fix the issuer URL.",
    ),
    e(
        "wrong_audience",
        "The token's `aud` names none of the Authority's `audiences`.",
        "A token requested for another resource; a client that did not ask for the right audience or resource.",
        "Request the token with the gateway's audience, or add the audience to the Authority's `audiences`.",
    ),
    e(
        "expired",
        "The token's `exp` is past, beyond the Authority's `leeway_seconds`.",
        "A client that caches tokens past their life; a clock that is wrong on the gateway or the Authority.",
        "The client should get a new token. If many fresh tokens are refused, check the clocks (NTP) on the gateway and the Authority.",
    ),
    e(
        "not_yet_valid",
        "The token's `nbf` is in the future, beyond the leeway.",
        "A clock skew between the Authority and the gateway.",
        "Check NTP on both; raise `leeway_seconds` only for a small, known skew.",
    ),
    e(
        "issued_in_future",
        "The token's `iat` is in the future, beyond the leeway.",
        "A clock skew between the Authority and the gateway.",
        "Check NTP on both.",
    ),
    e(
        "tenant_issuer_mismatch",
        "The token's tenant is bound to another Authority (`tenants:` of an Authority) than the one that issued it.",
        "A token for a tenant from an Authority not entitled to speak for it: a misconfigured tenant, or an attempt to cross tenants.",
        "Check which Authority lists the tenant; tokens for it must come from that one.",
    ),
    e(
        "inactive",
        "The Authority's introspection endpoint answered `active: false` for an opaque token.",
        "A revoked, expired or unknown token, or a token from another Authority.",
        "The client should get a new token.",
    ),
    e(
        "revoked",
        "The caller's identity (token `jti`, `sub`, `client_id`, tenant, proof key, certificate or SPIFFE ID) is on the gateway's revocation list.",
        "An operator revoked it, usually in an incident.",
        "Check the list (`stella-gateway revocations list`); if the revocation was a mistake, remove it with `stella-gateway unrevoke`.",
    ),
    // How the token is bound.
    e(
        "dpop_bound_token_as_bearer",
        "A DPoP-bound token (`cnf.jkt`) was sent with the `Bearer` scheme: a bound token must prove its key.",
        "A client that does not know its token is DPoP-bound; a proxy rewriting the scheme.",
        "Send it as `Authorization: DPoP <token>` with a proof made with the bound key.",
    ),
    e(
        "token_not_dpop_bound",
        "The `DPoP` scheme was used with a token that is not DPoP-bound (no `cnf.jkt`).",
        "The Authority issued a Bearer token because the token request carried no proof.",
        "Request the token with a DPoP proof so the Authority binds it, or send it as `Bearer`.",
    ),
    e(
        "jkt_mismatch",
        "The proof's key is not the key the token is bound to (`cnf.jkt`).",
        "A client that rotated its DPoP key but kept its token; a stolen token used with another key.",
        "The client should get a new token with its current key.",
    ),
    e(
        "certificate_mismatch",
        "A certificate-bound token (`cnf.x5t#S256`) was presented over a connection whose client certificate is another.",
        "A client that renewed its certificate but kept its token; a stolen token.",
        "The client should get a new token over its current certificate.",
    ),
    e(
        "certificate_missing",
        "A certificate-bound token came without the certificate: no client certificate on the TLS connection, or a plain HTTP listener.",
        "A client not configured with its certificate; a TLS terminator in front of the gateway (the gateway never trusts certificate headers).",
        "Present the certificate on a TLS listener with `client_certificates: optional` or `required`. `stella_gateway_mtls_mismatch_total{reason}` tells which case.",
    ),
    e(
        "unenforceable_cnf",
        "The token's `cnf` names a binding the gateway cannot check (both `jkt` and `x5t#S256`, a `jwk`, or unknown members), so it fails closed.",
        "An Authority with an unusual confirmation method.",
        "Configure the Authority to bind with DPoP (`jkt`) or mTLS (`x5t#S256`), one of them.",
    ),
    // The DPoP proof.
    e(
        "dpop_not_configured",
        "A DPoP request reached a gateway without `gateway.public_origin`, which proofs' `htu` is checked against.",
        "A configuration that enables DPoP routes but leaves `public_origin` out.",
        "Set `gateway.public_origin` to the scheme, host and port clients use.",
    ),
    e(
        "proof_too_long",
        "The DPoP proof is longer than 8 KiB.",
        "A client putting large claims or a certificate chain in the proof.",
        "Fix the client's proofs; they need only the RFC 9449 claims.",
    ),
    e(
        "malformed_proof",
        "The `DPoP` header is not a compact JWS.",
        "A client sending something else in `DPoP`, or a truncated proof.",
        "Check the client's DPoP library.",
    ),
    e(
        "bad_typ",
        "The proof's `typ` is missing or not `dpop+jwt`.",
        "A client signing proofs as plain JWTs.",
        "Set `typ: dpop+jwt` in the proof's header.",
    ),
    e(
        "external_key_reference",
        "The proof's header refers to key material elsewhere (`jku`, `x5u`, `x5c`); a proof must carry its public key as `jwk`.",
        "A non-conforming client, or a probe.",
        "Fix the client to put the public key in `jwk`.",
    ),
    e(
        "jwk_missing",
        "The proof's header has no `jwk`.",
        "A non-conforming client.",
        "Fix the client to put the public key in `jwk`.",
    ),
    e(
        "bad_jwk",
        "The proof's `jwk` is not a usable public key (private members, a symmetric key, a weak RSA key, a bad encoding).",
        "A client that put its private key in the header (rotate that key: it has leaked), or a broken library.",
        "Fix the client; if the proof carried private key material, replace that key.",
    ),
    e(
        "missing_jti",
        "The proof has no `jti`.",
        "A non-conforming client.",
        "Every proof needs a unique `jti`.",
    ),
    e(
        "missing_htm",
        "The proof has no `htm`.",
        "A non-conforming client.",
        "Put the request's method in `htm`.",
    ),
    e(
        "missing_htu",
        "The proof has no `htu`.",
        "A non-conforming client.",
        "Put the request's URL, without query and fragment, in `htu`.",
    ),
    e(
        "missing_iat",
        "The proof has no `iat`.",
        "A non-conforming client.",
        "Put the time of signing in `iat`.",
    ),
    e(
        "missing_ath",
        "The proof has no `ath`, the hash of the access token it goes with.",
        "A client making proofs for token requests only, not for resource requests.",
        "Put `ath` (base64url SHA-256 of the access token) in every proof sent to the gateway.",
    ),
    e(
        "claim_wrong_type",
        "A claim of the proof has the wrong JSON type.",
        "A non-conforming client (`iat` as a string).",
        "Fix the client's proofs.",
    ),
    e(
        "jti_empty",
        "The proof's `jti` is empty.",
        "A client that does not generate identifiers.",
        "Use a random identifier for every proof.",
    ),
    e(
        "jti_too_long",
        "The proof's `jti` is longer than 256 bytes.",
        "A client stuffing data into `jti`.",
        "Use a short random identifier.",
    ),
    e(
        "htm_mismatch",
        "The proof's `htm` is not the request's method.",
        "A client that reuses a proof across requests, or a proxy that changes the method.",
        "Make a fresh proof for each request, with its method.",
    ),
    e(
        "htu_mismatch",
        "The proof's `htu` is not this request's URL as the gateway sees it: `gateway.public_origin` plus the normalized path, never the client's `Host`.",
        "A `public_origin` that is not the address clients use (another host, scheme or port); a client signing the URL before a redirect or with the query; a proof reused for another path.",
        "Compare `gateway.public_origin` with the URL clients call; make the client sign the exact URL without query or fragment.",
    ),
    e(
        "bad_target",
        "The URL the gateway built from `gateway.public_origin` and the path is not a valid http(s) URI.",
        "A broken `gateway.public_origin`, which `check` should have refused.",
        "Check `gateway.public_origin` and report the case.",
    ),
    e(
        "iat_too_old",
        "The proof was made more than `gateway.auth.dpop.proof_max_age_seconds` ago.",
        "A client that makes proofs ahead of time or reuses one; a client clock behind the gateway's.",
        "Make a fresh proof per request; check the client's clock.",
    ),
    e(
        "iat_in_future",
        "The proof's `iat` is more than `gateway.auth.dpop.proof_future_skew_seconds` ahead of the gateway's clock.",
        "A client clock ahead of the gateway's.",
        "Fix the client's clock (NTP); raise the skew only for a small, known drift.",
    ),
    e(
        "ath_mismatch",
        "The proof's `ath` is not the hash of the access token sent with it.",
        "A client that refreshed its token but reused a proof made for the old one.",
        "Make the proof after choosing the token, with that token's hash.",
    ),
    e(
        "nonce_missing",
        "The proof carries no nonce and the route requires one. The gateway answers `use_dpop_nonce` with a fresh nonce instead whenever it issues nonces, which it does when a route requires them; this label is then counted in `stella_gateway_dpop_proof_rejected_total`.",
        "The first request of a client on a route with `dpop_nonce: true`.",
        "Nothing: clients retry with the nonce they were given.",
    ),
    e(
        "nonce_invalid",
        "The proof's nonce is not one this gateway issued, or is older than two nonce steps. As with `nonce_missing`, the client normally gets `use_dpop_nonce` and a fresh nonce.",
        "A nonce from another deployment or from the Authority; nodes with different `nonce_secret`s; a client holding a nonce too long.",
        "Give every node the same `gateway.auth.dpop.nonce_secret`; clients retry with the fresh nonce.",
    ),
    e(
        "use_dpop_nonce",
        "The route or tenant requires a server nonce and the proof had none, or a stale one: 401 with a fresh `DPoP-Nonce`, the normal RFC 9449 handshake.",
        "A client's first request on the route, or after more than two `nonce_step_seconds`.",
        "Nothing when clients retry once with the nonce. Many misses (`StellaGatewayDpopNonceMissRatioHigh`) mean clients that do not retry, or nodes with different nonce secrets.",
    ),
    // The policy.
    e(
        "authentication_required",
        "The route needs an identity and the request had no credential it can use: none at all, a client certificate alone on a route with token requirements, or no identity for the route's `identity_binding`.",
        "A client that did not send its token; a token stripped by a proxy; a workload calling a token route with its certificate only.",
        "Send an access token; check the route with `stella-gateway policy explain`.",
    ),
    e(
        "spiffe_id",
        "The route accepts only listed SPIFFE workloads (`spiffe_ids`), and the caller is not one of them.",
        "A workload calling a route meant for others; an SVID with an unexpected path.",
        "Compare the caller's SPIFFE ID with the route's `spiffe_ids`.",
    ),
    e(
        "dpop_required",
        "The route or the caller's tenant requires a DPoP-bound token (`sender_constraint: dpop`) and the caller did not prove one: 401 `invalid_token`.",
        "A client still on Bearer tokens during a DPoP rollout.",
        "Move the client to DPoP ([dpop-mtls-rollout](../runbooks/dpop-mtls-rollout.md)); the rollout runbook says how to stage it.",
    ),
    e(
        "mtls_required",
        "The route or tenant requires a certificate-bound token (`sender_constraint: mtls`) and the caller did not prove one.",
        "A client without its certificate, or with a token that is not certificate-bound.",
        "Give the client a certificate-bound token and present the certificate on the TLS listener.",
    ),
    e(
        "any_bound_required",
        "The route or tenant requires a sender-constrained token, DPoP or mTLS (`sender_constraint: any_bound`), and the caller presented a plain Bearer token.",
        "A client not yet moved to bound tokens.",
        "Move the client to DPoP or certificate-bound tokens.",
    ),
    e(
        "audience",
        "None of the token's audiences is in the route's `audiences_any`.",
        "A token meant for another service behind the same gateway.",
        "Request the token for the route's audience, or add it to `audiences_any`.",
    ),
    e(
        "insufficient_scope",
        "The token lacks scopes the route requires (`scopes_all`, `scopes_any`); the challenge lists them.",
        "A client granted too few scopes; a tightened route.",
        "Grant the scope at the Authority, or check the route's policy.",
    ),
    e(
        "tenant",
        "The token's tenant is missing, or not in the route's `tenants`.",
        "A caller of another tenant; a token without the tenant claim (check the Authority's `token_claims.tenant`).",
        "Check the tenant the token carries (decision log: `tenant`) against the route.",
    ),
    e(
        "role",
        "The caller has none of the route's `roles_any`, counting roles from the Authority's claims endpoint.",
        "A missing role assignment; roles in a claim the Authority's `token_claims.roles` does not name.",
        "Assign the role, or point `token_claims.roles` at the claim that holds them.",
    ),
    e(
        "claim",
        "A claim the route requires (`claims`) is missing or has another value.",
        "A token from another flow or client; a claim renamed at the Authority.",
        "Compare the token's claims with the route's `claims` (`stella-gateway policy explain --caller-json ...`).",
    ),
    e(
        "identity_mismatch",
        "The route binds a path parameter to the caller's identity (`identity_binding`) and the path names another identity: 403, the confused-deputy guard.",
        "A caller asking for another workload's or tenant's resource.",
        "Fix the caller; the guard is doing its job.",
    ),
    // The replay store and the envelope.
    e(
        "replayed",
        "The proof's `jti` was seen before within its lifetime: a replay. With the Redis store this holds across every node.",
        "A client or an HTTP library resending the same headers on retry; a proxy retrying a request; a stolen proof.",
        "Make a fresh proof for every attempt, retries included. Repeated replays from one client are worth a look.",
    ),
    e(
        "replay_share_exceeded",
        "The proof's key already holds `gateway.auth.dpop.replay_max_share_percent` of the memory replay store: 429 with `Retry-After` for that key only.",
        "One client sending far more proofs than others, or a flood with one key.",
        "Find the client (`client_id`); size the store ([replay-store.md](replay-store.md)) if the rate is legitimate.",
    ),
    e(
        "replay_store_unavailable",
        "The replay store could not record the proof: Redis unreachable, slow past `replay_store_timeout_ms`, refusing the credentials or erroring, or the memory store full. The gateway fails closed with 503.",
        "A Redis outage or failover, a network partition, wrong Redis credentials, a memory store sized too small.",
        "Check Redis and `stella_gateway_replay_store_errors_total` (`StellaGatewayReplayStoreErrors`); the gateway's log line `dpop replay store unreachable` gives the failure's class (`cannot connect`, `timed out`, `authentication refused`, ...), and `/readyz?verbose` shows `replay_store_reachable`. The store is used again as soon as it answers, without a restart.",
    ),
    e(
        "authority_unavailable",
        "The Authority was needed and could not answer: its keys are older than `jwks_refresh_seconds + jwks_max_stale_seconds`, were never loaded, or the refetch for an unknown kid failed; or introspection or the claims endpoint cannot answer and nothing cached may serve. 503, never 401: the token may be good.",
        "An Authority outage, a network or DNS problem between the gateway and the Authority, a gateway started during an outage without `state_dir`.",
        "Follow [authority-outage](../runbooks/authority-outage.md); `stella_gateway_authority_staleness_seconds` and `StellaGatewayAuthorityStale*` show how long the keys have left.",
    ),
    e(
        "revocation_list_stale",
        "The gateway is configured with `gateway.revocation.when_stale: refuse`, and this node has not read the shared revocation list for more than `gateway.revocation.stale_after_seconds`: it cannot tell whether the caller's credential was revoked meanwhile, so every request that presents one (a token or a client certificate) gets 503 with `Retry-After`; anonymous requests are still served. It ends by itself at the first good read of the store.",
        "Redis (the shared revocation store) down or unreachable from this node: an outage, a failover, a network partition, wrong credentials.",
        "Check Redis and `stella_gateway_revocation_store_up` (`StellaGatewayRevocationStoreDown`); `stella_gateway_revocation_stale` shows the nodes past the bound. To serve with the last copy instead while the store is repaired, set `when_stale: keep_last_copy` and restart ([runbooks/emergency-revocation.md](../runbooks/emergency-revocation.md)).",
    ),
    e(
        "envelope_signing_failed",
        "The identity envelope or transaction token for the service could not be signed, so the request was not forwarded: 503.",
        "A key the signer cannot use; a fault in signing.",
        "Find the error log line by the `request_id`; check the service's key with `stella-gateway keys list` and `check`.",
    ),
    // The upstream.
    e(
        "upstream_unavailable",
        "No address of the service could be reached: 502.",
        "The service is down, every address is ejected, its name never resolved, or a replica closed the connection mid-request.",
        "Check the service; `stella_gateway_upstream_errors_total{kind=\"unavailable\"}`; add a `health_check` so bad addresses leave rotation early.",
    ),
    e(
        "gateway_timeout",
        "The service did not connect or answer in time (`connect_timeout_ms`, `read_timeout_ms`): 504.",
        "An overloaded or stuck service; timeouts shorter than the service's slowest legitimate answer.",
        "Check the service's latency; raise its timeouts only for legitimately slow answers.",
    ),
    e(
        "internal_error",
        "A fault inside the gateway: 500. Never caused by the client's input.",
        "A bug.",
        "Find the request's log lines by `request_id` and report them with `stella-gateway --version`.",
    ),
    e(
        DOWNSTREAM_CLOSED,
        "The client closed the connection before the gateway answered; status 0, nothing was written.",
        "A client timeout shorter than the service's answer time; users cancelling; load balancers giving up.",
        "Nothing for a few; many mean the service is slower than clients wait: compare with the latency metrics.",
    ),
];

/// A heading's anchor, as GitHub makes it.
fn anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn error_heading(code: &str, statuses: &[u16]) -> String {
    let statuses: Vec<String> = statuses.iter().map(u16::to_string).collect();
    format!("`{code}` ({})", statuses.join(", "))
}

fn answer_text(answer: &Answer, statuses: &BTreeMap<String, Vec<u16>>) -> String {
    match answer {
        Answer::Forwarded => "allowed: the service's answer is forwarded".to_owned(),
        Answer::KeySet => "allowed: 200 with the gateway's public key set".to_owned(),
        Answer::ResourceMetadata => {
            "allowed: 200 with the protected resource's metadata document".to_owned()
        }
        Answer::Nothing => "nothing: the client had gone (status 0)".to_owned(),
        Answer::Refused(r) => {
            let link = anchor(&error_heading(
                &r.error,
                statuses
                    .get(&r.error)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
            ));
            let mut text = format!("{} [`{}`](#{link})", r.status, r.error);
            if let Some((member, value)) = &r.member {
                text.push_str(&format!(", body `\"{member}\": \"{value}\"`"));
            }
            if !r.challenges.is_empty() {
                let challenges: Vec<String> =
                    r.challenges.iter().map(|c| format!("`{c}`")).collect();
                text.push_str(&format!(
                    ", `WWW-Authenticate` {}",
                    challenges.join(" and ")
                ));
            }
            if r.retry_after {
                text.push_str(", `Retry-After`");
            }
            text
        }
    }
}

/// `docs/troubleshooting.md`.
pub fn markdown() -> String {
    let answers = answers();
    let statuses = error_statuses();
    let mut out = String::from(INTRO);
    out.push_str("\n## Problem `error` codes\n\n| `error` | status | decision-log reasons |\n|---|---|---|\n");
    let reasons_of = |code: &str| -> Vec<&'static str> {
        REASONS
            .iter()
            .filter(|entry| {
                answers.get(entry.code).is_some_and(|list| {
                    list.iter()
                        .any(|a| matches!(a, Answer::Refused(r) if r.error == code))
                })
            })
            .map(|entry| entry.code)
            .collect()
    };
    for entry in ERRORS {
        let own = statuses.get(entry.code).cloned().unwrap_or_default();
        let links: Vec<String> = reasons_of(entry.code)
            .iter()
            .map(|r| format!("[`{r}`](#{})", anchor(&format!("`{r}`"))))
            .collect();
        let status: Vec<String> = own.iter().map(u16::to_string).collect();
        out.push_str(&format!(
            "| [`{}`](#{}) | {} | {} |\n",
            entry.code,
            anchor(&error_heading(entry.code, &own)),
            status.join(", "),
            links.join(", ")
        ));
    }
    for entry in ERRORS {
        let own = statuses.get(entry.code).cloned().unwrap_or_default();
        out.push_str(&format!("\n### {}\n\n", error_heading(entry.code, &own)));
        push_texts(&mut out, entry);
    }
    out.push_str(
        "\n## Decision-log reasons\n\nIn the order of the request's path through the gateway.\n",
    );
    for entry in REASONS {
        out.push_str(&format!("\n### `{}`\n\n", entry.code));
        let list = answers.get(entry.code).cloned().unwrap_or_default();
        match list.as_slice() {
            [one] => out.push_str(&format!("**Answer:** {}.\n\n", answer_text(one, &statuses))),
            many => {
                out.push_str("**Answer:** one of\n");
                for (i, a) in many.iter().enumerate() {
                    let end = if i + 1 == many.len() { '.' } else { ';' };
                    out.push_str(&format!("- {}{end}\n", answer_text(a, &statuses)));
                }
                out.push('\n');
            }
        }
        push_texts(&mut out, entry);
    }
    out
}

fn push_texts(out: &mut String, entry: &Entry) {
    out.push_str(&format!(
        "**What it means.** {}\n\n**Usual causes.** {}\n\n**What to do.** {}\n",
        entry.meaning, entry.causes, entry.action
    ));
}

const INTRO: &str = "# Troubleshooting: refusals and decision-log reasons

<!-- Generated from the code by gateway/src/decision_log/catalogue.rs: do
     not edit. `cargo nextest run -p stella-gateway --test docs_reference`
     fails when this page and the code differ; run it with
     STELLA_GATEWAY_UPDATE_DOCS=1 to write the page again. -->

Every answer the gateway makes itself is `application/problem+json`
([design.md §3.4](design.md#34-responses-the-gateway-makes-itself)) with a
stable `error` code and a `request_id`, the same id as the response's
`X-Request-Id` header and the `request_id` of the request's decision-log
line. That line's `reason` names the check that decided, from the fixed set
below; `stella_gateway_refusals_total{route,reason}` counts refusals by the
same reason. To find out why a request was refused:

1. take the `request_id` from the body (or `X-Request-Id`);
2. find the decision-log line with that `request_id` (`logging.format:
   json`, target `stella_gateway::decision`) and read its `reason`;
3. look the reason up below.

The body names the failed check too: `token_error` for the access token,
`proof_error` for the DPoP proof, `path_error` for the path, `reason` for a
policy's `access_denied`. A 503 means the gateway could not check (the
Authority, the replay store); it is never a 401, and carries `Retry-After`.
For a 403, `stella-gateway policy explain --policies DIR --method M --path P
--caller-json '{\"token\": {...}}'` shows the route and the rule that decides.
";

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::path::{Path, PathBuf};

    #[test]
    fn every_reason_the_code_makes_is_explained_and_every_explanation_is_made() {
        let made: BTreeSet<&str> = answers().keys().copied().collect();
        let explained: BTreeSet<&str> = REASONS.iter().map(|e| e.code).collect();
        assert_eq!(explained.len(), REASONS.len(), "a reason is listed twice");
        let missing: Vec<_> = made.difference(&explained).collect();
        let stale: Vec<_> = explained.difference(&made).collect();
        assert!(
            missing.is_empty() && stale.is_empty(),
            "explain in REASONS: {missing:?}; no code makes: {stale:?}"
        );
    }

    #[test]
    fn every_error_code_is_explained_and_every_explanation_is_answered() {
        let made: BTreeSet<String> = error_statuses().into_keys().collect();
        let explained: BTreeSet<String> = ERRORS.iter().map(|e| e.code.to_owned()).collect();
        assert_eq!(explained.len(), ERRORS.len(), "an error is listed twice");
        assert_eq!(made, explained);
    }

    #[test]
    fn every_explanation_is_written_out() {
        for entry in ERRORS.iter().chain(REASONS) {
            for text in [entry.meaning, entry.causes, entry.action] {
                assert!(
                    text.len() > 3 && text.ends_with('.'),
                    "{}: {text:?}",
                    entry.code
                );
            }
        }
    }

    #[test]
    fn the_labels_of_the_policy_and_the_dpop_metrics_are_reasons() {
        let made = answers();
        for label in stella_policy::decide::reason_labels() {
            assert!(made.contains_key(label), "{label}");
        }
        for code in DpopError::CODES.iter().chain(&["replayed"]) {
            assert!(made.contains_key(code), "{code}");
        }
    }

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    /// The code of every `.rs` file under `dir`, tests left out.
    fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs")
                && path.file_name().is_none_or(|n| n != "tests.rs")
            {
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                out.push((path, code.to_owned()));
            }
        }
    }

    /// Every string literal right after `marker`.
    fn literals<'a>(code: &'a str, marker: &str) -> Vec<&'a str> {
        code.match_indices(marker)
            .filter_map(|(at, _)| code[at + marker.len()..].split('"').next())
            .collect()
    }

    #[test]
    fn reasons_written_as_literals_are_in_the_registry() {
        let mut authn = Vec::new();
        sources(&workspace().join("crates/authn/src"), &mut authn);
        for (path, code) in &authn {
            for literal in literals(code, "InvalidToken(\"") {
                assert!(
                    PIPELINE_TOKEN_REASONS.contains(&literal),
                    "{}: {literal}: add it to PIPELINE_TOKEN_REASONS and REASONS",
                    path.display()
                );
            }
            for literal in literals(code, "InvalidProof(\"") {
                assert!(
                    PIPELINE_PROOF_REASONS.contains(&literal),
                    "{}: {literal}: add it to PIPELINE_PROOF_REASONS and REASONS",
                    path.display()
                );
            }
        }
        let made = answers();
        let mut gateway = Vec::new();
        sources(&workspace().join("gateway/src"), &mut gateway);
        let mut seen = 0;
        for (path, code) in &gateway {
            if path.ends_with("decision_log/catalogue.rs") {
                continue;
            }
            for marker in ["reason: \"", "reason = \"", "code: \""] {
                // `""`: a request's reason before any stage decided.
                for literal in literals(code, marker).into_iter().filter(|l| !l.is_empty()) {
                    seen += 1;
                    assert!(
                        made.contains_key(literal),
                        "{}: reason {literal:?} is not in the registry",
                        path.display()
                    );
                }
            }
        }
        assert!(seen >= 3, "the shape reasons were not found");
    }

    // Each function below lists every variant of an enum whose values make
    // reasons. A new variant stops them compiling: give it a value in the
    // list above that holds its kind (`token_errors`, `dpop_errors`, ...),
    // explain its reason in REASONS, then add it here.

    #[allow(dead_code)]
    fn token_error_variants(e: &TokenError) {
        match e {
            TokenError::Jose(_)
            | TokenError::MissingTyp
            | TokenError::WrongTyp
            | TokenError::AlgNotAllowed(_)
            | TokenError::KeyInHeader(_)
            | TokenError::Key(_)
            | TokenError::Claim { .. }
            | TokenError::WrongIssuer
            | TokenError::WrongAudience
            | TokenError::Expired { .. }
            | TokenError::NotYetValid { .. }
            | TokenError::IssuedInFuture { .. }
            | TokenError::UnknownIssuer
            | TokenError::TenantIssuerMismatch
            | TokenError::Inactive
            | TokenError::Unavailable { .. } => {}
        }
    }

    #[allow(dead_code)]
    fn jose_error_variants(e: &JoseError) {
        match e {
            JoseError::TooLong { .. }
            | JoseError::Malformed
            | JoseError::Encoding(_)
            | JoseError::Json { .. }
            | JoseError::HeaderMember(..)
            | JoseError::UnsupportedHeader(_)
            | JoseError::UnsupportedAlg
            | JoseError::AlgKeyMismatch { .. }
            | JoseError::KeyUseMismatch { .. }
            | JoseError::MalformedSignature { .. }
            | JoseError::BadSignature => {}
            // JWK problems: found when a JWKS is loaded, never for a token.
            JoseError::PrivateKeyInJwk | JoseError::SymmetricJwk | JoseError::BadKey(_) => {}
        }
    }

    #[allow(dead_code)]
    fn other_variants(
        k: &KeyLookupError,
        c: &ClaimProblem,
        d: &DpopError,
        p: &PresentedError,
        a: &AuthnError,
        n: &Denial,
    ) {
        match k {
            KeyLookupError::Unavailable(_)
            | KeyLookupError::UnknownKid
            | KeyLookupError::MissingKid => {}
        }
        match c {
            ClaimProblem::Missing
            | ClaimProblem::WrongType
            | ClaimProblem::NotNumericDate
            | ClaimProblem::UnexpectedValue => {}
        }
        match d {
            DpopError::TokenNotDpopBound
            | DpopError::ProofTooLong { .. }
            | DpopError::MalformedProof(_)
            | DpopError::TypMismatch
            | DpopError::AlgNotAllowed
            | DpopError::ExternalKeyReference
            | DpopError::JwkMissing
            | DpopError::BadJwk(_)
            | DpopError::BadSignature(_)
            | DpopError::MissingClaim(_)
            | DpopError::ClaimType(_)
            | DpopError::JtiEmpty
            | DpopError::JtiTooLong { .. }
            | DpopError::HtmMismatch
            | DpopError::HtuMismatch
            | DpopError::TargetInvalid
            | DpopError::IatTooOld { .. }
            | DpopError::IatInFuture { .. }
            | DpopError::AthMismatch
            | DpopError::NonceMissing
            | DpopError::NonceInvalid(_)
            | DpopError::JktMismatch => {}
        }
        match p {
            PresentedError::SeveralCredentials
            | PresentedError::Malformed
            | PresentedError::DpopProofMissing
            | PresentedError::DpopWithoutToken => {}
        }
        match a {
            AuthnError::InvalidToken(_)
            | AuthnError::InvalidProof(_)
            | AuthnError::Dpop(_)
            | AuthnError::UseNonce(_)
            | AuthnError::MultipleCredentials
            | AuthnError::MalformedAuthorization
            | AuthnError::Token(_)
            | AuthnError::ReplayShareExceeded
            | AuthnError::ReplayStoreUnavailable
            | AuthnError::Revoked(_)
            | AuthnError::RevocationListStale => {}
        }
        match n {
            Denial::AuthenticationRequired
            | Denial::InsufficientScope { .. }
            | Denial::Forbidden { .. }
            | Denial::SenderConstraintRequired { .. }
            | Denial::IdentityMismatch => {}
        }
    }

    /// Where each refusal's values come from.
    #[allow(dead_code)]
    fn refusal_variants(r: &Refusal) {
        match r {
            // `own_refusals`.
            Refusal::BadPath { .. }
            | Refusal::MalformedRequestShape { .. }
            | Refusal::TokenInQuery
            | Refusal::MalformedRequest
            | Refusal::UnparsableRequest
            | Refusal::NoRoute
            | Refusal::MethodNotAllowed { .. }
            | Refusal::ReplayStoreUnavailable
            | Refusal::ReplayShareExceeded
            | Refusal::EnvelopeUnavailable
            | Refusal::UpstreamUnavailable
            | Refusal::UpstreamTimeout
            | Refusal::Internal
            | Refusal::RequestTimeout
            | Refusal::RequestHeaderFieldsTooLarge
            | Refusal::TooManyConnections => {}
            // From authentication's errors.
            Refusal::MultipleCredentials
            | Refusal::MalformedAuthorization
            | Refusal::InvalidToken { .. }
            | Refusal::InvalidDpopProof { .. }
            | Refusal::UseDpopNonce { .. }
            | Refusal::AuthorityUnavailable
            | Refusal::RevocationListStale => {}
            // From the policy's denials (`denials`).
            Refusal::AuthenticationRequired
            | Refusal::SenderConstraintRequired
            | Refusal::InsufficientScope { .. }
            | Refusal::Forbidden { .. }
            | Refusal::IdentityMismatch => {}
        }
    }
}
