//! Slow and greedy clients (gateway/src/front.rs): request heads that
//! trickle in are cut off at `gateway.limits.request_head_timeout_ms` with a
//! 408, oversized heads get 431, idle keep-alive connections are closed,
//! and a listener refuses connections over its limit with 503, while
//! ordinary requests keep getting their answers.

mod common;

use common::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use stella_test_support::parse_response;

/// Reads until the peer closes (or `limit` passes); returns what was read
/// and whether the peer closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after our reply counts as closed.
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

fn limited(label: &str, limits: serde_json::Value) -> Stack {
    Stack::start_with(label, |g| g.gateway("limits", limits))
}

fn get_ok(addr: SocketAddr) -> u16 {
    let raw = b"GET /public/ok HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    parse_response(&stella_test_support::send_raw(addr, raw)).status
}

#[test]
fn slow_request_heads_are_closed_with_408_while_normal_requests_get_200() {
    let stack = limited("slow-heads", json!({"request_head_timeout_ms": 1500}));
    let addr = stack.gateway.http;
    assert_eq!(get_ok(addr), 200);

    // 200 connections trickle a header line every 500 ms: each write is
    // well within any per-read timeout, the whole head never arrives.
    let mut slow: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
                .unwrap();
            s
        })
        .collect();
    // Plus connections that send nothing at all.
    let mut silent: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(addr).unwrap()).collect();

    let started = Instant::now();
    let mut ok = 0;
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        for s in slow.iter_mut() {
            let _ = s.write_all(format!("X-Slow-{i}: y\r\n").as_bytes());
        }
        if get_ok(addr) == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 4, "normal requests kept working while heads trickled");

    // Every trickling connection got a 408 problem and was closed.
    for s in slow.iter_mut() {
        let (bytes, closed) = read_until_closed(s, Duration::from_secs(10));
        assert!(
            closed,
            "a slow head was still open after {:?}",
            started.elapsed()
        );
        let r = parse_response(&bytes);
        assert_problem(&r, 408, "request_timeout");
        assert_eq!(r.header("connection"), Some("close"));
    }
    for s in silent.iter_mut() {
        let (_, closed) = read_until_closed(s, Duration::from_secs(10));
        assert!(closed, "a silent connection was still open");
    }
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "closed only after {:?}",
        started.elapsed()
    );
    assert_eq!(stack.echo.requests(), 5, "only the normal requests arrived");
    let closed = stack.gateway.wait_for_metric(
        "stella_gateway_connections_closed_total",
        &[("listener", "http"), ("reason", "request_head_timeout")],
        250.0,
    );
    assert!(closed >= 250.0, "{closed}");
    assert_eq!(get_ok(addr), 200);
}

