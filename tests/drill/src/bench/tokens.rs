//! Tokens (`bench/run.sh tokens [N]`): the gateway's real resident memory
//! holding N distinct verified tokens in its token cache (target: under
//! 100 MiB with 100,000).
//!
//! The test Authority runs with `AUTHORITY_TEST_MINT=1` and mints N
//! distinct access tokens of client svc-bearer for scope echo.read (`POST
//! /__test/mint`: signed with its own ES256 key, the claims of a real
//! client_credentials token, a fresh jti each). The gateway (release build,
//! default threads) has `gateway.auth.token_cache_max_entries = N + N/10 +
//! 1000` (shards fill unevenly; a cache for exactly N starts evicting a
//! little before N). After one warm request with a token from the token
//! endpoint, each minted token is sent exactly once on the Bearer route
//! over 16 keep-alive connections; every answer must be 200. It prints
//! VmRSS at idle (after the warm request) and after the N tokens, VmHWM,
//! the growth per token, the gateway's token cache metrics, and PASS/MISS
//! for RSS after load < 100 MiB (with a smaller N also the RSS projected to
//! 100,000 tokens). Exit 1 if a request is not answered 200 or the cache
//! does not hold the N tokens.

use super::client::KeepAlive;
use super::{procfs, Bench, Gateway};
use crate::harness::Abort;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use stella_test_support::{free_ports, try_request};

const CONNECTIONS: usize = 16;
const LIMIT_MIB: f64 = 100.0;

/// What sending the tokens came to.
#[derive(Debug, Default, Clone)]
pub struct Sent {
    pub requests: u64,
    pub ok: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub seconds: f64,
    pub connection_errors: Vec<String>,
}

/// `bench tokens [N]`.
pub fn main(n: u64) -> Result<i32, Abort> {
    let mut b = Bench::new()?;
    super::require(&b.root, &["haproxy", "node"])?;
    let gateway_bin = b.binary("stella-gateway")?;
    b.start_authority(&[("AUTHORITY_TEST_MINT", "1")])?;
    let token = b.token("svc-bearer", &[])?;
    b.start_upstream()?;
    let ports = free_ports(2);
    let (gw, admin) = (ports[0], ports[1]);

    let minting = Instant::now();
    let (authority, _) = super::http_target(&b.issuer)
        .ok_or_else(|| Abort(format!("issuer {} is not http", b.issuer)))?;
    let minted = try_request(
        authority,
        "POST",
        &format!("/__test/mint?count={n}&client=svc-bearer&scope=echo.read"),
        &[],
        b"",
        Duration::from_secs(600),
    )
    .map_err(|e| Abort(format!("the Authority's mint endpoint: {e}")))?;
    let mint_seconds = minting.elapsed().as_secs_f64();
    if minted.status != 200 {
        let text = minted.text();
        return Err(Abort(format!(
            "the Authority's mint endpoint answered {}: {}",
            minted.status,
            text.chars().take(300).collect::<String>()
        )));
    }
    let text = minted.text();
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let distinct = tokens.iter().collect::<BTreeSet<_>>().len();
    if distinct as u64 != n {
        return Err(Abort(format!(
            "expected {n} distinct tokens, got {distinct}"
        )));
    }

    let config = b.write_gateway_config(
        "conf",
        &Gateway {
            http: gw,
            admin,
            token_cache_max_entries: Some(n + n / 10 + 1000),
            ..Gateway::default()
        },
    )?;
    let gateway = b.start_gateway(&gateway_bin, &config)?;
    let pid = gateway.pid();
    let addr = SocketAddr::from(([127, 0, 0, 1], gw));
    let metric = |name: &str| {
        b.metrics(admin)
            .and_then(|m| m.value(name, &[]))
            .unwrap_or(0.0)
    };
    let auth = format!("Bearer {token}");
    let warm = try_request(
        addr,
        "GET",
        "/bearer/x",
        &[("Authorization", &auth)],
        b"",
        Duration::from_secs(10),
    )
    .map_or(0, |r| r.status);
    if warm != 200 {
        return Err(Abort(format!(
            "the warm request answered {warm}, expected 200; the gateway's stderr ends with:\n{}",
            b.tail("gateway.err", 5)
        )));
    }
    // Idle means settled after the warm request, not the moment after it.
    std::thread::sleep(Duration::from_secs(1));
    let idle = procfs::status_kib(pid, "VmRSS");
    let misses_before = metric("stella_gateway_token_cache_misses_total");

    let sent = send_each_once(addr, "/bearer/x", &tokens, CONNECTIONS);
    let after = procfs::status_kib(pid, "VmRSS");
    let hwm = procfs::status_kib(pid, "VmHWM");
    std::thread::sleep(Duration::from_secs(2));
    let settled = procfs::status_kib(pid, "VmRSS");
    let figures = Figures {
        n,
        mint_seconds,
        idle,
        after,
        settled,
        hwm,
        entries: metric("stella_gateway_token_cache_entries"),
        hits: metric("stella_gateway_token_cache_hits_total"),
        misses: metric("stella_gateway_token_cache_misses_total"),
        misses_before,
    };
    let (text, problems) = report(&figures, &sent);
    print!("{text}");
    for p in &problems {
        eprintln!("bench: {p}");
    }
    Ok(if problems.is_empty() { 0 } else { 1 })
}

