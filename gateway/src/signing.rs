//! The gateway's envelope signer: the only holder of the active envelope
//! key while serving. It signs envelopes and transaction tokens
//! (`services[].identity_format`) for an [`Authorized`] caller and nothing
//! else, so the chain token check -> authentication -> policy -> envelope
//! is enforced by the compiler: an identity that did not go through
//! `Snapshot::authenticate` and `policy::decide::authorize` cannot be
//! signed for.
//!
//! ```
//! // What compiles: signing for an `Authorized` caller.
//! use stella_envelope::{Target, TxnRequest};
//! use stella_authn::Authenticated;
//! use stella_gateway::signing::EnvelopeSigner;
//! use stella_policy::Authorized;
//! fn sign(signer: &EnvelopeSigner, who: &Authorized<Authenticated>, target: &Target<'_>) {
//!     let _ = signer.sign(who, target, 0);
//! }
//! fn sign_txn(signer: &EnvelopeSigner, who: &Authorized<Authenticated>, request: &TxnRequest<'_>) {
//!     let _ = signer.sign_txn_token(who, request, 0);
//! }
//! ```
//!
//! ```compile_fail,E0308
//! // An envelope identity made up outside the pipeline is not accepted.
//! use stella_envelope::{Identity, Target};
//! use stella_gateway::signing::EnvelopeSigner;
//! fn forge(signer: &EnvelopeSigner, target: &Target<'_>) {
//!     let _ = signer.sign(&Identity::anonymous(), target, 0);
//! }
//! ```
//!
//! ```compile_fail,E0308
//! // Nor one the policy allowed for a caller type of another making: the
//! // signer takes only the authentication stage's proof type.
//! use stella_core::identity::Caller;
//! use stella_envelope::Target;
//! use stella_gateway::signing::EnvelopeSigner;
//! use stella_policy::{AuthenticatedCaller, Authorized};
//! struct Mine(Caller);
//! impl AuthenticatedCaller for Mine {
//!     fn caller(&self) -> &Caller { &self.0 }
//!     fn certificate_spiffe_id(&self) -> Option<&str> { None }
//! }
//! fn forge(signer: &EnvelopeSigner, who: &Authorized<Mine>, target: &Target<'_>) {
//!     let _ = signer.sign(who, target, 0);
//! }
//! ```
//!
//! ```compile_fail,E0451
//! // Nor can code outside the policy stage make an `Authorized`...
//! use stella_authn::Authenticated;
//! use stella_policy::{Allowed, Authorized};
//! fn forge(allowed: Allowed, caller: Authenticated) -> Authorized<Authenticated> {
//!     Authorized { allowed, caller }
//! }
//! ```
//!
//! ```compile_fail,E0451
//! // ...or an `Authenticated` caller outside the authentication stage.
//! use stella_core::identity::Caller;
//! use stella_envelope::Identity;
//! use stella_authn::Authenticated;
//! fn forge(caller: Caller, identity: Identity) -> Authenticated {
//!     Authenticated { caller, identity }
//! }
//! ```

use crate::config::resolve::EnvelopeKeyText;
use crate::config::{Config, ConfigError};
use stella_authn::Authenticated;
use stella_envelope::{
    EnvelopeHeaders, Key, SignError, Signer, Target, TxnRequest, TxnTokenSigner,
};
use stella_policy::Authorized;

/// Signs envelopes with the active key, or a service's own key
/// (`services[].envelope_kid`), for authorized callers only.
#[derive(Debug)]
pub struct EnvelopeSigner {
    signer: Signer,
    /// Services that have a key of their own, with its signer (few: found
    /// by name).
    by_service: Vec<(String, Signer)>,
    /// Services that get transaction tokens, with their signer (the
    /// service's key: its own, else the active one). Empty unless a service
    /// sets `identity_format` to `txn-token` or `both`.
    txn_tokens: Vec<(String, TxnTokenSigner)>,
    /// A signer whose every signature fails, for tests of that path.
    #[cfg(test)]
    broken: bool,
}

