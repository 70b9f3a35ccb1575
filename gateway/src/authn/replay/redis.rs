//! The shared replay store: `SET <prefix><hex key> 1 NX PX <ms>` on a Redis
//! that every gateway node uses (DESIGN 3.9). Redis makes the insertion
//! atomic across nodes: `OK` means this node stored the key first, a nil
//! reply means some node already had.
//!
//! The client is a small RESP2 one over tokio's `TcpStream` rather than the
//! `redis` crate: the gateway sends four fixed commands (`AUTH`, `SELECT`,
//! `SET`, `PING`) whose replies are one line, and the crate would bring a URL
//! parser with IDNA tables, a parser-combinator library and its own retry
//! machinery for that. Here every failure path is explicit, and all of them
//! end in [`ReplayStoreError::Unavailable`] (503), never in "inserted".
//!
//! - Each operation has one deadline covering waiting for a connection,
//!   connecting, authenticating and the command itself.
//! - Connections are pooled (at most `max_connections`, one command in
//!   flight on each). A connection goes back to the pool only after a
//!   complete, expected reply; on any error or timeout it is dropped, so a
//!   late reply can never be read as the answer to the next command.
//! - A pooled connection the server closed while idle gets one retry on a
//!   fresh connection. Retrying `SET NX` is safe: if the first attempt did
//!   store the key, the retry reads nil and reports a replay (a spurious
//!   401 at worst), never a second `Inserted`.
//! - The password is kept in a zeroizing buffer, sent only in `AUTH`, and
//!   never printed: `Debug` shows whether there is one, and URL errors never
//!   echo the URL.

use super::{Fresh, ReplayStats, ReplayStore, ReplayStoreError, Unavailable};
use async_trait::async_trait;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// The default key prefix; keys are `<prefix><64 hex digits>`.
pub const DEFAULT_KEY_PREFIX: &str = "stella:dpop:jti:";

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
const DEFAULT_MAX_CONNECTIONS: usize = 32;
/// Longest reply line accepted; every expected reply is a few bytes.
const MAX_REPLY: usize = 1024;

/// Why a Redis URL was refused. The URL is never echoed (it may hold a
/// password).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RedisUrlError {
    #[error("redis url must start with redis:// (tls is not supported)")]
    Scheme,
    #[error("redis url has no usable host")]
    Host,
    #[error("redis url port is not a number from 1 to 65535")]
    Port,
    #[error("redis url database is not a number from 0 to 1000000")]
    Database,
    #[error("redis url user or password has a malformed percent-escape")]
    Escape,
    #[error("redis url query or fragment options are not supported")]
    Options,
    #[error("redis url user name without a password")]
    UserWithoutPassword,
}

/// Where and how to connect, parsed from `redis://[[user]:password@]host[:port][/db]`.
#[derive(Clone)]
struct Target {
    host: String,
    port: u16,
    db: u32,
    user: Option<String>,
    password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Target {
    fn parse(url: &str) -> Result<Target, RedisUrlError> {
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => rest,
            _ => return Err(RedisUrlError::Scheme),
        };
        if rest.contains(['?', '#']) {
            return Err(RedisUrlError::Options);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // The password may contain '@' only escaped; the last '@' ends it.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((user, password)) => (user, Some(password)),
                    None => (info, None),
                };
                let user = if user.is_empty() {
                    None
                } else {
                    Some(percent_decode(user)?)
                };
                let password = match password {
                    Some(p) if !p.is_empty() => Some(Zeroizing::new(percent_decode(p)?)),
                    _ => None,
                };
                if user.is_some() && password.is_none() {
                    return Err(RedisUrlError::UserWithoutPassword);
                }
                (user, password)
            }
        };
        let (host, port) = if let Some(inner) = hostport.strip_prefix('[') {
            let (host, after) = inner.split_once(']').ok_or(RedisUrlError::Host)?;
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(RedisUrlError::Host);
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(RedisUrlError::Host)?),
            };
            (host, port)
        } else {
            match hostport.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
        {
            return Err(RedisUrlError::Host);
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(p) => parse_number(p)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0)
                .ok_or(RedisUrlError::Port)?,
        };
        let db = match path {
            "" => 0,
            p => parse_number(p)
                .filter(|n| *n <= 1_000_000)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or(RedisUrlError::Database)?,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            db,
            user,
            password,
        })
    }
}

