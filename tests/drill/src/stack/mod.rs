//! A drill's private copy of the local stack on free loopback ports: the
//! test Authority, sample service instances (`stella-echo-service`, each
//! with a `Router__` file it reloads), and the gateway, whose configuration
//! is written through the gateway's own file types
//! (`stella_gateway::config::file`). Every process is started with its
//! stdout and stderr in the drill's `logs/` folder and stopped when the
//! drill ends.

mod admin;
mod config;
mod processes;

pub use processes::{alive, authority_command, rss_kib, token_command};

use crate::harness::Abort;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use stella_gateway::config::file::{
    AuthoritySection, EnvelopeKeySection, FileConfig, HealthCheckSection, RevocationSection,
    ServiceSection, TlsSection,
};
use stella_test_support::{free_ports, try_request, Metrics, Process, Response};

/// How long a process may take to print its ready line.
const START: Duration = Duration::from_secs(60);
/// How long a stopped process may take to exit before it is killed.
const GRACE: Duration = Duration::from_secs(15);
/// The audience of the Authority's tokens the gateway accepts.
const API_AUDIENCE: &str = "http://gateway.local/api";

/// How the gateway holds its envelope keys.
#[derive(Clone, Debug)]
pub enum Envelope {
    /// `identity_envelope_signing_key` and `_key_id`: the single-key form.
    Single(String),
    /// The keyring: the active kid and each kid with its key in a file
    /// under `config/keys/` (`true`) or inline (`false`).
    Ring(String, Vec<(String, bool)>),
}

/// One sample service instance.
pub struct Service {
    pub process: Option<Process>,
    pub addr: SocketAddr,
    pub audience: String,
    pub mode: String,
    /// The kids it accepts (their keys from [`Stack::keys`]).
    pub accepted: Vec<String>,
}

/// A `services[]` entry of the gateway: its name, instances, mode and the
/// path of its instances' health check.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub instances: Vec<String>,
    pub mode: String,
    pub health: String,
}

/// The stack and the settings its configuration files are written from; a
/// drill changes a setting, then rewrites the file and reloads.
#[derive(Default)]
pub struct Stack {
    /// Envelope keys by kid, as `keys generate` prints them (`hs256:...`).
    pub keys: BTreeMap<String, String>,
    /// The kids a service accepts when started.
    pub default_kids: Vec<String>,
    pub authority: Option<Process>,
    /// Extra environment of the Authority (a restarted one keeps its keys
    /// with `AUTHORITY_KEYS_FILE`).
    pub authority_env: Vec<(String, String)>,
    pub issuer: String,
    pub authority_port: u16,
    /// Token lifetime asked of the Authority.
    pub token_ttl: u64,
    pub services: BTreeMap<String, Service>,
    /// `Router__IdentityEnvelopeClockSkewSeconds` of every service.
    pub service_skew: Option<u64>,
    /// The bearer token `echo-legacy` (ServiceEnforced) accepts.
    pub legacy_token: String,
    pub bearer_token: String,
    pub readonly_token: String,
    pub routes: Vec<Route>,
    pub gateway: Option<Process>,
    /// A gateway process this drill did not start itself (one started by
    /// `stella-gateway upgrade`), stopped by pid at the end.
    pub adopted: Option<u32>,
    /// Extra environment of the gateway (`Gateway__...` overrides).
    pub gateway_env: Vec<(String, String)>,
    pub http_port: u16,
    pub admin_port: u16,
    pub envelope: Option<Envelope>,
    pub envelope_lifetime: u64,
    /// More Authority settings (refresh, max-stale, state_dir, ...); the
    /// issuer, audiences and algorithms are filled in.
    pub authority_settings: AuthoritySection,
    pub tls: Option<TlsSection>,
    /// Replicas of `echo` (1: one instance named `echo`).
    pub echo_replicas: usize,
    /// Sample services in other languages (`python`, `node`, `go`:
    /// samples/), each started as `sample-<language>` in GatewayEnforced
    /// with its routes from samples/policies.
    pub samples: Vec<String>,
    /// `gateway.auth.dpop.replay_store` (a Redis the replicas share; the
    /// revocation list is shared through it too).
    pub replay_store: Option<String>,
    /// `gateway.revocation`.
    pub revocation: Option<RevocationSection>,
    /// Routes appended to the drill's copy of `policies/echo.yaml` (YAML
    /// list items, indented as in that file).
    pub extra_echo_routes: String,
}

