//! Starting, reconfiguring and stopping the stack's processes.

use super::*;
use crate::harness::{write_atomic, Abort};
use std::path::{Path, PathBuf};

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

    /// Starts the gateway on free ports (a lost race for a port is retried
    /// with others).
    pub fn start_gateway(&mut self) -> Result<(), Abort> {
        for attempt in 1..=3 {
            let ports = free_ports(2);
            (self.stack.http_port, self.stack.admin_port) = (ports[0], ports[1]);
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

    /// Copies `policies/*.yaml` into the drill's configuration.
    pub fn copy_policies(&self) -> Result<(), Abort> {
        let from = self.run.root.join("policies");
        let entries =
            std::fs::read_dir(&from).map_err(|e| Abort(format!("{}: {e}", from.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Abort(format!("{}: {e}", path.display())))?;
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
