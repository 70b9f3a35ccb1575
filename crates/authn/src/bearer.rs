//! RFC 9068 JWT access tokens: from the `Authorization: Bearer` value to
//! verified [`TokenClaims`].
//!
//! Split around the one async step, the key lookup:
//! 1. [`parse_token`] (pure): length cap, compact JWS, `typ` `at+jwt`
//!    (case-insensitive, optional `application/`, required; an Authority's
//!    token profile may name others), `alg` in the configured allowlist
//!    (itself within ES256, ES384, EdDSA, PS256, RS256), and no key
//!    material or key reference in the header (`jwk`, `jku`, `x5u`, `x5c`):
//!    keys come from the Authority's JWKS only;
//! 2. [`JwksCache::key_for`] picks the key by `kid` and `alg`;
//! 3. [`verify_claims`] (pure, takes `now`): signature, then claims with
//!    strict JSON types: a claim of the wrong type is an error, never
//!    treated as absent. Client id, scopes, tenant and roles are read where
//!    the Authority's [`ClaimMapping`] says ([`mapping`]).
//!
//! [`authenticate_bearer`] runs the three with the verified-token cache in
//! front. What it returns is authentication only: the caller still applies
//! the route policy and enforces [`Binding`] (a `cnf`-bound token presented
//! as plain Bearer is refused there, docs/design.md §3.3), on cache hits too.

use super::cache::{TokenCache, TokenKey};
use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use stella_authority::{AuthorityConfig, ClaimMapping};
use stella_authority::{JwksCache, KeyLookupError};
use stella_core::identity::{names, Binding, Names, TokenClaims};
use stella_envelope::encoding::{is_canonical_b64url_of_len, DecodeError};
use stella_jose::{
    typ_matches, CompactJws, JoseError, JsonObject, JwsAlg, JwsHeader, JwsPart, VerifyingKey,
};

pub mod mapping;

/// Default cap on a token's length, in bytes.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 16 * 1024;

/// The media type of RFC 9068 access tokens.
const AT_JWT: &str = "at+jwt";

/// Claims whose type the verifier checks itself; a required-claims entry
/// naming one of them only adds "must be present".
const TYPED_CLAIMS: [&str; 12] = [
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "sub",
    "client_id",
    "jti",
    "scope",
    "tenant",
    "roles",
    "cnf",
];

/// What an access token must satisfy, from the Authority configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRules {
    /// Shared by every token verified under these rules (see
    /// `TokenClaims::issuer`).
    issuer: Arc<str>,
    audiences: Vec<String>,
    algorithms: Vec<JwsAlg>,
    leeway: u64,
    required_claims: Vec<String>,
    max_token_len: usize,
    /// The Authority's token profile; `None`: strict RFC 9068.
    mapping: Option<ClaimMapping>,
}

/// Why [`TokenRules`] could not be built from a configuration (which
/// `config::resolve` normally already refused).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("algorithms[{index}] is not one of ES256, ES384, EdDSA, PS256, RS256")]
    UnsupportedAlgorithm { index: usize },
    #[error("no algorithm is allowed")]
    NoAlgorithm,
    #[error("no audience is configured")]
    NoAudience,
}

