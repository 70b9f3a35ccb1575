//! wrk, the closed-loop load of the benchmarks: one run (`-t1 -cN -dDs`,
//! keep-alive), and what its report says.

use crate::harness::Abort;
use std::path::Path;
use std::process::Command;

/// One wrk run.
pub struct Wrk<'a> {
    pub url: &'a str,
    pub connections: u64,
    pub seconds: u64,
    /// `--latency`: the percentiles.
    pub latency: bool,
    /// `Authorization` header value.
    pub authorization: Option<&'a str>,
    /// DPoP: `bench/proofs.lua` sends each proof of this file once, with
    /// this access token.
    pub proofs: Option<(&'a Path, &'a str)>,
}

/// What wrk reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// `Requests/sec:` as printed.
    pub requests_per_second_text: String,
    pub requests_per_second: f64,
    /// The 50th and 99th percentiles (with `--latency`), in ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub non_2xx: u64,
    /// `N requests in ...`.
    pub requests: u64,
}

impl Wrk<'_> {
    /// Runs wrk (from the workspace root `root`) and reads its report.
    pub fn run(&self, root: &Path) -> Result<Report, Abort> {
        let mut cmd = Command::new("wrk");
        cmd.current_dir(root).args([
            "-t1".to_owned(),
            format!("-c{}", self.connections),
            format!("-d{}s", self.seconds),
        ]);
        if self.latency {
            cmd.arg("--latency");
        }
        if let Some(value) = self.authorization {
            cmd.arg("-H").arg(format!("Authorization: {value}"));
        }
        if let Some((file, token)) = self.proofs {
            cmd.env("PROOFS", file)
                .env("TOKEN", token)
                .args(["-s", "bench/proofs.lua"]);
        }
        cmd.arg(self.url);
        let out = crate::harness::command_output(&mut cmd)?;
        parse(&out).map_err(|e| Abort(format!("wrk {}: {e}:\n{out}", self.url)))
    }
}

/// Reads wrk's report.
pub fn parse(text: &str) -> Result<Report, String> {
    let after = |label: &str| {
        text.lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .map(str::trim)
    };
    let rps_text = after("Requests/sec:").ok_or("no Requests/sec line")?;
    let requests_per_second = rps_text
        .parse()
        .map_err(|_| format!("Requests/sec {rps_text:?}"))?;
    let percentile = |p: &str| {
        text.lines().find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(p)).then(|| words.next().and_then(latency_ms))?
        })
    };
    let non_2xx = match after("Non-2xx or 3xx responses:") {
        Some(n) => n.parse().map_err(|_| format!("non-2xx count {n:?}"))?,
        None => 0,
    };
    let requests = text
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            let n = words.next()?.parse().ok()?;
            (words.next() == Some("requests") && words.next() == Some("in")).then_some(n)
        })
        .ok_or("no `N requests in` line")?;
    Ok(Report {
        requests_per_second_text: rps_text.to_owned(),
        requests_per_second,
        p50_ms: percentile("50%"),
        p99_ms: percentile("99%"),
        non_2xx,
        requests,
    })
}

/// A latency as wrk prints it (`64.00us`, `1.54ms`, `1.02s`), in ms.
pub fn latency_ms(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `wrk -t1 -c8 -d1s --latency` against HAProxy answering 200.
    const LATENCY: &str = "\
Running 1s test @ http://127.0.0.1:18555/ok
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    79.42us  154.85us   3.97ms   99.07%
    Req/Sec   104.88k     9.79k  114.15k    90.91%
  Latency Distribution
     50%   64.00us
     75%   70.00us
     90%   90.00us
     99%  215.00us
  114421 requests in 1.10s, 7.20MB read
Requests/sec: 104053.14
Transfer/sec:      6.55MB
";

    /// The same against a path HAProxy answers 404.
    const NON_2XX: &str = "\
Running 1s test @ http://127.0.0.1:18555/missing
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    82.61us  164.77us   4.28ms   98.88%
    Req/Sec   100.61k     9.73k  113.26k    72.73%
  Latency Distribution
     50%   66.00us
     75%   81.00us
     90%   99.00us
     99%  270.00us
  109649 requests in 1.10s, 7.63MB read
  Non-2xx or 3xx responses: 109649
Requests/sec:  99658.53
Transfer/sec:      6.94MB
";

    /// `wrk -t1 -c32 -d1s` (no `--latency`), as the soak's probe runs it.
    const PLAIN: &str = "\
Running 1s test @ http://127.0.0.1:18555/ok
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   225.36us  168.27us   5.13ms   97.42%
    Req/Sec   109.59k     7.66k  118.90k    60.00%
  108823 requests in 1.00s, 6.85MB read
Requests/sec: 108691.59
Transfer/sec:      6.84MB
";

    #[test]
    fn a_latency_run_gives_rate_percentiles_and_requests() {
        let r = parse(LATENCY).expect("parses");
        assert_eq!(r.requests_per_second, 104053.14);
        assert_eq!(r.requests_per_second_text, "104053.14");
        assert_eq!(r.p50_ms, Some(0.064));
        assert_eq!(r.p99_ms, Some(0.215));
        assert_eq!((r.requests, r.non_2xx), (114421, 0));
    }

    #[test]
    fn non_2xx_answers_are_counted() {
        let r = parse(NON_2XX).expect("parses");
        assert_eq!(r.requests_per_second_text, "99658.53");
        assert_eq!((r.requests, r.non_2xx), (109649, 109649));
    }

    #[test]
    fn a_run_without_latency_has_no_percentiles() {
        let r = parse(PLAIN).expect("parses");
        assert_eq!(r.requests_per_second, 108691.59);
        assert_eq!((r.p50_ms, r.p99_ms, r.requests), (None, None, 108823));
    }

    #[test]
    fn latencies_are_converted_to_milliseconds() {
        assert_eq!(latency_ms("215.00us"), Some(0.215));
        assert_eq!(latency_ms("1.54ms"), Some(1.54));
        assert_eq!(latency_ms("1.02s"), Some(1020.0));
        assert_eq!(latency_ms("3m"), None);
        assert!(
            parse("Running 1s test\n").is_err(),
            "a report without figures"
        );
    }
}