/// Sends each token once as a Bearer token on `path`, over `connections`
/// keep-alive connections that share the list.
pub fn send_each_once(addr: SocketAddr, path: &str, tokens: &[&str], connections: usize) -> Sent {
    let next = AtomicUsize::new(0);
    let statuses = Mutex::new(BTreeMap::<u16, u64>::new());
    let errors = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..connections {
            s.spawn(|| {
                let mut client = KeepAlive::new(addr, Duration::from_secs(30));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(token) = tokens.get(i) else { break };
                    let auth = format!("Bearer {token}");
                    match client.get(path, &[("Authorization", &auth)]) {
                        Ok((status, _)) => {
                            if let Ok(mut s) = statuses.lock() {
                                *s.entry(status).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            if let Ok(mut list) = errors.lock() {
                                list.push(e);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    let statuses = statuses.into_inner().unwrap_or_default();
    let mut connection_errors = errors.into_inner().unwrap_or_default();
    connection_errors.truncate(5);
    Sent {
        requests: statuses.values().sum(),
        ok: statuses.get(&200).copied().unwrap_or(0),
        statuses,
        seconds: (started.elapsed().as_secs_f64() * 100.0).round() / 100.0,
        connection_errors,
    }
}

/// The measurements (memory in KiB, metrics as scraped).
#[derive(Debug, Clone)]
pub struct Figures {
    pub n: u64,
    pub mint_seconds: f64,
    pub idle: u64,
    pub after: u64,
    pub settled: u64,
    pub hwm: u64,
    pub entries: f64,
    pub hits: f64,
    pub misses: f64,
    pub misses_before: f64,
}

/// A float as Python prints it (`0.28`, `61.0`).
fn python_float(x: f64) -> String {
    let text = format!("{x}");
    if text.contains(['.', 'e', 'i', 'N']) {
        text
    } else {
        format!("{text}.0")
    }
}

/// The report, and what failed.
pub fn report(f: &Figures, sent: &Sent) -> (String, Vec<String>) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let n = f.n;
    let statuses: Vec<String> = sent
        .statuses
        .iter()
        .map(|(k, v)| format!("'{k}': {v}"))
        .collect();
    let statuses = format!("{{{}}}", statuses.join(", "));
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nStella Gateway: {n} distinct cached tokens (release build, default threads)"
    );
    let _ = writeln!(
        out,
        "minting {n} tokens at the Authority (POST /__test/mint): {:.1} s",
        f.mint_seconds
    );
    let _ = writeln!(
        out,
        "sending each once on /bearer/x over {CONNECTIONS} connections: {} s, {} requests, statuses {statuses}",
        python_float(sent.seconds),
        sent.requests
    );
    let _ = writeln!(
        out,
        "token cache: entries {}, misses +{} during the load (hits {}, misses {} in all)",
        f.entries,
        f.misses as i64 - f.misses_before as i64,
        f.hits,
        f.misses
    );
    let per_token = (f.after as f64 - f.idle as f64) * 1024.0 / n as f64;
    let _ = writeln!(
        out,
        "VmRSS idle (after start and one warm request): {:.1} MiB",
        mib(f.idle)
    );
    let _ = writeln!(
        out,
        "VmRSS after {n} tokens: {:.1} MiB (2 s later {:.1} MiB); VmHWM {:.1} MiB",
        mib(f.after),
        mib(f.settled),
        mib(f.hwm)
    );
    let _ = writeln!(
        out,
        "growth per token: {per_token:.0} bytes ((after - idle) / N)"
    );
    let verdict = if mib(f.after) < LIMIT_MIB {
        "PASS"
    } else {
        "MISS"
    };
    if n == 100_000 {
        let _ = writeln!(
            out,
            "RSS after 100,000 tokens: {:.1} MiB   (target < {LIMIT_MIB:.0} MiB: {verdict})",
            mib(f.after)
        );
    } else {
        let projected = mib(f.idle) + per_token * 100_000.0 / 1024.0 / 1024.0;
        let _ = writeln!(
            out,
            "RSS after {n} tokens: {:.1} MiB (target < {LIMIT_MIB:.0} MiB with 100,000: run with N=100000; \
             projected linearly to 100,000: {projected:.1} MiB)",
            mib(f.after)
        );
    }
    let mut problems = Vec::new();
    if sent.ok != n || !sent.connection_errors.is_empty() || sent.requests != n {
        problems.push(format!(
            "not every token was answered 200 ({} requests, {} ok, statuses {statuses}, connection errors {:?})",
            sent.requests, sent.ok, sent.connection_errors
        ));
    }
    if (f.entries as u64) < n {
        problems.push(format!(
            "the token cache holds {} entries, fewer than the {n} tokens sent",
            f.entries
        ));
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(requests: u64, statuses: &[(u16, u64)], seconds: f64) -> Sent {
        let statuses: BTreeMap<u16, u64> = statuses.iter().copied().collect();
        Sent {
            requests,
            ok: statuses.get(&200).copied().unwrap_or(0),
            statuses,
            seconds,
            connection_errors: Vec::new(),
        }
    }

    /// What the shell version's Python printed for the same figures.
    #[test]
    fn a_small_run_prints_the_projection_to_100000_tokens() {
        let f = Figures {
            n: 2000,
            mint_seconds: 0.31,
            idle: 34918,
            after: 43417,
            settled: 43417,
            hwm: 43418,
            entries: 2001.0,
            hits: 0.0,
            misses: 2001.0,
            misses_before: 1.0,
        };
        let (text, problems) = report(&f, &sent(2000, &[(200, 2000)], 0.28));
        assert_eq!(
            text,
            "
Stella Gateway: 2000 distinct cached tokens (release build, default threads)
minting 2000 tokens at the Authority (POST /__test/mint): 0.3 s
sending each once on /bearer/x over 16 connections: 0.28 s, 2000 requests, statuses {'200': 2000}
token cache: entries 2001, misses +2000 during the load (hits 0, misses 2001 in all)
VmRSS idle (after start and one warm request): 34.1 MiB
VmRSS after 2000 tokens: 42.4 MiB (2 s later 42.4 MiB); VmHWM 42.4 MiB
growth per token: 4351 bytes ((after - idle) / N)
RSS after 2000 tokens: 42.4 MiB (target < 100 MiB with 100,000: run with N=100000; projected linearly to 100,000: 449.1 MiB)
"
        );
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_refused_token_or_a_short_cache_fails_the_run() {
        let f = Figures {
            n: 100_000,
            mint_seconds: 12.0,
            idle: 31744,
            after: 90829,
            settled: 90900,
            hwm: 91000,
            entries: 99999.0,
            hits: 5.0,
            misses: 100001.0,
            misses_before: 1.0,
        };
        let (text, problems) = report(&f, &sent(100_000, &[(200, 99_999), (401, 1)], 61.0));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[3],
            "sending each once on /bearer/x over 16 connections: 61.0 s, 100000 requests, statuses {'200': 99999, '401': 1}"
        );
        assert_eq!(
            lines[8],
            "RSS after 100,000 tokens: 88.7 MiB   (target < 100 MiB: PASS)"
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].contains("holds 99999 entries, fewer than the 100000"));
    }
}
