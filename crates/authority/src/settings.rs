//! What the gateway is told about each Authority: checked values, built by
//! the gateway's configuration from its file and environment. This crate
//! owns the types; the configuration depends on them, never the reverse.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::path::PathBuf;
use std::sync::Arc;
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
    /// The roots the Authority's https certificate must chain to
    /// (`ca_file`), for every request to it: discovery, JWKS,
    /// introspection, claims. `None`: the platform's roots.
    pub ca: Option<CaRoots>,
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

/// Root certificates from a PEM bundle, each one rustls accepts as a trust
/// anchor. Compared by content, so a changed file is a changed setting.
#[derive(Clone, PartialEq, Eq)]
pub struct CaRoots(Arc<[CertificateDer<'static>]>);

impl CaRoots {
    /// The certificates of a PEM bundle; what is wrong otherwise, in words
    /// that never quote the content.
    pub fn from_pem(pem: &[u8]) -> Result<CaRoots, String> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "holds a malformed pem certificate".to_owned())?;
        if certs.is_empty() {
            return Err("holds no pem certificate".into());
        }
        for (i, cert) in certs.iter().enumerate() {
            if rustls::RootCertStore::empty().add(cert.clone()).is_err() {
                return Err(format!(
                    "certificate {} is not usable as a root (not valid x.509)",
                    i + 1
                ));
            }
        }
        Ok(CaRoots(certs.into()))
    }

    /// A root store holding exactly these certificates.
    pub fn store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        // Each was accepted by `from_pem`.
        let _ = roots.add_parsable_certificates(self.0.iter().cloned());
        roots
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for CaRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaRoots({} certificates)", self.0.len())
    }
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
