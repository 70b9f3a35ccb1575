//! A plain HTTP/1.1 client that sends headers exactly as given, a response
//! parser (Content-Length, chunked, read-to-close), and HTTPS through the
//! `curl` CLI.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// One HTTP response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// All values of a header, in order (name matched case-insensitively).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).first().copied()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not json ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the whole
/// response. `headers` are sent exactly as given (names, case, duplicates).
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(addr, method, target, headers, body, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{method} {target} at {addr}: {e}"))
}

/// [`request`] that reports a connection that fails, times out (`timeout`
/// for connecting and for each read) or closes without a whole response
/// head, instead of panicking: for operations drills, where no answer is a
/// result to count.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<Response, String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream.set_read_timeout(Some(timeout)).ok();
    stream.set_write_timeout(Some(timeout)).ok();
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read: {e}"))?;
    if !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        return Err(format!(
            "closed after {} bytes, no response head",
            raw.len()
        ));
    }
    Ok(parse_response(&raw))
}

/// One keep-alive HTTP/1.1 connection: requests are sent one after the
/// other on it, each answer read whole (Content-Length or chunked) before
/// the next request.
pub struct KeepAlive {
    stream: TcpStream,
    addr: SocketAddr,
}

impl KeepAlive {
    pub fn open(addr: SocketAddr) -> KeepAlive {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        KeepAlive { stream, addr }
    }

    /// `method target` with `headers` as given; panics when the server
    /// closes the connection before a whole answer.
    pub fn send(&mut self, method: &str, target: &str, headers: &[(&str, &str)]) -> Response {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream
            .write_all(head.as_bytes())
            .expect("write request");
        let mut raw = Vec::new();
        let mut chunk = [0u8; 16384];
        loop {
            if let Some(end) = answer_end(&raw) {
                assert_eq!(end, raw.len(), "bytes past the answer to {target}");
                return parse_response(&raw);
            }
            let n = self.stream.read(&mut chunk).expect("read answer");
            assert!(
                n > 0,
                "{target}: the connection closed after {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Where the whole answer in `raw` ends, once it has arrived.
fn answer_end(raw: &[u8]) -> Option<usize> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match length {
        Some(n) => (raw.len() >= split + n).then_some(split + n),
        None if head.contains("transfer-encoding: chunked") => {
            raw.ends_with(b"\r\n0\r\n\r\n").then_some(raw.len())
        }
        None => Some(split),
    }
}

/// Writes `raw` (a whole request, exactly as given) and returns every byte
/// the server sent until it closed the connection: empty when it closed
/// without answering.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
    stream.write_all(raw).expect("write request");
    let mut answer = Vec::new();
    // A reset after a partial answer still returns what arrived.
    let _ = stream.read_to_end(&mut answer);
    answer
}

/// Parses an HTTP/1.1 response (Content-Length, chunked, or read-to-close).
pub fn parse_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        data = &data[eol + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[(size + 2).min(data.len())..];
    }
    out
}

/// What `curl` reports: its exit code, and the response when there was one.
#[derive(Debug)]
pub struct Curl {
    pub exit_code: Option<i32>,
    pub response: Option<Response>,
    /// The first line curl printed, such as `HTTP/2 200`.
    pub status_line: String,
    pub stderr: String,
}

impl Curl {
    /// The gateway refused the TLS handshake with an alert whose text
    /// contains `alert` (such as `certificate required`, `unknown ca`):
    /// curl exit 35 (handshake failed) or 56 (TLS 1.3, where the server's
    /// alert arrives at the first read), no response. A timeout (28), a
    /// connection that was never made (7) or an empty reply (52) is not a
    /// refusal.
    #[track_caller]
    pub fn assert_refused_by_gateway(&self, alert: &str) {
        assert!(self.response.is_none(), "expected no response: {self:?}");
        assert!(
            matches!(self.exit_code, Some(35) | Some(56)),
            "expected a refused TLS handshake (curl exit 35 or 56), got {:?}: {}",
            self.exit_code,
            self.stderr
        );
        assert!(
            self.stderr.to_ascii_lowercase().contains(alert),
            "expected the alert `{alert}`: {}",
            self.stderr
        );
    }

