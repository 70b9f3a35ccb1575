//! The load loop: an open-loop schedule at a constant rate (a request is due
//! every `1/rate` seconds whether or not earlier ones have answered), the
//! commands read from stdin (`step`, `expect`, `end`), and the judging of
//! every response against its kind's expected statuses.

use crate::http::{send, Failure, HttpClient};
use crate::report::{Outcome, Record, Stats};
use crate::spec::{Credential, Expected, Kind};
use crate::tokens::{now, snippet, JtiSource};
use bytes::Bytes;
use http_body_util::Full;
use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use stella_test_support::DpopKey;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

/// A command from stdin.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Close the current step and start one with this name.
    Step(String),
    /// From now on, this kind's responses must have one of these statuses.
    Expect(String, Expected),
    /// Close the last step, wait for outstanding requests, report.
    End,
}

/// Parses one line; `None` for a blank line or a `#` comment.
pub fn parse_command(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        ["step", name] => Ok(Some(Command::Step((*name).to_owned()))),
        ["expect", kind, statuses] => Ok(Some(Command::Expect(
            (*kind).to_owned(),
            Expected::parse(statuses)?,
        ))),
        ["end"] => Ok(Some(Command::End)),
        _ => Err(format!(
            "unknown command {line:?}: expected `step NAME`, `expect KIND STATUSES` or `end`"
        )),
    }
}

/// What a kind authenticates with, resolved at start.
#[derive(Clone)]
pub enum Source {
    None,
    Static(Arc<String>),
    Bearer(watch::Receiver<Arc<String>>),
    Dpop(watch::Receiver<Arc<String>>, Arc<DpopKey>),
}

pub struct Settings {
    pub rate: f64,
    /// Per request, nonce retry included.
    pub timeout: Duration,
    pub max_in_flight: usize,
    /// Safety stop.
    pub duration: Duration,
    pub first_step: String,
    /// Failures logged in full on stderr per kind and result; later ones
    /// are only counted.
    pub max_failure_logs: u64,
}

/// What to send and how.
pub struct Target {
    pub kinds: Vec<Kind>,
    /// One per kind.
    pub sources: Vec<Source>,
    pub http: HttpClient,
    pub jti: Arc<JtiSource>,
}

pub struct Summary {
    pub report: String,
    pub requests: u64,
    pub failed: u64,
    pub control_errors: u64,
}

struct Shared {
    target: Target,
    timeout: Duration,
    started: Instant,
    stats: Mutex<Stats>,
    step_names: Mutex<Vec<String>>,
    /// Per kind, every expected set given so far; the last one is current.
    expectations: Mutex<Vec<Vec<Expected>>>,
    /// The latest `DPoP-Nonce` per origin.
    nonces: Mutex<HashMap<String, String>>,
    /// Failures logged so far, per kind and result.
    failures_logged: Mutex<HashMap<(usize, String), u64>>,
    max_failure_logs: u64,
}