impl TokenRules {
    /// Rules for the configured Authority, with the default length cap.
    pub fn from_config(config: &AuthorityConfig) -> Result<TokenRules, RulesError> {
        let algorithms = config
            .algorithms
            .iter()
            .enumerate()
            .map(|(index, alg)| {
                JwsAlg::from_header(alg).map_err(|_| RulesError::UnsupportedAlgorithm { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if algorithms.is_empty() {
            return Err(RulesError::NoAlgorithm);
        }
        if config.audiences.iter().all(String::is_empty) {
            return Err(RulesError::NoAudience);
        }
        Ok(TokenRules {
            issuer: config.issuer.as_str().into(),
            audiences: config
                .audiences
                .iter()
                .filter(|a| !a.is_empty())
                .cloned()
                .collect(),
            algorithms,
            leeway: config.leeway.as_secs(),
            required_claims: config.required_claims.clone(),
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            mapping: config.token_claims.clone(),
        })
    }

    /// The same rules with another token length cap.
    pub fn with_max_token_len(mut self, max: usize) -> TokenRules {
        self.max_token_len = max;
        self
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    pub fn algorithms(&self) -> &[JwsAlg] {
        &self.algorithms
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub fn leeway(&self) -> u64 {
        self.leeway
    }

    pub fn required_claims(&self) -> &[String] {
        &self.required_claims
    }

    pub fn max_token_len(&self) -> usize {
        self.max_token_len
    }

    /// Where this Authority's access tokens carry what the gateway reads;
    /// `None`: strict RFC 9068.
    pub fn mapping(&self) -> Option<&ClaimMapping> {
        self.mapping.as_ref()
    }
}

/// What is wrong with one claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimProblem {
    Missing,
    WrongType,
    /// A number that is not a non-negative integer (RFC 7519 NumericDate
    /// restricted to whole seconds).
    NotNumericDate,
    /// A string other than the one the Authority's token profile requires
    /// (`token_use: id` where `access` is required).
    UnexpectedValue,
}

impl fmt::Display for ClaimProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClaimProblem::Missing => "is missing",
            ClaimProblem::WrongType => "has the wrong json type",
            ClaimProblem::NotNumericDate => "is not a whole non-negative number of seconds",
            ClaimProblem::UnexpectedValue => "does not have the value the token profile requires",
        })
    }
}

/// Why a bearer token was refused. Every variant is 401 `invalid_token`
/// except the key lookup's `Unavailable`, which is 503 (see
/// [`TokenError::is_unavailable`]). Messages name claims and numbers,
/// never values from the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a well-formed compact JWS with an accepted alg, or a bad
    /// signature.
    #[error("{0}")]
    Jose(JoseError),
    #[error("token header has no typ (at+jwt required unless a token profile says otherwise)")]
    MissingTyp,
    #[error("token typ is not at+jwt (or a value the token profile accepts)")]
    WrongTyp,
    #[error("alg {0} is not allowed for access tokens by configuration")]
    AlgNotAllowed(JwsAlg),
    #[error("token header member `{0}` is refused: keys come from the authority's jwks only")]
    KeyInHeader(&'static str),
    #[error("{0}")]
    Key(KeyLookupError),
    #[error("claim `{claim}` {problem}")]
    Claim {
        claim: Cow<'static, str>,
        problem: ClaimProblem,
    },
    #[error("iss is not the configured issuer")]
    WrongIssuer,
    #[error("aud names none of the configured audiences")]
    WrongAudience,
    #[error("token expired {ago} s ago (leeway {leeway} s)")]
    Expired { ago: u64, leeway: u64 },
    #[error("token is not valid for another {wait} s (leeway {leeway} s)")]
    NotYetValid { wait: u64, leeway: u64 },
    #[error("token was issued {ahead} s in the future (leeway {leeway} s)")]
    IssuedInFuture { ahead: u64, leeway: u64 },
    /// `iss` names no configured Authority (several are configured).
    #[error("iss names no configured authority")]
    UnknownIssuer,
    /// The token's tenant is bound to another Authority than its issuer.
    #[error("the token's tenant is bound to another issuer")]
    TenantIssuerMismatch,
    /// Introspection answered `active: false` (revoked, expired, unknown).
    #[error("the authority reports the token inactive")]
    Inactive,
    /// The Authority's introspection or claims endpoint could not answer
    /// and nothing cached may serve: 503, never 401.
    #[error("authority {what} unavailable")]
    Unavailable { what: &'static str },
}

impl TokenError {
    /// A stable label for metrics and decision logs; one of a fixed set
    /// (the JOSE layer's codes, the key lookup's, and this module's own).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Jose(e) => e.code(),
            TokenError::MissingTyp => "missing_typ",
            TokenError::WrongTyp => "wrong_typ",
            TokenError::AlgNotAllowed(_) => "alg_not_allowed",
            TokenError::KeyInHeader(_) => "key_in_header",
            TokenError::Key(e) => e.code(),
            TokenError::Claim {
                problem: ClaimProblem::Missing,
                ..
            } => "missing_claim",
            TokenError::Claim {
                problem: ClaimProblem::UnexpectedValue,
                ..
            } => "unexpected_claim_value",
            TokenError::Claim { .. } => "malformed_claim",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::Expired { .. } => "expired",
            TokenError::NotYetValid { .. } => "not_yet_valid",
            TokenError::IssuedInFuture { .. } => "issued_in_future",
            TokenError::UnknownIssuer => "unknown_issuer",
            TokenError::TenantIssuerMismatch => "tenant_issuer_mismatch",
            TokenError::Inactive => "inactive",
            TokenError::Unavailable { .. } => "authority_unavailable",
        }
    }

