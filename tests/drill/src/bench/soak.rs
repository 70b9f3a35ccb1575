//! The soak (`bench/run.sh soak [MINUTES] [RATE]`): mixed Bearer / DPoP /
//! anonymous load at about 70% of the gateway's maximum for MINUTES, with a
//! row per 30 s window: req/s, errors, p50, p99 (from the load generator)
//! and the gateway's VmRSS and open files.
//!
//! The mix (stella-load kinds, weights): bearer 2 (GET /bearer/x, a Bearer
//! token of svc-bearer from the Authority), dpop 1 (GET /dpop/x, svc-dpop,
//! a fresh proof per request), anon 1 (GET /pass/x). Every answer must be
//! 200.
//!
//! Maximum: unless RATE is given, a closed-loop probe first: wrk -t1 -c32
//! for PROBE seconds (environment, default 5) per kind (DPoP proofs made
//! beforehand, each used once); the mix's maximum is then
//! `1 / sum(share_k / R_k)` (the time a request of each kind costs,
//! weighted by its share), and the load runs at 70% of it. The load
//! generator (stella-load, open loop: a request is due every 1/rate s
//! whether or not earlier ones answered) runs on the same machine and uses
//! CPU too (more than wrk: it signs a DPoP proof per request), so 70% of the
//! wrk maximum is more than 70% of what is left to the gateway.
//!
//! Verdict: exit 1 if any request failed (stella-load counts a wrong
//! status, a timeout (5 s), a transport error or a request it could not
//! send because too many were outstanding), or if VmRSS grew by more than
//! 10% between the first sample after warm-up (60 s; 30 s for soaks of a
//! minute) and the last. 10% leaves room for allocator noise while
//! catching a leak of even a few bytes per request. Outstanding requests
//! are capped at MAX_IN_FLIGHT (environment, default 1000): uncapped, a
//! stall of the gateway on a busy machine makes the generator open
//! thousands of connections, and the RSS would measure its backlog. The
//! DPoP proof window is the gateway's default (60 s), so the replay store
//! reaches its steady size within the warm-up.

use super::wrk::Wrk;
use super::{median, procfs, write_proofs, Bench, Gateway};
use crate::harness::Abort;
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stella_test_support::{free_ports, Process};

const WINDOW: u64 = 30;
const GROWTH_LIMIT: f64 = 10.0;
/// bearer, dpop, anon.
const WEIGHTS: [(&str, u32); 3] = [("bearer", 2), ("dpop", 1), ("anon", 1)];

fn env_number(name: &str, default: u64) -> Result<u64, Abort> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Abort(format!("{name}={text:?} is not a positive number"))),
    }
}

