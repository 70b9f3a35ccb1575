//! The shared replay store: `SET <prefix><hex key> 1 NX PX <ms>` on a Redis
//! that every gateway node uses (docs/design.md §3.9). Redis makes the
//! insertion atomic across nodes: `OK` means this node stored the key first, a
//! nil reply means some node already had.
//!
//! The connection is the `redis` crate's: a multiplexed connection that
//! reconnects by itself (`ConnectionManager`) for one server, or a master
//! found through Sentinel. This module keeps what the crate does not know:
//! the gateway's URL forms and their refusals, one deadline per operation,
//! the mapping of every failure to [`ReplayStoreError::Unavailable`] (503,
//! never "inserted") with a fixed label, and the password out of every log.
//!
//! - Each operation has one deadline covering connecting, TLS,
//!   authenticating and the command itself. The crate's own connect and
//!   response timeouts are set to the same value and it makes no retries
//!   of its own, so an outage answers within the deadline.
//! - A connection the server closed (a restart, an idle timeout) gets one
//!   retry within the same deadline, on the connection the manager opens in
//!   its place. Retrying `SET NX` is safe: if the first attempt did store
//!   the key, the retry reads nil and reports a replay (a spurious 401 at
//!   worst), never a second `Inserted`.
//! - The manager replaces a connection only after an I/O error. A failure
//!   while it connects that is not one (a refused password, `LOADING`, a
//!   database the server lacks) would stick to it for good, so after any
//!   other error this module drops the manager and builds a fresh one on
//!   the next operation: a fixed password or a loaded dataset is picked up
//!   without restarting the gateway.
//! - Sentinel: the master address is asked of the sentinels when there is
//!   no connection; any error drops the connection, so after a failover
//!   (`READONLY` from the demoted master, or a closed socket) the next
//!   operation asks again.
//! - The password is parsed into a zeroizing buffer and handed to the
//!   crate when the store is built (the crate keeps its own copy, which it
//!   redacts in `Debug` but does not zeroize). It is sent only in `AUTH`;
//!   this store's `Debug` shows whether there is one, errors keep a fixed
//!   label and never the server's text, and URL errors never echo the URL.

use super::{Fresh, ReplayStats, ReplayStore, ReplayStoreError, Unavailable};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ClientTlsConfig, ConnectionAddr, ErrorKind, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, TlsCertificates, TlsMode, Value,
};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The default key prefix; keys are `<prefix><64 hex digits>`.
pub const DEFAULT_KEY_PREFIX: &str = "stella:dpop:jti:";

const DEFAULT_PORT: u16 = 6379;
const DEFAULT_SENTINEL_PORT: u16 = 26379;
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
/// Sentinels listed in one URL, at most.
const MAX_SENTINELS: usize = 16;

/// How this store reaches its master.
enum Backend {
    /// One server; the manager is built on first use (it needs a runtime)
    /// and dropped after an error it would not recover from.
    Single {
        client: redis::Client,
        manager: Mutex<Option<Arc<ConnectionManager>>>,
    },
    /// A master found through Sentinel; the connection is dropped after
    /// any error so that the next operation asks the sentinels again.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        connection: Mutex<Option<Arc<MultiplexedConnection>>>,
    },
}

/// The connection one operation uses.
#[derive(Clone)]
enum Handle {
    Managed(Arc<ConnectionManager>),
    Direct(Arc<MultiplexedConnection>),
}

impl Handle {
    async fn query(&self, command: &redis::Cmd) -> Result<Value, RedisError> {
        match self {
            Handle::Managed(manager) => {
                command
                    .query_async(&mut ConnectionManager::clone(manager))
                    .await
            }
            Handle::Direct(conn) => {
                command
                    .query_async(&mut MultiplexedConnection::clone(conn))
                    .await
            }
        }
    }
}

/// A replay store in Redis, shared by every node pointed at it.
pub struct RedisReplayStore {
    target: Target,
    backend: Backend,
    prefix: String,
    timeout: Duration,
    stats: ReplayStats,
}

