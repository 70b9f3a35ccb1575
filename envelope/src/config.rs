//! Service-side configuration from environment variables with the names
//! existing deployments use (docs/design.md §3.6), read through [`EnvSource`]
//! so tests never touch the process environment.
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
//! | `Router__ConfigFile` | a file of the names above (`Name=value` lines) that overrides the environment and can change at runtime | none |
//!
//! `Router__ConfigFile` is read by [`ServiceConfig::load`] and the
//! reloadable [`ServiceConfigHandle`](crate::reload::ServiceConfigHandle);
//! [`parse_config_file`] and [`ServiceConfig::from_env_and_file`] are the
//! pure parts, given the file's text. [`ServiceConfig::from_env`] reads the
//! variables alone and refuses `Router__ConfigFile` rather than ignore it.

use crate::keys::{Key, KeyError, KeyId, Keyring};
use crate::trust::TrustMode;
use crate::verify::{
    Verifier, VerifierSettings, DEFAULT_CLOCK_SKEW_SECS, DEFAULT_MAX_LIFETIME_SECS,
};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

pub const ENV_ENABLED: &str = "Router__Enabled";
pub const ENV_TRUST_MODE: &str = "Router__AuthorizationTrustMode";
pub const ENV_SIGNING_KEY: &str = "Router__IdentityEnvelopeSigningKey";
pub const ENV_SIGNING_KEY_ID: &str = "Router__IdentityEnvelopeSigningKeyId";
pub const ENV_ACCEPTED_KEYS: &str = "Router__IdentityEnvelopeAcceptedKeys";
pub const ENV_CLOCK_SKEW: &str = "Router__IdentityEnvelopeClockSkewSeconds";
pub const ENV_MAX_LIFETIME: &str = "Router__IdentityEnvelopeMaxLifetimeSeconds";
pub const ENV_AUDIENCE: &str = "Router__IdentityEnvelopeAudience";
pub const ENV_ISSUER: &str = "Router__IdentityEnvelopeIssuer";
pub const ENV_CONFIG_FILE: &str = "Router__ConfigFile";

/// The variables a `Router__ConfigFile` may set: every service setting, but
/// not `Router__ConfigFile` itself.
pub const FILE_VARIABLES: &[&str] = &[
    ENV_ENABLED,
    ENV_TRUST_MODE,
    ENV_SIGNING_KEY,
    ENV_SIGNING_KEY_ID,
    ENV_ACCEPTED_KEYS,
    ENV_CLOCK_SKEW,
    ENV_MAX_LIFETIME,
    ENV_AUDIENCE,
    ENV_ISSUER,
];

/// Folds a variable name the way docs/design.md §3.2 matches them:
/// case-insensitive, `_` ignored, so `ROUTER__ENABLED` and `router_enabled`
/// both name `Router__Enabled`.
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

/// One setting from a `Router__ConfigFile`.
#[derive(Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// The variable's canonical name (one of [`FILE_VARIABLES`]), whatever
    /// spelling the file used.
    pub name: &'static str,
    /// The value, unquoted. Empty means "not set": the file removes the
    /// variable from the environment (how a key the environment sets is
    /// dropped at the end of a rotation).
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Debug for FileEntry {
    // Values may be keys: never shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileEntry")
            .field("name", &self.name)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

/// Parses the text of a `Router__ConfigFile`: `Name=value` lines in the
/// env-file format compose and systemd read. Blank lines and lines starting
/// with `#` are skipped (a `#` after a value is part of it); `export ` before a name is tolerated; one pair of
/// matching `"` or `'` around a value is removed (nothing inside is escaped).
/// Names match as in [`fold_env_name`] and must be one of
/// [`FILE_VARIABLES`]; a name set twice is an error. Every problem is
/// reported at once, as `Router__ConfigFile: line N: ...`, never with a
/// value.
pub fn parse_config_file(text: &str) -> Result<Vec<FileEntry>, Vec<ConfigError>> {
    match parse_lines(text) {
        (entries, errors) if errors.is_empty() => Ok(entries),
        (_, errors) => Err(errors),
    }
}

/// The entries of the lines that parse, and the problems of the others.
fn parse_lines(text: &str) -> (Vec<FileEntry>, Vec<ConfigError>) {
    let mut entries: Vec<FileEntry> = Vec::new();
    let mut errors = Vec::new();
    let mut fail = |line: usize, problem: String| {
        errors.push(ConfigError {
            variable: ENV_CONFIG_FILE,
            problem: format!("line {line}: {problem}"),
        })
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let statement = trimmed
            .strip_prefix("export ")
            .or_else(|| trimmed.strip_prefix("export\t"))
            .map(str::trim_start)
            .unwrap_or(trimmed);
        let Some((name, value)) = statement.split_once('=') else {
            fail(line, "expected Name=value".into());
            continue;
        };
        let name = name.trim();
        let folded = fold_env_name(name);
        if folded == fold_env_name(ENV_CONFIG_FILE) {
            fail(
                line,
                format!("{ENV_CONFIG_FILE} cannot be set in the file it names"),
            );
            continue;
        }
        let Some(canonical) = FILE_VARIABLES
            .iter()
            .copied()
            .find(|known| fold_env_name(known) == folded)
        else {
            // Only a name that looks like one of ours is shown: anything
            // else may be a value pasted on a line of its own.
            let looks_like_ours = folded.starts_with("router")
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            fail(
                line,
                if looks_like_ours {
                    format!("{name} is not a service envelope variable (SPEC.md section 7)")
                } else {
                    "the name is not a service envelope variable (SPEC.md section 7)".into()
                },
            );
            continue;
        };
        let Some(value) = unquote(value.trim()) else {
            fail(
                line,
                format!("the value of {canonical} has an unmatched quote"),
            );
            continue;
        };
        if let Some(first) = entries.iter().find(|e| e.name == canonical) {
            fail(
                line,
                format!("{canonical} is already set on line {}", first.line),
            );
            continue;
        }
        entries.push(FileEntry {
            name: canonical,
            value: value.to_owned(),
            line,
        });
    }
    (entries, errors)
}

/// Removes one pair of matching surrounding quotes. `None` when a quote
/// opens or closes the value without its partner.
fn unquote(value: &str) -> Option<&str> {
    for quote in ['"', '\''] {
        let opens = value.starts_with(quote);
        let closes = value.len() >= 2 && value.ends_with(quote);
        match (opens, closes) {
            (true, true) => return Some(&value[1..value.len() - 1]),
            (false, false) => {}
            _ => return None,
        }
    }
    Some(value)
}

/// The environment overlaid by a config file's entries: a variable the file
/// sets replaces every spelling of it in the environment, and an empty value
/// in the file removes it. `Router__ConfigFile` itself is left out, having
/// been followed.
struct Overlay<'a> {
    env: &'a dyn EnvSource,
    file: &'a [FileEntry],
}

