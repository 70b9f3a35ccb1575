//! RFC 7638 JWK thumbprints (SHA-256), the value DPoP binds tokens to
//! (`cnf.jkt`, RFC 9449 section 6).
//!
//! The hash input is the canonical JSON of the required members only, in
//! lexicographic order, without whitespace. Member values are the strings
//! as received: they were checked to be canonical base64url (so they need
//! no JSON escaping and equal their re-encoding), and `crv`/`kty` are from a
//! fixed set.

use super::jwk::{KeyMaterial, PublicJwk};
use ring::digest::{digest, SHA256};
use stella_envelope::encoding::{b64url_encode, is_canonical_b64url_of_len};

/// The RFC 7638 thumbprint of `jwk`: base64url SHA-256 of its canonical
/// JSON (EC: crv, kty, x, y; RSA: e, kty, n; OKP: crv, kty, x).
pub fn thumbprint_sha256(jwk: &PublicJwk) -> String {
    b64url_encode(digest(&SHA256, canonical_json(jwk).as_bytes()))
}

/// True when `expected` (for example a token's `cnf.jkt`) is the canonical
/// base64url thumbprint of `jwk`. A non-canonical spelling of the right digest
/// does not match (docs/design.md §3.3). Thumbprints are public values, so the
/// comparison need not be constant time.
pub fn thumbprint_matches(jwk: &PublicJwk, expected: &str) -> bool {
    is_canonical_b64url_of_len(expected, 32) && thumbprint_sha256(jwk) == expected
}

/// The exact bytes RFC 7638 hashes.
pub(super) fn canonical_json(jwk: &PublicJwk) -> String {
    match jwk.material() {
        KeyMaterial::Ec { curve, x, y, .. } => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{x}","y":"{y}"}}"#,
            curve.name()
        ),
        KeyMaterial::Rsa { n, e, .. } => format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#),
        KeyMaterial::Ed25519 { x, .. } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
    }
}