fn parse_number(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn percent_decode(text: &str) -> Result<String, RedisUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(RedisUrlError::Escape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| RedisUrlError::Escape)?;
            let value = u8::from_str_radix(hex, 16).map_err(|_| RedisUrlError::Escape)?;
            out.push(value);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| RedisUrlError::Escape)
}

/// A replay store in Redis, shared by every node pointed at it.
pub struct RedisReplayStore {
    target: Target,
    prefix: String,
    timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
    max_connections: usize,
    stats: ReplayStats,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store for `url` (`redis://host:port/db`, `redis://:password@host`,
    /// `redis://user:password@host:port/db`; user and password may be
    /// percent-encoded). Nothing is connected until the first use.
    pub fn new(url: &str) -> Result<RedisReplayStore, RedisUrlError> {
        Ok(RedisReplayStore {
            target: Target::parse(url)?,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(DEFAULT_MAX_CONNECTIONS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            stats: ReplayStats::default(),
        })
    }

    /// Keys become `<prefix><hex key>`; separates deployments sharing a
    /// Redis.
    pub fn with_prefix(mut self, prefix: &str) -> RedisReplayStore {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// The deadline of each operation, connection included (default 500 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> RedisReplayStore {
        self.timeout = timeout;
        self
    }

    /// Most connections open at once (default 32; at least 1).
    pub fn with_max_connections(mut self, max: usize) -> RedisReplayStore {
        let max = max.max(1);
        self.permits = Semaphore::new(max);
        self.max_connections = max;
        self
    }

    /// Runs one command under the deadline, on a pooled or new connection.
    async fn run(&self, command: &[u8]) -> Result<Reply, Unavailable> {
        let attempt = async {
            let _permit = self.permits.acquire().await.map_err(|_| Unavailable::Io)?;
            let mut retried = false;
            loop {
                let pooled = self.take_idle();
                let reused = pooled.is_some();
                let mut conn = match pooled {
                    Some(conn) => conn,
                    None => Connection::open(&self.target).await?,
                };
                match conn.round_trip(command).await {
                    Ok(reply) => {
                        self.put_idle(conn);
                        return Ok(reply);
                    }
                    // The server closed an idle connection: one retry.
                    Err(Unavailable::Io) if reused && !retried => retried = true,
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Err(Unavailable::Timeout))
    }

    fn take_idle(&self) -> Option<Connection> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put_idle(&self, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_connections {
            idle.push(conn);
        }
    }

    fn set_nx_command(&self, key: &[u8; 32], ttl: Duration) -> Vec<u8> {
        let mut name = Vec::with_capacity(self.prefix.len() + 64);
        name.extend_from_slice(self.prefix.as_bytes());
        name.extend_from_slice(&hex(key));
        // PX 0 is an error in Redis; a sub-millisecond TTL is one millisecond.
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        encode(&[
            b"SET",
            &name,
            b"1",
            b"NX",
            b"PX",
            millis.to_string().as_bytes(),
        ])
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError> {
        let started = Instant::now();
        let outcome = match self.run(&self.set_nx_command(&key, ttl)).await {
            Ok(Reply::Simple(line)) if line == b"OK" => Ok(Fresh::Inserted),
            Ok(Reply::Nil) => Ok(Fresh::Replayed),
            Ok(Reply::Error(kind)) => Err(ReplayStoreError::Unavailable(kind)),
            Ok(_) => Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
            Err(why) => Err(ReplayStoreError::Unavailable(why)),
        };
        self.stats.record(&outcome, started.elapsed());
        outcome
    }

    async fn ping(&self) -> Result<(), ReplayStoreError> {
        let outcome = match self.run(&encode(&[b"PING"])).await {
            Ok(Reply::Simple(line)) if line == b"PONG" => Ok(()),
            Ok(Reply::Error(kind)) => Err(ReplayStoreError::Unavailable(kind)),
            Ok(_) => Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
            Err(why) => Err(ReplayStoreError::Unavailable(why)),
        };
        if let Err(e) = &outcome {
            self.stats.record_error(e);
        }
        outcome
    }

    fn stats(&self) -> &ReplayStats {
        &self.stats
    }
}

/// A RESP2 reply of the kinds the four commands return. Anything else
/// (integers, bulk strings, arrays) is a protocol error for them.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Simple(Vec<u8>),
    /// An error reply, classified; its text is not kept.
    Error(Unavailable),
    Nil,
}

/// A RESP2 array of bulk strings.
fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

/// Parses one complete reply from `buf`: `Ok(None)` when more bytes are
/// needed, `Ok(Some((reply, used)))` when one is complete.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, Unavailable> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() > MAX_REPLY {
            Err(Unavailable::Protocol)
        } else {
            Ok(None)
        };
    };
    let (kind, line) = match buf.split_first() {
        Some((kind, _)) => (*kind, &buf[1..end]),
        None => return Ok(None),
    };
    let used = end + 2;
    let reply = match kind {
        b'+' => Reply::Simple(line.to_vec()),
        b'-' => Reply::Error(
            if line.starts_with(b"NOAUTH") || line.starts_with(b"WRONGPASS") {
                Unavailable::Auth
            } else {
                Unavailable::ServerError
            },
        ),
        b'$' if line == b"-1" => Reply::Nil,
        _ => return Err(Unavailable::Protocol),
    };
    Ok(Some((reply, used)))
}

/// One authenticated connection with its read buffer.
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Connection {
    async fn open(target: &Target) -> Result<Connection, Unavailable> {
        let stream = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|_| Unavailable::Connect)?;
        // One small command per round trip: don't wait to coalesce.
        stream.set_nodelay(true).map_err(|_| Unavailable::Connect)?;
        let mut conn = Connection {
            stream,
            buf: Vec::with_capacity(64),
        };
        if let Some(password) = &target.password {
            let command = Zeroizing::new(match &target.user {
                Some(user) => encode(&[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => encode(&[b"AUTH", password.as_bytes()]),
            });
            match conn.round_trip(&command).await? {
                Reply::Simple(ok) if ok == b"OK" => {}
                Reply::Error(_) => return Err(Unavailable::Auth),
                _ => return Err(Unavailable::Protocol),
            }
        }
        if target.db != 0 {
            let db = target.db.to_string();
            match conn
                .round_trip(&encode(&[b"SELECT", db.as_bytes()]))
                .await?
            {
                Reply::Simple(ok) if ok == b"OK" => {}
                Reply::Error(kind) => return Err(kind),
                _ => return Err(Unavailable::Protocol),
            }
        }
        Ok(conn)
    }

    /// Writes one command and reads exactly one reply. Bytes after the
    /// reply mean the stream is out of step: an error, and the caller drops
    /// the connection.
    async fn round_trip(&mut self, command: &[u8]) -> Result<Reply, Unavailable> {
        self.buf.clear();
        self.stream
            .write_all(command)
            .await
            .map_err(|_| Unavailable::Io)?;
        let mut chunk = [0u8; 256];
        loop {
            if let Some((reply, used)) = parse_reply(&self.buf)? {
                if used != self.buf.len() {
                    return Err(Unavailable::Protocol);
                }
                return Ok(reply);
            }
            let n = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|_| Unavailable::Io)?;
            if n == 0 {
                return Err(Unavailable::Io);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_host_port_db_and_credentials() {
        let t = Target::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("127.0.0.1", 6380, 2));
        assert!(t.user.is_none() && t.password.is_none());

        let t = Target::parse("redis://cache.internal").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("cache.internal", 6379, 0));

        let t = Target::parse("redis://:s%40cret%3A1@cache:7000").unwrap();
        assert_eq!(t.password.as_deref().map(String::as_str), Some("s@cret:1"));
        assert!(t.user.is_none());
        assert_eq!(t.port, 7000);

        let t = Target::parse("REDIS://gateway:pw@[::1]:7001/3").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.db), ("::1", 7001, 3));
        assert_eq!(t.user.as_deref(), Some("gateway"));

        let t = Target::parse("redis://:@h/").unwrap();
        assert!(t.password.is_none());
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let cases = [
            ("rediss://h", RedisUrlError::Scheme),
            ("http://h", RedisUrlError::Scheme),
            ("h:6379", RedisUrlError::Scheme),
            ("redis://", RedisUrlError::Host),
            ("redis://:pw@", RedisUrlError::Host),
            ("redis://h h", RedisUrlError::Host),
            ("redis://[::1", RedisUrlError::Host),
            ("redis://h:0", RedisUrlError::Port),
            ("redis://h:70000", RedisUrlError::Port),
            ("redis://h:x", RedisUrlError::Port),
            ("redis://h/x", RedisUrlError::Database),
            ("redis://h/1/2", RedisUrlError::Database),
            ("redis://h/99999999", RedisUrlError::Database),
            ("redis://:p%zz@h", RedisUrlError::Escape),
            ("redis://h?protocol=resp3", RedisUrlError::Options),
            ("redis://user@h", RedisUrlError::UserWithoutPassword),
        ];
        for (url, want) in cases {
            let err = RedisReplayStore::new(url).unwrap_err();
            assert_eq!(err, want, "{url}");
            assert!(!err.to_string().contains(url));
        }
    }