impl EnvSource for Overlay<'_> {
    fn entries(&self) -> Vec<(String, String)> {
        let config_file = fold_env_name(ENV_CONFIG_FILE);
        let mut entries: Vec<(String, String)> = self
            .env
            .entries()
            .into_iter()
            .filter(|(name, _)| {
                let folded = fold_env_name(name);
                folded != config_file && !self.file.iter().any(|e| fold_env_name(e.name) == folded)
            })
            .collect();
        entries.extend(
            self.file
                .iter()
                .filter(|e| !e.value.is_empty())
                .map(|e| (e.name.to_owned(), e.value.clone())),
        );
        entries
    }
}

/// The file named by `Router__ConfigFile` in `env`, if any. A blank value
/// names no file.
pub fn config_file_path(env: &dyn EnvSource) -> Option<PathBuf> {
    env.get(ENV_CONFIG_FILE)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
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
    ///
    /// Reads `env` alone: a `Router__ConfigFile` in it is reported as an
    /// error (a file silently not read would leave the service on settings
    /// the operator did not mean); use [`ServiceConfig::load`] or
    /// [`ServiceConfigHandle`](crate::reload::ServiceConfigHandle) to follow
    /// it.
    pub fn from_env(env: &dyn EnvSource) -> Result<ServiceConfig, Vec<ConfigError>> {
        let mut errors = Vec::new();
        if config_file_path(env).is_some() {
            errors.push(ConfigError {
                variable: ENV_CONFIG_FILE,
                problem: "names a file that ServiceConfig::from_env does not read \
                          (load with ServiceConfig::load or ServiceConfigHandle)"
                    .into(),
            });
        }
        match ServiceConfig::from_variables(env) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// The effective configuration: `env` overlaid by the text of the file
    /// `Router__ConfigFile` names (`None`: no file). Pure: the caller reads
    /// the file. Problems in the file and in the resulting settings are all
    /// reported at once; a setting that came from the file says so, with its
    /// line.
    pub fn from_env_and_file(
        env: &dyn EnvSource,
        file: Option<&str>,
    ) -> Result<ServiceConfig, Vec<ConfigError>> {
        // The well-formed lines apply even when others are bad, so the
        // settings' own problems are reported in the same pass.
        let (entries, mut errors) = file.map(parse_lines).unwrap_or_default();
        let overlay = Overlay {
            env,
            file: &entries,
        };
        match ServiceConfig::from_variables(&overlay) {
            Ok(config) if errors.is_empty() => Ok(config),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more.into_iter().map(|mut e| {
                    if let Some(entry) = entries.iter().find(|f| f.name == e.variable) {
                        e.problem = format!(
                            "{} (set in {ENV_CONFIG_FILE} line {})",
                            e.problem, entry.line
                        );
                    }
                    e
                }));
                Err(errors)
            }
        }
    }

    /// [`ServiceConfig::from_env_and_file`] with the file `env` names read
    /// from disk. A file that cannot be read is an error naming
    /// `Router__ConfigFile` and the path.
    pub fn load(env: &dyn EnvSource) -> Result<ServiceConfig, Vec<ConfigError>> {
        let text = read_config_file(env)?;
        ServiceConfig::from_env_and_file(env, text.as_deref())
    }

    /// The kids of the accepted keys, in order.
    pub fn accepted_kids(&self) -> impl Iterator<Item = &KeyId> {
        self.verifier.iter().flat_map(|v| v.keyring().kids())
    }

    /// Whether `other` has exactly these settings and keys (key material
    /// compared in constant time): a reload to it would change nothing.
    pub fn same_settings(&self, other: &ServiceConfig) -> bool {
        self.enabled == other.enabled
            && self.mode == other.mode
            && match (&self.verifier, &other.verifier) {
                (None, None) => true,
                (Some(a), Some(b)) => {
                    a.settings() == b.settings() && a.keyring().same_keys(b.keyring())
                }
                _ => false,
            }
    }

    /// Checks the service variables in `env` (after any file overlay).
    fn from_variables(env: &dyn EnvSource) -> Result<ServiceConfig, Vec<ConfigError>> {
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

/// The text of the file `env` names, `None` when it names none.
pub(crate) fn read_config_file(env: &dyn EnvSource) -> Result<Option<String>, Vec<ConfigError>> {
    let Some(path) = config_file_path(env) else {
        return Ok(None);
    };
    std::fs::read_to_string(&path).map(Some).map_err(|e| {
        vec![ConfigError {
            variable: ENV_CONFIG_FILE,
            problem: format!("cannot read {}: {}", path.display(), e.kind()),
        }]
    })
}
