//! DPoP server-nonce parsing and verification (`authn::nonce::NonceIssuer`).
//!
//! Input: 8 bytes of `now` (big-endian unix seconds), then the nonce text
//! (any bytes, read lossily).
//!
//! Besides "never panics": a nonce verifies only if it is exactly what the
//! issuer gives for the current or the previous time step (so no other
//! spelling, and nothing forged without the secret), and an issued nonce
//! verifies in its own and the next step and no later.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use stella_authn::nonce::{NonceError, NonceIssuer, NONCE_LEN};

const STEP: u64 = 60;

fn issuer() -> &'static NonceIssuer {
    static ISSUER: OnceLock<NonceIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| {
        NonceIssuer::new(
            b"fuzz-nonce-secret-0123456789abcd",
            Duration::from_secs(STEP),
        )
        .expect("nonce issuer")
    })
}

fuzz_target!(|data: &[u8]| {
    let issuer = issuer();
    let (now, nonce) = match data.get(..8) {
        Some(head) => (
            u64::from_be_bytes(head.try_into().expect("8 bytes")),
            String::from_utf8_lossy(&data[8..]),
        ),
        None => (1_767_225_600, String::from_utf8_lossy(data)),
    };

    match issuer.verify(&nonce, now) {
        Ok(()) => {
            let current = issuer.issue(now);
            let previous = now.checked_sub(STEP).map(|t| issuer.issue(t));
            assert!(
                nonce == current || Some(&*nonce) == previous.as_deref(),
                "accepted a nonce the issuer did not give for this or the last step"
            );
        }
        Err(e) => {
            let _ = (e.code(), e.to_string());
            if nonce.len() != NONCE_LEN {
                assert_eq!(e, NonceError::Malformed);
            }
        }
    }

    let issued = issuer.issue(now);
    assert_eq!(issued.len(), NONCE_LEN);
    assert_eq!(issuer.verify(&issued, now), Ok(()));
    if let Some(next) = now.checked_add(STEP) {
        assert_eq!(issuer.verify(&issued, next), Ok(()));
    }
    if let Some(later) = (now / STEP * STEP).checked_add(2 * STEP) {
        assert_eq!(issuer.verify(&issued, later), Err(NonceError::Expired));
    }
    if let Some(earlier) = (now / STEP * STEP).checked_sub(1) {
        assert_eq!(issuer.verify(&issued, earlier), Err(NonceError::FromFuture));
    }
});
