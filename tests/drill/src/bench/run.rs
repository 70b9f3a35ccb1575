//! The default benchmark (`bench/run.sh [DURATION] [ROUNDS] [CONNECTIONS]`):
//! in one run on this machine, requests/s and latency of
//!
//! - `direct`: the upstream itself (HAProxy answering 200 "ok");
//! - `pass`: an anonymous pass-through route through the gateway;
//! - `bearer`: a Bearer route, warm token cache;
//! - `dpop`: a DPoP route, a fresh proof per request (made before the
//!   round, each used once by bench/proofs.lua), warm token cache;
//! - `tlspass` and `mtls`: the anonymous route and a certificate-bound
//!   (RFC 8705) token route over mutual TLS; wrk cannot present client
//!   certificates, so both go through a local HAProxy that opens the mTLS
//!   connections to the gateway;
//! - `haproxy`: HAProxy 2.6 checking the same token with jwt_verify on
//!   every request;
//!
//! and, as references for reading the figures, `hapass` (HAProxy as a
//! plain proxy) and `bare` (a Pingora proxy with no filters,
//! gateway/examples/bare_proxy.rs). It prints medians over ROUNDS of
//! requests/s, latency, signature verifications per request (the gateway's
//! own counter) and the proxy process's CPU time per request (steadier than
//! requests/s on a busy machine), the target ratios it judges in both terms
//! (at least 0.90 for pass / bare, 0.95 for bearer / pass, 1.00 for dpop /
//! haproxy; the budget is docs/design.md §5), the gateway's resident
//! memory, and the cold start.

use super::wrk::Wrk;
use super::{coldstart, median, procfs, write_proofs, Bench, Gateway, DEFAULTS};
use crate::harness::{command_output, write_atomic, Abort};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use stella_gateway::config::file::TlsSection;
use stella_test_support::{free_ports, try_request, Pki};

/// The targets in the order they are measured.
const MEASURED: [&str; 9] = [
    "direct", "hapass", "bare", "pass", "bearer", "haproxy", "dpop", "tlspass", "mtls",
];
/// The targets in the order of the table.
const TABLE: [&str; 9] = [
    "direct", "hapass", "bare", "pass", "bearer", "dpop", "haproxy", "tlspass", "mtls",
];
/// The targets the gateway serves (signature verifications are its own).
const GATEWAY: [&str; 5] = ["pass", "bearer", "dpop", "tlspass", "mtls"];

fn label(target: &str) -> &'static str {
    match target {
        "direct" => "upstream directly",
        "hapass" => "HAProxy plain proxy (reference)",
        "bare" => "Pingora, no filters (reference)",
        "pass" => "gateway anonymous pass-through",
        "bearer" => "gateway Bearer, warm cache",
        "dpop" => "gateway DPoP, one proof verification per request",
        "haproxy" => "HAProxy jwt_verify every request",
        "tlspass" => "anonymous route over mTLS (via HAProxy client hop)",
        "mtls" => "certificate-bound token over mTLS (same hop)",
        _ => "",
    }
}

/// One target in one round.
#[derive(Debug, Clone)]
pub struct Row {
    pub target: String,
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
    /// CPU time of the proxy process per request, microseconds.
    pub cpu_us: f64,
    /// Signature verifications per request (the gateway's counter).
    pub sig: f64,
}

