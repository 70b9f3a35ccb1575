//! The gateway binary started from a configuration the harness writes, and
//! [`Stack`]: Authority, `echo` and a gateway together.
//!
//! Ports: the gateway cannot bind port 0 and report the address. Pingora
//! binds each listener itself, inside the listening service's start
//! (`ListenerEndpoint` is built and bound there and never handed back to
//! the application), so `GATEWAY_READY` can only name the configured
//! addresses; its readiness check also connects to those. Reporting real
//! ports would need the gateway to pre-bind the sockets and pass them to
//! Pingora through its listen-fd table (the upgrade path). So the harness
//! picks free ports with [`free_ports`], and a start that fails (no ready
//! line in time, or the process exits) is retried with fresh ports.
//!
//! Known gap: when another process takes a chosen port first, Pingora
//! retries the bind in the background and the gateway keeps running; its
//! readiness check connects to the configured address, which the other
//! process answers, so `GATEWAY_READY` is printed for a listener the
//! gateway does not own. Closing that needs the gateway to announce only
//! listeners it bound (pre-binding, above).
//!
//! The binary: `CARGO_BIN_EXE_stella-gateway` is set only when compiling the
//! gateway package's own tests, so [`gateway_binary`] looks in the target
//! folder of the running test executable (cargo builds the package's
//! binaries before its integration tests run).

use crate::authority::Authority;
use crate::echo::Echo;
use crate::http::{request, Response};
use crate::metrics::Metrics;
use crate::policies::policies_dir;
use crate::process::{free_port, free_ports, wait_until, Process};
use crate::temp::TempDir;
use crate::{API_AUDIENCE, ENVELOPE_KEY, ENVELOPE_KID, GATEWAY_ID, START_TIMEOUT};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// `target/<profile>/stella-gateway`: the path cargo or nextest gives the
/// running test (`NEXTEST_BIN_EXE_*` / `CARGO_BIN_EXE_*` at run time), else
/// the one in [`binary_dir`](crate::binary_dir).
pub fn gateway_binary() -> PathBuf {
    if let Some(path) = crate::gateway_binary_from_env() {
        return path;
    }
    let binary =
        crate::binary_dir().join(format!("stella-gateway{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "{} not found: run `cargo build -p stella-gateway` first",
        binary.display()
    );
    binary
}

/// The TLS listener of a gateway under test.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `none`, `optional` or `required`.
    pub client_certificates: &'static str,
    pub client_ca_file: Option<PathBuf>,
}

/// A gateway configuration, written to a file on start.
pub struct GatewaySetup {
    issuer: String,
    authority: serde_json::Map<String, Value>,
    router: serde_json::Map<String, Value>,
    services: Vec<(String, Vec<String>, bool, &'static str)>,
    tls: Option<TlsSetup>,
    env: Vec<(String, String)>,
    policies_dir: PathBuf,
    /// `gateway.public_origin`, with `{http}` / `{tls}` replaced by the
    /// listener ports chosen at start.
    public_origin: Option<String>,
    /// Keys of `gateway.auth` besides `authority` (`dpop`,
    /// `allow_temporary_bypass`, ...).
    auth: serde_json::Map<String, Value>,
    /// Other keys of `gateway` (`watch_config`, `upstreams`, ...).
    gateway: serde_json::Map<String, Value>,
    /// Other keys of a service: (service, key, value).
    service_settings: Vec<(String, String, Value)>,
    /// Other keys of `gateway.listeners` (`http_trusted_proxies`, ...).
    listeners: serde_json::Map<String, Value>,
    /// Other keys of `gateway.listeners.tls` (`proxy_protocol`, ...).
    tls_listener: serde_json::Map<String, Value>,
}

impl GatewaySetup {
    /// The three services of the shipped policies, each on a port nobody
    /// listens on until [`service`](Self::service) names a real one.
    pub fn new(issuer: &str) -> GatewaySetup {
        let dead = free_ports(3);
        GatewaySetup {
            issuer: issuer.to_owned(),
            authority: serde_json::Map::new(),
            router: serde_json::Map::new(),
            services: vec![
                (
                    "echo".into(),
                    vec![format!("127.0.0.1:{}", dead[0])],
                    false,
                    "GatewayEnforced",
                ),
                (
                    "echo-hybrid".into(),
                    vec![format!("127.0.0.1:{}", dead[1])],
                    false,
                    "Hybrid",
                ),
                (
                    "echo-legacy".into(),
                    vec![format!("127.0.0.1:{}", dead[2])],
                    true,
                    "ServiceEnforced",
                ),
            ],
            tls: None,
            env: Vec::new(),
            policies_dir: policies_dir(),
            public_origin: None,
            auth: serde_json::Map::new(),
            gateway: serde_json::Map::new(),
            service_settings: Vec::new(),
            listeners: serde_json::Map::new(),
            tls_listener: serde_json::Map::new(),
        }
    }

