//! A sequential HTTP/1.1 client on one keep-alive connection, for the
//! benchmarks that count what each request costs (callgrind) or send each
//! of many tokens once (tokens). It sends what Python's `http.client` sent
//! before it (`Host` with the port, `Accept-Encoding: identity`, then the
//! caller's headers), so instruction counts stay comparable, and reopens
//! the connection only when the server closed it, counting how often.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

pub struct KeepAlive {
    addr: SocketAddr,
    timeout: Duration,
    stream: Option<BufReader<TcpStream>>,
    /// Connections opened so far.
    pub opened: u64,
}

/// How a response body is delimited (RFC 9112 section 6.3).
#[derive(Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Read to the end of the connection.
    Close,
}

/// A response head: status, how its body ends, whether the connection
/// stays open after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    pub keep_alive: bool,
}

/// Parses a response head (status line and header lines, without the
/// blank line).
pub fn parse_head(text: &str) -> Result<Head, String> {
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.split(' ');
    let version = words.next().unwrap_or_default();
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut framing = Framing::Close;
    let mut keep_alive = version == "HTTP/1.1";
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") && framing != Framing::Chunked {
            let n = value
                .parse()
                .map_err(|_| format!("bad content-length {value:?}"))?;
            framing = Framing::Length(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            framing = Framing::Chunked;
        } else if name.eq_ignore_ascii_case("connection") {
            let value = value.to_ascii_lowercase();
            if value.contains("close") {
                keep_alive = false;
            } else if value.contains("keep-alive") {
                keep_alive = true;
            }
        }
    }
    if status == 204 || status == 304 {
        framing = Framing::Length(0);
    }
    if framing == Framing::Close {
        keep_alive = false;
    }
    Ok(Head {
        status,
        framing,
        keep_alive,
    })
}

impl KeepAlive {
    /// `timeout` bounds connecting and each read.
    pub fn new(addr: SocketAddr, timeout: Duration) -> KeepAlive {
        KeepAlive {
            addr,
            timeout,
            stream: None,
            opened: 0,
        }
    }

    /// GET `path` with `headers`; the status and body.
    pub fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: identity\r\n",
            self.addr
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let reused = self.stream.is_some();
        let answer = match self.exchange(request.as_bytes()) {
            // A connection the server closed while it was idle: once more on
            // a new one.
            Err(Failure::Stale) if reused => {
                self.stream = None;
                self.exchange(request.as_bytes())
            }
            other => other,
        };
        if answer.is_err() {
            self.stream = None;
        }
        answer.map_err(Failure::text)
    }

    fn exchange(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>), Failure> {
        if self.stream.is_none() {
            let stream = TcpStream::connect_timeout(&self.addr, self.timeout)
                .map_err(|e| Failure::Other(format!("connect {}: {e}", self.addr)))?;
            stream.set_read_timeout(Some(self.timeout)).ok();
            stream.set_write_timeout(Some(self.timeout)).ok();
            stream.set_nodelay(true).ok();
            self.stream = Some(BufReader::new(stream));
            self.opened += 1;
        }
        let Some(reader) = self.stream.as_mut() else {
            return Err(Failure::Other("no connection".into()));
        };
        if let Err(e) = reader.get_mut().write_all(request) {
            return Err(if closed(&e) {
                Failure::Stale
            } else {
                Failure::Other(format!("write: {e}"))
            });
        }
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) if head.is_empty() => return Err(Failure::Stale),
                Ok(0) => return Err(Failure::Other("closed inside the response head".into())),
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
                Err(e) if head.is_empty() && closed(&e) => return Err(Failure::Stale),
                Err(e) => return Err(Failure::Other(format!("read: {e}"))),
            }
        }
        let head = parse_head(head.trim_end()).map_err(Failure::Other)?;
        let body =
            read_body(reader, &head.framing).map_err(|e| Failure::Other(format!("body: {e}")))?;
        if !head.keep_alive {
            self.stream = None;
        }
        Ok((head.status, body))
    }
}

