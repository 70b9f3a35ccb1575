//! Instructions per request (`bench/callgrind.sh [OPTIONS] [ROUTE...]`),
//! counted by valgrind's callgrind. Unlike requests/s the count hardly
//! moves on a busy machine, so two builds can be compared by running this
//! once with each, and ratios between routes are repeatable. Routes:
//!
//! - `bare`: a Pingora proxy with no filters (gateway/examples/
//!   bare_proxy.rs, one thread; Pingora's default runtime, work stealing
//!   on), sent the pass route's request, as the reference for pass / bare;
//! - `pass`: the anonymous pass-through route, no credentials sent;
//! - `bearer`: the Bearer route, warm token cache;
//! - `dpop`: the DPoP route, a fresh proof per request (made beforehand,
//!   each used once), warm token cache.
//!
//! The gateway runs under callgrind with one worker thread (by default) and
//! instrumentation off. For each route a sequential client (this program,
//! outside valgrind) keeps one connection alive, sends the warm-up requests
//! (token cache, upstream pool), switches instrumentation on
//! (`callgrind_control -i on`), sends exactly N requests, switches it off
//! and dumps. Each dump holds only that window, so Ir/request = dump total
//! / N. Per route it prints Ir/request and the top functions by self cost
//! (or inclusive cost, `--inclusive`), then the ratios pass / bare, bearer /
//! pass and dpop / pass of the routes run. The bare proxy runs in its own
//! valgrind, the same way.
//!
//! Counts include whatever the gateway's other threads did in the window
//! (timers, the admin listener). Pingora's timer thread does work in
//! proportion to wall time, so with one worker a repeat differs by up to
//! about 0.5 %; with several workers and work stealing, by up to about
//! 1.5 %. Builds before the runtime snapshot (commit ff0f222) ignore
//! gateway.threads and gateway.work_stealing: compare such a build with a
//! newer one run with `--threads $(nproc) --work-stealing`. With
//! `BENCH_TRACES=1` the counts include the export thread's work in the
//! window. With the defaults a run takes about a minute and a half on a
//! 2-core machine.

use super::client::KeepAlive;
use super::{commas, write_proofs, Bench, Gateway};
use crate::harness::{command_output, Abort};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stella_test_support::free_ports;

/// `bearer-mixed`: the Bearer route with two tokens of one client taking
/// turns on the connection, so no request presents the token before it (a
/// connection carrying several clients' tokens, as from a load balancer).
const ROUTES: [&str; 5] = ["bare", "pass", "bearer", "bearer-mixed", "dpop"];

#[derive(clap::Args)]
pub struct Options {
    /// The gateway binary (default: stella-gateway beside this program).
    #[arg(long, value_name = "BIN")]
    gateway: Option<PathBuf>,
    /// Requests counted per route.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    requests: u64,
    /// Requests sent per route before counting.
    #[arg(long, default_value_t = 300)]
    warmup: u64,
    /// gateway.threads.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    threads: u64,
    /// gateway.work_stealing: true.
    #[arg(long)]
    work_stealing: bool,
    /// Functions listed per route (0: none).
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Top functions by inclusive cost instead of self cost.
    #[arg(long)]
    inclusive: bool,
    /// Copy the callgrind dumps to DIR (for callgrind_annotate,
    /// kcachegrind): one file per route, ROUTE.callgrind.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
    /// Compare with a baseline (default bench/baseline.json): exit 1 when
    /// a route's Ir/request is more than 3 % over it, listing the functions
    /// that grew the most.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "bench/baseline.json")]
    check: Option<PathBuf>,
    /// Write the counts as the new baseline to FILE, with the commit of
    /// HEAD (a deliberate step: commit it with the reason).
    #[arg(long, value_name = "FILE")]
    write_baseline: Option<PathBuf>,
    /// bare, pass, bearer, bearer-mixed, dpop (default: bare pass bearer).
    #[arg(value_parser = ROUTES)]
    routes: Vec<String>,
}

/// One route's count.
pub struct Counted {
    pub route: String,
    /// The dump's total Ir.
    pub total: u64,
    /// callgrind_annotate's output for the dump.
    pub annotate: String,
    pub seconds: u64,
}

