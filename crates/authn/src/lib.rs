//! Authentication: turning the credentials of a request into verified
//! claims.
//!
//! - [`bearer`]: RFC 9068 JWT access tokens, verified against the
//!   Authority's keys (`stella_authority::jwks`);
//! - [`cache`]: verified tokens by hash, so the hot path skips signature
//!   and claims parsing (never the route policy or a binding check);
//! - `dpop` and `mtls` (sender constraints) build on `bearer`'s claims and
//!   their [`stella_core::identity::Binding`].

pub mod bearer;
pub mod cache;
pub mod claims;
pub mod dpop;
pub mod introspection;
pub mod issuers;
pub mod nonce;
pub mod presented;
pub mod replay;

pub use bearer::{
    authenticate_bearer, authenticate_bearer_keyed, parse_token, verify_and_cache, verify_claims,
    ClaimProblem, ParsedToken, RulesError, TokenError, TokenRules,
};
pub use cache::{TokenCache, TokenKey};
