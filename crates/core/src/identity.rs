//! Shared vocabulary of the pipeline: the claims of a verified access token
//! and the caller the authentication stage hands to the policy stage.
//!
//! `TokenClaims` are built by the token verifier (`authn::bearer`), and for
//! tokens a policy test describes ([`TokenClaims::described`]). Neither
//! reaches the envelope signer on its own: it signs only for an
//! `Authorized` caller (`policy::decide::authorize`), made from an
//! `Authenticated` one, which only `Snapshot::authenticate` makes. Test
//! constructors (`for_tests`, `with_*`) exist only under `cfg(test)`.
//!
//! ```compile_fail,E0599
//! // Not available outside the crate's own unit tests.
//! let _ = stella_gateway::identity::TokenClaims::for_tests("sub", &["read"]);
//! ```

use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
use stella_envelope::AuthMethod;

/// What an access token's `cnf` claim binds it to (RFC 9449, RFC 8705).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// No `cnf`: a plain bearer token.
    Unbound,
    /// `cnf.jkt`: the thumbprint of a DPoP key (canonical base64url).
    Jkt(String),
    /// `cnf.x5t#S256`: the thumbprint of a client certificate.
    X5tS256(String),
    /// A `cnf` the gateway cannot enforce (both members, `jwk`, unknown
    /// members, non-canonical values). Always refused: fail closed.
    Unenforceable,
}

/// The claims of an access token whose signature, issuer, audience and
/// times were verified.
///
/// Plain data: the fields are public so that the verifier, the introspection
/// and effective-claims merges and the token cache's interning can build and
/// adjust it. Holding a `TokenClaims` proves nothing; the proof that a caller
/// was authenticated is `stella_authn`'s `Authenticated`, which only the
/// authentication pipeline makes and which the envelope signer requires.
#[derive(Clone, Debug)]
pub struct TokenClaims {
    /// Shared with the verifier's configured issuer (a verified token's
    /// `iss` equals it): one allocation for every cached token.
    pub issuer: std::sync::Arc<str>,
    // Strings as `Box<str>`: a cached token costs memory for as long as it
    // lives, and a `String`'s capacity word is 8 bytes of it each.
    pub subject: Option<Box<str>>,
    pub audiences: Names,
    pub client_id: Option<Box<str>>,
    pub jti: Option<Box<str>>,
    pub scopes: Names,
    pub tenant: Option<Box<str>>,
    pub roles: Names,
    pub expires_at: u64,
    pub binding: Binding,
    /// The claims that have no typed field above, as received, for
    /// claim-equality requirements. Typed claims are not kept twice: a
    /// cached token costs memory for as long as it lives.
    pub extra: Box<[(Box<str>, Value)]>,
}

/// A list of names (audiences, scopes, roles). `Arc<str>` so that the
/// token cache can share equal names between tokens: most tokens carry the
/// same few audiences and scopes (the verified-token cache interns them).
pub type Names = Box<[std::sync::Arc<str>]>;

/// Names from strings.
pub fn names<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Names {
    items.into_iter().map(|s| s.as_ref().into()).collect()
}

/// Claims read into typed fields (or checked and dropped: `exp`, `nbf`,
/// `iat`, `cnf`); everything else goes to `extra`.
pub const TYPED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "client_id",
    "jti",
    "scope",
    "tenant",
    "roles",
    "exp",
    "nbf",
    "iat",
    "cnf",
];

/// Keeps the claims of `all` that have no typed field.
pub fn untyped_claims(all: Map<String, Value>) -> Box<[(Box<str>, Value)]> {
    all.into_iter()
        .filter(|(k, _)| !TYPED_CLAIMS.contains(&k.as_str()))
        .map(|(k, v)| (k.into_boxed_str(), v))
        .collect()
}