    /// Sets another key of `gateway.listeners`.
    pub fn listener(mut self, key: &str, value: Value) -> GatewaySetup {
        self.listeners.insert(key.to_owned(), value);
        self
    }

    /// Sets another key of `gateway.listeners.tls` (with [`tls`](Self::tls)).
    pub fn tls_listener(mut self, key: &str, value: Value) -> GatewaySetup {
        self.tls_listener.insert(key.to_owned(), value);
        self
    }

    /// Sets another key of a service (`envelope_kid`, `health_check`, ...).
    pub fn service_setting(mut self, service: &str, key: &str, value: Value) -> GatewaySetup {
        self.service_settings
            .push((service.to_owned(), key.to_owned(), value));
        self
    }

    /// Adds a service besides those of the shipped policies, at `addr`, in
    /// `trust_mode`; its routes come from a policies folder of the test's
    /// own ([`policies`](Self::policies)).
    pub fn add_service(
        mut self,
        name: &str,
        addr: SocketAddr,
        trust_mode: &'static str,
    ) -> GatewaySetup {
        assert!(
            self.services.iter().all(|s| s.0 != name),
            "service {name} is already configured"
        );
        self.services
            .push((name.to_owned(), vec![addr.to_string()], false, trust_mode));
        self
    }

    /// Points a service at `addr`.
    pub fn service(self, name: &str, addr: SocketAddr) -> GatewaySetup {
        self.upstreams(name, &[&addr.to_string()])
    }

    /// Gives a service several upstreams, each `host:port` (names too).
    pub fn upstreams(mut self, name: &str, upstreams: &[&str]) -> GatewaySetup {
        let entry = self
            .services
            .iter_mut()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("no service {name} in the shipped policies"));
        entry.1 = upstreams.iter().map(|u| u.to_string()).collect();
        self
    }

    /// Sets a key of `gateway.auth.authority`.
    pub fn authority(mut self, key: &str, value: Value) -> GatewaySetup {
        self.authority.insert(key.into(), value);
        self
    }

    /// Sets a key of `router`.
    pub fn router(mut self, key: &str, value: Value) -> GatewaySetup {
        self.router.insert(key.into(), value);
        self
    }

    pub fn tls(mut self, tls: TlsSetup) -> GatewaySetup {
        self.tls = Some(tls);
        self
    }

    /// An environment variable of the gateway process (it starts with an
    /// empty environment otherwise).
    pub fn env(mut self, name: &str, value: &str) -> GatewaySetup {
        self.env.push((name.into(), value.into()));
        self
    }

    /// `gateway.public_origin`. `{http}` and `{tls}` stand for the ports
    /// of those listeners, chosen at start: `http://127.0.0.1:{http}` is
    /// the origin [`Gateway::origin`] names.
    pub fn public_origin(mut self, template: &str) -> GatewaySetup {
        self.public_origin = Some(template.into());
        self
    }

    /// Sets a key of `gateway.auth` other than `authority`, such as
    /// `dpop` or `allow_temporary_bypass`.
    pub fn auth(mut self, key: &str, value: Value) -> GatewaySetup {
        self.auth.insert(key.into(), value);
        self
    }

    /// Sets a key of `gateway` such as `watch_config`.
    pub fn gateway(mut self, key: &str, value: Value) -> GatewaySetup {
        self.gateway.insert(key.into(), value);
        self
    }

    /// `gateway.policies_dir` (the shipped policies by default).
    pub fn policies(mut self, dir: &Path) -> GatewaySetup {
        self.policies_dir = dir.to_path_buf();
        self
    }