    /// True when the token could not be checked because the Authority's
    /// keys are unavailable: answer 503 with `Retry-After`, not 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, TokenError::Key(e) if e.is_unavailable())
            || matches!(self, TokenError::Unavailable { .. })
    }

    fn claim(claim: &'static str, problem: ClaimProblem) -> TokenError {
        TokenError::Claim {
            claim: Cow::Borrowed(claim),
            problem,
        }
    }
}

impl From<KeyLookupError> for TokenError {
    fn from(e: KeyLookupError) -> Self {
        TokenError::Key(e)
    }
}

/// A token that passed [`parse_token`]: well-formed, typed `at+jwt` (or as
/// the Authority's token profile accepts), an allowed alg, no key in its
/// header. Not yet verified.
#[derive(Clone, Debug)]
pub struct ParsedToken {
    jws: CompactJws,
}

impl ParsedToken {
    pub fn alg(&self) -> JwsAlg {
        self.jws.header().alg()
    }

    /// The header `kid` as received, to pick the key with.
    pub fn kid(&self) -> Option<&str> {
        self.jws.header().kid()
    }

    pub fn header(&self) -> &JwsHeader {
        self.jws.header()
    }
}

/// Parses and checks the header of an access token. Pure.
pub fn parse_token(token: &str, rules: &TokenRules) -> Result<ParsedToken, TokenError> {
    let jws = CompactJws::parse(token, rules.max_token_len).map_err(TokenError::Jose)?;
    let header = jws.header();
    // Never fetch or trust keys named by the token itself.
    for (present, member) in [
        (header.jwk().is_some(), "jwk"),
        (header.has_jku(), "jku"),
        (header.has_x5u(), "x5u"),
        (header.has_x5c(), "x5c"),
    ] {
        if present {
            return Err(TokenError::KeyInHeader(member));
        }
    }
    match &rules.mapping {
        None => match header.typ() {
            None => return Err(TokenError::MissingTyp),
            Some(typ) if !typ_matches(typ, AT_JWT) => return Err(TokenError::WrongTyp),
            Some(_) => {}
        },
        Some(m) => mapping::check_typ(header.typ(), m)?,
    }
    if !rules.algorithms.contains(&header.alg()) {
        return Err(TokenError::AlgNotAllowed(header.alg()));
    }
    Ok(ParsedToken { jws })
}

/// Verifies the signature of `parsed` with `key`, then its claims against
/// `rules` at time `now` (unix seconds). Pure.
pub fn verify_claims(
    parsed: &ParsedToken,
    key: &VerifyingKey,
    rules: &TokenRules,
    now: u64,
) -> Result<TokenClaims, TokenError> {
    parsed.jws.verify(key).map_err(TokenError::Jose)?;
    // The payload was checked to be a JSON object without duplicates by
    // the parser; this cannot fail on such input, but is not assumed to.
    let claims: JsonObject = serde_json::from_slice(parsed.jws.payload()).map_err(|_| {
        TokenError::Jose(JoseError::Json {
            part: JwsPart::Payload,
            reason: DecodeError::Json,
        })
    })?;
    check_claims(claims, rules, now, ClaimsSource::Jwt)
}

/// Where claims handed to [`check_claims`] come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimsSource {
    /// A verified JWT access token (RFC 9068): `sub` and the configured
    /// required claims must be present.
    Jwt,
    /// An introspection response (RFC 7662), where `sub` and `jti` are
    /// optional: a token without `sub` (client credentials) has its
    /// `client_id` as subject, and required claims are not asked for.
    Introspection,
}