/// `bench soak [MINUTES] [RATE]`.
pub fn main(minutes: u64, rate: Option<u64>) -> Result<i32, Abort> {
    let probe_seconds = env_number("PROBE", 5)?;
    let max_in_flight = env_number("MAX_IN_FLIGHT", 1000)?;
    let mut b = Bench::new()?;
    super::require(&b.root, &["wrk", "node", "haproxy"])?;
    let gateway_bin = b.binary("stella-gateway")?;
    let load_bin = b.binary("stella-load")?;
    b.start_authority(&[])?;
    b.start_upstream()?;
    let ports = free_ports(2);
    let config = b.write_gateway_config(
        "conf",
        &Gateway {
            http: ports[0],
            admin: ports[1],
            proof_max_age: Some(60),
            ..Gateway::default()
        },
    )?;
    let mut gateway = b.start_gateway(&gateway_bin, &config)?;
    let gw_pid = gateway.pid();
    let base = format!("http://127.0.0.1:{}", ports[0]);
    let rss_mib = || format!("{:.1}", procfs::status_kib(gw_pid, "VmRSS") as f64 / 1024.0);
    let fds = || procfs::open_files(gw_pid);

    let (rate, rate_note) = match rate {
        Some(rate) => (rate, "given".to_owned()),
        None => {
            let token = b.token("svc-bearer", &[])?;
            let (key, dpop_token) = b.dpop_token()?;
            let proofs = b.path("proofs.txt");
            let dpop_url = format!("{base}/dpop/x");
            write_proofs(
                &key,
                "GET",
                &dpop_url,
                &dpop_token,
                probe_seconds * 20_000,
                &proofs,
            )?;
            let (anon_url, bearer_url) = (format!("{base}/pass/x"), format!("{base}/bearer/x"));
            let bearer_auth = format!("Bearer {token}");
            let mut max = Vec::new();
            for kind in ["anon", "bearer", "dpop"] {
                let wrk = Wrk {
                    url: match kind {
                        "anon" => &anon_url,
                        "bearer" => &bearer_url,
                        _ => &dpop_url,
                    },
                    connections: 32,
                    seconds: probe_seconds,
                    latency: false,
                    authorization: (kind == "bearer").then_some(bearer_auth.as_str()),
                    proofs: (kind == "dpop").then_some((proofs.as_path(), dpop_token.as_str())),
                };
                let report = wrk.run(&b.root)?;
                if report.non_2xx != 0 {
                    return Err(Abort(format!(
                        "the {kind} probe had {} non-2xx answers",
                        report.non_2xx
                    )));
                }
                max.push((kind, report));
            }
            let rates: Vec<(&str, f64)> = max
                .iter()
                .map(|(k, r)| (*k, r.requests_per_second))
                .collect();
            let rate = soak_rate(&rates);
            let mix_max = (rate as f64 / 0.7).round_ties_even() as u64;
            let text = |k: &str| {
                max.iter()
                    .find(|(kind, _)| *kind == k)
                    .map(|(_, r)| r.requests_per_second_text.clone())
                    .unwrap_or_default()
            };
            println!(
                "probe (wrk -t1 -c32, {probe_seconds}s each): anon {} req/s, bearer {} req/s, dpop {} req/s; \
                 mix maximum ~{mix_max} req/s; soak rate {rate} req/s (70%)",
                text("anon"),
                text("bearer"),
                text("dpop")
            );
            (
                rate,
                format!("70% of the probed mix maximum ~{mix_max} req/s"),
            )
        }
    };

    println!(
        "gateway before the soak: RSS {} MiB, {} open files",
        rss_mib(),
        fds()
    );
    let mut cmd = Command::new(&load_bin);
    cmd.arg("--rate")
        .arg(rate.to_string())
        .args(["--issuer", &b.issuer, "--timeout", "5"])
        .arg("--max-in-flight")
        .arg(max_in_flight.to_string())
        .arg("--duration")
        .arg((minutes * 60 + 120).to_string())
        .args(["--first-step", "w0001"]);
    for (kind, path, credential) in [
        ("bearer", "/bearer/x", "bearer:svc-bearer"),
        ("dpop", "/dpop/x", "dpop:svc-dpop"),
        ("anon", "/pass/x", "none"),
    ] {
        let weight = WEIGHTS.iter().find(|w| w.0 == kind).map_or(1, |w| w.1);
        cmd.arg("--kind").arg(format!(
            "{kind} GET {base}{path} {credential} expect=200 weight={weight}"
        ));
    }
    let mut load = Process::start_logged(
        "load",
        cmd,
        "LOAD_READY",
        Duration::from_secs(60),
        b.work.path(),
        Stdio::piped(),
    )
    .map_err(Abort)?;
    let mut commands = load.take_stdin();
    let load_cpu0 = procfs::ticks(load.pid());
    let gw_cpu0 = procfs::ticks(gw_pid);
    println!(
        "soak: {minutes} min at {rate} req/s ({rate_note}), kinds bearer:dpop:anon = 2:1:1, \
         windows of {WINDOW}s, at most {max_in_flight} outstanding"
    );
    println!(
        "(the load generator runs on this machine too and uses CPU; its share is printed at the end)"
    );

    let windows = minutes * 60 / WINDOW;
    let started = Instant::now();
    let mut samples = Vec::new();
    for i in 1..=windows {
        let due = started + Duration::from_secs(i * WINDOW);
        if let Some(left) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(left);
        }
        if load.try_exit_code().is_some() {
            return Err(Abort(format!(
                "the load generator exited early; its stderr ends with:\n{}",
                b.tail("load.err", 20)
            )));
        }
        if gateway.try_exit_code().is_some() {
            return Err(Abort(format!(
                "the gateway exited; its stderr ends with:\n{}",
                b.tail("gateway.err", 20)
            )));
        }
        let (rss, files) = (rss_mib(), fds());
        println!(
            "window {i:>3} (to {:>4} s): RSS {rss} MiB, {files} open files",
            i * WINDOW
        );
        samples.push((format!("w{i:04}"), rss, files.to_string()));
        if i < windows {
            if let Some(stdin) = commands.as_mut() {
                let _ = writeln!(stdin, "step w{:04}", i + 1).and_then(|()| stdin.flush());
            }
        }
    }
    let load_ticks = procfs::ticks(load.pid()).saturating_sub(load_cpu0);
    let gw_ticks = procfs::ticks(gw_pid).saturating_sub(gw_cpu0);
    if let Some(mut stdin) = commands.take() {
        let _ = writeln!(stdin, "end");
    }
    let load_code = match load.wait_exit(Duration::from_secs(120)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            load.stop("KILL", Duration::from_secs(5))
        }
    };
    let load_out = std::fs::read_to_string(b.path("load.out")).unwrap_or_default();
    let (text, failed) = report(&Soak {
        load_out: &load_out,
        samples: &samples,
        load_exit: load_code,
        minutes,
        load_ticks,
        gw_ticks,
        hz: procfs::clock_ticks_per_second()?,
    });
    print!("{text}");
    Ok(if failed { 1 } else { 0 })
}

