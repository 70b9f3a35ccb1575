//! The gateway's envelope signer: the only holder of the active envelope
//! key while serving. It signs for an [`Authorized`] caller and nothing
//! else, so the chain token check -> authentication -> policy -> envelope
//! is enforced by the compiler: an identity that did not go through
//! `Snapshot::authenticate` and `policy::decide::authorize` cannot be
//! signed for.
//!
//! ```
//! // What compiles: signing for an `Authorized` caller.
//! use stella_envelope::Target;
//! use stella_authn::Authenticated;
//! use stella_gateway::signing::EnvelopeSigner;
//! use stella_policy::Authorized;
//! fn sign(signer: &EnvelopeSigner, who: &Authorized<Authenticated>, target: &Target<'_>) {
//!     let _ = signer.sign(who, target, 0);
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
use stella_envelope::{EnvelopeHeaders, Key, SignError, Signer, Target};
use stella_policy::Authorized;

/// Signs envelopes with the active key, or a service's own key
/// (`services[].envelope_kid`), for authorized callers only.
#[derive(Debug)]
pub struct EnvelopeSigner {
    signer: Signer,
    /// Services that have a key of their own, with its signer (few: found
    /// by name).
    by_service: Vec<(String, Signer)>,
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
            let Some(kid) = &service.envelope_kid else {
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
        Ok(signer)
    }

    /// The kid that signs each service with a key of its own.
    pub fn service_kids(&self) -> impl Iterator<Item = (&str, &str)> {
        self.by_service
            .iter()
            .map(|(service, s)| (service.as_str(), s.key().kid().as_str()))
    }

    pub fn new(signer: Signer) -> EnvelopeSigner {
        EnvelopeSigner {
            signer,
            by_service: Vec::new(),
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
        signer.sign(who.authenticated().identity(), target, now)
    }

    /// A signer that fails every signature, as a key that cannot sign would.
    #[cfg(test)]
    pub(crate) fn broken_for_tests(signer: Signer) -> EnvelopeSigner {
        EnvelopeSigner {
            signer,
            by_service: Vec::new(),
            broken: true,
        }
    }
}
