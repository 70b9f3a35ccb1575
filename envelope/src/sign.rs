//! Envelope signing: the gateway's side.

use crate::claims::{AuthMethod, Confirmation, Identity};
use crate::encoding::b64url_encode;
#[cfg(doc)]
use crate::format::Payload;
use crate::format::{signing_input, EnvelopeHeaders, VERSION};
use crate::keys::{Key, KeyError};
use serde::Serialize;

/// Why an envelope could not be issued. The caller must not forward the
/// request without one: an empty signature is never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("envelope key {kid} cannot sign")]
    KeyCannotSign { kid: String },
    #[error("envelope payload could not be encoded")]
    Encoding,
    #[error("service {service} has no transaction token key")]
    NoTxnTokenKey { service: String },
}

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
        if key.alg() == crate::keys::Alg::Es256 {
            return Err(KeyError::NotForEnvelope(key.kid().to_string()));
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
    /// (unix seconds). An error means no envelope: the request must not be
    /// forwarded.
    pub fn sign(
        &self,
        identity: &Identity,
        target: &Target<'_>,
        now: u64,
    ) -> Result<EnvelopeHeaders, SignError> {
        let exp = now.saturating_add(self.lifetime_secs);
        let payload = PayloadRef::new(&self.issuer, identity, target, now, exp);
        let json = serde_json::to_vec(&payload).map_err(|_| SignError::Encoding)?;
        seal(&self.key, b64url_encode(json), now, exp)
    }
}

/// [`Payload`] as the signer writes it: the same fields in the same order,
/// borrowed from the identity and the request instead of copied (a test
/// checks that both write the same bytes).
#[derive(Serialize)]
struct PayloadRef<'a> {
    ver: u32,
    iss: &'a str,
    aud: &'a str,
    sub: Option<&'a str>,
    tenant: Option<&'a str>,
    client_id: Option<&'a str>,
    scopes: &'a [String],
    roles: &'a [String],
    auth_method: AuthMethod,
    cnf: &'a Confirmation,
    method: &'a str,
    path: &'a str,
    request_id: &'a str,
    iat: u64,
    exp: u64,
}

impl<'a> PayloadRef<'a> {
    fn new(
        issuer: &'a str,
        identity: &'a Identity,
        target: &Target<'a>,
        iat: u64,
        exp: u64,
    ) -> PayloadRef<'a> {
        PayloadRef {
            ver: VERSION,
            iss: issuer,
            aud: target.audience,
            sub: identity.subject.as_deref(),
            tenant: identity.tenant.as_deref(),
            client_id: identity.client_id.as_deref(),
            scopes: &identity.scopes,
            roles: &identity.roles,
            auth_method: identity.auth_method,
            cnf: &identity.confirmation,
            method: target.method,
            path: target.path,
            request_id: target.request_id,
            iat,
            exp,
        }
    }
}

/// Signs an already encoded payload. Used by [`Signer::sign`] and by the
/// test-vector generator, which needs payloads a well-behaved signer would
/// never write.
pub(crate) fn seal(
    key: &Key,
    envelope: String,
    iat: u64,
    exp: u64,
) -> Result<EnvelopeHeaders, SignError> {
    let alg = key.alg().as_str();
    let (iat, exp) = (iat.to_string(), exp.to_string());
    let input = signing_input(alg, key.kid().as_str(), &iat, &exp, &envelope);
    // `Signer::new` refuses keys that cannot sign; should one get here
    // anyway, the answer is an error, never an empty signature.
    let signature = key.sign(&input).ok_or_else(|| SignError::KeyCannotSign {
        kid: key.kid().to_string(),
    })?;
    Ok(EnvelopeHeaders {
        envelope,
        signature: b64url_encode(signature),
        alg: alg.to_owned(),
        kid: key.kid().to_string(),
        iat,
        exp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::KeyId;

    #[test]
    fn a_key_that_cannot_sign_is_an_error_never_an_empty_signature() {
        let public = || {
            Key::parse(
                KeyId::new("pub-1").unwrap(),
                "ed25519-public:11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
            )
            .unwrap()
        };
        assert!(Signer::new(public(), "gw", 60).is_err());
        // Reachable only here: a signer around a public key.
        let signer = Signer {
            key: public(),
            issuer: "gw".into(),
            lifetime_secs: 60,
        };
        let target = Target {
            audience: "echo",
            method: "GET",
            path: "/",
            request_id: "r-1",
        };
        assert_eq!(
            signer.sign(&Identity::anonymous(), &target, 1_800_000_000),
            Err(SignError::KeyCannotSign {
                kid: "pub-1".into()
            })
        );
    }

    #[test]
    fn an_es256_key_never_signs_an_envelope() {
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let key = Key::p256_from_pkcs8(KeyId::new("es").unwrap(), pkcs8.as_ref()).unwrap();
        assert_eq!(
            Signer::new(key, "gw", 60).unwrap_err(),
            KeyError::NotForEnvelope("es".into())
        );
    }

    #[test]
    fn the_borrowed_payload_writes_the_same_bytes_as_the_payload_document() {
        let full = Identity {
            subject: Some("alice \"quoted\" \u{e9}".into()),
            tenant: Some("acme".into()),
            client_id: Some("svc-a".into()),
            scopes: vec!["echo.read".into(), "echo.write".into()],
            roles: vec!["admin".into()],
            auth_method: AuthMethod::Dpop,
            confirmation: Confirmation {
                jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
                x5t_s256: Some("x5t".into()),
                spiffe_id: Some("spiffe://td/w".into()),
            },
        };
        let target = Target {
            audience: "echo",
            method: "POST",
            path: "/a/b",
            request_id: "r-1",
        };
        for identity in [Identity::anonymous(), full] {
            let borrowed = PayloadRef::new("gw", &identity, &target, 1_800_000_000, 1_800_000_060);
            let owned = crate::format::Payload {
                ver: VERSION,
                iss: "gw".into(),
                aud: target.audience.into(),
                sub: identity.subject.clone(),
                tenant: identity.tenant.clone(),
                client_id: identity.client_id.clone(),
                scopes: identity.scopes.clone(),
                roles: identity.roles.clone(),
                auth_method: identity.auth_method,
                cnf: identity.confirmation.clone(),
                method: target.method.into(),
                path: target.path.into(),
                request_id: target.request_id.into(),
                iat: 1_800_000_000,
                exp: 1_800_000_060,
            };
            assert_eq!(
                serde_json::to_string(&borrowed).unwrap(),
                serde_json::to_string(&owned).unwrap()
            );
        }
    }
}