    fn yaml(&self, http: u16, admin: u16, tls: Option<u16>) -> String {
        let mut authority = json!({
            "issuer": self.issuer,
            "require_https_metadata": false,
            "audiences": [API_AUDIENCE],
        });
        for (k, v) in &self.authority {
            authority[k] = v.clone();
        }
        let mut listeners = json!({
            "http": format!("127.0.0.1:{http}"),
            "admin": format!("127.0.0.1:{admin}"),
        });
        if let (Some(port), Some(t)) = (tls, &self.tls) {
            let mut section = json!({
                "addr": format!("127.0.0.1:{port}"),
                "cert_file": t.cert_file,
                "key_file": t.key_file,
                "client_certificates": t.client_certificates,
            });
            if let Some(ca) = &t.client_ca_file {
                section["client_ca_file"] = json!(ca);
            }
            for (k, v) in &self.tls_listener {
                section[k] = v.clone();
            }
            listeners["tls"] = section;
        }
        for (k, v) in &self.listeners {
            listeners[k] = v.clone();
        }
        let mut router = json!({
            "identity_envelope_signing_key": ENVELOPE_KEY,
            "identity_envelope_signing_key_id": ENVELOPE_KID,
        });
        for (k, v) in &self.router {
            router[k] = v.clone();
        }
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|(name, addrs, creds, mode)| {
                let mut service = json!({
                    "name": name,
                    "upstreams": addrs,
                    "forward_credentials": creds,
                    "trust_mode": mode,
                    "connect_timeout_ms": 2000,
                });
                for (_, key, value) in self.service_settings.iter().filter(|(s, _, _)| s == name) {
                    service[key] = value.clone();
                }
                service
            })
            .collect();
        let mut config = json!({
            "gateway": {
                "id": GATEWAY_ID,
                "listeners": listeners,
                "auth": {"authority": authority},
                "policies_dir": self.policies_dir,
            },
            "router": router,
            "services": services,
            // JSON lines, so tests can read the decision log
            // (`Gateway::decision_lines`).
            "logging": {"format": "json", "level": "info"},
        });
        for (k, v) in &self.auth {
            config["gateway"]["auth"][k] = v.clone();
        }
        for (k, v) in &self.gateway {
            config["gateway"][k] = v.clone();
        }
        if let Some(origin) = &self.public_origin {
            let origin = origin
                .replace("{http}", &http.to_string())
                .replace("{tls}", &tls.map(|p| p.to_string()).unwrap_or_default());
            config["gateway"]["public_origin"] = json!(origin);
        }
        serde_yaml::to_string(&config).expect("config as yaml")
    }

    /// Writes the configuration into `dir` and starts the gateway; a start
    /// that fails (a port taken in between) is retried with fresh ports.
    pub fn start(self, dir: &TempDir) -> Gateway {
        let mut last_error = String::new();
        for attempt in 0..3 {
            let ports = free_ports(3);
            let tls_port = self.tls.as_ref().map(|_| ports[2]);
            let config = dir.join(&format!("gateway-{}.yaml", free_port()));
            std::fs::write(&config, self.yaml(ports[0], ports[1], tls_port))
                .expect("write gateway config");
            let mut cmd = Command::new(gateway_binary());
            cmd.env_clear().arg("run").arg("--config").arg(&config);
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            match Process::try_start_capturing("gateway", cmd, "GATEWAY_READY", START_TIMEOUT) {
                Ok(process) => {
                    let addr = |name: &str| {
                        process.ready[name]
                            .as_str()
                            .map(|a| a.parse::<SocketAddr>().expect("listener address"))
                    };
                    return Gateway {
                        http: addr("http").expect("http listener"),
                        tls: addr("tls"),
                        admin: addr("admin").expect("admin listener"),
                        config,
                        process,
                    };
                }
                Err(e) => {
                    eprintln!("gateway start attempt {attempt} failed: {e}");
                    last_error = e;
                }
            }
        }
        panic!("gateway did not start: {last_error}");
    }
}

/// A running gateway.
pub struct Gateway {
    pub process: Process,
    pub http: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    pub config: PathBuf,
}

impl Gateway {
    /// `http://<plain listener>`: the origin a client of the plain
    /// listener uses (see [`GatewaySetup::public_origin`]).
    pub fn origin(&self) -> String {
        format!("http://{}", self.http)
    }

    /// The readiness line's `keys_loaded`.
    pub fn keys_loaded_at_start(&self) -> bool {
        self.process.ready["keys_loaded"] == json!(true)
    }

