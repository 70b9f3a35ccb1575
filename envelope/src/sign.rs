//! Envelope signing: the gateway's side.

use crate::claims::Identity;
use crate::encoding::b64url_encode;
use crate::format::{signing_input, EnvelopeHeaders, Payload, VERSION};
use crate::keys::{Key, KeyError};

/// The request an envelope is issued for.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    /// The service the request is forwarded to (the envelope's `aud`).
    pub audience: &'a str,
    /// The request method as forwarded.
    pub method: &'a str,
    /// The normalized path as forwarded, without the query.
    pub path: &'a str,
    pub request_id: &'a str,
}

/// Signs envelopes with one active key.
#[derive(Debug)]
pub struct Signer {
    key: Key,
    issuer: String,
    lifetime_secs: u64,
}

impl Signer {
    /// `lifetime_secs` is how long an envelope stays valid after `iat`.
    pub fn new(
        key: Key,
        issuer: impl Into<String>,
        lifetime_secs: u64,
    ) -> Result<Signer, KeyError> {
        if !key.can_sign() {
            return Err(KeyError::CannotSign(key.kid().to_string()));
        }
        Ok(Signer {
            key,
            issuer: issuer.into(),
            lifetime_secs: lifetime_secs.max(1),
        })
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Issues the envelope headers for `identity` on `target` at `now`
    /// (unix seconds).
    pub fn sign(&self, identity: &Identity, target: &Target<'_>, now: u64) -> EnvelopeHeaders {
        let exp = now.saturating_add(self.lifetime_secs);
        let payload = Payload {
            ver: VERSION,
            iss: self.issuer.clone(),
            aud: target.audience.to_owned(),
            sub: identity.subject.clone(),
            tenant: identity.tenant.clone(),
            client_id: identity.client_id.clone(),
            scopes: identity.scopes.clone(),
            roles: identity.roles.clone(),
            auth_method: identity.auth_method,
            cnf: identity.confirmation.clone(),
            method: target.method.to_owned(),
            path: target.path.to_owned(),
            request_id: target.request_id.to_owned(),
            iat: now,
            exp,
        };
        // Serializing a struct of strings, integers and enums cannot fail.
        let json = serde_json::to_vec(&payload).unwrap_or_default();
        seal(&self.key, &b64url_encode(json), now, exp)
    }
}

/// Signs an already encoded payload. Used by [`Signer::sign`] and by the
/// test-vector generator, which needs payloads a well-behaved signer would
/// never write.
pub(crate) fn seal(key: &Key, envelope: &str, iat: u64, exp: u64) -> EnvelopeHeaders {
    let alg = key.alg().as_str();
    let (iat, exp) = (iat.to_string(), exp.to_string());
    let input = signing_input(alg, key.kid().as_str(), &iat, &exp, envelope);
    // `Signer::new` refuses keys that cannot sign.
    let signature = key.sign(&input).unwrap_or_default();
    EnvelopeHeaders {
        envelope: envelope.to_owned(),
        signature: b64url_encode(signature),
        alg: alg.to_owned(),
        kid: key.kid().to_string(),
        iat,
        exp,
    }
}