    /// curl itself refused the gateway's certificate (exit 60: the server
    /// certificate does not chain to the CA it trusts).
    #[track_caller]
    pub fn assert_server_untrusted(&self) {
        assert!(self.response.is_none(), "expected no response: {self:?}");
        assert_eq!(self.exit_code, Some(60), "{}", self.stderr);
    }
}

/// `GET https://addr/path` with curl, trusting `ca` and presenting the
/// client certificate `cert` (certificate and key files) if given.
pub fn curl_https(
    addr: SocketAddr,
    path: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    headers: &[(&str, &str)],
) -> Curl {
    curl_https_version(addr, path, ca, cert, headers, "--http1.1")
}

/// [`curl_https`] with the HTTP version flag: `--http1.1` or
/// `--http2` (negotiated with ALPN).
pub fn curl_https_version(
    addr: SocketAddr,
    path: &str,
    ca: &Path,
    cert: Option<(&Path, &Path)>,
    headers: &[(&str, &str)],
    version: &str,
) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--raw", version, "--max-time", "15"])
        .arg("--cacert")
        .arg(ca);
    if let Some((cert, key)) = cert {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(format!("https://{addr}{path}"));
    let out = cmd.output().expect("run curl (is it installed?)");
    let response =
        (out.status.success() && !out.stdout.is_empty()).then(|| parse_response(&out.stdout));
    let status_line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Curl {
        exit_code: out.status.code(),
        response,
        status_line,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `GET url` with curl from the local address `source` (a loopback
/// address such as `127.0.0.5`: `--interface`), HTTP/1.1, with `headers`;
/// `ca` for an https url. For tests where the gateway must tell clients
/// apart by address.
pub fn curl_from(source: &str, url: &str, ca: Option<&Path>, headers: &[(&str, &str)]) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--raw", "--http1.1", "--max-time", "15"])
        .args(["--interface", source]);
    if let Some(ca) = ca {
        cmd.arg("--cacert").arg(ca);
    }
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(url);
    let out = cmd.output().expect("run curl (is it installed?)");
    let response =
        (out.status.success() && !out.stdout.is_empty()).then(|| parse_response(&out.stdout));
    let status_line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    Curl {
        exit_code: out.status.code(),
        response,
        status_line,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_with_content_length_keeps_headers_in_order_and_duplicates() {
        let r = parse_response(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/problem+json\r\n\
              WWW-Authenticate: Bearer realm=\"a\"\r\nwww-authenticate: DPoP realm=\"a\"\r\n\
              Content-Length: 17\r\n\r\n{\"error\":\"nope\"}\n",
        );
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("application/problem+json"));
        assert_eq!(
            r.header_all("WWW-Authenticate"),
            ["Bearer realm=\"a\"", "DPoP realm=\"a\""]
        );
        assert_eq!(r.header("x-missing"), None);
        assert_eq!(r.json()["error"], "nope");
    }

    #[test]
    fn a_chunked_body_is_reassembled_without_extensions_or_trailers() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello, world");
    }

    #[test]
    fn a_body_read_to_close_is_kept_whole() {
        let r = parse_response(b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy\r\n\r\nstill");
        assert_eq!(r.status, 503);
        assert_eq!(r.body, b"busy\r\n\r\nstill");
    }

    #[test]
    #[should_panic(expected = "no header end")]
    fn a_truncated_head_is_refused() {
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n");
    }

    #[test]
    fn request_sends_headers_as_given_and_adds_host_and_length() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"\r\n\r\nbody") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed early");
                seen.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n")
                .unwrap();
            String::from_utf8(seen).unwrap()
        });
        let r = request(
            addr,
            "PUT",
            "/p?q=1",
            &[("x-Case", "V"), ("x-case", "w")],
            b"body",
        );
        let seen = server.join().unwrap();
        assert_eq!(r.status, 204);
        assert_eq!(r.header("x-a"), Some("1"));
        assert_eq!(
            seen,
            format!(
                "PUT /p?q=1 HTTP/1.1\r\nHost: {addr}\r\nx-Case: V\r\nx-case: w\r\n\
                 Content-Length: 4\r\nConnection: close\r\n\r\nbody"
            )
        );
    }
}
