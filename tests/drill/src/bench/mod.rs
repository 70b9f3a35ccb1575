//! `stella-drill bench ...`: the benchmarks. They are not tests (nothing
//! here gates CI); `bench/run.sh` and `bench/callgrind.sh` are one-line
//! wrappers around them, and docs/performance.md says what each measures.
//!
//! - [`run`]: requests/s, latency and CPU per request of the gateway's
//!   routes against HAProxy and a bare Pingora proxy, the target ratios;
//! - [`coldstart`], [`tokens`], [`connections`], [`soak`], [`callgrind`]:
//!   the other modes;
//! - [`wrk`], [`procfs`], [`client`]: wrk and its report, `/proc`, a
//!   keep-alive HTTP/1.1 client;
//! - [`children`]: the end of a run (by its last line, an error or a
//!   signal) stops every process the run started, by pid.
//!
//! Shared here: the scratch folder (removed at the end), the cast every
//! benchmark starts (the test Authority, an upstream answering 200 "ok",
//! which is HAProxy on one thread, and with `BENCH_TRACES=1` an OTLP sink),
//! and the gateway's configuration for the routes of `bench/policies`,
//! written through the gateway's own file types. Binaries (stella-gateway,
//! examples/bare_proxy, stella-load) are taken from this program's folder:
//! `bench/stella-drill.sh` builds them in release with one command.

mod baseline;
mod callgrind;
mod children;
mod client;
mod coldstart;
mod connections;
mod procfs;
mod run;
mod soak;
mod tokens;
mod wrk;

use crate::harness::{command_output, write_atomic, Abort};
use crate::stack::{authority_command, token_command, yaml_without_nulls};
use base64::Engine as _;
use clap::{Parser, Subcommand};
use serde_json::Value;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use stella_gateway::config::file::{FileConfig, ServiceSection, TlsSection};
use stella_test_support::{
    b64url, dpop_ath, try_request, DpopKey, Metrics, Process, TempDir, API_AUDIENCE,
};

/// How long a process may take to print its ready line.
const START: Duration = Duration::from_secs(20);

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Requests/s, latency, CPU per request and signature verifications
    /// of the upstream, HAProxy (plain and jwt_verify), a bare Pingora
    /// proxy and the gateway's pass, Bearer, DPoP and mTLS routes, medians
    /// over ROUNDS; the target ratios; the gateway's RSS; the cold start.
    /// `run coldstart|tokens|connections|soak ...` runs that mode.
    Run {
        /// DURATION (seconds per target and round, default 5), ROUNDS
        /// (default 3), CONNECTIONS (default 32); or a mode and its
        /// arguments.
        #[arg(value_name = "ARGS", num_args = 0..)]
        args: Vec<String>,
    },
    /// Time from exec to GATEWAY_READY and to the first 200 on /bearer/,
    /// over STARTS starts (default 5; target: ready in under 1 s).
    Coldstart {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        starts: Option<u64>,
    },
    /// The gateway's RSS holding N distinct cached tokens (default
    /// 100000; target: under 100 MiB at 100,000).
    Tokens {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        n: Option<u64>,
    },
    /// Resident memory per open client connection (N at once, default
    /// 1000; idle, then after one request each) of the gateway and of a
    /// bare Pingora proxy, and whether it goes back when they close.
    Connections {
        #[arg(value_parser = clap::value_parser!(u64).range(1..=15000))]
        n: Option<u64>,
    },
    /// Mixed Bearer / DPoP / anonymous load for MINUTES (default 10) at
    /// RATE req/s (default: 70% of a wrk probe's maximum); errors, p50,
    /// p99, RSS and open files per 30 s window. Environment: PROBE
    /// (seconds per probe, 5), MAX_IN_FLIGHT (1000).
    Soak {
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        minutes: Option<u64>,
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        rate: Option<u64>,
    },
    /// Instructions per request (valgrind callgrind) of the gateway's
    /// routes and of a bare Pingora proxy; the top functions; Ir ratios.
    Callgrind(callgrind::Options),
}

/// `bench run` with a mode, parsed again as that subcommand.
#[derive(Parser)]
#[command(name = "stella-drill bench")]
struct ModeArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

/// `bench run`'s own arguments.
#[derive(Parser)]
#[command(name = "stella-drill bench run")]
struct RunArgs {
    #[arg(default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    #[arg(default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    #[arg(default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    connections: u64,
}

