//! Starting, reconfiguring and stopping the stack's processes.

use super::*;
use crate::harness::{write_atomic, Abort};
use std::path::{Path, PathBuf};
use stella_gateway::config::file::{ClaimsSection, IntrospectionSection};
use stella_test_support::{GATEWAY_CLIENT, OPAQUE_AUDIENCE};

impl crate::Drill {
    /// Generates an HS256 envelope key with `stella-gateway keys generate`.
    pub fn new_key(&mut self, kid: &str) -> Result<(), Abort> {
        let out = self.command_output(
            Command::new(self.run.binary("stella-gateway"))
                .args(["keys", "generate", "--alg", "HS256", "--kid", kid]),
        )?;
        let key = out
            .lines()
            .find_map(|l| l.strip_prefix("Router__IdentityEnvelopeSigningKey="))
            .map(str::to_owned);
        match key {
            Some(key) => {
                self.stack.keys.insert(kid.to_owned(), key);
                Ok(())
            }
            None => self
                .run
                .abort(format!("keys generate printed no key for {kid}")),
        }
    }

    /// Runs a command to its end; its stdout, or an abort with its stderr.
    pub fn command_output(&self, command: &mut Command) -> Result<String, Abort> {
        crate::harness::command_output(command.current_dir(&self.run.root))
    }

    /// Starts a process with its logs in `logs/`; the drill stops it at the
    /// end.
    pub fn start_logged(
        &self,
        name: &str,
        command: Command,
        marker: &str,
    ) -> Result<Process, Abort> {
        Process::start_logged(name, command, marker, START, &self.run.logs, Stdio::null())
            .map_err(Abort)
    }