pub fn run(duration: u64, rounds: u64, conns: u64) -> Result<i32, Abort> {
    let mut b = Bench::new()?;
    super::require(&b.root, &["wrk", "haproxy", "node"])?;
    let gateway_bin = b.binary("stella-gateway")?;
    let bare_bin = b.binary("examples/bare_proxy")?;
    b.start_authority(&[])?;
    let token = b.token("svc-bearer", &[])?;

    // TLS material: a CA, the gateway's certificate, a client certificate
    // (and HAProxy's bundle of the client certificate and key).
    let pki = Pki::generate(&b.work);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let bundle = b.path("client-bundle.pem");
    write_atomic(&bundle, &(read(&pki.client_cert) + &read(&pki.client_key)))?;
    let mtls_token = b.token(
        "svc-mtls",
        &["--cert-pem".as_ref(), pki.client_cert.as_os_str()],
    )?;
    let (dpop_key, dpop_token) = b.dpop_token()?;
    let es256 = b.path("es256.pem");
    write_atomic(&es256, &b.authority_es256_pem()?)?;

    b.start_upstream()?;
    let up = b.upstream;
    let ports = free_ports(7);
    let [hp, gw, admin, pp, bp, gwtls, mc] = ports[..] else {
        return Err(Abort("free ports".into()));
    };
    let (work, ca) = (b.work.path().display().to_string(), pki.ca.display());
    let mtls_pid = b.haproxy(
        "mtls-client",
        &format!(
            "global\n  nbthread 1\n{DEFAULTS}frontend mtlsclient\n  bind 127.0.0.1:{mc}\n  \
             default_backend gateway_tls\nbackend gateway_tls\n  server g1 127.0.0.1:{gwtls} ssl \
             crt {work}/client-bundle.pem ca-file {ca} verify required sni str(localhost)\n"
        ),
    )?;
    let hp_pid = b.haproxy(
        "haproxy-jwt",
        &format!(
            "global\n  nbthread 2\n{DEFAULTS}frontend jwt\n  bind 127.0.0.1:{hp}\n  \
             http-request set-var(txn.bearer) http_auth_bearer\n  \
             http-request set-var(txn.jwt_alg) var(txn.bearer),jwt_header_query('$.alg')\n  \
             http-request deny deny_status 401 unless {{ var(txn.jwt_alg) -m str ES256 }}\n  \
             http-request deny deny_status 401 unless {{ var(txn.bearer),jwt_verify(txn.jwt_alg,\"{}\") -m int 1 }}\n  \
             default_backend upstream\nbackend upstream\n  server u1 127.0.0.1:{up}\n",
            es256.display()
        ),
    )?;
    let pp_pid = b.haproxy(
        "haproxy-pass",
        &format!(
            "global\n  nbthread 2\n{DEFAULTS}frontend pass\n  bind 127.0.0.1:{pp}\n  \
             default_backend upstream\nbackend upstream\n  server u1 127.0.0.1:{up}\n"
        ),
    )?;
    let bp_pid = b.spawn(
        "bare",
        Command::new(&bare_bin).args([
            format!("127.0.0.1:{bp}"),
            format!("127.0.0.1:{up}"),
            "2".into(),
        ]),
    )?;

    let config = b.write_gateway_config(
        "conf",
        &Gateway {
            http: gw,
            admin,
            tls: Some(TlsSection {
                addr: Some(format!("127.0.0.1:{gwtls}")),
                cert_file: Some(pki.server_cert.display().to_string()),
                key_file: Some(pki.server_key.display().to_string()),
                client_certificates: Some("optional".into()),
                client_ca_file: Some(pki.ca.display().to_string()),
                http2: Some(false),
                ..TlsSection::default()
            }),
            ..Gateway::default()
        },
    )?;
    let gateway = b.start_gateway(&gateway_bin, &config)?;
    let gw_pid = gateway.pid();
    let limit = Duration::from_secs(20);
    b.wait_accepting("mtls-client", mtls_pid, mc, limit)?;
    b.wait_accepting("haproxy-jwt", hp_pid, hp, limit)?;
    b.wait_accepting("haproxy-pass", pp_pid, pp, limit)?;
    b.wait_accepting("bare", bp_pid, bp, limit)?;

    let port = |t: &str| match t {
        "direct" => up,
        "hapass" => pp,
        "bare" => bp,
        "pass" | "bearer" | "dpop" => gw,
        "haproxy" => hp,
        _ => mc,
    };
    let path = |t: &str| match t {
        "direct" | "hapass" | "bare" | "pass" | "tlspass" => "/pass/x",
        "bearer" | "haproxy" => "/bearer/x",
        "dpop" => "/dpop/x",
        _ => "/mtls/x",
    };
    let url = |t: &str| format!("http://127.0.0.1:{}{}", port(t), path(t));
    let token_of = |t: &str| if t == "mtls" { &mtls_token } else { &token };
    let pid_of = |t: &str| match t {
        "direct" => b.upstream_pid,
        "hapass" => pp_pid,
        "bare" => bp_pid,
        "haproxy" => hp_pid,
        _ => gw_pid,
    };

    let proofs = b.path("proofs.txt");
    write_proofs(&dpop_key, "GET", &url("dpop"), &dpop_token, 1, &proofs)?;
    let first_proof = std::fs::read_to_string(&proofs).unwrap_or_default();
    let dpop_auth = format!("DPoP {dpop_token}");
    for t in MEASURED {
        let auth = format!("Bearer {}", token_of(t));
        let headers: Vec<(&str, &str)> = if t == "dpop" {
            vec![("Authorization", &dpop_auth), ("DPoP", first_proof.trim())]
        } else {
            vec![("Authorization", &auth)]
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port(t)));
        let status = try_request(addr, "GET", path(t), &headers, b"", Duration::from_secs(10))
            .map_or(0, |r| r.status);
        if status != 200 {
            return Err(Abort(format!(
                "{t} answered {status}, expected 200; the gateway's stderr ends with:\n{}",
                b.tail("gateway.err", 20)
            )));
        }
    }

    let hz = procfs::clock_ticks_per_second()? as f64;
    let verifications = || {
        b.metrics(admin)
            .and_then(|m| m.value("stella_gateway_signature_verifications_total", &[]))
            .unwrap_or(0.0)
    };
    let mut rows = Vec::new();
    for _round in 1..=rounds {
        for t in MEASURED {
            let v_before = verifications();
            let target_url = url(t);
            let auth = format!("Bearer {}", token_of(t));
            let mut wrk = Wrk {
                url: &target_url,
                connections: conns,
                seconds: duration,
                latency: true,
                authorization: Some(&auth),
                proofs: None,
            };
            if t == "dpop" {
                write_proofs(
                    &dpop_key,
                    "GET",
                    &target_url,
                    &dpop_token,
                    duration * 25_000,
                    &proofs,
                )?;
                wrk.authorization = None;
                wrk.proofs = Some((&proofs, &dpop_token));
            }
            let before = procfs::ticks(pid_of(t));
            let report = wrk.run(&b.root)?;
            let after = procfs::ticks(pid_of(t));
            let verified = verifications() - v_before;
            let requests = report.requests.max(1) as f64;
            rows.push(Row {
                target: t.to_owned(),
                rps: report.requests_per_second,
                p50_ms: report.p50_ms.unwrap_or(0.0),
                p99_ms: report.p99_ms.unwrap_or(0.0),
                non_2xx: report.non_2xx,
                cpu_us: after.saturating_sub(before) as f64 * 1e6 / hz / requests,
                sig: verified / requests,
            });
        }
    }
    let rss_kib = procfs::status_kib(gw_pid, "VmRSS");
    let speed =
        command_output(Command::new("openssl").args(["speed", "-seconds", "1", "ecdsap256"]))
            .unwrap_or_default();
    let verify_per_s = openssl_verify_per_second(&speed);
    print!(
        "{}",
        report(
            &rows,
            rss_kib,
            verify_per_s.as_deref(),
            duration,
            rounds,
            conns
        )
    );
    coldstart::measure(&b, &gateway_bin, &token, 5)?;
    Ok(0)
}

