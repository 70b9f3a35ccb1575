//! Connections (`bench/run.sh connections [N]`): the resident memory one
//! open client connection costs the gateway, against a bare Pingora proxy
//! (gateway/examples/bare_proxy.rs), and whether it goes back to the
//! system when the connections close (docs/sizing.md, "Memory").
//!
//! Each proxy (release build, 2 worker threads for the bare proxy, the
//! gateway's default for the gateway) is measured in two rounds of N plain
//! HTTP/1.1 connections (default 1000) from this process:
//!
//! - `idle`: the connections are opened and send nothing;
//! - `request`: each sends one keep-alive `GET /pass/x` (an anonymous
//!   route to the upstream, HAProxy answering 200) and reads the answer,
//!   then stays open. This round runs on memory the first round freed, as
//!   a gateway's connections do after its first hour.
//!
//! Per round it prints VmRSS before, with the N connections open (settled
//! for 2 s), and 5 s after they all closed; the growth per connection in
//! KiB. Exit 1 if a request is not answered 200 or a proxy exits, and if
//! the gateway has not handed at least half of what the last round's
//! connections took back to the system 5 s after they closed (its RSS then
//! against its RSS before the first round and with them open). A few MiB
//! per thousand connections stay with the process and are reused: the
//! allocator's partly used pages, the runtime's tables.

use super::{procfs, Bench, Gateway};
use crate::harness::Abort;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use stella_test_support::free_ports;

/// How long the RSS is left to settle after the connections opened.
const SETTLE: Duration = Duration::from_secs(2);
/// How long after the connections closed the RSS is read again: the
/// gateway hands free memory back after mimalloc's purge delay (1 s),
/// checked every second.
const RETURN: Duration = Duration::from_secs(5);

/// One round's figures, RSS in KiB.
struct Round {
    before: u64,
    open: u64,
    closed: u64,
}

impl Round {
    fn per_connection(&self, n: u64) -> f64 {
        (self.open as f64 - self.before as f64) / n as f64
    }
}

/// `bench connections [N]`.
pub fn main(n: u64) -> Result<i32, Abort> {
    let mut b = Bench::new()?;
    super::require(&b.root, &["haproxy", "node"])?;
    let gateway_bin = b.binary("stella-gateway")?;
    let bare_bin = b.binary("examples/bare_proxy")?;
    check_open_files(n)?;
    b.start_authority(&[])?;
    b.start_upstream()?;

    let ports = free_ports(3);
    let (gw, admin, bare) = (ports[0], ports[1], ports[2]);
    let config = b.write_gateway_config(
        "conf",
        &Gateway {
            http: gw,
            admin,
            ..Gateway::default()
        },
    )?;
    let gateway = b.start_gateway(&gateway_bin, &config)?;
    let upstream = format!("127.0.0.1:{}", b.upstream);
    let bare_pid = b.spawn(
        "bare",
        Command::new(&bare_bin).args([&format!("127.0.0.1:{bare}"), &upstream, "2"]),
    )?;
    b.wait_accepting("bare", bare_pid, bare, Duration::from_secs(20))?;

    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (name, pid, port) in [("gateway", gateway.pid(), gw), ("bare", bare_pid, bare)] {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        // One request first, so both start with their upstream path warm.
        if let Err(e) = round(addr, pid, 1, true) {
            return Err(Abort(format!("{name}: the warm request: {e}")));
        }
        std::thread::sleep(SETTLE);
        let start = procfs::status_kib(pid, "VmRSS");
        let idle = round(addr, pid, n, false).map_err(|e| Abort(format!("{name}: {e}")))?;
        let request = round(addr, pid, n, true).map_err(|e| Abort(format!("{name}: {e}")))?;
        if name == "gateway" && !returned_half(start, &request) {
            failed.push(format!(
                "the gateway's RSS {} KiB 5 s after the connections closed: not back to half \
                 way between {start} KiB before the first round and {} KiB with them open",
                request.closed, request.open
            ));
        }
        rows.push((name, start, idle, request));
    }

    println!("one open HTTP/1.1 connection, {n} at once (RSS in KiB):");
    println!(
        "{:<8} {:<8} {:>9} {:>9} {:>9} {:>14}",
        "proxy", "round", "before", "open", "closed", "KiB/connection"
    );
    for (name, start, idle, request) in &rows {
        println!("{name:<8} {:<8} {start:>9}", "start");
        for (label, r) in [("idle", idle), ("request", request)] {
            println!(
                "{name:<8} {label:<8} {:>9} {:>9} {:>9} {:>14.1}",
                r.before,
                r.open,
                r.closed,
                r.per_connection(n)
            );
        }
    }
    if failed.is_empty() {
        println!("PASS the gateway handed back at least half of what the connections took");
        Ok(0)
    } else {
        for f in &failed {
            println!("MISS {f}");
        }
        Ok(1)
    }
}

