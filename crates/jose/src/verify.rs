//! Signature verification with ring.
//!
//! [`VerifyingKey`] is a [`PublicJwk`] prepared once (decoded point or RSA
//! components, the algs its metadata allows) so a JWKS cache can verify many
//! tokens without re-reading the JWK. Signature lengths are checked before
//! ring sees them: JWS ECDSA signatures are raw `r || s`, never DER.

use super::alg::{JwsAlg, KeyKind};
use super::error::JoseError;
use super::jwk::{EcCurve, KeyMaterial, PublicJwk};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};

/// A public key ready for repeated verification.
#[derive(Clone, Debug)]
pub struct VerifyingKey {
    prepared: Prepared,
    /// Which of [`JwsAlg::ALL`] the JWK's `alg`/`use`/`key_ops` allow.
    allowed: [bool; JwsAlg::ALL.len()],
}

#[derive(Clone, Debug)]
enum Prepared {
    /// The key is `0x04 || x || y`; ring checks the point is on the curve
    /// on every verification.
    EcP256(UnparsedPublicKey<Vec<u8>>),
    EcP384(UnparsedPublicKey<Vec<u8>>),
    Ed25519(UnparsedPublicKey<[u8; 32]>),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
}

impl VerifyingKey {
    /// Prepares `jwk` for verification.
    pub fn new(jwk: &PublicJwk) -> VerifyingKey {
        let prepared = match jwk.material() {
            KeyMaterial::Ec {
                curve: EcCurve::P256,
                point,
                ..
            } => Prepared::EcP256(UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_FIXED,
                point.clone(),
            )),
            KeyMaterial::Ec {
                curve: EcCurve::P384,
                point,
                ..
            } => Prepared::EcP384(UnparsedPublicKey::new(
                &signature::ECDSA_P384_SHA384_FIXED,
                point.clone(),
            )),
            KeyMaterial::Ed25519 { key, .. } => {
                Prepared::Ed25519(UnparsedPublicKey::new(&signature::ED25519, *key))
            }
            KeyMaterial::Rsa {
                n_bytes, e_bytes, ..
            } => Prepared::Rsa(RsaPublicKeyComponents {
                n: n_bytes.clone(),
                e: e_bytes.clone(),
            }),
        };
        VerifyingKey {
            prepared,
            allowed: JwsAlg::ALL.map(|alg| jwk.check_alg(alg).is_ok()),
        }
    }

    /// Key type and curve.
    pub fn kind(&self) -> KeyKind {
        match self.prepared {
            Prepared::EcP256(_) => KeyKind::EcP256,
            Prepared::EcP384(_) => KeyKind::EcP384,
            Prepared::Ed25519(_) => KeyKind::Ed25519,
            Prepared::Rsa(_) => KeyKind::Rsa,
        }
    }

    /// True when this key may verify `alg` signatures (same rule as
    /// [`PublicJwk::check_alg`]).
    pub fn allows(&self, alg: JwsAlg) -> bool {
        JwsAlg::ALL
            .iter()
            .zip(self.allowed)
            .any(|(a, ok)| *a == alg && ok)
    }

    /// Verifies `signature` over `signing_input` under `alg`.
    pub fn verify(
        &self,
        alg: JwsAlg,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), JoseError> {
        let key = self.kind();
        if alg.key_kind() != key {
            return Err(JoseError::AlgKeyMismatch { alg, key });
        }
        if !self.allows(alg) {
            return Err(JoseError::KeyUseMismatch { alg });
        }
        let expected_len = match &self.prepared {
            Prepared::EcP256(_) | Prepared::Ed25519(_) => 64,
            Prepared::EcP384(_) => 96,
            // RFC 7518 3.3/3.5 and ring: exactly the modulus length.
            Prepared::Rsa(rsa) => rsa.n.len(),
        };
        if signature.len() != expected_len {
            return Err(JoseError::MalformedSignature { alg });
        }
        SIGNATURE_VERIFICATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let verified = match &self.prepared {
            Prepared::EcP256(key) | Prepared::EcP384(key) => key.verify(signing_input, signature),
            Prepared::Ed25519(key) => key.verify(signing_input, signature),
            Prepared::Rsa(rsa) => {
                let params = match alg {
                    JwsAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    JwsAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    // Unreachable after the kind check; refused all the same.
                    JwsAlg::Es256 | JwsAlg::Es384 | JwsAlg::EdDsa => {
                        return Err(JoseError::AlgKeyMismatch { alg, key });
                    }
                };
                rsa.verify(params, signing_input, signature)
            }
        };
        verified.map_err(|_| JoseError::BadSignature)
    }
}

impl From<&PublicJwk> for VerifyingKey {
    fn from(jwk: &PublicJwk) -> Self {
        VerifyingKey::new(jwk)
    }
}

/// Signature verifications run by this process (every algorithm): the
/// benchmark and the tests use it to show the hot path does exactly one per
/// DPoP request and none per cached Bearer token.
static SIGNATURE_VERIFICATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// See [`SIGNATURE_VERIFICATIONS`].
pub fn signature_verifications() -> u64 {
    SIGNATURE_VERIFICATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Verifies one signature with a JWK: [`PublicJwk::check_alg`], the
/// signature length, then ring. For many verifications with one key, keep a
/// [`VerifyingKey`] instead.
pub fn verify(
    alg: JwsAlg,
    jwk: &PublicJwk,
    signing_input: &[u8],
    signature: &[u8],
) -> Result<(), JoseError> {
    VerifyingKey::new(jwk).verify(alg, signing_input, signature)
}
