//! The decision log: one line per request, target `stella_gateway::decision`
//! (docs/design.md §3.8).
//!
//! With `logging.format: json` the line is written here directly, in the
//! exact shape `tracing-subscriber`'s JSON formatter gives every other line
//! (a test below holds the two to the same bytes), and handed to the same
//! non-blocking writer. Going through `tracing` cost about 29k instructions
//! per request (the field visitor, `Debug` formatting and UTF-8 checks of
//! every value), 18 % of an anonymous pass-through request under callgrind;
//! written directly it costs a few thousand. Whether the line is wanted is
//! still `tracing`'s decision: `logging.level` and per-target filters apply
//! as to any line. With the text format the line goes through `tracing`.
//!
//! A line's `reason` is one of a fixed set: [`catalogue::REASONS`], which
//! explains each (`docs/troubleshooting.md`).

pub mod catalogue;

use crate::log_queue::LogQueue;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

pub const TARGET: &str = "stella_gateway::decision";

/// Where JSON decision lines go when JSON logging is on.
static JSON_WRITER: OnceLock<LogQueue> = OnceLock::new();

/// Sends decision lines straight to `writer` (the JSON log's writer).
pub(crate) fn write_json_to(writer: LogQueue) {
    let _ = JSON_WRITER.set(writer);
}

/// One request's decision. Strings are written escaped: route ids, tenant
/// and client ids come from configuration and verified tokens, never raw
/// from the request line, but are escaped all the same.
pub struct Decision<'a> {
    pub request_id: &'a str,
    pub route: &'a str,
    pub service: &'a str,
    pub method: &'a str,
    pub decision: &'a str,
    pub status: u16,
    pub reason: &'a str,
    pub auth_method: &'a str,
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub cnf: &'a str,
    /// The client's address (docs/design.md §3.10): the peer, the PROXY
    /// header's source, or what a trusted proxy forwarded.
    pub client: Option<std::net::IpAddr>,
    /// The upstream address, if one was chosen.
    pub upstream: Option<std::net::SocketAddr>,
    /// Why the exchange with the upstream failed, when it did: the `kind`
    /// of `stella_gateway_upstream_errors_total` (`tls`, `timeout`,
    /// `unavailable`, ...); empty otherwise.
    pub upstream_error: &'a str,
    pub latency_us: u64,
}

thread_local! {
    /// Each worker's line buffer, reused: a line costs no allocation.
    static LINE: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
}

/// Logs `d` if the filter wants decision lines.
pub fn log(d: &Decision<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    match JSON_WRITER.get() {
        Some(writer) => {
            LINE.with_borrow_mut(|line| {
                line.clear();
                json_line(d, SystemTime::now(), line);
                // A full queue drops the line and counts it, like any line.
                writer.push(line);
            });
        }
        None => event(d),
    }
}

/// The line through `tracing` (text format, or no writer installed).
fn event(d: &Decision<'_>) {
    let upstream = d.upstream.map(|a| a.to_string()).unwrap_or_default();
    let client = d.client.map(|ip| ip.to_string()).unwrap_or_default();
    tracing::info!(
        target: TARGET,
        request_id = d.request_id,
        route = d.route,
        service = d.service,
        method = d.method,
        decision = d.decision,
        status = d.status,
        reason = d.reason,
        auth_method = d.auth_method,
        tenant = d.tenant,
        client_id = d.client_id,
        cnf = d.cnf,
        client,
        upstream,
        upstream_error = d.upstream_error,
        latency_us = d.latency_us,
        "decision"
    );
}