/// Runs a benchmark and ends the process: exit 0; 1 when it could not run
/// to its end or its verdict failed (tokens, soak); 2 for wrong arguments
/// or a missing tool; 130 on a signal.
pub fn main(command: BenchCommand) -> ! {
    children::finish_on_signal();
    let outcome = std::panic::catch_unwind(|| dispatch(command)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(Abort(format!("panicked: {text}")))
    });
    let code = match outcome {
        Ok(code) => code,
        Err(Abort(why)) => {
            if !children::signalled() {
                eprintln!("bench: {why}");
            }
            1
        }
    };
    children::finish(code)
}

fn dispatch(command: BenchCommand) -> Result<i32, Abort> {
    match command {
        BenchCommand::Run { args } => {
            if matches!(
                args.first().map(String::as_str),
                Some("coldstart" | "tokens" | "connections" | "soak")
            ) {
                let mode = ModeArgs::try_parse_from(
                    std::iter::once("stella-drill bench".to_owned()).chain(args),
                )
                .unwrap_or_else(|e| e.exit());
                return dispatch(mode.command);
            }
            let a = RunArgs::try_parse_from(
                std::iter::once("stella-drill bench run".to_owned()).chain(args),
            )
            .unwrap_or_else(|e| e.exit());
            run::run(a.duration, a.rounds, a.connections)
        }
        BenchCommand::Coldstart { starts } => coldstart::main(starts.unwrap_or(5)),
        BenchCommand::Tokens { n } => tokens::main(n.unwrap_or(100_000)),
        BenchCommand::Connections { n } => connections::main(n.unwrap_or(1000)),
        BenchCommand::Soak { minutes, rate } => soak::main(minutes.unwrap_or(10), rate),
        BenchCommand::Callgrind(options) => callgrind::main(options),
    }
}

/// Exits 2 naming the first tool missing from `PATH`; installs the test
/// Authority's packages if they are not there yet.
pub fn require(root: &Path, tools: &[&str]) -> Result<(), Abort> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in tools {
        let found = std::env::split_paths(&path).any(|dir| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
        if !found {
            eprintln!("bench: {tool} is required (apt-get install -y wrk haproxy valgrind nodejs)");
            children::finish(2);
        }
    }
    let authority = root.join("tests/authority");
    if !authority.join("node_modules").is_dir() {
        command_output(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&authority),
        )?;
    }
    Ok(())
}

/// Whether `BENCH_TRACES` asks for traces.
fn traces_on() -> bool {
    std::env::var_os("BENCH_TRACES").is_some_and(|v| !v.is_empty())
}

/// One benchmark run: its scratch folder and the processes it keeps up
/// (the Authority, the upstream, the OTLP sink, HAProxy instances). They
/// are stopped when the run ends ([`children::finish`]).
pub struct Bench {
    /// The workspace root.
    pub root: PathBuf,
    /// This program's folder: the release binaries.
    pub bin: PathBuf,
    /// The scratch folder.
    pub work: TempDir,
    pub issuer: String,
    /// `host:port` of the OTLP sink (`BENCH_TRACES=1`).
    pub otlp: Option<String>,
    /// The upstream's port.
    pub upstream: u16,
    pub upstream_pid: u32,
    kept: Vec<Process>,
    plain: Vec<Child>,
}

