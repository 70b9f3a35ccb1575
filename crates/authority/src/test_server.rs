//! A tiny HTTP/1.1 server on 127.0.0.1:0 for the authority tests: canned
//! replies per path, a request count per path, optional delays, and a stop
//! that really closes the port. Plain threads, so it works under any test
//! runtime and never depends on the code under test.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers on one path.
#[derive(Clone, Debug)]
pub struct Reply {
    status: u16,
    body: String,
    delay: Duration,
    chunked: bool,
}

impl Reply {
    pub fn json(body: &str) -> Reply {
        Reply::status(200, body)
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            delay: Duration::ZERO,
            chunked: false,
        }
    }

    /// Waits this long before answering.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Sends the body chunked, without a Content-Length.
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    counts: HashMap<String, usize>,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new(Mutex::new(State::default()));
        let stopped = Arc::new(AtomicBool::new(false));
        let (s, stop) = (state.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break; // drops the listener: the port now refuses
                }
                let Ok(stream) = stream else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        TestServer {
            addr,
            state,
            stopped,
        }
    }

    /// `http://127.0.0.1:PORT` with no trailing slash.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), reply);
    }

    /// Requests received on `path` so far.
    pub fn count(&self, path: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .counts
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Closes the listening socket; later connections are refused.
    pub fn stop(&self) {
        if !self.stopped.swap(true, Ordering::SeqCst) {
            // Wake the accept loop so it sees the flag and drops the socket.
            let _ = TcpStream::connect(self.addr);
            // Wait until the port refuses, so callers see a closed server.
            for _ in 0..200 {
                if TcpStream::connect(self.addr).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.len() > 16 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or("/").to_owned();
    let reply = {
        let mut s = state.lock().unwrap();
        *s.counts.entry(path.clone()).or_default() += 1;
        s.routes
            .get(&path)
            .cloned()
            .unwrap_or_else(|| Reply::status(404, "{}"))
    };
    std::thread::sleep(reply.delay);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Type: application/json\r\nConnection: close\r\n",
        reply.status
    );
    if reply.chunked {
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut bytes = out.into_bytes();
        for chunk in reply.body.as_bytes().chunks(64 * 1024) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        let _ = stream.write_all(&bytes);
    } else {
        out.push_str(&format!("Content-Length: {}\r\n\r\n", reply.body.len()));
        let _ = stream.write_all(out.as_bytes());
        let _ = stream.write_all(reply.body.as_bytes());
    }
    let _ = stream.flush();
}

/// Path of the JWKS on a server made by [`authority_server`].
pub const JWKS_PATH: &str = "/jwks";
/// Path of the discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// A server acting as an Authority whose issuer is its own base url:
/// discovery pointing at [`JWKS_PATH`], which serves `jwks`.
pub fn authority_server(jwks: &str) -> TestServer {
    let server = TestServer::start();
    server.set(
        DISCOVERY_PATH,
        Reply::json(
            &serde_json::json!({"issuer": server.base(), "jwks_uri": server.url(JWKS_PATH)})
                .to_string(),
        ),
    );
    server.set(JWKS_PATH, Reply::json(jwks));
    server
}

/// An Authority configuration for tests: plain http allowed, refresh
/// 300 s, cooldown 10 s, max stale 600 s, leeway 30 s, timeout 2 s.
pub fn test_config(issuer: &str, audience: &str) -> crate::settings::AuthorityConfig {
    crate::settings::AuthorityConfig {
        path: "gateway.auth.authority".to_owned(),
        issuer: issuer.to_owned(),
        require_https_metadata: false,
        audiences: vec![audience.to_owned()],
        algorithms: ["ES256", "ES384", "EdDSA", "PS256", "RS256"]
            .map(str::to_owned)
            .to_vec(),
        leeway: Duration::from_secs(30),
        required_claims: vec!["client_id".to_owned(), "jti".to_owned()],
        jwks_refresh: Duration::from_secs(300),
        jwks_cooldown: Duration::from_secs(10),
        jwks_max_stale: Duration::from_secs(600),
        http_timeout: Duration::from_secs(2),
        ca: None,
        state_dir: None,
        tenants: Vec::new(),
        client: None,
        introspection: None,
        claims: None,
        token_claims: None,
    }
}