/// Whether at least half of the RSS the round's connections took over
/// `start` went back after they closed.
fn returned_half(start: u64, r: &Round) -> bool {
    r.closed.saturating_sub(start) * 2 <= r.open.saturating_sub(start)
}

/// Opens `n` connections to `addr` (each sending one request when
/// `request`), reads the RSS of `pid` with them open, closes them all and
/// reads it again after [`RETURN`].
fn round(addr: SocketAddr, pid: u32, n: u64, request: bool) -> Result<Round, String> {
    let before = procfs::status_kib(pid, "VmRSS");
    let mut open = Vec::with_capacity(n as usize);
    for i in 0..n {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .map_err(|e| format!("connection {i}: {e}"))?;
        if request {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            s.write_all(b"GET /pass/x HTTP/1.1\r\nHost: bench\r\n\r\n")
                .map_err(|e| format!("connection {i}: {e}"))?;
        }
        open.push(s);
    }
    if request {
        for (i, s) in open.iter_mut().enumerate() {
            let status = read_response(s).map_err(|e| format!("connection {i}: {e}"))?;
            if status != 200 {
                return Err(format!("connection {i}: answered {status}, expected 200"));
            }
        }
    }
    std::thread::sleep(SETTLE);
    let with = procfs::status_kib(pid, "VmRSS");
    if with == 0 {
        return Err("the process is gone".into());
    }
    drop(open);
    std::thread::sleep(RETURN);
    Ok(Round {
        before,
        open: with,
        closed: procfs::status_kib(pid, "VmRSS"),
    })
}

/// Reads one response with a `content-length` body; its status.
fn read_response(s: &mut TcpStream) -> Result<u16, String> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let got = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if got == 0 {
            return Err("closed before a whole response".into());
        }
        data.extend_from_slice(&chunk[..got]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or("no content-length")?;
        if data.len() >= end + 4 + length {
            return head
                .get(9..12)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("no status in {head:?}"));
        }
    }
}

/// The N client connections and the proxy's N are all open files of this
/// process tree: the soft limit must hold both.
fn check_open_files(n: u64) -> Result<(), Abort> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok());
    match soft {
        Some(soft) if soft < n + 200 => Err(Abort(format!(
            "the open-files limit is {soft}, {n} connections need {} (ulimit -n)",
            n + 200
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_per_connection_is_in_kib_per_connection() {
        let r = Round {
            before: 20_000,
            open: 65_000,
            closed: 21_000,
        };
        assert_eq!(r.per_connection(1000), 45.0);
        let shrank = Round {
            before: 20_000,
            open: 19_000,
            closed: 19_000,
        };
        assert_eq!(shrank.per_connection(1000), -1.0);
    }

    #[test]
    fn memory_counts_as_returned_when_half_of_the_growth_went_back() {
        let round = |open, closed| Round {
            before: 30_000,
            open,
            closed,
        };
        // Measured: 20 MiB at the start, 77 MiB open, 35 MiB closed.
        assert!(returned_half(20_000, &round(77_000, 35_000)));
        // Before the allocator settings: nothing went back.
        assert!(!returned_half(33_000, &round(140_000, 139_600)));
        assert!(returned_half(20_000, &round(19_000, 19_000)));
    }
}