pub fn main(o: Options) -> Result<i32, Abort> {
    let started = Instant::now();
    let routes: Vec<String> = if o.routes.is_empty() {
        ["bare", "pass", "bearer"].map(String::from).to_vec()
    } else {
        o.routes.clone()
    };
    if o.inclusive && (o.check.is_some() || o.write_baseline.is_some()) {
        return Err(Abort(
            "--check and --write-baseline compare self costs: drop --inclusive".into(),
        ));
    }
    let mut b = Bench::new()?;
    // Relative to the repository, as the scripts are run from anywhere.
    let in_root = |p: &PathBuf| {
        if p.is_absolute() {
            p.clone()
        } else {
            b.root.join(p)
        }
    };
    let check = o.check.as_ref().map(in_root);
    let write_baseline = o.write_baseline.as_ref().map(in_root);
    // Read first: a missing or broken baseline fails before the long run.
    let baseline = check.as_deref().map(super::baseline::read).transpose()?;
    super::require(
        &b.root,
        &[
            "valgrind",
            "callgrind_control",
            "callgrind_annotate",
            "haproxy",
            "node",
        ],
    )?;
    let gateway_bin = match &o.gateway {
        Some(path) => executable(path)?,
        None => b.binary("stella-gateway")?,
    };
    let keep = match &o.keep {
        Some(dir) => std::fs::create_dir_all(dir)
            .and_then(|()| dir.canonicalize())
            .map(Some)
            .map_err(|e| Abort(format!("--keep {}: {e}", dir.display())))?,
        None => None,
    };
    let has = |r: &str| routes.iter().any(|x| x == r);
    let bare_bin = if has("bare") {
        Some(b.binary("examples/bare_proxy")?)
    } else {
        None
    };

    b.start_authority(&[])?;
    b.start_upstream()?;
    let ports = free_ports(2);
    let (gw, admin) = (ports[0], ports[1]);
    let tokens = match (has("bearer"), has("bearer-mixed")) {
        (_, true) => vec![b.token("svc-bearer", &[])?, b.token("svc-bearer", &[])?],
        (true, false) => vec![b.token("svc-bearer", &[])?],
        (false, false) => Vec::new(),
    };
    let (dpop_token, proofs) = if has("dpop") {
        let (key, token) = b.dpop_token()?;
        let file = b.path("proofs.txt");
        write_proofs(
            &key,
            "GET",
            &format!("http://127.0.0.1:{gw}/dpop/x"),
            &token,
            o.warmup + o.requests,
            &file,
        )?;
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        (token, text)
    } else {
        (String::new(), String::new())
    };
    let mut proofs = proofs.split_whitespace();
    // One worker thread by default: the requests of a window run in one
    // place, in order.
    let config = b.write_gateway_config(
        "conf",
        &Gateway {
            http: gw,
            admin,
            threads: Some(o.threads),
            work_stealing: Some(o.work_stealing),
            ..Gateway::default()
        },
    )?;
    let check = Command::new(&gateway_bin)
        .arg("check")
        .arg("--config")
        .arg(&config)
        .output()
        .map_err(|e| Abort(format!("cannot run {}: {e}", gateway_bin.display())))?;
    if !check.status.success() {
        return Err(Abort(format!(
            "the gateway rejects the benchmark configuration\n{}",
            String::from_utf8_lossy(&check.stderr)
        )));
    }
    let mut cmd = Command::new("valgrind");
    cmd.args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!(
            "--callgrind-out-file={}",
            b.path("callgrind.out").display()
        ))
        .arg(&gateway_bin)
        .arg("run")
        .arg("--config")
        .arg(&config);
    // Under valgrind, loading the binary's debug information and starting
    // up take tens of seconds.
    let gateway = b.start_ready("gateway", cmd, "GATEWAY_READY", Duration::from_secs(600))?;
    let mut bare = None;
    if let Some(bare_bin) = &bare_bin {
        let port = stella_test_support::free_port();
        let pid = b.spawn(
            "bare",
            Command::new("valgrind")
                .args(["--tool=callgrind", "--instr-atstart=no"])
                .arg(format!(
                    "--callgrind-out-file={}",
                    b.path("bare-cg.out").display()
                ))
                .arg(bare_bin)
                .args([
                    format!("127.0.0.1:{port}"),
                    format!("127.0.0.1:{}", b.upstream),
                    "1".into(),
                ]),
        )?;
        // It prints no ready line: it is ready when it accepts.
        b.wait_accepting("bare", pid, port, Duration::from_secs(600))?;
        bare = Some((port, pid));
    }

    // Startup of the window plus about 20 ms per request under callgrind,
    // ten times over.
    let budget = Duration::from_secs(300 + (o.warmup + o.requests) / 5);
    let mut counted = Vec::new();
    for route in &routes {
        let (port, pid, out) = match (route.as_str(), bare) {
            ("bare", Some((port, pid))) => (port, pid, "bare-cg.out"),
            _ => (gw, gateway.pid(), "callgrind.out"),
        };
        remove_dumps(b.work.path(), out);
        let route_started = Instant::now();
        let window = Window {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            pid,
            route,
            deadline: route_started + budget,
        };
        window
            .count(o.warmup, o.requests, &tokens, &dpop_token, &mut proofs)
            .map_err(|e| {
                Abort(format!(
                    "{route} failed: {e}; the gateway's stderr ends with:\n{}",
                    b.tail("gateway.err", 20)
                ))
            })?;
        let dumps = dumps(b.work.path(), out);
        let [dump] = &dumps[..] else {
            return Err(Abort(format!(
                "expected one callgrind dump for {route}, found: {dumps:?}"
            )));
        };
        let file = b.path(&format!("{route}.callgrind"));
        std::fs::rename(dump, &file).map_err(|e| Abort(format!("{}: {e}", dump.display())))?;
        if let Some(dir) = &keep {
            std::fs::copy(&file, dir.join(format!("{route}.callgrind")))
                .map_err(|e| Abort(format!("--keep {}: {e}", dir.display())))?;
        }
        let annotate = command_output(
            Command::new("callgrind_annotate")
                .arg(format!(
                    "--inclusive={}",
                    if o.inclusive { "yes" } else { "no" }
                ))
                .args(["--threshold=100", "--auto=no"])
                .arg(&file),
        )?;
        let total = total_ir(
            &std::fs::read_to_string(&file)
                .map_err(|e| Abort(format!("{}: {e}", file.display())))?,
        )
        .ok_or_else(|| Abort(format!("no totals line in {}", file.display())))?;
        counted.push(Counted {
            route: route.clone(),
            total,
            annotate,
            seconds: route_started.elapsed().as_secs(),
        });
    }
    print!(
        "{}",
        report(&Report {
            gateway: &gateway_bin.display().to_string(),
            digest: &sha256_prefix(&gateway_bin)?,
            requests: o.requests,
            warmup: o.warmup,
            threads: o.threads,
            work_stealing: o.work_stealing,
            top: o.top,
            inclusive: o.inclusive,
            counted: &counted,
            elapsed: started.elapsed().as_secs(),
        })
    );
    let now = super::baseline::routes_of(&counted, o.requests);
    if let Some(path) = &write_baseline {
        let commit = command_output(Command::new("git").arg("-C").arg(&b.root).args([
            "rev-parse",
            "--short=12",
            "HEAD",
        ]))
        .map(|c| c.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
        std::fs::write(path, super::baseline::to_json(&now, &commit, o.requests))
            .map_err(|e| Abort(format!("--write-baseline {}: {e}", path.display())))?;
        println!("baseline written to {} (commit {commit})", path.display());
    }
    if let Some((base, commit)) = &baseline {
        let (text, ok) = super::baseline::compare(base, commit, &now);
        print!("{text}");
        if !ok {
            println!("\nFAIL: a route grew more than the tolerance over bench/baseline.json");
            return Ok(1);
        }
        println!("\nok: every route within the tolerance");
    }
    Ok(0)
}

