//! Authentication: turning the credentials of a request into verified
//! claims.
//!
//! - [`bearer`]: RFC 9068 JWT access tokens, verified against the
//!   Authority's keys (`stella_authority::jwks`); [`bearer::mapping`] reads
//!   the client id, scopes, tenant and roles where an Authority's token
//!   profile says its tokens carry them;
//! - [`cache`]: verified tokens by hash, so the hot path skips signature
//!   and claims parsing (never the route policy or a binding check);
//! - `dpop` and `mtls` (sender constraints) build on `bearer`'s claims and
//!   their [`stella_core::identity::Binding`];
//! - [`introspection`], [`claims`] and [`issuers`]: opaque tokens (RFC
//!   7662), effective claims from the Authority, and which Authority a token
//!   belongs to;
//! - [`presented`], [`nonce`], [`replay`]: the credential a request
//!   presents, DPoP server nonces, and the proof replay stores;
//! - [`redis`]: the one Redis connection, for the stores every node shares
//!   (the replay store, the revocation list);
//! - [`spiffe`]: the SPIFFE ID of a client certificate (X.509-SVID);
//! - [`revocation`]: the denylist of revoked identities (emergency
//!   revocation), checked after every authentication;
//! - [`pipeline`]: all of it for one request, ending in the
//!   [`Authenticated`] proof type that only this crate can make.

pub mod bearer;
pub mod cache;
pub mod claims;
pub mod dpop;
pub mod introspection;
pub mod issuers;
pub mod nonce;
pub mod pipeline;
pub mod presented;
pub mod redis;
pub mod replay;
pub mod revocation;
pub mod spiffe;

pub use bearer::{
    authenticate_bearer, authenticate_bearer_keyed, parse_token, verify_and_cache, verify_claims,
    ClaimProblem, ParsedToken, RulesError, TokenError, TokenRules,
};
pub use cache::{KeyMemo, TokenCache, TokenKey};
pub use pipeline::{
    Authenticated, Authenticator, AuthnError, AuthnEvents, PresentedCertificate, RequestFacts,
    Revoked, UnspentProof,
};
