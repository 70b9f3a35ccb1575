//! What the gateway is told about each Authority: checked values, built by
//! the gateway's configuration from its file and environment. This crate
//! owns the types; the configuration depends on them, never the reverse.

use std::path::PathBuf;
use std::time::Duration;

pub mod token_claims;

pub use token_claims::{
    ClaimMapping, ClaimPath, PathError, RequiredValue, ScopeFormat, Segment, TokenProfile,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorityConfig {
    /// Where it is configured (`gateway.auth.authority`,
    /// `gateway.auth.authorities[0]`), for error messages.
    pub path: String,
    /// Exactly as configured; compared byte for byte with `iss`.
    pub issuer: String,
    pub require_https_metadata: bool,
    pub audiences: Vec<String>,
    pub algorithms: Vec<String>,
    pub leeway: Duration,
    pub required_claims: Vec<String>,
    pub jwks_refresh: Duration,
    pub jwks_cooldown: Duration,
    pub jwks_max_stale: Duration,
    pub http_timeout: Duration,
    /// Where the last-known-good discovery and JWKS are persisted
    /// (`authority::lkg`); `None`: kept in memory only.
    pub state_dir: Option<PathBuf>,
    /// Tenants bound to this issuer (no other issuer's token may claim them).
    pub tenants: Vec<String>,
    /// The gateway's client credentials at this Authority.
    pub client: Option<ClientCredentials>,
    pub introspection: Option<IntrospectionConfig>,
    pub claims: Option<ClaimsConfig>,
    /// Where this Authority's access tokens carry what the gateway reads
    /// (`token_profile`, `token_claims`); `None`: strict RFC 9068 (`typ
    /// at+jwt`, `scope`, `roles`, `tenant`, `client_id`), with
    /// `required_claims` deciding what must be present.
    pub token_claims: Option<ClaimMapping>,
}

/// `client_secret_basic` credentials. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: Secret,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A secret string: zeroed when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

impl Secret {
    pub fn new(text: String) -> Secret {
        Secret(zeroize::Zeroizing::new(text))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Token introspection (RFC 7662) for opaque access tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// Configured; `None`: the discovery document's `introspection_endpoint`.
    pub endpoint: Option<String>,
    pub cache: Duration,
    pub inactive_cache: Duration,
    pub max_stale: Duration,
    /// Active results written to `state_dir` at most (0: none).
    pub persist_max_entries: usize,
}

/// The Authority's claims endpoint (effective claims).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimsConfig {
    pub endpoint: String,
    pub cache: Duration,
    pub refresh_ahead: Duration,
    pub max_stale: Duration,
    /// Entries written to `state_dir` at most (0: none).
    pub persist_max_entries: usize,
}