/// verify/s from `openssl speed ecdsap256` (the last column of its
/// nistp256 line), as printed.
pub fn openssl_verify_per_second(text: &str) -> Option<String> {
    text.lines()
        .rfind(|l| l.contains("nistp256"))
        .and_then(|l| l.split_whitespace().last())
        .map(str::to_owned)
}

/// The table, the target ratios and the references.
pub fn report(
    rows: &[Row],
    rss_kib: u64,
    verify_per_s: Option<&str>,
    duration: u64,
    rounds: u64,
    conns: u64,
) -> String {
    let mut by: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by.entry(row.target.as_str()).or_default().push(row);
    }
    // rps, p50, p99, non-2xx, cpu, sig
    let med = |t: &str| -> [f64; 6] {
        let rs = by.get(t).cloned().unwrap_or_default();
        let m = |f: fn(&Row) -> f64| median(rs.iter().map(|r| f(r)));
        [
            m(|r| r.rps),
            m(|r| r.p50_ms),
            m(|r| r.p99_ms),
            m(|r| r.non_2xx as f64),
            m(|r| r.cpu_us),
            m(|r| r.sig),
        ]
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nStella Gateway benchmark: {rounds} rounds x {duration}s, wrk -t1 -c{conns}, medians"
    );
    let _ = writeln!(
        out,
        "{:<9}{:>9}{:>9}{:>9}{:>12}{:>9}{:>9}  rounds req/s        what",
        "target", "req/s", "p50 ms", "p99 ms", "cpu us/req", "sig/req", "non-2xx"
    );
    for t in TABLE {
        let [rps, p50, p99, errs, cpu, sig] = med(t);
        let each: Vec<String> = by
            .get(t)
            .into_iter()
            .flatten()
            .map(|r| format!("{:.0}", r.rps))
            .collect();
        let sig_text = if GATEWAY.contains(&t) {
            format!("{sig:.3}")
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "{t:<9}{rps:>9.0}{p50:>9.3}{p99:>9.3}{cpu:>12.1}{sig_text:>9}{:>9}  {:<20}{}",
            errs as i64,
            each.join(" "),
            label(t)
        );
    }
    let r = |a: &str, b: &str| med(a)[0] / med(b)[0];
    // CPU per request, inverted: above 1 is better, like req/s.
    let c = |a: &str, b: &str| med(b)[4] / med(a)[4];
    let verdict = |x: f64, goal: f64| if x >= goal { "PASS" } else { "MISS" };
    let _ = writeln!(
        out,
        "\ntargets (cpu: CPU time per request of the second over the first, so above 1 is better too)"
    );
    for (a, b, goal, what) in [
        (
            "pass",
            "bare",
            0.90,
            "the gateway's cost over Pingora itself",
        ),
        ("bearer", "pass", 0.95, "warm token cache"),
        (
            "dpop",
            "haproxy",
            1.00,
            "DPoP against HAProxy jwt_verify on every request",
        ),
    ] {
        let (rr, cc) = (r(a, b), c(a, b));
        let _ = writeln!(
            out,
            "{:<17}req/s {rr:.3} {}  cpu {cc:.3} {}   (target >= {goal:.2}; {what})",
            format!("{a} / {b}"),
            verdict(rr, goal),
            verdict(cc, goal)
        );
    }
    let _ = writeln!(out, "\nreferences");
    let _ = writeln!(
        out,
        "bearer / haproxy req/s {:.3}  cpu {:.3}",
        r("bearer", "haproxy"),
        c("bearer", "haproxy")
    );
    let _ = writeln!(
        out,
        "bare / hapass    req/s {:.3}  cpu {:.3}   (Pingora against HAProxy as plain proxies)",
        r("bare", "hapass"),
        c("bare", "hapass")
    );
    if let Some(verify) = verify_per_s.filter(|v| !v.is_empty()) {
        let t_verify = 1.0 / verify.parse::<f64>().unwrap_or(f64::INFINITY);
        let bound = 1.0 / (1.0 / med("pass")[0] + t_verify);
        let _ = writeln!(
            out,
            "dpop / bound     req/s {:.3}   (target >= 0.9; bound = 1/(1/R_pass + t_verify) = {bound:.0} req/s, \
             t_verify = {:.1} us from openssl speed ecdsap256, {verify} verify/s)",
            med("dpop")[0] / bound,
            t_verify * 1e6
        );
        let _ = writeln!(
            out,
            "dpop cpu over pass: {:.1} us/request (one ES256 verification costs {:.1} us)",
            med("dpop")[4] - med("pass")[4],
            t_verify * 1e6
        );
    }
    let _ = writeln!(
        out,
        "mtls / tlspass   req/s {:.3}  cpu {:.3}   (certificate-bound token against the same mTLS path)",
        r("mtls", "tlspass"),
        c("mtls", "tlspass")
    );
    let _ = writeln!(
        out,
        "gateway RSS after load: {:.1} MiB",
        rss_kib as f64 / 1024.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl speed -seconds 1 ecdsap256` (OpenSSL 3.0.19), its last lines.
    const SPEED: &str = "\
CPUINFO: OPENSSL_ia32cap=0xfffa3203078bffff:0x405fc6f1bf07ab
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0000s  70125.3  23987.0
";

    #[test]
    fn verifications_per_second_are_the_last_column_of_the_nistp256_line() {
        assert_eq!(openssl_verify_per_second(SPEED).as_deref(), Some("23987.0"));
        assert_eq!(openssl_verify_per_second("no such curve\n"), None);
    }

    fn row(target: &str, rps: f64, p50: f64, p99: f64, errs: u64, cpu: f64, sig: f64) -> Row {
        Row {
            target: target.into(),
            rps,
            p50_ms: p50,
            p99_ms: p99,
            non_2xx: errs,
            cpu_us: cpu,
            sig,
        }
    }

    /// The figures of two rounds, and what the shell version's Python
    /// printed for them (bench/run.sh before the port, with RSS 54988 KiB
    /// and 20680.0 verify/s).
    #[test]
    fn the_report_prints_the_same_table_and_ratios_as_before() {
        let rows = vec![
            row("direct", 103699.12, 0.064, 0.192, 0, 9.1234, 0.0),
            row("direct", 98000.5, 0.07, 0.25, 0, 9.5, 0.0),
            row("hapass", 39385.3, 0.172, 0.99, 0, 21.8, 0.0),
            row("hapass", 41000.0, 0.18, 1.2, 0, 20.2, 0.0),
            row("bare", 25277.44, 0.271, 4.46, 0, 38.5, 0.0),
            row("bare", 24000.0, 0.3, 4.0, 0, 40.1, 0.0),
            row("pass", 14623.7, 0.498, 1.54, 0, 86.3, 0.0),
            row("pass", 15000.25, 0.45, 1.6, 0, 84.0, 0.0),
            row("bearer", 11232.0, 0.65, 4.27, 0, 106.2, 0.0),
            row("bearer", 11800.0, 0.6, 4.0, 0, 100.0, 0.0),
            row("dpop", 7562.5, 0.96, 3.48, 0, 170.0, 1.0),
            row("dpop", 7300.0, 1.0, 3.9, 3, 172.0, 1.0004),
            row("haproxy", 16116.0, 0.451, 2.23, 0, 85.2, 0.0),
            row("haproxy", 16500.0, 0.44, 2.1, 0, 84.0, 0.0),
            row("tlspass", 9869.0, 0.726, 7.5, 0, 104.7, 0.0),
            row("tlspass", 9900.0, 0.7, 7.0, 0, 103.0, 0.0),
            row("mtls", 10285.0, 0.707, 3.78, 0, 100.6, 0.0),
            row("mtls", 10100.0, 0.71, 3.9, 0, 101.0, 0.0),
        ];
        let expected = "
Stella Gateway benchmark: 2 rounds x 2s, wrk -t1 -c8, medians
target       req/s   p50 ms   p99 ms  cpu us/req  sig/req  non-2xx  rounds req/s        what
direct      100850    0.067    0.221         9.3        -        0  103699 98000        upstream directly
hapass       40193    0.176    1.095        21.0        -        0  39385 41000         HAProxy plain proxy (reference)
bare         24639    0.285    4.230        39.3        -        0  25277 24000         Pingora, no filters (reference)
pass         14812    0.474    1.570        85.2    0.000        0  14624 15000         gateway anonymous pass-through
bearer       11516    0.625    4.135       103.1    0.000        0  11232 11800         gateway Bearer, warm cache
dpop          7431    0.980    3.690       171.0    1.000        1  7562 7300           gateway DPoP, one proof verification per request
haproxy      16308    0.446    2.165        84.6        -        0  16116 16500         HAProxy jwt_verify every request
tlspass       9884    0.713    7.250       103.8    0.000        0  9869 9900           anonymous route over mTLS (via HAProxy client hop)
mtls         10192    0.708    3.840       100.8    0.000        0  10285 10100         certificate-bound token over mTLS (same hop)

targets (cpu: CPU time per request of the second over the first, so above 1 is better too)
pass / bare      req/s 0.601 MISS  cpu 0.462 MISS   (target >= 0.90; the gateway's cost over Pingora itself)
bearer / pass    req/s 0.777 MISS  cpu 0.826 MISS   (target >= 0.95; warm token cache)
dpop / haproxy   req/s 0.456 MISS  cpu 0.495 MISS   (target >= 1.00; DPoP against HAProxy jwt_verify on every request)

references
bearer / haproxy req/s 0.706  cpu 0.821
bare / hapass    req/s 0.613  cpu 0.534   (Pingora against HAProxy as plain proxies)
dpop / bound     req/s 0.861   (target >= 0.9; bound = 1/(1/R_pass + t_verify) = 8630 req/s, t_verify = 48.4 us from openssl speed ecdsap256, 20680.0 verify/s)
dpop cpu over pass: 85.8 us/request (one ES256 verification costs 48.4 us)
mtls / tlspass   req/s 1.031  cpu 1.030   (certificate-bound token against the same mTLS path)
gateway RSS after load: 53.7 MiB
";
        assert_eq!(report(&rows, 54988, Some("20680.0"), 2, 2, 8), expected);
        let without_speed = report(&rows, 54988, None, 2, 2, 8);
        assert!(!without_speed.contains("dpop / bound"));
        assert!(without_speed.ends_with("gateway RSS after load: 53.7 MiB\n"));
    }
}