/// The checks of [`verify_claims`] after the signature, over claims that
/// came from a trusted source: a verified JWT payload, or the Authority's
/// introspection response (RFC 7662) for an opaque token.
///
/// A JWT's client id, scopes, tenant and roles are read where the
/// Authority's token profile says; an introspection response always uses
/// the names RFC 7662 gives them (`client_id`, `scope`), and `roles` and
/// `tenant`.
pub fn check_claims(
    claims: JsonObject,
    rules: &TokenRules,
    now: u64,
    source: ClaimsSource,
) -> Result<TokenClaims, TokenError> {
    let profile = match source {
        ClaimsSource::Jwt => rules.mapping.as_ref(),
        ClaimsSource::Introspection => None,
    };
    let shape = profile.unwrap_or(mapping::strict());

    let issuer = string(&claims, "iss")?.ok_or(TokenError::claim("iss", ClaimProblem::Missing))?;
    if issuer != &*rules.issuer {
        return Err(TokenError::WrongIssuer);
    }

    let audiences = match (claims.contains_key("aud"), profile) {
        // Only a profile without `require_aud` takes a token without `aud`,
        // and only when its client id is one of the configured audiences:
        // Cognito names the app client the token was issued to that way.
        (false, Some(m)) if !m.require_aud => {
            let client = mapping::client_id(&claims, m)?;
            if !client.is_some_and(|c| rules.audiences.iter().any(|r| **r == *c)) {
                return Err(TokenError::WrongAudience);
            }
            Names::default()
        }
        _ => {
            let audiences = audiences(&claims)?;
            if !audiences
                .iter()
                .any(|a| rules.audiences.iter().any(|r| **r == **a))
            {
                return Err(TokenError::WrongAudience);
            }
            audiences
        }
    };

    let leeway = rules.leeway;
    let expires_at =
        numeric_date(&claims, "exp")?.ok_or(TokenError::claim("exp", ClaimProblem::Missing))?;
    if now >= expires_at.saturating_add(leeway) {
        return Err(TokenError::Expired {
            ago: now.saturating_sub(expires_at),
            leeway,
        });
    }
    if let Some(not_before) = numeric_date(&claims, "nbf")? {
        if not_before > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid {
                wait: not_before.saturating_sub(now),
                leeway,
            });
        }
    }
    if let Some(issued_at) = numeric_date(&claims, "iat")? {
        if issued_at > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture {
                ahead: issued_at.saturating_sub(now),
                leeway,
            });
        }
    }

    // RFC 9068 section 2.2: `sub` is required in every JWT access token.
    let client_id = mapping::client_id(&claims, shape)?;
    let subject = match (string(&claims, "sub")?.filter(|s| !s.is_empty()), source) {
        (Some(sub), _) => Some(sub.into()),
        (None, ClaimsSource::Introspection) if client_id.is_some() => client_id.clone(),
        (None, _) => return Err(TokenError::claim("sub", ClaimProblem::Missing)),
    };
    let jti = string(&claims, "jti")?.map(Box::from);
    let scopes = mapping::scopes(&claims, shape, client_id.as_deref())?;
    let tenant = mapping::tenant(&claims, shape, client_id.as_deref())?;
    let roles = mapping::roles(&claims, shape, client_id.as_deref())?;

    if source == ClaimsSource::Jwt {
        for name in &rules.required_claims {
            check_required(&claims, name)?;
        }
    }
    if let Some(m) = profile {
        if m.require_jti && jti.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::claim("jti", ClaimProblem::Missing));
        }
        // Every profile names where the client is: a token without one is
        // not an access token of that Authority.
        if client_id.as_deref().is_none_or(str::is_empty) {
            return Err(TokenError::Claim {
                claim: Cow::Owned(mapping::client_id_names(m)),
                problem: ClaimProblem::Missing,
            });
        }
        mapping::check_required_values(&claims, m, client_id.as_deref())?;
    }

    let binding = binding(claims.get("cnf"));
    Ok(TokenClaims {
        issuer: rules.issuer.clone(),
        subject,
        audiences,
        client_id,
        jti,
        scopes,
        tenant,
        roles,
        expires_at,
        binding,
        extra: stella_core::identity::untyped_claims(claims),
    })
}

/// Authenticates a bearer token: verified-token cache, else parse, key
/// lookup and verification (then cached until `exp` + leeway).
///
/// The cache must belong to these `rules` (build a new one when the
/// configuration changes). A cache hit skips the signature and claims
/// checks only; route policy and binding checks are the caller's, every
/// time.
pub async fn authenticate_bearer(
    token: &str,
    rules: &TokenRules,
    jwks: &Arc<JwksCache>,
    cache: &TokenCache,
    now: u64,
) -> Result<Arc<TokenClaims>, TokenError> {
    authenticate_bearer_keyed(token, rules, jwks, cache, now)
        .await
        .map(|(claims, _)| claims)
}

