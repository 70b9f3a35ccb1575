//! Transaction Tokens (draft-ietf-oauth-transaction-tokens): the caller's
//! identity as one compact JWS in the `Txn-Token` header, for services that
//! verify it with a generic JWT library and the gateway's published keys
//! rather than with this crate (SPEC.md section 9).
//!
//! It carries the identity the envelope carries, for the same lifetime,
//! bound to the same request (method and path, in `rctx`), signed with the
//! service's envelope key. EdDSA or ES256 keys only: a generic verifier holds
//! public keys fetched from a JWKS, never a shared secret.

use crate::claims::{AuthMethod, Identity};
use crate::keys::{Alg, Key, KeyError};
use crate::sign::{SignError, Target};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Serialize, Serializer};
use std::fmt;

/// The request header that carries the token (lowercase, as forwarded).
pub const HEADER: &str = "txn-token";
/// The JWS `typ` header parameter the draft requires.
pub const TYP: &str = "txntoken+jwt";

/// The request a token is issued for: the envelope's [`Target`] and what
/// the gateway decided about it.
#[derive(Clone, Copy, Debug)]
pub struct TxnRequest<'a> {
    /// Audience (the service), method, path without the query, request id.
    pub target: Target<'a>,
    /// The id of the route the request matched.
    pub route: &'a str,
    /// Why the policy let it through: `requirements_met`, `anonymous`,
    /// `no_policy` or `bypass`.
    pub decision: &'a str,
    /// The client's address as the gateway saw it (`None`: not an IP
    /// connection).
    pub client_ip: Option<&'a str>,
}

/// Signs transaction tokens with one EdDSA or ES256 key.
#[derive(Debug)]
pub struct TxnTokenSigner {
    key: Key,
    /// The JWS header, encoded once: `{"alg":...,"kid":...,"typ":...}`.
    header: String,
    /// The gateway's id: `iss` and `req_wl`.
    issuer: String,
    lifetime_secs: u64,
}

impl TxnTokenSigner {
    /// `lifetime_secs` is `exp - iat`, the envelope lifetime. Refuses keys
    /// that cannot sign and HS256 keys.
    pub fn new(
        key: Key,
        issuer: impl Into<String>,
        lifetime_secs: u64,
    ) -> Result<TxnTokenSigner, KeyError> {
        if !key.can_sign() {
            return Err(KeyError::CannotSign(key.kid().to_string()));
        }
        if key.alg() == Alg::Hs256 {
            return Err(KeyError::NotForTxnToken(
                key.kid().to_string(),
                key.alg().as_str(),
            ));
        }
        let header = serde_json::json!({
            "alg": key.alg().as_str(),
            "kid": key.kid().as_str(),
            "typ": TYP,
        });
        Ok(TxnTokenSigner {
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            key,
            issuer: issuer.into(),
            lifetime_secs: lifetime_secs.max(1),
        })
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// The compact JWS for `identity` on `request` at `now` (unix seconds).
    /// Two allocations: the claims' JSON and the token. An error means no
    /// token: the request must not be forwarded.
    pub fn sign(
        &self,
        identity: &Identity,
        request: &TxnRequest<'_>,
        now: u64,
    ) -> Result<String, SignError> {
        let claims = Claims::new(&self.issuer, identity, request, now, self.lifetime_secs);
        let json = serde_json::to_vec(&claims).map_err(|_| SignError::Encoding)?;
        let mut token = String::with_capacity(
            self.header.len() + 2 + json.len().div_ceil(3) * 4 + SIGNATURE_B64_LEN,
        );
        token.push_str(&self.header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&json, &mut token);
        // `new` accepts only Ed25519 and P-256 private keys; should another
        // get here anyway, the answer is an error, never an unsigned token.
        let signature =
            self.key
                .sign_asymmetric(token.as_bytes())
                .ok_or_else(|| SignError::KeyCannotSign {
                    kid: self.key.kid().to_string(),
                })?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

/// An Ed25519 or fixed-size ES256 signature (64 bytes) in unpadded base64url.
const SIGNATURE_B64_LEN: usize = 86;

/// The claims, borrowed from the identity and the request. Optional
/// members are left out rather than written as `null` (JWT libraries check
/// the types of the claims they know, `sub` among them).
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: u64,
    exp: u64,
    aud: &'a str,
    txn: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    scope: SpaceSeparated<'a>,
    req_wl: &'a str,
    tctx: Tctx<'a>,
    rctx: Rctx<'a>,
}

/// What the gateway decided: it holds for the whole call chain.
#[derive(Serialize)]
struct Tctx<'a> {
    route: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tenant: Option<&'a str>,
    roles: &'a [String],
    decision: &'a str,
}

/// The request as the gateway received and forwarded it.
#[derive(Serialize)]
struct Rctx<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    req_ip: Option<&'a str>,
    authn: AuthMethod,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Cnf::is_empty")]
    cnf: Cnf<'a>,
    req_method: &'a str,
    req_path: &'a str,
}

