//! The gateway's view of the Authority (the OIDC issuer): metadata
//! discovery, the JWKS cache that token verification reads keys from, and
//! the one HTTP client of the gateway (Authority documents, introspection,
//! effective claims, the command line and the trace exporter all use it).
//!
//! What it owns:
//! - [`http`]: one bounded JSON GET (timeout, 1 MiB cap, rustls with the
//!   ring provider, plain http only when configured);
//! - [`discovery`]: `{issuer}/.well-known/openid-configuration`, checked
//!   against the configured issuer;
//! - [`jwks`]: the signing keys, refreshed on a schedule and on unknown
//!   `kid` (single flight, once per cooldown), served stale for a bounded
//!   time when the Authority is down, then reported unavailable (503);
//! - [`lkg`]: the last good discovery and JWKS, persisted on each fetch
//!   and loaded at start, so a restart during an outage still serves;
//! - [`settings`]: the checked settings of one Authority, and how its
//!   access tokens are shaped (`settings::token_claims`: the named
//!   profiles and claim paths);
//! - [`stale`]: one cached answer with bounded staleness, the cache of
//!   introspection results and of effective claims.
//!
//! Opaque-token introspection, effective claims and the choice of issuer
//! use these from `stella-authn`.
//!
//! Parsing and decisions are pure functions over documents and a `now`;
//! only the fetches are async. Time comes from a [`Clock`] so tests can
//! freeze it.

pub mod discovery;
pub mod http;
pub mod jwks;
pub mod lkg;
pub mod settings;
pub mod stale;

#[cfg(any(test, feature = "testing"))]
pub mod test_server;

pub use discovery::Discovery;
pub use http::{FetchError, HttpFetcher};
pub use jwks::{JwksCache, KeyLookupError, KeySet};
pub use settings::{
    AuthorityConfig, CaRoots, ClaimMapping, ClaimPath, ClaimsConfig, ClientCredentials,
    IntrospectionConfig, Secret, TokenProfile,
};

/// Which Authority document a failure concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Document {
    Discovery,
    Jwks,
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Document::Discovery => "discovery document",
            Document::Jwks => "jwks",
        })
    }
}

/// Why talking to the Authority, or reading what it sent, failed.
///
/// Messages name the document and a fixed fact (a member name, an http
/// status); never content of the document. See [`AuthorityError::code`]
/// for the metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    #[error("fetching the {document} failed: {source}")]
    Fetch {
        document: Document,
        source: FetchError,
    },
    #[error("discovery document `issuer` does not equal the configured issuer")]
    IssuerMismatch,
    #[error("{document} member `{member}` is missing or not a string")]
    MissingMember {
        document: Document,
        member: &'static str,
    },
    #[error("discovery document member `{0}` is not an absolute http(s) url")]
    NotAUrl(&'static str),
    #[error("discovery document member `{0}` is not https and require_https_metadata is on")]
    InsecureMetadata(&'static str),
    #[error("configured issuer is not an absolute http(s) url")]
    BadIssuer,
    #[error("jwks has no key usable for verification ({skipped} skipped)")]
    NoUsableKeys { skipped: usize },
}

impl AuthorityError {
    /// A stable label for metrics and logs; one of a fixed set.
    pub fn code(&self) -> &'static str {
        match self {
            AuthorityError::Fetch { source, .. } => source.code(),
            AuthorityError::IssuerMismatch => "issuer_mismatch",
            AuthorityError::MissingMember { .. } => "missing_member",
            AuthorityError::NotAUrl(_) => "not_a_url",
            AuthorityError::InsecureMetadata(_) => "insecure_metadata",
            AuthorityError::BadIssuer => "bad_issuer",
            AuthorityError::NoUsableKeys { .. } => "no_usable_keys",
        }
    }

    /// Which document the failure concerns, for a metric label.
    pub fn document(&self) -> Document {
        match self {
            AuthorityError::Fetch { document, .. }
            | AuthorityError::MissingMember { document, .. } => *document,
            AuthorityError::NoUsableKeys { .. } => Document::Jwks,
            AuthorityError::IssuerMismatch
            | AuthorityError::NotAUrl(_)
            | AuthorityError::InsecureMetadata(_)
            | AuthorityError::BadIssuer => Document::Discovery,
        }
    }
}
