//! The authentication pipeline: a request's presented credential and
//! what the connection proved, turned into an [`Authenticated`] caller (the
//! proof type the policy's `authorize` and then the envelope signer ask
//! for), or an [`AuthnError`]. Token verification (JWS or introspection),
//! effective claims, the tenant's issuer binding, sender constraints (DPoP
//! proofs, certificate thumbprints) and the emergency bypass all happen
//! here; the replay entry of a DPoP proof is taken only once the policy
//! allowed the request ([`Authenticator::spend_proof`]). Every caller is
//! then checked against the revocation list ([`crate::revocation`]), so a
//! revoked identity is refused whether its token came from a cache or not.
//!
//! No HTTP responses and no metrics registry here: the gateway maps
//! [`AuthnError`] to its response in one place and counts what
//! [`AuthnEvents`] reports.

use crate::dpop::{check_proof, DpopError, DpopRules, ProofInput};
use crate::issuers::{looks_like_jws, Issuers};
use crate::nonce::{NonceCheck, NonceIssuer};
use crate::presented::{Presented, PresentedError, Token};
use crate::replay::{Admission, Fresh, ReplayStore};
use crate::revocation::{Denylist, Identifiers, Kind};
use crate::{verify_and_cache, KeyMemo, TokenCache, TokenError, TokenKey};
use std::sync::Arc;
use stella_core::identity::{AuthenticatedCaller, Binding, Caller, TokenClaims};
use stella_core::Clock;
use stella_envelope::{AuthMethod, Confirmation, Identity, IdentityRef};
use stella_routing::NormalizedPath;
use subtle::ConstantTimeEq;

/// A caller established by [`Authenticator::authenticate`], and the identity
/// an envelope carries for it. The fields are private to this module, so no
/// other code can make one: the policy's `authorize` takes it, and the
/// envelope signer takes what `authorize` returns.
#[derive(Debug)]
pub struct Authenticated {
    caller: Caller,
    /// What the caller's credential is bound to, as the envelope says it.
    /// The rest of the identity is read from the caller when needed
    /// ([`Authenticated::identity_ref`]): nothing is copied per request.
    confirmation: Confirmation,
    /// A DPoP proof not yet recorded in the replay store.
    proof: Option<UnspentProof>,
}

impl Authenticated {
    fn new(caller: Caller, client_cert: Option<&PresentedCertificate<'_>>) -> Authenticated {
        let confirmation = confirmation_of(&caller, client_cert);
        Authenticated {
            caller,
            confirmation,
            proof: None,
        }
    }

    /// The DPoP proof to record once the policy allows the request
    /// ([`Authenticator::spend_proof`]).
    pub fn take_proof(&mut self) -> Option<UnspentProof> {
        self.proof.take()
    }

    pub fn caller(&self) -> &Caller {
        &self.caller
    }

    /// What the caller's credential is bound to (the envelope's `cnf`).
    pub fn confirmation(&self) -> &Confirmation {
        &self.confirmation
    }

    /// The identity the envelope carries for this caller, borrowed from the
    /// caller's claims.
    pub fn identity_ref(&self) -> IdentityRef<'_, Arc<str>> {
        let (subject, tenant, client_id, scopes, roles) = match &self.caller {
            Caller::Anonymous => (None, None, None, &[][..], &[][..]),
            Caller::Token { claims, .. } => (
                claims.subject(),
                claims.tenant(),
                claims.client_id(),
                claims.scopes(),
                claims.roles(),
            ),
            Caller::Spiffe { spiffe_id } => {
                (Some(spiffe_id.as_str()), None, None, &[][..], &[][..])
            }
        };
        IdentityRef {
            subject,
            tenant,
            client_id,
            scopes,
            roles,
            auth_method: self.caller.auth_method(),
            confirmation: &self.confirmation,
        }
    }

    /// [`Authenticated::identity_ref`] copied into an [`Identity`] (the
    /// transaction token's claims are written from one).
    pub fn identity(&self) -> Identity {
        let view = self.identity_ref();
        Identity {
            subject: view.subject.map(str::to_owned),
            tenant: view.tenant.map(str::to_owned),
            client_id: view.client_id.map(str::to_owned),
            scopes: view.scopes.iter().map(|s| s.to_string()).collect(),
            roles: view.roles.iter().map(|s| s.to_string()).collect(),
            auth_method: view.auth_method,
            confirmation: self.confirmation.clone(),
        }
    }

    /// A caller as if authenticated, for tests of the later stages (other
    /// crates' with the `testing` feature, dev-dependencies only).
    #[cfg(any(test, feature = "testing"))]
    pub fn for_tests(caller: Caller) -> Authenticated {
        Authenticated::new(caller, None)
    }
}

