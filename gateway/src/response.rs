//! The one place where refusals become HTTP responses (docs/design.md §3.4).
//!
//! Every response the gateway makes itself goes through [`Refusal::reply`]:
//! status, `WWW-Authenticate` challenges (RFC 6750, RFC 9449 section 7.1),
//! `Retry-After`, and an `application/problem+json` body with a stable
//! `error` code. Nothing from the client is echoed; details are fixed text.

use serde_json::json;
use stella_authn::dpop::DpopError;
use stella_authn::presented::PresentedError;
use stella_authn::{AuthnError, TokenError};
use stella_policy::Denial;

/// Realm in every challenge.
pub const REALM: &str = "stella-gateway";

/// Proof algorithms advertised in DPoP challenges by default; the gateway
/// passes its configured list to [`Refusal::reply_with_algs`].
pub const DPOP_ALGS: &str = "ES256 ES384 EdDSA PS256";

/// Seconds a client should wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

/// Why the gateway answers a request itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path cannot be normalized safely (`code` names the defect).
    BadPath {
        code: &'static str,
    },
    /// Several credentials or authentication methods at once.
    MultipleCredentials,
    /// An `access_token` query parameter (RFC 6750 section 2.3), refused
    /// on every route: tokens in URLs end up in logs.
    TokenInQuery,
    /// A malformed `Authorization` header.
    MalformedAuthorization,
    /// A request the gateway will not forward as sent (for example a
    /// `Connection` header that nominates a header the gateway sets).
    MalformedRequest,
    /// A request head that is well formed for Pingora's parser but
    /// ambiguous for a gateway (`reason`: `duplicate_host`,
    /// `absolute_form_target`, `ambiguous_framing`).
    MalformedRequestShape {
        reason: &'static str,
    },
    NoRoute,
    MethodNotAllowed {
        allowed: Vec<String>,
    },
    /// No credentials on a route that needs an identity.
    AuthenticationRequired,
    /// The access token is invalid; `code` is the verifier's fixed label.
    InvalidToken {
        code: &'static str,
    },
    /// The route needs a sender-constrained token the caller did not prove.
    SenderConstraintRequired,
    /// A DPoP proof is missing or invalid (RFC 9449 section 7.1).
    InvalidDpopProof {
        code: &'static str,
    },
    /// The route requires a server nonce the proof did not carry; `nonce`
    /// is a fresh one for the retry (RFC 9449 section 9).
    UseDpopNonce {
        nonce: String,
    },
    /// The DPoP replay store is needed and unavailable (or full).
    ReplayStoreUnavailable,
    /// The caller's proof key already holds its share of the replay store
    /// (429): one flooding key is slowed down, everyone else goes on.
    ReplayShareExceeded,
    InsufficientScope {
        required: Vec<String>,
    },
    /// Authenticated, but the policy says no; `reason` is a fixed label.
    Forbidden {
        reason: &'static str,
    },
    /// A path parameter the route binds to the caller's identity names
    /// another identity (the confused-deputy guard).
    IdentityMismatch,
    /// The Authority (keys, introspection) is needed and unavailable.
    AuthorityUnavailable,
    /// This node's copy of the shared revocation list is too old to check
    /// a credential against (`gateway.revocation.when_stale: refuse`).
    RevocationListStale,
    /// The identity envelope could not be signed; the request is not
    /// forwarded without one.
    EnvelopeUnavailable,
    UpstreamUnavailable,
    UpstreamTimeout,
    /// A failure inside the gateway (never caused by client input).
    Internal,
    /// A request head Pingora's parser refused before routing.
    UnparsableRequest,
    /// The request head did not arrive within the configured time.
    RequestTimeout,
    /// The request head is larger, or has more fields, than configured.
    RequestHeaderFieldsTooLarge,
    /// The listener is at its connection limit.
    TooManyConnections,
}

