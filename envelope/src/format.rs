//! The wire format of SPEC.md: header names, the payload document, and the
//! exact signing input.

use crate::claims::{AuthMethod, Confirmation};
use crate::error::EnvelopeError;
use serde::{Deserialize, Serialize};

pub const HEADER_ENVELOPE: &str = "X-StellaOps-Identity-Envelope";
pub const HEADER_SIGNATURE: &str = "X-StellaOps-Identity-Envelope-Signature";
pub const HEADER_ALG: &str = "X-StellaOps-Identity-Envelope-Alg";
pub const HEADER_KID: &str = "X-StellaOps-Identity-Envelope-Kid";
pub const HEADER_IAT: &str = "X-StellaOps-Identity-Envelope-Iat";
pub const HEADER_EXP: &str = "X-StellaOps-Identity-Envelope-Exp";

/// All six header names, in signing-input order after the domain line.
pub const HEADER_NAMES: [&str; 6] = [
    HEADER_ENVELOPE,
    HEADER_SIGNATURE,
    HEADER_ALG,
    HEADER_KID,
    HEADER_IAT,
    HEADER_EXP,
];

/// The payload format version this crate writes and reads.
pub const VERSION: u32 = 1;
/// Longest `X-StellaOps-Identity-Envelope` value accepted, in bytes.
pub const MAX_ENVELOPE_LEN: usize = 16 * 1024;
/// Longest value accepted for any of the other five headers, in bytes.
pub const MAX_SMALL_HEADER_LEN: usize = 256;
/// First line of the signing input; separates envelope signatures from any
/// other use of the same key.
pub const SIGNING_DOMAIN: &str = "StellaOps-Identity-Envelope/1";

/// The payload document. Field order here is the order written on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    pub ver: u32,
    pub iss: String,
    pub aud: String,
    #[serde(deserialize_with = "crate::encoding::nullable")]
    pub sub: Option<String>,
    #[serde(deserialize_with = "crate::encoding::nullable")]
    pub tenant: Option<String>,
    #[serde(deserialize_with = "crate::encoding::nullable")]
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    pub roles: Vec<String>,
    pub auth_method: AuthMethod,
    pub cnf: Confirmation,
    pub method: String,
    pub path: String,
    pub request_id: String,
    pub iat: u64,
    pub exp: u64,
}

/// The six header values of one envelope, as received or as produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeaders {
    pub envelope: String,
    pub signature: String,
    pub alg: String,
    pub kid: String,
    pub iat: String,
    pub exp: String,
}

impl EnvelopeHeaders {
    /// The headers as `(name, value)` pairs, ready to set on a request.
    pub fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            (HEADER_ENVELOPE, &self.envelope),
            (HEADER_SIGNATURE, &self.signature),
            (HEADER_ALG, &self.alg),
            (HEADER_KID, &self.kid),
            (HEADER_IAT, &self.iat),
            (HEADER_EXP, &self.exp),
        ]
    }

    /// The headers as owned `(name, value)` pairs: values move into the
    /// request without another copy.
    pub fn into_pairs(self) -> [(&'static str, String); 6] {
        [
            (HEADER_ENVELOPE, self.envelope),
            (HEADER_SIGNATURE, self.signature),
            (HEADER_ALG, self.alg),
            (HEADER_KID, self.kid),
            (HEADER_IAT, self.iat),
            (HEADER_EXP, self.exp),
        ]
    }

    /// Collects the envelope headers from every field line of a request.
    /// Header names match case-insensitively. `Ok(None)` when none of the six
    /// is present; an error when only some are, when one appears more than
    /// once, or when a value is too long or not visible ASCII.
    pub fn from_fields<'a, I>(fields: I) -> Result<Option<EnvelopeHeaders>, EnvelopeError>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut slots: [Option<String>; 6] = Default::default();
        for (name, value) in fields {
            let Some(index) = HEADER_NAMES
                .iter()
                .position(|h| h.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            if slots[index].is_some() {
                return Err(EnvelopeError::DuplicateHeader(HEADER_NAMES[index]));
            }
            let limit = if index == 0 {
                MAX_ENVELOPE_LEN
            } else {
                MAX_SMALL_HEADER_LEN
            };
            if value.len() > limit {
                return Err(EnvelopeError::HeaderTooLarge(HEADER_NAMES[index]));
            }
            if !value.iter().all(|b| b.is_ascii_graphic()) {
                return Err(EnvelopeError::MalformedHeader(HEADER_NAMES[index]));
            }
            // Visible ASCII is valid UTF-8.
            slots[index] = Some(String::from_utf8_lossy(value).into_owned());
        }
        if slots.iter().all(Option::is_none) {
            return Ok(None);
        }
        if let Some(missing) = slots.iter().position(Option::is_none) {
            return Err(EnvelopeError::MissingHeader(HEADER_NAMES[missing]));
        }
        let [envelope, signature, alg, kid, iat, exp] = slots.map(Option::unwrap_or_default);
        Ok(Some(EnvelopeHeaders {
            envelope,
            signature,
            alg,
            kid,
            iat,
            exp,
        }))
    }
}

/// The exact bytes signed: the domain line, then the Alg, Kid, Iat and Exp
/// header values, then the envelope header value, joined by LF. No value can
/// contain LF (each has a restricted alphabet), so the join is unambiguous.
pub fn signing_input(alg: &str, kid: &str, iat: &str, exp: &str, envelope: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(
        SIGNING_DOMAIN.len() + alg.len() + kid.len() + iat.len() + exp.len() + envelope.len() + 5,
    );
    for (i, part) in [SIGNING_DOMAIN, alg, kid, iat, exp, envelope]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            input.push(b'\n');
        }
        input.extend_from_slice(part.as_bytes());
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field<'a>(name: &'a str, value: &'a str) -> (&'a str, &'a [u8]) {
        (name, value.as_bytes())
    }

    #[test]
    fn absent_partial_and_duplicate_headers_are_told_apart() {
        assert_eq!(
            EnvelopeHeaders::from_fields([field("accept", "*/*")]),
            Ok(None)
        );
        assert_eq!(
            EnvelopeHeaders::from_fields([field("x-stellaops-identity-envelope", "e30")]),
            Err(EnvelopeError::MissingHeader(HEADER_SIGNATURE))
        );
        let mut all: Vec<_> = HEADER_NAMES.iter().map(|n| field(n, "x")).collect();
        assert!(EnvelopeHeaders::from_fields(all.clone()).unwrap().is_some());
        all.push(field("X-STELLAOPS-IDENTITY-ENVELOPE-KID", "y"));
        assert_eq!(
            EnvelopeHeaders::from_fields(all),
            Err(EnvelopeError::DuplicateHeader(HEADER_KID))
        );
    }

    #[test]
    fn signing_input_is_the_documented_byte_string() {
        assert_eq!(
            signing_input("HS256", "k1", "10", "70", "e30"),
            b"StellaOps-Identity-Envelope/1\nHS256\nk1\n10\n70\ne30".to_vec()
        );
    }
}