impl AuthenticatedCaller for Authenticated {
    fn caller(&self) -> &Caller {
        &self.caller
    }

    fn certificate_spiffe_id(&self) -> Option<&str> {
        self.confirmation.spiffe_id.as_deref()
    }
}

/// What `caller`'s credential is bound to, as the envelope says it: the
/// DPoP key's thumbprint, or the certificate's (with its SPIFFE ID) for a
/// certificate-bound token or a SPIFFE caller.
fn confirmation_of(
    caller: &Caller,
    client_cert: Option<&PresentedCertificate<'_>>,
) -> Confirmation {
    match caller {
        Caller::Anonymous => Confirmation::default(),
        Caller::Token { claims, .. } => match claims.binding() {
            Binding::Jkt(jkt) => Confirmation {
                jkt: Some(jkt.clone()),
                ..Confirmation::default()
            },
            Binding::X5tS256(x5t) => Confirmation {
                x5t_s256: Some(x5t.clone()),
                spiffe_id: client_cert.and_then(|c| c.spiffe_id.map(str::to_owned)),
                ..Confirmation::default()
            },
            Binding::Unbound | Binding::Unenforceable => Confirmation::default(),
        },
        Caller::Spiffe { spiffe_id } => Confirmation {
            x5t_s256: client_cert.map(|c| c.thumbprint.to_owned()),
            spiffe_id: Some(spiffe_id.clone()),
            ..Confirmation::default()
        },
    }
}