/// [`authenticate_bearer`], also returning the token's SHA-256 (its cache
/// key), which a DPoP proof's `ath` is checked against: a 1 KiB token is
/// then hashed once per request, not twice.
pub async fn authenticate_bearer_keyed(
    token: &str,
    rules: &TokenRules,
    jwks: &Arc<JwksCache>,
    cache: &TokenCache,
    now: u64,
) -> Result<(Arc<TokenClaims>, TokenKey), TokenError> {
    // Cheap refusal before hashing an oversize value.
    if token.len() > rules.max_token_len {
        return Err(TokenError::Jose(JoseError::TooLong {
            max: rules.max_token_len,
        }));
    }
    let key = TokenKey::of(token);
    if let Some(claims) = cache.get(&key, now) {
        return Ok((claims, key));
    }
    let claims = verify_and_cache(token, key, rules, jwks, cache, now).await?;
    Ok((claims, key))
}

/// The cache-miss half of [`authenticate_bearer_keyed`]: parse, key
/// lookup, verification, then the verdict cached under `key` (the token's
/// SHA-256) until `exp` + leeway.
pub async fn verify_and_cache(
    token: &str,
    key: TokenKey,
    rules: &TokenRules,
    jwks: &Arc<JwksCache>,
    cache: &TokenCache,
    now: u64,
) -> Result<Arc<TokenClaims>, TokenError> {
    if token.len() > rules.max_token_len {
        return Err(TokenError::Jose(JoseError::TooLong {
            max: rules.max_token_len,
        }));
    }
    let parsed = parse_token(token, rules)?;
    let verifying_key = jwks.key_for(parsed.kid(), parsed.alg()).await?;
    let claims = Arc::new(cache.compact(verify_claims(&parsed, &verifying_key, rules, now)?));
    cache.insert(
        key,
        claims.clone(),
        claims.expires_at().saturating_add(rules.leeway),
        now,
    );
    Ok(claims)
}

/// An optional string claim; present with another type is an error.
fn string<'a>(claims: &'a JsonObject, name: &'static str) -> Result<Option<&'a str>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(TokenError::claim(name, ClaimProblem::WrongType)),
    }
}

/// An optional NumericDate in whole non-negative seconds.
fn numeric_date(claims: &JsonObject, name: &'static str) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or(TokenError::claim(name, ClaimProblem::NotNumericDate)),
        Some(_) => Err(TokenError::claim(name, ClaimProblem::WrongType)),
    }
}

/// `aud`: one string or an array of strings (RFC 7519 4.1.3); required.
fn audiences(claims: &JsonObject) -> Result<Names, TokenError> {
    match claims.get("aud") {
        None => Err(TokenError::claim("aud", ClaimProblem::Missing)),
        Some(Value::String(aud)) => Ok(names([aud])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|a| match a {
                Value::String(a) => Ok(Arc::from(a.as_str())),
                _ => Err(TokenError::claim("aud", ClaimProblem::WrongType)),
            })
            .collect(),
        Some(_) => Err(TokenError::claim("aud", ClaimProblem::WrongType)),
    }
}

/// A configured required claim must be present and not empty; one the
/// verifier does not type itself must be a string.
fn check_required(claims: &JsonObject, name: &str) -> Result<(), TokenError> {
    let problem = match claims.get(name) {
        None | Some(Value::Null) => Some(ClaimProblem::Missing),
        Some(Value::String(s)) if s.is_empty() => Some(ClaimProblem::Missing),
        Some(Value::String(_)) => None,
        Some(_) if TYPED_CLAIMS.contains(&name) => None,
        Some(_) => Some(ClaimProblem::WrongType),
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(TokenError::Claim {
            claim: Cow::Owned(name.to_owned()),
            problem,
        }),
    }
}

/// `cnf` (RFC 7800) as something the gateway can enforce, or not.
fn binding(cnf: Option<&Value>) -> Binding {
    let Some(cnf) = cnf else {
        return Binding::Unbound;
    };
    let Value::Object(members) = cnf else {
        return Binding::Unenforceable;
    };
    let mut iter = members.iter();
    match (iter.next(), iter.next()) {
        (Some((name, Value::String(value))), None) if is_canonical_b64url_of_len(value, 32) => {
            match name.as_str() {
                "jkt" => Binding::Jkt(value.clone()),
                "x5t#S256" => Binding::X5tS256(value.clone()),
                _ => Binding::Unenforceable,
            }
        }
        _ => Binding::Unenforceable,
    }
}

#[cfg(test)]
mod tests;