impl std::fmt::Debug for RedisReplayStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayStore")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl RedisReplayStore {
    /// A store for `url`: `redis://host:port/db`, `redis://:password@host`,
    /// `redis://user:password@host:port/db` (user and password may be
    /// percent-encoded), the same with `rediss://` for TLS, or
    /// `redis+sentinel://host:26379,host:26379/<master>/db` for a master
    /// found through Sentinel. Nothing is connected until the first use.
    pub fn new(url: &str) -> Result<RedisReplayStore, RedisUrlError> {
        RedisReplayStore::with_tls(url, &RedisTls::default())
    }

    /// As [`RedisReplayStore::new`], with a CA and client certificate for
    /// a `rediss://` URL.
    pub fn with_tls(url: &str, tls: &RedisTls) -> Result<RedisReplayStore, RedisUrlError> {
        let target = Target::parse(url)?;
        if !tls.is_empty() && !target.tls {
            return Err(RedisUrlError::TlsWithoutTlsUrl);
        }
        tls.check()?;
        let certificates = tls.certificates();
        let backend = match &target.master {
            None => {
                let node = target.nodes.first().ok_or(RedisUrlError::Host)?;
                let info = target
                    .address(node)
                    .into_connection_info()
                    .map_err(|_| RedisUrlError::Host)?
                    .set_redis_settings(target.redis_settings());
                let client = match certificates {
                    Some(certs) => redis::Client::build_with_tls(info, certs)
                        .map_err(|_| RedisUrlError::TlsMaterial)?,
                    None => redis::Client::open(info).map_err(|_| RedisUrlError::Host)?,
                };
                Backend::Single {
                    client,
                    manager: Mutex::new(None),
                }
            }
            Some(master) => {
                let sentinels = target.nodes.iter().map(|node| target.address(node));
                let mut builder =
                    SentinelClientBuilder::new(sentinels, master, SentinelServerType::Master)
                        .map_err(|_| RedisUrlError::Host)?
                        .set_client_to_redis_db(i64::from(target.db));
                if let Some(user) = &target.user {
                    builder = builder.set_client_to_redis_username(user);
                }
                if let Some(password) = &target.password {
                    builder = builder.set_client_to_redis_password(password.as_str());
                }
                if target.tls {
                    builder = builder
                        .set_client_to_redis_tls_mode(TlsMode::Secure)
                        .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                    if let Some(certs) = certificates {
                        builder = builder
                            .set_client_to_redis_certificates(certs.clone())
                            .set_client_to_sentinel_certificates(certs);
                    }
                }
                let client = builder.build().map_err(|_| RedisUrlError::TlsMaterial)?;
                Backend::Sentinel {
                    client: tokio::sync::Mutex::new(client),
                    connection: Mutex::new(None),
                }
            }
        };
        Ok(RedisReplayStore {
            target,
            backend,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            stats: ReplayStats::default(),
        })
    }

    /// Whether `url` and `tls` would make a store, without making one (for
    /// configuration checks).
    pub fn check(url: &str, tls: &RedisTls) -> Result<(), RedisUrlError> {
        let target = Target::parse(url)?;
        if !tls.is_empty() && !target.tls {
            return Err(RedisUrlError::TlsWithoutTlsUrl);
        }
        tls.check()
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

    /// Runs one command within the deadline: at most two attempts, the
    /// second only after the connection failed.
    async fn run(&self, command: &redis::Cmd) -> Result<Value, Unavailable> {
        let attempt = async {
            let mut retried = false;
            loop {
                let handle = self.handle().await.map_err(|e| classify(&e))?;
                match handle.query(command).await {
                    Ok(value) => return Ok(value),
                    Err(e) => {
                        self.discard(&handle, &e);
                        let broken = e.is_io_error() && !e.is_timeout();
                        if broken && !retried {
                            retried = true;
                            continue;
                        }
                        return Err(classify(&e));
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or(Err(Unavailable::Timeout))
    }

    fn connection_config(&self) -> AsyncConnectionConfig {
        AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
    }

    async fn handle(&self) -> Result<Handle, RedisError> {
        match &self.backend {
            Backend::Single { client, manager } => {
                let mut slot = manager.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(current) = slot.as_ref() {
                    return Ok(Handle::Managed(current.clone()));
                }
                // No retries inside the manager: the caller's deadline
                // decides, and a failed connect is retried by the next
                // operation.
                let config = ConnectionManagerConfig::new()
                    .set_number_of_retries(0)
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout));
                let fresh = Arc::new(ConnectionManager::new_lazy_with_config(
                    client.clone(),
                    config,
                )?);
                *slot = Some(fresh.clone());
                Ok(Handle::Managed(fresh))
            }
            Backend::Sentinel { client, connection } => {
                if let Some(current) = connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    return Ok(Handle::Direct(current.clone()));
                }
                // One discovery at a time; the others wait for its result.
                let mut client = client.lock().await;
                if let Some(current) = connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .as_ref()
                {
                    return Ok(Handle::Direct(current.clone()));
                }
                let fresh = Arc::new(
                    client
                        .get_async_connection_with_config(&self.connection_config())
                        .await?,
                );
                *connection.lock().unwrap_or_else(PoisonError::into_inner) = Some(fresh.clone());
                Ok(Handle::Direct(fresh))
            }
        }
    }

    /// Forgets the connection `used` after `error`, unless another
    /// operation already replaced it.
    fn discard(&self, used: &Handle, error: &RedisError) {
        match (&self.backend, used) {
            (Backend::Single { manager, .. }, Handle::Managed(used)) => {
                // The manager reconnects by itself after I/O errors.
                if error.is_io_error() {
                    return;
                }
                let mut slot = manager.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|m| Arc::ptr_eq(m, used)) {
                    *slot = None;
                }
            }
            (Backend::Sentinel { connection, .. }, Handle::Direct(used)) => {
                let mut slot = connection.lock().unwrap_or_else(PoisonError::into_inner);
                if slot.as_ref().is_some_and(|c| Arc::ptr_eq(c, used)) {
                    *slot = None;
                }
            }
            _ => {}
        }
    }

    fn set_nx_command(&self, key: &[u8; 32], ttl: Duration) -> redis::Cmd {
        let mut name = Vec::with_capacity(self.prefix.len() + 64);
        name.extend_from_slice(self.prefix.as_bytes());
        name.extend_from_slice(&hex(key));
        // PX 0 is an error in Redis; a sub-millisecond TTL is one millisecond.
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut command = redis::cmd("SET");
        command.arg(name).arg("1").arg("NX").arg("PX").arg(millis);
        command
    }
}

