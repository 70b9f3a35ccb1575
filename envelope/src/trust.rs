//! Trust modes: what a service does with an envelope (docs/design.md §3.6).
//!
//! | mode              | valid envelope        | no envelope        | invalid envelope        |
//! |-------------------|-----------------------|--------------------|-------------------------|
//! | `ServiceEnforced` | ignored for authz     | service's own auth | ignored, logged         |
//! | `Hybrid`          | identity from envelope| service's own auth | 401                     |
//! | `GatewayEnforced` | identity from envelope| 401                | 401 (403 for audience)  |

use crate::error::EnvelopeError;
use crate::verify::VerifiedEnvelope;
use std::fmt;
use std::str::FromStr;

/// How far a service trusts the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrustMode {
    /// The service authorizes every request itself; envelopes are advisory.
    ServiceEnforced,
    /// A valid envelope is trusted; without one the service authorizes itself.
    Hybrid,
    /// Only requests carrying a valid envelope are served.
    GatewayEnforced,
}

impl TrustMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TrustMode::ServiceEnforced => "ServiceEnforced",
            TrustMode::Hybrid => "Hybrid",
            TrustMode::GatewayEnforced => "GatewayEnforced",
        }
    }
}

impl fmt::Display for TrustMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the three trust modes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("trust mode must be ServiceEnforced, Hybrid or GatewayEnforced")]
pub struct UnknownTrustMode;

impl FromStr for TrustMode {
    type Err = UnknownTrustMode;

    /// Case-insensitive; `_` and `-` are ignored (`gateway_enforced` works).
    fn from_str(text: &str) -> Result<TrustMode, UnknownTrustMode> {
        let folded: String = text
            .trim()
            .chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match folded.as_str() {
            "serviceenforced" => Ok(TrustMode::ServiceEnforced),
            "hybrid" => Ok(TrustMode::Hybrid),
            "gatewayenforced" => Ok(TrustMode::GatewayEnforced),
            _ => Err(UnknownTrustMode),
        }
    }
}

/// The outcome of looking for and verifying an envelope on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EnvelopeCheck {
    Absent,
    Valid(Box<VerifiedEnvelope>),
    Invalid(EnvelopeError),
}

/// What the service must do with the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Serve the request as the identity in the envelope.
    UseEnvelope(Box<VerifiedEnvelope>),
    /// Authorize the request with the service's own authentication.
    /// `ignored` holds the failure of an invalid envelope, to be logged.
    ServiceAuth { ignored: Option<EnvelopeError> },
    /// Answer with this status; do not call the handler.
    Reject(Rejection),
}

/// A response the service sends instead of handling the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// 401 or 403.
    pub status: u16,
    /// Stable problem code: `envelope_required`, `envelope_invalid` or
    /// `envelope_audience_mismatch`.
    pub code: &'static str,
    /// The envelope check that failed, when one did.
    pub cause: Option<EnvelopeError>,
}

/// The trust-mode table as a function.
pub fn decide(mode: TrustMode, check: EnvelopeCheck) -> Action {
    match (mode, check) {
        (TrustMode::ServiceEnforced, EnvelopeCheck::Valid(_) | EnvelopeCheck::Absent) => {
            Action::ServiceAuth { ignored: None }
        }
        (TrustMode::ServiceEnforced, EnvelopeCheck::Invalid(e)) => {
            Action::ServiceAuth { ignored: Some(e) }
        }
        (TrustMode::Hybrid | TrustMode::GatewayEnforced, EnvelopeCheck::Valid(v)) => {
            Action::UseEnvelope(v)
        }
        (TrustMode::Hybrid, EnvelopeCheck::Absent) => Action::ServiceAuth { ignored: None },
        (TrustMode::Hybrid, EnvelopeCheck::Invalid(e)) => Action::Reject(Rejection {
            status: 401,
            code: "envelope_invalid",
            cause: Some(e),
        }),
        (TrustMode::GatewayEnforced, EnvelopeCheck::Absent) => Action::Reject(Rejection {
            status: 401,
            code: "envelope_required",
            cause: None,
        }),
        (TrustMode::GatewayEnforced, EnvelopeCheck::Invalid(e)) => {
            let audience = matches!(e, EnvelopeError::AudienceMismatch { .. });
            Action::Reject(Rejection {
                status: if audience { 403 } else { 401 },
                code: if audience {
                    "envelope_audience_mismatch"
                } else {
                    "envelope_invalid"
                },
                cause: Some(e),
            })
        }
    }
}