impl EnvelopeSigner {
    /// The signer of a configuration: its active key, its gateway id as
    /// `iss`, its envelope lifetime. `resolve` checked that the key parses
    /// and can sign, so this fails only for a configuration it did not make.
    pub fn from_config(config: &Config) -> Result<EnvelopeSigner, ConfigError> {
        let signer_of = |text: &EnvelopeKeyText, at: &str| {
            let key = Key::parse_compat(text.kid.clone(), text.expose())
                .map_err(|e| ConfigError::new(at, e.to_string()))?;
            Signer::new(
                key,
                config.gateway_id.clone(),
                config.envelope_lifetime.as_secs(),
            )
            .map_err(|e| ConfigError::new(at, e.to_string()))
        };
        let mut signer = EnvelopeSigner::new(signer_of(
            &config.envelope_key,
            "router.identity_envelope_active_kid",
        )?);
        for (i, service) in config.services.iter().enumerate() {
            // A txn-token service gets no envelope (its key may be ES256).
            let Some(kid) = service
                .envelope_kid
                .as_ref()
                .filter(|_| service.identity_format.sends_envelope())
            else {
                continue;
            };
            let at = format!("services[{i}].envelope_kid");
            let text = config
                .service_keys
                .iter()
                .find(|t| t.kid.as_str() == kid)
                .ok_or_else(|| ConfigError::new(&at, "names no configured envelope key"))?;
            signer
                .by_service
                .push((service.name.clone(), signer_of(text, &at)?));
        }
        for (i, service) in config.services.iter().enumerate() {
            if !service.identity_format.sends_txn_token() {
                continue;
            }
            let at = format!("services[{i}].identity_format");
            let text = match &service.envelope_kid {
                None => &config.envelope_key,
                Some(kid) => config
                    .service_keys
                    .iter()
                    .find(|t| t.kid.as_str() == kid)
                    .ok_or_else(|| ConfigError::new(&at, "names no configured envelope key"))?,
            };
            let key = Key::parse_compat(text.kid.clone(), text.expose())
                .map_err(|e| ConfigError::new(&at, e.to_string()))?;
            let txn = TxnTokenSigner::new(
                key,
                config.gateway_id.clone(),
                config.envelope_lifetime.as_secs(),
            )
            .map_err(|e| ConfigError::new(&at, e.to_string()))?;
            signer.txn_tokens.push((service.name.clone(), txn));
        }
        Ok(signer)
    }

    /// The kid that signs each service with a key of its own (its
    /// envelopes, its transaction tokens, or both).
    pub fn service_kids(&self) -> impl Iterator<Item = (&str, &str)> {
        let envelopes = self
            .by_service
            .iter()
            .map(|(service, s)| (service.as_str(), s.key().kid().as_str()));
        let tokens_only = self
            .txn_tokens
            .iter()
            .filter(|(service, _)| self.by_service.iter().all(|(s, _)| s != service))
            .map(|(service, s)| (service.as_str(), s.key().kid().as_str()));
        envelopes.chain(tokens_only)
    }

    pub fn new(signer: Signer) -> EnvelopeSigner {
        EnvelopeSigner {
            signer,
            by_service: Vec::new(),
            txn_tokens: Vec::new(),
            #[cfg(test)]
            broken: false,
        }
    }

    /// The active key (its id and algorithm are shown on the admin port).
    pub fn key(&self) -> &Key {
        self.signer.key()
    }

    /// The envelope for `who` on `target` at `now` (unix seconds). An error
    /// means the request must not be forwarded.
    pub fn sign(
        &self,
        who: &Authorized<Authenticated>,
        target: &Target<'_>,
        now: u64,
    ) -> Result<EnvelopeHeaders, SignError> {
        #[cfg(test)]
        if self.broken {
            return Err(SignError::KeyCannotSign {
                kid: self.key().kid().to_string(),
            });
        }
        let signer = match self.by_service.as_slice() {
            [] => &self.signer,
            own => own
                .iter()
                .find(|(service, _)| service == target.audience)
                .map_or(&self.signer, |(_, s)| s),
        };
        signer.sign_ref(who.authenticated().identity_ref(), target, now)
    }

