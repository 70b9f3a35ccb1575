//! The JWS algorithms the gateway accepts, and which key each one needs.
//!
//! The list is closed: `none`, every symmetric alg and every alg not named
//! here fail to parse, so no later stage can be talked into using them.

use super::error::JoseError;
use std::fmt;

/// A JWS signature algorithm the gateway may accept (docs/design.md §3.3).
/// Callers narrow this further per credential type (proofs allow fewer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum JwsAlg {
    /// ECDSA over P-256 with SHA-256, raw `r || s` signature.
    Es256,
    /// ECDSA over P-384 with SHA-384, raw `r || s` signature.
    Es384,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PSS with SHA-256 and MGF1-SHA-256.
    Ps256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl JwsAlg {
    /// Every accepted algorithm, in a fixed order.
    pub const ALL: [JwsAlg; 5] = [
        JwsAlg::Es256,
        JwsAlg::Es384,
        JwsAlg::EdDsa,
        JwsAlg::Ps256,
        JwsAlg::Rs256,
    ];

    /// Parses the exact header spelling; JOSE alg names are case-sensitive.
    pub fn from_header(text: &str) -> Result<JwsAlg, JoseError> {
        match text {
            "ES256" => Ok(JwsAlg::Es256),
            "ES384" => Ok(JwsAlg::Es384),
            "EdDSA" => Ok(JwsAlg::EdDsa),
            "PS256" => Ok(JwsAlg::Ps256),
            "RS256" => Ok(JwsAlg::Rs256),
            _ => Err(JoseError::UnsupportedAlg),
        }
    }

    /// The exact header spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlg::Es256 => "ES256",
            JwsAlg::Es384 => "ES384",
            JwsAlg::EdDsa => "EdDSA",
            JwsAlg::Ps256 => "PS256",
            JwsAlg::Rs256 => "RS256",
        }
    }

    /// The only kind of key this algorithm verifies with.
    pub fn key_kind(self) -> KeyKind {
        match self {
            JwsAlg::Es256 => KeyKind::EcP256,
            JwsAlg::Es384 => KeyKind::EcP384,
            JwsAlg::EdDsa => KeyKind::Ed25519,
            JwsAlg::Ps256 | JwsAlg::Rs256 => KeyKind::Rsa,
        }
    }
}

impl fmt::Display for JwsAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of a public key: key type plus curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    EcP256,
    EcP384,
    Ed25519,
    Rsa,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::EcP256 => "ec p-256",
            KeyKind::EcP384 => "ec p-384",
            KeyKind::Ed25519 => "okp ed25519",
            KeyKind::Rsa => "rsa",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_algs_round_trip_through_their_header_spelling() {
        for alg in JwsAlg::ALL {
            assert_eq!(JwsAlg::from_header(alg.as_str()), Ok(alg));
        }
    }

    #[test]
    fn none_symmetric_and_unlisted_algs_are_unsupported() {
        for text in [
            "none", "None", "NONE", "", "HS256", "HS384", "HS512", "RS384", "RS512", "PS384",
            "PS512", "ES512", "ES256K", "Ed25519", "EDDSA", "eddsa", "es256", "ES256 ", "RSA-OAEP",
            "dir",
        ] {
            assert_eq!(
                JwsAlg::from_header(text),
                Err(JoseError::UnsupportedAlg),
                "{text:?}"
            );
        }
    }

    #[test]
    fn each_alg_needs_exactly_one_key_kind() {
        assert_eq!(JwsAlg::Es256.key_kind(), KeyKind::EcP256);
        assert_eq!(JwsAlg::Es384.key_kind(), KeyKind::EcP384);
        assert_eq!(JwsAlg::EdDsa.key_kind(), KeyKind::Ed25519);
        assert_eq!(JwsAlg::Ps256.key_kind(), KeyKind::Rsa);
        assert_eq!(JwsAlg::Rs256.key_kind(), KeyKind::Rsa);
    }
}
