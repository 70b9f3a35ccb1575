//! The one error type of the JOSE layer.
//!
//! Messages are lowercase and name only facts the gateway chose (a part of
//! the token, a member name from a fixed list, an algorithm from
//! [`JwsAlg`], a bit length): never a string taken from the token or key.

use super::alg::{JwsAlg, KeyKind};
use std::fmt;
use stella_envelope::encoding::DecodeError;

/// A part of a compact JWS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwsPart {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for JwsPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JwsPart::Header => "header",
            JwsPart::Payload => "payload",
            JwsPart::Signature => "signature",
        })
    }
}

/// What is wrong with one member of a JOSE header or JWK.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberProblem {
    Missing,
    WrongType,
}

impl fmt::Display for MemberProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MemberProblem::Missing => "is missing",
            MemberProblem::WrongType => "has the wrong json type",
        })
    }
}

/// Why a JWK is not a usable public key (other than carrying private or
/// symmetric material, which have their own [`JoseError`] variants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyProblem {
    #[error("jwk member `{0}` {1}")]
    Member(&'static str, MemberProblem),
    #[error("jwk kty is not one of EC, RSA, OKP")]
    UnsupportedKty,
    #[error("jwk crv is not supported for its kty")]
    UnsupportedCurve,
    #[error("jwk member `{0}` is not canonical unpadded base64url")]
    Encoding(&'static str),
    #[error("jwk member `{member}` is not exactly {expected} octets")]
    Length {
        member: &'static str,
        expected: usize,
    },
    #[error("jwk member `{0}` has a leading zero octet")]
    LeadingZero(&'static str),
    #[error("rsa modulus is {bits} bits, outside 2048..=8192")]
    RsaModulusSize { bits: usize },
    #[error("rsa modulus is even")]
    RsaModulusEven,
    #[error("rsa exponent is not odd, at least 3 and below 2^33")]
    RsaExponent,
}

/// Why a token, proof or key was refused. See [`JoseError::code`] for the
/// stable label used in metrics and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("jws is longer than the {max} byte limit")]
    TooLong { max: usize },
    #[error("jws is not three non-empty dot-separated parts")]
    Malformed,
    #[error("jws {0} is not canonical unpadded base64url")]
    Encoding(JwsPart),
    #[error("jws {part} is not a usable json object: {reason}")]
    Json { part: JwsPart, reason: DecodeError },
    #[error("jws header member `{0}` {1}")]
    HeaderMember(&'static str, MemberProblem),
    #[error("jws header member `{0}` is not supported")]
    UnsupportedHeader(&'static str),
    #[error("alg is not one of ES256, ES384, EdDSA, PS256, RS256")]
    UnsupportedAlg,
    #[error("alg {alg} does not fit a {key} key")]
    AlgKeyMismatch { alg: JwsAlg, key: KeyKind },
    #[error("jwk is not meant for verifying {alg} signatures")]
    KeyUseMismatch { alg: JwsAlg },
    #[error("jwk carries private key material")]
    PrivateKeyInJwk,
    #[error("jwk is a symmetric (oct) key")]
    SymmetricJwk,
    #[error("{0}")]
    BadKey(KeyProblem),
    #[error("signature is not the fixed-length encoding {alg} requires")]
    MalformedSignature { alg: JwsAlg },
    #[error("signature does not verify")]
    BadSignature,
}

impl JoseError {
    /// A stable label for metrics and decision logs; one of a fixed set.
    pub fn code(&self) -> &'static str {
        match self {
            JoseError::TooLong { .. } => "jws_too_long",
            JoseError::Malformed | JoseError::Encoding(_) | JoseError::Json { .. } => {
                "malformed_jws"
            }
            JoseError::HeaderMember(..) => "malformed_header",
            JoseError::UnsupportedHeader(_) => "unsupported_header",
            JoseError::UnsupportedAlg => "unsupported_alg",
            JoseError::AlgKeyMismatch { .. } => "alg_key_mismatch",
            JoseError::KeyUseMismatch { .. } => "key_use_mismatch",
            JoseError::PrivateKeyInJwk => "private_key_in_jwk",
            JoseError::SymmetricJwk => "symmetric_jwk",
            JoseError::BadKey(_) => "bad_key",
            JoseError::MalformedSignature { .. } => "malformed_signature",
            JoseError::BadSignature => "bad_signature",
        }
    }
}

impl From<KeyProblem> for JoseError {
    fn from(p: KeyProblem) -> Self {
        JoseError::BadKey(p)
    }
}