/// Why a request's credential was refused. The gateway turns each into its
/// response (status, challenge, body code) in one place.
#[derive(Debug)]
pub enum AuthnError {
    /// The access token is refused (`invalid_token`, with this reason).
    InvalidToken(&'static str),
    /// The DPoP proof is refused (`invalid_dpop_proof`, with this reason).
    InvalidProof(&'static str),
    /// A DPoP proof failed a check ([`DpopError::is_binding_mismatch`]
    /// errors are the token's fault, the rest the proof's).
    Dpop(DpopError),
    /// The proof lacks a valid server nonce: answer with this fresh one.
    UseNonce(String),
    /// More than one credential, or a token in two forms.
    MultipleCredentials,
    /// The Bearer token is not a token68 (400 `invalid_request`, as
    /// [`PresentedError::Malformed`]): found when it was not in the token
    /// cache ([`Token`]).
    MalformedAuthorization,
    /// The token was refused, or could not be checked (Authority down).
    Token(TokenError),
    /// The proof key holds its share of the replay store.
    ReplayShareExceeded,
    /// The replay store could not answer.
    ReplayStoreUnavailable,
    /// The caller's identity is on the revocation list
    /// (`invalid_token`, reason `revoked`).
    Revoked(Revoked),
    /// This node's copy of the shared revocation list is older than its
    /// bound and the configuration says to refuse then
    /// (`gateway.revocation.when_stale: refuse`): the caller presented a
    /// credential that cannot be checked against a current list (503).
    RevocationListStale,
}

/// Which entry of the revocation list refused a caller: its kind and the
/// SHA-256 (hex) of its value, for the log; never the value.
#[derive(Clone, Debug)]
pub struct Revoked {
    pub kind: Kind,
    pub value_sha256: String,
}

/// What the pipeline reports as it goes, for the gateway's metrics. Label
/// values are fixed codes, never client input.
pub trait AuthnEvents: Send + Sync {
    /// A request presented a DPoP proof.
    fn dpop_request(&self);
    /// A DPoP proof was refused with this code.
    fn dpop_proof_rejected(&self, code: &'static str);
    /// A DPoP proof lacked a valid nonce and a fresh one was issued.
    fn dpop_nonce_miss(&self);
    /// A certificate-bound token's certificate did not match
    /// (`thumbprint-mismatch`, `missing-certificate`, `context-missing`).
    fn mtls_mismatch(&self, reason: &'static str);
    /// How long the replay store took to answer.
    fn replay_store_seconds(&self, seconds: f64);
    /// A proof was refused because its key holds its share of the store.
    fn replay_share_refusal(&self);
    /// The replay store failed to answer.
    fn replay_store_error(&self);
    /// A caller was refused by an entry of the revocation list.
    fn revoked(&self, kind: Kind);
}

/// The client certificate of the connection, as far as authentication
/// needs it.
#[derive(Clone, Copy, Debug)]
pub struct PresentedCertificate<'a> {
    /// base64url SHA-256 of the leaf's DER bytes (RFC 8705 `x5t#S256`).
    pub thumbprint: &'a str,
    /// The SPIFFE ID, when the leaf is a valid X.509-SVID.
    pub spiffe_id: Option<&'a str>,
}

/// What the authentication stage needs to know about the request besides
/// its credential.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a NormalizedPath,
    pub query: Option<&'a str>,
    /// The request arrived over TLS.
    pub tls: bool,
    pub client_cert: Option<PresentedCertificate<'a>>,
    /// Whether the matched route requires a DPoP server nonce from a
    /// caller of this tenant.
    pub dpop_nonce_required: &'a (dyn Fn(Option<&str>) -> bool + Sync),
    /// The connection's memo of its last token's cache key ([`KeyMemo`]);
    /// `None`: the key is computed for each request.
    pub token_keys: Option<&'a KeyMemo>,
}

/// Everything authentication uses, built once per configuration snapshot.
/// The caches, the replay store and each Authority's key cache live as long
/// as their settings are unchanged (the gateway carries them over on
/// reload).
pub struct Authenticator {
    /// Every configured Authority (a token's `iss` selects one).
    pub issuers: Issuers,
    pub tokens: Arc<TokenCache>,
    pub dpop_rules: DpopRules,
    pub replay: Arc<dyn ReplayStore>,
    /// Server nonces, when a nonce secret is configured.
    pub nonces: Option<NonceIssuer>,
    /// The gateway's public origin: DPoP `htu` is checked against it, never
    /// the client's `Host` or forwarding headers. `None`: DPoP refused.
    pub public_origin: Option<String>,
    /// The emergency bypass: a bound token whose constraint was not proven
    /// authenticates as [`AuthMethod::Bypass`] instead of being refused.
    pub allow_temporary_bypass: bool,
    /// The revocation list: outlives every snapshot (a reload keeps it).
    pub revocations: Arc<Denylist>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn AuthnEvents>,
}

impl Authenticator {
    /// The caller behind a request's credential, with the identity an
    /// envelope will carry for it. The only way to get an [`Authenticated`].
    pub async fn authenticate(
        &self,
        credential: Presented<'_>,
        request: &RequestFacts<'_>,
    ) -> Result<Authenticated, AuthnError> {
        let (caller, proof) = self.caller(credential, request).await?;
        let mut authenticated = Authenticated::new(caller, request.client_cert.as_ref());
        authenticated.proof = proof;
        let caller = &authenticated.caller;
        // Emergency revocation, on every request: after the token was
        // verified (a cache hit included), before the policy. An empty list
        // in date costs one atomic load.
        if !self.revocations.is_quiet() {
            // A distrusted list (a stale copy, `when_stale: refuse`) lets
            // only anonymous callers through: nothing of theirs can be on it.
            if !matches!(caller, Caller::Anonymous) && self.revocations.is_distrusted() {
                return Err(AuthnError::RevocationListStale);
            }
            let ids = CallerIds {
                caller,
                confirmation: &authenticated.confirmation,
                cert: request.client_cert.as_ref(),
            };
            if let Some(hit) = self.revocations.check(&ids, self.clock.now()) {
                self.events.revoked(hit.kind());
                return Err(AuthnError::Revoked(Revoked {
                    kind: hit.kind(),
                    value_sha256: hit.value_sha256().to_owned(),
                }));
            }
        }
        Ok(authenticated)
    }

    /// The caller behind a request's credential. Bindings are checked every
    /// time, also for tokens found in the cache. A DPoP caller comes with
    /// its [`UnspentProof`]: the proof passed every stateless check, and is
    /// recorded in the replay store only once the route's policy allows the
    /// request ([`Authenticator::spend_proof`]), so refused requests never take
    /// replay entries.
    async fn caller(
        &self,
        credential: Presented<'_>,
        request: &RequestFacts<'_>,
    ) -> Result<(Caller, Option<UnspentProof>), AuthnError> {
        match credential {
            Presented::None => Ok((
                match request.client_cert.as_ref().and_then(|c| c.spiffe_id) {
                    Some(id) => Caller::Spiffe {
                        spiffe_id: id.to_owned(),
                    },
                    _ => Caller::Anonymous,
                },
                None,
            )),
            Presented::Bearer(token) => {
                let claims = self.verify_token(token, request.token_keys).await?;
                let method = match claims.binding() {
                    Binding::Unbound => AuthMethod::Bearer,
                    // docs/design.md §3.3: a DPoP-bound token presented as Bearer.
                    Binding::Jkt(_) => {
                        self.unproven(AuthnError::InvalidToken("dpop_bound_token_as_bearer"))?
                    }
                    Binding::X5tS256(expected) => {
                        let mismatch = match request.client_cert {
                            Some(cert)
                                if bool::from(
                                    cert.thumbprint.as_bytes().ct_eq(expected.as_bytes()),
                                ) =>
                            {
                                None
                            }
                            Some(_) => Some("thumbprint-mismatch"),
                            None if request.tls => Some("missing-certificate"),
                            None => Some("context-missing"),
                        };
                        match mismatch {
                            None => AuthMethod::Mtls,
                            Some(reason) => {
                                self.events.mtls_mismatch(reason);
                                self.unproven(AuthnError::InvalidToken(match reason {
                                    "thumbprint-mismatch" => "certificate_mismatch",
                                    _ => "certificate_missing",
                                }))?
                            }
                        }
                    }
                    Binding::Unenforceable => {
                        return Err(AuthnError::InvalidToken("unenforceable_cnf"))
                    }
                };
                Ok((Caller::Token { claims, method }, None))
            }
            Presented::BearerWithDpopHeader(token) => {
                let claims = self.verify_token(token, request.token_keys).await?;
                Err(match claims.binding() {
                    Binding::Jkt(_) => AuthnError::InvalidToken("dpop_bound_token_as_bearer"),
                    _ => AuthnError::MultipleCredentials,
                })
            }
            Presented::Dpop { token, proof } => {
                self.events.dpop_request();
                let claims = self.verify_token(token.into(), request.token_keys).await?;
                let Some(origin) = &self.public_origin else {
                    return Err(AuthnError::InvalidProof("dpop_not_configured"));
                };
                // htu is checked against the configured origin, never the
                // client's Host or forwarding headers.
                let target = match request.query {
                    Some(q) => format!("{origin}{}?{q}", request.path.as_str()),
                    None => format!("{origin}{}", request.path.as_str()),
                };
                let nonce: Option<&dyn NonceCheck> =
                    if (request.dpop_nonce_required)(claims.tenant()) {
                        // `dpop_parts` refuses a configuration that requires
                        // nonces without a secret.
                        self.nonces.as_ref().map(|n| n as &dyn NonceCheck)
                    } else {
                        None
                    };
                let now = self.clock.now();
                let input = ProofInput {
                    method: request.method,
                    target_uri: &target,
                    proof,
                    access_token: token,
                    // `ath` is SHA-256 (RFC 9449 §4.2); the cache key is
                    // another hash, so check_proof computes it.
                    access_token_hash: None,
                    binding: claims.binding(),
                    nonce,
                };
                let checked = match check_proof(&input, &self.dpop_rules, now) {
                    Ok(checked) => checked,
                    Err(e) => {
                        self.events.dpop_proof_rejected(e.code());
                        if let (true, Some(issuer)) = (e.wants_nonce(), &self.nonces) {
                            self.events.dpop_nonce_miss();
                            return Err(AuthnError::UseNonce(issuer.issue(now)));
                        }
                        return Err(AuthnError::Dpop(e));
                    }
                };
                let Binding::Jkt(jkt) = claims.binding() else {
                    // check_proof accepts only jkt-bound tokens.
                    return Err(AuthnError::InvalidToken("unenforceable_cnf"));
                };
                let unspent = UnspentProof {
                    key: checked.replay_key(),
                    owner: jkt.clone(),
                };
                Ok((
                    Caller::Token {
                        claims,
                        method: AuthMethod::Dpop,
                    },
                    Some(unspent),
                ))
            }
        }
    }

    /// Records a DPoP proof as used. Called once the policy allowed the
    /// request: a proof seen before is refused as a replay, a proof key
    /// holding its share of the store gets 429, a store that cannot answer
    /// 503.
    pub async fn spend_proof(&self, proof: UnspentProof) -> Result<(), AuthnError> {
        let started = std::time::Instant::now();
        let fresh = self
            .replay
            .insert_once_for(proof.key, &proof.owner, self.dpop_rules.replay_ttl())
            .await;
        self.events
            .replay_store_seconds(started.elapsed().as_secs_f64());
        match fresh {
            Ok(Admission::Checked(Fresh::Inserted)) => Ok(()),
            Ok(Admission::Checked(Fresh::Replayed)) => {
                self.events.dpop_proof_rejected("replayed");
                Err(AuthnError::InvalidProof("replayed"))
            }
            Ok(Admission::ShareExceeded) => {
                self.events.replay_share_refusal();
                Err(AuthnError::ReplayShareExceeded)
            }
            Err(e) => {
                self.events.replay_store_error();
                tracing::warn!(error = %e, "dpop replay store unavailable; refusing with 503");
                Err(AuthnError::ReplayStoreUnavailable)
            }
        }
    }

    /// A fresh server nonce for a successful DPoP response on a route that
    /// requires nonces.
    pub fn fresh_nonce(&self) -> Option<String> {
        self.nonces.as_ref().map(|n| n.issue(self.clock.now()))
    }

    /// A JWS is verified with the keys of the Authority its `iss` names
    /// (verdicts cached by the token's hash), an opaque token by the
    /// introspecting Authority; then the Authority's claims are merged in
    /// (effective claims) and the tenant's issuer binding is checked.
    /// A Bearer token's text is checked (token68) only when the cache does
    /// not know it ([`Token`]).
    async fn verify_token(
        &self,
        token: Token<'_>,
        keys: Option<&KeyMemo>,
    ) -> Result<Arc<TokenClaims>, AuthnError> {
        let malformed = |_: PresentedError| AuthnError::MalformedAuthorization;
        let first = self.issuers.first();
        let max_len = first.rules.max_token_len();
        if token.len() > max_len {
            token.text().map_err(malformed)?;
            return Err(AuthnError::Token(TokenError::Jose(
                stella_jose::JoseError::TooLong { max: max_len },
            )));
        }
        let now = self.clock.now();
        let key = match keys {
            Some(memo) => memo.key_of(token.as_bytes()),
            None => TokenKey::of_bytes(token.as_bytes()),
        };
        let cached = self.tokens.get(&key, now);
        stella_core::trace::note(|| {
            opentelemetry::KeyValue::new(
                "stella.auth.cache",
                if cached.is_some() { "hit" } else { "miss" },
            )
        });
        let (claims, issuer) = match cached {
            Some(claims) => {
                let issuer = match self.issuers.list() {
                    [only] => only,
                    _ => self
                        .issuers
                        .by_issuer(claims.issuer())
                        .ok_or(AuthnError::Token(TokenError::UnknownIssuer))?,
                };
                (claims, issuer)
            }
            None => {
                // Not a token verified before: only now is a kilobyte of
                // text scanned for token68 ([`Token`]).
                let token = token.text().map_err(malformed)?;
                self.verify_uncached(token, key, now)
                    .await
                    .map_err(AuthnError::Token)?
            }
        };
        let claims = match &issuer.claims {
            Some(source) => source.effective(claims).await.map_err(AuthnError::Token)?,
            None => claims,
        };
        self.issuers
            .check_tenant(&claims)
            .map_err(AuthnError::Token)?;
        Ok(claims)
    }

    /// A token the cache does not know: introspected when it is opaque and
    /// an Authority introspects, else verified as a JWS; cached either way.
    async fn verify_uncached(
        &self,
        token: &str,
        key: TokenKey,
        now: u64,
    ) -> Result<(Arc<TokenClaims>, &Arc<crate::issuers::Issuer>), TokenError> {
        match self.issuers.for_opaque() {
            Some(issuer) if !looks_like_jws(token) => {
                let introspection =
                    issuer
                        .introspection
                        .as_ref()
                        .ok_or(TokenError::Unavailable {
                            what: "introspection",
                        })?;
                Ok((introspection.check(token, &key).await?, issuer))
            }
            _ => {
                let issuer = self.issuers.for_jws(token)?;
                let claims =
                    verify_and_cache(token, key, &issuer.rules, &issuer.jwks, &self.tokens, now)
                        .await?;
                Ok((claims, issuer))
            }
        }
    }

    /// A bound token whose constraint was not proven: refused, unless the
    /// emergency bypass is on (the policy then admits it only where a route
    /// or tenant allows bypass).
    fn unproven(&self, refusal: AuthnError) -> Result<AuthMethod, AuthnError> {
        if self.allow_temporary_bypass {
            Ok(AuthMethod::Bypass)
        } else {
            Err(refusal)
        }
    }
}

/// What the revocation list can name of an authenticated caller: its
/// token's claims, what the credential is bound to, and the certificate on
/// the connection.
struct CallerIds<'a> {
    caller: &'a Caller,
    confirmation: &'a Confirmation,
    cert: Option<&'a PresentedCertificate<'a>>,
}

impl Identifiers for CallerIds<'_> {
    fn issuer(&self) -> Option<&str> {
        self.caller.claims().map(TokenClaims::issuer)
    }