    /// The transaction token (the `Txn-Token` header's value) for `who` on
    /// `request` at `now`, signed with the key of the service it goes to. An
    /// error means the request must not be forwarded.
    pub fn sign_txn_token(
        &self,
        who: &Authorized<Authenticated>,
        request: &TxnRequest<'_>,
        now: u64,
    ) -> Result<String, SignError> {
        #[cfg(test)]
        if self.broken {
            return Err(SignError::KeyCannotSign {
                kid: self.key().kid().to_string(),
            });
        }
        let service = request.target.audience;
        let (_, signer) = self
            .txn_tokens
            .iter()
            .find(|(name, _)| name == service)
            .ok_or_else(|| SignError::NoTxnTokenKey {
                service: service.to_owned(),
            })?;
        signer.sign(&who.authenticated().identity(), request, now)
    }

    /// A signer that fails every signature, as a key that cannot sign would.
    #[cfg(test)]
    pub(crate) fn broken_for_tests(signer: Signer) -> EnvelopeSigner {
        EnvelopeSigner {
            signer,
            by_service: Vec::new(),
            txn_tokens: Vec::new(),
            broken: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MissingAuthorization;
    use serde_json::{json, Value};
    use std::collections::HashMap;
    use std::sync::Arc;
    use stella_core::identity::{Caller, TokenClaims};
    use stella_envelope::AuthMethod;
    use stella_jose::{CompactJws, PublicJwk, VerifyingKey};
    use stella_policy::{authorize, RouteTarget};
    use stella_routing::normalize_path;

    const NOW: u64 = 1_800_000_000;
    const HS: &str = "hs256:c3RlbGxhLXVuaXQtdGVzdC1lbnZlbG9wZS1rZXktbm90LWZvci1wcm9kdWN0aW9u";

    fn ed(kid: &str, seed: u8) -> String {
        Key::ed25519_from_seed(stella_envelope::KeyId::new(kid).unwrap(), [seed; 32])
            .unwrap()
            .to_spec()
            .to_string()
    }

    /// A configuration with an HS256 active key, two EdDSA keys, and the
    /// services `orders` (txn-token, own key), `billing` (both, own key)
    /// and `legacy` (envelope).
    fn config() -> Config {
        let text = format!(
            "gateway:\n  id: gw-unit\n  listeners: {{http: \"127.0.0.1:8080\"}}\n  auth:\n    authority:\n      \
             issuer: https://authority.example\n      audiences: [api]\n\
             router:\n  identity_envelope_lifetime_seconds: 45\n  identity_envelope_active_kid: hs-1\n  identity_envelope_keys:\n\
             \x20   - {{kid: hs-1, key: \"{HS}\"}}\n\
             \x20   - {{kid: ed-orders, key: \"{}\"}}\n\
             \x20   - {{kid: ed-billing, key: \"{}\"}}\n\
             services:\n\
             \x20 - {{name: orders, upstreams: [\"127.0.0.1:9\"], envelope_kid: ed-orders, identity_format: txn-token}}\n\
             \x20 - {{name: billing, upstreams: [\"127.0.0.1:9\"], envelope_kid: ed-billing, identity_format: both}}\n\
             \x20 - {{name: legacy, upstreams: [\"127.0.0.1:9\"]}}\n",
            ed("ed-orders", 1),
            ed("ed-billing", 2),
        );
        let (file, errors) = crate::config::parse(&text, "test.yaml", &HashMap::new());
        assert!(errors.is_empty(), "{errors:?}");
        crate::config::resolve::resolve(&file.unwrap(), std::path::Path::new("."), &HashMap::new())
            .unwrap()
    }

    fn authorized() -> Authorized<Authenticated> {
        let claims = TokenClaims::for_tests("ann", &["orders.read", "orders.write"])
            .with_tenant("acme")
            .with_roles(&["clerk"]);
        let caller = Caller::Token {
            claims: Arc::new(claims),
            method: AuthMethod::Bearer,
        };
        authorize(
            &RouteTarget::for_tests(None),
            &normalize_path(b"/orders/7").unwrap(),
            Authenticated::for_tests(caller),
            MissingAuthorization::RequireAuthenticated,
        )
        .expect("no policy, authenticated caller")
    }

    fn request(service: &str) -> TxnRequest<'_> {
        TxnRequest {
            target: Target {
                audience: service,
                method: "POST",
                path: "/orders/7",
                request_id: "c0ffee-1",
            },
            route: "orders-write",
            decision: "no_policy",
            client_ip: Some("192.0.2.1"),
        }
    }

    /// Verifies `token` the way a service would: the key by `kid` from the
    /// published JWKS, then the signature; returns header and claims.
    fn verify_with_keyset(token: &str, config: &Config) -> (Value, Value) {
        let keyset: Value = serde_json::from_slice(&crate::keyset::document(&config.envelope_keys))
            .expect("the keyset is json");
        let jws = CompactJws::parse(token, 16 * 1024).expect("a compact jws");
        let kid = jws.header().kid().expect("kid").to_owned();
        let jwk = keyset["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("kid {kid} is not published: {keyset}"));
        let jwk = PublicJwk::from_json(jwk.as_object().unwrap()).expect("a public jwk");
        jws.verify(&VerifyingKey::new(&jwk))
            .expect("signature verifies");
        (
            Value::Object(jws.header_json().clone()),
            serde_json::from_slice(jws.payload()).unwrap(),
        )
    }

    #[test]
    fn a_txn_token_service_gets_a_token_that_verifies_against_the_published_keyset() {
        let config = config();
        let signer = EnvelopeSigner::from_config(&config).unwrap();
        let token = signer
            .sign_txn_token(&authorized(), &request("orders"), NOW)
            .unwrap();
        let (header, claims) = verify_with_keyset(&token, &config);
        assert_eq!(
            header,
            json!({"alg": "EdDSA", "kid": "ed-orders", "typ": "txntoken+jwt"})
        );
        assert_eq!(claims["aud"], "orders");
        assert_eq!(claims["iss"], "gw-unit");
        assert_eq!(claims["req_wl"], "gw-unit");
        assert_eq!(claims["sub"], "ann");
        assert_eq!(claims["scope"], "orders.read orders.write");
        assert_eq!(claims["txn"], "c0ffee-1");
        assert_eq!(claims["iat"], NOW);
        assert_eq!(
            claims["exp"],
            NOW + 45,
            "exp - iat is the envelope lifetime"
        );
        assert_eq!(
            claims["tctx"],
            json!({"route": "orders-write", "tenant": "acme", "roles": ["clerk"], "decision": "no_policy"})
        );
        assert_eq!(claims["rctx"]["req_method"], "POST");
        assert_eq!(claims["rctx"]["req_path"], "/orders/7");
        assert_eq!(claims["rctx"]["req_ip"], "192.0.2.1");
        assert_eq!(claims["rctx"]["authn"], "bearer");
        assert_eq!(claims["rctx"]["client_id"], "client");
    }

    #[test]
    fn each_txn_token_service_is_signed_with_its_own_key_and_others_get_none() {
        let config = config();
        let signer = EnvelopeSigner::from_config(&config).unwrap();
        let who = authorized();
        let billing = signer
            .sign_txn_token(&who, &request("billing"), NOW)
            .unwrap();
        let (header, claims) = verify_with_keyset(&billing, &config);
        assert_eq!(header["kid"], "ed-billing");
        assert_eq!(claims["aud"], "billing");
        // `legacy` takes envelopes only: no token is ever made for it.
        assert_eq!(
            signer.sign_txn_token(&who, &request("legacy"), NOW),
            Err(SignError::NoTxnTokenKey {
                service: "legacy".into()
            })
        );
        // Its envelope is still signed with the active HS256 key.
        let envelope = signer.sign(&who, &request("legacy").target, NOW).unwrap();
        assert_eq!(
            (envelope.kid.as_str(), envelope.alg.as_str()),
            ("hs-1", "HS256")
        );
    }

    #[test]
    fn the_published_keyset_lists_the_eddsa_keys_and_never_the_hs256_secret() {
        let config = config();
        let text =
            String::from_utf8(crate::keyset::document(&config.envelope_keys).to_vec()).unwrap();
        let keyset: Value = serde_json::from_str(&text).unwrap();
        let kids: Vec<&str> = keyset["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, ["ed-orders", "ed-billing"]);
        assert!(!text.contains(HS.trim_start_matches("hs256:")), "{text}");
    }
}