impl Stack {
    pub fn new() -> Stack {
        Stack {
            default_kids: vec!["k1".into()],
            token_ttl: 3600,
            envelope_lifetime: 60,
            echo_replicas: 1,
            ..Stack::default()
        }
    }

    /// `http://127.0.0.1:PORT` of the public listener.
    pub fn gw(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn admin(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    /// The port of the TLS listener, when the stack has one.
    pub fn tls_port(&self) -> Option<u16> {
        let addr = self.tls.as_ref()?.addr.as_deref()?;
        addr.rsplit(':').next()?.parse().ok()
    }

    pub fn service(&self, instance: &str) -> &Service {
        &self.services[instance]
    }

    /// `Router__IdentityEnvelopeAcceptedKeys` for these kids.
    pub fn accepted_keys(&self, kids: &[String]) -> String {
        kids.iter()
            .map(|k| format!("{k}={}", self.keys.get(k).map(String::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(";")
    }
}

fn gw_addr(st: &Stack) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], st.http_port))
}

fn admin_addr(st: &Stack) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], st.admin_port))
}

/// The status of one request (0: no answer within 5 s).
pub fn status_at(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    try_request(addr, method, path, headers, b"", Duration::from_secs(5))
        .map(|r| r.status)
        .unwrap_or(0)
}

/// A GET's body as JSON (null when there is no answer or no JSON).
pub fn get_json(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Value {
    try_request(addr, "GET", path, headers, b"", Duration::from_secs(5))
        .ok()
        .and_then(|r| serde_json::from_slice(&r.body).ok())
        .unwrap_or(Value::Null)
}

/// The kids of an array of kid strings or of objects with a `kid`.
pub fn kids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k.as_str().or_else(|| k["kid"].as_str()).map(str::to_owned))
        .collect()
}

/// The configuration as YAML without the unset (null) keys and empty
/// lists, so the file reads like one written by hand.
pub fn yaml_without_nulls(config: &FileConfig) -> Result<String, Abort> {
    fn prune(v: &mut serde_yaml::Value) {
        if let serde_yaml::Value::Mapping(m) = v {
            m.retain(|_, v| {
                prune(v);
                !(v.is_null()
                    || v.as_sequence().is_some_and(Vec::is_empty)
                    || v.as_mapping().is_some_and(|m| m.is_empty()))
            });
        } else if let serde_yaml::Value::Sequence(s) = v {
            s.iter_mut().for_each(prune);
        }
    }
    let mut value = serde_yaml::to_value(config).map_err(|e| Abort(format!("config: {e}")))?;
    prune(&mut value);
    serde_yaml::to_string(&value).map_err(|e| Abort(format!("config: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_configuration_has_no_unset_keys_and_reads_back_as_the_same_settings() {
        let mut config = FileConfig::default();
        config.gateway.id = Some("drill".into());
        config.gateway.listeners.http = Some("127.0.0.1:1".into());
        config.services = vec![ServiceSection {
            name: Some("echo".into()),
            upstreams: vec!["127.0.0.1:2".into()],
            ..ServiceSection::default()
        }];
        let text = yaml_without_nulls(&config).expect("serializes");
        assert!(
            !text.contains("null") && !text.contains("[]") && !text.contains("{}"),
            "{text}"
        );
        let back: FileConfig = serde_yaml::from_str(&text).expect("the gateway's types read it");
        assert_eq!(back.gateway.id.as_deref(), Some("drill"));
        assert_eq!(back.gateway.listeners.http.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(back.services[0].upstreams, ["127.0.0.1:2"]);
        assert_eq!(back.gateway.listeners.admin, None);
    }

    #[test]
    fn kids_are_read_from_strings_or_objects() {
        let strings = serde_json::json!(["k1", "k2"]);
        let objects = serde_json::json!([{"kid": "k2", "active": true}]);
        assert_eq!(kids_of(&strings), ["k1", "k2"]);
        assert_eq!(kids_of(&objects), ["k2"]);
        assert!(kids_of(&Value::Null).is_empty());
    }
}
