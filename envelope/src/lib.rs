//! Signed identity envelopes between Stella Gateway and the services behind
//! it: the format (see `SPEC.md`), signing, verification, trust modes and
//! service configuration.
//!
//! The core does no I/O and reads no clock: every check takes `now` in unix
//! seconds. The `axum` feature adds a tower layer and extractors that supply
//! the clock and the request.
//!
//! The configuration can change while the service runs (SPEC.md 7.1): a
//! [`ServiceConfigHandle`] holds the checked [`ServiceConfig`] behind an
//! atomic pointer, re-reads the environment and the file
//! `Router__ConfigFile` names on [`ServiceConfigHandle::reload`], and keeps
//! the old configuration when the new one has any problem. The layer reads
//! the pointer once per request, so each request is decided with one
//! configuration from start to end. The `reload` feature adds the triggers:
//! SIGHUP and changes of the file (`reload::spawn_reload_triggers`).
//!
//! ```ignore
//! let handle = Arc::new(ServiceConfigHandle::from_process_env()?); // exit 2 on errors
//! stella_envelope::reload::spawn_reload_triggers(handle.clone())?;
//! let app = Router::new()
//!     .route("/", get(handler))
//!     .layer(EnvelopeLayer::from_handle(handle));
//! ```

pub mod claims;
pub mod config;
pub mod encoding;
pub mod error;
pub mod format;
pub mod keys;
pub mod reload;
pub mod sign;
pub mod trust;
pub mod txn_token;
pub mod verify;

#[cfg(feature = "axum")]
pub mod middleware;

#[cfg(test)]
mod vectors;

pub use claims::{AuthMethod, Confirmation, Identity};
pub use config::{ConfigError, EnvSource, ProcessEnv, ServiceConfig};
pub use error::EnvelopeError;
pub use format::EnvelopeHeaders;
pub use keys::{Alg, Key, KeyError, KeyId, Keyring};
pub use reload::{ReloadOutcome, ReloadStatus, ServiceConfigHandle};
pub use sign::{IdentityRef, SignError, Signer, Target};
pub use trust::{decide, Action, EnvelopeCheck, Rejection, TrustMode};
pub use txn_token::{TxnRequest, TxnTokenSigner};
pub use verify::{RequestBinding, VerifiedEnvelope, Verifier, VerifierSettings};

/// Looks for an envelope in `fields` and verifies it: the whole service-side
/// check before [`decide`].
pub fn check_request<'a, I>(
    verifier: Option<&Verifier>,
    fields: I,
    request: &RequestBinding<'_>,
    now: u64,
) -> EnvelopeCheck
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    match EnvelopeHeaders::from_fields(fields) {
        Ok(None) => EnvelopeCheck::Absent,
        Err(e) => EnvelopeCheck::Invalid(e),
        Ok(Some(headers)) => match verifier {
            // Envelopes arrive but no key is configured: nothing can be trusted.
            None => EnvelopeCheck::Invalid(EnvelopeError::UnknownKid),
            Some(v) => match v.verify(&headers, request, now) {
                Ok(valid) => EnvelopeCheck::Valid(Box::new(valid)),
                Err(e) => EnvelopeCheck::Invalid(e),
            },
        },
    }
}