/// 70% of the mix's maximum, from each kind's maximum req/s:
/// `1 / sum(share_k / R_k)`, rounded as Python's `round` (half to even).
pub fn soak_rate(maxima: &[(&str, f64)]) -> u64 {
    let total: u32 = WEIGHTS.iter().map(|w| w.1).sum();
    let cost: f64 = WEIGHTS
        .iter()
        .map(|(kind, weight)| {
            let r = maxima
                .iter()
                .find(|m| m.0 == *kind)
                .map_or(f64::INFINITY, |m| m.1);
            *weight as f64 / total as f64 / r
        })
        .sum();
    (1.0 / cost * 0.7).round_ties_even() as u64
}

/// What the soak measured.
pub struct Soak<'a> {
    /// The load generator's stdout (its tables).
    pub load_out: &'a str,
    /// Per window: its step name, the gateway's RSS (MiB, as printed) and
    /// open files.
    pub samples: &'a [(String, String, String)],
    pub load_exit: Option<i32>,
    pub minutes: u64,
    pub load_ticks: u64,
    pub gw_ticks: u64,
    pub hz: u64,
}

/// A load table's rows: steps (`w0001`.., `total`: requests, failed,
/// non-2xx, p50, p99) and kinds (name, requests, failed, results).
type Tables = (Vec<(String, Vec<String>)>, Vec<Vec<String>>);

pub fn load_tables(load_out: &str) -> Tables {
    let mut steps = Vec::new();
    let mut kinds = Vec::new();
    for line in load_out.lines() {
        let cells: Vec<String> = line.split('|').map(|c| c.trim().to_owned()).collect();
        let step_name = |c: &str| {
            c == "total"
                || (c.len() == 5
                    && c.starts_with('w')
                    && c[1..].bytes().all(|b| b.is_ascii_digit()))
        };
        if cells.len() == 6 && step_name(&cells[0]) {
            steps.push((cells[0].clone(), cells[1..].to_vec()));
        } else if cells.len() == 4 && WEIGHTS.iter().any(|w| w.0 == cells[0]) {
            kinds.push(cells);
        }
    }
    (steps, kinds)
}

