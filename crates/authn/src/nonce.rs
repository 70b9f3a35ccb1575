//! Stateless DPoP server nonces (RFC 9449 section 8; docs/design.md §3.3).
//!
//! A nonce is `base64url(counter || tag)`: `counter` is the time step
//! (`now / step`) as 8 big-endian octets and `tag` the first 16 octets of
//! HMAC-SHA256 over `"stella-dpop-nonce" || counter` under a secret shared by
//! every gateway node. Any node can therefore verify any node's nonce without
//! shared state, and a nonce stays valid for the step it was issued in and the
//! next one (between one and two steps).
//!
//! The label keeps these MACs apart from any other use of the same secret,
//! and a nonce the Authority issued (its own format, its own secret) never
//! verifies here.

use ring::hmac;
use std::fmt;
use std::time::Duration;
use stella_envelope::encoding::{b64url_decode, b64url_encode};
use subtle::ConstantTimeEq;

/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// Domain separation label for the MAC input.
const LABEL: &[u8] = b"stella-dpop-nonce";

/// Octets of the truncated MAC.
const TAG_LEN: usize = 16;
/// Octets of a decoded nonce: counter then tag.
const RAW_LEN: usize = 8 + TAG_LEN;
/// Characters of an encoded nonce: 24 octets are exactly 32 base64url chars.
pub const NONCE_LEN: usize = 32;

/// Why a nonce issuer could not be built. Carries no secret bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceConfigError {
    #[error("dpop nonce secret is {len} bytes, at least {min} are required")]
    SecretTooShort { len: usize, min: usize },
    #[error("dpop nonce step must be at least one second")]
    StepTooShort,
}

/// Why a nonce was refused. Never carries the nonce itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NonceError {
    #[error("dpop nonce is not {NONCE_LEN} characters of canonical base64url")]
    Malformed,
    #[error("dpop nonce is from a time step that is no longer accepted")]
    Expired,
    #[error("dpop nonce is from a future time step")]
    FromFuture,
    #[error("dpop nonce was not issued with this gateway's secret")]
    BadTag,
}

impl NonceError {
    /// A stable label for metrics and decision logs.
    pub fn code(self) -> &'static str {
        match self {
            NonceError::Malformed => "nonce_malformed",
            NonceError::Expired => "nonce_expired",
            NonceError::FromFuture => "nonce_from_future",
            NonceError::BadTag => "nonce_bad_tag",
        }
    }
}

/// What a DPoP proof check uses to accept the proof's `nonce` claim. The
/// gateway's implementation is [`NonceIssuer`]; the trait lets the proof
/// check stay independent of how nonces are made.
pub trait NonceCheck: Send + Sync {
    /// Accepts or refuses `nonce` at `now` (unix seconds).
    fn check(&self, nonce: &str, now: u64) -> Result<(), NonceError>;
}

/// Issues and verifies nonces with one secret and one time step.
#[derive(Clone)]
pub struct NonceIssuer {
    key: hmac::Key,
    step: u64,
}

impl fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NonceIssuer")
            .field("key", &"<redacted>")
            .field("step", &self.step)
            .finish()
    }
}

impl NonceIssuer {
    /// `secret` must be at least [`MIN_SECRET_LEN`] bytes and `step` at
    /// least one second (sub-second parts are dropped: time is in whole
    /// seconds). A nonce is accepted for one to two steps after issue.
    pub fn new(secret: &[u8], step: Duration) -> Result<NonceIssuer, NonceConfigError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(NonceConfigError::SecretTooShort {
                len: secret.len(),
                min: MIN_SECRET_LEN,
            });
        }
        let step = step.as_secs();
        if step == 0 {
            return Err(NonceConfigError::StepTooShort);
        }
        Ok(NonceIssuer {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            step,
        })
    }

    /// The time step length in seconds.
    pub fn step_seconds(&self) -> u64 {
        self.step
    }

    /// A fresh nonce for `now` (unix seconds); the same for every call and
    /// every node within one step.
    pub fn issue(&self, now: u64) -> String {
        let counter = now / self.step;
        let mut raw = [0u8; RAW_LEN];
        raw[..8].copy_from_slice(&counter.to_be_bytes());
        raw[8..].copy_from_slice(&self.tag(counter));
        b64url_encode(raw)
    }

    /// Accepts a nonce issued in the current or the previous step.
    pub fn verify(&self, nonce: &str, now: u64) -> Result<(), NonceError> {
        if nonce.len() != NONCE_LEN {
            return Err(NonceError::Malformed);
        }
        let raw = b64url_decode(nonce).map_err(|_| NonceError::Malformed)?;
        let (Some(counter), Some(tag)) = (raw.get(..8), raw.get(8..)) else {
            return Err(NonceError::Malformed);
        };
        if tag.len() != TAG_LEN {
            return Err(NonceError::Malformed);
        }
        let mut counter_be = [0u8; 8];
        counter_be.copy_from_slice(counter);
        let counter = u64::from_be_bytes(counter_be);
        // The MAC is checked first so that an unauthenticated nonce learns
        // nothing about which steps are current.
        let expected = self.tag(counter);
        if !bool::from(expected.ct_eq(tag)) {
            return Err(NonceError::BadTag);
        }
        let current = now / self.step;
        if counter > current {
            return Err(NonceError::FromFuture);
        }
        if current - counter > 1 {
            return Err(NonceError::Expired);
        }
        Ok(())
    }

    fn tag(&self, counter: u64) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(LABEL);
        ctx.update(&counter.to_be_bytes());
        let full = ctx.sign();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        tag
    }
}