/// A response ready to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Refusal {
    /// The stable `error` code in the body (and the metrics `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::BadPath { .. }
            | Refusal::MultipleCredentials
            | Refusal::TokenInQuery
            | Refusal::MalformedAuthorization
            | Refusal::MalformedRequest
            | Refusal::UnparsableRequest
            | Refusal::MalformedRequestShape { .. } => "invalid_request",
            Refusal::RequestTimeout => "request_timeout",
            Refusal::RequestHeaderFieldsTooLarge => "request_header_fields_too_large",
            Refusal::TooManyConnections => "temporarily_unavailable",
            Refusal::NoRoute => "not_found",
            Refusal::MethodNotAllowed { .. } => "method_not_allowed",
            Refusal::AuthenticationRequired => "authentication_required",
            Refusal::InvalidToken { .. } | Refusal::SenderConstraintRequired => "invalid_token",
            Refusal::InvalidDpopProof { .. } => "invalid_dpop_proof",
            Refusal::UseDpopNonce { .. } => "use_dpop_nonce",
            Refusal::ReplayStoreUnavailable => "temporarily_unavailable",
            Refusal::ReplayShareExceeded => "too_many_requests",
            Refusal::InsufficientScope { .. } => "insufficient_scope",
            Refusal::Forbidden { .. } => "access_denied",
            Refusal::IdentityMismatch => "identity_mismatch",
            Refusal::AuthorityUnavailable
            | Refusal::EnvelopeUnavailable
            | Refusal::RevocationListStale => "temporarily_unavailable",
            Refusal::UpstreamUnavailable => "upstream_unavailable",
            Refusal::UpstreamTimeout => "gateway_timeout",
            Refusal::Internal => "internal_error",
        }
    }

    /// The specific reason for the decision log: the check that failed
    /// (`expired`, `unknown_kid`, `ath_mismatch`, `replayed`, ...) where the
    /// refusal carries one, else [`code`](Self::code). Always from a fixed
    /// set of labels, never client input.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::BadPath { code }
            | Refusal::InvalidToken { code }
            | Refusal::InvalidDpopProof { code } => code,
            Refusal::Forbidden { reason } | Refusal::MalformedRequestShape { reason } => reason,
            Refusal::TokenInQuery => "token_in_query",
            Refusal::MultipleCredentials => "multiple_credentials",
            Refusal::MalformedAuthorization => "malformed_authorization",
            Refusal::SenderConstraintRequired => "sender_constraint_required",
            Refusal::ReplayStoreUnavailable => "replay_store_unavailable",
            Refusal::ReplayShareExceeded => "replay_share_exceeded",
            Refusal::AuthorityUnavailable => "authority_unavailable",
            Refusal::RevocationListStale => "revocation_list_stale",
            Refusal::UnparsableRequest => "unparsable_request",
            Refusal::TooManyConnections => "connection_limit",
            Refusal::EnvelopeUnavailable => "envelope_signing_failed",
            _ => self.code(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadPath { .. }
            | Refusal::MultipleCredentials
            | Refusal::TokenInQuery
            | Refusal::MalformedAuthorization
            | Refusal::MalformedRequest
            | Refusal::UnparsableRequest
            | Refusal::MalformedRequestShape { .. } => 400,
            Refusal::RequestTimeout => 408,
            Refusal::RequestHeaderFieldsTooLarge => 431,
            Refusal::NoRoute => 404,
            Refusal::MethodNotAllowed { .. } => 405,
            Refusal::AuthenticationRequired
            | Refusal::InvalidToken { .. }
            | Refusal::SenderConstraintRequired
            | Refusal::InvalidDpopProof { .. }
            | Refusal::UseDpopNonce { .. } => 401,
            Refusal::InsufficientScope { .. }
            | Refusal::Forbidden { .. }
            | Refusal::IdentityMismatch => 403,
            Refusal::ReplayShareExceeded => 429,
            Refusal::AuthorityUnavailable
            | Refusal::ReplayStoreUnavailable
            | Refusal::TooManyConnections
            | Refusal::EnvelopeUnavailable
            | Refusal::RevocationListStale => 503,
            Refusal::UpstreamUnavailable => 502,
            Refusal::UpstreamTimeout => 504,
            Refusal::Internal => 500,
        }
    }

    /// A fixed description; never client input.
    fn detail(&self) -> &'static str {
        match self {
            Refusal::BadPath { .. } => "the request path is not acceptable",
            Refusal::MultipleCredentials => {
                "more than one credential or authentication method was sent"
            }
            Refusal::TokenInQuery => {
                "access tokens are not accepted in the url; send them in the authorization header"
            }
            Refusal::MalformedAuthorization => "the authorization header is malformed",
            Refusal::MalformedRequest | Refusal::MalformedRequestShape { .. } => {
                "the request cannot be forwarded as sent"
            }
            Refusal::NoRoute => "no route matches the request",
            Refusal::MethodNotAllowed { .. } => "the route does not allow this method",
            Refusal::AuthenticationRequired => "this route requires authentication",
            Refusal::InvalidToken { .. } => "the access token is not valid",
            Refusal::SenderConstraintRequired => {
                "this route requires a sender-constrained access token"
            }
            Refusal::InvalidDpopProof { .. } => "the dpop proof is missing or not valid",
            Refusal::UseDpopNonce { .. } => {
                "the dpop proof must carry the server nonce sent in DPoP-Nonce"
            }
            Refusal::ReplayStoreUnavailable => {
                "dpop proofs cannot be checked for replay now; retry later"
            }
            Refusal::ReplayShareExceeded => {
                "this dpop key is sending proofs faster than its share of the replay store allows; retry later"
            }
            Refusal::InsufficientScope { .. } => "the access token lacks a required scope",
            Refusal::Forbidden { .. } => "the policy of this route denies the request",
            Refusal::IdentityMismatch => {
                "the resource named in the path belongs to another identity than the caller's"
            }
            Refusal::AuthorityUnavailable => "the authority is unavailable; retry later",
            Refusal::RevocationListStale => {
                "credentials cannot be checked against a current revocation list now; retry later"
            }
            Refusal::EnvelopeUnavailable => {
                "the gateway cannot sign the identity envelope now; retry later"
            }
            Refusal::UpstreamUnavailable => "the upstream service could not be reached",
            Refusal::UpstreamTimeout => "the upstream service did not answer in time",
            Refusal::Internal => "the gateway failed to process the request",
            Refusal::UnparsableRequest => "the request could not be parsed",
            Refusal::RequestTimeout => "the request head did not arrive in time",
            Refusal::RequestHeaderFieldsTooLarge => {
                "the request header fields are too large or too many"
            }
            Refusal::TooManyConnections => "the gateway is at its connection limit; retry later",
        }
    }

    /// The challenges for this refusal, one per scheme: `Bearer` (RFC 6750)
    /// and `DPoP` (RFC 9449 section 7.1, with `algs`). `error` is left out
    /// when no credentials were sent (RFC 6750 section 3.1). With
    /// `resource_metadata` (the route's protected resource, RFC 9728
    /// section 5.1), each challenge ends with `resource_metadata="<url>"`.
    fn challenges(&self, dpop_algs: &str, resource_metadata: Option<&str>) -> Vec<String> {
        let mut challenges = self.plain_challenges(dpop_algs);
        if let Some(url) = resource_metadata {
            // The url is from the configuration, checked to be a plain
            // https url (no quote, backslash or space).
            for c in &mut challenges {
                c.push_str(&format!(", resource_metadata=\"{url}\""));
            }
        }
        challenges
    }

    fn plain_challenges(&self, dpop_algs: &str) -> Vec<String> {
        let bearer = |error: &str| {
            format!(
                "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\"",
                self.detail()
            )
        };
        let dpop = |error: Option<&str>| {
            match error {
            None => format!("DPoP realm=\"{REALM}\", algs=\"{dpop_algs}\""),
            Some(error) => format!(
                "DPoP realm=\"{REALM}\", error=\"{error}\", error_description=\"{}\", algs=\"{dpop_algs}\"",
                self.detail()
            ),
        }
        };
        match self {
            Refusal::AuthenticationRequired => {
                vec![format!("Bearer realm=\"{REALM}\""), dpop(None)]
            }
            Refusal::InvalidToken { .. } | Refusal::SenderConstraintRequired => {
                vec![bearer("invalid_token"), dpop(Some("invalid_token"))]
            }
            Refusal::MultipleCredentials
            | Refusal::MalformedAuthorization
            | Refusal::TokenInQuery => vec![bearer("invalid_request")],
            Refusal::InvalidDpopProof { .. } => vec![dpop(Some("invalid_dpop_proof"))],
            Refusal::UseDpopNonce { .. } => vec![dpop(Some("use_dpop_nonce"))],
            Refusal::InsufficientScope { required } => {
                // Scope tokens are from the policy files, never from the client.
                let mut c = bearer("insufficient_scope");
                if !required.is_empty() {
                    c.push_str(&format!(", scope=\"{}\"", required.join(" ")));
                }
                vec![c]
            }
            _ => Vec::new(),
        }
    }

    /// Builds the response with the default DPoP algorithms.
    pub fn reply(&self, request_id: &str) -> Reply {
        self.reply_with_algs(request_id, DPOP_ALGS)
    }

    /// Builds the response. `request_id` is the gateway's own id;
    /// `dpop_algs` the proof algorithms it accepts (space-separated).
    pub fn reply_with_algs(&self, request_id: &str, dpop_algs: &str) -> Reply {
        self.reply_with(request_id, dpop_algs, None)
    }

    /// Builds the response; `resource_metadata` is the url of the route's
    /// protected resource metadata (RFC 9728), added to its challenges.
    pub fn reply_with(
        &self,
        request_id: &str,
        dpop_algs: &str,
        resource_metadata: Option<&str>,
    ) -> Reply {
        let status = self.status();
        let mut body = json!({
            "type": "about:blank",
            "title": title(status),
            "status": status,
            "error": self.code(),
            "detail": self.detail(),
            "request_id": request_id,
        });
        match self {
            Refusal::InvalidToken { code } => body["token_error"] = json!(code),
            Refusal::InvalidDpopProof { code } => body["proof_error"] = json!(code),
            Refusal::BadPath { code } => body["path_error"] = json!(code),
            Refusal::Forbidden { reason } => body["reason"] = json!(reason),
            _ => {}
        }
        let mut headers = vec![
            ("content-type", "application/problem+json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ];
        for challenge in self.challenges(dpop_algs, resource_metadata) {
            headers.push(("www-authenticate", challenge));
        }
        if let Refusal::UseDpopNonce { nonce } = self {
            headers.push(("dpop-nonce", nonce.clone()));
        }
        if status == 503 || status == 429 {
            headers.push(("retry-after", RETRY_AFTER_SECS.to_string()));
        }
        if let Refusal::MethodNotAllowed { allowed } = self {
            // Pingora refuses CONNECT before any route is known: no list.
            if !allowed.is_empty() {
                headers.push(("allow", allowed.join(", ")));
            }
        }
        Reply {
            status,
            headers,
            body: body.to_string().into_bytes(),
        }
    }
}

/// The reason phrase for a status the gateway answers itself.
pub fn title(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Internal Server Error",
    }
}

