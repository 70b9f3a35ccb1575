//! The end-to-end harness shared by `tests/e2e_*.rs`: real processes on
//! loopback, nothing mocked. The test Authority (`tests/authority`, node),
//! the sample service `stella-echo-service` in each trust mode, and the
//! gateway binary, started from a configuration written into a temp dir.
//!
//! Ground rules (STYLE.md, Tests): no fixed ports (the gateway cannot bind
//! port 0, so ports are picked free with [`free_ports`] and a start that
//! loses the race is retried), no fixed sleeps (readiness lines and
//! polling), assertions on what a user sees.
//!
//! Process lifetime: `cargo nextest` runs every test in its own process, so
//! each test starts the processes it needs (the Authority costs about a
//! second of one core; everything else is fast) and they die with the test
//! (`Process` kills on drop). Nothing is shared between tests: every test
//! has its own temp dir, ports, Authority and keys.
//!
//! The echo binary: `CARGO_BIN_EXE_*` only names this package's binaries,
//! so the harness finds `stella-echo-service` next to the gateway binary.
//! If it is missing, or older than a source file cargo's dep-info
//! (`stella-echo-service.d`) lists for it, the harness runs
//! `cargo build -p stella-echo-service` once per test process, with the
//! same profile as the gateway binary. When it is current, cargo is never
//! called, so tests do not queue on the cargo lock. If the build fails the
//! test panics naming the command to run by hand.

// Each e2e file uses a different part of the harness.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
pub use stella_test_support::{free_port, free_ports, request, wait_until, Process, Response};
// Only the suites on sender-constrained tokens use these.
#[allow(unused_imports)]
pub use stella_test_support::{dpop_ath, DpopKey, ProofBuilder};

/// The gateway's id: the envelope issuer the services expect.
pub const GATEWAY_ID: &str = "stella-gateway-e2e";
/// The audience access tokens are issued for (the Authority's default).
pub const API_AUDIENCE: &str = "http://gateway.local/api";
/// The HS256 envelope key shared by the gateway and the services.
pub const ENVELOPE_KEY: &str =
    "hs256:c3RlbGxhLWUyZS10ZXN0LWVudmVsb3BlLWtleS1ub3QtZm9yLXByb2R1Y3Rpb24";
pub const ENVELOPE_KID: &str = "e2e-1";
/// The six headers of the identity envelope, lowercase.
pub const ENVELOPE_HEADERS: [&str; 6] = [
    "x-stellaops-identity-envelope",
    "x-stellaops-identity-envelope-signature",
    "x-stellaops-identity-envelope-alg",
    "x-stellaops-identity-envelope-kid",
    "x-stellaops-identity-envelope-iat",
    "x-stellaops-identity-envelope-exp",
];

const START_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// paths and temp dirs

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("gateway/ has a parent")
        .to_path_buf()
}

/// The shipped policies: the ones under test.
pub fn policies_dir() -> PathBuf {
    repo_root().join("policies")
}

fn authority_dir() -> PathBuf {
    let dir = repo_root().join("tests/authority");
    assert!(
        dir.join("node_modules/oidc-provider").is_dir(),
        "the test Authority is not installed: run `npm ci` in {}",
        dir.display()
    );
    dir
}

/// A directory for one test's files, removed when dropped (kept when
/// `STELLA_E2E_KEEP` is set, for debugging).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("stella-e2e-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STELLA_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// ---------------------------------------------------------------------------
// the echo binary

/// Whether `binary` is missing or older than a file cargo compiled it
/// from, as listed in cargo's dep-info file next to it (`<binary>.d`).
/// Without dep-info the binary is taken as current.
fn is_stale(binary: &Path) -> bool {
    let Ok(built) = std::fs::metadata(binary).and_then(|m| m.modified()) else {
        return true;
    };
    let Ok(dep_info) = std::fs::read_to_string(binary.with_extension("d")) else {
        return false;
    };
    let deps = dep_info
        .split_once(": ")
        .map(|(_, deps)| deps)
        .unwrap_or_default();
    // Paths are separated by spaces; a space inside a path is `\ `.
    let deps = deps.replace("\\ ", "\u{0}");
    deps.split_whitespace()
        .map(|p| PathBuf::from(p.replace('\u{0}', " ")))
        .any(|dep| {
            std::fs::metadata(&dep)
                .and_then(|m| m.modified())
                .is_ok_and(|changed| changed > built)
        })
}

