//! Service-side configuration from environment variables with the names
//! existing deployments use (DESIGN.md 3.6), read through [`EnvSource`] so
//! tests never touch the process environment.
//!
//! | name | meaning | default |
//! |---|---|---|
//! | `Router__Enabled` | process envelopes at all | `true` |
//! | `Router__AuthorizationTrustMode` | `ServiceEnforced`, `Hybrid`, `GatewayEnforced` | `ServiceEnforced` |
//! | `Router__IdentityEnvelopeSigningKey` | a key the gateway signs with (shared HS256 secret or key spec) | none |
//! | `Router__IdentityEnvelopeSigningKeyId` | its key id | `default` |
//! | `Router__IdentityEnvelopeAcceptedKeys` | more keys: `kid=spec;kid=spec` | none |
//! | `Router__IdentityEnvelopeClockSkewSeconds` | allowed clock difference, 0 to 300 | 30 |
//! | `Router__IdentityEnvelopeMaxLifetimeSeconds` | longest `exp - iat` accepted, 1 to 3600 | 300 |
//! | `Router__IdentityEnvelopeAudience` | this service's name | required with keys |
//! | `Router__IdentityEnvelopeIssuer` | expected gateway id | any |

use crate::keys::{Key, KeyError, KeyId, Keyring};
use crate::trust::TrustMode;
use crate::verify::{
    Verifier, VerifierSettings, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_MAX_LIFETIME_SECS,
};
use std::collections::HashMap;
use std::fmt;

pub const ENV_ENABLED: &str = "Router__Enabled";
pub const ENV_TRUST_MODE: &str = "Router__AuthorizationTrustMode";
pub const ENV_SIGNING_KEY: &str = "Router__IdentityEnvelopeSigningKey";
pub const ENV_SIGNING_KEY_ID: &str = "Router__IdentityEnvelopeSigningKeyId";
pub const ENV_ACCEPTED_KEYS: &str = "Router__IdentityEnvelopeAcceptedKeys";
pub const ENV_CLOCK_SKEW: &str = "Router__IdentityEnvelopeClockSkewSeconds";
pub const ENV_MAX_LIFETIME: &str = "Router__IdentityEnvelopeMaxLifetimeSeconds";
pub const ENV_AUDIENCE: &str = "Router__IdentityEnvelopeAudience";
pub const ENV_ISSUER: &str = "Router__IdentityEnvelopeIssuer";

/// Folds a variable name the way DESIGN.md 3.2 matches them: case-insensitive,
/// `_` ignored, so `ROUTER__ENABLED` and `router_enabled` both name
/// `Router__Enabled`.
pub fn fold_env_name(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Where configuration values come from.
pub trait EnvSource {
    /// Every variable, as `(name, value)`.
    fn entries(&self) -> Vec<(String, String)>;

    /// The value of the variable matching `name` (see [`fold_env_name`]).
    fn get(&self, name: &str) -> Option<String> {
        let wanted = fold_env_name(name);
        self.entries()
            .into_iter()
            .find(|(k, _)| fold_env_name(k) == wanted)
            .map(|(_, v)| v)
    }
}

/// The process environment. Variables that are not valid UTF-8 are skipped.
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn entries(&self) -> Vec<(String, String)> {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    }
}

impl EnvSource for HashMap<String, String> {
    fn entries(&self) -> Vec<(String, String)> {
        self.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// One configuration problem, named by variable. Never contains a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

/// A service's envelope settings, checked.
#[derive(Debug)]
pub struct ServiceConfig {
    pub enabled: bool,
    pub mode: TrustMode,
    /// `None` when no key is configured (only allowed in `ServiceEnforced`).
    pub verifier: Option<Verifier>,
}

impl ServiceConfig {
    /// Reads and checks every variable; returns all problems at once.
    pub fn from_env(env: &dyn EnvSource) -> Result<ServiceConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut fail = |variable, problem: String| errors.push(ConfigError { variable, problem });

        let enabled = match env.get(ENV_ENABLED).map(|v| v.trim().to_ascii_lowercase()) {
            None => true,
            Some(v) if matches!(v.as_str(), "true" | "1" | "yes") => true,
            Some(v) if matches!(v.as_str(), "false" | "0" | "no") => false,
            Some(_) => {
                fail(ENV_ENABLED, "must be true or false".into());
                true
            }
        };
        let mode = match env.get(ENV_TRUST_MODE) {
            None => TrustMode::ServiceEnforced,
            Some(v) => v
                .parse()
                .unwrap_or_else(|e: crate::trust::UnknownTrustMode| {
                    fail(ENV_TRUST_MODE, e.to_string());
                    TrustMode::ServiceEnforced
                }),
        };
        let mut seconds = |variable, default: u64, max: u64| match env.get(variable) {
            None => default,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) if n <= max && (variable != ENV_MAX_LIFETIME || n > 0) => n,
                _ => {
                    fail(
                        variable,
                        format!("must be a whole number of seconds up to {max}"),
                    );
                    default
                }
            },
        };
        let clock_skew_secs = seconds(ENV_CLOCK_SKEW, DEFAULT_CLOCK_SKEW_SECS, 300);
        let max_lifetime_secs = seconds(ENV_MAX_LIFETIME, DEFAULT_MAX_LIFETIME_SECS, 3600);

        let mut keyring = Keyring::new();
        if let Some(accepted) = env.get(ENV_ACCEPTED_KEYS) {
            match Keyring::parse_list(&accepted) {
                Ok(ring) => keyring = ring,
                Err(e) => fail(ENV_ACCEPTED_KEYS, e.to_string()),
            }
        }
        if let Some(secret) = env.get(ENV_SIGNING_KEY) {
            let kid = env
                .get(ENV_SIGNING_KEY_ID)
                .unwrap_or_else(|| "default".into());
            let key = KeyId::new(kid.trim())
                .map_err(|e| (ENV_SIGNING_KEY_ID, e))
                .and_then(|kid| {
                    Key::parse_compat(kid, secret.trim()).map_err(|e| (ENV_SIGNING_KEY, e))
                });
            match key.and_then(|k| keyring.insert(k).map_err(|e| (ENV_SIGNING_KEY_ID, e))) {
                Ok(()) => {}
                Err((variable, e @ KeyError::DuplicateKid(_))) => {
                    fail(variable, format!("{e} (also in {ENV_ACCEPTED_KEYS})"))
                }
                Err((variable, e)) => fail(variable, e.to_string()),
            }
        }
        let audience = env.get(ENV_AUDIENCE).map(|a| a.trim().to_owned());
        let issuer = env.get(ENV_ISSUER).map(|i| i.trim().to_owned());

        let needs_keys = enabled && mode != TrustMode::ServiceEnforced;
        if needs_keys && keyring.is_empty() {
            fail(
                ENV_SIGNING_KEY,
                format!("{mode} needs {ENV_SIGNING_KEY} or {ENV_ACCEPTED_KEYS}"),
            );
        }
        let verifier = match audience {
            Some(audience) if !audience.is_empty() && !keyring.is_empty() => Some(Verifier::new(
                keyring,
                VerifierSettings {
                    audience,
                    issuer: issuer.filter(|i| !i.is_empty()),
                    clock_skew_secs,
                    max_lifetime_secs,
                },
            )),
            _ if !keyring.is_empty() => {
                fail(
                    ENV_AUDIENCE,
                    "is required when envelope keys are configured".into(),
                );
                None
            }
            _ => None,
        };
        if errors.is_empty() {
            Ok(ServiceConfig {
                enabled,
                mode,
                verifier,
            })
        } else {
            Err(errors)
        }
    }
}