/// The fixed label of a failure. Its text (which may quote the server) is
/// not kept.
fn classify(error: &RedisError) -> Unavailable {
    if error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
    {
        Unavailable::Auth
    } else if error.is_timeout() {
        Unavailable::Timeout
    } else if error.is_connection_refusal() {
        Unavailable::Connect
    } else if error.is_io_error() {
        Unavailable::Io
    } else {
        match error.kind() {
            ErrorKind::Server(_) | ErrorKind::Extension => Unavailable::ServerError,
            ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::NoValidReplicasFoundBySentinel
            | ErrorKind::EmptySentinelList => Unavailable::Connect,
            _ => Unavailable::Protocol,
        }
    }
}

#[async_trait]
impl ReplayStore for RedisReplayStore {
    async fn insert_once(&self, key: [u8; 32], ttl: Duration) -> Result<Fresh, ReplayStoreError> {
        let started = Instant::now();
        let outcome = match self.run(&self.set_nx_command(&key, ttl)).await {
            Ok(Value::Okay) => Ok(Fresh::Inserted),
            Ok(Value::Nil) => Ok(Fresh::Replayed),
            Ok(_) => Err(ReplayStoreError::Unavailable(Unavailable::Protocol)),
            Err(why) => Err(ReplayStoreError::Unavailable(why)),
        };
        self.stats.record(&outcome, started.elapsed());
        outcome
    }

