//! The faults that run beside the scheduler, each on threads of its own:
//! the slow clients (`scripts/drills/slowloris.py`, as the slow-clients
//! drill), the unknown-kid burst (tokens signed by a key the Authority
//! never published, as in the e2e JWKS storm test), and the mTLS probe.

use super::Replica;
use crate::Drill;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use stella_test_support::{curl_https, jwt_claims, try_request, unique_jti, AttackerKey, Pki};

/// `count` tokens with the claims of a real one, each naming a kid the
/// Authority never published, signed by a key of no one's.
pub(super) fn unknown_kid_tokens(real: &str, count: usize) -> Vec<String> {
    let claims = jwt_claims(real);
    let attacker = AttackerKey::generate();
    (0..count)
        .map(|i| {
            let header = json!({"alg": "ES256", "typ": "at+jwt",
                                "kid": format!("gameday-{i}-{}", unique_jti("k"))});
            attacker.sign(&header, &claims)
        })
        .collect()
}

/// The unknown-kid burst: its answers by (status, `token_error` or
/// `error`), a status 0 for no answer.
pub(super) struct KidBurst {
    threads: Vec<JoinHandle<()>>,
    pub(super) answers: Arc<Mutex<BTreeMap<(u16, String), u64>>>,
}

impl KidBurst {
    /// Sends `tokens` spread evenly over `seconds` from 4 threads, to the
    /// replicas in turn.
    pub(super) fn start(replicas: &[Replica], tokens: Vec<String>, seconds: f64) -> KidBurst {
        const THREADS: usize = 4;
        let answers: Arc<Mutex<BTreeMap<(u16, String), u64>>> = Arc::default();
        let started = Instant::now();
        let tokens = Arc::new(tokens);
        let addrs: Vec<_> = replicas.iter().map(|r| r.http).collect();
        let threads = (0..THREADS)
            .map(|t| {
                let (answers, tokens, addrs) = (answers.clone(), tokens.clone(), addrs.clone());
                std::thread::spawn(move || {
                    let mine: Vec<(usize, &String)> =
                        tokens.iter().enumerate().skip(t).step_by(THREADS).collect();
                    let step = seconds / mine.len().max(1) as f64;
                    for (n, (i, token)) in mine.into_iter().enumerate() {
                        let due = started + Duration::from_secs_f64(step * n as f64);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                        let auth = format!("Bearer {token}");
                        let addr = addrs[i % addrs.len()];
                        let answer = match try_request(
                            addr,
                            "GET",
                            "/items/1",
                            &[("Authorization", &auth)],
                            b"",
                            Duration::from_secs(5),
                        ) {
                            Ok(r) => {
                                let body: Value =
                                    serde_json::from_slice(&r.body).unwrap_or_default();
                                let code = body["token_error"]
                                    .as_str()
                                    .or(body["error"].as_str())
                                    .unwrap_or("-")
                                    .to_owned();
                                (r.status, code)
                            }
                            Err(_) => (0, "no answer".to_owned()),
                        };
                        if let Ok(mut a) = answers.lock() {
                            *a.entry(answer).or_insert(0) += 1;
                        }
                    }
                })
            })
            .collect();
        KidBurst { threads, answers }
    }

    pub(super) fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    pub(super) fn join(&mut self) {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The slow clients: one `slowloris.py` per replica; each one's JSON
/// result (or its error).
pub(super) struct SlowClients {
    threads: Vec<JoinHandle<(String, Result<Value, String>)>>,
    pub(super) results: Vec<(String, Result<Value, String>)>,
    pub(super) count: usize,
}

impl SlowClients {
    pub(super) fn start(d: &Drill, replicas: &[Replica], count: usize) -> SlowClients {
        let per = count / replicas.len().max(1);
        let threads = replicas
            .iter()
            .map(|r| {
                let (name, port, root) = (r.name.to_owned(), r.http.port(), d.run.root.clone());
                std::thread::spawn(move || {
                    let out = Command::new("python3")
                        .current_dir(root)
                        .args(["scripts/drills/slowloris.py", "127.0.0.1"])
                        .arg(port.to_string())
                        .arg(per.to_string())
                        .args(["2", "40"])
                        .output();
                    let result = match out {
                        Ok(o) if o.status.success() => {
                            serde_json::from_slice(&o.stdout).map_err(|e| {
                                format!(
                                    "slowloris.py printed {:?}: {e}",
                                    String::from_utf8_lossy(&o.stdout)
                                )
                            })
                        }
                        Ok(o) => Err(format!(
                            "slowloris.py: {}: {}",
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                        )),
                        Err(e) => Err(format!("cannot run slowloris.py: {e}")),
                    };
                    (name, result)
                })
            })
            .collect();
        SlowClients {
            threads,
            results: Vec::new(),
            count: per * replicas.len(),
        }
    }

    pub(super) fn finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    pub(super) fn join(&mut self) {
        for t in self.threads.drain(..) {
            if let Ok(r) = t.join() {
                self.results.push(r);
            }
        }
    }
}

/// One mTLS probe request: the phase it was sent in, its kind (`spiffe`,
/// `bound`), its status (0: no answer) and how long it took.
#[derive(Clone)]
pub(super) struct Probed {
    pub(super) phase: String,
    pub(super) kind: &'static str,
    pub(super) status: u16,
    pub(super) ms: f64,
}

/// The mTLS probe: on each replica's TLS listener in turn, a SPIFFE client
/// certificate alone on `/svc/x`, and a certificate-bound token with its
/// certificate on `/mtls/x` (curl, one request at a time, ~10 per second).
pub(super) struct MtlsProbe {
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub(super) seen: Arc<Mutex<Vec<Probed>>>,
}

impl MtlsProbe {
    pub(super) fn start(replicas: &[Replica], pki: &Pki, token: String) -> MtlsProbe {
        let phase = Arc::new(Mutex::new("warmup".to_owned()));
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<Vec<Probed>>> = Arc::default();
        let addrs: Vec<_> = replicas.iter().map(|r| r.tls).collect();
        let (ca, spiffe, client) = (
            pki.ca.clone(),
            (pki.spiffe_cert.clone(), pki.spiffe_key.clone()),
            (pki.client_cert.clone(), pki.client_key.clone()),
        );
        let (p, s, out) = (phase.clone(), stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let auth = format!("Bearer {token}");
            let mut n = 0usize;
            while !s.load(Ordering::Relaxed) {
                let addr = addrs[n % addrs.len()];
                let kind = if (n / addrs.len()).is_multiple_of(2) {
                    "spiffe"
                } else {
                    "bound"
                };
                n += 1;
                let now = p.lock().map(|s| s.clone()).unwrap_or_default();
                let started = Instant::now();
                let curl = match kind {
                    "spiffe" => curl_https(addr, "/svc/x", &ca, Some((&spiffe.0, &spiffe.1)), &[]),
                    _ => curl_https(
                        addr,
                        "/mtls/x",
                        &ca,
                        Some((&client.0, &client.1)),
                        &[("Authorization", &auth)],
                    ),
                };
                let status = curl.response.map_or(0, |r| r.status);
                if let Ok(mut v) = out.lock() {
                    v.push(Probed {
                        phase: now,
                        kind,
                        status,
                        ms: started.elapsed().as_secs_f64() * 1000.0,
                    });
                }
                std::thread::sleep(Duration::from_millis(80));
            }
        });
        MtlsProbe {
            phase,
            stop,
            thread: Some(thread),
            seen,
        }
    }

    pub(super) fn set_phase(&self, name: &str) {
        if let Ok(mut p) = self.phase.lock() {
            *p = name.to_owned();
        }
    }

    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
