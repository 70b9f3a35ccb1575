//! The vocabulary every Stella Gateway crate shares: who the caller is
//! ([`identity`]), what time it is ([`clock`]), how a configuration problem
//! is reported ([`problem`]), the span helpers that put work into the
//! request's trace ([`trace`]), and the one YAML reader ([`yaml`]).
//!
//! It depends on no runtime (no tokio, hyper or pingora) and on no trace
//! exporter: the gateway shell installs the exporter, the domain crates only
//! speak the OpenTelemetry API. See docs/architecture.md for the crate
//! graph.

pub mod clock;
pub mod identity;
pub mod problem;
pub mod trace;
#[cfg(feature = "yaml")]
pub mod yaml;

pub use clock::{unix_now, Clock, ManualClock, SystemClock};
pub use problem::ConfigError;