/// A refused access token: 503 while the Authority cannot answer (never
/// 401 for a token that may be good), else 401 `invalid_token`.
impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Refusal {
        if e.is_unavailable() {
            Refusal::AuthorityUnavailable
        } else {
            Refusal::InvalidToken { code: e.code() }
        }
    }
}

/// Authentication's refusals.
impl From<AuthnError> for Refusal {
    fn from(e: AuthnError) -> Refusal {
        match e {
            AuthnError::InvalidToken(code) => Refusal::InvalidToken { code },
            AuthnError::InvalidProof(code) => Refusal::InvalidDpopProof { code },
            AuthnError::Dpop(e) => Refusal::from(&e),
            AuthnError::UseNonce(nonce) => Refusal::UseDpopNonce { nonce },
            AuthnError::MultipleCredentials => Refusal::MultipleCredentials,
            AuthnError::MalformedAuthorization => Refusal::MalformedAuthorization,
            AuthnError::Token(e) => Refusal::from(e),
            AuthnError::ReplayShareExceeded => Refusal::ReplayShareExceeded,
            AuthnError::ReplayStoreUnavailable => Refusal::ReplayStoreUnavailable,
            // docs/design.md §3.3: a revoked identity's token is refused as
            // invalid, whatever any cache holds.
            AuthnError::Revoked(_) => Refusal::InvalidToken { code: "revoked" },
            // docs/design.md §3.3: `when_stale: refuse`, and the copy is
            // past its bound.
            AuthnError::RevocationListStale => Refusal::RevocationListStale,
        }
    }
}