/// The JSON line, newline included, as `tracing-subscriber` writes it with
/// `flatten_event(true)` and the target on.
fn json_line(d: &Decision<'_>, now: SystemTime, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    rfc3339_micros(now, out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":\"decision\"");
    for (key, value) in [
        (",\"request_id\":\"", d.request_id),
        (",\"route\":\"", d.route),
        (",\"service\":\"", d.service),
        (",\"method\":\"", d.method),
        (",\"decision\":\"", d.decision),
    ] {
        string_field(out, key, value);
    }
    out.extend_from_slice(b",\"status\":");
    decimal(out, u64::from(d.status));
    for (key, value) in [
        (",\"reason\":\"", d.reason),
        (",\"auth_method\":\"", d.auth_method),
        (",\"tenant\":\"", d.tenant),
        (",\"client_id\":\"", d.client_id),
        (",\"cnf\":\"", d.cnf),
    ] {
        string_field(out, key, value);
    }
    // An address's text needs no escaping; written without a String.
    out.extend_from_slice(b",\"client\":\"");
    if let Some(ip) = d.client {
        address(out, ip);
    }
    out.extend_from_slice(b"\",\"upstream\":\"");
    if let Some(addr) = d.upstream {
        match addr {
            std::net::SocketAddr::V4(v4) => address(out, std::net::IpAddr::V4(*v4.ip())),
            // `[ip]:port`, as `SocketAddr` writes it.
            std::net::SocketAddr::V6(v6) => {
                let _ = write!(out, "[{}]", v6.ip());
            }
        }
        out.push(b':');
        decimal(out, u64::from(addr.port()));
    }
    out.push(b'"');
    string_field(out, ",\"upstream_error\":\"", d.upstream_error);
    out.extend_from_slice(b",\"latency_us\":");
    decimal(out, d.latency_us);
    out.extend_from_slice(b",\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// A string member: `key` is written as it is, `,"name":"` (the value's
/// opening quote included, so a plain value costs three copies).
fn string_field(out: &mut Vec<u8>, key: &str, value: &str) {
    // Nearly every value (ids, names, methods) needs no escaping: copied as
    // it is. Anything else is escaped by serde_json, as `tracing` would.
    if stella_envelope::encoding::json_plain(value.as_bytes()) {
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // The key without the value's opening quote; serde_json writes the
        // quoted, escaped value (into a Vec: cannot fail).
        out.extend_from_slice(&key.as_bytes()[..key.len() - 1]);
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// An IP address as `IpAddr` writes it; IPv4 without `fmt`'s machinery.
pub(crate) fn address(out: &mut Vec<u8>, ip: std::net::IpAddr) {
    match ip {
        std::net::IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, u64::from(octet));
            }
        }
        std::net::IpAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `ip` as text (`Display`'s form), without `fmt` for IPv4.
pub(crate) fn address_text(ip: std::net::IpAddr) -> String {
    let mut out = Vec::with_capacity(15);
    address(&mut out, ip);
    // Exactly its length: a header value made from it then takes the
    // buffer as it is, without another allocation.
    out.shrink_to_fit();
    String::from_utf8(out).unwrap_or_default()
}

/// `n` in decimal, without `fmt`'s machinery.
fn decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n` in decimal, zero-padded to `width` digits.
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buffer = itoa::Buffer::new();
    let digits = buffer.format(n).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

/// `2026-12-01T20:16:49.204166Z`: UTC, microseconds, as
/// `tracing-subscriber` writes its timestamps.
fn rfc3339_micros(now: SystemTime, out: &mut Vec<u8>) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let second_of_day = secs % 86_400;
    for (n, width, after) in [
        (year, 4, b'-'),
        (month, 2, b'-'),
        (day, 2, b'T'),
        (second_of_day / 3600, 2, b':'),
        (second_of_day / 60 % 60, 2, b':'),
        (second_of_day % 60, 2, b'.'),
        (u64::from(since.subsec_micros()), 6, b'Z'),
    ] {
        padded(out, n, width);
        out.push(after);
    }
}

/// Year, month and day of the `days`-th day after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`, for dates on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.89.1.45",
            "255.255.255.255",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:192.0.2.1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(address_text(ip), ip.to_string());
        }
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `tracing-subscriber`'s JSON layer, configured as
    /// `telemetry::init_logging` configures it, writes for `d`.
    fn through_tracing(d: &Decision<'_>) -> String {
        use tracing_subscriber::prelude::*;
        let captured = Captured::default();
        let sink = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || sink.clone())
            .with_target(true)
            .json()
            .flatten_event(true);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || event(d));
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        text
    }

    fn without_timestamp(line: &str) -> String {
        let start = line.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + line[start..].find('"').unwrap();
        format!("{}{}", &line[..start], &line[end..])
    }

    #[test]
    fn the_direct_line_is_byte_for_byte_the_tracing_json_line() {
        let addr: std::net::SocketAddr = "127.0.0.1:8081".parse().unwrap();
        let cases = [
            Decision {
                request_id: "550c3113-0",
                route: "orders",
                service: "orders",
                method: "GET",
                decision: "allow",
                status: 200,
                reason: "allowed",
                auth_method: "dpop",
                tenant: "acme",
                client_id: "svc-a",
                cnf: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
                client: Some("2001:db8::7".parse().unwrap()),
                upstream: Some(addr),
                upstream_error: "",
                latency_us: 1234,
            },
            Decision {
                request_id: "r\"1\\\n\u{7f}\u{1}é",
                route: "none",
                service: "none",
                method: "PROPFIND",
                decision: "deny",
                status: 0,
                reason: "downstream_closed",
                auth_method: "none",
                tenant: "quote\" and \u{2028}",
                client_id: "",
                cnf: "",
                client: None,
                upstream: None,
                upstream_error: "tls",
                latency_us: u64::MAX,
            },
            Decision {
                request_id: "r2",
                route: "orders",
                service: "orders",
                method: "GET",
                decision: "allow",
                status: 502,
                reason: "allowed",
                auth_method: "anonymous",
                tenant: "",
                client_id: "",
                cnf: "",
                client: Some("192.0.2.10".parse().unwrap()),
                upstream: Some("[2001:db8::1]:8443".parse().unwrap()),
                upstream_error: "unavailable",
                latency_us: 0,
            },
        ];
        for d in &cases {
            let reference = through_tracing(d);
            let mut direct = Vec::new();
            json_line(d, SystemTime::now(), &mut direct);
            let direct = String::from_utf8(direct).unwrap();
            assert_eq!(without_timestamp(&direct), without_timestamp(&reference));
            assert!(direct.ends_with('\n'));
        }
    }

    #[test]
    fn timestamps_are_utc_rfc3339_with_microseconds() {
        let at = |secs: u64, micros: u32| {
            let mut out = Vec::new();
            rfc3339_micros(
                UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros.into()),
                &mut out,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(at(1_796_157_409, 204_166), "2026-12-01T20:36:49.204166Z");
        assert_eq!(at(4_107_542_399, 999_999), "2100-02-28T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        // Every day for 400 years against a plain day-by-day count.
        let (mut y, mut m, mut d) = (1970u64, 1u64, 1u64);
        for days in 0..146_097u64 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            let len = match m {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }
}
