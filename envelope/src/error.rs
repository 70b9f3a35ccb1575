//! Why an envelope was refused. Each variant has a stable `code()` used in
//! test vectors, logs, metrics labels and problem bodies; messages name the
//! failed check and never echo header values.

/// A failed envelope check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope header {0} is missing")]
    MissingHeader(&'static str),
    #[error("envelope header {0} appears more than once")]
    DuplicateHeader(&'static str),
    #[error("envelope header {0} is too large")]
    HeaderTooLarge(&'static str),
    #[error("envelope header {0} is not visible ascii")]
    MalformedHeader(&'static str),
    #[error("envelope algorithm is not HS256 or EdDSA")]
    UnsupportedAlg,
    #[error("envelope key id is not in the accepted keyring")]
    UnknownKid,
    #[error("envelope algorithm {header} is not the algorithm of key {kid} ({key})")]
    AlgNotAllowedForKey {
        kid: String,
        header: &'static str,
        key: &'static str,
    },
    #[error("envelope iat or exp header is not a canonical decimal integer")]
    MalformedTimestamp,
    #[error("envelope signature is not canonical unpadded base64url")]
    MalformedSignature,
    #[error("envelope signature does not verify with key {kid}")]
    BadSignature { kid: String },
    #[error("envelope payload is malformed: {0}")]
    MalformedPayload(&'static str),
    #[error("envelope payload version {0} is not supported")]
    UnsupportedVersion(u32),
    #[error("envelope payload iat/exp differ from the signed headers")]
    TimestampMismatch,
    #[error("envelope expired {0} s ago (beyond the allowed clock skew)")]
    Expired(u64),
    #[error("envelope issued {0} s in the future (beyond the allowed clock skew)")]
    IssuedInFuture(u64),
    #[error("envelope lifetime of {lifetime} s is outside 1..={max} s")]
    BadLifetime { lifetime: u64, max: u64 },
    #[error("envelope issuer is not the configured gateway")]
    IssuerMismatch,
    #[error("envelope audience {seen} is not this service ({expected})")]
    AudienceMismatch { expected: String, seen: String },
    #[error("envelope was issued for another request ({0} differs)")]
    RequestMismatch(&'static str),
}

impl EnvelopeError {
    /// A stable, lowercase code for this failure.
    pub fn code(&self) -> &'static str {
        match self {
            EnvelopeError::MissingHeader(_) => "missing_header",
            EnvelopeError::DuplicateHeader(_) => "duplicate_header",
            EnvelopeError::HeaderTooLarge(_) => "header_too_large",
            EnvelopeError::MalformedHeader(_) => "malformed_header",
            EnvelopeError::UnsupportedAlg => "unsupported_alg",
            EnvelopeError::UnknownKid => "unknown_kid",
            EnvelopeError::AlgNotAllowedForKey { .. } => "alg_not_allowed_for_key",
            EnvelopeError::MalformedTimestamp => "malformed_timestamp",
            EnvelopeError::MalformedSignature => "malformed_signature",
            EnvelopeError::BadSignature { .. } => "bad_signature",
            EnvelopeError::MalformedPayload(_) => "malformed_payload",
            EnvelopeError::UnsupportedVersion(_) => "unsupported_version",
            EnvelopeError::TimestampMismatch => "timestamp_mismatch",
            EnvelopeError::Expired(_) => "expired",
            EnvelopeError::IssuedInFuture(_) => "issued_in_future",
            EnvelopeError::BadLifetime { .. } => "bad_lifetime",
            EnvelopeError::IssuerMismatch => "issuer_mismatch",
            EnvelopeError::AudienceMismatch { .. } => "audience_mismatch",
            EnvelopeError::RequestMismatch(_) => "request_mismatch",
        }
    }
}