/// `path`, absolute, if it is an executable file; else exit 2.
fn executable(path: &Path) -> Result<PathBuf, Abort> {
    use std::os::unix::fs::PermissionsExt as _;
    let full = path.canonicalize().ok().filter(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    });
    match full {
        Some(p) => Ok(p),
        None => {
            eprintln!("bench: {} is not an executable", path.display());
            super::children::finish(2)
        }
    }
}

fn dumps(dir: &Path, out: &str) -> Vec<PathBuf> {
    let prefix = format!("{out}.");
    let mut list: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .filter(|e| e.metadata().is_ok_and(|m| m.len() > 0))
        .map(|e| e.path())
        .collect();
    list.sort();
    list
}

fn remove_dumps(dir: &Path, out: &str) {
    let prefix = format!("{out}.");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// One route's counting window.
struct Window<'a> {
    addr: SocketAddr,
    /// The valgrind process to control.
    pid: u32,
    route: &'a str,
    deadline: Instant,
}

impl Window<'_> {
    /// Warm-up, then exactly `n` requests with instrumentation on, then a
    /// dump named after the route.
    fn count<'p>(
        &self,
        warmup: u64,
        n: u64,
        tokens: &[String],
        dpop_token: &str,
        proofs: &mut impl Iterator<Item = &'p str>,
    ) -> Result<(), String> {
        // The bare proxy gets the pass route's request.
        let path = match self.route {
            "bare" => "/pass/x".to_owned(),
            "bearer-mixed" => "/bearer/x".to_owned(),
            r => format!("/{r}/x"),
        };
        let mut client = KeepAlive::new(self.addr, Duration::from_secs(120));
        let bearer: Vec<String> = tokens.iter().map(|t| format!("Bearer {t}")).collect();
        let mut turn = 0;
        let dpop = format!("DPoP {dpop_token}");
        let mut send = |client: &mut KeepAlive, count: u64| -> Result<(), String> {
            for _ in 0..count {
                if Instant::now() > self.deadline {
                    return Err("out of time".into());
                }
                let headers: Vec<(&str, &str)> = match self.route {
                    "bearer" => vec![("Authorization", &bearer[0])],
                    "bearer-mixed" => {
                        turn += 1;
                        vec![("Authorization", &bearer[turn % 2])]
                    }
                    "dpop" => vec![
                        ("Authorization", &dpop),
                        ("DPoP", proofs.next().ok_or("out of DPoP proofs")?),
                    ],
                    _ => Vec::new(),
                };
                let (status, body) = client.get(&path, &headers)?;
                if status != 200 {
                    let body = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                    return Err(format!("{} answered {status}: {body:?}", self.route));
                }
            }
            Ok(())
        };
        send(&mut client, warmup)?;
        self.control(&["--zero"])?;
        self.control(&["--instr=on"])?;
        client.opened = 0;
        send(&mut client, n)?;
        self.control(&["--instr=off"])?;
        self.control(&[&format!("--dump={}", self.route)])?;
        if client.opened > 1 {
            return Err(format!(
                "the server closed the keep-alive connection {} times while counting",
                client.opened - 1
            ));
        }
        Ok(())
    }

    /// `callgrind_control ARGS PID`, within 300 s.
    fn control(&self, args: &[&str]) -> Result<(), String> {
        let mut child = Command::new("callgrind_control")
            .args(args)
            .arg(self.pid.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run callgrind_control: {e}"))?;
        let limit = Instant::now() + Duration::from_secs(300);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < limit => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("callgrind_control {} timed out", args.join(" ")));
                }
            }
        };
        let mut said = String::new();
        if let Some(mut out) = child.stdout.take() {
            let _ = out.read_to_string(&mut said);
        }
        if let Some(mut err) = child.stderr.take() {
            let _ = err.read_to_string(&mut said);
        }
        if !status.success() || said.contains("Error") {
            return Err(format!(
                "callgrind_control {} failed: {said}",
                args.join(" ")
            ));
        }
        Ok(())
    }
}