impl Drop for Bench {
    fn drop(&mut self) {
        for child in &mut self.plain {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Bench {
    pub fn new() -> Result<Bench, Abort> {
        let root = stella_test_support::repo_root();
        let bin = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .ok_or_else(|| Abort("cannot find the folder of stella-drill".into()))?;
        let work = TempDir::new("bench");
        children::remove_at_end(work.path().to_path_buf());
        Ok(Bench {
            root,
            bin,
            work,
            issuer: String::new(),
            otlp: None,
            upstream: 0,
            upstream_pid: 0,
            kept: Vec::new(),
            plain: Vec::new(),
        })
    }

    /// A release binary beside this program (`stella-gateway`,
    /// `examples/bare_proxy`, `stella-load`).
    pub fn binary(&self, name: &str) -> Result<PathBuf, Abort> {
        let path = self.bin.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(Abort(format!(
                "no {}: build it with bench/stella-drill.sh (cargo build --release)",
                path.display()
            )))
        }
    }

    /// A file in the scratch folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Starts a process that prints `<marker> {json}` when ready, its output
    /// in `<name>.out` and `.err` of the scratch folder.
    pub fn start_ready(
        &self,
        name: &str,
        command: Command,
        marker: &str,
        timeout: Duration,
    ) -> Result<Process, Abort> {
        Process::start_logged(
            name,
            command,
            marker,
            timeout,
            self.work.path(),
            Stdio::null(),
        )
        .map_err(Abort)
    }

    /// Starts a process that prints no ready line, its output in
    /// `<name>.out` and `.err`; its pid.
    pub fn spawn(&mut self, name: &str, command: &mut Command) -> Result<u32, Abort> {
        let file = |ext: &str| {
            let path = self.path(&format!("{name}.{ext}"));
            std::fs::File::create(&path).map_err(|e| Abort(format!("{}: {e}", path.display())))
        };
        let child = command
            .stdout(file("out")?)
            .stderr(file("err")?)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| Abort(format!("cannot start {name}: {e}")))?;
        let pid = child.id();
        self.plain.push(child);
        Ok(pid)
    }

    /// Whether a process started with [`spawn`](Self::spawn) still runs.
    pub fn running(&mut self, pid: u32) -> bool {
        self.plain
            .iter_mut()
            .find(|c| c.id() == pid)
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The last lines of a log of the scratch folder, for an error message.
    pub fn tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The test Authority, its access tokens living an hour (and with
    /// `BENCH_TRACES=1` the OTLP sink). `env`: more of its environment.
    pub fn start_authority(&mut self, env: &[(&str, &str)]) -> Result<(), Abort> {
        let mut cmd = authority_command(&self.root, 0, 3600);
        cmd.envs(env.iter().copied());
        let process = self.start_ready("authority", cmd, "AUTHORITY_READY", START)?;
        self.issuer = process.ready["issuer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.kept.push(process);
        if traces_on() {
            self.start_otlp_sink()?;
        }
        Ok(())
    }

    /// `BENCH_TRACES=1`: OpenTelemetry traces on, every request sampled,
    /// exported to a local OTLP/HTTP receiver that discards the spans
    /// (`tests/otlp/receiver.py --discard`, from tests/.venv).
    fn start_otlp_sink(&mut self) -> Result<(), Abort> {
        let mut cmd = Command::new(self.root.join("tests/.venv/bin/python"));
        cmd.current_dir(&self.root)
            .args(["tests/otlp/receiver.py", "--discard"]);
        let process = self.start_ready("otlp", cmd, "OTLP_READY", START)?;
        self.otlp = process.ready["addr"].as_str().map(str::to_owned);
        self.kept.push(process);
        Ok(())
    }

    /// A token of `client` for scope `echo.read` (`extra`: more token.mjs
    /// options, such as `--dpop-key-file FILE` or `--cert-pem FILE`).
    pub fn token(&self, client: &str, extra: &[&std::ffi::OsStr]) -> Result<String, Abort> {
        let mut cmd = token_command(&self.root, &self.issuer, client);
        cmd.args(["--scope", "echo.read"]).args(extra);
        Ok(command_output(&mut cmd)?.trim().to_owned())
    }

    /// A DPoP key (its private JWK in `dpop-key.json`) and a token of
    /// `svc-dpop` bound to it.
    pub fn dpop_token(&self) -> Result<(DpopKey, String), Abort> {
        let key = DpopKey::generate();
        let file = self.path("dpop-key.json");
        key.write_private_jwk(&file);
        let token = self.token("svc-dpop", &["--dpop-key-file".as_ref(), file.as_os_str()])?;
        Ok((key, token))
    }

    /// Starts HAProxy with `config` (written to `<name>.cfg`); its pid.
    pub fn haproxy(&mut self, name: &str, config: &str) -> Result<u32, Abort> {
        let file = self.path(&format!("{name}.cfg"));
        write_atomic(&file, config)?;
        self.spawn(name, Command::new("haproxy").arg("-q").arg("-f").arg(&file))
    }

    /// The upstream: HAProxy on one thread answering 200 "ok".
    pub fn start_upstream(&mut self) -> Result<(), Abort> {
        let port = stella_test_support::free_port();
        let pid = self.haproxy(
            "upstream",
            &format!(
                "global\n  nbthread 1\n{DEFAULTS}frontend upstream\n  bind 127.0.0.1:{port}\n  \
                 http-request return status 200 content-type text/plain string \"ok\"\n"
            ),
        )?;
        (self.upstream, self.upstream_pid) = (port, pid);
        self.wait_accepting("upstream", pid, port, Duration::from_secs(20))
    }

    /// Waits until `port` accepts connections, while the process `pid`
    /// (started with [`spawn`](Self::spawn)) runs.
    pub fn wait_accepting(
        &mut self,
        name: &str,
        pid: u32,
        port: u16,
        limit: Duration,
    ) -> Result<(), Abort> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
                return Ok(());
            }
            if !self.running(pid) {
                return Err(Abort(format!(
                    "{name} exited; its stderr ends with:\n{}",
                    self.tail(&format!("{name}.err"), 20)
                )));
            }
            if started.elapsed() > limit {
                return Err(Abort(format!("{name} does not accept on {addr}")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gateway's configuration for the routes of bench/policies.
    ///
    /// Proofs may be made well before they are used: the proof window is
    /// widened to `proof_max_age` (default 600 s; the gateway's default is
    /// 60). Not wider: the replay store's default capacity grows with the
    /// window. Logging is what a deployment runs: JSON at info, one
    /// decision line per request (`BENCH_LOG_LEVEL=warn` turns decision
    /// lines off).
    pub fn gateway_config(&self, g: &Gateway) -> FileConfig {
        let mut config = FileConfig::default();
        let gw = &mut config.gateway;
        gw.id = Some("stella-gateway-bench".into());
        gw.public_origin = Some(format!("http://127.0.0.1:{}", g.http));
        gw.listeners.http = Some(format!("127.0.0.1:{}", g.http));
        gw.listeners.admin = Some(format!("127.0.0.1:{}", g.admin));
        gw.listeners.tls = g.tls.clone();
        let authority = &mut gw.auth.authority;
        authority.issuer = Some(self.issuer.clone());
        authority.require_https_metadata = Some(false);
        authority.audiences = vec![API_AUDIENCE.into()];
        gw.auth.dpop.proof_max_age_seconds = Some(g.proof_max_age.unwrap_or(600));
        gw.auth.token_cache_max_entries = g.token_cache_max_entries;
        gw.policies_dir = Some(self.root.join("bench/policies").display().to_string());
        gw.threads = g.threads;
        gw.work_stealing = g.work_stealing;
        config.router.identity_envelope_signing_key =
            Some("hs256:YmVuY2gtb25seS1lbnZlbG9wZS1rZXktMDEyMzQ1Njc4OWFi".into());
        config.router.identity_envelope_signing_key_id = Some("bench-1".into());
        config.services = vec![ServiceSection {
            name: Some("bench".into()),
            upstreams: vec![format!("127.0.0.1:{}", self.upstream)],
            ..ServiceSection::default()
        }];
        config.logging.format = Some("json".into());
        config.logging.level = Some(
            std::env::var("BENCH_LOG_LEVEL")
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "info".into()),
        );
        if let Some(otlp) = &self.otlp {
            config.traces.enabled = Some(true);
            config.traces.sampler = Some("always_on".into());
            config.traces.endpoint = Some(format!("http://{otlp}"));
        }
        config
    }

    /// Writes the gateway's configuration to `<folder>/gateway.yaml` of
    /// the scratch folder; its path. The file has a folder of its own: the
    /// gateway watches its configuration's folder, and a log written
    /// beside it would wake the watcher on every line.
    pub fn write_gateway_config(&self, folder: &str, g: &Gateway) -> Result<PathBuf, Abort> {
        let dir = self.path(folder);
        std::fs::create_dir_all(&dir).map_err(|e| Abort(format!("{}: {e}", dir.display())))?;
        let path = dir.join("gateway.yaml");
        let text = yaml_without_nulls(&self.gateway_config(g))?;
        write_atomic(&path, &format!("# Written by stella-drill bench.\n{text}"))?;
        Ok(path)
    }

    /// Starts `gateway run --config FILE` and waits for GATEWAY_READY.
    pub fn start_gateway(&self, binary: &Path, config: &Path) -> Result<Process, Abort> {
        let mut cmd = Command::new(binary);
        cmd.arg("run").arg("--config").arg(config);
        self.start_ready("gateway", cmd, "GATEWAY_READY", START)
    }

    /// The admin listener's metrics (None when it does not answer).
    pub fn metrics(&self, admin: u16) -> Option<Metrics> {
        let addr = SocketAddr::from(([127, 0, 0, 1], admin));
        let r = try_request(addr, "GET", "/metrics", &[], b"", Duration::from_secs(5)).ok()?;
        (r.status == 200).then(|| Metrics::parse(&r.text()))
    }

    /// The Authority's ES256 verification key as PEM (for HAProxy's
    /// jwt_verify), found through its discovery document.
    pub fn authority_es256_pem(&self) -> Result<String, Abort> {
        let get = |url: &str| -> Result<Value, Abort> {
            let (addr, path) =
                http_target(url).ok_or_else(|| Abort(format!("not an http url: {url}")))?;
            let r = try_request(addr, "GET", &path, &[], b"", Duration::from_secs(10))
                .map_err(|e| Abort(format!("GET {url}: {e}")))?;
            serde_json::from_slice(&r.body)
                .map_err(|e| Abort(format!("GET {url}: {} {e}", r.status)))
        };
        let discovery = get(&format!("{}/.well-known/openid-configuration", self.issuer))?;
        let jwks_uri = discovery["jwks_uri"].as_str().unwrap_or_default();
        let jwks = get(jwks_uri)?;
        let key = jwks["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|k| k["kty"] == "EC" && k["crv"] == "P-256")
            .ok_or_else(|| Abort(format!("no P-256 key in {jwks_uri}")))?;
        p256_pem(key).map_err(Abort)
    }
}

/// The HAProxy `defaults` section every configuration here shares.
pub const DEFAULTS: &str =
    "defaults\n  mode http\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n";

/// What a benchmark's gateway configuration sets.
#[derive(Default, Clone)]
pub struct Gateway {
    pub http: u16,
    pub admin: u16,
    pub tls: Option<TlsSection>,
    /// `gateway.auth.dpop.proof_max_age_seconds` (default 600).
    pub proof_max_age: Option<u64>,
    pub token_cache_max_entries: Option<u64>,
    pub threads: Option<u64>,
    pub work_stealing: Option<bool>,
}

/// Writes `count` DPoP proofs of `method url` for `token` (its `ath`), one
/// per line, each with its own random `jti`: the gateway refuses a
/// replayed proof. Made on every core, before the measured loop; `iat` is
/// now.
pub fn write_proofs(
    key: &DpopKey,
    method: &str,
    url: &str,
    token: &str,
    count: u64,
    path: &Path,
) -> Result<(), Abort> {
    let iat = stella_test_support::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let share = count.div_ceil(threads.max(1));
    let ath = dpop_ath(token);
    let parts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let n = share.min(count.saturating_sub(t * share));
                let ath = &ath;
                s.spawn(move || {
                    let rng = ring::rand::SystemRandom::new();
                    let mut text = String::new();
                    for _ in 0..n {
                        let mut random = [0u8; 12];
                        let _ = ring::rand::SecureRandom::fill(&rng, &mut random);
                        let proof = key
                            .proof_builder(method, url, iat, &b64url(&random))
                            .claim("ath", Value::String(ath.clone()))
                            .build();
                        text.push_str(&proof);
                        text.push('\n');
                    }
                    text
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    std::fs::write(path, parts.concat()).map_err(|e| Abort(format!("{}: {e}", path.display())))
}

/// The PEM (SubjectPublicKeyInfo) of a P-256 public key given as a JWK.
pub fn p256_pem(jwk: &Value) -> Result<String, String> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0
    // unused bits, then the uncompressed point 04 || x || y) }.
    const PREFIX: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    let coordinate = |name: &str| {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jwk[name].as_str().unwrap_or_default())
            .map_err(|e| format!("jwk {name}: {e}"))?;
        if bytes.len() == 32 {
            Ok(bytes)
        } else {
            Err(format!("jwk {name}: {} bytes, not 32", bytes.len()))
        }
    };
    let mut der = PREFIX.to_vec();
    der.extend(coordinate("x")?);
    der.extend(coordinate("y")?);
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    Ok(pem)
}

/// The address and request target of a plain-http URL on an IP address
/// (`http://127.0.0.1:8080/a?b` -> 127.0.0.1:8080, `/a?b`).
pub fn http_target(url: &str) -> Option<(SocketAddr, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .parse()
        .ok()
        .or_else(|| format!("{authority}:80").parse().ok())?;
    Some((addr, path.to_owned()))
}

/// The median (of two middle values, their mean), as Python's
/// `statistics.median`; 0 for none.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// `value` rounded to an integer with thousands separated by commas
/// (Python's `{:,.0f}`).
pub fn commas(value: f64) -> String {
    let text = format!("{value:.0}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", text.as_str()),
    };
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_reads_back_through_the_gateway_types() {
        let mut bench = Bench::new().expect("bench");
        bench.issuer = "http://127.0.0.1:4000".into();
        bench.upstream = 4001;
        let g = Gateway {
            http: 4002,
            admin: 4003,
            threads: Some(1),
            work_stealing: Some(false),
            token_cache_max_entries: Some(3200),
            ..Gateway::default()
        };
        let path = bench.write_gateway_config("conf", &g).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let back: FileConfig = serde_yaml::from_str(&text).expect("the gateway's types read it");
        assert_eq!(
            back.gateway.listeners.http.as_deref(),
            Some("127.0.0.1:4002")
        );
        assert_eq!(back.gateway.auth.dpop.proof_max_age_seconds, Some(600));
        assert_eq!(back.gateway.auth.token_cache_max_entries, Some(3200));
        assert_eq!(
            (back.gateway.threads, back.gateway.work_stealing),
            (Some(1), Some(false))
        );
        assert_eq!(back.services[0].upstreams, ["127.0.0.1:4001"]);
        assert_eq!(back.logging.format.as_deref(), Some("json"));
        assert!(back
            .gateway
            .policies_dir
            .is_some_and(|p| p.ends_with("bench/policies")));
        assert!(!text.contains("null") && !text.contains("tls"), "{text}");
    }

    #[test]
    fn a_p256_jwk_becomes_the_pem_openssl_writes() {
        // `openssl pkey -pubout` of a key, and node's JWK of it.
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": "gfrJOFINz8Xd-iFwBKblfWmNyFwOCDs6D9yMp6IJJC4",
            "y": "64YLyaxtHYKJ3Y9PFbXczr7rvScV2GsrPb5WmdROzcA"});
        assert_eq!(
            p256_pem(&jwk).expect("converts"),
            "-----BEGIN PUBLIC KEY-----\n\
             MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEgfrJOFINz8Xd+iFwBKblfWmNyFwO\n\
             CDs6D9yMp6IJJC7rhgvJrG0dgondj08VtdzOvuu9JxXYays9vlaZ1E7NwA==\n\
             -----END PUBLIC KEY-----\n"
        );
        assert!(p256_pem(&serde_json::json!({"x": "AA", "y": "AA"})).is_err());
    }

    #[test]
    fn proofs_are_one_per_line_each_with_its_own_jti_and_the_tokens_ath() {
        let dir = TempDir::new("proofs-unit");
        let key = DpopKey::generate();
        let path = dir.join("proofs.txt");
        write_proofs(&key, "GET", "http://127.0.0.1:1/dpop/x", "tok", 5, &path).expect("written");
        let text = std::fs::read_to_string(&path).expect("read");
        let claims: Vec<Value> = text
            .lines()
            .map(|proof| {
                let part = proof.split('.').nth(1).expect("three parts");
                let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .expect("base64url");
                serde_json::from_slice(&bytes).expect("json")
            })
            .collect();
        assert_eq!(claims.len(), 5);
        let mut jtis: Vec<&str> = claims.iter().map(|c| c["jti"].as_str().unwrap()).collect();
        jtis.sort();
        jtis.dedup();
        assert_eq!(jtis.len(), 5, "{jtis:?}");
        assert!(jtis.iter().all(|j| j.len() == 16), "12 random bytes");
        for c in &claims {
            assert_eq!(c["ath"], dpop_ath("tok"));
            assert_eq!(
                (c["htm"].as_str(), c["htu"].as_str()),
                (Some("GET"), Some("http://127.0.0.1:1/dpop/x"))
            );
        }
    }

    #[test]
    fn urls_on_ip_addresses_split_into_address_and_target() {
        assert_eq!(
            http_target("http://127.0.0.1:8080/jwks?x=1"),
            Some(("127.0.0.1:8080".parse().unwrap(), "/jwks?x=1".into()))
        );
        assert_eq!(
            http_target("http://127.0.0.1:9"),
            Some(("127.0.0.1:9".parse().unwrap(), "/".into()))
        );
        assert_eq!(http_target("https://127.0.0.1:9/"), None);
    }

    #[test]
    fn medians_and_thousands_read_as_pythons() {
        assert_eq!(median([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median([]), 0.0);
        assert_eq!(commas(180928.95), "180,929");
        assert_eq!(commas(36185790.0), "36,185,790");
        assert_eq!(commas(999.4), "999");
        assert_eq!(commas(-1234.0), "-1,234");
    }
}