#[test]
fn a_head_may_take_its_time_once_the_connection_is_idle_between_requests() {
    // Keep-alive: the head deadline of the second request starts at its
    // first byte, not when the first request ended.
    let stack = limited(
        "idle-then-head",
        json!({"request_head_timeout_ms": 1000, "idle_timeout_seconds": 30}),
    );
    let mut s = TcpStream::connect(stack.gateway.http).unwrap();
    s.write_all(b"GET /public/a HTTP/1.1\r\nHost: gw\r\n\r\n")
        .unwrap();
    let first = read_response(&mut s);
    assert_eq!(first.status, 200);
    std::thread::sleep(Duration::from_millis(2000));
    s.write_all(b"GET /public/b HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (bytes, _) = read_until_closed(&mut s, Duration::from_secs(10));
    assert_eq!(parse_response(&bytes).status, 200);
}

/// Reads one response with a `content-length` from a kept-alive connection.
fn read_response(s: &mut TcpStream) -> stella_test_support::Response {
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a whole response");
        out.extend_from_slice(&buf[..n]);
        if let Some(end) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&out[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return parse_response(&out);
            }
        }
    }
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let stack = limited("idle", json!({"idle_timeout_seconds": 1}));
    let mut s = TcpStream::connect(stack.gateway.http).unwrap();
    // The client asks for a longer keep-alive; the gateway's limit holds.
    s.write_all(b"GET /public/a HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\nKeep-Alive: timeout=600\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut s, Duration::from_secs(10));
    assert!(closed, "idle connection still open");
    assert!(
        started.elapsed() >= Duration::from_millis(800)
            && started.elapsed() < Duration::from_secs(5),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn oversized_heads_and_too_many_fields_get_431() {
    let stack = limited(
        "big-heads",
        json!({"max_request_header_bytes": 4096, "max_request_headers": 20}),
    );
    let addr = stack.gateway.http;

    // 8 KiB in one field: refused as soon as the head passes 4 KiB.
    let big = format!(
        "GET /public/x HTTP/1.1\r\nHost: gw\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(8192)
    );
    let r = parse_response(&stella_test_support::send_raw(addr, big.as_bytes()));
    assert_problem(&r, 431, "request_header_fields_too_large");

    // A head that never ends but keeps growing: refused without waiting.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
        .unwrap();
    for _ in 0..10 {
        if s.write_all(&[b'x'; 1024]).is_err() {
            break;
        }
    }
    let (bytes, closed) = read_until_closed(&mut s, Duration::from_secs(5));
    assert!(closed);
    assert_problem(
        &parse_response(&bytes),
        431,
        "request_header_fields_too_large",
    );

    // 30 small fields: under the byte limit, over the field limit.
    let mut many = String::from("GET /public/x HTTP/1.1\r\nHost: gw\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-F{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    let r = parse_response(&stella_test_support::send_raw(addr, many.as_bytes()));
    assert_problem(&r, 431, "request_header_fields_too_large");

    // Just under both limits: forwarded.
    let mut fine = String::from("GET /public/x HTTP/1.1\r\nHost: gw\r\n");
    for i in 0..10 {
        fine.push_str(&format!("X-F{i}: {}\r\n", "v".repeat(100)));
    }
    fine.push_str("Connection: close\r\n\r\n");
    let r = parse_response(&stella_test_support::send_raw(addr, fine.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(stack.echo.requests(), 1);
}

#[test]
fn a_listener_over_its_connection_limit_answers_503_and_counts_it() {
    let stack = limited("conn-limit", json!({"max_connections": 5}));
    let addr = stack.gateway.http;
    // Five idle connections hold the listener at its limit (each sent a
    // partial head, so each is being served).
    let held: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /public/x HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let r = parse_response(&stella_test_support::send_raw(
        addr,
        b"GET /public/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    ));
    assert_problem(&r, 503, "temporarily_unavailable");
    assert!(r.header("retry-after").is_some());
    let m = stack.gateway.metrics();
    assert_eq!(
        m.value(
            "stella_gateway_connections_refused_total",
            &[("listener", "http")]
        ),
        Some(1.0)
    );
    // The refused connection leaves the count as soon as its reply is out.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let open = stack
            .gateway
            .metrics()
            .value("stella_gateway_connections_open", &[("listener", "http")]);
        if open == Some(5.0) {
            break;
        }
        assert!(Instant::now() < deadline, "open connections: {open:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    // Once they are gone, the listener serves again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_ok(addr) != 200 {
        assert!(Instant::now() < deadline, "listener did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `VmRSS` of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// After a burst of slow clients the gateway hands their memory back to
/// the system (gateway/src/main.rs; docs/sizing.md, "Memory"): before, the
/// RSS stayed at its peak for the life of the process. And it runs without
/// transparent huge pages, which made each connection cost 2.5 times more.
#[test]
fn the_memory_of_slow_clients_goes_back_to_the_system_once_they_are_gone() {
    let stack = limited("memory", json!({"request_head_timeout_ms": 1000}));
    let addr = stack.gateway.http;
    let pid = stack.gateway.process.pid();
    assert_eq!(get_ok(addr), 200);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    // The line is there from Linux 6.x; where it is, huge pages are off.
    if let Some(thp) = status.lines().find_map(|l| l.strip_prefix("THP_enabled:")) {
        assert_eq!(thp.trim(), "0", "transparent huge pages are off");
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid);

    // 500 heads that never end, each answered 408 after a second.
    let mut slow: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /public/x HTTP/1.1\r\nHost: gw\r\n")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let open = rss_kib(pid);
    assert!(
        open > before + 5 * 1024,
        "500 open connections take memory: {before} KiB before, {open} KiB open"
    );
    for s in slow.iter_mut() {
        let (reply, closed) = read_until_closed(s, Duration::from_secs(5));
        assert!(closed && reply.starts_with(b"HTTP/1.1 408 "));
    }
    drop(slow);

    // Back to at most half of the growth within 10 s (1 s purge delay,
    // purged every second).
    let limit = before + (open - before) / 2;
    let started = Instant::now();
    let mut now = rss_kib(pid);
    while now > limit && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        now = rss_kib(pid);
    }
    assert!(
        now <= limit,
        "RSS {before} KiB before the slow clients, {open} KiB with them, {now} KiB 10 s \
         after they were gone (wanted at most {limit} KiB)"
    );
    assert_eq!(get_ok(addr), 200);
}