/// The first 12 hex digits of the file's SHA-256 (which build was counted).
fn sha256_prefix(path: &Path) -> Result<String, Abort> {
    let mut file =
        std::fs::File::open(path).map_err(|e| Abort(format!("{}: {e}", path.display())))?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Abort(format!("{}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    let hex: String = context
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(hex[..12].to_owned())
}

/// A dump's total Ir: its last `totals:` line (the header's `summary:` is
/// 0 for a dump of a window).
pub fn total_ir(dump: &str) -> Option<u64> {
    dump.lines()
        .filter_map(|l| l.strip_prefix("totals:"))
        .next_back()
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The functions of a callgrind_annotate report, by cost, highest first:
/// (Ir, share of `total` in %, name). Rows follow the `Ir file:function`
/// header as `1,234 (12.34%)  file:function [object]`. A function inlined
/// from several files has a row per file, and callgrind names recursion
/// levels `f'2`, `f'3`: self costs are summed per function; inclusive costs
/// (`inclusive`) take the largest row, per name as printed.
pub fn functions(annotate: &str, total: u64, inclusive: bool) -> Vec<(u64, f64, String)> {
    let mut costs: BTreeMap<String, u64> = BTreeMap::new();
    let mut started = false;
    for line in annotate.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() >= 2 && words[0] == "Ir" && words[1].starts_with("file:function") {
            started = true;
            continue;
        }
        if !started {
            continue;
        }
        let Some((ir, name)) = annotate_row(line) else {
            continue;
        };
        if inclusive {
            let cost = costs.entry(name).or_default();
            *cost = (*cost).max(ir);
        } else {
            let name = strip_recursion(&name).to_owned();
            *costs.entry(name).or_default() += ir;
        }
    }
    let mut list: Vec<(u64, f64, String)> = costs
        .into_iter()
        .map(|(name, ir)| (ir, 100.0 * ir as f64 / total.max(1) as f64, name))
        .collect();
    list.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.2.cmp(&a.2)));
    list
}

