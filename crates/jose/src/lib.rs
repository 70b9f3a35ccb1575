//! The JOSE layer shared by access tokens (RFC 9068) and DPoP proofs
//! (RFC 9449): compact JWS parsing, public JWKs, signature verification with
//! ring, and RFC 7638 thumbprints.
//!
//! It owns the encoding rules only; what a token or proof must claim lives
//! in `authn`. Everything here is pure: no I/O, no clock.
//!
//! Rules it enforces (docs/design.md §3.3):
//! - algs: ES256, ES384, EdDSA, PS256, RS256 and nothing else, ever
//!   ([`JwsAlg`]); callers narrow further (proofs allow fewer);
//! - one encoding per value: strict unpadded base64url, JSON objects without
//!   duplicate members (from `stella_envelope::encoding`), signing input
//!   kept as received, EC coordinates at full length, raw `r || s` ECDSA
//!   signatures;
//! - keys never come from a token header: `jku`/`x5u`/`x5c` are only
//!   reported, `crit` is refused, and the `jwk` header member is handed out
//!   raw for the DPoP path to parse with [`PublicJwk::from_json`];
//! - public keys only: private members and `oct` keys are refused;
//! - RSA moduli of 2048 to 8192 bits; EC points are checked to be on the
//!   curve by ring at each verification.
//!
//! Typical use: `CompactJws::parse(token, max_len)`, pick a key (JWKS by
//! `kid`, or the proof's `jwk`), then `jws.verify(&VerifyingKey::new(&jwk))`.

mod alg;
mod error;
mod jwk;
mod jws;
mod thumbprint;
mod verify;

#[cfg(test)]
mod tests;

/// Key pairs, JWKS documents and signed tokens for tests (this crate's, and
/// other crates' with the `testing` feature, dev-dependencies only).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use alg::{JwsAlg, KeyKind};
pub use error::{JoseError, JwsPart, KeyProblem, MemberProblem};
pub use jwk::PublicJwk;
pub use jws::{typ_matches, CompactJws, JsonObject, JwsHeader};
pub use thumbprint::{thumbprint_matches, thumbprint_sha256};
pub use verify::{signature_verifications, verify, VerifyingKey};