/// `target/<profile>/stella-echo-service`, built if missing or stale.
pub fn echo_binary() -> PathBuf {
    static BUILD: Once = Once::new();
    let gateway = Path::new(env!("CARGO_BIN_EXE_stella-gateway"));
    let echo = gateway.with_file_name(format!(
        "stella-echo-service{}",
        std::env::consts::EXE_SUFFIX
    ));
    BUILD.call_once(|| {
        if !is_stale(&echo) {
            return;
        }
        let root = repo_root();
        let cargo = std::env::var("CARGO")
            .ok()
            .or(option_env!("CARGO").map(str::to_owned))
            .unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root)
            .args(["build", "-p", "stella-echo-service"]);
        match gateway
            .parent()
            .and_then(|d| d.file_name())
            .and_then(|n| n.to_str())
        {
            Some("debug") | None => {}
            Some(profile) => {
                cmd.args(["--profile", profile]);
            }
        }
        let status = cmd.status();
        assert!(
            matches!(status, Ok(s) if s.success()),
            "building the sample service failed ({status:?}): run `cargo build -p stella-echo-service` first"
        );
    });
    assert!(
        echo.is_file(),
        "{} not found: run `cargo build -p stella-echo-service` first",
        echo.display()
    );
    echo
}

// ---------------------------------------------------------------------------
// the Authority

/// An OAuth client registered in the test Authority.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Client {
    pub id: &'static str,
    pub secret: &'static str,
}

/// scopes echo.read echo.write admin, tenant acme.
pub const BEARER: Client = Client {
    id: "svc-bearer",
    secret: "svc-bearer-secret",
};
/// scope echo.read, tenant globex.
pub const READONLY: Client = Client {
    id: "svc-readonly",
    secret: "svc-readonly-secret",
};
/// Certificate-bound tokens (needs `--cert-pem`).
pub const MTLS: Client = Client {
    id: "svc-mtls",
    secret: "svc-mtls-secret",
};
/// DPoP-bound tokens (needs a proof: [`Authority::dpop_token`]); scopes
/// echo.read echo.write admin, tenant acme.
pub const DPOP: Client = Client {
    id: "svc-dpop",
    secret: "svc-dpop-secret",
};

/// What to ask the token endpoint for besides the client.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenRequest {
    pub scope: Option<String>,
    pub resource: Option<String>,
    pub cert_pem: Option<PathBuf>,
}

impl TokenRequest {
    pub fn scope(scope: &str) -> TokenRequest {
        TokenRequest {
            scope: Some(scope.into()),
            ..TokenRequest::default()
        }
    }

    pub fn resource(resource: &str) -> TokenRequest {
        TokenRequest {
            resource: Some(resource.into()),
            ..TokenRequest::default()
        }
    }

    /// A certificate-bound token for the certificate in `pem`.
    pub fn bound_to(pem: &Path) -> TokenRequest {
        TokenRequest {
            cert_pem: Some(pem.to_path_buf()),
            ..TokenRequest::default()
        }
    }
}

#[derive(Default)]
pub struct AuthorityOptions {
    /// `AUTHORITY_KEYS_FILE`: share keys with another instance (written
    /// first if it does not exist). By default each Authority has its own.
    pub keys_file: Option<PathBuf>,
    /// `AUTHORITY_AT_TTL`, seconds.
    pub access_token_ttl: Option<u64>,
    /// A fixed port (to bring an Authority up where a gateway expects it).
    pub port: Option<u16>,
    /// `AUTHORITY_CLIENTS_FILE`: extra clients (JSON array of client
    /// metadata; see tests/authority/README.md). None by default.
    pub clients_file: Option<PathBuf>,
}

/// The test Authority (`node tests/authority/server.mjs`).
pub struct Authority {
    process: Process,
    pub issuer: String,
    pub port: u16,
    /// Its private JWKS (`AUTHORITY_KEYS_FILE`).
    pub keys_file: PathBuf,
    tokens: Mutex<HashMap<(Client, TokenRequest), String>>,
    _dir: TempDir,
}