    async fn ping(&self) -> Result<(), ReplayStoreError> {
        let outcome = match self.run(&redis::cmd("PING")).await {
            Ok(Value::SimpleString(pong)) if pong == "PONG" => Ok(()),
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

fn hex(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
    }
    out
}

mod url;

use url::Target;
pub use url::{RedisTls, RedisUrlError};

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_parse_into_host_port_db_and_credentials() {
        let t = Target::parse("redis://127.0.0.1:6380/2").unwrap();
        assert_eq!(t.nodes, [("127.0.0.1".to_owned(), 6380)]);
        assert_eq!((t.db, t.tls, t.master.as_deref()), (2, false, None));
        assert!(t.user.is_none() && t.password.is_none());

        let t = Target::parse("redis://cache.internal").unwrap();
        assert_eq!(t.nodes, [("cache.internal".to_owned(), 6379)]);
        assert_eq!(t.db, 0);

        let t = Target::parse("redis://:s%40cret%3A1@cache:7000").unwrap();
        assert_eq!(t.password.as_deref().map(String::as_str), Some("s@cret:1"));
        assert!(t.user.is_none());
        assert_eq!(t.nodes[0].1, 7000);

        let t = Target::parse("REDIS://gateway:pw@[::1]:7001/3").unwrap();
        assert_eq!(t.nodes, [("::1".to_owned(), 7001)]);
        assert_eq!(t.db, 3);
        assert_eq!(t.user.as_deref(), Some("gateway"));

        let t = Target::parse("redis://:@h/").unwrap();
        assert!(t.password.is_none());

        let t = Target::parse("rediss://:pw@cache.internal:6380/1").unwrap();
        assert!(t.tls);
        assert_eq!((t.nodes[0].1, t.db), (6380, 1));

        let t = Target::parse("redis+sentinel://:pw@s1,s2:26380,[::1]/replay-master/4").unwrap();
        assert!(!t.tls);
        assert_eq!(
            t.nodes,
            [
                ("s1".to_owned(), 26379),
                ("s2".to_owned(), 26380),
                ("::1".to_owned(), 26379)
            ]
        );
        assert_eq!((t.master.as_deref(), t.db), (Some("replay-master"), 4));
        assert_eq!(t.password.as_deref().map(String::as_str), Some("pw"));

        let t = Target::parse("rediss+sentinel://s1/m").unwrap();
        assert!(t.tls);
        assert_eq!((t.master.as_deref(), t.db), (Some("m"), 0));
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let cases = [
            ("http://h", RedisUrlError::Scheme),
            ("unix:///run/redis.sock", RedisUrlError::Scheme),
            ("redis+cluster://h", RedisUrlError::Scheme),
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
            ("rediss://", RedisUrlError::Host),
            ("redis://a,b", RedisUrlError::SeveralHosts),
            ("redis+sentinel://s1:26379", RedisUrlError::SentinelMaster),
            ("redis+sentinel://s1:26379/", RedisUrlError::SentinelMaster),
            (
                "redis+sentinel://s1/bad name",
                RedisUrlError::SentinelMaster,
            ),
            ("redis+sentinel://s1,/m", RedisUrlError::Host),
            ("redis+sentinel://s1/m/x", RedisUrlError::Database),
            ("rediss+sentinel://:pw@s1:0/m", RedisUrlError::Port),
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
        let command = store
            .set_nx_command(&key, Duration::from_secs(66))
            .get_packed_command();
        let name = format!("p:ab{}01", "00".repeat(30));
        let want = format!(
            "*6\r\n$3\r\nSET\r\n${}\r\n{name}\r\n$1\r\n1\r\n$2\r\nNX\r\n$2\r\nPX\r\n$5\r\n66000\r\n",
            name.len()
        );
        assert_eq!(String::from_utf8(command).unwrap(), want);
        let tiny = store
            .set_nx_command(&key, Duration::from_micros(10))
            .get_packed_command();
        assert!(String::from_utf8(tiny).unwrap().ends_with("$1\r\n1\r\n"));
    }

    #[test]
    fn tls_files_need_a_tls_url() {
        let tls = RedisTls {
            ca_pem: Some(b"-----BEGIN CERTIFICATE-----".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("redis://h", &tls).unwrap_err(),
            RedisUrlError::TlsWithoutTlsUrl
        );
        let garbage = RedisTls {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("rediss://h", &garbage).unwrap_err(),
            RedisUrlError::TlsMaterial
        );
        let cert_without_key = RedisTls {
            client_cert_pem: Some(b"x".to_vec()),
            ..RedisTls::default()
        };
        assert_eq!(
            RedisReplayStore::with_tls("rediss://h", &cert_without_key).unwrap_err(),
            RedisUrlError::TlsMaterial
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
        // A reply that starts with CRLF once panicked the hand-written
        // parser.
        for answer in [
            &b"+QUEUED\r\n"[..],
            b":1\r\n",
            b"$1\r\n1\r\n",
            b"\r\n",
            b"\r\n+OK\r\n",
            b"*1\r\n+OK\r\n",
        ] {
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