/// The policy's refusals. The decision log names the denial's own label
/// (`Denial::reason`: `dpop_required` rather than
/// `sender_constraint_required`).
impl From<Denial> for Refusal {
    fn from(denial: Denial) -> Refusal {
        match denial {
            Denial::AuthenticationRequired => Refusal::AuthenticationRequired,
            Denial::InsufficientScope { required } => Refusal::InsufficientScope { required },
            Denial::Forbidden { reason } => Refusal::Forbidden {
                reason: reason.as_str(),
            },
            Denial::SenderConstraintRequired { .. } => Refusal::SenderConstraintRequired,
            Denial::IdentityMismatch => Refusal::IdentityMismatch,
        }
    }
}

/// A credential the request presents in a form the gateway refuses.
impl From<PresentedError> for Refusal {
    fn from(e: PresentedError) -> Refusal {
        match e {
            PresentedError::SeveralCredentials => Refusal::MultipleCredentials,
            PresentedError::Malformed => Refusal::MalformedAuthorization,
            PresentedError::DpopProofMissing | PresentedError::DpopWithoutToken => {
                Refusal::InvalidDpopProof { code: e.code() }
            }
        }
    }
}

/// A refused DPoP proof. A token not bound to the proof's key is the
/// token's fault (`invalid_token`); every other defect is the proof's.
/// Nonce errors map to `invalid_dpop_proof` here; a caller that serves
/// nonces checks [`DpopError::wants_nonce`] first to answer
/// `use_dpop_nonce`.
impl From<&DpopError> for Refusal {
    fn from(e: &DpopError) -> Refusal {
        if e.is_binding_mismatch() {
            Refusal::InvalidToken { code: e.code() }
        } else {
            Refusal::InvalidDpopProof { code: e.code() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_credentials_are_400_and_dpop_defects_401() {
        assert_eq!(
            Refusal::from(PresentedError::SeveralCredentials).status(),
            400
        );
        assert_eq!(Refusal::from(PresentedError::Malformed).status(), 400);
        assert_eq!(
            Refusal::from(PresentedError::DpopProofMissing).status(),
            401
        );
    }

    #[test]
    fn a_dpop_binding_mismatch_is_invalid_token_and_other_proof_defects_invalid_dpop_proof() {
        use stella_authn::dpop::DpopError;
        for (err, code) in [
            (DpopError::JktMismatch, "invalid_token"),
            (DpopError::TokenNotDpopBound, "invalid_token"),
            (DpopError::AthMismatch, "invalid_dpop_proof"),
            (DpopError::HtuMismatch, "invalid_dpop_proof"),
            (DpopError::NonceMissing, "invalid_dpop_proof"),
            (DpopError::IatTooOld { max_age: 60 }, "invalid_dpop_proof"),
        ] {
            let refusal = Refusal::from(&err);
            assert_eq!(refusal.code(), code, "{err:?}");
            assert_eq!(refusal.status(), 401, "{err:?}");
        }
    }

    fn header<'a>(r: &'a Reply, name: &str) -> Option<&'a str> {
        r.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    fn headers<'a>(r: &'a Reply, name: &str) -> Vec<&'a str> {
        r.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    #[test]
    fn no_credentials_gets_one_challenge_per_scheme_without_an_error() {
        let r = Refusal::AuthenticationRequired.reply("r1");
        assert_eq!(r.status, 401);
        assert_eq!(
            headers(&r, "www-authenticate"),
            [
                "Bearer realm=\"stella-gateway\"",
                "DPoP realm=\"stella-gateway\", algs=\"ES256 ES384 EdDSA PS256\""
            ]
        );
    }

    #[test]
    fn challenges_name_the_resource_metadata_of_the_route_when_it_has_one() {
        let url = "https://api.example.com/.well-known/oauth-protected-resource/orders";
        let r = Refusal::AuthenticationRequired.reply_with("r1", DPOP_ALGS, Some(url));
        assert_eq!(
            headers(&r, "www-authenticate"),
            [
                format!("Bearer realm=\"stella-gateway\", resource_metadata=\"{url}\""),
                format!(
                    "DPoP realm=\"stella-gateway\", algs=\"ES256 ES384 EdDSA PS256\", resource_metadata=\"{url}\""
                )
            ]
        );
        let r = Refusal::InvalidToken { code: "expired" }.reply_with("r1", DPOP_ALGS, Some(url));
        for c in headers(&r, "www-authenticate") {
            assert!(
                c.ends_with(&format!(", resource_metadata=\"{url}\"")),
                "{c}"
            );
        }
        // Refusals without a challenge get none for it.
        let r = Refusal::NoRoute.reply_with("r1", DPOP_ALGS, Some(url));
        assert!(headers(&r, "www-authenticate").is_empty());
    }

    #[test]
    fn nonce_refusal_carries_a_fresh_nonce_and_the_use_dpop_nonce_error() {
        let r = Refusal::UseDpopNonce {
            nonce: "n-1".into(),
        }
        .reply("r");
        assert_eq!(r.status, 401);
        assert_eq!(header(&r, "dpop-nonce"), Some("n-1"));
        let c = headers(&r, "www-authenticate");
        assert_eq!(c.len(), 1);
        assert!(
            c[0].starts_with("DPoP realm=\"stella-gateway\", error=\"use_dpop_nonce\""),
            "{c:?}"
        );
        assert!(c[0].contains("algs=\""), "{c:?}");
        assert_eq!(header(&r, "cache-control"), Some("no-store"));
    }

    #[test]
    fn proof_defects_get_only_a_dpop_challenge() {
        let r = Refusal::InvalidDpopProof {
            code: "htu_mismatch",
        }
        .reply("r");
        let c = headers(&r, "www-authenticate");
        assert_eq!(c.len(), 1);
        assert!(c[0].starts_with("DPoP realm=\"stella-gateway\", error=\"invalid_dpop_proof\""));
        assert_eq!(Refusal::ReplayStoreUnavailable.reply("r").status, 503);
        let share = Refusal::ReplayShareExceeded.reply("r");
        assert_eq!(share.status, 429);
        assert_eq!(header(&share, "retry-after"), Some("5"));
        assert_eq!(
            header(&share, "content-type"),
            Some("application/problem+json")
        );
    }

    #[test]
    fn invalid_token_challenge_names_the_error() {
        let r = Refusal::InvalidToken { code: "expired" }.reply("r1");
        assert_eq!(r.status, 401);
        let c = header(&r, "www-authenticate").unwrap();
        assert!(
            c.starts_with("Bearer realm=\"stella-gateway\", error=\"invalid_token\""),
            "{c}"
        );
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body["token_error"], "expired");
        assert_eq!(body["request_id"], "r1");
    }