/// The credential's binding, the members that apply only.
#[derive(Serialize)]
struct Cnf<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    jkt: Option<&'a str>,
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    x5t_s256: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spiffe_id: Option<&'a str>,
}

impl Cnf<'_> {
    fn is_empty(&self) -> bool {
        self.jkt.is_none() && self.x5t_s256.is_none() && self.spiffe_id.is_none()
    }
}

/// Scopes as one space-separated string (RFC 8693 `scope`), written
/// straight into the JSON without joining them first.
struct SpaceSeparated<'a>(&'a [String]);

impl fmt::Display for SpaceSeparated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(scope)?;
        }
        Ok(())
    }
}

impl Serialize for SpaceSeparated<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'a> Claims<'a> {
    fn new(
        issuer: &'a str,
        identity: &'a Identity,
        request: &TxnRequest<'a>,
        now: u64,
        lifetime_secs: u64,
    ) -> Claims<'a> {
        let target = &request.target;
        let cnf = &identity.confirmation;
        Claims {
            iss: issuer,
            iat: now,
            exp: now.saturating_add(lifetime_secs),
            aud: target.audience,
            txn: target.request_id,
            sub: identity.subject.as_deref(),
            scope: SpaceSeparated(&identity.scopes),
            req_wl: issuer,
            tctx: Tctx {
                route: request.route,
                tenant: identity.tenant.as_deref(),
                roles: &identity.roles,
                decision: request.decision,
            },
            rctx: Rctx {
                req_ip: request.client_ip,
                authn: identity.auth_method,
                client_id: identity.client_id.as_deref(),
                cnf: Cnf {
                    jkt: cnf.jkt.as_deref(),
                    x5t_s256: cnf.x5t_s256.as_deref(),
                    spiffe_id: cnf.spiffe_id.as_deref(),
                },
                req_method: target.method,
                req_path: target.path,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claims::Confirmation;
    use crate::encoding::b64url_decode;
    use crate::keys::KeyId;
    use serde_json::{json, Value};

    const NOW: u64 = 1_800_000_000;

    fn ed_key(kid: &str) -> Key {
        Key::ed25519_from_seed(KeyId::new(kid).unwrap(), [7; 32]).unwrap()
    }

    fn signer() -> TxnTokenSigner {
        TxnTokenSigner::new(ed_key("txn-1"), "gw-test", 60).unwrap()
    }

    fn caller() -> Identity {
        Identity {
            subject: Some("alice \"quoted\" \u{e9}".into()),
            tenant: Some("acme".into()),
            client_id: Some("svc-a".into()),
            scopes: vec!["echo.read".into(), "echo.write".into()],
            roles: vec!["admin".into()],
            auth_method: AuthMethod::Dpop,
            confirmation: Confirmation {
                jkt: Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into()),
                x5t_s256: None,
                spiffe_id: None,
            },
        }
    }

    const REQUEST: TxnRequest<'static> = TxnRequest {
        target: Target {
            audience: "orders",
            method: "POST",
            path: "/orders/7",
            request_id: "a1b2c3d4-2a",
        },
        route: "orders-write",
        decision: "requirements_met",
        client_ip: Some("192.0.2.7"),
    };

