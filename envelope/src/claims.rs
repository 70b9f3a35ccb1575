//! The identity an envelope carries: who called, how they proved it, and
//! what they may do. Shared vocabulary for the gateway and the services.

use serde::{Deserialize, Serialize};

/// How the caller authenticated at the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// A plain Bearer access token.
    Bearer,
    /// A DPoP-bound access token with a valid proof.
    Dpop,
    /// A certificate-bound access token on a matching TLS connection.
    Mtls,
    /// A SPIFFE X.509-SVID client certificate alone.
    Spiffe,
    /// No credentials, on an anonymous route.
    Anonymous,
    /// A sender-constrained token whose constraint was not proven, let
    /// through by the emergency bypass.
    Bypass,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::Dpop => "dpop",
            AuthMethod::Mtls => "mtls",
            AuthMethod::Spiffe => "spiffe",
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Bypass => "bypass",
        }
    }
}

/// What the caller's credential was bound to. Every member is always
/// present on the wire, `null` when not applicable.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confirmation {
    /// RFC 7638 thumbprint of the DPoP key.
    #[serde(deserialize_with = "crate::encoding::nullable")]
    pub jkt: Option<String>,
    /// RFC 8705 SHA-256 thumbprint of the client certificate.
    #[serde(rename = "x5t#S256", deserialize_with = "crate::encoding::nullable")]
    pub x5t_s256: Option<String>,
    /// SPIFFE ID of the client certificate.
    #[serde(deserialize_with = "crate::encoding::nullable")]
    pub spiffe_id: Option<String>,
}

/// The caller's effective identity as decided by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Subject (`sub`), `None` for anonymous callers.
    pub subject: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub auth_method: AuthMethod,
    pub confirmation: Confirmation,
}

impl Identity {
    /// The identity of a caller with no credentials.
    pub fn anonymous() -> Identity {
        Identity {
            subject: None,
            tenant: None,
            client_id: None,
            scopes: Vec::new(),
            roles: Vec::new(),
            auth_method: AuthMethod::Anonymous,
            confirmation: Confirmation::default(),
        }
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}