    #[test]
    fn insufficient_scope_is_403_with_the_required_scopes() {
        let r = Refusal::InsufficientScope {
            required: vec!["admin".into()],
        }
        .reply("r");
        assert_eq!(r.status, 403);
        assert!(header(&r, "www-authenticate")
            .unwrap()
            .ends_with("scope=\"admin\""));
    }

    #[test]
    fn identity_mismatch_is_a_403_with_its_own_code_and_no_challenge() {
        let r = Refusal::IdentityMismatch.reply("r");
        assert_eq!(r.status, 403);
        assert_eq!(header(&r, "www-authenticate"), None);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "identity_mismatch");
        assert_eq!(Refusal::IdentityMismatch.reason(), "identity_mismatch");
    }

    #[test]
    fn unavailable_authority_is_503_with_retry_after_and_no_challenge() {
        let r = Refusal::AuthorityUnavailable.reply("r");
        assert_eq!(r.status, 503);
        assert_eq!(header(&r, "retry-after"), Some("5"));
        assert_eq!(header(&r, "www-authenticate"), None);
    }

    #[test]
    fn every_reply_is_problem_json_and_never_cached() {
        for refusal in [
            Refusal::BadPath {
                code: "encoded_slash",
            },
            Refusal::MultipleCredentials,
            Refusal::NoRoute,
            Refusal::MethodNotAllowed {
                allowed: vec!["GET".into(), "HEAD".into()],
            },
            Refusal::Forbidden { reason: "tenant" },
            Refusal::IdentityMismatch,
            Refusal::UpstreamTimeout,
        ] {
            let r = refusal.reply("r");
            assert_eq!(header(&r, "content-type"), Some("application/problem+json"));
            assert_eq!(header(&r, "cache-control"), Some("no-store"));
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(body["status"], r.status);
            assert_eq!(body["error"], refusal.code());
        }
        let r = Refusal::MethodNotAllowed {
            allowed: vec!["GET".into(), "HEAD".into()],
        }
        .reply("r");
        assert_eq!(header(&r, "allow"), Some("GET, HEAD"));
    }
}