/// One row: `  1,234 ( 1.23%)  file:function [object]` -> (1234,
/// `function`).
fn annotate_row(line: &str) -> Option<(u64, String)> {
    let line = line.trim();
    let (number, rest) = line.split_once(char::is_whitespace)?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit() || b == b',') {
        return None;
    }
    let ir: u64 = number.replace(',', "").parse().ok()?;
    let rest = rest.trim_start().strip_prefix('(')?;
    let (share, rest) = rest.split_once("%)")?;
    let share = share.trim();
    if share.is_empty() || !share.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    let mut name = rest.trim();
    // The object in brackets at the end, then the file up to the first
    // colon.
    if name.ends_with(']') {
        if let Some(open) = name.rfind(" [") {
            name = name[..open].trim_end();
        }
    }
    let name = match name.split_once(':') {
        Some((_, function)) => function,
        None => name,
    };
    Some((ir, name.to_owned()))
}

/// `f'2` -> `f`.
fn strip_recursion(name: &str) -> &str {
    match name.rsplit_once('\'') {
        Some((base, level)) if !level.is_empty() && level.bytes().all(|b| b.is_ascii_digit()) => {
            base
        }
        _ => name,
    }
}

/// What the report is made of.
pub struct Report<'a> {
    pub gateway: &'a str,
    pub digest: &'a str,
    pub requests: u64,
    pub warmup: u64,
    pub threads: u64,
    pub work_stealing: bool,
    pub top: usize,
    pub inclusive: bool,
    pub counted: &'a [Counted],
    pub elapsed: u64,
}

