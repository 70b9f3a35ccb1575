//! Command-line interface: `run`, `check`, `reload`, `keys generate|list`,
//! `envelope mint`, `policy test|explain`; the client side: `token`,
//! `call` (cli/client) and `smoke` (cli/smoke.rs); the operator's side of
//! emergency revocation: `revoke`, `unrevoke`, `revocations list`
//! (cli/revoke.rs).
//! Exit codes: 0 success, 2 invalid configuration or arguments, 1 other
//! failures.

pub mod client;
pub mod revoke;
pub mod smoke;
mod upgrade;

use crate::config;
use clap::{Parser, Subcommand, ValueEnum};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::PathBuf;
use stella_envelope::config::ProcessEnv;
use stella_envelope::{AuthMethod, Confirmation, Identity, Key, KeyId, Signer, Target};

/// `stella-gateway --version`: the crate's version and the commit it was
/// built from (`unknown` without one; gateway/build.rs).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("STELLA_GATEWAY_BUILD_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "stella-gateway",
    version = VERSION,
    about = "Stella Gateway: policy decision point and identity envelope signer"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve: proxy listeners (plain and TLS) and the admin listener.
    /// SIGHUP reloads; SIGTERM and SIGINT drain; SIGQUIT hands the
    /// listening sockets to a process started with --upgrade, then drains.
    Run {
        #[arg(long)]
        config: PathBuf,
        /// Take the listening sockets over from the running gateway through
        /// the upgrade socket instead of binding them (`stella-gateway
        /// upgrade` starts the process this way).
        #[arg(long)]
        upgrade: bool,
        /// The socket listening sockets are handed over through (default: a
        /// name in the temporary folder derived from the configuration
        /// file's path); its pid file is `<socket>.pid`.
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
    },
    /// Replace the running gateway with a new process of this binary
    /// without refusing a connection: check the configuration, start `run
    /// --upgrade`, ask the running process (its pid file, or --pid) to hand
    /// its listening sockets over (SIGQUIT), wait until the new one is
    /// ready. Exit 0 when it is; 1 when the handover failed (the running
    /// gateway keeps serving); 2 for a refused configuration.
    Upgrade {
        #[arg(long)]
        config: PathBuf,
        #[arg(long, value_name = "PATH")]
        upgrade_socket: Option<PathBuf>,
        /// The running gateway's pid (default: from `<socket>.pid`).
        #[arg(long)]
        pid: Option<u32>,
        /// How long the new process may take to be ready.
        #[arg(long, default_value_t = 60)]
        timeout_seconds: u64,
    },
    /// Validate a configuration; print it resolved, with secrets redacted.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Envelope key material.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Identity envelopes (for testing services without a gateway).
    Envelope {
        #[command(subcommand)]
        command: EnvelopeCommand,
    },
    /// Route policies: run decision tests, explain one decision.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Print an OpenAPI 3.1 document (JSON) of every route of a
    /// configuration, each operation annotated with what the gateway
    /// requires (`x-stellaops-gateway-auth`). Exit 2 on an invalid
    /// configuration or an unreadable service document.
    Openapi {
        #[arg(long)]
        config: PathBuf,
        /// Only this service's routes.
        #[arg(long)]
        service: Option<String>,
    },
    /// Ask a running gateway to reload its configuration (as SIGHUP or
    /// `POST /reload` do). Exit 0 applied or unchanged, 1 rejected (the
    /// errors are printed; the old configuration keeps serving), 2 the
    /// admin listener could not be reached.
    Reload {
        /// The admin listener, such as http://127.0.0.1:9090.
        #[arg(long)]
        admin: String,
        /// A file holding the operator token (needed when the gateway sets
        /// `gateway.admin.operator_token_file`).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// Revoke an identity on a running gateway at once (emergency
    /// revocation): every request carrying it gets 401 until the entry
    /// expires or is removed. Exit 0 done, 1 refused (or applied on that
    /// node only: its shared store did not answer), 2 invalid arguments or
    /// the admin listener unreachable.
    Revoke(revoke::RevokeArgs),
    /// Remove a revocation (by value or by the hash `revocations list`
    /// shows). Exit 0 removed, 1 refused or nothing matched, 2 invalid
    /// arguments or the admin listener unreachable.
    Unrevoke(revoke::UnrevokeArgs),
    /// The revocation list of a running gateway.
    Revocations {
        #[command(subcommand)]
        command: revoke::RevocationsCommand,
    },
    /// Get an access token for a profile (client credentials; Bearer,
    /// DPoP-bound or certificate-bound), cached until near expiry.
    Token(client::token::TokenArgs),
    /// Send one request with a profile's credentials (DPoP proof made per
    /// request); print the answer like curl -i.
    Call(client::call::CallArgs),
    /// Probe every route of a configuration against a running gateway,
    /// without and with credentials. Exit 0 only when every row matches.
    Smoke(smoke::SmokeArgs),
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Load DIR/*.yaml as policies, run DIR/tests/*.yaml; print a table.
    /// Exit 0 all pass, 1 a test failed, 2 invalid files.
    Test { dir: PathBuf },
    /// Show the route a request matches, its requirement and the decision.
    Explain {
        #[arg(long)]
        policies: PathBuf,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        host: Option<String>,
        /// "anonymous", {"token": {...}, "method": "dpop"} or {"spiffe": "spiffe://..."}.
        #[arg(long)]
        caller_json: Option<String>,
        #[arg(long, default_value = "RequireAuthenticated")]
        on_missing_authorization: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate a new envelope key; prints the gateway and service settings.
    Generate {
        #[arg(long, value_enum, default_value = "HS256")]
        alg: KeyAlg,
        #[arg(long)]
        kid: String,
    },
    /// List the envelope keys a configuration holds: kid, algorithm, where
    /// it comes from and which one signs. Never prints key material.
    List {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlg {
    #[value(name = "HS256")]
    Hs256,
    #[value(name = "EdDSA")]
    EdDsa,
    /// Transaction tokens only (`services[].envelope_kid` of a `txn-token`
    /// service); for verifiers without Ed25519, such as .NET's.
    #[value(name = "ES256")]
    Es256,
}

#[derive(Subcommand)]
enum EnvelopeCommand {
    /// Sign an envelope for one request and print it as curl -H arguments.
    Mint {
        /// Environment variable holding the signing key (never pass keys as
        /// arguments: they would show in the process list).
        #[arg(long, default_value = "Router__IdentityEnvelopeSigningKey")]
        key_env: String,
        #[arg(long, default_value = "default")]
        kid: String,
        #[arg(long, default_value = "stella-gateway")]
        issuer: String,
        #[arg(long)]
        audience: String,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        client_id: Option<String>,
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[arg(long, default_value_t = 60)]
        lifetime: u64,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match cli.command {
        Command::Run {
            config,
            upgrade,
            upgrade_socket,
        } => crate::server::run(&config, upgrade, upgrade_socket.as_deref()),
        Command::Upgrade {
            config,
            upgrade_socket,
            pid,
            timeout_seconds,
        } => upgrade::command(
            &config,
            upgrade_socket.as_deref(),
            pid,
            std::time::Duration::from_secs(timeout_seconds),
        ),
        Command::Check { config } => check(&config),
        Command::Policy { command } => match command {
            PolicyCommand::Test { dir } => stella_policy::command::test_dir(&dir),
            PolicyCommand::Explain {
                policies,
                method,
                path,
                host,
                caller_json,
                on_missing_authorization,
            } => stella_policy::command::explain(&stella_policy::command::ExplainArgs {
                policies: &policies,
                method: &method,
                path: &path,
                host: host.as_deref(),
                caller_json: caller_json.as_deref(),
                on_missing_authorization: &on_missing_authorization,
            }),
        },
        Command::Keys {
            command: KeysCommand::Generate { alg, kid },
        } => generate(alg, &kid),
        Command::Keys {
            command: KeysCommand::List { config },
        } => list_keys(&config),
        Command::Reload { admin, token_file } => reload(&admin, token_file.as_deref()),
        Command::Revoke(args) => revoke::revoke(&args),
        Command::Unrevoke(args) => revoke::unrevoke(&args),
        Command::Revocations { command } => revoke::list(&command),
        Command::Openapi { config, service } => openapi(&config, service.as_deref()),
        Command::Token(args) => client::token::main(&args),
        Command::Call(args) => client::call::main(&args),
        Command::Smoke(args) => smoke::main(&args),
        Command::Envelope {
            command:
                EnvelopeCommand::Mint {
                    key_env,
                    kid,
                    issuer,
                    audience,
                    method,
                    path,
                    subject,
                    tenant,
                    client_id,
                    scopes,
                    lifetime,
                },
        } => {
            let identity = Identity {
                auth_method: if subject.is_some() || client_id.is_some() {
                    AuthMethod::Bearer
                } else {
                    AuthMethod::Anonymous
                },
                subject,
                tenant,
                client_id,
                scopes,
                roles: Vec::new(),
                confirmation: Confirmation::default(),
            };
            mint(
                &key_env, &kid, &issuer, &audience, &method, &path, &identity, lifetime,
            )
        }
    }
}

/// Parses a command line (`stella-gateway` first) as [`main`] does, and
/// runs nothing: the docs test checks every command line the documentation
/// shows with it.
pub fn parse(args: &[&str]) -> Result<(), clap::Error> {
    Cli::try_parse_from(args).map(|_| ())
}

pub use crate::config::report;

/// Validates what `run` would load (configuration, TLS files, policies)
/// with the same messages, and prints the effective configuration.
fn check(path: &std::path::Path) -> i32 {
    match crate::server::prepare(path) {
        Ok(prepared) => {
            let snapshot = &prepared.snapshot;
            println!("# configuration {} is valid", path.display());
            println!(
                "# {} routes from policies, envelope key {}",
                snapshot.policies.routes().len(),
                snapshot.signer.key().kid()
            );
            for service in &snapshot.config.services {
                let kid = service
                    .envelope_kid
                    .as_deref()
                    .unwrap_or(snapshot.signer.key().kid().as_str());
                println!(
                    "# service {}: identity {}, key {kid}",
                    service.name,
                    service.identity_format.as_str()
                );
            }
            print!("{}", config::redacted_yaml(&snapshot.config.effective));
            0
        }
        Err(errors) => {
            report(&errors);
            2
        }
    }
}

/// `openapi`: the routes of a valid configuration as an OpenAPI document.
fn openapi(path: &std::path::Path, service: Option<&str>) -> i32 {
    let prepared = match crate::server::prepare(path) {
        Ok(prepared) => prepared,
        Err(errors) => {
            report(&errors);
            return 2;
        }
    };
    let snapshot = &prepared.snapshot;
    let services = &snapshot.config.services;
    if let Some(name) = service {
        if !services.iter().any(|s| s.name == name) {
            eprintln!("openapi: no service named {name:?} in {}", path.display());
            return 2;
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("openapi: {e}");
            return 2;
        }
    };
    let docs = match runtime.block_on(crate::openapi::load_service_documents(services, service)) {
        Ok(docs) => docs,
        Err(message) => {
            eprintln!("openapi: {message}");
            return 2;
        }
    };
    let document = crate::openapi::document(
        &snapshot.policies,
        services,
        service,
        &docs,
        &snapshot.config.gateway_id,
    );
    match serde_json::to_string_pretty(&document) {
        Ok(text) => {
            println!("{text}");
            0
        }
        Err(e) => {
            eprintln!("openapi: {e}");
            2
        }
    }
}

/// `keys list`: the keyring of a configuration, checked like `check` does.
fn list_keys(path: &std::path::Path) -> i32 {
    let config = match config::load(path, &ProcessEnv) {
        Ok(config) => config,
        Err(errors) => {
            report(&errors);
            return 2;
        }
    };
    let active = config.envelope_key.kid.as_str().to_owned();
    println!("{:<24} {:<6} {:<7} source", "kid", "alg", "active");
    for key in &config.envelope_keys {
        println!(
            "{:<24} {:<6} {:<7} {}",
            key.kid,
            key.alg.as_str(),
            if key.kid == active { "yes" } else { "no" },
            key.source.describe()
        );
    }
    0
}

/// `reload --admin URL [--token-file F]`: `POST URL/reload`, print the
/// outcome.
fn reload(admin: &str, token_file: Option<&std::path::Path>) -> i32 {
    let args = revoke::AdminArgs {
        admin: admin.to_owned(),
        token_file: token_file.map(std::path::Path::to_path_buf),
    };
    match revoke::call(&args, http::Method::POST, "/reload", None) {
        Ok((status, parsed)) => reload_outcome(admin, status, &parsed),
        Err(code) => code,
    }
}

/// What `reload` prints and exits with for the admin listener's answer.
fn reload_outcome(admin: &str, status: u16, parsed: &serde_json::Value) -> i32 {
    let url = format!("{}/reload", admin.trim_end_matches('/'));
    let result = parsed["result"].as_str().unwrap_or("unknown");
    let version = parsed["config_version"].as_str().unwrap_or("?");
    match (status, result) {
        (401 | 403, _) => {
            eprintln!(
                "refused ({status}): {}",
                parsed["detail"].as_str().unwrap_or("operator token")
            );
            1
        }
        (200, "applied" | "unchanged") => {
            println!("{result}: configuration {version}");
            0
        }
        (_, "rejected") => {
            eprintln!("rejected; configuration {version} keeps serving:");
            for e in parsed["errors"].as_array().into_iter().flatten() {
                eprintln!("  {}", e.as_str().unwrap_or_default());
            }
            1
        }
        _ => {
            eprintln!("unexpected answer from {url}: status {status}");
            2
        }
    }
}

fn generate(alg: KeyAlg, kid: &str) -> i32 {
    let kid = match KeyId::new(kid) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("--kid: {e}");
            return 2;
        }
    };
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    if SystemRandom::new().fill(&mut seed[..]).is_err() {
        eprintln!("the system random number generator failed");
        return 1;
    }
    let key = match alg {
        KeyAlg::Hs256 => Key::hmac(kid.clone(), &seed[..]),
        KeyAlg::EdDsa => Key::ed25519_from_seed(kid.clone(), *seed),
        KeyAlg::Es256 => ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|_| stella_envelope::KeyError::P256)
        .and_then(|pkcs8| Key::p256_from_pkcs8(kid.clone(), pkcs8.as_ref())),
    };
    let Ok(key) = key else {
        eprintln!("key generation failed");
        return 1;
    };
    if let KeyAlg::Es256 = alg {
        // Not an envelope key: no signing-key variable, no service setting.
        println!("# ES256 key {kid}: signs transaction tokens only");
        println!("# Gateway, an entry of router.identity_envelope_keys named by the");
        println!("# envelope_kid of services with identity_format: txn-token (secret:");
        println!("# keep it in a secret store, never in a log):");
        println!("{{kid: {kid}, key: \"{}\"}}", key.to_spec().as_str());
        println!("# Services verify with the public key the gateway publishes at");
        println!("# /.well-known/stella/keys.json:");
        let mut jwk = key.public_jwk().unwrap_or_default();
        jwk["kid"] = serde_json::json!(kid.as_str());
        println!("{jwk}");
        return 0;
    }
    println!("# {} envelope key {kid}", key.alg());
    println!("# Gateway (secret: keep it in a secret store, never in a log):");
    println!("Router__IdentityEnvelopeSigningKeyId={kid}");
    println!(
        "Router__IdentityEnvelopeSigningKey={}",
        key.to_spec().as_str()
    );
    match alg {
        KeyAlg::Hs256 => println!("# Services verify HS256 with the same secret:"),
        KeyAlg::EdDsa | KeyAlg::Es256 => println!("# Services verify with the public key only:"),
    }
    println!(
        "Router__IdentityEnvelopeAcceptedKeys={kid}={}",
        key.public_spec().as_str()
    );
    0
}

#[allow(clippy::too_many_arguments)]
fn mint(
    key_env: &str,
    kid: &str,
    issuer: &str,
    audience: &str,
    method: &str,
    path: &str,
    identity: &Identity,
    lifetime: u64,
) -> i32 {
    let Some(text) = stella_envelope::config::EnvSource::get(&ProcessEnv, key_env) else {
        eprintln!("{key_env}: is not set");
        return 2;
    };
    let key = KeyId::new(kid)
        .map_err(|e| format!("--kid: {e}"))
        .and_then(|kid| Key::parse_compat(kid, text.trim()).map_err(|e| format!("{key_env}: {e}")))
        .and_then(|key| Signer::new(key, issuer, lifetime).map_err(|e| format!("{key_env}: {e}")));
    let signer = match key {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    };
    let now = stella_core::unix_now();
    let request_id = format!("mint-{now}");
    let headers = match signer.sign(
        identity,
        &Target {
            audience,
            method,
            path,
            request_id: &request_id,
        },
        now,
    ) {
        Ok(headers) => headers,
        Err(e) => {
            eprintln!("{key_env}: {e}");
            return 1;
        }
    };
    for (name, value) in headers.pairs() {
        println!("-H '{name}: {value}'");
    }
    0
}
