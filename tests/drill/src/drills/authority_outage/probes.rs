//! The probes: one request at a time each, recorded with the stage it was
//! sent in. `fresh` uses a token the gateway has never seen each time;
//! `spiffe` presents the SPIFFE client certificate alone on the TLS listener.

use crate::Drill;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use stella_test_support::{curl_https, try_request, Pki};

/// One fresh-token probe result: the status (0: no answer) and, for a
/// 503, its Retry-After and problem `error`.
#[derive(Clone)]
pub(super) struct Fresh {
    pub(super) status: u16,
    pub(super) retry_after: Option<String>,
    pub(super) error: Option<String>,
}

/// The probes: threads that record (stage, result) until stopped.
pub(super) struct Probes {
    pub(super) stage: Arc<Mutex<String>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) fresh: Arc<Mutex<Vec<(String, Fresh)>>>,
    pub(super) spiffe: Arc<Mutex<Vec<(String, u16)>>>,
    pub(super) threads: Vec<JoinHandle<()>>,
}

pub(super) fn start_probes(d: &Drill, tokens: Vec<String>, tls: SocketAddr, pki: &Pki) -> Probes {
    let probes = Probes {
        stage: Arc::new(Mutex::new("warmup".into())),
        stop: Arc::new(AtomicBool::new(false)),
        fresh: Arc::default(),
        spiffe: Arc::default(),
        threads: Vec::new(),
    };
    let gw = SocketAddr::from(([127, 0, 0, 1], d.stack.http_port));
    let (stage, stop, out) = (
        probes.stage.clone(),
        probes.stop.clone(),
        probes.fresh.clone(),
    );
    let fresh = std::thread::spawn(move || {
        for token in tokens {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let now = stage.lock().map(|s| s.clone()).unwrap_or_default();
            let auth = format!("Bearer {token}");
            let result = match try_request(
                gw,
                "GET",
                "/items/1",
                &[("Authorization", &auth)],
                b"",
                Duration::from_secs(5),
            ) {
                Ok(r) => Fresh {
                    status: r.status,
                    retry_after: (r.status == 503)
                        .then(|| r.header("retry-after").map(str::to_owned))
                        .flatten(),
                    error: (r.status == 503)
                        .then(|| {
                            serde_json::from_slice::<serde_json::Value>(&r.body).ok()?["error"]
                                .as_str()
                                .map(str::to_owned)
                        })
                        .flatten(),
                },
                Err(_) => Fresh {
                    status: 0,
                    retry_after: None,
                    error: None,
                },
            };
            if let Ok(mut v) = out.lock() {
                v.push((now, result));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("probe fresh: out of tokens");
    });
    let (stage, stop, out) = (
        probes.stage.clone(),
        probes.stop.clone(),
        probes.spiffe.clone(),
    );
    let (ca, cert, key) = (
        pki.ca.clone(),
        pki.spiffe_cert.clone(),
        pki.spiffe_key.clone(),
    );
    let spiffe = std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let now = stage.lock().map(|s| s.clone()).unwrap_or_default();
            let status = curl_https(tls, "/svc/x", &ca, Some((&cert, &key)), &[])
                .response
                .map_or(0, |r| r.status);
            if let Ok(mut v) = out.lock() {
                v.push((now, status));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    Probes {
        threads: vec![fresh, spiffe],
        ..probes
    }
}