impl TokenClaims {
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    pub fn audiences(&self) -> &[std::sync::Arc<str>] {
        &self.audiences
    }
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
    pub fn jti(&self) -> Option<&str> {
        self.jti.as_deref()
    }
    pub fn scopes(&self) -> &[std::sync::Arc<str>] {
        &self.scopes
    }
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_deref()
    }
    pub fn roles(&self) -> &[std::sync::Arc<str>] {
        &self.roles
    }
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }
    pub fn binding(&self) -> &Binding {
        &self.binding
    }
    /// A claim, for equality requirements: typed claims rebuilt from their
    /// fields (`scope` as the space-separated string, `aud` as a string when
    /// there is one audience), others as received. `nbf`, `iat` and `cnf`
    /// are not kept and read as absent.
    pub fn claim(&self, name: &str) -> Option<Cow<'_, Value>> {
        let text =
            |s: &Option<Box<str>>| s.as_ref().map(|v| Cow::Owned(Value::String(v.to_string())));
        let list = |l: &[std::sync::Arc<str>]| {
            Value::Array(l.iter().map(|v| Value::String(v.to_string())).collect())
        };
        match name {
            "iss" => Some(Cow::Owned(Value::String(self.issuer.to_string()))),
            "sub" => text(&self.subject),
            "client_id" => text(&self.client_id),
            "jti" => text(&self.jti),
            "tenant" => text(&self.tenant),
            "scope" => Some(Cow::Owned(Value::String(self.scopes.join(" ")))),
            "roles" => Some(Cow::Owned(list(&self.roles))),
            "aud" => Some(Cow::Owned(match &*self.audiences {
                [one] => Value::String(one.to_string()),
                many => list(many),
            })),
            "exp" => Some(Cow::Owned(Value::from(self.expires_at))),
            "nbf" | "iat" | "cnf" => None,
            other => self
                .extra
                .iter()
                .find(|(k, _)| &**k == other)
                .map(|(_, v)| Cow::Borrowed(v)),
        }
    }

    /// Claims of a token described in a policy test file or on the
    /// `policy explain` command line: never verified. They cannot reach the
    /// envelope signer: it signs only for an `Authorized` caller, which
    /// needs an `Authenticated` one, which only `Snapshot::authenticate`
    /// makes.
    pub fn described(token: DescribedToken) -> TokenClaims {
        TokenClaims {
            issuer: DESCRIBED_ISSUER.clone(),
            subject: Some(token.subject.into()),
            audiences: names(token.audiences.unwrap_or_else(|| vec!["api".into()])),
            client_id: Some(token.client_id.unwrap_or_else(|| "client".into()).into()),
            jti: Some("jti".into()),
            scopes: names(token.scopes),
            tenant: token.tenant.map(Into::into),
            roles: names(token.roles),
            expires_at: u64::MAX,
            binding: token.binding,
            extra: token
                .claims
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v))
                .collect(),
        }
    }
}

static DESCRIBED_ISSUER: std::sync::LazyLock<std::sync::Arc<str>> =
    std::sync::LazyLock::new(|| "https://authority.test".into());

/// A token as a policy test describes it; see [`TokenClaims::described`].
pub struct DescribedToken {
    pub subject: String,
    /// `None`: `client`.
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub tenant: Option<String>,
    pub roles: Vec<String>,
    /// `None`: the one audience `api`.
    pub audiences: Option<Vec<String>>,
    /// Claims without a typed field, by name.
    pub claims: Vec<(String, Value)>,
    pub binding: Binding,
}

/// A caller the authentication stage established: what the policy's
/// `authorize` takes. The authentication crate's proof type implements it;
/// the policy only reads the caller through it, so neither crate depends on
/// the other.
pub trait AuthenticatedCaller {
    fn caller(&self) -> &Caller;
    /// The SPIFFE ID of a certificate-bound token's client certificate:
    /// it counts for `identity_binding`.
    fn certificate_spiffe_id(&self) -> Option<&str>;
}

/// Constructors for tests (this crate's, and other crates' with the
/// `testing` feature, which only dev-dependencies turn on).
#[cfg(any(test, feature = "testing"))]
impl TokenClaims {
    pub fn for_tests(subject: &str, scopes: &[&str]) -> TokenClaims {
        TokenClaims::described(DescribedToken {
            subject: subject.into(),
            client_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tenant: None,
            roles: Vec::new(),
            audiences: None,
            claims: Vec::new(),
            binding: Binding::Unbound,
        })
    }

    pub fn with_tenant(mut self, tenant: &str) -> TokenClaims {
        self.tenant = Some(tenant.into());
        self
    }

    pub fn with_roles(mut self, roles: &[&str]) -> TokenClaims {
        self.roles = names(roles);
        self
    }

    pub fn with_claim(mut self, name: &str, value: Value) -> TokenClaims {
        let mut extra: Vec<_> = self.extra.into_vec();
        extra.retain(|(k, _)| &**k != name);
        extra.push((name.into(), value));
        self.extra = extra.into_boxed_slice();
        self
    }

    pub fn with_audiences(mut self, audiences: &[&str]) -> TokenClaims {
        self.audiences = names(audiences);
        self
    }
}

/// Who is calling, as established by the authentication stage.
#[derive(Clone, Debug)]
pub enum Caller {
    /// No credentials were presented.
    Anonymous,
    /// A verified access token, with how its sender constraint (if any) was
    /// proven: `Bearer` (unbound), `Dpop`, `Mtls`, or `Bypass` (bound but
    /// unproven, let through by the emergency bypass).
    Token {
        claims: Arc<TokenClaims>,
        method: AuthMethod,
    },
    /// A SPIFFE X.509-SVID client certificate alone.
    Spiffe { spiffe_id: String },
}

impl Caller {
    pub fn auth_method(&self) -> AuthMethod {
        match self {
            Caller::Anonymous => AuthMethod::Anonymous,
            Caller::Token { method, .. } => *method,
            Caller::Spiffe { .. } => AuthMethod::Spiffe,
        }
    }

    pub fn claims(&self) -> Option<&TokenClaims> {
        match self {
            Caller::Token { claims, .. } => Some(claims),
            _ => None,
        }
    }

    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Caller::Anonymous)
    }
}