    /// The three parts of a compact JWS: header and claims as JSON, and
    /// whether the signature verifies over `header.claims` with `public`.
    fn open(token: &str, public: &[u8]) -> (Value, Value, bool) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let json = |part: &str| serde_json::from_slice(&b64url_decode(part).unwrap()).unwrap();
        let signature = b64url_decode(parts[2]).unwrap();
        let input = &token[..parts[0].len() + 1 + parts[1].len()];
        let valid = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(input.as_bytes(), &signature)
            .is_ok();
        (json(parts[0]), json(parts[1]), valid)
    }

    fn public_of(key: &Key) -> Vec<u8> {
        let spec = key.public_spec();
        b64url_decode(spec.strip_prefix("ed25519-public:").unwrap()).unwrap()
    }

    #[test]
    fn a_token_has_the_draft_header_and_verifies_with_the_public_key_only() {
        let token = signer().sign(&caller(), &REQUEST, NOW).unwrap();
        let (header, _, valid) = open(&token, &public_of(&ed_key("txn-1")));
        assert!(valid, "signature does not verify");
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "kid": "txn-1", "typ": "txntoken+jwt"})
        );
        // Another key's public half does not verify it.
        let other = Key::ed25519_from_seed(KeyId::new("x").unwrap(), [8; 32]).unwrap();
        assert!(!open(&token, &public_of(&other)).2);
    }

    #[test]
    fn the_claims_carry_the_identity_the_decision_and_the_request_binding() {
        let token = signer().sign(&caller(), &REQUEST, NOW).unwrap();
        let (_, claims, _) = open(&token, &public_of(&ed_key("txn-1")));
        assert_eq!(
            claims,
            json!({
                "iss": "gw-test",
                "iat": NOW,
                "exp": NOW + 60,
                "aud": "orders",
                "txn": "a1b2c3d4-2a",
                "sub": "alice \"quoted\" \u{e9}",
                "scope": "echo.read echo.write",
                "req_wl": "gw-test",
                "tctx": {
                    "route": "orders-write",
                    "tenant": "acme",
                    "roles": ["admin"],
                    "decision": "requirements_met",
                },
                "rctx": {
                    "req_ip": "192.0.2.7",
                    "authn": "dpop",
                    "client_id": "svc-a",
                    "cnf": {"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
                    "req_method": "POST",
                    "req_path": "/orders/7",
                },
            })
        );
    }

    #[test]
    fn an_anonymous_caller_has_no_sub_and_unset_members_are_left_out_never_null() {
        let request = TxnRequest {
            client_ip: None,
            decision: "anonymous",
            ..REQUEST
        };
        let token = signer()
            .sign(&Identity::anonymous(), &request, NOW)
            .unwrap();
        let (_, claims, valid) = open(&token, &public_of(&ed_key("txn-1")));
        assert!(valid);
        assert!(claims.get("sub").is_none(), "{claims}");
        assert_eq!(claims["scope"], "");
        assert_eq!(
            claims["tctx"],
            json!({"route": "orders-write", "roles": [], "decision": "anonymous"})
        );
        assert_eq!(
            claims["rctx"],
            json!({"authn": "anonymous", "req_method": "POST", "req_path": "/orders/7"})
        );
        let text = b64url_decode(token.split('.').nth(1).unwrap()).unwrap();
        assert!(
            !String::from_utf8(text).unwrap().contains("null"),
            "a null was written: {claims}"
        );
    }

    #[test]
    fn the_lifetime_is_the_envelope_lifetime_and_saturates() {
        let signer = TxnTokenSigner::new(ed_key("txn-1"), "gw", 300).unwrap();
        let public = public_of(&ed_key("txn-1"));
        let (_, claims, _) = open(&signer.sign(&caller(), &REQUEST, NOW).unwrap(), &public);
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            300
        );
        let late = signer.sign(&caller(), &REQUEST, u64::MAX - 1).unwrap();
        assert_eq!(open(&late, &public).1["exp"], json!(u64::MAX));
    }

    #[test]
    fn an_es256_key_signs_a_token_that_verifies_with_its_published_point() {
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let key = Key::p256_from_pkcs8(KeyId::new("es-1").unwrap(), pkcs8.as_ref()).unwrap();
        let jwk = key.public_jwk().unwrap();
        assert_eq!(
            (&jwk["kty"], &jwk["crv"], &jwk["alg"]),
            (&json!("EC"), &json!("P-256"), &json!("ES256"))
        );
        let point = [
            &[4u8][..],
            &b64url_decode(jwk["x"].as_str().unwrap()).unwrap(),
            &b64url_decode(jwk["y"].as_str().unwrap()).unwrap(),
        ]
        .concat();
        let token = TxnTokenSigner::new(key, "gw", 60)
            .unwrap()
            .sign(&caller(), &REQUEST, NOW)
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let header: Value = serde_json::from_slice(&b64url_decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            json!({"alg": "ES256", "kid": "es-1", "typ": "txntoken+jwt"})
        );
        let signature = b64url_decode(parts[2]).unwrap();
        assert_eq!(signature.len(), 64, "r || s, as JWS requires");
        let input = &token[..parts[0].len() + 1 + parts[1].len()];
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(input.as_bytes(), &signature)
            .expect("verifies with the published x and y");
    }

    #[test]
    fn hs256_and_public_keys_cannot_sign_transaction_tokens() {
        let hs = Key::hmac(KeyId::new("hs-1").unwrap(), &[1; 32]).unwrap();
        assert_eq!(
            TxnTokenSigner::new(hs, "gw", 60).unwrap_err(),
            KeyError::NotForTxnToken("hs-1".into(), "HS256")
        );
        let public = Key::parse(KeyId::new("p").unwrap(), &ed_key("p").public_spec()).unwrap();
        assert_eq!(
            TxnTokenSigner::new(public, "gw", 60).unwrap_err(),
            KeyError::CannotSign("p".into())
        );
    }

    #[test]
    fn the_token_is_three_canonical_base64url_parts_and_its_capacity_is_enough() {
        let signer = signer();
        let token = signer.sign(&caller(), &REQUEST, NOW).unwrap();
        assert!(token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')));
        assert_eq!(token.split('.').nth(2).unwrap().len(), SIGNATURE_B64_LEN);
        // The capacity `sign` reserves holds the whole token: no regrowth.
        let json_len = b64url_decode(token.split('.').nth(1).unwrap())
            .unwrap()
            .len();
        let reserved = signer.header.len() + 2 + json_len.div_ceil(3) * 4 + SIGNATURE_B64_LEN;
        assert!(token.len() <= reserved, "{} > {reserved}", token.len());
    }
}
