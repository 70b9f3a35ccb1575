//! The command line: arguments, start-up (kinds, tokens), the stdin reader,
//! and the exit status (0: every request as expected; 1: a request failed or
//! a command was wrong; 2: bad arguments or no token at start).

use crate::run::{run, Settings, Sources, Target};
use crate::spec::{check_kinds, parse_spec, Kind};
use clap::Parser;
use serde_json::json;
use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const COMMANDS: &str = "\
Commands on stdin, one per line, each acknowledged on stdout with
`LOAD_ACK <n> <command>` once in effect:
  step NAME                 close the current step, start a new one
  expect KIND STATUSES      from now on KIND must answer one of STATUSES
                            (2xx, 404, 200-204, or a list: 2xx,404); a request
                            passes if its status fits any set in force while
                            it was outstanding
  end                       (or end of stdin) close the last step, wait for
                            outstanding requests, print the report, exit

Credentials: none | bearer:CLIENT[:SECRET] | dpop:CLIENT[:SECRET] |
token-file:PATH (a static Bearer token). The secret defaults to CLIENT-secret.

Spec file (YAML or JSON):
  kinds:
    - {name: items, method: GET, url: 'http://127.0.0.1:8080/items/1',
       credential: 'dpop:svc-dpop', expect: 2xx, weight: 3}

Stdout: `LOAD_READY {json}` once tokens are in hand and load starts, the
acknowledgements, then the report. Failures are logged on stderr.";

#[derive(Parser)]
#[command(
    name = "stella-load",
    about = "Open-loop load generator for the operations drills: a table per step, exit 1 on any failed request",
    after_help = COMMANDS
)]
struct Args {
    /// Requests per second, spread evenly over the kinds by weight.
    #[arg(long)]
    rate: f64,
    /// A kind: "NAME METHOD URL CREDENTIAL [expect=STATUSES] [weight=N]".
    #[arg(long = "kind", value_name = "KIND")]
    kinds: Vec<String>,
    /// A YAML or JSON file with more kinds.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// The Authority (its discovery document names the token endpoint).
    #[arg(long)]
    issuer: Option<String>,
    /// `resource` of token requests (the token's audience).
    #[arg(long)]
    resource: Option<String>,
    /// Seconds a request may take, DPoP nonce retry included.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Requests outstanding at once; a request due beyond this is not sent
    /// and counts as failed. Default: what the rate keeps outstanding over
    /// one timeout, plus a fifth (below that a stall would refuse requests
    /// that could still have answered in time).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// Safety stop, seconds.
    #[arg(long, default_value_t = 900.0)]
    duration: f64,
    /// Name of the step before the first `step` command.
    #[arg(long, default_value = "start")]
    first_step: String,
    /// Failures logged in full per kind and result (status, timeout, ...);
    /// later ones are only counted.
    #[arg(long, default_value_t = 20)]
    max_failure_logs: u64,
}

fn seconds(name: &str, value: f64, max: f64) -> Result<Duration, String> {
    if value.is_finite() && value > 0.0 && value <= max {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!("--{name} must be more than 0 and at most {max}"))
    }
}

fn kinds(args: &Args) -> Result<Vec<Kind>, String> {
    let mut kinds = Vec::new();
    if let Some(path) = &args.spec {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        kinds.extend(parse_spec(&text).map_err(|e| format!("{}: {e}", path.display()))?);
    }
    for k in &args.kinds {
        kinds.push(Kind::parse_arg(k)?);
    }
    check_kinds(&kinds)?;
    Ok(kinds)
}

fn settings(args: &Args) -> Result<Settings, String> {
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        return Err("--rate must be more than 0 and at most 100000".into());
    }
    let timeout = seconds("timeout", args.timeout, 300.0)?;
    let max_in_flight = match args.max_in_flight {
        Some(0) => return Err("--max-in-flight must be at least 1".into()),
        Some(n) => n,
        None => ((args.rate * timeout.as_secs_f64() * 1.2).ceil() as usize).clamp(64, 100_000),
    };
    Ok(Settings {
        rate: args.rate,
        timeout,
        max_in_flight,
        duration: seconds("duration", args.duration, 86_400.0)?,
        first_step: args.first_step.clone(),
        max_failure_logs: args.max_failure_logs,
    })
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn signalled() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs the command line; returns the exit status.
pub fn main() -> i32 {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    let (kinds, settings) = match kinds(&args).and_then(|k| Ok((k, settings(&args)?))) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("stella-load: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stella-load: cannot start the runtime: {e}");
            return 2;
        }
    };
    let outcome = runtime.block_on(async {
        let http = crate::http::client(settings.max_in_flight);
        let jti = Arc::new(crate::tokens::JtiSource::new()?);
        let needs_tokens = kinds.iter().any(|k| k.credential.client().is_some());
        let endpoint = match (&args.issuer, needs_tokens) {
            (Some(issuer), true) => Some(crate::tokens::discover(&http, issuer).await?),
            _ => None,
        };
        let sources = Sources {
            http: &http,
            endpoint: endpoint.as_ref(),
            resource: args.resource.as_deref(),
            jti: &jti,
        }
        .resolve(&kinds)
        .await?;

        let (tx, rx) = tokio::sync::mpsc::channel(64);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        {
            let ready = json!({
                "rate": settings.rate,
                "kinds": kinds.iter().map(|k| json!({
                    "name": k.name, "method": k.method.as_str(), "url": k.url.to_string(),
                    "credential": k.credential.to_string(), "expect": k.expect.to_string(),
                    "weight": k.weight,
                })).collect::<Vec<_>>(),
            });
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "LOAD_READY {ready}");
            let _ = out.flush();
        }
        let target = Target {
            kinds,
            sources,
            http,
            jti,
        };
        Ok::<_, String>(run(target, settings, rx, signalled()).await)
    });
    let summary = match outcome {
        Ok(s) => s,
        Err(e) => {
            eprintln!("stella-load: {e}");
            return 2;
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "\n{}", summary.report);
    let _ = out.flush();
    eprintln!(
        "stella-load: {} requests, {} failed{}",
        summary.requests,
        summary.failed,
        if summary.control_errors > 0 {
            format!(", {} bad commands", summary.control_errors)
        } else {
            String::new()
        }
    );
    // The stdin thread may still be blocked in a read; exiting the process
    // (not returning through the runtime) does not wait for it.
    if summary.failed > 0 || summary.control_errors > 0 {
        1
    } else {
        0
    }
}