    /// Starts the Authority on `port` (0: any free port; a restart passes
    /// the old one).
    pub fn start_authority(&mut self, port: u16) -> Result<(), Abort> {
        let mut cmd = authority_command(&self.run.root, port, self.stack.token_ttl);
        cmd.envs(self.stack.authority_env.iter().map(|(k, v)| (k, v)));
        let process = self.start_logged("authority", cmd, "AUTHORITY_READY")?;
        self.stack.issuer = process.ready["issuer"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.stack.authority_port = process.ready["port"].as_u64().unwrap_or_default() as u16;
        self.stack.authority = Some(process);
        Ok(())
    }

    /// A Bearer token of `client` (secret `<client>-secret`).
    pub fn token(&self, client: &str) -> Result<String, Abort> {
        let out = self.command_output(&mut token_command(
            &self.run.root,
            &self.stack.issuer,
            client,
        ))?;
        Ok(out.trim().to_owned())
    }

    /// Writes the instance's `Router__` file from its mode and kids.
    pub fn write_service_file(&self, instance: &str) -> Result<(), Abort> {
        let s = self.stack.service(instance);
        let mut text = format!(
            "Router__AuthorizationTrustMode={}\nRouter__IdentityEnvelopeAcceptedKeys={}\nRouter__IdentityEnvelopeAudience={}\n",
            s.mode,
            self.stack.accepted_keys(&s.accepted),
            s.audience
        );
        if let Some(skew) = self.stack.service_skew {
            text.push_str(&format!(
                "Router__IdentityEnvelopeClockSkewSeconds={skew}\n"
            ));
        }
        write_atomic(&self.run.services.join(format!("{instance}.env")), &text)
    }

    /// Starts one sample service instance on `port` (0: any free port; a
    /// restart passes the old one). Its settings are in its `Router__` file
    /// (`Router__ConfigFile`), which it re-reads when the file changes or on
    /// SIGHUP.
    pub fn start_service(
        &mut self,
        instance: &str,
        audience: &str,
        mode: &str,
        port: u16,
    ) -> Result<(), Abort> {
        let accepted = match self.stack.services.get(instance) {
            Some(s) => s.accepted.clone(),
            None => self.stack.default_kids.clone(),
        };
        self.stack.services.insert(
            instance.to_owned(),
            Service {
                process: None,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                audience: audience.to_owned(),
                mode: mode.to_owned(),
                accepted,
            },
        );
        self.write_service_file(instance)?;
        let file = self.run.services.join(format!("{instance}.env"));
        let token = if self.stack.legacy_token.is_empty() {
            format!("service-token-{instance}")
        } else {
            self.stack.legacy_token.clone()
        };
        let mut cmd = Command::new(self.run.binary("stella-echo-service"));
        cmd.env("Router__ConfigFile", &file)
            .env("ECHO_LISTEN", format!("127.0.0.1:{port}"))
            .env("ECHO_NAME", instance)
            .env("ECHO_DRAIN_MS", "1500")
            .env("ECHO_SERVICE_TOKEN", token);
        let process = self.start_logged(instance, cmd, "ECHO_READY")?;
        let addr = process.addr();
        let service = self
            .stack
            .services
            .get_mut(instance)
            .expect("inserted above");
        service.addr = addr;
        service.process = Some(process);
        Ok(())
    }

    /// GET /__echo/config of the instance.
    pub fn service_config(&self, instance: &str) -> Value {
        let addr = self.stack.service(instance).addr;
        get_json(addr, "/__echo/config", &[])
    }

    /// Rewrites the instance's `Router__` file from its settings (and with
    /// `hup` also sends SIGHUP), then waits until `/__echo/config` shows the
    /// new mode and kids.
    pub fn reconfigure_service(&mut self, instance: &str, hup: bool) -> Result<(), Abort> {
        self.write_service_file(instance)?;
        let s = self.stack.service(instance);
        if hup {
            if let Some(p) = &s.process {
                p.signal("HUP");
            }
        }
        let (mode, mut want) = (s.mode.clone(), s.accepted.clone());
        want.sort();
        let shows = |config: &Value| {
            let mut kids = kids_of(&config["accepted_kids"]);
            kids.sort();
            config["mode"] == mode.as_str() && kids == want
        };
        match self.run.wait_for(Duration::from_secs(10), || {
            shows(&self.service_config(instance))
        }) {
            Some(ms) => {
                let how = if hup { "hup" } else { "file" };
                self.run.ok(format!(
                    "{instance} reloaded ({how}) in {ms} ms: {}",
                    self.service_config(instance)
                ));
                Ok(())
            }
            None => self.run.abort(format!(
                "{instance}: /__echo/config shows {}, wanted mode {mode} kids {want:?}",
                self.service_config(instance)
            )),
        }
    }

    /// Starts the gateway on free ports, its TLS listener's too (a lost
    /// race for a port is retried with others; read the TLS port from
    /// `Stack::tls_port` once it has started).
    pub fn start_gateway(&mut self) -> Result<(), Abort> {
        for attempt in 1..=3 {
            let ports = free_ports(3);
            (self.stack.http_port, self.stack.admin_port) = (ports[0], ports[1]);
            if let Some(tls) = self.stack.tls.as_mut() {
                tls.addr = Some(format!("127.0.0.1:{}", ports[2]));
            }
            self.write_gateway_config()?;
            match self.spawn_gateway() {
                Ok(ready) => {
                    self.run.say(format!(
                        "  gateway {} (admin {}): {ready}",
                        self.stack.gw(),
                        self.stack.admin()
                    ));
                    return Ok(());
                }
                Err(e) => eprintln!("gateway start attempt {attempt} failed ({e}); retrying"),
            }
        }
        self.run.abort("the gateway did not start")
    }

    /// Starts the gateway with the configuration already written; its ready
    /// line.
    pub fn spawn_gateway(&mut self) -> Result<Value, String> {
        let mut cmd = Command::new(self.run.binary("stella-gateway"));
        cmd.args(["run", "--config"])
            .arg(self.run.conf.join("gateway.yaml"))
            .envs(self.stack.gateway_env.iter().map(|(k, v)| (k, v)));
        let process = Process::start_logged(
            "gateway",
            cmd,
            "GATEWAY_READY",
            START,
            &self.run.logs,
            Stdio::null(),
        )?;
        let ready = process.ready.clone();
        self.stack.gateway = Some(process);
        Ok(ready)
    }

    /// Replaces the gateway process whose configuration is `config` with a
    /// new one through the socket handover (`stella-gateway upgrade`: the
    /// new process loads its configuration and persisted state, takes the
    /// listening sockets over, and the old one drains and exits). The
    /// command's output and the new process's logs go to `logs/<log>`.
    /// The old and the new pid, and the command's `upgraded:` line.
    pub fn upgrade_gateway(&self, config: &Path, log: &str) -> Result<Upgraded, Abort> {
        let path = self.run.logs.join(log);
        let file =
            std::fs::File::create(&path).map_err(|e| Abort(format!("{}: {e}", path.display())))?;
        let started = std::time::Instant::now();
        // The new gateway inherits the command's stdout and stderr: a file,
        // never a pipe this drill would wait on.
        let status = Command::new(self.run.binary("stella-gateway"))
            .args(["upgrade", "--config"])
            .arg(config)
            .stdout(file.try_clone().map_err(|e| Abort(e.to_string()))?)
            .stderr(file)
            .status()
            .map_err(|e| Abort(format!("cannot run stella-gateway upgrade: {e}")))?;
        let said = std::fs::read_to_string(&path).unwrap_or_default();
        if !status.success() {
            return self
                .run
                .abort(format!("stella-gateway upgrade: {status}: {said}"));
        }
        let line = said
            .lines()
            .find(|l| l.starts_with("upgraded:"))
            .unwrap_or_default()
            .to_owned();
        // `upgraded: pid OLD -> NEW (took)`
        let words: Vec<&str> = line.split_whitespace().collect();
        let pid = |i: usize| words.get(i).and_then(|p| p.parse::<u32>().ok());
        match (pid(2), pid(4)) {
            (Some(old), Some(new)) if old != new => Ok(Upgraded {
                old,
                new,
                line,
                millis: started.elapsed().as_millis() as u64,
            }),
            _ => self.run.abort(format!(
                "upgrade did not name an old and a new pid: {said:?}"
            )),
        }
    }

    /// Writes the configuration of replica `name` on free ports and starts
    /// it (`write_replica_config`, `start_replica`); a lost race for a port
    /// is retried with others. The process, its configuration file and its
    /// (http, admin, tls) ports (tls unused without a TLS listener).
    pub fn start_replica_on_free_ports(
        &self,
        name: &str,
    ) -> Result<(Process, std::path::PathBuf, [u16; 3]), Abort> {
        let mut last = String::new();
        for attempt in 1..=3 {
            let p = free_ports(3);
            let ports = [p[0], p[1], p[2]];
            let tls = self.stack.tls.is_some().then_some(ports[2]);
            let config = self.write_replica_config(name, ports[0], ports[1], tls)?;
            match self.start_replica(name, &config) {
                Ok(process) => return Ok((process, config, ports)),
                Err(Abort(e)) => {
                    eprintln!("{name} start attempt {attempt} failed ({e}); retrying");
                    last = e;
                }
            }
        }
        self.run.abort(last)
    }

    /// Starts another replica of the gateway from its configuration file
    /// (`write_replica_config`), logs `logs/<name>.*`; the caller stops it.
    pub fn start_replica(&self, name: &str, config: &Path) -> Result<Process, Abort> {
        let mut cmd = Command::new(self.run.binary("stella-gateway"));
        cmd.args(["run", "--config"])
            .arg(config)
            .envs(self.stack.gateway_env.iter().map(|(k, v)| (k, v)));
        self.start_logged(name, cmd, "GATEWAY_READY")
            .map_err(|Abort(e)| Abort(format!("replica {name} did not start: {e}")))
    }

    /// Stops the gateway (SIGTERM: it drains and exits).
    pub fn stop_gateway(&mut self) {
        if let Some(mut p) = self.stack.gateway.take() {
            p.stop("TERM", GRACE);
        }
    }

    pub fn signal_gateway(&self, signal: &str) {
        if let Some(p) = &self.stack.gateway {
            p.signal(signal);
        }
    }

    /// Stops one service instance (SIGTERM: it drains and exits).
    pub fn stop_service(&mut self, instance: &str) {
        if let Some(s) = self.stack.services.get_mut(instance) {
            if let Some(mut p) = s.process.take() {
                p.stop("TERM", GRACE);
            }
        }
    }

    pub fn stop_authority(&mut self) {
        if let Some(mut p) = self.stack.authority.take() {
            p.stop("TERM", GRACE);
        }
    }

    /// The standard stack: the Authority, three services (one per trust
    /// mode; `echo_replicas` instances of `echo`), the gateway, and tokens
    /// for polling.
    pub fn stack_up(&mut self) -> Result<(), Abort> {
        if !self.stack.keys.contains_key("k1") {
            self.new_key("k1")?;
        }
        self.start_authority(0)?;
        // echo-legacy (ServiceEnforced) checks the forwarded token itself:
        // it accepts exactly this one, which the load sends (token-file).
        self.stack.legacy_token = self.token("svc-bearer")?;
        write_atomic(
            &self.run.dir.join("legacy.token"),
            &format!("{}\n", self.stack.legacy_token),
        )?;
        self.stack.bearer_token = self.token("svc-bearer")?;
        self.stack.readonly_token = self.token("svc-readonly")?;
        let echo: Vec<String> = if self.stack.echo_replicas == 1 {
            vec!["echo".into()]
        } else {
            (1..=self.stack.echo_replicas)
                .map(|i| format!("echo-{i}"))
                .collect()
        };
        for instance in &echo {
            self.start_service(instance, "echo", "GatewayEnforced", 0)?;
        }
        self.start_service("echo-hybrid", "echo-hybrid", "Hybrid", 0)?;
        self.start_service("echo-legacy", "echo-legacy", "ServiceEnforced", 0)?;
        let route = |name: &str, instances: Vec<String>, mode: &str| Route {
            name: name.into(),
            instances,
            mode: mode.into(),
            health: "/__echo/health".into(),
        };
        self.stack.routes = vec![
            route("echo", echo, "GatewayEnforced"),
            route("echo-hybrid", vec!["echo-hybrid".into()], "Hybrid"),
            route("echo-legacy", vec!["echo-legacy".into()], "ServiceEnforced"),
        ];
        self.copy_policies()?;
        for language in self.stack.samples.clone() {
            self.start_sample(&language)?;
        }
        self.start_gateway()?;
        let s = self.status_with("/items/1", &self.stack.bearer_token);
        if s != 200 {
            return self
                .run
                .abort(format!("GET /items/1 through the gateway: {s}, wanted 200"));
        }
        let services: Vec<String> = self
            .stack
            .services
            .iter()
            .map(|(k, s)| format!("{k}={}", s.addr))
            .collect();
        self.run.ok(format!(
            "stack up: Authority {}, services {}",
            self.stack.issuer,
            services.join(" ")
        ));
        Ok(())
    }

    /// The Authority settings of a drill that takes the Authority away:
    /// keys fresh `refresh` seconds after a fetch, then stale for at most
    /// `max_stale`, a short deadline per call, the last good documents in a
    /// `state` folder of the run; and opaque tokens and claims
    /// ([`Drill::opaque_and_claims`], cached `cache` seconds) that outlast
    /// the keys. Effective claims are read for every token of this
    /// Authority, JWTs included, so they (and introspection results) must
    /// serve as long as the keys: their last fetch is at most `cache` before
    /// the outage, the keys' at its start, and each serves stale up to its
    /// max-stale past its freshness; 2 s more cover the drills' polling of
    /// the keys' age.
    pub fn outage_ready_authority(
        &mut self,
        refresh: u64,
        max_stale: u64,
        cache: u64,
    ) -> Result<(), Abort> {
        let state = self.run.dir.join("state");
        std::fs::create_dir_all(&state).map_err(|e| Abort(format!("{}: {e}", state.display())))?;
        let a = &mut self.stack.authority_settings;
        a.jwks_refresh_seconds = Some(refresh);
        a.jwks_cooldown_seconds = Some(2);
        a.jwks_max_stale_seconds = Some(max_stale);
        a.http_timeout_ms = Some(500);
        a.state_dir = Some(state.display().to_string());
        self.opaque_and_claims(cache, refresh + max_stale + 2)
    }

    /// Opaque tokens and a claims-dependent route, before `stack_up`: the
    /// gateway introspects tokens of [`OPAQUE_AUDIENCE`] and reads effective
    /// claims from the Authority's claims endpoint (as the `gateway`
    /// client), both cached `cache` seconds and served stale up to
    /// `max_stale`; `/audit/**` on `echo` needs the role `auditor` and the
    /// claim `clearance: high`, which the Authority's claims file gives
    /// `svc-bearer`. The Authority keeps the tokens it issued in a file
    /// (`AUTHORITY_STORE_FILE`), so once restarted it still introspects
    /// them.
    pub fn opaque_and_claims(&mut self, cache: u64, max_stale: u64) -> Result<(), Abort> {
        let claims = self.run.dir.join("authority-claims.json");
        write_atomic(
            &claims,
            r#"{"svc-bearer": {"roles": ["auditor"], "clearance": "high"}}"#,
        )?;
        let store = self.run.dir.join("authority-tokens.json");
        let env = &mut self.stack.authority_env;
        env.push(("AUTHORITY_CLAIMS_FILE".into(), claims.display().to_string()));
        env.push(("AUTHORITY_STORE_FILE".into(), store.display().to_string()));
        let a = &mut self.stack.authority_settings;
        a.audiences.push(OPAQUE_AUDIENCE.into());
        a.client_id = Some(GATEWAY_CLIENT.id.into());
        a.client_secret = Some(GATEWAY_CLIENT.secret.into());
        a.introspection = Some(IntrospectionSection {
            cache_seconds: Some(cache),
            max_stale_seconds: Some(max_stale),
            ..IntrospectionSection::default()
        });
        a.claims = Some(ClaimsSection {
            cache_seconds: Some(cache),
            refresh_ahead_seconds: Some(1),
            max_stale_seconds: Some(max_stale),
            ..ClaimsSection::default()
        });
        self.stack.extra_echo_routes.push_str(AUDIT_ROUTE);
        Ok(())
    }

    /// Copies `policies/*.yaml` into the drill's configuration (with
    /// `extra_echo_routes` at the end of `echo.yaml`).
    pub fn copy_policies(&self) -> Result<(), Abort> {
        let from = self.run.root.join("policies");
        let entries =
            std::fs::read_dir(&from).map_err(|e| Abort(format!("{}: {e}", from.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let mut text = std::fs::read_to_string(&path)
                    .map_err(|e| Abort(format!("{}: {e}", path.display())))?;
                if entry.file_name() == "echo.yaml" && !self.stack.extra_echo_routes.is_empty() {
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    text.push_str(&self.stack.extra_echo_routes);
                }
                write_atomic(
                    &self.run.conf.join("policies").join(entry.file_name()),
                    &text,
                )?;
            }
        }
        Ok(())
    }

    /// Starts the sample service of `language` (samples/: built by
    /// samples/prepare.sh) as `sample-<language>`, GatewayEnforced, with its
    /// `Router__` file like the echo instances, its routes
    /// (samples/policies/sample-<language>.yaml) and its `services[]` entry.
    pub fn start_sample(&mut self, language: &str) -> Result<(), Abort> {
        let root = &self.run.root;
        let (program, args): (PathBuf, Vec<PathBuf>) = match language {
            "python" => (
                root.join("samples/python/.venv/bin/python"),
                vec![root.join("samples/python/app.py")],
            ),
            "node" => ("node".into(), vec![root.join("samples/node/server.mjs")]),
            "go" => (root.join("samples/go/.bin/stella-sample-go"), Vec::new()),
            other => return self.run.abort(format!("no sample service in {other}")),
        };
        let built = match language {
            "node" => root.join("samples/node/node_modules").is_dir(),
            _ => program.is_file(),
        };
        if !built {
            return self.run.abort(format!(
                "the {language} sample is not built: run samples/prepare.sh"
            ));
        }
        let instance = format!("sample-{language}");
        self.stack.services.insert(
            instance.clone(),
            Service {
                process: None,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                audience: instance.clone(),
                mode: "GatewayEnforced".into(),
                accepted: self.stack.default_kids.clone(),
            },
        );
        self.write_service_file(&instance)?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env(
                "Router__ConfigFile",
                self.run.services.join(format!("{instance}.env")),
            )
            .env("SAMPLE_LISTEN", "127.0.0.1:0");
        let process = self.start_logged(&instance, cmd, "SAMPLE_READY")?;
        let service = self
            .stack
            .services
            .get_mut(&instance)
            .expect("inserted above");
        service.addr = process.addr();
        service.process = Some(process);
        let policy = format!("{instance}.yaml");
        let from = root.join("samples/policies").join(&policy);
        let text = std::fs::read_to_string(&from)
            .map_err(|e| Abort(format!("{}: {e}", from.display())))?;
        write_atomic(&self.run.conf.join("policies").join(policy), &text)?;
        self.stack.routes.push(Route {
            name: instance.clone(),
            instances: vec![instance],
            mode: "GatewayEnforced".into(),
            health: "/health".into(),
        });
        Ok(())
    }

    /// Stops every process the drill started: SIGTERM to all, then each is
    /// waited for (and killed past the grace time).
    pub fn stop_all(&mut self) {
        let st = &mut self.stack;
        let mut all: Vec<Process> = Vec::new();
        all.extend(st.gateway.take());
        all.extend(st.services.values_mut().filter_map(|s| s.process.take()));
        all.extend(st.authority.take());
        for p in &all {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &p.pid().to_string()])
                .status();
        }
        if let Some(pid) = st.adopted.take() {
            let _ = Command::new("kill")
                .args(["-s", "TERM", &pid.to_string()])
                .status();
            let gone = std::time::Instant::now();
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && gone.elapsed() < GRACE {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for mut p in all {
            p.stop("TERM", GRACE);
        }
    }
}

/// The claims-dependent route of [`crate::Drill::opaque_and_claims`].
const AUDIT_ROUTE: &str = "\n  # stella-drill: needs effective claims from the Authority.\n  - id: echo-audit\n    path: /audit/**\n    policy:\n      roles_any: [auditor]\n      claims: {clearance: high}\n";

/// A gateway process replaced by [`crate::Drill::upgrade_gateway`].
pub struct Upgraded {
    pub old: u32,
    pub new: u32,
    /// The command's `upgraded: pid OLD -> NEW (...)` line.
    pub line: String,
    /// How long the command took.
    pub millis: u64,
}

/// Whether the process `pid` runs (exists and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .split(") ")
            .nth(1)
            .is_some_and(|rest| rest.starts_with('Z'))
}

/// The resident set size of the process `pid`, in KiB (`VmRSS` of
/// `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The test Authority (`node tests/authority/server.mjs`, run from the
/// workspace root `root`) on `port` (0: any free port), its access tokens
/// living `ttl` seconds.
pub fn authority_command(root: &Path, port: u16, ttl: u64) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(root)
        .arg("tests/authority/server.mjs")
        .env("AUTHORITY_PORT", port.to_string())
        .env("AUTHORITY_AT_TTL", ttl.to_string());
    cmd
}

/// `node tests/authority/token.mjs` for a token of `client` (secret
/// `<client>-secret`) from the Authority `issuer`; it prints the token.
pub fn token_command(root: &Path, issuer: &str, client: &str) -> Command {
    let mut cmd = Command::new("node");
    cmd.current_dir(root).args([
        "tests/authority/token.mjs",
        "--issuer",
        issuer,
        "--client",
        client,
        "--secret",
        &format!("{client}-secret"),
    ]);
    cmd
}
