//! The one shape of a configuration problem, shared by every crate that
//! checks part of the configuration (policies, Authority settings, the
//! gateway's file): a key path and what is wrong there, never the value.

use std::fmt;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path (`gateway.auth.authority.issuer`, `services[0].name`),
    /// or the file name for problems with the file as a whole.
    pub path: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}