/// A failed exchange.
enum Failure {
    /// Nothing at all came back: on a reused connection, the server closed
    /// it while it was idle.
    Stale,
    Other(String),
}

impl Failure {
    fn text(self) -> String {
        match self {
            Failure::Stale => "the connection closed without an answer".into(),
            Failure::Other(text) => text,
        }
    }
}

/// An error that means the peer closed the connection.
fn closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn read_body(reader: &mut BufReader<TcpStream>, framing: &Framing) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    match framing {
        Framing::Length(n) => {
            body.resize(*n, 0);
            reader.read_exact(&mut body)?;
        }
        Framing::Close => {
            reader.read_to_end(&mut body)?;
        }
        Framing::Chunked => loop {
            let mut size_line = String::new();
            reader.read_line(&mut size_line)?;
            let size =
                usize::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16)
                    .map_err(|_| std::io::Error::other(format!("chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                        break;
                    }
                }
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            reader.read_exact(&mut crlf)?;
        },
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_head_says_how_the_body_ends_and_whether_the_connection_stays() {
        let head = |t: &str| parse_head(t).expect("parses");
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2"),
            Head {
                status: 200,
                framing: Framing::Length(2),
                keep_alive: true
            }
        );
        assert_eq!(
            head("HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\nConnection: close"),
            Head {
                status: 401,
                framing: Framing::Chunked,
                keep_alive: false
            }
        );
        assert!(head("HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive").keep_alive);
        assert_eq!(
            head("HTTP/1.1 200 OK"),
            Head {
                status: 200,
                framing: Framing::Close,
                keep_alive: false
            },
            "no length: the body ends with the connection"
        );
        assert_eq!(head("HTTP/1.1 204 No Content").framing, Framing::Length(0));
        assert!(parse_head("garbage").is_err());
    }

    /// A server answering `answers[i]` to the i-th request, over as many
    /// connections as the client opens; the requests it read.
    fn server(answers: Vec<&'static str>) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut answers = answers.into_iter();
            'connections: while let Ok((stream, _)) = listener.accept() {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            continue 'connections;
                        }
                        request.push_str(&line);
                        if line == "\r\n" {
                            break;
                        }
                    }
                    seen.push(request);
                    let Some(answer) = answers.next() else {
                        break 'connections;
                    };
                    reader
                        .get_mut()
                        .write_all(answer.as_bytes())
                        .expect("write");
                    if answer.contains("Connection: close") {
                        continue 'connections;
                    }
                    if answers.len() == 0 {
                        break 'connections;
                    }
                }
            }
            seen
        });
        (addr, handle)
    }

    #[test]
    fn requests_share_one_connection_until_the_server_closes_it() {
        let (addr, server) = server(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n1;x=y\r\n!\r\n0\r\n\r\n",
            "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy",
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        ]);
        let mut client = KeepAlive::new(addr, Duration::from_secs(5));
        let auth = [("Authorization", "Bearer t")];
        assert_eq!(client.get("/a", &auth).unwrap(), (200, b"ok".to_vec()));
        assert_eq!(client.get("/b", &[]).unwrap(), (200, b"ok!".to_vec()));
        assert_eq!(client.opened, 1, "kept alive");
        assert_eq!(client.get("/c", &[]).unwrap(), (503, b"busy".to_vec()));
        assert_eq!(client.get("/d", &[]).unwrap(), (200, Vec::new()));
        assert_eq!(client.opened, 2, "reopened after Connection: close");
        let seen = server.join().expect("server");
        assert_eq!(
            seen[0],
            format!(
                "GET /a HTTP/1.1\r\nHost: {addr}\r\nAccept-Encoding: identity\r\n\
                 Authorization: Bearer t\r\n\r\n"
            )
        );
        assert_eq!(seen.len(), 4);
    }
}