    /// `GET path` on the plain listener with `headers` sent as given.
    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.http, "GET", path, headers, b"")
    }

    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Response {
        request(self.http, method, path, headers, b"")
    }

    /// `GET path` with `Authorization: Bearer token`.
    pub fn get_with_token(&self, path: &str, token: &str) -> Response {
        let auth = format!("Bearer {token}");
        self.get(path, &[("Authorization", &auth)])
    }

    pub fn admin_get(&self, path: &str) -> Response {
        request(self.admin, "GET", path, &[], b"")
    }

    /// `GET /config` on the admin listener, as JSON.
    pub fn active_config(&self) -> Value {
        let r = self.admin_get("/config");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// `POST /reload`; the response.
    pub fn reload(&self) -> Response {
        request(self.admin, "POST", "/reload", &[], b"")
    }

    /// Rewrites the configuration file through `change` (the file is YAML
    /// the harness wrote; `change` edits it as JSON).
    pub fn edit_config(&self, change: impl FnOnce(&mut Value)) {
        let text = std::fs::read_to_string(&self.config).expect("read gateway config");
        let mut config: Value = serde_yaml::from_str(&text).expect("gateway config is yaml");
        change(&mut config);
        let text = serde_yaml::to_string(&config).expect("config as yaml");
        // Replace by rename, as editors and volume mounts do.
        let tmp = self.config.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write gateway config");
        std::fs::rename(&tmp, &self.config).expect("replace gateway config");
    }

    /// Every decision log line the gateway wrote so far (one per request,
    /// target `stella_gateway::decision`), as JSON.
    pub fn decision_lines(&self) -> Vec<Value> {
        self.log_lines()
            .into_iter()
            .filter(|line| line["target"] == "stella_gateway::decision")
            .collect()
    }

    /// Every JSON log line the gateway wrote so far.
    pub fn log_lines(&self) -> Vec<Value> {
        self.process
            .stderr_lines()
            .iter()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    }

    /// Whether a JSON log line `matches`, waiting up to 10 s for one: lines
    /// reach stderr through the log queue, up to 5 ms after they are logged
    /// on a busy gateway.
    pub fn wait_for_log(&self, matches: impl Fn(&Value) -> bool) -> bool {
        wait_until(Duration::from_secs(10), || {
            self.log_lines().iter().any(&matches)
        })
    }

    /// The decision line of `request_id`, waiting for it: the line is
    /// written after the response, so it may lag a little.
    pub fn wait_for_decision(&self, request_id: &str) -> Value {
        let mut found = None;
        wait_until(Duration::from_secs(10), || {
            found = self
                .decision_lines()
                .into_iter()
                .find(|line| line["request_id"] == request_id);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no decision line for request {request_id}"))
    }

    /// The decision line of the request `r` answers (by its `x-request-id`).
    pub fn decision_for(&self, r: &Response) -> Value {
        let id = r
            .header("x-request-id")
            .unwrap_or_else(|| panic!("response has no x-request-id: {}", r.text()));
        self.wait_for_decision(id)
    }

    /// The decision log `reason` of the request `r` answers.
    pub fn reason_for(&self, r: &Response) -> String {
        let line = self.decision_for(r);
        line["reason"]
            .as_str()
            .unwrap_or_else(|| panic!("decision line without reason: {line}"))
            .to_owned()
    }

    pub fn metrics(&self) -> Metrics {
        let r = self.admin_get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        Metrics::parse(&r.text())
    }

    /// Polls `/metrics` until `name{labels}` reaches `at_least`; returns
    /// the last value seen. Request counters are updated after the response
    /// is written, so a scrape right after a response may be early.
    pub fn wait_for_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) -> f64 {
        let mut last = 0.0;
        wait_until(Duration::from_secs(5), || {
            last = self.metrics().value(name, labels).unwrap_or(0.0);
            last >= at_least
        });
        last
    }
}

/// Authority, `echo` (GatewayEnforced) and a gateway with the shipped
/// policies and default settings. Fields drop in order: gateway first.
pub struct Stack {
    pub gateway: Gateway,
    pub echo: Echo,
    pub authority: Authority,
    pub dir: TempDir,
}

impl Stack {
    pub fn start(label: &str) -> Stack {
        Stack::start_with(label, |setup| setup)
    }

    /// Like [`start`](Self::start), with changes to the gateway setup.
    pub fn start_with(label: &str, configure: impl FnOnce(GatewaySetup) -> GatewaySetup) -> Stack {
        let dir = TempDir::new(label);
        let (authority, echo) = std::thread::scope(|s| {
            let echo = s.spawn(Echo::gateway_enforced);
            let authority = Authority::start();
            (authority, echo.join().expect("echo started"))
        });
        let setup = GatewaySetup::new(&authority.issuer).service("echo", echo.addr());
        let gateway = configure(setup).start(&dir);
        assert!(gateway.keys_loaded_at_start(), "{}", gateway.process.ready);
        Stack {
            gateway,
            echo,
            authority,
            dir,
        }
    }
}