/// Writes a private JWKS in the Authority's format (an ES256 and an RS256
/// key, kid = RFC 7638 thumbprint) to `path`. The keys are made by the
/// `openssl` CLI and only converted by node: node 20's own RSA key
/// generation (`generateKeyPairSync`, which server.mjs uses when it has no
/// keys file) can deadlock in a GC callback (main thread blocked in
/// `KeyGenJob<RsaKeyGenTraits>::~KeyGenJob` on a mutex), which showed up as
/// an Authority that never printed its ready line, about once in 50 starts.
fn write_authority_keys(path: &Path) {
    let dir = path.parent().expect("keys file has a folder");
    let ec = dir.join("authority-ec.pem");
    let rsa = dir.join("authority-rsa.pem");
    let genpkey = |out: &Path, args: &[&str]| {
        let status = Command::new("openssl")
            .arg("genpkey")
            .args(args)
            .arg("-out")
            .arg(out)
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (is it installed?)");
        assert!(status.success(), "openssl genpkey {args:?} failed");
    };
    genpkey(
        &ec,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    genpkey(
        &rsa,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let script = r#"
        const c = require('node:crypto');
        const fs = require('node:fs');
        const [ecPem, rsaPem, out] = process.argv.slice(1);
        const thumbprint = (j) => c.createHash('sha256').update(JSON.stringify(
            j.kty === 'RSA' ? { e: j.e, kty: j.kty, n: j.n } : { crv: j.crv, kty: j.kty, x: j.x, y: j.y },
        )).digest('base64url');
        const jwk = (file) => c.createPrivateKey(fs.readFileSync(file)).export({ format: 'jwk' });
        const ec = jwk(ecPem);
        const rsa = jwk(rsaPem);
        const keys = [
            { ...ec, use: 'sig', alg: 'ES256', kid: thumbprint(ec) },
            { ...rsa, use: 'sig', alg: 'RS256', kid: thumbprint(rsa) },
        ];
        fs.writeFileSync(out, JSON.stringify({ keys }), { mode: 0o600 });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(&ec)
        .arg(&rsa)
        .arg(path)
        .output()
        .expect("run node");
    assert!(
        out.status.success(),
        "converting the authority keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Authority {
    pub fn start() -> Authority {
        Authority::start_with(AuthorityOptions::default())
    }

    pub fn start_with(options: AuthorityOptions) -> Authority {
        let own_dir = TempDir::new("authority");
        let keys_file = options
            .keys_file
            .clone()
            .unwrap_or_else(|| own_dir.join("authority-keys.json"));
        if !keys_file.exists() {
            write_authority_keys(&keys_file);
        }
        let mut cmd = Command::new("node");
        cmd.current_dir(authority_dir())
            .arg("server.mjs")
            .env("AUTHORITY_PORT", options.port.unwrap_or(0).to_string());
        for name in [
            "AUTHORITY_AT_TTL",
            "AUTHORITY_CLIENTS_FILE",
            "AUTHORITY_DEFAULT_RESOURCE",
        ] {
            cmd.env_remove(name);
        }
        cmd.env("AUTHORITY_KEYS_FILE", &keys_file);
        if let Some(clients) = &options.clients_file {
            cmd.env("AUTHORITY_CLIENTS_FILE", clients);
        }
        if let Some(ttl) = options.access_token_ttl {
            cmd.env("AUTHORITY_AT_TTL", ttl.to_string());
        }
        let process = Process::start("authority", cmd, "AUTHORITY_READY", START_TIMEOUT);
        let issuer = process.ready["issuer"]
            .as_str()
            .expect("ready line has issuer")
            .to_owned();
        let port = process.ready["port"].as_u64().expect("ready line has port") as u16;
        Authority {
            process,
            issuer,
            port,
            keys_file,
            tokens: Mutex::new(HashMap::new()),
            _dir: own_dir,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A token with all of the client's scopes for the gateway's audience,
    /// fetched once per Authority and client.
    pub fn token(&self, client: Client) -> String {
        self.token_with(client, TokenRequest::default())
    }

    /// A token for `request`, cached per (client, request).
    pub fn token_with(&self, client: Client, request: TokenRequest) -> String {
        let key = (client, request);
        if let Some(t) = self.tokens.lock().unwrap().get(&key) {
            return t.clone();
        }
        let token = self.fresh_token(client, &key.1);
        self.tokens.lock().unwrap().insert(key, token.clone());
        token
    }

    /// Fetches the tokens of several clients at once (node starts slowly;
    /// in parallel the wait is paid once), filling the cache.
    pub fn prefetch(&self, clients: &[Client]) {
        let requests: Vec<(Client, TokenRequest)> = clients
            .iter()
            .map(|c| (*c, TokenRequest::default()))
            .collect();
        self.prefetch_with(&requests);
    }

    /// [`prefetch`](Self::prefetch) for tokens with particular requests.
    pub fn prefetch_with(&self, requests: &[(Client, TokenRequest)]) {
        std::thread::scope(|s| {
            for (client, request) in requests {
                s.spawn(move || self.token_with(*client, request.clone()));
            }
        });
    }

    /// A new token every call, through `token.mjs`.
    pub fn fresh_token(&self, client: Client, request: &TokenRequest) -> String {
        let mut cmd = Command::new("node");
        cmd.current_dir(authority_dir())
            .arg("token.mjs")
            .args(["--issuer", &self.issuer])
            .args(["--client", client.id, "--secret", client.secret]);
        if let Some(scope) = &request.scope {
            cmd.args(["--scope", scope]);
        }
        if let Some(resource) = &request.resource {
            cmd.args(["--resource", resource]);
        }
        if let Some(pem) = &request.cert_pem {
            cmd.arg("--cert-pem").arg(pem);
        }
        let out = cmd
            .stderr(Stdio::piped())
            .output()
            .expect("run node token.mjs");
        assert!(
            out.status.success(),
            "token.mjs for {} failed: {}",
            client.id,
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).expect("token is utf-8");
        token.trim().to_owned()
    }

    /// The Authority's published JWKS.
    pub fn jwks(&self) -> Value {
        let r = request(self.addr(), "GET", "/jwks", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()
    }

    /// Stops the Authority abruptly and waits until its port refuses.
    pub fn kill(&mut self) {
        self.process.kill();
        let addr = self.addr();
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            }),
            "authority port still accepts after kill"
        );
    }
}

// ---------------------------------------------------------------------------
// the sample service

/// `stella-echo-service` in one trust mode.
pub struct Echo {
    process: Process,
    pub name: String,
}

impl Echo {
    /// `echo`: GatewayEnforced, audience `echo`.
    pub fn gateway_enforced() -> Echo {
        Echo::start("echo", "GatewayEnforced", &[])
    }

    /// `echo-hybrid`: Hybrid, audience `echo-hybrid`.
    pub fn hybrid() -> Echo {
        Echo::start("echo-hybrid", "Hybrid", &[])
    }

    /// `echo-legacy`: ServiceEnforced; it authenticates callers itself with
    /// `service_token` as the one bearer token it accepts.
    pub fn legacy(service_token: &str) -> Echo {
        Echo::start(
            "echo-legacy",
            "ServiceEnforced",
            &[("ECHO_SERVICE_TOKEN", service_token)],
        )
    }

    pub fn start(name: &str, mode: &str, extra: &[(&str, &str)]) -> Echo {
        let mut cmd = Command::new(echo_binary());
        cmd.env_clear()
            .env("ECHO_LISTEN", "127.0.0.1:0")
            .env("Router__Enabled", "true")
            .env("Router__AuthorizationTrustMode", mode)
            .env("Router__IdentityEnvelopeSigningKey", ENVELOPE_KEY)
            .env("Router__IdentityEnvelopeSigningKeyId", ENVELOPE_KID)
            .env("Router__IdentityEnvelopeAudience", name)
            .env("Router__IdentityEnvelopeIssuer", GATEWAY_ID);
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let process = Process::start(name, cmd, "ECHO_READY", START_TIMEOUT);
        Echo {
            process,
            name: name.to_owned(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.process.addr()
    }

    /// Kills the service now (SIGKILL: its port refuses connections).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// How many requests reached the service so far.
    pub fn requests(&self) -> u64 {
        let r = request(self.addr(), "GET", "/__echo/requests", &[], b"");
        r.json()["requests"].as_u64().expect("requests count")
    }
}

// ---------------------------------------------------------------------------
// the gateway

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
        }
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
            listeners["tls"] = section;
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
                json!({
                    "name": name,
                    "upstreams": addrs,
                    "forward_credentials": creds,
                    "trust_mode": mode,
                    "connect_timeout_ms": 2000,
                })
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
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_stella-gateway"));
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

// ---------------------------------------------------------------------------
// a whole stack

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

// ---------------------------------------------------------------------------
// metrics

/// One Prometheus text scrape.
pub struct Metrics {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let mut labels = BTreeMap::new();
                    for pair in rest.trim_end_matches('}').split("\",") {
                        if let Some((k, v)) = pair.split_once("=\"") {
                            labels.insert(k.trim().to_owned(), v.trim_end_matches('"').to_owned());
                        }
                    }
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            samples.push((name, labels, value));
        }
        Metrics { samples }
    }

    /// The sample `name` whose labels include every pair in `labels`
    /// (summed if several series match).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| *v)
            .collect();
        if matching.is_empty() {
            None
        } else {
            Some(matching.iter().sum())
        }
    }

    pub fn get(&self, name: &str) -> f64 {
        self.value(name, &[])
            .unwrap_or_else(|| panic!("metric {name} is not exposed"))
    }
}

// ---------------------------------------------------------------------------
// JWTs

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(text: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(text).expect("base64url")
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("compact jws");
    serde_json::from_slice(&b64url_decode(part)).expect("json part")
}

pub fn jwt_header(token: &str) -> Value {
    jwt_part(token, 0)
}

pub fn jwt_claims(token: &str) -> Value {
    jwt_part(token, 1)
}

pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// HS256 over the signing input with `secret`.
pub fn hs256(header: &Value, claims: &Value, secret: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let input = signing_input(header, claims);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

/// An ES256 key the test holds (never the Authority's): for tokens that are
/// correctly signed, by the wrong key.
pub struct AttackerKey {
    pair: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl AttackerKey {
    pub fn generate() -> AttackerKey {
        use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate p-256 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load p-256 key");
        AttackerKey { pair, rng }
    }

    /// The public key as a JWK.
    pub fn jwk(&self, kid: &str) -> Value {
        use ring::signature::KeyPair;
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": b64url(&point[1..33]), "y": b64url(&point[33..65]),
        })
    }

    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .expect("es256 sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }
}

/// The Authority's own private signing keys, read from its
/// `AUTHORITY_KEYS_FILE`: tokens that carry the real signature and differ
/// from a valid one in exactly the way a test wants.
pub struct AuthorityKeys {
    pub ec_kid: String,
    pub rsa_kid: String,
    ec: ring::signature::EcdsaKeyPair,
    ec_der: ring::signature::EcdsaKeyPair,
    rsa: ring::rsa::KeyPair,
    rng: ring::rand::SystemRandom,
}

impl AuthorityKeys {
    pub fn load(keys_file: &Path) -> AuthorityKeys {
        use ring::signature::{
            EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let text = std::fs::read_to_string(keys_file).expect("read authority keys file");
        let jwks: Value = serde_json::from_str(&text).expect("keys file is json");
        let keys = jwks["keys"].as_array().expect("keys");
        let find = |kty: &str| {
            keys.iter()
                .find(|k| k["kty"] == kty)
                .unwrap_or_else(|| panic!("no {kty} key in {}", keys_file.display()))
        };
        let member = |k: &Value, name: &str| b64url_decode(k[name].as_str().expect(name));
        let ec = find("EC");
        let rng = ring::rand::SystemRandom::new();
        let mut point = vec![4u8];
        point.extend(member(ec, "x"));
        point.extend(member(ec, "y"));
        let d = member(ec, "d");
        let ec_pair = |alg| {
            EcdsaKeyPair::from_private_key_and_public_key(alg, &d, &point, &rng)
                .expect("authority ec key")
        };
        let rsa = find("RSA");
        let components = ring::rsa::KeyPairComponents {
            public_key: ring::rsa::PublicKeyComponents {
                n: member(rsa, "n"),
                e: member(rsa, "e"),
            },
            d: member(rsa, "d"),
            p: member(rsa, "p"),
            q: member(rsa, "q"),
            dP: member(rsa, "dp"),
            dQ: member(rsa, "dq"),
            qInv: member(rsa, "qi"),
        };
        AuthorityKeys {
            ec_kid: ec["kid"].as_str().expect("kid").to_owned(),
            rsa_kid: rsa["kid"].as_str().expect("kid").to_owned(),
            ec: ec_pair(&ECDSA_P256_SHA256_FIXED_SIGNING),
            ec_der: ec_pair(&ECDSA_P256_SHA256_ASN1_SIGNING),
            rsa: ring::rsa::KeyPair::from_components(&components).expect("authority rsa key"),
            rng,
        }
    }

    /// ES256 with the Authority's EC key (JWS form: r || s).
    pub fn es256(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self.ec.sign(&self.rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    /// ES256 signature in ASN.1 DER form, which JWS does not allow.
    pub fn es256_der(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self.ec_der.sign(&self.rng, input.as_bytes()).expect("sign");
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    /// RS256 (PKCS#1 v1.5) or PS256 (PSS) with the Authority's RSA key.
    pub fn rsa(&self, pss: bool, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.rsa.public().modulus_len()];
        let padding: &'static dyn ring::signature::RsaEncoding = if pss {
            &ring::signature::RSA_PSS_SHA256
        } else {
            &ring::signature::RSA_PKCS1_SHA256
        };
        self.rsa
            .sign(padding, &self.rng, input.as_bytes(), &mut sig)
            .expect("sign");
        format!("{input}.{}", b64url(&sig))
    }
}

// ---------------------------------------------------------------------------
// assertions on what the user sees

/// A refusal made by the gateway: status, problem+json body, `error` code.
#[track_caller]
pub fn assert_problem(r: &Response, status: u16, error: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(r.json()["error"], error, "{}", r.text());
}

/// A 401 for an invalid token, with its challenge and the verifier's reason.
#[track_caller]
pub fn assert_invalid_token(r: &Response) {
    assert_problem(r, 401, "invalid_token");
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer realm=\"stella-gateway\"")
            && challenge.contains("error=\"invalid_token\""),
        "{challenge}"
    );
}

/// The echo service answered, having accepted the gateway's envelope.
#[track_caller]
pub fn assert_reached_via_envelope(r: &Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["source"], "envelope", "{body}");
    body
}

/// Every header the service received, names lowercased.
pub fn received(body: &Value) -> Vec<(String, String)> {
    body["received_headers"]
        .as_array()
        .expect("received_headers")
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                pair[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// All values of one received header.
pub fn received_values(body: &Value, name: &str) -> Vec<String> {
    received(body)
        .into_iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect()
}

// ---------------------------------------------------------------------------
// TLS material and an HTTPS client

/// Certificates made with the `openssl` CLI: a CA, a server certificate for
/// 127.0.0.1 / localhost, client certificates from that CA (one plain, one
/// a SPIFFE X.509-SVID), and a second CA with its own client certificate.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub spiffe_cert: PathBuf,
    pub spiffe_key: PathBuf,
    pub other_ca: PathBuf,
    pub other_client_cert: PathBuf,
    pub other_client_key: PathBuf,
}

pub const SPIFFE_ID: &str = "spiffe://stella.test/ns/default/sa/orders";

/// Runs `openssl` with `args` split on whitespace (no argument here has a
/// space in it).
fn openssl(dir: &Path, args: &str) {
    let args: Vec<&str> = args.split_whitespace().collect();
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(&args)
        .output()
        .expect("run openssl (is it installed?)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const P256: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

fn make_ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new {P256} -keyout {name}.key -out {name}.pem -days 2 -subj /CN={cn} \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

fn make_leaf(dir: &Path, ca: &str, name: &str, cn: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write extensions");
    openssl(
        dir,
        &format!("req -new {P256} -keyout {name}.key -out {name}.csr -subj /CN={cn}"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}.key -CAcreateserial \
             -out {name}.pem -days 2 -extfile {name}.ext"
        ),
    );
}

impl Pki {
    pub fn generate(dir: &TempDir) -> Pki {
        let d = dir.path();
        const LEAF: &str = "basicConstraints=critical,CA:FALSE\n\
                            keyUsage=critical,digitalSignature\n\
                            subjectKeyIdentifier=hash\n\
                            authorityKeyIdentifier=keyid\n";
        make_ca(d, "ca", "stella-e2e-ca");
        make_ca(d, "other-ca", "another-ca");
        make_leaf(
            d,
            "ca",
            "server",
            "localhost",
            &format!(
                "{LEAF}extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
            ),
        );
        make_leaf(
            d,
            "ca",
            "client",
            "client",
            &format!("{LEAF}extendedKeyUsage=clientAuth\n"),
        );
        make_leaf(
            d,
            "ca",
            "spiffe",
            "orders",
            &format!("{LEAF}extendedKeyUsage=clientAuth\nsubjectAltName=URI:{SPIFFE_ID}\n"),
        );
        make_leaf(
            d,
            "other-ca",
            "other-client",
            "other",
            &format!("{LEAF}extendedKeyUsage=clientAuth\n"),
        );
        Pki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            spiffe_cert: dir.join("spiffe.pem"),
            spiffe_key: dir.join("spiffe.key"),
            other_ca: dir.join("other-ca.pem"),
            other_client_cert: dir.join("other-client.pem"),
            other_client_key: dir.join("other-client.key"),
        }
    }

    /// The gateway's TLS listener with this server certificate.
    pub fn listener(&self, client_certificates: &'static str) -> TlsSetup {
        TlsSetup {
            cert_file: self.server_cert.clone(),
            key_file: self.server_key.clone(),
            client_certificates,
            client_ca_file: (client_certificates != "none").then(|| self.ca.clone()),
        }
    }
}

/// What `curl` reports: its exit code, and the response when there was one.
#[derive(Debug)]
pub struct Curl {
    pub exit_code: Option<i32>,
    pub response: Option<Response>,
    /// The first line curl printed, such as `HTTP/2 200`.
    pub status_line: String,
    pub stderr: String,
}

impl Curl {
    /// The gateway refused the TLS handshake with an alert whose text
    /// contains `alert` (such as `certificate required`, `unknown ca`):
    /// curl exit 35 (handshake failed) or 56 (TLS 1.3, where the server's
    /// alert arrives at the first read), no response. A timeout (28), a
    /// connection that was never made (7) or an empty reply (52) is not a
    /// refusal.
    #[track_caller]
    pub fn assert_refused_by_gateway(&self, alert: &str) {
        assert!(self.response.is_none(), "expected no response: {self:?}");
        assert!(
            matches!(self.exit_code, Some(35) | Some(56)),
            "expected a refused TLS handshake (curl exit 35 or 56), got {:?}: {}",
            self.exit_code,
            self.stderr
        );
        assert!(
            self.stderr.to_ascii_lowercase().contains(alert),
            "expected the alert `{alert}`: {}",
            self.stderr
        );
    }

    /// curl itself refused the gateway's certificate (exit 60: the server
    /// certificate does not chain to the CA it trusts).
    #[track_caller]
    pub fn assert_server_untrusted(&self) {
        assert!(self.response.is_none(), "expected no response: {self:?}");
        assert_eq!(self.exit_code, Some(60), "{}", self.stderr);
    }
}

/// `GET https://addr/path` with curl, trusting `ca` and presenting the
/// client certificate `cert` (certificate and key files) if given.
pub fn curl_https(
    addr: SocketAddr,
    path: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    headers: &[(&str, &str)],
) -> Curl {
    curl_https_version(addr, path, ca, cert, headers, "--http1.1")
}

/// [`curl_https`] with the HTTP version flag: `--http1.1` or
/// `--http2` (negotiated with ALPN).
pub fn curl_https_version(
    addr: SocketAddr,
    path: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    headers: &[(&str, &str)],
    version: &str,
) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--raw", version, "--max-time", "15"])
        .arg("--cacert")
        .arg(ca);
    if let Some((cert, key)) = cert {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("https://{addr}{path}"));
    let out = cmd.output().expect("run curl (is it installed?)");
    let response = (out.status.success() && !out.stdout.is_empty())
        .then(|| stella_test_support::parse_response(&out.stdout));
    let status_line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Curl {
        exit_code: out.status.code(),
        response,
        status_line,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

// ---------------------------------------------------------------------------
// sender-constrained tokens: DPoP keys and proofs, extra client
// certificates, policies with extra routes, a shared replay store

impl Authority {
    /// A new DPoP-bound token for `client` (normally [`DPOP`]): `token.mjs
    /// --dpop-key-file key_file` signs the token request's proof with the
    /// private JWK in that file ([`DpopKey::write_private_jwk`]), so the
    /// token's `cnf.jkt` is that key's thumbprint.
    pub fn dpop_token(&self, client: Client, key_file: &Path) -> String {
        let out = Command::new("node")
            .current_dir(authority_dir())
            .arg("token.mjs")
            .args(["--issuer", &self.issuer])
            .args(["--client", client.id, "--secret", client.secret])
            .arg("--dpop-key-file")
            .arg(key_file)
            .stderr(Stdio::piped())
            .output()
            .expect("run node token.mjs");
        assert!(
            out.status.success(),
            "token.mjs --dpop-key-file for {} failed: {}",
            client.id,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("token is utf-8")
            .trim()
            .to_owned()
    }
}

/// A DPoP proof made by the npm `dpop` library (`tests/authority/proof.mjs`),
/// an implementation independent of [`DpopKey`], with the private JWK in
/// `key_file`.
pub fn npm_dpop_proof(
    key_file: &Path,
    method: &str,
    url: &str,
    token: Option<&str>,
    nonce: Option<&str>,
) -> String {
    let mut cmd = Command::new("node");
    cmd.current_dir(authority_dir())
        .arg("proof.mjs")
        .arg("--key-file")
        .arg(key_file)
        .args(["--method", method, "--url", url]);
    if let Some(token) = token {
        cmd.args(["--token", token]);
    }
    if let Some(nonce) = nonce {
        cmd.args(["--nonce", nonce]);
    }
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("run node proof.mjs");
    assert!(
        out.status.success(),
        "proof.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("proof is utf-8")
        .trim()
        .to_owned()
}

/// A jti no other proof of this test process uses.
pub fn unique_jti(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut random = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .expect("random jti");
    format!("{label}-{n}-{}", b64url(&random))
}

/// A 401 for a DPoP proof defect: problem+json `invalid_dpop_proof`, one
/// `DPoP` challenge with that error and the `algs` the gateway accepts.
#[track_caller]
pub fn assert_invalid_dpop_proof(r: &Response) {
    assert_problem(r, 401, "invalid_dpop_proof");
    let challenges = r.header_all("www-authenticate");
    assert_eq!(challenges.len(), 1, "{challenges:?}");
    let c = challenges[0];
    assert!(
        c.starts_with("DPoP realm=\"stella-gateway\"")
            && c.contains("error=\"invalid_dpop_proof\"")
            && c.contains("algs=\""),
        "{c}"
    );
}

impl Pki {
    /// Another client certificate from this PKI's CA (`ca.pem`), with
    /// `uri_san` as its one URI SAN when given. Returns (certificate, key).
    /// Another server certificate for 127.0.0.1 and localhost from the same
    /// CA (a new serial): for certificate rotation.
    pub fn issue_server(&self, name: &str) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().expect("pki folder");
        let ext = "basicConstraints=critical,CA:FALSE\n\
                   keyUsage=critical,digitalSignature\n\
                   subjectKeyIdentifier=hash\n\
                   authorityKeyIdentifier=keyid\n\
                   extendedKeyUsage=serverAuth\n\
                   subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        make_leaf(dir, "ca", name, "localhost", ext);
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }

    pub fn issue_client(&self, name: &str, uri_san: Option<&str>) -> (PathBuf, PathBuf) {
        let dir = self.ca.parent().expect("pki folder");
        let mut ext = "basicConstraints=critical,CA:FALSE\n\
                       keyUsage=critical,digitalSignature\n\
                       subjectKeyIdentifier=hash\n\
                       authorityKeyIdentifier=keyid\n\
                       extendedKeyUsage=clientAuth\n"
            .to_owned();
        if let Some(uri) = uri_san {
            ext.push_str(&format!("subjectAltName=URI:{uri}\n"));
        }
        make_leaf(dir, "ca", name, name, &ext);
        (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        )
    }
}

/// A copy of the shipped policies in `dir/policies` with `extra` (YAML list
/// items, indented as in `echo.yaml`) appended to the routes of `echo`.
pub fn policies_with_echo_routes(dir: &TempDir, extra: &str) -> PathBuf {
    let out = dir.join("policies");
    std::fs::create_dir_all(&out).expect("create policies copy");
    for entry in std::fs::read_dir(policies_dir()).expect("read policies") {
        let path = entry.expect("policies entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let name = path.file_name().expect("file name");
        let mut text = std::fs::read_to_string(&path).expect("read policy file");
        if name == "echo.yaml" {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(extra);
        }
        std::fs::write(out.join(name), text).expect("write policy file");
    }
    out
}

/// A `redis-server` on a free loopback port, without persistence, killed
/// when dropped. A TLS one also listens in plain text on `port`, which the
/// harness uses only to see that it is up.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    /// The TLS port, for a server started with [`RedisServer::start_tls`].
    pub tls_port: Option<u16>,
    /// Arguments beyond the port, kept for a restart.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`; a start that loses
    /// the race for its port is retried with another.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// As [`start`](Self::start), with more `redis-server` arguments
    /// (`--requirepass`, ...).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let extra: Vec<String> = extra.iter().map(|a| a.to_string()).collect();
        for _ in 0..5 {
            if let Some(redis) = RedisServer::try_start(free_port(), None, &extra) {
                return redis;
            }
        }
        panic!("redis-server did not start");
    }

    /// A server that speaks TLS on `tls_port` with `pki`'s server
    /// certificate; `client_certificates` makes it require one from `pki`'s
    /// CA (`tls-auth-clients yes`).
    pub fn start_tls(pki: &Pki, client_certificates: bool, extra: &[&str]) -> RedisServer {
        let path = |p: &PathBuf| p.display().to_string();
        let mut args: Vec<String> = vec![
            "--tls-cert-file".into(),
            path(&pki.server_cert),
            "--tls-key-file".into(),
            path(&pki.server_key),
            "--tls-ca-cert-file".into(),
            path(&pki.ca),
            "--tls-auth-clients".into(),
            if client_certificates { "yes" } else { "no" }.into(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        for _ in 0..5 {
            let ports = free_ports(2);
            if let Some(redis) = RedisServer::try_start(ports[0], Some(ports[1]), &args) {
                return redis;
            }
        }
        panic!("redis-server with tls did not start (built without tls support?)");
    }

    /// Starts an empty server again on the same port (after
    /// [`kill`](Self::kill)): the store is back, its entries are gone.
    pub fn restart(&mut self) {
        self.kill();
        let extra = std::mem::take(&mut self.extra);
        let fresh = RedisServer::try_start(self.port, self.tls_port, &extra)
            .unwrap_or_else(|| panic!("redis-server did not restart on port {}", self.port));
        *self = fresh;
    }

    fn try_start(port: u16, tls_port: Option<u16>, extra: &[String]) -> Option<RedisServer> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(std::env::temp_dir());
        if let Some(tls_port) = tls_port {
            command.args(["--tls-port", &tls_port.to_string()]);
        }
        let child = command
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run redis-server (is it installed?)");
        let mut redis = RedisServer {
            child,
            port,
            tls_port,
            extra: extra.to_vec(),
        };
        // A password makes PING answer -NOAUTH: up all the same.
        let up = wait_until(Duration::from_secs(10), || {
            matches!(redis.child.try_wait(), Ok(Some(_))) || redis.answers()
        });
        (up && matches!(redis.child.try_wait(), Ok(None))).then_some(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `rediss://[userinfo@]127.0.0.1:<tls port>`.
    pub fn tls_url(&self, userinfo: &str) -> String {
        let port = self.tls_port.expect("a server started with start_tls");
        match userinfo {
            "" => format!("rediss://127.0.0.1:{port}"),
            _ => format!("rediss://{userinfo}@127.0.0.1:{port}"),
        }
    }

    /// Whether the server answers `PING` with `+PONG`.
    pub fn ping(&self) -> bool {
        self.first_reply_line().as_deref() == Some(b"+PONG".as_slice())
    }

    /// Whether the server answers `PING` at all (`+PONG`, or `-NOAUTH`
    /// behind a password).
    fn answers(&self) -> bool {
        self.first_reply_line()
            .is_some_and(|line| line.starts_with(b"+PONG") || line.starts_with(b"-NOAUTH"))
    }

    fn first_reply_line(&self) -> Option<Vec<u8>> {
        use std::io::{Read, Write};
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        s.write_all(b"PING\r\n").ok()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") && line.len() < 256 {
            s.read_exact(&mut byte).ok()?;
            line.push(byte[0]);
        }
        line.truncate(line.len().saturating_sub(2));
        Some(line)
    }

    /// SIGKILL (an abrupt outage); returns once the port refuses.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            }),
            "redis port still accepts after kill"
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