/// The table per window, the totals, the verdict; whether the soak failed.
pub fn report(s: &Soak) -> (String, bool) {
    let (steps, kinds) = load_tables(s.load_out);
    let step = |name: &str| {
        steps
            .iter()
            .rfind(|(n, _)| n == name)
            .map(|(_, cells)| cells.clone())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<8}{:>6}{:>9}{:>8}{:>9}{:>9}{:>9}{:>9}{:>7}",
        "window", "to s", "req/s", "errors", "non-2xx", "p50 ms", "p99 ms", "RSS MiB", "fds"
    );
    let mut samples: Vec<&(String, String, String)> = s.samples.iter().collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    // name, p99, rss
    let mut rows: Vec<(Option<f64>, f64)> = Vec::new();
    for (i, (name, rss, fds)) in samples.iter().enumerate() {
        let cells =
            step(name).unwrap_or_else(|| ["0", "0", "0", "-", "-"].map(String::from).to_vec());
        let [requests, failed, non2xx, p50, p99] = &cells[..] else {
            continue;
        };
        rows.push((p99.parse().ok(), rss.parse().unwrap_or(0.0)));
        let _ = writeln!(
            out,
            "{name:<8}{:>6}{:>9.0}{failed:>8}{non2xx:>9}{p50:>9}{p99:>9}{rss:>9}{fds:>7}",
            (i as u64 + 1) * WINDOW,
            requests.parse::<f64>().unwrap_or(0.0) / WINDOW as f64
        );
    }
    let total = step("total");
    if let Some(t) = &total {
        let _ = writeln!(
            out,
            "{:<8}{:>6}{:>9.0}{:>8}{:>9}{:>9}{:>9}",
            "total",
            "",
            t[0].parse::<f64>().unwrap_or(0.0) / (rows.len() as u64 * WINDOW) as f64,
            t[1],
            t[2],
            t[3],
            t[4]
        );
    }
    for k in &kinds {
        let _ = writeln!(
            out,
            "  {:<7} {:>8} requests, {} failed: {}",
            k[0], k[1], k[2], k[3]
        );
    }
    let warm = if s.minutes > 1 { 60 } else { WINDOW };
    let skip = (warm / WINDOW - 1) as usize;
    let after = rows.get(skip..).unwrap_or_default();
    let first = after.first().map_or(0.0, |r| r.1);
    let last = rows.last().map_or(0.0, |r| r.1);
    let growth = 100.0 * (last - first) / first;
    let p99s: Vec<f64> = after.iter().filter_map(|r| r.0).collect();
    let errors: i64 = total.as_ref().and_then(|t| t[1].parse().ok()).unwrap_or(-1);
    let _ = writeln!(out, "\nerrors: {errors} (target 0)");
    let rss_after = || after.iter().map(|r| r.1);
    let _ = writeln!(
        out,
        "RSS: {first:.1} MiB at {warm} s (after warm-up), {last:.1} MiB at the end: growth {growth:+.1}% \
         (limit {GROWTH_LIMIT:.0}%); after warm-up min {:.1}, median {:.1}, max {:.1} MiB",
        rss_after().fold(f64::INFINITY, f64::min),
        median(rss_after()),
        rss_after().fold(f64::NEG_INFINITY, f64::max)
    );
    if !p99s.is_empty() {
        let _ = writeln!(
            out,
            "p99 over the windows after warm-up: min {:.1} ms, median {:.1} ms, max {:.1} ms",
            p99s.iter().copied().fold(f64::INFINITY, f64::min),
            median(p99s.iter().copied()),
            p99s.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
    }
    let seconds = (rows.len() as u64 * WINDOW) as f64;
    let share = |ticks: u64| ticks as f64 / s.hz as f64 / seconds * 100.0;
    let _ = writeln!(
        out,
        "CPU over the soak: gateway {:.0}% of a core, load generator {:.0}% of a core (2 cores in all)",
        share(s.gw_ticks),
        share(s.load_ticks)
    );
    let mut problems = Vec::new();
    if errors != 0 || s.load_exit != Some(0) {
        let exit = s
            .load_exit
            .map_or_else(|| "by a signal".to_owned(), |c| c.to_string());
        problems.push(format!(
            "{errors} failed requests (stella-load exit {exit})"
        ));
    }
    if growth > GROWTH_LIMIT {
        problems.push(format!(
            "RSS grew {growth:.1}% after warm-up (limit {GROWTH_LIMIT:.0}%)"
        ));
    }
    let verdict = if problems.is_empty() {
        "PASS".to_owned()
    } else {
        format!("FAIL: {}", problems.join("; "))
    };
    let _ = writeln!(out, "verdict: {verdict}");
    (out, !problems.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
        list.iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect()
    }

    /// stella-load's stdout after a one-minute soak at 50 req/s.
    const ONE_MINUTE: &str = "\
LOAD_READY {\"kinds\":[],\"rate\":50.0}
LOAD_ACK 1 step w0002
LOAD_ACK 2 end

step  | requests | failed | non-2xx | p50 ms | p99 ms
------|----------|--------|---------|--------|-------
w0001 |     1502 |      0 |       0 |    0.8 |    3.4
w0002 |     1501 |      0 |       0 |    0.8 |    1.3
total |     3003 |      0 |       0 |    0.8 |    2.9

kind   | requests | failed | results
-------|----------|--------|---------
bearer |     1501 |      0 | 200:1501
dpop   |      751 |      0 | 200:751
anon   |      751 |      0 | 200:751
";

    /// What the shell version's Python printed for the same soak.
    #[test]
    fn a_clean_one_minute_soak_passes_and_reads_as_before() {
        let (text, failed) = report(&Soak {
            load_out: ONE_MINUTE,
            samples: &samples(&[("w0001", "36.4", "54"), ("w0002", "36.3", "54")]),
            load_exit: Some(0),
            minutes: 1,
            load_ticks: 400,
            gw_ticks: 1200,
            hz: 100,
        });
        assert_eq!(
            text,
            "
window    to s    req/s  errors  non-2xx   p50 ms   p99 ms  RSS MiB    fds
w0001       30       50       0        0      0.8      3.4     36.4     54
w0002       60       50       0        0      0.8      1.3     36.3     54
total                50       0        0      0.8      2.9
  bearer      1501 requests, 0 failed: 200:1501
  dpop         751 requests, 0 failed: 200:751
  anon         751 requests, 0 failed: 200:751

errors: 0 (target 0)
RSS: 36.4 MiB at 30 s (after warm-up), 36.3 MiB at the end: growth -0.3% (limit 10%); after warm-up min 36.3, median 36.3, max 36.4 MiB
p99 over the windows after warm-up: min 1.3 ms, median 2.4 ms, max 3.4 ms
CPU over the soak: gateway 20% of a core, load generator 7% of a core (2 cores in all)
verdict: PASS
"
        );
        assert!(!failed);
    }

    /// A three-minute soak with two failed requests, a window the
    /// generator has no row for, and RSS growing past the limit.
    #[test]
    fn failed_requests_and_rss_growth_fail_the_soak() {
        let load_out = "\
LOAD_READY {\"kinds\":[],\"rate\":1500.0}

step  | requests | failed | non-2xx | p50 ms | p99 ms
------|----------|--------|---------|--------|-------
w0001 |    45061 |      0 |       0 |    0.9 |    7.9
w0002 |    45000 |      2 |       1 |    1.0 |    8.2
w0003 |    45000 |      0 |       0 |    1.6 |   10.8
w0004 |    45003 |      0 |       0 |    1.0 |    8.0
w0005 |        0 |      0 |       0 |      - |      -
total |   180064 |      2 |       1 |    1.1 |    9.0

kind   | requests | failed | results
-------|----------|--------|---------
bearer |    90032 |      1 | 200:90031 503:1
dpop   |    45016 |      1 | 200:45015 timeout:1
anon   |    45016 |      0 | 200:45016
";
        let (text, failed) = report(&Soak {
            load_out,
            samples: &samples(&[
                ("w0001", "39.8", "60"),
                ("w0002", "40.6", "61"),
                ("w0003", "43.2", "66"),
                ("w0004", "45.2", "70"),
                ("w0005", "45.3", "70"),
                ("w0006", "45.4", "71"),
            ]),
            load_exit: Some(1),
            minutes: 3,
            load_ticks: 9000,
            gw_ticks: 30000,
            hz: 100,
        });
        assert_eq!(
            text,
            "
window    to s    req/s  errors  non-2xx   p50 ms   p99 ms  RSS MiB    fds
w0001       30     1502       0        0      0.9      7.9     39.8     60
w0002       60     1500       2        1      1.0      8.2     40.6     61
w0003       90     1500       0        0      1.6     10.8     43.2     66
w0004      120     1500       0        0      1.0      8.0     45.2     70
w0005      150        0       0        0        -        -     45.3     70
w0006      180        0       0        0        -        -     45.4     71
total              1000       2        1      1.1      9.0
  bearer     90032 requests, 1 failed: 200:90031 503:1
  dpop       45016 requests, 1 failed: 200:45015 timeout:1
  anon       45016 requests, 0 failed: 200:45016

errors: 2 (target 0)
RSS: 40.6 MiB at 60 s (after warm-up), 45.4 MiB at the end: growth +11.8% (limit 10%); after warm-up min 40.6, median 45.2, max 45.4 MiB
p99 over the windows after warm-up: min 8.0 ms, median 8.2 ms, max 10.8 ms
CPU over the soak: gateway 167% of a core, load generator 50% of a core (2 cores in all)
verdict: FAIL: 2 failed requests (stella-load exit 1); RSS grew 11.8% after warm-up (limit 10%)
"
        );
        assert!(failed);
    }

    #[test]
    fn the_soak_rate_is_70_percent_of_the_weighted_maximum() {
        // 1 / (0.25/4000 + 0.5/2000 + 0.25/1000) = 1777.8 req/s; 70%.
        let rate = soak_rate(&[("anon", 4000.0), ("bearer", 2000.0), ("dpop", 1000.0)]);
        assert_eq!(rate, 1244);
    }
}