/// Locks a mutex whose data stays consistent even if a holder panicked
/// (every critical section here is a plain update).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn request(
        &self,
        kind: &Kind,
        source: &Source,
        nonce: Option<&str>,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let mut builder = http::Request::builder()
            .method(kind.method.clone())
            .uri(kind.url.clone());
        match source {
            Source::None => {}
            Source::Static(token) => {
                builder = builder.header("authorization", format!("Bearer {token}"));
            }
            Source::Bearer(token) => {
                builder = builder.header("authorization", format!("Bearer {}", *token.borrow()));
            }
            Source::Dpop(token, key) => {
                let token = token.borrow().clone();
                let proof = key.proof(
                    kind.method.as_str(),
                    &kind.htu,
                    Some(&token),
                    nonce,
                    now(),
                    &self.target.jti.next(),
                );
                builder = builder
                    .header("authorization", format!("DPoP {token}"))
                    .header("dpop", proof);
            }
        }
        builder
            .body(Full::new(kind.body.clone()))
            .map_err(|e| format!("cannot build the request: {e}"))
    }

    /// Sends one request of kind `k` (retrying once on `use_dpop_nonce`);
    /// returns the outcome and a detail for the failure log.
    async fn exchange(&self, k: usize) -> (Outcome, String) {
        let kind = &self.target.kinds[k];
        let source = &self.target.sources[k];
        let dpop = matches!(source, Source::Dpop(..));
        let origin = kind
            .url
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        for attempt in 0..2 {
            let nonce = if dpop {
                lock(&self.nonces).get(&origin).cloned()
            } else {
                None
            };
            let request = match self.request(kind, source, nonce.as_deref()) {
                Ok(r) => r,
                Err(e) => return (Outcome::Transport, e),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match send(&self.target.http, request, left).await {
                Ok(a) => a,
                Err(Failure::Timeout) => return (Outcome::Timeout, "timed out".into()),
                Err(Failure::Transport(e)) => return (Outcome::Transport, e),
            };
            let fresh = answer
                .headers
                .get("dpop-nonce")
                .and_then(|v| v.to_str().ok());
            if let (true, Some(fresh)) = (dpop, fresh) {
                lock(&self.nonces).insert(origin.clone(), fresh.to_owned());
                let asks_for_nonce = answer
                    .headers
                    .get_all("www-authenticate")
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")));
                if answer.status == 401 && asks_for_nonce && attempt == 0 {
                    continue;
                }
            }
            return (Outcome::Status(answer.status), snippet(&answer.body));
        }
        (Outcome::Transport, "nonce retry failed".into())
    }

    fn log_failure(
        &self,
        step: usize,
        k: usize,
        outcome: Outcome,
        expected: &Expected,
        detail: &str,
    ) {
        let label = outcome.label();
        let n = {
            let mut logged = lock(&self.failures_logged);
            let n = logged.entry((k, label.clone())).or_default();
            *n += 1;
            *n
        };
        if n > self.max_failure_logs + 1 {
            return;
        }
        let kind = &self.target.kinds[k].name;
        let mut err = std::io::stderr().lock();
        if n == self.max_failure_logs + 1 {
            let _ = writeln!(
                err,
                "FAIL ... more kind={kind} result={label} failures are counted, not logged"
            );
            return;
        }
        let step = lock(&self.step_names)
            .get(step)
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            err,
            "FAIL t={:.3}s step={step} kind={kind} result={label} expected={expected} body: {detail}",
            self.started.elapsed().as_secs_f64(),
        );
    }

    async fn one(self: Arc<Self>, step: usize, k: usize) {
        let from = lock(&self.expectations)[k].len() - 1;
        let sent = Instant::now();
        let (outcome, detail) = self.exchange(k).await;
        let latency = sent.elapsed();
        // Judged against every expectation in force while it was
        // outstanding: a request sent before an `expect` may have been
        // served under either configuration.
        let (failed, expected) = {
            let all = lock(&self.expectations);
            let seen = &all[k][from..];
            let ok = match outcome {
                Outcome::Status(s) => seen.iter().any(|e| e.contains(s)),
                _ => false,
            };
            (!ok, seen[seen.len() - 1].clone())
        };
        if failed {
            self.log_failure(step, k, outcome, &expected, &detail);
        }
        lock(&self.stats).record(Record {
            step,
            kind: k,
            result: outcome,
            failed,
            latency,
        });
    }

    fn refuse(&self, step: usize, k: usize) {
        let expected = lock(&self.expectations)[k]
            .last()
            .cloned()
            .unwrap_or_else(Expected::success);
        self.log_failure(
            step,
            k,
            Outcome::InFlightLimit,
            &expected,
            "not sent: too many requests in flight",
        );
        lock(&self.stats).record(Record {
            step,
            kind: k,
            result: Outcome::InFlightLimit,
            failed: true,
            latency: Duration::ZERO,
        });
    }
}

fn ack(seq: u64, line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "LOAD_ACK {seq} {}", line.trim());
    let _ = out.flush();
}