impl NonceCheck for NonceIssuer {
    fn check(&self, nonce: &str, now: u64) -> Result<(), NonceError> {
        self.verify(nonce, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
    const STEP: u64 = 30;
    const NOW: u64 = 1_700_000_000;

    fn issuer() -> NonceIssuer {
        NonceIssuer::new(SECRET, Duration::from_secs(STEP)).unwrap()
    }

    #[test]
    fn issued_nonce_verifies_in_its_own_step() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW);
        assert_eq!(nonce.len(), NONCE_LEN);
        assert_eq!(issuer.verify(&nonce, NOW), Ok(()));
        // The same for every call within the step, so nodes agree.
        let step_start = NOW - NOW % STEP;
        assert_eq!(issuer.issue(step_start), nonce);
        assert_eq!(issuer.issue(step_start + STEP - 1), nonce);
    }

    #[test]
    fn nonce_from_another_node_with_the_same_secret_verifies() {
        let a = issuer();
        let b = NonceIssuer::new(SECRET, Duration::from_secs(STEP)).unwrap();
        assert_eq!(b.verify(&a.issue(NOW), NOW), Ok(()));
    }

    #[test]
    fn nonce_from_the_previous_step_is_accepted() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW);
        assert_eq!(issuer.verify(&nonce, NOW + STEP), Ok(()));
    }

    #[test]
    fn nonce_two_steps_old_is_refused() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW);
        assert_eq!(
            issuer.verify(&nonce, NOW + 2 * STEP),
            Err(NonceError::Expired)
        );
        assert_eq!(issuer.verify(&nonce, u64::MAX), Err(NonceError::Expired));
    }

    #[test]
    fn nonce_from_a_future_step_is_refused() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW + STEP);
        assert_eq!(issuer.verify(&nonce, NOW), Err(NonceError::FromFuture));
    }

    #[test]
    fn nonce_made_with_another_secret_is_refused() {
        let other = NonceIssuer::new(&[7u8; 32], Duration::from_secs(STEP)).unwrap();
        assert_eq!(
            issuer().verify(&other.issue(NOW), NOW),
            Err(NonceError::BadTag)
        );
    }

    #[test]
    fn authority_style_nonce_is_refused() {
        // Whatever the Authority issues (its own format and secret) is at
        // best malformed here, and at worst a tag that does not verify.
        let issuer = issuer();
        for nonce in [
            "eyJ7S_zG.eyJH0-Z.HX4w-7v",
            "aGVsbG8",
            "",
            &b64url_encode([0u8; RAW_LEN]),
        ] {
            assert!(issuer.verify(nonce, NOW).is_err(), "{nonce:?}");
        }
    }

    #[test]
    fn tampered_nonce_is_refused() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW);
        let mut raw = b64url_decode(&nonce).unwrap();
        for i in 0..RAW_LEN {
            raw[i] ^= 0x01;
            let tampered = b64url_encode(&raw);
            assert!(issuer.verify(&tampered, NOW).is_err(), "octet {i}");
            raw[i] ^= 0x01;
        }
        // Moving the counter back one step with the old tag is tampering too.
        raw[7] = raw[7].wrapping_sub(1);
        assert_eq!(
            issuer.verify(&b64url_encode(&raw), NOW),
            Err(NonceError::BadTag)
        );
    }

    #[test]
    fn non_canonical_or_wrong_length_nonce_is_refused() {
        let issuer = issuer();
        let nonce = issuer.issue(NOW);
        for bad in [
            format!("{nonce}="),
            format!("{nonce}A"),
            nonce[..NONCE_LEN - 1].to_owned(),
            nonce.replace('-', "+").replace('_', "/"),
            format!(" {}", &nonce[1..]),
        ] {
            if bad == nonce {
                continue;
            }
            assert_eq!(
                issuer.verify(&bad, NOW),
                Err(NonceError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn short_secret_or_zero_step_is_refused() {
        assert_eq!(
            NonceIssuer::new(&[1u8; 31], Duration::from_secs(30)).unwrap_err(),
            NonceConfigError::SecretTooShort { len: 31, min: 32 }
        );
        assert_eq!(
            NonceIssuer::new(SECRET, Duration::from_millis(999)).unwrap_err(),
            NonceConfigError::StepTooShort
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let text = format!("{:?}", issuer());
        assert!(text.contains("redacted"));
        assert!(!text.contains("0123456789abcdef"));
    }
}
