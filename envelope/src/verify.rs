//! Envelope verification: the service's side. A pure function of the
//! received headers, the request, the keyring and `now`.

use crate::claims::Identity;
use crate::encoding::{b64url_decode, check_json_object, parse_canonical_u64, DecodeError};
use crate::error::EnvelopeError;
use crate::format::{signing_input, EnvelopeHeaders, Payload, VERSION};
use crate::keys::{Alg, KeyId, Keyring};

/// Default allowance for clock differences between gateway and service.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 30;
/// Default upper bound on `exp - iat`.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 300;

/// What a service accepts besides the keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierSettings {
    /// This service's name; the envelope's `aud` must equal it.
    pub audience: String,
    /// The gateway id expected in `iss`; any issuer when `None`.
    pub issuer: Option<String>,
    pub clock_skew_secs: u64,
    pub max_lifetime_secs: u64,
}

impl VerifierSettings {
    pub fn new(audience: impl Into<String>) -> VerifierSettings {
        VerifierSettings {
            audience: audience.into(),
            issuer: None,
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

/// The request the service actually received.
#[derive(Clone, Copy, Debug)]
pub struct RequestBinding<'a> {
    pub method: &'a str,
    /// The request path without the query.
    pub path: &'a str,
}

/// An envelope that passed every check. Only [`Verifier::verify`] makes one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedEnvelope {
    identity: Identity,
    issuer: String,
    audience: String,
    request_id: String,
    kid: KeyId,
    iat: u64,
    exp: u64,
}

impl VerifiedEnvelope {
    pub fn identity(&self) -> &Identity {
        &self.identity
    }
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    pub fn audience(&self) -> &str {
        &self.audience
    }
    pub fn request_id(&self) -> &str {
        &self.request_id
    }
    pub fn kid(&self) -> &KeyId {
        &self.kid
    }
    pub fn issued_at(&self) -> u64 {
        self.iat
    }
    pub fn expires_at(&self) -> u64 {
        self.exp
    }
}

/// Verifies envelopes against a keyring of accepted keys.
#[derive(Debug)]
pub struct Verifier {
    keyring: Keyring,
    settings: VerifierSettings,
}

impl Verifier {
    pub fn new(keyring: Keyring, settings: VerifierSettings) -> Verifier {
        Verifier { keyring, settings }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn settings(&self) -> &VerifierSettings {
        &self.settings
    }

    /// Runs every check of SPEC.md section 5, in its order, at `now`
    /// (unix seconds).
    pub fn verify(
        &self,
        headers: &EnvelopeHeaders,
        request: &RequestBinding<'_>,
        now: u64,
    ) -> Result<VerifiedEnvelope, EnvelopeError> {
        let alg = Alg::from_header(&headers.alg).ok_or(EnvelopeError::UnsupportedAlg)?;
        let key = self
            .keyring
            .get(&headers.kid)
            .ok_or(EnvelopeError::UnknownKid)?;
        if key.alg() != alg {
            return Err(EnvelopeError::AlgNotAllowedForKey {
                kid: key.kid().to_string(),
                header: alg.as_str(),
                key: key.alg().as_str(),
            });
        }
        let iat =
            parse_canonical_u64(&headers.iat).map_err(|_| EnvelopeError::MalformedTimestamp)?;
        let exp =
            parse_canonical_u64(&headers.exp).map_err(|_| EnvelopeError::MalformedTimestamp)?;
        let signature =
            b64url_decode(&headers.signature).map_err(|_| EnvelopeError::MalformedSignature)?;
        let input = signing_input(
            &headers.alg,
            &headers.kid,
            &headers.iat,
            &headers.exp,
            &headers.envelope,
        );
        if !key.verify(&input, &signature) {
            return Err(EnvelopeError::BadSignature {
                kid: key.kid().to_string(),
            });
        }

        let payload = decode_payload(&headers.envelope)?;
        if payload.ver != VERSION {
            return Err(EnvelopeError::UnsupportedVersion(payload.ver));
        }
        if payload.iat != iat || payload.exp != exp {
            return Err(EnvelopeError::TimestampMismatch);
        }
        let skew = self.settings.clock_skew_secs;
        let lifetime = exp.saturating_sub(iat);
        if exp <= iat || lifetime > self.settings.max_lifetime_secs {
            return Err(EnvelopeError::BadLifetime {
                lifetime,
                max: self.settings.max_lifetime_secs,
            });
        }
        if now > exp.saturating_add(skew) {
            return Err(EnvelopeError::Expired(now - exp));
        }
        if iat > now.saturating_add(skew) {
            return Err(EnvelopeError::IssuedInFuture(iat - now));
        }
        if let Some(issuer) = &self.settings.issuer {
            if &payload.iss != issuer {
                return Err(EnvelopeError::IssuerMismatch);
            }
        }
        if payload.aud != self.settings.audience {
            return Err(EnvelopeError::AudienceMismatch {
                expected: self.settings.audience.clone(),
                seen: payload.aud,
            });
        }
        if payload.method != request.method {
            return Err(EnvelopeError::RequestMismatch("method"));
        }
        if payload.path != request.path {
            return Err(EnvelopeError::RequestMismatch("path"));
        }
        Ok(VerifiedEnvelope {
            identity: Identity {
                subject: payload.sub,
                tenant: payload.tenant,
                client_id: payload.client_id,
                scopes: payload.scopes,
                roles: payload.roles,
                auth_method: payload.auth_method,
                confirmation: payload.cnf,
            },
            issuer: payload.iss,
            audience: payload.aud,
            request_id: payload.request_id,
            kid: key.kid().clone(),
            iat,
            exp,
        })
    }
}

fn decode_payload(envelope: &str) -> Result<Payload, EnvelopeError> {
    let json = b64url_decode(envelope).map_err(|_| EnvelopeError::MalformedPayload("encoding"))?;
    check_json_object(&json).map_err(|e| {
        EnvelopeError::MalformedPayload(match e {
            DecodeError::DuplicateMember => "duplicate member",
            _ => "json",
        })
    })?;
    serde_json::from_slice(&json).map_err(|_| EnvelopeError::MalformedPayload("members"))
}