    fn values(&self, kind: Kind) -> [Option<&str>; 2] {
        let claims = self.caller.claims();
        let confirmation = self.confirmation;
        match kind {
            Kind::Jti => [claims.and_then(TokenClaims::jti), None],
            Kind::Sub => [claims.and_then(TokenClaims::subject), None],
            Kind::ClientId => [claims.and_then(TokenClaims::client_id), None],
            Kind::Tenant => [claims.and_then(TokenClaims::tenant), None],
            Kind::Sid => [
                claims.and_then(|c| {
                    c.extra
                        .iter()
                        .find(|(name, _)| &**name == "sid")
                        .and_then(|(_, v)| v.as_str())
                }),
                None,
            ],
            Kind::Jkt => [confirmation.jkt.as_deref(), None],
            // The token's binding, and the certificate the connection
            // presented (an unbound token over mTLS, a SPIFFE caller).
            Kind::X5tS256 => [
                confirmation.x5t_s256.as_deref(),
                self.cert.map(|c| c.thumbprint),
            ],
            Kind::SpiffeId => [
                confirmation.spiffe_id.as_deref(),
                self.cert.and_then(|c| c.spiffe_id),
            ],
        }
    }
}

/// A DPoP proof that passed every stateless check but is not yet recorded
/// in the replay store; [`Authenticator::spend_proof`] records it.
#[must_use = "a checked proof must be spent before the request is forwarded"]
pub struct UnspentProof {
    key: [u8; 32],
    /// The proof key's thumbprint: whose share of the store it takes.
    owner: String,
}

impl std::fmt::Debug for UnspentProof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnspentProof")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}