/// Runs until `end`, the end of `commands`, `stop` or the safety duration.
/// Every command is acknowledged on stdout (`LOAD_ACK <n> <command>`) once
/// it is in effect, so a script can wait for it before it changes anything.
pub async fn run(
    target: Target,
    settings: Settings,
    mut commands: mpsc::Receiver<String>,
    stop: impl Future<Output = ()>,
) -> Summary {
    let names: Vec<String> = target.kinds.iter().map(|k| k.name.clone()).collect();
    let mut stats = Stats::new(&names);
    let mut step = stats.add_step(&settings.first_step);
    let order = crate::spec::schedule(&target.kinds);
    let shared = Arc::new(Shared {
        expectations: Mutex::new(
            target
                .kinds
                .iter()
                .map(|k| vec![k.expect.clone()])
                .collect(),
        ),
        target,
        timeout: settings.timeout,
        started: Instant::now(),
        stats: Mutex::new(stats),
        step_names: Mutex::new(vec![settings.first_step.clone()]),
        nonces: Mutex::new(HashMap::new()),
        failures_logged: Mutex::new(HashMap::new()),
        max_failure_logs: settings.max_failure_logs,
    });
    let permits = Arc::new(Semaphore::new(settings.max_in_flight));
    let period = Duration::from_secs_f64(1.0 / settings.rate);
    let mut next = Instant::now();
    let mut sent: u64 = 0;
    let mut acks: u64 = 0;
    let mut control_errors = 0u64;
    let safety = tokio::time::sleep(settings.duration);
    tokio::pin!(safety);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            line = commands.recv() => {
                let Some(line) = line else { break };
                match parse_command(&line) {
                    Ok(None) => continue,
                    Ok(Some(Command::End)) => {
                        acks += 1;
                        ack(acks, &line);
                        break;
                    }
                    Ok(Some(Command::Step(name))) => {
                        step = lock(&shared.stats).add_step(&name);
                        lock(&shared.step_names).push(name);
                    }
                    Ok(Some(Command::Expect(kind, expected))) => {
                        match shared.target.kinds.iter().position(|k| k.name == kind) {
                            Some(k) => lock(&shared.expectations)[k].push(expected),
                            None => {
                                eprintln!("stella-load: expect: no kind {kind:?}");
                                control_errors += 1;
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("stella-load: {e}");
                        control_errors += 1;
                    }
                }
                acks += 1;
                ack(acks, &line);
            }
            () = &mut stop => {
                eprintln!("stella-load: stopped by a signal");
                break;
            }
            () = &mut safety => {
                eprintln!("stella-load: --duration {:?} reached", settings.duration);
                break;
            }
            () = tokio::time::sleep_until(next) => {
                let k = order[(sent % order.len() as u64) as usize];
                sent += 1;
                next += period;
                match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let shared = shared.clone();
                        tokio::spawn(async move {
                            shared.one(step, k).await;
                            drop(permit);
                        });
                    }
                    Err(_) => shared.refuse(step, k),
                }
            }
        }
    }
    // Outstanding requests end within their timeout.
    let all = u32::try_from(settings.max_in_flight).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(
        settings.timeout + Duration::from_secs(2),
        permits.acquire_many(all),
    )
    .await;
    if drained.is_err() {
        eprintln!("stella-load: some requests did not finish; they are not in the report");
    }
    let mut stats = lock(&shared.stats);
    let mut report = stats.report(true);
    if control_errors > 0 {
        report.push_str(&format!("\ncontrol errors: {control_errors}\n"));
    }
    Summary {
        report,
        requests: stats.requests(),
        failed: stats.failed(),
        control_errors,
    }
}

/// Resolves each kind's credential: static tokens read now, one refreshing
/// token source per Authority client.
pub struct Sources<'a> {
    pub http: &'a HttpClient,
    pub endpoint: Option<&'a http::Uri>,
    pub resource: Option<&'a str>,
    pub jti: &'a Arc<JtiSource>,
}

impl Sources<'_> {
    pub async fn resolve(&self, kinds: &[Kind]) -> Result<Vec<Source>, String> {
        // One token source per (scheme, client), shared by its kinds.
        let mut started: HashMap<Credential, Source> = HashMap::new();
        let mut sources = Vec::new();
        for kind in kinds {
            let source = match &kind.credential {
                Credential::None => Source::None,
                Credential::TokenFile(path) => {
                    let token = std::fs::read_to_string(path)
                        .map_err(|e| format!("kind {}: {}: {e}", kind.name, path.display()))?;
                    Source::Static(Arc::new(token.trim().to_owned()))
                }
                cred @ (Credential::Bearer(client) | Credential::Dpop(client)) => {
                    if let Some(source) = started.get(cred) {
                        source.clone()
                    } else {
                        let endpoint = self
                            .endpoint
                            .ok_or_else(|| format!("kind {}: {cred} needs --issuer", kind.name))?;
                        let key = matches!(cred, Credential::Dpop(_))
                            .then(|| Arc::new(DpopKey::generate()));
                        let request = crate::tokens::TokenRequest {
                            endpoint: endpoint.clone(),
                            client: client.clone(),
                            resource: self.resource.map(str::to_owned),
                            dpop: key.clone(),
                            jti: self.jti.clone(),
                        };
                        let rx = crate::tokens::start(self.http.clone(), request).await?;
                        let source = match key {
                            Some(key) => Source::Dpop(rx, key),
                            None => Source::Bearer(rx),
                        };
                        started.insert(cred.clone(), source.clone());
                        source
                    }
                }
            };
            sources.push(source);
        }
        Ok(sources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_unknown_ones_are_refused() {
        assert_eq!(parse_command("  "), Ok(None));
        assert_eq!(parse_command("# wave 1"), Ok(None));
        assert_eq!(
            parse_command("step wave-1"),
            Ok(Some(Command::Step("wave-1".into())))
        );
        assert_eq!(
            parse_command("expect drill-new 2xx,404"),
            Ok(Some(Command::Expect(
                "drill-new".into(),
                Expected::parse("2xx,404").unwrap()
            )))
        );
        assert_eq!(parse_command("end"), Ok(Some(Command::End)));
        for bad in ["step", "step a b", "expect k", "expect k 7xx", "stop"] {
            assert!(parse_command(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_snippet_is_short_and_printable() {
        assert_eq!(snippet(b"a\nb\x00c"), "a b c");
        assert_eq!(snippet(&[b'x'; 500]).len(), 200);
    }
}