/// The table of routes, the top functions, the Ir ratios.
pub fn report(r: &Report) -> String {
    let n = r.requests as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nStella Gateway callgrind: {} (sha256 {}), {} requests per route after {} warm-up, \
         gateway.threads {}, work_stealing {}",
        r.gateway, r.digest, r.requests, r.warmup, r.threads, r.work_stealing
    );
    let _ = writeln!(
        out,
        "{:<8}{:>12}{:>16}{:>9}",
        "route", "Ir/request", "Ir total", "seconds"
    );
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for c in r.counted {
        totals.insert(&c.route, c.total);
        let _ = writeln!(
            out,
            "{:<8}{:>12}{:>16}{:>9}",
            c.route,
            commas(c.total as f64 / n),
            commas(c.total as f64),
            c.seconds
        );
    }
    if r.top > 0 {
        let kind = if r.inclusive { "inclusive" } else { "self" };
        for c in r.counted {
            let _ = writeln!(out, "\n{}: top {} functions by {kind} cost", c.route, r.top);
            let _ = writeln!(out, "{:>10}{:>8}  function", "Ir/req", "share");
            for (ir, share, name) in functions(&c.annotate, c.total, r.inclusive)
                .into_iter()
                .take(r.top)
            {
                let name: String = name.chars().take(150).collect();
                let _ = writeln!(out, "{:>10}{share:>7.1}%  {name}", commas(ir as f64 / n));
            }
        }
    }
    let ratios: Vec<(&str, &str)> = [
        ("pass", "bare"),
        ("bearer", "pass"),
        ("bearer-mixed", "pass"),
        ("dpop", "pass"),
    ]
    .into_iter()
    .filter(|(a, b)| totals.contains_key(a) && totals.contains_key(b))
    .collect();
    if !ratios.is_empty() {
        let _ = writeln!(
            out,
            "\nIr ratios (Ir/request of the second over the first: above 1 means the first is cheaper)"
        );
        for (a, b) in ratios {
            let (ta, tb) = (totals[a] as f64, totals[b] as f64);
            let extra = match a {
                "pass" => "  (target >= 0.70)",
                "bearer" => "  (target >= 0.95)",
                _ => "",
            };
            let _ = writeln!(
                out,
                "{:<15}{:.3}{extra}   {a} {} Ir/req, {b} {} Ir/req",
                format!("{a} / {b}"),
                tb / ta,
                commas(ta / n),
                commas(tb / n)
            );
        }
    }
    let _ = writeln!(
        out,
        "\nelapsed {} s (seconds: warm-up and counted requests of each route)",
        r.elapsed
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// callgrind_annotate --inclusive=no --threshold=100 --auto=no of a
    /// pass window (100 requests), its header and a selection of rows:
    /// mi_free from three files, recursion levels ('2), a function of no
    /// known file (???), rows without an object.
    const SELF: &str = include_str!("samples/callgrind-annotate-self.txt");
    /// The same dump with --inclusive=yes, trimmed.
    const INCLUSIVE: &str = include_str!("samples/callgrind-annotate-inclusive.txt");

    #[test]
    fn the_total_is_the_last_totals_line_not_the_summary() {
        let dump = "# callgrind format\nversion: 1\nevents: Ir\nsummary: 0\n\nfn=(1) main\n1 5\n\ntotals: 18107270\n";
        assert_eq!(total_ir(dump), Some(18_107_270));
        assert_eq!(
            total_ir("summary: 0\ntotals: 1\ntotals: 41465095\n"),
            Some(41_465_095)
        );
        assert_eq!(total_ir("summary: 0\n"), None);
    }

    #[test]
    fn self_costs_are_summed_per_function_across_files_and_recursion_levels() {
        let list = functions(SELF, 18_107_270, false);
        let find = |name: &str| list.iter().find(|f| f.2 == name).map(|f| f.0);
        assert_eq!(list[0].2, "__memcpy_avx_unaligned_erms");
        assert_eq!(list[0].0, 3_901_722);
        assert!((list[0].1 - 21.548).abs() < 0.001, "{}", list[0].1);
        assert_eq!(find("mi_free"), Some(181_866 + 150_574 + 16_506));
        assert_eq!(
            find("<core::future::poll_fn::PollFn<F> as core::future::future::Future>::poll"),
            Some(119_815 + 20_426 + 13_500 + 9_740)
        );
        assert_eq!(
            find("__rustc::__rust_no_alloc_shim_is_unstable_v2"),
            Some(14_580)
        );
        assert!(list.windows(2).all(|w| w[0].0 >= w[1].0), "highest first");
        assert!(!list.iter().any(|f| f.2.contains("PROGRAM TOTALS")));
    }

    #[test]
    fn inclusive_costs_keep_the_largest_row_and_the_recursion_levels() {
        let list = functions(INCLUSIVE, 18_107_270, true);
        assert_eq!(list[0].2, "tokio::runtime::context::scoped::Scoped<T>::set");
        assert_eq!(list[0].0, 17_947_558);
        let run_task: Vec<_> = list
            .iter()
            .filter(|f| f.2 == "tokio::runtime::scheduler::current_thread::Context::run_task")
            .collect();
        assert_eq!(run_task.len(), 1);
        assert_eq!(run_task[0].0, 17_633_214, "the larger of its two rows");
        assert!(list.iter().any(|f| f.2.ends_with("::poll'2")));
    }

    #[test]
    fn a_row_is_split_into_cost_and_function() {
        assert_eq!(
            annotate_row("    1,234 ( 0.05%)  /a/b.rs:x::y<T>::z [/bin/gw]"),
            Some((1234, "x::y<T>::z".to_owned()))
        );
        assert_eq!(
            annotate_row("18,107,270 (100.0%)  PROGRAM TOTALS"),
            Some((18_107_270, "PROGRAM TOTALS".to_owned()))
        );
        assert_eq!(annotate_row("Ir                  file:function"), None);
        assert_eq!(strip_recursion("f'12"), "f");
        assert_eq!(strip_recursion("f'"), "f'");
    }

    fn counted(route: &str, total: u64, annotate: &str, seconds: u64) -> Counted {
        Counted {
            route: route.into(),
            total,
            annotate: annotate.into(),
            seconds,
        }
    }

    /// What the shell version's Python printed for the same dumps and
    /// annotations.
    #[test]
    fn the_report_reads_as_before_with_self_costs() {
        let counted = [
            counted("pass", 18_107_270, SELF, 2),
            counted("bearer", 41_465_095, SELF, 3),
        ];
        let text = report(&Report {
            gateway: "gw.bin",
            digest: "fb8fe70e1e97",
            requests: 200,
            warmup: 50,
            threads: 1,
            work_stealing: false,
            top: 5,
            inclusive: false,
            counted: &counted,
            elapsed: 6,
        });
        assert_eq!(
            text,
            "
Stella Gateway callgrind: gw.bin (sha256 fb8fe70e1e97), 200 requests per route after 50 warm-up, gateway.threads 1, work_stealing false
route     Ir/request        Ir total  seconds
pass          90,536      18,107,270        2
bearer       207,325      41,465,095        3

pass: top 5 functions by self cost
    Ir/req   share  function
    19,509   21.5%  __memcpy_avx_unaligned_erms
     9,456   10.4%  ring_core_0_17_14__sha256_block_data_order_avx
     1,745    1.9%  mi_free
     1,480    1.6%  http::header::map::HeaderMap<T>::try_insert2
     1,342    1.5%  http::header::map::hash_elem_using

bearer: top 5 functions by self cost
    Ir/req   share  function
    19,509    9.4%  __memcpy_avx_unaligned_erms
     9,456    4.6%  ring_core_0_17_14__sha256_block_data_order_avx
     1,745    0.8%  mi_free
     1,480    0.7%  http::header::map::HeaderMap<T>::try_insert2
     1,342    0.6%  http::header::map::hash_elem_using

Ir ratios (Ir/request of the second over the first: above 1 means the first is cheaper)
bearer / pass  0.437  (target >= 0.95)   bearer 207,325 Ir/req, pass 90,536 Ir/req

elapsed 6 s (seconds: warm-up and counted requests of each route)
"
        );
    }

    #[test]
    fn the_report_reads_as_before_with_inclusive_costs_and_three_routes() {
        let counted = [
            counted("bare", 18_107_270, INCLUSIVE, 2),
            counted("pass", 41_465_095, INCLUSIVE, 3),
            counted("dpop", 18_107_270, INCLUSIVE, 4),
        ];
        let text = report(&Report {
            gateway: "gw.bin",
            digest: "fb8fe70e1e97",
            requests: 200,
            warmup: 50,
            threads: 2,
            work_stealing: true,
            top: 4,
            inclusive: true,
            counted: &counted,
            elapsed: 66,
        });
        let expected_end = "
dpop: top 4 functions by inclusive cost
    Ir/req   share  function
    89,738   99.1%  tokio::runtime::context::scoped::Scoped<T>::set
    88,166   97.4%  tokio::runtime::scheduler::current_thread::Context::run_task
    87,997   97.2%  tokio::runtime::task::raw::poll
    87,994   97.2%  tokio::runtime::task::harness::Harness<T,S>::poll

Ir ratios (Ir/request of the second over the first: above 1 means the first is cheaper)
pass / bare    0.437  (target >= 0.70)   pass 207,325 Ir/req, bare 90,536 Ir/req
dpop / pass    2.290   dpop 90,536 Ir/req, pass 207,325 Ir/req

elapsed 66 s (seconds: warm-up and counted requests of each route)
";
        assert!(text.ends_with(expected_end), "{text}");
        assert!(text.contains(
            "gateway.threads 2, work_stealing true\nroute     Ir/request        Ir total  seconds\n\
             bare          90,536      18,107,270        2\n"
        ));
        assert!(text.contains("\npass: top 4 functions by inclusive cost\n    Ir/req   share  function\n    89,738   43.3%  tokio::runtime::context::scoped::Scoped<T>::set\n"));
    }
}