    #[test]
    fn debug_output_never_shows_the_password() {
        let store = RedisReplayStore::new("redis://u:hunter2-marker@h:1/1").unwrap();
        let text = format!("{store:?}");
        assert!(!text.contains("hunter2-marker"), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn set_command_is_a_resp_array_with_hex_key_and_millisecond_ttl() {
        let store = RedisReplayStore::new("redis://h")
            .unwrap()
            .with_prefix("p:");
        let mut key = [0u8; 32];
        key[0] = 0xab;
        key[31] = 0x01;
        let command = store.set_nx_command(&key, Duration::from_secs(66));
        let name = format!("p:ab{}01", "00".repeat(30));
        let want = format!(
            "*6\r\n$3\r\nSET\r\n${}\r\n{name}\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n66000\r\n",
            name.len()
        );
        assert_eq!(String::from_utf8(command).unwrap(), want);
        let tiny = store.set_nx_command(&key, Duration::from_micros(10));
        assert!(String::from_utf8(tiny).unwrap().ends_with("$1\r\n1\r\n"));
    }

    #[test]
    fn replies_parse_and_partial_replies_wait_for_more() {
        assert_eq!(
            parse_reply(b"+OK\r\n"),
            Ok(Some((Reply::Simple(b"OK".to_vec()), 5)))
        );
        assert_eq!(parse_reply(b"$-1\r\n"), Ok(Some((Reply::Nil, 5))));
        assert_eq!(
            parse_reply(b"-WRONGPASS invalid username-password pair\r\n"),
            Ok(Some((Reply::Error(Unavailable::Auth), 43)))
        );
        assert_eq!(
            parse_reply(b"-OOM command not allowed\r\n").map(|r| r.map(|(r, _)| r)),
            Ok(Some(Reply::Error(Unavailable::ServerError)))
        );
        for partial in [&b""[..], b"+O", b"+OK\r", b"$-1"] {
            assert_eq!(parse_reply(partial), Ok(None), "{partial:?}");
        }
        for bad in [
            &b"*1\r\n"[..],
            b"$x\r\n",
            b"$3\r\nabc\r\n",
            b":1\r\n",
            b"?\r\n",
            b"$-2\r\n",
        ] {
            assert_eq!(parse_reply(bad), Err(Unavailable::Protocol), "{bad:?}");
        }
        assert_eq!(
            parse_reply(&vec![b'+'; MAX_REPLY + 1]),
            Err(Unavailable::Protocol)
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_unavailable_not_inserted() {
        // Bind then drop: the port is closed for the moment of the test.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisReplayStore::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        assert_eq!(
            store.insert_once([1; 32], Duration::from_secs(60)).await,
            Err(ReplayStoreError::Unavailable(Unavailable::Connect))
        );
        assert!(store.ping().await.is_err());
        let stats = store.stats().snapshot();
        assert!(stats.errors.contains(&("connect", 2)));
        assert_eq!(stats.inserted, 0);
    }

    #[tokio::test]
    async fn server_that_never_answers_times_out_as_unavailable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Accept and hold connections without answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let store = RedisReplayStore::new(&format!("redis://{addr}"))
            .unwrap()
            .with_timeout(Duration::from_millis(100));
        assert_eq!(
            store.insert_once([2; 32], Duration::from_secs(60)).await,
            Err(ReplayStoreError::Unavailable(Unavailable::Timeout))
        );
        holder.abort();
    }

    #[tokio::test]
    async fn unexpected_reply_is_a_protocol_error_not_inserted() {
        for answer in [&b"+QUEUED\r\n"[..], b":1\r\n", b"$1\r\n1\r\n"] {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 512];
                let _ = socket.read(&mut buf).await.unwrap();
                socket.write_all(answer).await.unwrap();
                // Keep the socket open until the client is done.
                let _ = socket.read(&mut buf).await;
            });
            let store = RedisReplayStore::new(&format!("redis://{addr}")).unwrap();
            let outcome = store.insert_once([3; 32], Duration::from_secs(60)).await;
            assert_eq!(
                outcome,
                Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
                "{answer:?}"
            );
            drop(store);
            let _ = server.await;
        }
    }
}
